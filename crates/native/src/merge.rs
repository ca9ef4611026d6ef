//! The merge of one thread's native and Python frames into one stack in call order.
//!
//! A pure function: it reads nothing and guesses nothing. Its inputs are the thread's unwound,
//! symbolised native frames and the entry flag of each of its Python frames, both innermost
//! first and taken at the same instant; its output says, frame by frame, which native frame or
//! which Python frame comes next.
//!
//! # The rules
//! 1. **Evaluation loops.** Each native frame that runs CPython's evaluation loop is replaced by
//!    the Python frames that call evaluated. Which function is the loop depends on the version
//!    ([`EvalShape`]): `PyEval_EvalFrameEx` up to 2.7; `_PyEval_EvalFrameDefault` from 3.6 on
//!    (where `PyEval_EvalFrameEx` became a wrapper that calls it). Compiler-split parts
//!    (`_PyEval_EvalFrameDefault.cold`, `.part.N`, ...) are the same call: a frame's return
//!    address is in one part or the other, never both. 3.14's tail-calling interpreter runs
//!    opcodes in `_TAIL_CALL_*` functions called from the loop: plumbing (rule 3).
//! 2. **Which Python frames each loop call evaluated.** Up to 3.10 every Python frame is its
//!    own call of the loop. From 3.11 one call runs a run of frames: the innermost frames up to
//!    and including the first *entry* frame (3.11: `_PyInterpreterFrame.is_entry`; 3.12+: the
//!    frame just below is the shim frame owned by `FRAME_OWNED_BY_CSTACK` in 3.12-3.13 or
//!    `FRAME_OWNED_BY_INTERPRETER` in 3.14+). The innermost loop call gets the innermost run,
//!    and so on outwards. The numbers must be equal, else [`MergeError`]; the one exception is
//!    a native stack cut short (the capture's byte limit), whose loops take the innermost runs
//!    and whose remaining runs follow a [`MergedFrame::Truncated`] marker.
//! 3. **Interpreter plumbing is hidden**: the functions of the interpreter's own module (the
//!    one the evaluation loop is in, so an extension's function of the same name is kept) that
//!    only pass a call on to Python code or to a C function: [`is_plumbing`] has the list.
//!    The 3.12+ `perf` trampolines (`-X perf`) are the frame that calls the loop, not a loop:
//!    hidden with their evaluator (`py_trampoline_evaluator`), whether the module map
//!    recognised their memory ([`crate::PERF_TRAMPOLINES`]) or they are unnamed anonymous code
//!    between a loop and the interpreter's frame that called them (the evaluator, or its
//!    caller where the evaluator tail-calls them). Anonymous code elsewhere (a JIT's) is kept.
//! 4. Every other native frame is kept where it is, and a thread known to be in the kernel
//!    gets a [`MergedFrame::Kernel`] frame innermost.
//! 5. **A loop call entering or leaving.** A loop call links its first Python frame into the
//!    thread state a few instructions after it starts (3.11+: `cframe.current_frame = frame`
//!    next to the entry frame; up to 3.10: `tstate->frame = f`) and unlinks its last one just
//!    before it returns. Caught in between, the C stack has one loop call more than the Python
//!    stack has runs, and it is the innermost one: an outer call's frames stay linked for as
//!    long as an inner call runs. When both stacks are of the same instant (a stopped thread,
//!    or a sleeping one proven asleep throughout), that innermost call is hidden like plumbing:
//!    nothing is guessed, the thread is calling into Python code that has not started yet (or
//!    has just returned). Stacks not proven to be of one instant (perf event snapshots) get
//!    [`MergeError::Mismatch`] instead. At 1 kHz on threads that call Python from C in a tight
//!    loop, this state was about 0.6% of the samples.

use crate::frame::NativeFrame;
use crate::modules::PERF_TRAMPOLINES;

/// How the evaluation loop of a CPython version maps to Python frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalShape {
    /// 2.7 (and 3.0-3.5): `PyEval_EvalFrameEx` is the loop, one call per Python frame.
    EvalFrameEx,
    /// 3.6-3.10: `_PyEval_EvalFrameDefault` is the loop, one call per Python frame.
    FramePerCall,
    /// 3.11+: `_PyEval_EvalFrameDefault`, one call per run of frames ending at an entry frame.
    EntryRuns,
}

impl EvalShape {
    /// The shape of CPython `major.minor`.
    pub fn for_version(major: u8, minor: u8) -> EvalShape {
        match (major, minor) {
            (..=2, _) | (3, ..=5) => EvalShape::EvalFrameEx,
            (3, 6..=10) => EvalShape::FramePerCall,
            _ => EvalShape::EntryRuns,
        }
    }

