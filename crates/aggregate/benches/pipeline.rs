//! Throughput of interning + counting, single-threaded and through the two-thread pipeline.
//!
//! `cargo bench -p strobe-aggregate` prints samples/s and ns/sample for 50- and 200-frame
//! stacks. The workload is a few thousand distinct stacks sharing long prefixes (a web app's
//! framework frames, then varying handler frames and lines), drawn with a skew so that a few
//! stacks dominate, as in a real profile. Inputs are generated before timing starts.
//!
//! Two sampler-side paths are measured: interning names for every frame of every sample, and
//! interning only the stack from cached frame ids. The reader is expected to use the second (it
//! caches a `FrameId` per code object and line, as it must cache decoded names and line tables
//! anyway); the first is memory-bound at roughly 70 ns per frame (four dependent cache misses:
//! index, frame, two strings).

use std::time::{Duration, Instant};

use strobe_aggregate::{pipeline, Aggregator, FrameId, FrameKey, Sample, SampleFlags, ThreadKey};

const DISTINCT_STACKS: usize = 3000;
const SAMPLES: usize = 400_000;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

struct Workload {
    names: Vec<String>,
    files: Vec<String>,
    /// Per distinct stack: (name index, file index, line) outermost first.
    stacks: Vec<Vec<(usize, usize, i32)>>,
    /// Which stack each sample takes.
    order: Vec<usize>,
}

fn workload(depth: usize) -> Workload {
    let names: Vec<String> = (0..400)
        .map(|i| format!("package.module{}.Class.method_{i}", i % 37))
        .collect();
    let files: Vec<String> = (0..40)
        .map(|i| format!("/usr/lib/python3.12/site-packages/pkg/module_{i}.py"))
        .collect();
    let mut rng = Lcg(0x5eed);
    let shared = depth.saturating_sub(12);
    let stacks = (0..DISTINCT_STACKS)
        .map(|s| {
            (0..depth)
                .map(|d| {
                    if d < shared {
                        // Framework prefix: same functions, a couple of line variants.
                        (
                            d % names.len(),
                            d % files.len(),
                            (d as i32) * 3 + (s % 2) as i32,
                        )
                    } else {
                        let n = rng.next() as usize % names.len();
                        (n, n % files.len(), (rng.next() % 400) as i32)
                    }
                })
                .collect()
        })
        .collect();
    let order = (0..SAMPLES)
        .map(|_| {
            // Skewed: squaring a uniform number favours small indexes.
            let r = rng.next() % 1000;
            (r * r * DISTINCT_STACKS as u64 / 1_000_000) as usize
        })
        .collect();
    Workload {
        names,
        files,
        stacks,
        order,
    }
}

fn keys(w: &Workload) -> Vec<Vec<FrameKey<'_>>> {
    w.stacks
        .iter()
        .map(|s| {
            s.iter()
                .map(|&(n, f, line)| FrameKey::python(&w.names[n], &w.files[f], Some(line)))
                .collect()
        })
        .collect()
}

const THREAD: ThreadKey<'static> = ThreadKey {
    os_tid: 4242,
    name: Some("MainThread"),
    interpreter_id: 0,
};

fn report(what: &str, depth: usize, n: usize, elapsed: Duration) {
    let ns = elapsed.as_nanos() as f64 / n as f64;
    println!(
        "{what:<44} depth {depth:>3}: {:>10.0} samples/s  {:>7.0} ns/sample",
        1e9 / ns,
        ns
    );
}

fn bench_strings(w: &Workload, depth: usize) -> Result<(), Box<dyn std::error::Error>> {
    let keys = keys(w);
    let mut agg = Aggregator::new();
    // Warm up: every distinct stack once, as a long recording would have.
    for k in &keys {
        agg.record(&THREAD, k, SampleFlags::empty(), 0, 10_000)?;
    }
    let start = Instant::now();
    for (t, &i) in w.order.iter().enumerate() {
        agg.record(&THREAD, &keys[i], SampleFlags::empty(), t as u64, 10_000)?;
    }
    report(
        "intern names+stack, count (1 thread)",
        depth,
        w.order.len(),
        start.elapsed(),
    );
    std::hint::black_box(agg.counts().total());
    Ok(())
}

