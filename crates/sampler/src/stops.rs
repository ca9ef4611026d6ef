//! The stops of a CPU-mode `--native` round, before its read.
//!
//! # Stop first, read after (`--native`, idle samples dropped)
//! The look before the read names the threads a CPU-mode `--native` round samples: the
//! previous round's Python threads (their memos' kernel ids) the kernel says run, within
//! `--tids` and `--threads`. [`stop_first`] stops them together and takes the round's read
//! inside the stops: the thread list, the GIL, exceptions and GC flags, and the frames of the
//! stopped threads, of threads not seen before and of the GIL holder. A thread stopped there
//! counts as running for the round ([`ThreadMemo::stopped_in`]): it was when the stop came,
//! whatever our stop did to its state since. Its native stack is merged with its frames in the
//! round's read (see `native`); a kept thread that was not stopped (new, woken since the look,
//! a GIL holder the kernel took as asleep) is captured after the read, as in wall mode. So no
//! read of ours comes just before the stops (see "Stops after our own read" in
//! `strobe_target`'s `native/sample.rs`), and the kept threads' frames are read once.
//!
//! A thread state whose frames the latest read found empty ([`ThreadMemo::frameless`]: C
//! code holding a thread state between calls into Python) gives no sample, so it is read
//! inside the stops but not stopped; if it has frames by then, it is captured after the read
//! like a thread woken since. Stops that end in no sample anyway (a thread back in C since
//! the previous read, one that ended) are counted in the stats (`native_stops_unused`).
//!
//! # Not stopped again: a thread that has not run since our stop
//! A thread that has not had a CPU since a stop of ours let it go has not executed an
//! instruction since: its registers, native stack and Python frames are what that stop took.
//! On a busy machine that is most of them: with 50 threads computing on 2 CPUs, a thread gets
//! a CPU for a few milliseconds about every 75 ms, and a stop of a thread waiting for a CPU
//! makes the scheduler run it only to stop it (74% of the stops found the thread so,
//! docs/PERFORMANCE.md). So while the stops hold a thread, the round notes where its switch
//! records are ([`KernelThreads::mark`]); its merged stack is kept with that mark (see
//! `native`'s "Held stacks"), and the next round's look, which finds it running (its records
//! have not moved: see "Idle under `--native`" in `round`), does not stop it if they still
//! have not ([`KernelThreads::moved`]). The held stack is its sample, as of the round's start
//! (the records' drain), when it had not run since that stop. Its frames are read as any
//! running thread's, and if its records still have not moved by the end of that read (they
//! are drained again then), those frames must be the ones it was held with; if they differ
//! all the same (records the kernel lost, a change we cannot explain), the thread is captured
//! after the read like a thread woken since, and counted (`native_held_refused`). One that ran
//! during the read (a stop of the thread that had its CPU often hands the CPU to it) is not
//! compared, and keeps the held stack: capturing it after the read instead cost a second stop
//! of the round and more CPU per round than the held stacks saved (two workers on one CPU at
//! 1 kHz: 149–154 µs a round against 121–136 without held stacks).
//!
//! [`ThreadMemo::frameless`]: crate::memo::ThreadMemo::frameless
//! [`ThreadMemo::stopped_in`]: crate::memo::ThreadMemo::stopped_in
//! [`KernelThreads::mark`]: crate::threads::KernelThreads::mark
//! [`KernelThreads::moved`]: crate::threads::KernelThreads::moved

use std::time::Instant;

use strobe_target::Target;
use strobe_walker::{RawSample, WalkError};

use crate::config::SamplerConfig;
use crate::native::NativeView;
use crate::stats::SamplerStats;
use crate::view::ProcessView;

