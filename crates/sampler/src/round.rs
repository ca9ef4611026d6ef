//! One sampling round of one process: walk every thread's stack (frozen under `--blocking`),
//! filter, flag, intern and push one sample per thread kept.
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
//! Other threads' states come from the kernel (a memory read each once a thread is watched,
//! see [`crate::threads`]), only when their idle state decides something:
//! not for threads already filtered out (`--tids`, `--threads`, `--gil`), and not for
//! tasks that are not Python threads. Under `--blocking` every known thread's state is read
//! before the target is frozen (a frozen thread reads as traced-stopped; this round's GIL
//! holder is not known yet), as the freeze itself touches every thread anyway.
//!
//! # Idle under `--blocking`: what our own freezes change
//! Every freeze stops every thread, and a thread's scheduler state just before the next
//! freeze is partly our doing. Two things make it differ from what the program was doing,
//! measured on 2 vCPUs with four threads computing (`benches/native_target.py 4`, 200 Hz,
//! logging each thread's `/proc` state, switch-watch state and registers at the freeze):
//!
//! - *A wait the previous freeze interrupted.* Stopping a thread asleep in a system call (a
//!   futex wait for the GIL or a lock, `clock_nanosleep`, `read`) interrupts the call; when the
//!   freeze lets go the thread is runnable (`R`) until it has had a CPU long enough to restart
//!   the call and sleep again, which on busy CPUs takes longer than a round. The main thread
//!   asleep in `clock_nanosleep` read `R` before half the freezes, every time still in the
//!   call the previous freeze had interrupted: 13% of the CPU-mode samples ended in
//!   `[syscall]`, against 0.4% without `--blocking`. The freeze itself tells: a thread stopped
//!   while asleep in a call carries the interrupted call's code in its return register
//!   (`-ERESTART…` or `-EINTR`, see [`strobe_remote::StopSyscall::interrupted_wait`]) until it
//!   next runs through its way back to user space, which is exactly the case of a thread woken
//!   by the previous freeze that has not run since; one preempted on that way, after the kernel
//!   set the call up again, has `rip` on the `syscall` instruction and the call's number back
//!   in `rax` (seen once in the freeze log above: `clock_nanosleep` with `rax` 230; queued for
//!   a busy CPU, such a thread would read as running round after round). So after the walk, every Python thread
//!   still taken to be running (and not holding the GIL) is asked of the freeze, one register
//!   read each, and one stopped in an interrupted wait is idle for the round.
//! - *`R` in `/proc` is not "running" as the rest of strobe means it.* `/proc` says `R` as soon
//!   as a thread is woken, before it has a CPU; without `--blocking` the state comes from the
//!   thread's switch watch (see [`crate::threads`]), where a woken thread still waits until it
//!   is switched in. GIL waiters woken by the GIL's release and still queued for a CPU were
//!   8% of the `--blocking` samples (stopped at the end of their `futex` wait), and idle in the
//!   default mode. So the states before the freeze are read as without it, from the watch
//!   ([`KernelThreads::read_all`]), with one correction the freeze makes necessary: the freeze
//!   switches every thread out, and a thread that has not had a CPU since the previous freeze
//!   let it go (its watch has not moved since) is in the state that freeze found it in; a
//!   thread computing when it was stopped, still queued for a CPU to carry on, is running.
//!
//! A thread stopped in user space, or at the end of a call that completed after it had a CPU
//! (a `futex` wake it made), keeps `R`. Without `--blocking` nothing of ours wakes a thread a
//! round found asleep (idle threads are read without a stop, see `native`).
//!
//! # Idle under `--native`: what our own stops change
//! Without `--blocking`, `--native` stops the round's running threads (see `native`), and a
//! stop switches a thread out as a wait does: its switch watch's newest record is then a
//! switch out that was not a preemption. Let go, the thread waits for a CPU to carry on, on a
//! busy machine often past the next round, which read it as idle: a worker computing in C
//! without the GIL, which never sleeps, was taken as idle in 14% of the rounds at 1 kHz on the
//! 2-vCPU test VM at load 12 (its scheduler run count had not moved since our previous stop in
//! all but a few of them), and those samples were dropped in CPU mode. So a thread a capture
//! stopped in user space (running, or preempted from a CPU) is running until its watch moves
//! ([`KernelThreads::stopped_running`]), as a thread computing when a freeze stopped it is
//! under `--blocking`. So is one stopped inside a system call that was not asleep (not a wait
//! the stop interrupted), if the round had found it running: on a CPU in the call, or
//! preempted in it. A worker reading `/dev/zero` 16 MiB at a time (the kernel fills the
//! buffer without sleeping), sharing its CPU with a spinning thread, was taken as idle in
//! 8-14 of ~45 samples at 1 kHz without this (`native_idle`'s test). One the round found
//! waiting (woken, not yet given a CPU) is left waiting, as its watch says.
//!
//! [`KernelThreads::stopped_running`]: crate::threads::KernelThreads::stopped_running
//!
//! [`KernelThreads::read_all`]: crate::threads::KernelThreads::read_all
//!
//! When idle samples are dropped (no `--idle`, no raw recording, no `--blocking`), the states
//! are looked up *before* the read, and the stacks of idle threads that do not hold the GIL
//! are not copied at all ([`Walker::sample_wanted_into`]): at ordinary rates most threads of a
//! service sleep, and their stacks were most of the read. Under `--native` as well: a thread
//! our previous capture stopped in user space is running until its watch moves (above), so the
//! look before the read no longer drops a thread that capture has just let go.
//!
//! Between the walker's full checks such a read also leaves out the thread states of most
//! unwanted threads ([`RawThread::state_read`] false: see "Thread states read only where they
//! matter" in the walker's `sample` module): each comes with its ids as last read, no
//! exception and no running task. That is all a round uses of a thread it did not walk: its
//! memo (kept by [`note_threads`], keyed by state address, interpreter and thread id), its
//! kernel id (for the next round's look), its name, and under a live idle switch (`top`) a
//! bare idle sample; exceptions, tasks and frames are taken of walked threads only. One that
//! ended meanwhile stays listed, unwalked, until the walker's next full check (at most 16
//! rounds), or until a look finds no state for its kernel id, which makes it wanted and so
//! read. `--idle`, raw recordings, `--blocking` and wall mode want every thread: every state
//! is read, as before.
//!
//! [`RawThread::state_read`]: strobe_walker::RawThread::state_read
//!
//! # Stop first, read after (`--native`, idle samples dropped)
//! See [`crate::stops`]: the threads a CPU-mode `--native` round samples are stopped before
//! its read, and a thread that has not had a CPU since the previous round's stop is not
//! stopped again.
//!
//! [`Walker::sample_wanted_into`]: strobe_walker::Walker::sample_wanted_into

