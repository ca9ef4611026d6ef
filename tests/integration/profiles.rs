//! Reading strobe's output files back in tests: collapsed stacks, and speedscope's samples with
//! their weights for the standard error of a share.

use std::collections::BTreeMap;
use std::path::Path;

/// A collapsed file: stack (frames outermost first) → weight (µs).
pub fn collapsed(path: &Path) -> BTreeMap<Vec<String>, u64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let (stack, count) = line.rsplit_once(' ').unwrap();
        let frames = stack.split(';').map(str::to_string).collect();
        *out.entry(frames).or_insert(0) += count.parse::<u64>().unwrap();
    }
    out
}

/// Every sample of a speedscope file: its frame names (outermost first) and its weight.
pub fn speedscope_samples(path: &Path) -> Vec<(Vec<String>, f64)> {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let frames = doc["shared"]["frames"].as_array().unwrap();
    let mut out = Vec::new();
    for profile in doc["profiles"].as_array().unwrap() {
        let stacks = profile["samples"].as_array().unwrap();
        let weights = profile["weights"].as_array().unwrap();
        for (stack, w) in stacks.iter().zip(weights) {
            let names = stack
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    let name = &frames[i.as_u64().unwrap() as usize]["name"];
                    name.as_str().unwrap().to_string()
                })
                .collect();
            out.push((names, w.as_f64().unwrap()));
        }
    }
    out
}

/// The weighted share of the samples for which `is_in` holds.
pub fn weighted_share(samples: &[(Vec<String>, f64)], is_in: impl Fn(&[String]) -> bool) -> f64 {
    let total: f64 = samples.iter().map(|(_, w)| w).sum();
    let inside: f64 = samples
        .iter()
        .filter(|(s, _)| is_in(s))
        .map(|(_, w)| w)
        .sum();
    inside / total
}

/// The standard error of a weighted proportion `share` of the samples for which `is_in` holds:
/// samples are weighted by the intervals they stand for (more than one when the sampler woke
/// late), so the error comes from every sample's weight, `sqrt(Σ w²(x − p)²) / Σ w`.
///
/// That formula takes the samples as independent. They are not when the machine is loaded:
/// the target (and strobe) lose the CPU for tens of milliseconds at a time, and the samples
/// around such a gap are of the same task or phase; measured, a share then strays up to 5 of
/// these standard errors from the target's own timing while staying within the spread of its
/// parts. So the error is also estimated from [`BATCHES`] runs of consecutive samples (batch
/// means: each run's share against the whole's, weighted by its weight), which sees that
/// clustering, and the larger of the two is returned.
pub fn weighted_se(
    samples: &[(Vec<String>, f64)],
    is_in: impl Fn(&[String]) -> bool,
    share: f64,
) -> f64 {
    let total: f64 = samples.iter().map(|(_, w)| w).sum();
    let x = |s: &[String]| if is_in(s) { 1.0 } else { 0.0 };
    let var: f64 = samples
        .iter()
        .map(|(s, w)| w * w * (x(s) - share).powi(2))
        .sum();
    let independent = var.sqrt() / total;
    let per_batch = samples.len().div_ceil(BATCHES).max(1);
    let batches: Vec<(f64, f64)> = samples
        .chunks(per_batch)
        .map(|run| {
            let weight: f64 = run.iter().map(|(_, w)| w).sum();
            let inside: f64 = run.iter().map(|(s, w)| w * x(s)).sum();
            (weight, inside / weight)
        })
        .collect();
    let k = batches.len() as f64;
    let batch_var: f64 = batches
        .iter()
        .map(|(w, p)| w * w * (p - share).powi(2))
        .sum::<f64>()
        * k
        / (k - 1.0).max(1.0);
    independent.max(batch_var.sqrt() / total)
}

/// Runs of consecutive samples for the batch-means estimate of [`weighted_se`].
pub const BATCHES: usize = 20;
