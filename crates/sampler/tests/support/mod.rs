//! What the sampler's tests share: sampling a live target until enough samples came.

use std::time::{Duration, Instant};

use strobe_aggregate::{Sample, Tables};
use strobe_sampler::{start, SamplerConfig, SamplerSummary, StatsSnapshot};
use strobe_target::Target;
use strobe_testkit::{interpreters, Ready};

/// Runs the sampler on `target` under `cfg` (its duration left unset) until at least
/// `samples` samples came, however few rounds a second a loaded machine allows, then stops
/// it: every sample, the tables they refer to, and the sampler's summary. Panics after a
/// minute without them.
#[allow(dead_code)] // Not every test that includes this module samples for a count.
pub fn sample_until(
    target: Target,
    cfg: SamplerConfig,
    samples: usize,
) -> (Vec<Sample>, Tables, SamplerSummary) {
    sample_until_stats(target, cfg, &format!("{samples} samples"), |got, _| {
        got >= samples
    })
}

/// Runs the sampler on `target` under `cfg` (its duration left unset) until `done`, given
/// the count of samples so far and the sampler's statistics, says so (`what` it waits for),
/// then stops it: every sample, the tables they refer to, and the sampler's summary. Panics
/// after a minute without it.
#[allow(dead_code)] // Not every test that includes this module waits on statistics.
pub fn sample_until_stats(
    target: Target,
    cfg: SamplerConfig,
    what: &str,
    mut done: impl FnMut(usize, &StatsSnapshot) -> bool,
) -> (Vec<Sample>, Tables, SamplerSummary) {
    assert!(cfg.duration.is_none(), "sampled until {what}");
    let (side, mut agg) = strobe_aggregate::pipeline(1 << 16);
    let handle = start(target, None, cfg, side).unwrap();
    let stats = handle.stats();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(got.len(), &stats.snapshot()) {
        assert!(
            Instant::now() < deadline,
            "not {what} in 60 s: {} samples, {:?}",
            got.len(),
            stats.snapshot()
        );
        got.extend(agg.drain().unwrap().samples);
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.stop();
    let summary = handle.join().unwrap();
    while !agg.finished() {
        got.extend(agg.drain().unwrap().samples);
    }
    (got, agg.tables().clone(), summary)
}

/// Runs the sampler on `target` under `cfg` for its duration (which must be set), then
/// drains the aggregator: every sample, the tables they refer to, and the sampler's summary.
#[allow(dead_code)] // Not every test that includes this module samples for a time.
pub fn sample_for(target: Target, cfg: SamplerConfig) -> (Vec<Sample>, Tables, SamplerSummary) {
    assert!(cfg.duration.is_some(), "sampled for a duration");
    // Joined before it is drained: room for every sample of a short flat-out run.
    let (side, mut agg) = strobe_aggregate::pipeline(1 << 20);
    let summary = start(target, None, cfg, side).unwrap().join().unwrap();
    let mut samples = Vec::new();
    while !agg.finished() {
        samples.extend(agg.drain().unwrap().samples);
    }
    (samples, agg.tables().clone(), summary)
}

/// The spinning target: pyenv 3.12.1 (a missing one fails the test) running one thread in a
/// Python loop forever, after its READY line.
#[allow(dead_code)] // Not every test that includes this module spins a target.
pub fn spinner(name: &str) -> Ready {
    const SCRIPT: &str = r#"import sys

def spin():
    n = 0
    while True:
        n = (n * 3 + 1) & 0xffff

sys.stdout.write("READY\n")
sys.stdout.flush()
spin()
"#;
    let python = interpreters::pyenv_version("3.12.1").require().path();
    Ready::python_script(python.to_str().unwrap(), name, SCRIPT, &[])
}
