//! `strobe record --native` against real interpreters: merged native and Python stacks through
//! the sampler, the raw format, `convert` and the formats that name shared objects.
//!
//! `native_busy.py`: threads sort with libc's `qsort` through ctypes, comparing in Python, for
//! ever (Python -> C -> Python while running, the GIL wait in the kernel while not); the main
//! thread blocks reading stdin.

use crate::harness::{strobe, Announced, Interp, Script, TempDir};
use crate::profiles::collapsed;
use crate::record::spawn_recording;
use crate::record_value::end_after_runs;
use serde_json::Value;

/// Interpreter plumbing that must not be left in a merged stack: the evaluation loop of every
/// version, and functions that only pass a call on (exact names; `_PyObject_Malloc` and the
/// like do real work and stay).
const PLUMBING: &[&str] = &[
    "_PyEval_EvalFrameDefault",
    "PyEval_EvalFrameEx",
    "_PyEval_Vector",
    "_PyEval_EvalCode",
    "_PyEval_EvalCodeWithName",
    "_PyFunction_Vectorcall",
    "_PyObject_MakeTpCall",
    "PyObject_Call",
    "cfunction_call",
    "function_code_fastcall",
];

/// Run strobe, assert it succeeded, return its stderr.
fn run_ok(args: &[&str]) -> String {
    let out = strobe(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "strobe {args:?} failed: {stderr}");
    stderr
}

/// `strobe record --native [--idle] --pid PID --rate RATE --duration SECS -o OUT`, asserted to
/// succeed; its stderr.
fn record_native(pid: &str, idle: bool, rate: &str, secs: &str, out: &std::path::Path) -> String {
    let mut args = vec!["record", "--native"];
    if idle {
        args.push("--idle");
    }
    args.extend(["--pid", pid, "--rate", rate, "--duration", secs]);
    args.extend(["-o", out.to_str().unwrap()]);
    run_ok(&args)
}

/// `native stacks merged for X of Y samples` from strobe's summary: (X, Y).
pub(crate) fn merged_counts(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("strobe: native stacks merged for "))
        .unwrap_or_else(|| panic!("no native summary in\n{stderr}"));
    let num = |s: &str| s.replace(',', "").parse::<u64>().unwrap();
    let mut words = line.split_whitespace();
    let merged = num(words.next().unwrap());
    assert_eq!(words.next(), Some("of"), "{line}");
    (merged, num(words.next().unwrap()))
}

/// The function name a collapsed label starts with.
fn function(label: &str) -> &str {
    label.split(" (").next().unwrap_or(label)
}

