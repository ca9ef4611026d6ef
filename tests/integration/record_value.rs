//! `--value micros|samples`: one raw recording converted both ways. The sample counts add up
//! to the sample count `record`'s summary gave, and each folded stack's µs are its samples'
//! weights, as the recording itself holds them.

use std::collections::BTreeMap;
use std::path::Path;

use strobe_aggregate::ProfileOptions;
use strobe_output::{read_raw, Collapsed, Format, Value};

use crate::harness::{Announced, Interp, Script, TempDir};
use crate::record::{assert_ok, record_pid, run_strobe};

/// A collapsed file's lines: stack → value.
fn folded(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .map(|l| {
            let (stack, v) = l.rsplit_once(' ').unwrap();
            (stack.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// `strobe convert RAW ARGS... -o OUT`: OUT's text and the sample count convert reported.
fn convert(raw: &Path, args: &[&str], out: &Path) -> (String, u64) {
    let mut all = vec!["convert", raw.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", out.to_str().unwrap()]);
    let stderr = assert_ok(&run_strobe(&all), "convert");
    // "strobe: wrote OUT (FORMAT, N samples)"
    let n = stderr
        .rsplit_once(", ")
        .and_then(|(_, r)| r.trim_end().strip_suffix(" samples)"))
        .unwrap_or_else(|| panic!("no sample count in {stderr}"));
    (std::fs::read_to_string(out).unwrap(), n.parse().unwrap())
}

/// The root's value in an svg flamegraph: its `all (N UNIT, 100%)` title.
fn svg_total(svg: &str, unit: &str) -> u64 {
    let title = svg
        .split("<title>all (")
        .nth(1)
        .and_then(|r| r.split_once(&format!(" {unit}, 100%)</title>")))
        .unwrap_or_else(|| panic!("no root title in {unit}"))
        .0;
    title.replace(',', "").parse().unwrap()
}

#[test]
fn value_samples_counts_samples_and_micros_weighs_them() {
    // Two threads sorting (running, taking turns with the GIL), the main thread blocked.
    let script = Script::new(&Interp::pyenv("3.12.1"), "native_busy.py");
    let mut target = Announced::start(script.command().arg("2"));
    let dir = TempDir::new();
    let raw = dir.path().join("all.raw");
    let stderr = record_pid(target.pid, &["--duration", "1", "--rate", "500"], &raw);
    target.close_stdin();
    // "recorded ... (N stacks; ...)": every sample recorded, idle threads' too.
    let stacks: u64 = stderr
        .lines()
        .find(|l| l.starts_with("strobe: recorded "))
        .and_then(|l| l.rsplit_once(" ("))
        .and_then(|(_, r)| r.split_once(" stacks;"))
        .map(|(n, _)| n.replace(',', "").parse().unwrap())
        .unwrap_or_else(|| panic!("no stack count in {stderr}"));
    assert!(stacks > 0, "{stderr}");

    let d = |name: &str| dir.path().join(name);
    let (counts, n) = convert(&raw, &["--value", "samples"], &d("n.txt"));
    let (micros, n_micros) = convert(&raw, &[], &d("w.txt"));
    assert_eq!(micros, convert(&raw, &["--value", "micros"], &d("m.txt")).0);
    let (counts, micros) = (folded(&counts), folded(&micros));
    assert_eq!(n, n_micros);
    assert_eq!(counts.values().sum::<u64>(), n, "{counts:?}");
    let (wall, n_wall) = convert(&raw, &["--mode", "wall", "--value", "samples"], &d("a.txt"));
    assert_eq!(folded(&wall).values().sum::<u64>(), n_wall);
    assert_eq!(
        n_wall, stacks,
        "convert and record's summary count the same samples"
    );
    assert!(
        n < n_wall,
        "the main thread's idle samples are not in the default view"
    );
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        micros.keys().collect::<Vec<_>>()
    );

    // What the recording holds, per folded stack: sample counts, and weights in µs.
    let profile = read_raw(&raw)
        .unwrap()
        .profile
        .with_options(ProfileOptions::default())
        .unwrap();
    assert_eq!(profile.total().samples, n);
    let written = |value| {
        let mut out = Vec::new();
        Collapsed { value }.write(&profile, &mut out).unwrap();
        folded(&String::from_utf8(out).unwrap())
    };
    assert_eq!(counts, written(Value::Samples));
    assert_eq!(micros, written(Value::Micros));
    // Each line rounds its weight to the nearest µs: the sum is the total weight's within
    // half a µs per line.
    let sum: u64 = micros.values().sum();
    let weight_us = profile.total().weight_ns as f64 / 1e3;
    assert!(
        (sum as f64 - weight_us).abs() <= 0.5 * micros.len() as f64,
        "{sum} µs in the file, {weight_us} µs of weights"
    );

    // svg: the root counts the same.
    let (svg, _) = convert(&raw, &["--value", "samples"], &d("n.svg"));
    assert_eq!(svg_total(&svg, "samples"), n);
    let (svg, _) = convert(&raw, &[], &d("w.svg"));
    assert_eq!(svg_total(&svg, "µs"), sum);
}
