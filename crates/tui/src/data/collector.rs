//! [`Collector`]: the aggregator's end of the pipeline, the counts of the whole run and of the
//! interval in progress, and the [`ViewData`] computed from them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use strobe_aggregate::{
    AggregatorSide, BreakdownOptions, Count, CountKey, Counts, FrameKind, SampleFlags, Tables,
};

use super::tree::call_tree;
use super::{FrameSel, Query, Row, ThreadRow, ViewData};

/// Owns the aggregator's end of the pipeline and the counts the view is computed from.
#[derive(Debug)]
pub struct Collector {
    agg: AggregatorSide,
    since_reset: Counts,
    current: Counts,
    last: Counts,
    interval_start: Instant,
    last_interval: Duration,
    reset_at: Instant,
    received: u64,
    error: Option<String>,
}

impl Collector {
    /// A collector over `agg`, with the clock starting now.
    pub fn new(agg: AggregatorSide) -> Collector {
        let now = Instant::now();
        Collector {
            agg,
            since_reset: Counts::new(),
            current: Counts::new(),
            last: Counts::new(),
            interval_start: now,
            last_interval: Duration::ZERO,
            reset_at: now,
            received: 0,
            error: None,
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
                    for s in d.samples {
                        self.since_reset.add(s);
                        self.current.add(s);
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
        self.last = std::mem::take(&mut self.current);
        self.last_interval = now.saturating_duration_since(self.interval_start);
        self.interval_start = now;
    }

    /// Forgets everything counted so far (the received-samples counter stays).
    pub fn reset(&mut self, now: Instant) {
        self.since_reset = Counts::new();
        self.current = Counts::new();
        self.last = Counts::new();
        self.last_interval = Duration::ZERO;
        self.interval_start = now;
        self.reset_at = now;
    }

    /// Whether the sampler is gone and its samples were all counted.
    pub fn finished(&self) -> bool {
        self.agg.finished()
    }

    /// The screen's data for `q`.
    pub fn view(&mut self, q: &Query, now: Instant) -> ViewData {
        let opts = BreakdownOptions {
            by_function: q.by_function,
            os_tid: q.os_tid,
            filter: q.filter,
            // `top --no-gc` leaves the frames out in the sampler.
            hide_gc: false,
            // `<raise T>` frames only where every sample has one.
            hide_exceptions: !q.filter.exception_only,
        };
        let tables = self.agg.tables();
        // `Counts::snapshot` reports per frame both "since the previous snapshot" and
        // "cumulative"; each of our two counts is asked only for its cumulative side.
        let cumulative = self.since_reset.breakdown(tables, &opts);
        let interval = self.last.breakdown(tables, &opts);

        let mut index: HashMap<FrameSel, usize> = HashMap::new();
        let mut rows: Vec<Row> = Vec::with_capacity(cumulative.cumulative.len());
        for st in &cumulative.cumulative {
            let key = FrameSel {
                function: tables.str(st.function).to_string(),
                filename: tables.str(st.filename).to_string(),
                line: st.line,
                kind: st.kind,
                module: st.module.map(|m| tables.str(m).to_string()),
            };
            index.insert(key.clone(), rows.len());
            rows.push(Row {
                key,
                interval_own: Count::default(),
                interval_total: Count::default(),
                cumulative_own: st.own,
                cumulative_total: st.total,
            });
        }
        for st in &interval.cumulative {
            let key = FrameSel {
                function: tables.str(st.function).to_string(),
                filename: tables.str(st.filename).to_string(),
                line: st.line,
                kind: st.kind,
                module: st.module.map(|m| tables.str(m).to_string()),
            };
            // The last interval is part of "since reset", so the row exists; a row is added
            // anyway rather than trusting that.
            let i = match index.get(&key) {
                Some(&i) => i,
                None => {
                    rows.push(Row {
                        key,
                        interval_own: Count::default(),
                        interval_total: Count::default(),
                        cumulative_own: Count::default(),
                        cumulative_total: Count::default(),
                    });
                    rows.len() - 1
                }
            };
            if let Some(r) = rows.get_mut(i) {
                r.interval_own = st.own;
                r.interval_total = st.total;
            }
        }

        let tree = q
            .focus
            .as_ref()
            .map(|f| call_tree(&self.since_reset, tables, &opts, f));
        let shares = shares(&self.last, tables, q.os_tid);
        ViewData {
            rows,
            interval_total: interval.cumulative_total,
            cumulative_total: cumulative.cumulative_total,
            interval_wall: self.last_interval,
            cumulative_wall: now.saturating_duration_since(self.reset_at),
            rate_hz: rate_hz(&self.last, self.last_interval),
            samples_received: self.received,
            dropped: self.agg.dropped(),
            threads: threads(&self.since_reset, tables),
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

struct Shares {
    threads: usize,
    gil: Option<f64>,
    idle: Option<f64>,
    gc: Option<f64>,
    exception: Option<f64>,
}

fn shares(counts: &Counts, tables: &Tables, os_tid: Option<u64>) -> Shares {
    let (mut all, mut gil, mut idle, mut gc, mut exception) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut seen = Vec::new();
    for (k, c) in counts.iter() {
        if let Some(tid) = os_tid {
            if tables.thread(k.thread).map(|t| t.os_tid) != Some(tid) {
                continue;
            }
        }
        if !seen.contains(&k.thread) {
            seen.push(k.thread);
        }
        all += c.samples;
        if k.flags.holds_gil() {
            gil += c.samples;
        }
        if k.flags.idle() {
            idle += c.samples;
        }
        if k.flags.exception() {
            exception += c.samples;
        }
        // `<GC>` is only ever the innermost frame.
        let innermost = tables.stack(k.stack).last().and_then(|&f| tables.frame(f));
        if innermost.is_some_and(|f| f.kind == FrameKind::Interpreter) {
            gc += c.samples;
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
fn rate_hz(counts: &Counts, wall: Duration) -> f64 {
    if wall.is_zero() {
        return 0.0;
    }
    let mut per_thread: HashMap<u32, u64> = HashMap::new();
    for (k, c) in counts.iter() {
        *per_thread.entry(k.thread.0).or_default() += c.samples;
    }
    let rounds = per_thread.values().copied().max().unwrap_or(0);
    rounds as f64 / wall.as_secs_f64()
}

fn threads(counts: &Counts, tables: &Tables) -> Vec<ThreadRow> {
    let mut by_tid: HashMap<u64, ThreadRow> = HashMap::new();
    for (k, c) in counts.iter() {
        let Some(t) = tables.thread(k.thread) else {
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
        if k.flags.contains(SampleFlags::IDLE) {
            row.idle_samples += c.samples;
        }
    }
    let mut v: Vec<ThreadRow> = by_tid.into_values().collect();
    v.sort_by_key(|t| t.os_tid);
    v
}

/// Whether the sample counted under `k` passes the idle/GIL filter and the thread choice.
pub(super) fn accepts(opts: &BreakdownOptions, tables: &Tables, k: &CountKey) -> bool {
    if !opts.filter.accepts(k.flags) {
        return false;
    }
    match opts.os_tid {
        Some(tid) => tables.thread(k.thread).map(|t| t.os_tid) == Some(tid),
        None => true,
    }
}
