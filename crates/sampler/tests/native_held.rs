//! `--native` does not stop again a thread that has not had a CPU since a stop of ours let it
//! go: the stack that stop took stands for it ("Not stopped again" in the sampler's `stops`).
//!
//! The target's two workers compute in C (`zlib.crc32`, which releases the GIL) on one CPU,
//! so whenever one runs the other waits for the CPU, often through several 1 kHz rounds. Each
//! worker alternates between two Python functions, so its frames change every few tens of
//! microseconds it runs. Recorded at 1 kHz in CPU mode (the threads stopped before the
//! round's read) and in wall mode (idle threads kept: stopped after it):
//! - some worker samples must be held stacks (none without the mechanism);
//! - no held stack may be refused for frames that changed under it (a thread taken as not run
//!   since its stop that had in fact run: the switch records misread);
//! - every merged worker sample must be its own stack, merged whole (its own functions, `crc32`
//!   inside them, the thread's first native frames outside), as in `native_preempted`: a held
//!   stack given to the wrong thread would show the other worker's functions.
//!
//! A thread read asleep without a stop is held too, and not read again while it sleeps on.
//! Recorded in wall mode (idle threads kept) at 200 Hz, a target whose threads sleep (one for
//! good, one on a lock, the main thread in `read`, and one napping 20 ms at a time in two
//! functions in turn): most samples are held, none refused (the napper's frames change at
//! every wake-up), and each thread's merged samples show its own functions only.
//!
//! Interpreters: pyenv 3.12 and 3.13; a missing one fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strobe_aggregate::{FrameKind, Sample, Tables};
use strobe_sampler::{SamplerConfig, SamplerSummary};
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

/// The summary's counts, for assertion messages.
fn described(summary: &SamplerSummary) -> String {
    let s = &summary.stats;
    format!(
        "({} rounds, native: {} merged ({} held, {} read from records), {} held refused, {} \
         failed; {:?})",
        s.rounds,
        s.native_merged,
        s.native_held,
        s.native_preempted,
        s.native_held_refused,
        s.native_failed,
        summary.warnings
    )
}

fn check(interp: &Interpreter) {
    let version = interp.name;
    let victim = start_two_workers(interp, "native-held", DEFS);
    // CPU mode (stopped before the round's read) and wall mode (stopped after it).
    for include_idle in [false, true] {
        check_workers_held(version, victim.pid(), include_idle);
    }
}

fn check_workers_held(version: &str, pid: i32, include_idle: bool) {
    let cfg = SamplerConfig {
        rate_hz: 1000.0,
        native: true,
        by_function: true,
        include_idle,
        ..SamplerConfig::default()
    };
    let target = Target::attach(pid).unwrap();
    let (samples, tables, summary) = sample_until(target, cfg, 2000);
    let s = summary.stats;
    let what = format!(
        "{version}, include_idle {include_idle} {}",
        described(&summary)
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
    if include_idle {
        // The main thread, asleep in `read`, is held in about every round; the workers'
        // stops after the read are held beyond that.
        assert!(s.native_held > s.rounds, "no worker held: {context}");
    }
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

/// The sleepers' target: three threads asleep in their own functions, the main thread in
/// `read`.
const SLEEPERS: &str = r#"import os, sys, threading, time

def nap_even():
    time.sleep(0.02)

def nap_odd():
    time.sleep(0.02)

def napper():
    while True:
        nap_even()
        nap_odd()

def sleeper():
    time.sleep(1e6)

def waiter(lock):
    lock.acquire()

lock = threading.Lock()
lock.acquire()
threading.Thread(target=napper, name="napper", daemon=True).start()
threading.Thread(target=sleeper, name="sleeper", daemon=True).start()
threading.Thread(target=waiter, args=(lock,), name="waiter", daemon=True).start()
sys.stdout.write("READY\n")
sys.stdout.flush()
r, w = os.pipe()
os.read(r, 1)
"#;

/// The functions only the thread named by the first element may show.
const OWN: [(&str, &[&str]); 3] = [
    ("napper", &["napper", "nap_even", "nap_odd"]),
    ("sleeper", &["sleeper"]),
    ("waiter", &["waiter"]),
];

fn check_sleepers(interp: &Interpreter) {
    let version = interp.name;
    let python = interp.require().path();
    let victim = strobe_testkit::Ready::python_script(
        python.to_str().unwrap(),
        "native-held-sleepers",
        SLEEPERS,
        &[],
    );
    let cfg = SamplerConfig {
        rate_hz: 200.0,
        native: true,
        include_idle: true,
        by_function: true,
        ..SamplerConfig::default()
    };
    let target = Target::attach(victim.pid()).unwrap();
    let (samples, t, summary) = sample_until(target, cfg, 1200);
    let s = summary.stats;
    let what = format!("{version} {}", described(&summary));
    eprintln!("{what}");
    let mut seen = [0usize; 3];
    for sample in &samples {
        let thread = t.thread(sample.thread).unwrap();
        let name = thread.name.map(|n| t.str(n)).unwrap_or("");
        let Some(i) = OWN.iter().position(|(n, _)| *n == name) else {
            continue;
        };
        let frames = t.stack(sample.stack);
        let names: Vec<&str> = frames
            .iter()
            .map(|&f| t.str(t.frame(f).unwrap().function))
            .collect();
        let context = format!("{what}: {name}'s sample {names:?}");
        assert!(
            frames
                .iter()
                .any(|&f| t.frame(f).unwrap().kind == FrameKind::Native),
            "not merged: {context}"
        );
        assert!(names.contains(&OWN[i].1[0]), "its own function: {context}");
        for (j, (_, theirs)) in OWN.iter().enumerate() {
            for f in theirs.iter().filter(|_| j != i) {
                assert!(!names.contains(f), "another thread's {f}: {context}");
            }
        }
        seen[i] += 1;
    }
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}: {what}");
    // The sleeper, the waiter and the main thread never run: after their first read, every
    // sample of theirs is held (the napper's, between its wake-ups, too).
    assert!(2 * s.native_held >= s.native_merged, "{what}");
    assert_eq!(
        s.native_held_refused, 0,
        "held stacks whose frames had changed: {what}"
    );
    // Idle threads sampled, the kernel records the registers of the threads' sleeps too: each
    // of the napper's naps (50 a second) is read from its record, not from `/proc`. Without
    // those records only a preemption would be read so, and in this target nothing computes.
    assert!(
        s.native_preempted >= 10,
        "samples read from the kernel's records: {what}"
    );
}

strobe_testkit::per_interpreter! {
    fn a_thread_read_asleep_is_not_read_again_while_it_sleeps(interp) for [pyenv_3_12, pyenv_3_13] {
        check_sleepers(interp);
    }
}
