//! The sampler thread: wait for the next deadline, read every thread, push samples.
//!
//! # Idle threads
//! A thread is *idle* when the kernel does not report it running (`R` in
//! `/proc/PID/task/TID/stat`): it waits in a system call, sleeps, or is stopped. Idle samples
//! are dropped unless `--idle` is given, and flagged [`SampleFlags::IDLE`] either way (the
//! raw format keeps the flag for `convert`, and `strobe top` toggles idle threads with it).
//!
//! A thread that holds the GIL is taken to be running, without reading `/proc`: CPython
//! releases the GIL around every blocking call it makes (`Py_BEGIN_ALLOW_THREADS` in
//! Include/ceval.h, used by sleep, I/O, lock waits, `select`), so a GIL holder is running
//! Python code or C code called from it. The exceptions are C extensions that block while
//! holding the GIL; they stop every other Python thread too, and are shown as running, which
//! is where the time goes. Free-threaded builds have no GIL: every thread's state is read.
//! Other threads are read one `pread` each, only when their idle state decides something:
//! not for threads already filtered out (`--tids`, `--threads`, `--gil`), and not for
//! tasks that are not Python threads. Under `--blocking` every known thread's state is read
//! before the target is frozen (a frozen thread reads as traced-stopped; this round's GIL
//! holder is not known yet), as the freeze itself touches every thread anyway.
//!
//! # Steady-state cost
//! A round is meant to cost little more than the walker's one batched read. Per thread state
//! (`PyThreadState` address) the sampler keeps what the previous sample resolved to
//! ([`ThreadMemo`]): frame ids, stack id, thread id. The walker reports how many outermost
//! frames are unchanged since then ([`RawThread::unchanged`]); their ids are reused without a
//! lookup, and a stack whose ids all match the previous one reuses its stack id without
//! interning. Threads no longer present are forgotten at the end of the round.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strobe_aggregate::{
    FrameId, FrameKey, FxBuild, Sample, SampleFlags, SamplerSide, StackId, ThreadId, ThreadKey,
};
use strobe_memory::{MemError, RemoteMemory};
use strobe_remote::{procfs, Freeze, RemoteError};
use strobe_walker::{RawFrame, RawSample, RawThread, WalkError, Walker};

use crate::clock::Clock;
use crate::family::{self, Scout, Scouted};
use crate::placement::{Placement, MAX_PLACED};
use crate::threads::KernelThreads;
use crate::{
    EndReason, ErrorKind, NewProcess, SamplerConfig, SamplerError, SamplerStats, SamplerSummary,
};
use strobe_signals::DeferSignals;
use strobe_target::{AttachError, Target};

/// Least time between two looks at `threading`'s thread names (they are re-read when a thread
/// appears, and at least this often so that renames show up).
const NAMES_EVERY: Duration = Duration::from_secs(1);
/// Least time between two name lookups caused by new threads.
const NAMES_NEW_EVERY: Duration = Duration::from_millis(50);
/// Least time between two lookups of unknown threads' kernel ids (≤3.10 interpreters), and
/// between two checks that the threads already looked up still live.
const PTHREAD_LOOKUP_EVERY: Duration = Duration::from_millis(100);
/// How often a launched target is checked for having exited (a `waitpid(WNOHANG)`).
const CHILD_CHECK_EVERY: Duration = Duration::from_millis(10);
/// Waits shorter than this (ns) are spun rather than slept: sleeping and being woken costs
/// the sampler more CPU than that here, and overshoots (at high rates most waits are this
/// short; at 100 Hz almost none is).
const SPIN_BELOW_NS: u64 = 10_000;
/// How often the sampler thread's CPU time is published in the stats (a `/proc` read).
const CPU_EVERY: Duration = Duration::from_millis(250);
/// After this many failed rounds in a row, the walker's code-object cache is dropped, in case
/// a stale entry is what keeps failing.
const CLEAR_CACHES_AFTER: u32 = 8;
/// Rates above this sample back to back: the mean interval is then about what a sample costs,
/// and waiting for each deadline would only add wake-up latency.
const FLAT_OUT_HZ: f64 = 20_000.0;
/// The paced sampler thread's nice value (see `run`).
const SAMPLER_NICE: i32 = -10;
/// Cached frame ids beyond this are dropped and the cache refilled.
const MAX_FRAME_CACHE: usize = 1 << 16;

/// (code object address, line) → the names the walker gave it and their interned frame.
type FrameCache = HashMap<(u64, Option<i32>), (u64, FrameId), FxBuild>;

/// What one thread state's previous sample resolved to, so that the next sample of the same
/// stack costs no lookups.
#[derive(Debug, Default)]
struct ThreadMemo {
    /// `(interpreter, thread ident)` of the thread that owns the thread state: a thread state
    /// freed and reused by another thread starts a new memo.
    owner: (u64, u64),
    /// The walk (see [`State::walks`]) whose frames `frames` and `ids` are; `None` when they
    /// are of no use (never resolved, or the last attempt failed).
    walk: Option<u64>,
    /// The last round (walk) that saw this thread state: memos not seen are forgotten.
    seen: u64,
    /// The frames `ids` were resolved from, outermost first.
    frames: Vec<RawFrame>,
    /// Their interned ids, outermost first.
    ids: Vec<FrameId>,
    /// `ids` interned as a stack.
    stack: Option<StackId>,
    /// The interned thread identity and what it was interned from.
    ident: Option<Ident>,
    /// The `threading` name, as of [`State::names_gen`] `names_gen`.
    name: Option<Arc<str>>,
    names_gen: u64,
}

impl ThreadMemo {
    fn new(owner: (u64, u64)) -> ThreadMemo {
        ThreadMemo {
            owner,
            ..ThreadMemo::default()
        }
    }
}

/// A thread identity as interned.
#[derive(Debug)]
struct Ident {
    os_tid: u64,
    interp_id: i64,
    name: Option<Arc<str>>,
    id: ThreadId,
}

/// Why a round produced no samples.
#[derive(Debug)]
enum RoundError {
    /// The target has exited.
    Gone,
    /// This round failed; the next may not.
    Transient(ErrorKind),
    /// Sampling cannot continue.
    Fatal(SamplerError),
}

