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
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::sys::ptrace;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::BufRead;
use std::io::IoSliceMut;
use std::process::{Command, Stdio};
use std::sync::mpsc;
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
        Some("cost") => cost(Duration::from_secs(num(1)), num(2), &args[3..]),
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

/// What a phase of the cost run has open on every worker.
enum Events {
    None,
    /// A [`PreemptWatch`] keeping this many stack bytes, its newest record read (the second
    /// number of bytes of it: about what an unwind of these workers reaches) every drain
    /// period, as a sampler round would.
    Watch(u32, usize),
    /// A drained [`PerfThread`].
    Drained(PerfTrigger, PerfConfig),
    /// A [`SwitchWatch`] (what the sampler sets on every thread whose state it needs), its
    /// newest switch read every drain period.
    Switches,
}

/// One kind of phase of the cost run.
struct Phase {
    name: &'static str,
    events: Events,
}

/// One `RATE` line: when it came, the rate, the wall time since the previous line, and the
/// target's CPU time (all its threads, schedstat) since then.
#[derive(Clone, Copy)]
struct RateLine {
    at: Instant,
    rate: f64,
    wall: f64,
    cpu: f64,
}

/// What one phase of one cycle saw.
#[derive(Default)]
struct PhaseRun {
    lines: Vec<RateLine>,
    drained: Drained,
    /// `PreemptWatch::newest` calls, those that found a record, and their time.
    reads: u64,
    found: u64,
    read_time: Duration,
    lost: u64,
    secs: f64,
}

impl PhaseRun {
    /// Iterations per second of wall time.
    fn rate(&self) -> f64 {
        mean(&self.lines.iter().map(|l| l.rate).collect::<Vec<_>>()).0
    }

    /// Iterations per second of the target's CPU time.
    fn per_cpu(&self) -> f64 {
        let work: f64 = self.lines.iter().map(|l| l.rate * l.wall).sum();
        work / self.lines.iter().map(|l| l.cpu).sum::<f64>().max(1e-9)
    }
}

/// Keep the phase open for `secs`, reading or draining its events every [`DRAIN_EVERY`].
fn run_phase(pid: i32, tids: &[i32], events: &Events, secs: Duration) -> PhaseRun {
    let mut run = PhaseRun::default();
    let mut drained = match events {
        Events::Drained(t, c) => open_all(pid, tids, t, c),
        _ => Vec::new(),
    };
    let (watches, read_bytes): (Vec<PreemptWatch>, usize) = match events {
        Events::Watch(bytes, read) => {
            let trigger = PerfTrigger::preemptions().unwrap();
            let watches = tids
                .iter()
                .map(|&t| PreemptWatch::open(pid, t, *bytes, &trigger).unwrap())
                .collect();
            (watches, *read)
        }
        _ => (Vec::new(), 0),
    };
    let switches: Vec<SwitchWatch> = match events {
        Events::Switches => tids
            .iter()
            .map(|&t| SwitchWatch::open(pid, t).unwrap())
            .collect(),
        _ => Vec::new(),
    };
    let mut stack = Vec::new();
    let start = Instant::now();
    while start.elapsed() < secs {
        std::thread::sleep(DRAIN_EVERY);
        drain_all(&mut drained, &mut run.drained);
        for w in &switches {
            std::hint::black_box(w.last());
        }
        let read_start = Instant::now();
        for w in &watches {
            run.reads += 1;
            run.found += u64::from(w.newest(read_bytes, &mut stack).is_some());
        }
        run.read_time += read_start.elapsed();
    }
    run.secs = start.elapsed().as_secs_f64();
    run.lost = lost(&drained);
    run
}

/// The CPU time of every thread of `pid` so far, in seconds (schedstat's time on a CPU).
fn cpu_seconds(pid: i32) -> f64 {
    let ns: u64 = procfs::tasks(pid)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/task/{t}/schedstat")).ok())
        .filter_map(|s| s.split(' ').next().and_then(|n| n.parse::<u64>().ok()))
        .sum();
    ns as f64 / 1e9
}

