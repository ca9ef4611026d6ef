//! `strobe record` of the folded formats (collapsed, svg) past the memory budget: the stacks
//! are spilled to disk as sorted runs and merged (`STROBE_SPILL_BYTES=1` forces a spill at
//! every new distinct stack). The target takes random paths (`tests/targets/record_paths.py`),
//! so there are many distinct stacks; the output is complete (the collapsed file says what the
//! summary table, counted live, says), sorted and merged, and no spill file is left; `convert`
//! of a raw recording writes the same bytes spilled or not; and no spill directory outlives a
//! second stop signal, nor, past the next `record`, a SIGKILL. pprof, spilled at every new
//! stack (its counts in a spool file), has the shares the live summary has, and `go tool pprof`
//! reads it. So does speedscope, whose samples are spooled per thread.

use crate::harness::{Announced, Interp, Script, TempDir};
use crate::record::{assert_ok, go_pprof, parse_svg, spawn_recording_with, strobe_cmd};
use crate::record_summary::table;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use strobe_aggregate::ProfileOptions;
use strobe_output::{read_raw, FormatKind, RawStream};

fn record_spilled(pid: &str, out: &Path) -> String {
    let args = [
        "record",
        "--pid",
        pid,
        "--duration",
        "1.5",
        "--rate",
        "1000",
        "--summary",
        "--stack-table-bytes",
        "3000",
        "-o",
        out.to_str().unwrap(),
    ];
    let run = strobe_cmd(&args)
        .env("STROBE_SPILL_BYTES", "1")
        .output()
        .unwrap();
    let stderr = assert_ok(&run, "record with STROBE_SPILL_BYTES=1");
    // raw is streamed to its file: nothing to spill.
    let raw = out.extension().is_some_and(|e| e == "raw");
    assert!(
        raw || stderr.contains("spilled to disk"),
        "no spill: {stderr}"
    );
    stderr
}

/// The spill directories and files (`.strobe-spill…`) in `dir`.
pub(crate) fn spill_files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".strobe-spill"))
        .collect()
}

/// `p3 (/tmp/x/record_paths.py:27)` → `p3 (record_paths.py)`, as the summary table names it.
fn function_of(label: &str) -> String {
    let (name, rest) = label.split_once(" (").unwrap();
    let file = rest.trim_end_matches(')');
    let file = file.rsplit_once(':').map_or(file, |(f, _)| f);
    format!("{name} ({})", file.rsplit('/').next().unwrap())
}

