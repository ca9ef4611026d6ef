//! `strobe top` driven in a real terminal: tmux runs the binary, `send-keys` types, and
//! `capture-pane` reads the screen. Every wait polls for a condition with a deadline.
//!
//! The target, `tests/targets/top_split.py`, spends about 75% of its main thread's time in
//! `heavy_work` and 25% in `light_work` (by the wall clock), and with `--until-eof` exits when
//! its stdin closes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{strobe_bin, Announced, Interp, Script, TempDir};
use strobe_testkit::procfs;

/// Longest wait for anything to appear on screen (debug builds and a loaded machine).
const SCREEN_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
const SCRIPT: &str = "top_split.py";

fn script_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/targets")
        .join(SCRIPT)
}

/// A running `top_split.py`; exits when its stdin closes, killed on drop.
struct SplitTarget {
    process: Announced,
    pid: i32,
    _script: Script,
}

impl SplitTarget {
    fn start(interp: &Interp) -> SplitTarget {
        let script = Script::new(interp, SCRIPT);
        let process = Announced::start(script.command().arg("--until-eof"));
        SplitTarget {
            pid: process.pid,
            process,
            _script: script,
        }
    }

    /// Close stdin: the target exits by itself.
    fn end(&mut self) {
        self.process.close_stdin();
    }
}

/// A private tmux server with one 100×30 session running `strobe top ARGS`, then a shell
/// snippet that records strobe's exit status and the terminal modes afterwards.
struct Tmux {
    socket: String,
    dir: TempDir,
}

impl Tmux {
    fn start(strobe_args: &[String]) -> Tmux {
        Tmux::start_env(&[], strobe_args)
    }

