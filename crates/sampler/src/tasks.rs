//! Task-aware stacks (`--async`, CPython 3.14+; 3.8–3.13 in [`crate::tasks_legacy`], which
//! builds its stacks with [`build_stack`]).
//!
//! A thread running an asyncio task is sampled as the tasks that await it, outermost first,
//! each as a `<task NAME>` frame followed by the frames of its coroutines where it waits, then
//! the running task's `<task NAME>` and its frames from the thread's own stack (everything
//! above its outermost coroutine frame). The event loop's frames under the running task are
//! left out, so a profile groups time by task chain. When idle samples are kept, every
//! pending task that is not running is sampled too (at most [`MAX_SUSPENDED`] a round, and in
//! at most one round per millisecond, each such sample standing for the rounds since the
//! previous one), as an idle sample of the thread whose task list holds it, at the `await` it
//! waits in.
//!
//! The target's description of its tasks (`_Py_AsyncioModuleDebugOffsets`) is looked for when
//! sampling starts and then once a second until the program has imported asyncio. A chain
//! that cannot be read leaves the thread's sample as it would be without `--async`.

use std::collections::{HashMap, HashSet};

use strobe_aggregate::{
    task_label, FrameId, FrameKey, FxBuild, Sample, SampleFlags, SamplerSide, StackId, ThreadId,
};
use strobe_target::Target;
use strobe_walker::asyncio::{AsyncioOffsets, ChainReader, TaskChain};
use strobe_walker::{RawFrame, RawThread};

use crate::failure::RoundError;
use crate::memo::{frame_id, FrameCache};

/// Most suspended tasks sampled in one round.
pub(crate) const MAX_SUSPENDED: usize = 64;

/// Waiting tasks are sampled at most once per this many ns (each of those samples then stands
/// for the time since the previous pass): reading every pending task's coroutines is the
/// costly part of task-aware sampling, and flat out it would be done 100,000 times a second.
pub(crate) const SUSPENDED_EVERY_NS: u64 = 1_000_000;

/// Threads whose previous running task is remembered at most.
const MAX_THREADS: usize = 4096;

/// How often to look again for a target's asyncio description while it has none.
const LOOK_EVERY_NS: u64 = 1_000_000_000;

/// Task-aware sampling state of one process.
#[derive(Debug, Default)]
pub(crate) struct TaskView {
    offsets: Option<AsyncioOffsets>,
    /// When to look for the description next (ns on the sampler's clock).
    next_look_ns: u64,
    /// Set once looking failed for good (the version predates it): the reason, for one
    /// warning.
    unavailable: bool,
    reader: ChainReader,
    /// `<task NAME>` frames by name.
    frames: HashMap<String, FrameId, FxBuild>,
    /// Tasks running this round, and who ran them: the thread state and our thread id.
    pub(crate) running: HashSet<u64>,
    pub(crate) threads: Vec<(u64, ThreadId)>,
    /// Per thread state, the running task its previous sample read (0: none).
    last: HashMap<u64, u64, FxBuild>,
    /// Whether the walker reads the running task with every sample.
    watching: bool,
    fresh: Vec<FrameId>,
    /// When waiting tasks were last sampled, and the wall time of the rounds since.
    suspended_at_ns: Option<u64>,
    suspended_weight_ns: u64,
}

/// Where a task-aware stack's frames come from.
pub(crate) struct Frames<'a> {
    /// Frame ids by (code object, line).
    pub(crate) cache: &'a mut FrameCache,
    /// Aggregate by function.
    pub(crate) by_function: bool,
    /// The frame every stack of this process starts with, if any.
    pub(crate) root: Option<FrameId>,
}

impl TaskView {
    /// Task-aware stacks are off (`top` toggled them): the sample stops reading the running
    /// task.
    pub(crate) fn stop_watching(&mut self, target: &mut Target) {
        if self.watching {
            target.walker_mut().watch_running_task(None);
            self.watching = false;
            self.last.clear();
        }
    }

    /// A new round starts.
    pub(crate) fn start_round(&mut self) {
        self.running.clear();
        self.threads.clear();
    }

