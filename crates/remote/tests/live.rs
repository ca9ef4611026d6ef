//! Live tests: real Python processes, read, frozen and released.
//!
//! Each target prints `READY` once it is set up and then serves `ping` lines on stdin, so the
//! tests synchronise on output, never on sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use strobe_remote::{procfs, Freeze, ProcessMemory, RemoteError};
use strobe_testkit::{interpreters, Ready};

/// A target process serving `ping` lines on stdin, killed and reaped when dropped.
struct Target(Ready);

impl Target {
    /// Debian's python3 (the registry's `debian_3_11`) running `script`.
    fn spawn(script: &str) -> Target {
        let python = interpreters::debian_3_11();
        Target(Ready::start(
            python.command().arg("-c").arg(script).stdin(Stdio::piped()),
            python.name,
        ))
    }

    fn pid(&self) -> i32 {
        self.0.pid()
    }

    /// Round trip through the target's main thread: proves it runs.
    fn ping(&mut self) {
        let stdin = self.0.child.stdin.as_mut().unwrap();
        stdin.write_all(b"ping\n").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.0.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "pong");
    }
}

const SERVE: &str = r#"
import sys
print("READY"); sys.stdout.flush()
while True:
    line = sys.stdin.readline()
    if not line:
        break
    sys.stdout.write("pong\n"); sys.stdout.flush()
"#;

/// Busy threads plus a thread whose name contains `) ` to trip naive stat parsers.
fn spinning_target() -> Target {
    let script = format!(
        r#"
import threading, os
def spin():
    n = 0
    while True:
        n += 1
def named():
    with open("/proc/self/task/%d/comm" % threading.get_native_id(), "w") as f:
        f.write("x) R (y")
    threading.Event().wait()
for f in (spin, spin, named):
    threading.Thread(target=f, daemon=True).start()
{SERVE}"#
    );
    Target::spawn(&script)
}

fn assert_all_traced(pid: i32, expected: &[u32]) {
    let states = procfs::thread_states(pid).unwrap();
    let mut tids: Vec<u32> = states.keys().copied().collect();
    tids.sort_unstable();
    assert_eq!(
        tids, expected,
        "frozen set differs from the process's threads"
    );
    for (tid, state) in &states {
        assert_eq!(*state, 't', "thread {tid} is {state}, not traced-stopped");
    }
}

/// The combined reader's states are what `stat` files say, and its ids inside the namespace
/// are ours (the target shares our PID namespace), on a process with threads in every state
/// (two spinning, one waiting, one named to confuse a `stat` parser).
#[test]
fn states_and_tids_read_together_match_the_separate_reads() {
    let mut t = spinning_target();
    let pid = t.pid();
    let freeze = Freeze::all_threads(pid).unwrap();
    let (states, inner) = procfs::thread_states_and_tids(pid).unwrap();
    assert_eq!(states, procfs::thread_states(pid).unwrap());
    // The target shares our PID namespace: each thread is known by the same id inside.
    assert_eq!(inner.len(), states.len());
    assert!(inner.iter().all(|(ours, its)| ours == its), "{inner:?}");
    assert_eq!(states.len(), 4);
    drop(freeze);
    t.ping();
}

#[test]
fn freeze_stops_every_thread_and_drop_releases_them() {
    let mut t = spinning_target();
    let pid = t.pid();
    assert_eq!(procfs::tasks(pid).unwrap().len(), 4);
    for _ in 0..5 {
        let freeze = Freeze::all_threads(pid).unwrap();
        assert_eq!(freeze.threads().len(), 4);
        assert_all_traced(pid, &freeze.threads());
        drop(freeze);
        t.ping();
        let states = procfs::thread_states(pid).unwrap();
        assert!(
            states.values().all(|&s| s != 't'),
            "still stopped: {states:?}"
        );
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(status.contains("TracerPid:\t0\n"));
    }
}

#[test]
fn freeze_catches_threads_created_while_attaching() {
    // Threads that start threads as fast as they can: a single listing of /proc/PID/task is
    // out of date by the time we attach.
    let script = format!(
        r#"
import threading
def churn():
    while True:
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()
for _ in range(3):
    threading.Thread(target=churn, daemon=True).start()
{SERVE}"#
    );
    let mut t = Target::spawn(&script);
    for _ in 0..20 {
        let freeze = Freeze::all_threads(t.pid()).unwrap();
        assert_all_traced(t.pid(), &freeze.threads());
        drop(freeze);
        t.ping();
    }
}

