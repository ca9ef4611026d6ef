//! What a native stack costs: capture by each method, unwinding, symbolisation (cold and warm
//! caches), on a real interpreter (pyenv 3.12): one thread spinning in Python, the main thread
//! asleep in `time.sleep`.
//!
//! `cargo bench -p strobe-native --bench capture` (as root). CPU times are strobe's own thread
//! (`CLOCK_THREAD_CPUTIME_ID`). What the target pays is measured on a C program spinning on a
//! counter: increments per nanosecond of the spinning thread's own CPU time (schedstat), so
//! that a machine shared with other work (which takes the CPU away from the target, not work
//! out of its nanoseconds) moves it little; the kernel's work at each perf interrupt and at
//! each ptrace stop and resume, done in the target's context, lowers it. Time spent stopped is
//! reported apart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::time::{clock_gettime, ClockId};
use std::time::{Duration, Instant};
use strobe_native::{Binaries, DebugSearch, ModuleMap, NativeFrame, Symbolizer, Unwinder, Unwound};
use strobe_remote::{
    BlockedThread, PerfConfig, PerfThread, ProcessMemory, StackError, ThreadTracer, UserRegs,
};
use strobe_testkit::Ready;

const SCRIPT: &str = r#"
import threading, time, sys
def spin():
    n = 0
    while True:
        n += 1
t = threading.Thread(target=spin, daemon=True)
t.start()
print("READY %d" % t.native_id)
sys.stdout.flush()
time.sleep(100000)
"#;

const STACK: usize = 64 * 1024;
const N: u32 = 2000;

