//! The sampler against a real interpreter (pyenv 3.12) spinning in one thread:
//! - flat out (a rate above `FLAT_OUT_HZ`), rounds run back to back with no deadlines, none is
//!   late, and each sample weighs exactly the time since the previous round, so the weights add
//!   up to the recording's wall time;
//! - paced, it keeps off the CPU the target runs on: with the target pinned to one CPU, the
//!   sampler ends restricted to every other CPU it may use (waking up on the target's CPU
//!   would preempt it; see the `placement` module);
//! - paced with native stacks, it joins that CPU instead (a stop made from the stopped
//!   thread's own CPU needs no wake-up across CPUs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use strobe_aggregate::Sample;
use strobe_sampler::{SamplerConfig, SamplerSummary};
use strobe_target::Target;
use strobe_testkit::cpus;

mod support;
use support::{sample_for, spinner};

/// Sample `pid` at `rate_hz` for 300 ms (with native stacks if `native`); every sample and
/// the summary.
fn record(pid: i32, rate_hz: f64, native: bool) -> (Vec<Sample>, SamplerSummary) {
    let target = Target::attach(pid).unwrap();
    let cfg = SamplerConfig {
        rate_hz,
        duration: Some(Duration::from_millis(300)),
        native,
        ..SamplerConfig::default()
    };
    let (samples, _, summary) = sample_for(target, cfg);
    (samples, summary)
}

#[test]
fn flat_out_samples_weigh_the_time_since_the_previous_one() {
    let victim = spinner("flat-out");
    let (samples, summary) = record(victim.pid(), 1_000_000.0, false);
    assert_eq!(summary.stats.total_errors(), 0, "{summary:?}");
    assert_eq!(summary.stats.dropped, 0, "{summary:?}");
    // As fast as it can is what was asked: no sample counts as late.
    assert_eq!(
        (summary.stats.late, summary.stats.missed),
        (0, 0),
        "{summary:?}"
    );
    // One Python thread: one sample per round.
    assert_eq!(samples.len() as u64, summary.stats.rounds, "{summary:?}");
    assert!(samples.len() > 100, "{} samples", samples.len());
    let mut previous = 0;
    for s in &samples {
        assert!(s.timestamp_ns > previous);
        assert_eq!(s.weight_ns, s.timestamp_ns - previous, "{s:?}");
        previous = s.timestamp_ns;
    }
    let total: u64 = samples.iter().map(|s| s.weight_ns).sum();
    assert_eq!(total, samples.last().unwrap().timestamp_ns);
}

/// The target's spinning (main) thread pinned to the last CPU we may use, sampled at 1 kHz
/// for 300 ms: the CPUs the sampler ended restricted to, and the pinned one.
fn placed(name: &str, native: bool) -> (SamplerSummary, Vec<usize>, usize) {
    let allowed = cpus::allowed_cpus();
    assert!(
        allowed.len() >= 2,
        "this test needs two CPUs to choose from, this process may use {allowed:?}"
    );
    let victim = spinner(name);
    let pinned = cpus::last_cpu();
    cpus::pin(victim.pid(), pinned);

    let (samples, summary) = record(victim.pid(), 1000.0, native);
    // A placement follows a round that found the target running (the first native round
    // loads libpython's unwind tables, which can take the debug build the whole 300 ms).
    assert!(!samples.is_empty(), "no samples: {summary:?}");
    (summary, allowed, pinned)
}

#[test]
fn the_sampler_keeps_off_the_cpu_the_target_runs_on() {
    let (summary, allowed, pinned) = placed("placement", false);
    let others: Vec<usize> = allowed.iter().copied().filter(|&c| c != pinned).collect();
    assert_eq!(summary.placement, Some(others), "{summary:?}");
}

#[test]
fn with_native_stacks_the_sampler_joins_the_cpu_the_target_runs_on() {
    let (summary, _, pinned) = placed("placement-native", true);
    assert_eq!(summary.placement, Some(vec![pinned]), "{summary:?}");
}
