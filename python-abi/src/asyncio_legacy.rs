//! asyncio before CPython 3.14: where the `_asyncio` module keeps its tasks and how its C
//! objects are laid out, per minor release (3.8–3.13, default and debug builds).
//!
//! 3.14 describes its `_asyncio` module itself (`_Py_AsyncioModuleDebugOffsets`); earlier
//! releases do not, and `TaskObj` is declared in `Modules/_asynciomodule.c`, not in an
//! installed header, so the generator cannot probe it. These tables are written by hand from
//! that file (`FutureObj_HEAD` and `TaskObj` of each release) and from the headers named per
//! field, and every value is confirmed against each real interpreter of the test registry by
//! `tests/live_asyncio.rs` (`tests/data/selfcheck_asyncio.py` reads its own tasks, coroutines
//! and thread state through ctypes at these offsets). The debug builds (`Py_DEBUG`) have the
//! same layout: since 3.8 `Py_DEBUG` no longer implies `Py_TRACE_REFS`, so `PyObject_HEAD`
//! does not grow. Free-threaded builds are not covered.
//!
//! A reader still proves the table against the target before using it: the `_asyncio.Task`
//! type's `tp_basicsize` must be [`AsyncioLegacy::task_size`].

/// How a coroutine holds its frame, and how to tell that it is suspended in an `await`
/// (CPython's `_PyGen_yf`, Objects/genobject.c of each release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoroFrameModel {
    /// 3.8–3.9: `gi_frame` points at a `PyFrameObject`; suspended in `await` when
    /// `f_stacktop` is non-NULL, `f_lasti >= 0` and the instruction after `f_lasti` (a byte
    /// offset into `co_code`) is `YIELD_FROM`; the awaited object is `f_stacktop[-1]`.
    StackTop38 {
        /// `offsetof(PyGenObject, gi_frame)`.
        gi_frame: u32,
        /// `offsetof(PyFrameObject, f_stacktop)`.
        f_stacktop: u32,
        /// `offsetof(PyCodeObject, co_code)` (a `bytes`).
        co_code: u32,
        /// Opcode `YIELD_FROM`.
        yield_from: u8,
    },
    /// 3.10: `gi_frame` points at a `PyFrameObject`; suspended when `f_state` is
    /// `FRAME_SUSPENDED`, in `await` when the code unit after `f_lasti` (counted in code units)
    /// is `YIELD_FROM`; the awaited object is `f_valuestack[f_stackdepth - 1]`.
    StackDepth310 {
        /// `offsetof(PyGenObject, gi_frame)`.
        gi_frame: u32,
        /// `offsetof(PyFrameObject, f_valuestack)`.
        f_valuestack: u32,
        /// `offsetof(PyFrameObject, f_stackdepth)` (an `int`).
        f_stackdepth: u32,
        /// `offsetof(PyFrameObject, f_state)` (a `signed char`).
        f_state: u32,
        /// `FRAME_SUSPENDED`.
        suspended: i8,
        /// `offsetof(PyCodeObject, co_code)` (a `bytes`).
        co_code: u32,
        /// Opcode `YIELD_FROM`.
        yield_from: u8,
    },
    /// 3.11–3.13: the `_PyInterpreterFrame` is embedded at `gi_iframe`. Suspended in `await`
    /// when `gi_frame_state` is `suspended_yield_from`, and, where `resume_ops` is not empty
    /// (3.11, 3.12: the state does not tell `yield` from `await`), the code unit after
    /// `prev_instr` is one of `resume_ops` with an argument of 2 or more. The awaited object is
    /// `localsplus[stacktop - 1]`.
    Embedded311 {
        /// `offsetof(PyGenObject, gi_iframe)`.
        gi_iframe: u32,
        /// `offsetof(PyGenObject, gi_frame_state)` (an `int8_t`).
        gi_frame_state: u32,
        /// `offsetof(_PyInterpreterFrame, stacktop)` (an `int`: slots from `localsplus`).
        stacktop: u32,
        /// `FRAME_SUSPENDED` (3.11, 3.12) / `FRAME_SUSPENDED_YIELD_FROM` (3.13).
        suspended_yield_from: i8,
        /// `RESUME` and its variants (`RESUME_QUICK` 3.11, `INSTRUMENTED_RESUME` 3.12); empty
        /// when the frame state alone tells (3.13).
        resume_ops: &'static [u8],
    },
}

/// Where a thread's running event loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunningLoopModel {
    /// 3.8–3.12: `PyThreadState.dict["__asyncio_running_event_loop__"]`, a
    /// `_RunningLoopHolder` (`{PyObject_HEAD; PyObject *rl_loop; ...}`, 3.8–3.11) or the loop
    /// itself (3.12).
    ThreadDict {
        /// `offsetof(PyThreadState, dict)`.
        tstate_dict: u32,
        /// `offsetof(_RunningLoopHolder, rl_loop)`; `None` when the dict holds the loop.
        holder_loop: Option<u32>,
    },
    /// 3.13: `_PyThreadStateImpl.asyncio_running_loop`, the first member after the public
    /// `PyThreadState` (whose size, `Layout::tstate_size`, changed within 3.13: read it from
    /// the target's `_Py_DebugOffsets`).
    AfterThreadState,
}