    /// [`Tmux::start`] with `NAME=value` pairs in strobe's environment.
    fn start_env(env: &[&str], strobe_args: &[String]) -> Tmux {
        assert!(
            Command::new("tmux")
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success()),
            "tmux is required for the top tests: run .ci/provision.sh"
        );
        static N: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "strobe-top-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let dir = TempDir::new();
        let quoted: Vec<String> = std::iter::once("env".to_string())
            .chain(env.iter().map(|e| e.to_string()))
            .chain(std::iter::once(strobe_bin().display().to_string()))
            .chain(strobe_args.iter().cloned())
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let d = dir.path().display();
        // After strobe: its status, the terminal modes, a marker on the normal screen, and a
        // process that keeps the pane open for reading.
        let script = format!(
            "{}\necho $? > {d}/exit.tmp && mv {d}/exit.tmp {d}/exit\nstty -a > {d}/stty\n\
             echo SHELL-IS-BACK\nexec sleep 3600\n",
            quoted.join(" ")
        );
        std::fs::write(dir.path().join("run.sh"), script).unwrap();
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "top",
            ])
            .args(["-x", "100", "-y", "30"])
            .arg(format!("sh {d}/run.sh"))
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        Tmux { socket, dir }
    }

    fn tmux(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        out
    }

    fn screen(&self) -> String {
        String::from_utf8(self.tmux(&["capture-pane", "-p", "-t", "top"]).stdout).unwrap()
    }

    /// Type keys (tmux key names: `Enter`, `Escape`, or literal text with `-l`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    fn literal(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "top", "-l", text]);
    }

    fn format(&self, f: &str) -> String {
        let out = self.tmux(&["display-message", "-p", "-t", "top", f]);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Polls the screen until `cond` holds; fails with the last screen after the deadline.
    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen shows:\n{s}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// strobe's process id (the pane runs `sh run.sh`; strobe is its child).
    fn strobe_pid(&self) -> i32 {
        let shell = self.format("#{pane_pid}");
        let out = Command::new("pgrep")
            .args(["-P", &shell, "-x", "strobe"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Sends SIGTERM to strobe.
    fn sigterm_strobe(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.strobe_pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }

    /// Waits until strobe's sampler thread has run `rounds` times (its scheduler time slices,
    /// `/proc/PID/task/TID/schedstat`: one per round, as it sleeps between rounds), so that
    /// the target has been sampled that often whatever the view shows.
    fn wait_for_rounds(&self, rounds: u64) {
        procfs::wait_for_runs(self.strobe_pid(), "strobe-sampler", rounds, SCREEN_TIMEOUT);
    }

    /// strobe's exit status, once the run script has written it.
    fn wait_exit(&self) -> i32 {
        let path = self.dir.path().join("exit");
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "strobe did not exit; the screen shows:\n{}",
                self.screen()
            );
            std::thread::sleep(POLL);
        }
        std::fs::read_to_string(path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// After strobe exited: the pane is back on the normal screen with a visible cursor, and
    /// the terminal is in cooked mode (canonical input, echo).
    fn assert_restored(&self) {
        self.wait_for("the shell after strobe", |s| s.contains("SHELL-IS-BACK"));
        assert_eq!(
            self.format("#{alternate_on}"),
            "0",
            "still on the alternate screen"
        );
        assert_eq!(self.format("#{cursor_flag}"), "1", "cursor still hidden");
        let stty = std::fs::read_to_string(self.dir.path().join("stty")).unwrap();
        let flags: Vec<&str> = stty.split_whitespace().collect();
        for mode in ["icanon", "echo", "isig", "icrnl", "opost"] {
            assert!(flags.contains(&mode), "{mode} not restored: {stty}");
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The row of the table whose function column starts with `name`: its numbers.
fn row_numbers(screen: &str, name: &str) -> Option<Vec<f64>> {
    let line = screen
        .lines()
        .find(|l| l.split_whitespace().nth(4).is_some_and(|f| f == name))?;
    line.split_whitespace()
        .take(4)
        .map(|v| v.trim_end_matches('s').parse().ok())
        .collect()
}

/// Names in the function column, top to bottom.
fn table_order(screen: &str) -> Vec<String> {
    screen
        .lines()
        .skip_while(|l| !l.contains("Function (file)"))
        .skip(1)
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let nums: Vec<&str> = w.by_ref().take(4).collect();
            (nums.len() == 4 && nums[0].parse::<f64>().is_ok())
                .then(|| w.next().map(str::to_string))
                .flatten()
        })
        .collect()
}

/// The cumulative own times of heavy_work and light_work once there are enough samples.
fn split_is_plausible(screen: &str) -> bool {
    let (Some(heavy), Some(light)) = (
        row_numbers(screen, "heavy_work"),
        row_numbers(screen, "light_work"),
    ) else {
        return false;
    };
    // Columns: %Own %Total (last interval) OwnTime TotalTime (since start).
    let (h, l) = (heavy[2], light[2]);
    if h + l < 5.0 {
        return false;
    }
    // 5 s at 100 Hz is ~500 samples: a standard error of 0.02 on an idle machine. On a loaded
    // one (the suite plus a busy loop on the other CPU) the sampler misses deadlines and the
    // next sample carries their weight, so fewer, heavier samples decide the split and the
    // error grows; the bounds allow for that while still failing a sampler that aliases with
    // the 40 ms cycle (which would put the split near 0 or 1).
    let share = h / (h + l);
    assert!(
        (0.58..=0.90).contains(&share),
        "heavy_work has {share:.2} of the time, expected about 0.75:\n{screen}"
    );
    // The last interval alone (about 100 samples) is noisier.
    assert!(
        (45.0..=97.0).contains(&heavy[0]) && (3.0..=55.0).contains(&light[0]),
        "implausible interval percentages:\n{screen}"
    );
    true
}

fn top_args(pid: i32) -> Vec<String> {
    vec!["top".into(), "--pid".into(), pid.to_string()]
}

#[test]
fn top_shows_the_split_sorts_filters_and_quits_cleanly_on_3_12() {
    let target = SplitTarget::start(&Interp::pyenv("3.12.1"));
    let tmux = Tmux::start(&top_args(target.pid));
    let screen = tmux.wait_for("both functions with enough samples", split_is_plausible);
    assert!(screen.contains(&format!("pid {}", target.pid)), "{screen}");
    assert!(screen.contains("Python 3.12.1"), "{screen}");
    assert_eq!(tmux.format("#{alternate_on}"), "1");
    let order = table_order(&screen);
    assert_eq!(&order[..2], ["heavy_work", "light_work"], "{screen}");

    // Sort by name, then reverse it.
    tmux.literal("n");
    let screen = tmux.wait_for("sorted by name", |s| s.contains("sort name▲"));
    assert_eq!(
        table_order(&screen),
        ["<module>", "heavy_work", "light_work", "main"],
        "{screen}"
    );
    tmux.literal("n");
    let screen = tmux.wait_for("reverse name order", |s| s.contains("sort name▼"));
    assert_eq!(table_order(&screen)[0], "main", "{screen}");
    // Total time: <module> and main (100%) above heavy_work above light_work.
    tmux.literal("4");
    let screen = tmux.wait_for("sorted by total", |s| s.contains("sort TotalTime▼"));
    assert_eq!(
        &table_order(&screen)[2..],
        ["heavy_work", "light_work"],
        "{screen}"
    );

    // Filter by name: only light_work remains; Escape clears the filter.
    tmux.literal("/light");
    let screen = tmux.wait_for("the filter", |s| s.contains("filter: light"));
    assert_eq!(table_order(&screen), ["light_work"], "{screen}");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the kept filter", |s| s.contains("filter \"light\""));
    tmux.keys(&["Escape"]);
    tmux.wait_for("the unfiltered table", |s| table_order(s).len() == 4);

    // Idle threads: the stdin waiter appears only with `i`.
    assert!(!tmux.screen().contains("wait_for_eof"));
    tmux.literal("i");
    tmux.wait_for("the idle thread", |s| {
        s.contains("idle shown") && s.contains("wait_for_eof")
    });
    // One thread: the main thread only, so the idle waiter goes away again.
    tmux.literal("t");
    tmux.wait_for("the thread chooser", |s| s.contains("eof-waiter"));
    tmux.keys(&["Down", "Enter"]);
    let screen = tmux.wait_for("one thread", |s| {
        s.contains(&format!("thread {} (MainThread)", target.pid))
    });
    assert!(!screen.contains("wait_for_eof"), "{screen}");

    // Lines instead of functions.
    tmux.literal("l");
    tmux.wait_for("lines", |s| {
        s.contains("lines ·") && s.contains("heavy_work (top_split.py:")
    });

    // Call paths of the selected (first) row.
    tmux.keys(&["Home", "Enter"]);
    tmux.wait_for("the call tree", |s| {
        s.contains("Call paths of") && s.contains("└ main (top_split.py")
    });
    tmux.keys(&["Escape"]);
    tmux.literal("?");
    tmux.wait_for("the help", |s| s.contains("reset the counters"));
    tmux.keys(&["Escape"]);

    // A wider terminal shows the whole-run columns too, and a narrower one hides them again,
    // without a key pressed (the view wakes for the resize signal).
    assert!(!tmux.screen().contains("%OwnAll"));
    tmux.tmux(&["resize-window", "-t", "top", "-x", "140"]);
    tmux.wait_for("the wide columns", |s| s.contains("%OwnAll"));
    tmux.tmux(&["resize-window", "-t", "top", "-x", "100"]);
    tmux.wait_for("the narrow columns", |s| {
        s.contains("TotalTime") && !s.contains("%OwnAll")
    });

    tmux.literal("q");
    assert_eq!(tmux.wait_exit(), 0);
    tmux.assert_restored();
    // The watched process is not touched by quitting.
    assert!(Path::new(&format!("/proc/{}", target.pid)).exists());
}

#[test]
fn top_reports_the_target_exit_and_keeps_the_data_on_sid_3_14() {
    let mut target = SplitTarget::start(&Interp::Sid("python3.14"));
    let tmux = Tmux::start(&top_args(target.pid));
    tmux.wait_for("both functions with enough samples", split_is_plausible);
    assert!(tmux.screen().contains("Python 3.14."));
    target.end();
    let screen = tmux.wait_for("the exit message", |s| {
        s.contains(&format!("process {} exited", target.pid))
    });
    assert!(screen.contains("press q to quit"), "{screen}");
    assert!(
        screen.contains("heavy_work") && screen.contains("light_work"),
        "the last data stays on screen:\n{screen}"
    );
    // Still responsive after the end: a key changes the view.
    tmux.literal("n");
    tmux.wait_for("sorted by name", |s| s.contains("sort name▲"));
    tmux.keys(&["C-c"]);
    assert_eq!(tmux.wait_exit(), 0);
    tmux.assert_restored();
}

#[test]
fn top_launches_a_command_and_stops_it_on_quit() {
    let python = Interp::pyenv("3.12.1");
    python.require();
    let Interp::Host(py) = &python else {
        unreachable!()
    };
    let mut args: Vec<String> = vec!["top".into(), "--".into(), py.display().to_string()];
    args.push(script_source().display().to_string());
    let tmux = Tmux::start(&args);
    let screen = tmux.wait_for("both functions with enough samples", split_is_plausible);
    let pid: i32 = screen
        .split_once("pid ")
        .and_then(|(_, rest)| rest.split(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in the header:\n{screen}"));
    tmux.literal("q");
    assert_eq!(tmux.wait_exit(), 0);
    tmux.assert_restored();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the launched command {pid} still runs after quitting"
    );
}

#[test]
fn sigterm_quits_top_and_restores_the_terminal() {
    let target = SplitTarget::start(&Interp::pyenv("3.12.1"));
    let tmux = Tmux::start(&top_args(target.pid));
    tmux.wait_for("the table", |s| s.contains("heavy_work"));
    tmux.sigterm_strobe();
    assert_eq!(tmux.wait_exit(), 0);
    tmux.assert_restored();
}

/// With an hour between refreshes the view wakes only for news: the target's exit, a key, a
/// resize and a stop signal must each reach it by themselves (nothing else would wake it).
#[test]
fn top_wakes_for_the_target_exit_a_resize_and_sigterm_between_refreshes() {
    let mut target = SplitTarget::start(&Interp::pyenv("3.12.1"));
    let mut args = top_args(target.pid);
    args.extend(["--refresh".to_string(), "3600".to_string()]);
    let tmux = Tmux::start(&args);
    // The first draw: before any sample, or (a loaded machine) after the first few.
    tmux.wait_for("the view", |s| s.starts_with("strobe top  pid "));
    // Sampled long enough that heavy_work (75% of its time) is in the counts `l` fetches
    // below, however few rounds a loaded machine allows before the target ends.
    tmux.wait_for_rounds(100);
    target.end();
    tmux.wait_for("the exit message", |s| {
        s.contains(&format!("process {} exited", target.pid))
    });
    // `l` refetches the counts so far: the table appears, 100 columns wide.
    tmux.literal("l");
    tmux.wait_for("the table by line", |s| {
        s.contains("heavy_work (top_split.py:")
    });
    assert!(!tmux.screen().contains("%OwnAll"));
    tmux.tmux(&["resize-window", "-t", "top", "-x", "140"]);
    tmux.wait_for("the wide columns", |s| s.contains("%OwnAll"));
    tmux.sigterm_strobe();
    assert_eq!(tmux.wait_exit(), 0);
    tmux.assert_restored();
}

/// A failed round is news too: with an hour between refreshes, the status line counts the
/// first one at once (the sampler rings the view). Every round after the 1,000th fails, through
/// a debug-build-only hook: at the default 100 Hz that is 10 s after sampling starts, so that
/// the first draw, and this test's first look at it, come before any failure even on a busy
/// machine.
#[test]
fn top_shows_a_failed_round_at_once_between_refreshes() {
    let target = SplitTarget::start(&Interp::pyenv("3.12.1"));
    let mut args = top_args(target.pid);
    args.extend(["--refresh".to_string(), "3600".to_string()]);
    let tmux = Tmux::start_env(&["STROBE_TEST_FAIL_AFTER=1000"], &args);
    let errors = |screen: &str| -> Option<u64> {
        let after = screen.split("  errors ").nth(1)?;
        after.split_whitespace().next()?.parse().ok()
    };
    let first = tmux.wait_for("the view", |s| s.starts_with("strobe top  pid "));
    assert_eq!(errors(&first), Some(0), "{first}");
    tmux.wait_for("the failed rounds", |s| errors(s).is_some_and(|n| n > 0));
    tmux.literal("q");
    assert_eq!(tmux.wait_exit(), 0);
    tmux.assert_restored();
}

#[test]
fn top_without_a_terminal_is_one_clear_error() {
    let out = Command::new(strobe_bin())
        .args(["top", "--pid", &std::process::id().to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing drawn on a non-terminal");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("strobe: error: strobe top needs a terminal"),
        "{err}"
    );
}

/// A panic inside the view (forced through a debug-build-only hook) still restores the
/// terminal before the panic message is printed.
#[test]
fn a_panic_in_top_restores_the_terminal() {
    let target = SplitTarget::start(&Interp::pyenv("3.12.1"));
    let tmux = Tmux::start_env(&["STROBE_TEST_PANIC_IN_TOP=1"], &top_args(target.pid));
    assert_eq!(
        tmux.wait_exit(),
        101,
        "a panic exits with Rust's panic status"
    );
    tmux.assert_restored();
    let screen = tmux.screen();
    assert!(
        screen.contains("test panic requested by STROBE_TEST_PANIC_IN_TOP"),
        "the panic message is shown on the restored screen:\n{screen}"
    );
}

/// A debug build (`Py_DEBUG`, sid's python3.15d) works in `top` as a default build does.
#[test]
fn top_on_a_debug_build_sid_3_15d() {
    let target = SplitTarget::start(&Interp::Sid("python3.15d"));
    let tmux = Tmux::start(&top_args(target.pid));
    let screen = tmux.wait_for("both functions with enough samples", split_is_plausible);
    assert!(screen.contains("Python 3.15."), "{screen}");
    tmux.literal("q");
    assert_eq!(tmux.wait_exit(), 0);
    tmux.assert_restored();
}

/// `--subprocesses` on a shell that started the family of `tests/targets/family.py`: the
/// shell is not Python, its descendants are, and each one's waiting function shows up.
#[test]
fn top_shows_the_python_subprocesses_of_a_shell_on_3_13() {
    let interp = Interp::pyenv("3.13.0");
    let script = Script::new(&interp, "family.py");
    let mut family = Announced::start(&mut script.command_through_shell());
    let shell = family.ready.child.id() as i32;
    let args: Vec<String> = [
        "top",
        "--subprocesses",
        "--idle",
        "--pid",
        &shell.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let tmux = Tmux::start(&args);
    let screen = tmux.wait_for("the three processes' waiting functions", |s| {
        s.contains("parent_wait") && s.contains("forked_child") && s.contains("exec_child")
    });
    assert!(screen.contains("its Python subprocesses"), "{screen}");
    assert!(screen.contains(&format!("pid {shell}")), "{screen}");
    tmux.literal("q");
    assert_eq!(tmux.wait_exit(), 0);
    tmux.assert_restored();
    family.close_stdin();
}

/// `--native`: native functions get their own rows, named with their shared object, and
/// the kernel boundary its own (`native_busy.py`'s threads sort with libc's `qsort` and wait
/// for the GIL).
#[test]
fn top_native_shows_native_functions_on_3_12() {
    let script = Script::new(&Interp::pyenv("3.12.1"), "native_busy.py");
    let target = Announced::start(script.command().arg("2"));
    let mut args = top_args(target.pid);
    args.push("--native".into());
    let tmux = Tmux::start(&args);
    tmux.wait_for("rows of libc and libpython functions", |s| {
        s.lines().any(|l| l.contains(" (libc.so.6)"))
            && s.lines().any(|l| l.contains(" (libpython3.12.so.1.0)"))
    });
    tmux.literal("q");
    assert_eq!(tmux.wait_exit(), 0);
    tmux.assert_restored();
}

/// `m` cycles the mode to `exception`: only the samples handling the target's ValueError
/// remain, under a `<raise ValueError>` row, and the header shows their share.
#[test]
fn top_mode_key_reaches_exception_mode_on_3_12() {
    let script = Script::new(&Interp::pyenv("3.12.1"), "exceptions.py");
    let target = Announced::start(&mut script.command());
    let tmux = Tmux::start(&top_args(target.pid));
    tmux.wait_for("the exception share", |s| {
        s.contains(" exc ") && s.contains("plain")
    });
    // cpu → wall → gil → exception.
    tmux.literal("mmm");
    let screen = tmux.wait_for("exception mode", |s| {
        s.contains("exceptions only") && s.contains("<raise ValueError>")
    });
    assert!(
        !table_order(&screen).iter().any(|f| f == "plain"),
        "{screen}"
    );
    tmux.literal("m");
    tmux.wait_for("cpu mode again", |s| {
        !s.contains("exceptions only") && !s.contains("<raise ValueError>") && s.contains("plain")
    });
    tmux.literal("q");
    assert_eq!(tmux.wait_exit(), 0);
}

/// `a` turns task-aware stacks on: the asyncio target's tasks become rows.
#[test]
fn top_async_key_shows_tasks_on_sid_3_14() {
    async_key_shows_tasks(Interp::Sid("python3.14"));
}

/// The same before 3.14 (the cached task graph of `tasks_legacy.rs`).
#[test]
fn top_async_key_shows_tasks_on_pyenv_3_12() {
    async_key_shows_tasks(Interp::pyenv("3.12.1"));
}

fn async_key_shows_tasks(interp: Interp) {
    let script = Script::new(&interp, "asyncio_shares.py");
    let target = Announced::start(&mut script.command());
    let tmux = Tmux::start(&top_args(target.pid));
    tmux.wait_for("the busy coroutines", |s| s.contains("burn"));
    assert!(!tmux.screen().contains("<task "));
    tmux.literal("a");
    tmux.wait_for("task rows", |s| {
        s.contains("tasks ·") && s.contains("<task alpha>") && s.contains("<task inner>")
    });
    tmux.literal("q");
    assert_eq!(tmux.wait_exit(), 0);
}
