//! Counting samples per (stack, thread, flags), and the per-frame snapshots a live view reads.

use hashbrown::HashMap;

use crate::hash::FxBuild;
use crate::intern::{Frame, FrameId, FrameKind, StackId, StrId, Tables, ThreadId};

/// Per-sample state bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SampleFlags(pub u8);

impl SampleFlags {
    /// The thread was idle (waiting in a syscall / not running Python code) when sampled.
    pub const IDLE: SampleFlags = SampleFlags(1);
    /// The thread held the GIL when sampled.
    pub const HOLDS_GIL: SampleFlags = SampleFlags(2);
    /// The thread was raising or handling an exception (inside an `except` or `finally`
    /// block, or an exception propagating through its frames).
    pub const EXCEPTION: SampleFlags = SampleFlags(4);
    /// Every bit that has a meaning; others are dropped when reading files.
    pub const KNOWN: SampleFlags = SampleFlags(7);

    /// No flags.
    pub const fn empty() -> SampleFlags {
        SampleFlags(0)
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: SampleFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the bits of `other` set too.
    #[must_use]
    pub const fn with(self, other: SampleFlags) -> SampleFlags {
        SampleFlags(self.0 | other.0)
    }

    /// The idle bit.
    pub const fn idle(self) -> bool {
        self.contains(SampleFlags::IDLE)
    }

    /// The GIL bit.
    pub const fn holds_gil(self) -> bool {
        self.contains(SampleFlags::HOLDS_GIL)
    }

    /// The exception bit.
    pub const fn exception(self) -> bool {
        self.contains(SampleFlags::EXCEPTION)
    }
}

/// One sample of one thread, after interning: what the sampler hands over (32 bytes, `Copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The stack, outermost frame first.
    pub stack: StackId,
    /// The thread it was taken from.
    pub thread: ThreadId,
    /// Idle / GIL state.
    pub flags: SampleFlags,
    /// When the sample was taken, in ns since the recording started (monotonic clock).
    pub timestamp_ns: u64,
    /// The wall time this sample stands for: normally the sampling interval, more when the
    /// sampler fell behind (a late sample carries the real gap since the previous one).
    pub weight_ns: u64,
}

impl Sample {
    /// The key it is counted under.
    #[inline]
    pub fn key(&self) -> CountKey {
        CountKey {
            thread: self.thread,
            stack: self.stack,
            flags: self.flags,
        }
    }
}

/// A number of samples and the wall time they stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Count {
    /// How many samples.
    pub samples: u64,
    /// Total weight in nanoseconds.
    pub weight_ns: u64,
}

impl Count {
    /// A count of one sample of `weight_ns`.
    pub fn one(weight_ns: u64) -> Count {
        Count {
            samples: 1,
            weight_ns,
        }
    }

    /// Adds another count (saturating: weights never wrap).
    #[inline]
    pub fn add(&mut self, other: Count) {
        self.samples = self.samples.saturating_add(other.samples);
        self.weight_ns = self.weight_ns.saturating_add(other.weight_ns);
    }

    /// Whether nothing was counted.
    pub fn is_zero(&self) -> bool {
        self.samples == 0 && self.weight_ns == 0
    }
}

/// The key counts are kept under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountKey {
    /// Thread.
    pub thread: ThreadId,
    /// Stack.
    pub stack: StackId,
    /// Flags.
    pub flags: SampleFlags,
}

/// Which samples a view or output includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SampleFilter {
    /// Include idle samples (`--idle`).
    pub include_idle: bool,
    /// Only samples of the thread holding the GIL (`--gil`).
    pub gil_only: bool,
    /// Only samples of threads raising or handling an exception (`--mode exception`).
    pub exception_only: bool,
}

impl SampleFilter {
    /// A filter that keeps everything.
    pub const ALL: SampleFilter = SampleFilter {
        include_idle: true,
        gil_only: false,
        exception_only: false,
    };

    /// Whether a sample with `flags` passes.
    #[inline]
    pub fn accepts(&self, flags: SampleFlags) -> bool {
        (self.include_idle || !flags.idle())
            && (!self.gil_only || flags.holds_gil())
            && (!self.exception_only || flags.exception())
    }
}