/// What the sampler keeps between rounds.
struct State {
    pid: i32,
    kernel: KernelThreads,
    /// (interpreter, thread ident) → `threading` name.
    names: HashMap<(u64, u64), Arc<str>, FxBuild>,
    /// Bumped whenever `names` is looked up again (memos then look their name up again).
    names_gen: u64,
    /// A thread appeared since the last names lookup.
    names_pending: bool,
    /// When names were last looked up (ns since the start).
    names_at: Option<u64>,
    /// Thread ident → our kernel thread id, for interpreters that do not record it (≤3.10).
    pthread_tids: HashMap<u64, u32, FxBuild>,
    pthread_at: Option<u64>,
    /// (code object, line) → frame id, valid while the walker hands out the same name strings.
    frames: FrameCache,
    /// Per thread state (by address): what its last sample resolved to.
    memos: HashMap<u64, ThreadMemo, FxBuild>,
    /// Walks started so far (failed ones too): the walker's [`RawThread::unchanged`] refers to
    /// the previous walk, so a memo is only reused by the walk right after its own.
    walks: u64,
    /// Frame ids resolved in this sample (scratch).
    fresh: Vec<FrameId>,
    /// Our ids of the threads the last round found running (for [`Placement`]).
    running: Vec<u32>,
    /// The walker's output, reused from round to round (no allocation in steady state).
    raw: RawSample,
    warned: HashSet<&'static str>,
    warnings: Vec<String>,
    free_threaded: bool,
    /// Rounds started so far (for [`State::test_panic`]).
    rounds_started: u64,
    /// Debug builds only: panic in the round after this many (see [`State::test_panic`]).
    panic_after: Option<u64>,
    /// The target's auxiliary vector when sampling started (see [`read_auxv`]).
    auxv: Option<Vec<u8>>,
    /// Under `--subprocesses`, the frame every stack of this process starts with (its PID and
    /// command line).
    root_frame: Option<FrameId>,
}

/// Environment variable read by debug builds only: `STROBE_TEST_PANIC_AFTER=N` makes the
/// sampler thread panic in round N + 1 (inside the freeze under `--blocking`). The integration
/// tests use it to prove that a panic loses none of the samples already aggregated, is
/// reported, and leaves no target stopped (tests/integration/safety_lifecycle.rs).
#[cfg(debug_assertions)]
const TEST_PANIC_ENV: &str = "STROBE_TEST_PANIC_AFTER";

impl State {
    fn new(pid: i32, free_threaded: bool, root_frame: Option<FrameId>) -> State {
        State {
            pid,
            kernel: KernelThreads::new(pid),
            names: HashMap::default(),
            names_gen: 1,
            names_pending: false,
            names_at: None,
            pthread_tids: HashMap::default(),
            pthread_at: None,
            frames: HashMap::default(),
            memos: HashMap::default(),
            walks: 0,
            fresh: Vec::new(),
            running: Vec::new(),
            raw: RawSample::new(),
            warned: HashSet::new(),
            warnings: Vec::new(),
            free_threaded,
            rounds_started: 0,
            panic_after: State::test_panic_setting(),
            auxv: read_auxv(pid),
            root_frame,
        }
    }

    /// The test hook's setting; always `None` in release builds, which never read it.
    fn test_panic_setting() -> Option<u64> {
        #[cfg(debug_assertions)]
        {
            std::env::var(TEST_PANIC_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
        }
        #[cfg(not(debug_assertions))]
        {
            None
        }
    }

    /// Panic if the test hook asks for it in this round (see `STROBE_TEST_PANIC_AFTER`).
    fn test_panic(&self) {
        if self.panic_after.is_some_and(|n| self.rounds_started > n) {
            panic!(
                "test panic requested in sampling round {}",
                self.rounds_started
            );
        }
    }

    fn warn_once(&mut self, key: &'static str, msg: String) {
        if self.warned.insert(key) {
            self.warnings.push(msg);
        }
    }
}

pub(crate) fn run(
    pid: i32,
    target: Option<Target>,
    mut child: Option<Child>,
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
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(pid.unsigned_abs()) << 32);
    let mut clock = Clock::new(cfg.rate_hz, seed);
    let root_frame = if cfg.subprocesses {
        let command = procfs::command_line(pid, family::LABEL_CHARS).unwrap_or_default();
        Some(process_frame(&mut side, pid, &command)?)
    } else {
        None
    };
    // The process strobe was given, while it is sampled (without `--subprocesses` always;
    // with it, it may be something else than Python, or not be Python yet: then the scout
    // attaches to it like to a descendant, if it ever can).
    let mut root_sampled = target.is_some();
    let mut procs: Vec<Proc> = target
        .into_iter()
        .map(|target| Proc {
            st: State::new(pid, target.free_threaded(), root_frame),
            target,
            command: None,
            root: true,
            failures_in_a_row: 0,
            read_once: false,
        })
        .collect();
    let mut retired_warnings: Vec<String> = Vec::new();
    let mut subprocesses_sampled = 0u64;
    if let Some(state) = procs.first_mut().map(|p| &mut p.st) {
        if cfg.gil_only && state.free_threaded {
            state.warn_once(
                "gil",
                "--gil has no effect: this is a free-threaded interpreter, which has no GIL".into(),
            );
        }
        if let Err(e) = state.kernel.rescan() {
            match gone_or_fatal(pid, e) {
                // The target exited between attaching and this first look: the first round
                // sees it too and ends the recording as a target exit, with a complete output.
                SamplerError::Attach(AttachError::Exited { .. }) => {}
                e => return Err(e),
            }
        }
    }

