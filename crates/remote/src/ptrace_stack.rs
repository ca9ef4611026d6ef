//! [`ThreadTracer`]: one thread's registers and stack, with only that thread stopped, for as
//! long as it takes to read them.

use crate::procfs;
use crate::stack::{copy_stack, task_file, StackError, StackSpan, UserRegs};
use nix::errno::Errno;
use nix::sys::ptrace::{self, regset, Event};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod group;

pub use group::{capture_together, Together};

/// How long a capture polls for the interrupted thread's stop before sleeping until it comes.
///
/// The thread stops a few microseconds after `PTRACE_INTERRUPT` when it has a CPU; a tracer
/// that sleeps in `waitpid` meanwhile is woken only after that, and waking an idle vCPU costs
/// 15–25 µs here (docs/PERFORMANCE.md), all of it time the thread spends stopped. Polling
/// sees the stop at once, but is wasted CPU when the thread cannot run (a busy machine). So
/// the limit follows what stops took lately: twice the last one seen while polling (at least
/// [`SPIN_MIN`]); after a stop that outlasted the limit, half the limit, down to none; with
/// none, a stop seen by sleeping that came within [`SPIN_MAX`] / 2 starts polling again.
/// Shared by every tracer of this process: the captures of a sampler are made one after the
/// other by one thread.
struct Spin {
    limit_ns: AtomicU64,
}

/// Least polling once polling pays.
const SPIN_MIN: Duration = Duration::from_micros(20);
/// Most polling.
const SPIN_MAX: Duration = Duration::from_micros(200);

static SPIN: Spin = Spin {
    limit_ns: AtomicU64::new(SPIN_MIN.as_nanos() as u64),
};

impl Spin {
    fn limit(&self) -> Duration {
        Duration::from_nanos(self.limit_ns.load(Ordering::Relaxed))
    }