/// Counts per (thread, stack, flags): cumulative and since the last snapshot, plus (optionally)
/// the time-ordered samples for timeline formats.
///
/// Memory grows with the number of distinct keys, not with samples, unless the timeline is kept
/// (see [`Counts::keep_timeline`]), which costs 32 bytes per sample.
#[derive(Debug, Clone)]
pub struct Counts {
    cumulative: HashMap<CountKey, Count, FxBuild>,
    interval: HashMap<CountKey, Count, FxBuild>,
    timeline: Option<Vec<Sample>>,
    total: Count,
    /// Whether counts are kept per key at all (else only the total and the timeline).
    per_key: bool,
    /// Whether the interval since the last breakdown is kept.
    keep_interval: bool,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            cumulative: HashMap::default(),
            interval: HashMap::default(),
            timeline: None,
            total: Count::default(),
            per_key: true,
            keep_interval: true,
        }
    }
}

impl Counts {
    /// Empty counts, no timeline.
    pub fn new() -> Counts {
        Counts::default()
    }

    /// Keep counts since the previous [`Counts::breakdown`] too (the default; a live view's
    /// interval). Without them a breakdown's interval is empty, and each distinct key costs half.
    pub fn keep_interval(&mut self, keep: bool) {
        self.keep_interval = keep;
        if !keep {
            self.interval = HashMap::default();
        }
    }

    /// Keep counts per (thread, stack, flags) (the default). Without them only the total (and
    /// the timeline, if kept) is counted: for a recording streamed to a file, whose stacks the
    /// tables may forget.
    pub fn keep_per_key(&mut self, keep: bool) {
        self.per_key = keep;
        if !keep {
            self.cumulative = HashMap::default();
            self.interval = HashMap::default();
        }
    }

    /// Also keep every sample in order (needed for the Chrome trace format, which shows time).
    pub fn keep_timeline(&mut self, keep: bool) {
        if keep && self.timeline.is_none() {
            self.timeline = Some(Vec::new());
        } else if !keep {
            self.timeline = None;
        }
    }

    /// Counts one sample: two hash-map increments (and a push when the timeline is kept).
    #[inline]
    pub fn add(&mut self, s: &Sample) {
        self.add_count(s.key(), Count::one(s.weight_ns));
        if let Some(t) = &mut self.timeline {
            t.push(*s);
        }
    }

    /// Adds an already-aggregated count (e.g. when merging).
    #[inline]
    pub fn add_count(&mut self, key: CountKey, c: Count) {
        if self.per_key {
            self.cumulative.entry(key).or_default().add(c);
            if self.keep_interval {
                self.interval.entry(key).or_default().add(c);
            }
        }
        self.total.add(c);
    }

    /// Everything counted so far.
    pub fn total(&self) -> Count {
        self.total
    }

    /// Cumulative counts, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (CountKey, Count)> + '_ {
        self.cumulative.iter().map(|(k, c)| (*k, *c))
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }

    /// The time-ordered samples, if kept.
    pub fn timeline(&self) -> &[Sample] {
        self.timeline.as_deref().unwrap_or(&[])
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(CountKey, Count)>() + 1;
        (self.cumulative.capacity() + self.interval.capacity()) * entry
            + self
                .timeline
                .as_ref()
                .map_or(0, |t| t.capacity() * std::mem::size_of::<Sample>())
    }

    /// Per-frame own/total counts, cumulative and since the previous snapshot; starts a new
    /// interval. Costs one pass over the distinct stacks (not the samples), so taking one a
    /// second is cheap.
    pub fn breakdown(&mut self, tables: &Tables, opts: &BreakdownOptions) -> Breakdown {
        let interval = frame_stats(&self.interval, tables, opts);
        let cumulative = frame_stats(&self.cumulative, tables, opts);
        self.interval.clear();
        Breakdown {
            interval_total: interval.1,
            interval: interval.0,
            cumulative_total: cumulative.1,
            cumulative: cumulative.0,
        }
    }
}