    // Above this rate the mean interval is shorter than a sample takes: sample back to back.
    let flat_out = cfg.rate_hz > FLAT_OUT_HZ;
    // Deadlines skipped since the last sample (they passed while the sampler was busy).
    let mut carried = 0u64;
    // Whether the sampler slept towards the current deadline (else it passed while busy).
    let mut waited = false;
    // Flat out: when the previous sample was taken (ns since the start).
    let mut previous_ns = 0u64;
    let mut exit_status: Option<ExitStatus> = None;
    let mut child_checked = Instant::now();
    let scout = if cfg.subprocesses {
        Some(Scout::start(pid, !root_sampled).map_err(SamplerError::Spawn)?)
    } else {
        None
    };
    let mut cpus: Vec<u32> = Vec::with_capacity(MAX_PLACED);
    let elapsed_ns = || start.elapsed().as_nanos() as u64;
    let mut cpu = ThreadCpu::open();
    // Off the target's CPUs, where that leaves somewhere to run (see `placement`).
    let mut placement = Placement::new();
    if !flat_out {
        // Paced, the sampler runs a few microseconds per wake-up: favoured by the scheduler,
        // it takes its CPU as soon as its deadline comes instead of waiting for whatever
        // runs there to use up its time slice (which made it late on a busy host).
        // Best effort: without CAP_SYS_NICE the default priority stays.
        let _ = strobe_remote::set_thread_nice(SAMPLER_NICE);
    }
    let mut cpu_at = 0u64;
    let cpu_every = CPU_EVERY.as_nanos() as u64;
    let reason = loop {
        if stop.load(Ordering::SeqCst) {
            break EndReason::Stopped;
        }
        let now = elapsed_ns();
        let end_ns = cfg.duration.map(|d| d.as_nanos() as u64);
        if end_ns.is_some_and(|end| now >= end) {
            break EndReason::DurationElapsed;
        }
        let deadline = if flat_out {
            0
        } else {
            clock.next_deadline_ns()
        };
        if now < deadline {
            let until = end_ns.map_or(deadline, |end| end.min(deadline));
            let wait = until.saturating_sub(now);
            if wait < SPIN_BELOW_NS {
                // Too short to sleep: a park and its wake-up cost more than the wait itself
                // and would overshoot the deadline. Spin on the clock instead.
                std::hint::spin_loop();
            } else {
                // Wakes early on `SamplerHandle::stop` (unpark); spurious wake-ups just loop.
                std::thread::park_timeout(Duration::from_nanos(wait));
            }
            waited = true;
            continue;
        }
        if !waited && !flat_out {
            // Passed while we were busy: sampling now would be at a time set by our own cost.
            carried += clock.skip(now);
            continue;
        }
        waited = false;
        let (intervals, weight_ns) = if flat_out {
            // Back to back, no deadlines to draw: each sample stands for the time since the
            // previous one (the weights add up to the recording's wall time exactly). Not
            // late: sampling as fast as it can is what was asked; the summary reports the
            // rate achieved against the rate requested.
            let gap = now.saturating_sub(previous_ns).max(1);
            previous_ns = now;
            (1, gap)
        } else {
            let tick = clock.tick(now);
            let intervals = tick.intervals + carried;
            carried = 0;
            (
                intervals,
                (intervals as f64 * clock.mean_ns()).round() as u64,
            )
        };
        if intervals > 1 {
            stats.late.fetch_add(1, Ordering::Relaxed);
            stats.missed.fetch_add(intervals - 1, Ordering::Relaxed);
        }
        if let Some(scout) = &scout {
            while let Some(scouted) = scout.next_found() {
                let f = match scouted {
                    Scouted::Attached(f) => *f,
                    Scouted::Failed {
                        pid,
                        command,
                        error,
                    } => {
                        stats.announce(NewProcess {
                            pid,
                            command,
                            error: Some(error),
                        });
                        continue;
                    }
                };
                let frame = process_frame(&mut side, f.pid, &f.command)?;
                let root = f.pid == pid;
                let p = Proc {
                    st: State::new(f.pid, f.target.free_threaded(), Some(frame)),
                    target: f.target,
                    command: Some(f.command),
                    root,
                    failures_in_a_row: 0,
                    read_once: false,
                };
                root_sampled |= root;
                procs.push(p);
            }
        }
        let mut threads = 0;
        let mut recorded = 0;
        let mut failed = false;
        let mut ended = None;
        let mut i = 0;
        while let Some(p) = procs.get_mut(i) {
            let descendant = !p.root;
            match round(&mut p.st, &mut p.target, &cfg, &mut side, now, weight_ns) {
                Ok((t, r)) => {
                    p.failures_in_a_row = 0;
                    threads += t;
                    recorded += r;
                    if !p.read_once {
                        subprocesses_sampled += u64::from(descendant);
                        if let Some(command) = &p.command {
                            stats.announce(NewProcess {
                                pid: p.st.pid,
                                command: command.clone(),
                                error: None,
                            });
                        }
                    }
                    p.read_once = true;
                }
                Err(RoundError::Gone) if descendant => {
                    retire(procs.remove(i), scout.as_ref(), &mut retired_warnings);
                    continue;
                }
                Err(RoundError::Gone) => {
                    ended = Some(EndReason::TargetExited);
                    break;
                }
                Err(RoundError::Transient(_))
                    if descendant && program_replaced(p.st.pid, p.st.auxv.as_deref()) =>
                {
                    // A descendant that ran `exec`: not a failed read of the program we
                    // attached to. The scout attaches to its new program, if Python.
                    retire(procs.remove(i), scout.as_ref(), &mut retired_warnings);
                    continue;
                }
                Err(RoundError::Transient(kind)) => {
                    stats.add_error(kind);
                    failed = true;
                    p.failures_in_a_row += 1;
                    if p.failures_in_a_row >= CLEAR_CACHES_AFTER {
                        // Every round failing may mean the program was replaced (exec): then
                        // the interpreter we read is gone for good and no round will succeed
                        // again.
                        if program_replaced(p.st.pid, p.st.auxv.as_deref()) {
                            ended = Some(EndReason::TargetExeced);
                            break;
                        }
                        p.failures_in_a_row = 0;
                        p.target.walker_mut().clear_caches();
                        p.st.frames.clear();
                        p.st.memos.clear();
                    }
                }
                Err(RoundError::Fatal(e)) => return Err(e),
            }
            i += 1;
        }
        if let Some(reason) = ended {
            break reason;
        }
        if !failed {
            stats.rounds.fetch_add(1, Ordering::Relaxed);
        }
        stats.samples.fetch_add(recorded, Ordering::Relaxed);
        stats.threads.store(threads, Ordering::Relaxed);
        let done_ns = elapsed_ns();
        if cfg.keep_off_target_cpus && placement.due(done_ns) {
            cpus.clear();
            for p in &mut procs {
                for &h in &p.st.running {
                    if cpus.len() >= MAX_PLACED {
                        break;
                    }
                    cpus.extend(p.st.kernel.read_cpu(h));
                }
            }
            placement.update(done_ns, cpus.iter().copied());
        }
        stats.elapsed_ns.store(done_ns, Ordering::Relaxed);
        stats.dropped.store(side.dropped(), Ordering::Relaxed);
        if done_ns.saturating_sub(cpu_at) >= cpu_every {
            cpu_at = done_ns;
            cpu.publish(stats);
        }
        if (child.is_some() || !root_sampled) && child_checked.elapsed() >= CHILD_CHECK_EVERY {
            child_checked = Instant::now();
            match child.as_mut() {
                Some(c) => {
                    if let Ok(Some(status)) = strobe_remote::try_wait(c) {
                        exit_status = Some(status);
                        break EndReason::TargetExited;
                    }
                }
                // Not read (not Python): whether it still runs comes from /proc.
                None => {
                    if procfs::is_gone_or_exiting(pid) {
                        break EndReason::TargetExited;
                    }
                }
            }
        }
    };
    stats.elapsed_ns.store(elapsed_ns(), Ordering::Relaxed);
    stats.dropped.store(side.dropped(), Ordering::Relaxed);
    cpu.publish(stats);
    drop(scout);
    drop(side);
    if reason == EndReason::TargetExited && exit_status.is_none() {
        if let Some(mut c) = child.take() {
            // The target is gone (or a zombie), so this returns at once.
            exit_status = match strobe_remote::try_wait(&mut c) {
                Ok(Some(status)) => Some(status),
                _ => c.wait().ok(),
            };
        }
    }
    let child = if exit_status.is_some() { None } else { child };
    Ok(SamplerSummary {
        placement: placement.current().map(<[usize]>::to_vec),
        stats: stats.snapshot(),
        reason,
        exit_status,
        warnings: {
            let mut all = Vec::new();
            let mut procs = procs.into_iter();
            if let Some(root) = procs.next() {
                all = root.st.warnings;
            }
            all.append(&mut retired_warnings);
            for p in procs {
                retire(p, None, &mut all);
            }
            all
        },
        subprocesses_sampled,
        child,
    })
}

/// One process being sampled (see `run`).
struct Proc {
    st: State,
    target: Target,
    /// The command line of a process the scout found (announced when it is first read).
    command: Option<String>,
    /// The process strobe was given (its exit or `exec` ends sampling).
    root: bool,
    failures_in_a_row: u32,
    read_once: bool,
}

/// A descendant no longer sampled: its warnings are kept (naming it), and the scout may
/// attach to its PID again.
fn retire(p: Proc, scout: Option<&Scout>, warnings: &mut Vec<String>) {
    let pid = p.st.pid;
    warnings.extend(
        p.st.warnings
            .into_iter()
            .map(|w| format!("process {pid}: {w}")),
    );
    if let Some(s) = scout {
        s.forget(pid);
    }
}