    /// A stop came `took` after the interrupt, with `spin` as the limit.
    fn learn(&self, took: Duration, spin: Duration) {
        let next = if took < spin {
            (took * 2).clamp(SPIN_MIN, SPIN_MAX)
        } else if spin.is_zero() {
            if took <= SPIN_MAX / 2 {
                (took * 2).clamp(SPIN_MIN, SPIN_MAX)
            } else {
                Duration::ZERO
            }
        } else if spin / 2 < SPIN_MIN {
            Duration::ZERO
        } else {
            spin / 2
        };
        self.limit_ns
            .store(next.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// What a capture returns besides the stack bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TracedCapture {
    /// The registers at the stop.
    pub regs: UserRegs,
    /// How long the thread was held: from the interrupt request to the resume request
    /// returning, as seen by strobe (an upper bound of the time the thread could not run).
    pub stopped_for: Duration,
    /// The system call the thread was in when it was stopped (`orig_rax`, which is -1 for a
    /// thread stopped in user space), if it was in one.
    pub syscall: Option<u64>,
    /// That call was asleep when the stop came (or an earlier stop's interruption of it was
    /// still pending): see [`StopSyscall::interrupted_wait`]. The thread was waiting, not
    /// running, and the stop woke it.
    pub interrupted_wait: bool,
}

/// How a capture lets the thread go.
#[derive(Clone, Copy)]
pub(crate) enum Release {
    /// Resume it, still traced (the tracer is kept for more captures).
    Resume,
    /// Detach from it (a one-off capture).
    Detach,
}

/// How a thread came to a ptrace stop.
#[derive(Clone, Copy)]
enum Stopped {
    /// Our `PTRACE_INTERRUPT`: resume with `PTRACE_CONT`.
    Interrupt,
    /// A group-stop (SIGSTOP, ^Z): the process is meant to stay stopped, so it is released
    /// with `PTRACE_LISTEN`, which leaves it stopped but lets `SIGCONT` wake it.
    GroupStop,
}

/// One thread of a process, seized with ptrace (not the process: other threads never stop).
///
/// Each [`ThreadTracer::capture`] costs `PTRACE_INTERRUPT`, `waitpid`, `PTRACE_GETREGSET`, one
/// `process_vm_readv` and `PTRACE_CONT`; the seize is kept from capture to capture.
///
/// # Contract
/// - While seized, a signal sent to the thread stops it until strobe notices (ptrace delivers
///   signals through the tracer). [`ThreadTracer::capture`] and [`ThreadTracer::service`] hand
///   such signals on; a sampler calls one of them at least every sampling period, so a signal
///   is late by at most one period. A group-stop (SIGSTOP, ^Z) is left in place
///   (`PTRACE_LISTEN`), and `SIGCONT` ends it as without strobe.
/// - While seized, no other tracer can attach to the thread (a debugger or another profiler
///   is refused with `EPERM` until the tracer is dropped).
/// - ptrace ties a tracee to the tracing *thread*, the one that called
///   [`ThreadTracer::seize`]: only that thread can use the tracer. The tracer may be moved
///   to another thread (so that what holds it can be), but there its calls fail and its drop
///   cannot detach; the kernel detaches the thread when the seizing thread exits, and when
///   strobe dies. Do not `waitpid(-1)` or `waitpid` the target without `WNOWAIT` on the seizing
///   thread meanwhile (see [`crate::try_wait`]): that could consume the stops the tracer waits
///   for.
/// - Dropping it (on the seizing thread) detaches the thread, handing on any signal still
///   held.
#[derive(Debug)]
pub struct ThreadTracer {
    pid: i32,
    tid: i32,
    /// False once the thread is known to have exited.
    alive: bool,
    /// The thread of strobe that seized it: the only one the kernel lets use it.
    owner: i32,
}

impl ThreadTracer {
    /// Seize thread `tid` of process `pid` (no stop yet).
    pub fn seize(pid: i32, tid: i32) -> Result<ThreadTracer, StackError> {
        match ptrace::seize(Pid::from_raw(tid), ptrace::Options::empty()) {
            Ok(()) => Ok(ThreadTracer {
                pid,
                tid,
                alive: true,
                owner: own_tid(),
            }),
            Err(Errno::ESRCH) => Err(StackError::ThreadGone { pid, tid }),
            Err(Errno::EPERM) => Err(refused(pid, tid)),
            Err(errno) => Err(StackError::Ptrace {
                op: "PTRACE_SEIZE",
                pid,
                tid,
                errno,
            }),
        }
    }

    /// The thread.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// Stop the thread, read its registers and copy its stack from the stack pointer into
    /// `stack` (as much as `span` says: a byte count, or a [`StackSpan`]; less where the
    /// readable memory ends), and let it go.
    pub fn capture(
        &mut self,
        max_stack: impl Into<StackSpan>,
        stack: &mut Vec<u8>,
    ) -> Result<TracedCapture, StackError> {
        self.capture_with(max_stack, stack, || ()).map(|(c, ())| c)
    }

    /// [`ThreadTracer::capture`], and `during` called while the thread is still stopped
    /// (after its registers and stack were read): to read what belongs to the same instant,
    /// such as the thread's Python frames. Keep `during` short: the thread waits for it.
    pub fn capture_with<R>(
        &mut self,
        max_stack: impl Into<StackSpan>,
        stack: &mut Vec<u8>,
        during: impl FnOnce() -> R,
    ) -> Result<(TracedCapture, R), StackError> {
        self.stopped_capture(max_stack.into(), stack, during, Release::Resume)
    }

    /// [`ThreadTracer::capture_with`] for a one-off capture: the thread is detached from the
    /// capture's own stop instead of being resumed and stopped a second time to detach (as
    /// dropping the tracer does), so it is stopped once, not twice. From a group-stop it stays
    /// stopped, as the group-stop wants.
    pub fn capture_once<R>(
        mut self,
        max_stack: impl Into<StackSpan>,
        stack: &mut Vec<u8>,
        during: impl FnOnce() -> R,
    ) -> Result<(TracedCapture, R), StackError> {
        self.stopped_capture(max_stack.into(), stack, during, Release::Detach)
    }

    /// Stop the thread, read it, run `during`, and let it go as `release` says: a group of
    /// one (see [`group`]).
    fn stopped_capture<R>(
        &mut self,
        max_stack: StackSpan,
        stack: &mut Vec<u8>,
        during: impl FnOnce() -> R,
        release: Release,
    ) -> Result<(TracedCapture, R), StackError> {
        let mut one = Together::new(self, max_stack, stack);
        let also = group::stop_read_release(std::slice::from_mut(&mut one), during, release);
        Ok((one.take_result()?, also))
    }

    /// Ask the thread to stop (`PTRACE_INTERRUPT`), without waiting for the stop.
    fn interrupt(&mut self) -> Result<(), StackError> {
        if !self.alive {
            return Err(StackError::ThreadGone {
                pid: self.pid,
                tid: self.tid,
            });
        }
        self.check_owner("PTRACE_INTERRUPT")?;
        match ptrace::interrupt(Pid::from_raw(self.tid)) {
            Ok(()) => Ok(()),
            Err(Errno::ESRCH) => Err(self.gone()),
            Err(errno) => Err(self.ptrace_error("PTRACE_INTERRUPT", errno)),
        }
    }

    /// Let the thread go from its stop `how`, as `release` says.
    fn release(&mut self, how: Stopped, release: Release) -> Result<(), StackError> {
        match release {
            Release::Resume => self.resume(how),
            Release::Detach => match ptrace::detach(Pid::from_raw(self.tid), None) {
                // Detached: nothing is left for `Drop` to undo.
                Ok(()) => {
                    self.alive = false;
                    Ok(())
                }
                Err(Errno::ESRCH) => Err(self.gone()),
                Err(errno) => Err(self.ptrace_error("PTRACE_DETACH", errno)),
            },
        }
    }

    /// Hand on signals that stopped the thread since the last capture, without waiting. Call
    /// it when a capture is not due, so that signals to the target are not held back.
    pub fn service(&mut self) -> Result<(), StackError> {
        if !self.alive {
            return Err(StackError::ThreadGone {
                pid: self.pid,
                tid: self.tid,
            });
        }
        self.check_owner("waitpid")?;
        let flags = WaitPidFlag::__WALL | WaitPidFlag::__WNOTHREAD | WaitPidFlag::WNOHANG;
        loop {
            match waitpid(Pid::from_raw(self.tid), Some(flags)) {
                Ok(WaitStatus::StillAlive) => return Ok(()),
                Ok(WaitStatus::Stopped(_, sig)) => self.cont(Some(sig))?,
                Ok(WaitStatus::PtraceEvent(_, sig, ev))
                    if ev == Event::PTRACE_EVENT_STOP as i32 =>
                {
                    let how = if sig == Signal::SIGTRAP {
                        Stopped::Interrupt
                    } else {
                        Stopped::GroupStop
                    };
                    self.resume(how)?;
                }
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    return Err(self.reaped(status))
                }
                Err(Errno::ECHILD) => return Err(self.gone()),
                Ok(_) => self.cont(None)?,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(self.ptrace_error("waitpid", errno)),
            }
        }
    }

    /// Wait for the stop our interrupt asked for, handing on signals met on the way.
    fn wait_for_stop(&mut self) -> Result<Stopped, StackError> {
        let since = Instant::now();
        let spin = SPIN.limit();
        let stopped = self.wait_for_stop_spinning(since, spin);
        SPIN.learn(since.elapsed(), spin);
        stopped
    }

    /// [`ThreadTracer::wait_for_stop`]: polls until `spin` has passed since `since`, then
    /// sleeps in `waitpid`.
    fn wait_for_stop_spinning(
        &mut self,
        since: Instant,
        spin: Duration,
    ) -> Result<Stopped, StackError> {
        let blocking = WaitPidFlag::__WALL | WaitPidFlag::__WNOTHREAD;
        loop {
            let flags = if since.elapsed() < spin {
                blocking | WaitPidFlag::WNOHANG
            } else {
                blocking
            };
            match waitpid(Pid::from_raw(self.tid), Some(flags)) {
                Ok(WaitStatus::PtraceEvent(_, sig, ev))
                    if ev == Event::PTRACE_EVENT_STOP as i32 =>
                {
                    // SIGTRAP: the interrupt. A stop signal: a group-stop, which is as good a
                    // stop to read the thread in, and must be left in place afterwards.
                    return Ok(if sig == Signal::SIGTRAP {
                        Stopped::Interrupt
                    } else {
                        Stopped::GroupStop
                    });
                }
                // A signal arrived before the interrupt took effect (signal-delivery-stop).
                // Deliver it; the interrupt stays pending and stops the thread right after.
                Ok(WaitStatus::Stopped(_, sig)) => self.cont(Some(sig))?,
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    return Err(self.reaped(status))
                }
                Err(Errno::ECHILD) => return Err(self.gone()),
                // Other ptrace events are not enabled; resume anything unexpected.
                Ok(WaitStatus::PtraceEvent(..) | WaitStatus::PtraceSyscall(_)) => {
                    self.cont(None)?
                }
                Ok(WaitStatus::StillAlive) => std::hint::spin_loop(),
                Ok(WaitStatus::Continued(_)) => continue,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(self.ptrace_error("waitpid", errno)),
            }
        }
    }

