//! `strobe record`, `convert` and `diff` against real interpreters.
//!
//! Per interpreter: a launched script (`tests/targets/record_work.py`, busy on one known line)
//! recorded as raw, converted to every format, each output parsed and checked for the stack the
//! script's `# @line:` markers predict; and an attached process (the dump target, every thread
//! blocked on a known line) recorded with `--idle`, checked the same way.

use crate::harness::{expected_stack, markers, strobe_bin, Interp, Target, TempDir};
use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Output, Stdio};

pub use crate::harness::Script;

/// Environment like the dump tests use: nothing inherited that changes how Python starts.
pub fn strobe_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(strobe_bin());
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LC_ALL", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    cmd
}

/// Run strobe to completion; returns the output, failing the test on a spawn error.
pub fn run_strobe(args: &[&str]) -> Output {
    strobe_cmd(args).output().expect("could not run strobe")
}

pub fn assert_ok(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}): {stderr}",
        out.status
    );
    stderr
}

/// `strobe record --pid PID ARGS... -o OUT`, which must succeed; returns its stderr.
pub fn record_pid(pid: i32, args: &[&str], out: &Path) -> String {
    let pid = pid.to_string();
    let mut all = vec!["record", "--pid", &pid];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", out.to_str().unwrap()]);
    assert_ok(&run_strobe(&all), "record")
}

/// `strobe convert RAW ARGS... -o OUT` (the format OUT's extension names), which must succeed;
/// returns OUT.
pub fn convert_to(raw: &Path, args: &[&str], out: impl AsRef<Path>) -> std::path::PathBuf {
    let out = out.as_ref();
    let mut all = vec!["convert", raw.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", out.to_str().unwrap()]);
    assert_ok(&run_strobe(&all), "convert");
    out.to_path_buf()
}

/// Start strobe with stderr piped, and wait for its "recording" line (sampling has started).
/// The child is handed back to the caller, who waits for it.
pub fn spawn_recording(args: &[&str]) -> (Child, BufReader<ChildStderr>, String) {
    spawn_recording_with(&mut strobe_cmd(args))
}

/// [`spawn_recording`] with any strobe command line (an environment variable set, say).
#[allow(clippy::zombie_processes)]
pub fn spawn_recording_with(cmd: &mut Command) -> (Child, BufReader<ChildStderr>, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = err.read_line(&mut line).unwrap();
        if n == 0 {
            let status = child.wait().unwrap();
            panic!("strobe ended ({status}) before recording: {seen}");
        }
        seen.push_str(&line);
        if line.starts_with("strobe: recording process") {
            return (child, err, seen);
        }
    }
}

/// Run `strobe ARGS`, whose command is `record_work.py stdin:SECONDS`, and start the target's
/// busy part only once strobe says it is recording (the target inherits strobe's stdin): the
/// busy part is then sampled however long attaching took on a loaded machine.
pub fn record_launched_work(args: &[&str]) -> Output {
    launched_work(&mut strobe_cmd(args))
}

/// [`record_launched_work`] with any strobe command line (another strobe binary, say).
pub fn launched_work(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("could not run strobe");
    let mut stdin = child.stdin.take().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if line.starts_with("strobe: recording process") {
            stdin.write_all(b"go\n").unwrap();
            break;
        }
    }
    drop(stdin);
    err.read_to_string(&mut seen).unwrap();
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    Output {
        status,
        stdout,
        stderr: seen.into_bytes(),
    }
}

/// The stacks of an output file, outermost frame first, with their weights; and every frame
/// label the file names.
#[derive(Debug, Default)]
pub struct Parsed {
    pub stacks: Vec<(Vec<String>, f64)>,
    pub labels: HashSet<String>,
    /// pprof only: each frame's label with its function's start line (`s=` of `-raw`).
    pub start_lines: HashSet<(String, i64)>,
}

impl Parsed {
    /// Whether some stack ends with `suffix` (outermost first).
    pub fn has_suffix(&self, suffix: &[String]) -> bool {
        self.stacks.iter().any(|(s, _)| s.ends_with(suffix))
    }

