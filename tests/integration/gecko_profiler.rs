//! A `.gecko.json` strobe wrote, loaded by the Firefox Profiler's own code: the profiler's
//! `profiler-cli` (npm `@firefox-devtools/profiler-cli`, provisioned by `.ci/provision.sh`
//! under `$STROBE_CACHE`) bundles the front end's profile import, upgrade and processing code for
//! Node. The built web front end itself is not published on the npm registry (see
//! docs/VERIFICATION.md), so no browser is involved.
//!
//! The target, `tests/targets/top_split.py --until-eof`, has two threads: the main thread
//! alternating `heavy_work` (30 ms) and `light_work` (10 ms), and `eof-waiter` asleep in
//! `read(2)`. Recorded with `--idle`, both are tracks. The test fails if the profiler refuses
//! the file, or shows other threads, or fewer samples than strobe wrote, or not the functions and
//! categories the target has. The same once more spilled to disk at every sample.

use crate::harness::{Announced, Interp, Script, TempDir};
use crate::record::{assert_ok, strobe_cmd};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A profiler-cli session (a daemon the CLI starts on `load`), with its own home directory;
/// stopped on drop.
struct ProfilerCli {
    script: PathBuf,
    home: TempDir,
}

impl ProfilerCli {
    fn new() -> ProfilerCli {
        let script = strobe_testkit::interpreters::strobe_cache()
            .join("profiler-cli-0.10.0/package/dist/profiler-cli.js");
        assert!(
            script.is_file(),
            "{} is missing: run .ci/provision.sh (it fetches the Firefox Profiler's CLI)",
            script.display()
        );
        ProfilerCli {
            script,
            home: TempDir::new(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg(&self.script)
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("NODE_OPTIONS");
        cmd
    }

    /// `profiler-cli ARGS --json`, which must succeed: its JSON.
    fn json(&self, args: &[&str]) -> Value {
        let out =
            self.command(args).arg("--json").output().expect(
                "node is required to run the Firefox Profiler's loader: run .ci/provision.sh",
            );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "profiler-cli {args:?} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // `load` says what it does on a line of its own before the JSON.
        let start = stdout
            .find('{')
            .unwrap_or_else(|| panic!("no JSON from profiler-cli {args:?}: {stdout}"));
        serde_json::from_str(&stdout[start..])
            .unwrap_or_else(|e| panic!("profiler-cli {args:?}: {e}: {stdout}"))
    }
}

impl Drop for ProfilerCli {
    fn drop(&mut self) {
        let _ = self.command(&["stop", "--all"]).output();
    }
}

/// Samples per thread name in the file as strobe wrote it.
fn samples_in_file(path: &Path) -> Vec<(String, u64)> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["samples"]["length"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `(function name, self samples)` of a `thread samples` answer.
fn self_samples(samples: &Value) -> Vec<(String, u64)> {
    samples["topFunctionsBySelf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["selfSamples"].as_f64().unwrap() as u64,
            )
        })
        .collect()
}

/// Samples per category of a `thread samples` answer.
fn categories(samples: &Value) -> Vec<(String, u64)> {
    samples["categoryBreakdown"]["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["samples"].as_f64().unwrap() as u64,
            )
        })
        .collect()
}

#[test]
fn a_recording_loads_in_the_firefox_profilers_own_loader() {
    recording_loads(None);
}

/// Spilled at every sample, with a stack cache of a few entries: stack table entries are made
/// again (duplicates), which the loader takes.
#[test]
fn a_recording_spilled_to_disk_loads_the_same() {
    recording_loads(Some("1"));
}

