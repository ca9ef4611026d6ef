//! Several threads of one process stopped together for one instant: every `PTRACE_INTERRUPT`
//! is sent before any stop is waited for, every thread is read while all of them are stopped,
//! and only then are they let go.
//!
//! Stopping a process's running threads one after the other makes the later ones wait on what
//! the earlier ones hold while stopped (the GIL, its mutex, any lock), and a sample then finds
//! them waiting because of the sampler. Stopped together, no sampled thread runs while another
//! is held. Threads that are not in the group (sleeping ones, read without a stop) run on.

use std::time::Instant;

use super::{read_regs, Release, StopSyscall, Stopped, ThreadTracer, TracedCapture, SPIN};
use crate::stack::{copy_stacks, StackCopy, StackError, StackSpan, UserRegs};

/// One thread of [`capture_together`]: its tracer, how much of its stack to copy and where to,
/// and, after the capture, what it gave ([`Together::take_result`]).
pub struct Together<'a> {
    tracer: &'a mut ThreadTracer,
    span: StackSpan,
    stack: &'a mut Vec<u8>,
    /// Our interrupt's stop came, and how.
    stopped: Option<Stopped>,
    /// The registers and stack read in the stop, and the system call it was in.
    read: Option<Result<(UserRegs, Option<StopSyscall>), StackError>>,
    result: Option<Result<TracedCapture, StackError>>,
}

impl<'a> Together<'a> {
    /// Thread `tracer`, its stack to be copied into `stack` as `span` says.
    pub fn new(
        tracer: &'a mut ThreadTracer,
        span: impl Into<StackSpan>,
        stack: &'a mut Vec<u8>,
    ) -> Together<'a> {
        Together {
            tracer,
            span: span.into(),
            stack,
            stopped: None,
            read: None,
            result: None,
        }
    }

    /// The thread.
    pub fn tid(&self) -> i32 {
        self.tracer.tid
    }

    /// What the capture gave this thread (its stack is in the buffer given to
    /// [`Together::new`]); an error if it was not captured (it exited, it could not be
    /// stopped or read, or the capture has not run).
    pub fn take_result(&mut self) -> Result<TracedCapture, StackError> {
        self.result.take().unwrap_or(Err(StackError::ThreadGone {
            pid: self.tracer.pid,
            tid: self.tracer.tid,
        }))
    }
}

/// Stop every thread of `threads` together: all interrupts first, then their stops; read each
/// one's registers and stack; run `during` once while every one of them is still stopped (to
/// read what belongs to the same instant, such as their Python frames); then detach from them
/// all (from a group-stop a thread stays stopped, as the group-stop wants). Each thread's
/// result is in its [`Together`]; a thread that exits or cannot be stopped fails alone, the
/// others are captured. `during` runs even if none was stopped. Every tracer is detached
/// afterwards: drop them.
///
/// Keep `during` short: every thread of the group waits for it, and for the slowest stop.
pub fn capture_together<R>(threads: &mut [Together<'_>], during: impl FnOnce() -> R) -> R {
    stop_read_release(threads, during, Release::Detach)
}

/// [`capture_together`], letting the threads go as `release` says.
pub(super) fn stop_read_release<R>(
    threads: &mut [Together<'_>],
    during: impl FnOnce() -> R,
    release: Release,
) -> R {
    let since = Instant::now();
    for t in threads.iter_mut() {
        t.stopped = None;
        t.read = None;
        t.result = t.tracer.interrupt().err().map(Err);
    }
    // The stops, in turn: once the first has come the others have had as long to come, so
    // the wait is for the slowest. Polling is limited by the time since the first interrupt.
    let spin = SPIN.limit();
    let mut waited = false;
    for t in threads.iter_mut().filter(|t| t.result.is_none()) {
        waited = true;
        match t.tracer.wait_for_stop_spinning(since, spin) {
            Ok(how) => t.stopped = Some(how),
            Err(e) => t.result = Some(Err(e)),
        }
    }
    if waited {
        SPIN.learn(since.elapsed(), spin);
    }
    for t in threads.iter_mut().filter(|t| t.stopped.is_some()) {
        t.read = Some(read_regs(t.tracer.pid, t.tracer.tid));
    }
    copy_group_stacks(threads);
    let also = during();
    for t in threads.iter_mut() {
        let Some(how) = t.stopped.take() else {
            continue;
        };
        let released = t.tracer.release(how, release);
        let stopped_for = since.elapsed();
        let read = t.read.take();
        t.result = Some(released.and_then(|()| finish(t.tracer, read, stopped_for)));
    }
    also
}

/// The stacks of the threads whose registers were read, copied while all of them are
/// stopped: with one `process_vm_readv` per process of the group ([`copy_stacks`]) instead of
/// one call per thread. A thread whose copy failed has that error as its read.
fn copy_group_stacks(threads: &mut [Together<'_>]) {
    let mut pids: Vec<i32> = threads.iter().map(|t| t.tracer.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    for pid in pids {
        let mut whose = Vec::with_capacity(threads.len());
        let mut copies = Vec::with_capacity(threads.len());
        for (i, t) in threads.iter_mut().enumerate() {
            if let (true, Some(Ok((regs, _)))) = (t.tracer.pid == pid, &t.read) {
                copies.push(StackCopy {
                    tid: t.tracer.tid,
                    sp: regs.sp,
                    span: t.span,
                    buf: &mut *t.stack,
                    result: Ok(()),
                });
                whose.push(i);
            }
        }
        copy_stacks(pid, &mut copies);
        let failed: Vec<(usize, StackError)> = (copies.into_iter().zip(whose))
            .filter_map(|(c, i)| c.result.err().map(|e| (i, e)))
            .collect();
        for (i, e) in failed {
            threads[i].read = Some(Err(e));
        }
    }
}

/// A released thread's capture from what its stop gave.
fn finish(
    tracer: &mut ThreadTracer,
    read: Option<Result<(UserRegs, Option<StopSyscall>), StackError>>,
    stopped_for: std::time::Duration,
) -> Result<TracedCapture, StackError> {
    match read {
        Some(Ok((regs, call))) => Ok(TracedCapture {
            regs,
            stopped_for,
            syscall: call.map(|c| c.nr),
            interrupted_wait: call.is_some_and(StopSyscall::interrupted_wait),
        }),
        Some(Err(StackError::ThreadGone { .. })) | None => Err(tracer.gone()),
        Some(Err(e)) => Err(e),
    }
}
