use serde_json::Value;

use super::*;
use crate::stream::Recorder;
use crate::test_samples::{meta, record_with, samples, BUDGETS, OPTION_SETS};

/// A processed profile with each thread's samples resolved to their stacks (outermost first:
/// function name, file, first line, frame line, category) and the tables left out.
fn resolved(json: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(json).unwrap();
    let strings = v["shared"]["stringArray"].as_array().unwrap().clone();
    let at = |x: &Value| usize::try_from(x.as_u64().unwrap()).unwrap();
    for th in v["threads"].as_array_mut().unwrap() {
        let (frames, funcs, stacks) = (&th["frameTable"], &th["funcTable"], &th["stackTable"]);
        let mut out = Vec::new();
        let samples = &th["samples"];
        for (k, stack) in samples["stack"].as_array().unwrap().iter().enumerate() {
            let mut frames_out = Vec::new();
            let mut node = Some(at(stack));
            while let Some(n) = node {
                let f = at(&stacks["frame"][n]);
                let func = at(&frames["func"][f]);
                frames_out.push(serde_json::json!([
                    strings[at(&funcs["name"][func])],
                    strings[at(&funcs["fileName"][func])],
                    funcs["lineNumber"][func],
                    frames["line"][f],
                    frames["category"][f],
                ]));
                let prefix = &stacks["prefix"][n];
                node = prefix.as_u64().map(|p| {
                    let p = usize::try_from(p).unwrap();
                    assert!(p < n, "prefix {p} of stack {n}");
                    p
                });
            }
            frames_out.reverse();
            out.push(serde_json::json!([
                samples["time"][k],
                samples["weight"][k],
                frames_out
            ]));
        }
        for table in ["samples", "stackTable", "frameTable", "funcTable"] {
            th[table] = Value::Null;
        }
        th["resolved"] = Value::Array(out);
    }
    v["shared"] = Value::Null;
    v
}

#[test]
fn streamed_gecko_means_what_the_profile_writer_writes() {
    let (agg, samples) = samples();
    for options in OPTION_SETS {
        let profile = agg.profile(meta(), options).unwrap();
        let mut want = Vec::new();
        Gecko.write(&profile, &mut want).unwrap();
        let want = resolved(&want);
        assert_eq!(want["threads"].as_array().unwrap().len(), 2);
        for budget in BUDGETS {
            let (got, note) = record_with(
                |dir| GeckoRecorder::new(options, dir, budget),
                &agg,
                &samples,
                GeckoRecorder::spill_note,
            );
            assert!(resolved(&got) == want, "{options:?} budget {budget}");
            assert_eq!(note.is_some(), budget != usize::MAX, "{note:?}");
        }
    }
}

#[test]
fn a_small_stack_cache_makes_duplicate_stacks_not_other_samples() {
    let (agg, samples) = samples();
    let options = OPTION_SETS[0];
    let stacks = |json: &[u8]| -> usize {
        let v: Value = serde_json::from_slice(json).unwrap();
        v["threads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["stackTable"]["length"].as_u64().unwrap() as usize)
            .sum()
    };
    let (small, _) = record_with(
        |dir| GeckoRecorder::new(options, dir, 1),
        &agg,
        &samples,
        GeckoRecorder::spill_note,
    );
    let (large, _) = record_with(
        |dir| GeckoRecorder::new(options, dir, usize::MAX),
        &agg,
        &samples,
        GeckoRecorder::spill_note,
    );
    assert!(stacks(&small) > stacks(&large), "no duplicates made");
    assert!(resolved(&small) == resolved(&large));
}
