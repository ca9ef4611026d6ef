//! The collector's rows, kept between refreshes (`table.rs`), against the same samples counted
//! per stack from scratch, through refreshes, views between them, two refreshes without a
//! view, new queries and resets.

#![allow(clippy::unwrap_used)]

use super::*;
use std::collections::BTreeMap;
use std::time::Instant;
use strobe_aggregate::{pipeline, Aggregator, FrameKey, SampleFlags, ThreadKey};

use super::collector::breakdown_options;

const THREADS: [ThreadKey<'static>; 2] = [
    ThreadKey {
        os_tid: 10,
        name: Some("MainThread"),
        interpreter_id: 0,
    },
    ThreadKey {
        os_tid: 11,
        name: Some("worker"),
        interpreter_id: 0,
    },
];

const NAMES: [&str; 12] = [
    "main", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k",
];

use crate::test_rng::Rng;

fn random_query(rng: &mut Rng) -> Query {
    Query {
        by_function: rng.next(2) == 0,
        os_tid: [None, Some(10), Some(11)][rng.next(3) as usize],
        filter: SampleFilter {
            include_idle: rng.next(2) == 0,
            gil_only: rng.next(4) == 0,
            exception_only: false,
        },
        focus: None,
    }
}

/// Function, file, line → cumulative own, total, interval own, total.
type Table = BTreeMap<(String, String, Option<i32>), [Count; 4]>;

fn shown(v: &ViewData) -> Table {
    let mut t = Table::new();
    for r in &v.rows {
        let key = (
            r.key.function.to_string(),
            r.key.filename.to_string(),
            r.key.line,
        );
        let counts = [
            r.cumulative_own,
            r.cumulative_total,
            r.interval_own,
            r.interval_total,
        ];
        assert!(t.insert(key, counts).is_none(), "one row per frame");
    }
    t
}

/// What a breakdown from scratch gives: `since_reset`'s cumulative counts, `last`'s as the
/// interval's.
fn expected(since_reset: &mut Aggregator, last: &mut Aggregator, q: &Query) -> (Table, [Count; 2]) {
    let opts = breakdown_options(q);
    let mut t = Table::new();
    let mut totals = [Count::default(); 2];
    for (part, agg) in [since_reset, last].into_iter().enumerate() {
        let b = agg.breakdown(&opts);
        totals[part] = b.cumulative_total;
        let tables = agg.tables();
        for st in b.cumulative {
            let key = (
                tables.str(st.function).to_string(),
                tables.str(st.filename).to_string(),
                st.line,
            );
            let counts = t.entry(key).or_insert([Count::default(); 4]);
            counts[2 * part] = st.own;
            counts[2 * part + 1] = st.total;
        }
    }
    (t, totals)
}

#[test]
fn kept_rows_are_the_rows_computed_from_scratch() {
    let mut rng = Rng(0x853c_49e6_748f_ea9b);
    let (mut side, agg) = pipeline(1 << 12);
    let mut c = Collector::new(agg);
    // Since the reset, the interval in progress, the last closed interval.
    let (mut since_reset, mut current, mut last) =
        (Aggregator::new(), Aggregator::new(), Aggregator::new());
    let mut q = random_query(&mut rng);
    for step in 0..600u64 {
        for i in 0..rng.next(40) {
            let thread = &THREADS[rng.next(2) as usize];
            let depth = 1 + rng.next(5) as usize;
            let frames: Vec<FrameKey<'_>> = (0..depth)
                .map(|_| {
                    let name = NAMES[rng.next(NAMES.len() as u64) as usize];
                    FrameKey::python(name, "/app/x.py", Some(1 + rng.next(3) as i32))
                })
                .collect();
            let flags = [
                SampleFlags::empty(),
                SampleFlags::HOLDS_GIL,
                SampleFlags::IDLE,
            ][rng.next(3) as usize];
            let w = 1 + rng.next(5);
            assert!(side.record(thread, &frames, flags, i, w).unwrap());
            for a in [&mut since_reset, &mut current] {
                a.record(thread, &frames, flags, i, w).unwrap();
            }
        }
        c.pump();
        let now = Instant::now();
        match rng.next(20) {
            // A refresh (sometimes two intervals closed, as without a view in between).
            0..=11 => {
                for _ in 0..=usize::from(rng.next(8) == 0) {
                    c.advance(now);
                    last = std::mem::take(&mut current);
                }
            }
            // A reset.
            12 => {
                c.reset(now);
                (since_reset, current, last) =
                    (Aggregator::new(), Aggregator::new(), Aggregator::new());
            }
            // A view between refreshes, after a key.
            _ => {}
        }
        if rng.next(4) == 0 {
            q = random_query(&mut rng);
        }
        let v = c.view(&q, now);
        let (want, totals) = expected(&mut since_reset, &mut last, &q);
        assert_eq!(shown(&v), want, "step {step}, {q:?}");
        assert_eq!(
            [v.cumulative_total, v.interval_total],
            totals,
            "step {step}"
        );
    }
}
