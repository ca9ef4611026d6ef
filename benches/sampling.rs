//! Sampling speed and target slowdown, against real interpreters on this machine.
//!
//! ```text
//! cargo bench --bench sampling                 # throughput table
//! cargo bench --bench sampling -- slowdown     # target work rate, sampled vs not
//! cargo bench --bench sampling -- syscalls     # process_vm_readv costs by shape
//! cargo bench --bench sampling -- attach PID SECONDS   # used by compare.sh
//! cargo bench --bench sampling -- script       # the target, for compare.sh
//! ```
//!
//! `STROBE_BENCH_ONLY=3.12` keeps the versions containing that text, `STROBE_BENCH_DEPTH=200` one
//! stack depth, `STROBE_BENCH_SAMPLES=N` sets the samples per row.
//!
//! Throughput: a target (pyenv 3.10, 3.11, 3.12, 3.13) runs a CPU-bound loop at a fixed Python
//! stack depth (50 and 200 frames) and announces READY; this process attaches as `strobe` does
//! (`strobe_locate::locate`, `layout::resolve`) and samples it flat out on one thread. Each
//! sample is `Walker::sample_into` plus what a sampler does next: turn every frame into an
//! interned `(function, file, line)` id (`Walker::frame_info` only for keys not seen before,
//! ids of frames `RawThread::unchanged` reports are reused). Reported: samples/s (wall), CPU µs
//! per sample (`CLOCK_THREAD_CPUTIME_ID` of the sampling thread, user + system), the user/system
//! split, and reads of the target (system calls) per sample. The allocating `Walker::walk` is
//! measured too, for reference.
//!
//! Slowdown: the target prints how many loop iterations it completes per second of its own
//! CPU time (so that other load on the host, which deschedules it, does not count); its rate
//! is compared with no sampling, sampling at 1 kHz and at 10 kHz (paced by a simple deadline
//! loop here), and flat out, and with the 10 kHz loop waking up without reading (what the
//! wake-ups alone cost); then with strobe's own sampler (`strobe_sampler::start`, as `strobe
//! record` runs it) at 1 and 10 kHz, keeping off the target's CPUs (the default) and not. Set `STROBE_BENCH_LOAD=N` to add N busy threads to this process (a
//! loaded host).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};
use strobe_memory::{MemError, RemoteMemory};
use strobe_remote::ProcessMemory;
use strobe_walker::{RawSample, Roots, Walker};

/// The target: `<module>` → rec × (depth − 2) → spin, which loops forever calling `leaf`
/// and prints its iteration rate every `period` seconds.
const TARGET: &str = r#"import sys, time
DEPTH = int(sys.argv[1])
PERIOD = float(sys.argv[2])

def leaf(n):
    return (n * 2 + 1) & 0xffff

# Iterations per second of this thread's own CPU time: unrelated load on the host that
# deschedules the target does not change it; interference from being read does.
clock = getattr(time, "thread_time", time.time)

def spin():
    n = 0
    done = 0
    t0 = time.time()
    c0 = clock()
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    while True:
        for _ in range(2000):
            n = leaf(n)
        done += 2000
        now = time.time()
        if now - t0 >= PERIOD:
            c = clock()
            sys.stdout.write("RATE %d\n" % (done / max(c - c0, 1e-9)))
            sys.stdout.flush()
            done = 0
            t0 = now
            c0 = c

def rec(k):
    if k == 0:
        return spin()
    return rec(k - 1)

rec(DEPTH - 3)
"#;

const VERSIONS: &[(&str, &str)] = &[
    ("3.10.13", "python3.10"),
    ("3.11.7", "python3.11"),
    ("3.12.1", "python3.12"),
    ("3.13.0", "python3.13"),
];