/// Records with the spill budget `spill` (`STROBE_SPILL_BYTES`, if given) and loads the file.
fn recording_loads(spill: Option<&str>) {
    let script = Script::new(&Interp::pyenv("3.12.1"), "top_split.py");
    let mut target = Announced::start(script.command().arg("--until-eof"));
    let dir = TempDir::new();
    let file = dir.path().join("split.gecko.json");
    let pid = target.pid.to_string();
    let mut cmd = strobe_cmd(&[
        "record",
        "--pid",
        &pid,
        "--duration",
        "2",
        "--idle",
        "-o",
        file.to_str().unwrap(),
    ]);
    if let Some(budget) = spill {
        cmd.env("STROBE_SPILL_BYTES", budget);
    }
    let run = cmd.output().unwrap();
    target.close_stdin();
    assert_ok(&run, "record --idle to .gecko.json");
    let written = samples_in_file(&file);

    let cli = ProfilerCli::new();
    cli.json(&["load", file.to_str().unwrap()]);
    let info = cli.json(&["profile", "info"]);
    assert_eq!(info["processCount"], 1, "{info:#}");
    assert_eq!(info["threadCount"], 2, "{info:#}");
    let process = &info["processes"][0];
    assert_eq!(process["pid"].as_str(), Some(pid.as_str()), "{info:#}");
    let threads: Vec<(String, String)> = process["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["threadHandle"].as_str().unwrap().to_string(),
                t["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let handle = |prefix: &str| {
        threads
            .iter()
            .find(|(_, name)| name.starts_with(prefix))
            .unwrap_or_else(|| panic!("no thread {prefix}: {threads:?}"))
            .0
            .clone()
    };
    let main = handle("MainThread (");
    let waiter = handle("eof-waiter (");

    // The main thread: every sample strobe wrote, all running Python, heavy_work ahead of
    // light_work.
    let samples = cli.json(&["thread", "samples", "--thread", &main, "--include-idle"]);
    let total = samples["categoryBreakdown"]["totalSamples"]
        .as_u64()
        .unwrap();
    let main_name = &threads.iter().find(|(h, _)| *h == main).unwrap().1;
    let in_file = written.iter().find(|(n, _)| n == main_name).unwrap().1;
    assert!(in_file >= 20, "only {in_file} samples written: {written:?}");
    assert_eq!(total, in_file, "the profiler lost samples: {samples:#}");
    assert_eq!(
        categories(&samples),
        [("Python".to_string(), total)],
        "{samples:#}"
    );
    let own = self_samples(&samples);
    let of = |f: &str| own.iter().find(|(n, _)| n == f).map_or(0, |(_, s)| *s);
    assert!(
        of("heavy_work") > of("light_work") && of("light_work") > 0,
        "{own:?}"
    );
    // `main` itself runs only between the calls and, on a loaded machine, in the moment
    // between printing READY and the first call, where a first sample can find it.
    assert_eq!(
        of("heavy_work") + of("light_work") + of("main"),
        total,
        "samples outside the two functions and main: {own:?}"
    );

    // The waiter: asleep in read(2) throughout, so idle, and the profiler says so.
    let samples = cli.json(&["thread", "samples", "--thread", &waiter, "--include-idle"]);
    let total = samples["categoryBreakdown"]["totalSamples"]
        .as_u64()
        .unwrap();
    assert!(total > 0, "{samples:#}");
    assert_eq!(
        categories(&samples),
        [("Idle".to_string(), total)],
        "{samples:#}"
    );
    assert!(
        self_samples(&samples)
            .iter()
            .any(|(f, n)| f == "wait_for_eof" && *n == total),
        "{samples:#}"
    );
}

/// The profiler's loader refuses what is not a profile: the check above can fail.
#[test]
fn the_profilers_loader_refuses_a_damaged_file() {
    let dir = TempDir::new();
    let file = dir.path().join("damaged.gecko.json");
    std::fs::write(
        &file,
        r#"{"meta":{"version":27,"preprocessedProfileVersion":56},"threads":[{}]}"#,
    )
    .unwrap();
    let cli = ProfilerCli::new();
    let out = cli
        .command(&["load", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Profile load failed"),
        "{out:?}"
    );
}
