//! `--native` reads a thread preempted from its CPU (runnable, waiting for one) without
//! stopping it, from the kernel's record of its preemption (`strobe_remote::PreemptWatch`),
//! where the kernel allows it (root here); see `strobe_target::Target::native_stop_first`.
//!
//! The target's two workers call `zlib.crc32` in a loop (C code that releases the GIL) on one
//! CPU, so whenever one runs the other is preempted. Recorded at 1 kHz with
//! `native_read_preempted` both ways a round captures (CPU mode, which reads the preempted
//! threads first and stops the others, and with idle samples, which reads first), some samples
//! must come from preemption
//! records (none without it, the default); and every merged sample of a worker must
//! be its own stack, merged whole: the worker's Python function and `crc32` inside it, the
//! thread's first native frames (`start_thread`, `_thread`'s `thread_run`) outside (the merge
//! itself refuses native and Python frames that do not agree). A sample whose native stack
//! could not be merged keeps its Python frames (counted), and one whose unwind stopped early
//! keeps its Python frames outside a cut-short marker (a worker caught in the dynamic
//! linker's lazy binding of `crc32`, `_dl_runtime_resolve_xsavec`, whose frame is found from
//! `rbx`, which the unwinder does not follow): together at most 1% of them (one in ~2,000
//! of each was seen in CI runs).
//!
//! Interpreters: pyenv 3.12 and 3.13; a missing one fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strobe_aggregate::{FrameKind, Sample, Tables};
use strobe_native::TRUNCATED_FRAME;
use strobe_sampler::SamplerConfig;
use strobe_target::Target;
use strobe_testkit::{Interpreter, Ready};

mod support;
use support::sample_until;

/// The target (started on one CPU): two workers computing in C.
const SCRIPT: &str = r#"import os, sys, threading, zlib

DATA = os.urandom(1 << 16)

def work_a():
    while True:
        zlib.crc32(DATA)

def work_b():
    while True:
        zlib.crc32(DATA)

for name, f in (("spin-a", work_a), ("spin-b", work_b)):
    threading.Thread(target=f, name=name, daemon=True).start()
sys.stdout.write("READY\n")
sys.stdout.flush()
r, w = os.pipe()
os.read(r, 1)
"#;

/// Check one recording's worker samples; how many there were, and how many of them kept only
/// their Python frames (a native stack that could not be merged: counted, never guessed) or
/// kept them outside a cut-short native stack.
fn check_samples(what: &str, samples: &[Sample], t: &Tables) -> (usize, usize) {
    let (mut workers, mut unmerged) = (0, 0);
    for s in samples {
        let thread = t.thread(s.thread).unwrap();
        let name = thread.name.map(|n| t.str(n)).unwrap_or("");
        let own = match name {
            "spin-a" => "work_a",
            "spin-b" => "work_b",
            _ => continue,
        };
        workers += 1;
        let frames = t.stack(s.stack);
        if !frames
            .iter()
            .any(|&f| t.frame(f).unwrap().kind == FrameKind::Native)
        {
            unmerged += 1;
            continue;
        }
        let names: Vec<&str> = frames
            .iter()
            .map(|&f| t.str(t.frame(f).unwrap().function))
            .collect();
        let at = |name: &str| names.iter().position(|n| *n == name);
        let context = format!("{what}: {name}'s sample {names:?}");
        let work = at(own).unwrap_or_else(|| panic!("its own function: {context}"));
        let other = if own == "work_a" { "work_b" } else { "work_a" };
        assert_eq!(at(other), None, "the other worker's function: {context}");
        if let Some(cut) = at(TRUNCATED_FRAME) {
            // The Python frames outside the marker, the native ones it could unwind inside.
            assert!(work < cut, "cut short inside {own}: {context}");
            unmerged += 1;
            continue;
        }
        let start = at("start_thread").unwrap_or_else(|| panic!("start_thread: {context}"));
        let run = at("thread_run").unwrap_or_else(|| panic!("thread_run: {context}"));
        assert!(start < run && run < work, "outermost first: {context}");
        // Inside its function: the call into zlib, or Python code between two calls.
        if let Some(crc) = names.iter().position(|n| n.starts_with("crc32")) {
            assert!(work < crc, "crc32 inside {own}: {context}");
        }
    }
    (workers, unmerged)
}

fn check(interp: &Interpreter) {
    let version = interp.name;
    let python = interp.require().path();
    let victim = Ready::python_script_on(
        strobe_testkit::last_cpu(),
        python.to_str().unwrap(),
        "native-preempted",
        SCRIPT,
        &[],
    );
    // Asked for, both ways a round captures; and not asked for (the default): stopped.
    for (read_preempted, include_idle) in [(true, false), (true, true), (false, false)] {
        let what =
            format!("{version}, read_preempted {read_preempted}, include_idle {include_idle}");
        let cfg = SamplerConfig {
            rate_hz: 1000.0,
            native: true,
            native_read_preempted: read_preempted,
            by_function: true,
            include_idle,
            ..SamplerConfig::default()
        };
        let target = Target::attach(victim.pid()).unwrap();
        let (samples, tables, summary) = sample_until(target, cfg, 2000);
        let s = summary.stats;
        let what = format!(
            "{what} ({} rounds, native: {} merged ({} read preempted), {} failed; {:?})",
            s.rounds, s.native_merged, s.native_preempted, s.native_failed, summary.warnings
        );
        let (workers, unmerged) = check_samples(&what, &samples, &tables);
        let context =
            format!("{what}: {workers} worker samples, {unmerged} not merged or cut short");
        eprintln!("{context}");
        assert!(workers > 0, "{context}");
        // Issue 12: at most 1% of the samples of a multi-threaded target at 1 kHz.
        assert!(unmerged * 100 <= workers, "{context}");
        if read_preempted {
            assert!(
                s.native_preempted > 0,
                "no sample read preempted (the warnings say why; .ci/provision.sh mounts tracefs): {context}"
            );
            assert!(s.native_preempted <= s.native_merged, "{context}");
        } else {
            assert_eq!(s.native_preempted, 0, "{context}");
        }
    }
}

strobe_testkit::per_interpreter! {
    fn a_preempted_thread_is_read_without_a_stop(interp) for [pyenv_3_12, pyenv_3_13] {
        check(interp);
    }
}
