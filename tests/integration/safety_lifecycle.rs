//! Lifecycle safety: `--blocking` never leaves the target stopped (Ctrl-C, target exit, a
//! sampler panic), a panic in the sampler thread keeps the samples already aggregated, and
//! `top` reports a target that execs away.

use crate::harness::{strobe_bin, Target, TempDir};
use crate::record::{parse_collapsed, spawn_recording, strobe_cmd, Script};
use crate::safety::{py312, Stress};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Output};
use std::time::{Duration, Instant};

/// Every thread of `pid` is untraced (`TracerPid: 0`) and not in a stopped state (`t`/`T`).
pub use strobe_testkit::procfs::assert_not_stopped;

/// `--blocking` record stopped by SIGINT mid-recording: the output is complete, the target is
/// released (not traced, not stopped) and answers.
#[test]
fn blocking_record_interrupted_releases_the_target() {
    let mut target = Target::start(&py312());
    let dir = TempDir::new();
    let out = dir.path().join("int.txt");
    let (mut child, mut err, mut seen) = blocking_recording(target.pid(), "500", &out);
    // Let some frozen rounds happen: wait until the target has been traced at least once
    // (bounded), so SIGINT lands while strobe is freezing it over and over.
    seen_traced(target.pid());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    err.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {seen}");
    assert!(seen.contains("stopped by SIGINT"), "{seen}");
    assert!(!parse_collapsed(&out).stacks.is_empty(), "{seen}");
    assert_not_stopped(target.pid());
    target.ping();
}

/// strobe SIGKILLed while it holds the target frozen (`--blocking`, flat out, so that most of
/// its time is spent with the target stopped, and the kill lands right after the target was
/// seen traced): nothing of strobe runs to release it, and it must not matter: the kernel
/// detaches a dead tracer's tracees, and the target runs on.
#[test]
fn strobe_killed_during_a_freeze_leaves_the_target_running() {
    let mut target = Target::start(&py312());
    let dir = TempDir::new();
    for round in 0..3 {
        let out = dir.path().join(format!("killed-{round}.raw"));
        let (mut child, _err, _seen) = blocking_recording(target.pid(), "1000000", &out);
        assert!(seen_traced(target.pid()), "strobe never froze the target");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{status}"
        );
        // A round trip through the target's main thread: it runs (a stopped target would
        // leave this waiting until the harness's timeout fails the test).
        target.ping();
        assert_not_stopped(target.pid());
    }
}

/// `strobe record --blocking --pid PID --idle --rate RATE -o OUT`, started.
fn blocking_recording(pid: i32, rate: &str, out: &Path) -> (Child, BufReader<ChildStderr>, String) {
    let pid = pid.to_string();
    spawn_recording(&[
        "record",
        "--blocking",
        "--pid",
        &pid,
        "--idle",
        "--rate",
        rate,
        "-o",
        out.to_str().unwrap(),
    ])
}

