//! The sampler's native captures: the threads a round keeps, captured together.
//!
//! Threads the round found idle and that provably sleep through the Python read are read
//! without a stop; every other one is stopped, all of them at once
//! ([`strobe_remote::capture_together`]), and the Python stacks of these threads only are read
//! once while they are stopped ([`Walker::sample_wanted_into`]). Stopping them one after the
//! other made the later ones wait on what a stopped one held (the GIL, its mutex), and the
//! samples then showed those waits (docs/PERFORMANCE.md, "Native stacks").
//!
//! A capture that does not merge is taken again where another capture may do better, as for a
//! single thread: read asleep without the frame pointer register → stopped; the copy cut at
//! the thread's earlier reach and the unwind incomplete → whole. The retries of a round are
//! captured together too, once.
//!
//! # Stop first, read after
//! In CPU mode the sampler knows which threads to stop before it reads anything: the previous
//! round's Python threads the kernel says run. [`NativeState::stop_first`] stops those together
//! and runs the round's own read (every thread's state, the GIL, the frames of the stopped and
//! of new threads) inside the stops; the round then decides what it keeps from that read, and
//! [`NativeState::sample_round`] merges each kept thread stopped there with its frames in the
//! same read, capturing only the kept threads that were not stopped (new, woken, a GIL holder
//! the kernel took as asleep) as the wall-mode rounds capture theirs. So the round's read no
//! longer comes just before its stops, and the kept threads' frames are read once instead of
//! twice.
//!
//! # Stops after our own read
//! A round reads the target (its walk: the interpreter, the GIL's state, the thread states and
//! stacks) just before it stops the running threads, and a stop that comes within a few
//! microseconds of that read lands where the read has just slowed the target down. On the
//! 2-vCPU test VM, a worker taking the GIL back after `zlib.crc32` (`take_gil`, its mutex's
//! lock and unlock) was found there in 2.1% of the stops sent less than 5 µs after the walk,
//! against 0.3–0.5% of those sent later, of `perf record -e cpu-clock` of the worker, and of
//! `--blocking` (which reads only inside its freeze); a 20 µs wait before the stops took the
//! share to 0.4–0.6%, and the same wait followed by a second read put it back at 1.8–2.3%
//! (docs/PERFORMANCE.md, "Issue 12: stops that land where our own read slowed the target").
//! Our reading the cache lines the worker is about to write with locked instructions (the
//! GIL's mutexes and state) makes those instructions wait for the lines to come back, and an
//! interrupt that arrives then is taken there (an inference from where the stops land: the
//! VM gives no cache events to count). So the stops of a capture come at least
//! [`READ_TO_STOP`] after the read before them, spinning the rest if needed: 10 µs was enough
//! in the release build, 20 µs leaves a margin (the debug build's test failed once in four
//! runs at 10 µs). The read before them is the latest read of a capture
//! ([`NativeState::stop_first`]'s of the previous round, or the read inside the round's first
//! stops for its later captures), or, in wall mode, the round's walk; stopping first, only
//! rounds run back to back come that close. After the Python read of a capture's preempted
//! threads, which comes right before its stops in every round that finds one preempted, the
//! distance is [`PREEMPTED_READ_TO_STOP`], 5 µs, and that read leaves the GIL's memory alone
//! ([`Walker::sample_wanted_without_gil_into`]: the thread states and frames of threads not
//! running are memory no running thread writes). Two workers sharing one CPU at 1 kHz (one
//! read preempted, the other stopped) were found in `take_gil` or `drop_gil` in 2.2% of their
//! samples with no wait (mean of 6 runs), 1.4% with 10 µs (16), 1.8% with no wait and the GIL
//! left alone (3), and 1.35% with 5 µs and the GIL left alone (10) (docs/PERFORMANCE.md,
//! "Issue 12: the preempted threads' read leaves the GIL alone").

use std::time::{Duration, Instant};

use strobe_memory::RemoteMemory;
use strobe_native::{EvalShape, KernelBoundary, ModuleMap, UnwindEnd};
use strobe_walker::walk::Walker;
use strobe_walker::RawSample;