/// The root frame of a process's stacks under `--subprocesses`: `process PID`, with its
/// command line where a Python frame has its file name.
fn process_frame(side: &mut SamplerSide, pid: i32, command: &str) -> Result<FrameId, SamplerError> {
    let function = format!("process {pid}");
    Ok(side.interner().intern_frame(&FrameKey {
        function: &function,
        filename: command,
        line: None,
    })?)
}

/// One sampling round. Returns (Python threads seen, samples recorded).
fn round(
    st: &mut State,
    target: &mut Target,
    cfg: &SamplerConfig,
    side: &mut SamplerSide,
    now_ns: u64,
    weight_ns: u64,
) -> Result<(u64, u64), RoundError> {
    let pid = st.pid;
    st.walks += 1;
    if cfg.blocking {
        // Scheduler states first: once frozen, every thread reads as traced-stopped.
        st.kernel.read_all();
    }
    let mut raw = std::mem::take(&mut st.raw);
    st.rounds_started += 1;
    let walked = if cfg.blocking {
        let _freeze = Freeze::all_threads(pid).map_err(|e| freeze_error(pid, e))?;
        // A panic here unwinds through `_freeze`, whose drop releases the target.
        st.test_panic();
        target.walker_mut().sample_into(&mut raw)
    } else {
        st.test_panic();
        target.walker_mut().sample_into(&mut raw)
    };
    let result = walked
        .map_err(|e| walk_error(pid, e))
        .and_then(|()| record_threads(st, target, cfg, side, &raw, now_ns, weight_ns));
    st.raw = raw;
    result
}

/// Filter, flag, intern and push the threads of one sample.
fn record_threads(
    st: &mut State,
    target: &mut Target,
    cfg: &SamplerConfig,
    side: &mut SamplerSide,
    raw: &RawSample,
    now_ns: u64,
    weight_ns: u64,
) -> Result<(u64, u64), RoundError> {
    let pid = st.pid;
    let stacks = &raw.threads;
    let walk = st.walks;

    if note_threads(&mut st.memos, stacks, walk) {
        st.names_pending = true;
    }
    // Whether a thread has a kernel id we cannot place, or none at all (≤3.10).
    let mut unknown_tid = false;
    let mut no_tid = false;
    for t in stacks {
        match t.native_id {
            Some(n) => unknown_tid |= st.kernel.host_of(n).is_none(),
            None => no_tid = true,
        }
    }
    if unknown_tid {
        // A thread we have not seen: list the tasks again (rate-limited inside).
        if let Err(e) = st.kernel.rescan() {
            return Err(match gone_or_fatal(pid, e) {
                SamplerError::Attach(AttachError::Exited { .. }) => RoundError::Gone,
                _ => RoundError::Transient(ErrorKind::Proc),
            });
        }
    }
    if cfg.names || !cfg.thread_names.is_empty() {
        refresh_names(st, target, stacks, now_ns);
    }
    if no_tid {
        refresh_pthread_tids(st, target, stacks, now_ns);
    }

    let mut recorded = 0;
    st.running.clear();
    for t in stacks {
        let Some(memo) = st.memos.get_mut(&t.tstate_addr) else {
            continue;
        };
        let host = match t.native_id {
            Some(inner) => st.kernel.host_of(inner),
            None => st.pthread_tids.get(&t.thread_id).copied(),
        };
        let inner = t.native_id.or_else(|| host.map(|h| st.kernel.inner_of(h)));
        if !cfg.tids.is_empty()
            && !cfg
                .tids
                .iter()
                .any(|&x| Some(x) == inner || Some(x) == host)
        {
            continue;
        }
        if memo.names_gen != st.names_gen {
            memo.name = st.names.get(&(t.interp_addr, t.thread_id)).cloned();
            memo.names_gen = st.names_gen;
        }
        if !cfg.thread_names.is_empty()
            && !memo
                .name
                .as_deref()
                .is_some_and(|n| cfg.thread_names.iter().any(|w| w == n))
        {
            continue;
        }
        // A free-threaded build has no GIL: every thread runs as if it held one.
        let holds_gil = t.holds_gil || st.free_threaded;
        if cfg.gil_only && !holds_gil {
            continue;
        }
        let frames = raw.frames_of(t);
        if frames.is_empty() {
            continue;
        }
        // Under `--blocking`, the state read before the freeze; a thread not known then
        // (new since the last scan of the task list) is read now, after the release.
        let pre_state = match host {
            Some(h) if cfg.blocking => st.kernel.state_before(h).map(Some),
            _ => None,
        };
        let idle = is_idle(&mut st.kernel, t, st.free_threaded, host, pre_state);
        if let (false, Some(h)) = (idle, host) {
            st.running.push(h);
        }
        if idle && !cfg.include_idle {
            continue;
        }
        let mut flags = SampleFlags::empty();
        if idle {
            flags = flags.with(SampleFlags::IDLE);
        }
        if holds_gil {
            flags = flags.with(SampleFlags::HOLDS_GIL);
        }
        if st.frames.len() > MAX_FRAME_CACHE {
            st.frames.clear();
        }
        let stack = stack_of(
            memo,
            &mut st.frames,
            &mut st.fresh,
            side,
            target.walker_mut(),
            t,
            frames,
            walk,
            cfg.by_function,
            st.root_frame,
        )?;
        let thread = thread_of(
            memo,
            side,
            inner.map_or(t.thread_id, u64::from),
            t.interp_id,
        )?;
        side.push(Sample {
            stack,
            thread,
            flags,
            timestamp_ns: now_ns,
            weight_ns,
        });
        recorded += 1;
    }
    Ok((stacks.len() as u64, recorded))
}

/// Give every thread of this walk a memo (a new one if its thread state now belongs to
/// another thread) and forget the memos of thread states that are gone. Returns whether a
/// thread is new.
fn note_threads(
    memos: &mut HashMap<u64, ThreadMemo, FxBuild>,
    stacks: &[RawThread],
    walk: u64,
) -> bool {
    let mut new = false;
    for t in stacks {
        let owner = (t.interp_addr, t.thread_id);
        let memo = memos
            .entry(t.tstate_addr)
            .or_insert_with(|| ThreadMemo::new(owner));
        if memo.owner != owner {
            *memo = ThreadMemo::new(owner);
        }
        new |= memo.seen == 0;
        memo.seen = walk;
    }
    // Every present thread state was just marked: more memos than threads means some are
    // of threads that exited.
    if memos.len() > stacks.len() {
        memos.retain(|_, m| m.seen == walk);
    }
    new
}

/// Whether thread `t` is idle (see the module documentation). `pre_state` is its state read
/// before a `--blocking` freeze, if it was; otherwise it is read now, unless the thread holds
/// the GIL. An unknown state (no kernel id, or the thread just exited) counts as running:
/// better shown than hidden.
fn is_idle(
    kernel: &mut KernelThreads,
    t: &RawThread,
    free_threaded: bool,
    host: Option<u32>,
    pre_state: Option<Option<char>>,
) -> bool {
    if t.holds_gil && !free_threaded {
        return false;
    }
    let state = match pre_state {
        Some(state) => state,
        None => host.and_then(|h| kernel.read_state(h)),
    };
    state.is_some_and(|s| s != 'R')
}

