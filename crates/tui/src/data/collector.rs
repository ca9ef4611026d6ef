//! [`Collector`]: the aggregator's end of the pipeline, the counts (folded per frame) of the
//! whole run and of the interval in progress, the stacks kept for the call tree, and the
//! [`ViewData`] computed from them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use strobe_aggregate::{
    AggregatorSide, BreakdownOptions, FrameFold, FrameKind, SampleFlags, Tables, ThreadId,
};

use super::kept::{KeptStacks, KEPT_STACK_BYTES};
use super::table::{Names, RowTable, Rows};
use super::tree::call_tree;
use super::{Query, ThreadRow, ViewData};

/// Owns the aggregator's end of the pipeline and the counts the view is computed from.
#[derive(Debug)]
pub struct Collector {
    agg: AggregatorSide,
    /// Everything since the start (or reset) up to the last [`Collector::advance`].
    closed: FrameFold,
    /// The interval in progress.
    current: FrameFold,
    /// The last closed interval.
    last: FrameFold,
    /// The heaviest stacks since the start (or reset), for the call tree.
    kept: KeptStacks,
    interval_start: Instant,
    last_interval: Duration,
    reset_at: Instant,
    received: u64,
    error: Option<String>,
    /// The names rows carry, by interned id.
    names: Names,
    /// Intervals closed since the start.
    closed_intervals: u64,
    /// The rows of the last query, as of the intervals closed then.
    table: Option<RowTable>,
}

impl Collector {
    /// A collector over `agg`, with the clock starting now, keeping stacks for the call tree
    /// within [`KEPT_STACK_BYTES`].
    pub fn new(agg: AggregatorSide) -> Collector {
        Collector::with_budget(agg, KEPT_STACK_BYTES)
    }

    /// A collector whose kept stacks take about `budget` bytes at most.
    pub fn with_budget(agg: AggregatorSide, budget: usize) -> Collector {
        let now = Instant::now();
        Collector {
            agg,
            closed: fold(),
            current: fold(),
            last: fold(),
            kept: KeptStacks::new(budget),
            interval_start: now,
            last_interval: Duration::ZERO,
            reset_at: now,
            received: 0,
            error: None,
            names: Names::default(),
            closed_intervals: 0,
            table: None,
        }
    }

    /// Counts everything queued now. Returns how many samples were taken in.
    pub fn pump(&mut self) -> usize {
        let mut n = 0;
        loop {
            match self.agg.drain() {
                Ok(d) => {
                    if d.samples.is_empty() {
                        break;
                    }
                    // The tables hold every drained sample's stack until the next drain.
                    for s in d.samples {
                        self.current.add(d.tables, s);
                        self.kept.add(d.tables, s);
                    }
                    n += d.samples.len();
                }
                Err(e) => {
                    self.error = Some(e.to_string());
                    break;
                }
            }
        }
        self.received += n as u64;
        n
    }

    /// Closes the interval in progress: it becomes "the last interval".
    pub fn advance(&mut self, now: Instant) {
        self.closed.merge(&self.current);
        // The interval before becomes the one in progress, emptied: its memory is reused.
        std::mem::swap(&mut self.last, &mut self.current);
        self.current.clear();
        self.last_interval = now.saturating_duration_since(self.interval_start);
        self.interval_start = now;
        self.closed_intervals += 1;
    }

    /// Forgets everything counted so far (the received-samples counter stays).
    pub fn reset(&mut self, now: Instant) {
        self.closed = fold();
        self.current = fold();
        self.last = fold();
        self.table = None;
        self.kept = KeptStacks::new(self.kept.budget());
        self.last_interval = Duration::ZERO;
        self.interval_start = now;
        self.reset_at = now;
    }

    /// Whether the sampler is gone and its samples were all counted.
    pub fn finished(&self) -> bool {
        self.agg.finished()
    }

    /// Whether sampling has ended: the sampler dropped its side, and what it sent is queued.
    pub fn sampler_gone(&self) -> bool {
        self.agg.sampler_gone()
    }

    /// The stacks kept for the call tree.
    pub fn kept(&self) -> &KeptStacks {
        &self.kept
    }

