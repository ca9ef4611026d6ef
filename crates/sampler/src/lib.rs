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

#![warn(missing_docs)]

pub mod clock;
mod failure;
mod family;
mod lifecycle;
mod memo;
mod names;
mod pacing;
mod placement;
mod processes;
mod round;
mod sampler;
mod selfcost;
mod threads;
mod view;

use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use strobe_aggregate::{CapacityError, SamplerSide};
use strobe_target::{AttachError, Target};
use strobe_walker::WalkError;

/// The highest `--rate` accepted. At this rate every deadline is already due when the previous
/// sample ends, so the sampler runs flat out and reports the rate it achieved.
pub const MAX_RATE_HZ: f64 = 1_000_000.0;
/// The lowest `--rate` accepted.
pub const MIN_RATE_HZ: f64 = 0.01;

/// What to sample and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Mean samples per second ([`MIN_RATE_HZ`]..=[`MAX_RATE_HZ`]).
    pub rate_hz: f64,
    /// Stop every thread of the target (ptrace) for the duration of each read.
    pub blocking: bool,
    /// Keep samples of threads the kernel reports as not running (they are flagged
    /// [`strobe_aggregate::SampleFlags::IDLE`] either way). A thread holding the GIL is taken
    /// as running without asking the kernel (CPython releases the GIL around blocking calls).
    pub include_idle: bool,
    /// Keep only the thread holding the GIL (ignored on free-threaded builds, which have none).
    pub gil_only: bool,
    /// Keep only these kernel thread ids (the target's or ours; empty: all threads).
    pub tids: Vec<u32>,
    /// Keep only threads with these `threading` names (empty: all threads).
    pub thread_names: Vec<String>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Intern frames without line numbers (one frame per function).
    pub by_function: bool,
    /// Look up `threading` thread names (cached; refreshed when a new thread appears).
    pub names: bool,
    /// Keep the sampler thread off the CPUs the target's running threads are on, where that
    /// leaves a CPU to run on (see the sampler's `placement` module). On by default; off only
    /// to measure what it saves.
    pub keep_off_target_cpus: bool,
    /// Also sample the target's descendants that are Python processes, found while sampling
    /// (see the `family` module); every stack then starts with a `process PID` frame whose
    /// file name is the process's command line.
    pub subprocesses: bool,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            rate_hz: 100.0,
            blocking: false,
            include_idle: false,
            gil_only: false,
            tids: Vec::new(),
            thread_names: Vec::new(),
            duration: None,
            by_function: false,
            names: true,
            keep_off_target_cpus: true,
            subprocesses: false,
        }
    }
}

impl SamplerConfig {
    /// Check the values a user can get wrong; the message says what is accepted.
    pub fn validate(&self) -> Result<(), SamplerError> {
        if !(self.rate_hz.is_finite() && (MIN_RATE_HZ..=MAX_RATE_HZ).contains(&self.rate_hz)) {
            return Err(SamplerError::Config(format!(
                "--rate {} is out of range: give samples per second between {MIN_RATE_HZ} and \
                 {MAX_RATE_HZ} (the maximum means as fast as possible)",
                self.rate_hz
            )));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(SamplerError::Config(
                "--duration must be more than 0 seconds".into(),
            ));
        }
        Ok(())
    }
}

/// Kinds of failed sampling rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A read faulted: memory was freed or remapped while we read it.
    Read,
    /// A value read was implausible or a list did not end: the target changed mid-read.
    Torn,
    /// Freezing the target (`--blocking`) failed for a round.
    Freeze,
    /// Reading `/proc` failed.
    Proc,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 4] = [
        ErrorKind::Read,
        ErrorKind::Torn,
        ErrorKind::Freeze,
        ErrorKind::Proc,
    ];

    /// A short description for summaries.
    pub fn describe(self) -> &'static str {
        match self {
            ErrorKind::Read => "memory read failed",
            ErrorKind::Torn => "target changed while being read",
            ErrorKind::Freeze => "could not freeze the target",
            ErrorKind::Proc => "/proc read failed",
        }
    }
}

/// Live counters, updated by the sampler thread, readable from any thread at any time.
#[derive(Debug)]
pub struct SamplerStats {
    start: Instant,
    elapsed_ns: AtomicU64,
    rounds: AtomicU64,
    samples: AtomicU64,
    errors: [AtomicU64; 4],
    late: AtomicU64,
    missed: AtomicU64,
    dropped: AtomicU64,
    threads: AtomicU64,
    /// Processes found by the scout whose first sample was recorded (or that cannot be
    /// sampled), not yet taken by [`SamplerStats::take_new_processes`].
    new_processes: Mutex<Vec<NewProcess>>,
    /// The sampler thread's CPU time in ns, [`CPU_UNKNOWN`] while not measured.
    cpu_ns: AtomicU64,
}

