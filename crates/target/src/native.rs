//! Native frames for a snapshot: each thread's registers and native stack, taken at the same
//! instant as its Python frames, unwound, symbolised and merged with them.
//!
//! Per thread, the least disturbing capture that is consistent:
//! - a thread asleep in the kernel is read without stopping it ([`BlockedThread`]); its
//!   Python frames are read while it still sleeps, proven by its scheduler run count
//!   (`/proc/PID/task/TID/schedstat`) being the same before the native capture and after
//!   the Python read;
//! - otherwise the thread is stopped ([`ThreadTracer`]), and its Python frames are read during
//!   the stop; the sampler's rounds stop all the running threads they keep together and read
//!   their Python frames once during the stops (`sample.rs`).
//!
//! The module map, unwind rules and symbols are kept in the [`Target`](crate::Target), so a
//! second snapshot reuses them.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use strobe_corefile::{Core, CoreThread};
use strobe_memory::RemoteMemory;
use strobe_native::{
    merge, Binaries, DebugSearch, EvalShape, MergedFrame, ModuleMap, NativeEnd, NativeFrame,
    SymbolSource, Symbolizer, UnwindEnd, Unwinder, Unwound, KERNEL_FRAME, TRUNCATED_FRAME,
};
use strobe_remote::UserRegs;
use strobe_walker::walk::{ThreadStack, Walker};
use strobe_walker::{RawSample, WalkError};

use crate::snapshot::{FrameKind, FrameSnapshot, NativeFrameInfo};

mod capture;
mod sample;

use capture::{Captured, Capturer, Slot};
pub use capture::{CpuPreemptions, WatchesOf};
pub(crate) use sample::RoundOf;
pub use sample::{EachNative, NativeRequest, NativeResult};
use strobe_remote::Freeze;

/// The module list is read again when a sampled stack has an address outside every module
/// (a library loaded since, such as an extension imported late), at most this often.
const MODULES_REREAD_EVERY: Duration = Duration::from_secs(1);

/// One thread's merged stack, as [`Target::native_round`](crate::Target::native_round) gives
/// it: innermost first, each [`MergedFrame::Python`] an index into the thread's frames in the
/// [`strobe_walker::RawSample`] read at the instant of the capture, each
/// [`MergedFrame::Native`] into `native`.
#[derive(Debug, Clone, Copy)]
pub struct NativeStack<'a> {
    /// The merged frames, innermost first.
    pub merged: &'a [MergedFrame],
    /// The native frames `merged` refers to.
    pub native: &'a [NativeFrame],
    /// The thread was read preempted (runnable, off a CPU), without a stop, from the kernel's
    /// record of its preemption.
    pub preempted: bool,
    /// The thread was read asleep in the kernel, without a stop, and proven asleep through
    /// the capture's Python read: it did not run from before the capture to after it.
    pub asleep: bool,
    /// The thread was stopped: [`strobe_remote::perf_clock_ns`] while the stop held it; or
    /// read preempted from per-CPU records: its preemption's time. Either way switch records
    /// of the thread newer than this came after the capture.
    pub stopped_at_ns: Option<u64>,
}

/// A thread a native capture stopped while it was not asleep: in user space (running, or
/// preempted from a CPU), or inside a system call that was not a wait the stop interrupted
/// (on a CPU in the call, preempted in it, or woken from it and not yet given a CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoppedAwake {
    /// Its id, as seen from here.
    pub tid: i32,
    /// Whether it was stopped inside a system call.
    pub in_call: bool,
}

