//! The target: a Python process strobe has attached to.
//!
//! Everything between a PID and a walker, and between a walker and a [`Snapshot`].
//!
//! [`Target::attach`] opens the process (`strobe_remote::ProcessMemory`), finds the runtime
//! (`strobe_locate::locate`), resolves the struct layout (`strobe_walker::layout::resolve`, which
//! prefers the target's own `_Py_DebugOffsets` on 3.13+) and builds a walker. Each
//! [`Target::snapshot`] then reads thread states from `/proc`, walks every thread's stack,
//! and adds names and kernel thread ids.
//!
//! [`Target::open_core`] does the same for a core file (`strobe_corefile::Core`): the walker
//! reads the core through the same [`strobe_memory::RemoteMemory`] trait ([`TargetMemory`]),
//! the threads come from the core's notes, and nothing is read from `/proc`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod asyncio;
mod memory;
mod native;
pub mod snapshot;

pub use memory::TargetMemory;
pub use strobe_corefile::{CoreError, CoreOptions};

pub use native::NativeStack;
use native::NativeState;
use snapshot::{
    FrameKind, FrameSnapshot, LocalSnapshot, PythonInfo, Snapshot, ThreadSnapshot, ThreadState,
};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strobe_corefile::Core;
use strobe_locate::{LocateError, PythonProcess};
use strobe_memory::MemError;
use strobe_remote::{procfs, Freeze, ProcessMemory, RemoteError};
use strobe_signals::DeferSignals;
use strobe_walker::locals::LocalsReader;
use strobe_walker::walk::{Roots, ThreadStack, Walker};
use strobe_walker::{RawSample, WalkError};

/// How often a snapshot of a running (not frozen) target is retried when the target changed
/// under the reader. Each attempt takes well under a millisecond.
pub(crate) const TRANSIENT_ATTEMPTS: usize = 5;

/// Why attaching to or reading a target failed. Every message is meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Opening, inspecting or freezing the process failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The process is not a Python we can find.
    #[error(transparent)]
    Locate(#[from] LocateError),
    /// The process went away in the middle.
    #[error("process {pid} exited while being read")]
    Exited {
        /// The target.
        pid: i32,
    },
    /// The interpreter's layout could not be determined (e.g. a version strobe does not know).
    #[error("cannot read process {pid}: {error}")]
    Layout {
        /// The target.
        pid: i32,
        /// What went wrong (part of the message, so not also the `source()`).
        error: WalkError,
    },
    /// Walking the interpreter's structures failed.
    #[error("reading the Python stacks of process {pid} failed: {error}")]
    Walk {
        /// The target.
        pid: i32,
        /// What went wrong (part of the message, so not also the `source()`).
        error: WalkError,
    },
    /// No offset inside glibc's `struct pthread` held the thread ids of all given threads.
    #[error(
        "could not find the thread-id field in the pthread structures of process {pid} \
         ({threads} threads): native thread ids are unavailable for this target"
    )]
    PthreadCalibration {
        /// The target process.
        pid: i32,
        /// How many thread idents were given.
        threads: usize,
    },
    /// The core file cannot be read.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The interpreter could not be found in a core file.
    #[error("core file {}: {error}", core.display())]
    CoreLocate {
        /// The core file.
        core: PathBuf,
        /// What went wrong (part of the message, so not also the `source()`).
        error: LocateError,
    },
    /// The interpreter's layout or stacks could not be read from a core file.
    #[error(
        "core file {}: {error}{}{}",
        core.display(),
        missing_memory_hint(error),
        unusable_files(unusable)
    )]
    CoreWalk {
        /// The core file.
        core: PathBuf,
        /// What went wrong (part of the message, so not also the `source()`).
        error: WalkError,
        /// When a read fell outside the core: the files it names that could not be used
        /// (missing, or another build), one line each joined by `; `; else empty.
        unusable: String,
    },
    /// `dump --async` could not read the asyncio tasks (the message says why and what to do).
    #[error("{0}")]
    Async(String),
    /// Signals could not be held off around `--blocking`.
    #[error("could not block signals while the target is frozen: {0}")]
    Signals(nix::Error),
}

