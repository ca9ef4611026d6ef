//! Task-aware stacks (`--async`) on CPython 3.8–3.13: the same stacks as [`crate::tasks`]
//! builds for 3.14+, from the walker's [`LegacyChains`].
//!
//! Those versions keep neither a thread's running task in its thread state nor who awaits a
//! task, and reading every task each sample (what `dump --async` does) would cost far more
//! than the sample. So the task graph (every pending task, who awaits it, each thread's running
//! loop; read by the same reader as `dump --async`) is cached and read again every
//! [`REBUILD_EVERY_NS`], or sooner (at most every [`REBUILD_SOONEST_NS`]) when a sample finds
//! a running task whose chain the graph cannot prove; both intervals grow to
//! [`REBUILD_COST_FACTOR`] times what the last read took (a program with thousands of tasks).
//! Each sample reads only the thread's loop entry in `_current_tasks` and the running task;
//! its chain is kept until the next rebuild. A sample whose running task's coroutine frame the
//! walker proved unchanged since the thread's previous sample reuses that sample's chain
//! without any read (the same coroutine runs, so the same task), at most `CHAIN_REUSES` times
//! in a row, as 3.14's path does.
//! A sample whose chain cannot be proven keeps the thread's own stack, as on 3.14; that
//! includes a chain ending at a task awaited by none in a graph that was not read whole (see
//! [`LegacyChains`]: the read may have missed its awaiter). Waiting
//! tasks (idle samples kept) are the graph's, at their current `await`, rate-limited as on
//! 3.14; a task created since the last rebuild is sampled waiting only after the next one,
//! and a thread that started its loop since then has task-aware stacks after it.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use strobe_aggregate::{FrameId, FxBuild, SamplerSide, StackId, ThreadId};
use strobe_target::Target;
use strobe_walker::asyncio::CHAIN_REUSES;
use strobe_walker::asyncio_legacy::{
    asyncio_legacy_for, AsyncioLegacy, LegacyChains, Rebuilt, Running,
};
use strobe_walker::{RawFrame, RawThread, WalkError};

use crate::failure::RoundError;
use crate::tasks::{
    build_stack, own_frames, push_waiting, Frames, MAX_SUSPENDED, SUSPENDED_EVERY_NS,
};

/// The task graph is read again at least this often (ns).
pub(crate) const REBUILD_EVERY_NS: u64 = 100_000_000;

/// ... and at most this often when a sample asks for it (ns).
pub(crate) const REBUILD_SOONEST_NS: u64 = 10_000_000;

/// Both intervals are at least this many times what the last read of the graph took, so that
/// reading a large graph (it costs reads per task and per coroutine) takes at most a small
/// share of the sampler's time.
const REBUILD_COST_FACTOR: u64 = 20;

/// Threads whose last chain is remembered at most.
const MAX_THREADS: usize = 4096;

/// Task-aware sampling state of one 3.8–3.13 process.
#[derive(Debug, Default)]
pub(crate) struct LegacyTaskView {
    /// The table for the target's version, once looked up; `None` inside when it has none.
    table: Option<Option<&'static AsyncioLegacy>>,
    /// Refused for good (the target's `_asyncio` does not match the table).
    refused: bool,
    reader: LegacyChains,
    /// When the graph was last read (ns on the sampler's clock), and what reading it took.
    built_ns: Option<u64>,
    cost_ns: u64,
    /// This round's (interpreter, thread state) pairs, for a rebuild.
    threads: Vec<(u64, u64)>,
    /// Tasks running this round.
    running: HashSet<u64>,
    /// Per thread state: the walk whose sample read its chain, and the samples since that
    /// reused it.
    last: HashMap<u64, (u64, u32), FxBuild>,
    /// `<task NAME>` frames by name.
    frames: HashMap<String, FrameId, FxBuild>,
    fresh: Vec<FrameId>,
    suspended_at_ns: Option<u64>,
    suspended_weight_ns: u64,
    /// A warning to give once, with its key.
    warning: Option<(&'static str, String)>,
}

impl LegacyTaskView {
    /// Whether this view serves the target: CPython 3.8–3.13 with an asyncio table for its
    /// build (also once refused: it then records plain stacks, having warned).
    pub(crate) fn serves(&mut self, target: &Target) -> bool {
        let table = *self.table.get_or_insert_with(|| {
            let v = target.process().version;
            asyncio_legacy_for(v.major, v.minor, target.free_threaded())
        });
        table.is_some()
    }

    /// A round starts with the walked threads `stacks`: read the graph again if it is time.
    /// Returns a warning to give once, with its key.
    pub(crate) fn start_round(
        &mut self,
        target: &mut Target,
        stacks: &[RawThread],
        now_ns: u64,
    ) -> Option<(&'static str, String)> {
        self.running.clear();
        self.threads.clear();
        self.threads
            .extend(stacks.iter().map(|t| (t.interp_addr, t.tstate_addr)));
        let due = self.due(now_ns, REBUILD_EVERY_NS);
        if due {
            self.rebuild(target, now_ns);
        }
        self.warning.take()
    }

    /// Whether the graph is older than `every` ns (or the cost-scaled interval).
    fn due(&self, now_ns: u64, every: u64) -> bool {
        let every = every.max(self.cost_ns.saturating_mul(REBUILD_COST_FACTOR));
        self.built_ns
            .is_none_or(|at| now_ns.saturating_sub(at) >= every)
    }