/// The target's modules, unwinder and symbol caches, built on the first native snapshot.
pub(crate) struct NativeState {
    modules: ModuleMap,
    unwinder: Unwinder,
    symbolizer: Symbolizer,
    /// Kept so that binaries stay parsed and mapped for the next snapshot, and for a reread
    /// of the module list ([`NativeState::refresh_modules`]).
    binaries: Binaries,
    /// When the module list was last read.
    modules_read: Instant,
    capturer: Capturer,
    /// The threads of the sampler's latest round captures, with their stack buffers (one
    /// pool for the round's phases): first the threads the round's
    /// [`NativeState::stop_first`] stopped, sorted by thread id, then those of its later
    /// captures.
    slots: Vec<Slot>,
    /// How many threads [`NativeState::stop_first`] stopped, until the round's
    /// `sample_round` takes them.
    first_count: Option<usize>,
    /// When the latest capture's read of the target ended.
    last_read: Option<Instant>,
    /// The latest capture's Python read of the threads it read preempted, before its stops
    /// (see [`capture::Read::Preempted`]): those threads are merged with their frames here.
    preempted_read: RawSample,
    /// The threads the latest round capture stopped while they were not asleep (see
    /// [`crate::Target::native_stopped_awake`]).
    pub(crate) stopped_awake: Vec<StoppedAwake>,
    unwound: Unwound,
    frames: Vec<NativeFrame>,
    merged: Vec<MergedFrame>,
    /// The modules of a core file: they never change, and there is no `/proc` to reread.
    of_core: bool,
}

impl fmt::Debug for NativeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeState").finish_non_exhaustive()
    }
}

/// What the native half of one thread gave.
pub(crate) struct ThreadNative {
    /// The thread's Python frames read at the instant of the capture (fresher than the
    /// snapshot's first walk), if the capture succeeded.
    pub(crate) python: Option<ThreadStack>,
    /// The merged stack, or why there is none.
    pub(crate) merged: Result<Vec<FrameSnapshot>, String>,
    /// The thread was read asleep, without a stop.
    asleep: bool,
}

/// Which thread [`NativeState::thread`] reads: thread `tid` (ours) of `pid`, known to the
/// interpreter as `pthread_t` `ident` in interpreter `interp`, merged by `shape`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NativeThread {
    pub(crate) pid: i32,
    pub(crate) tid: i32,
    pub(crate) ident: u64,
    pub(crate) interp: i64,
    pub(crate) shape: EvalShape,
}

impl NativeState {
    /// Read the target's modules. Problems with single modules (unreachable, replaced or
    /// unreadable files) become `warnings`; their frames are still shown by module+offset.
    pub(crate) fn new<M: RemoteMemory>(
        pid: i32,
        mem: &M,
        warnings: &mut Vec<String>,
    ) -> Result<NativeState, String> {
        let mut binaries = Binaries::new(DebugSearch::default());
        let (modules, problems) =
            ModuleMap::read(pid, mem, &mut binaries).map_err(|e| e.to_string())?;
        // Every Python stack runs through the interpreter and libc: their symbols are needed
        // by the first sample, so they are read now rather than during it.
        for m in modules.modules() {
            let name = m.id.short_name();
            if name.starts_with("python")
                || name.starts_with("libpython")
                || name.starts_with("libc.so")
            {
                if let Some(b) = &m.binary {
                    b.preload();
                }
            }
        }
        for problem in problems {
            warnings.push(format!(
                "native frames of a module are shown without symbols: {problem}"
            ));
        }
        Ok(NativeState {
            unwinder: Unwinder::new(&modules),
            modules,
            symbolizer: Symbolizer::new(),
            binaries,
            modules_read: Instant::now(),
            capturer: Capturer::default(),
            slots: Vec::new(),
            first_count: None,
            preempted_read: RawSample::new(),
            last_read: None,
            stopped_awake: Vec::new(),
            unwound: Unwound::default(),
            frames: Vec::new(),
            merged: Vec::new(),
            of_core: false,
        })
    }

    /// The modules of the process a core file holds: its `NT_FILE` mappings, the files found
    /// as the core found them (`--sysroot`, `--executable`). Problems with single modules
    /// become `warnings`.
    pub(crate) fn for_core<M: RemoteMemory>(
        core: &Core,
        mem: &M,
        warnings: &mut Vec<String>,
    ) -> NativeState {
        let maps = crate::attach::core_mappings(core, |m| core.mapping_executable(m));
        let mut binaries = Binaries::new(DebugSearch::default());
        let find = |path: &str| core.file(path).ok().map(|(p, _)| p);
        let root = core.sysroot().unwrap_or(Path::new("/"));
        let (modules, problems) =
            ModuleMap::from_core_mappings(&maps, mem, &mut binaries, root, &find);
        for problem in problems {
            warnings.push(format!(
                "native frames of a module are shown without symbols: {problem}"
            ));
        }
        NativeState {
            unwinder: Unwinder::new(&modules),
            modules,
            symbolizer: Symbolizer::new(),
            binaries,
            modules_read: Instant::now(),
            capturer: Capturer::default(),
            slots: Vec::new(),
            first_count: None,
            preempted_read: RawSample::new(),
            last_read: None,
            stopped_awake: Vec::new(),
            unwound: Unwound::default(),
            frames: Vec::new(),
            merged: Vec::new(),
            of_core: true,
        }
    }

