//! Unit tests of the parent module.

use super::*;
use crate::frame::{SymbolSource, UnwindMethod};
use crate::modules::ModuleId;
use std::sync::Arc;

const LIBPYTHON: &str = "/usr/lib/libpython3.so";

#[test]
fn call_helpers_of_each_version_are_plumbing() {
    let shape = EvalShape::EntryRuns;
    for name in [
        "_Py_VectorCallInstrumentation_StackRefSteal",
        "_Py_VectorCallInstrumentation_StackRefSteal.constprop.0",
        "_PyFunction_Vectorcall",
        "PyObject_Call",
    ] {
        assert!(is_plumbing(shape, name), "{name}");
    }
    for name in ["_thread_lock_acquire", "list_sort", "PyObject_RichCompare"] {
        assert!(!is_plumbing(shape, name), "{name}");
    }
}

fn module(path: &str) -> Arc<ModuleId> {
    Arc::new(ModuleId {
        path: path.to_string(),
        build_id: None,
    })
}

/// A frame `name` in module `path`; `[anon]` frames have no name.
fn f(path: &str, name: &str) -> NativeFrame {
    NativeFrame {
        address: 0x1000,
        module: Some(module(path)),
        module_offset: 0x1000,
        function: (!name.is_empty()).then(|| Arc::from(name)),
        function_offset: None,
        file: None,
        line: None,
        inlined: false,
        unwound_by: UnwindMethod::Cfi,
        source: SymbolSource::SymbolTable,
    }
}

fn py(name: &str) -> NativeFrame {
    f(LIBPYTHON, name)
}

/// The merged stack as text: `P0` for Python frame 0, native frames by name.
fn render(native: &[NativeFrame], merged: &[MergedFrame]) -> Vec<String> {
    merged
        .iter()
        .map(|m| match m {
            MergedFrame::Kernel(k) => format!("[syscall {:?}]", k.syscall),
            MergedFrame::Native(i) => native[*i]
                .function
                .as_deref()
                .map_or_else(|| "[anon]".to_string(), str::to_string),
            MergedFrame::Python(i) => format!("P{i}"),
            MergedFrame::Truncated => "...".to_string(),
        })
        .collect()
}

fn run(
    shape: EvalShape,
    native: &[NativeFrame],
    entries: &[bool],
) -> Result<Vec<String>, MergeError> {
    let mut out = Vec::new();
    merge(
        shape,
        native,
        NativeEnd::Complete,
        entries,
        None,
        false,
        &mut out,
    )?;
    Ok(render(native, &out))
}

/// The bottom of a main thread, outermost last.
fn main_bottom() -> Vec<NativeFrame> {
    vec![
        py("PyEval_EvalCode"),
        py("run_eval_code_obj"),
        py("run_mod"),
        py("_PyRun_SimpleFileObject"),
        py("Py_RunMain"),
        py("main"),
        f("/usr/lib/libc.so.6", "__libc_start_main"),
    ]
}

fn kept_bottom() -> Vec<&'static str> {
    vec![
        "_PyRun_SimpleFileObject",
        "Py_RunMain",
        "main",
        "__libc_start_main",
    ]
}

