//! What a target must still do while `strobe record --native` stops its running threads for
//! each sample (ptrace), against a real interpreter (`native_held.py`, pyenv 3.12.1): receive
//! its signals (handlers, an interval timer, SIGCHLD of its children), stop and continue with
//! the process under `kill -STOP`/`kill -CONT`, run on untraced when strobe is killed, start
//! and exit threads (each collected once it exited), and, launched by strobe, exit with its
//! status. (A version that kept the threads seized between samples failed the launched case:
//! a SIGALRM it held until its next round reached the target after Python had reset its
//! handler at exit.)

use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{strobe_bin, Announced, Interp, Script};
use crate::native_record::merged_counts;

/// Longest wait for a state of the target that a poll of the kernel waits for.
const STATE_TIMEOUT: Duration = Duration::from_secs(30);

/// `strobe record --native --rate 1000` of `pid` until it exits (or 120 s), started in the
/// background; stderr piped.
fn record(pid: i32, out: &std::path::Path) -> Child {
    Command::new(strobe_bin())
        .args(["record", "--native", "--rate", "1000", "--duration", "120"])
        .args(["--pid", &pid.to_string(), "-o", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("could not run strobe")
}

/// Wait for strobe to end, assert it succeeded, return its stderr.
fn finished(strobe: Child) -> String {
    let out = strobe.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "strobe failed: {stderr}");
    stderr
}

/// The target's next line.
/// The target exits successfully, and the recording ends with merged native stacks.
fn both_end_well(mut target: Announced, strobe: Child) {
    let status = target.ready.child.wait().unwrap();
    assert!(status.success(), "the target ended with {status}");
    let stderr = finished(strobe);
    let (merged, all) = merged_counts(&stderr);
    assert!(merged > 0, "{merged} of {all}\n{stderr}");
}

fn next_line(target: &mut Announced) -> String {
    let mut line = String::new();
    target.ready.stdout.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

/// `key=N` of a line of words.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .parse()
        .unwrap()
}

/// Per thread of `pid`: (thread id, state letter, `TracerPid`).
fn threads(pid: i32) -> Vec<(i32, char, i32)> {
    let mut v = Vec::new();
    for tid in strobe_testkit::procfs::tasks(pid) {
        let dir = format!("/proc/{pid}/task/{tid}");
        let (Ok(stat), Ok(status)) = (
            std::fs::read_to_string(format!("{dir}/stat")),
            std::fs::read_to_string(format!("{dir}/status")),
        ) else {
            continue;
        };
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next())
            .unwrap_or('?');
        let tracer = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1);
        v.push((tid, state, tracer));
    }
    v
}

/// Poll the kernel until `done` says the target's threads are as wanted.
fn wait_for(pid: i32, what: &str, done: impl Fn(&[(i32, char, i32)]) -> bool) {
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        let now = threads(pid);
        if done(&now) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the target's threads are not {what} after {STATE_TIMEOUT:?}: {now:?}"
        );
        // A poll, not a guess: the loop ends as soon as the kernel says so.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Ask the `stdin` mode target whether its workers still compute: "ALIVE N" with N > 0.
fn assert_alive(target: &mut Announced) {
    let stdin = target.ready.child.stdin.as_mut().unwrap();
    stdin.write_all(b"?\n").unwrap();
    stdin.flush().unwrap();
    let line = next_line(target);
    let n: u64 = line
        .strip_prefix("ALIVE ")
        .unwrap_or_else(|| panic!("the target said {line:?}"))
        .parse()
        .unwrap();
    assert!(n > 0, "{line}");
}

fn start(mode: &str) -> (Announced, Script) {
    let script = Script::new(&Interp::pyenv("3.12.1"), "native_held.py");
    let target = Announced::start(script.command().arg(mode));
    (target, script)
}

