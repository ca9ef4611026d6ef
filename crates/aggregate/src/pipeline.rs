//! From the sampler thread to the aggregator thread.
//!
//! # Design
//!
//! The sampler thread interns directly ([`SamplerSide`] owns the [`Interner`]). That lets the
//! reader cache a [`FrameId`] per code object and line, so a steady program costs a handful of
//! hash lookups per sample and never copies names. What crosses threads is then small:
//!
//! * samples, as 32-byte [`Sample`] records, through a bounded lock-free queue
//!   (`crossbeam_queue::ArrayQueue`: a fixed ring allocated once, so pushing never allocates and
//!   never blocks). When it is full the sample is counted in [`SamplerSide::dropped`] and
//!   discarded; the count reaches the profile's metadata, so a drop is never silent;
//! * new table entries ([`Def`]), through an unbounded `std::sync::mpsc` channel. Sending on it
//!   never blocks either; it allocates, but only when a frame, stack or thread is seen for the
//!   first time, so that cost is bounded by the number of distinct stacks. Definitions are sent
//!   before the first sample that uses them, and the aggregator applies every pending
//!   definition after popping a batch, so a sample's ids are always defined by the time
//!   anything looks them up.
//!
//! The aggregator thread sleeps between drains for as long as it likes (a quarter or half
//! second: at ordinary rates every wake-up of any strobe thread costs more CPU than the sample
//! itself). A [`Doorbell`] wakes it early: the sampler rings it when the queue is a quarter
//! full, when it has news for the aggregator's thread ([`SamplerSide::ring`]) and when it
//! ends (its side is dropped). A ring is one `unpark` at most per drain: the bell stays rung
//! until the aggregator drains.
//!
//! The aggregator thread keeps a mirror of the tables and the [`Counts`]; it is the one place
//! snapshots and profiles are taken from, and the place a raw-file writer is fed from
//! ([`Drained`]). The sampler's own stack table is bounded ([`SAMPLER_STACK_BUDGET`]; it only
//! needs the stacks it sees again soon, to find their ids), so it may forget a stack and define
//! it again under a new id: the aggregator interns the stacks it receives by content and
//! translates the sampler's ids into its own as it drains, so it holds each distinct stack once
//! and its ids are those of distinct stacks.
//!
//! # Streaming: bounded stack tables
//!
//! A profile needs every distinct stack until the end, but a recording streamed to a file
//! (`record --format raw`) does not: [`pipeline_streamed`] gives the sampler's interner the
//! stack budget of the whole pipeline ([`Interner::set_stack_budget`]) and keeps no counts per
//! stack on the aggregator's side, only the total and [`FunctionTotals`] for the summary; its
//! mirror is a copy of the sampler's tables, ids untranslated (what a raw file needs). The
//! sampler calls [`SamplerSide::collect_stacks`] between rounds; stacks it forgets are
//! forgotten by the mirror too ([`Def::ForgetStacks`]; a [`pipeline()`]'s aggregator forgets
//! only the translations), but only once every sample pushed before the news has been drained
//! and handed out: each definition is sent with the number of samples pushed before it,
//! and the aggregator applies a forget at the start of the first drain after it has popped that
//! many. So the mirror holds every stack a drained sample names, until the next drain.
//!
//! A live view (`strobe top`) takes the same bounded tables without the summary
//! ([`pipeline_live`]): it folds each sample per frame as it drains it
//! ([`FrameFold`](crate::FrameFold)), while the stack is still held.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::Thread;

use crossbeam_queue::ArrayQueue;

use std::collections::VecDeque;

use crate::counts::{Breakdown, BreakdownOptions, Counts, FunctionTotals, Sample, SampleFlags};
use crate::intern::{
    CapacityError, Def, FrameId, FrameKey, Interner, Marks, StackId, Tables, ThreadId, ThreadKey,
};
use crate::profile::{Metadata, Profile, ProfileOptions};

/// Creates a connected sampler/aggregator pair whose queue holds `capacity` samples
/// (at least 1). A second of samples at the maximum rate is a comfortable size.
pub fn pipeline(capacity: usize) -> (SamplerSide, AggregatorSide) {
    pipeline_with(capacity, Some(SAMPLER_STACK_BUDGET), None, false)
}

/// The stack budget of the sampler's interner in a [`pipeline()`]: the aggregator keeps every
/// stack, so the sampler need not (see the module documentation).
pub const SAMPLER_STACK_BUDGET: usize = 2 << 20;

