//! [`FrameFold`]: samples counted per frame instead of per stack, for a live view that runs for
//! hours on a program making a new stack nearly every sample.
//!
//! [`Counts`](crate::Counts) keeps a count per (thread, stack, flags), so its memory grows with
//! distinct stacks; its [`Counts::breakdown`](crate::Counts::breakdown) folds them per frame
//! only when asked. A `FrameFold` folds each sample as it comes, while its stack is still in
//! the tables (which may forget it afterwards), into own and total counts per (thread, flags,
//! function or line): memory grows with distinct frames, threads and flag combinations, never
//! with stacks. Every answer a breakdown gives for any thread choice, idle/GIL/exception filter
//! and grouping is kept, so the two give the same numbers for the same samples:
//!
//! * each frame is counted twice, by line and by function (a function's total is not the sum of
//!   its lines' totals: a sample through two lines of one function counts once);
//! * own and total are kept both with `<raise T>` frames shown and left out (every mode but
//!   `--mode exception` leaves them out, which moves the own time to the frame below); whether
//!   `<GC>` frames are left out is fixed when the fold is made;
//! * a total counts a sample once however often the frame recurs in its stack.

use hashbrown::HashMap;

use crate::counts::{
    sort_stats, stat_key, visible_frames, BreakdownOptions, Count, FrameStat, Sample, SampleFlags,
    StatKey,
};
use crate::hash::FxBuild;
use crate::intern::{FrameId, Tables, ThreadId};

/// What one entry of a fold counts: a frame (by line or by function) of one thread, in samples
/// with the same flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FoldKey {
    thread: ThreadId,
    flags: SampleFlags,
    stat: StatKey,
    by_function: bool,
}

/// Own and total counts, `[0]` with `<raise T>` frames shown, `[1]` with them left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FoldCounts {
    own: [Count; 2],
    total: [Count; 2],
}

/// Samples folded per frame. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct FrameFold {
    hide_gc: bool,
    index: HashMap<FoldKey, usize, FxBuild>,
    entries: Vec<(FoldKey, FoldCounts)>,
    /// `marks[i][v] == generation`: entry `i` was credited for the current sample in variant
    /// `v` (recursion must not count a sample twice in a total).
    marks: Vec<[u32; 2]>,
    generation: u32,
    /// Every sample, by thread and flags (empty stacks too).
    samples: HashMap<(ThreadId, SampleFlags), Count, FxBuild>,
}

impl FrameFold {
    /// An empty fold; `hide_gc` leaves `<GC>` frames out (as [`BreakdownOptions::hide_gc`]) in
    /// every answer it gives.
    pub fn new(hide_gc: bool) -> FrameFold {
        FrameFold {
            hide_gc,
            ..FrameFold::default()
        }
    }

    /// Counts one sample, whose stack `tables` holds (a stack it no longer holds counts as
    /// empty).
    #[inline]
    pub fn add(&mut self, tables: &Tables, s: &Sample) {
        let stack = if tables.holds_stack(s.stack) {
            tables.stack(s.stack)
        } else {
            &[]
        };
        self.add_stack(tables, s.thread, s.flags, stack, Count::one(s.weight_ns));
    }

    /// Counts `c` of stack `frames` (outermost first) of `thread` with `flags`.
    pub fn add_stack(
        &mut self,
        tables: &Tables,
        thread: ThreadId,
        flags: SampleFlags,
        frames: &[FrameId],
        c: Count,
    ) {
        self.samples.entry((thread, flags)).or_default().add(c);
        let shown = visible_frames(tables, frames, self.hide_gc, false).len();
        let hidden = visible_frames(tables, frames, self.hide_gc, true).len();
        let lens = [shown, hidden];
        self.generation = self.generation.wrapping_add(1);
        for (depth, fid) in frames.iter().take(shown).enumerate() {
            let Some(f) = tables.frame(*fid) else {
                continue;
            };
            for by_function in [false, true] {
                let key = FoldKey {
                    thread,
                    flags,
                    stat: stat_key(f, by_function),
                    by_function,
                };
                let i = self.entry(key);
                self.credit(i, depth, lens, c);
            }
        }
    }

    /// The index of `key`'s entry, made if new.
    fn entry(&mut self, key: FoldKey) -> usize {
        let entries = &mut self.entries;
        let i = *self.index.entry(key).or_insert_with(|| {
            entries.push((key, FoldCounts::default()));
            entries.len() - 1
        });
        if self.marks.len() < self.entries.len() {
            self.marks.resize(self.entries.len(), [0; 2]);
        }
        i
    }