    /// Whether `name` (without a `.cold`-style suffix) is this version's evaluation loop.
    fn is_loop(self, name: &str) -> bool {
        match self {
            EvalShape::EvalFrameEx => name == "PyEval_EvalFrameEx",
            EvalShape::FramePerCall | EvalShape::EntryRuns => name == "_PyEval_EvalFrameDefault",
        }
    }
}

/// The name a [`MergedFrame::Kernel`] frame is shown by.
pub const KERNEL_FRAME: &str = "[syscall]";
/// The name a [`MergedFrame::Truncated`] marker is shown by.
pub const TRUNCATED_FRAME: &str = "[native stack cut short: outer frames unknown]";

/// Where the thread was in the kernel when it was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelBoundary {
    /// The system call number, if the thread is in one and it is known.
    pub syscall: Option<u64>,
}

/// One frame of a merged stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergedFrame {
    /// The thread is in the kernel (innermost frame only).
    Kernel(KernelBoundary),
    /// The native frame at this index of the input.
    Native(usize),
    /// The Python frame at this index of the input.
    Python(usize),
    /// The native stack ends here because its capture was cut short; the Python frames that
    /// follow were evaluated by loops further out, with unknown native frames in between.
    Truncated,
}

/// Whether the unwinder reached the outermost native frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeEnd {
    /// The unwind reached the thread's first frame.
    Complete,
    /// The unwind stopped early (the captured stack bytes ran out, or an address could not be
    /// unwound): outer frames are missing.
    Truncated,
}

/// Why a stack could not be merged. The sample keeps its Python frames; the reason is counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// The native stack has a different number of evaluation loop calls than the Python stack
    /// needs.
    #[error(
        "{loops} evaluation loop{} on the C stack, {runs} run{} of Python frames: the two \
         stacks do not describe the same instant (the thread was between pushing a frame and \
         evaluating it, or the stacks were read at different times); the sample keeps its \
         Python frames only. Rare failures are expected; if most samples fail, report it with \
         the Python version and how the stacks were captured",
        plural(*loops),
        plural(*runs)
    )]
    Mismatch {
        /// Evaluation loop calls found among the native frames.
        loops: usize,
        /// Runs of Python frames, each evaluated by one loop call.
        runs: usize,
    },
    /// From 3.11 the outermost Python frame is always entered from C; here it is not, so the
    /// Python stack is missing frames.
    #[error(
        "the outermost Python frame is not an entry frame, so the Python stack is incomplete \
         (cut at the walker's depth limit?); the sample keeps its Python frames only. If \
         stacks are that deep, raise the depth limit"
    )]
    OpenRun,
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A function name without the suffix the compiler gives a split or specialised part of it
/// (`.cold`, `.part.0`, `.isra.0`, `.constprop.0`, `.lto_priv.0`); C names have no dot.
fn base_name(name: &str) -> &str {
    name.split_once('.').map_or(name, |(base, _)| base)
}