/// The read of a CPU-mode `--native` round, inside the stops of the threads it will sample
/// (see the module documentation): the Python threads of the previous round the kernel says
/// run (within `--tids` and `--threads`), stopped together, except those that have not run
/// since the previous round's stop; the read copies the frames of all of those, of threads
/// not seen before, and of the GIL holder. When the read ended.
pub(crate) fn stop_first(
    st: &mut ProcessView,
    target: &mut Target,
    cfg: &SamplerConfig,
    raw: &mut RawSample,
) -> (Result<(), WalkError>, Instant) {
    let round = st.rounds_started;
    let ProcessView {
        memos,
        kernel,
        native,
        ..
    } = &mut *st;
    native.stop.clear();
    for (&tstate, memo) in memos.iter_mut() {
        let Some(host) = memo.host else {
            continue;
        };
        if !cfg.wants_tid(Some(host), || Some(kernel.inner_of(host)))
            || !cfg.wants_name(memo.name.as_deref())
        {
            continue;
        }
        // The round's one look at the thread: `admit` asks again and gets the same answer.
        if kernel.state_in_round(host).is_none_or(|s| s == 'R') {
            memo.read_in = round;
            // A thread state without frames at the last read is read, not stopped: if it
            // has frames now, the round captures it after the read, as a thread woken since.
            if memo.frameless {
                continue;
            }
            let Ok(tid) = i32::try_from(host) else {
                continue;
            };
            let moved = |at| kernel.moved(host, at);
            if native.holds.unmoved_before_stops(round, tstate, tid, moved) {
                continue;
            }
            memo.stopped_in = round;
            native.stop.push((tid, tstate));
        }
    }
    let mut walked = Ok(());
    let mut wanted = |tstate: u64| {
        memos
            .get(&tstate)
            .is_none_or(|m| m.host.is_none() || m.read_in == round)
    };
    let kernel = &*kernel;
    let watches = |tid: i32| {
        u32::try_from(tid)
            .ok()
            .and_then(|h| kernel.preempt_watches(h))
    };
    let NativeView { stop, holds, .. } = native;
    let marks = &mut holds.in_stops;
    marks.clear();
    let read_at = target.native_stop_first(stop, Some(&watches), &mut |walker| {
        walked = walker.sample_wanted_into(raw, &mut wanted);
        // While the stops still hold the threads: where their switch records are.
        let marked = |&(tid, _): &(i32, u64)| Some((tid, kernel.mark(u32::try_from(tid).ok()?)?));
        marks.extend(stop.iter().filter_map(marked));
    });
    // A thread not stopped because it had not run since its held stack was taken: its frames
    // in the read are checked against the held ones only if it did not run before the read
    // ended either.
    st.kernel.drain();
    let kernel = &st.kernel;
    let moved = |tid: i32, at| u32::try_from(tid).map_or(true, |h| kernel.moved(h, at));
    st.native.holds.uncheck_moved(round, moved);
    note_stopped_running(st, target, true);
    (walked, read_at)
}

/// The threads the latest native capture stopped while they were not asleep are running until
/// their switch records move (see "Idle under `--native`" in `round`'s documentation). With
/// `first`, that capture was [`stop_first`]'s: it noted where their records were while it held
/// them, and only the threads noted here are kept in `Holds::in_stops`, for their stacks
/// to be held.
pub(crate) fn note_stopped_running(st: &mut ProcessView, target: &Target, first: bool) {
    let marks = &mut st.native.holds.in_stops;
    if first {
        marks.sort_unstable_by_key(|&(tid, _)| tid);
    }
    let awake = target.native_stopped_awake();
    for stopped in awake {
        let Ok(host) = u32::try_from(stopped.tid) else {
            continue;
        };
        // Stopped in user space it was running (or preempted). Stopped in a system call it
        // was not asleep in: running as the round found it, if it found it running (a thread
        // woken and not yet on a CPU was waiting, and still is).
        if !stopped.in_call || st.kernel.found_in_round(host) == Some('R') {
            let found = || {
                marks
                    .binary_search_by_key(&stopped.tid, |&(tid, _)| tid)
                    .ok()
            };
            let at = first.then(found).flatten().map(|i| marks[i].1);
            st.kernel.stopped_running(host, at);
        }
    }
    if first {
        marks.retain(|(tid, _)| awake.iter().any(|a| a.tid == *tid));
    }
}

/// Count the threads [`stop_first`] stopped that the round does not keep: stops that end in
/// no sample (a thread state without frames, a thread that ended meanwhile).
pub(crate) fn count_unused_stops(st: &ProcessView, stats: &SamplerStats) {
    let kept = st.kept.iter().filter(|k| k.stopped_first).count();
    let unused = st.native.stop.len().saturating_sub(kept);
    stats.add_native_stops_unused(unused as u64);
}
