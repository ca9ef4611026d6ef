//! The sampler keeps off the CPU the target runs on: a spinning 3.12 target pinned to one CPU,
//! sampled at 1 kHz, ends with the sampler restricted to every other CPU it may use. (Waking
//! up on the target's CPU would preempt it; see the `placement` module.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use strobe_sampler::{start, SamplerConfig, Target};
use strobe_testkit::Ready;

const SCRIPT: &str = r#"import sys

def spin():
    n = 0
    while True:
        n = (n * 3 + 1) & 0xffff

sys.stdout.write("READY\n")
sys.stdout.flush()
spin()
"#;

fn cpus(set: &CpuSet) -> Vec<usize> {
    (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap())
        .collect()
}

#[test]
fn the_sampler_keeps_off_the_cpu_the_target_runs_on() {
    let allowed = cpus(&sched_getaffinity(Pid::from_raw(0)).unwrap());
    assert!(
        allowed.len() >= 2,
        "this test needs two CPUs to choose from, this process may use {allowed:?}"
    );
    let python = "/root/.pyenv/versions/3.12.1/bin/python3.12";
    assert!(
        std::path::Path::new(python).exists(),
        "{python} is required for this test and missing"
    );
    let victim = Ready::python_script(python, "placement", SCRIPT, &[]);
    // The spinning (main) thread, on the last CPU we may use.
    let pinned = *allowed.last().unwrap();
    let mut one = CpuSet::new();
    one.set(pinned).unwrap();
    sched_setaffinity(Pid::from_raw(victim.pid()), &one).unwrap();

    let target = Target::attach(victim.pid()).unwrap();
    let (side, mut agg) = strobe_aggregate::pipeline(1 << 16);
    let cfg = SamplerConfig {
        rate_hz: 1000.0,
        duration: Some(Duration::from_millis(300)),
        ..SamplerConfig::default()
    };
    let summary = start(target, None, cfg, side).unwrap().join().unwrap();
    let mut samples = 0;
    while !agg.finished() {
        samples += agg.drain().unwrap().samples.len();
    }
    assert!(samples > 50, "{samples} samples: {summary:?}");
    let others: Vec<usize> = allowed.iter().copied().filter(|&c| c != pinned).collect();
    assert_eq!(summary.placement, Some(others), "{summary:?}");
}