use std::time::Instant;

use strobe_aggregate::{Sample, SamplerSide};
use strobe_remote::Freeze;
use strobe_walker::RawSample;

use strobe_target::Target;

use crate::admit::{admit, Admit, Kept};
use crate::config::SamplerConfig;
use crate::failure::{freeze_error, proc_error, walk_error, RoundError};
use crate::memo::{note_threads, stack_of, thread_of, MAX_FRAME_CACHE};
use crate::native::{NativeMode, NativeOutcome, NativeRound};
use crate::stats::{ErrorKind, SamplerStats};
use crate::stops::{count_unused_stops, note_stopped_running, stop_first};
use crate::tasks::Frames as TaskFrames;
use crate::topping::{exception_frame, on_top, top_frames, topped_stack};
use crate::view::ProcessView;

/// What a round of one process found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Python threads seen (before filters).
    pub(crate) threads: u64,
    /// Samples recorded (pushed to the aggregator).
    pub(crate) recorded: u64,
}

/// One sampling round of the process of `st`, read through `target`.
pub(crate) fn round(
    st: &mut ProcessView,
    target: &mut Target,
    cfg: &SamplerConfig,
    side: &mut SamplerSide,
    now_ns: u64,
    weight_ns: u64,
    stats: &SamplerStats,
) -> Result<Counts, RoundError> {
    let pid = st.pid;
    if cfg.native && st.native.mode == NativeMode::Off {
        match target.enable_native() {
            Ok(warnings) => {
                st.warnings.extend(warnings);
                st.native.mode = NativeMode::On;
            }
            Err(e) => {
                st.warn_once("native", e);
                st.native.mode = NativeMode::Unavailable;
            }
        }
    }
    st.walks += 1;
    if cfg.blocking {
        // Scheduler states first: once frozen, every thread reads as traced-stopped.
        st.kernel.read_all();
    }
    let mut raw = std::mem::take(&mut st.raw);
    // When the round's read of the target ended, if it was taken inside stops.
    let mut read_at = None;
    st.rounds_started += 1;
    if st.test_fails() {
        st.raw = raw;
        return Err(RoundError::Transient(ErrorKind::Read));
    }
    st.kernel.start_round();
    if st.native.mode == NativeMode::On && !cfg.blocking && cfg.native_read_preempted {
        // Preempted threads are read without a stop where the kernel allows (see `threads`).
        st.kernel.watch_preemptions(cfg.include_idle_now());
        if let Some(w) = st.kernel.take_preempt_refusal() {
            st.warn_once("preempt", w);
        }
    }
    let walked = if cfg.blocking {
        let freeze = match Freeze::all_threads(pid) {
            Ok(f) => f,
            Err(e) => {
                st.raw = raw;
                return Err(freeze_error(pid, e));
            }
        };
        // A panic here unwinds through `freeze`, whose drop releases the target.
        st.test_panic();
        let walked = target.walker_mut().sample_into(&mut raw);
        if walked.is_ok() {
            note_freeze(st, &freeze, &raw);
        }
        if walked.is_ok() && st.native.mode == NativeMode::On {
            // Every thread's native stack from the same freeze: one instant for the process.
            let hosts: Vec<Option<u32>> = raw.threads.iter().map(|t| st.host_tid(t)).collect();
            let captured = st.native.capture_frozen(
                target,
                side,
                &mut st.frames,
                &freeze,
                &raw,
                &hosts,
                cfg.by_function,
                st.root_frame,
            );
            if let Err(e) = captured {
                // `freeze` is released on the way out.
                st.raw = raw;
                return Err(e);
            }
        }
        walked
    } else if skips_idle_frames(cfg) && st.native.mode == NativeMode::On && !cfg.gil_only {
        // (Under `--gil` the one thread kept, the GIL holder, is known only from the read:
        // stopping every running thread first would stop threads only to drop them, so that
        // round reads first and captures the holder after, below.)
        st.test_panic();
        let (walked, at) = stop_first(st, target, cfg, &mut raw);
        read_at = Some(at);
        walked
    } else if skips_idle_frames(cfg) {
        st.test_panic();
        // Idle threads are dropped: not copying their stacks makes the read smaller. Their
        // state comes from the kernel's switch records (see `threads`), so asking costs a
        // memory read each; a thread not seen before is always read.
        let ProcessView { memos, kernel, .. } = &mut *st;
        kernel.touch_watches();
        let mut wanted = |tstate: u64| match memos.get(&tstate).and_then(|m| m.host) {
            Some(host) => kernel.state_in_round(host).is_none_or(|s| s == 'R'),
            None => true,
        };
        target
            .walker_mut()
            .sample_wanted_into(&mut raw, &mut wanted)
    } else {
        st.test_panic();
        target.walker_mut().sample_into(&mut raw)
    };
    // The end of the round's read of the target: under `--native` its stops keep their
    // distance from it (see "Stops after our own read" in `strobe_target`'s `native/sample.rs`).
    let stopped_first = read_at.is_some();
    let read_at = read_at.unwrap_or_else(Instant::now);
    let result = walked.map_err(|e| walk_error(pid, e)).and_then(|()| {
        let when = When {
            now_ns,
            weight_ns,
            read_at,
            stopped_first,
        };
        record_threads(st, target, cfg, side, &raw, when, stats)
    });
    st.raw = raw;
    if st.native.mode == NativeMode::On {
        st.warnings.extend(target.take_native_warnings());
    }
    result
}

