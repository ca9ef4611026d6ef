//! Whether a sampled process is still the one it was: exited, exiting, or running another
//! program since an `exec`; and watching the process strobe was given for its exit.
//!
//! A launched target is waited for by the sampler thread only (`waitpid(WNOHANG)` every
//! [`CHILD_CHECK_EVERY`]): a wait from another thread could consume the ptrace stops
//! `--blocking` relies on. A root that is not read (not Python, or not yet) is watched through
//! `/proc` instead, at the same pace.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use strobe_remote::procfs;

/// How often a launched target is checked for having exited (a `waitpid(WNOHANG)`).
const CHILD_CHECK_EVERY: Duration = Duration::from_millis(10);
/// Longest auxiliary vector read (it is a few hundred bytes: about 25 (type, value) pairs).
const MAX_AUXV: u64 = 64 * 1024;
/// `PF_EXITING` (include/linux/sched.h): the process is tearing itself down. Its memory may
/// already be gone (reads fail with errors that are not "no such process") before it turns
/// into a zombie.
const PF_EXITING: u64 = 0x4;

/// The process's auxiliary vector (`/proc/PID/auxv`). The kernel builds it anew on every
/// execve (fs/binfmt_elf.c `create_elf_tables`) for the new program's stack: `AT_RANDOM`
/// points into that stack and, with ASLR, `AT_PHDR`/`AT_ENTRY`/`AT_BASE` move too, so a
/// different vector means the program we attached to was replaced. `None` if unreadable.
pub(crate) fn read_auxv(pid: i32) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(format!("/proc/{pid}/auxv")).ok()?;
    let mut buf = Vec::new();
    file.take(MAX_AUXV).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Whether the process now runs another program than when sampling started: its auxiliary
/// vector changed and it is not exiting (an exiting process or a zombie has no memory left
/// and shows an empty vector, which is not an exec).
pub(crate) fn program_replaced(pid: i32, at_start: Option<&[u8]>) -> bool {
    let Some(at_start) = at_start else {
        return false;
    };
    match read_auxv(pid) {
        Some(now) if !now.is_empty() && now != at_start => !target_gone(pid),
        _ => false,
    }
}

/// Whether the target has exited or is exiting.
pub(crate) fn target_gone(pid: i32) -> bool {
    match procfs::stat(pid) {
        Ok(st) => matches!(st.state, 'Z' | 'X' | 'x') || st.flags & PF_EXITING != 0,
        Err(_) => true,
    }
}

/// Watches the process strobe was given for its exit (see the module documentation).
pub(crate) struct RootWatch {
    pid: i32,
    /// The launched target, while it has not been reaped.
    child: Option<Child>,
    checked: Instant,
    exit_status: Option<ExitStatus>,
}

impl RootWatch {
    /// For root `pid`, launched by strobe as `child` if it was.
    pub(crate) fn new(pid: i32, child: Option<Child>) -> RootWatch {
        RootWatch {
            pid,
            child,
            checked: Instant::now(),
            exit_status: None,
        }
    }

    /// Whether the root has exited, looked at every [`CHILD_CHECK_EVERY`] when there is
    /// something to look at: a launched child (its exit status is kept), or a root that is not
    /// read (`root_read` false), whose reads would otherwise tell.
    pub(crate) fn exited(&mut self, root_read: bool) -> bool {
        if !((self.child.is_some() || !root_read) && self.checked.elapsed() >= CHILD_CHECK_EVERY) {
            return false;
        }
        self.checked = Instant::now();
        match self.child.as_mut() {
            Some(c) => {
                if let Ok(Some(status)) = strobe_remote::try_wait(c) {
                    self.exit_status = Some(status);
                    return true;
                }
                false
            }
            // Not read (not Python): whether it still runs comes from /proc.
            None => procfs::is_gone_or_exiting(self.pid),
        }
    }

    /// The launched root's exit status if it exited (reaped now if sampling ended on its
    /// exit), else the child itself, still running, to hand back.
    pub(crate) fn finish(mut self, root_exited: bool) -> (Option<ExitStatus>, Option<Child>) {
        if root_exited && self.exit_status.is_none() {
            if let Some(mut c) = self.child.take() {
                // The target is gone (or a zombie), so this returns at once.
                self.exit_status = match strobe_remote::try_wait(&mut c) {
                    Ok(Some(status)) => Some(status),
                    _ => c.wait().ok(),
                };
            }
        }
        let child = if self.exit_status.is_some() {
            None
        } else {
            self.child
        };
        (self.exit_status, child)
    }
}
