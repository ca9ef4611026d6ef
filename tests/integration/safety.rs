//! Production safety under hostile targets: thread churn, 500 threads, a 5,000-frame
//! recursion, forking, exec and SIGKILL while `strobe record` samples them (attached and
//! launched). Each run must end by itself (bounded by `--duration` and a watchdog), exit with a
//! status that says what happened, write a complete output with the expected stacks, report
//! failed rounds in the summary, and stay within a memory bound.
//!
//! Memory: strobe runs under GNU `/usr/bin/time -f %M`, which reports the peak resident set
//! (VmHWM, from `wait4`'s rusage) of exactly that process, including the final output write.
//! The bound, [`RSS_BOUND_KB`], is 200 MB: a debug build of strobe recording these targets
//! peaks around 40 MB (binary, sample queue of at most 64 Ki samples, interned tables); the
//! bound is five times that, low enough that per-sample growth (a leak of even 100 bytes per
//! thread-sample over 500 threads at 100 Hz) or a giant allocation from a hostile length would
//! break it within one run.

use crate::harness::{strobe_bin, Announced, Interp, TempDir};
use crate::record::{parse_collapsed, Parsed, Script};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Peak RSS allowed for strobe (kB); see the module documentation.
pub const RSS_BOUND_KB: u64 = 200 * 1024;
/// No strobe run in these tests may take longer than this (they ask for a few seconds).
pub const WATCHDOG: Duration = Duration::from_secs(90);
const SCRIPT: &str = "safety_stress.py";

pub fn py312() -> Interp {
    Interp::pyenv("3.12.1")
}

/// A running `safety_stress.py` for attach tests; its stdin closing ends it (SECONDS = 0).
pub struct Stress {
    process: Announced,
    pub pid: i32,
    pub script: Script,
}

impl Stress {
    /// Start `mode` (with `arg`) and wait for its READY line; runs until [`Stress::end`].
    pub fn start(interp: &Interp, mode: &str, seconds: &str, arg: Option<&str>) -> Stress {
        let script = Script::new(interp, SCRIPT);
        let process = Announced::start(script.command().args([mode, seconds]).args(arg));
        Stress {
            pid: process.pid,
            process,
            script,
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.process.ready.child.try_wait().unwrap().is_none()
    }

    /// Close stdin (the target winds down and exits) and return the rest of its stdout.
    pub fn end(&mut self) -> String {
        self.process.close_stdin();
        let mut rest = String::new();
        let _ = self.process.ready.stdout.read_to_string(&mut rest);
        let _ = self.process.ready.child.wait();
        rest
    }
}

/// How a measured strobe run ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub peak_rss_kb: u64,
}

impl Run {
    /// No panic, one summary, the memory bound held.
    pub fn check_sane(&self) {
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        assert!(
            self.peak_rss_kb > 0 && self.peak_rss_kb < RSS_BOUND_KB,
            "strobe peaked at {} kB (bound {RSS_BOUND_KB} kB): {}",
            self.peak_rss_kb,
            self.stderr
        );
    }

    /// The summary's failed-round count (0 when the summary has no such line).
    pub fn failed_rounds(&self) -> u64 {
        self.stderr
            .lines()
            .find_map(|l| {
                l.strip_prefix("strobe: ")?
                    .split_once(" sampling rounds failed")
                    .map(|(n, _)| n.replace(',', "").parse().unwrap())
            })
            .unwrap_or(0)
    }

    /// The summary's "· N errors" figure.
    pub fn summary_errors(&self) -> u64 {
        let line = self
            .stderr
            .lines()
            .find(|l| l.starts_with("strobe: recorded "))
            .unwrap_or_else(|| panic!("no summary: {}", self.stderr));
        line.split(" · ")
            .find_map(|p| p.strip_suffix(" errors"))
            .map_or(0, |n| n.replace(',', "").parse().unwrap())
    }
}