/// Python (P0 P1) → C qsort → Python (P2 P3), for each version's frame shape.
#[test]
fn python_c_python_per_shape() {
    let libc = "/usr/lib/libc.so.6";
    let ctypes = "/usr/lib/_ctypes.so";
    // ≤3.10: one loop per Python frame, with the call plumbing of 3.8-3.10 in between.
    let mut native = vec![
        f(libc, "__futex_abstimed_wait_common"),
        py("_PyEval_EvalFrameDefault"),
        py("_PyFunction_Vectorcall"),
        py("_PyEval_EvalFrameDefault"),
        py("function_code_fastcall"),
        py("_PyObject_Call"),
        f(ctypes, "_CallPythonObject"),
        f(ctypes, "closure_fcn"),
        f(libc, "msort_with_tmp"),
        f(libc, "qsort_r"),
        f(ctypes, "ffi_call_unix64"),
        f(ctypes, "_ctypes_callproc"),
        f(ctypes, "PyCFuncPtr_call"),
        py("_PyObject_MakeTpCall"),
        py("_PyEval_EvalFrameDefault"),
        py("_PyFunction_Vectorcall"),
        py("_PyEval_EvalFrameDefault"),
    ];
    native.extend(main_bottom());
    let mut want = vec![
        "__futex_abstimed_wait_common",
        "P0",
        "P1",
        "_CallPythonObject",
        "closure_fcn",
        "msort_with_tmp",
        "qsort_r",
        "ffi_call_unix64",
        "_ctypes_callproc",
        "PyCFuncPtr_call",
        "P2",
        "P3",
    ];
    want.extend(kept_bottom());
    let entries = [false; 4];
    assert_eq!(
        run(EvalShape::FramePerCall, &native, &entries).unwrap(),
        want
    );

    // 3.11+: one loop runs P0-P1 (P1 entered from C), another P2-P3.
    let mut native = vec![
        f(libc, "__futex_abstimed_wait_common"),
        py("_PyEval_EvalFrameDefault"),
        py("_PyEval_Vector"),
        py("_PyFunction_Vectorcall"),
        py("_PyObject_Call"),
        f(ctypes, "_CallPythonObject"),
        f(libc, "qsort_r"),
        f(ctypes, "_ctypes_callproc"),
        f(ctypes, "PyCFuncPtr_call"),
        py("_PyObject_MakeTpCall"),
        py("_PyEval_EvalFrameDefault"),
    ];
    native.extend(main_bottom());
    let mut want = vec![
        "__futex_abstimed_wait_common",
        "P0",
        "P1",
        "_CallPythonObject",
        "qsort_r",
        "_ctypes_callproc",
        "PyCFuncPtr_call",
        "P2",
        "P3",
    ];
    want.extend(kept_bottom());
    // 3.11 (is_entry) and 3.12+ (shim below) both come down to these flags.
    let entries = [false, true, false, true];
    assert_eq!(run(EvalShape::EntryRuns, &native, &entries).unwrap(), want);
    // Read with the ≤3.10 rule, the same stack has too few loops.
    assert_eq!(
        run(EvalShape::FramePerCall, &native, &entries),
        Err(MergeError::Mismatch { loops: 2, runs: 4 })
    );
}

/// 2.7: `PyEval_EvalFrameEx` is the loop; in 3.6+ it is a wrapper and hidden.
#[test]
fn eval_frame_ex_is_the_loop_only_in_2_7() {
    let native = vec![
        py("PyEval_EvalFrameEx"),
        py("PyEval_EvalCodeEx"),
        py("function_call"),
        py("PyObject_Call"),
        py("PyEval_CallObjectWithKeywords"),
        py("PyEval_EvalFrameEx"),
        py("PyEval_EvalCodeEx"),
        py("PyEval_EvalCode"),
        py("run_mod"),
        py("PyRun_FileExFlags"),
        py("main"),
    ];
    assert_eq!(
        run(EvalShape::EvalFrameEx, &native, &[false, false]).unwrap(),
        ["P0", "P1", "PyRun_FileExFlags", "main"]
    );
    // 3.6-3.8 at -O0: the wrapper stays on the stack under the real loop.
    let native = vec![
        py("_PyEval_EvalFrameDefault"),
        py("PyEval_EvalFrameEx"),
        py("_PyEval_EvalCodeWithName"),
        py("_PyFunction_FastCallKeywords"),
        py("call_function"),
        py("_PyEval_EvalFrameDefault"),
        py("PyEval_EvalFrameEx"),
        py("main"),
    ];
    assert_eq!(
        run(EvalShape::FramePerCall, &native, &[false, false]).unwrap(),
        ["P0", "P1", "main"]
    );
}

/// A loop's return address in its `.cold` part is still one loop call.
#[test]
fn cold_parts_are_the_loop() {
    let native = vec![
        f("/usr/lib/libc.so.6", "write"),
        py("_PyEval_EvalFrameDefault.cold"),
        py("_PyEval_Vector"),
        py("slot_tp_call"),
        py("_PyEval_EvalFrameDefault"),
        py("main"),
    ];
    assert_eq!(
        run(EvalShape::EntryRuns, &native, &[false, true, true]).unwrap(),
        ["write", "P0", "P1", "P2", "main"]
    );
}