/// A pipeline for a recording streamed as it is taken (see the module documentation): the
/// sampler's stack table holds about `stack_budget` bytes of stacks, and the aggregator counts
/// only the total and the functions' own and total time by `summary` (its
/// [`AggregatorSide::function_breakdown`]), so that memory does not grow with distinct stacks.
pub fn pipeline_streamed(
    capacity: usize,
    stack_budget: usize,
    summary: BreakdownOptions,
) -> (SamplerSide, AggregatorSide) {
    pipeline_with(
        capacity,
        Some(stack_budget),
        Some(FunctionTotals::new(summary)),
        true,
    )
}

/// A pipeline for a live view that folds each sample as it drains it (`strobe top`, with
/// [`FrameFold`](crate::FrameFold)): bounded stack tables as [`pipeline_streamed`]'s (the
/// sampler's stack table holds about `stack_budget` bytes of stacks, and the mirror forgets the
/// stacks it forgets once the samples naming them were drained), and no counts per stack, only
/// the total. Like a streamed pipeline's, it cannot make a [`Profile`].
pub fn pipeline_live(capacity: usize, stack_budget: usize) -> (SamplerSide, AggregatorSide) {
    let (sampler, mut agg) = pipeline_with(capacity, Some(stack_budget), None, true);
    agg.counts.keep_per_key(false);
    (sampler, agg)
}

fn pipeline_with(
    capacity: usize,
    stack_budget: Option<usize>,
    totals: Option<FunctionTotals>,
    forget: bool,
) -> (SamplerSide, AggregatorSide) {
    let mut interner = Interner::new();
    interner.set_stack_budget(stack_budget);
    let mut counts = Counts::new();
    counts.keep_per_key(totals.is_none());
    let mirror = if forget {
        Mirror::Same(Tables::default())
    } else {
        Mirror::Canonical {
            interner: Box::default(),
            base: 0,
            remap: VecDeque::new(),
        }
    };
    let queue = Arc::new(ArrayQueue::new(capacity.max(1)));
    let (tx, rx) = mpsc::channel();
    let dropped = Arc::new(AtomicU64::new(0));
    let bell = Arc::new(Doorbell::default());
    (
        SamplerSide {
            interner,
            pushed: 0,
            bell: Arc::clone(&bell),
            mark: (capacity / 4).max(1),
            queue: Arc::clone(&queue),
            defs: tx,
            published: Marks::default(),
            dropped: Arc::clone(&dropped),
            frames: Vec::new(),
        },
        AggregatorSide {
            mirror,
            counts,
            totals,
            popped: 0,
            forgets: VecDeque::new(),
            queue,
            defs: rx,
            dropped,
            batch: Vec::new(),
            sampler_gone: false,
            bell,
        },
    )
}

/// Wakes the aggregator's thread early (see the module documentation).
#[derive(Debug, Default)]
pub struct Doorbell {
    /// The thread to unpark; none until the aggregator says which ([`AggregatorSide::wake`]).
    thread: Mutex<Option<Thread>>,
    /// Rung since the aggregator last drained.
    rung: AtomicBool,
    /// The sampler's side was dropped: nothing more will be sent.
    ended: AtomicBool,
}

impl Doorbell {
    /// Unparks the aggregator's thread unless the bell was rung since its last drain.
    pub fn ring(&self) {
        if !self.rung.swap(true, Ordering::AcqRel) {
            self.wake();
        }
    }

    /// Unparks the aggregator's thread, rung or not.
    fn wake(&self) {
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            t.unpark();
        }
    }
}

/// The sampler thread's end. See the module documentation.
#[derive(Debug)]
pub struct SamplerSide {
    interner: Interner,
    bell: Arc<Doorbell>,
    /// Queue length at which the bell is rung.
    mark: usize,
    queue: Arc<ArrayQueue<Sample>>,
    /// Definitions, each with the number of samples pushed before it.
    defs: Sender<(u64, Def)>,
    /// Samples pushed (not dropped) so far.
    pushed: u64,
    published: Marks,
    dropped: Arc<AtomicU64>,
    frames: Vec<FrameId>,
}

impl SamplerSide {
    /// The interner, to intern frames, threads and stacks before [`SamplerSide::push`].
    pub fn interner(&mut self) -> &mut Interner {
        &mut self.interner
    }