#[test]
fn a_target_recorded_natively_gets_its_signals() {
    let (mut target, _script) = start("signals");
    let dir = crate::harness::TempDir::new();
    let out = dir.path().join("signals.txt");
    let strobe = record(target.pid, &out);
    let done = next_line(&mut target);
    assert!(done.starts_with("DONE "), "the target said {done:?}");
    // Every SIGUSR1 was handled (the target waits for each before sending the next), the
    // timer's and the children's signals came, and every child was reaped with its status.
    assert_eq!(field(&done, "usr1"), 200, "{done}");
    assert!(field(&done, "alarms") > 0, "{done}");
    assert!(field(&done, "chld") > 0, "{done}");
    assert_eq!(field(&done, "children_ok"), 20, "{done}");
    both_end_well(target, strobe);
}

#[test]
fn a_target_recorded_natively_stops_and_continues() {
    let (mut target, _script) = start("stdin");
    let pid = target.pid;
    let dir = crate::harness::TempDir::new();
    let out = dir.path().join("stopcont.txt");
    let strobe = record(pid, &out);
    assert_eq!(next_line(&mut target), "TRACED");
    for _ in 0..2 {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGSTOP,
        )
        .unwrap();
        // Every thread stopped: `T`, or `t` for a thread strobe holds (in a group-stop it
        // leaves in place).
        wait_for(pid, "all stopped", |t| {
            !t.is_empty() && t.iter().all(|&(_, s, _)| s == 'T' || s == 't')
        });
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGCONT,
        )
        .unwrap();
        assert_alive(&mut target);
    }
    target.close_stdin();
    both_end_well(target, strobe);
}

#[test]
fn a_killed_strobe_leaves_the_target_running_and_untraced() {
    let (mut target, _script) = start("stdin");
    let pid = target.pid;
    let dir = crate::harness::TempDir::new();
    let out = dir.path().join("killed.txt");
    let mut strobe = record(pid, &out);
    assert_eq!(next_line(&mut target), "TRACED");
    strobe.kill().unwrap();
    strobe.wait().unwrap();
    // The kernel detached every thread when strobe died: none traced, none stopped.
    let now = threads(pid);
    assert!(
        now.iter()
            .all(|&(_, s, tracer)| tracer == 0 && s != 't' && s != 'T'),
        "{now:?}"
    );
    assert_alive(&mut target);
    target.close_stdin();
    let status = target.ready.child.wait().unwrap();
    assert!(status.success(), "the target ended with {status}");
}

#[test]
fn threads_that_start_and_exit_while_recorded_natively_are_collected() {
    let (mut target, _script) = start("churn");
    let dir = crate::harness::TempDir::new();
    let out = dir.path().join("churn.txt");
    let strobe = record(target.pid, &out);
    let done = next_line(&mut target);
    assert!(done.starts_with("DONE "), "the target said {done:?}");
    assert!(field(&done, "threads") >= 400, "{done}");
    // Every exited thread was collected: only the main thread is left.
    assert_eq!(field(&done, "tasks"), 1, "{done}");
    both_end_well(target, strobe);
}

/// `strobe record --native -- python ...`: strobe is both the target's parent and the tracer
/// of its busy main thread, and checks every 10 ms whether the child exited. That check must
/// not take a ptrace stop of the main thread (a signal's) for an exit: the target gets all
/// its signals, finishes, and its exit status is strobe's.
#[test]
fn a_launched_target_recorded_natively_gets_its_signals_and_exits() {
    let script = Script::new(&Interp::pyenv("3.12.1"), "native_held.py");
    let dir = crate::harness::TempDir::new();
    let out = dir.path().join("launched.txt");
    let mut args = vec!["record", "--native", "--rate", "1000", "--duration", "120"];
    args.extend(["-o", out.to_str().unwrap(), "--"]);
    args.extend(script.command.iter().map(String::as_str));
    args.push("signals");
    let run = Command::new(strobe_bin())
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("could not run strobe");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let done = stdout
        .lines()
        .find(|l| l.starts_with("DONE "))
        .unwrap_or_else(|| panic!("the target said {stdout:?}\n{stderr}"));
    assert_eq!(field(done, "usr1"), 200, "{done}");
    assert_eq!(field(done, "children_ok"), 20, "{done}");
    let (merged, all) = merged_counts(&stderr);
    assert!(merged > 0, "{merged} of {all}\n{stderr}");
}
