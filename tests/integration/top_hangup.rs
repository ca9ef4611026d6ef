//! `strobe top` whose terminal goes away: a real pseudo-terminal is opened, strobe runs on its
//! slave side (in a session of its own, so that no SIGHUP reaches it: the hang-up must be
//! noticed on the terminal itself), the test reads the screen from the master side until the
//! table is drawn, then closes the master. The kernel hangs up the slave; strobe must end at
//! once, with exit status 1, leaving a `--pid` target running and stopping a command it
//! launched, without spinning on the dead terminal.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, PtyMaster};

use crate::harness::{strobe_bin, Announced, Interp, Script};

/// Longest wait for the table to be drawn (debug builds on a loaded machine).
const SCREEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for strobe to exit once its terminal is gone: a limit for the failure, not a
/// pause (strobe is expected to exit well within a second).
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// CPU time strobe may use between the hang-up and its exit (clock ticks, 100 a second). Before
/// the fix it used a whole core until killed; stopping the sampler and a launched command
/// takes a few ms of CPU.
const MAX_TICKS_AFTER_HANGUP: u64 = 100;

/// `strobe top ARGS` on the slave side of a fresh 100×30 pseudo-terminal (also used by
/// `container.rs`).
pub struct OnPty {
    strobe: Child,
    master: Option<PtyMaster>,
    screen: Vec<u8>,
}

impl OnPty {
    pub fn start(args: &[String]) -> OnPty {
        OnPty::start_in_session(args, false)
    }

