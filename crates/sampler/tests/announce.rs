//! `--subprocesses` announcements against a real interpreter (pyenv 3.12): a descendant is
//! announced (and counted in the summary) when its first sample is recorded, not when it is
//! first read, so that whoever waits for an announcement finds samples of that process.
//!
//! The target spins in its main thread and has started a child (fork + exec of the same
//! interpreter) that is blocked in `read`: idle. Without `include_idle` the child is read every
//! round (the rounds see both processes' threads) but never recorded, so it is never announced
//! nor counted. With `include_idle` it is announced, and by then its samples are in the queue.
//!
//! A descendant that `exec`s its own interpreter again is announced again, with its new
//! command line, and counted once per program: with Debian's /usr/bin/python3.11, which is not
//! position-independent, the new runtime is at the old addresses and reads of it through the
//! old attachment do not fail, so only the check of its auxiliary vector tells.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use strobe_aggregate::AggregatorSide;
use strobe_sampler::{start, NewProcess, SamplerConfig, SamplerHandle, SamplerSummary};
use strobe_target::Target;
use strobe_testkit::Ready;

/// The target. It prints `READY <child pid>` once the child is blocked in its `read` system
/// call (`/proc/PID/syscall` starts with 0, `read` on x86-64), then spins.
const SCRIPT: &str = r#"import subprocess, sys

CHILD = """
import sys

def child_wait():
    sys.stdout.write("r")
    sys.stdout.flush()
    sys.stdin.read()

child_wait()
"""

def in_read(pid):
    with open("/proc/%d/syscall" % pid) as f:
        return f.read().split()[0] == "0"

def spin():
    n = 0
    while True:
        n = (n * 3 + 1) & 0xffff

child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
child.stdout.read(1)
while not in_read(child.pid):
    pass
sys.stdout.write("READY %d\n" % child.pid)
sys.stdout.flush()
spin()
"#;

/// The family's interpreter (pyenv 3.12, from the test registry).
fn python() -> String {
    let python = strobe_testkit::interpreters::get("pyenv_3_12")
        .require()
        .path();
    python.to_string_lossy().into_owned()
}

/// What a recording of the family saw.
struct Recording {
    summary: SamplerSummary,
    announced: Vec<NewProcess>,
    /// The first frame's function of every sample's stack.
    roots: Vec<String>,
}

/// Record `pid` and its descendants until `done` says so (given what was announced so far and
/// the live counters); a bound of 30 s ends a sampler that never gets there.
fn record(
    pid: i32,
    include_idle: bool,
    mut done: impl FnMut(&[NewProcess], &SamplerHandle) -> bool,
) -> Recording {
    let target = Target::attach(pid).unwrap();
    let (side, mut agg) = strobe_aggregate::pipeline(1 << 16);
    let cfg = SamplerConfig {
        rate_hz: 1000.0,
        include_idle,
        subprocesses: true,
        duration: Some(Duration::from_secs(30)),
        ..SamplerConfig::default()
    };
    let handle = start(target, None, cfg, side).unwrap();
    let stats = handle.stats();
    let mut announced = Vec::new();
    let mut roots = Vec::new();
    while !handle.is_finished() {
        drain(&mut agg, &mut roots);
        announced.extend(stats.take_new_processes());
        if done(&announced, &handle) {
            break;
        }
        // Polling the counters, as `strobe record` does; not a wait for anything to happen.
        std::thread::sleep(Duration::from_millis(2));
    }
    handle.stop();
    let summary = handle.join().unwrap();
    announced.extend(stats.take_new_processes());
    while !agg.finished() {
        drain(&mut agg, &mut roots);
    }
    Recording {
        summary,
        announced,
        roots,
    }
}

fn drain(agg: &mut AggregatorSide, roots: &mut Vec<String>) {
    let d = agg.drain().unwrap();
    for s in d.samples {
        let root = d.tables.stack(s.stack).first().copied().unwrap();
        let f = d.tables.frame(root).unwrap();
        roots.push(d.tables.str(f.function).to_string());
    }
}

