//! Resident memory per distinct stack of a profile pipeline, as `strobe record` to a profile
//! format uses it: `cargo run --release -p strobe-aggregate --example stack_memory [N]`.
//!
//! Records N (default 500,000) samples of random paths through 16 functions, 1 to 24 deep (as
//! `benches/paths_target.py`), through `pipeline()` on one thread, draining every 1,000 samples
//! and letting the sampler's table collect after each, as the sampler does after each round;
//! prints the growth of the resident set divided by the distinct stacks the aggregator holds.

use strobe_aggregate::{pipeline, CapacityError, FrameKey, SampleFlags, ThreadKey};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() -> Result<(), CapacityError> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500_000);
    let names: Vec<String> = (0..16).map(|i| format!("f{i}")).collect();
    let thread = ThreadKey {
        os_tid: 1,
        name: Some("MainThread"),
        interpreter_id: 0,
    };
    let (mut sampler, mut agg) = pipeline(1 << 16);
    agg.keep_interval(false);
    let before = rss_kib();
    let mut frames: Vec<FrameKey<'_>> = Vec::new();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..n {
        frames.clear();
        frames.push(FrameKey::python("<module>", "paths_target.py", Some(400)));
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let depth = 1 + (x % 24) as usize;
        let mut y = x;
        for _ in 0..depth {
            y ^= y << 13;
            y ^= y >> 7;
            y ^= y << 17;
            let f = (y % 16) as usize;
            frames.push(FrameKey::python(
                &names[f],
                "paths_target.py",
                Some(f as i32 * 10 + 5),
            ));
        }
        sampler.record(&thread, &frames, SampleFlags::empty(), i, 1_000_000)?;
        sampler.collect_stacks();
        if i % 1000 == 999 {
            agg.drain()?;
        }
    }
    drop(sampler);
    while !agg.finished() {
        agg.drain()?;
    }
    let after = rss_kib();
    let stacks = agg.tables().num_stacks();
    println!(
        "{n} samples, {stacks} distinct stacks: RSS {before} KiB -> {after} KiB, {:.0} bytes per distinct stack",
        after.saturating_sub(before) as f64 * 1024.0 / stacks as f64
    );
    Ok(())
}
