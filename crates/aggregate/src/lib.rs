//! Interns sampled Python stacks into small ids and counts them.
//!
//! This crate knows nothing about processes or CPython: it takes frames as strings and lines.
//!
//! * [`Interner`] turns function/file/line triples, thread identities and stacks (outermost
//!   frame first) into `Copy` ids ([`FrameId`], [`StackId`], [`ThreadId`], [`StrId`]); a repeated
//!   stack costs one hash lookup and allocates nothing.
//! * [`Counts`] counts samples per (thread, stack, flags) with their weights (the wall time a
//!   sample stands for), and produces [`Breakdown`]s of own/total time per function for a live view.
//! * [`pipeline()`] connects a sampler thread to an aggregator thread through a bounded lock-free
//!   queue (see the [`pipeline` module](mod@crate::pipeline) for why the sampler interns).
//! * [`Profile`] is the aggregated result, with deterministic ids, that output formats read.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod counts;
mod hash;
mod intern;
pub mod pipeline;
mod profile;

pub use counts::{
    Breakdown, BreakdownOptions, Count, CountKey, Counts, FrameStat, Sample, SampleFilter,
    SampleFlags,
};
pub use hash::{FxBuild, FxHasher};
pub use intern::{
    exception_label, task_label, CapacityError, Def, Frame, FrameId, FrameKey, FrameKind, Interner,
    Marks, StackId, StrId, Tables, Thread, ThreadId, ThreadKey, GC_FRAME, MAX_ENTRIES,
};
pub use pipeline::{pipeline, Aggregator, AggregatorSide, Doorbell, Drained, SamplerSide};
pub use profile::{Metadata, Profile, ProfileOptions, StackCount};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MAIN: ThreadKey<'static> = ThreadKey {
        os_tid: 100,
        name: Some("MainThread"),
        interpreter_id: 0,
    };
    const WORKER: ThreadKey<'static> = ThreadKey {
        os_tid: 101,
        name: Some("worker"),
        interpreter_id: 0,
    };

    fn fk(function: &'static str, line: i32) -> FrameKey<'static> {
        FrameKey::python(function, "app.py", Some(line))
    }

    fn stat<'a>(
        stats: &'a [FrameStat],
        t: &Tables,
        function: &str,
        line: Option<i32>,
    ) -> &'a FrameStat {
        stats
            .iter()
            .find(|s| t.str(s.function) == function && s.line == line)
            .unwrap()
    }

    #[test]
    fn snapshot_own_total_interval_and_recursion() {
        let mut a = Aggregator::new();
        let none = SampleFlags::empty();
        // main -> f -> f (recursion) -> g, twice; main -> f once; one idle sample.
        for t in 0..2 {
            a.record(
                &MAIN,
                &[fk("main", 1), fk("f", 10), fk("f", 11), fk("g", 20)],
                none,
                t,
                10,
            )
            .unwrap();
        }
        a.record(&MAIN, &[fk("main", 1), fk("f", 10)], none, 3, 10)
            .unwrap();
        a.record(
            &WORKER,
            &[fk("main", 1), fk("wait", 5)],
            SampleFlags::IDLE,
            3,
            10,
        )
        .unwrap();

        let by_fn = BreakdownOptions {
            by_function: true,
            ..Default::default()
        };
        let snap = a.breakdown(&by_fn);
        let t = a.tables();
        assert_eq!(
            snap.cumulative_total,
            Count {
                samples: 3,
                weight_ns: 30
            }
        );
        let f = stat(&snap.cumulative, t, "f", None);
        assert_eq!(
            f.total,
            Count {
                samples: 3,
                weight_ns: 30
            },
            "recursion counted once per sample"
        );
        assert_eq!(f.own.samples, 1);
        assert_eq!(stat(&snap.cumulative, t, "g", None).own.samples, 2);
        assert_eq!(stat(&snap.cumulative, t, "main", None).own.samples, 0);
        // main and f tie on total; f wins on own time.
        let order: Vec<&str> = snap.cumulative.iter().map(|s| t.str(s.function)).collect();
        assert_eq!(order, ["f", "main", "g"]);
        assert!(
            snap.cumulative.iter().all(|s| t.str(s.function) != "wait"),
            "idle excluded"
        );
        assert_eq!(snap.interval, snap.cumulative);

        // By line, including idle, only the worker thread.
        let opts = BreakdownOptions {
            by_function: false,
            os_tid: Some(101),
            filter: SampleFilter {
                include_idle: true,
                gil_only: false,
                exception_only: false,
            },
            hide_gc: false,
            hide_exceptions: false,
        };
        a.record(
            &WORKER,
            &[fk("main", 1), fk("wait", 6)],
            SampleFlags::IDLE,
            4,
            30,
        )
        .unwrap();
        let snap = a.breakdown(&opts);
        let t = a.tables();
        assert_eq!(snap.cumulative_total.samples, 2);
        assert_eq!(stat(&snap.cumulative, t, "wait", Some(5)).own.weight_ns, 10);
        assert_eq!(stat(&snap.cumulative, t, "wait", Some(6)).own.weight_ns, 30);
        // The interval started at the previous snapshot: only the last sample.
        assert_eq!(
            snap.interval_total,
            Count {
                samples: 1,
                weight_ns: 30
            }
        );
        assert_eq!(snap.interval.len(), 2);
        // And an empty interval after that.
        assert_eq!(a.breakdown(&opts).interval_total, Count::default());
    }

    #[test]
    fn no_gc_moves_the_collectors_samples_to_the_frame_below() {
        let mut a = Aggregator::new();
        let gil = SampleFlags::HOLDS_GIL;
        for t in 0..3 {
            a.record(
                &MAIN,
                &[fk("main", 1), fk("alloc", 5), FrameKey::gc()],
                gil,
                t,
                10,
            )
            .unwrap();
        }
        a.record(&MAIN, &[fk("main", 1), fk("alloc", 5)], gil, 3, 10)
            .unwrap();
        let t = a.tables().clone();

        // Kept: `<GC>` is an interpreter frame with the collector's own time.
        let with = a.breakdown(&BreakdownOptions::default());
        let gc = stat(&with.cumulative, &t, GC_FRAME, None);
        assert_eq!(gc.kind, FrameKind::Interpreter);
        assert_eq!(gc.own.samples, 3);
        assert_eq!(stat(&with.cumulative, &t, "alloc", Some(5)).own.samples, 1);
        let p = a
            .profile(Metadata::default(), ProfileOptions::default())
            .unwrap();
        assert_eq!(p.stacks.len(), 2);

        // Left out: the same samples, all on `alloc`.
        let without = a.breakdown(&BreakdownOptions {
            hide_gc: true,
            ..Default::default()
        });
        assert!(without
            .cumulative
            .iter()
            .all(|s| s.kind != FrameKind::Interpreter));
        assert_eq!(without.cumulative_total, with.cumulative_total);
        let alloc = stat(&without.cumulative, &t, "alloc", Some(5));
        assert_eq!((alloc.own.samples, alloc.total.samples), (4, 4));
        let q = a
            .profile(
                Metadata::default(),
                ProfileOptions {
                    hide_gc: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(q.total(), p.total());
        assert_eq!(q.stacks.len(), 1);
        assert_eq!(q.stacks[0].count.samples, 4);
        assert!(q.tables.frames().all(|(_, f)| f.kind == FrameKind::Python));
    }

    #[test]
    fn profile_filters_merges_functions_and_is_deterministic() {
        let mut a = Aggregator::new();
        let gil = SampleFlags::HOLDS_GIL;
        a.record(&WORKER, &[fk("main", 1), fk("f", 10)], gil, 0, 5)
            .unwrap();
        a.record(
            &MAIN,
            &[fk("main", 1), fk("f", 11)],
            SampleFlags::empty(),
            1,
            7,
        )
        .unwrap();
        a.record(&MAIN, &[fk("main", 1), fk("f", 10)], gil, 2, 9)
            .unwrap();
        a.record(&MAIN, &[fk("main", 2)], gil.with(SampleFlags::IDLE), 3, 11)
            .unwrap();
        a.record(&MAIN, &[], gil, 4, 13).unwrap();

        let all = a
            .profile(Metadata::default(), ProfileOptions::EVERYTHING)
            .unwrap();
        assert_eq!(
            all.total(),
            Count {
                samples: 4,
                weight_ns: 32
            },
            "empty stacks are dropped"
        );
        // Threads sorted by os tid: MainThread (100) gets id 0 although the worker came first.
        assert_eq!(all.thread_label(ThreadId(0)), "thread 100 (MainThread)");

        let default = a
            .profile(Metadata::default(), ProfileOptions::default())
            .unwrap();
        assert_eq!(
            default.total(),
            Count {
                samples: 3,
                weight_ns: 21
            },
            "idle dropped"
        );

        let gil_only = ProfileOptions {
            filter: SampleFilter {
                include_idle: false,
                gil_only: true,
                exception_only: false,
            },
            ..Default::default()
        };
        assert_eq!(
            a.profile(Metadata::default(), gil_only)
                .unwrap()
                .total()
                .weight_ns,
            14
        );

        let by_fn = ProfileOptions {
            by_function: true,
            ..Default::default()
        };
        let p = a.profile(Metadata::default(), by_fn).unwrap();
        // main->f:10 and main->f:11 of MainThread merge into one stack (flags differ, so two
        // counts), the worker keeps its own.
        let main_stacks: Vec<_> = p
            .stacks
            .iter()
            .filter(|s| s.thread == ThreadId(0))
            .collect();
        assert_eq!(main_stacks.len(), 2);
        assert_eq!(main_stacks[0].stack, main_stacks[1].stack);
        assert!(p.tables.frames().all(|(_, f)| f.line.is_none()));
        // Refiltering a profile equals filtering at the source.
        let again = all.with_options(by_fn).unwrap();
        assert_eq!(again.stacks, p.stacks);
        assert_eq!(format!("{:?}", again.tables), format!("{:?}", p.tables));
    }

    #[test]
    fn pipeline_across_threads_defines_every_id_and_counts_drops() {
        let (mut sampler, mut agg) = pipeline(64);
        let producer = std::thread::spawn(move || {
            let mut pushed = 0u64;
            let names: Vec<String> = (0..50).map(|i| format!("fn{i}")).collect();
            for n in 0..20_000u64 {
                let depth = (n % 7) as usize + 1;
                let frames: Vec<FrameKey<'_>> = names[..depth]
                    .iter()
                    .enumerate()
                    .map(|(i, name)| FrameKey::python(name, "x.py", Some(i as i32)))
                    .collect();
                if sampler
                    .record(&MAIN, &frames, SampleFlags::empty(), n, 1)
                    .unwrap()
                {
                    pushed += 1;
                }
            }
            (pushed, sampler.dropped())
        });
        let mut seen = 0u64;
        loop {
            let d = agg.drain().unwrap();
            for s in d.samples {
                // Every id a sample refers to is already defined in the mirror.
                assert!(!d.tables.stack(s.stack).is_empty());
                assert!(d.tables.thread(s.thread).is_some());
            }
            seen += d.samples.len() as u64;
            if agg.finished() {
                break;
            }
            std::thread::yield_now();
        }
        let (pushed, dropped) = producer.join().unwrap();
        assert_eq!(seen, pushed);
        assert_eq!(pushed + dropped, 20_000);
        assert_eq!(agg.dropped(), dropped);
        assert_eq!(agg.counts().total().samples, pushed);
        assert_eq!(agg.tables().num_stacks(), 7);
        let p = agg
            .profile(Metadata::default(), ProfileOptions::default())
            .unwrap();
        assert_eq!(p.meta.dropped, dropped);
    }

    #[test]
    fn the_doorbell_wakes_a_parked_aggregator_when_the_queue_fills_and_when_sampling_ends() {
        use std::time::{Duration, Instant};
        let (mut sampler, mut agg) = pipeline(64);
        agg.wake_this_thread();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<usize>();
        let producer = std::thread::spawn(move || {
            // Each message: push that many samples (0: end sampling).
            while let Ok(n) = go_rx.recv() {
                if n == 0 {
                    break;
                }
                for i in 0..n as u64 {
                    let frames = [FrameKey::python("f", "x.py", Some(1))];
                    sampler
                        .record(&MAIN, &frames, SampleFlags::empty(), i, 1)
                        .unwrap();
                }
            }
            drop(sampler);
        });
        // Parked for a minute at a time, the aggregator must be woken long before: the
        // queue reaching a quarter of its 64 places rings (a few samples do not), then the end.
        let started = Instant::now();
        go_tx.send(3).unwrap();
        go_tx.send(20).unwrap();
        let mut drained = 0;
        while drained < 16 {
            std::thread::park_timeout(Duration::from_secs(60));
            drained += agg.drain().unwrap().samples.len();
        }
        go_tx.send(0).unwrap();
        while !agg.sampler_gone() {
            std::thread::park_timeout(Duration::from_secs(60));
        }
        producer.join().unwrap();
        while !agg.finished() {
            drained += agg.drain().unwrap().samples.len();
        }
        assert_eq!(drained, 23);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the aggregator slept through the doorbell"
        );
    }

    #[test]
    fn memory_grows_with_unique_stacks_not_samples() {
        let mut a = Aggregator::new();
        let names: Vec<String> = (0..60).map(|i| format!("module.function_{i}")).collect();
        let record = |a: &mut Aggregator, n: u64| {
            let depth = 20 + (n % 30) as usize;
            let frames: Vec<FrameKey<'_>> = names[..depth]
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    FrameKey::python(f, "/srv/app/module.py", Some(i as i32 + (n % 3) as i32))
                })
                .collect();
            a.record(&MAIN, &frames, SampleFlags::empty(), n, 1000)
                .unwrap();
        };
        for n in 0..5_000 {
            record(&mut a, n);
        }
        let after_5k = a.tables().heap_bytes() + a.counts().heap_bytes();
        for n in 5_000..50_000 {
            record(&mut a, n);
        }
        let after_50k = a.tables().heap_bytes() + a.counts().heap_bytes();
        assert_eq!(
            after_5k, after_50k,
            "10x the samples, same unique stacks, same memory"
        );
        assert_eq!(a.counts().total().samples, 50_000);
    }
}
