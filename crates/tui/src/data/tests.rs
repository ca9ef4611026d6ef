//! The collector against a real pipeline: intervals, resets, shares, call trees, the thread.

#![allow(clippy::unwrap_used)]

use super::*;
use std::time::{Duration, Instant};
use strobe_aggregate::SampleFlags;
use strobe_aggregate::{pipeline, FrameKey, FrameKind, SamplerSide, ThreadKey};

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
    FrameKey::python(function, "/app/x.py", Some(line))
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
    v.rows.iter().find(|r| &*r.key.function == f).unwrap()
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
    assert!(v.rows.iter().all(|r| &*r.key.function != "wait"));
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
            .filter(|r| &*r.key.function == "main")
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
    let focus = FrameSel::python("f", "/app/x.py", None);
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
    let (end_tx, end_rx) = std::sync::mpsc::channel();
    let h = spawn(agg, move || end_tx.send(()).unwrap()).unwrap();
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
    assert!(end_rx.try_recv().is_err(), "sampling has not ended yet");
    drop(s);
    // The thread says at once that sampling ended (woken by the sampler's doorbell).
    end_rx.recv().unwrap();
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

#[test]
fn gc_share_counts_samples_with_gc_on_top_and_gc_is_a_row() {
    let (mut s, agg) = pipeline(1024);
    let mut c = Collector::new(agg);
    let t0 = Instant::now();
    let gil = SampleFlags::HOLDS_GIL;
    push(
        &mut s,
        &MAIN,
        &[fk("main", 1), fk("alloc", 5), FrameKey::gc()],
        gil,
        30,
    );
    push(&mut s, &MAIN, &[fk("main", 1), fk("alloc", 5)], gil, 70);
    assert_eq!(c.pump(), 100);
    c.advance(t0 + Duration::from_secs(1));
    let v = c.view(&by_fn(), t0 + Duration::from_secs(1));
    assert_eq!(v.gc_share, Some(0.3));
    let gc = row(&v, "<GC>");
    assert_eq!(gc.key.kind, FrameKind::Interpreter);
    assert_eq!(gc.key.label(), "<GC>");
    assert_eq!(gc.interval_own.samples, 30);
    assert_eq!(row(&v, "alloc").interval_own.samples, 70);
    assert_eq!(row(&v, "alloc").interval_total.samples, 100);
}
