//! The pip wheel: `packaging/build-wheel.sh` builds it, pip installs it into a fresh virtual
//! environment, and the `strobe` it puts on that environment's PATH records a script. Its
//! binary needs nothing newer than glibc 2.17 (manylinux2014), like py-spy's wheels.

use crate::harness::{Interp, Script, TempDir};
use crate::record::launched_work;
use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The newest `GLIBC_x.y` version `binary` needs, as (x, y).
fn newest_glibc(binary: &Path) -> (u32, u32) {
    let text = run(Command::new("objdump").arg("-T").arg(binary));
    text.split_whitespace()
        .filter_map(|w| {
            w.strip_prefix("(GLIBC_")
                .or_else(|| w.strip_prefix("GLIBC_"))
        })
        .filter_map(|v| {
            let v = v.trim_end_matches(')');
            let (major, minor) = v.split_once('.')?;
            let minor = minor.split('.').next()?;
            Some((major.parse().ok()?, minor.parse().ok()?))
        })
        .max()
        .unwrap_or_else(|| panic!("no GLIBC_ versions in objdump -T:\n{text}"))
}

#[test]
fn the_wheel_installs_with_pip_and_records() {
    let dir = TempDir::new();
    let wheels = dir.path().join("wheels");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = run(Command::new(root.join("packaging/build-wheel.sh")).arg(&wheels));
    let wheel = built.lines().last().unwrap().trim().to_string();
    let name = Path::new(&wheel).file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("strobe_profiler-") && name.contains("manylinux_2_17_x86_64"),
        "{name}"
    );

    // A fresh environment (the wheel is `py3-none`: any interpreter's pip installs it).
    let python = strobe_testkit::interpreters::require_path_str("pyenv_3_12");
    let venv = dir.path().join("venv");
    run(Command::new(python).args(["-m", "venv"]).arg(&venv));
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--no-index",
        "--disable-pip-version-check",
        &wheel,
    ]));
    let strobe = venv.join("bin/strobe");
    assert!(
        strobe.is_file(),
        "pip did not put strobe in {}",
        venv.display()
    );
    let glibc = newest_glibc(&strobe);
    assert!(glibc <= (2, 17), "the binary needs glibc {glibc:?}");

    // Record a script with the installed binary: `record_work.py stdin:SECONDS` is busy on
    // its `hot` line once it reads a line, sent when strobe says it is recording.
    let script = Script::new(&Interp::pyenv("3.12.1"), "record_work.py");
    let out = dir.path().join("work.txt");
    let mut cmd = Command::new(&strobe);
    cmd.arg("record")
        .arg("-o")
        .arg(&out)
        .arg("--")
        .arg(venv.join("bin/python"))
        .arg(&script.in_target)
        .arg("stdin:0.5");
    let recorded = launched_work(&mut cmd);
    let said = String::from_utf8_lossy(&recorded.stderr);
    assert!(recorded.status.success(), "{said}");
    let hot = script.label("hot", "hot");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.lines().any(|l| l.contains(&hot)),
        "no {hot} in\n{text}\n{said}"
    );
}
