//! Promises checked on the source itself:
//!
//! * strobe never writes into the target's memory or registers, and never makes it run code:
//!   no `process_vm_writev`, no `PTRACE_POKE*` / `PTRACE_SETREGS*` (nor nix's wrappers
//!   `ptrace::write*` / `ptrace::setregs`), no `/proc/PID/mem` opened for writing, anywhere in
//!   the workspace's code outside comments. The only ptrace requests used are seize/interrupt/
//!   detach (crates/remote/src/freeze.rs).
//! * `unwrap()` / `expect()` are denied outside tests: `[workspace.lints.clippy]` says so and
//!   every member crate opts in with `[lints] workspace = true`.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `.rs` file of the workspace's code (crates, python-abi, src, benches, tests).
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The code of a line, without a `//` comment (strings containing `//` are not an issue for
/// the names searched for).
fn code_part(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

#[test]
fn strobe_never_writes_into_the_target() {
    let forbidden = [
        "process_vm_writev",
        "PTRACE_POKE",
        "PTRACE_SETREGS",
        "PTRACE_SETFPREGS",
        "ptrace::write",
        "ptrace::setregs",
        "ptrace::setsiginfo",
        "PTRACE_SETSIGINFO",
    ];
    let this_file = Path::new(ROOT).join(file!());
    let mut files = Vec::new();
    for top in ["crates", "python-abi", "src", "benches", "tests"] {
        rust_files(&Path::new(ROOT).join(top), &mut files);
    }
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut hits = Vec::new();
    for file in &files {
        if file.ends_with("tests/integration/safety_source.rs") || *file == this_file {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = code_part(line);
            for f in forbidden {
                if code.contains(f) {
                    hits.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
                }
            }
            // /proc/PID/mem is only ever opened read-only.
            if code.contains("/mem") && (code.contains(".write(true)") || code.contains("O_RDWR")) {
                hits.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "code that could write into a target:\n{}",
        hits.join("\n")
    );
}

#[test]
fn unwrap_and_expect_are_denied_in_every_crate() {
    let root = Path::new(ROOT);
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let clippy = workspace
        .split("[workspace.lints.clippy]")
        .nth(1)
        .expect("no [workspace.lints.clippy] in Cargo.toml");
    let clippy = clippy.split("\n[").next().unwrap();
    for lint in ["unwrap_used", "expect_used"] {
        assert!(
            clippy
                .lines()
                .any(|l| l.replace(' ', "") == format!("{lint}=\"deny\"")),
            "{lint} is not denied workspace-wide:\n{clippy}"
        );
    }
    let mut manifests = vec![root.join("Cargo.toml"), root.join("python-abi/Cargo.toml")];
    for e in std::fs::read_dir(root.join("crates")).unwrap() {
        let m = e.unwrap().path().join("Cargo.toml");
        if m.is_file() {
            manifests.push(m);
        }
    }
    assert!(manifests.len() >= 10, "{manifests:?}");
    for m in manifests {
        let text = std::fs::read_to_string(&m).unwrap();
        let opted_in = text.split("\n[lints]").nth(1).is_some_and(|rest| {
            rest.lines()
                .take(3)
                .any(|l| l.replace(' ', "") == "workspace=true")
        });
        assert!(opted_in, "{} lacks `[lints] workspace = true`", m.display());
    }
}