    /// The target's description, looked for now if it is time; a reason to warn about once
    /// when it cannot be had at all.
    pub(crate) fn offsets(
        &mut self,
        target: &mut Target,
        now_ns: u64,
    ) -> (Option<AsyncioOffsets>, Option<String>) {
        if let (Some(offsets), false) = (self.offsets, self.watching) {
            // The running task comes with each sample's read from the next one on.
            target
                .walker_mut()
                .watch_running_task(Some(offsets.tstate_running_task));
            self.watching = true;
        }
        if self.offsets.is_some() || self.unavailable || now_ns < self.next_look_ns {
            return (self.offsets, None);
        }
        self.next_look_ns = now_ns.saturating_add(LOOK_EVERY_NS);
        match target.task_offsets() {
            Ok(found) => {
                self.offsets = found;
                (found, None)
            }
            Err(why) => {
                self.unavailable = true;
                (
                    None,
                    Some(format!("task-aware stacks are unavailable: {why}")),
                )
            }
        }
    }

    /// The task-aware stack of thread `t`, whose frames (innermost first) are `frames`, with
    /// `top` on top of the running task's frames, or `None` when it runs no task or its chain
    /// cannot be read or placed on its stack.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn running_stack(
        &mut self,
        target: &mut Target,
        side: &mut SamplerSide,
        offsets: &AsyncioOffsets,
        t: &RawThread,
        frames: &[RawFrame],
        top: &[FrameId],
        how: &mut Frames<'_>,
    ) -> Result<Option<StackId>, RoundError> {
        let TaskView {
            reader,
            frames: task_frames,
            fresh,
            running,
            last,
            ..
        } = self;
        let previous = last.get(&t.tstate_addr).copied();
        if last.len() >= MAX_THREADS {
            last.clear();
        }
        last.insert(t.tstate_addr, t.running_task.unwrap_or(0));
        // The same task as in this thread's previous sample, with its coroutine's frame
        // proven unchanged since (see `ChainReader::reusable`): its chain needs no read.
        let first_unchanged = frames.len().saturating_sub(t.unchanged);
        let reused = match (t.running_task, previous) {
            (Some(task), Some(before)) if task != 0 && task == before => {
                reader.reusable(task).and_then(|chain| {
                    own_frames(frames, chain.coro_code, first_unchanged).map(|own| (chain, own))
                })
            }
            _ => None,
        };
        let (chain, own) = match reused {
            Some(found) => found,
            None => {
                let chain = match reader.running(
                    target.walker_mut(),
                    offsets,
                    t.tstate_addr,
                    t.running_task,
                ) {
                    Ok(Some(chain)) => chain,
                    Ok(None) | Err(_) => return Ok(None),
                };
                let Some(own) = own_frames(frames, chain.coro_code, 0) else {
                    return Ok(None);
                };
                (chain, own)
            }
        };
        if let Some(first) = chain.links.first() {
            running.insert(first.task);
        }
        build_stack(task_frames, fresh, target, side, chain, own, top, how).map(Some)
    }

    /// Samples of the pending tasks not running this round (see the module documentation).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn suspended_samples(
        &mut self,
        target: &mut Target,
        side: &mut SamplerSide,
        offsets: &AsyncioOffsets,
        how: &mut Frames<'_>,
        timestamp_ns: u64,
        weight_ns: u64,
    ) -> Result<u64, RoundError> {
        self.suspended_weight_ns = self.suspended_weight_ns.saturating_add(weight_ns);
        if self
            .suspended_at_ns
            .is_some_and(|at| timestamp_ns.saturating_sub(at) < SUSPENDED_EVERY_NS)
        {
            return Ok(0);
        }
        let weight_ns = std::mem::take(&mut self.suspended_weight_ns);
        self.suspended_at_ns = Some(timestamp_ns);
        self.reader.forget_heap_types();
        let tstates: Vec<u64> = self.threads.iter().map(|&(t, _)| t).collect();
        let Ok(tasks) = self.reader.suspended(
            target.walker_mut(),
            offsets,
            &tstates,
            &self.running,
            MAX_SUSPENDED,
        ) else {
            return Ok(0);
        };
        let mut pushed = 0;
        for (tstate, task) in tasks {
            let Some(&(_, thread)) = self.threads.iter().find(|&&(t, _)| t == tstate) else {
                continue;
            };
            let Ok(chain) = self.reader.chain(target.walker_mut(), offsets, task, true) else {
                continue;
            };
            let at = (timestamp_ns, weight_ns);
            push_waiting(
                &mut self.frames,
                &mut self.fresh,
                target,
                side,
                &chain,
                thread,
                how,
                at,
            )?;
            pushed += 1;
        }
        Ok(pushed)
    }
}