    /// Credits `c` to entry `i`, a frame at `depth` of a stack whose visible frames number
    /// `lens[v]` in each variant.
    fn credit(&mut self, i: usize, depth: usize, lens: [usize; 2], c: Count) {
        let (Some(mark), Some((_, counts))) = (self.marks.get_mut(i), self.entries.get_mut(i))
        else {
            return;
        };
        for (v, &len) in lens.iter().enumerate() {
            if depth >= len {
                continue;
            }
            if mark[v] != self.generation {
                mark[v] = self.generation;
                counts.total[v].add(c);
            }
            if depth + 1 == len {
                counts.own[v].add(c);
            }
        }
    }

    /// Adds everything `other` counted (made with the same `hide_gc`).
    pub fn merge(&mut self, other: &FrameFold) {
        for (k, c) in &other.samples {
            self.samples.entry(*k).or_default().add(*c);
        }
        for (key, c) in &other.entries {
            let i = self.entry(*key);
            if let Some((_, mine)) = self.entries.get_mut(i) {
                for v in 0..2 {
                    mine.own[v].add(c.own[v]);
                    mine.total[v].add(c.total[v]);
                }
            }
        }
    }

    /// Forgets every count and keeps the memory: a fold reused for the next interval does not
    /// grow its tables again from nothing.
    pub fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
        self.marks.clear();
        self.samples.clear();
    }

    /// Every sample counted, by thread and flags.
    pub fn samples(&self) -> impl Iterator<Item = (ThreadId, SampleFlags, Count)> + '_ {
        self.samples.iter().map(|(&(t, f), &c)| (t, f, c))
    }

    /// The own and total counts per function (`by_function`) or line of each thread and flags,
    /// with `<raise T>` frames left out or not (`hide_exceptions`).
    pub fn frames(
        &self,
        by_function: bool,
        hide_exceptions: bool,
    ) -> impl Iterator<Item = (ThreadId, SampleFlags, FrameStat)> + '_ {
        let v = usize::from(hide_exceptions);
        self.entries
            .iter()
            .filter(move |(k, c)| k.by_function == by_function && !c.total[v].is_zero())
            .map(move |(k, c)| {
                let (function, filename, line, kind, module) = k.stat;
                let stat = FrameStat {
                    function,
                    filename,
                    line,
                    kind,
                    module,
                    own: c.own[v],
                    total: c.total[v],
                };
                (k.thread, k.flags, stat)
            })
    }

    /// Per-frame own/total counts of the samples `opts` keeps, summed over `folds`, sorted as
    /// a [`Breakdown`](crate::Breakdown)'s, and their total: what
    /// [`Counts::breakdown`](crate::Counts::breakdown) gives cumulatively for the same samples
    /// (`opts.hide_gc` is the folds' own setting).
    pub fn breakdown_of(
        folds: &[&FrameFold],
        tables: &Tables,
        opts: &BreakdownOptions,
    ) -> (Vec<FrameStat>, Count) {
        let keeps = |thread: ThreadId, flags: SampleFlags| {
            opts.filter.accepts(flags)
                && opts
                    .os_tid
                    .is_none_or(|tid| tables.thread(thread).map(|t| t.os_tid) == Some(tid))
        };
        let mut total = Count::default();
        let mut index: HashMap<StatKey, usize, FxBuild> = HashMap::default();
        let mut stats: Vec<FrameStat> = Vec::new();
        for fold in folds {
            for (thread, flags, c) in fold.samples() {
                if keeps(thread, flags) {
                    total.add(c);
                }
            }
            for (thread, flags, st) in fold.frames(opts.by_function, opts.hide_exceptions) {
                if !keeps(thread, flags) {
                    continue;
                }
                let key = (st.function, st.filename, st.line, st.kind, st.module);
                let i = *index.entry(key).or_insert_with(|| {
                    stats.push(FrameStat {
                        own: Count::default(),
                        total: Count::default(),
                        ..st
                    });
                    stats.len() - 1
                });
                if let Some(s) = stats.get_mut(i) {
                    s.own.add(st.own);
                    s.total.add(st.total);
                }
            }
        }
        sort_stats(&mut stats);
        (stats, total)
    }

    /// Number of entries (frames by line and by function, per thread and flags).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(FoldKey, FoldCounts)>();
        let index = std::mem::size_of::<(FoldKey, usize)>() + 1;
        let sample = std::mem::size_of::<((ThreadId, SampleFlags), Count)>() + 1;
        self.entries.capacity() * entry
            + self.index.capacity() * index
            + self.marks.capacity() * 8
            + self.samples.capacity() * sample
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
