use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use flate2::read::GzDecoder;

use super::*;
use crate::stream::Recorder;
use crate::test_samples::{meta, record_with, samples, BUDGETS, OPTION_SETS};

/// What a pprof file means, whatever its ids and order: values summed per (locations, labels),
/// both by content; and everything else by content.
#[derive(Debug, PartialEq)]
struct Meaning {
    samples: BTreeMap<(Vec<String>, Vec<String>), Vec<i64>>,
    locations: BTreeSet<String>,
    functions: BTreeSet<String>,
    mappings: BTreeSet<String>,
    rest: Vec<String>,
}

fn meaning(gz: &[u8]) -> Meaning {
    let mut body = Vec::new();
    GzDecoder::new(gz).read_to_end(&mut body).unwrap();
    let p: proto::Profile = prost::Message::decode(body.as_slice()).unwrap();
    assert_eq!(p.string_table.first().map(String::as_str), Some(""));
    let s = |i: i64| p.string_table[usize::try_from(i).unwrap()].clone();
    let function = |id: u64| {
        let f = p.function.iter().find(|f| f.id == id).unwrap();
        format!(
            "{} {} {} {}",
            s(f.name),
            s(f.system_name),
            s(f.filename),
            f.start_line
        )
    };
    let mapping = |id: u64| match p.mapping.iter().find(|m| m.id == id) {
        Some(m) => format!("{} {} {}", s(m.filename), m.has_functions, m.has_filenames),
        None => {
            assert_eq!(id, 0, "no mapping {id}");
            String::new()
        }
    };
    let location = |id: u64| {
        let l = p.location.iter().find(|l| l.id == id).unwrap();
        let lines: Vec<String> = l
            .line
            .iter()
            .map(|x| format!("{}:{}", function(x.function_id), x.line))
            .collect();
        format!("[{}] {}", mapping(l.mapping_id), lines.join(" / "))
    };
    let mut samples: BTreeMap<(Vec<String>, Vec<String>), Vec<i64>> = BTreeMap::new();
    for x in &p.sample {
        let locations = x.location_id.iter().map(|id| location(*id)).collect();
        let labels = x
            .label
            .iter()
            .map(|l| format!("{}={}/{}", s(l.key), s(l.str), l.num))
            .collect();
        let v = samples
            .entry((locations, labels))
            .or_insert_with(|| vec![0; x.value.len()]);
        for (a, b) in v.iter_mut().zip(&x.value) {
            *a += b;
        }
    }
    let value_type = |v: &proto::ValueType| format!("{}/{}", s(v.r#type), s(v.unit));
    let mut rest: Vec<String> = p.sample_type.iter().map(value_type).collect();
    rest.extend(p.period_type.as_ref().map(value_type));
    rest.extend(p.comment.iter().map(|c| s(*c)));
    rest.push(format!(
        "time {} duration {} period {} default {}",
        p.time_nanos,
        p.duration_nanos,
        p.period,
        s(p.default_sample_type)
    ));
    Meaning {
        samples,
        locations: p.location.iter().map(|l| location(l.id)).collect(),
        functions: p.function.iter().map(|f| function(f.id)).collect(),
        mappings: p.mapping.iter().map(|m| mapping(m.id)).collect(),
        rest,
    }
}

#[test]
fn streamed_pprof_means_what_the_profile_writer_writes() {
    let (agg, samples) = samples();
    for options in OPTION_SETS {
        let profile = agg.profile(meta(), options).unwrap();
        let mut want = Vec::new();
        Pprof.write(&profile, &mut want).unwrap();
        let want = meaning(&want);
        assert!(want.samples.len() > 100, "{}", want.samples.len());
        assert!(!want.mappings.is_empty());
        for budget in BUDGETS {
            let (got, note) = record_with(
                |dir| PprofRecorder::new(options, meta().pid, dir, budget),
                &agg,
                &samples,
                PprofRecorder::spill_note,
            );
            assert_eq!(meaning(&got), want, "{options:?} budget {budget}");
            assert_eq!(note.is_some(), budget != usize::MAX, "{note:?}");
        }
    }
}