    /// Total weight of stacks equal to `stack`, as a fraction of all.
    pub fn share(&self, stack: &[String]) -> f64 {
        let total: f64 = self.stacks.iter().map(|(_, w)| w).sum();
        let mine: f64 = self
            .stacks
            .iter()
            .filter(|(s, _)| s == stack)
            .map(|(_, w)| w)
            .sum();
        mine / total
    }
}

pub fn parse_collapsed(path: &Path) -> Parsed {
    let text = std::fs::read_to_string(path).unwrap();
    let mut p = Parsed::default();
    for line in text.lines() {
        let (stack, value) = line.rsplit_once(' ').unwrap();
        let frames: Vec<String> = stack.split(';').map(str::to_string).collect();
        p.labels.extend(frames.iter().cloned());
        p.stacks.push((frames, value.parse().unwrap()));
    }
    p
}

pub fn parse_speedscope(path: &Path) -> Parsed {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(
        v["$schema"],
        "https://www.speedscope.app/file-format-schema.json"
    );
    let frames: Vec<String> = v["shared"]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| match f["line"].as_u64() {
            Some(l) => format!(
                "{} ({}:{l})",
                f["name"].as_str().unwrap(),
                f["file"].as_str().unwrap()
            ),
            None => format!(
                "{} ({})",
                f["name"].as_str().unwrap(),
                f["file"].as_str().unwrap()
            ),
        })
        .collect();
    let mut p = Parsed {
        labels: frames.iter().cloned().collect(),
        ..Default::default()
    };
    for prof in v["profiles"].as_array().unwrap() {
        assert_eq!(prof["type"], "sampled");
        let weights = prof["weights"].as_array().unwrap();
        for (s, w) in prof["samples"].as_array().unwrap().iter().zip(weights) {
            let stack = s
                .as_array()
                .unwrap()
                .iter()
                .map(|i| frames[i.as_u64().unwrap() as usize].clone())
                .collect();
            p.stacks.push((stack, w.as_f64().unwrap()));
        }
    }
    p
}