    /// Thread `which` of a core file, whose registers the core gives in `regs`: its native
    /// stack (read from the core) unwound, symbolised and merged with its Python frames.
    pub(crate) fn core_thread<M: RemoteMemory>(
        &mut self,
        which: NativeThread,
        regs: &CoreThread,
        walker: &mut Walker<M>,
        missing_symbols: &mut BTreeSet<String>,
    ) -> ThreadNative {
        let failed = |why: String| ThreadNative {
            python: None,
            merged: Err(why),
            asleep: false,
        };
        // The stack from the stack pointer up, page by page, as far as the core holds it.
        let stack = &mut self.capturer.stack;
        stack.clear();
        let mut page = [0u8; 4096];
        let mut at = regs.rsp;
        while stack.len() < capture::STACK_BYTES {
            let len = (4096 - (at % 4096)) as usize;
            if walker.memory().read_into(at, &mut page[..len]).is_err() {
                break;
            }
            stack.extend_from_slice(&page[..len]);
            at += len as u64;
        }
        if stack.is_empty() {
            return failed("the core does not hold the thread's stack".to_string());
        }
        let python = match walker.walk() {
            Ok(stacks) => stacks
                .into_iter()
                .find(|t| t.thread_id == which.ident && t.interp_id == which.interp),
            Err(e) => return failed(python_failed(&e)),
        };
        let Some(python) = python else {
            return failed("the thread's Python frames were not found".to_string());
        };
        let captured = Captured {
            regs: UserRegs {
                ip: regs.rip,
                sp: regs.rsp,
                bp: Some(regs.rbp),
                bx: Some(regs.rbx),
            },
            kernel: regs
                .syscall
                .map(|nr| strobe_native::KernelBoundary { syscall: Some(nr) }),
            asleep: false,
            interrupted_wait: false,
            preempted: false,
            same_instant: true,
            stopped_at_ns: None,
            bounded: false,
        };
        let entries: Vec<bool> = python.frames.iter().map(|f| f.entry).collect();
        let merged = self.merge_captured(which, &captured, &entries, walker.memory());
        self.note_missing_symbols(missing_symbols);
        ThreadNative {
            merged: merged.map(|()| self.merged_frames(&python)),
            python: Some(python),
            asleep: false,
        }
    }

    /// Capture the thread `which` names, read the Python stacks at the same instant with
    /// `walker`, and merge that thread's native and Python frames.
    /// `missing_symbols` collects modules whose frames had no symbol at all.
    ///
    /// A sleeping thread is read without a stop first; that capture has no frame pointer
    /// register (the kernel does not report it for a blocked thread), so if its stack then
    /// does not merge, the thread is captured once more, stopped, with all its registers.
    pub(crate) fn thread<M: RemoteMemory>(
        &mut self,
        which: NativeThread,
        walker: &mut Walker<M>,
        missing_symbols: &mut BTreeSet<String>,
    ) -> ThreadNative {
        let first = self.thread_once(which, walker, missing_symbols, true);
        if first.merged.is_err() && first.asleep {
            self.thread_once(which, walker, missing_symbols, false)
        } else {
            first
        }
    }