/// Record the sorters of `native_busy.py` with `--native --idle` into a raw file, convert it
/// to collapsed and speedscope, and check the merged stacks: Python's `sort_forever` calls
/// libc's `qsort`, which calls Python's `compare`; the main thread blocked in `os.read` ends
/// in libc and `[syscall]`; no interpreter plumbing anywhere; and the merges succeed.
fn check_busy(interp: Interp) {
    let script = Script::new(&interp, "native_busy.py");
    let mut target = Announced::start(script.command().arg("2"));
    let dir = TempDir::new();
    let raw = dir.path().join("busy.raw");
    let pid = target.pid.to_string();
    let stderr = record_native(&pid, true, "200", "1.5", &raw);
    target.close_stdin();
    let (merged, all) = merged_counts(&stderr);
    assert!(all >= 20, "only {all} samples\n{stderr}");
    // A few merges may fail where a capture meets a thread between pushing a Python frame and
    // evaluating it; the bound of the issue (1%) is checked at 1 kHz below, this is a sanity
    // check that the merge works on this interpreter at all.
    assert!(
        merged * 20 >= all * 19,
        "{merged} of {all} merged\n{stderr}"
    );

    let txt = dir.path().join("busy.txt");
    run_ok(&[
        "convert",
        "--idle",
        raw.to_str().unwrap(),
        "-o",
        txt.to_str().unwrap(),
    ]);
    let stacks = collapsed(&txt);
    let all_text: String = stacks
        .keys()
        .map(|s| s.join(";"))
        .collect::<Vec<_>>()
        .join("\n");
    let lines = script.lines();
    let file = script.in_target.as_str();
    let sort_label = format!("sort_forever ({file}:{})", lines["qsort"]);
    let compare_label = format!("compare ({file}:{})", lines["compare"]);
    let main_label = format!("<module> ({file}:{})", lines["main"]);

    for stack in stacks.keys() {
        for f in stack {
            for p in PLUMBING {
                assert!(
                    function(f).trim_end_matches(".cold") != *p,
                    "{f} left in\n{}",
                    stack.join("\n  ")
                );
            }
        }
    }
    // Python -> qsort in libc -> Python, in that order, in the sorters' stacks.
    let through_qsort: u64 = stacks
        .iter()
        .filter(|(s, _)| {
            let at = |pred: &dyn Fn(&String) -> bool| s.iter().position(pred);
            let sort = at(&|f| *f == sort_label);
            let qsort = at(&|f| function(f).contains("qsort") && f.contains("(libc"));
            let compare = at(&|f| *f == compare_label);
            matches!((sort, qsort, compare), (Some(a), Some(b), Some(c)) if a < b && b < c)
        })
        .map(|(_, n)| n)
        .sum();
    assert!(
        through_qsort > 0,
        "no stack goes sort_forever -> qsort (libc) -> compare:\n{all_text}\n{stderr}"
    );
    // The main thread, blocked in os.read: its Python frame, then only native frames down to
    // the kernel. (A sample whose merge failed has its Python frames only, outermost first:
    // those are the few the bound above allows, and are left out here.)
    let main: Vec<&Vec<String>> = stacks
        .keys()
        .filter(|s| s.contains(&main_label) && !s[0].contains(".py:"))
        .collect();
    assert!(!main.is_empty(), "no merged main thread stack:\n{all_text}");
    for s in &main {
        assert_eq!(s.last().map(String::as_str), Some("[syscall]"), "{s:?}");
        let at = s.iter().position(|f| *f == main_label).unwrap();
        let below = &s[at + 1..s.len() - 1];
        assert!(!below.is_empty(), "{s:?}");
        assert!(
            below.iter().all(|f| !f.contains(".py:")),
            "only native frames under the read: {s:?}"
        );
    }

    // speedscope: a native frame's file is its shared object.
    let json = dir.path().join("busy.speedscope.json");
    run_ok(&[
        "convert",
        raw.to_str().unwrap(),
        "-o",
        json.to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let frames = v["shared"]["frames"].as_array().unwrap();
    assert!(
        frames.iter().any(|f| {
            f["name"].as_str().unwrap().contains("qsort")
                && f["file"].as_str().unwrap().contains("libc")
                && f["file"].as_str().unwrap().starts_with('/')
        }),
        "no qsort frame with libc's path as its file"
    );
}

strobe_testkit::per_interpreter! {
    fn busy(interp) {
        check_busy(Interp::from(interp));
    }
}

/// At 1 kHz on a target with four running threads and a blocked one, at most 1% of the
/// samples fail to merge (each failure is counted, never guessed; the summary gives the
/// reasons).
fn check_merge_rate(interp: Interp) {
    let script = Script::new(&interp, "native_busy.py");
    let mut target = Announced::start(script.command().arg("4"));
    let dir = TempDir::new();
    let out = dir.path().join("rate.txt");
    let pid = target.pid.to_string();
    // Ended after the sampler has run 1,500 times (a round wakes it at most a few times: its
    // deadline, and the waits for the stopped threads), not after a duration: a loaded
    // machine gives the debug build few rounds a second.
    let (mut strobe, mut err, mut stderr) = spawn_recording(&[
        "record",
        "--native",
        "--idle",
        "--pid",
        &pid,
        "--rate",
        "1000",
        "-o",
        out.to_str().unwrap(),
    ]);
    end_after_runs(&mut strobe, &mut err, &mut stderr, 1500);
    target.close_stdin();
    let (merged, all) = merged_counts(&stderr);
    assert!(all >= 500, "only {all} samples\n{stderr}");
    assert!(
        (all - merged) * 100 <= all,
        "{} of {all} samples failed to merge\n{stderr}",
        all - merged
    );
}

#[test]
fn merge_failures_at_1_khz_are_at_most_1_percent() {
    check_merge_rate(Interp::pyenv("3.12.1"));
}

#[test]
fn merge_failures_at_1_khz_are_at_most_1_percent_on_3_14() {
    check_merge_rate(Interp::named("sid_3_14"));
}

/// A numpy matrix multiply (numpy from the Python package registry, in the venv
/// `.ci/provision.sh` makes): the BLAS kernel of numpy's bundled OpenBLAS runs under the
/// Python line that multiplies, through numpy's own C frames, in most samples.
#[test]
fn numpy_matmul_shows_the_blas_kernel_under_the_python_line() {
    let python = strobe_testkit::interpreters::numpy_python();
    let script = Script::new(&Interp::Host(python), "native_numpy.py");
    let target = Announced::start(&mut script.command());
    let dir = TempDir::new();
    let out = dir.path().join("numpy.txt");
    let pid = target.pid.to_string();
    let stderr = record_native(&pid, false, "200", "1.5", &out);
    let stacks = collapsed(&out);
    let lines = script.lines();
    let matmul = format!("multiply ({}:{})", script.in_target, lines["matmul"]);
    let (mut under_line, mut blas) = (0u64, 0u64);
    for (stack, n) in &stacks {
        let Some(at) = stack.iter().position(|f| *f == matmul) else {
            continue;
        };
        under_line += n;
        let below = &stack[at + 1..];
        let numpy = below.iter().position(|f| f.contains("(_multiarray_umath"));
        let kernel = below
            .iter()
            .position(|f| f.contains("gemm") && f.contains("(libscipy_openblas"));
        if matches!((numpy, kernel), (Some(a), Some(b)) if a < b) {
            blas += n;
        }
    }
    let text: Vec<String> = stacks.keys().map(|s| s.join(";")).collect();
    assert!(
        under_line > 0,
        "no sample under {matmul}:\n{}\n{stderr}",
        text.join("\n")
    );
    assert!(
        blas * 2 >= under_line,
        "only {blas} of {under_line} (weighted) samples under {matmul} reach numpy and then \
         OpenBLAS's gemm:\n{}\n{stderr}",
        text.join("\n")
    );
}

/// A target whose threads another tool already traces (a debugger, another profiler): strobe's
/// ptrace is refused, so running threads are read from perf events instead, said once in a
/// warning; idle ones are still read asleep; stacks through qsort still merge.
#[test]
fn a_target_traced_by_another_tool_is_read_through_perf_events() {
    let script = Script::new(&Interp::pyenv("3.12.1"), "native_busy.py");
    let mut target = Announced::start(script.command().arg("2"));
    let holder = Script::new(&Interp::pyenv("3.12.1"), "ptrace_holder.py");
    let pid = target.pid.to_string();
    let mut held = Announced::start(holder.command().arg(&pid));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("TracerPid:") && l.trim_end() != "TracerPid:\t0"),
        "the target is not traced:\n{status}"
    );
    let dir = TempDir::new();
    let out = dir.path().join("traced.txt");
    let stderr = record_native(&pid, false, "200", "2", &out);
    held.close_stdin();
    target.close_stdin();
    let warned = stderr
        .lines()
        .filter(|l| l.contains("come from perf events instead of a ptrace stop"))
        .count();
    assert_eq!(warned, 1, "{stderr}");
    assert!(stderr.contains("already traced by process"), "{stderr}");
    let (merged, all) = merged_counts(&stderr);
    assert!(merged > 0 && all >= 20, "{merged} of {all}\n{stderr}");
    let stacks = collapsed(&out);
    assert!(
        stacks.keys().any(|s| s
            .iter()
            .any(|f| function(f).contains("qsort") && f.contains("(libc"))),
        "no merged stack through qsort:\n{stderr}"
    );
}

