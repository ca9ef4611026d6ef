//! Issue 12's feasibility study: can the kernel hand us a preempted thread's registers and
//! stack without a stop? Per-thread perf events that sample the thread's own switches out
//! ([`PerfTrigger::SwitchOut`], or `sched:sched_switch` filtered to preemptions), measured on a
//! live target (benches/preempt_probe.sh runs it on benches/native_target.py).
//!
//! ```text
//! preempt_probe count PID SECS        records/s of each variant on every thread but the main one
//! preempt_probe verify PID SECS [drained]   newest preemption record (PreemptWatch, or
//!                                     drained PerfThreads) vs a ptrace stop of that thread
//! preempt_probe cost PHASE_SECS CYCLES CMD...   CMD's RATE lines with and without the events
//! preempt_probe cost-switches PHASE_SECS CYCLES CMD...   the same for per-CPU CpuSwitches,
//!                                     without and with the registers of each preemption
//!                                     (the `cost` phases end with per-thread SwitchWatches)
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "preempt_probe/cost.rs"]
mod cost;

use cost::cost;

use nix::sys::ptrace;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::IoSliceMut;
use std::time::{Duration, Instant};
use strobe_remote::{
    procfs, LastSwitch, PerfConfig, PerfThread, PerfTrigger, PreemptWatch, SwitchWatch, UserRegs,
};

/// How often the events are drained.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> u64 { args[i].parse().expect("a number") };
    match args.first().map(String::as_str) {
        Some("count") => count(num(1) as i32, Duration::from_secs(num(2))),
        Some("verify") => verify(
            num(1) as i32,
            Duration::from_secs(num(2)),
            args.get(3).is_some_and(|a| a == "drained"),
        ),
        Some("cost") => cost(Duration::from_secs(num(1)), num(2), &args[3..], false),
        Some("cost-switches") => cost(Duration::from_secs(num(1)), num(2), &args[3..], true),
        _ => eprintln!("usage: see the module documentation"),
    }
}

/// The process's threads but its main one.
fn workers(pid: i32) -> Vec<i32> {
    let tasks = procfs::tasks(pid).unwrap();
    tasks
        .into_iter()
        .map(|t| t as i32)
        .filter(|&t| t != pid)
        .collect()
}

fn config(stack_bytes: u32, ring_pages: usize) -> PerfConfig {
    PerfConfig {
        stack_bytes,
        ring_pages,
        ..PerfConfig::default()
    }
}

/// One event per thread, all with `trigger`.
fn open_all(pid: i32, tids: &[i32], trigger: &PerfTrigger, config: &PerfConfig) -> Vec<PerfThread> {
    tids.iter()
        .map(|&tid| PerfThread::open_on(pid, tid, config, trigger).unwrap())
        .collect()
}

/// Records and stack bytes drained from `events`, and samples lost so far.
#[derive(Default, Debug, Clone, Copy)]
struct Drained {
    records: u64,
    stack_bytes: u64,
    drain_time: Duration,
}

fn drain_all(events: &mut [PerfThread], into: &mut Drained) {
    let start = Instant::now();
    for e in events.iter_mut() {
        let mut bytes = 0u64;
        into.records += e.drain(|s| bytes += s.stack.len() as u64) as u64;
        into.stack_bytes += bytes;
    }
    into.drain_time += start.elapsed();
}

fn lost(events: &[PerfThread]) -> u64 {
    events.iter().map(PerfThread::lost).sum()
}

fn unfiltered_switches() -> PerfTrigger {
    match PerfTrigger::preemptions().unwrap() {
        PerfTrigger::Tracepoint { id, .. } => PerfTrigger::Tracepoint { id, filter: None },
        other => other,
    }
}