    /// Queues an interned sample. Returns `false` if the queue was full and the sample was
    /// dropped (and counted).
    #[inline]
    pub fn push(&mut self, sample: Sample) -> bool {
        if Marks::of(self.interner.tables()) != self.published {
            let tx = &self.defs;
            let pushed = self.pushed;
            // A send only fails once the aggregator is gone; its samples are then lost anyway.
            self.interner
                .definitions_since(&mut self.published, |d| drop(tx.send((pushed, d))));
        }
        match self.queue.push(sample) {
            Ok(()) => {
                self.pushed += 1;
                if self.queue.len() >= self.mark {
                    self.bell.ring();
                }
                true
            }
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Interns and queues one sample given as borrowed walker output, outermost frame first.
    /// Returns `Ok(false)` if the sample was dropped because the queue was full.
    pub fn record(
        &mut self,
        thread: &ThreadKey<'_>,
        frames: &[FrameKey<'_>],
        flags: SampleFlags,
        timestamp_ns: u64,
        weight_ns: u64,
    ) -> Result<bool, CapacityError> {
        let (thread, stack) = intern_sample(&mut self.interner, &mut self.frames, thread, frames)?;
        let sample = Sample {
            stack,
            thread,
            flags,
            timestamp_ns,
            weight_ns,
        };
        Ok(self.push(sample))
    }

    /// Samples dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Changes the stack budget of the sampler's interner ([`Interner::set_stack_budget`]).
    /// Of a [`pipeline()`], whose aggregator keeps every stack, any budget gives the same
    /// profile (tests use tiny ones); of a [`pipeline_streamed`] it is what the mirror holds.
    pub fn set_stack_budget(&mut self, bytes: Option<usize>) {
        self.interner.set_stack_budget(bytes);
    }

    /// Lets the interner forget stacks not seen lately, if it has a budget and used its
    /// current half ([`Interner::collect_stacks`]); the mirror follows after the samples pushed
    /// so far are drained. Call it where every stack id interned so far has been pushed or
    /// given up (between sampling rounds). Returns whether a new generation was started.
    pub fn collect_stacks(&mut self) -> bool {
        self.interner.collect_stacks()
    }

    /// Wakes the aggregator's thread (once until it drains): something it reports changed.
    pub fn ring(&self) {
        self.bell.ring();
    }
}

impl Drop for SamplerSide {
    /// The end of sampling is news the aggregator should not sleep through.
    fn drop(&mut self) {
        // Everything this side sent is queued already (definitions before their samples).
        self.bell.ended.store(true, Ordering::Release);
        self.bell.wake();
    }
}

/// The aggregator thread's end. See the module documentation.
#[derive(Debug)]
pub struct AggregatorSide {
    mirror: Mirror,
    counts: Counts,
    /// Streaming: the functions' times, counted sample by sample (no counts per stack).
    totals: Option<FunctionTotals>,
    /// Samples popped so far.
    popped: u64,
    /// Forgets received, each with the number of samples pushed before it was sent.
    forgets: VecDeque<(u64, StackId)>,
    queue: Arc<ArrayQueue<Sample>>,
    defs: Receiver<(u64, Def)>,
    dropped: Arc<AtomicU64>,
    batch: Vec<Sample>,
    sampler_gone: bool,
    bell: Arc<Doorbell>,
}

/// The result of [`AggregatorSide::drain`]: the samples just counted, and the tables that
/// define their ids (e.g. for a raw-file writer).
#[derive(Debug)]
pub struct Drained<'a> {
    /// The samples popped by this call, in queue order.
    pub samples: &'a [Sample],
    /// Tables defining every id in `samples`.
    pub tables: &'a Tables,
}

impl AggregatorSide {
    /// Pops what is queued now (at most one queue's worth, so a fast sampler cannot starve the
    /// caller), applies pending definitions and counts the samples.
    pub fn drain(&mut self) -> Result<Drained<'_>, CapacityError> {
        // Every sample pushed before these forgets was handed out by an earlier drain.
        while let Some(&(after, below)) = self.forgets.front() {
            if after > self.popped {
                break;
            }
            self.mirror.forget_stacks_below(below);
            self.forgets.pop_front();
        }
        // Before the pops: a push after them rings again.
        self.bell.rung.store(false, Ordering::Release);
        self.batch.clear();
        let limit = self.queue.capacity();
        while self.batch.len() < limit {
            match self.queue.pop() {
                Some(s) => self.batch.push(s),
                None => break,
            }
        }
        self.popped += self.batch.len() as u64;
        // After the pops: every definition a popped sample needs was sent before it was pushed.
        self.apply_definitions()?;
        for s in &mut self.batch {
            self.mirror.map(s);
            self.counts.add(s);
            if let Some(t) = &mut self.totals {
                t.add(self.mirror.tables(), s);
            }
        }
        Ok(Drained {
            samples: &self.batch,
            tables: self.mirror.tables(),
        })
    }

    fn apply_definitions(&mut self) -> Result<(), CapacityError> {
        loop {
            match self.defs.try_recv() {
                Ok((after, Def::ForgetStacks(below))) => self.forgets.push_back((after, below)),
                Ok((_, d)) => self.mirror.apply(d)?,
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => {
                    self.sampler_gone = true;
                    return Ok(());
                }
            }
        }
    }

    /// True once the sampler side was dropped and everything it sent has been drained.
    pub fn finished(&self) -> bool {
        self.sampler_gone && self.queue.is_empty()
    }

    /// True once the sampler side was dropped: sampling has ended, and what it sent is queued.
    pub fn sampler_gone(&self) -> bool {
        self.sampler_gone || self.bell.ended.load(Ordering::Acquire)
    }

    /// The calling thread is the one the sampler's [`Doorbell`] unparks: it may then sleep
    /// between drains with `std::thread::park_timeout` as long as it likes.
    pub fn wake_this_thread(&self) {
        *self
            .bell
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(std::thread::current());
    }

    /// The bell, for others with news for this thread (a signal handler's thread).
    pub fn doorbell(&self) -> Arc<Doorbell> {
        Arc::clone(&self.bell)
    }

    /// Also keep the time-ordered samples (for the Chrome trace format).
    pub fn keep_timeline(&mut self, keep: bool) {
        self.counts.keep_timeline(keep);
    }

    /// The mirrored tables.
    pub fn tables(&self) -> &Tables {
        self.mirror.tables()
    }

    /// The counts.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The counts, to take a [`Counts::breakdown`] of (which starts a new interval), with the
    /// tables their ids refer to.
    pub fn counts_and_tables(&mut self) -> (&mut Counts, &Tables) {
        (&mut self.counts, self.mirror.tables())
    }

    /// Samples dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A snapshot for `top`; starts a new interval.
    pub fn breakdown(&mut self, opts: &BreakdownOptions) -> Breakdown {
        self.counts.breakdown(self.mirror.tables(), opts)
    }

    /// The functions' own and total time so far (cumulative): of a streamed pipeline, as
    /// counted by the options it was made with ([`pipeline_streamed`]); otherwise from the
    /// counts by `opts` (a new interval starts, as for [`AggregatorSide::breakdown`]).
    pub fn function_breakdown(&mut self, opts: &BreakdownOptions) -> Breakdown {
        match &self.totals {
            Some(t) => t.breakdown(),
            None => self.counts.breakdown(self.mirror.tables(), opts),
        }
    }

    /// Whether this is a streamed or live pipeline ([`pipeline_streamed`], [`pipeline_live`]):
    /// it keeps no counts per stack and its tables forget stacks, so it cannot make a
    /// [`Profile`].
    pub fn streamed(&self) -> bool {
        matches!(self.mirror, Mirror::Same(_))
    }

    /// Also keep counts since the previous breakdown (the default). A recording that never
    /// asks for one saves half the memory its counts take.
    pub fn keep_interval(&mut self, keep: bool) {
        self.counts.keep_interval(keep);
    }

    /// The profile so far. `meta.dropped` is raised to at least the queue's drop count.
    pub fn profile(
        &self,
        mut meta: Metadata,
        options: ProfileOptions,
    ) -> Result<Profile, CapacityError> {
        meta.dropped = meta.dropped.max(self.dropped());
        Profile::from_counts(meta, self.mirror.tables(), &self.counts, options)
    }
}

/// The aggregator's copy of the sampler's tables.
#[derive(Debug)]
enum Mirror {
    /// Streamed: the sampler's tables as they are, forgetting the stacks it forgets, so that
    /// its ids need no translation (a raw writer writes them as they are).
    Same(Tables),
    /// Every stack kept: the sampler's strings, frames and threads as they are (it never
    /// forgets those, nor defines one twice), its stacks interned again by content, since it
    /// may define one again under a new id. `remap[i]` is the id here of the sampler's stack
    /// `base + i`, for the sampler's stacks samples may still name.
    Canonical {
        interner: Box<Interner>,
        base: usize,
        remap: VecDeque<StackId>,
    },
}

impl Mirror {
    fn tables(&self) -> &Tables {
        match self {
            Mirror::Same(t) => t,
            Mirror::Canonical { interner, .. } => interner.tables(),
        }
    }

