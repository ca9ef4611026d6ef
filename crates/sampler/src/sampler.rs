//! The sampler thread: wait for the next deadline, read every thread, push samples.

use std::collections::{HashMap, HashSet};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strobe_aggregate::{FrameId, FrameKey, Sample, SampleFlags, SamplerSide, ThreadKey};
use strobe_remote::ProcessMemory;
use strobe_remote::{procfs, Freeze, MemError, RemoteError};
use strobe_walker::{RawFrame, RawSample, RawThread, WalkError, Walker};

use crate::attach::{AttachError, Target};
use crate::clock::Clock;
use crate::signals::DeferSignals;
use crate::threads::KernelThreads;
use crate::{EndReason, ErrorKind, SamplerConfig, SamplerError, SamplerStats, SamplerSummary};

/// Least time between two looks at `threading`'s thread names (they are re-read when a thread
/// appears, and at least this often so that renames show up).
const NAMES_EVERY: Duration = Duration::from_secs(1);
/// Least time between two lookups of unknown threads' kernel ids (pre-3.8 interpreters).
const PTHREAD_LOOKUP_EVERY: Duration = Duration::from_millis(100);
/// How often a launched target is checked for having exited (a `waitpid(WNOHANG)`).
const CHILD_CHECK_EVERY: Duration = Duration::from_millis(10);
/// After this many failed rounds in a row, the walker's code-object cache is dropped, in case
/// a stale entry is what keeps failing.
const CLEAR_CACHES_AFTER: u32 = 8;
/// Rates above this sample back to back: the mean interval is then about what a sample costs,
/// and waiting for each deadline would only add wake-up latency.
const FLAT_OUT_HZ: f64 = 20_000.0;
/// Cached frame ids beyond this are dropped and the cache refilled.
const MAX_FRAME_CACHE: usize = 1 << 16;

/// (code object address, line) → the names the walker gave it and their interned frame.
type FrameCache = HashMap<(u64, Option<i32>), (Arc<str>, Arc<str>, FrameId)>;

/// Why a round produced no samples.
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
    names: HashMap<(u64, u64), Arc<str>>,
    /// Threads present at the last names lookup.
    named: HashSet<(u64, u64)>,
    names_at: Option<Instant>,
    /// Thread ident → our kernel thread id, for interpreters that do not record it (≤3.10).
    pthread_tids: HashMap<u64, u32>,
    pthread_at: Option<Instant>,
    /// (code object, line) → frame id, valid while the walker hands out the same name strings.
    frames: FrameCache,
    ids: Vec<FrameId>,
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
}

/// Environment variable read by debug builds only: `STROBE_TEST_PANIC_AFTER=N` makes the
/// sampler thread panic in round N + 1 (inside the freeze under `--blocking`). The integration
/// tests use it to prove that a panic loses none of the samples already aggregated, is
/// reported, and leaves no target stopped (tests/integration/safety_lifecycle.rs).
#[cfg(debug_assertions)]
const TEST_PANIC_ENV: &str = "STROBE_TEST_PANIC_AFTER";

impl State {
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
    mut target: Target,
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