/// What a snapshot covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreakdownOptions {
    /// Aggregate by function (ignore lines), as `--function`.
    pub by_function: bool,
    /// Only this native thread id.
    pub os_tid: Option<u64>,
    /// Which samples count.
    pub filter: SampleFilter,
    /// `--no-gc`: leave out `<GC>` frames ([`FrameKind::Interpreter`]), so their samples are
    /// the own time of the frame below.
    pub hide_gc: bool,
    /// Leave out `<raise T>` frames ([`FrameKind::Exception`]), as every mode but `--mode
    /// exception` does.
    pub hide_exceptions: bool,
}

/// Own and total counts for one function (or function and line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStat {
    /// Function name.
    pub function: StrId,
    /// File name.
    pub filename: StrId,
    /// Line, or `None` when aggregating by function.
    pub line: Option<i32>,
    /// What the frame is.
    pub kind: FrameKind,
    /// Native frames: the shared object.
    pub module: Option<StrId>,
    /// Samples where this was the innermost frame.
    pub own: Count,
    /// Samples where this appeared anywhere in the stack (counted once per sample, even when
    /// recursive).
    pub total: Count,
}

/// A snapshot for a `top`-like view. Stats are sorted by total weight, then own weight,
/// descending (ties broken by name ids so the order is stable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breakdown {
    /// Since the previous snapshot.
    pub interval: Vec<FrameStat>,
    /// Everything matching the filter in the interval.
    pub interval_total: Count,
    /// Since the recording started.
    pub cumulative: Vec<FrameStat>,
    /// Everything matching the filter since the start.
    pub cumulative_total: Count,
}

fn frame_stats(
    counts: &HashMap<CountKey, Count, FxBuild>,
    tables: &Tables,
    opts: &BreakdownOptions,
) -> (Vec<FrameStat>, Count) {
    let mut acc = StatsAcc::default();
    for (key, count) in counts {
        acc.add(tables, opts, key, *count);
    }
    acc.sorted()
}

/// Own and total counts per function (or line) being summed up, stack by stack.
#[derive(Debug, Clone, Default)]
struct StatsAcc {
    index: HashMap<StatKey, usize, FxBuild>,
    stats: Vec<FrameStat>,
    // seen[i] == generation when stat i was already credited for the current stack: recursion
    // must not count a sample twice in `total`.
    seen: Vec<u32>,
    /// The stat of each frame id, once looked up (`u32::MAX`: not yet); frames are never
    /// forgotten, and the options do not change, so a frame's stat does not either.
    by_frame: Vec<u32>,
    total: Count,
    generation: u32,
}

impl StatsAcc {
    /// Adds `count` of `key`'s stack, if `opts` keeps it.
    fn add(&mut self, tables: &Tables, opts: &BreakdownOptions, key: &CountKey, count: Count) {
        if !opts.filter.accepts(key.flags) {
            return;
        }
        if let Some(tid) = opts.os_tid {
            if tables.thread(key.thread).map(|t| t.os_tid) != Some(tid) {
                return;
            }
        }
        self.total.add(count);
        self.generation = self.generation.wrapping_add(1);
        let frames = visible_frames(
            tables,
            tables.stack(key.stack),
            opts.hide_gc,
            opts.hide_exceptions,
        );
        for (depth, fid) in frames.iter().enumerate() {
            let i = match self.by_frame.get(fid.index()) {
                Some(&i) if i != u32::MAX => i as usize,
                _ => {
                    let Some(i) = stat_index(
                        *fid,
                        tables,
                        opts.by_function,
                        &mut self.index,
                        &mut self.stats,
                    ) else {
                        continue;
                    };
                    if self.by_frame.len() <= fid.index() {
                        self.by_frame.resize(fid.index() + 1, u32::MAX);
                    }
                    if let (Some(slot), Ok(v)) =
                        (self.by_frame.get_mut(fid.index()), u32::try_from(i))
                    {
                        *slot = v;
                    }
                    i
                }
            };
            if self.seen.len() < self.stats.len() {
                self.seen.resize(self.stats.len(), 0);
            }
            if let (Some(mark), Some(stat)) = (self.seen.get_mut(i), self.stats.get_mut(i)) {
                if *mark != self.generation {
                    *mark = self.generation;
                    stat.total.add(count);
                }
                if depth + 1 == frames.len() {
                    stat.own.add(count);
                }
            }
        }
    }

