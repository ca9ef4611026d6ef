//! Native frames for a snapshot: each thread's registers and native stack, taken at the same
//! instant as its Python frames, unwound, symbolised and merged with them.
//!
//! Per thread, the least disturbing capture that is consistent:
//! - a thread asleep in the kernel is read without stopping it ([`BlockedThread`]); its
//!   Python frames are read while it still sleeps, proven by its scheduler run count
//!   (`/proc/PID/task/TID/schedstat`) being the same before the native capture and after
//!   the Python read;
//! - otherwise only that thread is stopped ([`ThreadTracer`]), and its Python frames are read
//!   during the stop.
//!
//! The module map, unwind rules and symbols are kept in the [`Target`](crate::Target), so a
//! second snapshot reuses them.

use std::collections::BTreeSet;
use std::fmt;

use strobe_memory::RemoteMemory;
use strobe_native::{
    merge, Binaries, DebugSearch, EvalShape, KernelBoundary, MergedFrame, ModuleMap, NativeEnd,
    NativeFrame, SymbolSource, Symbolizer, UnwindEnd, Unwinder, Unwound,
};
use strobe_remote::{BlockedThread, StackError, ThreadTracer, UserRegs};
use strobe_walker::walk::{ThreadStack, Walker};
use strobe_walker::WalkError;

use crate::snapshot::{FrameKind, FrameSnapshot, NativeFrameInfo};

/// Bytes of stack copied from the stack pointer up.
const STACK_BYTES: usize = 256 * 1024;

/// The target's modules, unwinder and symbol caches, built on the first native snapshot.
pub(crate) struct NativeState {
    modules: ModuleMap,
    unwinder: Unwinder,
    symbolizer: Symbolizer,
    /// Kept so that binaries stay parsed and mapped for the next snapshot.
    _binaries: Binaries,
    stack: Vec<u8>,
    unwound: Unwound,
    frames: Vec<NativeFrame>,
    merged: Vec<MergedFrame>,
}

impl fmt::Debug for NativeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeState").finish_non_exhaustive()
    }
}

/// One thread's capture: registers, where it was in the kernel, and how it was taken.
struct Captured {
    regs: UserRegs,
    kernel: Option<KernelBoundary>,
    /// Read asleep, without a stop.
    asleep: bool,
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
        for problem in problems {
            warnings.push(format!(
                "native frames of a module are shown without symbols: {problem}"
            ));
        }
        Ok(NativeState {
            unwinder: Unwinder::new(&modules),
            modules,
            symbolizer: Symbolizer::new(),
            _binaries: binaries,
            stack: Vec::new(),
            unwound: Unwound::default(),
            frames: Vec::new(),
            merged: Vec::new(),
        })
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
            shape,
        } = which;
        let mut walked = None;
        let captured = capture(pid, tid, &mut self.stack, may_sleep, || {
            walked = Some(walker.walk());
        });
        let captured = match captured {
            Ok(c) => c,
            Err(e) => {
                return ThreadNative {
                    python: None,
                    merged: Err(e.to_string()),
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
        self.unwinder
            .unwind(&captured.regs, &self.stack, &mut self.unwound);
        self.frames.clear();
        self.symbolizer
            .symbolize(&self.modules, &self.unwound, &mut self.frames);
        for f in &self.frames {
            if f.source == SymbolSource::None {
                if let Some(m) = &f.module {
                    if m.path != "[anon]" {
                        missing_symbols.insert(m.path.clone());
                    }
                }
            }
        }
        let end = match self.unwound.end {
            Some(UnwindEnd::Complete) => NativeEnd::Complete,
            _ => NativeEnd::Truncated,
        };
        let entries: Vec<bool> = python.frames.iter().map(|f| f.entry).collect();
        let merged = merge(
            shape,
            &self.frames,
            end,
            &entries,
            captured.kernel,
            &mut self.merged,
        );
        let merged = match merged {
            Ok(()) => Ok(self
                .merged
                .iter()
                .map(|m| match *m {
                    MergedFrame::Python(i) => python_frame(&python, i),
                    MergedFrame::Native(i) => native_frame(&self.frames[i]),
                    MergedFrame::Kernel(_) => FrameSnapshot {
                        function: "[syscall]".to_string(),
                        filename: String::new(),
                        line: None,
                        kind: FrameKind::Kernel,
                        native: None,
                    },
                    MergedFrame::Truncated => FrameSnapshot {
                        function: "[native stack cut short: outer frames unknown]".to_string(),
                        filename: String::new(),
                        line: None,
                        kind: FrameKind::Native,
                        native: None,
                    },
                })
                .collect()),
            Err(e) => Err(match &self.unwound.end {
                Some(UnwindEnd::Stopped(why)) => {
                    format!("{e} (the native unwind stopped early: {why})")
                }
                _ => e.to_string(),
            }),
        };
        ThreadNative {
            python: Some(python),
            merged,
            asleep: captured.asleep,
        }
    }
}

fn python_failed(e: &WalkError) -> String {
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
    }
}

/// The scheduler's count of times thread `tid` was put on a CPU, if the kernel keeps it.
fn run_count(pid: i32, tid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    text.split_ascii_whitespace().nth(2)?.parse().ok()
}

/// Registers and stack of thread `tid` into `stack`, with `during` run at the same instant:
/// while the thread provably sleeps, or else while it is stopped.
fn capture(
    pid: i32,
    tid: i32,
    stack: &mut Vec<u8>,
    may_sleep: bool,
    mut during: impl FnMut(),
) -> Result<Captured, StackError> {
    // Asleep: no stop at all, if the run count proves it slept through the Python read.
    let blocked = if may_sleep {
        run_count(pid, tid).zip(BlockedThread::open(pid, tid).ok())
    } else {
        None
    };
    if let Some((before, mut blocked)) = blocked {
        if let Ok(c) = blocked.capture(STACK_BYTES, stack) {
            during();
            if run_count(pid, tid) == Some(before) {
                return Ok(Captured {
                    regs: c.regs,
                    kernel: Some(KernelBoundary {
                        syscall: u64::try_from(c.state.nr).ok(),
                    }),
                    asleep: true,
                });
            }
        }
    }
    let mut tracer = ThreadTracer::seize(pid, tid)?;
    let (c, ()) = tracer.capture_with(STACK_BYTES, stack, during)?;
    Ok(Captured {
        regs: c.regs,
        kernel: None,
        asleep: false,
    })
}
