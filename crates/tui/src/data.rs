//! What the view shows, computed from the aggregator's counts.
//!
//! [`Collector`] owns the aggregator's end of the sampling pipeline. It folds every drained
//! sample into two [`Counts`]: one since the start (or the last reset) and one for the interval
//! in progress. [`Collector::advance`] closes the interval, and [`Collector::view`] turns both
//! into owned [`ViewData`] with the aggregator's own [`Counts::breakdown`] (own/total per
//! function or line), so the view can be regrouped or refiltered at any moment without losing
//! the interval it shows. Nothing here touches a terminal; [`spawn`] runs a collector on its own
//! thread so that a slow terminal never delays draining the sampler's queue.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use strobe_aggregate::{
    AggregatorSide, BreakdownOptions, Count, CountKey, Counts, FrameId, SampleFilter, SampleFlags,
    Tables,
};

/// How long the collector thread waits for a request before draining the queue again. The
/// sampler's queue holds about a second of samples, so this is far from dropping any.
const DRAIN_PERIOD: Duration = Duration::from_millis(25);

/// A call tree stops at this depth (deeper stacks are cut, not dropped: their time stays in the
/// node where the cut happens).
const MAX_TREE_DEPTH: usize = 48;

/// A call tree never has more lines than this; the smallest branches are left out.
const MAX_TREE_LINES: usize = 400;

/// One function (or function and line), the key of a table row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FrameSel {
    /// Function name.
    pub function: String,
    /// File name.
    pub filename: String,
    /// Line, `None` when grouping by function.
    pub line: Option<i32>,
}

impl FrameSel {
    /// `function (file:line)` with the file shortened to its last component.
    pub fn label(&self) -> String {
        let file = short_file(&self.filename);
        match self.line {
            Some(l) => format!("{} ({file}:{l})", self.function),
            None => format!("{} ({file})", self.function),
        }
    }
}

/// The file name without its directories (`/srv/app/models.py` → `models.py`).
pub fn short_file(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// What to compute: the grouping and filters the user chose.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// Group by function (otherwise by function and line).
    pub by_function: bool,
    /// Only this native thread id.
    pub os_tid: Option<u64>,
    /// Idle / GIL filter.
    pub filter: SampleFilter,
    /// Also compute the call tree of this frame.
    pub focus: Option<FrameSel>,
}

/// One table row: own and total counts for the last interval and since the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Which function or line.
    pub key: FrameSel,
    /// Innermost-frame count in the last interval.
    pub interval_own: Count,
    /// Anywhere-on-the-stack count in the last interval.
    pub interval_total: Count,
    /// Innermost-frame count since the start (or reset).
    pub cumulative_own: Count,
    /// Anywhere-on-the-stack count since the start (or reset).
    pub cumulative_total: Count,
}

/// A thread the target ran, for the thread chooser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadRow {
    /// Native thread id.
    pub os_tid: u64,
    /// Python thread name, if known.
    pub name: Option<String>,
    /// Samples since the start (or reset), idle included.
    pub samples: u64,
    /// Of those, idle samples.
    pub idle_samples: u64,
}

/// One line of a call tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLine {
    /// Nesting depth (0 = the focused frame).
    pub depth: usize,
    /// `function (file:line)`.
    pub label: String,
    /// Time spent on paths through this node.
    pub count: Count,
}

/// The call paths through one frame: who calls it and what it calls, since the start (or
/// reset), under the current filters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallTree {
    /// The focused frame.
    pub focus: Option<FrameSel>,
    /// Samples with the focused frame on the stack.
    pub total: Count,
    /// All samples under the filter.
    pub grand_total: Count,
    /// Inverted tree: the focused frame, then its callers, then theirs.
    pub callers: Vec<TreeLine>,
    /// The focused frame, then its callees, then theirs.
    pub callees: Vec<TreeLine>,
}

/// Everything one screen shows, owned (no ids), so the UI thread needs no tables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ViewData {
    /// Rows in no particular order (the view sorts).
    pub rows: Vec<Row>,
    /// All samples matching the query in the last interval.
    pub interval_total: Count,
    /// All samples matching the query since the start (or reset).
    pub cumulative_total: Count,
    /// Wall time the last interval covered.
    pub interval_wall: Duration,
    /// Wall time since the start (or reset).
    pub cumulative_wall: Duration,
    /// Sampling rounds per second achieved in the last interval (the busiest thread's samples
    /// per second).
    pub rate_hz: f64,
    /// Samples received since strobe started, whatever the filter (not cleared by a reset).
    pub samples_received: u64,
    /// Samples the sampler dropped because the queue was full.
    pub dropped: u64,
    /// Threads seen since the start (or reset), by native id.
    pub threads: Vec<ThreadRow>,
    /// Threads sampled in the last interval (within the thread selection).
    pub active_threads: usize,
    /// Share of the last interval's samples (thread selection applied, idle/GIL filter not)
    /// that held the GIL; `None` without samples.
    pub gil_share: Option<f64>,
    /// Share of those samples that were idle.
    pub idle_share: Option<f64>,
    /// The call tree, when the query had a focus.
    pub tree: Option<CallTree>,
    /// The sampler is gone and everything it sent was counted.
    pub finished: bool,
    /// A failure of the aggregator (table capacity), for the status line.
    pub error: Option<String>,
}

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
}