    let pid = target.pid();
    let start = stats.start();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(pid.unsigned_abs()) << 32);
    let mut clock = Clock::new(cfg.rate_hz, seed);
    let mut state = State {
        pid,
        kernel: KernelThreads::new(pid),
        names: HashMap::new(),
        named: HashSet::new(),
        names_at: None,
        pthread_tids: HashMap::new(),
        pthread_at: None,
        frames: HashMap::new(),
        ids: Vec::new(),
        raw: RawSample::new(),
        warned: HashSet::new(),
        warnings: Vec::new(),
        free_threaded: target.free_threaded(),
        rounds_started: 0,
        panic_after: State::test_panic_setting(),
        auxv: read_auxv(pid),
    };
    if cfg.gil_only && state.free_threaded {
        state.warn_once(
            "gil",
            "--gil has no effect: this is a free-threaded interpreter, which has no GIL".into(),
        );
    }
    if let Err(e) = state.kernel.rescan() {
        match gone_or_fatal(pid, e) {
            // The target exited between attaching and this first look: the first round sees
            // it too and ends the recording as a target exit, with a complete output.
            SamplerError::Attach(AttachError::Exited { .. }) => {}
            e => return Err(e),
        }
    }

    // Above this rate the mean interval is shorter than a sample takes: sample back to back.
    let flat_out = cfg.rate_hz > FLAT_OUT_HZ;
    // Deadlines skipped since the last sample (they passed while the sampler was busy).
    let mut carried = 0u64;
    // Whether the sampler slept towards the current deadline (else it passed while busy).
    let mut waited = false;
    let mut exit_status: Option<ExitStatus> = None;
    let mut child_checked = Instant::now();
    let mut failures_in_a_row = 0u32;
    let elapsed_ns = || start.elapsed().as_nanos() as u64;
    let reason = loop {
        if stop.load(Ordering::SeqCst) {
            break EndReason::Stopped;
        }
        let now = elapsed_ns();
        let end_ns = cfg.duration.map(|d| d.as_nanos() as u64);
        if end_ns.is_some_and(|end| now >= end) {
            break EndReason::DurationElapsed;
        }
        let deadline = clock.next_deadline_ns();
        if now < deadline {
            let until = end_ns.map_or(deadline, |end| end.min(deadline));
            // Wakes early on `SamplerHandle::stop` (unpark); spurious wake-ups just loop.
            std::thread::park_timeout(Duration::from_nanos(until.saturating_sub(now)));
            waited = true;
            continue;
        }
        if !waited && !flat_out {
            // Passed while we were busy: sampling now would be at a time set by our own cost.
            carried += clock.skip(now);
            continue;
        }
        waited = false;
        let tick = clock.tick(now);
        let intervals = tick.intervals + carried;
        carried = 0;
        let weight_ns = (intervals as f64 * clock.mean_ns()).round() as u64;
        if intervals > 1 {
            stats.late.fetch_add(1, Ordering::Relaxed);
            stats.missed.fetch_add(intervals - 1, Ordering::Relaxed);
        }
        match round(&mut state, &mut target, &cfg, &mut side, now, weight_ns) {
            Ok((threads, recorded)) => {
                failures_in_a_row = 0;
                stats.rounds.fetch_add(1, Ordering::Relaxed);
                stats.samples.fetch_add(recorded, Ordering::Relaxed);
                stats.threads.store(threads, Ordering::Relaxed);
            }
            Err(RoundError::Gone) => break EndReason::TargetExited,
            Err(RoundError::Transient(kind)) => {
                stats.add_error(kind);
                failures_in_a_row += 1;
                if failures_in_a_row >= CLEAR_CACHES_AFTER {
                    // Every round failing may mean the program was replaced (exec): then the
                    // interpreter we read is gone for good and no round will succeed again.
                    if program_replaced(pid, state.auxv.as_deref()) {
                        break EndReason::TargetExeced;
                    }
                    failures_in_a_row = 0;
                    target.walker_mut().clear_caches();
                    state.frames.clear();
                }
            }
            Err(RoundError::Fatal(e)) => return Err(e),
        }
        stats.elapsed_ns.store(elapsed_ns(), Ordering::Relaxed);
        stats.dropped.store(side.dropped(), Ordering::Relaxed);
        if let Some(c) = child.as_mut() {
            if child_checked.elapsed() >= CHILD_CHECK_EVERY {
                child_checked = Instant::now();
                if let Ok(Some(status)) = strobe_remote::try_wait(c) {
                    exit_status = Some(status);
                    break EndReason::TargetExited;
                }
            }
        }
    };
    stats.elapsed_ns.store(elapsed_ns(), Ordering::Relaxed);
    stats.dropped.store(side.dropped(), Ordering::Relaxed);
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
        stats: stats.snapshot(),
        reason,
        exit_status,
        warnings: state.warnings,
        child,
    })
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
    // Scheduler states first: once frozen, every thread reads as traced-stopped.
    st.kernel.read_states();
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

    if stacks
        .iter()
        .any(|t| t.native_id.is_some_and(|n| st.kernel.host_of(n).is_none()))
    {
        // A thread we have not seen: list the tasks again (rate-limited inside).
        if let Err(e) = st.kernel.rescan() {
            return Err(match gone_or_fatal(pid, e) {
                SamplerError::Attach(AttachError::Exited { .. }) => RoundError::Gone,
                _ => RoundError::Transient(ErrorKind::Proc),
            });
        }
        st.kernel.read_states();
    }
    if cfg.names || !cfg.thread_names.is_empty() {
        refresh_names(st, target, stacks);
    }
    if stacks.iter().any(|t| t.native_id.is_none()) {
        refresh_pthread_tids(st, target, stacks);
    }

    let mut recorded = 0;
    for t in stacks {
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
        let name = st.names.get(&(t.interp_addr, t.thread_id)).cloned();
        if !cfg.thread_names.is_empty()
            && !name
                .as_deref()
                .is_some_and(|n| cfg.thread_names.iter().any(|w| w == n))
        {
            continue;
        }
        // An unknown state (no kernel id) counts as running: better shown than hidden.
        let idle = host
            .and_then(|h| st.kernel.state(h))
            .is_some_and(|s| s != 'R');
        if idle && !cfg.include_idle {
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
        let mut flags = SampleFlags::empty();
        if idle {
            flags = flags.with(SampleFlags::IDLE);
        }
        if holds_gil {
            flags = flags.with(SampleFlags::HOLDS_GIL);
        }
        let sample = intern(
            st,
            side,
            target.walker_mut(),
            t,
            frames,
            inner,
            name.as_deref(),
            cfg.by_function,
        )?;
        side.push(Sample {
            flags,
            timestamp_ns: now_ns,
            weight_ns,
            ..sample
        });
        recorded += 1;
    }
    Ok((stacks.len() as u64, recorded))
}