#[test]
fn failed_freeze_releases_the_threads_it_attached() {
    use nix::sys::ptrace;
    use nix::sys::wait::{waitpid, WaitPidFlag};
    use nix::unistd::Pid;

    let mut t = spinning_target();
    let pid = t.pid();
    // Hold the last thread ourselves, so that Freeze attaches the others (the main thread
    // comes first) and then fails on it.
    let held = *procfs::tasks(pid).unwrap().last().unwrap() as i32;
    assert_ne!(held, pid);
    ptrace::seize(Pid::from_raw(held), ptrace::Options::empty()).unwrap();

    let err = std::thread::spawn(move || Freeze::all_threads(pid).unwrap_err())
        .join()
        .unwrap();
    assert!(
        matches!(err, RemoteError::AlreadyTraced { pid: p, .. } if p == pid),
        "{err}"
    );
    assert!(err.to_string().contains("already being traced"));
    for tid in procfs::tasks(pid).unwrap() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
        let traced = !status.contains("TracerPid:\t0\n");
        assert_eq!(traced, tid as i32 == held, "thread {tid}: {status}");
    }
    t.ping();

    let h = Pid::from_raw(held);
    ptrace::interrupt(h).unwrap();
    waitpid(h, Some(WaitPidFlag::__WALL)).unwrap();
    ptrace::detach(h, None).unwrap();
    t.ping();
}

/// Our own child, killed while frozen: releasing the freeze collects its exit (the tracer's
/// wait reaps it), and `try_wait` still hands the status to the caller instead of losing it.
#[test]
fn exit_of_a_frozen_child_reaches_its_parent() {
    use std::os::unix::process::ExitStatusExt;
    let mut t = Target::spawn(SERVE);
    let pid = t.pid();
    let freeze = Freeze::all_threads(pid).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    // Wait for the kernel to finish the exit (state Z), so that the release finds a zombie.
    let since = std::time::Instant::now();
    while procfs::stat(pid).unwrap().state != 'Z' {
        assert!(
            since.elapsed().as_secs() < 10,
            "killed target never became a zombie"
        );
        std::thread::yield_now();
    }
    drop(freeze);
    let status = strobe_remote::try_wait(&mut t.0.child)
        .unwrap()
        .expect("the child's exit status");
    assert_eq!(status.signal(), Some(9), "{status:?}");
}

/// Running: not exiting; a zombie and a reaped process: gone or exiting.
#[test]
fn gone_or_exiting_tracks_the_process_life() {
    let mut child = Command::new("/bin/sh")
        .args(["-c", "read line"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    assert!(!procfs::is_gone_or_exiting(pid));
    drop(child.stdin.take());
    // With stdin closed the shell exits; it stays a zombie until we reap it.
    let since = std::time::Instant::now();
    while procfs::stat(pid).unwrap().state != 'Z' {
        assert!(since.elapsed().as_secs() < 10, "the shell never exited");
        std::thread::yield_now();
    }
    assert!(procfs::is_gone_or_exiting(pid));
    child.wait().unwrap();
    assert!(procfs::is_gone_or_exiting(pid));
}

#[test]
fn missing_process_errors() {
    let err = Freeze::all_threads(i32::MAX).unwrap_err();
    assert_eq!(err.to_string(), format!("no process with PID {}", i32::MAX));
    let err = ProcessMemory::open(i32::MAX).unwrap_err();
    assert_eq!(err.to_string(), format!("no process with PID {}", i32::MAX));
}

/// Run by `permission_denied_says_what_to_do` as user `nobody` against a root process.
#[test]
fn probe_as_unprivileged_child() {
    let Ok(pid) = std::env::var("STROBE_PROBE_PID") else {
        return; // only meaningful when re-executed by the test below
    };
    let pid: i32 = pid.parse().unwrap();
    let open = ProcessMemory::open(pid).unwrap_err();
    assert!(
        matches!(open, RemoteError::PermissionDenied { .. }),
        "{open}"
    );
    println!("OPEN: {open}");
    let freeze = Freeze::all_threads(pid).unwrap_err();
    assert!(
        matches!(freeze, RemoteError::PermissionDenied { .. }),
        "{freeze}"
    );
    println!("FREEZE: {freeze}");
}

#[test]
fn permission_denied_says_what_to_do() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test drops root to `nobody`"
    );
    let t = spinning_target();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "probe_as_unprivileged_child", "--nocapture"])
        .env("STROBE_PROBE_PID", t.pid().to_string())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for prefix in ["OPEN: ", "FREEZE: "] {
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in {stdout}"));
        assert!(line.contains(&format!("process {}", t.pid())), "{line}");
        for needle in [
            "root",
            "CAP_SYS_PTRACE",
            "/proc/sys/kernel/yama/ptrace_scope",
        ] {
            assert!(line.contains(needle), "{needle} missing from: {line}");
        }
    }
}