/// [`SamplerStats::cpu_ns`] when the sampler thread's CPU time cannot be measured.
const CPU_UNKNOWN: u64 = u64::MAX;

impl SamplerStats {
    fn new() -> SamplerStats {
        SamplerStats {
            start: Instant::now(),
            elapsed_ns: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            errors: Default::default(),
            late: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            threads: AtomicU64::new(0),
            new_processes: Mutex::new(Vec::new()),
            cpu_ns: AtomicU64::new(CPU_UNKNOWN),
        }
    }

    /// When sampling started; sample timestamps are ns since then.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// A consistent-enough copy of the counters (each is read atomically).
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            elapsed: Duration::from_nanos(r(&self.elapsed_ns)),
            rounds: r(&self.rounds),
            samples: r(&self.samples),
            errors: [
                r(&self.errors[0]),
                r(&self.errors[1]),
                r(&self.errors[2]),
                r(&self.errors[3]),
            ],
            late: r(&self.late),
            missed: r(&self.missed),
            dropped: r(&self.dropped),
            threads: r(&self.threads),
            cpu: Some(r(&self.cpu_ns))
                .filter(|&ns| ns != CPU_UNKNOWN)
                .map(Duration::from_nanos),
        }
    }

    /// The processes (`--subprocesses`) whose first sample was recorded, or found unreadable,
    /// since the last call. A process is announced once samples of it exist, so a caller that
    /// waits for its announcement finds it in the profile.
    pub fn take_new_processes(&self) -> Vec<NewProcess> {
        std::mem::take(&mut *self.new_processes())
    }

    fn announce(&self, p: NewProcess) {
        self.new_processes().push(p);
    }

    /// The list of processes to announce; a panic while it was held left it usable.
    fn new_processes(&self) -> std::sync::MutexGuard<'_, Vec<NewProcess>> {
        self.new_processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_cpu(&self, cpu: Duration) {
        let ns = u64::try_from(cpu.as_nanos()).unwrap_or(CPU_UNKNOWN - 1);
        self.cpu_ns
            .store(ns.min(CPU_UNKNOWN - 1), Ordering::Relaxed);
    }

    /// Count a round that stands for `intervals` deadlines: late if more than one.
    fn add_late(&self, intervals: u64) {
        if intervals > 1 {
            self.late.fetch_add(1, Ordering::Relaxed);
            self.missed.fetch_add(intervals - 1, Ordering::Relaxed);
        }
    }

    fn add_error(&self, kind: ErrorKind) {
        let i = match kind {
            ErrorKind::Read => 0,
            ErrorKind::Torn => 1,
            ErrorKind::Freeze => 2,
            ErrorKind::Proc => 3,
        };
        self.errors[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// A process found under `--subprocesses`: its first sample recorded, or (with `error`)
/// looking like Python but not attachable for two seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProcess {
    /// Its PID.
    pub pid: i32,
    /// Its command line (arguments joined by spaces, cut at 100 characters).
    pub command: String,
    /// Why it cannot be sampled.
    pub error: Option<String>,
}

/// Plain copy of [`SamplerStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Time from the start of sampling to the last round (or now, while running).
    pub elapsed: Duration,
    /// Sampling rounds completed (each reads every thread once).
    pub rounds: u64,
    /// Thread stacks recorded (after filters).
    pub samples: u64,
    /// Failed rounds per [`ErrorKind`] (in [`ErrorKind::ALL`] order).
    pub errors: [u64; 4],
    /// Rounds taken after more than one deadline had passed (the sampler fell behind); each is
    /// weighted by every interval it stands for.
    pub late: u64,
    /// Deadlines that passed without a round of their own (absorbed by late rounds).
    pub missed: u64,
    /// Samples the aggregator's queue had no room for.
    pub dropped: u64,
    /// Python threads seen in the last round (before filters).
    pub threads: u64,
    /// CPU time (user + system) the sampler thread has used, updated every few milliseconds
    /// and at the end; `None` where the kernel does not report it. This is strobe's own cost
    /// of sampling: the stack reads, `/proc` reads and interning, not the aggregator's work.
    pub cpu: Option<Duration>,
}

