//! `--mode exception` and `<raise T>` frames: a target that spends a third of its time
//! handling a `ValueError` (inside an `except` block) and the rest in plain code
//! (`tests/targets/exceptions.py`, which times both phases itself). One raw recording, converted
//! with `--mode exception`, keeps only the handling samples, each with `<raise ValueError>` on
//! top, and their share of all running samples is within 4 standard errors of the share the
//! target measured; converted in the default mode, no `<raise T>` frame shows and no sample is
//! lost. On every interpreter. The same frame tops merged native stacks (`--native`) and
//! task-aware stacks (`--async`, 3.14+).

use crate::harness::{Announced, Interp, Script, TempDir};
use crate::native_record::merged_counts;
use crate::profiles::{collapsed, speedscope_samples, weighted_se};
use crate::record::{convert_to, record_pid};
use std::collections::BTreeMap;

/// The function name of a collapsed frame (`name (file)` with `--function`).
fn function(frame: &str) -> &str {
    frame.split(" (").next().unwrap_or(frame)
}

fn check_exceptions(interp: Interp) {
    let dir = TempDir::new();
    let script = Script::new(&interp, "exceptions.py");
    let mut target = Announced::start(&mut script.command());
    let raw = dir.path().join("exc.raw");
    record_pid(target.pid, &["--rate", "200", "--duration", "3"], &raw);
    let line = target.last_word();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"SHARE"), "the target said {line:?}");
    let handling: f64 = words[1].parse().unwrap();
    let both: f64 = words[2].parse().unwrap();
    let truth = handling / both;

    let convert = |name: &str, extra: &[&str]| {
        let args = [&["--function"], extra].concat();
        collapsed(&convert_to(&raw, &args, dir.path().join(name)))
    };
    let exc = convert("exc.txt", &["--mode", "exception"]);
    let cpu = convert("cpu.txt", &[]);

    // Only the handling phase, each sample with the exception's type on top. The thread state
    // and the frames are copied one after the other while the target runs, so a sample taken
    // as the target leaves the handler can pair the exception with the next phase's frames:
    // at most 2% of them (seen: none, or one sample in several hundred). Counted in samples:
    // by weight, one such sample taken late on a loaded machine stands for every interval it
    // missed (one weighed 145 ms of 1.19 s in a CI run at load 18).
    let exc_samples = convert(
        "exc-samples.txt",
        &["--mode", "exception", "--value", "samples"],
    );
    assert!(!exc_samples.is_empty(), "no exception samples");
    let mut outside = 0;
    for (stack, count) in &exc_samples {
        assert_eq!(
            stack.last().map(String::as_str),
            Some("<raise ValueError>"),
            "{exc_samples:#?}"
        );
        if !stack.iter().any(|f| function(f) == "handling") {
            outside += count;
        }
    }
    let exc_count: u64 = exc_samples.values().sum();
    assert!(
        outside * 50 <= exc_count,
        "{outside} of {exc_count} exception samples outside the handler: {exc_samples:#?}"
    );
    let exc_weight: u64 = exc.values().sum();
    // Other modes leave the frame out, and keep every sample.
    assert!(
        cpu.keys()
            .all(|s| !s.iter().any(|f| f.starts_with("<raise"))),
        "{cpu:#?}"
    );
    let in_plain: u64 = cpu
        .iter()
        .filter(|(s, _)| s.iter().any(|f| function(f) == "plain"))
        .map(|(_, w)| w)
        .sum();
    assert!(in_plain > 0, "{cpu:#?}");

    // The share, against what the target measured. Samples are weighted by the intervals they
    // stand for (more than one when the sampler woke late), so the standard error is that of a
    // weighted proportion, from every sample's weight (speedscope keeps them); a sample counts
    // as handling when its stack runs `handling`. Measured over 17 interpreters on a loaded
    // machine, the deviations look normal (|z| up to 1.8); a bound of 2 standard errors would
    // fail one interpreter in twenty by construction, i.e. most runs of this test, so the
    // bound is 4 (a wrong reader is far outside it: the truth is about a third).
    let all_weight: u64 = cpu.values().sum();
    let share = exc_weight as f64 / all_weight as f64;
    let json = convert_to(&raw, &[], dir.path().join("cpu.speedscope.json"));
    let samples = speedscope_samples(&json);
    let se = weighted_se(&samples, |s| s.iter().any(|f| f == "handling"), share);
    let z = (share - truth) / se;
    assert!(
        z.abs() <= 4.0,
        "exception share {share:.3} of {} samples, the target measured {truth:.3} \
         (standard error {se:.3}, z {z:.2})",
        samples.len()
    );
}

strobe_testkit::per_interpreter! {
    fn exception_mode(interp) {
        check_exceptions(Interp::from(interp));
    }
}

/// `strobe record --mode exception EXTRA...` of `file` under `interp` for 2 s at 200 Hz into
/// collapsed stacks, each asserted to end in `<raise ValueError>`: the script, the stacks, and
/// strobe's stderr.
fn exception_stacks(
    interp: Interp,
    file: &str,
    extra: &[&str],
) -> (Script, BTreeMap<Vec<String>, u64>, String) {
    let dir = TempDir::new();
    let script = Script::new(&interp, file);
    let mut target = Announced::start(&mut script.command());
    let out = dir.path().join("exc.txt");
    let args = [
        &["--mode", "exception", "--rate", "200", "--duration", "2"],
        extra,
    ]
    .concat();
    let stderr = record_pid(target.pid, &args, &out);
    target.close_stdin();
    let stacks = collapsed(&out);
    assert!(!stacks.is_empty(), "{stderr}");
    for stack in stacks.keys() {
        assert_eq!(
            stack.last().map(String::as_str),
            Some("<raise ValueError>"),
            "{stacks:#?}"
        );
    }
    (script, stacks, stderr)
}

/// `--native --mode exception`: the merged native stacks of the handling samples carry
/// `<raise ValueError>` on top too (a merged stack is not built from the Python frames alone,
/// so it needs the frame added on its own).
#[test]
fn native_stacks_carry_the_exception() {
    let (_, _, stderr) = exception_stacks(
        Interp::pyenv("3.12.1"),
        "exceptions.py",
        &["--native", "--function"],
    );
    let (merged, all) = merged_counts(&stderr);
    assert!(
        merged > 0 && merged * 10 >= all * 9,
        "{merged} of {all}\n{stderr}"
    );
}

/// `--async --mode exception` (3.14+): the running task's stack, under its `<task NAME>`, ends
/// in `<raise ValueError>` while it handles one; the task that does not never shows.
#[test]
fn task_stacks_carry_the_exception() {
    let (script, stacks, _) = exception_stacks(
        Interp::Sid("python3.14"),
        "async_exceptions.py",
        &["--async"],
    );
    let caught = script.label("thrower", "caught");
    let in_task: u64 = stacks
        .iter()
        .filter(|(s, _)| {
            let at = |name: &str| s.iter().position(|f| f == name);
            matches!(
                (at("<task thrower>"), at(&caught)),
                (Some(task), Some(line)) if task < line
            )
        })
        .map(|(_, w)| w)
        .sum();
    let all: u64 = stacks.values().sum();
    assert!(
        stacks.keys().all(|s| !s.iter().any(|f| f == "<task calm>")),
        "{stacks:#?}"
    );
    // Nearly all of them through the task's chain (a sample whose chain could not be read
    // keeps the thread's own stack).
    assert!(in_task > 0 && in_task * 10 >= all * 9, "{stacks:#?}");
}
