//! The collector on a live pipeline whose tables forget stacks, against the same samples
//! counted per stack: the table is the same whatever was forgotten, and the call tree's kept
//! stacks stay within their budget, letting the lightest go (never, sometimes, always) with
//! their time accounted.

#![allow(clippy::unwrap_used)]

use super::tree::UNKEPT_LABEL;
use super::*;
use std::time::Instant;
use strobe_aggregate::{
    pipeline_live, Aggregator, BreakdownOptions, FrameKey, SampleFlags, ThreadKey, STACK_BYTES,
};

const MAIN: ThreadKey<'static> = ThreadKey {
    os_tid: 10,
    name: Some("MainThread"),
    interpreter_id: 0,
};

/// Sample `n` of a stream of random paths through 8 functions (a new stack nearly every
/// sample, as benches/paths_target.py), `hot` on top of every fourth; weights 1 to 3.
fn path(n: u64) -> (Vec<FrameKey<'static>>, SampleFlags, u64) {
    const NAMES: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut frames = vec![FrameKey::python("main", "/app/x.py", Some(1))];
    for _ in 0..6 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        frames.push(FrameKey::python(
            NAMES[(x % 8) as usize],
            "/app/x.py",
            Some(2),
        ));
    }
    if n.is_multiple_of(4) {
        frames.push(FrameKey::python("hot", "/app/x.py", Some(3)));
    }
    let flags = if n.is_multiple_of(3) {
        SampleFlags::HOLDS_GIL
    } else {
        SampleFlags::empty()
    };
    (frames, flags, 1 + n % 3)
}

/// `n` samples of [`path`] through a live pipeline whose sampler keeps about 16 stacks a
/// generation, into a collector whose kept stacks take `budget` bytes, checked against it after
/// every drain; and the same samples counted per stack.
fn run(n: u64, budget: usize) -> (Collector, Aggregator) {
    let (mut s, agg) = pipeline_live(64, 16 * (STACK_BYTES + 4 * 8));
    let mut c = Collector::with_budget(agg, budget);
    let mut reference = Aggregator::new();
    for i in 0..n {
        let (frames, flags, w) = path(i);
        assert!(s.record(&MAIN, &frames, flags, i, w).unwrap());
        reference.record(&MAIN, &frames, flags, i, w).unwrap();
        s.collect_stacks();
        if i % 32 == 31 {
            c.pump();
            assert!(c.kept().bytes() <= budget, "{} bytes", c.kept().bytes());
        }
    }
    c.pump();
    assert!(c.kept().bytes() <= budget);
    (c, reference)
}

fn hot_query() -> Query {
    Query {
        by_function: true,
        focus: Some(FrameSel::python("hot", "/app/x.py", None)),
        ..Default::default()
    }
}

#[test]
fn the_table_is_exact_whatever_the_tables_forgot() {
    let (mut c, mut reference) = run(4000, KEPT_STACK_BYTES);
    let v = c.view(&hot_query(), Instant::now());
    let full = reference.breakdown(&BreakdownOptions {
        by_function: true,
        ..Default::default()
    });
    let t = reference.tables();
    assert_eq!(v.cumulative_total, full.cumulative_total);
    assert_eq!(v.rows.len(), full.cumulative.len());
    for st in &full.cumulative {
        let r = v
            .rows
            .iter()
            .find(|r| &*r.key.function == t.str(st.function))
            .unwrap();
        assert_eq!((r.cumulative_own, r.cumulative_total), (st.own, st.total));
    }
}

#[test]
fn kept_stacks_never_let_go_under_a_large_budget() {
    let (mut c, _) = run(4000, KEPT_STACK_BYTES);
    assert_eq!(c.kept().let_go(), Count::default());
    let tree = c.view(&hot_query(), Instant::now()).tree.unwrap();
    assert_eq!(tree.total.samples, 1000);
    assert!(tree.unkept.is_zero());
    assert!(tree.callers.iter().all(|l| l.label != UNKEPT_LABEL));
    assert_eq!(with_hot(c.kept()).samples, 1000);
}