    /// The stats, sorted as a [`Breakdown`]'s, and the total.
    fn sorted(self) -> (Vec<FrameStat>, Count) {
        let mut stats = self.stats;
        sort_stats(&mut stats);
        (stats, self.total)
    }
}

/// Own and total time per function (or line) summed sample by sample, for a recording whose
/// stacks are not all kept until the end (a raw file is streamed while the tables forget
/// stacks): each sample's stack is credited while it is still held. Costs one lookup per frame
/// of each sample and memory per distinct function, not per stack.
#[derive(Debug, Clone, Default)]
pub struct FunctionTotals {
    opts: BreakdownOptions,
    acc: StatsAcc,
}

impl FunctionTotals {
    /// Nothing counted yet; samples will be grouped and filtered by `opts`.
    pub fn new(opts: BreakdownOptions) -> FunctionTotals {
        FunctionTotals {
            opts,
            acc: StatsAcc::default(),
        }
    }

    /// The options samples are counted with.
    pub fn options(&self) -> &BreakdownOptions {
        &self.opts
    }

    /// Counts one sample, whose stack `tables` holds.
    #[inline]
    pub fn add(&mut self, tables: &Tables, s: &Sample) {
        self.acc
            .add(tables, &self.opts, &s.key(), Count::one(s.weight_ns));
    }

    /// Everything counted, as a breakdown whose interval is empty.
    pub fn breakdown(&self) -> Breakdown {
        let (cumulative, cumulative_total) = self.acc.clone().sorted();
        Breakdown {
            interval: Vec::new(),
            interval_total: Count::default(),
            cumulative,
            cumulative_total,
        }
    }
}

/// What tells one [`FrameStat`] from another.
pub(crate) type StatKey = (StrId, StrId, Option<i32>, FrameKind, Option<StrId>);

/// The key of frame `f`'s stat: by function, its line is left out.
pub(crate) fn stat_key(f: &Frame, by_function: bool) -> StatKey {
    let line = if by_function { None } else { f.line };
    (f.function, f.filename, line, f.kind, f.module)
}

/// Sorts stats as a [`Breakdown`]'s: by total weight, then own weight, then total samples,
/// descending, ties broken by name ids so that the order is stable.
pub(crate) fn sort_stats(stats: &mut [FrameStat]) {
    stats.sort_by(|a, b| {
        b.total
            .weight_ns
            .cmp(&a.total.weight_ns)
            .then(b.own.weight_ns.cmp(&a.own.weight_ns))
            .then(b.total.samples.cmp(&a.total.samples))
            .then((a.function, a.filename, a.line).cmp(&(b.function, b.filename, b.line)))
    });
}

/// `frames` without the innermost frames a view leaves out: `<GC>` under `hide_gc`, `<raise
/// T>` under `hide_exceptions` (they are only ever the innermost frames, `<GC>` on top).
pub(crate) fn visible_frames<'a>(
    tables: &Tables,
    mut frames: &'a [FrameId],
    hide_gc: bool,
    hide_exceptions: bool,
) -> &'a [FrameId] {
    while let Some((last, below)) = frames.split_last() {
        let hidden = tables.frame(*last).is_some_and(|f| match f.kind {
            FrameKind::Interpreter => hide_gc,
            FrameKind::Exception => hide_exceptions,
            FrameKind::Python | FrameKind::Native | FrameKind::Kernel | FrameKind::Task => false,
        });
        if !hidden {
            break;
        }
        frames = below;
    }
    frames
}

fn stat_index(
    fid: FrameId,
    tables: &Tables,
    by_function: bool,
    index: &mut HashMap<StatKey, usize, FxBuild>,
    stats: &mut Vec<FrameStat>,
) -> Option<usize> {
    let f = tables.frame(fid)?;
    let key = stat_key(f, by_function);
    Some(*index.entry(key).or_insert_with(|| {
        stats.push(FrameStat {
            function: f.function,
            filename: f.filename,
            line: key.2,
            kind: f.kind,
            module: f.module,
            own: Count::default(),
            total: Count::default(),
        });
        stats.len() - 1
    }))
}