/// `-X perf`: the trampoline in anonymous memory and its evaluator are the call of the
/// loop, not a loop.
#[test]
fn perf_trampolines_are_hidden() {
    let native = vec![
        py("_PyEval_EvalFrameDefault"),
        f("[anon]", ""),
        py("py_trampoline_evaluator"),
        py("_PyEval_Vector"),
        f("/usr/lib/_ext.so", "call_back"),
        py("_PyEval_EvalFrameDefault"),
        f("[anon]", ""),
        py("py_trampoline_evaluator"),
        py("PyEval_EvalCode"),
        py("main"),
    ];
    assert_eq!(
        run(EvalShape::EntryRuns, &native, &[true, true]).unwrap(),
        ["P0", "call_back", "P1", "main"]
    );
    // The evaluator tail-calls the trampoline (3.14): the interpreter frame outside it is
    // whatever called the evaluator.
    let native = vec![
        py("_PyEval_EvalFrameDefault.cold"),
        f("[anon]", ""),
        py("_PyFunction_Vectorcall"),
        f("/usr/lib/_ext.so", "call_back"),
        py("_PyEval_EvalFrameDefault"),
        f(PERF_TRAMPOLINES, ""),
        py("PyEval_EvalCode"),
        py("main"),
    ];
    assert_eq!(
        run(EvalShape::EntryRuns, &native, &[true, true]).unwrap(),
        ["P0", "call_back", "P1", "main"]
    );
    // Anonymous code elsewhere (a JIT's) stays.
    let native = vec![f("[anon]", ""), py("_PyEval_EvalFrameDefault"), py("main")];
    assert_eq!(
        run(EvalShape::EntryRuns, &native, &[true]).unwrap(),
        ["[anon]", "P0", "main"]
    );
    // Trampoline names from a perf map are hidden by name.
    let native = vec![
        py("_PyEval_EvalFrameDefault"),
        f("[anon]", "py::f:/t.py"),
        py("main"),
    ];
    assert_eq!(
        run(EvalShape::EntryRuns, &native, &[true]).unwrap(),
        ["P0", "main"]
    );
}

/// C → Python → C → Python → C, three levels, 3.14 shape, with inlined plumbing inside the
/// loop's physical frame and an extension function named like plumbing (kept).
#[test]
fn recursion_through_an_extension() {
    let ext = "/tmp/ext.so";
    let mut inlined = py("_PyObject_VectorcallTstate");
    inlined.inlined = true;
    let mut native = Vec::new();
    for level in 0..3 {
        native.push(f(ext, "recurse"));
        native.push(f(ext, "call_function")); // the extension's own, not CPython's
        native.push(inlined.clone());
        native.push(py("_PyEval_EvalFrameDefault"));
        if level < 2 {
            native.push(py("_PyEval_Vector"));
            native.push(py("PyObject_CallOneArg"));
        }
    }
    native.extend(main_bottom());
    let entries = [false, true, true, false, true];
    let mut want = Vec::new();
    for run in [vec!["P0", "P1"], vec!["P2"], vec!["P3", "P4"]] {
        want.extend(["recurse", "call_function"]);
        want.extend(run);
    }
    want.extend(kept_bottom());
    assert_eq!(run(EvalShape::EntryRuns, &native, &entries).unwrap(), want);
}

/// A thread with no Python: every native frame stays, plumbing names included (there is
/// no interpreter module to hide them from), and the kernel boundary is innermost.
#[test]
fn native_thread() {
    let native = vec![
        f("[vdso]", "__vdso_clock_gettime"),
        f("/usr/lib/libc.so.6", "clock_gettime"),
        f("/tmp/ext.so", "worker"),
        py("PyObject_Call"),
        f("/usr/lib/libc.so.6", "start_thread"),
    ];
    let mut out = Vec::new();
    let kernel = Some(KernelBoundary { syscall: Some(228) });
    merge(
        EvalShape::EntryRuns,
        &native,
        NativeEnd::Complete,
        &[],
        kernel,
        false,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        render(&native, &out),
        [
            "[syscall Some(228)]",
            "__vdso_clock_gettime",
            "clock_gettime",
            "worker",
            "PyObject_Call",
            "start_thread"
        ]
    );
}

