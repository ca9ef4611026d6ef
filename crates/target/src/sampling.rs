//! What the sampler calls on a [`Target`]: the walker for its rounds, and a round's native
//! stacks merged with the Python frames read at the same instant (`record --native`,
//! `top --native`).

use std::time::Instant;

use strobe_walker::walk::Walker;
use strobe_walker::RawSample;

use crate::native::{self, EachNative, NativeRequest, NativeStack, NativeState, StoppedAwake};
use crate::{Target, TargetMemory};

impl Target {
    /// The walker, for the sampler's per-sample reads.
    pub fn walker_mut(&mut self) -> &mut Walker<TargetMemory> {
        &mut self.walker
    }

    /// Make native stacks available to [`Target::native_round`]: read the target's module
    /// list (once). Gives the lines the user should see (modules whose frames will lack
    /// symbols), or why native stacks cannot be had at all.
    pub fn enable_native(&mut self) -> Result<Vec<String>, String> {
        if self.native.is_some() {
            return Ok(Vec::new());
        }
        let mut warnings = Vec::new();
        let state = NativeState::new(self.pid(), self.walker.memory(), &mut warnings)
            .map_err(|e| format!("native frames are unavailable: {e}"))?;
        self.native = Some(state);
        Ok(warnings)
    }

    /// One round's native samples of the threads `wanted`: their native stacks and, at the
    /// same instant, their Python stacks into `raw` (only theirs are read). Threads that may
    /// sleep and provably sleep through the read are not stopped; the others are stopped all
    /// together for the read. `each` gets every thread's result by its index in `wanted`
    /// (see [`native::NativeStack`] for what a result indexes), with the read and the walker,
    /// to name the Python frames; errors in a result are the reason the stack could not be
    /// merged. An error of `each` ends the round. [`Target::enable_native`] must have
    /// succeeded, else every thread gets that reason. `read_at`: when the caller last read
    /// the target (its walk); the stops come no sooner than 20 µs after it, since a stop
    /// right after our read lands where the read slowed the target down (see "Stops after
    /// our own read" in `native/sample.rs`). A thread `watches` has watches for and that is
    /// preempted is read without a stop (see [`Target::native_stop_first`]).
    pub fn native_round<E>(
        &mut self,
        wanted: &[NativeRequest],
        raw: &mut RawSample,
        read_at: Instant,
        watches: Option<&crate::WatchesOf<'_>>,
        each: &mut EachNative<'_, TargetMemory, E>,
    ) -> Result<(), E> {
        self.native_round_with(wanted, None, raw, read_at, watches, each)
    }

    /// The first half of a round that stops first and reads after: stop the threads
    /// `threads` (kernel id as seen from here, thread state address) together, and run
    /// `read`, the round's read of the target, while they are stopped. The stops come no
    /// sooner than 20 µs after the latest read of a native capture (the previous round's: see
    /// "Stops after our own read" in `native/sample.rs`). Gives when `read` ended. The round
    /// then decides which threads it keeps from that read and hands them to
    /// [`Target::native_round_after`], which merges the stopped ones' captures with their
    /// frames in the same read. Without [`Target::enable_native`], `read` runs without stops.
    ///
    /// A thread for which `watches` gives per-CPU records ([`crate::CpuPreemptions`]) that
    /// hold its registers at its preemption (runnable, off a CPU) is read first, before
    /// anything is stopped: its Python frames in a read of the preempted threads alone, then
    /// its stack copied from those registers' stack pointer; if it has not been switched in
    /// by the end of both (the records, drained again, say so), registers, stack and frames
    /// are merged as one instant, its preemption, and it is not stopped; if it moved, it is
    /// stopped with the others. Such a thread's [`crate::NativeStack::preempted`] is set.
    pub fn native_stop_first(
        &mut self,
        threads: &[(i32, u64)],
        watches: Option<&crate::WatchesOf<'_>>,
        read: &mut dyn FnMut(&mut Walker<TargetMemory>),
    ) -> Instant {
        let pid = self.process.pid;
        match self.native.as_mut() {
            Some(state) => state.stop_first(pid, threads, watches, &mut self.walker, read),
            None => {
                read(&mut self.walker);
                Instant::now()
            }
        }
    }

