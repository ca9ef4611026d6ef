//! The counters the sampler thread keeps and any thread reads ([`SamplerStats`], copied as
//! [`StatsSnapshot`]), and the processes it announces ([`NewProcess`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::native::Taken;
use crate::priority::SamplerPriority;

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
    /// The wall-clock time of `start`, ns since the Unix epoch (0 if the clock is before it).
    start_unix_ns: u64,
    elapsed_ns: AtomicU64,
    rounds: AtomicU64,
    samples: AtomicU64,
    errors: [AtomicU64; 4],
    late: AtomicU64,
    missed: AtomicU64,
    /// Σ w and Σ w² over the samples recorded, w a sample's weight in ms, as `f64` bits
    /// (written by the sampler thread alone): the effective sample size's sums.
    weights: [AtomicU64; 2],
    dropped: AtomicU64,
    threads: AtomicU64,
    /// Processes found by the scout whose first sample was recorded (or that cannot be
    /// sampled), not yet taken by [`SamplerStats::take_new_processes`].
    new_processes: Mutex<Vec<NewProcess>>,
    /// The sampler thread's CPU time in ns, [`CPU_UNKNOWN`] while not measured.
    cpu_ns: AtomicU64,
    /// `--native`: samples recorded with their merged native stack.
    native_merged: AtomicU64,
    /// `--native`: samples recorded with their Python frames alone, and why (by reason).
    native_failures: Mutex<Vec<(String, u64)>>,
    /// `--native`: threads stopped before a round's read that the round did not sample.
    native_stops_unused: AtomicU64,
    native_preempted: AtomicU64,
    native_held: AtomicU64,
    native_held_refused: AtomicU64,
    /// `--native`: seconds decided with preemption records on, and off.
    native_record_windows: [AtomicU64; 2],
    /// The sampler thread's [`SamplerPriority`] (its index in [`PRIORITIES`]), and the times
    /// it gave up real time.
    priority: [AtomicU64; 2],
}

/// [`SamplerPriority`] by its index in [`SamplerStats::priority`].
const PRIORITIES: [SamplerPriority; 3] = [
    SamplerPriority::Default,
    SamplerPriority::Favoured,
    SamplerPriority::RealTime,
];

/// Distinct reasons kept for native merge failures; later ones are counted as [`OTHER_REASONS`].
const MAX_NATIVE_REASONS: usize = 16;
/// The reason counted for failures beyond [`MAX_NATIVE_REASONS`] distinct ones.
const OTHER_REASONS: &str = "other reasons";

/// [`SamplerStats::cpu_ns`] when the sampler thread's CPU time cannot be measured.
const CPU_UNKNOWN: u64 = u64::MAX;