    fn resume(&mut self, how: Stopped) -> Result<(), StackError> {
        match how {
            Stopped::Interrupt => self.cont(None),
            Stopped::GroupStop => match listen(self.tid) {
                Ok(()) => Ok(()),
                Err(Errno::ESRCH) => Err(self.gone()),
                Err(errno) => Err(self.ptrace_error("PTRACE_LISTEN", errno)),
            },
        }
    }

    fn cont(&mut self, sig: Option<Signal>) -> Result<(), StackError> {
        match ptrace::cont(Pid::from_raw(self.tid), sig) {
            Ok(()) => Ok(()),
            Err(Errno::ESRCH) => Err(self.gone()),
            Err(errno) => Err(self.ptrace_error("PTRACE_CONT", errno)),
        }
    }

    fn gone(&mut self) -> StackError {
        if self.alive {
            // A traced thread that exits stays a zombie until its tracer collects it.
            let flags = WaitPidFlag::__WALL | WaitPidFlag::__WNOTHREAD | WaitPidFlag::WNOHANG;
            if let Ok(status) = waitpid(Pid::from_raw(self.tid), Some(flags)) {
                self.note_exit(status);
            }
        }
        self.alive = false;
        StackError::ThreadGone {
            pid: self.pid,
            tid: self.tid,
        }
    }