/// Every variant open at once on every worker: how many records each gives.
fn count(pid: i32, secs: Duration) {
    let tids = workers(pid);
    let small = config(64, 16);
    let variants = [
        ("software context-switches", PerfTrigger::SwitchOut),
        ("sched_switch, no filter", unfiltered_switches()),
        (
            "sched_switch, still runnable",
            PerfTrigger::preemptions().unwrap(),
        ),
    ];
    let mut events: Vec<Vec<PerfThread>> = variants
        .iter()
        .map(|(_, t)| open_all(pid, &tids, t, &small))
        .collect();
    let mut drained = vec![Drained::default(); events.len()];
    // What a sampler round would find: each worker on a CPU, preempted, or waiting.
    let watches: Vec<SwitchWatch> = tids
        .iter()
        .map(|&t| SwitchWatch::open(pid, t).unwrap())
        .collect();
    let (mut on_cpu, mut preempted, mut waiting) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < secs {
        std::thread::sleep(DRAIN_EVERY);
        for (e, d) in events.iter_mut().zip(drained.iter_mut()) {
            drain_all(e, d);
        }
        for w in &watches {
            match w.last() {
                Some(LastSwitch::In) => on_cpu += 1,
                Some(LastSwitch::Preempted) => preempted += 1,
                Some(LastSwitch::Blocked) => waiting += 1,
                _ => {}
            }
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!("{} threads, {took:.1} s, load {}", tids.len(), loadavg());
    for (((name, _), d), e) in variants.iter().zip(&drained).zip(&events) {
        println!(
            "  {name:30} {:9.0} records/s  ({:.0} per thread), lost {}",
            d.records as f64 / took,
            d.records as f64 / took / tids.len() as f64,
            lost(e)
        );
    }
    println!(
        "  still-runnable share of switch-outs: {:.1}%",
        100.0 * drained[2].records as f64 / drained[0].records.max(1) as f64
    );
    println!(
        "  workers looked at every {} ms: on a CPU {on_cpu}, preempted {preempted}, waiting \
         {waiting}: {:.1}% of the running ones preempted",
        DRAIN_EVERY.as_millis(),
        100.0 * preempted as f64 / (on_cpu + preempted).max(1) as f64
    );
}

/// Where `verify` takes a thread's newest preemption record from.
enum Source {
    /// Drained [`PerfThread`]s, and the newest record of each.
    Drained(Vec<PerfThread>, Vec<Option<Newest>>),
    /// [`PreemptWatch`]es.
    Watch(Vec<PreemptWatch>),
}

/// The newest sample of one thread, copied out of its ring.
struct Newest {
    time_ns: u64,
    regs: UserRegs,
    stack: Vec<u8>,
}

#[derive(Default, Debug)]
struct Verdicts {
    /// Threads seen preempted with a record, and stopped.
    checked: u64,
    regs_equal: u64,
    stack_equal: u64,
    /// Preempted, but no record at all for the thread yet.
    no_record: u64,
    /// The watch moved while the ring was drained.
    moved: u64,
    /// The thread was switched in before the stop request: not a check.
    raced: u64,
    /// Drains that found records dropped (the ring was full).
    overflowed: u64,
    /// Checks whose copies differed above the thread pointer (not stack).
    differ_above_tp: u64,
    /// Checks of a thread preempted in a system call.
    in_syscall: u64,
    /// Bytes compared, over the checks whose stacks agreed.
    compared_bytes: u64,
    /// Record age at the stop, ns, summed.
    age_ns: u64,
}

/// For every worker seen preempted, with its newest preemption record taken since: stop it
/// with ptrace (it can only stop once it has a CPU again, before returning to user space) and
/// compare the registers and stack bytes with the record's.
fn verify(pid: i32, secs: Duration, drained: bool) {
    let tids = workers(pid);
    let trigger = PerfTrigger::preemptions().unwrap();
    let mut source = if drained {
        // 2 MiB per thread: ~60 records, so that a drain seldom finds the ring full while a
        // stop waits for its thread to get a CPU back.
        let cfg = config(32 * 1024, 512);
        Source::Drained(
            open_all(pid, &tids, &trigger, &cfg),
            tids.iter().map(|_| None).collect(),
        )
    } else {
        Source::Watch(
            tids.iter()
                .map(|&t| PreemptWatch::open(pid, t, 32 * 1024, &trigger).unwrap())
                .collect(),
        )
    };
    let watches: Vec<SwitchWatch> = tids
        .iter()
        .map(|&t| SwitchWatch::open(pid, t).unwrap())
        .collect();
    for &t in &tids {
        ptrace::seize(Pid::from_raw(t), ptrace::Options::empty()).unwrap();
    }
    let mut v = Verdicts::default();
    let mut stack = Vec::new();
    let mut mismatches = Vec::new();
    let start = Instant::now();
    while start.elapsed() < secs {
        for i in 0..tids.len() {
            let before = watches[i].position();
            let preempted = watches[i].last() == Some(LastSwitch::Preempted);
            let rec = match &mut source {
                Source::Drained(events, newest) => {
                    // Every ring drained every time, so that none fills and drops the newest.
                    let lost_before = events[i].lost();
                    events[i].drain(|s| {
                        if let Some(regs) = s.regs {
                            newest[i] = Some(Newest {
                                time_ns: s.time_ns,
                                regs,
                                stack: s.stack.to_vec(),
                            });
                        }
                    });
                    if events[i].lost() != lost_before {
                        // The newest preemption may be among the records dropped.
                        newest[i] = None;
                        v.overflowed += 1;
                    }
                    // A stop uses the record up: the thread runs after it. (Kept while the
                    // thread is not preempted: it may have been preempted since `last`.)
                    if preempted {
                        newest[i].take()
                    } else {
                        None
                    }
                }
                Source::Watch(w) if preempted => {
                    let mut copy = Vec::new();
                    w[i].newest(32 * 1024, &mut copy).map(|p| Newest {
                        time_ns: p.time_ns,
                        regs: p.regs,
                        stack: copy,
                    })
                }
                Source::Watch(_) => None,
            };
            if !preempted {
                continue;
            }
            if watches[i].position() != before {
                v.moved += 1;
                continue;
            }
            let Some(rec) = rec else {
                v.no_record += 1;
                continue;
            };
            let Some((got, fs_base, syscall)) =
                stop_and_read(tids[i], &watches[i], before, &mut stack)
            else {
                v.raced += 1;
                continue;
            };
            v.checked += 1;
            v.in_syscall += u64::from(syscall.is_some());
            v.age_ns += monotonic_ns().saturating_sub(rec.time_ns);
            let regs_equal = got == rec.regs;
            // The stack proper ends below the thread pointer: above it are glibc's `struct
            // pthread` (whose last 32 bytes are the rseq area the kernel rewrites when it
            // resumes the thread on another CPU) and whatever memory follows.
            let n = stack.len().min(rec.stack.len());
            let below_tp = usize::try_from(fs_base.wrapping_sub(got.sp)).map_or(n, |b| b.min(n));
            if stack[below_tp..n] != rec.stack[below_tp..n] {
                v.differ_above_tp += 1;
            }
            let n = below_tp;
            let stack_equal = stack[..n] == rec.stack[..n];
            v.regs_equal += u64::from(regs_equal);
            v.stack_equal += u64::from(regs_equal && stack_equal);
            if regs_equal && stack_equal {
                v.compared_bytes += n as u64;
            } else if mismatches.len() < 5 {
                mismatches.push(format!(
                    "tid {}: record ip {:#x} sp {:#x}, stop ip {:#x} sp {:#x}, \
                     {n} bytes compared, differing bytes at {:?}, thread pointer at sp + {}",
                    tids[i],
                    rec.regs.ip,
                    rec.regs.sp,
                    got.ip,
                    got.sp,
                    differing(&stack[..n], &rec.stack[..n]),
                    fs_base.wrapping_sub(got.sp) as i64
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (how, lost) = match &source {
        Source::Drained(events, _) => ("drained PerfThreads", lost(events)),
        Source::Watch(_) => ("PreemptWatch", 0),
    };
    println!(
        "{} threads, {how}, load {}, records lost {lost}",
        tids.len(),
        loadavg(),
    );
    println!(
        "  checked {} ({} in a system call): registers equal {}, registers and stack below the \
         thread pointer equal {} (bytes above it differed in {}) (mean {} bytes compared, \
         record {:.0} µs old at the stop); preempted with no record {}, watch moved while \
         draining {}, switched in before the stop request {}, drains that found records \
         dropped {}",
        v.checked,
        v.in_syscall,
        v.regs_equal,
        v.stack_equal,
        v.differ_above_tp,
        v.compared_bytes / v.stack_equal.max(1),
        v.age_ns as f64 / v.checked.max(1) as f64 / 1e3,
        v.no_record,
        v.moved,
        v.raced,
        v.overflowed
    );
    for m in mismatches {
        println!("  mismatch: {m}");
    }
}

/// Ask seized thread `tid` to stop; if its watch is still at `at` once asked (it has not been
/// switched in since it was preempted, so it will stop before running any user code), wait
/// for the stop and read its registers and stack into `stack`. Resumed either way.
/// Also returns the thread pointer (`fs_base`: glibc's `struct pthread`, TLS below it) and
/// the system call the thread was preempted in, if any (`orig_rax`).
fn stop_and_read(
    tid: i32,
    watch: &SwitchWatch,
    at: u64,
    stack: &mut Vec<u8>,
) -> Option<(UserRegs, u64, Option<u64>)> {
    let t = Pid::from_raw(tid);
    ptrace::interrupt(t).unwrap();
    let still = watch.position() == at;
    loop {
        match waitpid(t, Some(WaitPidFlag::__WALL)).unwrap() {
            WaitStatus::PtraceEvent(..) => break,
            WaitStatus::Stopped(_, sig) => ptrace::cont(t, sig).unwrap(),
            other => panic!("{other:?}"),
        }
    }
    let regs = still.then(|| {
        let r = ptrace::getregs(t).unwrap();
        stack.resize(32 * 1024, 0);
        let got = process_vm_readv(
            t,
            &mut [IoSliceMut::new(stack)],
            &[RemoteIoVec {
                base: r.rsp as usize,
                len: 32 * 1024,
            }],
        )
        .unwrap_or(0);
        stack.truncate(got);
        let regs = UserRegs {
            ip: r.rip,
            sp: r.rsp,
            bp: Some(r.rbp),
            bx: Some(r.rbx),
        };
        let syscall = (r.orig_rax as i64 >= 0).then_some(r.orig_rax);
        (regs, r.fs_base, syscall)
    });
    ptrace::cont(t, None).unwrap();
    regs
}

/// The first and last offsets where `a` and `b` differ.
fn differing(a: &[u8], b: &[u8]) -> Option<(usize, usize)> {
    let first = a.iter().zip(b).position(|(x, y)| x != y)?;
    let last = a.iter().zip(b).rposition(|(x, y)| x != y)?;
    Some((first, last))
}

fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
