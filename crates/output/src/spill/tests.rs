use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use strobe_aggregate::{Aggregator, FrameKey, SampleFilter, SampleFlags, ThreadKey};

/// Numbers the tests' output directories.
static TEST_DIRS: AtomicUsize = AtomicUsize::new(0);

/// Many distinct stacks of very different weights (random paths through 16 functions,
/// some hot ones), two threads, idle samples, `<GC>` and native frames.
fn samples() -> (Aggregator, Vec<Sample>) {
    let names: Vec<String> = (0..16).map(|i| format!("f{i}")).collect();
    let threads = [
        ThreadKey {
            os_tid: 7,
            name: Some("MainThread"),
            interpreter_id: 0,
        },
        ThreadKey {
            os_tid: 8,
            name: Some("worker; x"),
            interpreter_id: 0,
        },
    ];
    let mut agg = Aggregator::new();
    let mut out = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..6000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let hot = i.is_multiple_of(3);
        let depth = if hot { 3 } else { 2 + (x % 9) as usize };
        let mut frames = vec![FrameKey::python("main", "app.py", Some(1))];
        for d in 1..depth {
            let n = if hot {
                d
            } else {
                ((x >> (4 * d)) % 16) as usize
            };
            frames.push(FrameKey::python(
                &names[n],
                "app.py",
                Some(10 + (x >> (3 * d) & 3) as i32),
            ));
        }
        if x.is_multiple_of(11) {
            frames.push(FrameKey::gc());
        }
        if x.is_multiple_of(13) {
            frames.push(FrameKey {
                function: "memcpy",
                filename: "",
                line: None,
                kind: FrameKind::Native,
                module: Some("/lib/libc.so.6"),
                first_line: None,
            });
        }
        let flags = if x.is_multiple_of(7) {
            SampleFlags::IDLE
        } else {
            SampleFlags::HOLDS_GIL
        };
        let t = &threads[x.is_multiple_of(5) as usize];
        // Hot stacks weigh so much that most others are narrower than inferno draws.
        let weight = if hot { 1_000_000 } else { 1000 + x % 3000 };
        out.push(agg.record(t, &frames, flags, i * 1000, weight).unwrap());
    }
    (agg, out)
}

fn meta() -> Metadata {
    Metadata {
        target: "python app.py".into(),
        python_version: Some("3.12.1".into()),
        rate_requested_hz: 1000.0,
        duration_ns: 6_000_000,
        ..Metadata::default()
    }
}

fn spilled(
    kind: FormatKind,
    options: ProfileOptions,
    budget: usize,
    agg: &Aggregator,
    samples: &[Sample],
) -> (Vec<u8>, usize, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "strobe-spill-test-{}-{}",
        std::process::id(),
        TEST_DIRS.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).unwrap();
    let mut r = FoldedRecorder::new(kind, options, &dir, budget);
    for s in samples {
        r.add(agg.tables(), s).unwrap();
    }
    let mut out = Vec::new();
    r.write(&meta(), &mut out).unwrap();
    let runs = r.spilled_runs();
    drop(r);
    (out, runs, dir)
}

#[test]
fn spilled_output_is_byte_identical_to_the_profile_writers() {
    let (agg, samples) = samples();
    let option_sets = [
        ProfileOptions::default(),
        ProfileOptions {
            filter: SampleFilter::ALL,
            per_thread: true,
            ..ProfileOptions::default()
        },
        ProfileOptions {
            by_function: true,
            hide_gc: true,
            hide_exceptions: true,
            ..ProfileOptions::default()
        },
    ];
    for options in option_sets {
        let profile = agg.profile(meta(), options).unwrap();
        for kind in [FormatKind::Collapsed, FormatKind::Svg] {
            let mut want = Vec::new();
            kind.writer().write(&profile, &mut want).unwrap();
            for budget in [1, 4096, usize::MAX] {
                let (got, runs, dir) = spilled(kind, options, budget, &agg, &samples);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want),
                    "{kind:?} {options:?} budget {budget}"
                );
                if budget == usize::MAX {
                    assert_eq!(runs, 0);
                } else {
                    assert!(runs > 1, "{runs} runs at budget {budget}");
                }
                let left: Vec<_> = fs::read_dir(&dir).unwrap().collect();
                assert!(left.is_empty(), "spill files left behind: {left:?}");
                fs::remove_dir(&dir).unwrap();
            }
        }
    }
}

/// A profile of everything (as a raw file reads back), its counts per stack folded with the
/// view's options (what `convert` did before it streamed raw files: the reference the streamed
/// folding is compared with in `raw/tests.rs`).
#[test]
fn counts_of_a_profile_of_everything_fold_as_the_filtered_profile_writes() {
    let (agg, _) = samples();
    let all = agg.profile(meta(), ProfileOptions::EVERYTHING).unwrap();
    for options in [
        ProfileOptions::default(),
        ProfileOptions {
            filter: SampleFilter::ALL,
            per_thread: true,
            by_function: true,
            ..ProfileOptions::default()
        },
    ] {
        let profile = agg.profile(meta(), options).unwrap();
        for kind in [FormatKind::Collapsed, FormatKind::Svg] {
            let mut want = Vec::new();
            kind.writer().write(&profile, &mut want).unwrap();
            let mut r = FoldedRecorder::new(kind, options, &std::env::temp_dir(), 1 << 30);
            r.add_profile(&all).unwrap();
            let mut got = Vec::new();
            r.write(&meta(), &mut got).unwrap();
            assert!(got == want, "{kind:?} {options:?}");
        }
    }
}

#[test]
fn svg_pruning_hands_inferno_fewer_lines_for_the_same_picture() {
    let (agg, samples) = samples();
    let options = ProfileOptions::default();
    let profile = agg.profile(meta(), options).unwrap();
    let distinct = crate::collapsed::folded(&profile).len();
    let mut r = FoldedRecorder::new(FormatKind::Svg, options, &std::env::temp_dir(), 1 << 30);
    for s in &samples {
        r.add(agg.tables(), s).unwrap();
    }
    r.spool.finish().unwrap();
    let total: u64 = {
        let mut e = r.spool.entries().unwrap();
        let mut t = 0;
        while let Some((_, c)) = e.next().unwrap() {
            t += Svg::default().value.of(c);
        }
        t
    };
    let mut p = Pruner {
        open: Vec::new(),
        out: Vec::new(),
        minwidth_time: inferno::flamegraph::Options::default().min_width * total as f64 / 100.0,
    };
    let mut e = r.spool.entries().unwrap();
    while let Some((k, c)) = e.next().unwrap() {
        p.line(&k, Svg::default().value.of(c));
    }
    let pruned = p.finish();
    assert!(
        pruned.len() < distinct,
        "{} lines of {distinct}",
        pruned.len()
    );
    let sum: u64 = pruned
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sum, total);
}