    /// The thread's exit, as a wait of ours collected it.
    fn reaped(&mut self, status: WaitStatus) -> StackError {
        self.note_exit(status);
        self.alive = false;
        StackError::ThreadGone {
            pid: self.pid,
            tid: self.tid,
        }
    }

    /// When strobe both started the target and traces its main thread, our wait may be the
    /// one that collects the process's exit: its status is kept for [`crate::try_wait`].
    fn note_exit(&self, status: WaitStatus) {
        if self.tid == self.pid {
            crate::freeze::remember_leader_exit(status);
        }
    }

    /// Calls from a thread other than the one that seized fail in the kernel (`ESRCH`, read
    /// as the thread being gone): said plainly instead.
    fn check_owner(&self, op: &'static str) -> Result<(), StackError> {
        if own_tid() == self.owner {
            Ok(())
        } else {
            Err(self.ptrace_error(op, Errno::EPERM))
        }
    }

    fn ptrace_error(&self, op: &'static str, errno: Errno) -> StackError {
        StackError::Ptrace {
            op,
            pid: self.pid,
            tid: self.tid,
            errno,
        }
    }
}

thread_local! {
    /// This thread's kernel id, asked once: [`ThreadTracer::check_owner`] runs before every
    /// stop and wait of a capture (several per sampling round), and `gettid` is a system call.
    static OWN_TID: i32 = nix::unistd::gettid().as_raw();
}

/// The kernel id of the calling thread (see [`OWN_TID`]).
fn own_tid() -> i32 {
    OWN_TID.with(|t| *t)
}

impl Drop for ThreadTracer {
    fn drop(&mut self) {
        // On another thread than the seizing one nothing can be done: the kernel detaches
        // the thread when the seizing thread exits.
        if !self.alive || self.check_owner("PTRACE_DETACH").is_err() {
            return;
        }
        let t = Pid::from_raw(self.tid);
        // PTRACE_DETACH needs the tracee in a ptrace stop.
        if ptrace::interrupt(t).is_err() {
            // Exited: collect the zombie, which only its tracer can.
            let _ = self.gone();
            return;
        }
        // Detaching from a group-stop leaves the thread stopped, as the group-stop wants;
        // from our interrupt, it runs on.
        if self.wait_for_stop().is_ok() {
            let _ = ptrace::detach(t, None);
        }
    }
}

