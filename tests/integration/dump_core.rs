//! `strobe dump --core`: a core of a target, taken with gdb's `gcore` or written by the kernel
//! when the target dies of SIGABRT, dumps the same as the live target did just before; broken
//! and mismatched cores give one line and exit 1.
//!
//! Kernel cores: the target alone gets an unlimited core size (`prlimit`), and runs in a
//! directory of its own; the machine's `core_pattern` must be a plain file name (the kernel's
//! default `core`), which puts the core in that directory. Nothing global is changed.

use crate::harness::{check_dump, dump_json, strobe, Interp, Target, TempDir};
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use strobe_testkit::interpreters;

/// `strobe dump --core CORE --json` plus `extra`, parsed; fails the test on a non-zero exit.
fn dump_core_json(core: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["dump", "--core", core.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = strobe(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "strobe {args:?} failed ({}): {stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `strobe dump --core ...` that must fail: its one line of stderr.
fn dump_core_error(args: &[&str]) -> String {
    let mut all = vec!["dump"];
    all.extend_from_slice(args);
    let out = strobe(&all);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{all:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.starts_with("strobe: error: "), "{stderr}");
    assert!(out.stdout.is_empty());
    stderr
}

/// `gcore` of process `pid` into `dir`: the core's path.
fn gcore(pid: i32, dir: &Path) -> PathBuf {
    let prefix = dir.join("gcore");
    let out = Command::new("gcore")
        .arg("-o")
        .arg(&prefix)
        .arg(pid.to_string())
        .output()
        .expect("gcore (gdb) is missing: run .ci/provision.sh");
    let core = dir.join(format!("gcore.{pid}"));
    assert!(
        out.status.success() && core.is_file(),
        "gcore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    core
}

/// The kernel must write cores as files in the dumping process's working directory.
fn require_plain_core_pattern() {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let pattern = pattern.trim();
    assert!(
        !pattern.starts_with('|') && !pattern.contains('/'),
        "kernel core tests need /proc/sys/kernel/core_pattern to be a plain file name (the \
         kernel's default is `core`), which writes the core into the process's working \
         directory; this machine has {pattern:?}"
    );
}

/// The one file in `dir`: the core the kernel wrote.
fn only_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "expected one core in {}: {files:?}",
        dir.display()
    );
    files.into_iter().next().unwrap()
}

/// `value` with `prefix` removed from every string (paths, and paths inside warnings).
fn strip_prefix(value: &Value, prefix: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace(prefix, "")),
        Value::Array(a) => Value::Array(a.iter().map(|v| strip_prefix(v, prefix)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), strip_prefix(v, prefix)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The core's dump equals the live one in everything a core records: process id, executable,
/// interpreter, every thread (ids, name, interpreter, GIL) and frame (function, file, line),
/// and warnings. Scheduler states are not in a core: every thread's is `unknown`. `root`: the
/// chroot prefix the live dump's paths carry and the core's do not.
fn assert_same_as_live(live: &Value, core: &Value, root: Option<&str>) {
    let live = match root {
        Some(root) => strip_prefix(live, root),
        None => live.clone(),
    };
    let mut core = core.clone();
    for t in core["threads"].as_array_mut().unwrap() {
        assert_eq!(t["state"], "unknown", "{t:#}");
        t["state"] = Value::from("idle");
    }
    if live != core {
        panic!("live dump and core dump differ:\n--- live\n{live:#}\n--- core\n{core:#}");
    }
}

/// gdb 13's gcore cannot read the thread stacks of sid's glibc (2.41+ puts guard pages inside
/// the stack mapping; gdb then writes zeros for the whole chunk, warning "Memory read failed
/// for corefile section"). strobe must say so for every thread but the main one, and show
/// what the core still has: each thread's innermost frames, the outer ones (reached through
/// entry frames on the C stack) cut. Checks that, then makes `dumped` comparable: the live
/// frames and warnings in place of the cut ones.
fn gdb_lost_thread_stacks(live: &Value, dumped: &mut Value) {
    let warnings = dumped["warnings"].as_array().unwrap().clone();
    let line = warnings
        .iter()
        .filter_map(Value::as_str)
        .find(|w| w.starts_with("the core holds no stack memory for thread"))
        .unwrap_or_else(|| panic!("no warning about the lost stacks: {warnings:?}"))
        .to_string();
    let live_threads = live["threads"].as_array().unwrap();
    for (t, live_t) in dumped["threads"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(live_threads)
    {
        let tid = t["native_id"].to_string();
        let main = t["name"] == "MainThread";
        assert_eq!(line.contains(&tid), !main, "{line} / thread {tid}");
        let got = t["frames"].as_array().unwrap();
        let want = live_t["frames"].as_array().unwrap();
        assert!(
            !got.is_empty() && got.len() <= want.len() && want[..got.len()] == got[..],
            "the core's frames are not the live ones cut: {got:#?} / {want:#?}"
        );
        t["frames"] = live_t["frames"].clone();
    }
    dumped["warnings"] = live["warnings"].clone();
}

strobe_testkit::per_interpreter! {
    fn dump_core_gcore(interp) {
        let interp = Interp::from(interp);
        let target = Target::start(&interp);
        let live = dump_json(target.pid(), &[]);
        check_dump(&target, &live);
        let sid = matches!(interp, Interp::Sid(_));
        // Native frames need the thread stacks gdb loses on sid (below); the kernel's cores
        // of sid targets are compared with native frames in `dump_core_native`.
        let live_native = (!sid).then(|| dump_json(target.pid(), &["--native", "--blocking"]));
        let live_locals = (!sid).then(|| dump_json(target.pid(), &["--locals"]));
        let dir = TempDir::new();
        let core = gcore(target.pid(), dir.path());
        drop(target);
        // gcore runs here: it names the files as this side sees them, chroot or not.
        let mut dumped = dump_core_json(&core, &[]);
        if sid {
            gdb_lost_thread_stacks(&live, &mut dumped);
        }
        assert_same_as_live(&live, &dumped, None);
        if let Some(live_native) = live_native {
            let dumped = dump_core_json(&core, &["--native"]);
            assert_same_as_live(&live_native, &dumped, None);
        }
        if let Some(live_locals) = live_locals {
            let dumped = dump_core_json(&core, &["--locals"]);
            assert_same_as_live(&live_locals, &dumped, None);
        }
    }
}

strobe_testkit::per_interpreter! {
    fn dump_core_kernel(interp) {
        require_plain_core_pattern();
        let interp = Interp::from(interp);
        let (dir, sysroot) = match interp {
            Interp::Host(_) => (TempDir::new(), None),
            Interp::Sid(_) => {
                let sid = interpreters::require_sid();
                (TempDir::new_in(&sid.join("tmp")), Some(sid))
            }
        };
        let mut target = Target::start_dumpable(&interp, dir.path());
        let live = dump_json(target.pid(), &[]);
        check_dump(&target, &live);
        // Every thread sleeps in a system call: its locals hold still for both dumps.
        let live_locals = dump_json(target.pid(), &["--locals"]);
        let status = target.abort_and_wait();
        assert!(status.core_dumped(), "no core dumped: {status:?}");
        let core = only_file(dir.path());
        // The kernel names files as the process saw them: inside the chroot.
        let root = sysroot.as_ref().map(|s| s.to_str().unwrap());
        let extra: Vec<&str> = root.iter().flat_map(|r| ["--sysroot", *r]).collect();
        let dumped = dump_core_json(&core, &extra);
        assert_same_as_live(&live, &dumped, root);
        let with_locals: Vec<&str> = extra.iter().copied().chain(["--locals"]).collect();
        let dumped = dump_core_json(&core, &with_locals);
        assert!(
            dumped["threads"][0]["frames"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["locals"].as_array().is_some_and(|l| !l.is_empty())),
            "no locals in the core's dump: {dumped:#}"
        );
        assert_same_as_live(&live_locals, &dumped, root);
        if root.is_some() {
            // Without --sysroot the chroot's files are not found from here.
            let line = dump_core_error(&["--core", core.to_str().unwrap()]);
            assert!(line.contains("pass --sysroot"), "{line}");
            assert!(line.contains("No such file"), "{line}");
        }
    }
}

/// A gcore of a pyenv 3.11 target, and the directory holding it.
fn some_core() -> (TempDir, PathBuf) {
    let target = Target::start(&Interp::pyenv("3.11.7"));
    let dir = TempDir::new();
    let core = gcore(target.pid(), dir.path());
    (dir, core)
}

#[test]
fn dump_core_truncated_core_is_one_line() {
    let (dir, core) = some_core();
    let bytes = std::fs::read(&core).unwrap();
    let cut = dir.join("cut");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let line = dump_core_error(&["--core", cut.to_str().unwrap()]);
    assert!(line.contains("is truncated"), "{line}");
    assert!(
        line.contains(&format!("it has {} bytes", bytes.len() / 2)),
        "{line}"
    );
}

#[test]
fn dump_core_wrong_executable_is_one_line() {
    let (_dir, core) = some_core();
    // Debian's python3.11 is another build than pyenv's 3.11.7 the core was taken from.
    let line = dump_core_error(&[
        "--core",
        core.to_str().unwrap(),
        "--executable",
        "/usr/bin/python3.11",
    ]);
    assert!(
        line.contains("was not written by /usr/bin/python3.11"),
        "{line}"
    );
    assert!(line.contains("build-id"), "{line}");
}

#[test]
fn dump_core_not_a_core_is_one_line() {
    let line = dump_core_error(&["--core", "/usr/bin/python3.11"]);
    assert!(line.contains("is not an ELF core file"), "{line}");
}

#[test]
fn dump_core_of_a_process_that_is_not_python_is_one_line() {
    let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
    let dir = TempDir::new();
    let core = gcore(sleeper.id() as i32, dir.path());
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let line = dump_core_error(&["--core", core.to_str().unwrap()]);
    assert!(line.contains("does not look like Python"), "{line}");
}

/// A kernel core written without the process's private memory (its own `coredump_filter`,
/// see core(5), set to 0: only what the files hold is left).
#[test]
fn dump_core_without_the_interpreters_memory_is_one_line() {
    require_plain_core_pattern();
    let dir = TempDir::new();
    let mut target = Target::start_dumpable(&Interp::pyenv("3.11.7"), dir.path());
    std::fs::write(format!("/proc/{}/coredump_filter", target.pid()), "0").unwrap();
    assert!(target.abort_and_wait().core_dumped());
    let core = only_file(dir.path());
    let line = dump_core_error(&["--core", core.to_str().unwrap()]);
    assert!(
        line.contains("the core does not hold the interpreter's memory"),
        "{line}"
    );
}

strobe_testkit::per_interpreter! {
    fn dump_core_native(interp) {
        require_plain_core_pattern();
        let interp = Interp::from(interp);
        let (dir, sysroot) = match interp {
            Interp::Host(_) => (TempDir::new(), None),
            Interp::Sid(_) => {
                let sid = interpreters::require_sid();
                (TempDir::new_in(&sid.join("tmp")), Some(sid))
            }
        };
        let mut target = Target::start_dumpable(&interp, dir.path());
        // Stopped, as the kernel stops every thread to write the core.
        let live = dump_json(target.pid(), &["--native", "--blocking"]);
        assert!(target.abort_and_wait().core_dumped());
        let core = only_file(dir.path());
        let root = sysroot.as_ref().map(|s| s.to_str().unwrap());
        let mut extra: Vec<&str> = root.iter().flat_map(|r| ["--sysroot", *r]).collect();
        extra.push("--native");
        let dumped = dump_core_json(&core, &extra);
        let frames = |dump: &Value, kind: &str| {
            dump["threads"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|t| t["frames"].as_array().unwrap())
                .filter(|f| f["kind"] == kind)
                .count()
        };
        assert!(frames(&dumped, "native") > 0, "no native frames: {dumped:#}");
        assert_same_as_live(&live, &dumped, root);
    }
}

/// The executable the core names is gone (a deployment replaced it): the dump says which file
/// is missing and what to pass, and with `--executable` (the same build elsewhere) it is the
/// dump of the live process.
#[test]
fn dump_core_executable_moved_away() {
    let dir = TempDir::new();
    let moved = dir.join("python3.11-old");
    strobe_testkit::copy_executable("/usr/bin/python3.11".as_ref(), &moved);
    let target = Target::start(&Interp::Host(moved.clone()));
    let live = dump_json(target.pid(), &[]);
    let core = gcore(target.pid(), dir.path());
    drop(target);
    std::fs::remove_file(&moved).unwrap();
    let line = dump_core_error(&["--core", core.to_str().unwrap()]);
    assert!(line.contains(moved.to_str().unwrap()), "{line}");
    assert!(line.contains("--executable"), "{line}");
    let dumped = dump_core_json(&core, &["--executable", "/usr/bin/python3.11"]);
    assert_same_as_live(&live, &dumped, None);
}

/// A core is read without `/proc`: its process is gone, and another may have its id. Every
/// file strobe opens or examines is traced; only its own `/proc/self` (the C library's start-up)
/// may appear.
#[test]
fn dump_core_reads_nothing_from_proc() {
    require_plain_core_pattern();
    let dir = TempDir::new();
    let mut target = Target::start_dumpable(&Interp::pyenv("3.9.18"), dir.path());
    assert!(target.abort_and_wait().core_dumped());
    let core = only_file(dir.path());
    let log = dir.join("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=%file,%process", "-o"])
        .arg(&log)
        .arg(crate::harness::strobe_bin())
        .args(["dump", "--native", "--core"])
        .arg(&core)
        .output()
        .expect("strace is missing: run .ci/provision.sh");
    assert!(out.status.success(), "{out:?}");
    let trace = std::fs::read_to_string(&log).unwrap();
    assert!(
        trace.contains(core.to_str().unwrap()),
        "the trace misses the core: {trace}"
    );
    let proc: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("\"/proc/") && !l.contains("\"/proc/self/"))
        .collect();
    assert!(proc.is_empty(), "strobe looked in /proc: {proc:#?}");
}