/// Under `--blocking`, while the process is frozen: remember where each Python thread's switch
/// watch is, and ask the freeze, of every one taken as running before it (or not known then)
/// that does not hold the GIL, whether it was stopped asleep in a system call; if so its state
/// for this round is that sleep (see "Idle under `--blocking`" in the module documentation).
/// One register read per such thread; threads already known idle, and the GIL holder, cost
/// nothing.
fn note_freeze(st: &mut ProcessView, freeze: &Freeze, raw: &RawSample) {
    for t in &raw.threads {
        let Some(host) = st.host_tid(t) else {
            continue;
        };
        st.kernel.note_frozen(host);
        if t.holds_gil && !st.free_threaded {
            continue;
        }
        if st.kernel.state_before(host).is_some_and(|s| s != 'R') {
            continue;
        }
        let Ok(tid) = i32::try_from(host) else {
            continue;
        };
        // A thread that cannot be read (it exited meanwhile) keeps the state `/proc` gave.
        if let Ok(Some(call)) = freeze.stop_syscall(tid) {
            if call.interrupted_wait() {
                st.kernel.asleep_at_freeze(host);
            }
        }
    }
}

/// Whether this round reads only the frames of threads not known to be idle (plus the GIL
/// holder's): when idle samples are dropped anyway, and no freeze needs every thread's frames.
/// Under `--native` too: the native capture reads the kept threads' frames again itself.
fn skips_idle_frames(cfg: &SamplerConfig) -> bool {
    !cfg.include_idle_now() && !cfg.blocking
}