/// A strobe run under `/usr/bin/time`, started; `on_recording` runs once strobe printed its
/// "recording" line (sampling has begun). Fails the test if strobe outlives [`WATCHDOG`].
pub fn measured(args: &[&str], on_recording: impl FnOnce(u32)) -> Run {
    assert!(
        Path::new("/usr/bin/time").is_file(),
        "GNU time is required: run .ci/provision.sh"
    );
    let dir = TempDir::new();
    let rss_file = dir.path().join("rss");
    let mut child = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(strobe_bin())
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LC_ALL", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let err_reader = std::thread::spawn(move || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if line.starts_with("strobe: recording process") {
                let _ = tx.send(());
            }
            all.push_str(&line);
        }
        all
    });
    let deadline = Instant::now() + WATCHDOG;
    let time_pid = child.id();
    // The recording line, or strobe ending without one (the sender is dropped).
    if rx.recv_timeout(WATCHDOG).is_ok() {
        on_recording(time_pid);
    }
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("strobe {args:?} did not end within {WATCHDOG:?}");
        }
        // Polling for the end of a process (with a deadline), not synchronisation.
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = err_reader.join().unwrap();
    let stdout = out_reader.join().unwrap();
    let rss = std::fs::read_to_string(&rss_file).unwrap_or_default();
    // GNU time writes "Command exited with non-zero status N" / "Command terminated by
    // signal N" before the figure when strobe did not exit 0: the figure is the last line.
    let peak_rss_kb = rss
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RSS figure from time: {rss:?}; stderr: {stderr}"));
    Run {
        code: status.code(),
        stdout,
        stderr,
        peak_rss_kb,
    }
}

/// `function (file:line)` of a marker in the stress script.
fn label(script: &Script, function: &str, mark: &str) -> String {
    script.label(function, mark)
}

/// Record an attached stress target for `seconds` into collapsed stacks (idle included).
fn record_attached(target: &Stress, seconds: &str, out: &Path) -> Run {
    let pid = target.pid.to_string();
    let run = measured(
        &[
            "record",
            "--pid",
            &pid,
            "--idle",
            "--duration",
            seconds,
            "--rate",
            "200",
            "-o",
            out.to_str().unwrap(),
        ],
        |_| {},
    );
    run.check_sane();
    run
}

/// Record a launched stress script (`mode seconds arg`) into collapsed stacks.
fn record_launched(script: &Script, mode: &[&str], out: &Path) -> Run {
    record_launched_for(script, mode, out, "60")
}

/// Same, ending after `seconds` at the latest.
fn record_launched_for(script: &Script, mode: &[&str], out: &Path, seconds: &str) -> Run {
    let mut args = vec![
        "record",
        "--duration",
        seconds,
        "--idle",
        "--rate",
        "200",
        "-o",
        out.to_str().unwrap(),
        "--",
    ];
    args.extend(script.command.iter().map(String::as_str));
    args.extend_from_slice(mode);
    let run = measured(&args, |_| {});
    run.check_sane();
    run
}