    /// The table, unless the target was refused.
    fn table(&self) -> Option<&'static AsyncioLegacy> {
        self.table.flatten().filter(|_| !self.refused)
    }

    /// Read the graph again; false when the target was refused.
    fn rebuild(&mut self, target: &mut Target, now_ns: u64) -> bool {
        let Some(table) = self.table() else {
            return false;
        };
        self.built_ns = Some(now_ns);
        let started = Instant::now();
        let read = self
            .reader
            .rebuild(target.walker_mut(), table, &self.threads);
        self.cost_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        match read {
            Ok(Rebuilt::Read { errors, .. }) => {
                if let Some(e) = errors.first() {
                    self.warning.get_or_insert((
                        "tasks-partial",
                        format!("task-aware stacks may miss tasks: {e}"),
                    ));
                }
                true
            }
            Ok(Rebuilt::NotLoaded) => true,
            Err(WalkError::Unsupported(why)) => {
                self.refused = true;
                self.warning = Some(("tasks", format!("task-aware stacks are unavailable: {why}")));
                false
            }
            // A read that raced with the target: the graph stays empty until the next one.
            Err(_) => true,
        }
    }

    /// The task-aware stack of thread `t`, whose frames (innermost first) are `frames`, in
    /// the round's walk number `walk`, with `top` (`<raise T>`, `<GC>`) on top of the running
    /// task's frames, or `None` when it runs no task or its chain cannot be proven.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn running_stack(
        &mut self,
        target: &mut Target,
        side: &mut SamplerSide,
        t: &RawThread,
        walk: u64,
        frames: &[RawFrame],
        top: &[FrameId],
        how: &mut Frames<'_>,
        now_ns: u64,
    ) -> Result<Option<StackId>, RoundError> {
        let Some(table) = self.table() else {
            return Ok(None);
        };
        let tstate = t.tstate_addr;
        // The chain of the thread's previous sample (the walk just before this one), with its
        // running task's coroutine frame proven unchanged since: the same coroutine still
        // runs, so the same task, whose chain holds while it is pending. At most
        // `CHAIN_REUSES` times in a row, then read again.
        let previous = self.last.remove(&tstate);
        let first_unchanged = frames.len().saturating_sub(t.unchanged);
        if let Some((_, uses)) =
            previous.filter(|&(at, uses)| at.saturating_add(1) == walk && uses < CHAIN_REUSES)
        {
            if let Some(chain) = self.reader.reusable(tstate) {
                if let Some(own) = own_frames(frames, chain.coro_code, first_unchanged) {
                    if let Some(first) = chain.links.first() {
                        self.running.insert(first.task);
                    }
                    self.last.insert(tstate, (walk, uses + 1));
                    return build_stack(
                        &mut self.frames,
                        &mut self.fresh,
                        target,
                        side,
                        chain,
                        own,
                        top,
                        how,
                    )
                    .map(Some);
                }
            }
        }
        let mut retried = false;
        loop {
            let may_rebuild = !retried && self.due(now_ns, REBUILD_SOONEST_NS);
            let chain = match self.reader.running(target.walker_mut(), table, tstate) {
                Ok(Running::Chain(chain)) => chain,
                Ok(Running::Unknown) if may_rebuild => {
                    retried = true;
                    if !self.rebuild(target, now_ns) {
                        // Refused: the warning comes with the next round's start.
                        return Ok(None);
                    }
                    continue;
                }
                Ok(_) | Err(_) => return Ok(None),
            };
            if let Some(first) = chain.links.first() {
                self.running.insert(first.task);
            }
            let Some(own) = own_frames(frames, chain.coro_code, 0) else {
                return Ok(None);
            };
            if self.last.len() >= MAX_THREADS {
                self.last.clear();
            }
            self.last.insert(tstate, (walk, 0));
            return build_stack(
                &mut self.frames,
                &mut self.fresh,
                target,
                side,
                chain,
                own,
                top,
                how,
            )
            .map(Some);
        }
    }

    /// Samples of the graph's pending tasks not running this round, each an idle sample of
    /// the thread running its loop (`threads`: thread states and our ids).
    pub(crate) fn suspended_samples(
        &mut self,
        target: &mut Target,
        side: &mut SamplerSide,
        threads: &[(u64, ThreadId)],
        how: &mut Frames<'_>,
        timestamp_ns: u64,
        weight_ns: u64,
    ) -> Result<u64, RoundError> {
        let Some(table) = self.table() else {
            return Ok(0);
        };
        self.suspended_weight_ns = self.suspended_weight_ns.saturating_add(weight_ns);
        if self
            .suspended_at_ns
            .is_some_and(|at| timestamp_ns.saturating_sub(at) < SUSPENDED_EVERY_NS)
        {
            return Ok(0);
        }
        let weight_ns = std::mem::take(&mut self.suspended_weight_ns);
        self.suspended_at_ns = Some(timestamp_ns);
        let Ok(chains) =
            self.reader
                .suspended(target.walker_mut(), table, &self.running, MAX_SUSPENDED)
        else {
            return Ok(0);
        };
        let mut pushed = 0;
        for (tstate, chain) in chains {
            let Some(&(_, thread)) = threads.iter().find(|&&(t, _)| t == tstate) else {
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