/// What a snapshot should include.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Look up `threading` thread names.
    pub names: bool,
    /// Stop the target with ptrace for the duration of the read.
    pub blocking: bool,
    /// Add native frames: each thread's native stack, merged with its Python frames read at
    /// the same instant (a sleeping thread is not stopped; a running one is stopped alone,
    /// briefly). Done after a `blocking` read, which it then replaces thread by thread.
    pub native: bool,
    /// Add each Python frame's arguments and local variables (`FrameSnapshot::locals`), read
    /// right after the stacks (during the freeze with `blocking`).
    pub locals: bool,
}

/// An attached target process.
#[derive(Debug)]
pub struct Target {
    process: PythonProcess,
    walker: Walker<TargetMemory>,
    /// The core file, when the target is one (else a live process).
    core: Option<Arc<Core>>,
    warnings: Vec<String>,
    from_debug_offsets: bool,
    executable: Option<String>,
    /// Modules, unwind rules and symbols, from the first snapshot with native frames on.
    native: Option<NativeState>,
}

impl Target {
    /// Open `pid`, find its interpreter and prepare to walk it.
    pub fn attach(pid: i32) -> Result<Target, AttachError> {
        let mem = ProcessMemory::open(pid)?;
        let process = strobe_locate::locate(pid, &mem).map_err(|e| exited_or(pid, e.into()))?;
        let runtime = process.runtime;
        let resolved =
            strobe_walker::layout::resolve(&mem, process.version, process.debug_build, runtime)
                .map_err(|error| exited_or(pid, AttachError::Layout { pid, error }))?;
        let roots = Roots {
            runtime: process.runtime,
            interp_head: process.interp_head,
            tstate_current: process.tstate_current,
            gc_collecting: process.gc_collecting,
        };
        let executable = procfs::exe(pid).ok().map(|p| p.display().to_string());
        let mut warnings = process.notes.clone();
        warnings.extend(resolved.warnings);
        Ok(Target {
            walker: Walker::new(TargetMemory::Process(mem), resolved.layout, roots),
            core: None,
            warnings,
            from_debug_offsets: resolved.from_debug_offsets,
            executable,
            process,
            native: None,
        })
    }

    /// Open the core file at `path`, find its interpreter and prepare to walk it. The files
    /// the core names are found as `opts` says (`--executable`, `--sysroot`).
    pub fn open_core(path: &Path, opts: CoreOptions<'_>) -> Result<Target, AttachError> {
        let core = Arc::new(Core::open(path, opts)?);
        let pid = i32::try_from(core.pid()).unwrap_or(0);
        // The core's file mappings, as `/proc/PID/maps` would have listed them; each file gets
        // its own made-up inode, since only the name identifies a file in a core.
        let mut names: Vec<&str> = Vec::new();
        let mappings: Vec<strobe_locate::maps::Mapping> = core
            .mappings()
            .map(|m| {
                let inode = match names.iter().position(|n| *n == m.path) {
                    Some(i) => i + 1,
                    None => {
                        names.push(&m.path);
                        names.len()
                    }
                };
                strobe_locate::maps::Mapping {
                    start: m.start,
                    end: m.end,
                    read: true,
                    write: false,
                    exec: false,
                    offset: m.offset,
                    dev_major: 0,
                    dev_minor: 0,
                    inode: inode as u64,
                    path: Some(m.path.clone()),
                    deleted: m.deleted,
                }
            })
            .collect();
        let open = |m: &strobe_locate::maps::Mapping| {
            let named = m.path.as_deref().unwrap_or_default();
            core.file(named).map_err(|reason| LocateError::Elf {
                pid,
                path: PathBuf::from(named),
                reason: format!("{reason}; pass --sysroot or --executable to say where it is"),
            })
        };
        let core_err = |error| AttachError::CoreLocate {
            core: path.to_path_buf(),
            error,
        };
        let process = strobe_locate::locate_in(pid, &*core, &mappings, core.executable(), &open)
            .map_err(core_err)?;
        // The interpreter's state must be in the core itself: the file's initial bytes
        // there would read as an interpreter that never started.
        if let Some(root) = process.runtime.or(process.interp_head) {
            if !core.holds(root, 8) {
                let error = WalkError::Mem(MemError::Fault { addr: root, len: 8 });
                return Err(core_walk(&core, error));
            }
        }
        let resolved = strobe_walker::layout::resolve(
            &*core,
            process.version,
            process.debug_build,
            process.runtime,
        )
        .map_err(|error| core_walk(&core, error))?;
        let roots = Roots {
            runtime: process.runtime,
            interp_head: process.interp_head,
            tstate_current: process.tstate_current,
            gc_collecting: process.gc_collecting,
        };
        let mut warnings = process.notes.clone();
        warnings.extend(resolved.warnings);
        let no_stack: Vec<String> = core
            .threads()
            .iter()
            .filter(|t| core.stack_missing(t))
            .map(|t| t.tid.to_string())
            .collect();
        if !no_stack.is_empty() {
            warnings.push(format!(
                "the core holds no stack memory for thread{} {} (only zeros at the stack \
                 pointer): Python frames kept on the C stack (3.11+) are missing, so stacks \
                 may end early; gdb's gcore writes such cores for processes with glibc 2.41+ \
                 (guard pages inside thread stacks): use a core written by the kernel",
                if no_stack.len() == 1 { "" } else { "s" },
                no_stack.join(", ")
            ));
        }
        Ok(Target {
            walker: Walker::new(
                TargetMemory::Core(Arc::clone(&core)),
                resolved.layout,
                roots,
            ),
            executable: core.executable().map(str::to_string),
            core: Some(core),
            warnings,
            from_debug_offsets: resolved.from_debug_offsets,
            process,
            native: None,
        })
    }