fn shares(counts: &Counts, tables: &Tables, os_tid: Option<u64>) -> Shares {
    let (mut all, mut gil, mut idle) = (0u64, 0u64, 0u64);
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
    }
    let share = |n: u64| (all > 0).then(|| n as f64 / all as f64);
    Shares {
        threads: seen.len(),
        gil: share(gil),
        idle: share(idle),
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

/// A node of a call tree under construction.
#[derive(Default)]
struct Node {
    count: Count,
    children: HashMap<FrameSel, Node>,
}

impl Node {
    fn insert(&mut self, path: impl Iterator<Item = FrameSel>, c: Count) {
        let mut node = self;
        node.count.add(c);
        for key in path.take(MAX_TREE_DEPTH) {
            node = node.children.entry(key).or_default();
            node.count.add(c);
        }
    }

    /// Depth-first, biggest child first, at most `budget` lines.
    fn flatten(&self, label: String, depth: usize, out: &mut Vec<TreeLine>, budget: usize) {
        if out.len() >= budget {
            return;
        }
        out.push(TreeLine {
            depth,
            label,
            count: self.count,
        });
        let mut kids: Vec<(&FrameSel, &Node)> = self.children.iter().collect();
        kids.sort_by(|a, b| {
            b.1.count
                .weight_ns
                .cmp(&a.1.count.weight_ns)
                .then_with(|| a.0.label().cmp(&b.0.label()))
        });
        for (k, n) in kids {
            n.flatten(k.label(), depth + 1, out, budget);
        }
    }
}

fn call_tree(
    counts: &Counts,
    tables: &Tables,
    opts: &BreakdownOptions,
    focus: &FrameSel,
) -> CallTree {
    let sel = |fid: &FrameId| -> Option<FrameSel> {
        let f = tables.frame(*fid)?;
        Some(FrameSel {
            function: tables.str(f.function).to_string(),
            filename: tables.str(f.filename).to_string(),
            line: if opts.by_function { None } else { f.line },
        })
    };
    let mut callers = Node::default();
    let mut callees = Node::default();
    let mut grand_total = Count::default();
    for (k, c) in counts.iter() {
        if !accepts(opts, tables, &k) {
            continue;
        }
        grand_total.add(c);
        let frames: Vec<FrameSel> = tables.stack(k.stack).iter().filter_map(sel).collect();
        // The outermost occurrence: with recursion, the paths below it include the inner ones,
        // and the sample is counted once.
        let Some(at) = frames.iter().position(|f| f == focus) else {
            continue;
        };
        callers.insert(frames.iter().take(at).rev().cloned(), c);
        callees.insert(frames.iter().skip(at + 1).cloned(), c);
    }
    let mut tree = CallTree {
        focus: Some(focus.clone()),
        total: callers.count,
        grand_total,
        callers: Vec::new(),
        callees: Vec::new(),
    };
    if !callers.count.is_zero() {
        callers.flatten(focus.label(), 0, &mut tree.callers, MAX_TREE_LINES / 2);
        callees.flatten(focus.label(), 0, &mut tree.callees, MAX_TREE_LINES / 2);
    }
    tree
}

fn accepts(opts: &BreakdownOptions, tables: &Tables, k: &CountKey) -> bool {
    if !opts.filter.accepts(k.flags) {
        return false;
    }
    match opts.os_tid {
        Some(tid) => tables.thread(k.thread).map(|t| t.os_tid) == Some(tid),
        None => true,
    }
}

/// A request to the collector thread.
#[derive(Debug)]
enum Request {
    View {
        advance: bool,
        query: Query,
        reply: SyncSender<ViewData>,
    },
    Reset,
}

/// The UI thread's handle on a collector running on its own thread. Dropping it stops the
/// thread.
#[derive(Debug)]
pub struct CollectorHandle {
    tx: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

/// The collector thread went away (it only does so if it panicked).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the aggregator thread of strobe top stopped unexpectedly")]
pub struct CollectorGone;

/// Runs a [`Collector`] on its own thread: it drains the pipeline every few milliseconds, so
/// the sampler's queue never fills while the UI thread waits on the terminal.
pub fn spawn(agg: AggregatorSide) -> std::io::Result<CollectorHandle> {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("strobe-top-aggregator".into())
        .spawn(move || collector_loop(Collector::new(agg), rx))?;
    Ok(CollectorHandle {
        tx: Some(tx),
        thread: Some(thread),
    })
}

fn collector_loop(mut c: Collector, rx: Receiver<Request>) {
    loop {
        match rx.recv_timeout(DRAIN_PERIOD) {
            Ok(Request::View {
                advance,
                query,
                reply,
            }) => {
                c.pump();
                let now = Instant::now();
                if advance {
                    c.advance(now);
                }
                // The UI may have given up waiting; nothing to do then.
                let _ = reply.send(c.view(&query, now));
            }
            Ok(Request::Reset) => {
                c.pump();
                c.reset(Instant::now());
            }
            Err(RecvTimeoutError::Timeout) => {
                c.pump();
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

impl CollectorHandle {
    /// The view for `query`; `advance` closes the interval first.
    pub fn view(&self, advance: bool, query: Query) -> Result<ViewData, CollectorGone> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.tx
            .as_ref()
            .ok_or(CollectorGone)?
            .send(Request::View {
                advance,
                query,
                reply,
            })
            .map_err(|_| CollectorGone)?;
        rx.recv().map_err(|_| CollectorGone)
    }

    /// Forget the counts so far.
    pub fn reset(&self) -> Result<(), CollectorGone> {
        self.tx
            .as_ref()
            .ok_or(CollectorGone)?
            .send(Request::Reset)
            .map_err(|_| CollectorGone)
    }
}

impl Drop for CollectorHandle {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            // A panic in the collector was already reported by the panic hook.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use strobe_aggregate::{pipeline, FrameKey, SamplerSide, ThreadKey};

    const MAIN: ThreadKey<'static> = ThreadKey {
        os_tid: 10,
        name: Some("MainThread"),
        interpreter_id: 0,
    };
    const WORKER: ThreadKey<'static> = ThreadKey {
        os_tid: 11,
        name: Some("worker"),
        interpreter_id: 0,
    };

    fn fk(function: &'static str, line: i32) -> FrameKey<'static> {
        FrameKey {
            function,
            filename: "/app/x.py",
            line: Some(line),
        }
    }

    fn push(
        s: &mut SamplerSide,
        t: &ThreadKey<'_>,
        frames: &[FrameKey<'_>],
        flags: SampleFlags,
        n: usize,
    ) {
        for i in 0..n {
            assert!(s.record(t, frames, flags, i as u64, 10_000_000).unwrap());
        }
    }

    fn row<'a>(v: &'a ViewData, f: &str) -> &'a Row {
        v.rows.iter().find(|r| r.key.function == f).unwrap()
    }

    fn by_fn() -> Query {
        Query {
            by_function: true,
            ..Default::default()
        }
    }

    #[test]
    fn interval_cumulative_reset_and_shares() {
        let (mut s, agg) = pipeline(1024);
        let mut c = Collector::new(agg);
        let t0 = Instant::now();
        let gil = SampleFlags::HOLDS_GIL;
        push(&mut s, &MAIN, &[fk("main", 1), fk("hot", 5)], gil, 75);
        push(&mut s, &MAIN, &[fk("main", 2), fk("cold", 9)], gil, 25);
        push(
            &mut s,
            &WORKER,
            &[fk("run", 1), fk("wait", 3)],
            SampleFlags::IDLE,
            100,
        );
        assert_eq!(c.pump(), 200);
        c.advance(t0 + Duration::from_secs(1));
        let v = c.view(&by_fn(), t0 + Duration::from_secs(1));
        assert_eq!(v.cumulative_total.samples, 100, "idle excluded");
        assert_eq!(row(&v, "hot").interval_own.samples, 75);
        assert_eq!(row(&v, "cold").cumulative_own.samples, 25);
        assert_eq!(row(&v, "main").interval_total.samples, 100);
        assert!(v.rows.iter().all(|r| r.key.function != "wait"));
        assert_eq!(v.gil_share, Some(0.5));
        assert_eq!(v.idle_share, Some(0.5));
        assert_eq!(v.active_threads, 2);
        assert!((v.rate_hz - 100.0).abs() < 0.1, "{}", v.rate_hz);
        assert_eq!(v.threads.len(), 2);
        assert_eq!(v.threads[1].name.as_deref(), Some("worker"));
        assert_eq!(v.threads[1].idle_samples, 100);

        // A second interval with only `cold`: interval and cumulative differ.
        push(&mut s, &MAIN, &[fk("main", 2), fk("cold", 9)], gil, 10);
        c.pump();
        c.advance(t0 + Duration::from_secs(2));
        let v = c.view(&by_fn(), t0 + Duration::from_secs(2));
        assert_eq!(row(&v, "hot").interval_own.samples, 0);
        assert_eq!(row(&v, "hot").cumulative_own.samples, 75);
        assert_eq!(row(&v, "cold").interval_own.samples, 10);
        assert_eq!(v.interval_total.samples, 10);

        // Regrouping does not consume the interval.
        let by_line = c.view(&Query::default(), t0 + Duration::from_secs(2));
        assert_eq!(by_line.interval_total.samples, 10);
        assert_eq!(
            by_line
                .rows
                .iter()
                .filter(|r| r.key.function == "main")
                .count(),
            2
        );

        // One thread, idle included.
        let q = Query {
            by_function: true,
            os_tid: Some(11),
            filter: SampleFilter::ALL,
            focus: None,
        };
        let v = c.view(&q, t0 + Duration::from_secs(2));
        assert_eq!(v.cumulative_total.samples, 100);
        assert_eq!(row(&v, "wait").cumulative_own.samples, 100);

        c.reset(t0 + Duration::from_secs(3));
        let v = c.view(&by_fn(), t0 + Duration::from_secs(3));
        assert!(v.rows.is_empty());
        assert_eq!(
            v.samples_received, 210,
            "the received counter survives a reset"
        );
        drop(s);
        c.pump();
        assert!(c.view(&by_fn(), t0).finished);
    }

    #[test]
    fn call_tree_of_a_recursive_function() {
        let (mut s, agg) = pipeline(1024);
        let mut c = Collector::new(agg);
        let none = SampleFlags::empty();
        push(
            &mut s,
            &MAIN,
            &[
                fk("main", 1),
                fk("a", 1),
                fk("f", 1),
                fk("f", 2),
                fk("g", 1),
            ],
            none,
            3,
        );
        push(
            &mut s,
            &MAIN,
            &[fk("main", 1), fk("b", 1), fk("f", 1)],
            none,
            1,
        );
        push(&mut s, &MAIN, &[fk("main", 1), fk("other", 1)], none, 6);
        c.pump();
        let focus = FrameSel {
            function: "f".into(),
            filename: "/app/x.py".into(),
            line: None,
        };
        let q = Query {
            focus: Some(focus),
            ..by_fn()
        };
        let tree = c.view(&q, Instant::now()).tree.unwrap();
        assert_eq!(tree.total.samples, 4, "recursion counted once");
        assert_eq!(tree.grand_total.samples, 10);
        let callers: Vec<(usize, &str, u64)> = tree
            .callers
            .iter()
            .map(|l| (l.depth, l.label.as_str(), l.count.samples))
            .collect();
        assert_eq!(
            callers,
            [
                (0, "f (x.py)", 4),
                (1, "a (x.py)", 3),
                (2, "main (x.py)", 3),
                (1, "b (x.py)", 1),
                (2, "main (x.py)", 1)
            ]
        );
        let callees: Vec<(usize, &str, u64)> = tree
            .callees
            .iter()
            .map(|l| (l.depth, l.label.as_str(), l.count.samples))
            .collect();
        assert_eq!(
            callees,
            [(0, "f (x.py)", 4), (1, "f (x.py)", 3), (2, "g (x.py)", 3)]
        );
    }

    #[test]
    fn collector_thread_serves_views_until_dropped() {
        let (mut s, agg) = pipeline(16);
        let h = spawn(agg).unwrap();
        // More than the queue holds: the thread has to keep draining while we push.
        let mut pushed = 0u64;
        for i in 0..2_000u64 {
            if s.record(&MAIN, &[fk("main", 1)], SampleFlags::empty(), i, 1)
                .unwrap()
            {
                pushed += 1;
            }
            if i % 8 == 0 {
                std::thread::yield_now();
            }
        }
        drop(s);
        let v = loop {
            let v = h.view(true, by_fn()).unwrap();
            if v.finished {
                break v;
            }
        };
        assert_eq!(v.samples_received, pushed);
        assert_eq!(v.samples_received + v.dropped, 2_000);
        h.reset().unwrap();
        assert!(h.view(false, by_fn()).unwrap().rows.is_empty());
    }
}