    /// Applies a definition other than [`Def::ForgetStacks`].
    fn apply(&mut self, def: Def) -> Result<(), CapacityError> {
        let (interner, remap) = match self {
            Mirror::Same(t) => return t.apply(def),
            Mirror::Canonical {
                interner, remap, ..
            } => (interner, remap),
        };
        match def {
            Def::Str(s) => drop(interner.intern_str(&s)?),
            Def::Frame(f) => drop(interner.intern_frame_ids(f)?),
            Def::Thread(t) => drop(interner.intern_thread_info(t)?),
            Def::Stack(frames) => remap.push_back(interner.intern_stack(&frames)?),
            Def::ForgetStacks(below) => self.forget_stacks_below(below),
        }
        Ok(())
    }

    fn forget_stacks_below(&mut self, below: StackId) {
        match self {
            Mirror::Same(t) => t.forget_stacks_below(below),
            Mirror::Canonical { base, remap, .. } => {
                let k = below.index().saturating_sub(*base).min(remap.len());
                remap.drain(..k);
                *base += k;
            }
        }
    }

    /// Gives `s` this mirror's id of its stack.
    #[inline]
    fn map(&self, s: &mut Sample) {
        if let Mirror::Canonical { base, remap, .. } = self {
            s.stack = s
                .stack
                .index()
                .checked_sub(*base)
                .and_then(|i| remap.get(i).copied())
                // Never: the sampler defines a stack before a sample names it.
                .unwrap_or(StackId(u32::MAX));
        }
    }
}

/// Single-threaded interning and counting, for converting recordings, tests and benchmarks.
#[derive(Debug, Default, Clone)]
pub struct Aggregator {
    interner: Interner,
    counts: Counts,
    frames: Vec<FrameId>,
}

impl Aggregator {
    /// An empty aggregator.
    pub fn new() -> Aggregator {
        Aggregator::default()
    }

