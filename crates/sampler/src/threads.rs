//! The kernel's view of the target's threads, read only where a sample needs it.
//!
//! Whether a thread is idle comes from its scheduler state. The first time a thread's state is
//! needed it is read from `/proc/PID/task/TID/stat` (kept open), and from then on the kernel's
//! records of the thread's context switches answer, in memory we map, so that a state costs a
//! memory read instead of a `pread` (~1.3 µs, more than the stack walk at ordinary rates). The
//! records come from [`CpuSwitches`] (one perf event per CPU, one reader for every process the
//! sampler samples, [`SharedSwitches`], drained at the start of each round of them all) where
//! the kernel allows those (root, CAP_PERFMON or `perf_event_paranoid` ≤ 0); else from a [`SwitchWatch`] on each thread, which
//! costs the thread a few microseconds at every context switch (the kernel swaps its perf
//! context; 3.5% to 17% of the throughput of a target of 50 busy threads on two VMs,
//! docs/PERFORMANCE.md, issue 12), where per-CPU events add no per-task work (0.4%). Where perf events are refused (an
//! unprivileged user with a strict `perf_event_paranoid`, a seccomp profile, a file-descriptor
//! limit, more than [`MAX_WATCHES`] threads with per-thread watches), or the records cannot tell
//! (none since the thread was first looked up, after records were lost), the `pread` is the
//! answer. Per-CPU records are read as of the latest drain, so a state is up to a round's
//! start old (under `--subprocesses`, the start of the round of every process; a per-thread
//! watch is read live). Either way
//! a state is looked up only for threads whose idle state a sample needs: the sampler does not
//! read threads that hold the GIL (they run Python; see the sampler's module documentation)
//! nor tasks that are not Python threads.
//!
//! A round looks each thread up once ([`KernelThreads::state_in_round`]): its look before the
//! read (which threads' frames to copy) and its decision after (which samples to keep) share
//! the answer.
//!
//! Under `--native` without `--blocking` (unless `SamplerConfig::native_read_preempted` is
//! off), the per-CPU records also keep each thread's user registers at its preemptions
//! ([`KernelThreads::watch_preemptions`], `CpuSwitches::record_preemptions`), from which a
//! round reads a preempted thread without stopping it (see
//! `strobe_target::Target::native_stop_first`). Where they cannot be (per-CPU events refused,
//! so per-thread watches in use; the tracepoint refused, or no tracefs), the thread is stopped
//! as a running one is.
//!
//! The task list (and the map between our thread ids and the target's, which differ inside a
//! PID namespace) is re-read only when a walk names a thread we do not know, at most every
//! [`RESCAN_EVERY`]. A thread found otherwise (≤3.10 interpreters, whose kernel ids come from
//! the pthread lookup) has its file opened on its first read.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use strobe_aggregate::FxBuild;
use strobe_remote::procfs::{self, ProcStat};
use strobe_remote::{CpuSwitches, RemoteError, SwitchWatch};
use strobe_target::CpuPreemptions;

mod shared;
mod worth;
pub(crate) use shared::SharedSwitches;

/// Least time between two scans of `/proc/PID/task`.
const RESCAN_EVERY: Duration = Duration::from_millis(50);
/// Thread ids remembered as having no readable stat file (between scans); beyond this the set
/// is emptied, so that bogus ids cannot grow it.
const MAX_MISSING: usize = 4096;
/// Threads watched through perf events (one descriptor and two pages each); further threads
/// are read through `/proc`.
pub(crate) const MAX_WATCHES: usize = 512;
/// One thread's open files.
#[derive(Debug)]
struct Task {
    stat: File,
    watch: Watch,
    /// Its state as first looked up in a round, and that round (see
    /// [`KernelThreads::state_in_round`]).
    in_round: Option<(u64, char)>,
}

/// A thread's switch watch, and the state read when it was set.
#[derive(Debug)]
enum Watch {
    /// Not tried yet (the thread's state was never needed).
    Untried,
    /// Not available for this thread: `/proc` it is.
    Off,
    /// Set; `opened` is the state `/proc` gave just after, which holds until the first switch.
    On { watch: SwitchWatch, opened: char },
    /// Read from the per-CPU records ([`SharedSwitches`]); `opened` is the state `/proc` gave
    /// when it was first needed, which holds until the thread's first record, unless records
    /// were lost since (the count of records lost then is `lost`).
    Cpu { opened: char, lost: u64 },
}

