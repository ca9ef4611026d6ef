//! What the sampler calls on a [`Target`]: the walker for its rounds, and one thread's native
//! stack merged with the Python frames read at the same instant (`record --native`,
//! `top --native`).

use strobe_walker::walk::Walker;
use strobe_walker::RawSample;

use crate::native::{self, NativeStack, NativeState};
use crate::{Target, TargetMemory};

impl Target {
    /// The walker, for the sampler's per-sample reads.
    pub fn walker_mut(&mut self) -> &mut Walker<TargetMemory> {
        &mut self.walker
    }

    /// Make native stacks available to [`Target::native_sample`]: read the target's module
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

    /// One native sample of the thread with kernel id `tid` (as seen from here), known to the
    /// interpreter as `ident` in interpreter `interp`: its native stack and, at the same
    /// instant, the process's Python stacks into `raw` (see [`native::NativeStack`] for what
    /// the result indexes; the `usize` is the thread's index in `raw.threads`). `may_sleep`: the thread was seen idle, so it may be read without
    /// a stop. Also hands back the walker, to name the Python frames. Errors are the reason
    /// the stack could not be merged; [`Target::enable_native`] must have succeeded.
    pub fn native_sample(
        &mut self,
        tid: i32,
        ident: u64,
        interp: i64,
        may_sleep: bool,
        raw: &mut RawSample,
    ) -> Result<(NativeStack<'_>, usize, &mut Walker<TargetMemory>), String> {
        let which = self.native_thread(tid, ident, interp);
        let Some(state) = self.native.as_mut() else {
            return Err("native frames were not enabled".to_string());
        };
        let (stack, thread) = state.sample_thread(which, may_sleep, &mut self.walker, raw)?;
        Ok((stack, thread, &mut self.walker))
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