/// Threads started and joined a thousand times a second, attached and launched: the walker
/// meets threads half set up and half torn down; those rounds are counted, never fatal.
#[test]
fn thread_churn_is_recorded_with_failed_rounds_counted() {
    let mut target = Stress::start(&py312(), "churn", "0", None);
    let dir = TempDir::new();
    let out = dir.path().join("churn.txt");
    let run = record_attached(&target, "2", &out);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // The summary's error figure and its breakdown agree.
    assert_eq!(run.summary_errors(), run.failed_rounds(), "{}", run.stderr);
    let parsed = parse_collapsed(&out);
    let churn = label(&target.script, "churn.<locals>.spawner", "churn");
    assert!(
        parsed.stacks.iter().any(|(s, _)| s.contains(&churn)),
        "no spawner stacks: {parsed:?}"
    );
    let rest = target.end();
    let churned: u64 = rest
        .lines()
        .find_map(|l| l.strip_prefix("CHURNED "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("the target did not report its churn: {rest:?}"));
    // Two seconds of churn at well over 500 threads a second, even on a loaded machine.
    assert!(churned >= 1000, "only {churned} threads were churned");

    // Launched: the command's status (0) is strobe's.
    let out = dir.path().join("churn-launch.txt");
    let run = record_launched(&target.script, &["churn", "1.5"], &out);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("exited with status 0"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("CHURNED "), "{}", run.stdout);
    assert!(!parse_collapsed(&out).stacks.is_empty());
}

/// 500 live threads: every round reads all of them, so each parked thread weighs as much as
/// the main thread, and the parked stacks weigh 500 times the main thread's.
#[test]
fn five_hundred_threads_are_all_sampled() {
    let mut target = Stress::start(&py312(), "threads", "0", Some("500"));
    let dir = TempDir::new();
    let out = dir.path().join("threads.txt");
    let run = record_attached(&target, "2", &out);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let parsed = parse_collapsed(&out);
    // The main thread waits for stdin in `until`, called from `many_threads`.
    let main_w: f64 = parsed
        .stacks
        .iter()
        .filter(|(s, _)| {
            s.last().is_some_and(|f| {
                f.starts_with("until (") && s.iter().any(|f| f.starts_with("many_threads ("))
            })
        })
        .map(|(_, w)| w)
        .sum();
    let parked_w: f64 = parsed
        .stacks
        .iter()
        .filter(|(s, _)| {
            s.iter()
                .any(|f| f.starts_with("many_threads.<locals>.parked ("))
        })
        .map(|(_, w)| w)
        .sum();
    assert!(main_w > 0.0, "no main-thread samples: {parsed:?}");
    let ratio = parked_w / main_w;
    assert!(
        (ratio - 500.0).abs() < 0.5,
        "parked threads weigh {ratio:.2} times the main thread, expected 500"
    );
    target.end();
}

/// A 5,000-frame recursion is recorded whole (not truncated), attached and launched.
#[test]
fn five_thousand_frame_recursion_is_recorded_whole() {
    let target = Stress::start(&py312(), "deep", "0", Some("5000"));
    let dir = TempDir::new();
    let out = dir.path().join("deep.txt");
    let run = record_attached(&target, "2", &out);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let recurse = label(&target.script, "recurse", "recurse");
    let bottom = label(&target.script, "recurse", "bottom");
    let check = |parsed: &Parsed| {
        let deepest = parsed
            .stacks
            .iter()
            .filter(|(s, _)| s.contains(&bottom))
            .map(|(s, _)| s.iter().filter(|f| **f == recurse).count())
            .max()
            .unwrap_or(0);
        // recurse(5000) … recurse(2) call on; recurse(1) is the bottom frame.
        assert_eq!(deepest, 4999, "deepest recursion recorded: {deepest}");
    };
    check(&parse_collapsed(&out));
    drop(target);

    let out = dir.path().join("deep-launch.txt");
    let script = Script::new(&py312(), SCRIPT);
    let run = record_launched(&script, &["deep", "1.5", "5000"], &out);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let recurse = label(&script, "recurse", "recurse");
    let bottom = label(&script, "recurse", "bottom");
    let parsed = parse_collapsed(&out);
    let deepest = parsed
        .stacks
        .iter()
        .filter(|(s, _)| s.contains(&bottom))
        .map(|(s, _)| s.iter().filter(|f| **f == recurse).count())
        .max()
        .unwrap_or(0);
    assert_eq!(deepest, 4999, "launched: deepest recursion recorded");
}

/// A target forking a child every few ms: strobe keeps sampling the parent (children are not
/// followed) and ends when the parent exits.
#[test]
fn forking_target_is_recorded() {
    let script = Script::new(&py312(), SCRIPT);
    let dir = TempDir::new();
    let out = dir.path().join("fork.txt");
    let run = record_launched(&script, &["fork", "1.5"], &out);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let parsed = parse_collapsed(&out);
    let parent = label(&script, "forker", "fork-parent");
    assert!(
        parsed.stacks.iter().any(|(s, _)| s.contains(&parent)),
        "no parent stacks: {parsed:?}"
    );
}

/// A target that execs into `/bin/sleep` mid-recording: the Python interpreter is gone. strobe
/// notices (the rounds fail and the process's auxiliary vector changed), ends the recording
/// long before its --duration, counts the failed rounds and keeps the samples from before.
#[test]
fn exec_mid_recording_keeps_earlier_samples_and_counts_failures() {
    let script = Script::new(&py312(), SCRIPT);
    let dir = TempDir::new();
    // Attached: READY comes before a one-second spin, then the exec.
    let target = Stress::start(&py312(), "exec", "1", Some("/bin/sleep"));
    let out = dir.path().join("exec.txt");
    let started = Instant::now();
    let run = record_attached(&target, "60", &out);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{}",
        run.stderr
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.failed_rounds() > 0, "{}", run.stderr);
    let execed = format!("process {} replaced its program (exec)", target.pid);
    assert!(run.stderr.contains(&execed), "{}", run.stderr);
    let spin = label(&target.script, "spin", "spin");
    assert!(parse_collapsed(&out).has_suffix(&[spin]));
    drop(target);

    // Launched: the command lives on as `sleep`; strobe says so and leaves it running.
    let out = dir.path().join("exec-launch.txt");
    let started = Instant::now();
    let run = record_launched_for(&script, &["exec", "1", "/bin/sleep"], &out, "60");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{}",
        run.stderr
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.failed_rounds() > 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("replaced its program (exec)"),
        "{}",
        run.stderr
    );
    let spin = label(&script, "spin", "spin");
    assert!(parse_collapsed(&out).has_suffix(&[spin]));
    let still = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("strobe: the command (process "))
        .and_then(|l| l.split(')').next())
        .and_then(|p| p.parse::<i32>().ok())
        .unwrap_or_else(|| panic!("no 'still running' line: {}", run.stderr));
    let _ = kill(Pid::from_raw(still), Signal::SIGKILL);
}

