//! `strobe record -- COMMAND`: start the command, attach to it once it is Python, and at the end wait for it and pass on how it ended.
//!
//! Right after `fork` the child is still strobe, and right after `exec` a shared-libpython
//! interpreter has not mapped libpython yet, so attaching is retried until it succeeds, the
//! child exits, or [`ATTACH_TIMEOUT`] passes. The pauses between attempts are a polling
//! cadence (a few ms, growing), not synchronisation: each attempt checks the real state.

use std::ffi::OsString;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use strobe_locate::LocateError;
use strobe_target::{AttachError, Target};

/// How long a launched command may take to become a Python process strobe can read.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const LONGEST_PAUSE: Duration = Duration::from_millis(25);

/// What became of a launched command.
#[derive(Debug)]
pub enum Launched {
    /// It is running, and strobe is attached to it.
    Attached {
        /// The child process.
        child: Child,
        /// The attached target.
        target: Box<Target>,
    },
    /// It exited before strobe could attach (a very short script, or a failure to start).
    ExitedEarly(ExitStatus),
}

/// `--pid PID`: the attached target. With `subprocesses`, a process that is not a Python
/// strobe can read (a launcher, shell or server whose workers are the Python processes) is
/// taken as it is: `Ok(Err(why))`, and its Python descendants are what gets sampled.
pub fn attach_pid(pid: i32, subprocesses: bool) -> anyhow::Result<Result<Target, LocateError>> {
    match Target::attach(pid) {
        Ok(target) => Ok(Ok(target)),
        Err(AttachError::Locate(e)) if subprocesses => Ok(Err(e)),
        Err(e) => Err(e.into()),
    }
}

/// The PID of the process a command watches: the attached target's, else the launched
/// command's, else the one given with `--pid`.
pub fn root_pid(
    target: Option<&Target>,
    child: Option<&Child>,
    pid: Option<i32>,
) -> anyhow::Result<i32> {
    match (target, child, pid) {
        (Some(t), _, _) => Ok(t.pid()),
        (None, Some(c), _) => Ok(c.id() as i32),
        (None, None, Some(pid)) => Ok(pid),
        (None, None, None) => bail!("no process to watch"),
    }
}