/// Whether the target was seen traced (frozen by strobe) within 30 s.
fn seen_traced(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !strobe_testkit::procfs::traced(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// `--blocking` record of a target that exits by itself: attached, strobe ends and says so;
/// launched, the command's exit status is strobe's.
#[test]
fn blocking_record_ends_when_the_target_exits() {
    let mut target = Stress::start(&py312(), "threads", "0", Some("8"));
    let dir = TempDir::new();
    let out = dir.path().join("exit.txt");
    let pid = target.pid;
    let (mut child, mut err, mut seen) = blocking_recording(pid, "300", &out);
    target.end();
    err.read_to_string(&mut seen).unwrap();
    assert!(child.wait().unwrap().success(), "{seen}");
    assert!(seen.contains(&format!("process {pid} exited")), "{seen}");
    parse_collapsed(&out);

    let script = Script::new(&py312(), "record_work.py");
    let out = dir.path().join("exit-launch.txt");
    let mut args = vec!["record", "--blocking", "-o", out.to_str().unwrap(), "--"];
    args.extend(script.command.iter().map(String::as_str));
    args.extend(["0.5", "7"]);
    let run = strobe_cmd(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(7), "{stderr}");
    assert!(parse_collapsed(&out).has_suffix(&[script.label("hot", "hot")]));
}

/// Run strobe with the sampler panic hook armed (debug builds; see crates/sampler).
fn record_with_panic(args: &[&str], after: u64) -> Output {
    strobe_cmd(args)
        .env("STROBE_TEST_PANIC_AFTER", after.to_string())
        .output()
        .unwrap()
}

/// The sampler thread panics (test hook) inside a `--blocking` freeze after 40 rounds: strobe
/// reports it as a bug in one error line after the summary, exits 1, still writes the samples
/// of the 40 rounds, and the target is released and answers.
#[test]
fn sampler_panic_keeps_samples_and_releases_the_target() {
    let mut target = Target::start(&py312());
    let dir = TempDir::new();
    let out = dir.path().join("panic.txt");
    let pid = target.pid().to_string();
    let run = record_with_panic(
        &[
            "record",
            "--blocking",
            "--pid",
            &pid,
            "--idle",
            "--rate",
            "200",
            "--duration",
            "60",
            "-o",
            out.to_str().unwrap(),
        ],
        40,
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("strobe: error: the sampler thread stopped unexpectedly")
            && last.contains("test panic requested in sampling round 41"),
        "{stderr}"
    );
    // The summary still counts the 40 rounds (completed or failed) before the panic.
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("strobe: recorded "))
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    let figure = |suffix: &str| -> u64 {
        summary
            .split(" · ")
            .find_map(|p| p.strip_suffix(suffix))
            .map_or(0, |n| n.replace(',', "").parse().unwrap())
    };
    assert_eq!(figure(" samples") + figure(" errors"), 40, "{summary}");
    assert!(
        stderr.contains(&format!("wrote {}", out.display())),
        "{stderr}"
    );
    let parsed = parse_collapsed(&out);
    let main_line = crate::harness::markers(&target.script_here)["main"];
    let leaf = format!("main ({}:{main_line})", target.script_in_target);
    assert!(parsed.has_suffix(&[leaf]), "{parsed:?}");
    assert_not_stopped(target.pid());
    target.ping();

    // Launched, without --blocking: same report; the file has the samples.
    let script = Script::new(&py312(), "record_work.py");
    let out = dir.path().join("panic-launch.txt");
    let mut args = vec!["record", "--rate", "200", "-o", out.to_str().unwrap(), "--"];
    args.extend(script.command.iter().map(String::as_str));
    args.push("3");
    let run = record_with_panic(&args, 40);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopped unexpectedly"), "{stderr}");
    assert!(parse_collapsed(&out).has_suffix(&[script.label("hot", "hot")]));
}

/// `strobe top` on a target that execs into `/bin/sleep`: it says so instead of hanging or
/// crashing, and quits cleanly on `q`.
#[test]
fn top_survives_a_target_that_execs() {
    assert!(
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
        "tmux is required: run .ci/provision.sh"
    );
    let target = Stress::start(&py312(), "exec", "1.5", Some("/bin/sleep"));
    let dir = TempDir::new();
    let socket = format!("strobe-safety-{}", std::process::id());
    let exit_file = dir.path().join("exit");
    let script = format!(
        "'{}' top --pid {}\necho $? > {d}/exit.tmp && mv {d}/exit.tmp {d}/exit\nexec sleep 3600\n",
        strobe_bin().display(),
        target.pid,
        d = dir.path().display()
    );
    std::fs::write(dir.path().join("run.sh"), script).unwrap();
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap()
    };
    struct Kill<'a>(&'a dyn Fn(&[&str]) -> Output);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["kill-server"]);
        }
    }
    let run_sh = format!("sh {}/run.sh", dir.path().display());
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "100",
        "-y",
        "30",
        &run_sh,
    ]);
    assert!(out.status.success(), "{out:?}");
    let _kill = Kill(&tmux);
    let screen =
        || String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned();
    let wait_for = |what: &str, cond: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = screen();
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{s}"
            );
            // Polling the screen with a deadline, not synchronisation.
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // First the Python stacks, then (after the exec) the end of sampling, with the reason.
    wait_for("the spinning function", &|s| s.contains("spin"));
    let exe = format!("/proc/{}/exe", target.pid);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_link(&exe).is_ok_and(|p| !p.ends_with("sleep")) {
        assert!(Instant::now() < deadline, "the target did not exec");
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = wait_for("the exec message", &|s| {
        s.contains(&format!("process {} replaced its program", target.pid))
    });
    assert!(!s.contains("panicked"), "{s}");
    tmux(&["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !exit_file.exists() {
        assert!(Instant::now() < deadline, "top did not quit:\n{}", screen());
        std::thread::sleep(Duration::from_millis(50));
    }
    let code = std::fs::read_to_string(&exit_file).unwrap();
    assert_eq!(code.trim(), "0", "{}", screen());
    drop(target);
}
