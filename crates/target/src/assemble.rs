//! Taking a snapshot: every thread's stack walked once (frozen with `--blocking`, retried on a
//! running target that changed under the reader), names, kernel ids, native frames and locals
//! added, all assembled into dump's model ([`Snapshot`]).

use std::collections::{BTreeSet, HashMap};

use strobe_remote::{procfs, Freeze};
use strobe_signals::DeferSignals;
use strobe_walker::walk::ThreadStack;

use crate::error::{exited_or, AttachError};
use crate::locals::{attach_locals, FrameLocals, STACK_CHANGED};
use crate::native::{self, NativeState};
use crate::snapshot::{
    ExceptionSnapshot, FrameSnapshot, PythonInfo, Snapshot, ThreadSnapshot, ThreadState,
};
use crate::threads::KernelThreads;
use crate::{SnapshotOptions, Target, TRANSIENT_ATTEMPTS};

impl Target {
    /// Read every Python thread's stack once.
    pub fn snapshot(&mut self, opts: SnapshotOptions) -> Result<Snapshot, AttachError> {
        let pid = self.pid();
        // Scheduler states are taken first: once frozen, every thread reads as traced-stopped.
        // A core has no scheduler states, and its thread ids are the only ones there are.
        let kernel = match &self.core {
            Some(core) => KernelThreads::of_core(core),
            None => KernelThreads::read(pid)?,
        };
        let (stacks, names, host_tids, mut locals) = if opts.blocking && self.core.is_none() {
            // Order matters: signals are deferred before the freeze and restored after the
            // freeze guard has resumed the target (locals drop in reverse order).
            let _signals = DeferSignals::new().map_err(AttachError::Signals)?;
            let _freeze = Freeze::all_threads(pid).map_err(|e| exited_or(pid, e.into()))?;
            self.read_all(opts)?
        } else {
            self.read_all(opts)?
        };
        let free_threaded = self.walker.layout().flavour.free_threaded;
        let threads = stacks
            .into_iter()
            .map(|t| {
                // The interpreter records ids as the target sees them (3.11+); the pthread
                // lookup (≤3.10) yields ours. Report the target's view, look states up by ours.
                let (native_id, host_tid, host_native_id) =
                    match (t.native_id, host_tids.get(&t.thread_id)) {
                        (Some(inner), _) => (
                            Some(inner),
                            kernel.host_of(inner),
                            kernel.host_of_known(inner),
                        ),
                        (None, Some(&host)) => {
                            (Some(kernel.inner_of(host)), Some(host), Some(host))
                        }
                        (None, None) => (None, None, None),
                    };
                ThreadSnapshot {
                    thread_id: t.thread_id,
                    native_id,
                    host_native_id,
                    name: names.get(&(t.interp_addr, t.thread_id)).cloned(),
                    interpreter_id: t.interp_id,
                    holds_gil: (!free_threaded).then_some(t.holds_gil),
                    state: ThreadState::from_proc_state(
                        host_tid.and_then(|tid| kernel.states.get(&tid).copied()),
                    ),
                    frames: python_frames(&t.frames),
                    truncated: t.truncated,
                    native_error: None,
                    exception: t.exception.as_ref().map(|e| ExceptionSnapshot {
                        type_name: e.type_name.to_string(),
                        state: if e.raised { "raising" } else { "handling" },
                    }),
                }
            })
            .collect::<Vec<_>>();
        let mut threads = threads;
        let mut warnings = self.warnings.clone();
        // The Python frames the locals were read for, before native frames replace them.
        let python: Vec<Vec<(String, String)>> = threads
            .iter()
            .map(|t| {
                t.frames
                    .iter()
                    .map(|f| (f.function.clone(), f.filename.clone()))
                    .collect()
            })
            .collect();
        if opts.native {
            self.add_native(&mut threads, &mut warnings);
        }
        if let Some(locals) = locals.as_mut() {
            for ((thread, read), python) in threads.iter_mut().zip(locals).zip(&python) {
                attach_locals(thread, std::mem::take(read), python);
            }
            let changed = threads
                .iter()
                .flat_map(|t| &t.frames)
                .filter(|f| f.locals_error.as_deref() == Some(STACK_CHANGED))
                .count();
            if changed > 0 {
                warnings.push(format!(
                    "the locals of {changed} frame(s) are missing: their threads ran on while \
                     strobe read them; --blocking stops the process for an exact view"
                ));
            }
        }
        Ok(Snapshot {
            pid,
            executable: self.executable.clone(),
            python: self.python_info(),
            threads,
            warnings,
        })
    }

    /// The interpreter, as a snapshot (and `dump --async`) describes it.
    pub(crate) fn python_info(&self) -> PythonInfo {
        let layout = self.walker.layout();
        PythonInfo {
            version: self.process.version.to_string(),
            binary: self.process.binary_in_target.clone(),
            debug_build: layout.flavour.debug,
            free_threaded: layout.flavour.free_threaded,
            layout_source: if self.from_debug_offsets {
                "debug_offsets"
            } else {
                "tables"
            },
        }
    }