/// Kills the target however the benchmark ends.
struct Target {
    child: Child,
    rates: Receiver<(Instant, f64)>,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target {
    fn start(version: &str, exe: &str, depth: usize, period: f64) -> Target {
        let python = strobe_testkit::interpreters::pyenv_root()
            .join("versions")
            .join(version)
            .join("bin")
            .join(exe);
        assert!(
            python.is_file(),
            "{} is missing: run .ci/provision.sh",
            python.display()
        );
        let script = std::env::temp_dir().join(format!("strobe-bench-{}.py", std::process::id()));
        std::fs::write(&script, TARGET).unwrap();
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(depth.to_string())
            .arg(period.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "READY", "target said {line:?}");
        let (tx, rates) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if let Some(r) = line.strip_prefix("RATE ") {
                    if tx
                        .send((Instant::now(), r.trim().parse().unwrap()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        });
        Target { child, rates }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

/// `ProcessMemory` counting the reads it makes (each is one system call here), the ranges
/// they carry once `ProcessMemory` has merged neighbours (each costs ~0.3 µs in the kernel
/// here) and the bytes.
struct Counted {
    inner: ProcessMemory,
    /// Counting costs a sort and two allocations per read: it is switched off while CPU time
    /// is measured, and the counts come from a separate run of the same loop.
    counting: Cell<bool>,
    /// The ranges of the last batched read while counting: replayed bare to measure the floor.
    last_batch: std::cell::RefCell<Vec<(u64, usize)>>,
    calls: Cell<u64>,
    iovecs: Cell<u64>,
    bytes: Cell<u64>,
}

impl Counted {
    fn reset(&self) {
        self.calls.set(0);
        self.iovecs.set(0);
        self.bytes.set(0);
    }
}

impl RemoteMemory for Counted {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        if !self.counting.get() {
            return self.inner.read_into(addr, buf);
        }
        self.calls.set(self.calls.get() + 1);
        self.iovecs.set(self.iovecs.get() + 1);
        self.bytes.set(self.bytes.get() + buf.len() as u64);
        self.inner.read_into(addr, buf)
    }

    fn read_batch(&self, reqs: &[(u64, usize)], buf: &mut [u8]) -> Result<(), MemError> {
        if !self.counting.get() {
            return self.inner.read_batch(reqs, buf);
        }
        self.last_batch.replace(reqs.to_vec());
        // The iovecs ProcessMemory::read_batch sends for these requests.
        let merged = strobe_remote::merged_ranges(reqs);
        self.calls
            .set(self.calls.get() + merged.len().div_ceil(1024).max(1) as u64);
        self.iovecs.set(self.iovecs.get() + merged.len() as u64);
        self.bytes
            .set(self.bytes.get() + merged.iter().map(|m| m.1).sum::<u64>());
        self.inner.read_batch(reqs, buf)
    }
}

fn attach(pid: i32) -> Walker<Counted> {
    let mem = ProcessMemory::open(pid).unwrap();
    let process = strobe_locate::locate(pid, &mem).unwrap();
    let layout =
        strobe_walker::layout::resolve(&mem, process.version, process.debug_build, process.runtime)
            .unwrap()
            .layout;
    let roots = Roots {
        runtime: process.runtime,
        interp_head: process.interp_head,
        tstate_current: process.tstate_current,
    };
    let mem = Counted {
        inner: mem,
        counting: Cell::new(true),
        last_batch: Default::default(),
        calls: Cell::new(0),
        iovecs: Cell::new(0),
        bytes: Cell::new(0),
    };
    Walker::new(mem, layout, roots)
}

/// The sampler's own maps use the same hasher.
type Fast<K, V> = HashMap<K, V, strobe_aggregate::FxBuild>;

/// What a sampler does with a sample: intern every frame as a `(function, file, line)` id.
#[derive(Default)]
struct Interner {
    ids: Fast<(u64, Option<i32>), u32>,
    names: Vec<(Arc<str>, Arc<str>, Option<i32>)>,
    /// Per thread state: last sample's ids, outermost first.
    stacks: Fast<u64, Vec<u32>>,
    frames: u64,
    deepest: usize,
}

impl Interner {
    fn consume<M: RemoteMemory>(&mut self, w: &mut Walker<M>, raw: &RawSample) {
        for t in &raw.threads {
            let frames = raw.frames_of(t);
            let ids = self.stacks.entry(t.tstate_addr).or_default();
            ids.truncate(t.unchanged);
            for f in frames[..frames.len() - t.unchanged].iter().rev() {
                let id = match self.ids.get(&(f.code_addr, f.line)) {
                    Some(&id) => id,
                    None => {
                        let info = w.frame_info(*f).unwrap();
                        let id = self.names.len() as u32;
                        self.names.push((info.function, info.filename, info.line));
                        self.ids.insert((f.code_addr, f.line), id);
                        id
                    }
                };
                ids.push(id);
            }
            self.frames += frames.len() as u64;
            self.deepest = self.deepest.max(frames.len());
        }
    }
}

/// This thread's user-mode CPU time (the rest of `thread_cpu` is time in the kernel).
fn thread_user() -> Duration {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD)
        .unwrap()
        .user_time();
    Duration::new(u.tv_sec() as u64, u.tv_usec() as u32 * 1000)
}

fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

struct Measured {
    samples: u64,
    errors: u64,
    wall: Duration,
    cpu: Duration,
    /// User-mode part of `cpu`.
    user: Duration,
    reads: u64,
    iovecs: u64,
    bytes: u64,
    frames_per_sample: f64,
    /// Frames per sample proven unchanged rather than walked (`Walker::frames_proven`).
    proven_per_sample: f64,
    deepest: usize,
    /// CPU µs of the sample's own `process_vm_readv` alone: the last batch of the counted
    /// run, replayed with nothing else around it. What any reader of the same memory pays.
    floor_us: f64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.samples as f64 / self.wall.as_secs_f64()
    }
    fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.samples as f64
    }
}

