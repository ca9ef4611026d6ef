//! [`Freeze`]: stopping every thread of a process with ptrace, for consistent snapshots
//! (`--blocking`).

use crate::error::RemoteError;
use crate::procfs;
use nix::errno::Errno;
use nix::sys::ptrace::{self, Event};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashSet;
use std::marker::PhantomData;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::Mutex;

/// How many times we list `/proc/PID/task` looking for threads created while we attached.
/// Each round only has to catch threads started by threads not yet stopped, so real
/// programs settle in two or three rounds.
const MAX_ROUNDS: usize = 64;

/// Exit statuses (raw wait statuses) of process leaders that a [`Freeze`] collected while
/// waiting for their stop. When strobe both started the target and traces it, that wait is the
/// one that reaps it, and the status belongs to whoever waits for the child: see [`try_wait`].
static REAPED_LEADERS: Mutex<Vec<(i32, i32)>> = Mutex::new(Vec::new());

pub(crate) fn remember_leader_exit(status: WaitStatus) {
    let (pid, raw) = match status {
        WaitStatus::Exited(pid, code) => (pid, (code & 0xff) << 8),
        WaitStatus::Signaled(pid, sig, core) => (pid, sig as i32 | if core { 0x80 } else { 0 }),
        _ => return,
    };
    let mut reaped = REAPED_LEADERS.lock().unwrap_or_else(|p| p.into_inner());
    reaped.retain(|&(p, _)| p != pid.as_raw());
    reaped.push((pid.as_raw(), raw));
}

/// `child.try_wait()`, also when a [`Freeze`] or a [`crate::ThreadTracer`] on this process
/// already reaped the child while waiting for it to stop (then the kernel reports no child, and
/// the status it collected is returned instead), and without taking a ptrace stop of the
/// child's main thread for an exit: the wait first looks without collecting (`WNOWAIT`), and
/// collects only an exit. A traced thread's stops are reported to any wait of its tracer
/// (whatever the flags), so a plain wait here would swallow a stop that a tracer kept across
/// samples is owed, and leave the thread stopped.
pub fn try_wait(child: &mut Child) -> std::io::Result<Option<ExitStatus>> {
    let pid = Pid::from_raw(child.id() as i32);
    let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(pid), peek) {
        // Not exited (or only a ptrace stop to report): leave that to the tracer.
        Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_) => {}
        Ok(_) => return Ok(None),
    }
    match child.try_wait() {
        Err(e) if e.raw_os_error() == Some(Errno::ECHILD as i32) => {
            let pid = child.id() as i32;
            let mut reaped = REAPED_LEADERS.lock().unwrap_or_else(|p| p.into_inner());
            match reaped.iter().position(|&(p, _)| p == pid) {
                Some(i) => Ok(Some(ExitStatus::from_raw(reaped.swap_remove(i).1))),
                None => Err(e),
            }
        }
        other => other,
    }
}

#[derive(Debug)]
struct Attached {
    tid: i32,
    /// We saw it stop (and so may detach it).
    stopped: bool,
    /// A signal that arrived while we held it, to deliver when we let go.
    pending: Option<Signal>,
}

/// Every thread of a process, stopped.
///
/// # Contract
/// - [`Freeze::all_threads`] returns only once every thread of the process is in a ptrace
///   stop (`t` in `/proc/PID/task/TID/stat`); threads created while attaching are caught by
///   re-listing `/proc/PID/task` until no new thread appears (at most 64 rounds, then
///   [`RemoteError::ThreadsUnstable`]). A stopped thread cannot create threads, so the set is
///   complete when a listing shows nothing new.
/// - Dropping the `Freeze` detaches every thread, and the process runs on exactly as before
///   (a signal that arrived meanwhile is delivered then). This also happens on every error
///   path of `all_threads`: threads attached before the error are released.
/// - ptrace ties a tracee to the tracing *thread*: the `Freeze` must be dropped on the thread
///   that created it, so it is neither `Send` nor `Sync`. Do not `waitpid(-1)` elsewhere in
///   the process while it lives, which could consume the stop notifications it waits for.
/// - Only one tracer per process: this fails with [`RemoteError::AlreadyTraced`] if a
///   debugger holds the target.
#[derive(Debug)]
pub struct Freeze {
    pid: i32,
    threads: Vec<Attached>,
    _not_send: PhantomData<*const ()>,
}