#[test]
fn a_sample_whose_stack_is_kept_copies_no_frames() {
    let (mut s, agg) = pipeline_live(64, 1 << 20);
    let mut c = Collector::with_budget(agg, KEPT_STACK_BYTES);
    for i in 0..1000 {
        let (frames, flags, w) = path(i % 5);
        assert!(s.record(&MAIN, &frames, flags, i, w).unwrap());
        if i % 32 == 31 {
            c.pump();
        }
    }
    c.pump();
    // Five stacks, each copied once when first seen, each counted 200 times.
    assert_eq!(c.kept().len(), 5);
    assert_eq!(c.kept().copies(), 5);
    let mut weights: Vec<u64> = c.kept().iter().map(|(.., n)| n.weight_ns).collect();
    weights.sort_unstable();
    assert_eq!(weights, [200, 200, 400, 400, 600]);
    assert!(c.kept().iter().all(|(.., n)| n.samples == 200));
}

/// The samples of the kept stacks with `hot` on them.
fn with_hot(kept: &KeptStacks) -> Count {
    let mut n = Count::default();
    for (_, _, stack, c) in kept.iter() {
        // Only stacks with `hot` on top have 8 frames.
        if stack.len() == 8 {
            n.add(c);
        }
    }
    n
}

#[test]
fn kept_stacks_let_the_lightest_go_within_a_small_budget() {
    let budget = 64 * 1024;
    let (mut c, reference) = run(20_000, budget);
    let kept: Count = c.kept().iter().fold(Count::default(), |mut a, (.., n)| {
        a.add(n);
        a
    });
    let let_go = c.kept().let_go();
    assert!(let_go.samples > 0, "the budget was passed");
    assert!(c.kept().len() > 100, "{} kept", c.kept().len());
    // Each stack was copied once each time it came to be kept: it is kept now, or was let go.
    assert_eq!(
        c.kept().copies(),
        c.kept().len() as u64 + c.kept().let_go_stacks()
    );
    // Every sample is either in a kept stack or accounted as let go.
    assert_eq!(kept.samples + let_go.samples, 20_000);
    assert_eq!(
        kept.weight_ns + let_go.weight_ns,
        reference.counts().total().weight_ns
    );

    let tree = c.view(&hot_query(), Instant::now()).tree.unwrap();
    assert_eq!(tree.total.samples, 5000, "the total is the table's");
    assert!(!tree.unkept.is_zero());
    for lines in [&tree.callers, &tree.callees] {
        assert_eq!(lines[0].count, tree.total);
        assert_eq!(lines[1].label, UNKEPT_LABEL);
        assert_eq!(lines[1].count, tree.unkept);
    }
    // The kept paths and the unkept line add up to the total.
    let kept_hot = with_hot(c.kept());
    assert!(kept_hot.samples > 0);
    assert_eq!(kept_hot.samples + tree.unkept.samples, 5000);
    assert_eq!(
        kept_hot.weight_ns + tree.unkept.weight_ns,
        tree.total.weight_ns
    );
}

#[test]
fn kept_stacks_let_every_stack_go_without_a_budget_and_reset_clears_all() {
    let (mut c, _) = run(2000, 0);
    assert!(c.kept().is_empty());
    assert_eq!(c.kept().let_go().samples, 2000);
    let v = c.view(&hot_query(), Instant::now());
    let tree = v.tree.unwrap();
    assert_eq!(tree.total.samples, 500);
    assert_eq!(tree.unkept, tree.total);
    let lines: Vec<(usize, &str)> = tree
        .callers
        .iter()
        .map(|l| (l.depth, l.label.as_str()))
        .collect();
    assert_eq!(lines, [(0, "hot (x.py)"), (1, UNKEPT_LABEL)]);

    c.reset(Instant::now());
    assert!(c.kept().is_empty() && c.kept().let_go().is_zero());
    let v = c.view(&hot_query(), Instant::now());
    assert!(v.rows.is_empty() && v.cumulative_total.is_zero() && v.threads.is_empty());
    assert!(v.tree.unwrap().callers.is_empty());
}
