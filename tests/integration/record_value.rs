//! Samples' weights: `--value micros|samples` (one raw recording converted both ways: the
//! sample counts add up to the sample count `record`'s summary gave, and each folded stack's µs
//! are its samples' weights, as the recording itself holds them), and the summary's effective
//! sample size when a late sample weighs much more than the others.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use strobe_aggregate::ProfileOptions;
use strobe_output::{read_raw, Collapsed, Format, RawEvent, RawStream, Value};
use strobe_testkit::procfs;

use crate::harness::{Announced, Interp, Script, TempDir};
use crate::record::{assert_ok, record_pid, run_strobe, spawn_recording};

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

/// Waits until strobe `pid`'s sampler thread has run at least `runs` times (it runs once per
/// round, at least); returns the count seen.
pub fn wait_for_sampler_runs(pid: i32, runs: u64) -> u64 {
    procfs::wait_for_runs(pid, "strobe-sampler", runs, Duration::from_secs(60))
}

/// Ends the recording `strobe` (SIGINT) once its sampler has run `runs` times, and reads the
/// rest of its stderr into `stderr`; fails unless it exits successfully.
pub fn end_after_runs(strobe: &mut Child, err: &mut impl Read, stderr: &mut String, runs: u64) {
    let pid = i32::try_from(strobe.id()).unwrap();
    wait_for_sampler_runs(pid, runs);
    kill(Pid::from_raw(pid), Signal::SIGINT).unwrap();
    err.read_to_string(stderr).unwrap();
    assert!(strobe.wait().unwrap().success(), "{stderr}");
}

#[test]
fn a_sample_made_late_is_reported_with_the_effective_sample_size() {
    let script = Script::new(&Interp::pyenv("3.12.1"), "native_busy.py");
    let mut target = Announced::start(script.command().arg("1"));
    let dir = TempDir::new();
    let raw = dir.path().join("late.raw");
    let pid = target.pid.to_string();
    let (mut strobe, mut err, mut stderr) = spawn_recording(&[
        "record",
        "--pid",
        &pid,
        "--rate",
        "1000",
        "-o",
        raw.to_str().unwrap(),
    ]);
    let strobe_pid = i32::try_from(strobe.id()).unwrap();
    // Stopped for 300 ms (the stimulus, not a wait for anything) once its sampler runs its
    // rounds, and ended only after it has run more: its first round after the stop carries
    // every deadline that passed meanwhile, whatever the machine's load made of the timing.
    let ran = wait_for_sampler_runs(strobe_pid, 20);
    kill(Pid::from_raw(strobe_pid), Signal::SIGSTOP).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    kill(Pid::from_raw(strobe_pid), Signal::SIGCONT).unwrap();
    end_after_runs(&mut strobe, &mut err, &mut stderr, ran + 50);
    target.close_stdin();

    // Kish's effective sample size of the recording's weights (in ms, as the sampler sums them).
    let mut stream = RawStream::open(&raw).unwrap();
    let (mut n, mut sum, mut squares, mut heaviest) = (0u64, 0f64, 0f64, 0u64);
    while let Some((_, event)) = stream.next_event().unwrap() {
        let RawEvent::Sample(s) = event else {
            panic!("a recording holds samples: {event:?}")
        };
        let w = s.weight_ns as f64 / 1e6;
        (n, sum, squares) = (n + 1, sum + w, squares + w * w);
        heaviest = heaviest.max(s.weight_ns);
    }
    assert!(
        heaviest >= 250_000_000,
        "no sample stands for the stop: {heaviest} ns"
    );
    let effective = (sum * sum / squares).round() as u64;
    assert!(
        (effective as f64) < 0.9 * n as f64,
        "{effective} of {n}\n{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains(" samples were late "))
        .unwrap_or_else(|| panic!("no late line in\n{stderr}"));
    // "..., so the profile's shares are only as precise as K equally weighted samples would
    // make them, of the N thread samples recorded (...)"
    let number_after = |what: &str| -> u64 {
        let rest = line
            .split_once(what)
            .unwrap_or_else(|| panic!("{what} in {line}"))
            .1;
        let digits = rest.split(' ').next().unwrap().replace(',', "");
        digits
            .parse()
            .unwrap_or_else(|_| panic!("{what} in {line}"))
    };
    assert_eq!(number_after(" of the "), n, "{line}");
    // The sums are added per round by the sampler and per sample here: equal to within the
    // last bits, so the rounded sizes may differ by one.
    let said = number_after("shares are only as precise as ");
    assert!(
        said.abs_diff(effective) <= 1,
        "expected {effective} in {line}"
    );
}
