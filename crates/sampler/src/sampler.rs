//! The sampler thread: wait for the next round ([`crate::pacing`]), take in the processes the
//! scout found and read every process once ([`crate::processes`], one process's round in
//! [`crate::round`]), publish the counters, keep off the target's CPUs ([`crate::placement`])
//! and measure its own cost ([`crate::selfcost`]), until stopped, the duration has elapsed or
//! the root has exited ([`crate::lifecycle`]).

use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use strobe_aggregate::SamplerSide;
use strobe_signals::DeferSignals;
use strobe_target::Target;

use crate::config::SamplerConfig;
use crate::error::SamplerError;
use crate::lifecycle::RootWatch;
use crate::pacing::{self, Pace, Pacer};
use crate::placement::{Aim, Placement, MAX_PLACED};
use crate::priority::Priority;
use crate::processes::{Processes, RoundOutcome};
use crate::schedstat::ThreadSchedstat;
use crate::selfcost::SelfCost;
use crate::stats::SamplerStats;
use crate::summary::{EndReason, SamplerSummary};

/// Sample root `pid` (read through `target` if it can be) and, under `cfg.subprocesses`, its
/// descendants, into `side`, until `stop` is set or sampling ends by itself.
pub(crate) fn run(
    pid: i32,
    target: Option<Target>,
    child: Option<Child>,
    cfg: SamplerConfig,
    mut side: SamplerSide,
    stats: &SamplerStats,
    stop: &AtomicBool,
) -> Result<SamplerSummary, SamplerError> {
    // Terminating signals are never handled on this thread, so one that arrives while the
    // target is frozen goes to a thread that collects it (or ends strobe, and the kernel then
    // releases the target): this thread cannot be interrupted between freeze and release.
    let _signals = DeferSignals::new();
    // Default timer slack (50 µs) would delay every wake-up; we want the deadline.
    let _ = nix::sys::prctl::set_timerslack(1);

    let start = stats.start();
    let elapsed_ns = || start.elapsed().as_nanos() as u64;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(pid.unsigned_abs()) << 32);
    let mut pacer = Pacer::new(cfg.rate_hz, cfg.duration, seed);
    let mut processes = Processes::new(pid, target, &cfg, &mut side)?;
    let mut root = RootWatch::new(pid, child);
    let mut cpus: Vec<u32> = Vec::with_capacity(MAX_PLACED);
    let mut cost = SelfCost::default();
    // Off the target's CPUs, where that leaves somewhere to run; with native stacks and one
    // running thread, onto that thread's CPU (see `placement`).
    let mut placement = Placement::new(if cfg.native { Aim::Join } else { Aim::Avoid });
    let mut priority = Priority::take(pacer.is_paced());
    // This thread's counts: its time queued for the pacer, its CPU time for the self-cost and
    // for its priority.
    let schedstat = ThreadSchedstat::of_this_thread();
    let reason = loop {
        if stop.load(Ordering::SeqCst) {
            break EndReason::Stopped;
        }
        let now = elapsed_ns();
        let mut reading = None;
        let pace = pacer.pace(now, || {
            reading = schedstat.read();
            reading.map(|s| s.queued_ns)
        });
        if let Some(s) = reading {
            priority.observe(now, s, stats);
        }
        let (intervals, weight_ns) = match pace {
            Pace::Ended => break EndReason::DurationElapsed,
            Pace::Wait(ns) => {
                pacing::wait(ns);
                continue;
            }
            Pace::Skipped => continue,
            Pace::Round {
                intervals,
                weight_ns,
            } => (intervals, weight_ns),
        };
        stats.add_late(intervals);
        processes.take_scouted(&mut side, stats)?;
        let (threads, recorded, failed) =
            match processes.round(&cfg, &mut side, now, weight_ns, stats)? {
                RoundOutcome::Ended(reason) => break reason,
                RoundOutcome::Done {
                    threads,
                    recorded,
                    failed,
                } => (threads, recorded, failed),
            };
        stats.end_round(failed, recorded, threads, weight_ns);
        // Every stack of the round is pushed: a bounded stack table may forget old ones now.
        side.collect_stacks();
        let done_ns = elapsed_ns();
        if cfg.keep_off_target_cpus && placement.due(done_ns) {
            processes.running_cpus(&mut cpus);
            placement.update(done_ns, cpus.iter().copied());
        }
        stats.set_progress(done_ns, side.dropped());
        cost.publish_if_due(done_ns, &schedstat, stats);
        if root.exited(processes.root_read()) {
            break EndReason::TargetExited;
        }
    };
    stats.set_progress(elapsed_ns(), side.dropped());
    cost.publish(&schedstat, stats);
    let (warnings, subprocesses_sampled) = processes.finish();
    drop(side);
    let (exit_status, child) = root.finish(reason == EndReason::TargetExited);
    Ok(SamplerSummary {
        placement: placement.current().map(<[usize]>::to_vec),
        stats: stats.snapshot(),
        reason,
        exit_status,
        warnings,
        subprocesses_sampled,
        child,
    })
}