impl StatsSnapshot {
    /// Failed rounds of every kind.
    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Failed rounds of one kind.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        let i = ErrorKind::ALL.iter().position(|&k| k == kind).unwrap_or(0);
        self.errors.get(i).copied().unwrap_or(0)
    }

    /// Rounds per second actually achieved (completed and failed rounds over elapsed time).
    pub fn achieved_hz(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        (self.rounds + self.total_errors()) as f64 / secs
    }

    /// The sampler thread's CPU time per completed round (the "samples" of the summary).
    /// Failed rounds cost CPU too and are charged to the completed ones, so this never
    /// flatters. `None` before the first round or where CPU time is not measured.
    pub fn cpu_per_round(&self) -> Option<Duration> {
        let cpu = self.cpu?;
        (self.rounds > 0)
            .then(|| Duration::from_nanos((cpu.as_nanos() / u128::from(self.rounds)) as u64))
    }

    /// The sampler thread's CPU time over the elapsed time: 1.0 is one core kept busy.
    pub fn cpu_share(&self) -> Option<f64> {
        let secs = self.elapsed.as_secs_f64();
        (secs > 0.0).then_some(self.cpu?.as_secs_f64() / secs)
    }
}

/// Why sampling ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// [`SamplerHandle::stop`] was called.
    Stopped,
    /// The configured duration elapsed.
    DurationElapsed,
    /// The target process exited.
    TargetExited,
    /// The target process replaced its program (execve): the interpreter it ran is gone,
    /// while the process (and, when strobe launched it, the command) lives on.
    TargetExeced,
}

/// How a sampling run ended.
#[derive(Debug)]
pub struct SamplerSummary {
    /// Final counters.
    pub stats: StatsSnapshot,
    /// Why it ended.
    pub reason: EndReason,
    /// The exit status of a launched target that exited (see [`start`]'s `child`).
    pub exit_status: Option<ExitStatus>,
    /// Caveats found while sampling (each reported once).
    pub warnings: Vec<String>,
    /// A launched target that was still running when sampling stopped, handed back.
    pub child: Option<Child>,
    /// The CPUs the sampler thread had restricted itself to at the end, to stay off those
    /// the target's running threads were on; `None` when it was not restricted.
    pub placement: Option<Vec<usize>>,
    /// Descendant processes with at least one recorded sample (`--subprocesses`; each counted
    /// once per program it ran).
    pub subprocesses_sampled: u64,
}

/// Why sampling could not start or had to stop early.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// A setting is out of range.
    #[error("{0}")]
    Config(String),
    /// Attaching or reading the target failed in a way that will not get better.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// The interpreter's structures cannot be read by this strobe.
    #[error("reading the Python stacks of process {pid} failed: {error}")]
    Walk {
        /// The target.
        pid: i32,
        /// What went wrong (part of the message, so not also the `source()`).
        error: WalkError,
    },
    /// The profile outgrew its id space.
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    /// The sampler thread could not be started.
    #[error("could not start the sampler thread: {0}")]
    Spawn(std::io::Error),
    /// The sampler thread panicked (a bug in strobe).
    #[error("the sampler thread stopped unexpectedly (a bug in strobe; please report it): {0}")]
    Panicked(String),
}

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rates_outside_the_range_are_refused_with_the_range() {
        for bad in [0.0, -5.0, f64::NAN, f64::INFINITY, 1e6 + 1.0, 0.001] {
            let cfg = SamplerConfig {
                rate_hz: bad,
                ..Default::default()
            };
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains("between 0.01 and 1000000"), "{e}");
        }
        for good in [0.01, 100.0, 1e6] {
            let cfg = SamplerConfig {
                rate_hz: good,
                ..Default::default()
            };
            cfg.validate().unwrap();
        }
    }

    #[test]
    fn achieved_rate_counts_failed_rounds_too() {
        let s = StatsSnapshot {
            elapsed: Duration::from_secs(2),
            rounds: 150,
            errors: [10, 20, 0, 20],
            ..Default::default()
        };
        assert_eq!(s.total_errors(), 50);
        assert_eq!(s.errors_of(ErrorKind::Torn), 20);
        assert!((s.achieved_hz() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn cpu_is_charged_to_completed_rounds() {
        let mut s = StatsSnapshot {
            elapsed: Duration::from_secs(2),
            rounds: 1000,
            errors: [0, 0, 0, 1000],
            ..Default::default()
        };
        assert_eq!(s.cpu_per_round(), None, "not measured");
        assert_eq!(s.cpu_share(), None);
        s.cpu = Some(Duration::from_millis(5));
        // 5 ms over the 1,000 completed rounds (the failed ones are not divided into it).
        assert_eq!(s.cpu_per_round(), Some(Duration::from_micros(5)));
        assert!((s.cpu_share().unwrap() - 0.0025).abs() < 1e-12);
        s.rounds = 0;
        assert_eq!(s.cpu_per_round(), None);
    }
}