    /// The screen's data for `q`.
    pub fn view(&mut self, q: &Query, now: Instant) -> ViewData {
        let opts = breakdown_options(q);
        let tables = self.agg.tables();
        let closed = self.closed_intervals;
        let table = match self.table.take() {
            Some(mut t) if t.fits(&opts, closed) => {
                t.close(closed, &self.last, tables, &mut self.names);
                t
            }
            _ => RowTable::build(
                opts,
                closed,
                &self.closed,
                &self.last,
                tables,
                &mut self.names,
            ),
        };
        let Rows {
            rows,
            cumulative_total,
            interval_total,
        } = table.view(&self.current, tables, &mut self.names);
        self.table = Some(table);

        let tree = q.focus.as_ref().map(|f| {
            let exact = rows
                .iter()
                .find(|r| &r.key == f)
                .map(|r| r.cumulative_total);
            call_tree(&self.kept, tables, &opts, f, exact, cumulative_total)
        });
        let shares = shares(&self.last, tables, q.os_tid);
        let since_reset = [&self.closed, &self.current];
        ViewData {
            rows,
            interval_total,
            cumulative_total,
            interval_wall: self.last_interval,
            cumulative_wall: now.saturating_duration_since(self.reset_at),
            rate_hz: rate_hz(&self.last, self.last_interval),
            samples_received: self.received,
            dropped: self.agg.dropped(),
            threads: threads(&since_reset, tables),
            active_threads: shares.threads,
            gil_share: shares.gil,
            idle_share: shares.idle,
            gc_share: shares.gc,
            exception_share: shares.exception,
            tree,
            finished: self.agg.finished(),
            error: self.error.clone(),
        }
    }
}

/// An empty fold of `top`'s (`<GC>` frames are left out in the sampler, under `--no-gc`).
fn fold() -> FrameFold {
    FrameFold::new(false)
}

struct Shares {
    threads: usize,
    gil: Option<f64>,
    idle: Option<f64>,
    gc: Option<f64>,
    exception: Option<f64>,
}

fn shares(fold: &FrameFold, tables: &Tables, os_tid: Option<u64>) -> Shares {
    let (mut all, mut gil, mut idle, mut gc, mut exception) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let chosen = |thread: ThreadId| {
        os_tid.is_none_or(|tid| tables.thread(thread).map(|t| t.os_tid) == Some(tid))
    };
    let mut seen = Vec::new();
    for (thread, flags, c) in fold.samples() {
        if !chosen(thread) {
            continue;
        }
        if !seen.contains(&thread) {
            seen.push(thread);
        }
        all += c.samples;
        if flags.holds_gil() {
            gil += c.samples;
        }
        if flags.idle() {
            idle += c.samples;
        }
        if flags.exception() {
            exception += c.samples;
        }
    }
    // `<GC>` is only ever the innermost frame: its own count, exception frames shown (they
    // are below it).
    for (thread, _, st) in fold.frames(false, false) {
        if st.kind == FrameKind::Interpreter && chosen(thread) {
            gc += st.own.samples;
        }
    }
    let share = |n: u64| (all > 0).then(|| n as f64 / all as f64);
    Shares {
        threads: seen.len(),
        gil: share(gil),
        idle: share(idle),
        gc: share(gc),
        exception: share(exception),
    }
}

/// Sampling rounds per second: every round samples every thread once, so the busiest thread's
/// count is the number of rounds (several threads would otherwise overstate the rate).
fn rate_hz(fold: &FrameFold, wall: Duration) -> f64 {
    if wall.is_zero() {
        return 0.0;
    }
    let mut per_thread: HashMap<ThreadId, u64> = HashMap::new();
    for (thread, _, c) in fold.samples() {
        *per_thread.entry(thread).or_default() += c.samples;
    }
    let rounds = per_thread.values().copied().max().unwrap_or(0);
    rounds as f64 / wall.as_secs_f64()
}

fn threads(folds: &[&FrameFold], tables: &Tables) -> Vec<ThreadRow> {
    let mut by_tid: HashMap<u64, ThreadRow> = HashMap::new();
    for (thread, flags, c) in folds.iter().flat_map(|f| f.samples()) {
        let Some(t) = tables.thread(thread) else {
            continue;
        };
        let row = by_tid.entry(t.os_tid).or_insert_with(|| ThreadRow {
            os_tid: t.os_tid,
            name: None,
            samples: 0,
            idle_samples: 0,
        });
        if let Some(n) = t.name {
            // A thread renamed while running keeps its latest-interned name.
            row.name = Some(tables.str(n).to_string());
        }
        row.samples += c.samples;
        if flags.contains(SampleFlags::IDLE) {
            row.idle_samples += c.samples;
        }
    }
    let mut v: Vec<ThreadRow> = by_tid.into_values().collect();
    v.sort_by_key(|t| t.os_tid);
    v
}

/// Whether samples of `thread` with `flags` pass the idle/GIL filter and the thread choice.
pub(super) fn accepts(
    opts: &BreakdownOptions,
    tables: &Tables,
    thread: ThreadId,
    flags: SampleFlags,
) -> bool {
    if !opts.filter.accepts(flags) {
        return false;
    }
    match opts.os_tid {
        Some(tid) => tables.thread(thread).map(|t| t.os_tid) == Some(tid),
        None => true,
    }
}

/// What the screen's data for `q` counts: the aggregator's breakdown options.
pub(super) fn breakdown_options(q: &Query) -> BreakdownOptions {
    BreakdownOptions {
        by_function: q.by_function,
        os_tid: q.os_tid,
        filter: q.filter,
        // `top --no-gc` leaves the frames out in the sampler.
        hide_gc: false,
        // `<raise T>` frames only where every sample has one.
        hide_exceptions: !q.filter.exception_only,
    }
}