use super::capture::{Miss, Read, Slot, WatchesOf};
use super::{python_failed, NativeStack, NativeState, NativeThread, StoppedAwake};

/// The least time between a read of the target and the stops that follow it (see "Stops
/// after our own read" in the module documentation): the latest read of a capture, or the
/// round's walk where it came before the stops.
pub(crate) const READ_TO_STOP: Duration = Duration::from_micros(20);

/// The least time between the Python read of a capture's preempted threads, which reads
/// nothing of the GIL, and its stops (see "Stops after our own read" in the module
/// documentation).
pub(crate) const PREEMPTED_READ_TO_STOP: Duration = Duration::from_micros(5);

/// One thread of a round's native capture ([`crate::Target::native_round`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeRequest {
    /// Its kernel id as seen from strobe.
    pub tid: i32,
    /// Its `pthread_t`, as the interpreter knows it.
    pub ident: u64,
    /// The id of its interpreter.
    pub interp: i64,
    /// The address of its thread state: the Python read copies only the requested threads'.
    pub tstate: u64,
    /// The round found it idle: it may be read without a stop.
    pub may_sleep: bool,
}

/// What a round's capture gave one thread: its merged stack and the index of its Python
/// frames in the read's `threads`, or the reason it has none (for the summary).
pub type NativeResult<'a> = Result<(NativeStack<'a>, usize), String>;