    /// One capture and merge of [`NativeState::thread`]; `may_sleep`: a sleeping thread may
    /// be read without a stop.
    fn thread_once<M: RemoteMemory>(
        &mut self,
        which: NativeThread,
        walker: &mut Walker<M>,
        missing_symbols: &mut BTreeSet<String>,
        may_sleep: bool,
    ) -> ThreadNative {
        let NativeThread {
            pid,
            tid,
            ident,
            interp,
            ..
        } = which;
        let mut walked = None;
        let captured = self.capturer.capture(pid, tid, may_sleep, || {
            walked = Some(walker.walk());
        });
        let captured = match captured {
            Ok(c) => c,
            Err(e) => {
                return ThreadNative {
                    python: None,
                    merged: Err(e),
                    asleep: false,
                }
            }
        };
        let python = match walked {
            Some(Ok(stacks)) => stacks
                .into_iter()
                .find(|t| t.thread_id == ident && t.interp_id == interp),
            Some(Err(e)) => {
                return ThreadNative {
                    python: None,
                    merged: Err(python_failed(&e)),
                    asleep: captured.asleep,
                }
            }
            None => None,
        };
        let Some(python) = python else {
            return ThreadNative {
                python: None,
                merged: Err(
                    "the thread's Python frames were not found at the instant its \
                             native stack was taken (it ended or started meanwhile)"
                        .to_string(),
                ),
                asleep: captured.asleep,
            };
        };
        let entries: Vec<bool> = python.frames.iter().map(|f| f.entry).collect();
        let merged = self.merge_captured(which, &captured, &entries, walker.memory());
        self.note_missing_symbols(missing_symbols);
        let merged = merged.map(|()| self.merged_frames(&python));
        ThreadNative {
            python: Some(python),
            merged,
            asleep: captured.asleep,
        }
    }
}

impl NativeState {
    /// Add the modules of the last unwound frames that had no symbol at all.
    fn note_missing_symbols(&self, missing_symbols: &mut BTreeSet<String>) {
        for f in &self.frames {
            if f.source == SymbolSource::None {
                if let Some(m) = &f.module {
                    if m.path != "[anon]" {
                        missing_symbols.insert(m.path.clone());
                    }
                }
            }
        }
    }

    /// The last merge as snapshot frames, Python frames taken from `python`.
    fn merged_frames(&self, python: &ThreadStack) -> Vec<FrameSnapshot> {
        self.merged
            .iter()
            .map(|m| match *m {
                MergedFrame::Python(i) => python_frame(python, i),
                MergedFrame::Native(i) => native_frame(&self.frames[i]),
                MergedFrame::Kernel(_) => FrameSnapshot {
                    function: KERNEL_FRAME.to_string(),
                    filename: String::new(),
                    line: None,
                    kind: FrameKind::Kernel,
                    native: None,
                    locals: None,
                    locals_error: None,
                },
                MergedFrame::Truncated => FrameSnapshot {
                    function: TRUNCATED_FRAME.to_string(),
                    filename: String::new(),
                    line: None,
                    kind: FrameKind::Native,
                    native: None,
                    locals: None,
                    locals_error: None,
                },
            })
            .collect()
    }

    /// [`NativeState::unwind_and_merge`] of the capture in [`Capturer::stack`].
    fn merge_captured<M: RemoteMemory>(
        &mut self,
        which: NativeThread,
        captured: &Captured,
        entries: &[bool],
        mem: &M,
    ) -> Result<(), String> {
        let stack = std::mem::take(&mut self.capturer.stack);
        let merged = self.unwind_and_merge(which, captured, &stack, entries, mem);
        self.capturer.stack = stack;
        merged
    }

