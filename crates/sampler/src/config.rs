//! What to sample and how often: [`SamplerConfig`] and the accepted rates.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::SamplerError;

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
    /// When set, decides [`SamplerConfig::include_idle`] live, round by round (strobe top's
    /// `i` key): while it is off, idle samples are dropped and idle threads' stacks not read.
    pub idle_switch: Option<LiveSwitch>,
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
    /// leaves a CPU to run on; with [`SamplerConfig::native`] and a single running thread, on
    /// that thread's CPU instead (see the sampler's `placement` module). On by default; off only to measure what it
    /// saves.
    pub keep_off_target_cpus: bool,
    /// Also sample the target's descendants that are Python processes, found while sampling
    /// (see the `family` module); every stack then starts with a `process PID` frame whose
    /// file name is the process's command line.
    pub subprocesses: bool,
    /// Each sampled thread's native stack too, merged with its Python frames (see the
    /// `native` module): a running thread is stopped alone for each of its samples.
    pub native: bool,
    /// With `native` (not `blocking`): read a thread preempted from its CPU without stopping
    /// it, first, from the registers the kernel records at its preemption, where the kernel
    /// allows per-CPU events and the `sched_switch` tracepoint (see the `threads` module). On
    /// by default (docs/PERFORMANCE.md, "Issue 12: preempted threads' registers from the
    /// per-CPU records"); off, preempted threads are stopped like running ones.
    pub native_read_preempted: bool,
    /// Put a `<GC>` frame on top of the stack of a thread running the cyclic garbage
    /// collector ([`strobe_walker::RawThread::gc`]). On by default; `top --no-gc` turns it off
    /// (`record` keeps it and leaves it out when writing, so a raw recording has it).
    pub gc_frames: bool,
    /// Task-aware stacks (`--async`, CPython 3.8+): a thread running an asyncio task is
    /// sampled as the task's coroutine frames under a `<task NAME>` frame, under the tasks
    /// awaiting it (each with its own frames where it waits), instead of under the event
    /// loop's frames; with idle samples kept, each suspended task is sampled too, at its
    /// `await`.
    pub async_stacks: bool,
    /// When set, decides [`SamplerConfig::async_stacks`] live (strobe top's `a` key).
    pub async_switch: Option<LiveSwitch>,
    /// When set, rung by the sampler thread at the first failed round of each kind, for a
    /// live view to show it at once (strobe top's status line) instead of at its next refresh.
    pub error_bell: Option<ErrorBell>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            rate_hz: 100.0,
            blocking: false,
            include_idle: false,
            idle_switch: None,
            gil_only: false,
            tids: Vec::new(),
            thread_names: Vec::new(),
            duration: None,
            by_function: false,
            names: true,
            keep_off_target_cpus: true,
            subprocesses: false,
            native: false,
            native_read_preempted: true,
            gc_frames: true,
            async_stacks: false,
            async_switch: None,
            error_bell: None,
        }
    }
}

/// A live on/off switch shared between a sampler and its user (see
/// [`SamplerConfig::idle_switch`], [`SamplerConfig::async_switch`]). Clones share the switch; two switches are equal when they
/// are the same switch.
#[derive(Debug, Clone, Default)]
pub struct LiveSwitch(Arc<AtomicBool>);

impl LiveSwitch {
    /// A switch, on or off.
    pub fn new(on: bool) -> LiveSwitch {
        LiveSwitch(Arc::new(AtomicBool::new(on)))
    }

    /// Turn it on or off; the sampler's next round follows.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    /// Whether it is on.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the sampler thread calls to tell its user something at once (see
/// [`SamplerConfig::error_bell`]). Clones share the call; two bells are equal when they are
/// the same bell.
#[derive(Clone)]
pub struct ErrorBell(Arc<dyn Fn() + Send + Sync>);

impl ErrorBell {
    /// A bell that calls `ring` when rung (on the sampler thread: it must not block).
    pub fn new(ring: impl Fn() + Send + Sync + 'static) -> ErrorBell {
        ErrorBell(Arc::new(ring))
    }

    pub(crate) fn ring(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for ErrorBell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ErrorBell")
    }
}

impl PartialEq for ErrorBell {
    fn eq(&self, other: &ErrorBell) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl PartialEq for LiveSwitch {
    fn eq(&self, other: &LiveSwitch) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl SamplerConfig {
    /// Whether `--tid` lets a thread through: no `--tid` given, or one naming it by either of
    /// its kernel ids (ours, `host`, or the one inside its PID namespace, `inner`, asked for
    /// only when a `--tid` was given).
    pub(crate) fn wants_tid(&self, host: Option<u32>, inner: impl FnOnce() -> Option<u32>) -> bool {
        if self.tids.is_empty() {
            return true;
        }
        let inner = inner();
        self.tids
            .iter()
            .any(|&x| Some(x) == inner || Some(x) == host)
    }

    /// Whether `--thread-name` lets a thread named `name` through.
    pub(crate) fn wants_name(&self, name: Option<&str>) -> bool {
        self.thread_names.is_empty()
            || name.is_some_and(|n| self.thread_names.iter().any(|w| w == n))
    }

    /// Whether idle samples are kept this round: the switch if there is one.
    pub(crate) fn include_idle_now(&self) -> bool {
        self.idle_switch
            .as_ref()
            .map_or(self.include_idle, LiveSwitch::get)
    }

    /// Whether stacks are task-aware this round: the switch if there is one.
    pub(crate) fn async_now(&self) -> bool {
        self.async_switch
            .as_ref()
            .map_or(self.async_stacks, LiveSwitch::get)
    }

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
}
