//! Native stacks under `--native`: each kept thread's native frames and Python frames, taken at
//! the same instant by the target (`strobe_target::Target::native_round`), merged and interned
//! as one stack.
//!
//! In CPU mode the round stops the threads the kernel says run before its read, and reads
//! inside those stops (`stops::stop_first`, "Stop first, read after" in `strobe_target`'s
//! `native/sample.rs`): a kept thread stopped there is merged with its frames in the round's
//! read, and only the kept threads that were not stopped are captured as follows.
//!
//! Once the round's own walk has decided which threads are kept (filters, idle state: see
//! `admit`), the target captures them all at once: threads the round found idle and that
//! provably sleep through the read are read without a stop, every other kept thread is
//! stopped, all of them together, and the Python stacks of the kept threads (only theirs) are
//! read once during the stops, so every merged stack is of one instant and no sampled thread
//! waits on a lock another stopped one holds. A thread whose stack cannot be merged keeps the
//! Python stack of the round's walk, and the reason is counted for the summary
//! ([`crate::stats::SamplerStats::native_failures`]): never a guessed merge.
//!
//! # Held stacks
//! A thread [`crate::stops::stop_first`] stopped while it was awake, or that a capture read
//! asleep without a stop, whose stack merged, has that stack held ([`crate::held`]), with
//! where its switch records were when the stack was its state and the Python frames it merged
//! with. While its records have not moved (it has not had a CPU since), later rounds record
//! the held stack for it instead of capturing it again: a stop-first round does not stop it
//! (see "Not stopped again" in `stops`), and a wall-mode round does not read a sleeper again.
//! The held stack is checked against the thread's frames in the round's read where the thread
//! did not run through that read. A held stack a round does not use goes.
//!
//! A round's native capture is a walk of the walker, so the round counts it
//! ([`crate::view::ProcessView::walks`]): the per-thread memos of [`crate::memo`] are valid
//! only from one walk to the next.

use std::collections::HashMap;
use std::time::Instant;

use strobe_aggregate::{FrameId, FrameKey, FrameKind, FxBuild, SamplerSide, StackId};
use strobe_native::{MergedFrame, NativeFrame, KERNEL_FRAME, TRUNCATED_FRAME};
use strobe_remote::Freeze;
use strobe_target::{NativeRequest, NativeResult, NativeStack, Target, TargetMemory, WatchesOf};
use strobe_walker::{RawFrame, RawSample, Walker};

use crate::admit::Kept;
use crate::failure::RoundError;
use crate::held::Holds;
use crate::memo::{frame_id, FrameCache};
use crate::threads::KernelThreads;

/// Whether native stacks are being taken from a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NativeMode {
    /// Not asked for, or not yet set up (the first round does).
    Off,
    /// Taken.
    On,
    /// Asked for, but the target cannot give them (said once, when it was found).
    Unavailable,
}

/// What the sampler keeps for native stacks of one process.
#[derive(Debug)]
pub(crate) struct NativeView {
    pub(crate) mode: NativeMode,
    /// The Python stacks read during the latest capture.
    raw: RawSample,
    /// The merged stack's frame ids, outermost first (scratch).
    ids: Vec<FrameId>,
    /// Each thread state's stack from the latest round (its capture, or its freeze under
    /// `--blocking`).
    outcomes: HashMap<u64, NativeOutcome, FxBuild>,
    /// The latest round's threads to capture (scratch).
    requests: Vec<NativeRequest>,
    /// The threads a round stops before its read, with their thread states (scratch, see
    /// `stops::stop_first`).
    pub(crate) stop: Vec<(i32, u64)>,
    /// Merged stacks held from earlier captures (see "Held stacks" in the module
    /// documentation).
    pub(crate) holds: Holds,
}

/// How a merged stack was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Captured this round (stopped, or read asleep).
    Captured,
    /// Read preempted, without a stop ([`NativeStack::preempted`]).
    Preempted,
    /// Held since an earlier round's stop: the thread has not run since.
    Held,
}

/// What a round's native capture gave for a thread.
#[derive(Debug)]
pub(crate) enum NativeOutcome {
    /// The merged stack, interned, and how it was taken.
    Merged(StackId, Taken),
    /// Why there is none (the Python stack is recorded instead).
    Failed(String),
}

/// The threads a round captures: `kept`, indexing the round's read.
#[derive(Clone, Copy)]
pub(crate) struct NativeRound<'a> {
    /// The round (`ProcessView::rounds_started`).
    pub(crate) round: u64,
    /// The round's read: `kept` index its threads.
    pub(crate) read: &'a RawSample,
    pub(crate) kept: &'a [Kept],
    /// Intern Python frames without lines (`--function`); native frames too.
    pub(crate) by_function: bool,
    /// The process's root frame under `--subprocesses`.
    pub(crate) root: Option<FrameId>,
    /// When the round's walk had read the target (its stops keep their distance from it).
    pub(crate) read_at: Instant,
    /// The round's read, if it was taken inside the stops of `Target::native_stop_first`:
    /// the threads stopped there are merged with their frames in it.
    pub(crate) first: Option<&'a RawSample>,
    /// Each thread's per-CPU preemption records, where they are kept: a preempted thread is
    /// read without a stop.
    pub(crate) watches: &'a WatchesOf<'a>,
    /// The threads' switch records, for held stacks.
    pub(crate) kernel: &'a KernelThreads,
}