/// Where a thread's switch records were at some moment, to tell later whether it has been on
/// a CPU since (see [`KernelThreads::moved`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Its [`SwitchWatch`]'s position.
    Position(u64),
    /// The time ([`strobe_remote::perf_clock_ns`]).
    Time(u64),
}

/// Whether preempted threads' registers are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Preempts {
    /// Not asked for.
    Off,
    /// By the per-CPU switch records ([`SharedSwitches::record_preemptions`]).
    Cpu,
    /// Asked for, but not available: not tried again.
    Refused,
}
/// A thread as the latest `--blocking` freeze left it (see [`KernelThreads::read_all`]).
#[derive(Debug, Clone, Copy)]
struct AtFreeze {
    /// Its switch records while it was frozen.
    position: Mark,
    /// The state the round decided for it (`R` running, `S` idle), once decided.
    state: Option<char>,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct KernelThreads {
    pid: i32,
    /// Open `stat` files and switch watches by our (host) thread id.
    tasks: HashMap<u32, Task, FxBuild>,
    /// Whether switch watches are tried (false once the kernel refused one for a reason
    /// that holds for every thread).
    watching: bool,
    /// Whether preempted threads' registers are recorded.
    preempts: Preempts,
    /// Whether the records were asked to keep sleeps' registers too.
    sleeps_asked: bool,
    /// Why they were refused, until the sampler takes it for its warnings.
    preempt_refusal: Option<String>,
    /// Per-CPU switch records (shared with the other processes sampled), used instead of
    /// switch watches where they can be.
    cpu: SharedSwitches,
    /// Whether this process is watched in `cpu` (`None`: not tried yet; `Some(false)`: the
    /// kernel refused the events).
    cpu_watched: Option<bool>,
    /// Host ids whose `stat` file could not be opened since the last scan (the thread exited,
    /// or the id is not one of the target's): not retried on every read.
    missing: HashSet<u32, FxBuild>,
    /// The target's thread id → ours.
    inner_to_host: HashMap<u32, u32, FxBuild>,
    /// Our thread id → the target's.
    host_to_inner: HashMap<u32, u32, FxBuild>,
    /// States of every known thread read by [`KernelThreads::read_all`] (before a freeze).
    before: HashMap<u32, char, FxBuild>,
    /// Watched threads as the latest freeze left them, by host id.
    at_freeze: HashMap<u32, AtFreeze, FxBuild>,
    /// Watched threads a native capture stopped while they ran, by host id: their switch
    /// switch records after the stop (see [`KernelThreads::stopped_running`]).
    stopped: HashMap<u32, Mark, FxBuild>,
    last_scan: Option<Instant>,
    /// The sampling round under way (see [`KernelThreads::start_round`]).
    round: u64,
    /// State lookups done, either way (for tests: which decisions needed none).
    reads: u64,
    /// Of those, `pread`s of a `stat` file.
    preads: u64,
    buf: Vec<u8>,
}

impl KernelThreads {
    /// For process `pid`, its per-CPU switch records read from `cpu` (shared with the other
    /// processes sampled).
    pub(crate) fn new(pid: i32, cpu: SharedSwitches) -> KernelThreads {
        KernelThreads {
            pid,
            tasks: HashMap::default(),
            watching: true,
            preempts: Preempts::Off,
            sleeps_asked: false,
            preempt_refusal: None,
            cpu,
            cpu_watched: None,
            missing: HashSet::default(),
            inner_to_host: HashMap::default(),
            host_to_inner: HashMap::default(),
            before: HashMap::default(),
            at_freeze: HashMap::default(),
            stopped: HashMap::default(),
            last_scan: None,
            round: 0,
            reads: 0,
            preads: 0,
            buf: vec![0; 1024],
        }
    }