impl Freeze {
    /// Stop every thread of `pid`; see the type's contract.
    pub fn all_threads(pid: i32) -> Result<Freeze, RemoteError> {
        if !procfs::exists(pid) {
            return Err(RemoteError::NoSuchProcess { pid });
        }
        // From here on, returning early drops `freeze`, which releases what we attached.
        let mut freeze = Freeze {
            pid,
            threads: Vec::new(),
            _not_send: PhantomData,
        };
        let mut seen = HashSet::new();
        for _ in 0..MAX_ROUNDS {
            let tids = procfs::tasks(pid).map_err(|e| match e {
                RemoteError::NoSuchProcess { pid } if !seen.is_empty() => {
                    RemoteError::ProcessGone { pid }
                }
                e => e,
            })?;
            let fresh: Vec<i32> = tids
                .iter()
                .filter_map(|&t| i32::try_from(t).ok())
                .filter(|t| seen.insert(*t))
                .collect();
            if fresh.is_empty() {
                if freeze.threads.is_empty() {
                    return Err(RemoteError::ProcessGone { pid });
                }
                return Ok(freeze);
            }
            for &tid in &fresh {
                freeze.attach(tid)?;
            }
            for i in 0..freeze.threads.len() {
                if !freeze.threads[i].stopped {
                    freeze.threads[i] = freeze.wait_stopped(i)?;
                }
            }
            // Threads that exited while we attached are not ours any more.
            freeze.threads.retain(|a| a.tid != 0);
        }
        Err(RemoteError::ThreadsUnstable {
            pid,
            rounds: MAX_ROUNDS,
        })
    }

    /// The process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The stopped threads, ascending.
    pub fn threads(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.threads.iter().map(|a| a.tid as u32).collect();
        v.sort_unstable();
        v
    }

    /// Registers and up to `max_stack` bytes of stack (from the stack pointer) of frozen
    /// thread `tid`, and the system call it was stopped in, if any: a native capture of the
    /// whole process's one instant, with no further stop.
    pub fn capture(
        &self,
        tid: i32,
        max_stack: impl Into<crate::StackSpan>,
        stack: &mut Vec<u8>,
    ) -> Result<(crate::UserRegs, Option<u64>), crate::StackError> {
        if !self.threads.iter().any(|a| a.tid == tid && a.stopped) {
            return Err(crate::StackError::ThreadGone { pid: self.pid, tid });
        }
        crate::ptrace_stack::read_state(self.pid, tid, max_stack.into(), stack)
    }

    /// The system call frozen thread `tid` was stopped in, if any (one register read, no
    /// stack): whether it was asleep in it is [`crate::StopSyscall::interrupted_wait`].
    pub fn stop_syscall(&self, tid: i32) -> Result<Option<crate::StopSyscall>, crate::StackError> {
        if !self.threads.iter().any(|a| a.tid == tid && a.stopped) {
            return Err(crate::StackError::ThreadGone { pid: self.pid, tid });
        }
        crate::ptrace_stack::stop_syscall(self.pid, tid)
    }

    fn attach(&mut self, tid: i32) -> Result<(), RemoteError> {
        let pid = self.pid;
        let t = Pid::from_raw(tid);
        // PTRACE_SEIZE (unlike ATTACH) does not send SIGSTOP, so nothing visible to the
        // target is left behind when we detach; PTRACE_INTERRUPT then stops the thread.
        match ptrace::seize(t, ptrace::Options::empty()) {
            Ok(()) => {}
            Err(Errno::ESRCH) => return Ok(()), // the thread exited
            // The kernel also refuses (EPERM) to attach a thread that is already exiting
            // (`exit_state` set): that thread is as good as gone, not a permission problem.
            Err(Errno::EPERM) if tid != pid && thread_exiting(pid, tid) => return Ok(()),
            Err(Errno::EPERM) => {
                return Err(match procfs::tracer_pid(pid) {
                    Ok(Some(tracer)) if tracer != std::process::id() as i32 => {
                        RemoteError::AlreadyTraced { pid, tracer }
                    }
                    _ if procfs::is_gone_or_exiting(pid) => RemoteError::ProcessGone { pid },
                    _ => RemoteError::PermissionDenied { pid },
                })
            }
            Err(errno) => {
                return Err(RemoteError::Ptrace {
                    op: "PTRACE_SEIZE",
                    pid,
                    tid,
                    errno,
                })
            }
        }
        self.threads.push(Attached {
            tid,
            stopped: false,
            pending: None,
        });
        match ptrace::interrupt(t) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(errno) => Err(RemoteError::Ptrace {
                op: "PTRACE_INTERRUPT",
                pid,
                tid,
                errno,
            }),
        }
    }

    /// Wait for thread `i` to report its stop. Returns the updated record; a thread that
    /// exited comes back with `tid` 0.
    fn wait_stopped(&self, i: usize) -> Result<Attached, RemoteError> {
        let a = &self.threads[i];
        let mut out = Attached {
            tid: a.tid,
            stopped: false,
            pending: a.pending,
        };
        match wait_for_stop(self.pid, a.tid) {
            Ok(Stop::Stopped(sig)) => {
                out.stopped = true;
                out.pending = out.pending.or(sig);
            }
            Ok(Stop::Exited) => out.tid = 0,
            Err(errno) => {
                return Err(RemoteError::Ptrace {
                    op: "waitpid",
                    pid: self.pid,
                    tid: a.tid,
                    errno,
                })
            }
        }
        Ok(out)
    }
}

