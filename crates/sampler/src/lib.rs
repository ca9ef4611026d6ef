//! Sampling a CPython process's stacks on a randomized clock.
//!
//! * [`start`]: a sampler thread that reads every thread's stack on a randomized clock
//!   ([`clock`]) and pushes interned samples into the aggregator's lock-free pipeline
//!   ([`strobe_aggregate::pipeline()`]). The caller keeps the aggregator side and drains it
//!   (`strobe record` writes files from it, `strobe top` draws snapshots of it).
//!
//! ```no_run
//! use strobe_sampler::{start, SamplerConfig};
//! use strobe_target::Target;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let target = Target::attach(1234)?;
//! let (side, mut agg) = strobe_aggregate::pipeline(4096);
//! let handle = start(target, None, SamplerConfig::default(), side)?;
//! // ... drain `agg` periodically; call handle.stop() to end early ...
//! let summary = handle.join()?;
//! println!("{} samples, {:.1} Hz", summary.stats.rounds, summary.stats.achieved_hz());
//! # Ok(()) }
//! ```
//!
//! # What a sample is
//! One *round* reads every Python thread once; each thread that passes the filters becomes one
//! [`strobe_aggregate::Sample`] whose weight is the wall time the round stands for (see
//! [`clock`]). Rounds that fail (the target changed under the reader, a read faulted) are
//! counted per kind in [`SamplerStats`]; samples the queue had no room for are counted as
//! dropped. Nothing is lost without being counted.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admit;
pub mod clock;
mod config;
mod error;
mod failure;
mod family;
mod held;
mod lifecycle;
mod memo;
mod names;
mod native;
mod pacing;
mod placement;
mod priority;
mod processes;
mod round;
mod sampler;
mod schedstat;
mod selfcost;
mod stats;
mod stops;
mod summary;
mod tasks;
mod tasks_legacy;
mod threads;
mod topping;
mod view;

use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use strobe_aggregate::SamplerSide;
use strobe_target::Target;

pub use config::{ErrorBell, LiveSwitch, SamplerConfig, MAX_RATE_HZ, MIN_RATE_HZ};
pub use error::SamplerError;
pub use priority::SamplerPriority;
pub use stats::{ErrorKind, NewProcess, SamplerStats, StatsSnapshot};
pub use summary::{EndReason, SamplerSummary};

/// The running sampler.
#[derive(Debug)]
pub struct SamplerHandle {
    stats: Arc<SamplerStats>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<SamplerSummary, SamplerError>>,
}

/// Start sampling `target` on a new thread; samples go to `side`.
///
/// `child`, when strobe launched the target, is the target's process: the sampler thread is
/// then the only one that waits for it (waiting from another thread could consume the ptrace
/// stops `--blocking` relies on), reports its exit status in the summary, and ends sampling
/// when it exits. Sampling also ends on [`SamplerHandle::stop`], after `cfg.duration`, or when
/// an attached target exits.
pub fn start(
    target: Target,
    child: Option<Child>,
    cfg: SamplerConfig,
    side: SamplerSide,
) -> Result<SamplerHandle, SamplerError> {
    start_process(target.pid(), Some(target), child, cfg, side)
}

/// [`start`] for process `pid`, whose `target` is `None` when `pid` is not a Python strobe
/// can read (a shell or launcher that starts Python processes, or a Python not initialised
/// yet): allowed with `cfg.subprocesses` only, which samples its descendants that run Python,
/// and `pid` itself too if it becomes one. Sampling ends when `pid` exits, as with [`start`].
pub fn start_process(
    pid: i32,
    target: Option<Target>,
    child: Option<Child>,
    cfg: SamplerConfig,
    side: SamplerSide,
) -> Result<SamplerHandle, SamplerError> {
    if target.is_none() && !cfg.subprocesses {
        return Err(SamplerError::Config(format!(
            "process {pid} is not a Python process strobe can read, and only its \
             subprocesses could be sampled: add --subprocesses"
        )));
    }
    cfg.validate()?;
    let stats = Arc::new(SamplerStats::new());
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stats = Arc::clone(&stats);
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("strobe-sampler".into())
            .spawn(move || sampler::run(pid, target, child, cfg, side, &stats, &stop))
            .map_err(SamplerError::Spawn)?
    };
    Ok(SamplerHandle {
        stats,
        stop,
        thread,
    })
}

impl SamplerHandle {
    /// The live counters.
    pub fn stats(&self) -> Arc<SamplerStats> {
        Arc::clone(&self.stats)
    }

    /// Ask the sampler to stop after the current round (returns at once).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.thread().unpark();
    }

    /// Whether the sampler thread has ended (then [`SamplerHandle::join`] does not block).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Wait for the sampler thread to end.
    pub fn join(self) -> Result<SamplerSummary, SamplerError> {
        match self.thread.join() {
            Ok(r) => r,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(SamplerError::Panicked(msg))
            }
        }
    }
}
