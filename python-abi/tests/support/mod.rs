//! Running a check script (`tests/data/*.py`) under a test interpreter and collecting what it
//! confirmed: shared by the live layout checks.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use strobe_testkit::interpreters::Interpreter;

/// What a check script printed: its `PASS NAME` lines, and all of its output for messages.
pub struct Checked {
    pub passed: BTreeSet<String>,
    /// Its stdout.
    pub stdout: String,
    /// stdout and stderr, to print with any failed assertion.
    pub context: String,
}

/// Run `tests/data/SCRIPT` under `target` with `args` (copied into its chroot first, if it
/// has one: `tag` names the copy) and assert that it exited cleanly, said `DONE` and printed
/// no `FAIL` line.
pub fn run_check_script(target: &Interpreter, script: &str, tag: &str, args: &[String]) -> Checked {
    let script_src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(script);
    let mut cmd = target.command();
    let _cleanup = match target.chroot() {
        None => {
            cmd.arg(&script_src);
            None
        }
        Some(root) => {
            let inside = format!(
                "/tmp/strobe-abi-{tag}-{}-{}.py",
                std::process::id(),
                target.name
            );
            let outside = root.join(inside.trim_start_matches('/'));
            std::fs::copy(&script_src, &outside).unwrap();
            cmd.arg(&inside);
            Some(RemoveOnDrop(outside))
        }
    };
    let output = cmd.args(args).output().expect("start the interpreter");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        output.status.success(),
        "{script} exited {}\n{context}",
        output.status
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("DONE ")),
        "no DONE line\n{context}"
    );
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failures.is_empty(), "{}\n{context}", failures.join("\n"));
    let passed = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("PASS "))
        .map(str::to_string)
        .collect();
    Checked {
        passed,
        stdout: stdout.into_owned(),
        context,
    }
}

/// Removes a file when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