    /// [`OnPty::start`]; with `controlling`, the terminal is strobe's controlling terminal
    /// (`setsid --ctty`), so that its hang-up also sends strobe SIGHUP, as when an SSH
    /// session drops under a shell that runs strobe in the foreground.
    pub fn start_in_session(args: &[String], controlling: bool) -> OnPty {
        // Opened close-on-exec (openpty(3) is not), so that no process started meanwhile,
        // strobe included, holds the master open and keeps the terminal alive.
        let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let master = posix_openpt(flags).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let slave_path = ptsname_r(&master).unwrap();
        let open_slave = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(nix::libc::O_NOCTTY)
                .open(&slave_path)
                .unwrap()
        };
        let status = Command::new("stty")
            .args(["cols", "100", "rows", "30"])
            .stdin(open_slave())
            .status()
            .unwrap();
        assert!(status.success(), "stty on {slave_path}: {status}");
        // setsid: a new session, without a controlling terminal unless asked (then the
        // hang-up sends strobe SIGHUP too); stderr to a pipe, to read strobe's last words.
        let mut setsid = Command::new("setsid");
        if controlling {
            setsid.arg("--ctty");
        }
        let strobe = setsid
            .arg(strobe_bin())
            .args(args)
            .stdin(open_slave())
            .stdout(open_slave())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        OnPty {
            strobe,
            master: Some(master),
            screen: Vec::new(),
        }
    }

    /// Reads what strobe draws until `what` appears in it.
    pub fn wait_for(&mut self, what: &str) {
        let master = self.master.as_ref().unwrap();
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        while Instant::now() < deadline {
            let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(100u16)).unwrap() > 0 {
                let mut buf = [0u8; 4096];
                let n = nix::unistd::read(master, &mut buf).unwrap();
                self.screen.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&self.screen).contains(what) {
                    return;
                }
            }
            if let Some(status) = self.strobe.try_wait().unwrap() {
                panic!(
                    "strobe exited ({status}) before showing {what:?}; screen: {:?}",
                    String::from_utf8_lossy(&self.screen)
                );
            }
        }
        panic!(
            "{what:?} not on the screen within {SCREEN_TIMEOUT:?}: {:?}",
            String::from_utf8_lossy(&self.screen)
        );
    }

    /// Types `keys`, then reads the screen until strobe exits (a strobe blocked on a full
    /// terminal could not read the keys); returns its exit code.
    pub fn type_and_wait_exit(&mut self, keys: &str) -> Option<i32> {
        let master = self.master.as_ref().unwrap();
        nix::unistd::write(master, keys.as_bytes()).unwrap();
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.strobe.try_wait().unwrap() {
                return status.code();
            }
            let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(20u16)).unwrap() > 0 {
                let mut buf = [0u8; 4096];
                if let Ok(n) = nix::unistd::read(master, &mut buf) {
                    self.screen.extend_from_slice(&buf[..n]);
                }
            }
        }
        panic!("strobe did not exit within {EXIT_TIMEOUT:?} of typing {keys:?}");
    }

    /// Closes the master side: the terminal is gone. Returns strobe's exit code, its stderr,
    /// and the CPU ticks it used from the hang-up to its exit (read from its zombie before
    /// reaping it).
    pub fn hang_up(&mut self) -> (Option<i32>, String, u64) {
        let pid = self.strobe.id() as i32;
        let before = cpu_ticks(pid).expect("strobe runs before the hang-up");
        drop(self.master.take());
        let deadline = Instant::now() + EXIT_TIMEOUT;
        let after = loop {
            match process_state(pid) {
                Some('Z') | None => break cpu_ticks(pid),
                Some(_) if Instant::now() > deadline => {
                    let spent = cpu_ticks(pid).unwrap_or(before) - before;
                    let _ = self.strobe.kill();
                    let _ = self.strobe.wait();
                    panic!(
                        "strobe still ran {EXIT_TIMEOUT:?} after its terminal hung up \
                         (and used {spent} CPU ticks meanwhile)"
                    );
                }
                Some(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let status = self.strobe.wait().unwrap();
        let mut stderr = String::new();
        self.strobe
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let spent = after.map_or(0, |a| a - before);
        (status.code(), stderr, spent)
    }
}

impl Drop for OnPty {
    fn drop(&mut self) {
        let _ = self.strobe.kill();
        let _ = self.strobe.wait();
    }
}

/// Fields of `/proc/PID/stat` after the command name.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The process's state letter (`R`, `S`, `Z`...).
fn process_state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// utime + stime of the whole process, in clock ticks.
fn cpu_ticks(pid: i32) -> Option<u64> {
    let f = stat_fields(pid)?;
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn split_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/targets/top_split.py")
}

fn assert_ended_for_the_hang_up(code: Option<i32>, stderr: &str, ticks: u64) {
    assert_eq!(
        code,
        Some(1),
        "exit status after the hang-up; stderr: {stderr}"
    );
    // Whichever of top's ways of finding the terminal gone comes first: a hang-up fails
    // reads and writes alike (`EIO`), and a redraw due at that moment is a write.
    assert!(
        stderr.contains("top stopped: the terminal hung up")
            || stderr.contains("top stopped: the terminal's input ended")
            || stderr.contains("top stopped: reading the terminal failed")
            || stderr.contains("top stopped: writing to the terminal failed"),
        "stderr says why top stopped: {stderr:?}"
    );
    assert!(
        ticks <= MAX_TICKS_AFTER_HANGUP,
        "strobe used {ticks} CPU ticks between the hang-up and its exit"
    );
}

#[test]
fn a_hung_up_terminal_ends_top_and_leaves_the_pid_target_running() {
    let python = Interp::pyenv("3.12.1");
    let script = Script::new(&python, "top_split.py");
    let target = Announced::start(script.command().arg("--until-eof"));
    let mut pty = OnPty::start(&["top".into(), "--pid".into(), target.pid.to_string()]);
    pty.wait_for("heavy_work");
    let (code, stderr, ticks) = pty.hang_up();
    assert_ended_for_the_hang_up(code, &stderr, ticks);
    assert!(
        matches!(process_state(target.pid), Some(s) if s != 'Z'),
        "the --pid target {} is still running after top ended",
        target.pid
    );
}

#[test]
fn a_hung_up_terminal_ends_top_and_stops_the_command_it_launched() {
    let python = Interp::pyenv("3.12.1");
    python.require();
    let Interp::Host(py) = &python else {
        unreachable!()
    };
    let mut pty = OnPty::start(&[
        "top".into(),
        "--".into(),
        py.display().to_string(),
        split_script().display().to_string(),
    ]);
    pty.wait_for("heavy_work");
    // setsid execs strobe in place, so the launched command is strobe's child.
    let strobe = pty.strobe.id().to_string();
    let out = Command::new("pgrep")
        .args(["-P", &strobe])
        .output()
        .unwrap();
    let children: Vec<i32> = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(children.len(), 1, "strobe's children: {children:?}");
    let (code, stderr, ticks) = pty.hang_up();
    assert_ended_for_the_hang_up(code, &stderr, ticks);
    assert!(
        !Path::new(&format!("/proc/{}", children[0])).exists(),
        "the launched command {} still runs after top ended",
        children[0]
    );
}

#[test]
fn a_hung_up_controlling_terminal_ends_top_the_same_way_with_sighup() {
    let python = Interp::pyenv("3.12.1");
    let script = Script::new(&python, "top_split.py");
    let target = Announced::start(script.command().arg("--until-eof"));
    let args = ["top".into(), "--pid".into(), target.pid.to_string()];
    let mut pty = OnPty::start_in_session(&args, true);
    pty.wait_for("heavy_work");
    let (code, stderr, ticks) = pty.hang_up();
    assert_ended_for_the_hang_up(code, &stderr, ticks);
    assert!(
        matches!(process_state(target.pid), Some(s) if s != 'Z'),
        "the --pid target {} is still running after top ended",
        target.pid
    );
}
