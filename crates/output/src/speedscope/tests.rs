use serde_json::Value;

use super::*;
use crate::stream::Recorder;
use crate::test_samples::{meta, record_with, samples, BUDGETS, OPTION_SETS};

/// A speedscope file with every frame index replaced by its frame.
fn resolved(json: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(json).unwrap();
    let frames = v["shared"]["frames"].as_array().unwrap().clone();
    for p in v["profiles"].as_array_mut().unwrap() {
        for s in p["samples"].as_array_mut().unwrap() {
            for f in s.as_array_mut().unwrap() {
                *f = frames[usize::try_from(f.as_u64().unwrap()).unwrap()].clone();
            }
        }
    }
    v["shared"]["frames"] = Value::Null;
    v
}

#[test]
fn streamed_speedscope_means_what_the_profile_writer_writes() {
    let (agg, samples) = samples();
    for options in OPTION_SETS {
        let profile = agg.profile(meta(), options).unwrap();
        let mut want = Vec::new();
        Speedscope.write(&profile, &mut want).unwrap();
        let want = resolved(&want);
        let n = want["profiles"][0]["samples"].as_array().unwrap().len();
        assert!(n > 1000, "{n} samples");
        for budget in BUDGETS {
            let (got, note) = record_with(
                |dir| SpeedscopeRecorder::new(options, dir, budget),
                &agg,
                &samples,
                SpeedscopeRecorder::spill_note,
            );
            assert!(resolved(&got) == want, "{options:?} budget {budget}");
            assert_eq!(note.is_some(), budget != usize::MAX, "{note:?}");
        }
    }
}

#[test]
fn nothing_recorded_is_one_empty_profile_either_way() {
    let (agg, _) = samples();
    let profile = agg.profile(meta(), OPTION_SETS[1]).unwrap();
    let empty = strobe_aggregate::Profile {
        stacks: Vec::new(),
        timeline: Vec::new(),
        ..profile
    };
    let mut want = Vec::new();
    Speedscope.write(&empty, &mut want).unwrap();
    let (got, _) = record_with(
        |dir| SpeedscopeRecorder::new(OPTION_SETS[1], dir, 1),
        &agg,
        &[],
        SpeedscopeRecorder::spill_note,
    );
    let frames = |v: &mut Value| v["shared"]["frames"] = Value::Null;
    let (mut got, mut want): (Value, Value) = (
        serde_json::from_slice(&got).unwrap(),
        serde_json::from_slice(&want).unwrap(),
    );
    frames(&mut got);
    frames(&mut want);
    assert_eq!(got, want);
}