    /// Unwind, symbolise and merge the capture `captured`, whose stack bytes are `stack`, with
    /// the Python frames whose entry flags are `entries`, into `self.merged` and
    /// `self.frames`; the reason if they do not merge. Code outside every known module makes
    /// the module list be read again.
    fn unwind_and_merge<M: RemoteMemory>(
        &mut self,
        which: NativeThread,
        captured: &Captured,
        stack: &[u8],
        entries: &[bool],
        mem: &M,
    ) -> Result<(), String> {
        self.unwinder
            .unwind(&captured.regs, stack, &mut self.unwound);
        self.frames.clear();
        self.symbolizer
            .symbolize(&self.modules, &self.unwound, &mut self.frames);
        let end = match self.unwound.end {
            Some(UnwindEnd::Complete) => NativeEnd::Complete,
            _ => NativeEnd::Truncated,
        };
        let merged = merge(
            which.shape,
            &self.frames,
            end,
            entries,
            captured.kernel,
            captured.same_instant,
            &mut self.merged,
        );
        if !self.of_core {
            // Only a stack that merged is trusted to show where the thread's outermost frames
            // are (an unwind from a guessed frame pointer may complete through garbage).
            self.capturer
                .learn_reach(which.tid, &self.unwound, merged.is_ok());
        }
        if !self.of_core && self.frames.iter().any(|f| f.module.is_none()) {
            // Code the module list does not know (a library loaded since): read it again, so
            // the next samples name it.
            self.refresh_modules(which.pid, mem);
        }
        merged.map_err(|e| match &self.unwound.end {
            Some(UnwindEnd::Stopped(why)) => {
                format!("{e} (the native unwind stopped early: {why})")
            }
            _ => e.to_string(),
        })
    }

    /// The native stack of thread `which.tid` of a process `freeze` holds stopped, merged with
    /// the Python frames whose entry flags are `entries`, read during the same freeze: one
    /// instant for the whole process (`--blocking`), no further stop.
    pub(crate) fn frozen_thread<M: RemoteMemory>(
        &mut self,
        which: NativeThread,
        freeze: &Freeze,
        entries: &[bool],
        mem: &M,
    ) -> Result<NativeStack<'_>, String> {
        let span = self.capturer.span(which.tid);
        let (regs, syscall) = freeze
            .capture(which.tid, span, &mut self.capturer.stack)
            .map_err(|e| e.to_string())?;
        let captured = Captured {
            regs,
            kernel: syscall.map(|nr| strobe_native::KernelBoundary { syscall: Some(nr) }),
            asleep: false,
            interrupted_wait: false,
            preempted: false,
            same_instant: true,
            stopped_at_ns: None,
            bounded: span.bytes_from(regs.sp) < span.max,
        };
        self.merge_captured(which, &captured, entries, mem)?;
        Ok(NativeStack {
            merged: &self.merged,
            native: &self.frames,
            preempted: false,
            asleep: false,
            stopped_at_ns: None,
        })
    }

    /// Lines for the user from the captures since the last call (a change of capture method,
    /// said once).
    pub(crate) fn take_warnings(&mut self) -> Vec<String> {
        self.capturer.take_warnings()
    }

    /// Read the module list again (rate-limited), keeping parsed binaries and symbols.
    fn refresh_modules<M: RemoteMemory>(&mut self, pid: i32, mem: &M) {
        if self.modules_read.elapsed() < MODULES_REREAD_EVERY {
            return;
        }
        self.modules_read = Instant::now();
        if let Ok((modules, _)) = ModuleMap::read(pid, mem, &mut self.binaries) {
            self.unwinder = Unwinder::new(&modules);
            self.modules = modules;
        }
    }
}

pub(crate) fn python_failed(e: &WalkError) -> String {
    format!("reading the Python frames at the instant of the native capture failed: {e}")
}

fn python_frame(stack: &ThreadStack, i: usize) -> FrameSnapshot {
    let f = &stack.frames[i];
    FrameSnapshot::python(
        f.function.to_string(),
        f.filename.to_string(),
        f.line.and_then(|l| u32::try_from(l).ok()),
    )
}

fn native_frame(f: &NativeFrame) -> FrameSnapshot {
    let module = f.module.as_ref().map(|m| m.path.clone());
    let function = match &f.function {
        Some(name) => name.to_string(),
        None => format!(
            "{}+{:#x}",
            f.module.as_ref().map_or("?", |m| m.short_name()),
            f.module_offset
        ),
    };
    FrameSnapshot {
        function,
        filename: f.file.as_deref().unwrap_or("").to_string(),
        line: f.line,
        kind: FrameKind::Native,
        native: Some(NativeFrameInfo {
            module,
            module_offset: f.module_offset,
            symbol_offset: f.function_offset,
            inlined: f.inlined,
        }),
        locals: None,
        locals_error: None,
    }
}