/// When a round's samples were taken, and the wall time each stands for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct When {
    pub(crate) now_ns: u64,
    pub(crate) weight_ns: u64,
    /// When the round's walk had read the target.
    pub(crate) read_at: Instant,
    /// The walk was read inside the stops of a native capture ([`stop_first`]).
    pub(crate) stopped_first: bool,
}

/// Filter, flag, intern and push the threads of one sample.
fn record_threads(
    st: &mut ProcessView,
    target: &mut Target,
    cfg: &SamplerConfig,
    side: &mut SamplerSide,
    raw: &RawSample,
    when: When,
    stats: &SamplerStats,
) -> Result<Counts, RoundError> {
    let When {
        now_ns,
        weight_ns,
        read_at,
        stopped_first,
    } = when;
    let pid = st.pid;
    let stacks = &raw.threads;
    let walk = st.walks;

    if note_threads(&mut st.memos, stacks, walk) {
        st.names.thread_appeared();
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
        st.kernel.rescan().map_err(|e| proc_error(pid, e))?;
    }
    if cfg.names || !cfg.thread_names.is_empty() {
        if let Some(e) = st.names.refresh(target, stacks, now_ns) {
            st.warn_once("names", format!("thread names are unavailable: {e}"));
        }
    }
    if no_tid {
        if let Some(e) = st.pthreads.refresh(&mut st.kernel, target, stacks, now_ns) {
            st.warn_once(
                "pthreads",
                format!(
                    "kernel thread ids are unavailable, so idle threads cannot be told apart: {e}"
                ),
            );
        }
    }

    let mut recorded = 0;
    st.running.clear();
    let include_idle = cfg.include_idle_now();
    // Task-aware stacks: the target's asyncio description, once it has one.
    // Before 3.14, from a cached task graph (`tasks_legacy.rs`).
    let legacy = cfg.async_now() && st.legacy_tasks.serves(target);
    if legacy {
        st.tasks.start_round();
        if let Some((key, w)) = st.legacy_tasks.start_round(target, stacks, now_ns) {
            st.warn_once(key, w);
        }
    }
    let tasks = if cfg.async_now() && !legacy {
        st.tasks.start_round();
        let (offsets, warning) = st.tasks.offsets(target, now_ns);
        if let Some(w) = warning {
            st.warn_once("tasks", w);
        }
        offsets
    } else {
        st.tasks.stop_watching(target);
        None
    };
    // Which threads are sampled, and how, for all of them first: the native capture takes the
    // round's kept threads together.
    st.kept.clear();
    for index in 0..stacks.len() {
        match admit(st, cfg, side, raw, index, when)? {
            Admit::Skip => {}
            Admit::Bare => recorded += 1,
            Admit::Keep(k) => st.kept.push(k),
        }
    }
    if stopped_first {
        count_unused_stops(st, stats);
    }
    if st.native.mode == NativeMode::On && !cfg.blocking && !st.kept.is_empty() {
        if st.frames.len() > MAX_FRAME_CACHE {
            st.frames.clear();
        }
        // The capture reads the kept threads' Python stacks again: a walk (see the `native`
        // module).
        st.walks += 1;
        if !stopped_first {
            // Held stacks are used where the records say a thread has not run: up to now.
            st.kernel.drain();
        }
        let kernel = &st.kernel;
        let watches = |tid: i32| {
            u32::try_from(tid)
                .ok()
                .and_then(|h| kernel.preempt_watches(h))
        };
        let round = NativeRound {
            round: st.rounds_started,
            read: raw,
            kernel: &st.kernel,
            kept: &st.kept,
            by_function: cfg.by_function,
            root: st.root_frame,
            read_at,
            first: stopped_first.then_some(raw),
            watches: &watches,
        };
        st.native
            .capture_round(target, side, &mut st.frames, round)?;
        stats.add_native_held_refused(st.native.holds.take_refused());
        note_stopped_running(st, target, false);
    }
    for k in 0..st.kept.len() {
        let Kept {
            index,
            host,
            inner,
            flags,
            ..
        } = st.kept[k];
        let t = &stacks[index];
        let frames = raw.frames_of(t);
        let Some(memo) = st.memos.get_mut(&t.tstate_addr) else {
            continue;
        };
        if st.frames.len() > MAX_FRAME_CACHE {
            st.frames.clear();
        }
        let merged = if st.native.mode == NativeMode::On {
            // Taken during the round's freeze (`--blocking`), or by the round's capture above.
            match st.native.take(t.tstate_addr) {
                NativeOutcome::Merged(stack, taken) => {
                    stats.add_native_merged(taken);
                    Some(stack)
                }
                NativeOutcome::Failed(why) => {
                    stats.add_native_failure(&why);
                    None
                }
            }
        } else {
            None
        };
        // What goes on top of the Python frames: `<raise T>` for a thread raising or handling
        // an exception, `<GC>` over the line that triggered a collection.
        let exception = match t.exception {
            Some(e) => exception_frame(
                &mut st.exception_frames,
                target.walker_mut(),
                side,
                e.type_addr,
            )?,
            None => None,
        };
        let gc = t.gc && cfg.gc_frames;
        let top = top_frames(side, exception, gc)?;
        let tasked = match (&merged, &tasks) {
            (None, Some(offsets)) => st.tasks.running_stack(
                target,
                side,
                offsets,
                t,
                frames,
                &top,
                &mut TaskFrames {
                    cache: &mut st.frames,
                    by_function: cfg.by_function,
                    root: st.root_frame,
                },
            )?,
            (None, None) if legacy => st.legacy_tasks.running_stack(
                target,
                side,
                t,
                walk,
                frames,
                &top,
                &mut TaskFrames {
                    cache: &mut st.frames,
                    by_function: cfg.by_function,
                    root: st.root_frame,
                },
                now_ns,
            )?,
            _ => None,
        };
        let stack = match (merged, tasked) {
            (_, Some(stack)) => stack,
            (Some(stack), None) => on_top(&mut st.fresh, side, stack, &top)?,
            (None, None) if !top.is_empty() => {
                stack_of(
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
                topped_stack(memo, &mut st.fresh, side, &top)?
            }
            (None, None) => stack_of(
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
            )?,
        };
        let thread = thread_of(
            memo,
            side,
            host.or(inner).map_or(t.thread_id, u64::from),
            t.interp_id,
        )?;
        if tasks.is_some() || legacy {
            st.tasks.threads.push((t.tstate_addr, thread));
        }
        side.push(Sample {
            stack,
            thread,
            flags,
            timestamp_ns: now_ns,
            weight_ns,
        });
        recorded += 1;
    }
    if let (Some(offsets), true) = (&tasks, include_idle) {
        recorded += st.tasks.suspended_samples(
            target,
            side,
            offsets,
            &mut TaskFrames {
                cache: &mut st.frames,
                by_function: cfg.by_function,
                root: st.root_frame,
            },
            now_ns,
            weight_ns,
        )?;
    }
    if legacy && include_idle {
        recorded += st.legacy_tasks.suspended_samples(
            target,
            side,
            &st.tasks.threads,
            &mut TaskFrames {
                cache: &mut st.frames,
                by_function: cfg.by_function,
                root: st.root_frame,
            },
            now_ns,
            weight_ns,
        )?;
    }
    Ok(Counts {
        threads: stacks.len() as u64,
        recorded,
    })
}