    /// The core file, when the target is one.
    pub fn core(&self) -> Option<&Core> {
        self.core.as_deref()
    }

    /// `err`, or that the process exited if it did (never for a core: its process is gone,
    /// and another may have its id).
    fn exited_or(&self, err: AttachError) -> AttachError {
        match (&self.core, err) {
            (Some(core), AttachError::Walk { error, .. } | AttachError::Layout { error, .. }) => {
                core_walk(core, error)
            }
            (Some(_), err) => err,
            (None, err) => exited_or(self.pid(), err),
        }
    }

    /// The target's PID.
    pub fn pid(&self) -> i32 {
        self.process.pid
    }

    /// Where the interpreter was found.
    pub fn process(&self) -> &PythonProcess {
        &self.process
    }

    /// Caveats found while attaching (e.g. a layout borrowed from a neighbouring release).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether the interpreter is a free-threaded (`Py_GIL_DISABLED`) build, which has no GIL.
    pub fn free_threaded(&self) -> bool {
        self.walker.layout().flavour.free_threaded
    }

    /// `threading` thread names (ident → name) of the interpreter at `interp`.
    pub fn thread_names(&self, interp: u64) -> Result<HashMap<u64, String>, WalkError> {
        strobe_walker::threadnames::thread_names(self.walker.memory(), self.walker.layout(), interp)
    }

    /// Kernel thread ids (ours) of threads given by ident, for interpreters that do not record
    /// them (≤3.10), from glibc's thread descriptors (`strobe_walker::pthreads`).
    pub fn native_tids(&self, idents: &[u64]) -> Result<HashMap<u64, u32>, AttachError> {
        let pid = self.pid();
        if let Some(core) = &self.core {
            // The core's thread ids are the process's own; there is no other view of them.
            let live: HashSet<u32> = core.threads().iter().map(|t| t.tid).collect();
            return strobe_walker::pthreads::tids_from_descriptors(
                self.walker.memory(),
                idents,
                &live,
                core.pid(),
            )
            .map_err(RemoteError::Mem)?
            .ok_or(AttachError::PthreadCalibration {
                pid,
                threads: idents.len(),
            });
        }
        // The descriptors hold ids in the target's PID namespace; translate them to ours.
        let host_to_ns = procfs::namespaced_tids(pid)?;
        let main_ns = host_to_ns.get(&(pid as u32)).copied().unwrap_or(pid as u32);
        let ns_to_host: HashMap<u32, u32> = host_to_ns.into_iter().map(|(h, n)| (n, h)).collect();
        let live: HashSet<u32> = ns_to_host.keys().copied().collect();
        let found = strobe_walker::pthreads::tids_from_descriptors(
            self.walker.memory(),
            idents,
            &live,
            main_ns,
        )
        .map_err(RemoteError::Mem)?
        .ok_or(AttachError::PthreadCalibration {
            pid,
            threads: idents.len(),
        })?;
        Ok(found
            .into_iter()
            .filter_map(|(ident, ns)| Some((ident, *ns_to_host.get(&ns)?)))
            .collect())
    }