/// Sample flat out: `n` samples, or until `until` if given.
fn measure_sample_into(w: &mut Walker<Counted>, n: u64, until: Option<Instant>) -> Measured {
    // Reads per sample, from a short counted run; then the timed run, not counted.
    let counts = {
        let mut raw = RawSample::new();
        let mut interner = Interner::default();
        w.memory().reset();
        w.memory().counting.set(true);
        let k = (n / 10).clamp(1, 20_000);
        for _ in 0..k {
            if w.sample_into(&mut raw).is_ok() {
                interner.consume(w, &raw);
            }
        }
        let m = w.memory();
        let per = |v: u64| v as f64 / k as f64;
        (per(m.calls.get()), per(m.iovecs.get()), per(m.bytes.get()))
    };
    w.memory().counting.set(false);
    let mut raw = RawSample::new();
    let mut interner = Interner::default();
    let mut errors = 0;
    let c0 = thread_cpu();
    let u0 = thread_user();
    let p0 = w.frames_proven();
    let t0 = Instant::now();
    let mut samples = 0;
    while samples < n && until.is_none_or(|u| samples % 256 != 0 || Instant::now() < u) {
        match w.sample_into(&mut raw) {
            Ok(()) => interner.consume(w, &raw),
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                errors += 1;
            }
        }
        samples += 1;
    }
    let wall = t0.elapsed();
    let cpu = thread_cpu() - c0;
    let user = thread_user() - u0;
    let floor_us = {
        let reqs = w.memory().last_batch.borrow().clone();
        let mut buf = vec![0u8; reqs.iter().map(|r| r.1).sum()];
        let k = (samples / 4).max(1);
        let c0 = thread_cpu();
        for _ in 0..k {
            // A range may have been freed since: the cost is the same either way.
            let _ = w.memory().inner.read_batch(&reqs, &mut buf);
        }
        (thread_cpu() - c0).as_secs_f64() * 1e6 / k as f64
    };
    w.memory().counting.set(true);
    let scaled = |per: f64| (per * samples as f64).round() as u64;
    Measured {
        samples,
        errors,
        wall,
        cpu,
        user,
        reads: scaled(counts.0),
        iovecs: scaled(counts.1),
        bytes: scaled(counts.2),
        frames_per_sample: interner.frames as f64 / samples as f64,
        proven_per_sample: (w.frames_proven() - p0) as f64 / samples as f64,
        deepest: interner.deepest,
        floor_us,
    }
}