/// `--blocking --native`: every thread's native stack is read during the round's
/// whole-process freeze, with the Python frames of the same freeze: one instant for the
/// process, so every merge succeeds.
#[test]
fn blocking_native_reads_every_thread_in_the_freeze() {
    let script = Script::new(&Interp::pyenv("3.12.1"), "native_busy.py");
    let mut target = Announced::start(script.command().arg("2"));
    let dir = TempDir::new();
    let out = dir.path().join("frozen.txt");
    let pid = target.pid.to_string();
    let stderr = run_ok(&[
        "record",
        "--native",
        "--blocking",
        "--idle",
        "--pid",
        &pid,
        "--rate",
        "100",
        "--duration",
        "1.5",
        "-o",
        out.to_str().unwrap(),
    ]);
    target.close_stdin();
    let (merged, all) = merged_counts(&stderr);
    assert!(all >= 20 && merged == all, "{merged} of {all}\n{stderr}");
    let stacks = collapsed(&out);
    let file = script.in_target.as_str();
    let compare = format!("compare ({file}:{})", script.lines()["compare"]);
    assert!(
        stacks
            .keys()
            .any(|s| s.iter().any(|f| function(f).contains("qsort")) && s.contains(&compare)),
        "no stack through qsort into compare:\n{stderr}"
    );
    let main = format!("<module> ({file}:{})", script.lines()["main"]);
    assert!(
        stacks
            .keys()
            .filter(|s| s.contains(&main))
            .all(|s| s.last().map(String::as_str) == Some("[syscall]")),
        "the blocked main thread ends in the kernel"
    );
}
