//! What the user sees when strobe cannot do what was asked: one line, non-zero exit.

use crate::harness::{strobe, strobe_bin, Interp, Target, TempDir};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use strobe_testkit::interpreters;

/// The single stderr line of a failed run, checked for shape and exit status.
fn one_error_line(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("strobe: error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_string()
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["dump"][..],
        &["dump", "--pid", "abc"],
        &["dump", "--pid", "0"],
        &["dump", "--pid", "1", "--bogus"],
        &["frobnicate"],
        &[],
    ] {
        let line = one_error_line(&strobe(args), 2);
        assert!(line.contains("strobe --help"), "{args:?}: {line}");
    }
}

#[test]
fn help_is_not_an_error() {
    let out = strobe(&["dump", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in ["--pid", "--json", "--blocking", "--no-names"] {
        assert!(text.contains(flag), "{text}");
    }
}

#[test]
fn nonexistent_pid() {
    // PIDs are always below pid_max, so pid_max itself never names a process.
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap();
    let pid = pid_max.trim();
    let line = one_error_line(&strobe(&["dump", "--pid", pid]), 1);
    assert!(
        line.contains(&format!("no process with PID {pid}")),
        "{line}"
    );
}

/// Kills and reaps a helper process on drop.
struct Reaped(std::process::Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn not_a_python_process() {
    let sleep = Reaped(
        Command::new("sleep")
            .arg("100")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = sleep.0.id().to_string();
    let line = one_error_line(&strobe(&["dump", "--pid", &pid]), 1);
    assert!(line.contains(&pid), "{line}");
    assert!(line.to_lowercase().contains("python"), "{line}");
}

/// Target run by one unprivileged user, strobe by another: the kernel refuses, and the message
/// says what to do.
#[test]
fn permission_denied() {
    let target = Target::start_as(&Interp::named("debian_3_11"), Some("strobe-a"));
    // The test binary's directory may not be reachable by other users: copy strobe out.
    let dir = TempDir::new();
    let bin = dir.path().join("strobe");
    strobe_testkit::copy_executable(strobe_bin().as_ref(), &bin);
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pid = target.pid().to_string();
    let out = Command::new("runuser")
        .args(["-u", "strobe-b", "--"])
        .arg(&bin)
        .args(["dump", "--pid", &pid])
        .output()
        .unwrap();
    let line = one_error_line(&out, 1);
    for needle in ["root", "CAP_SYS_PTRACE", "ptrace_scope", &pid] {
        assert!(line.contains(needle), "missing {needle:?} in {line}");
    }
    // The target was not disturbed.
    drop(target);
}

/// A program that looks like CPython 2.6 to the locate step: an `interp_head` symbol and a
/// `sys.version`-style string in its data. strobe has no layout for 2.6 and must say so.
const FAKE_PYTHON_26: &str = r#"
#include <stdio.h>
void *interp_head;
char version_buffer[64];
int main(void) {
    snprintf(version_buffer, sizeof version_buffer, "2.6.9 (%s)", "fake, for strobe's tests");
    puts("READY");
    fflush(stdout);
    return getchar() == EOF ? 0 : 1;
}
"#;

#[test]
fn unknown_python_version() {
    let dir = TempDir::new();
    let src = dir.path().join("fake.c");
    let bin = dir.path().join("python2.6");
    std::fs::write(&src, FAKE_PYTHON_26).unwrap();
    // `cc` is always present where Rust links binaries.
    let status = Command::new("cc")
        .arg("-O0")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("cc (needed to link Rust programs) is missing");
    assert!(status.success(), "compiling the fake interpreter failed");
    let mut child = Command::new(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Reaped(child);
    let mut ready = String::new();
    // The fake either prints READY or exits (EOF): this read cannot hang.
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready).unwrap();
    assert_eq!(ready.trim(), "READY");
    let pid = child.0.id().to_string();
    let line = one_error_line(&strobe(&["dump", "--pid", &pid]), 1);
    assert!(line.contains("CPython 2.6.9 is not supported"), "{line}");
    assert!(line.contains("supported: 2.7"), "{line}");
    assert!(line.contains(&pid), "{line}");
}

/// A target that has exited but is not yet reaped (a zombie): nothing left to read, and the
/// message says the process exited.
#[test]
fn zombie_target() {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    let child = interpreters::debian_3_11()
        .command()
        .args(["-c", "pass"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait for the exit without reaping it (WNOWAIT), so it stays a zombie while strobe looks.
    waitid(
        Id::Pid(nix::unistd::Pid::from_raw(pid as i32)),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
    )
    .unwrap();
    let reaped = Reaped(child);
    let pid = pid.to_string();
    let line = one_error_line(&strobe(&["dump", "--pid", &pid]), 1);
    assert!(line.contains(&pid), "{line}");
    assert!(line.contains("exited"), "{line}");
    drop(reaped);
}

/// A target that exits while strobe reads it: each dump either succeeds with a complete JSON
/// document or fails with the one-line "exited" error; never a panic or a partial document.
#[test]
fn target_exiting_while_read() {
    // The target builds deep stacks in a loop and exits on its own after a short while, so
    // dumps land before, during and after its exit.
    let script = "import sys, time\n\
                  def rec(n):\n    return rec(n - 1) if n else sum(range(2000))\n\
                  print('READY'); sys.stdout.flush()\n\
                  end = time.time() + 0.5\n\
                  while time.time() < end:\n    rec(200)\n";
    let mut child = interpreters::pyenv_version("3.12.1")
        .command()
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "READY");
    let pid = child.id().to_string();
    let (mut ok, mut exited) = (0, 0);
    // Dump until the process is gone (bounded: the target ends itself after 0.5 s).
    for _ in 0..10_000 {
        let out = strobe(&["dump", "--pid", &pid, "--json"]);
        if out.status.success() {
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(doc["threads"].is_array());
            ok += 1;
            continue;
        }
        let line = one_error_line(&out, 1);
        assert!(
            line.contains("exited") || line.contains("no process"),
            "unexpected error while the target exits: {line}"
        );
        exited += 1;
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            // Exited but not yet reaped: reap it so the next dump sees no process at all.
            let _ = child.try_wait();
        } else {
            break;
        }
    }
    let _ = child.wait();
    assert!(ok > 0, "no dump succeeded while the target ran");
    assert!(exited > 0, "the target never exited");
}