fn measure_walk(w: &mut Walker<Counted>, n: u64) -> Measured {
    let mut errors = 0;
    let mut frames = 0u64;
    let mut deepest = 0;
    w.memory().reset();
    let c0 = thread_cpu();
    let u0 = thread_user();
    let t0 = Instant::now();
    for _ in 0..n {
        match w.walk() {
            Ok(stacks) => {
                for s in &stacks {
                    frames += s.frames.len() as u64;
                    deepest = deepest.max(s.frames.len());
                }
            }
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                errors += 1;
            }
        }
    }
    let wall = t0.elapsed();
    let cpu = thread_cpu() - c0;
    let user = thread_user() - u0;
    Measured {
        samples: n,
        errors,
        wall,
        cpu,
        user,
        reads: w.memory().calls.get(),
        iovecs: w.memory().iovecs.get(),
        bytes: w.memory().bytes.get(),
        frames_per_sample: frames as f64 / n as f64,
        proven_per_sample: f64::NAN,
        deepest,
        floor_us: f64::NAN,
    }
}

fn print_row(what: &str, m: &Measured) {
    let per = |v: u64| v as f64 / m.samples as f64;
    println!(
        "{what:<28} {:>9.0} {:>8.2} {:>7.2} {:>8.2} {:>6.2} {:>7.2} {:>8.1} {:>7.1} {:>7.1} {:>6} {:>6}",
        m.rate(),
        m.cpu_us(),
        m.user.as_secs_f64() * 1e6 / m.samples as f64,
        m.floor_us,
        per(m.reads),
        per(m.iovecs),
        per(m.bytes) / 1024.0,
        m.frames_per_sample,
        m.proven_per_sample,
        m.deepest,
        m.errors,
    );
}

fn throughput() {
    let n: u64 = env_u64("STROBE_BENCH_SAMPLES", 200_000);
    println!("strobe sampling benchmark: {n} samples per row, one sampling thread");
    println!(
        "{:<28} {:>9} {:>8} {:>7} {:>8} {:>6} {:>7} {:>8} {:>7} {:>7} {:>6} {:>6}",
        "target / API",
        "samples/s",
        "cpu µs",
        "user µs",
        "read µs",
        "reads",
        "iovecs",
        "KiB",
        "frames",
        "proven",
        "depth",
        "errors"
    );
    let only = std::env::var("STROBE_BENCH_ONLY").unwrap_or_default();
    for &(version, exe) in VERSIONS.iter().filter(|v| v.0.contains(only.as_str())) {
        let depths: Vec<usize> = match std::env::var("STROBE_BENCH_DEPTH") {
            Ok(d) => vec![d.parse().expect("STROBE_BENCH_DEPTH: a number of frames")],
            Err(_) => vec![50, 200],
        };
        for depth in depths {
            let target = Target::start(version, exe, depth, 3600.0);
            let mut w = attach(target.pid());
            // Warm up: code objects decoded, buffers grown, the plan settled.
            measure_sample_into(&mut w, 2_000, None);
            let m = measure_sample_into(&mut w, n, None);
            assert!(
                m.deepest >= depth,
                "{version}: deepest stack {} < {depth}",
                m.deepest
            );
            print_row(&format!("{version} d={depth} sample_into"), &m);
            let m = measure_walk(&mut w, n / 20);
            print_row(&format!("{version} d={depth} walk"), &m);
        }
    }
}

