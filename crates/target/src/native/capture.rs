//! Threads' registers and native stacks, with one Python read run at the same instant as all
//! of them where it can be (see docs/PERFORMANCE.md, "Native stacks", for the costs):
//! - a thread asleep in the kernel is read without a stop ([`BlockedThread`]), proven asleep
//!   through the Python read by its scheduler run count;
//! - a thread preempted from a CPU (runnable, waiting for one) whose registers at that
//!   preemption the per-CPU switch records keep ([`CpuPreemptions`]) is read without a stop
//!   (its stack copied as a sleeping thread's), with a Python read of the preempted threads
//!   alone ([`Read::Preempted`]), both before anything is stopped, and proven not to have run
//!   through that read by its switch records; one that ran, or has no registers, is stopped
//!   with the others;
//! - otherwise the thread is stopped ([`ThreadTracer`]), together with the other threads of
//!   the same capture ([`capture_together`]), and the Python read runs inside the stops
//!   ([`Read::Stopped`]);
//! - where ptrace is refused (the thread is already traced by a debugger or another profiler,
//!   or the kernel does not allow it), running threads are taken from the kernel's snapshot at
//!   a `cpu-clock` interrupt instead ([`PerfThread`]), said once in a warning. That snapshot
//!   is of an earlier instant than the Python read, so such captures are marked as not of one
//!   instant, and the merge does not take the liberties one instant allows.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use strobe_native::{KernelBoundary, UnwindEnd, Unwound};

