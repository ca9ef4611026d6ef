//! Captures that cannot succeed say why: a thread that exited, a process strobe may not
//! trace, perf events refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::Command;
use strobe_remote::{BlockedThread, PerfConfig, PerfError, PerfThread, StackError, ThreadTracer};
use support::*;

#[test]
fn a_thread_that_exits_between_captures() {
    let dir = TempDir::new("exit");
    let exe = build_chain(&dir.0, "-O2");
    let mut chain = Chain::start(&exe, "read", true);
    let (pid, tid) = (chain.pid(), chain.tid);
    let mut stack = Vec::new();
    let mut tracer = ThreadTracer::seize(pid, tid).unwrap();
    tracer.capture(STACK, &mut stack).unwrap();
    let mut blocked = BlockedThread::open(pid, tid).unwrap();
    let mut perf = PerfThread::open(pid, tid, &PerfConfig::default()).unwrap();

    // `x` ends the chain's read loop: the thread returns and exits, main joins it.
    let stdin = chain.ready.child.stdin.as_mut().unwrap();
    stdin.write_all(b"x").unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    chain.ready.stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "JOINED");

    let err = blocked.capture(STACK, &mut stack).unwrap_err();
    assert!(
        matches!(err, StackError::ThreadGone { tid: t, .. } if t == tid),
        "{err:?}"
    );
    let err = tracer.capture(STACK, &mut stack).unwrap_err();
    assert!(
        matches!(err, StackError::ThreadGone { tid: t, .. } if t == tid),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("thread {tid} of process {pid} exited")
    );
    // The event of an exited thread just has nothing more to give.
    perf.drain(|_| {});
    let err = PerfThread::open(pid, tid, &PerfConfig::default()).unwrap_err();
    assert!(matches!(err, PerfError::ThreadGone { .. }), "{err:?}");
    let err = ThreadTracer::seize(pid, tid).unwrap_err();
    assert!(matches!(err, StackError::ThreadGone { .. }), "{err:?}");
    let err = BlockedThread::open(pid, tid).unwrap_err();
    assert!(matches!(err, StackError::ThreadGone { .. }), "{err:?}");
    // The process itself is untouched.
    assert!(std::fs::metadata(format!("/proc/{pid}/task/{pid}")).is_ok());
}

/// Run by `unprivileged_captures_say_what_to_do` as user strobe-a.
#[test]
fn probe_as_unprivileged_user() {
    let (Ok(pid), Ok(exe)) = (
        std::env::var("STROBE_NATIVE_PROBE_PID"),
        std::env::var("STROBE_NATIVE_PROBE_EXE"),
    ) else {
        return; // only meaningful when re-executed by the test below
    };
    let pid: i32 = pid.parse().unwrap();
    // Another user's (root's) process.
    let seize = ThreadTracer::seize(pid, pid).unwrap_err();
    assert!(
        matches!(seize, StackError::PermissionDenied { .. }),
        "{seize:?}"
    );
    println!("SEIZE: {seize}");
    let blocked = BlockedThread::open(pid, pid).unwrap_err();
    assert!(
        matches!(blocked, StackError::PermissionDenied { .. }),
        "{blocked:?}"
    );
    println!("BLOCKED: {blocked}");
    let perf = PerfThread::open(pid, pid, &PerfConfig::default()).unwrap_err();
    assert!(matches!(perf, PerfError::Refused { .. }), "{perf:?}");
    println!("PERF: {perf}");

    // Our own process: user-space sampling is allowed at perf_event_paranoid 2, kernel-time
    // sampling is not.
    let own = Chain::start(std::path::Path::new(&exe), "spin", false);
    let kernel = PerfConfig {
        kernel_time: true,
        ..PerfConfig::default()
    };
    let refused = PerfThread::open(own.pid(), own.tid, &kernel).unwrap_err();
    assert!(matches!(refused, PerfError::Refused { .. }), "{refused:?}");
    println!("PERF_KERNEL: {refused}");
    let samples = perf_samples(own.pid(), own.tid, 3);
    println!("OWN_SAMPLES: {}", samples.len());
}

#[test]
fn unprivileged_captures_say_what_to_do() {
    assert!(nix::unistd::geteuid().is_root(), "this test drops root");
    let user = nix::unistd::User::from_name("strobe-a")
        .unwrap()
        .expect("the test user strobe-a (see .ci/provision.sh)");
    let dir = TempDir::new("unprivileged");
    let exe = build_chain(&dir.0, "-O2");
    let root_target = Chain::start(&exe, "sleep", false);
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid").unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "probe_as_unprivileged_user", "--nocapture"])
        .env("STROBE_NATIVE_PROBE_PID", root_target.pid().to_string())
        .env("STROBE_NATIVE_PROBE_EXE", &exe)
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in {stdout}"))
            .to_string()
    };
    for prefix in ["SEIZE: ", "BLOCKED: "] {
        let l = line(prefix);
        assert!(l.contains(&format!("process {}", root_target.pid())), "{l}");
        for needle in ["root", "CAP_SYS_PTRACE", "ptrace_scope"] {
            assert!(l.contains(needle), "{needle} missing from: {l}");
        }
    }
    for prefix in ["PERF: ", "PERF_KERNEL: "] {
        let l = line(prefix);
        let want = format!("perf_event_paranoid is {}", paranoid.trim());
        for needle in [want.as_str(), "CAP_PERFMON", "root"] {
            assert!(l.contains(needle), "{needle} missing from: {l}");
        }
    }
    assert_eq!(line("OWN_SAMPLES: "), "3");
}