/// Registers and stack of a stopped thread, and the system call it was in, if any.
pub(crate) fn read_state(
    pid: i32,
    tid: i32,
    max_stack: StackSpan,
    stack: &mut Vec<u8>,
) -> Result<(UserRegs, Option<u64>), StackError> {
    let (regs, call) = read_regs(pid, tid)?;
    copy_stack(pid, tid, regs.sp, max_stack, stack)?;
    Ok((regs, call.map(|c| c.nr)))
}

/// Registers of a stopped thread, and the system call it was in, if any.
pub(crate) fn read_regs(pid: i32, tid: i32) -> Result<(UserRegs, Option<StopSyscall>), StackError> {
    let regs = match ptrace::getregset::<regset::NT_PRSTATUS>(Pid::from_raw(tid)) {
        Ok(r) => r,
        Err(Errno::ESRCH) => return Err(StackError::ThreadGone { pid, tid }),
        Err(errno) => {
            return Err(StackError::Ptrace {
                op: "PTRACE_GETREGSET",
                pid,
                tid,
                errno,
            })
        }
    };
    let call = syscall_at_stop(tid, &regs);
    let regs = UserRegs {
        ip: regs.rip,
        sp: regs.rsp,
        bp: Some(regs.rbp),
        bx: Some(regs.rbx),
    };
    Ok((regs, call))
}

/// What a stopped thread's registers say about the system call it was stopped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopSyscall {
    /// The call's number (`orig_rax`).
    pub nr: u64,
    /// Its return value as it stands at the stop (`rax`): the result of a call that completed,
    /// or the code of one interrupted in its sleep (see [`StopSyscall::interrupted_wait`]).
    pub ret: i64,
    /// The kernel has already set the interrupted call up to be made again (`rip` back on the
    /// `syscall` instruction, `rax` the call's number or `restart_syscall`'s), and the thread
    /// has not made it yet: it ran through its signal handling after an earlier stop, and was
    /// preempted before reaching user space.
    pub restart_pending: bool,
}

/// Return values of a system call that a stop interrupted while it slept: the kernel restarts
/// the call when the thread resumes (`-ERESTARTSYS`, `-ERESTARTNOINTR`, `-ERESTARTNOHAND`,
/// `-ERESTART_RESTARTBLOCK`: include/linux/errno.h), or lets it fail with `-EINTR` (calls that
/// are never restarted, such as `epoll_wait`: signal(7)). The code stays in `rax` from the
/// interruption until the thread next runs through its signal handling on its way back to
/// user space, which rewrites `rax` for the restart.
const INTERRUPTED_WAIT: [i64; 5] = [-4, -512, -513, -514, -516];

impl StopSyscall {
    /// Whether the call was asleep when the stop came, or had been interrupted by an earlier
    /// stop and not made again since (its code still in `rax`, or its restart pending): the
    /// thread was waiting, not running.
    pub fn interrupted_wait(self) -> bool {
        INTERRUPTED_WAIT.contains(&self.ret) || self.restart_pending
    }
}

/// The system call thread `tid` of `pid` (in a ptrace stop) was stopped in, if any.
pub(crate) fn stop_syscall(pid: i32, tid: i32) -> Result<Option<StopSyscall>, StackError> {
    let regs = match ptrace::getregset::<regset::NT_PRSTATUS>(Pid::from_raw(tid)) {
        Ok(r) => r,
        Err(Errno::ESRCH) => return Err(StackError::ThreadGone { pid, tid }),
        Err(errno) => {
            return Err(StackError::Ptrace {
                op: "PTRACE_GETREGSET",
                pid,
                tid,
                errno,
            })
        }
    };
    Ok(syscall_at_stop(tid, &regs))
}