/// Intern one thread's stack (outermost frame first) and identity. Timestamp, weight and
/// flags of the returned sample are left for the caller.
#[allow(clippy::too_many_arguments)]
fn intern(
    st: &mut State,
    side: &mut SamplerSide,
    walker: &mut Walker<ProcessMemory>,
    t: &RawThread,
    frames: &[RawFrame],
    inner_tid: Option<u32>,
    name: Option<&str>,
    by_function: bool,
) -> Result<Sample, RoundError> {
    if st.frames.len() > MAX_FRAME_CACHE {
        st.frames.clear();
    }
    let mut ids = std::mem::take(&mut st.ids);
    ids.clear();
    let mut result = Ok(());
    for f in frames.iter().rev() {
        match frame_id(&mut st.frames, side, walker, *f, by_function) {
            Ok(id) => ids.push(id),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let stack = result.and_then(|()| {
        side.interner()
            .intern_stack(&ids)
            .map_err(|e| RoundError::Fatal(e.into()))
    });
    st.ids = ids;
    let thread = side
        .interner()
        .intern_thread(&ThreadKey {
            os_tid: inner_tid.map_or(t.thread_id, u64::from),
            name,
            interpreter_id: t.interp_id,
        })
        .map_err(|e| RoundError::Fatal(e.into()))?;
    Ok(Sample {
        stack: stack?,
        thread,
        flags: SampleFlags::empty(),
        timestamp_ns: 0,
        weight_ns: 0,
    })
}

/// The interned id of a frame, cached by (code object, line). The walker decodes a code object
/// once and hands out the same name strings until the object is freed and its address reused
/// (it then decodes the new one), so comparing string pointers with the walker's cache entry
/// (a lookup, no reading of the target) tells whether a cached id is still right.
fn frame_id(
    cache: &mut FrameCache,
    side: &mut SamplerSide,
    walker: &mut Walker<ProcessMemory>,
    f: RawFrame,
    by_function: bool,
) -> Result<FrameId, RoundError> {
    // A code object freed since the sample: the round saw a target in mid-change.
    let info = walker
        .frame_info(f)
        .map_err(|_| RoundError::Transient(ErrorKind::Torn))?;
    let line = if by_function { None } else { f.line };
    let key = (f.code_addr, line);
    if let Some((function, filename, id)) = cache.get(&key) {
        if Arc::ptr_eq(function, &info.function) && Arc::ptr_eq(filename, &info.filename) {
            return Ok(*id);
        }
    }
    let id = side
        .interner()
        .intern_frame(&FrameKey {
            function: &info.function,
            filename: &info.filename,
            line,
        })
        .map_err(|e| RoundError::Fatal(e.into()))?;
    cache.insert(key, (info.function, info.filename, id));
    Ok(id)
}

/// Re-read `threading` names when a thread appeared, or every [`NAMES_EVERY`].
fn refresh_names(st: &mut State, target: &Target, stacks: &[RawThread]) {
    let fresh = stacks
        .iter()
        .any(|t| !st.named.contains(&(t.interp_addr, t.thread_id)));
    let due = st.names_at.is_none_or(|at| at.elapsed() >= NAMES_EVERY);
    // A new thread that `threading` does not know (e.g. started by C code) must not cause a
    // lookup every round: new threads are looked up at most every 50 ms.
    let recent = st
        .names_at
        .is_some_and(|at| at.elapsed() < Duration::from_millis(50));
    if !(due || (fresh && !recent)) {
        return;
    }
    st.names_at = Some(Instant::now());
    st.named = stacks
        .iter()
        .map(|t| (t.interp_addr, t.thread_id))
        .collect();
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
    let live = &st.named;
    st.names.retain(|k, _| live.contains(k));
}

/// Find kernel ids of threads whose interpreter does not record them (≤3.10).
fn refresh_pthread_tids(st: &mut State, target: &Target, stacks: &[RawThread]) {
    // A cached id whose task is gone belongs to a dead thread whose ident was reused.
    let kernel = &st.kernel;
    st.pthread_tids
        .retain(|_, host| kernel.state(*host).is_some());
    let unknown: Vec<u64> = stacks
        .iter()
        .filter(|t| t.native_id.is_none() && !st.pthread_tids.contains_key(&t.thread_id))
        .map(|t| t.thread_id)
        .collect();
    if unknown.is_empty()
        || st
            .pthread_at
            .is_some_and(|at| at.elapsed() < PTHREAD_LOOKUP_EVERY)
    {
        return;
    }
    st.pthread_at = Some(Instant::now());
    match target.native_tids(&unknown) {
        Ok(found) => st.pthread_tids.extend(found),
        Err(e) => st.warn_once(
            "pthreads",
            format!("kernel thread ids are unavailable, so idle threads cannot be told apart: {e}"),
        ),
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
    SamplerError::Attach(crate::attach::exited_or(pid, AttachError::Remote(e)))
}