/// Names of the code object of a frame: the walker's, a stub in tests.
trait FrameNames {
    /// Which decoding of the code object at `code_addr` names are taken from (it changes when
    /// a freed code object's address is reused); `None` when it is not decoded at the moment.
    fn code_serial(&mut self, code_addr: u64) -> Option<u64>;
    /// (function, file name).
    fn names(&mut self, f: RawFrame) -> Result<(Arc<str>, Arc<str>), WalkError>;
}

impl<M: RemoteMemory> FrameNames for Walker<M> {
    fn code_serial(&mut self, code_addr: u64) -> Option<u64> {
        Walker::code_serial(self, code_addr)
    }

    fn names(&mut self, f: RawFrame) -> Result<(Arc<str>, Arc<str>), WalkError> {
        let info = self.frame_info(f)?;
        Ok((info.function, info.filename))
    }
}

/// The interned stack of `frames` (innermost first), reusing what `memo` kept from this
/// thread state's previous sample where the walker vouches for it.
#[allow(clippy::too_many_arguments)]
fn stack_of(
    memo: &mut ThreadMemo,
    cache: &mut FrameCache,
    fresh: &mut Vec<FrameId>,
    side: &mut SamplerSide,
    names: &mut impl FrameNames,
    t: &RawThread,
    frames: &[RawFrame],
    walk: u64,
    by_function: bool,
    root: Option<FrameId>,
) -> Result<StackId, RoundError> {
    // `memo.ids` starts with `root`, if there is one.
    let base = usize::from(root.is_some());
    if root.is_some() && memo.ids.first().copied() != root {
        memo.ids.clear();
        memo.ids.extend(root);
        memo.frames.clear();
        memo.stack = None;
    }
    // Outermost frames whose ids are kept: the walker says they are the same frames at the
    // same instructions as in the previous sample it returned (so they still run the same,
    // live code objects: no check that a code object was freed is needed; attempts it retried
    // or that failed never count as that sample), and our ids are of that sample.
    let keep = if memo.walk.is_some_and(|w| w + 1 == walk) {
        t.unchanged.min(frames.len()).min(memo.frames.len())
    } else {
        0
    };
    let changed = frames.get(..frames.len() - keep).unwrap_or(&[]);
    fresh.clear();
    // Until the ids are complete, the memo no longer describes the previous walk.
    memo.walk = None;
    for &f in changed.iter().rev() {
        fresh.push(frame_id(cache, side, names, f, by_function)?);
    }
    let stack = match memo.stack {
        Some(stack) if memo.ids.get(base + keep..) == Some(&fresh[..]) => stack,
        _ => {
            memo.stack = None;
            memo.ids.truncate(base + keep);
            memo.ids.extend_from_slice(fresh);
            side.interner()
                .intern_stack(&memo.ids)
                .map_err(|e| RoundError::Fatal(e.into()))?
        }
    };
    memo.stack = Some(stack);
    memo.frames.truncate(keep);
    memo.frames.extend(changed.iter().rev().copied());
    memo.walk = Some(walk);
    Ok(stack)
}

/// The interned identity of the thread of `memo`, interned again only when its kernel id,
/// name or interpreter changed.
fn thread_of(
    memo: &mut ThreadMemo,
    side: &mut SamplerSide,
    os_tid: u64,
    interp_id: i64,
) -> Result<ThreadId, RoundError> {
    if let Some(i) = &memo.ident {
        let same_name = match (&i.name, &memo.name) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        };
        if i.os_tid == os_tid && i.interp_id == interp_id && same_name {
            return Ok(i.id);
        }
    }
    let id = side
        .interner()
        .intern_thread(&ThreadKey {
            os_tid,
            name: memo.name.as_deref(),
            interpreter_id: interp_id,
        })
        .map_err(|e| RoundError::Fatal(e.into()))?;
    memo.ident = Some(Ident {
        os_tid,
        interp_id,
        name: memo.name.clone(),
        id,
    });
    Ok(id)
}

/// The interned id of a frame, cached by (code object, line). The walker decodes a code object
/// once and numbers each decoding (a code object freed and its address reused by another is
/// decoded afresh, under a new number), so a cached id whose number is the walker's current
/// one for that address is still right: one lookup on each side, no reading of the target, no
/// names. Called only for frames that changed since the thread's previous sample.
fn frame_id(
    cache: &mut FrameCache,
    side: &mut SamplerSide,
    names: &mut impl FrameNames,
    f: RawFrame,
    by_function: bool,
) -> Result<FrameId, RoundError> {
    let line = if by_function { None } else { f.line };
    let key = (f.code_addr, line);
    let serial = names.code_serial(f.code_addr);
    if let (Some(serial), Some(&(cached, id))) = (serial, cache.get(&key)) {
        if cached == serial {
            return Ok(id);
        }
    }
    // A code object freed since the sample: the round saw a target in mid-change.
    let (function, filename) = names
        .names(f)
        .map_err(|_| RoundError::Transient(ErrorKind::Torn))?;
    let id = side
        .interner()
        .intern_frame(&FrameKey {
            function: &function,
            filename: &filename,
            line,
        })
        .map_err(|e| RoundError::Fatal(e.into()))?;
    // Decoded now if it was not before.
    match serial.or_else(|| names.code_serial(f.code_addr)) {
        Some(serial) => {
            cache.insert(key, (serial, id));
        }
        None => {
            cache.remove(&key);
        }
    }
    Ok(id)
}

/// Re-read `threading` names when a thread appeared (at most every [`NAMES_NEW_EVERY`]), and
/// every [`NAMES_EVERY`].
fn refresh_names(st: &mut State, target: &Target, stacks: &[RawThread], now_ns: u64) {
    let since = st.names_at.map(|at| now_ns.saturating_sub(at));
    let due = since.is_none_or(|d| d >= NAMES_EVERY.as_nanos() as u64);
    // A new thread that `threading` does not know (e.g. started by C code) must not cause a
    // lookup every round.
    let recent = since.is_some_and(|d| d < NAMES_NEW_EVERY.as_nanos() as u64);
    if !(due || (st.names_pending && !recent)) {
        return;
    }
    st.names_at = Some(now_ns);
    st.names_pending = false;
    st.names_gen += 1;
    let mut interps: Vec<u64> = stacks.iter().map(|t| t.interp_addr).collect();
    interps.sort_unstable();
    interps.dedup();
    for interp in interps {
        match target.thread_names(interp) {
            Ok(found) => {
                for (ident, name) in found {
                    let key = (interp, ident);
                    if st.names.get(&key).is_none_or(|n| **n != *name) {
                        st.names.insert(key, name.into());
                    }
                }
            }
            // Transient failures are retried at the next refresh; only a lasting one is news.
            Err(e) if e.is_transient() => {}
            Err(e) => st.warn_once("names", format!("thread names are unavailable: {e}")),
        }
    }
    let live: HashSet<(u64, u64), FxBuild> = stacks
        .iter()
        .map(|t| (t.interp_addr, t.thread_id))
        .collect();
    st.names.retain(|k, _| live.contains(k));
}