/// The `_asyncio` module and its objects in one minor release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncioLegacy {
    /// The minor release (3.x).
    pub minor: u8,
    /// Module attributes holding a `weakref.WeakSet` of tasks: `_all_tasks` (3.8–3.11),
    /// `_scheduled_tasks` (3.12–3.13).
    pub weak_sets: &'static [&'static str],
    /// Module attributes holding a `set` of tasks: `_eager_tasks` (3.12–3.13).
    pub sets: &'static [&'static str],
    /// The module attribute mapping each loop to its running task: `_current_tasks`.
    pub current_tasks: &'static str,
    /// `sizeof(TaskObj)` (`_asyncio.Task.__basicsize__`).
    pub task_size: u32,
    /// `offsetof(TaskObj, task_loop)` (`FutureObj_HEAD`'s first member).
    pub fut_loop: u32,
    /// `offsetof(TaskObj, task_state)` (an `int`: 0 pending, 1 cancelled, 2 finished).
    pub fut_state: u32,
    /// `offsetof(TaskObj, task_fut_waiter)`.
    pub task_fut_waiter: u32,
    /// `offsetof(TaskObj, task_coro)`.
    pub task_coro: u32,
    /// `offsetof(TaskObj, task_name)` (a `str`).
    pub task_name: u32,
    /// `offsetof(PyWeakReference, wr_object)` (Include/cpython/weakrefobject.h).
    pub weakref_object: u32,
    /// `offsetof(futureiterobject, future)` (`_asyncio.FutureIter`: `{PyObject_HEAD;
    /// FutureObj *future}`): what a coroutine awaiting a future holds.
    pub future_iter_future: u32,
    /// The coroutine's frame.
    pub coro: CoroFrameModel,
    /// The running loop of a thread.
    pub running_loop: RunningLoopModel,
}

const WEAK_ALL: &[&str] = &["_all_tasks"];
const WEAK_SCHEDULED: &[&str] = &["_scheduled_tasks"];
const EAGER: &[&str] = &["_eager_tasks"];

// TaskObj, 3.8 (Modules/_asynciomodule.c): FutureObj_HEAD(task) = PyObject_HEAD, task_loop,
// task_callback0, task_context0, task_callbacks, task_exception, task_result, task_source_tb,
// fut_state task_state, int task_log_tb, int task_blocking, dict, task_weakreflist,
// _PyErr_StackItem task_cancelled_exc_state (4 pointers); then task_fut_waiter, task_coro,
// task_name, task_context, int task_must_cancel, int task_log_destroy_pending.
const V3_8: AsyncioLegacy = AsyncioLegacy {
    minor: 8,
    weak_sets: WEAK_ALL,
    sets: &[],
    current_tasks: "_current_tasks",
    task_size: 144,
    fut_loop: 16,
    fut_state: 72,
    task_fut_waiter: 104,
    task_coro: 112,
    task_name: 120,
    weakref_object: 16,
    future_iter_future: 16,
    // PyFrameObject 3.8 (Include/frameobject.h): PyObject_VAR_HEAD, f_back, f_code, f_builtins,
    // f_globals, f_locals, f_valuestack, f_stacktop; PyCodeObject (Include/code.h): six ints,
    // then co_code at 48 (co_argcount … co_firstlineno, padded).
    coro: CoroFrameModel::StackTop38 {
        gi_frame: 16,
        f_stacktop: 72,
        co_code: 48,
        yield_from: 72,
    },
    // PyThreadState 3.8 (Include/cpython/pystate.h): `dict` after exc_state and exc_info.
    running_loop: RunningLoopModel::ThreadDict {
        tstate_dict: 152,
        holder_loop: Some(16),
    },
};

// 3.9: FutureObj_HEAD gains task_cancel_msg after task_source_tb, and the state moves down a
// word; TaskObj's own members follow the 4-pointer task_cancelled_exc_state.
const V3_9: AsyncioLegacy = AsyncioLegacy {
    minor: 9,
    task_size: 184,
    fut_state: 80,
    task_fut_waiter: 144,
    task_coro: 152,
    task_name: 160,
    ..V3_8
};

