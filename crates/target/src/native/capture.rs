//! One thread's registers and native stack, with the Python read run at the same instant
//! where it can be (see docs/PERFORMANCE.md, "Native stacks", for the costs):
//! - a thread asleep in the kernel is read without a stop ([`BlockedThread`]), proven asleep
//!   through the Python read by its scheduler run count;
//! - otherwise the thread is stopped alone ([`ThreadTracer`]) and the Python read runs inside
//!   the stop;
//! - where ptrace is refused (the thread is already traced by a debugger or another profiler,
//!   or the kernel does not allow it), running threads are taken from the kernel's snapshot at
//!   a `cpu-clock` interrupt instead ([`PerfThread`]), said once in a warning. That snapshot
//!   is of an earlier instant than the Python read, so such captures are marked as not of one
//!   instant, and the merge does not take the liberties one instant allows.

use std::collections::HashMap;
use std::time::Duration;

use strobe_native::{KernelBoundary, UnwindEnd, Unwound};
use strobe_remote::{
    BlockedThread, PerfConfig, PerfThread, StackError, StackSpan, ThreadTracer, UserRegs,
};

/// Bytes of stack copied from the stack pointer up (ptrace and asleep), at most; once a
/// thread's stack was unwound to its outermost frame, only up to there ([`Capturer::span`]).
pub(crate) const STACK_BYTES: usize = 256 * 1024;
/// Threads whose stack reach is remembered, at most (more, and the list starts again).
const MAX_REACHES: usize = 4096;
/// perf events: samples per second of a thread's CPU time, and stack bytes per sample. The
/// latest sample is what a capture uses, so it is at most one period (4 ms) older than the
/// capture while the thread runs.
const PERF: PerfConfig = PerfConfig {
    frequency_hz: 250,
    stack_bytes: 32 * 1024,
    ring_pages: 128,
    kernel_time: false,
};
/// A perf sample older than this is not the thread's present: it has not run since.
const PERF_FRESH: Duration = Duration::from_millis(50);

/// One thread's capture.
pub(crate) struct Captured {
    pub(crate) regs: UserRegs,
    pub(crate) kernel: Option<KernelBoundary>,
    /// Read asleep, without a stop.
    pub(crate) asleep: bool,
    /// The native stack and the Python read are of one instant (not a perf snapshot).
    pub(crate) same_instant: bool,
    /// The copy was cut short at the reach of the thread's earlier unwind: an unwind that
    /// does not complete may need the whole stack (the thread id was reused, or it runs on
    /// another stack).
    pub(crate) bounded: bool,
}

/// A thread's perf event and its latest snapshot: (time, registers, stack).
struct PerfState {
    event: PerfThread,
    latest: Option<(u64, UserRegs, Vec<u8>)>,
}

/// Captures threads of one process, keeping what is worth keeping between captures: the stack
/// buffer, and, once ptrace was refused, a perf event per running thread.
#[derive(Default)]
pub(crate) struct Capturer {
    /// The stack bytes of the latest capture, from its stack pointer up.
    pub(crate) stack: Vec<u8>,
    /// Why running threads are read from perf events instead of a ptrace stop, once ptrace was
    /// refused.
    perf_instead: Option<String>,
    perf: HashMap<i32, PerfState>,
    /// Per thread, one past the highest stack address its last complete unwind read.
    reach: HashMap<i32, u64>,
    /// Lines for the user, taken by [`Capturer::take_warnings`].
    warnings: Vec<String>,
}

impl Capturer {
    /// Registers and stack of thread `tid` of `pid` into [`Capturer::stack`], with `during`
    /// run at the same instant if possible. `may_sleep`: try reading it asleep first.
    pub(crate) fn capture(
        &mut self,
        pid: i32,
        tid: i32,
        may_sleep: bool,
        mut during: impl FnMut(),
    ) -> Result<Captured, String> {
        // Asleep: no stop at all, if the run count proves it slept through the Python read.
        let blocked = if may_sleep {
            run_count(pid, tid).zip(BlockedThread::open(pid, tid).ok())
        } else {
            None
        };
        let span = self.span(tid);
        if let Some((before, mut blocked)) = blocked {
            if let Ok(c) = blocked.capture(span, &mut self.stack) {
                during();
                if run_count(pid, tid) == Some(before) {
                    return Ok(Captured {
                        regs: c.regs,
                        kernel: Some(KernelBoundary {
                            syscall: u64::try_from(c.state.nr).ok(),
                        }),
                        asleep: true,
                        same_instant: true,
                        bounded: span.bytes_from(c.regs.sp) < span.max,
                    });
                }
            }
        }
        if self.perf_instead.is_none() {
            match ThreadTracer::seize(pid, tid) {
                Ok(tracer) => {
                    let (c, ()) = tracer
                        .capture_once(span, &mut self.stack, during)
                        .map_err(|e| e.to_string())?;
                    return Ok(Captured {
                        regs: c.regs,
                        // Stopped inside a system call (asleep, but not provably through the
                        // Python read).
                        kernel: c.syscall.map(|nr| KernelBoundary { syscall: Some(nr) }),
                        asleep: false,
                        same_instant: true,
                        bounded: span.bytes_from(c.regs.sp) < span.max,
                    });
                }
                Err(e) => self.seize_refused(e)?,
            }
        }
        self.capture_perf(pid, tid, during)
    }