fn cpu() -> Duration {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn per(total: Duration, n: u32) -> String {
    format!("{:.1} µs", total.as_secs_f64() * 1e6 / f64::from(n))
}

fn main() {
    let py = strobe_testkit::interpreters::require_path_str("pyenv_3_12");
    let target = Ready::python_script(py, "native-bench", SCRIPT, &[]);
    let pid = target.pid();
    let spinner: i32 = target.said.parse().unwrap();
    let mut stack = Vec::with_capacity(STACK);

    // (c) a sleeping thread read without a stop.
    let mut b = BlockedThread::open(pid, pid).unwrap();
    // The READY line comes before `time.sleep`: wait until the main thread is in
    // clock_nanosleep (230), or the loop below measures a thread still on its way there.
    let since = Instant::now();
    while b.state().unwrap().is_none_or(|s| s.nr != 230) {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "main thread never slept"
        );
        std::thread::yield_now();
    }
    let (mut running, mut woke) = (0, 0);
    let c0 = cpu();
    for _ in 0..N {
        match b.capture(STACK, &mut stack) {
            Ok(_) => {}
            Err(StackError::NotBlocked { .. }) => running += 1,
            Err(StackError::WokeUp { .. }) => woke += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let c1 = cpu();
    println!(
        "blocked, sleeping thread: CPU {} per capture ({running} of {N} found it running, {woke} woken during the copy)",
        per(c1 - c0, N)
    );

    // (a) ptrace, one thread stopped.
    for (what, tid) in [("running thread", spinner), ("sleeping thread", pid)] {
        let mut t = ThreadTracer::seize(pid, tid).unwrap();
        let mut stopped = Duration::ZERO;
        let mut max_stopped = Duration::ZERO;
        let mut bytes = 0usize;
        let c0 = cpu();
        for _ in 0..N {
            let c = t.capture(STACK, &mut stack).unwrap();
            stopped += c.stopped_for;
            max_stopped = max_stopped.max(c.stopped_for);
            bytes += stack.len();
        }
        let c1 = cpu();
        println!(
            "ptrace, {what}: CPU {} per capture, thread stopped {} on average (max {:.1} µs), {} KiB copied on average",
            per(c1 - c0, N),
            per(stopped, N),
            max_stopped.as_secs_f64() * 1e6,
            bytes / N as usize / 1024
        );
    }

    // (a) again, from the spinner's own CPU and from another (the sampler's `placement`).
    by_placement(pid, spinner, &mut stack);

    // (b) perf events, and (a) at the same rates, on the C chain spinning: the work it gets
    // done per second (its counter, read from its memory) with and without sampling.
    slowdowns();

    // Unwinding and symbolisation: cold (nothing parsed yet) and warm.
    let mem = ProcessMemory::open(pid).unwrap();
    let mut t = ThreadTracer::seize(pid, pid).unwrap();
    let regs = t.capture(STACK, &mut stack).unwrap().regs;
    let sleeping = (regs, stack.clone());
    drop(t);
    let mut t = ThreadTracer::seize(pid, spinner).unwrap();
    let regs = t.capture(STACK, &mut stack).unwrap().regs;
    let spinning = (regs, stack.clone());
    drop(t);
    let c0 = cpu();
    let w0 = Instant::now();
    let mut binaries = Binaries::new(DebugSearch::default());
    let (modules, _) = ModuleMap::read(pid, &mem, &mut binaries).unwrap();
    let c1 = cpu();
    let mut unwinder = Unwinder::new(&modules);
    let mut symbolizer = Symbolizer::new();
    let mut unwound = Unwound::default();
    let mut frames: Vec<NativeFrame> = Vec::new();
    let mut one =
        |regs: &UserRegs, stack: &[u8], unwinder: &mut Unwinder, symbolizer: &mut Symbolizer| {
            unwinder.unwind(regs, stack, &mut unwound);
            frames.clear();
            symbolizer.symbolize(&modules, &unwound, &mut frames);
            frames.len()
        };
    let depth = one(&sleeping.0, &sleeping.1, &mut unwinder, &mut symbolizer);
    let c2 = cpu();
    println!(
        "cold: modules {:.1} ms CPU ({} binaries), first stack unwound+symbolised {:.1} ms CPU ({depth} frames), {:.1} ms wall in all",
        (c1 - c0).as_secs_f64() * 1e3,
        binaries.len(),
        (c2 - c1).as_secs_f64() * 1e3,
        w0.elapsed().as_secs_f64() * 1e3
    );
    for (what, (regs, stack)) in [("sleeping", &sleeping), ("spinning", &spinning)] {
        one(regs, stack, &mut unwinder, &mut symbolizer);
        let c0 = cpu();
        let mut depth = 0;
        for _ in 0..N {
            depth = one(regs, stack, &mut unwinder, &mut symbolizer);
        }
        let c1 = cpu();
        let mut u = Unwound::default();
        let c2 = cpu();
        for _ in 0..N {
            unwinder.unwind(regs, stack, &mut u);
        }
        let c3 = cpu();
        println!(
            "warm, {what} thread ({depth} frames): unwind+symbolise {} per stack, of which unwind {}",
            per(c1 - c0, N),
            per(c3 - c2, N)
        );
    }
}

/// ptrace captures of the running thread `spinner`, pinned to one CPU, by this thread pinned
/// to the same CPU and to another, alternated: strobe's CPU and the wall time per capture, and
/// how long the thread was stopped. From another CPU every step of a stop is a wake-up across
/// CPUs (an exit to the hypervisor on a VM); see the sampler's `placement` module.
fn by_placement(pid: i32, spinner: i32, stack: &mut Vec<u8>) {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let all = sched_getaffinity(Pid::from_raw(0)).unwrap();
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| all.is_set(c).unwrap())
        .collect();
    if cpus.len() < 2 {
        println!("ptrace by placement: this process may use one CPU only, not measured");
        return;
    }
    let only = |c: usize| {
        let mut set = CpuSet::new();
        set.set(c).unwrap();
        set
    };
    sched_setaffinity(Pid::from_raw(spinner), &only(cpus[0])).unwrap();
    let mut t = ThreadTracer::seize(pid, spinner).unwrap();
    for (what, on) in [("its own", cpus[0]), ("another", cpus[1])].repeat(2) {
        sched_setaffinity(Pid::from_raw(0), &only(on)).unwrap();
        let mut stopped = Duration::ZERO;
        let (c0, w0) = (cpu(), Instant::now());
        for _ in 0..N {
            stopped += t.capture(STACK, stack).unwrap().stopped_for;
        }
        let (c1, w1) = (cpu(), Instant::now());
        println!(
            "ptrace, running thread, strobe on {what} CPU: CPU {} per capture, {} wall, thread stopped {} on average",
            per(c1 - c0, N),
            per(w1 - w0, N),
            per(stopped, N)
        );
    }
    drop(t);
    sched_setaffinity(Pid::from_raw(0), &all).unwrap();
    sched_setaffinity(Pid::from_raw(spinner), &all).unwrap();
}

/// The chain program's `sink` counter: its address in the running target.
fn sink_address(pid: i32, exe: &std::path::Path) -> u64 {
    let nm = std::process::Command::new("nm").arg(exe).output().unwrap();
    let nm = String::from_utf8(nm.stdout).unwrap();
    let svma = nm
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[2] == "sink").then(|| u64::from_str_radix(f[0], 16).unwrap())
        })
        .unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let base = maps
        .lines()
        .find(|l| l.ends_with(exe.to_str().unwrap()))
        .map(|l| u64::from_str_radix(l.split('-').next().unwrap(), 16).unwrap())
        .unwrap();
    base + svma
}