use super::sample::PREEMPTED_READ_TO_STOP;
use strobe_remote::{
    capture_together, copy_stacks, BlockedThread, PerfConfig, PerfThread, StackCopy, StackError,
    StackSpan, ThreadTracer, Together, UserRegs,
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
#[derive(Clone, Copy)]
pub(crate) struct Captured {
    pub(crate) regs: UserRegs,
    pub(crate) kernel: Option<KernelBoundary>,
    /// Read asleep, without a stop.
    pub(crate) asleep: bool,
    /// Stopped asleep in a system call (the stop woke it): it was waiting, not running
    /// ([`strobe_remote::TracedCapture::interrupted_wait`]).
    pub(crate) interrupted_wait: bool,
    /// Read preempted, without a stop, from the kernel's record of its preemption. Whether it
    /// was in a system call is not known yet: the merge looks at the instruction before its
    /// instruction pointer ([`Captured::kernel`] is `None` until then).
    pub(crate) preempted: bool,
    /// The native stack and the Python read are of one instant (not a perf snapshot).
    pub(crate) same_instant: bool,
    /// Stopped: [`strobe_remote::perf_clock_ns`] while the capture's stops held the thread
    /// (it had not run since its state was taken; anything its switch records show after
    /// this came after the capture). Read preempted from per-CPU records: the time of its
    /// preemption's record, which holds the same way.
    pub(crate) stopped_at_ns: Option<u64>,
    /// The copy was cut short at the reach of the thread's earlier unwind: an unwind that
    /// does not complete may need the whole stack (the thread id was reused, or it runs on
    /// another stack).
    pub(crate) bounded: bool,
}

/// Switch records kept per CPU, with each preemption's registers
/// (`strobe_remote::CpuSwitches::record_preemptions`), as of their latest drain.
pub trait CpuPreemptions {
    /// Thread `tid`'s registers at its newest preemption, and a mark of that preemption, if
    /// its last switch is that preemption. Asked once for each thread a capture would
    /// otherwise stop: the records may count the threads found preempted (what recording
    /// their registers saves) from these calls.
    fn preempted(&self, tid: i32) -> Option<(u64, UserRegs)>;
    /// Thread `tid`'s registers at its newest switch out to a wait, and a mark of it, if that
    /// is its last switch and they were recorded: asleep, or woken and not yet on a CPU, it
    /// has executed nothing since. Asked only of threads a capture may find asleep.
    fn blocked(&self, _tid: i32) -> Option<(u64, UserRegs)> {
        None
    }
    /// Drain the records written since: what [`CpuPreemptions::unmoved`] answers from is then
    /// up to now.
    fn refresh(&self);
    /// Whether thread `tid` has had no switch since the preemption `mark` names (so it has
    /// not run since).
    fn unmoved(&self, tid: i32, mark: u64) -> bool;
}

/// The per-CPU records of a thread of a capture, by thread id, where its preemptions'
/// registers are kept.
pub type WatchesOf<'w> = dyn Fn(i32) -> Option<&'w dyn CpuPreemptions> + 'w;

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

/// One thread of [`Capturer::capture_many`]: which, how it may be read, its stack buffer
/// (kept from round to round), and what the capture gave.
#[derive(Default)]
pub(crate) struct Slot {
    pub(crate) tid: i32,
    /// Its thread state's address: a Python read of the threads read preempted wants it.
    pub(crate) tstate: u64,
    /// It may be read asleep, without a stop.
    pub(crate) may_sleep: bool,
    /// The stack bytes of its capture, from its stack pointer up.
    pub(crate) stack: Vec<u8>,
    /// What the capture gave; `None` before it.
    pub(crate) got: Option<Result<Captured, Miss>>,
    way: Way,
}

impl Slot {
    /// Thread `tid` (thread state `tstate`), to be read asleep if it is and `may_sleep`.
    pub(crate) fn set(&mut self, tid: i32, tstate: u64, may_sleep: bool) {
        self.tid = tid;
        self.tstate = tstate;
        self.may_sleep = may_sleep;
        self.got = None;
        self.way = Way::Undecided;
    }
}

/// Which Python read [`Capturer::capture_many`] asks its caller for.
pub(crate) enum Read<'a> {
    /// Before any stop: the frames of the thread states `wanted` says, the threads read
    /// preempted (the others' may be left out). The caller keeps this read apart from the
    /// capture's own: these threads' captures are merged with their frames in it. Whether
    /// it succeeded is the closure's answer.
    Preempted(&'a mut dyn FnMut(u64) -> bool),
    /// The capture's own read, inside the stops (the closure's answer is not used).
    Stopped,
}

/// Why a thread of [`Capturer::capture_many`] has no capture.
pub(crate) enum Miss {
    /// Read asleep, but it ran before the Python read ended: capture it again, stopped.
    Woke,
    /// The reason, for the summary.
    Failed(String),
}

/// How a slot's thread is being captured.
#[derive(Default)]
enum Way {
    #[default]
    Undecided,
    /// Read asleep (its stack is copied); run count before the copy.
    Asleep {
        before: u64,
        regs: UserRegs,
        syscall: i64,
        span: StackSpan,
    },
    /// To be read preempted, without a stop, from its newest preemption record, read before
    /// any stop with the preempted threads' Python read ([`Read::Preempted`]): its
    /// registers, and the switch watch's position then, once read (its stack is copied).
    /// Once proven not to have run through that read, `held`; otherwise it becomes a
    /// [`Way::Stop`].
    Preempted {
        span: StackSpan,
        /// Its newest preemption's mark and registers ([`CpuPreemptions::preempted`]).
        record: (u64, UserRegs),
        read: Option<PreemptRead>,
        held: bool,
    },
    /// Seized, to be stopped with the others.
    Stop(ThreadTracer, StackSpan),
    /// Done: `got` says how.
    Done,
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
        let mut slot = Slot {
            stack: std::mem::take(&mut self.stack),
            ..Slot::default()
        };
        slot.set(tid, 0, may_sleep);
        let mut read = |_: Read<'_>| {
            during();
            true
        };
        self.capture_many(pid, std::slice::from_mut(&mut slot), None, None, &mut read);
        if let Some(Err(Miss::Woke)) = slot.got {
            // It ran during the Python read: stopped this time.
            slot.set(tid, 0, false);
            self.capture_many(pid, std::slice::from_mut(&mut slot), None, None, &mut read);
        }
        self.stack = std::mem::take(&mut slot.stack);
        match slot.got {
            Some(Ok(c)) => Ok(c),
            Some(Err(Miss::Failed(why))) => Err(why),
            Some(Err(Miss::Woke)) | None => Err("the thread could not be captured".into()),
        }
    }

    /// Registers and stack of every thread of `slots` (threads of `pid`), with the Python read
    /// `read` (see [`Read`]) at the same instant as all of them: threads that may sleep and
    /// provably sleep through the read are read without a stop; every other one is stopped,
    /// all of them together, and the read runs while they are (or, where ptrace is refused,
    /// they come from their latest perf snapshots). Each slot's outcome is in [`Slot::got`].
    /// The stops come no sooner than `not_before`, nor than [`PREEMPTED_READ_TO_STOP`] after
    /// a read of the preempted threads (see "Stops after our own read" in `sample.rs`).
    ///
    /// A thread that `watches` has watches for and that is preempted is read first, before
    /// anything is stopped: its newest preemption record, then the Python frames of the
    /// threads so read ([`Read::Preempted`]), then its switch watch again. Not switched in
    /// meanwhile, it has not run since the record, so record and frames are of one instant,
    /// its preemption; and nothing of ours has stopped a thread, handing its CPU to the
    /// preempted one, in between. Switched in meanwhile (or with no record to read), it is
    /// stopped with the others.
    pub(crate) fn capture_many(
        &mut self,
        pid: i32,
        slots: &mut [Slot],
        not_before: Option<Instant>,
        watches: Option<&WatchesOf<'_>>,
        read: &mut dyn FnMut(Read<'_>) -> bool,
    ) {
        let watched = |tid: i32| watches.and_then(|w| w(tid));
        let mut not_before = not_before;
        for slot in slots.iter_mut() {
            let span = self.span(slot.tid);
            // Asked once per capture of a thread (the records count the threads found
            // preempted: what recording their registers saves is in proportion to that).
            // A thread that may be asleep is read from its sleep's record too: woken and not
            // yet on a CPU, it could be read neither from `/proc` nor without a stop.
            let preempted = watched(slot.tid)
                .and_then(|records| {
                    let blocked = || slot.may_sleep.then(|| records.blocked(slot.tid)).flatten();
                    records.preempted(slot.tid).or_else(blocked)
                })
                .map(|record| Way::Preempted {
                    span,
                    record,
                    read: None,
                    held: false,
                });
            slot.way = match preempted.or_else(|| self.asleep(pid, slot, span)) {
                Some(way) => way,
                None => self.stoppable(pid, slot, span),
            };
        }
        if slots
            .iter()
            .any(|slot| matches!(slot.way, Way::Preempted { .. }))
        {
            let after = self.read_preempted_first(pid, slots, &watched, read);
            not_before = Some(not_before.map_or(after, |at| at.max(after)));
        }
        let mut group: Vec<Together<'_>> = Vec::new();
        for Slot { way, stack, .. } in slots.iter_mut() {
            if let Way::Stop(tracer, span) = way {
                group.push(Together::new(tracer, *span, stack));
            }
        }
        if let Some(at) = not_before.filter(|_| !group.is_empty()) {
            spin_until(at);
        }
        let mut stopped_at = None;
        capture_together(&mut group, || {
            read(Read::Stopped);
            stopped_at = Some(strobe_remote::perf_clock_ns());
        });
        let mut results: Vec<_> = group.iter_mut().map(Together::take_result).collect();
        drop(group);
        let mut results = results.drain(..);
        for slot in slots.iter_mut() {
            let way = std::mem::replace(&mut slot.way, Way::Done);
            slot.got = match way {
                Way::Stop(_, span) => results.next().map(|r| match r {
                    Ok(c) => Ok(Captured {
                        regs: c.regs,
                        // Stopped inside a system call (asleep, but not provably through the
                        // Python read).
                        kernel: c.syscall.map(|nr| KernelBoundary { syscall: Some(nr) }),
                        asleep: false,
                        interrupted_wait: c.interrupted_wait,
                        preempted: false,
                        same_instant: true,
                        stopped_at_ns: stopped_at,
                        bounded: span.bytes_from(c.regs.sp) < span.max,
                    }),
                    Err(e) => Err(Miss::Failed(e.to_string())),
                }),
                Way::Asleep {
                    before,
                    regs,
                    syscall,
                    span,
                } if run_count(pid, slot.tid) == Some(before) => Some(Ok(Captured {
                    regs,
                    kernel: Some(KernelBoundary {
                        syscall: u64::try_from(syscall).ok(),
                    }),
                    asleep: true,
                    interrupted_wait: false,
                    preempted: false,
                    same_instant: true,
                    stopped_at_ns: None,
                    bounded: span.bytes_from(regs.sp) < span.max,
                })),
                Way::Asleep { .. } => Some(Err(Miss::Woke)),
                Way::Preempted {
                    read: Some(read),
                    held: true,
                    ..
                } => Some(Ok(Captured {
                    regs: read.regs,
                    kernel: None,
                    asleep: false,
                    interrupted_wait: false,
                    preempted: true,
                    same_instant: true,
                    stopped_at_ns: Some(read.mark),
                    bounded: read.bounded,
                })),
                Way::Preempted { .. } | Way::Undecided | Way::Done => slot.got.take(),
            };
        }
    }

    /// The first half of [`Capturer::capture_many`] where some of `slots` were found
    /// preempted (their records read): the Python read of those threads, then their stacks,
    /// then each one's proof that it was not switched in since its record (`held`). One that
    /// was, or whose stack or read failed, becomes a thread to stop. When the stops may come:
    /// [`PREEMPTED_READ_TO_STOP`] after the Python read.
    ///
    /// The stacks are copied after the Python read, not before: a thread that has not run
    /// since its record has the same stack at either time (the proof after both says so), and
    /// the copies, of memory no running thread writes, take up part of the wait the stops keep
    /// from the Python read, which would otherwise be spun.
    fn read_preempted_first<'w>(
        &mut self,
        pid: i32,
        slots: &mut [Slot],
        watched: &dyn Fn(i32) -> Option<&'w dyn CpuPreemptions>,
        read: &mut dyn FnMut(Read<'_>) -> bool,
    ) -> Instant {
        let mut preempted = Vec::new();
        let mut per_cpu = None;
        for slot in slots.iter() {
            if let Way::Preempted { .. } = slot.way {
                per_cpu = per_cpu.or(watched(slot.tid));
                preempted.push(slot.tstate);
            }
        }
        let read_ok =
            !preempted.is_empty() && read(Read::Preempted(&mut |ts| preempted.contains(&ts)));
        let after = Instant::now() + PREEMPTED_READ_TO_STOP;
        if read_ok {
            read_preempted(pid, slots);
        }
        if let Some(records) = per_cpu.filter(|_| read_ok) {
            records.refresh();
        }
        for slot in slots.iter_mut() {
            let Way::Preempted {
                span, read, held, ..
            } = &mut slot.way
            else {
                continue;
            };
            *held = read_ok
                && read.is_some_and(|r| {
                    watched(slot.tid).is_some_and(|records| records.unmoved(slot.tid, r.mark))
                });
            if !*held {
                let span = *span;
                slot.way = self.stoppable(pid, slot, span);
            }
        }
        after
    }
    /// Slot `slot`'s thread read asleep, if it may be and is (its run count taken first, to
    /// be compared after the Python read).
    fn asleep(&mut self, pid: i32, slot: &mut Slot, span: StackSpan) -> Option<Way> {
        if !slot.may_sleep {
            return None;
        }
        let before = run_count(pid, slot.tid)?;
        let mut blocked = BlockedThread::open(pid, slot.tid).ok()?;
        let c = blocked.capture(span, &mut slot.stack).ok()?;
        Some(Way::Asleep {
            before,
            regs: c.regs,
            syscall: c.state.nr,
            span,
        })
    }

    /// Slot `slot`'s thread seized to be stopped, or, where ptrace is refused, its latest
    /// perf snapshot; the slot's outcome if neither can be had.
    fn stoppable(&mut self, pid: i32, slot: &mut Slot, span: StackSpan) -> Way {
        if self.perf_instead.is_none() {
            match ThreadTracer::seize(pid, slot.tid) {
                Ok(tracer) => return Way::Stop(tracer, span),
                Err(e) => {
                    if let Err(why) = self.seize_refused(e) {
                        slot.got = Some(Err(Miss::Failed(why)));
                        return Way::Done;
                    }
                }
            }
        }
        slot.got = Some(
            self.perf_snapshot(pid, slot.tid, &mut slot.stack)
                .map_err(Miss::Failed),
        );
        Way::Done
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

    /// The latest perf snapshot of thread `tid`, its stack into `out`.
    fn perf_snapshot(&mut self, pid: i32, tid: i32, out: &mut Vec<u8>) -> Result<Captured, String> {
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
        if strobe_remote::perf_clock_ns().saturating_sub(*time_ns) > PERF_FRESH.as_nanos() as u64 {
            return Err(
                "the thread's latest perf snapshot is too old (it has not run since)".into(),
            );
        }
        let regs = *regs;
        out.clear();
        out.extend_from_slice(stack);
        Ok(Captured {
            regs,
            kernel: None,
            asleep: false,
            interrupted_wait: false,
            preempted: false,
            same_instant: false,
            stopped_at_ns: None,
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

/// A thread read preempted, before the proof that it stayed so.
#[derive(Clone, Copy)]
struct PreemptRead {
    /// Its preemption's mark ([`CpuPreemptions::preempted`]): the time of its switch record.
    mark: u64,
    regs: UserRegs,
    /// The stack copied may end below where a stop's copy would have.
    bounded: bool,
}

/// The threads of `slots` found preempted, read: each one's registers at its newest
/// preemption and that preemption's mark (its record, as [`CpuPreemptions::preempted`] gave
/// them: it was still preempted as of the records' last drain), and its stack copied into its
/// slot (not running, the thread does not write it: copied as a sleeper's is), all the stacks
/// with one `process_vm_readv` ([`copy_stacks`]). That is the first half of the proof that
/// these are each thread's state through the Python read (the other:
/// [`CpuPreemptions::unmoved`] after it). A thread whose copy failed is left without a read.
fn read_preempted(pid: i32, slots: &mut [Slot]) {
    let mut copies = Vec::new();
    for slot in slots.iter_mut() {
        if let Way::Preempted {
            span,
            record: (_, regs),
            ..
        } = slot.way
        {
            copies.push(StackCopy::new(slot.tid, regs.sp, span, &mut slot.stack));
        }
    }
    copy_stacks(pid, &mut copies);
    let copied: Vec<bool> = copies.iter().map(|c| c.result.is_ok()).collect();
    drop(copies);
    let mut copied = copied.into_iter();
    for slot in slots.iter_mut() {
        if let Way::Preempted {
            span,
            record: (mark, regs),
            read,
            ..
        } = &mut slot.way
        {
            *read = copied.next().unwrap_or(false).then(|| PreemptRead {
                mark: *mark,
                regs: *regs,
                bounded: span.bytes_from(regs.sp) < span.max,
            });
        }
    }
}

/// The scheduler's count of times thread `tid` was put on a CPU, if the kernel keeps it.
fn run_count(pid: i32, tid: i32) -> Option<u64> {
    let line = std::fs::read(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    Some(strobe_remote::procfs::Schedstat::parse(&line)?.runs)
}

/// Wait, spinning, until `at` (a few microseconds at most: a sleep would take longer to come
/// back than that).
fn spin_until(at: Instant) {
    while Instant::now() < at {
        std::hint::spin_loop();
    }
}