    /// The interner.
    pub fn interner(&mut self) -> &mut Interner {
        &mut self.interner
    }

    /// The tables.
    pub fn tables(&self) -> &Tables {
        self.interner.tables()
    }

    /// The counts.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Mutable counts (e.g. to keep the timeline).
    pub fn counts_mut(&mut self) -> &mut Counts {
        &mut self.counts
    }

    /// Counts an interned sample.
    #[inline]
    pub fn add(&mut self, s: &Sample) {
        self.counts.add(s);
    }

    /// Interns and counts one sample, outermost frame first.
    pub fn record(
        &mut self,
        thread: &ThreadKey<'_>,
        frames: &[FrameKey<'_>],
        flags: SampleFlags,
        timestamp_ns: u64,
        weight_ns: u64,
    ) -> Result<Sample, CapacityError> {
        let (thread, stack) = intern_sample(&mut self.interner, &mut self.frames, thread, frames)?;
        let s = Sample {
            stack,
            thread,
            flags,
            timestamp_ns,
            weight_ns,
        };
        self.counts.add(&s);
        Ok(s)
    }

    /// A snapshot for `top`; starts a new interval.
    pub fn breakdown(&mut self, opts: &BreakdownOptions) -> Breakdown {
        self.counts.breakdown(self.interner.tables(), opts)
    }

    /// The profile so far.
    pub fn profile(
        &self,
        meta: Metadata,
        options: ProfileOptions,
    ) -> Result<Profile, CapacityError> {
        Profile::from_counts(meta, self.interner.tables(), &self.counts, options)
    }
}

/// Interns a sample's thread and its stack (outermost frame first), collecting the frame ids in
/// `scratch` (reused between samples, so that nothing is allocated once it has grown).
fn intern_sample(
    interner: &mut Interner,
    scratch: &mut Vec<FrameId>,
    thread: &ThreadKey<'_>,
    frames: &[FrameKey<'_>],
) -> Result<(ThreadId, StackId), CapacityError> {
    let thread = interner.intern_thread(thread)?;
    scratch.clear();
    for f in frames {
        scratch.push(interner.intern_frame(f)?);
    }
    Ok((thread, interner.intern_stack(scratch)?))
}
