//! How a recording ends: signals, the target exiting, strobe being killed; the sampling clock
//! (aliasing) and hostile names.

use crate::harness::{Interp, Target, TempDir};
use crate::record::{
    assert_ok, parse_chrome, parse_collapsed, parse_speedscope, parse_svg, run_strobe,
    spawn_recording, Script,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::Read;
use std::path::Path;

fn signal(child: &std::process::Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// SIGINT, SIGTERM and SIGHUP each end an attached recording, and the output is complete.
#[test]
fn stop_signals_end_an_attached_recording_with_complete_output() {
    let mut target = Target::start(&Interp::pyenv("3.12.1"));
    let dir = TempDir::new();
    let pid = target.pid().to_string();
    for (sig, file) in [
        (Signal::SIGINT, "int.svg"),
        (Signal::SIGTERM, "term.txt"),
        (Signal::SIGHUP, "hup.json"),
    ] {
        let path = dir.path().join(file);
        let (mut child, mut err, mut seen) = spawn_recording(&[
            "record",
            "--pid",
            &pid,
            "--idle",
            "--rate",
            "500",
            "-o",
            path.to_str().unwrap(),
        ]);
        signal(&child, sig);
        err.read_to_string(&mut seen).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{sig}: {status}: {seen}");
        assert!(seen.contains(&format!("stopped by {sig}")), "{seen}");
        assert!(seen.contains("wrote"), "{seen}");
        match file.rsplit('.').next().unwrap() {
            "svg" => {
                parse_svg(&path);
            }
            "txt" => {
                parse_collapsed(&path);
            }
            _ => {
                parse_speedscope(&path);
            }
        }
    }
    // The target was never stopped and still answers.
    target.ping();
}

/// Convert a raw recording to collapsed stacks (idle included), e.g. while it is written.
fn convert_raw(raw: &Path, txt: &Path) -> std::process::Output {
    run_strobe(&[
        "convert",
        raw.to_str().unwrap(),
        "--idle",
        "-o",
        txt.to_str().unwrap(),
    ])
}

/// Wait until the raw file being recorded has flushed samples (checked after each pause; the
/// recorder flushes at least every second).
fn wait_for_samples(raw: &Path, txt: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = convert_raw(raw, txt);
        if out.status.success() && !parse_collapsed(txt).stacks.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no samples flushed: {out:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// SIGTERM to strobe in launch mode: passed on to the command, whose fate is reported in the
/// exit status (128 + 15), and the output is complete.
#[test]
fn sigterm_in_launch_mode_reaches_the_command() {
    let script = Script::new(&Interp::pyenv("3.10.13"), "record_work.py");
    let dir = TempDir::new();
    let raw = dir.path().join("out.raw");
    let mut args = vec!["record", "-o", raw.to_str().unwrap(), "--"];
    args.extend(script.command.iter().map(String::as_str));
    args.push("600");
    let (mut child, mut err, mut seen) = spawn_recording(&args);
    let txt = dir.path().join("out.txt");
    wait_for_samples(&raw, &txt);
    signal(&child, Signal::SIGTERM);
    err.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15), "{seen}");
    assert!(seen.contains("the command was killed by SIGTERM"), "{seen}");
    assert_ok(&convert_raw(&raw, &txt), "convert");
    let parsed = parse_collapsed(&txt);
    assert!(
        parsed.has_suffix(&[script.label("hot", "hot")]),
        "{parsed:?}"
    );
}

/// The command's exit status is strobe's, and an attached target that exits ends the
/// recording with a complete file.
#[test]
fn target_exit_ends_the_recording() {
    // Launch mode: status passed on.
    let script = Script::new(&Interp::pyenv("3.9.18"), "record_work.py");
    let dir = TempDir::new();
    let path = dir.path().join("launch.svg");
    let mut args = vec!["record", "-o", path.to_str().unwrap(), "--"];
    args.extend(script.command.iter().map(String::as_str));
    args.extend(["0.3", "7"]);
    let out = run_strobe(&args);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    parse_svg(&path);

    // Attach mode: the target goes away mid-recording.
    let target = Target::start(&Interp::pyenv("3.13.0"));
    let path = dir.path().join("attach.json");
    let (mut child, mut err, mut seen) = spawn_recording(&[
        "record",
        "--pid",
        &target.pid().to_string(),
        "--idle",
        "--rate",
        "1000",
        "-o",
        path.to_str().unwrap(),
    ]);
    let pid = target.pid();
    drop(target); // closes its stdin (it exits) and kills it
    err.read_to_string(&mut seen).unwrap();
    assert!(child.wait().unwrap().success(), "{seen}");
    assert!(seen.contains(&format!("process {pid} exited")), "{seen}");
    parse_speedscope(&path);
}

/// A raw recording survives strobe being SIGKILLed: `convert` reads every flushed sample.
#[test]
fn sigkill_leaves_a_convertible_raw_file() {
    let target = Target::start(&Interp::pyenv("3.12.1"));
    let dir = TempDir::new();
    let raw = dir.path().join("killed.raw");
    let (mut child, _err, _seen) = spawn_recording(&[
        "record",
        "--pid",
        &target.pid().to_string(),
        "--idle",
        "--rate",
        "1000",
        "-o",
        raw.to_str().unwrap(),
    ]);
    let txt = dir.path().join("before.txt");
    wait_for_samples(&raw, &txt);
    let before: f64 = parse_collapsed(&txt).stacks.iter().map(|(_, w)| w).sum();
    signal(&child, Signal::SIGKILL);
    child.wait().unwrap();
    let after_path = dir.path().join("after.txt");
    let out = run_strobe(&[
        "convert",
        raw.to_str().unwrap(),
        "--idle",
        "-o",
        after_path.to_str().unwrap(),
    ]);
    assert_ok(&out, "convert after SIGKILL");
    let after = parse_collapsed(&after_path);
    let total: f64 = after.stacks.iter().map(|(_, w)| w).sum();
    assert!(total >= before, "{total} < {before}");
    let main_line = crate::harness::markers(&target.script_here)["main"];
    let leaf = format!("main ({}:{main_line})", target.script_in_target);
    assert!(after.has_suffix(&[leaf]), "{after:?}");
}

/// Whether each sample in a speedscope recording (time order: one profile, the timeline) was
/// in `burst_a` (true) or `burst_b` (false); other samples are left out.
fn burst_sequence(path: &Path) -> Vec<bool> {
    let p = parse_speedscope(path);
    p.stacks
        .iter()
        .filter_map(
            |(stack, _)| match stack.last().map(|l| l.split(" (").next().unwrap()) {
                Some("burst_a") => Some(true),
                Some("burst_b") => Some(false),
                _ => None,
            },
        )
        .collect()
}

/// A target alternating 3 ms / 1 ms bursts is attributed in proportion to the time it really
/// spent in each (75% / 25% on an idle machine; the target measures and reports it).
///
/// Sample times from a Poisson process make the samples in each state independent Poisson
/// counts, so given n samples the count in `burst_a` is Binomial(n, p), p the measured share:
/// the tolerance is 5 standard deviations, 5·sqrt(p(1-p)/n). A sampler locked to the 4 ms
/// cycle would be 25 points or more off, far outside the tolerance (which is asserted to be
/// small enough to tell).
fn check_aliasing(rate: u32) {
    // Long enough for a few hundred samples at the lowest rate, even when a loaded machine
    // (the whole suite on two cores) leaves the debug-built sampler a third of its deadlines.
    let seconds = if rate < 200 { 6.0 } else { 4.0 };
    let script = Script::new(&Interp::pyenv("3.12.1"), "record_bursts.py");
    let dir = TempDir::new();
    let path = dir.path().join("bursts.json");
    let rate_s = rate.to_string();
    let mut args = vec![
        "record",
        "--rate",
        &rate_s,
        "--function",
        "-o",
        path.to_str().unwrap(),
        "--",
    ];
    args.extend(script.command.iter().map(String::as_str));
    let secs = seconds.to_string();
    args.push(&secs);
    let out = run_strobe(&args);
    assert_ok(&out, "record bursts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let split: Vec<f64> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SPLIT "))
        .unwrap_or_else(|| panic!("the target did not report its split: {stdout}"))
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let truth = split[0] / (split[0] + split[1]);

    let seq = burst_sequence(&path);
    let n = seq.len() as f64;
    // Enough samples for the tolerance to be meaningful, and a fair part of what the rate
    // promises: deadlines that pass while the (debug-built) sampler is busy are skipped, and
    // other tests share the machine.
    assert!(
        n >= 200.0 && n >= 0.2 * f64::from(rate) * seconds,
        "only {n} samples at {rate} Hz over {seconds} s"
    );
    let share = seq.iter().filter(|&&a| a).count() as f64 / n;
    let binomial = (truth * (1.0 - truth) / n).sqrt();
    let tolerance = 5.0 * binomial;
    assert!(
        tolerance < 0.15,
        "{rate} Hz: tolerance {tolerance:.3} too wide to detect aliasing"
    );
    assert!(
        (share - truth).abs() <= tolerance,
        "{rate} Hz: burst_a has {share:.3} of {n} samples, the target spent {truth:.3} of its \
         time there (± {tolerance:.3})"
    );
}

#[test]
fn aliasing_100_hz() {
    check_aliasing(100);
}

#[test]
fn aliasing_250_hz() {
    check_aliasing(250);
}

#[test]
fn aliasing_1000_hz() {
    check_aliasing(1000);
}

/// A function named `<script>alert(1)</script>` in a file named with markup appears escaped
/// in every text format: the SVG parses as XML and its titles carry the names verbatim.
#[test]
fn hostile_names_are_escaped_everywhere() {
    let script = Script::new(&Interp::pyenv("3.12.1"), "record_hostile.py");
    let dir = TempDir::new();
    let raw = dir.path().join("hostile.raw");
    let mut args = vec!["record", "-o", raw.to_str().unwrap(), "--"];
    args.extend(script.command.iter().map(String::as_str));
    args.push("0.5");
    assert_ok(&run_strobe(&args), "record hostile");
    let name = "<script>alert(1)</script>";
    let file = "<b>&amp;\"evil'</b>.py";
    for (format, ext) in [
        ("svg", "svg"),
        ("speedscope", "json"),
        ("chrome", "trace.json"),
        ("collapsed", "txt"),
    ] {
        let path = dir.path().join(format!("h.{ext}"));
        assert_ok(
            &run_strobe(&[
                "convert",
                raw.to_str().unwrap(),
                "-o",
                path.to_str().unwrap(),
                "--format",
                format,
            ]),
            format,
        );
        let bytes = std::fs::read_to_string(&path).unwrap();
        let parsed = match format {
            "svg" => {
                assert!(!bytes.contains(name), "raw markup in the SVG");
                assert!(!bytes.contains("<b>"), "raw markup in the SVG");
                parse_svg(&path)
            }
            "speedscope" => parse_speedscope(&path),
            "chrome" => parse_chrome(&path),
            _ => parse_collapsed(&path),
        };
        // The folded format escapes ';' (in "&amp;") reversibly, and the SVG is built from it.
        let folded_file = file.replace(';', "\\x3b");
        let want_file = if matches!(format, "svg" | "collapsed") {
            &folded_file
        } else {
            file
        };
        assert!(
            parsed
                .labels
                .iter()
                .any(|l| l.starts_with(&format!("{name} ({want_file}:"))),
            "{format}: {:?}",
            parsed.labels
        );
    }
}
