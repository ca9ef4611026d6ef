use super::*;
use strobe_aggregate::{Aggregator, SampleFilter};

use crate::test_samples::{meta, record_with, samples, BUDGETS, OPTION_SETS};

fn spilled(
    (kind, value): (FormatKind, Value),
    options: ProfileOptions,
    budget: usize,
    agg: &Aggregator,
    samples: &[Sample],
) -> (Vec<u8>, usize) {
    record_with(
        |dir| FoldedRecorder::new(kind, options, dir, budget).with_value(value),
        agg,
        samples,
        FoldedRecorder::spilled_runs,
    )
}

#[test]
fn spilled_output_is_byte_identical_to_the_profile_writers() {
    let (agg, samples) = samples();
    for options in OPTION_SETS {
        let profile = agg.profile(meta(), options).unwrap();
        let kinds = [FormatKind::Collapsed, FormatKind::Svg];
        for (kind, value) in kinds
            .into_iter()
            .flat_map(|k| [(k, Value::Micros), (k, Value::Samples)])
        {
            let mut want = Vec::new();
            kind.writer_of(value).write(&profile, &mut want).unwrap();
            if (kind, value) == (FormatKind::Collapsed, Value::Samples) {
                let text = String::from_utf8(want.clone()).unwrap();
                let sum: u64 = text
                    .lines()
                    .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
                    .sum();
                assert_eq!(sum, profile.total().samples, "{options:?}");
            }
            for budget in BUDGETS {
                let (got, runs) = spilled((kind, value), options, budget, &agg, &samples);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want),
                    "{kind:?} {value:?} {options:?} budget {budget}"
                );
                if budget == usize::MAX {
                    assert_eq!(runs, 0);
                } else {
                    assert!(runs > 1, "{runs} runs at budget {budget}");
                }
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