/// The command line as one display string (arguments with spaces or quotes are quoted).
pub fn display_command(command: &[OsString]) -> String {
    command
        .iter()
        .map(|a| {
            let s = a.to_string_lossy();
            if s.is_empty() || s.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
                format!("'{}'", s.replace('\'', r"'\''"))
            } else {
                s.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Start `command`. Call this before blocking the stop signals
/// ([`strobe_signals::StopSignals::install`]): a child inherits its parent thread's
/// signal mask across `exec`, and a Python started with SIGINT/SIGTERM blocked could not be
/// interrupted or terminated.
pub fn spawn(command: &[OsString]) -> anyhow::Result<Child> {
    spawn_with(command, false)
}

/// [`spawn`], but with the command's stdin, stdout and stderr on `/dev/null`: for `strobe top`,
/// whose full-screen view owns the terminal (the command must neither draw over it nor read the
/// keys meant for it). Same rule about the stop signals as [`spawn`].
pub fn spawn_off_terminal(command: &[OsString]) -> anyhow::Result<Child> {
    spawn_with(command, true)
}

fn spawn_with(command: &[OsString], off_terminal: bool) -> anyhow::Result<Child> {
    let Some((program, args)) = command.split_first() else {
        bail!("no command given: put the command to profile after '--', or use --pid");
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    if off_terminal {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }
    cmd.spawn()
        .with_context(|| format!("cannot run {}", program.to_string_lossy()))
}

/// Attach to a command started by [`spawn`], retrying until it is a Python strobe can read.
/// `signals` is watched while waiting: a stop request then ends the command (SIGTERM/SIGHUP
/// are passed on; Ctrl-C already reached it through the terminal) and the launch fails.
pub fn attach(mut child: Child, signals: &Receiver<Signal>) -> anyhow::Result<Launched> {
    let pid = child.id() as i32;
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the command")? {
            return Ok(Launched::ExitedEarly(status));
        }
        let err = match Target::attach(pid) {
            Ok(target) => {
                return Ok(Launched::Attached {
                    child,
                    target: Box::new(target),
                })
            }
            Err(e) => e,
        };
        if started.elapsed() >= ATTACH_TIMEOUT {
            // We started it and cannot profile it: do not leave it running behind our back.
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the command (process {pid}) did not become a Python process strobe can read \
                 within {} s, so it was stopped: {err}. Without --subprocesses strobe follows \
                 only the process it starts: add --subprocesses to sample the Python processes \
                 it starts, or run Python directly",
                ATTACH_TIMEOUT.as_secs()
            );
        }
        match signals.recv_timeout(pause) {
            Ok(sig) => {
                if sig != Signal::SIGINT {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
                }
                bail!(
                    "stopped by {sig} before the command could be attached; nothing was recorded"
                );
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// Raise this process's soft limit on open files to its hard limit. The sampler keeps two
/// descriptors per thread it watches (its `stat` file and a context-switch watch) and more under
/// `--native`; a 1,024 soft limit is reached by a few hundred threads. Called once a launched
/// command has started, so that it keeps the limits it was given. Best effort: where the limit
/// cannot be raised, watches beyond it fall back to `/proc` reads.
pub fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Under `--native`: read the target's modules and its interpreter's symbols before sampling
/// starts (the first sample would otherwise pay for it), and say what will be missing. Native
/// frames that cannot be had at all are said once; the Python frames still come.
pub fn prepare_native(target: Option<&mut strobe_target::Target>) {
    let Some(target) = target else { return };
    match target.enable_native() {
        Ok(warnings) => {
            for w in warnings {
                say!("strobe: warning: {w}");
            }
        }
        Err(e) => say!("strobe: warning: {e}; recording Python frames only"),
    }
}

/// How long a command that should have received Ctrl-C from the terminal gets to exit before
/// strobe passes SIGINT on itself (it was sent to strobe alone, e.g. with `kill -INT`).
const SIGINT_GRACE: Duration = Duration::from_secs(1);

/// Wait for a launched command that was told to stop. Safe here: the sampler thread, which
/// might hold ptrace stops, has ended. Another Ctrl-C exits strobe at once.
pub fn wait_for_command(mut child: Child) -> Option<ExitStatus> {
    let since = Instant::now();
    while since.elapsed() < SIGINT_GRACE {
        match strobe_remote::try_wait(&mut child) {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        // A polling cadence while the command winds down, not synchronisation.
        std::thread::sleep(Duration::from_millis(10));
    }
    say!(
        "strobe: waiting for the command (process {}) to exit; Ctrl-C again to leave it",
        child.id()
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGINT,
    );
    child.wait().ok()
}

/// Print how the command ended and turn it into strobe's exit status (like `time` and `perf
/// record` do): its exit code, or 128 + the signal that killed it.
pub fn report_exit(status: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        say!("strobe: the command exited with status {code}");
        ExitCode::from(code.clamp(0, 255) as u8)
    } else if let Some(sig) = status.signal() {
        let name = Signal::try_from(sig).map_or_else(|_| sig.to_string(), |s| s.to_string());
        say!("strobe: the command was killed by {name}");
        ExitCode::from((128 + sig).clamp(0, 255) as u8)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_displayed_shell_quoted() {
        let cmd: Vec<OsString> = ["python3", "app.py", "two words", "it's", ""]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            display_command(&cmd),
            r#"python3 app.py 'two words' 'it'\''s' ''"#
        );
    }

    #[test]
    fn a_command_that_exits_at_once_is_reported() {
        let (_tx, rx) = std::sync::mpsc::channel();
        let cmd: Vec<OsString> = vec!["sh".into(), "-c".into(), "exit 7".into()];
        match attach(spawn(&cmd).unwrap(), &rx).unwrap() {
            Launched::ExitedEarly(status) => assert_eq!(status.code(), Some(7)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_program_is_one_clear_error() {
        let cmd: Vec<OsString> = vec!["/nonexistent/python".into()];
        let e = format!("{:#}", spawn(&cmd).unwrap_err());
        assert!(e.contains("cannot run /nonexistent/python"), "{e}");
    }
}