    /// Re-list the threads (unless that was done less than [`RESCAN_EVERY`] ago).
    pub(crate) fn rescan(&mut self) -> Result<(), RemoteError> {
        if self.last_scan.is_some_and(|t| t.elapsed() < RESCAN_EVERY) {
            return Ok(());
        }
        self.last_scan = Some(Instant::now());
        let tids = procfs::tasks(self.pid)?;
        self.tasks.retain(|tid, _| tids.contains(tid));
        let tasks = &self.tasks;
        self.stopped.retain(|tid, _| tasks.contains_key(tid));
        if self.cpu_watched == Some(true) {
            self.cpu.retain(self.pid, |tid| tasks.contains_key(&tid));
        }
        self.missing.clear();
        for tid in tids {
            if !self.tasks.contains_key(&tid) {
                self.open(tid);
            }
        }
        // Without NSpid (kernels before 4.1) both views are the same.
        let host_to_inner = procfs::namespaced_tids(self.pid).unwrap_or_default();
        self.inner_to_host.clear();
        self.host_to_inner.clear();
        for &h in self.tasks.keys() {
            let i = host_to_inner.get(&h).copied().unwrap_or(h);
            self.inner_to_host.insert(i, h);
            self.host_to_inner.insert(h, i);
        }
        Ok(())
    }

    /// Open the `stat` file of our thread `host`; false if it cannot be (remembered until the
    /// next scan).
    fn open(&mut self, host: u32) -> bool {
        if self.missing.contains(&host) {
            return false;
        }
        let path = procfs::proc_dir(self.pid).join(format!("task/{host}/stat"));
        // A thread that exited between the listing and the open is simply not there.
        match File::open(path) {
            Ok(stat) => {
                let watch = Watch::Untried;
                self.tasks.insert(
                    host,
                    Task {
                        stat,
                        watch,
                        in_round: None,
                    },
                );
                true
            }
            Err(_) => {
                if self.missing.len() >= MAX_MISSING {
                    self.missing.clear();
                }
                self.missing.insert(host);
                false
            }
        }
    }

    /// The scheduler state letter of our thread `host`, read now; `None` if the thread is not
    /// (or no longer) there. A thread found to have exited is forgotten.
    pub(crate) fn read_state(&mut self, host: u32) -> Option<char> {
        if !self.tasks.contains_key(&host) && !self.open(host) {
            return None;
        }
        if let Some(&at) = self.stopped.get(&host) {
            if !self.moved(host, at) {
                // Not on a CPU since our stop let it go: still running, as the stop found it.
                self.reads += 1;
                return Some('R');
            }
            self.stopped.remove(&host);
        }
        let task = self.tasks.get(&host)?;
        match &task.watch {
            Watch::On { watch, opened, .. } => {
                // `None`: the kernel kept writing while we read; `/proc` answers.
                if let Some(last) = watch.last() {
                    self.reads += 1;
                    return Some(last.running().map_or(*opened, state_letter));
                }
            }
            Watch::Cpu { opened, lost } => {
                let recorded = |cpu: &CpuSwitches| match cpu.last(host).and_then(|l| l.running()) {
                    Some(running) => Some(state_letter(running)),
                    // No record of it since it was first needed: as `/proc` said then,
                    // unless records were lost since (then `/proc` answers).
                    None => {
                        (cpu.switches(host).is_none() && cpu.lost() == *lost).then_some(*opened)
                    }
                };
                if let Some(state) = self.cpu.with(recorded).flatten() {
                    self.reads += 1;
                    return Some(state);
                }
            }
            Watch::Off => {}
            Watch::Untried => {
                if self.cpu_wide() {
                    return self.start_cpu_watch(host);
                }
                if self.watching && self.watches() < MAX_WATCHES {
                    return self.start_watch(host);
                }
            }
        }
        self.read_stat(host).map(|s| s.state)
    }

    /// A sampling round begins: [`KernelThreads::state_in_round`] looks each thread up again.
    /// The per-CPU records are not drained here but once for every process, at the start of
    /// the round of them all ([`SharedSwitches::drain`]).
    pub(crate) fn start_round(&mut self) {
        self.round += 1;
    }

    /// Parse the per-CPU switch records written since the last drain (every process's): what
    /// [`KernelThreads::moved`] answers from, where they are used, is then up to now (the
    /// states of the round are not looked up again).
    pub(crate) fn drain(&mut self) {
        if self.cpu_watched == Some(true) {
            self.cpu.drain();
        }
    }

