//! preempt_probe's `cost` mode: a target's throughput with and without events on its threads.

use super::{config, drain_all, loadavg, lost, open_all, workers, Drained, DRAIN_EVERY};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use strobe_remote::{procfs, CpuSwitches, PerfConfig, PerfTrigger, PreemptWatch, SwitchWatch};

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
    /// [`CpuSwitches`] with this many pages a CPU, drained and every worker's last switch
    /// read every drain period; with `true`, recording the registers of each preemption
    /// ([`CpuSwitches::record_preemptions`]) and reading each worker's too.
    CpuWide(usize, bool),
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
    /// Drains of [`CpuSwitches`].
    rounds: u64,
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
    let mut cpu_wide = match events {
        Events::CpuWide(pages, preemptions) => {
            let mut c = CpuSwitches::open(*pages).unwrap();
            c.watch(pid as u32);
            if *preemptions {
                c.record_preemptions().unwrap();
            }
            Some(c)
        }
        _ => None,
    };
    let mut stack = Vec::new();
    let start = Instant::now();
    while start.elapsed() < secs {
        std::thread::sleep(DRAIN_EVERY);
        drain_all(&mut drained, &mut run.drained);
        if let Some(c) = &mut cpu_wide {
            let parse = Instant::now();
            run.drained.records += c.drain() as u64;
            for &t in tids {
                std::hint::black_box(c.last(t as u32));
                std::hint::black_box(c.preempted(t as u32));
            }
            run.drained.drain_time += parse.elapsed();
            run.rounds += 1;
        }
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
    run.lost = cpu_wide.map_or_else(|| lost(&drained), |c| c.lost());
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
pub(crate) fn cost(phase_secs: Duration, cycles: u64, cmd: &[String], switches: bool) {
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
    let switch_phases = [
        Phase {
            name: "no events",
            events: Events::None,
        },
        Phase {
            name: "CpuSwitches, 64 pages",
            events: Events::CpuWide(64, false),
        },
        Phase {
            name: "no events",
            events: Events::None,
        },
        Phase {
            name: "CpuSwitches with preemption registers",
            events: Events::CpuWide(64, true),
        },
    ];
    let phases: &[Phase] = if switches { &switch_phases } else { &phases };
    let settle = Duration::from_millis(500);
    let mut runs: Vec<PhaseRun> = Vec::new();
    for _ in 0..cycles {
        for phase in phases {
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
        let rounds = sum(&|r| r.rounds as f64);
        if rounds > 0.0 {
            line += &format!(
                "; {:.1} µs a drain and read of every worker",
                sum(&|r| r.drained.drain_time.as_secs_f64()) * 1e6 / rounds
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