// 3.10: FutureObj_HEAD has one more object pointer before the state than 3.9 (nine in all,
// as 3.11 spells them: loop, callback0, context0, callbacks, exception, exception_tb, result,
// source_tb, cancel_msg); PyFrameObject 3.10 drops f_stacktop for `int f_stackdepth` after f_trace, and keeps
// `PyFrameState f_state` after f_lasti, f_lineno, f_iblock.
const V3_10: AsyncioLegacy = AsyncioLegacy {
    minor: 10,
    task_size: 192,
    fut_state: 88,
    task_fut_waiter: 152,
    task_coro: 160,
    task_name: 168,
    coro: CoroFrameModel::StackDepth310 {
        gi_frame: 16,
        f_valuestack: 64,
        f_stackdepth: 80,
        f_state: 108,
        suspended: -1,
        co_code: 48,
        yield_from: 72,
    },
    ..V3_8
};

// 3.11: task_cancelled_exc_state becomes one pointer (task_cancelled_exc) and TaskObj gains
// task_num_cancels_requested. PyGenObject 3.11 (Include/cpython/genobject.h): gi_frame_state
// (int8_t) after three chars, then the embedded frame `gi_iframe`; _PyInterpreterFrame
// (Include/internal/pycore_frame.h): `int stacktop` after prev_instr. FRAME_SUSPENDED is -1;
// RESUME 151, RESUME_QUICK 150 (Include/opcode.h). PyThreadState 3.11: `dict` at 128.
const V3_11: AsyncioLegacy = AsyncioLegacy {
    minor: 11,
    task_size: 176,
    fut_state: 88,
    task_fut_waiter: 128,
    task_coro: 136,
    task_name: 144,
    coro: CoroFrameModel::Embedded311 {
        gi_iframe: 80,
        gi_frame_state: 75,
        stacktop: 64,
        suspended_yield_from: -1,
        resume_ops: &[151, 150],
    },
    running_loop: RunningLoopModel::ThreadDict {
        tstate_dict: 128,
        holder_loop: Some(16),
    },
    ..V3_8
};

// 3.12: the task sets become `_scheduled_tasks` (WeakSet) and `_eager_tasks` (set); TaskObj as
// 3.11 (same offsets). PyGenObject 3.12 drops gi_code, moving gi_frame_state and gi_iframe up a
// word. INSTRUMENTED_RESUME is 240. The running loop is the tstate dict's value itself
// (`_RunningLoopHolder` is gone); PyThreadState 3.12: `dict` at 112.
const V3_12: AsyncioLegacy = AsyncioLegacy {
    minor: 12,
    weak_sets: WEAK_SCHEDULED,
    sets: EAGER,
    coro: CoroFrameModel::Embedded311 {
        gi_iframe: 72,
        gi_frame_state: 67,
        stacktop: 64,
        suspended_yield_from: -1,
        resume_ops: &[151, 240],
    },
    running_loop: RunningLoopModel::ThreadDict {
        tstate_dict: 112,
        holder_loop: None,
    },
    ..V3_11
};

// 3.13: FutureObj_HEAD loses dict and weakreflist (managed by the type), and its flags become
// bitfields; FRAME_SUSPENDED_YIELD_FROM (-1) tells an `await` apart by itself. The running
// loop moved to `_PyThreadStateImpl.asyncio_running_loop`.
const V3_13: AsyncioLegacy = AsyncioLegacy {
    minor: 13,
    task_size: 144,
    fut_state: 96,
    task_fut_waiter: 112,
    task_coro: 120,
    task_name: 128,
    coro: CoroFrameModel::Embedded311 {
        gi_iframe: 72,
        gi_frame_state: 67,
        stacktop: 64,
        suspended_yield_from: -1,
        resume_ops: &[],
    },
    running_loop: RunningLoopModel::AfterThreadState,
    ..V3_12
};

/// Every table, oldest first.
pub static ASYNCIO_LEGACY: &[AsyncioLegacy] = &[V3_8, V3_9, V3_10, V3_11, V3_12, V3_13];

/// The table for CPython `3.minor`, if strobe has one (3.8–3.13; not free-threaded builds).
pub fn asyncio_legacy_for(
    major: u8,
    minor: u8,
    free_threaded: bool,
) -> Option<&'static AsyncioLegacy> {
    if major != 3 || free_threaded {
        return None;
    }
    ASYNCIO_LEGACY.iter().find(|t| t.minor == minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_per_minor_from_3_8_to_3_13_and_none_elsewhere() {
        let minors: Vec<u8> = ASYNCIO_LEGACY.iter().map(|t| t.minor).collect();
        assert_eq!(minors, [8, 9, 10, 11, 12, 13]);
        for minor in 8..=13 {
            assert_eq!(
                asyncio_legacy_for(3, minor, false).map(|t| t.minor),
                Some(minor)
            );
            // Free-threaded builds have other object headers: no table.
            assert!(asyncio_legacy_for(3, minor, true).is_none());
        }
        for (major, minor) in [(2, 7), (3, 6), (3, 7), (3, 14), (3, 15)] {
            assert!(asyncio_legacy_for(major, minor, false).is_none());
        }
    }
}
