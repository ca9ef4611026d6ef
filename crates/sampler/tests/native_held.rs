//! `--native` does not stop again a thread that has not had a CPU since a stop of ours let it
//! go: the stack that stop took stands for it ("Not stopped again" in the sampler's `stops`).
//!
//! The target's two workers compute in C (`zlib.crc32`, which releases the GIL) on one CPU,
//! so whenever one runs the other waits for the CPU, often through several 1 kHz rounds. Each
//! worker alternates between two Python functions, so its frames change every few tens of
//! microseconds it runs. Recorded at 1 kHz in CPU mode:
//! - some worker samples must be held stacks (none without the mechanism);
//! - no held stack may be refused for frames that changed under it (a thread taken as not run
//!   since its stop that had in fact run: the switch records misread);
//! - every merged worker sample must be its own stack, merged whole (its own functions, `crc32`
//!   inside them, the thread's first native frames outside), as in `native_preempted`: a held
//!   stack given to the wrong thread would show the other worker's functions.
//!
//! Interpreters: pyenv 3.12 and 3.13; a missing one fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strobe_aggregate::{Sample, Tables};
use strobe_sampler::SamplerConfig;
use strobe_target::Target;
use strobe_testkit::Interpreter;

mod support;
use support::sample_until;
#[path = "support/workers.rs"]
mod workers;
use workers::{check_workers, own_and_other, start_two_workers, TWO_WORKERS};

/// The target (started on one CPU): two workers computing in C, each through two functions
/// of its own in turn.
const DEFS: &str = r#"import os, sys, threading, zlib

DATA = os.urandom(1 << 16)

def a_even():
    zlib.crc32(DATA)

def a_odd():
    zlib.crc32(DATA)

def b_even():
    zlib.crc32(DATA)

def b_odd():
    zlib.crc32(DATA)

def work_a():
    while True:
        a_even()
        a_odd()

def work_b():
    while True:
        b_even()
        b_odd()
"#;

/// Check one recording's worker samples (see `workers::check_workers`): none has the other
/// worker's functions, and `crc32` is inside one of the worker's two.
fn check_samples(what: &str, samples: &[Sample], t: &Tables) -> (usize, usize) {
    check_workers(what, samples, t, &TWO_WORKERS, |m| {
        let (own, other) = own_and_other(m);
        let context = &m.context;
        for theirs in [
            format!("work_{other}"),
            format!("{other}_even"),
            format!("{other}_odd"),
        ] {
            assert_eq!(
                m.at(&theirs),
                None,
                "the other worker's function: {context}"
            );
        }
        // `crc32` is called from the worker's two functions only.
        if let (false, Some(crc)) = (m.cut, m.names.iter().position(|n| n.starts_with("crc32"))) {
            let step = [format!("{own}_even"), format!("{own}_odd")]
                .iter()
                .find_map(|f| m.at(f))
                .unwrap_or_else(|| panic!("crc32 outside its two functions: {context}"));
            assert!(
                m.work < step && step < crc,
                "nested in call order: {context}"
            );
        }
    })
}

fn check(interp: &Interpreter) {
    let version = interp.name;
    let victim = start_two_workers(interp, "native-held", DEFS);
    let cfg = SamplerConfig {
        rate_hz: 1000.0,
        native: true,
        by_function: true,
        ..SamplerConfig::default()
    };
    let target = Target::attach(victim.pid()).unwrap();
    let (samples, tables, summary) = sample_until(target, cfg, 2000);
    let s = summary.stats;
    let what = format!(
        "{version} ({} rounds, native: {} merged ({} held), {} held refused, {} failed; {:?})",
        s.rounds,
        s.native_merged,
        s.native_held,
        s.native_held_refused,
        s.native_failed,
        summary.warnings
    );
    let (workers, unmerged) = check_samples(&what, &samples, &tables);
    let context = format!("{what}: {workers} worker samples, {unmerged} not merged or cut short");
    eprintln!("{context}");
    assert!(workers > 0, "{context}");
    assert!(unmerged * 100 <= workers, "{context}");
    assert!(
        s.native_held > 0,
        "no sample held from an earlier stop: {context}"
    );
    assert!(s.native_held <= s.native_merged, "{context}");
    assert_eq!(
        s.native_held_refused, 0,
        "held stacks whose frames had changed: {context}"
    );
}

strobe_testkit::per_interpreter! {
    fn a_thread_not_run_since_our_stop_is_not_stopped_again(interp) for [pyenv_3_12, pyenv_3_13] {
        check(interp);
    }
}