/// The running task's own frames among a thread's `frames` (innermost first): from the
/// outermost frame running its coroutine's code object `coro_code` up, provided that frame is at
/// index `from` or above (a reused chain: the first of the frames proven unchanged; else 0).
pub(crate) fn own_frames(frames: &[RawFrame], coro_code: u64, from: usize) -> Option<&[RawFrame]> {
    let split = frames.iter().rposition(|f| f.code_addr == coro_code)?;
    (split >= from).then(|| frames.get(..=split)).flatten()
}

/// Push an idle sample of `thread` for the waiting task of `chain`, at its `await`; `at`: the
/// sample's timestamp and weight (ns).
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_waiting(
    task_frames: &mut HashMap<String, FrameId, FxBuild>,
    fresh: &mut Vec<FrameId>,
    target: &mut Target,
    side: &mut SamplerSide,
    chain: &TaskChain,
    thread: ThreadId,
    how: &mut Frames<'_>,
    (timestamp_ns, weight_ns): (u64, u64),
) -> Result<(), RoundError> {
    let stack = build_stack(task_frames, fresh, target, side, chain, &[], &[], how)?;
    side.push(Sample {
        stack,
        thread,
        flags: SampleFlags::empty().with(SampleFlags::IDLE),
        timestamp_ns,
        weight_ns,
    });
    Ok(())
}

/// Intern the stack of `chain`: the outermost task first, each `<task NAME>` then its
/// frames; the first task's frames are `own` (innermost first) when it runs, then `top`
/// (`<raise T>`, `<GC>`), its suspended frames otherwise.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_stack(
    task_frames: &mut HashMap<String, FrameId, FxBuild>,
    fresh: &mut Vec<FrameId>,
    target: &mut Target,
    side: &mut SamplerSide,
    chain: &TaskChain,
    own: &[RawFrame],
    top: &[FrameId],
    how: &mut Frames<'_>,
) -> Result<StackId, RoundError> {
    fresh.clear();
    fresh.extend(how.root);
    for (i, link) in chain.links.iter().enumerate().rev() {
        fresh.push(task_frame(task_frames, side, &link.name)?);
        if i == 0 && !own.is_empty() {
            for &f in own.iter().rev() {
                fresh.push(frame_id(
                    how.cache,
                    side,
                    target.walker_mut(),
                    f,
                    how.by_function,
                )?);
            }
            fresh.extend_from_slice(top);
        } else {
            for &f in &link.frames {
                fresh.push(frame_id(
                    how.cache,
                    side,
                    target.walker_mut(),
                    f,
                    how.by_function,
                )?);
            }
        }
    }
    side.interner()
        .intern_stack(fresh)
        .map_err(|e| RoundError::Fatal(e.into()))
}

/// The `<task NAME>` frame of a task named `name`.
fn task_frame(
    frames: &mut HashMap<String, FrameId, FxBuild>,
    side: &mut SamplerSide,
    name: &str,
) -> Result<FrameId, RoundError> {
    if let Some(&id) = frames.get(name) {
        return Ok(id);
    }
    let id = side
        .interner()
        .intern_frame(&FrameKey::task(&task_label(name)))
        .map_err(|e| RoundError::Fatal(e.into()))?;
    if frames.len() >= 4096 {
        frames.clear();
    }
    frames.insert(name.to_string(), id);
    Ok(id)
}