    /// Whether per-CPU switch records are to be used (opened the first time this is asked).
    fn cpu_wide(&mut self) -> bool {
        *self
            .cpu_watched
            .get_or_insert_with(|| self.cpu.watch(self.pid))
    }

    /// Read our thread `host`'s state from `/proc`, the first time it is needed, and from the
    /// per-CPU records after that.
    fn start_cpu_watch(&mut self, host: u32) -> Option<char> {
        let state = self.read_stat(host)?.state;
        let lost = self.cpu.with(|cpu| cpu.lost()).unwrap_or(0);
        let task = self.tasks.get_mut(&host)?;
        task.watch = Watch::Cpu {
            opened: state,
            lost,
        };
        Some(state)
    }

    /// The state of our thread `host` in this round: looked up as [`KernelThreads::read_state`]
    /// does the first time the round asks, and the same answer after that. A round asks twice
    /// of each thread it samples (before its read, to skip idle threads' frames, and after, to
    /// decide what it keeps); the second lookup cost a switch watch's cache lines again, per
    /// thread, for an answer a few microseconds newer that the read had not followed anyway.
    pub(crate) fn state_in_round(&mut self, host: u32) -> Option<char> {
        let round = self.round;
        if let Some((r, state)) = self.tasks.get(&host).and_then(|t| t.in_round) {
            if r == round {
                return Some(state);
            }
        }
        let state = self.read_state(host)?;
        if let Some(task) = self.tasks.get_mut(&host) {
            task.in_round = Some((round, state));
        }
        Some(state)
    }

    /// The state of our thread `host` this round, if the round has looked it up (see
    /// [`KernelThreads::state_in_round`]); nothing is read.
    pub(crate) fn found_in_round(&self, host: u32) -> Option<char> {
        let (r, state) = self.tasks.get(&host)?.in_round?;
        (r == self.round).then_some(state)
    }

    /// Touch every switch watch's lines in one pass (see [`SwitchWatch::touch`]), before a
    /// round looks its threads up one by one.
    pub(crate) fn touch_watches(&self) {
        for task in self.tasks.values() {
            if let Watch::On { watch, .. } = &task.watch {
                watch.touch();
            }
        }
    }

    /// Set a switch watch on our thread `host` and read its state from `/proc` (after the
    /// watch is set, so no switch falls between the two).
    fn start_watch(&mut self, host: u32) -> Option<char> {
        let tid = i32::try_from(host).ok()?;
        let opened = SwitchWatch::open(self.pid, tid);
        let state = self.read_stat(host).map(|s| s.state);
        let task = self.tasks.get_mut(&host)?;
        task.watch = match (opened, state) {
            (Ok(watch), Some(opened)) => Watch::On { watch, opened },
            (Ok(_), None) => Watch::Off,
            (Err(e), _) => {
                // Refused for a reason that holds for every thread (permissions, no perf
                // events, no descriptors or locked memory left): stop trying.
                use strobe_remote::PerfError;
                if !matches!(e, PerfError::ThreadGone { .. }) {
                    self.watching = false;
                }
                Watch::Off
            }
        };
        state
    }

    /// From now on, the per-CPU switch records keep each thread's registers at its
    /// preemptions, where the kernel allows (see the module documentation), and with `sleeps`
    /// (a round that captures idle threads too) at its sleeps as well, for those to be read
    /// from the records instead of `/proc` or a stop. Called by every round that may read
    /// preempted threads; only the first call does anything, and the first with `sleeps`.
    /// Where per-CPU events are refused, nothing is said: the states come from per-thread
    /// watches, and preempted threads are stopped.
    pub(crate) fn watch_preemptions(&mut self, sleeps: bool) {
        if sleeps && !self.sleeps_asked && self.preempts == Preempts::Cpu {
            self.sleeps_asked = true;
            // Refused, sleeping threads are read from `/proc` (or stopped) as before.
            let _ = self.cpu.record_sleeps();
        }
        if self.preempts != Preempts::Off {
            return;
        }
        self.preempts = Preempts::Refused;
        if self.cpu_wide() {
            match self.cpu.record_preemptions() {
                Ok(true) => self.preempts = Preempts::Cpu,
                Ok(false) => {}
                Err(e) => {
                    self.preempt_refusal = Some(format!(
                        "preempted threads are stopped like running ones, not read from the \
                         registers the kernel records at their preemption, which it refused: {e}"
                    ));
                }
            }
        }
    }