/// Interpreter functions hidden from merged stacks: they only pass a call on (to Python code
/// through the evaluation loop, or to a C function), so the Python line that made the call and
/// the function called say everything. Applied to frames of the interpreter's module only.
///
/// Exact names:
/// - calling: `PyObject_Call`, `PyObject_CallObject`, `PyObject_CallOneArg`,
///   `PyObject_CallNoArgs`, `PyObject_VectorcallDict`, `PyVectorcall_Call`,
///   `_PyVectorcall_Call`, `PyCFunction_Call`, `PyEval_CallObjectWithKeywords`,
///   `PyEval_CallFunction`, `PyEval_CallMethod`, `call_function`, `do_call` (2.7), `do_call_core`,
///   `ext_do_call`, `fast_function`, `function_call`, `function_code_fastcall`,
///   `instancemethod_call`, `method_call`, `methoddescr_call`, `wrapperdescr_call`,
///   `wrapper_call`, `cfunction_call`, `cfunction_call_varargs`, `type_call`,
///   `vectorcall_method`, `vectorcall_unbound`, `vectorcall_maybe`, `call_unbound`,
///   `call_unbound_noarg`, `_PyObject_MakeTpCall`;
/// - running code: `PyEval_EvalCode`, `PyEval_EvalCodeEx`, `_PyEval_EvalCode`,
///   `_PyEval_EvalCodeWithName`, `_PyEval_Vector`, `_PyEval_EvalFrame`, `PyEval_EvalFrame`,
///   `PyEval_EvalFrameEx` (3.6+, where it wraps the loop), `run_eval_code_obj`, `run_mod`,
///   `builtin_exec`, `builtin_exec_impl`, `builtin_eval`, `builtin_eval_impl`;
/// - generators resumed from C: `gen_send_ex`, `gen_send_ex2`, `gen_iternext`, `gen_send`,
///   `gen_throw`, `_gen_throw`;
/// - `perf` trampolines (3.12+): `py_trampoline_evaluator`, `_Py_trampoline_func_start`.
///
/// Prefixes: `PyObject_Vectorcall`, `PyObject_CallFunction`, `PyObject_CallMethod`,
/// `_PyObject_Call` (`_PyObject_Call`, `_PyObject_CallMethod*`, `_PyObject_Call_Prepend`, ...),
/// `_PyObject_FastCall`, `_PyObject_Vectorcall` (`_PyObject_VectorcallTstate`, ...),
/// `_PyFunction_Vectorcall`, `_PyFunction_FastCall`, `_PyCFunction_FastCall`,
/// `_PyMethodDef_RawFastCall`, `_PyMethodDescr_FastCall`, `cfunction_vectorcall`,
/// `method_vectorcall`, `slot_tp_`, `slot_nb_`, `slot_sq_`, `slot_mp_`, `slot_am_` (the C
/// side of dunder methods defined in Python), `_TAIL_CALL_` (3.14's tail-calling
/// interpreter), and `py::` (trampoline names from a `perf` map; in anonymous memory, so the
/// merge hides them whatever their module).
///
/// Kept on purpose: where a thread or the program starts (`main`, `Py_RunMain`, `pymain_*`,
/// `PyRun_*`, `thread_run`, `pythread_wrapper`), operations that do work before they call
/// back (`PyObject_RichCompare`, `list_sort_impl`, `builtin_next`), and everything outside the
/// interpreter's module.
pub fn is_plumbing(shape: EvalShape, name: &str) -> bool {
    const EXACT: &[&str] = &[
        "PyObject_Call",
        "PyObject_CallObject",
        "PyObject_CallOneArg",
        "PyObject_CallNoArgs",
        "PyObject_VectorcallDict",
        "PyVectorcall_Call",
        "_PyVectorcall_Call",
        "PyCFunction_Call",
        "PyEval_CallObjectWithKeywords",
        "PyEval_CallFunction",
        "PyEval_CallMethod",
        "call_function",
        "do_call",
        "do_call_core",
        "ext_do_call",
        "fast_function",
        "function_call",
        "function_code_fastcall",
        "instancemethod_call",
        "method_call",
        "methoddescr_call",
        "wrapperdescr_call",
        "wrapper_call",
        "cfunction_call",
        "cfunction_call_varargs",
        "type_call",
        "vectorcall_method",
        "vectorcall_unbound",
        "vectorcall_maybe",
        "call_unbound",
        "call_unbound_noarg",
        "_PyObject_MakeTpCall",
        "PyEval_EvalCode",
        "PyEval_EvalCodeEx",
        "_PyEval_EvalCode",
        "_PyEval_EvalCodeWithName",
        "_PyEval_Vector",
        "_PyEval_EvalFrame",
        "PyEval_EvalFrame",
        "run_eval_code_obj",
        "run_mod",
        "builtin_exec",
        "builtin_exec_impl",
        "builtin_eval",
        "builtin_eval_impl",
        "gen_send_ex",
        "gen_send_ex2",
        "gen_iternext",
        "gen_send",
        "gen_throw",
        "_gen_throw",
        "py_trampoline_evaluator",
        "_Py_trampoline_func_start",
    ];
    const PREFIXES: &[&str] = &[
        "PyObject_Vectorcall",
        "PyObject_CallFunction",
        "PyObject_CallMethod",
        "_PyObject_Call",
        "_PyObject_FastCall",
        "_PyObject_Vectorcall",
        "_PyFunction_Vectorcall",
        "_PyFunction_FastCall",
        "_PyCFunction_FastCall",
        "_PyMethodDef_RawFastCall",
        "_PyMethodDescr_FastCall",
        "cfunction_vectorcall",
        "method_vectorcall",
        "slot_tp_",
        "slot_nb_",
        "slot_sq_",
        "slot_mp_",
        "slot_am_",
        "_TAIL_CALL_",
        // 3.15: ceval.c's helpers that make a call from the loop with instrumentation.
        "_Py_VectorCallInstrumentation",
    ];
    if name.starts_with("py::") {
        return true;
    }
    let name = base_name(name);
    if name == "PyEval_EvalFrameEx" {
        // The loop itself up to 3.5, a wrapper around `_PyEval_EvalFrameDefault` after.
        return shape != EvalShape::EvalFrameEx;
    }
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Python frames grouped by the loop call that evaluates them: each range is a run of
/// indices into the Python frames, innermost run first.
fn runs(shape: EvalShape, entries: &[bool]) -> Result<Vec<std::ops::Range<usize>>, MergeError> {
    match shape {
        EvalShape::EvalFrameEx | EvalShape::FramePerCall => {
            Ok((0..entries.len()).map(|i| i..i + 1).collect())
        }
        EvalShape::EntryRuns => {
            let mut out = Vec::new();
            let mut start = 0;
            for (i, &entry) in entries.iter().enumerate() {
                if entry {
                    out.push(start..i + 1);
                    start = i + 1;
                }
            }
            if start != entries.len() {
                return Err(MergeError::OpenRun);
            }
            Ok(out)
        }
    }
}

fn is_anonymous(frame: &NativeFrame) -> bool {
    frame.function.is_none() && frame.module.as_ref().is_none_or(|m| m.path == "[anon]")
}

/// Merge one thread's stacks (see the module documentation for the rules).
///
/// `native`: the thread's native frames, innermost first (inlined functions as their own
/// frames, as [`crate::Symbolizer`] gives them); `end`: whether their unwind was complete;
/// `python_entries`: for each Python frame, innermost first, whether it is an entry frame
/// (ignored up to 3.10, where every frame is its own loop call); `kernel`: where the thread
/// was in the kernel, if it was; `same_instant`: both stacks were provably taken at the same
/// instant (the thread stopped, or asleep throughout), which allows rule 5. The result is
/// written into `out` (cleared first).
pub fn merge(
    shape: EvalShape,
    native: &[NativeFrame],
    end: NativeEnd,
    python_entries: &[bool],
    kernel: Option<KernelBoundary>,
    same_instant: bool,
    out: &mut Vec<MergedFrame>,
) -> Result<(), MergeError> {
    out.clear();
    let runs = runs(shape, python_entries)?;
    let is_loop = |f: &NativeFrame| {
        f.function
            .as_deref()
            .is_some_and(|n| shape.is_loop(base_name(n)))
    };
    let loops = native.iter().filter(|f| is_loop(f)).count();
    let cut = end == NativeEnd::Truncated && loops < runs.len();
    // Rule 5: one loop call more than runs, at one instant: the innermost call is entering
    // its first frame or leaving its last.
    let entering = same_instant && loops == runs.len() + 1;
    if loops != runs.len() && !cut && !entering {
        return Err(MergeError::Mismatch {
            loops,
            runs: runs.len(),
        });
    }
    let mut skip_loop = entering;
    // The interpreter's module: the one its loop is in.
    let interpreter = native
        .iter()
        .find(|f| is_loop(f))
        .and_then(|f| f.module.as_ref());
    if let Some(k) = kernel {
        out.push(MergedFrame::Kernel(k));
    }
    let mut next_run = runs.iter();
    for (i, frame) in native.iter().enumerate() {
        if is_loop(frame) {
            if skip_loop {
                // Rule 5: evaluating nothing yet (or any more); hidden like plumbing.
                skip_loop = false;
                continue;
            }
            // Exactly as many loops as runs (or fewer, when cut): there is a run for it.
            if let Some(run) = next_run.next() {
                out.extend(run.clone().map(MergedFrame::Python));
            }
            continue;
        }
        let ours = interpreter.is_some() && frame.module.as_ref() == interpreter;
        let hidden = match frame.function.as_deref() {
            // Trampolines named by a perf map live in anonymous memory, not in the module.
            Some(name) => {
                (ours && is_plumbing(shape, name))
                    || (interpreter.is_some() && name.starts_with("py::"))
            }
            // A perf trampoline: recognised by the module map, or anonymous code called by the
            // interpreter (its evaluator, or whatever called that, when the evaluator tail-calls
            // the trampoline) that calls the loop.
            None => {
                interpreter.is_some()
                    && (frame
                        .module
                        .as_ref()
                        .is_some_and(|m| m.path == PERF_TRAMPOLINES)
                        || (is_anonymous(frame)
                            && i > 0
                            && is_loop(&native[i - 1])
                            && native
                                .get(i + 1)
                                .is_some_and(|outer| outer.module.as_ref() == interpreter)))
            }
        };
        if !hidden {
            out.push(MergedFrame::Native(i));
        }
    }
    let rest: Vec<_> = next_run.collect();
    if !rest.is_empty() {
        out.push(MergedFrame::Truncated);
        for run in rest {
            out.extend(run.clone().map(MergedFrame::Python));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