/// How a merged stack is interned.
#[derive(Debug, Clone, Copy)]
struct Interning {
    /// Python frames without lines (`--function`); native frames too.
    by_function: bool,
    /// The process's root frame under `--subprocesses`, outermost.
    root: Option<FrameId>,
}

/// Why a thread without a kernel id has no native stack.
const NO_TID: &str = "the thread's kernel id is unknown, so its native stack cannot be read";

impl NativeView {
    pub(crate) fn new() -> NativeView {
        NativeView {
            mode: NativeMode::Off,
            raw: RawSample::new(),
            ids: Vec::new(),
            outcomes: HashMap::default(),
            requests: Vec::new(),
            stop: Vec::new(),
            holds: Holds::default(),
        }
    }

    /// Capture, merge and intern the stacks of the round's kept threads `round.kept`, all
    /// together (see the module documentation); kept by thread state for
    /// [`NativeView::take`].
    pub(crate) fn capture_round(
        &mut self,
        target: &mut Target,
        side: &mut SamplerSide,
        cache: &mut FrameCache,
        round: NativeRound<'_>,
    ) -> Result<(), RoundError> {
        self.outcomes.clear();
        self.requests.clear();
        let first = round.first.is_some();
        let kernel = round.kernel;
        self.holds.before.clear();
        for k in round.kept {
            let t = &round.read.threads[k.index];
            let tid = k.host.and_then(|h| i32::try_from(h).ok());
            let moved = |at| k.host.is_none_or(|h| kernel.moved(h, at));
            let frames = round.read.frames_of(t);
            let now = (round.round, first);
            if let Some(stack) = self
                .holds
                .stands_for(now, (t.tstate_addr, tid), frames, moved)
            {
                let outcome = NativeOutcome::Merged(stack, Taken::Held);
                self.outcomes.insert(t.tstate_addr, outcome);
                continue;
            }
            match tid {
                Some(tid) => {
                    // A thread read asleep may be held from a mark taken before its capture.
                    if let Some(at) = k.host.filter(|_| k.idle).and_then(|h| kernel.mark(h)) {
                        self.holds.before.push((tid, at));
                    }
                    self.requests.push(NativeRequest {
                        tid,
                        ident: t.thread_id,
                        interp: t.interp_id,
                        tstate: t.tstate_addr,
                        may_sleep: k.idle,
                    })
                }
                None => {
                    self.outcomes
                        .insert(t.tstate_addr, NativeOutcome::Failed(NO_TID.into()));
                }
            }
        }
        self.holds.before.sort_unstable_by_key(|&(tid, _)| tid);
        let NativeView {
            requests,
            outcomes,
            ids,
            raw,
            holds,
            ..
        } = self;
        let mut each = |i: usize,
                        got: NativeResult<'_>,
                        raw: &RawSample,
                        walker: &mut Walker<TargetMemory>| {
            let r = &requests[i];
            let outcome = match got {
                Ok((stack, index)) => {
                    let which = Interning {
                        by_function: round.by_function,
                        root: round.root,
                    };
                    let python = raw.threads.get(index).map_or(&[][..], |t| raw.frames_of(t));
                    let (asleep, stopped_at) = (stack.asleep, stack.stopped_at_ns);
                    let outcome = intern_merged(ids, side, cache, walker, stack, python, which)?;
                    if let NativeOutcome::Merged(id, taken @ (Taken::Captured | Taken::Preempted)) =
                        outcome
                    {
                        // Stopped first and awake (marked inside the stops), read asleep
                        // (marked before), stopped after the read (the stop's time), or read
                        // preempted (its preemption's time).
                        let mark = holds
                            .mark_of(r.tid, asleep)
                            .filter(|_| (first || asleep) && taken == Taken::Captured)
                            .or_else(|| {
                                let host = u32::try_from(r.tid).ok()?;
                                kernel.mark_at(host, stopped_at?)
                            });
                        if let Some(at) = mark {
                            holds.hold(round.round, (r.tstate, r.tid), at, id, python);
                        }
                    }
                    outcome
                }
                Err(why) => NativeOutcome::Failed(why),
            };
            outcomes.insert(r.tstate, outcome);
            Ok::<(), RoundError>(())
        };
        let watches = Some(round.watches);
        let captured = match round.first {
            Some(first) => {
                target.native_round_after(requests, first, raw, round.read_at, watches, &mut each)
            }
            None => target.native_round(requests, raw, round.read_at, watches, &mut each),
        };
        holds.end_round(round.round);
        captured
    }