fn bench_frame_ids(w: &Workload, depth: usize) -> Result<(), Box<dyn std::error::Error>> {
    // The reader caches a FrameId per (code object, line): model that as pre-interned frames.
    let keys = keys(w);
    let mut agg = Aggregator::new();
    let thread = agg.interner().intern_thread(&THREAD)?;
    let mut ids: Vec<Vec<FrameId>> = Vec::new();
    for k in &keys {
        ids.push(
            k.iter()
                .map(|f| agg.interner().intern_frame(f))
                .collect::<Result<_, _>>()?,
        );
    }
    let start = Instant::now();
    for (t, &i) in w.order.iter().enumerate() {
        let stack = agg.interner().intern_stack(&ids[i])?;
        agg.add(&Sample {
            stack,
            thread,
            flags: SampleFlags::empty(),
            timestamp_ns: t as u64,
            weight_ns: 10_000,
        });
    }
    report(
        "cached frame ids: intern stack, count",
        depth,
        w.order.len(),
        start.elapsed(),
    );
    std::hint::black_box(agg.counts().total());
    Ok(())
}

fn bench_pipeline(
    w: &Workload,
    depth: usize,
    cached_ids: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let (mut sampler, mut agg) = pipeline(65_536);
    let label = if cached_ids {
        "pipeline, cached frame ids"
    } else {
        "pipeline, names"
    };
    let keys = keys(w);
    let mut ids: Vec<Vec<FrameId>> = Vec::new();
    let thread = sampler.interner().intern_thread(&THREAD)?;
    if cached_ids {
        for k in &keys {
            ids.push(
                k.iter()
                    .map(|f| sampler.interner().intern_frame(f))
                    .collect::<Result<_, _>>()?,
            );
        }
    }
    let start = Instant::now();
    let (pushed, sampler_cpu) = std::thread::scope(|scope| {
        let producer = scope.spawn(|| {
            let t0 = Instant::now();
            let mut pushed = 0u64;
            for (t, &i) in w.order.iter().enumerate() {
                let ok = if cached_ids {
                    match sampler.interner().intern_stack(&ids[i]) {
                        Ok(stack) => sampler.push(Sample {
                            stack,
                            thread,
                            flags: SampleFlags::empty(),
                            timestamp_ns: t as u64,
                            weight_ns: 10_000,
                        }),
                        Err(_) => false,
                    }
                } else {
                    matches!(
                        sampler.record(&THREAD, &keys[i], SampleFlags::empty(), t as u64, 10_000),
                        Ok(true)
                    )
                };
                pushed += u64::from(ok);
            }
            let elapsed = t0.elapsed();
            drop(sampler);
            (pushed, elapsed)
        });
        let mut counted = 0u64;
        loop {
            match agg.drain() {
                Ok(d) => counted += d.samples.len() as u64,
                Err(e) => {
                    eprintln!("{e}");
                    break;
                }
            }
            if agg.finished() {
                break;
            }
            std::thread::yield_now();
        }
        let r = producer.join().unwrap_or((0, Duration::ZERO));
        debug_assert_eq!(counted, r.0);
        r
    });
    let elapsed = start.elapsed();
    report(
        &format!("{label}: sampler thread"),
        depth,
        w.order.len(),
        sampler_cpu,
    );
    report(
        &format!("{label}: end to end"),
        depth,
        w.order.len(),
        elapsed,
    );
    println!(
        "{:<44} depth {depth:>3}: {} of {} samples dropped (queue full)",
        format!("{label}: drops"),
        w.order.len() as u64 - pushed,
        w.order.len()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo test --benches` runs bench binaries with `--bench`-less args; keep that quick.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return Ok(());
    }
    for depth in [50, 200] {
        let w = workload(depth);
        bench_strings(&w, depth)?;
        bench_frame_ids(&w, depth)?;
        bench_pipeline(&w, depth, false)?;
        bench_pipeline(&w, depth, true)?;
    }
    Ok(())
}