    /// The walker, for the sampler's per-sample reads.
    pub fn walker_mut(&mut self) -> &mut Walker<TargetMemory> {
        &mut self.walker
    }

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
        let layout = self.walker.layout();
        Ok(Snapshot {
            pid,
            executable: self.executable.clone(),
            python: PythonInfo {
                version: self.process.version.to_string(),
                binary: self.process.binary_in_target.clone(),
                debug_build: layout.flavour.debug,
                free_threaded: layout.flavour.free_threaded,
                layout_source: if self.from_debug_offsets {
                    "debug_offsets"
                } else {
                    "tables"
                },
            },
            threads,
            warnings,
        })
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

    /// The locals of every frame of `stacks`, thread by thread, frame by frame. A thread's
    /// frames are found again from its thread state and paired with the walked ones by code
    /// object: all of them when nothing changed in between; otherwise, on a running target,
    /// the outermost frames that are still the same, the others saying the stack changed.
    fn read_locals(&self, stacks: &[ThreadStack]) -> Vec<Vec<FrameLocals>> {
        let mem = self.walker.memory();
        let layout = self.walker.layout();
        let mut reader = LocalsReader::new(mem, layout);
        stacks
            .iter()
            .map(|t| {
                let n = t.frames.len();
                let refs = match strobe_walker::locals::thread_frames(mem, layout, t.tstate_addr) {
                    Ok(refs) => refs,
                    Err(e) => return vec![Err(format!("locals are unavailable: {e}")); n],
                };
                let pairs = pair_frames(&t.frames, &refs);
                pairs
                    .into_iter()
                    .map(|r| match r {
                        Some(r) => reader
                            .frame_locals(r)
                            .map(|locals| locals.into_iter().map(local_snapshot).collect())
                            .map_err(|e| format!("locals are unavailable: {e}")),
                        None => Err(STACK_CHANGED.to_string()),
                    })
                    .collect()
            })
            .collect()
    }
}

/// For each walked frame, the frame found again that runs the same code object: every frame
/// when the innermost frames agree (the usual case, and always inside a freeze), else the
/// frames of the common outermost part (what a running thread did not return from).
fn pair_frames(
    walked: &[strobe_walker::walk::PyFrame],
    found: &[strobe_walker::locals::FrameRef],
) -> Vec<Option<strobe_walker::locals::FrameRef>> {
    let n = walked.len();
    if found.len() >= n && found.iter().zip(walked).all(|(r, f)| r.code == f.code_addr) {
        return found[..n].iter().copied().map(Some).collect();
    }
    let mut out = vec![None; n];
    for (slot, (f, r)) in out
        .iter_mut()
        .rev()
        .zip(walked.iter().rev().zip(found.iter().rev()))
    {
        if f.code_addr != r.code {
            break;
        }
        *slot = Some(*r);
    }
    out
}

/// One frame's locals, or why they could not be read.
type FrameLocals = Result<Vec<LocalSnapshot>, String>;

const STACK_CHANGED: &str =
    "the stack changed while its locals were read (--blocking reads it at one instant)";