#[test]
fn folded_formats_spilled_to_disk_are_complete_and_leave_nothing_behind() {
    let script = Script::new(&Interp::pyenv("3.12.1"), "record_paths.py");
    let mut target = Announced::start(&mut script.command());
    let pid = target.pid.to_string();
    let dir = TempDir::new();

    let collapsed = dir.path().join("paths.txt");
    let stderr = record_spilled(&pid, &collapsed);
    let text = std::fs::read_to_string(&collapsed).unwrap();
    let lines: Vec<(&str, u64)> = text
        .lines()
        .map(|l| {
            let (s, v) = l.rsplit_once(' ').unwrap();
            (s, v.parse().unwrap())
        })
        .collect();
    assert!(
        lines.len() >= 50,
        "{} distinct stacks:\n{text}",
        lines.len()
    );
    assert!(
        lines.windows(2).all(|w| w[0].0 < w[1].0),
        "lines not sorted and merged:\n{text}"
    );
    // Own and total time per function from the file against the live summary table. Each line's
    // µs are rounded (±0.5 µs) and the table's percentages too (±0.05).
    let weight: u64 = lines.iter().map(|(_, v)| v).sum();
    let slack = 0.051 + 100.0 * 0.5 * lines.len() as f64 / weight as f64;
    let mut own: BTreeMap<String, u64> = BTreeMap::new();
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for (stack, v) in &lines {
        let names: Vec<String> = stack.split(';').map(function_of).collect();
        *own.entry(names.last().unwrap().clone()).or_default() += v;
        for n in names.iter().collect::<BTreeSet<_>>() {
            *total.entry(n.clone()).or_default() += v;
        }
    }
    let pct = |m: &BTreeMap<String, u64>, k: &str| {
        100.0 * m.get(k).copied().unwrap_or(0) as f64 / weight as f64
    };
    for title in ["most own time", "most total time"] {
        for (f, (o, t)) in table(&stderr, title) {
            assert!(
                (o - pct(&own, &f)).abs() <= slack && (t - pct(&total, &f)).abs() <= slack,
                "{f}: table {o}/{t}, file {}/{} (slack {slack})\n{stderr}",
                pct(&own, &f),
                pct(&total, &f)
            );
        }
    }
    assert_eq!(spill_files_in(dir.path()), Vec::<String>::new());

    let svg = dir.path().join("paths.svg");
    record_spilled(&pid, &svg);
    let parsed = parse_svg(&svg);
    let paths: Vec<&String> = parsed
        .labels
        .iter()
        .filter(|l| l.contains("record_paths.py"))
        .collect();
    assert!(paths.len() >= 8, "{:?}", parsed.labels);
    assert_eq!(spill_files_in(dir.path()), Vec::<String>::new());

    // convert streams a raw recording into the same folding: spilled at every line or not at
    // all, the same bytes, and those of the profile's writer. The recorder's stack table is
    // tiny, so it forgets stacks and says so (FORGET records) and the stream drops them.
    let raw = dir.path().join("paths.raw");
    let run = strobe_cmd(&[
        "record",
        "--pid",
        &pid,
        "--duration",
        "1",
        "--rate",
        "1000",
        // A few stacks a generation: the table forgets as soon as the target has been
        // seen on a handful of paths, however few samples a loaded machine lets us take.
        "--stack-table-bytes",
        "600",
        "--format",
        "raw",
        "-o",
        raw.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_ok(&run, "record --format raw");
    target.close_stdin();
    let mut stream = RawStream::open(&raw).unwrap();
    while stream.next_event().unwrap().is_some() {}
    let forgotten = stream.tables().first_stack().index();
    assert!(
        forgotten > 0 && stream.tables().held_stacks() < stream.stack_definitions(),
        "{forgotten} stacks forgotten, {} held of {}",
        stream.tables().held_stacks(),
        stream.stack_definitions()
    );
    let profile = read_raw(&raw)
        .unwrap()
        .profile
        .with_options(ProfileOptions {
            per_thread: true,
            ..ProfileOptions::default()
        })
        .unwrap();
    for file in ["c.txt", "c.svg"] {
        let mut want = Vec::new();
        let kind = if file.ends_with("svg") {
            FormatKind::Svg
        } else {
            FormatKind::Collapsed
        };
        kind.writer().write(&profile, &mut want).unwrap();
        let mut outs = Vec::new();
        for budget in ["1", "1000000000"] {
            let out = dir.path().join(format!("{budget}.{file}"));
            let run = strobe_cmd(&[
                "convert",
                raw.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--threads",
            ])
            .env("STROBE_SPILL_BYTES", budget)
            .output()
            .unwrap();
            assert_ok(&run, "convert");
            outs.push(std::fs::read(&out).unwrap());
        }
        assert!(outs[0] == outs[1], "{file}: spilled and in-memory differ");
        assert!(
            outs[0] == want,
            "{file}: streamed and the profile's writer differ"
        );
        assert!(outs[0].len() > 1000, "{file}: {} bytes", outs[0].len());
        assert_eq!(spill_files_in(dir.path()), Vec::<String>::new());
    }
}

/// Start `strobe record` of `pid` into `out` spilling at every new line, and wait until its
/// spill directory exists; returns the child and the directory's name.
fn spilling(pid: &str, out: &Path) -> (std::process::Child, String) {
    let (child, _err, _seen) = spawn_recording_with(
        strobe_cmd(&[
            "record",
            "--pid",
            pid,
            "--rate",
            "1000",
            "-o",
            out.to_str().unwrap(),
        ])
        .env("STROBE_SPILL_BYTES", "1"),
    );
    let dir = out.parent().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // A poll, not a guess: it ends as soon as the first spill made the directory.
        if let [name] = spill_files_in(dir).as_slice() {
            return (child, name.clone());
        }
        assert!(Instant::now() < deadline, "no spill directory in {dir:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A second stop signal exits at once (128 + its number) without writing the output, and
/// removes the spill directory first; a SIGKILLed recording leaves its directory, which the
/// next `record` writing to the same directory removes, saying so.
#[test]
fn no_spill_directory_outlives_a_second_stop_signal_or_a_sigkill() {
    let script = Script::new(&Interp::pyenv("3.12.1"), "record_paths.py");
    let mut target = Announced::start(&mut script.command());
    let pid = target.pid.to_string();
    let dir = TempDir::new();

    let out = dir.path().join("twice.txt");
    let (mut child, _) = spilling(&pid, &out);
    let strobe = Pid::from_raw(child.id() as i32);
    // Two different signals are both delivered (two SIGINTs could merge into one pending):
    // SIGINT asks to stop and write, SIGTERM, the second, to exit at once.
    kill(strobe, Signal::SIGINT).unwrap();
    kill(strobe, Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + Signal::SIGTERM as i32),
        "{status}"
    );
    assert_eq!(spill_files_in(dir.path()), Vec::<String>::new());

    let out = dir.path().join("killed.txt");
    let (mut child, stale) = spilling(&pid, &out);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    assert_eq!(spill_files_in(dir.path()), std::slice::from_ref(&stale));
    let next = dir.path().join("next.txt");
    let args = [
        "record",
        "--pid",
        &pid,
        "--duration",
        "0.2",
        "-o",
        next.to_str().unwrap(),
    ];
    let stderr = assert_ok(&strobe_cmd(&args).output().unwrap(), "the next record");
    target.close_stdin();
    let said: Vec<&str> = stderr.lines().filter(|l| l.contains("spill")).collect();
    let removed = format!(
        "strobe: removed a spill directory left by a strobe that was killed: {}",
        dir.path().join(&stale).display()
    );
    assert_eq!(said, [removed.as_str()], "{stderr}");
    assert_eq!(spill_files_in(dir.path()), Vec::<String>::new());
}

/// `go tool pprof -top` of `path` by wall time: per function name, (flat %, cum %).
fn pprof_top(path: &Path) -> BTreeMap<String, (f64, f64)> {
    let text = go_pprof(
        &[
            "-top",
            "-sample_index=wall",
            "-nodecount=100000",
            "-nodefraction=0",
        ],
        path,
    );
    let pct = |s: &str| s.trim_end_matches('%').parse::<f64>().ok();
    let mut rows = BTreeMap::new();
    for l in text.lines() {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.len() < 6 {
            continue;
        }
        if let (Some(flat), Some(cum)) = (pct(cols[1]), pct(cols[4])) {
            rows.insert(cols[5..].join(" "), (flat, cum));
        }
    }
    assert!(!rows.is_empty(), "no rows in\n{text}");
    rows
}

#[test]
fn pprof_spilled_to_disk_has_the_live_shares() {
    let script = Script::new(&Interp::pyenv("3.12.1"), "record_paths.py");
    let mut target = Announced::start(&mut script.command());
    let pid = target.pid.to_string();
    let dir = TempDir::new();
    let path = dir.path().join("paths.pb.gz");
    let stderr = record_spilled(&pid, &path);
    target.close_stdin();
    assert_pprof_shares(&path, &stderr);
    assert_eq!(spill_files_in(dir.path()), Vec::<String>::new());
}

/// `go tool pprof` reads `path`, and its shares by function are the ones of the summary table
/// in `stderr` (a recording's, counted live).
fn assert_pprof_shares(path: &Path, stderr: &str) {
    let top = pprof_top(path);
    // The table's percentages are rounded to 0.1, pprof's to 0.01.
    let slack = 0.05 + 0.005 + 1e-9;
    for title in ["most own time", "most total time"] {
        for (f, (o, t)) in table(stderr, title) {
            let name = f.split_once(" (").map_or(f.as_str(), |(n, _)| n);
            // pprof shows a name in angle brackets, like `<module>`, as `<unknown>`.
            let name = if name.starts_with('<') {
                "<unknown>"
            } else {
                name
            };
            let (flat, cum) = top.get(name).copied().unwrap_or((0.0, 0.0));
            assert!(
                (o - flat).abs() <= slack && (t - cum).abs() <= slack,
                "{f}: table {o}/{t}, pprof {flat}/{cum}\n{stderr}\n{top:?}"
            );
        }
    }
    assert!(top.len() >= 8, "{top:?}");
}

#[test]
fn speedscope_spilled_to_disk_has_the_live_shares() {
    let script = Script::new(&Interp::pyenv("3.12.1"), "record_paths.py");
    let mut target = Announced::start(&mut script.command());
    let pid = target.pid.to_string();
    let dir = TempDir::new();
    let path = dir.path().join("paths.speedscope.json");
    let stderr = record_spilled(&pid, &path);
    target.close_stdin();
    assert_speedscope_shares(&path, &stderr);
    assert_eq!(spill_files_in(dir.path()), Vec::<String>::new());
}

/// `path` is speedscope JSON whose shares by function, from its samples' weights, are the ones
/// of the summary table in `stderr` (a recording's, counted live).
fn assert_speedscope_shares(path: &Path, stderr: &str) {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let frames: Vec<String> = v["shared"]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let file = f["file"].as_str().unwrap();
            let name = f["name"].as_str().unwrap();
            format!("{name} ({})", file.rsplit('/').next().unwrap())
        })
        .collect();
    let mut own: BTreeMap<String, u64> = BTreeMap::new();
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    let mut weight = 0u64;
    let mut n = 0;
    for p in v["profiles"].as_array().unwrap() {
        let samples = p["samples"].as_array().unwrap();
        let weights = p["weights"].as_array().unwrap();
        assert_eq!(samples.len(), weights.len());
        for (s, w) in samples.iter().zip(weights) {
            let w = w.as_u64().unwrap();
            let names: Vec<&String> = s
                .as_array()
                .unwrap()
                .iter()
                .map(|i| &frames[usize::try_from(i.as_u64().unwrap()).unwrap()])
                .collect();
            *own.entry(names.last().unwrap().to_string()).or_default() += w;
            for f in names.iter().collect::<BTreeSet<_>>() {
                *total.entry(f.to_string()).or_default() += w;
            }
            weight += w;
            n += 1;
        }
    }
    assert!(n > 500, "{n} samples");
    let pct = |m: &BTreeMap<String, u64>, k: &str| {
        100.0 * m.get(k).copied().unwrap_or(0) as f64 / weight as f64
    };
    // The table's percentages are rounded to 0.1; the file's weights are exact.
    let slack = 0.05 + 1e-9;
    for title in ["most own time", "most total time"] {
        for (f, (o, t)) in table(stderr, title) {
            assert!(
                (o - pct(&own, &f)).abs() <= slack && (t - pct(&total, &f)).abs() <= slack,
                "{f}: table {o}/{t}, file {}/{}\n{stderr}",
                pct(&own, &f),
                pct(&total, &f)
            );
        }
    }
}

/// `convert` writes pprof and speedscope from a raw file as a stream (spilling at every new
/// stack here): the files have the shares the recording's live summary had.
#[test]
fn convert_streams_pprof_and_speedscope_from_raw_with_the_live_shares() {
    let script = Script::new(&Interp::pyenv("3.12.1"), "record_paths.py");
    let mut target = Announced::start(&mut script.command());
    let pid = target.pid.to_string();
    let dir = TempDir::new();
    let raw = dir.path().join("paths.raw");
    let stderr = record_spilled(&pid, &raw);
    target.close_stdin();
    let input = raw.to_str().unwrap();
    for name in ["paths.pb.gz", "paths.speedscope.json"] {
        let out = dir.path().join(name);
        let run = strobe_cmd(&["convert", input, "-o", out.to_str().unwrap()])
            .env("STROBE_SPILL_BYTES", "1")
            .output()
            .unwrap();
        let said = assert_ok(&run, "convert with STROBE_SPILL_BYTES=1");
        // Streamed: written through the format's spilling writer, not from a whole profile.
        assert!(said.contains("spilled to disk"), "no spill: {said}");
        if name.ends_with(".pb.gz") {
            assert_pprof_shares(&out, &stderr);
        } else {
            assert_speedscope_shares(&out, &stderr);
        }
    }
    assert_eq!(spill_files_in(dir.path()), Vec::<String>::new());
}