/// The Firefox Profiler's processed profile (version 56): every index in range, stack prefixes
/// before their stacks, sample times non-decreasing per thread, tracks named `name (tid)`;
/// stacks rebuilt from the stack, frame and func tables with the shared string array.
pub fn parse_gecko(path: &Path) -> Parsed {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(v["meta"]["preprocessedProfileVersion"], 56);
    assert!(v["meta"]["interval"].as_f64().unwrap() > 0.0);
    let ncat = v["meta"]["categories"].as_array().unwrap().len();
    let strings: Vec<&str> = v["shared"]["stringArray"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let ix = |x: &Value| x.as_u64().unwrap() as usize;
    let mut p = Parsed::default();
    for th in v["threads"].as_array().unwrap() {
        let tid = th["tid"].as_u64().unwrap();
        let name = th["name"].as_str().unwrap();
        assert!(name.ends_with(&format!(" ({tid})")), "track name {name}");
        assert!(th["pid"].is_string());
        let (stacks, frames, funcs, samples) = (
            &th["stackTable"],
            &th["frameTable"],
            &th["funcTable"],
            &th["samples"],
        );
        let nframe = ix(&frames["length"]);
        let mut labels = Vec::new();
        for f in 0..nframe {
            assert!(ix(&frames["category"][f]) < ncat);
            let func = ix(&frames["func"][f]);
            assert!(func < ix(&funcs["length"]));
            let fname = strings[ix(&funcs["name"][func])];
            let file = strings[ix(&funcs["fileName"][func])];
            labels.push(match frames["line"][f].as_u64() {
                Some(l) => format!("{fname} ({file}:{l})"),
                None => format!("{fname} ({file})"),
            });
        }
        p.labels.extend(labels.iter().cloned());
        let nstack = ix(&stacks["length"]);
        let mut paths: Vec<Vec<String>> = Vec::with_capacity(nstack);
        for s in 0..nstack {
            let frame = ix(&stacks["frame"][s]);
            assert!(frame < nframe);
            let mut path = match stacks["prefix"][s].as_u64() {
                Some(pre) => {
                    assert!((pre as usize) < s, "stack {s}: prefix {pre} comes later");
                    paths[pre as usize].clone()
                }
                None => Vec::new(),
            };
            path.push(labels[frame].clone());
            paths.push(path);
        }
        let n = ix(&samples["length"]);
        let mut last = f64::NEG_INFINITY;
        for i in 0..n {
            let t = samples["time"][i].as_f64().unwrap();
            assert!(t >= last, "{name}: sample times go back");
            last = t;
            let stack = ix(&samples["stack"][i]);
            assert!(stack < nstack);
            p.stacks
                .push((paths[stack].clone(), samples["weight"][i].as_f64().unwrap()));
        }
    }
    p
}

pub fn parse_chrome(path: &Path) -> Parsed {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut p = Parsed::default();
    for e in v["traceEvents"].as_array().unwrap() {
        if e["ph"] == "X" {
            assert!(e["dur"].as_f64().unwrap() >= 0.0);
            p.labels.insert(e["name"].as_str().unwrap().to_string());
        }
    }
    p
}

/// Parse the SVG as XML (Python's expat parser: it rejects anything not well-formed) and
/// collect the frame labels from the `<title>` of every frame.
pub fn parse_svg(path: &Path) -> Parsed {
    let script = r#"
import sys, json, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
titles = [el.text for el in root.iter() if el.tag.endswith('}title') and el.text]
sys.stdout.write(json.dumps(titles))
"#;
    let out = strobe_testkit::interpreters::debian_3_11()
        .command()
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the SVG is not well-formed XML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let titles: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    let mut p = Parsed::default();
    for t in titles {
        // "label (1,234 µs, 12.5%)"
        if let Some((label, _)) = t.rsplit_once(" (") {
            p.labels.insert(label.to_string());
        }
    }
    p
}

/// What `go tool pprof ARGS PATH` prints, asserting that it read the file.
pub fn go_pprof(args: &[&str], path: &Path) -> String {
    let out = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .arg(path)
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("go is required to check pprof output: run .ci/provision.sh");
    assert!(
        out.status.success(),
        "go tool pprof rejected the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `go tool pprof -raw`: one label per location line (`N: 0x0 M=1 NAME FILE:LINE s=START`, START
/// the function's start line; pprof moves names in angle brackets, like `<module>`, into
/// `s=START(<module>)`).
pub fn parse_pprof(path: &Path) -> Parsed {
    let text = go_pprof(&["-raw"], path);
    let mut p = Parsed::default();
    let locations = text
        .split_once("\nLocations\n")
        .map(|(_, l)| l)
        .unwrap_or_else(|| panic!("no locations in {text}"));
    for line in locations.lines() {
        let Some(rest) = line.split_once(" M=1 ").map(|(_, r)| r) else {
            break;
        };
        let rest = rest.trim_end();
        let (main, start) = rest
            .rsplit_once(" s=")
            .unwrap_or_else(|| panic!("no start line in {line:?}"));
        let digits = start
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(start.len());
        let start_line: i64 = start[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("bad start line in {line:?}"));
        let sys = start[digits..]
            .trim_start_matches('(')
            .trim_end_matches(')');
        let (name, file_line) = main.rsplit_once(' ').unwrap_or(("", main));
        let name = if name.trim().is_empty() {
            sys
        } else {
            name.trim()
        };
        let label = format!("{name} ({file_line})");
        p.start_lines.insert((label.clone(), start_line));
        p.labels.insert(label);
    }
    p
}

/// Convert `raw` to every format and parse each.
pub fn convert_all(raw: &Path, dir: &Path, extra: &[&str]) -> Vec<(&'static str, Parsed)> {
    let mut out = Vec::new();
    for (format, ext) in [
        ("collapsed", "txt"),
        ("speedscope", "json"),
        ("chrome", "trace.json"),
        ("gecko", "gecko.json"),
        ("svg", "svg"),
        ("pprof", "pb.gz"),
        ("raw", "raw"),
    ] {
        let path = dir.join(format!("converted.{ext}"));
        let mut args = vec![
            "convert",
            raw.to_str().unwrap(),
            "-o",
            path.to_str().unwrap(),
            "--format",
            format,
        ];
        args.extend_from_slice(extra);
        assert_ok(&run_strobe(&args), &format!("convert to {format}"));
        let parsed = match format {
            "collapsed" => parse_collapsed(&path),
            "speedscope" => parse_speedscope(&path),
            "chrome" => parse_chrome(&path),
            "gecko" => parse_gecko(&path),
            "svg" => parse_svg(&path),
            "pprof" => parse_pprof(&path),
            _ => {
                // A raw file converted to raw reads back to the same stacks.
                let again = dir.join("again.txt");
                assert_ok(
                    &run_strobe(&[
                        "convert",
                        path.to_str().unwrap(),
                        "-o",
                        again.to_str().unwrap(),
                    ]),
                    "convert raw→raw→collapsed",
                );
                parse_collapsed(&again)
            }
        };
        out.push((format, parsed));
    }
    out
}

/// Check that `parsed` (of `format`) shows `stack` (outermost first): as a stack where the
/// format has stacks, else its frames as labels (pprof: function names).
pub fn check_stack(format: &str, parsed: &Parsed, stack: &[String]) {
    match format {
        "collapsed" | "speedscope" | "gecko" | "raw" => assert!(
            parsed.has_suffix(stack),
            "{format}: no stack ends with {stack:#?}; stacks: {:#?}",
            parsed.stacks
        ),
        _ => {
            for label in stack {
                assert!(
                    parsed.labels.contains(label),
                    "{format}: no frame {label}: {:?}",
                    parsed.labels
                );
            }
        }
    }
}

/// `record_work.py`'s `FIRST_LINES <module>=N main=N hot=N` line: function → first line.
pub fn first_lines(stdout: &[u8]) -> std::collections::HashMap<String, i64> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("FIRST_LINES "))
        .unwrap_or_else(|| panic!("the target did not print its first lines: {text}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// Launch `record_work.py` under `interp` as a raw recording, then check every format.
pub fn check_launch(interp: &Interp) {
    let script = Script::new(interp, "record_work.py");
    let dir = TempDir::new();
    let raw = dir.path().join("work.raw");
    let mut args = vec!["record", "-o", raw.to_str().unwrap(), "--rate", "200", "--"];
    let cmd: Vec<&str> = script.command.iter().map(String::as_str).collect();
    args.extend_from_slice(&cmd);
    args.push("stdin:0.8");
    let out = record_launched_work(&args);
    let stderr = assert_ok(&out, "strobe record (launch)");
    assert!(
        stderr.contains("the command exited with status 0"),
        "{stderr}"
    );
    let want = vec![
        script.label("<module>", "module"),
        script.label("main", "main"),
        script.label("hot", "hot"),
    ];
    // The target's own word for each function's first line (`co_firstlineno`); `main` and
    // `hot` start at their `def` lines.
    let firsts = first_lines(&out.stdout);
    let lines = script.lines();
    assert_eq!(firsts["main"], i64::from(lines["def_main"]));
    assert_eq!(firsts["hot"], i64::from(lines["def_hot"]));
    for (format, parsed) in convert_all(&raw, dir.path(), &[]) {
        check_stack(format, &parsed, &want);
        if format == "pprof" {
            // pprof's Function.start_line, as `go tool pprof -raw` shows it (`s=`).
            let want_starts = [
                (want[0].clone(), firsts["<module>"]),
                (want[1].clone(), firsts["main"]),
                (want[2].clone(), firsts["hot"]),
            ];
            for w in &want_starts {
                assert!(
                    parsed.start_lines.contains(w),
                    "pprof: no frame {w:?} (label, start line): {:?}",
                    parsed.start_lines
                );
            }
        }
        if format == "collapsed" {
            // The busy line is where the script spends its time: well over half of it (the
            // rest is interpreter start-up and exit).
            let share = parsed.share(&want);
            assert!(
                share > 0.5,
                "hot stack has only {share:.2} of the time: {parsed:#?}"
            );
        }
    }
}

/// `strobe record --pid PID --idle --duration 0.3 -o PATH`, which must succeed.
pub fn record_idle_briefly(pid: &str, path: &Path) {
    let out = run_strobe(&[
        "record",
        "--pid",
        pid,
        "--idle",
        "--duration",
        "0.3",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert_ok(&out, "strobe record --pid");
}

/// Attach to the dump target under `interp` with `--idle`, and check every thread's stack in
/// collapsed, speedscope and gecko output recorded directly.
pub fn check_attach(interp: &Interp) {
    let target = Target::start(interp);
    let marks = markers(&target.script_here);
    let dir = TempDir::new();
    let pid = target.pid().to_string();
    let mut outputs = Vec::new();
    for (format, ext) in [
        ("collapsed", "txt"),
        ("speedscope", "json"),
        ("gecko", "gecko.json"),
    ] {
        let path = dir.path().join(format!("attach.{ext}"));
        record_idle_briefly(&pid, &path);
        outputs.push((format, path));
    }
    for (format, path) in outputs {
        let parsed = match format {
            "collapsed" => parse_collapsed(&path),
            "gecko" => parse_gecko(&path),
            _ => parse_speedscope(&path),
        };
        for (name, _, _) in &target.info.threads {
            let (frames, _) = expected_stack(name, target.info.version, target.info.depth, &marks);
            let want: Vec<String> = frames
                .iter()
                .rev()
                .map(|f| format!("{} ({}:{})", f.function, target.script_in_target, f.line))
                .collect();
            check_stack(format, &parsed, &want);
        }
    }
}

// `record` launching the target and attaching to it, once per interpreter of the registry.
strobe_testkit::per_interpreter! {
    fn launch(interp) {
        check_launch(&Interp::from(interp));
    }
}

strobe_testkit::per_interpreter! {
    fn attach(interp) {
        check_attach(&Interp::from(interp));
    }
}

/// Every format written directly by `record` (not through convert), on one interpreter.
#[test]
fn every_format_directly() {
    let interp = Interp::pyenv("3.12.1");
    let script = Script::new(&interp, "record_work.py");
    let dir = TempDir::new();
    let want = vec![
        script.label("<module>", "module"),
        script.label("main", "main"),
        script.label("hot", "hot"),
    ];
    let formats = [
        ("collapsed", "out.txt"),
        ("speedscope", "out.speedscope.json"),
        ("chrome", "out.trace.json"),
        ("gecko", "out.gecko.json"),
        ("svg", "out.svg"),
        ("pprof", "out.pb.gz"),
    ];
    // Run the recordings in parallel, each target busy for 0.8 s of its own CPU time once its
    // strobe is recording.
    let children: Vec<_> = formats
        .iter()
        .map(|(_, file)| {
            let path = dir.path().join(file);
            let mut args = vec![
                "record".to_string(),
                "-o".into(),
                path.to_str().unwrap().into(),
                "--".into(),
            ];
            args.extend(script.command.iter().cloned());
            args.push("stdin:0.8".into());
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                record_launched_work(&args)
            })
        })
        .collect();
    for ((format, file), child) in formats.iter().zip(children) {
        let out = child.join().unwrap();
        let stderr = assert_ok(&out, &format!("record {format}"));
        // The format came from the extension.
        assert!(stderr.contains(&format!("({format})")), "{stderr}");
        let path = dir.path().join(file);
        let parsed = match *format {
            "collapsed" => parse_collapsed(&path),
            "speedscope" => parse_speedscope(&path),
            "chrome" => parse_chrome(&path),
            "gecko" => parse_gecko(&path),
            "svg" => parse_svg(&path),
            _ => parse_pprof(&path),
        };
        check_stack(format, &parsed, &want);
    }
}

/// `strobe diff` of two raw recordings renders a well-formed SVG with both profiles' frames.
#[test]
fn diff_of_two_recordings() {
    let interp = Interp::pyenv("3.11.7");
    let script = Script::new(&interp, "record_work.py");
    let dir = TempDir::new();
    let mut raws = Vec::new();
    let children: Vec<_> = ["base.raw", "new.raw"]
        .iter()
        .map(|name| {
            let path = dir.path().join(name);
            raws.push(path.clone());
            let mut args = vec![
                "record".to_string(),
                "-o".into(),
                path.to_str().unwrap().into(),
                "--".into(),
            ];
            args.extend(script.command.iter().cloned());
            args.push("1.0".into());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            strobe_cmd(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        assert_ok(&c.wait_with_output().unwrap(), "record raw");
    }
    let svg = dir.path().join("diff.svg");
    let out = run_strobe(&[
        "diff",
        raws[0].to_str().unwrap(),
        raws[1].to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert_ok(&out, "strobe diff");
    let parsed = parse_svg(&svg);
    assert!(
        parsed.labels.contains(&script.label("hot", "hot")),
        "{parsed:?}"
    );
}

/// Bad input: one clear line, non-zero exit, no file.
#[test]
fn bad_input_is_refused_before_anything_starts() {
    let dir = TempDir::new();
    let out_path = dir.path().join("out.svg");
    let o = out_path.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["record", "--rate", "0", "-o", o, "--", "true"],
            "--rate 0 is out of range",
        ),
        (
            vec!["record", "--rate", "5000000", "-o", o, "--", "true"],
            "between 0.01 and 1000000",
        ),
        (
            vec!["record", "--rate", "nan", "-o", o, "--", "true"],
            "out of range",
        ),
        (
            vec!["record", "--format", "html", "-o", o, "--", "true"],
            "invalid value 'html'",
        ),
        (
            vec!["record", "-o", "/nonexistent-dir/x.svg", "--", "true"],
            "the directory /nonexistent-dir does not exist",
        ),
        (
            vec!["record", "--duration=-1", "-o", o, "--", "true"],
            "--duration -1 is not a positive number",
        ),
        (
            vec!["record", "--duration", "0", "-o", o, "--", "true"],
            "--duration 0 is not a positive number",
        ),
        (vec!["record", "-o", o], "nothing to record"),
        (
            vec!["record", "--pid", "1", "-o", o, "--", "true"],
            "not both",
        ),
        (
            vec!["convert", "/nonexistent.raw", "-o", o],
            "cannot read /nonexistent.raw",
        ),
    ];
    for (args, want) in cases {
        let out = run_strobe(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("strobe: error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!out_path.exists(), "{args:?} left a file");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{args:?} left a file"
        );
    }
}

/// A launched command keeps the open-files limit it was given, while strobe raises its own
/// soft limit to the hard one (it keeps descriptors per thread it watches).
#[test]
fn a_launched_command_keeps_its_open_files_limit() {
    let python = strobe_testkit::interpreters::pyenv_version("3.12.1")
        .require()
        .path();
    let dir = TempDir::new();
    let out = dir.path().join("limits.txt");
    let script = format!(
        "import os, resource, time\n\
         soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n\
         def strobes():\n\
         \x20   with open('/proc/%d/limits' % os.getppid()) as f:\n\
         \x20       return [l for l in f if l.startswith('Max open files')][0].split()[3]\n\
         # strobe raises its limit once it has attached: wait for that (at most 20 s).\n\
         deadline = time.time() + 20\n\
         while strobes() != '4096' and time.time() < deadline:\n\
         \x20   time.sleep(0.01)\n\
         open({out:?}, 'w').write('%d %s' % (soft, strobes()))\n",
        out = out.to_str().unwrap()
    );
    let status = std::process::Command::new("prlimit")
        .arg("--nofile=512:4096")
        .arg(strobe_bin())
        .args(["record", "-q", "--rate", "100", "-o"])
        .arg(dir.path().join("p.collapsed"))
        .arg("--")
        .arg(python)
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
    let got = std::fs::read_to_string(&out).unwrap();
    assert_eq!(got, "512 4096", "the command's soft limit, then strobe's");
}