/// Nanoseconds the thread has spent on a CPU (`/proc/PID/task/TID/schedstat`, first field).
fn on_cpu_ns(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/schedstat")).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// What `rate` measured.
struct Rate {
    /// Increments per nanosecond of the target's CPU time.
    per_cpu_ns: f64,
    /// Share of the wall time the target was on a CPU.
    on_cpu: f64,
    /// Captures or samples `during` reported.
    captures: u32,
}

/// The counter's progress over `secs` while `during` runs in a loop (it returns how many
/// captures it made).
fn rate(
    pid: i32,
    mem: &ProcessMemory,
    addr: u64,
    secs: f64,
    mut during: impl FnMut() -> u32,
) -> Rate {
    use strobe_memory::RemoteMemory;
    let since = Instant::now();
    let (v0, t0) = (mem.read_u64(addr).unwrap(), on_cpu_ns(pid));
    let mut captures = 0;
    while since.elapsed().as_secs_f64() < secs {
        captures += during();
    }
    let (v1, t1) = (mem.read_u64(addr).unwrap(), on_cpu_ns(pid));
    let wall = since.elapsed().as_secs_f64();
    Rate {
        per_cpu_ns: (v1 - v0) as f64 / (t1 - t0) as f64,
        on_cpu: (t1 - t0) as f64 / 1e9 / wall,
        captures,
    }
}

fn slowdowns() {
    let dir = std::env::temp_dir().join(format!("strobe-native-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("chain");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/targets/chain.c");
    let ok = std::process::Command::new("cc")
        .args(["-g", "-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .unwrap();
    assert!(ok.success());
    let chain = Ready::start(std::process::Command::new(&exe).arg("spin"), "chain");
    let pid = chain.pid();
    let mem = ProcessMemory::open(pid).unwrap();
    let addr = sink_address(pid, &exe);
    let secs = 2.0;
    let pause = |d: Duration| {
        std::thread::sleep(d);
        0
    };
    let base = rate(pid, &mem, addr, secs, || pause(Duration::from_millis(1)));
    println!(
        "chain spinning alone: {:.3} increments per ns of its CPU time, on a CPU {:.0}% of the time",
        base.per_cpu_ns,
        base.on_cpu * 100.0
    );
    let report = |what: &str, r: Rate, extra: String| {
        println!(
            "  {what}: {:.2}% fewer increments per CPU ns, on a CPU {:.0}% of the time, {} captures/samples in {secs} s{extra}",
            (1.0 - r.per_cpu_ns / base.per_cpu_ns) * 100.0,
            r.on_cpu * 100.0,
            r.captures,
        );
    };
    for (hz, stack_bytes) in [
        (1000, 16 * 1024),
        (1000, 32 * 1024),
        (1000, 60 * 1024),
        (10_000, 32 * 1024),
    ] {
        let config = PerfConfig {
            frequency_hz: hz,
            stack_bytes,
            ring_pages: 512,
            kernel_time: false,
        };
        let mut p = PerfThread::open(pid, pid, &config).unwrap();
        p.drain(|_| {});
        let mut drain_cpu = Duration::ZERO;
        let r = rate(pid, &mem, addr, secs, || {
            std::thread::sleep(Duration::from_millis(5));
            let c0 = cpu();
            let n = p.drain(|_| {}) as u32;
            drain_cpu += cpu() - c0;
            n
        });
        let extra = format!(
            ", drain CPU {} per sample, {} lost",
            per(drain_cpu, r.captures.max(1)),
            p.lost()
        );
        report(
            &format!("perf {hz} Hz, {} KiB stacks", stack_bytes / 1024),
            r,
            extra,
        );
    }
    for hz in [100u64, 1000, 10_000] {
        let mut t = ThreadTracer::seize(pid, pid).unwrap();
        let mut stack = Vec::with_capacity(STACK);
        let period = Duration::from_nanos(1_000_000_000 / hz);
        let mut stopped = Duration::ZERO;
        let r = rate(pid, &mem, addr, secs, || {
            std::thread::sleep(period);
            stopped += t.capture(STACK, &mut stack).unwrap().stopped_for;
            1
        });
        let extra = format!(
            ", stopped {:.2}% of the wall time ({} per capture)",
            stopped.as_secs_f64() / secs * 100.0,
            per(stopped, r.captures.max(1))
        );
        report(&format!("ptrace {hz} Hz"), r, extra);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