    /// `--blocking`: while `freeze` holds the process, take every thread's native stack and
    /// merge it with the Python frames of the round's walk `raw`, read during the same freeze;
    /// kept by thread state for [`NativeView::take`]. `hosts` gives each thread's
    /// kernel id as seen from here, where known.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn capture_frozen(
        &mut self,
        target: &mut Target,
        side: &mut SamplerSide,
        cache: &mut FrameCache,
        freeze: &Freeze,
        raw: &RawSample,
        hosts: &[Option<u32>],
        by_function: bool,
        root: Option<FrameId>,
    ) -> Result<(), RoundError> {
        self.outcomes.clear();
        let which = Interning { by_function, root };
        for (t, host) in raw.threads.iter().zip(hosts) {
            let outcome = match host.and_then(|h| i32::try_from(h).ok()) {
                None => NativeOutcome::Failed(NO_TID.into()),
                Some(tid) => {
                    let entries = raw.entries_of(t);
                    match target.native_frozen(freeze, tid, t.thread_id, t.interp_id, entries) {
                        Ok((stack, walker)) => intern_merged(
                            &mut self.ids,
                            side,
                            cache,
                            walker,
                            stack,
                            raw.frames_of(t),
                            which,
                        )?,
                        Err(why) => NativeOutcome::Failed(why),
                    }
                }
            };
            self.outcomes.insert(t.tstate_addr, outcome);
        }
        Ok(())
    }

    /// What the round's [`NativeView::capture_round`] or [`NativeView::capture_frozen`] found
    /// for the thread state at `tstate`.
    pub(crate) fn take(&mut self, tstate: u64) -> NativeOutcome {
        self.outcomes.remove(&tstate).unwrap_or_else(|| {
            NativeOutcome::Failed("the thread was not in the round's native capture".into())
        })
    }
}

/// Intern a merged stack, outermost first after `which.root`; `python` are the thread's
/// Python frames the merge indexes.
fn intern_merged(
    ids: &mut Vec<FrameId>,
    side: &mut SamplerSide,
    cache: &mut FrameCache,
    walker: &mut Walker<TargetMemory>,
    stack: NativeStack<'_>,
    python: &[RawFrame],
    which: Interning,
) -> Result<NativeOutcome, RoundError> {
    ids.clear();
    ids.extend(which.root);
    for m in stack.merged.iter().rev() {
        let id = match *m {
            MergedFrame::Python(i) => match python.get(i) {
                Some(&f) => frame_id(cache, side, walker, f, which.by_function)?,
                None => {
                    return Ok(NativeOutcome::Failed(
                        "the merge named a Python frame the read does not have".into(),
                    ))
                }
            },
            MergedFrame::Native(i) => match stack.native.get(i) {
                Some(f) => intern_native(side, f, which.by_function)?,
                None => {
                    return Ok(NativeOutcome::Failed(
                        "the merge named a native frame the unwind does not have".into(),
                    ))
                }
            },
            MergedFrame::Kernel(_) => {
                intern(side, KERNEL_FRAME, "", None, FrameKind::Kernel, None)?
            }
            MergedFrame::Truncated => {
                intern(side, TRUNCATED_FRAME, "", None, FrameKind::Native, None)?
            }
        };
        ids.push(id);
    }
    let id = side
        .interner()
        .intern_stack(ids)
        .map_err(|e| RoundError::Fatal(e.into()))?;
    let taken = if stack.preempted {
        Taken::Preempted
    } else {
        Taken::Captured
    };
    Ok(NativeOutcome::Merged(id, taken))
}

/// A native frame as interned: its symbol (or `module+0xoffset`), DWARF file and line, and its
/// shared object.
fn intern_native(
    side: &mut SamplerSide,
    f: &NativeFrame,
    by_function: bool,
) -> Result<FrameId, RoundError> {
    let module = f.module.as_ref().map(|m| m.path.as_str());
    let line = if by_function {
        None
    } else {
        f.line.and_then(|l| i32::try_from(l).ok())
    };
    let file = f.file.as_deref().unwrap_or("");
    match &f.function {
        Some(name) => intern(side, name, file, line, FrameKind::Native, module),
        None => {
            let short = f.module.as_ref().map_or("?", |m| m.short_name());
            let name = format!("{short}+{:#x}", f.module_offset);
            intern(side, &name, file, line, FrameKind::Native, module)
        }
    }
}

fn intern(
    side: &mut SamplerSide,
    function: &str,
    filename: &str,
    line: Option<i32>,
    kind: FrameKind,
    module: Option<&str>,
) -> Result<FrameId, RoundError> {
    side.interner()
        .intern_frame(&FrameKey {
            function,
            filename,
            line,
            kind,
            module,
            // DWARF has the subprogram's `DW_AT_decl_line`, but addr2line does not hand it
            // out; finding it would mean a second walk of the unit's entries per function.
            first_line: None,
        })
        .map_err(|e| RoundError::Fatal(e.into()))
}
