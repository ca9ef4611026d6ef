//! Flat out (a rate above `FLAT_OUT_HZ`): rounds run back to back with no deadlines, and each
//! sample weighs exactly the time since the previous round, so the weights add up to the
//! recording's wall time. Against a real interpreter (pyenv 3.12) spinning in one thread.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

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

#[test]
fn flat_out_samples_weigh_the_time_since_the_previous_one() {
    let python = "/root/.pyenv/versions/3.12.1/bin/python3.12";
    assert!(
        std::path::Path::new(python).exists(),
        "{python} is required for this test and missing"
    );
    let victim = Ready::python_script(python, "flat-out", SCRIPT, &[]);
    let target = Target::attach(victim.pid()).unwrap();
    let (side, mut agg) = strobe_aggregate::pipeline(1 << 20);
    let cfg = SamplerConfig {
        rate_hz: 1_000_000.0,
        duration: Some(Duration::from_millis(300)),
        ..SamplerConfig::default()
    };
    let summary = start(target, None, cfg, side).unwrap().join().unwrap();
    let mut samples: Vec<strobe_aggregate::Sample> = Vec::new();
    while !agg.finished() {
        samples.extend(agg.drain().unwrap().samples);
    }
    assert_eq!(summary.stats.total_errors(), 0, "{summary:?}");
    assert_eq!(summary.stats.dropped, 0, "{summary:?}");
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