    /// Replace each thread's frames with its merged native and Python stack, or note why not
    /// (the Python frames then stay). Lines for the user go to `warnings`.
    fn add_native(&mut self, threads: &mut [ThreadSnapshot], warnings: &mut Vec<String>) {
        let pid = self.pid();
        let core = self.core.clone();
        if let (Some(core), None) = (&core, &self.native) {
            let state = NativeState::for_core(core, self.walker.memory(), &mut self.warnings);
            self.native = Some(state);
            *warnings = self.warnings.clone();
        }
        if self.native.is_none() {
            match NativeState::new(pid, self.walker.memory(), &mut self.warnings) {
                Ok(state) => self.native = Some(state),
                Err(e) => {
                    let line = format!("native frames are unavailable: {e}");
                    warnings.push(line.clone());
                    for t in threads.iter_mut() {
                        t.native_error = Some(line.clone());
                    }
                    return;
                }
            }
            // The module problems just found.
            *warnings = self.warnings.clone();
        }
        let Some(state) = self.native.as_mut() else {
            return;
        };
        let version = &self.process.version;
        let shape = strobe_native::EvalShape::for_version(version.major, version.minor);
        let mut missing_symbols = BTreeSet::new();
        let mut failures: Vec<String> = Vec::new();
        for t in threads.iter_mut() {
            let Some(tid) = t.host_native_id.and_then(|h| i32::try_from(h).ok()) else {
                t.native_error = Some(
                    "the thread's kernel id is unknown, so its native stack cannot be read"
                        .to_string(),
                );
                continue;
            };
            let which = native::NativeThread {
                pid,
                tid,
                ident: t.thread_id,
                interp: t.interpreter_id,
                shape,
            };
            let got = match &core {
                Some(core) => match core.threads().iter().find(|c| c.tid as i32 == tid) {
                    Some(regs) => {
                        state.core_thread(which, regs, &mut self.walker, &mut missing_symbols)
                    }
                    None => {
                        t.native_error =
                            Some(format!("the core has no registers for thread {tid}"));
                        continue;
                    }
                },
                None => state.thread(which, &mut self.walker, &mut missing_symbols),
            };
            if let Some(python) = &got.python {
                t.frames = python_frames(&python.frames);
                t.truncated = python.truncated;
            }
            match got.merged {
                Ok(frames) => t.frames = frames,
                Err(why) => {
                    failures.push(format!("thread {tid}: {why}"));
                    t.native_error = Some(why);
                }
            }
        }
        warnings.extend(state.take_warnings());
        // One line per distinct reason, not one per thread.
        failures.sort();
        failures.dedup();
        for f in failures {
            warnings.push(format!(
                "native frames are missing (Python frames shown alone) for {f}"
            ));
        }
        if !missing_symbols.is_empty() {
            let list: Vec<String> = missing_symbols.into_iter().collect();
            warnings.push(format!(
                "frames without a symbol in {} (stripped): shown as module+offset; install \
                 their debug symbols (Debian: the -dbgsym packages) or use unstripped builds",
                list.join(", ")
            ));
        }
    }

    /// Walk the stacks, then (optionally) the names, and kernel ids where the interpreter does
    /// not record them. Retries a running target that changed under us.
    #[allow(clippy::type_complexity)]
    fn read_all(
        &mut self,
        opts: SnapshotOptions,
    ) -> Result<
        (
            Vec<ThreadStack>,
            HashMap<(u64, u64), String>,
            HashMap<u64, u32>,
            Option<Vec<Vec<FrameLocals>>>,
        ),
        AttachError,
    > {
        let pid = self.pid();
        // A frozen process or a core does not change under the reader: one attempt.
        let attempts = if opts.blocking || self.core.is_some() {
            1
        } else {
            TRANSIENT_ATTEMPTS
        };
        let mut attempt = 0;
        let stacks = loop {
            attempt += 1;
            match self.walker.walk() {
                Ok(stacks) => break stacks,
                Err(e)
                    if e.is_transient()
                        && attempt < attempts
                        && !procfs::is_gone_or_exiting(pid) =>
                {
                    self.walker.clear_caches();
                }
                Err(error) => return Err(self.exited_or(AttachError::Walk { pid, error })),
            }
        };
        // Right after the stacks, before the slower lookups below: on a running target the
        // frames are then most likely still the ones just walked (each is checked).
        let locals = opts.locals.then(|| self.read_locals(&stacks));

        let mut names = HashMap::new();
        if opts.names {
            let mut interps: Vec<u64> = stacks.iter().map(|t| t.interp_addr).collect();
            interps.dedup();
            for interp in interps {
                match self.thread_names(interp) {
                    Ok(found) => names.extend(
                        found
                            .into_iter()
                            .map(|(ident, name)| ((interp, ident), name)),
                    ),
                    Err(e) => self
                        .warnings
                        .push(format!("thread names are unavailable: {e}")),
                }
            }
        }

        let mut tids = HashMap::new();
        let unknown: Vec<u64> = stacks
            .iter()
            .filter(|t| t.native_id.is_none())
            .map(|t| t.thread_id)
            .collect();
        if !unknown.is_empty() {
            match self.native_tids(&unknown) {
                Ok(found) => tids = found,
                Err(e) => self.warnings.push(format!(
                    "kernel thread ids are unavailable, so running/idle is unknown: {e}"
                )),
            }
        }
        Ok((stacks, names, tids, locals))
    }
}

/// The snapshot's form of a walker's Python frames.
fn python_frames(frames: &[strobe_walker::walk::PyFrame]) -> Vec<FrameSnapshot> {
    frames
        .iter()
        .map(|f| {
            FrameSnapshot::python(
                f.function.to_string(),
                f.filename.to_string(),
                f.line.and_then(|l| u32::try_from(l).ok()),
            )
        })
        .collect()
}