/// The target is SIGKILLed mid-recording: strobe notices, ends at once (long before its
/// --duration), writes what it had, and says the process exited.
#[test]
fn target_sigkilled_mid_recording_ends_cleanly() {
    let target = Stress::start(&py312(), "threads", "0", Some("20"));
    let dir = TempDir::new();
    let out = dir.path().join("killed.txt");
    let pid = target.pid;
    let pid_s = pid.to_string();
    let started = Instant::now();
    let run = measured(
        &[
            "record",
            "--pid",
            &pid_s,
            "--idle",
            "--duration",
            "60",
            "-o",
            out.to_str().unwrap(),
        ],
        |_| {
            kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        },
    );
    run.check_sane();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "strobe did not notice the exit"
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("process {pid} exited")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("wrote "), "{}", run.stderr);
    // The file is complete (every line parses); it may hold few samples.
    parse_collapsed(&out);
    drop(target);

    // Launched and killed: the status says so (128 + 9).
    let script = Script::new(&py312(), SCRIPT);
    let out = dir.path().join("killed-launch.txt");
    let mut args = vec!["record", "--idle", "-o", out.to_str().unwrap(), "--"];
    args.extend(script.command.iter().map(String::as_str));
    args.extend(["threads", "30", "20"]);
    let run = measured(&args, |time_pid| {
        // time → strobe → python: the command is strobe's only child.
        let strobe = only_child(time_pid);
        kill(Pid::from_raw(only_child(strobe) as i32), Signal::SIGKILL).unwrap();
    });
    run.check_sane();
    assert_eq!(run.code, Some(128 + 9), "{}", run.stderr);
    assert!(
        run.stderr.contains("the command was killed by SIGKILL"),
        "{}",
        run.stderr
    );
    parse_collapsed(&out);
}

/// The single child process of `pid` (from /proc/PID/task/*/children).
pub fn only_child(pid: u32) -> u32 {
    let kids = strobe_testkit::procfs::children(pid as i32);
    assert_eq!(kids.len(), 1, "children of {pid}: {kids:?}");
    kids[0] as u32
}