    /// Why preemption records were refused, once (for the summary's warnings).
    pub(crate) fn take_preempt_refusal(&mut self) -> Option<String> {
        self.preempt_refusal.take()
    }

    /// What reading our thread `host` preempted without a stop needs, if it has it.
    pub(crate) fn preempt_watches(&self, host: u32) -> Option<&dyn CpuPreemptions> {
        match &self.tasks.get(&host)?.watch {
            Watch::Cpu { .. } if self.preempts == Preempts::Cpu => Some(&self.cpu),
            _ => None,
        }
    }

    /// Switch watches set (counted when a new one is considered: once per thread).
    fn watches(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| matches!(t.watch, Watch::On { .. }))
            .count()
    }

    /// The `stat` line of our thread `host`, read now (see [`KernelThreads::read_state`]).
    fn read_stat(&mut self, host: u32) -> Option<ProcStat> {
        if !self.tasks.contains_key(&host) && !self.open(host) {
            return None;
        }
        let file = &self.tasks.get(&host)?.stat;
        self.reads += 1;
        self.preads += 1;
        match file.read_at(&mut self.buf, 0) {
            Ok(n) => std::str::from_utf8(self.buf.get(..n).unwrap_or(&[]))
                .ok()
                .and_then(ProcStat::parse),
            Err(_) => {
                self.tasks.remove(&host);
                None
            }
        }
    }

    /// Whether our thread `host` still exists, asked of `/proc` (a switch watch cannot tell:
    /// the last record of a thread that exited stays).
    pub(crate) fn alive(&mut self, host: u32) -> bool {
        self.read_stat(host).is_some()
    }

    /// The CPU our thread `host` last ran on, read now; `None` if the thread is not (or no
    /// longer) there.
    pub(crate) fn read_cpu(&mut self, host: u32) -> Option<u32> {
        self.read_stat(host)?.processor
    }

    /// The state of every known thread before a `--blocking` freeze (when this round's GIL
    /// holder is not known yet and a frozen thread would read as traced-stopped); see
    /// [`KernelThreads::state_before`]. Threads found to have exited are forgotten.
    ///
    /// Each state is looked up as [`KernelThreads::read_state`] does (the switch watch, else
    /// `/proc`), so that `R` means what it means without `--blocking`: on a CPU, or preempted
    /// from one; a thread woken from a wait but not yet given a CPU is still waiting. Every
    /// freeze switches every thread out, though, and one that has not had a CPU since the
    /// previous freeze let it go (its watch has not moved since, see
    /// [`KernelThreads::note_frozen`]) is in the state that freeze found it in, whatever the
    /// switch out into our stop says: a thread computing when we stopped it, still waiting for
    /// a CPU to carry on, is running.
    pub(crate) fn read_all(&mut self) {
        self.drain();
        self.before.clear();
        let at_freeze = std::mem::take(&mut self.at_freeze);
        let hosts: Vec<u32> = self.tasks.keys().copied().collect();
        for host in hosts {
            let carried = at_freeze.get(&host).and_then(|f| {
                let moved = self.moved(host, f.position);
                f.state.filter(|_| !moved)
            });
            if let Some(state) = carried.or_else(|| self.read_state(host)) {
                self.before.insert(host, state);
            }
        }
    }

    /// A native capture has just stopped our thread `host` outside a system call (running, or
    /// preempted from a CPU) and let it go. The stop switched it out as a wait does, and on a
    /// busy machine it can wait longer than a round for a CPU to carry on: until its switch
    /// watch moves (it gets a CPU), it is running, whatever the switch out into our stop says.
    /// Nothing for a thread without a watch (`/proc` says `R` for it as soon as it is let go).
    /// `at`: where its switch records were while it was stopped, if that was noted (see
    /// [`KernelThreads::mark`]); else where they are now.
    pub(crate) fn stopped_running(&mut self, host: u32, at: Option<Mark>) {
        if let Some(mark) = at.or_else(|| self.mark(host)) {
            self.stopped.insert(host, mark);
        }
    }