/// Find kernel ids of threads whose interpreter does not record them (≤3.10), at most every
/// [`PTHREAD_LOOKUP_EVERY`].
fn refresh_pthread_tids(st: &mut State, target: &Target, stacks: &[RawThread], now_ns: u64) {
    let every = PTHREAD_LOOKUP_EVERY.as_nanos() as u64;
    if st
        .pthread_at
        .is_some_and(|at| now_ns.saturating_sub(at) < every)
    {
        return;
    }
    // A cached id whose task is gone belonged to a thread that exited; its ident may have
    // been reused by a new thread. Checked as often as new threads are looked up.
    if !st.pthread_tids.is_empty() {
        st.pthread_at = Some(now_ns);
        let kernel = &mut st.kernel;
        st.pthread_tids
            .retain(|_, host| kernel.read_state(*host).is_some());
    }
    let unknown = pthreads_to_look_up(stacks, &st.pthread_tids);
    if unknown.is_empty() {
        return;
    }
    st.pthread_at = Some(now_ns);
    match target.native_tids(&unknown) {
        Ok(found) => st.pthread_tids.extend(found),
        Err(e) => st.warn_once(
            "pthreads",
            format!("kernel thread ids are unavailable, so idle threads cannot be told apart: {e}"),
        ),
    }
}

/// The idents (`pthread_t`) of threads whose kernel id is neither recorded by the interpreter
/// nor cached. A thread state whose ident is still 0 belongs to a thread being started (the
/// new thread has not run yet, 3.11+ records its kernel id as soon as it does): there is no
/// `pthread_t` to read.
fn pthreads_to_look_up(stacks: &[RawThread], cached: &HashMap<u64, u32, FxBuild>) -> Vec<u64> {
    stacks
        .iter()
        .filter(|t| t.native_id.is_none() && t.thread_id != 0)
        .filter(|t| !cached.contains_key(&t.thread_id))
        .map(|t| t.thread_id)
        .collect()
}

/// The calling thread's CPU time, from `/proc/thread-self/schedstat`, whose first field is the
/// time the thread has run in ns (`se.sum_exec_runtime`, fs/proc/base.c `proc_pid_schedstat`;
/// the sum `CLOCK_THREAD_CPUTIME_ID` reports). The file, opened on the thread it measures,
/// stays bound to that thread; each reading is one `pread`.
struct ThreadCpu {
    file: Option<File>,
}

impl ThreadCpu {
    /// For the calling thread; readings are `None` where the kernel does not offer the file.
    fn open() -> ThreadCpu {
        ThreadCpu {
            file: File::open("/proc/thread-self/schedstat").ok(),
        }
    }

    fn read(&mut self) -> Option<Duration> {
        let mut buf = [0u8; 128];
        let n = self.file.as_ref()?.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(buf.get(..n)?).ok()?;
        let ns: u64 = text.split_ascii_whitespace().next()?.parse().ok()?;
        Some(Duration::from_nanos(ns))
    }

    /// Store the current reading in `stats` (nothing if there is none).
    fn publish(&mut self, stats: &SamplerStats) {
        if let Some(cpu) = self.read() {
            stats.set_cpu(cpu);
        }
    }
}

fn walk_error(pid: i32, e: WalkError) -> RoundError {
    let kind = match &e {
        WalkError::Mem(MemError::ProcessGone { .. }) => return RoundError::Gone,
        WalkError::Mem(m) if m.is_transient() => ErrorKind::Read,
        WalkError::Corrupt { .. } | WalkError::Unbounded { .. } => ErrorKind::Torn,
        _ => ErrorKind::Read,
    };
    if target_gone(pid) {
        return RoundError::Gone;
    }
    if e.is_transient() {
        RoundError::Transient(kind)
    } else {
        RoundError::Fatal(SamplerError::Walk { pid, source: e })
    }
}

/// Longest auxiliary vector read (it is a few hundred bytes: about 25 (type, value) pairs).
const MAX_AUXV: u64 = 64 * 1024;

/// The process's auxiliary vector (`/proc/PID/auxv`). The kernel builds it anew on every
/// execve (fs/binfmt_elf.c `create_elf_tables`) for the new program's stack: `AT_RANDOM`
/// points into that stack and, with ASLR, `AT_PHDR`/`AT_ENTRY`/`AT_BASE` move too, so a
/// different vector means the program we attached to was replaced. `None` if unreadable.
fn read_auxv(pid: i32) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(format!("/proc/{pid}/auxv")).ok()?;
    let mut buf = Vec::new();
    file.take(MAX_AUXV).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Whether the process now runs another program than when sampling started: its auxiliary
/// vector changed and it is not exiting (an exiting process or a zombie has no memory left
/// and shows an empty vector, which is not an exec).
fn program_replaced(pid: i32, at_start: Option<&[u8]>) -> bool {
    let Some(at_start) = at_start else {
        return false;
    };
    match read_auxv(pid) {
        Some(now) if !now.is_empty() && now != at_start => !target_gone(pid),
        _ => false,
    }
}

/// `PF_EXITING` (include/linux/sched.h): the process is tearing itself down. Its memory may
/// already be gone (reads fail with errors that are not "no such process") before it turns
/// into a zombie.
const PF_EXITING: u64 = 0x4;

/// Whether the target has exited or is exiting.
fn target_gone(pid: i32) -> bool {
    match procfs::stat(pid) {
        Ok(st) => matches!(st.state, 'Z' | 'X' | 'x') || st.flags & PF_EXITING != 0,
        Err(_) => true,
    }
}

fn freeze_error(pid: i32, e: RemoteError) -> RoundError {
    if target_gone(pid) {
        return RoundError::Gone;
    }
    match gone_or_fatal(pid, e) {
        SamplerError::Attach(AttachError::Exited { .. }) => RoundError::Gone,
        SamplerError::Attach(AttachError::Remote(
            e @ (RemoteError::AlreadyTraced { .. } | RemoteError::PermissionDenied { .. }),
        )) => RoundError::Fatal(SamplerError::Attach(AttachError::Remote(e))),
        _ => RoundError::Transient(ErrorKind::Freeze),
    }
}