/// What the registers `regs` of stopped thread `tid` say about the system call it was stopped
/// in, if any.
fn syscall_at_stop(tid: i32, regs: &nix::libc::user_regs_struct) -> Option<StopSyscall> {
    // -1 in `orig_rax`: stopped in user space (or entered the kernel other than by a call).
    let Ok(nr) = u64::try_from(regs.orig_rax as i64) else {
        return None;
    };
    // A restart set up (arch/x86/kernel/signal.c, `arch_do_signal_or_restart`): `rax` back to
    // the call's number (or `restart_syscall`'s) and `rip` 2 bytes back, on the `syscall`
    // instruction. A call that completed with its own number as result has `rip` after it.
    let restart_pending = (regs.rax == regs.orig_rax || regs.rax == NR_RESTART_SYSCALL)
        && ptrace::read(Pid::from_raw(tid), regs.rip as ptrace::AddressType)
            .is_ok_and(|word| (word as u64) & 0xffff == SYSCALL_INSTRUCTION);
    Some(StopSyscall {
        nr,
        ret: regs.rax as i64,
        restart_pending,
    })
}

/// `restart_syscall` on x86-64 (asm/unistd_64.h).
const NR_RESTART_SYSCALL: u64 = 219;
/// The `syscall` instruction (`0f 05`), as the low 16 bits of a little-endian word read at it.
const SYSCALL_INSTRUCTION: u64 = 0x050f;

/// `PTRACE_LISTEN`, which `nix` does not wrap.
#[allow(unsafe_code)]
fn listen(tid: i32) -> Result<(), Errno> {
    // SAFETY: PTRACE_LISTEN takes no address or data (both null), so no memory of ours is
    // read or written; the kernel checks that `tid` is our tracee in a group-stop.
    let rc = unsafe {
        nix::libc::ptrace(
            nix::libc::PTRACE_LISTEN,
            tid,
            std::ptr::null_mut::<nix::libc::c_void>(),
            std::ptr::null_mut::<nix::libc::c_void>(),
        )
    };
    if rc == -1 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// The error for a refused `PTRACE_SEIZE`: another tracer, an exiting thread, or permission.
fn refused(pid: i32, tid: i32) -> StackError {
    let status = std::fs::read_to_string(task_file(pid, tid, "status")).ok();
    let tracer = status.as_deref().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .and_then(|v| v.trim().parse::<i32>().ok())
    });
    match tracer {
        Some(tracer) if tracer != 0 && tracer != std::process::id() as i32 => {
            StackError::AlreadyTraced { pid, tid, tracer }
        }
        // The kernel refuses to seize a thread that is already exiting.
        _ if status.is_none() || procfs::is_gone_or_exiting(pid) => {
            StackError::ThreadGone { pid, tid }
        }
        _ => StackError::PermissionDenied { pid, tid },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_waits_are_told_from_completed_calls() {
        let call = |ret| StopSyscall {
            nr: 202,
            ret,
            restart_pending: false,
        };
        // -EINTR, -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK.
        for ret in [-4, -512, -513, -514, -516] {
            assert!(call(ret).interrupted_wait(), "{ret}");
        }
        // A wait that was woken (0), timed out (-ETIMEDOUT), found the value changed
        // (-EAGAIN), a wake that woke one thread (1), or an error of another kind.
        for ret in [0, -110, -11, 1, -14, -515] {
            assert!(!call(ret).interrupted_wait(), "{ret}");
        }
        // Set up to be made again, not made yet.
        let pending = StopSyscall {
            restart_pending: true,
            ..call(202)
        };
        assert!(pending.interrupted_wait());
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn after(limit: Duration, took: Duration) -> Duration {
        let spin = Spin {
            limit_ns: AtomicU64::new(limit.as_nanos() as u64),
        };
        spin.learn(took, limit);
        spin.limit()
    }

    #[test]
    fn polling_follows_the_stops_seen_and_backs_off_when_they_outlast_it() {
        // Seen while polling: twice that, within [SPIN_MIN, SPIN_MAX].
        assert_eq!(after(us(40), us(5)), SPIN_MIN);
        assert_eq!(after(us(40), us(30)), us(60));
        assert_eq!(after(us(200), us(150)), SPIN_MAX);
        // Outlasted: halved, then none once below the least.
        assert_eq!(after(us(100), us(300)), us(50));
        assert_eq!(after(us(30), us(300)), Duration::ZERO);
        // Not polling: a quick stop starts it again, a slow one does not.
        assert_eq!(after(Duration::ZERO, us(40)), us(80));
        assert_eq!(after(Duration::ZERO, SPIN_MAX), Duration::ZERO);
    }
}