#[test]
fn mismatches_are_errors() {
    let native = vec![py("_PyEval_EvalFrameDefault"), py("main")];
    // Two runs, one loop (a frame pushed but not yet evaluated, or stacks of two instants).
    let e = run(EvalShape::EntryRuns, &native, &[true, true]).unwrap_err();
    assert_eq!(e, MergeError::Mismatch { loops: 1, runs: 2 });
    assert!(e
        .to_string()
        .starts_with("1 evaluation loop on the C stack, 2 runs of Python frames"));
    // A loop with no Python frames.
    assert_eq!(
        run(EvalShape::FramePerCall, &native, &[]),
        Err(MergeError::Mismatch { loops: 1, runs: 0 })
    );
    // 3.11+: an outermost frame that is not an entry means Python frames are missing.
    assert_eq!(
        run(EvalShape::EntryRuns, &native, &[false]),
        Err(MergeError::OpenRun)
    );
}

/// Rule 5: a loop call caught entering (or leaving) its first frame has no run; at one
/// instant it can only be the innermost call, which is hidden; otherwise it is a mismatch.
#[test]
fn a_loop_call_entering_its_frame_is_hidden_only_at_one_instant() {
    let native = vec![
        py("_PyEval_EvalFrameDefault"),
        py("_PyEval_Vector"),
        f("/usr/lib/libffi.so.8", "ffi_closure_unix64_inner"),
        f("/usr/lib/libc.so.6", "qsort"),
        py("_PyEval_EvalFrameDefault"),
        py("main"),
    ];
    let mut out = Vec::new();
    // One run (sort_forever) for two loop calls: the inner one is starting `compare`.
    for shape in [EvalShape::EntryRuns, EvalShape::FramePerCall] {
        merge(
            shape,
            &native,
            NativeEnd::Complete,
            &[true],
            None,
            true,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            render(&native, &out),
            ["ffi_closure_unix64_inner", "qsort", "P0", "main"],
            "{shape:?}"
        );
        assert_eq!(
            merge(
                shape,
                &native,
                NativeEnd::Complete,
                &[true],
                None,
                false,
                &mut out
            ),
            Err(MergeError::Mismatch { loops: 2, runs: 1 })
        );
    }
    // Two loops more than runs is never a single call in its prologue.
    assert_eq!(
        merge(
            EvalShape::EntryRuns,
            &native,
            NativeEnd::Complete,
            &[],
            None,
            true,
            &mut out
        ),
        Err(MergeError::Mismatch { loops: 2, runs: 0 })
    );
}

/// A native stack cut short keeps the innermost loops' runs in place and the rest after a
/// marker; a complete one with too few loops is an error.
#[test]
fn truncated_native_stack() {
    let native = vec![
        f("/tmp/ext.so", "work"),
        py("_PyEval_EvalFrameDefault"),
        py("PyObject_Call"),
        f("/tmp/ext.so", "call_back"),
    ];
    let mut out = Vec::new();
    merge(
        EvalShape::EntryRuns,
        &native,
        NativeEnd::Truncated,
        &[true, false, true],
        None,
        false,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        render(&native, &out),
        ["work", "P0", "call_back", "...", "P1", "P2"]
    );
    // More loops than runs is wrong however the unwind ended.
    let e = merge(
        EvalShape::EntryRuns,
        &native,
        NativeEnd::Truncated,
        &[],
        None,
        false,
        &mut out,
    );
    assert_eq!(e, Err(MergeError::Mismatch { loops: 1, runs: 0 }));
}

#[test]
fn shapes_per_version() {
    assert_eq!(EvalShape::for_version(2, 7), EvalShape::EvalFrameEx);
    assert_eq!(EvalShape::for_version(3, 6), EvalShape::FramePerCall);
    assert_eq!(EvalShape::for_version(3, 10), EvalShape::FramePerCall);
    assert_eq!(EvalShape::for_version(3, 11), EvalShape::EntryRuns);
    assert_eq!(EvalShape::for_version(3, 15), EvalShape::EntryRuns);
}