fn gone_or_fatal(pid: i32, e: RemoteError) -> SamplerError {
    // Once attached, "no such process" means the target exited (at attach time it means the
    // user named a PID that does not exist, which `exited_or` keeps as it is).
    if let RemoteError::NoSuchProcess { .. } = e {
        return SamplerError::Attach(AttachError::Exited { pid });
    }
    SamplerError::Attach(strobe_target::exited_or(pid, AttachError::Remote(e)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use strobe_aggregate::AggregatorSide;

    /// Code objects by address (with the number of their decoding), counting lookups.
    #[derive(Default)]
    struct Codes {
        names: HashMap<u64, (Arc<str>, Arc<str>)>,
        serials: HashMap<u64, u64>,
        decoded: u64,
        lookups: usize,
    }

    impl Codes {
        /// (Re)define the code object at `addr`, as the walker does when it decodes one.
        fn define(&mut self, addr: u64, function: &str) {
            self.names
                .insert(addr, (function.into(), Arc::from("/app/x.py")));
            self.decoded += 1;
            self.serials.insert(addr, self.decoded);
        }
    }

    impl FrameNames for Codes {
        fn code_serial(&mut self, code_addr: u64) -> Option<u64> {
            self.lookups += 1;
            self.serials.get(&code_addr).copied()
        }

        fn names(&mut self, f: RawFrame) -> Result<(Arc<str>, Arc<str>), WalkError> {
            self.names
                .get(&f.code_addr)
                .cloned()
                .ok_or(WalkError::Corrupt {
                    what: "code object",
                    addr: f.code_addr,
                })
        }
    }

    fn frame(code: u64, line: i32) -> RawFrame {
        RawFrame {
            code_addr: code,
            lasti: i64::from(line) * 4,
            line: Some(line),
        }
    }

    fn thread(unchanged: usize, holds_gil: bool) -> RawThread {
        RawThread {
            interp_addr: 0x1000,
            interp_id: 0,
            tstate_addr: 0x2000,
            thread_id: 77,
            native_id: None,
            holds_gil,
            frames: 0..0,
            truncated: false,
            unchanged,
        }
    }

    /// One thread state's memo and everything `stack_of` needs.
    struct Rig {
        memo: ThreadMemo,
        cache: FrameCache,
        fresh: Vec<FrameId>,
        side: SamplerSide,
        _agg: AggregatorSide,
        codes: Codes,
        walk: u64,
        /// The `--subprocesses` root frame, if any.
        root: Option<FrameId>,
    }

    impl Rig {
        fn new() -> Rig {
            let (side, agg) = strobe_aggregate::pipeline(16);
            let mut codes = Codes::default();
            for (addr, name) in [
                (0x10, "main"),
                (0x20, "work"),
                (0x30, "leaf"),
                (0x40, "other"),
            ] {
                codes.define(addr, name);
            }
            Rig {
                memo: ThreadMemo::new((0x1000, 77)),
                cache: FrameCache::default(),
                fresh: Vec::new(),
                side,
                _agg: agg,
                codes,
                walk: 0,
                root: None,
            }
        }

        /// A walk of `frames` (innermost first) of which the walker reports `unchanged`
        /// outermost ones as unchanged: the stack and the code lookups it took.
        fn sample(&mut self, frames: &[RawFrame], unchanged: usize) -> (StackId, usize) {
            self.walk += 1;
            let before = self.codes.lookups;
            let stack = self
                .try_sample(frames, unchanged)
                .unwrap_or_else(|_| panic!("failed"));
            (stack, self.codes.lookups - before)
        }

        fn try_sample(&mut self, frames: &[RawFrame], unchanged: usize) -> Result<StackId, ()> {
            stack_of(
                &mut self.memo,
                &mut self.cache,
                &mut self.fresh,
                &mut self.side,
                &mut self.codes,
                &thread(unchanged, true),
                frames,
                self.walk,
                false,
                self.root,
            )
            .map_err(|_| ())
        }

        /// The stack as (function, line), outermost first.
        fn resolve(&mut self, stack: StackId) -> Vec<(String, Option<i32>)> {
            let tables = self.side.interner().tables();
            tables
                .stack(stack)
                .iter()
                .map(|&id| {
                    let f = tables.frame(id).unwrap();
                    (tables.str(f.function).to_string(), f.line)
                })
                .collect()
        }

        fn stacks(&mut self) -> usize {
            self.side.interner().tables().num_stacks()
        }
    }

    fn names(stack: &[(String, Option<i32>)]) -> Vec<&str> {
        stack.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn threads_not_started_yet_are_not_looked_up_by_pthread() {
        let mut starting = thread(0, false);
        starting.thread_id = 0;
        let mut cached_thread = thread(0, false);
        cached_thread.thread_id = 0x7f00_0000_1000;
        let mut recorded = thread(0, false);
        recorded.thread_id = 0x7f00_0000_2000;
        recorded.native_id = Some(4242);
        let mut unknown = thread(0, false);
        unknown.thread_id = 0x7f00_0000_3000;
        let mut cached = HashMap::default();
        cached.insert(0x7f00_0000_1000, 77);
        let stacks = [starting, cached_thread, recorded, unknown];
        assert_eq!(
            pthreads_to_look_up(&stacks, &cached),
            vec![0x7f00_0000_3000]
        );
    }

    #[test]
    fn a_changed_innermost_frame_reuses_the_outer_ids() {
        let mut rig = Rig::new();
        let first = [frame(0x30, 5), frame(0x20, 3), frame(0x10, 1)];
        let (s1, lookups) = rig.sample(&first, 0);
        assert_eq!(lookups, 3, "a first sample resolves every frame");
        assert_eq!(names(&rig.resolve(s1)), ["main", "work", "leaf"]);

        // The leaf moved to another line: only it is looked up.
        let second = [frame(0x30, 6), frame(0x20, 3), frame(0x10, 1)];
        let (s2, lookups) = rig.sample(&second, 2);
        assert_eq!(lookups, 1);
        assert_ne!(s1, s2);
        assert_eq!(
            rig.resolve(s2),
            [
                ("main".to_string(), Some(1)),
                ("work".to_string(), Some(3)),
                ("leaf".to_string(), Some(6))
            ]
        );

        // A different innermost function, one frame deeper.
        let third = [
            frame(0x40, 9),
            frame(0x30, 6),
            frame(0x20, 3),
            frame(0x10, 1),
        ];
        let (s3, lookups) = rig.sample(&third, 3);
        assert_eq!(lookups, 1);
        assert_eq!(names(&rig.resolve(s3)), ["main", "work", "leaf", "other"]);
    }

    #[test]
    fn a_process_root_frame_starts_every_stack_and_ids_are_still_reused() {
        let mut rig = Rig::new();
        let root = process_frame(&mut rig.side, 4242, "python app.py").unwrap();
        rig.root = Some(root);
        let first = [frame(0x30, 5), frame(0x20, 3), frame(0x10, 1)];
        let (s1, lookups) = rig.sample(&first, 0);
        assert_eq!(lookups, 3);
        assert_eq!(
            names(&rig.resolve(s1)),
            ["process 4242", "main", "work", "leaf"]
        );
        {
            let tables = rig.side.interner().tables();
            let f = tables.frame(root).unwrap();
            assert_eq!((tables.str(f.filename), f.line), ("python app.py", None));
        }
        // Same stack: no lookup, same id, nothing interned.
        let stacks = rig.stacks();
        let (s2, lookups) = rig.sample(&first, 3);
        assert_eq!((s2, lookups, rig.stacks()), (s1, 0, stacks));
        // The leaf moved: one lookup, the root and the outer frames kept.
        let second = [frame(0x30, 6), frame(0x20, 3), frame(0x10, 1)];
        let (s3, lookups) = rig.sample(&second, 2);
        assert_eq!(lookups, 1);
        assert_eq!(
            rig.resolve(s3),
            [
                ("process 4242".to_string(), None),
                ("main".to_string(), Some(1)),
                ("work".to_string(), Some(3)),
                ("leaf".to_string(), Some(6))
            ]
        );
        // Fewer frames: the root stays.
        let (s4, _) = rig.sample(&second[1..], 2);
        assert_eq!(names(&rig.resolve(s4)), ["process 4242", "main", "work"]);
    }

    #[test]
    fn an_unchanged_stack_reuses_its_stack_without_interning() {
        let mut rig = Rig::new();
        let frames = [frame(0x30, 5), frame(0x20, 3), frame(0x10, 1)];
        let (s1, _) = rig.sample(&frames, 0);
        let stacks = rig.stacks();
        let (s2, lookups) = rig.sample(&frames, 3);
        assert_eq!((s2, lookups, rig.stacks()), (s1, 0, stacks));

        // The innermost instruction moved within its line: looked up, same ids, same stack.
        let mut moved = frames;
        moved[0].lasti += 2;
        let (s3, lookups) = rig.sample(&moved, 2);
        assert_eq!((s3, lookups, rig.stacks()), (s1, 1, stacks));
    }

    #[test]
    fn ids_are_only_reused_for_the_walk_right_after_theirs() {
        let mut rig = Rig::new();
        let frames = [frame(0x30, 5), frame(0x20, 3), frame(0x10, 1)];
        rig.sample(&frames, 0);
        // A walk in between that this memo did not see (the thread was filtered out, or the
        // round failed): the walker's `unchanged` refers to that walk, not to ours.
        rig.walk += 1;
        let (_, lookups) = rig.sample(&frames, 3);
        assert_eq!(lookups, 3);
    }

    #[test]
    fn a_code_object_replaced_at_the_same_address_is_interned_anew() {
        let mut rig = Rig::new();
        let frames = [frame(0x30, 5), frame(0x10, 1)];
        let (s1, _) = rig.sample(&frames, 0);
        // The leaf returned, its code object was freed and another one took its address; a
        // new call to it stands at the same line (so the walker reports it as changed).
        rig.codes.define(0x30, "reborn");
        let (s2, lookups) = rig.sample(&frames, 1);
        assert_eq!(lookups, 1);
        assert_ne!(s1, s2);
        assert_eq!(names(&rig.resolve(s2)), ["main", "reborn"]);
    }

    #[test]
    fn a_failed_lookup_leaves_no_half_updated_memo() {
        let mut rig = Rig::new();
        let (s1, _) = rig.sample(&[frame(0x30, 5), frame(0x10, 1)], 0);
        rig.walk += 1;
        assert!(rig
            .try_sample(&[frame(0x99, 5), frame(0x10, 1)], 1)
            .is_err());
        // The next walk cannot build on the failed one; it resolves everything again.
        let (s2, lookups) = rig.sample(&[frame(0x30, 5), frame(0x10, 1)], 2);
        assert_eq!((s2, lookups), (s1, 2));
    }

    #[test]
    fn thread_identity_is_interned_again_only_when_it_changes() {
        let mut rig = Rig::new();
        let threads = |rig: &mut Rig| rig.side.interner().tables().num_threads();
        let a = thread_of(&mut rig.memo, &mut rig.side, 501, 0).unwrap();
        assert_eq!(thread_of(&mut rig.memo, &mut rig.side, 501, 0).unwrap(), a);
        assert_eq!(threads(&mut rig), 1);
        // Renamed: a name lookup produced a new string.
        rig.memo.name = Some("worker-1".into());
        let b = thread_of(&mut rig.memo, &mut rig.side, 501, 0).unwrap();
        assert_ne!(a, b);
        // The same name from a later lookup (another allocation) is the same identity.
        rig.memo.name = Some("worker-1".into());
        assert_eq!(thread_of(&mut rig.memo, &mut rig.side, 501, 0).unwrap(), b);
        assert_ne!(thread_of(&mut rig.memo, &mut rig.side, 502, 0).unwrap(), b);
        assert_eq!(threads(&mut rig), 3);
    }

    #[test]
    fn threads_that_exit_are_forgotten_and_reused_thread_states_start_afresh() {
        let mut memos = HashMap::default();
        let at = |tstate: u64, ident: u64| RawThread {
            tstate_addr: tstate,
            thread_id: ident,
            ..thread(0, false)
        };
        assert!(note_threads(&mut memos, &[at(0xa0, 1), at(0xb0, 2)], 1));
        memos.get_mut(&0xb0).unwrap().stack = Some(StackId(7));
        // Nothing new.
        assert!(!note_threads(&mut memos, &[at(0xa0, 1), at(0xb0, 2)], 2));
        assert_eq!(memos[&0xb0].stack, Some(StackId(7)));
        // Thread 1 exited.
        assert!(!note_threads(&mut memos, &[at(0xb0, 2)], 3));
        assert_eq!(memos.len(), 1);
        assert!(!memos.contains_key(&0xa0));
        // Thread 2 exited and a new thread got its thread state: nothing of 2 is kept.
        assert!(note_threads(&mut memos, &[at(0xb0, 3)], 4));
        assert_eq!(memos[&0xb0].owner, (0x1000, 3));
        assert_eq!(memos[&0xb0].stack, None);
    }

    /// A thread of this process that sleeps until dropped, and its kernel id.
    struct Sleeper {
        tid: u32,
        wake: Option<std::sync::mpsc::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Sleeper {
        fn start() -> Sleeper {
            let (tid_tx, tid_rx) = std::sync::mpsc::channel();
            let (wake, wait) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                tid_tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
                let _ = wait.recv();
            });
            Sleeper {
                tid: tid_rx.recv().unwrap(),
                wake: Some(wake),
                thread: Some(thread),
            }
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            drop(self.wake.take());
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    #[test]
    fn a_gil_holder_is_running_without_a_proc_read() {
        let mut kernel = KernelThreads::new(std::process::id() as i32);
        // Whatever state the thread is in (it may still be on its way to sleep), holding the
        // GIL decides, and nothing is read.
        let sleeper = Sleeper::start();
        assert!(!is_idle(
            &mut kernel,
            &thread(0, true),
            false,
            Some(sleeper.tid),
            None
        ));
        assert_eq!(kernel.reads(), 0);
        // Without the GIL (or on a free-threaded build) the state is read. The running
        // thread is this one.
        let me = nix::unistd::gettid().as_raw() as u32;
        assert!(!is_idle(
            &mut kernel,
            &thread(0, false),
            false,
            Some(me),
            None
        ));
        assert!(!is_idle(
            &mut kernel,
            &thread(0, true),
            true,
            Some(me),
            None
        ));
        assert_eq!(kernel.reads(), 2);
        // A state read before a freeze is used as it is.
        assert!(is_idle(
            &mut kernel,
            &thread(0, false),
            false,
            Some(me),
            Some(Some('S'))
        ));
        assert!(!is_idle(
            &mut kernel,
            &thread(0, false),
            false,
            None,
            Some(None)
        ));
        // No kernel id: counts as running.
        assert!(!is_idle(&mut kernel, &thread(0, false), false, None, None));
        assert_eq!(kernel.reads(), 2);
    }
}