/// The target's work rate (iterations/s) over `secs` seconds, while `during` runs on this
/// thread (it is called repeatedly until the time is up).
fn rates_during(target: &Target, secs: f64, mut during: impl FnMut(Instant)) -> Vec<f64> {
    while target.rates.try_recv().is_ok() {}
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        during(end);
    }
    // Readings that cover only the phase: skip the first (it straddles the previous phase).
    let mut out: Vec<f64> = target
        .rates
        .try_iter()
        .filter(|(at, _)| *at <= end)
        .map(|(_, r)| r)
        .skip(1)
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Sample at `hz` with a deadline loop until `end`; returns (samples, achieved Hz).
fn paced(
    w: &mut Walker<Counted>,
    raw: &mut RawSample,
    interner: &mut Interner,
    hz: f64,
    end: Instant,
) -> u64 {
    paced_loop(hz, end, || {
        if w.sample_into(raw).is_ok() {
            interner.consume(w, raw);
        }
    })
}

/// A deadline loop calling `each` at `hz` until `end`; returns how many times it did.
fn paced_loop(hz: f64, end: Instant, mut each: impl FnMut()) -> u64 {
    let period = Duration::from_secs_f64(1.0 / hz);
    let mut next = Instant::now();
    let mut n = 0;
    while Instant::now() < end {
        each();
        n += 1;
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > period * 10 {
            // Far behind (e.g. descheduled): do not burst to catch up.
            next = now;
        }
    }
    n
}