    /// Where our thread `host`'s switch records are now, if it has any: taken while a
    /// capture holds the thread stopped, [`KernelThreads::moved`] later tells whether it has
    /// had a CPU since the capture let it go.
    pub(crate) fn mark(&self, host: u32) -> Option<Mark> {
        match &self.tasks.get(&host)?.watch {
            Watch::On { watch, .. } => Some(Mark::Position(watch.position())),
            Watch::Cpu { .. } => Some(Mark::Time(strobe_remote::perf_clock_ns())),
            _ => None,
        }
    }

    /// A mark for our thread `host` at perf-clock time `time_ns` ([`strobe_remote::perf_clock_ns`]),
    /// where its records are per-CPU ones, which carry their time (a per-thread watch's are
    /// positions, which cannot be placed at a past moment).
    pub(crate) fn mark_at(&self, host: u32, time_ns: u64) -> Option<Mark> {
        match &self.tasks.get(&host)?.watch {
            Watch::Cpu { .. } => Some(Mark::Time(time_ns)),
            _ => None,
        }
    }

    /// Whether our thread `host` got or left a CPU since `mark` (as far as the records drained
    /// tell: a per-CPU record is seen from the next drain on), or cannot be told.
    pub(crate) fn moved(&self, host: u32, mark: Mark) -> bool {
        match mark {
            Mark::Position(p) => match &self.tasks.get(&host).map(|t| &t.watch) {
                Some(Watch::On { watch, .. }) => watch.position() != p,
                _ => true,
            },
            Mark::Time(t) => self
                .cpu
                .with(|cpu| cpu.moved_since(host, t))
                .unwrap_or(true),
        }
    }

    /// While the process is frozen: remember where our thread `host`'s switch watch is (see
    /// [`KernelThreads::read_all`]). Nothing for a thread without a watch.
    pub(crate) fn note_frozen(&mut self, host: u32) {
        if let Some(position) = self.mark(host) {
            let state = None;
            self.at_freeze.insert(host, AtFreeze { position, state });
        }
    }

    /// The state the round decided for our thread `host` at the latest freeze (after
    /// [`KernelThreads::note_frozen`]).
    pub(crate) fn decided_at_freeze(&mut self, host: u32, idle: bool) {
        if let Some(f) = self.at_freeze.get_mut(&host) {
            f.state = Some(if idle { 'S' } else { 'R' });
        }
    }

    /// Record that the latest freeze stopped our thread `host` asleep in a system call (the
    /// call's return value was one of an interrupted wait): its state for the round is `S`,
    /// whatever [`KernelThreads::read_all`] read just before the freeze.
    pub(crate) fn asleep_at_freeze(&mut self, host: u32) {
        self.before.insert(host, 'S');
    }

    /// The state of our thread `host` at the latest freeze: as [`KernelThreads::read_all`] read
    /// it just before, or `S` if the freeze found it asleep in a system call
    /// ([`KernelThreads::asleep_at_freeze`]).
    pub(crate) fn state_before(&self, host: u32) -> Option<char> {
        self.before.get(&host).copied()
    }

    /// State lookups done so far, through `/proc` or a switch watch.
    #[cfg(test)]
    pub(crate) fn reads(&self) -> u64 {
        self.reads
    }

    /// Of those, `/proc` reads.
    #[cfg(test)]
    pub(crate) fn preads(&self) -> u64 {
        self.preads
    }

    /// Our id of the thread the target calls `inner`, if known.
    pub(crate) fn host_of(&self, inner: u32) -> Option<u32> {
        self.inner_to_host.get(&inner).copied()
    }

    /// The target's id of our thread `host` (the same id when not known to differ).
    pub(crate) fn inner_of(&self, host: u32) -> u32 {
        self.host_to_inner.get(&host).copied().unwrap_or(host)
    }
}

/// The state letter of a thread whose newest switch record says whether it is `running`: `R`,
/// or `S` (which of sleeping, waiting or stopped is not recorded).
fn state_letter(running: bool) -> char {
    if running {
        'R'
    } else {
        'S'
    }
}

/// The process is no longer sampled: its threads' switches are no longer kept.
impl Drop for KernelThreads {
    fn drop(&mut self) {
        if self.cpu_watched == Some(true) {
            self.cpu.unwatch(self.pid);
        }
    }
}

#[cfg(test)]
mod tests;
