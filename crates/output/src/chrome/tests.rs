use serde_json::Value;

use super::*;
use crate::stream::Recorder;
use crate::test_samples::{meta, record_with, samples, BUDGETS, OPTION_SETS};

#[test]
fn events_follow_stack_changes_and_gaps() {
    let (a, b, c) = (FrameId(0), FrameId(1), FrameId(2));
    let ab: &[FrameId] = &[a, b];
    let ac: &[FrameId] = &[a, c];
    // 0-10 a>b, 10-20 a>c, gap 20-40, 40-50 a>c.
    let ev = thread_events(&[(10, 10, ab), (20, 10, ac), (50, 10, ac)]);
    let got: Vec<(u32, usize, u64, u64)> = ev
        .iter()
        .map(|e| (e.frame.0, e.depth, e.start_ns, e.end_ns))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 0, 0, 20),
            (1, 1, 0, 10),
            (2, 1, 10, 20),
            (0, 0, 40, 50),
            (2, 1, 40, 50)
        ]
    );
}

/// A trace's header and its events, each as JSON text, sorted (event order is free).
fn meaning(json: &[u8]) -> (Value, Vec<String>) {
    let mut v: Value = serde_json::from_slice(json).unwrap();
    let mut events: Vec<String> = v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    events.sort();
    v["traceEvents"] = Value::Null;
    (v, events)
}

#[test]
fn streamed_chrome_means_what_the_profile_writer_writes() {
    let (agg, samples) = samples();
    for options in OPTION_SETS {
        let profile = agg.profile(meta(), options).unwrap();
        let mut want = Vec::new();
        Chrome.write(&profile, &mut want).unwrap();
        let want = meaning(&want);
        assert!(want.1.len() > 1000, "{} events", want.1.len());
        for budget in BUDGETS {
            let (got, note) = record_with(
                |dir| ChromeRecorder::new(options, meta().pid, dir, budget),
                &agg,
                &samples,
                ChromeRecorder::spill_note,
            );
            assert!(meaning(&got) == want, "{options:?} budget {budget}");
            assert_eq!(note.is_some(), budget != usize::MAX, "{note:?}");
        }
    }
}