/// Called once per requested thread (by index), with the Python read its result indexes and
/// the walker (to name the Python frames).
pub type EachNative<'e, M, E> =
    dyn FnMut(usize, NativeResult<'_>, &RawSample, &mut Walker<M>) -> Result<(), E> + 'e;

/// Why a thread's capture did not merge, and whether another capture may do better.
enum Retry {
    /// Read asleep (no frame pointer register), or it woke during the read: stopped, it may.
    Stopped(String),
    /// The stack copy was cut at the reach of the thread's earlier unwind and the unwind did
    /// not complete: a capture that copies all it can may merge.
    Whole(String),
    /// The reason, for the summary.
    Final(String),
}

impl Retry {
    fn into_reason(self) -> String {
        match self {
            Retry::Stopped(why) | Retry::Whole(why) | Retry::Final(why) => why,
        }
    }
}

/// The process a round samples.
#[derive(Clone, Copy)]
pub(crate) struct RoundOf {
    pub(crate) pid: i32,
    pub(crate) shape: EvalShape,
}

impl NativeState {
    /// Stop the threads `tids` of process `pid` together and run `read` (the round's read of
    /// the target) while they are stopped: the round's first capture, taken before the round
    /// knows which threads it keeps (see "Stop first, read after" in the module
    /// documentation). The stops come [`READ_TO_STOP`] after the latest read of a capture
    /// (the previous round's), spinning the rest if needed. The captures wait in the state
    /// for the round's [`NativeState::sample_round`]. When `read` ended. `threads`: (kernel
    /// id, thread state address). A thread that `watches` has watches for and that is
    /// preempted is read first, before the stops, from its preemption record and a Python
    /// read of the preempted threads alone, if it stays preempted through that read (see
    /// [`super::capture::Capturer::capture_many`]); if not, it is stopped with the others.
    pub(crate) fn stop_first<M: RemoteMemory>(
        &mut self,
        pid: i32,
        threads: &[(i32, u64)],
        watches: Option<&WatchesOf<'_>>,
        walker: &mut Walker<M>,
        read: &mut dyn FnMut(&mut Walker<M>),
    ) -> Instant {
        self.stopped_awake.clear();
        // The round's slots: the later captures of the round take the ones after these.
        let mut first = std::mem::take(&mut self.slots);
        if first.len() < threads.len() {
            first.resize_with(threads.len(), Slot::default);
        }
        let used = &mut first[..threads.len()];
        for (slot, &(tid, tstate)) in used.iter_mut().zip(threads) {
            slot.set(tid, tstate, false);
        }
        let not_before = self.last_read.map(|at| at + READ_TO_STOP);
        let preempted_read = &mut self.preempted_read;
        let mut reads = |r: Read<'_>| match r {
            Read::Preempted(want) => walker
                .sample_wanted_without_gil_into(preempted_read, want)
                .is_ok(),
            Read::Stopped => {
                read(walker);
                true
            }
        };
        (self.capturer).capture_many(pid, used, not_before, watches, &mut reads);
        let read_at = Instant::now();
        self.last_read = Some(read_at);
        self.note_stopped_awake(used);
        // By thread id, for `sample_round` to find each kept thread's.
        used.sort_unstable_by_key(|slot| slot.tid);
        self.slots = first;
        self.first_count = Some(threads.len());
        read_at
    }

    /// Capture the threads `wanted` of the process `of` together, read their Python stacks at
    /// the same instant into `raw` (only theirs), and merge each thread's frames; `each` gets
    /// every thread's result in turn (a retried thread after the others, from the retries'
    /// read). An error of `each` ends the round. `read_at`: when the round last read the
    /// target (the stops keep [`READ_TO_STOP`] from it). A thread `watches` has watches for
    /// and that is preempted is read first, from its preemption record, as in
    /// [`NativeState::stop_first`].
    ///
    /// After [`NativeState::stop_first`], whose read is `first`: a thread it stopped is merged
    /// with its frames there, without a capture of its own; only the others are captured
    /// (a thread the first read found running that was not stopped: new, or woken).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sample_round<M: RemoteMemory, E>(
        &mut self,
        of: RoundOf,
        wanted: &[NativeRequest],
        first: Option<&RawSample>,
        (read_at, watches): (Instant, Option<&WatchesOf<'_>>),
        walker: &mut Walker<M>,
        raw: &mut RawSample,
        each: &mut EachNative<'_, M, E>,
    ) -> Result<(), E> {
        self.stopped_awake.clear();
        let first_count = self.first_count.take();
        let mut members = Vec::new();
        let mut retries = Vec::new();
        let mut round = Batch {
            of,
            wanted,
            members: &[],
            first_slot: 0,
            read_at: self.last_read.map_or(read_at, |last| last.max(read_at)),
            watches,
        };
        match (first, first_count) {
            (Some(first), Some(n)) => {
                // The later capture takes the slots after these: one stack buffer per thread
                // of the round, not one per phase.
                round.first_slot = n;
                let slots = std::mem::take(&mut self.slots);
                let stopped = slots.get(..n).unwrap_or(&[]);
                let mut result = Ok(());
                for (i, r) in wanted.iter().enumerate() {
                    let Ok(at) = stopped.binary_search_by_key(&r.tid, |slot| slot.tid) else {
                        members.push((i, r.may_sleep));
                        continue;
                    };
                    let slot = &stopped[at];
                    let settled = self.settle(
                        round,
                        (i, false),
                        slot,
                        &Ok(()),
                        first,
                        walker,
                        each,
                        Some(&mut retries),
                    );
                    if let Err(e) = settled {
                        result = Err(e);
                        break;
                    }
                }
                self.slots = slots;
                result?;
            }
            _ => members.extend(wanted.iter().enumerate().map(|(i, r)| (i, r.may_sleep))),
        }
        if !members.is_empty() {
            let rest = Batch {
                members: &members,
                ..round
            };
            self.batch(rest, walker, raw, each, Some(&mut retries))?;
        }
        if retries.is_empty() {
            return Ok(());
        }
        // The captures above are merged: their slots are free again.
        let again = Batch {
            members: &retries,
            first_slot: 0,
            read_at: self.last_read.unwrap_or(round.read_at),
            // Stopped, whatever they were: a thread read preempted whose record's stack was
            // too short for its unwind is retried with a stop.
            watches: None,
            ..round
        };
        self.batch(again, walker, raw, each, None)
    }

    /// One capture of `b.members` together, and the merge of each; a thread another capture
    /// may do better for goes to `retries` (with whether it may be read asleep then) if there
    /// are to be retries, else its reason to `each`.
    fn batch<M: RemoteMemory, E>(
        &mut self,
        b: Batch<'_, '_>,
        walker: &mut Walker<M>,
        raw: &mut RawSample,
        each: &mut EachNative<'_, M, E>,
        mut retries: Option<&mut Vec<(usize, bool)>>,
    ) -> Result<(), E> {
        let mut slots = std::mem::take(&mut self.slots);
        let end = b.first_slot + b.members.len();
        if slots.len() < end {
            slots.resize_with(end, Slot::default);
        }
        let slots_used = &mut slots[b.first_slot..end];
        for (slot, &(i, may_sleep)) in slots_used.iter_mut().zip(b.members) {
            slot.set(b.wanted[i].tid, b.wanted[i].tstate, may_sleep);
        }
        let mut walked = None;
        let mut want = |tstate: u64| (b.members.iter()).any(|&(i, _)| b.wanted[i].tstate == tstate);
        let not_before = b.read_at + READ_TO_STOP;
        let preempted_read = &mut self.preempted_read;
        let mut reads = |r: Read<'_>| match r {
            Read::Preempted(want) => walker
                .sample_wanted_without_gil_into(preempted_read, want)
                .is_ok(),
            Read::Stopped => {
                walked = Some(walker.sample_wanted_into(raw, &mut want));
                true
            }
        };
        (self.capturer).capture_many(
            b.of.pid,
            slots_used,
            Some(not_before),
            b.watches,
            &mut reads,
        );
        self.last_read = Some(Instant::now());
        self.note_stopped_awake(slots_used);
        let read = match walked {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(python_failed(&e)),
            None => Err("the Python frames were not read during the capture".to_string()),
        };
        let mut result = Ok(());
        for (slot, &member) in slots_used.iter().zip(b.members) {
            let retries = retries.as_deref_mut();
            if let Err(e) = self.settle(b, member, slot, &read, raw, walker, each, retries) {
                result = Err(e);
                break;
            }
        }
        self.slots = slots;
        result
    }
    /// Merge `slot`'s capture of thread `b.wanted[i]` with its Python frames in `raw` (read as
    /// `read` says) and hand the result to `each`; or, where another capture may do better and
    /// there are to be `retries`, put it there (with whether it may be read asleep then).
    #[allow(clippy::too_many_arguments)]
    fn settle<M: RemoteMemory, E>(
        &mut self,
        b: Batch<'_, '_>,
        (i, may_sleep): (usize, bool),
        slot: &Slot,
        read: &Result<(), String>,
        raw: &RawSample,
        walker: &mut Walker<M>,
        each: &mut EachNative<'_, M, E>,
        retries: Option<&mut Vec<(usize, bool)>>,
    ) -> Result<(), E> {
        let r = &b.wanted[i];
        let which = NativeThread {
            pid: b.of.pid,
            tid: r.tid,
            ident: r.ident,
            interp: r.interp,
            shape: b.of.shape,
        };
        let preempted = matches!(&slot.got, Some(Ok(c)) if c.preempted);
        let asleep = matches!(&slot.got, Some(Ok(c)) if c.asleep);
        let stopped_at_ns = match &slot.got {
            Some(Ok(c)) => c.stopped_at_ns,
            _ => None,
        };
        // A thread read preempted is merged with its frames in the read of the preempted
        // threads, taken at its preemption's instant (which succeeded, or it would have been
        // stopped), not in the capture's own. Taken out of the state while it is in use, and
        // put back before the return.
        let preempted_read = std::mem::take(&mut self.preempted_read);
        let (raw, read) = if preempted {
            (&preempted_read, &Ok(()))
        } else {
            (raw, read)
        };
        let merged = self.merge_slot(which, slot, read, walker.memory(), raw);
        let result = match (merged, retries) {
            (Err(Retry::Stopped(_)), Some(retries)) => {
                retries.push((i, false));
                Ok(())
            }
            (Err(Retry::Whole(_)), Some(retries)) => {
                retries.push((i, may_sleep));
                Ok(())
            }
            (merged, _) => {
                let stack = merged.map_err(Retry::into_reason).map(|index| {
                    let stack = NativeStack {
                        merged: &self.merged,
                        native: &self.frames,
                        preempted,
                        asleep,
                        stopped_at_ns,
                    };
                    (stack, index)
                });
                each(i, stack, raw, walker)
            }
        };
        self.preempted_read = preempted_read;
        result
    }

    /// Note the threads of `slots` a capture stopped while they were not asleep (see
    /// [`crate::Target::native_stopped_awake`]).
    fn note_stopped_awake(&mut self, slots: &[Slot]) {
        let awake = slots.iter().filter_map(|slot| match &slot.got {
            Some(Ok(c)) if !c.asleep && !c.preempted && c.same_instant && !c.interrupted_wait => {
                let in_call = c.kernel.is_some();
                Some(StoppedAwake {
                    tid: slot.tid,
                    in_call,
                })
            }
            _ => None,
        });
        self.stopped_awake.extend(awake);
    }

    /// Merge the capture of `slot` with the Python frames of `which` in `raw` (read as `read`
    /// says); the index of those frames in `raw.threads`.
    fn merge_slot<M: RemoteMemory>(
        &mut self,
        which: NativeThread,
        slot: &Slot,
        read: &Result<(), String>,
        mem: &M,
        raw: &RawSample,
    ) -> Result<usize, Retry> {
        let mut captured = match &slot.got {
            Some(Ok(c)) => *c,
            Some(Err(Miss::Woke)) => {
                return Err(Retry::Stopped(
                    "the thread ran while it was read asleep".to_string(),
                ))
            }
            Some(Err(Miss::Failed(why))) => return Err(Retry::Final(why.clone())),
            None => return Err(Retry::Final("the thread was not captured".to_string())),
        };
        read.clone().map_err(Retry::Final)?;
        let Some(index) = raw
            .threads
            .iter()
            .position(|t| t.thread_id == which.ident && t.interp_id == which.interp)
        else {
            return Err(Retry::Final(
                "the thread's Python frames were not found at the instant its native stack \
                 was taken (it ended or started meanwhile)"
                    .to_string(),
            ));
        };
        if captured.preempted && after_syscall(mem, &self.modules, captured.regs.ip) {
            // Preempted in a system call (or on its way out of one): the record has the
            // registers it entered the call with. Its number is not in the record.
            captured.kernel = Some(KernelBoundary { syscall: None });
        }
        let entries = raw.entries_of(&raw.threads[index]);
        let merged = self.unwind_and_merge(which, &captured, &slot.stack, entries, mem);
        match merged {
            Ok(()) => Ok(index),
            Err(why) if captured.bounded && self.unwound.end != Some(UnwindEnd::Complete) => {
                Err(Retry::Whole(why))
            }
            Err(why) if captured.asleep => Err(Retry::Stopped(why)),
            Err(why) => Err(Retry::Final(why)),
        }
    }
}