#[test]
fn a_subprocess_is_announced_with_its_first_recorded_sample() {
    assert!(
        std::path::Path::new(&python()).exists(),
        "the registry's pyenv 3.12 is required for this test and missing"
    );
    let family = Ready::python_script(&python(), "announce", SCRIPT, &[]);
    let pid = family.pid();
    let child: i32 = family.said.parse().unwrap();
    let parent_root = format!("process {pid}");
    let child_root = format!("process {child}");

    // Idle threads left out: ends 50 rounds after a round read both processes (one Python
    // thread each).
    let mut both_read_at = None;
    let hidden = record(pid, false, |_, handle| {
        let s = handle.stats().snapshot();
        if s.threads == 2 {
            both_read_at.get_or_insert(s.rounds);
        }
        both_read_at.is_some_and(|at| s.rounds >= at + 50)
    });
    assert!(
        both_read_at.is_some(),
        "the child was never read: {:?}",
        hidden.summary
    );
    assert!(
        hidden.announced.iter().all(|p| p.pid != child),
        "the idle child was announced without a sample: {:?}",
        hidden.announced
    );
    assert_eq!(hidden.summary.subprocesses_sampled, 0);
    assert!(hidden.roots.contains(&parent_root));
    assert!(
        hidden.roots.iter().all(|r| *r != child_root),
        "the idle child was recorded"
    );

    // Idle threads kept: ends once the child is announced, and its samples are there.
    let shown = record(pid, true, |announced, _| {
        announced.iter().any(|p| p.pid == child)
    });
    let said: Vec<&NewProcess> = shown.announced.iter().filter(|p| p.pid == child).collect();
    assert_eq!(said.len(), 1, "{:?}", shown.announced);
    assert_eq!(said[0].error, None);
    assert_eq!(shown.summary.subprocesses_sampled, 1);
    assert!(
        shown.roots.contains(&child_root),
        "announced but not recorded: {:?}",
        shown.roots
    );
}

/// The target of the `exec` test, run as `SCRIPT` (the parent), `SCRIPT child` and
/// `SCRIPT after-exec`. The parent prints `READY <child pid>` once the child runs, and on a
/// line of its stdin tells the child to `exec` the interpreter again.
const EXEC_SCRIPT: &str = r#"import os, subprocess, sys

def before_exec():
    sys.stdout.write("r")
    sys.stdout.flush()
    sys.stdin.readline()

def after_exec():
    sys.stdin.readline()

if sys.argv[1:] == ["child"]:
    before_exec()
    os.execv(sys.executable, [sys.executable, __file__, "after-exec"])
elif sys.argv[1:] == ["after-exec"]:
    after_exec()
else:
    child = subprocess.Popen([sys.executable, __file__, "child"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    child.stdout.read(1)
    sys.stdout.write("READY %d\n" % child.pid)
    sys.stdout.flush()
    sys.stdin.readline()
    child.stdin.write(b"go\n")
    child.stdin.flush()
    sys.stdin.readline()
"#;

#[test]
fn a_subprocess_that_execs_its_interpreter_again_is_announced_again() {
    let python = strobe_testkit::interpreters::debian_3_11().require().path();
    let python = python.to_str().unwrap();
    let script = std::env::temp_dir().join(format!("strobe-exec-again-{}.py", std::process::id()));
    std::fs::write(&script, EXEC_SCRIPT).unwrap();
    let mut family = Ready::start(
        Command::new(python).arg(&script).stdin(Stdio::piped()),
        "exec-again",
    );
    let mut stdin = family.child.stdin.take().unwrap();
    let pid = family.pid();
    let child: i32 = family.said.parse().unwrap();
    let of_child = |announced: &[NewProcess], ending: &str| {
        announced
            .iter()
            .any(|p| p.pid == child && p.command.ends_with(ending))
    };
    let mut told = false;
    let seen = record(pid, true, |announced, _| {
        if !told && of_child(announced, " child") {
            // Sampled as it was started: now it replaces its program.
            stdin.write_all(b"go\n").unwrap();
            stdin.flush().unwrap();
            told = true;
        }
        of_child(announced, " after-exec")
    });
    drop(stdin);
    drop(family);
    let _ = std::fs::remove_file(&script);
    assert!(told, "the child was never announced: {:?}", seen.announced);
    assert!(
        of_child(&seen.announced, " after-exec"),
        "the child's new program was never announced: {:?}",
        seen.announced
    );
    // Once per program: the one it was started with and the one it ran next (and maybe the
    // parent's, if the scout read the child between its fork and its first exec).
    let programs = seen.announced.iter().filter(|p| p.pid == child).count() as u64;
    assert!(programs >= 2, "{:?}", seen.announced);
    assert_eq!(seen.summary.subprocesses_sampled, programs);
}
