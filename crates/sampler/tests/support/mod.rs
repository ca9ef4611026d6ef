//! What the sampler's tests share: sampling a live target until enough samples came.

use std::time::{Duration, Instant};

use strobe_aggregate::{Sample, Tables};
use strobe_sampler::{start, SamplerConfig, SamplerSummary};
use strobe_target::Target;

/// Runs the sampler on `target` under `cfg` (its duration left unset) until at least
/// `samples` samples came, however few rounds a second a loaded machine allows, then stops
/// it: every sample, the tables they refer to, and the sampler's summary. Panics after a
/// minute without them.
pub fn sample_until(
    target: Target,
    cfg: SamplerConfig,
    samples: usize,
) -> (Vec<Sample>, Tables, SamplerSummary) {
    assert!(cfg.duration.is_none(), "sampled until {samples} samples");
    let (side, mut agg) = strobe_aggregate::pipeline(1 << 16);
    let handle = start(target, None, cfg, side).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < samples {
        assert!(
            Instant::now() < deadline,
            "{} of {samples} samples in 60 s",
            got.len()
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