impl SamplerStats {
    pub(crate) fn new() -> SamplerStats {
        // Read together, so that `start_unix_ns + timestamp_ns` is a sample's wall-clock time.
        let start = Instant::now();
        let start_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        SamplerStats {
            start,
            start_unix_ns,
            elapsed_ns: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            errors: Default::default(),
            late: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            weights: [AtomicU64::new(0), AtomicU64::new(0)],
            dropped: AtomicU64::new(0),
            threads: AtomicU64::new(0),
            new_processes: Mutex::new(Vec::new()),
            cpu_ns: AtomicU64::new(CPU_UNKNOWN),
            native_merged: AtomicU64::new(0),
            native_failures: Mutex::new(Vec::new()),
            native_stops_unused: AtomicU64::new(0),
            native_preempted: AtomicU64::new(0),
            native_held: AtomicU64::new(0),
            native_held_refused: AtomicU64::new(0),
            native_record_windows: [AtomicU64::new(0), AtomicU64::new(0)],
            priority: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// When sampling started; sample timestamps are ns since then.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The wall-clock time of [`SamplerStats::start`], ns since the Unix epoch: what a
    /// profile's start time is, so that its sample timestamps are wall-clock times too.
    pub fn start_unix_ns(&self) -> u64 {
        self.start_unix_ns
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
            effective_samples: effective(
                f64::from_bits(r(&self.weights[0])),
                f64::from_bits(r(&self.weights[1])),
            ),
            dropped: r(&self.dropped),
            threads: r(&self.threads),
            cpu: Some(r(&self.cpu_ns))
                .filter(|&ns| ns != CPU_UNKNOWN)
                .map(Duration::from_nanos),
            native_merged: r(&self.native_merged),
            native_failed: self.native_failures().iter().map(|(_, n)| n).sum(),
            native_stops_unused: r(&self.native_stops_unused),
            native_preempted: r(&self.native_preempted),
            native_held: r(&self.native_held),
            native_held_refused: r(&self.native_held_refused),
            native_records_on_s: r(&self.native_record_windows[0]),
            native_records_off_s: r(&self.native_record_windows[1]),
            priority: PRIORITIES
                .get(r(&self.priority[0]) as usize)
                .copied()
                .unwrap_or_default(),
            priority_lowered: r(&self.priority[1]),
        }
    }

    /// `--native`: count a sample recorded with its merged native stack, taken as `taken`
    /// says.
    pub(crate) fn add_native_merged(&self, taken: Taken) {
        self.native_merged.fetch_add(1, Ordering::Relaxed);
        match taken {
            Taken::Captured => {}
            Taken::Preempted => {
                self.native_preempted.fetch_add(1, Ordering::Relaxed);
            }
            Taken::Held => {
                self.native_held.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `--native`: the seconds so far decided with preemption records on, and off (see the
    /// `worth` module of `threads`).
    pub(crate) fn set_native_record_windows(&self, on: u64, off: u64) {
        self.native_record_windows[0].store(on, Ordering::Relaxed);
        self.native_record_windows[1].store(off, Ordering::Relaxed);
    }

    /// `--native`: count `n` held stacks whose thread's frames differed from those they were
    /// held with (the thread was captured again).
    pub(crate) fn add_native_held_refused(&self, n: u64) {
        self.native_held_refused.fetch_add(n, Ordering::Relaxed);
    }

    /// `--native`: count `n` threads stopped before a round's read that it did not sample.
    pub(crate) fn add_native_stops_unused(&self, n: u64) {
        self.native_stops_unused.fetch_add(n, Ordering::Relaxed);
    }

    /// `--native`: count a sample recorded without its native stack, because of `why`.
    pub(crate) fn add_native_failure(&self, why: &str) {
        let mut list = self.lock_native_failures();
        if let Some(entry) = list.iter_mut().find(|(w, _)| w == why) {
            entry.1 += 1;
        } else if list.len() < MAX_NATIVE_REASONS {
            list.push((why.to_string(), 1));
        } else if let Some(entry) = list.iter_mut().find(|(w, _)| w == OTHER_REASONS) {
            entry.1 += 1;
        } else {
            list.push((OTHER_REASONS.to_string(), 1));
        }
    }

    /// `--native`: the reasons samples were recorded without their native stack, with how
    /// many each, most frequent first.
    pub fn native_failures(&self) -> Vec<(String, u64)> {
        let mut list = self.lock_native_failures().clone();
        list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        list
    }

    fn lock_native_failures(&self) -> std::sync::MutexGuard<'_, Vec<(String, u64)>> {
        self.native_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The processes (`--subprocesses`) whose first sample was recorded, or found unreadable,
    /// since the last call. A process is announced once samples of it exist, so a caller that
    /// waits for its announcement finds it in the profile.
    pub fn take_new_processes(&self) -> Vec<NewProcess> {
        std::mem::take(&mut *self.new_processes())
    }

    /// Announce `p` (see [`SamplerStats::take_new_processes`]).
    pub(crate) fn announce(&self, p: NewProcess) {
        self.new_processes().push(p);
    }

    /// The list of processes to announce; a panic while it was held left it usable.
    fn new_processes(&self) -> std::sync::MutexGuard<'_, Vec<NewProcess>> {
        self.new_processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publish the sampler thread's scheduling, and how many times it gave up real time.
    pub(crate) fn set_priority(&self, now: SamplerPriority, lowered: u64) {
        let index = PRIORITIES.iter().position(|&p| p == now).unwrap_or(0);
        self.priority[0].store(index as u64, Ordering::Relaxed);
        self.priority[1].store(lowered, Ordering::Relaxed);
    }

    /// Publish the sampler thread's CPU time.
    pub(crate) fn set_cpu(&self, cpu: Duration) {
        let ns = u64::try_from(cpu.as_nanos()).unwrap_or(CPU_UNKNOWN - 1);
        self.cpu_ns
            .store(ns.min(CPU_UNKNOWN - 1), Ordering::Relaxed);
    }

    /// Count a round that stands for `intervals` deadlines: late if more than one.
    pub(crate) fn add_late(&self, intervals: u64) {
        if intervals > 1 {
            self.late.fetch_add(1, Ordering::Relaxed);
            self.missed.fetch_add(intervals - 1, Ordering::Relaxed);
        }
    }

    /// Count a round that ended (with `failed`, one that is counted in the errors instead):
    /// `recorded` samples of `weight_ns` each, `threads` Python threads seen. Called by the
    /// sampler thread alone (the weight sums are read, added to and stored, not swapped).
    pub(crate) fn end_round(&self, failed: bool, recorded: u64, threads: u64, weight_ns: u64) {
        if !failed {
            self.rounds.fetch_add(1, Ordering::Relaxed);
        }
        self.samples.fetch_add(recorded, Ordering::Relaxed);
        if recorded > 0 {
            let (n, w) = (recorded as f64, weight_ns as f64 / 1e6);
            for (sum, add) in self.weights.iter().zip([n * w, n * w * w]) {
                let now = f64::from_bits(sum.load(Ordering::Relaxed)) + add;
                sum.store(now.to_bits(), Ordering::Relaxed);
            }
        }
        self.threads.store(threads, Ordering::Relaxed);
    }

    /// Publish the time since the start of sampling and the samples dropped so far.
    pub(crate) fn set_progress(&self, elapsed_ns: u64, dropped: u64) {
        self.elapsed_ns.store(elapsed_ns, Ordering::Relaxed);
        self.dropped.store(dropped, Ordering::Relaxed);
    }

    /// Count a failed round; whether it is the first of its kind.
    pub(crate) fn add_error(&self, kind: ErrorKind) -> bool {
        let i = match kind {
            ErrorKind::Read => 0,
            ErrorKind::Torn => 1,
            ErrorKind::Freeze => 2,
            ErrorKind::Proc => 3,
        };
        self.errors[i].fetch_add(1, Ordering::Relaxed) == 0
    }
}

/// Kish's effective sample size, (Σw)² / Σw², from `sum` = Σw and `squares` = Σw² (0 without
/// samples): how many equally weighted samples would estimate shares as precisely as the
/// weighted ones do. Equal weights give the sample count; one heavy sample makes it small.
fn effective(sum: f64, squares: f64) -> u64 {
    if squares > 0.0 {
        // Rounded, not floored: equal weights must give back the count despite rounding.
        (sum * sum / squares).round() as u64
    } else {
        0
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
    /// Kish's effective sample size of the recorded samples' weights, (Σw)² / Σw²: the number
    /// of equally weighted samples that would make the profile's shares as precise as they
    /// are. [`StatsSnapshot::samples`] when no sample was late, fewer when some were.
    pub effective_samples: u64,
    /// Samples the aggregator's queue had no room for.
    pub dropped: u64,
    /// Python threads seen in the last round (before filters).
    pub threads: u64,
    /// CPU time (user + system) the sampler thread has used, updated every few milliseconds
    /// and at the end; `None` where the kernel does not report it. This is strobe's own cost
    /// of sampling: the stack reads, `/proc` reads and interning, not the aggregator's work.
    pub cpu: Option<Duration>,
    /// `--native`: samples recorded with their merged native stack.
    pub native_merged: u64,
    /// `--native`: samples recorded with their Python frames alone (the native stack could
    /// not be taken or merged; see [`SamplerStats::native_failures`] for why).
    pub native_failed: u64,
    /// `--native`, CPU mode: threads stopped before a round's read (see "Stop first, read
    /// after" in `round`) that the round then did not sample: stops that ended in no sample.
    pub native_stops_unused: u64,
    /// `--native`: of [`StatsSnapshot::native_merged`], samples of threads read preempted
    /// (runnable, off a CPU) from the kernel's record of the preemption, or, where idle
    /// threads are sampled too, asleep (or woken, not yet on a CPU) from the record of their
    /// sleep, without a stop (see `strobe_target::Target::native_stop_first`).
    pub native_preempted: u64,
    /// `--native`: of [`StatsSnapshot::native_merged`], samples of threads that had not had a
    /// CPU since an earlier round's capture of them, whose stack that capture took stands for
    /// them, without a new one (held stacks: the sampler's `held` module).
    pub native_held: u64,
    /// `--native`: threads found not to have had a CPU since such a capture whose Python
    /// frames had changed all the same (records the kernel lost): captured again.
    pub native_held_refused: u64,
    /// `--native`, reading preempted threads: seconds in which the kernel recorded their
    /// registers at their preemptions.
    pub native_records_on_s: u64,
    /// `--native`, reading preempted threads: seconds in which it did not, because the records
    /// would have cost the target more than the stops they saved (preempted threads were
    /// stopped then; the `worth` module of the sampler's `threads`).
    pub native_records_off_s: u64,
    /// The scheduling the sampler thread runs under (last published; see the sampler's
    /// `priority` module).
    pub priority: SamplerPriority,
    /// Times the sampler thread gave up real time because it used more than half a core.
    pub priority_lowered: u64,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
    fn the_effective_sample_size_is_kish_s_over_the_recorded_samples() {
        let stats = SamplerStats::new();
        assert_eq!(stats.snapshot().effective_samples, 0, "no samples yet");
        // 1,000 rounds of 3 samples at 1 ms: as precise as their number.
        for _ in 0..1000 {
            stats.end_round(false, 3, 3, 1_000_000);
        }
        let s = stats.snapshot();
        assert_eq!((s.samples, s.effective_samples), (3000, 3000));
        // A round with no sample weighs nothing; a failed round's samples count.
        stats.end_round(false, 0, 3, 500_000_000);
        stats.end_round(true, 1, 3, 1_000_000);
        assert_eq!(stats.snapshot().effective_samples, 3001);
        // One late round of 2 samples standing for 100 ms each:
        // (3001 + 200)² / (3001 + 2 · 100²) = 10,246,401 / 23,001 = 445.48.
        stats.end_round(false, 2, 2, 100_000_000);
        let s = stats.snapshot();
        assert_eq!((s.samples, s.effective_samples), (3003, 445));
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