/// Start CMD and follow its `RATE` lines (see [`RateLine`]); returns it once it said `READY`.
fn start_target(cmd: &[String]) -> (std::process::Child, mpsc::Receiver<RateLine>) {
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("READY"), "the target said {first}");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut then, mut cpu_then) = (Instant::now(), cpu_seconds(pid));
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            let Some(rate) = line.strip_prefix("RATE ").and_then(|v| v.parse().ok()) else {
                continue;
            };
            let (now, cpu) = (Instant::now(), cpu_seconds(pid));
            let l = RateLine {
                at: now,
                rate,
                wall: (now - then).as_secs_f64(),
                cpu: cpu - cpu_then,
            };
            (then, cpu_then) = (now, cpu);
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Run CMD (a target printing `READY` then `RATE x` lines), alternate phases without and with
/// the events on every worker, and report its rate in each, per second of wall time and per
/// second of its own CPU time (which the kernel's copies at switches are charged to, and which
/// other work on the machine disturbs less): each phase with events against the phases
/// without on either side of it (paired, so that a drifting load cancels).
fn cost(phase_secs: Duration, cycles: u64, cmd: &[String]) {
    let (mut child, rx) = start_target(cmd);
    let pid = child.id() as i32;
    // Let the workers start.
    let _ = rx.recv();
    let tids = workers(pid);
    let phases = [
        Phase {
            name: "no events",
            events: Events::None,
        },
        Phase {
            name: "PreemptWatch, 8 KiB",
            events: Events::Watch(8192, 4096),
        },
        Phase {
            name: "no events",
            events: Events::None,
        },
        Phase {
            name: "PreemptWatch, 32 KiB",
            events: Events::Watch(32768, 4096),
        },
        Phase {
            name: "no events",
            events: Events::None,
        },
        Phase {
            name: "all switch-outs, 32 KiB",
            events: Events::Drained(PerfTrigger::SwitchOut, config(32768, 128)),
        },
        Phase {
            name: "no events",
            events: Events::None,
        },
        Phase {
            name: "SwitchWatch",
            events: Events::Switches,
        },
    ];
    let settle = Duration::from_millis(500);
    let mut runs: Vec<PhaseRun> = Vec::new();
    for _ in 0..cycles {
        for phase in &phases {
            let start = Instant::now();
            let mut run = run_phase(pid, &tids, &phase.events, phase_secs);
            let end = Instant::now();
            // RATE lines whose quarter second lies within the settled part of the phase.
            while let Ok(l) = rx.try_recv() {
                if l.at >= start + settle + Duration::from_millis(250) && l.at <= end {
                    run.lines.push(l);
                }
            }
            runs.push(run);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    println!(
        "{} workers, {cycles} cycles of {} s phases, load {}",
        tids.len(),
        phase_secs.as_secs(),
        loadavg()
    );
    let n = phases.len();
    let base = |f: fn(&PhaseRun) -> f64| {
        mean(
            &(0..runs.len())
                .step_by(2)
                .map(|k| f(&runs[k]))
                .collect::<Vec<_>>(),
        )
    };
    let ((b, be), (c, ce)) = (base(PhaseRun::rate), base(PhaseRun::per_cpu));
    println!(
        "  {:24} {b:8.0} it/s ± {be:4.0}, {c:8.0} it per CPU-s ± {ce:4.0}",
        phases[0].name
    );
    for (p, phase) in phases.iter().enumerate().filter(|(p, _)| p % 2 == 1) {
        let ks: Vec<usize> = (p + 1..runs.len()).step_by(n).map(|k| k - 1).collect();
        // Against the mean of the phases without events just before and just after.
        let paired = |f: fn(&PhaseRun) -> f64| {
            mean(
                &ks.iter()
                    .map(|&k| f(&runs[k]) / ((f(&runs[k - 1]) + f(&runs[k + 1])) / 2.0))
                    .collect::<Vec<_>>(),
            )
        };
        let ((r, re), (q, qe)) = (paired(PhaseRun::rate), paired(PhaseRun::per_cpu));
        let sum = |f: &dyn Fn(&PhaseRun) -> f64| ks.iter().map(|&k| f(&runs[k])).sum::<f64>();
        let secs = sum(&|r| r.secs);
        let mut line = format!(
            "  {:24} wall {r:5.3} ± {re:5.3}, per CPU-s {q:5.3} ± {qe:5.3} of the neighbouring \
             phases without (n {})",
            phase.name,
            ks.len()
        );
        let records = sum(&|r| r.drained.records as f64);
        if records > 0.0 {
            line += &format!(
                "; {:5.0} records/s, {:4.1} MB/s of stack, drain {:4.2} ms/s ({:.2} µs/record), \
                 lost {}",
                records / secs,
                sum(&|r| r.drained.stack_bytes as f64) / secs / 1e6,
                sum(&|r| r.drained.drain_time.as_secs_f64()) * 1e3 / secs,
                sum(&|r| r.drained.drain_time.as_secs_f64()) * 1e6 / records,
                sum(&|r| r.lost as f64)
            );
        }
        let reads = sum(&|r| r.reads as f64);
        if reads > 0.0 {
            line += &format!(
                "; newest record (4 KiB of it) read in {:.2} µs ({:.0}% of reads found one)",
                sum(&|r| r.read_time.as_secs_f64()) * 1e6 / reads,
                100.0 * sum(&|r| r.found as f64) / reads
            );
        }
        println!("{line}");
    }
}

/// Mean and standard error.
fn mean(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let m = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, (var / n).sqrt())
}
