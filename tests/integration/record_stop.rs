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

/// A gecko recording's samples: (wall-clock time in Unix seconds, leaf function name), for
/// every thread. Its `meta.startTime` is the sampler's start, so start + sample time is when
/// the sample was taken.
fn gecko_leaves(path: &Path) -> Vec<(f64, String)> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let start_ms = v["meta"]["startTime"].as_f64().unwrap();
    let strings = v["shared"]["stringArray"].as_array().unwrap();
    let ix = |x: &serde_json::Value| x.as_u64().unwrap() as usize;
    let mut out = Vec::new();
    for th in v["threads"].as_array().unwrap() {
        let (stacks, frames, funcs, samples) = (
            &th["stackTable"],
            &th["frameTable"],
            &th["funcTable"],
            &th["samples"],
        );
        for i in 0..ix(&samples["length"]) {
            let frame = ix(&stacks["frame"][ix(&samples["stack"][i])]);
            let func = ix(&frames["func"][frame]);
            let name = strings[ix(&funcs["name"][func])].as_str().unwrap();
            let t = (start_ms + samples["time"][i].as_f64().unwrap()) / 1e3;
            out.push((t, name.to_string()));
        }
    }
    out
}

/// What `record_bursts.py` ran: (Unix seconds, "a" | "b" | "end") at each burst's start and
/// at the end, in time order.
fn burst_timeline(path: &Path) -> Vec<(f64, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (what, at) = l.split_once(' ').unwrap();
            (at.parse().unwrap(), what.to_string())
        })
        .collect()
}

/// Sampling a target that alternates 3 ms / 1 ms bursts on a fixed 4 ms schedule: the samples
/// fall at random phases of the schedule (no aliasing), and each one shows the function the
/// target was really in at that moment (which, with the first, makes every function's share
/// of samples its share of the time).
///
/// Phase: sample times from a Poisson process put independent Poisson counts in disjoint sets
/// of time, so given n samples in the target's run, the number whose time falls in the first
/// 3 ms of a 4 ms cycle is Binomial(n, 0.75), whatever the machine's load does to the target:
/// the tolerance is 5 standard deviations. A sampler locked to the cycle, or to the kernel's
/// 4 ms scheduler tick (late wake-ups on a busy machine), is 25 points or more off, far
/// outside it (the tolerance is asserted to be small enough to tell). Truth: the target logs
/// when each burst really started; a sample more than 200 µs from any burst's start must name
/// that burst's function (nearer to one, the read can straddle the switch). Both compare the
/// target's wall clock with the profile's, so they also prove the profile's start time and
/// timestamps are true wall-clock times.
fn check_aliasing(rate: u32) {
    // Long enough for a few hundred samples at the lowest rate, even when a loaded machine
    // (the whole suite on two cores) leaves the debug-built sampler a third of its deadlines.
    let seconds = if rate < 200 { 6.0 } else { 4.0 };
    let script = Script::new(&Interp::pyenv("3.12.1"), "record_bursts.py");
    let dir = TempDir::new();
    let path = dir.path().join("bursts.gecko.json");
    let timeline_path = dir.path().join("timeline.txt");
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
    args.push(timeline_path.to_str().unwrap());
    let out = run_strobe(&args);
    assert_ok(&out, "record bursts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let origin: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ORIGIN "))
        .unwrap_or_else(|| panic!("the target did not report its origin: {stdout}"))
        .parse()
        .unwrap();
    let timeline = burst_timeline(&timeline_path);
    let end = timeline.last().unwrap().0;
    assert_eq!(timeline.last().unwrap().1, "end");

    let in_run: Vec<(f64, String)> = gecko_leaves(&path)
        .into_iter()
        .filter(|(t, _)| (origin..end).contains(t))
        .collect();
    let n = in_run.len() as f64;
    // Enough samples for the tolerance to be meaningful, and a fair part of what the rate
    // promises: deadlines that pass while the (debug-built) sampler is busy are skipped, and
    // other tests share the machine.
    assert!(
        n >= 200.0 && n >= 0.2 * f64::from(rate) * seconds,
        "only {n} samples at {rate} Hz over {seconds} s"
    );

    const CYCLE: f64 = 0.004;
    const A_PART: f64 = 0.003;
    let p = A_PART / CYCLE;
    let in_a_phase = in_run
        .iter()
        .filter(|(t, _)| (t - origin).rem_euclid(CYCLE) < A_PART)
        .count() as f64;
    let share = in_a_phase / n;
    let tolerance = 5.0 * (p * (1.0 - p) / n).sqrt();
    assert!(
        tolerance < 0.15,
        "{rate} Hz: tolerance {tolerance:.3} too wide to detect aliasing"
    );
    assert!(
        (share - p).abs() <= tolerance,
        "{rate} Hz: {share:.3} of {n} samples fall in the first 3 ms of the 4 ms cycle, \
         expected {p} ± {tolerance:.3}"
    );

    // Each sample against what the target was really running.
    const MARGIN: f64 = 200e-6;
    let (mut checked, mut wrong) = (0u32, Vec::new());
    for (t, leaf) in &in_run {
        let next = timeline.partition_point(|(at, _)| at <= t);
        if next == 0 || next == timeline.len() {
            continue;
        }
        let (started, what) = &timeline[next - 1];
        if t - started < MARGIN || timeline[next].0 - t < MARGIN {
            continue;
        }
        let expected = if what == "a" { "burst_a" } else { "burst_b" };
        checked += 1;
        if leaf != expected {
            wrong.push(format!("{:.6} {leaf} (in {expected})", t - origin));
        }
    }
    assert!(
        checked as f64 >= 0.5 * n,
        "{rate} Hz: only {checked} of {n} samples away from a burst switch"
    );
    assert!(
        wrong.len() as f64 <= 0.02 * f64::from(checked),
        "{rate} Hz: {} of {checked} samples name another function than the target was \
         running: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
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