    /// [`Target::native_round`] after [`Target::native_stop_first`], whose read is `first`:
    /// a thread of `wanted` that was stopped there is merged with its Python frames in `first`
    /// (`each` gets `first` with its result); the others (not stopped, or whose capture needs
    /// another) are captured as [`Target::native_round`] does, their frames read into `raw`.
    pub fn native_round_after<E>(
        &mut self,
        wanted: &[NativeRequest],
        first: &RawSample,
        raw: &mut RawSample,
        read_at: Instant,
        watches: Option<&crate::WatchesOf<'_>>,
        each: &mut EachNative<'_, TargetMemory, E>,
    ) -> Result<(), E> {
        self.native_round_with(wanted, Some(first), raw, read_at, watches, each)
    }

    /// [`Target::native_round`], after a [`Target::native_stop_first`] whose read is `first`
    /// if given.
    fn native_round_with<E>(
        &mut self,
        wanted: &[NativeRequest],
        first: Option<&RawSample>,
        raw: &mut RawSample,
        read_at: Instant,
        watches: Option<&crate::WatchesOf<'_>>,
        each: &mut EachNative<'_, TargetMemory, E>,
    ) -> Result<(), E> {
        let version = &self.process.version;
        let of = native::RoundOf {
            pid: self.process.pid,
            shape: strobe_native::EvalShape::for_version(version.major, version.minor),
        };
        let Some(state) = self.native.as_mut() else {
            for i in 0..wanted.len() {
                let none = Err("native frames were not enabled".to_string());
                each(i, none, raw, &mut self.walker)?;
            }
            return Ok(());
        };
        let walker = &mut self.walker;
        state.sample_round(of, wanted, first, (read_at, watches), walker, raw, each)
    }

    /// The threads that the latest [`Target::native_stop_first`] or [`Target::native_round`]
    /// (or `_after`) stopped while they were not asleep (see [`StoppedAwake`]). The stop
    /// switched them out as a wait would, and until they next get a CPU the kernel's record
    /// of their switches says so: a caller that reads thread states from that record should
    /// take them as they were before the stop until then.
    pub fn native_stopped_awake(&self) -> &[StoppedAwake] {
        self.native
            .as_ref()
            .map_or(&[][..], |state| state.stopped_awake.as_slice())
    }

    /// `--blocking --native`: the native stack of thread `tid` (as seen from here, known to
    /// the interpreter as `ident` in interpreter `interp`) of this process, which `freeze`
    /// holds stopped, merged with the Python frames whose entry flags are `entries`, read
    /// during the same freeze. Also hands back the walker, to name the Python frames.
    /// [`Target::enable_native`] must have succeeded.
    pub fn native_frozen(
        &mut self,
        freeze: &strobe_remote::Freeze,
        tid: i32,
        ident: u64,
        interp: i64,
        entries: &[bool],
    ) -> Result<(NativeStack<'_>, &mut Walker<TargetMemory>), String> {
        let which = self.native_thread(tid, ident, interp);
        let Some(state) = self.native.as_mut() else {
            return Err("native frames were not enabled".to_string());
        };
        let stack = state.frozen_thread(which, freeze, entries, self.walker.memory())?;
        Ok((stack, &mut self.walker))
    }

    /// Thread `tid` (ours), `ident` in interpreter `interp`, as the native reader names it.
    fn native_thread(&self, tid: i32, ident: u64, interp: i64) -> native::NativeThread {
        let version = &self.process.version;
        native::NativeThread {
            pid: self.process.pid,
            tid,
            ident,
            interp,
            shape: strobe_native::EvalShape::for_version(version.major, version.minor),
        }
    }

    /// Lines for the user from native captures since the last call: a change of capture
    /// method (perf events where ptrace is refused), said once.
    pub fn take_native_warnings(&mut self) -> Vec<String> {
        self.native
            .as_mut()
            .map(NativeState::take_warnings)
            .unwrap_or_default()
    }
}