/// Whether the two bytes before `ip` are a `syscall` instruction (`0f 05`): where a thread in a
/// system call has its user instruction pointer. (A thread preempted in user space on the
/// instruction right after a `syscall` would be taken as in the call: an interrupt landing on
/// exactly that instruction as the call returns.) Read from the module's binary where it has
/// them (a system call's site is in a mapped file: libc, the vDSO), which costs no system call;
/// from the target's memory otherwise.
fn after_syscall<M: RemoteMemory>(mem: &M, modules: &ModuleMap, ip: u64) -> bool {
    let Some(at) = ip.checked_sub(2) else {
        return false;
    };
    if let Some(bytes) = modules.find(at).and_then(|m| m.file_bytes(at..ip)) {
        return bytes == [0x0f, 0x05];
    }
    let mut insn = [0u8; 2];
    mem.read_into(at, &mut insn).is_ok() && insn == [0x0f, 0x05]
}

/// Which threads one capture of [`NativeState::sample_round`] takes: `members` as (index into
/// `wanted`, may be read asleep).
#[derive(Clone, Copy)]
struct Batch<'a, 'w> {
    of: RoundOf,
    wanted: &'a [NativeRequest],
    members: &'a [(usize, bool)],
    /// The first of [`NativeState`]'s slots this capture uses (those before it hold the
    /// round's stop-first captures, still to be merged).
    first_slot: usize,
    /// When the target was last read before this capture.
    read_at: Instant,
    /// The threads' per-CPU preemption records: a preempted thread is read without a stop.
    watches: Option<&'a WatchesOf<'w>>,
}