/// strobe's sampler on `pid` at `hz` until `end` (started now, on its own thread, as
/// `strobe record` runs it), its samples drained and dropped.
fn run_sampler(pid: i32, hz: f64, placed: bool, end: Instant) -> strobe_sampler::SamplerSummary {
    let target = strobe_target::Target::attach(pid).unwrap();
    let (side, mut agg) = strobe_aggregate::pipeline(1 << 16);
    let cfg = strobe_sampler::SamplerConfig {
        rate_hz: hz,
        duration: Some(end.saturating_duration_since(Instant::now())),
        keep_off_target_cpus: placed,
        ..strobe_sampler::SamplerConfig::default()
    };
    let handle = strobe_sampler::start(target, None, cfg, side).unwrap();
    while !agg.finished() {
        agg.drain().unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.join().unwrap()
}

fn slowdown() {
    let secs = env_u64("STROBE_BENCH_PHASE_SECS", 4) as f64;
    let load = env_u64("STROBE_BENCH_LOAD", 0);
    let stop = Arc::new(AtomicBool::new(false));
    let burners: Vec<_> = (0..load)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    println!(
        "target slowdown: pyenv 3.12.1, 50-frame stack, {secs} s per phase, {} cores, {load} extra \
         busy thread(s)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let target = Target::start("3.12.1", "python3.12", 50, 0.1);
    let mut w = attach(target.pid());
    let mut raw = RawSample::new();
    let mut interner = Interner::default();
    let idle = |_: Instant| std::thread::sleep(Duration::from_millis(20));
    let base0 = rates_during(&target, secs, idle);
    let mut phase = |hz: f64| {
        let mut n = 0;
        let t0 = Instant::now();
        let r = rates_during(&target, secs, |end| {
            n += if hz.is_finite() {
                paced(&mut w, &mut raw, &mut interner, hz, end)
            } else {
                let mut k = 0;
                while Instant::now() < end && k < 10_000 {
                    if w.sample_into(&mut raw).is_ok() {
                        interner.consume(&mut w, &raw);
                    }
                    k += 1;
                }
                k
            }
        });
        (r, n as f64 / t0.elapsed().as_secs_f64())
    };
    let (k1, k1_hz) = phase(1_000.0);
    let base1 = rates_during(&target, secs, idle);
    let (k10, k10_hz) = phase(10_000.0);
    let base2 = rates_during(&target, secs, idle);
    let (max, max_hz) = phase(f64::INFINITY);
    let base3 = rates_during(&target, secs, idle);
    // The same 10 kHz deadline loop reading nothing: what waking up 10,000 times a second
    // costs the target by itself (on a loaded host each wake-up preempts someone).
    let mut woken = 0u64;
    let t0 = Instant::now();
    let wake = rates_during(&target, secs, |end| {
        woken += paced_loop(10_000.0, end, || {})
    });
    let wake_hz = woken as f64 / t0.elapsed().as_secs_f64();
    let base4 = rates_during(&target, secs, idle);
    // strobe's own sampler (what `strobe record` runs), which keeps off the target's CPU.
    let sampler_phase = |hz: f64, placed: bool| {
        let mut summary = None;
        let r = rates_during(&target, secs, |end| {
            if summary.is_none() {
                summary = Some(run_sampler(target.pid(), hz, placed, end));
            }
            std::thread::sleep(Duration::from_millis(20));
        });
        let s = summary.unwrap();
        (r, s.stats.achieved_hz(), s.placement)
    };
    let (s1, s1_hz, s1_place) = sampler_phase(1_000.0, true);
    let base5 = rates_during(&target, secs, idle);
    let (s10, s10_hz, s10_place) = sampler_phase(10_000.0, true);
    let base6 = rates_during(&target, secs, idle);
    let (u1, u1_hz, _) = sampler_phase(1_000.0, false);
    let base7 = rates_during(&target, secs, idle);
    let (u10, u10_hz, _) = sampler_phase(10_000.0, false);
    let base8 = rates_during(&target, secs, idle);
    stop.store(true, Ordering::Relaxed);
    for b in burners {
        b.join().unwrap();
    }
    println!(
        "{:<22} {:>12} {:>14} {:>10}",
        "phase", "sampled Hz", "iter/CPU-s", "ratio"
    );
    let row = |name: &str, hz: f64, r: &[f64], before: &[f64], after: &[f64]| {
        let base = (median(before) + median(after)) / 2.0;
        println!(
            "{name:<22} {hz:>12.0} {:>14.0} {:>10.4}",
            median(r),
            median(r) / base
        );
    };
    println!("{:<22} {:>12} {:>14.0}", "no sampling", "-", median(&base0));
    row("1 kHz", k1_hz, &k1, &base0, &base1);
    row("10 kHz", k10_hz, &k10, &base1, &base2);
    row("flat out", max_hz, &max, &base2, &base3);
    row("10 kHz wake-ups only", wake_hz, &wake, &base3, &base4);
    row("strobe sampler 1 kHz", s1_hz, &s1, &base4, &base5);
    row("strobe sampler 10 kHz", s10_hz, &s10, &base5, &base6);
    row("  not kept off, 1 kHz", u1_hz, &u1, &base6, &base7);
    row("  not kept off, 10 kHz", u10_hz, &u10, &base7, &base8);
    println!(
        "(strobe sampler: restricted itself to CPUs {s1_place:?} and {s10_place:?} at the end)"
    );
    println!(
        "(ratio: the target's median rate while sampled / mean of the adjacent unsampled medians)"
    );
}

/// What one `process_vm_readv` costs here, by shape, against a running target: the numbers
/// behind the design (syscall count and pages touched dominate, bytes barely matter).
fn syscalls() {
    let target = Target::start("3.12.1", "python3.12", 50, 3600.0);
    let pid = target.pid();
    let mem = ProcessMemory::open(pid).unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let heap = maps
        .lines()
        .filter(|l| l.contains("rw-p"))
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            let (a, b) = (
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            );
            (b - a >= 1 << 20).then_some(a)
        })
        .next()
        .expect("a 1 MiB writable mapping");
    let n = 100_000;
    let shapes: Vec<(&str, Vec<(u64, usize)>)> = vec![
        ("1 x 8 B", vec![(heap, 8)]),
        ("1 x 4 KiB (1 page)", vec![(heap, 4096)]),
        ("1 x 8 KiB (2 pages)", vec![(heap, 8192)]),
        ("1 x 16 KiB (4 pages)", vec![(heap, 16384)]),
        ("1 x 64 KiB (16 pages)", vec![(heap, 65536)]),
        (
            "8 x 8 B, same page",
            (0..8).map(|i| (heap + i * 64, 8)).collect(),
        ),
        (
            "8 x 8 B, 8 pages",
            (0..8).map(|i| (heap + i * 4096, 8)).collect(),
        ),
        (
            "50 x 128 B, 50 pages",
            (0..50).map(|i| (heap + i * 4096, 128)).collect(),
        ),
    ];
    println!("process_vm_readv against a running 3.12 target, {n} calls each");
    println!("{:<24} {:>9} {:>9}", "shape", "cpu µs", "wall µs");
    for (name, reqs) in shapes {
        let total: usize = reqs.iter().map(|r| r.1).sum();
        let mut buf = vec![0u8; total];
        let c0 = thread_cpu();
        let t0 = Instant::now();
        for _ in 0..n {
            mem.read_batch(&reqs, &mut buf).unwrap();
        }
        let wall = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
        let cpu = (thread_cpu() - c0).as_secs_f64() * 1e6 / n as f64;
        println!("{name:<24} {cpu:>9.2} {wall:>9.2}");
    }
}