/// Put the locals read for a thread's Python frames (`python`: their function and file, in
/// order) onto its frames, which native frames may have replaced since: the Python frames
/// among them must be the same ones.
fn attach_locals(thread: &mut ThreadSnapshot, read: Vec<FrameLocals>, python: &[(String, String)]) {
    let now: Vec<&mut FrameSnapshot> = thread
        .frames
        .iter_mut()
        .filter(|f| f.kind == FrameKind::Python)
        .collect();
    let same = now.len() == python.len()
        && now
            .iter()
            .zip(python)
            .all(|(f, (function, file))| f.function == *function && f.filename == *file);
    for (frame, locals) in now.into_iter().zip(read) {
        match locals {
            Ok(locals) if same => frame.locals = Some(locals),
            Ok(_) => frame.locals_error = Some(STACK_CHANGED.to_string()),
            Err(why) => frame.locals_error = Some(why),
        }
    }
}

/// The snapshot's form of a walker's local.
fn local_snapshot(l: strobe_walker::locals::Local) -> LocalSnapshot {
    let kind = l.kind;
    match l.value {
        Some(v) => LocalSnapshot {
            name: l.name,
            kind,
            type_name: v.type_name,
            repr: v.repr,
            truncated: v.truncated,
            unbound: false,
        },
        None => LocalSnapshot {
            name: l.name,
            kind,
            type_name: None,
            repr: "<unbound>".to_string(),
            truncated: false,
            unbound: true,
        },
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

/// The kernel's view of the target's threads.
#[derive(Debug, Default)]
struct KernelThreads {
    /// Scheduler state letter by thread id (ours).
    states: HashMap<u32, char>,
    /// Our thread id → the target's (they differ when the target is in a PID namespace).
    host_to_inner: HashMap<u32, u32>,
}

impl KernelThreads {
    fn read(pid: i32) -> Result<KernelThreads, AttachError> {
        let states = procfs::thread_states(pid).map_err(|e| exited_or(pid, e.into()))?;
        // Without NSpid (kernels before 4.1) both views are the same.
        let host_to_inner = procfs::namespaced_tids(pid).unwrap_or_default();
        Ok(KernelThreads {
            states,
            host_to_inner,
        })
    }

    /// A core's threads: no scheduler states, every id the same both ways.
    fn of_core(core: &Core) -> KernelThreads {
        KernelThreads {
            states: HashMap::new(),
            host_to_inner: core.threads().iter().map(|t| (t.tid, t.tid)).collect(),
        }
    }

    fn inner_of(&self, host: u32) -> u32 {
        self.host_to_inner.get(&host).copied().unwrap_or(host)
    }

    /// Our id of the thread the target calls `inner`, only if it is known for sure: found in
    /// the task list, or the target shares our PID namespace (every id the same both ways).
    fn host_of_known(&self, inner: u32) -> Option<u32> {
        self.host_to_inner
            .iter()
            .find(|(_, &i)| i == inner)
            .map(|(&h, _)| h)
            .or_else(|| {
                self.host_to_inner
                    .iter()
                    .all(|(h, i)| h == i)
                    .then_some(inner)
            })
    }

    fn host_of(&self, inner: u32) -> Option<u32> {
        self.host_to_inner
            .iter()
            .find(|(_, &i)| i == inner)
            .map(|(&h, _)| h)
            .or(Some(inner))
    }
}

/// A walk error on `core`, with the files it names that could not be used when a read fell
/// outside it.
fn core_walk(core: &Core, error: WalkError) -> AttachError {
    let unusable = match error {
        WalkError::Mem(MemError::Fault { .. }) => core.file_problems().join("; "),
        _ => String::new(),
    };
    AttachError::CoreWalk {
        core: core.path().to_path_buf(),
        error,
        unusable,
    }
}

/// The tail of a [`AttachError::CoreWalk`] message naming unusable files.
fn unusable_files(unusable: &str) -> String {
    if unusable.is_empty() {
        String::new()
    } else {
        format!("; files the core names that could not be used: {unusable}")
    }
}

/// What to add to a walk error on a core: a read outside the core's memory means the core
/// lacks the interpreter's memory.
fn missing_memory_hint(error: &WalkError) -> &'static str {
    match error {
        WalkError::Mem(MemError::Fault { .. }) => {
            " (the core does not hold the interpreter's memory there: it was written without \
             the process's data pages (see coredump_filter in core(5)), or it does not belong \
             to the executable and libraries found for it)"
        }
        _ => "",
    }
}

/// If the target is gone, say so instead of reporting whichever read happened to fail.
/// (Also used by the sampler for errors of its rounds.)
pub fn exited_or(pid: i32, err: AttachError) -> AttachError {
    let gone = match &err {
        AttachError::Remote(RemoteError::ProcessGone { .. })
        | AttachError::Remote(RemoteError::Mem(MemError::ProcessGone { .. }))
        | AttachError::Walk {
            error: WalkError::Mem(MemError::ProcessGone { .. }),
            ..
        } => true,
        AttachError::Remote(RemoteError::NoSuchProcess { .. }) => false,
        _ => procfs::is_gone_or_exiting(pid),
    };
    if gone {
        AttachError::Exited { pid }
    } else {
        err
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use strobe_walker::locals::FrameRef;
    use strobe_walker::walk::PyFrame;

    fn walked(codes: &[u64]) -> Vec<PyFrame> {
        codes
            .iter()
            .map(|&code_addr| PyFrame {
                code_addr,
                function: "f".into(),
                filename: "f.py".into(),
                line: None,
                first_line: 1,
                entry: false,
            })
            .collect()
    }

    fn found(codes: &[u64]) -> Vec<FrameRef> {
        codes
            .iter()
            .map(|&code| FrameRef {
                addr: code * 16,
                code,
            })
            .collect()
    }

    #[test]
    fn frames_found_again_pair_with_the_walked_ones_by_code() {
        let same = pair_frames(&walked(&[3, 2, 1]), &found(&[3, 2, 1]));
        assert_eq!(
            same,
            found(&[3, 2, 1]).into_iter().map(Some).collect::<Vec<_>>()
        );
        // A running thread returned from 3 and called 4: only the outer frames pair.
        let moved = pair_frames(&walked(&[3, 2, 1]), &found(&[4, 2, 1]));
        assert_eq!(
            moved,
            vec![None, Some(found(&[2])[0]), Some(found(&[1])[0])]
        );
        // It called deeper: the walked frames are still the outer ones.
        let deeper = pair_frames(&walked(&[2, 1]), &found(&[5, 2, 1]));
        assert_eq!(deeper, vec![Some(found(&[2])[0]), Some(found(&[1])[0])]);
        // Nothing in common.
        assert_eq!(
            pair_frames(&walked(&[2, 1]), &found(&[7])),
            vec![None, None]
        );
        assert_eq!(pair_frames(&walked(&[]), &found(&[7])), vec![]);
    }

    /// A PID no process can have: PIDs are always below `pid_max`.
    fn vanished_pid() -> i32 {
        std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn failed_read_of_a_vanished_process_reports_the_exit() {
        let pid = vanished_pid();
        let fault = AttachError::Walk {
            pid,
            error: WalkError::Mem(MemError::Fault {
                addr: 0x1000,
                len: 8,
            }),
        };
        let err = exited_or(pid, fault);
        assert_eq!(
            err.to_string(),
            format!("process {pid} exited while being read")
        );
    }

    #[test]
    fn process_gone_is_an_exit_even_before_proc_catches_up() {
        let me = std::process::id() as i32;
        let gone = AttachError::Remote(RemoteError::Mem(MemError::ProcessGone { pid: me }));
        assert!(matches!(exited_or(me, gone), AttachError::Exited { .. }));
    }

    #[test]
    fn errors_of_a_live_process_are_kept() {
        let me = std::process::id() as i32;
        let fault = AttachError::Walk {
            pid: me,
            error: WalkError::Mem(MemError::Fault {
                addr: 0x1000,
                len: 8,
            }),
        };
        assert!(matches!(exited_or(me, fault), AttachError::Walk { .. }));
        let missing = AttachError::Remote(RemoteError::NoSuchProcess {
            pid: vanished_pid(),
        });
        assert!(matches!(
            exited_or(vanished_pid(), missing),
            AttachError::Remote(RemoteError::NoSuchProcess { .. })
        ));
    }
}
