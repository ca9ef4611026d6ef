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
mod fold;
mod hash;
mod intern;
pub mod pipeline;
mod profile;

/// The two threads of the unit tests' sample streams.
#[cfg(test)]
mod test_threads {
    use crate::ThreadKey;

    pub(crate) const MAIN: ThreadKey<'static> = ThreadKey {
        os_tid: 100,
        name: Some("MainThread"),
        interpreter_id: 0,
    };
    pub(crate) const WORKER: ThreadKey<'static> = ThreadKey {
        os_tid: 101,
        name: Some("worker"),
        interpreter_id: 0,
    };
}

pub use counts::{
    Breakdown, BreakdownOptions, Count, CountKey, Counts, FrameStat, FunctionTotals, Sample,
    SampleFilter, SampleFlags,
};
pub use fold::FrameFold;
pub use hash::{FxBuild, FxHasher};
pub use intern::STACK_BYTES;
pub use intern::{
    exception_label, task_label, CapacityError, Def, Frame, FrameId, FrameKey, FrameKind, Interner,
    Marks, StackId, StrId, Tables, Thread, ThreadId, ThreadKey, GC_FRAME, MAX_ENTRIES,
};
pub use pipeline::{
    pipeline, pipeline_live, pipeline_streamed, Aggregator, AggregatorSide, Doorbell, Drained,
    SamplerSide, SAMPLER_STACK_BUDGET,
};
pub use profile::{thread_label_in, Metadata, Profile, ProfileOptions, StackCount};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use crate::test_threads::{MAIN, WORKER};

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

    /// Sample `n` of the streamed tests: a path through 16 functions, 1 to 24 deep, and every
    /// fifth sample the same short stack (a hot stack that must survive forgetting).
    fn path(names: &[String], n: u64) -> Vec<FrameKey<'_>> {
        if n.is_multiple_of(5) {
            return vec![fk("main", 1), fk("hot", 2)];
        }
        let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let depth = 1 + (x % 24) as usize;
        (0..depth)
            .map(|i| {
                x = x.rotate_left(7).wrapping_mul(31).wrapping_add(i as u64);
                let f = (x % 16) as usize;
                FrameKey::python(&names[f], "paths.py", Some(f as i32 * 3 + 1))
            })
            .collect()
    }

    fn resolve(t: &Tables, s: StackId) -> Vec<(String, Option<i32>)> {
        t.stack(s)
            .iter()
            .map(|id| {
                let f = t.frame(*id).unwrap();
                (t.str(f.function).to_string(), f.line)
            })
            .collect()
    }

    #[test]
    fn a_streamed_pipeline_forgets_stacks_yet_every_drained_sample_resolves() {
        let names: Vec<String> = (0..16).map(|i| format!("f{i}")).collect();
        let opts = BreakdownOptions {
            by_function: true,
            ..Default::default()
        };
        // About 20 stacks a generation.
        let (mut sampler, mut agg) = pipeline_streamed(256, 2 * 20 * (STACK_BYTES + 48), opts);
        let n_samples = 30_000u64;
        let producer = std::thread::spawn(move || {
            let names: Vec<String> = (0..16).map(|i| format!("f{i}")).collect();
            let mut collections = 0;
            for n in 0..n_samples {
                sampler
                    .record(&MAIN, &path(&names, n), SampleFlags::empty(), n, 1)
                    .unwrap();
                // Rounds of one to three samples.
                if n % 3 != 1 && sampler.collect_stacks() {
                    collections += 1;
                }
            }
            (collections, sampler.dropped())
        });
        let mut reference = Aggregator::new();
        let mut seen = 0u64;
        let mut max_held = 0;
        loop {
            let d = agg.drain().unwrap();
            for s in d.samples {
                // The sample's stack is held and is the stack sample `n` was taken with.
                let expect = reference
                    .record(
                        &MAIN,
                        &path(&names, s.timestamp_ns),
                        s.flags,
                        s.timestamp_ns,
                        1,
                    )
                    .unwrap();
                assert_eq!(
                    resolve(d.tables, s.stack),
                    resolve(reference.tables(), expect.stack),
                    "sample {}",
                    s.timestamp_ns
                );
            }
            seen += d.samples.len() as u64;
            max_held = max_held.max(d.tables.held_stacks());
            if agg.finished() {
                break;
            }
            std::thread::yield_now();
        }
        let (collections, dropped) = producer.join().unwrap();
        assert_eq!(seen + dropped, n_samples);
        assert!(collections > 100, "{collections} generations");
        assert!(
            agg.tables().first_stack().index() > 1000,
            "stacks were forgotten"
        );
        // The mirror holds two of the sampler's generations (at most ~47 stacks each, plus a
        // round's 3) and the stacks of samples not handed out yet: a batch, a full queue
        // behind it, and the dropped ones.
        assert!(
            max_held as u64 <= 2 * 50 + 1 + 2 * 256 + 3 + dropped,
            "{max_held} stacks held, {dropped} dropped"
        );
        // No counts per stack; the total and the functions' times as counted in full.
        assert!(agg.streamed());
        assert_eq!(agg.counts().len(), 0);
        assert_eq!(agg.counts().total().samples, seen);
        let full = reference.breakdown(&opts);
        let streamed = agg.function_breakdown(&opts);
        assert_eq!(streamed.cumulative_total, full.cumulative_total);
        let by_name = |b: &Breakdown, t: &Tables| -> Vec<(String, Count, Count)> {
            b.cumulative
                .iter()
                .map(|s| (t.str(s.function).to_string(), s.own, s.total))
                .collect()
        };
        assert_eq!(
            by_name(&streamed, agg.tables()),
            by_name(&full, reference.tables())
        );
    }

    #[test]
    fn a_profile_pipeline_whose_sampler_forgets_stacks_counts_each_distinct_stack_once() {
        let names: Vec<String> = (0..16).map(|i| format!("f{i}")).collect();
        let (mut sampler, mut agg) = pipeline(1 << 16);
        agg.keep_timeline(true);
        // About 10 stacks a generation: the sampler defines most stacks several times.
        sampler.set_stack_budget(Some(2 * 10 * (STACK_BYTES + 48)));
        let mut reference = Aggregator::new();
        reference.counts_mut().keep_timeline(true);
        for n in 0..20_000u64 {
            // Paths repeat every 3,000 samples: each comes back long after it was forgotten.
            let frames = path(&names, n % 3_000);
            assert!(sampler
                .record(&MAIN, &frames, SampleFlags::empty(), n, 1 + n % 3)
                .unwrap());
            reference
                .record(&MAIN, &frames, SampleFlags::empty(), n, 1 + n % 3)
                .unwrap();
            sampler.collect_stacks();
            if n % 1000 == 999 {
                agg.drain().unwrap();
            }
        }
        let defined = sampler.interner().tables().num_stacks();
        drop(sampler);
        while !agg.finished() {
            agg.drain().unwrap();
        }
        assert!(defined > 15_000, "{defined} stacks defined by the sampler");
        assert_eq!(
            agg.tables().num_stacks(),
            reference.tables().num_stacks(),
            "each distinct stack once"
        );
        assert_eq!(agg.counts().len(), reference.counts().len());
        for opts in [ProfileOptions::EVERYTHING, ProfileOptions::default()] {
            let a = agg.profile(Metadata::default(), opts).unwrap();
            let b = reference.profile(Metadata::default(), opts).unwrap();
            assert_eq!(a.stacks, b.stacks);
            assert_eq!(a.timeline, b.timeline);
            assert_eq!(format!("{:?}", a.tables), format!("{:?}", b.tables));
        }
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
