//! Samples the streamed writers' tests feed both to them and to the [`crate::Format`] writers.

use std::path::Path;
use std::sync::atomic::Ordering;

use strobe_aggregate::{
    Aggregator, FrameKey, FrameKind, Metadata, ProfileOptions, Sample, SampleFilter, SampleFlags,
    ThreadKey,
};

use crate::spill::SPILL_DIRS;
use crate::stream::Recorder;

/// Options the streamed writers are tested with: the default, `--threads --idle`, and
/// `--function --no-gc`.
pub(crate) const OPTION_SETS: [ProfileOptions; 3] = [
    ProfileOptions {
        filter: SampleFilter {
            include_idle: false,
            gil_only: false,
            exception_only: false,
        },
        per_thread: false,
        by_function: false,
        hide_gc: false,
        hide_exceptions: false,
    },
    ProfileOptions {
        filter: SampleFilter::ALL,
        per_thread: true,
        by_function: false,
        hide_gc: false,
        hide_exceptions: false,
    },
    ProfileOptions {
        filter: SampleFilter {
            include_idle: false,
            gil_only: false,
            exception_only: false,
        },
        per_thread: false,
        by_function: true,
        hide_gc: true,
        hide_exceptions: true,
    },
];

/// Spill budgets: at every new entry, now and then, never.
pub(crate) const BUDGETS: [usize; 3] = [1, 4096, usize::MAX];

/// Feeds `samples` (of `agg`) to the recorder `make` returns for a new spill parent directory,
/// writes it with [`meta`], and checks that it left nothing in that directory once dropped;
/// the output and what `inspect` says of the recorder before it was dropped.
pub(crate) fn record_with<R: Recorder, T>(
    make: impl FnOnce(&Path) -> R,
    agg: &Aggregator,
    samples: &[Sample],
    inspect: impl FnOnce(&R) -> T,
) -> (Vec<u8>, T) {
    let dir = std::env::temp_dir().join(format!(
        "strobe-spill-test-{}-{}",
        std::process::id(),
        SPILL_DIRS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut r = make(&dir);
    for s in samples {
        r.add(agg.tables(), s).unwrap();
    }
    let mut out = Vec::new();
    r.write(&meta(), &mut out).unwrap();
    let seen = inspect(&r);
    drop(r);
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "spill files left behind: {left:?}");
    std::fs::remove_dir(&dir).unwrap();
    (out, seen)
}

/// Many distinct stacks of very different weights (random paths through 16 functions,
/// some hot ones), two threads, idle samples, `<GC>` and native frames.
pub(crate) fn samples() -> (Aggregator, Vec<Sample>) {
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
    agg.counts_mut().keep_timeline(true);
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

pub(crate) fn meta() -> Metadata {
    Metadata {
        target: "python app.py".into(),
        python_version: Some("3.12.1".into()),
        rate_requested_hz: 1000.0,
        duration_ns: 6_000_000,
        pid: Some(4242),
        start_unix_ns: 1_700_000_000_000_000_000,
        ..Metadata::default()
    }
}