    /// A refused seize: from now on running threads come from perf events, said once; other
    /// errors are the capture's.
    fn seize_refused(&mut self, e: StackError) -> Result<(), String> {
        match e {
            StackError::AlreadyTraced { .. } | StackError::PermissionDenied { .. } => {
                self.warnings.push(format!(
                    "native stacks of running threads come from perf events instead of a \
                     ptrace stop: {e}. The kernel's snapshot is a few milliseconds older than \
                     the Python frames read with it, so more of these samples fail to merge \
                     (they keep their Python frames; the summary counts them)"
                ));
                self.perf_instead = Some(e.to_string());
                Ok(())
            }
            e => Err(e.to_string()),
        }
    }

    /// The latest perf snapshot of thread `tid`, then `during`.
    fn capture_perf(
        &mut self,
        pid: i32,
        tid: i32,
        mut during: impl FnMut(),
    ) -> Result<Captured, String> {
        let state = match self.perf.entry(tid) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let event = PerfThread::open(pid, tid, &PERF).map_err(|e| {
                    format!(
                        "ptrace is refused ({}) and so are perf events: {e}",
                        self.perf_instead.as_deref().unwrap_or("")
                    )
                })?;
                v.insert(PerfState {
                    event,
                    latest: None,
                })
            }
        };
        // The newest snapshot since the last capture, else the one kept from before (a thread
        // that runs little is not interrupted between every two captures).
        let latest = &mut state.latest;
        state.event.drain(|s| {
            if let Some(regs) = s.regs {
                let (time, r, stack) = latest.get_or_insert_with(|| (0, regs, Vec::new()));
                *time = s.time_ns;
                *r = regs;
                stack.clear();
                stack.extend_from_slice(s.stack);
            }
        });
        let Some((time_ns, regs, stack)) = &state.latest else {
            return Err("no perf snapshot of the thread yet (it has not run since)".into());
        };
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(*time_ns);
        if now.saturating_sub(*time_ns) > PERF_FRESH.as_nanos() as u64 {
            return Err(
                "the thread's latest perf snapshot is too old (it has not run since)".into(),
            );
        }
        let regs = *regs;
        self.stack.clear();
        self.stack.extend_from_slice(stack);
        during();
        Ok(Captured {
            regs,
            kernel: None,
            asleep: false,
            same_instant: false,
            bounded: false,
        })
    }

    /// How much of thread `tid`'s stack a capture copies: up to the reach of its last
    /// complete unwind, if there was one.
    pub(crate) fn span(&self, tid: i32) -> StackSpan {
        StackSpan {
            max: STACK_BYTES,
            end: self.reach.get(&tid).copied(),
        }
    }

    /// Remember how far up thread `tid`'s stack `unwound` read, if it reached the outermost
    /// frame and its stack `merged` with the Python frames; else forget it, so that the next
    /// capture copies all it can.
    pub(crate) fn learn_reach(&mut self, tid: i32, unwound: &Unwound, merged: bool) {
        if merged && unwound.end == Some(UnwindEnd::Complete) && unwound.reach != 0 {
            if self.reach.len() >= MAX_REACHES && !self.reach.contains_key(&tid) {
                self.reach.clear();
            }
            self.reach.insert(tid, unwound.reach);
        } else {
            self.reach.remove(&tid);
        }
    }

    /// Lines for the user since the last call (said once each).
    pub(crate) fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }
}

/// The scheduler's count of times thread `tid` was put on a CPU, if the kernel keeps it.
fn run_count(pid: i32, tid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    text.split_ascii_whitespace().nth(2)?.parse().ok()
}