/// Whether thread `tid` of `pid` has exited or is exiting (zombie or dead, or already gone).
fn thread_exiting(pid: i32, tid: i32) -> bool {
    let path = procfs::proc_dir(pid).join(format!("task/{tid}/stat"));
    match std::fs::read_to_string(path) {
        Ok(text) => match procfs::ProcStat::parse(&text) {
            Some(st) => matches!(st.state, 'Z' | 'X' | 'x'),
            None => false,
        },
        Err(_) => true,
    }
}

enum Stop {
    /// In a ptrace stop; with the signal it was stopped for, if it must be re-delivered.
    Stopped(Option<Signal>),
    /// The thread is gone.
    Exited,
}

/// Wait for thread `tid` of process `pid` to stop (or exit).
fn wait_for_stop(pid: i32, tid: i32) -> Result<Stop, Errno> {
    let flags = WaitPidFlag::__WALL | WaitPidFlag::__WNOTHREAD;
    loop {
        match waitpid(Pid::from_raw(tid), Some(flags)) {
            // The stop PTRACE_INTERRUPT asked for (or a group stop): nothing to re-deliver.
            Ok(WaitStatus::PtraceEvent(_, _, ev)) if ev == Event::PTRACE_EVENT_STOP as i32 => {
                return Ok(Stop::Stopped(None));
            }
            Ok(WaitStatus::PtraceEvent(..)) | Ok(WaitStatus::PtraceSyscall(_)) => {
                return Ok(Stop::Stopped(None));
            }
            // A signal arrived before our interrupt took effect: the thread is stopped in
            // signal-delivery-stop, and the signal must be handed back when we detach.
            Ok(WaitStatus::Stopped(_, sig)) => return Ok(Stop::Stopped(Some(sig))),
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                if tid == pid {
                    remember_leader_exit(status);
                }
                return Ok(Stop::Exited);
            }
            Ok(WaitStatus::Continued(_)) | Ok(WaitStatus::StillAlive) => continue,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Ok(Stop::Exited),
            Err(e) => return Err(e),
        }
    }
}

impl Drop for Freeze {
    fn drop(&mut self) {
        for a in &self.threads {
            if a.tid == 0 {
                continue;
            }
            let t = Pid::from_raw(a.tid);
            let mut pending = a.pending;
            if !a.stopped {
                // Attached on an error path but never seen stopped: PTRACE_DETACH needs the
                // tracee in a stop, so bring it there first.
                let _ = ptrace::interrupt(t);
                match wait_for_stop(self.pid, a.tid) {
                    Ok(Stop::Stopped(sig)) => pending = pending.or(sig),
                    Ok(Stop::Exited) | Err(_) => continue,
                }
            }
            if ptrace::detach(t, pending).is_err() {
                // Killed while stopped: collect its exit notification so it does not linger
                // as a zombie for as long as we live.
                if let Ok(status) = waitpid(
                    t,
                    Some(WaitPidFlag::__WALL | WaitPidFlag::__WNOTHREAD | WaitPidFlag::WNOHANG),
                ) {
                    if a.tid == self.pid {
                        remember_leader_exit(status);
                    }
                }
            }
        }
    }
}