/// Attach to an already running target (`compare.sh`) and sample it flat out for `secs`.
fn attach_mode(pid: i32, secs: f64) {
    let mut w = attach(pid);
    measure_sample_into(&mut w, 2_000, None);
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let m = measure_sample_into(&mut w, u64::MAX, Some(until));
    println!(
        "strobe samples={} wall_s={:.3} cpu_s={:.3} frames_per_sample={:.1} errors={}",
        m.samples,
        m.wall.as_secs_f64(),
        m.cpu.as_secs_f64(),
        m.frames_per_sample,
        m.errors
    );
}

/// The floor of a paced sampler: a thread that waits for each deadline at `rate` the way the
/// sampler does (timer slack 1 ns, `park_timeout` to the deadline) and does nothing else.
/// Prints `wake rate_hz=R wakes=N cpu_us_per_wake=X`: what any sampler that sleeps between
/// samples pays per round on this machine before it reads a byte (on the 2-vCPU test VM most of
/// it is the kernel switching the idle CPU back to the thread).
fn wake_floor(rate: f64, secs: f64) {
    let _ = nix::sys::prctl::set_timerslack(1);
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let cpu0 = thread_cpu();
    let mut wakes = 0u64;
    let mut deadline = start;
    while start.elapsed().as_secs_f64() < secs {
        deadline += period;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::park_timeout(deadline - now);
        }
        wakes += 1;
    }
    let cpu = thread_cpu() - cpu0;
    println!(
        "wake rate_hz={rate} wakes={wakes} cpu_us_per_wake={:.2}",
        cpu.as_secs_f64() * 1e6 / wakes.max(1) as f64
    );
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; everything else is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.first().map(String::as_str) {
        None | Some("throughput") => throughput(),
        Some("slowdown") => slowdown(),
        Some("syscalls") => syscalls(),
        // The target script, for compare.sh.
        Some("script") => print!("{TARGET}"),
        Some("attach") => {
            let pid = args
                .get(1)
                .and_then(|p| p.parse().ok())
                .expect("attach PID SECONDS");
            let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
            attach_mode(pid, secs);
        }
        Some("wake") => {
            let rate: f64 = args
                .get(1)
                .and_then(|r| r.parse().ok())
                .expect("wake RATE_HZ SECONDS");
            let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
            wake_floor(rate, secs);
        }
        Some(other) => panic!(
            "unknown mode {other:?}: throughput, slowdown, attach PID SECONDS or wake RATE SECONDS"
        ),
    }
}
