//! A fold against the counts per stack it replaces, on the same samples: every grouping, thread
//! choice, filter and frame hiding gives the same breakdown, whether or not the tables forgot
//! stacks between drains.

use super::*;
use crate::counts::SampleFilter;
use crate::intern::{FrameKey, FrameKind, ThreadKey, STACK_BYTES};
use crate::pipeline::{pipeline_live, Aggregator};

use crate::test_threads::{MAIN, WORKER};

/// A deterministic stream of samples (xorshift), with recursion, a function on two lines, one
/// line under two frame ids, a native frame without a line (its by-line and by-function keys are the same), `<raise T>`
/// and `<GC>` frames on top, two threads and every flag combination.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn sample(&mut self) -> (ThreadKey<'static>, Vec<FrameKey<'static>>, SampleFlags, u64) {
        const NAMES: [&str; 6] = ["main", "a", "b", "c", "d", "e"];
        let r = self.next();
        let thread = if r & 1 == 0 { MAIN } else { WORKER };
        let flags = SampleFlags(((r >> 1) & 7) as u8);
        let depth = 1 + (r >> 4) % 7;
        let mut frames = vec![FrameKey::python("main", "app.py", Some(1))];
        for _ in 1..depth {
            let x = self.next();
            let name = NAMES[(x % 6) as usize];
            // Two frame ids of one line: the same key in a breakdown.
            let first_line = (x >> 12).is_multiple_of(3).then_some(9);
            frames.push(
                FrameKey::python(name, "app.py", Some(((x >> 8) % 2) as i32 + 10))
                    .with_first_line(first_line),
            );
        }
        if (r >> 8).is_multiple_of(5) {
            frames.push(FrameKey {
                function: "memcpy",
                filename: "",
                line: None,
                kind: FrameKind::Native,
                module: Some("libc.so.6"),
                first_line: None,
            });
        }
        if (r >> 12).is_multiple_of(4) {
            frames.push(FrameKey::exception("<raise ValueError>"));
        }
        if (r >> 16).is_multiple_of(6) {
            frames.push(FrameKey::gc());
        }
        (thread, frames, flags, 1 + (r >> 20) % 3)
    }
}

/// Every breakdown option a view can ask for, with `hide_gc` as given.
fn all_options(hide_gc: bool) -> Vec<BreakdownOptions> {
    let mut v = Vec::new();
    for by_function in [false, true] {
        for os_tid in [None, Some(100), Some(101), Some(7)] {
            for bits in 0..8u8 {
                v.push(BreakdownOptions {
                    by_function,
                    os_tid,
                    filter: SampleFilter {
                        include_idle: bits & 1 != 0,
                        gil_only: bits & 2 != 0,
                        exception_only: bits & 4 != 0,
                    },
                    hide_gc,
                    hide_exceptions: bits & 4 == 0,
                });
            }
        }
    }
    v
}

type Named = (String, String, Option<i32>, Option<String>, Count, Count);

fn named(stats: &[FrameStat], t: &Tables) -> Vec<Named> {
    let mut v: Vec<Named> = stats
        .iter()
        .map(|s| {
            (
                t.str(s.function).to_string(),
                t.str(s.filename).to_string(),
                s.line,
                s.module.map(|m| t.str(m).to_string()),
                s.own,
                s.total,
            )
        })
        .collect();
    v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    v
}

/// `n` samples through a live pipeline whose sampler keeps about `stacks` stacks a generation
/// (collected after every sample), folded as drained into two folds (samples alternately),
/// merged; and the same samples counted per stack.
fn fold_and_count(n: u64, stacks: usize, hide_gc: bool) -> (FrameFold, Tables, Aggregator, bool) {
    let (mut sampler, mut agg) = pipeline_live(64, stacks * (STACK_BYTES + 4 * 10));
    let mut reference = Aggregator::new();
    let mut folds = [FrameFold::new(hide_gc), FrameFold::new(hide_gc)];
    let mut stream = Stream(0x9e37_79b9_7f4a_7c15);
    let mut folded = 0u64;
    for i in 0..n {
        let (thread, frames, flags, w) = stream.sample();
        assert!(sampler.record(&thread, &frames, flags, i, w).unwrap());
        reference.record(&thread, &frames, flags, i, w).unwrap();
        sampler.collect_stacks();
        if i % 16 == 15 || i + 1 == n {
            let d = agg.drain().unwrap();
            for s in d.samples {
                assert!(d.tables.holds_stack(s.stack));
                folds[(folded % 2) as usize].add(d.tables, s);
                folded += 1;
            }
        }
    }
    assert_eq!(folded, n);
    let [mut fold, other] = folds;
    fold.merge(&other);
    let forgot = agg.tables().first_stack().index() > 0;
    (fold, agg.tables().clone(), reference, forgot)
}

fn assert_same(fold: &FrameFold, tables: &Tables, reference: &mut Aggregator, hide_gc: bool) {
    for opts in all_options(hide_gc) {
        let (stats, total) = FrameFold::breakdown_of(&[fold], tables, &opts);
        let full = reference.breakdown(&opts);
        assert_eq!(total, full.cumulative_total, "{opts:?}");
        assert_eq!(
            named(&stats, tables),
            named(&full.cumulative, reference.tables()),
            "{opts:?}"
        );
    }
}

#[test]
fn folded_counts_equal_counts_per_stack_with_stacks_forgotten_or_not() {
    for (stacks, expect_forgotten) in [(1_000_000, false), (8, true)] {
        for hide_gc in [false, true] {
            let (fold, tables, mut reference, forgot) = fold_and_count(3000, stacks, hide_gc);
            assert_eq!(forgot, expect_forgotten, "{stacks} stacks a generation");
            assert_same(&fold, &tables, &mut reference, hide_gc);
            let samples: u64 = fold.samples().map(|(_, _, c)| c.samples).sum();
            assert_eq!(samples, 3000);
        }
    }
}

#[test]
fn a_fold_grows_with_frames_not_stacks() {
    let (small, ..) = fold_and_count(4000, 1_000_000, false);
    let (large, _, reference, _) = fold_and_count(20_000, 1_000_000, false);
    assert!(
        reference.counts().len() > 4 * small.len(),
        "the stream makes many stacks: {} keys",
        reference.counts().len()
    );
    // Per thread (2) and flag set (8): 13 lines, 6 functions, and 3 other frames by line and
    // by function. Every entry is reached early; 16 000 more samples add none.
    assert_eq!(large.len(), small.len());
    assert_eq!(large.len(), 2 * 8 * (13 + 6 + 2 * 3));
}

#[test]
fn an_empty_fold_breaks_down_to_nothing() {
    let fold = FrameFold::new(false);
    let (stats, total) =
        FrameFold::breakdown_of(&[&fold], &Tables::default(), &BreakdownOptions::default());
    assert!(stats.is_empty() && total.is_zero() && fold.is_empty());
}

#[test]
fn a_cleared_fold_counts_afresh() {
    let (mut fold, ..) = fold_and_count(2000, 1_000_000, false);
    let (other, tables, mut reference, _) = fold_and_count(1000, 8, false);
    fold.clear();
    assert!(fold.is_empty());
    assert_eq!(fold.len(), 0, "no entries left");
    fold.merge(&other);
    assert_same(&fold, &tables, &mut reference, false);
}
