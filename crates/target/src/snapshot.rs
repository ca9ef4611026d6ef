//! What one look at a process found: the data model shared by every output format.
//!
//! These types are ours, not the walker's: output formats and their field names stay stable when
//! the walker's internals change. The JSON field names are documented in the README.

use serde::Serialize;

/// The state of every Python thread of a process at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Target process id (of a core file: the dumped process's).
    pub pid: i32,
    /// The process's executable (`/proc/PID/exe`), if readable; of a core file, as the core
    /// names it.
    pub executable: Option<String>,
    /// The interpreter found in it.
    pub python: PythonInfo,
    /// Threads in the order the interpreter lists them (newest first in CPython).
    pub threads: Vec<ThreadSnapshot>,
    /// Things worth knowing about how the process was read (also printed to stderr).
    pub warnings: Vec<String>,
}

/// The interpreter in a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PythonInfo {
    /// Exact version, e.g. `3.11.2` or `3.15.0b1`.
    pub version: String,
    /// The ELF file holding the runtime (the executable, or `libpython` for shared builds), as
    /// the target names it.
    pub binary: String,
    /// A `Py_DEBUG` build.
    pub debug_build: bool,
    /// A free-threaded (`Py_GIL_DISABLED`) build.
    pub free_threaded: bool,
    /// Where the struct offsets came from: `"debug_offsets"` (the target's own
    /// `_Py_DebugOffsets`, 3.13+) or `"tables"` (strobe's generated tables).
    pub layout_source: &'static str,
}

/// Whether a thread was on a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreadState {
    /// The kernel reported it runnable (`R` in `/proc/PID/task/TID/stat`).
    Running,
    /// Sleeping, waiting or stopped.
    Idle,
    /// No kernel thread id, the task vanished, or the thread was read from a core file
    /// (which records no scheduler state).
    Unknown,
}

impl ThreadState {
    /// Classify a `/proc/PID/task/TID/stat` state letter.
    pub fn from_proc_state(state: Option<char>) -> ThreadState {
        match state {
            Some('R') => ThreadState::Running,
            Some(_) => ThreadState::Idle,
            None => ThreadState::Unknown,
        }
    }
}

/// One Python thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadSnapshot {
    /// `threading.get_ident()`: the thread's `pthread_t`.
    pub thread_id: u64,
    /// The kernel thread id (`threading.get_native_id()`), as the target sees it, when it could
    /// be determined.
    pub native_id: Option<u32>,
    /// The same thread's id as strobe sees it (`top -H`, `/proc/PID/task/TID` on this side):
    /// it differs from `native_id` when the target runs in another PID namespace (a container).
    pub host_native_id: Option<u32>,
    /// The `threading.Thread` name, when known.
    pub name: Option<String>,
    /// The interpreter the thread belongs to (0 is the main interpreter).
    pub interpreter_id: i64,
    /// Whether the thread holds the GIL; `None` where there is no GIL (free-threaded builds).
    pub holds_gil: Option<bool>,
    /// On CPU or not.
    pub state: ThreadState,
    /// Python frames, innermost first.
    pub frames: Vec<FrameSnapshot>,
    /// The stack was deeper than strobe follows and was cut (outermost frames missing).
    pub truncated: bool,
    /// With native frames asked for: why this thread has none (its native stack could not be
    /// captured, unwound or merged with its Python frames, which are then shown alone).
    /// Absent from the JSON when native frames were not asked for or are there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native_error: Option<String>,
    /// The exception the thread is handling (inside an `except` or `finally` block) or
    /// raising; absent from the JSON when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<ExceptionSnapshot>,
}

/// An exception a thread is handling or raising.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExceptionSnapshot {
    /// The type's name (`KeyError`).
    #[serde(rename = "type")]
    pub type_name: String,
    /// `handling` (inside an `except` or `finally` block) or `raising` (propagating through
    /// the thread's frames).
    pub state: &'static str,
}

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameKind {
    /// A Python function's frame.
    Python,
    /// A native (C, C++, Rust...) function's frame.
    Native,
    /// The thread is in the kernel (innermost only): `function` is `[syscall]`.
    Kernel,
}

/// One frame: a Python frame, or (with native frames asked for) a native or kernel one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrameSnapshot {
    /// Function name: for Python frames the qualified name on 3.11+ (e.g. `Worker.run_job`);
    /// for native frames the symbol (demangled), or `module+0xoffset` when the binary has no
    /// symbols.
    pub function: String,
    /// Python frames: `co_filename` of the code object; native frames: the source file from
    /// DWARF, or empty when the binary has none.
    pub filename: String,
    /// Current line, when the line table (Python) or DWARF (native) yields one.
    pub line: Option<u32>,
    /// Python, native or kernel.
    pub kind: FrameKind,
    /// Native frames only: where the code is.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub native: Option<NativeFrameInfo>,
    /// With locals asked for (`dump --locals`), Python frames only: the frame's arguments and
    /// local variables (cell and free variables too), in the code object's order. Absent from
    /// the JSON otherwise, and when they could not be read (`locals_error` says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locals: Option<Vec<LocalSnapshot>>,
    /// With locals asked for: why this Python frame's locals could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locals_error: Option<String>,
}

impl FrameSnapshot {
    /// A Python frame.
    pub fn python(function: String, filename: String, line: Option<u32>) -> FrameSnapshot {
        FrameSnapshot {
            function,
            filename,
            line,
            kind: FrameKind::Python,
            native: None,
            locals: None,
            locals_error: None,
        }
    }
}

/// What a local variable is: the walker's kind, written in JSON as `arg`, `local`, `cell` or
/// `free`.
pub use strobe_walker::locals::LocalKind;

fn local_kind<S: serde::Serializer>(kind: &LocalKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.as_str())
}

/// One argument or local variable of a Python frame, read without running the target's code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalSnapshot {
    /// The variable's name.
    pub name: String,
    /// Argument, local, cell or free variable.
    #[serde(serialize_with = "local_kind")]
    pub kind: LocalKind,
    /// The value's type (`tp_name`: `int`, `list`, a class name); `None` when unbound or when
    /// the object's type could not be read.
    #[serde(rename = "type")]
    pub type_name: Option<String>,
    /// A bounded repr: Python's for `None`, `bool`, `int`, `float`, `str`, `bytes`, `tuple`,
    /// `list`, `dict`, `set`, `frozenset`; `<ClassName object at 0x...>` for other objects;
    /// `<unreadable>` for an object that could not be read; `<unbound>` when unbound.
    pub repr: String,
    /// The repr leaves something out (items, characters, digits, nesting).
    pub truncated: bool,
    /// The variable has no value (not assigned yet, or deleted).
    pub unbound: bool,
}

/// Where a native frame's code is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NativeFrameInfo {
    /// The shared object or executable, as the target names it (`[vdso]`, `[anon]` for
    /// anonymous executable memory); `None` when no mapping holds the address.
    pub module: Option<String>,
    /// The address as an offset the module's file states it (`module+0xoffset`).
    pub module_offset: u64,
    /// Offset into the function's symbol, when a symbol table (not DWARF) named it.
    pub symbol_offset: Option<u64>,
    /// The function was inlined into the next frame's (they share an address).
    pub inlined: bool,
}

/// What `strobe dump --async` found: the process, and its asyncio tasks by event loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsyncDump {
    /// Target process id.
    pub pid: i32,
    /// `/proc/PID/exe` of the target, when readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    /// The interpreter.
    pub python: PythonInfo,
    /// The event loops and their tasks.
    #[serde(rename = "async")]
    pub asyncio: AsyncSnapshot,
    /// Caveats about this read.
    pub warnings: Vec<String>,
}

/// Every event loop of a process with its tasks, and the cycles of the await graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsyncSnapshot {
    /// Event loops: those running in a thread first, then any other loop a task belongs to.
    pub loops: Vec<LoopSnapshot>,
    /// Tasks that await each other in a circle, each cycle as task ids (a deadlock).
    pub cycles: Vec<Vec<String>>,
}

/// One event loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoopSnapshot {
    /// The loop object's address, as hex.
    pub id: String,
    /// The loop's type (`_UnixSelectorEventLoop`...).
    #[serde(rename = "type")]
    pub type_name: Option<String>,
    /// The thread (`threading.get_ident()`) running it now, if any.
    pub running_in_thread: Option<u64>,
    /// Its tasks, in the order the interpreter lists them (creation order per thread).
    pub tasks: Vec<TaskSnapshot>,
}

/// One asyncio task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskSnapshot {
    /// The task object's address, as hex: what `awaited_by` and `cycles` refer to.
    pub id: String,
    /// `task.get_name()`.
    pub name: String,
    /// `pending`, `running` (some thread runs it now), `cancelled`, `finished` or `unknown`.
    pub state: &'static str,
    /// The coroutine stack, outermost first: the task's coroutine, then each coroutine it
    /// awaits, with the line each will resume at.
    pub stack: Vec<CoroFrameSnapshot>,
    /// The chain of awaits was longer than strobe follows.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stack_truncated: bool,
    /// What the innermost coroutine awaits (a future, a task...).
    pub awaits: Option<AwaitedSnapshot>,
    /// The future the task waits on (`task._fut_waiter`).
    pub waiter: Option<AwaitedSnapshot>,
    /// Ids of the tasks (or futures) awaiting this one: its parents in the tree.
    pub awaited_by: Vec<String>,
    /// When the task is in `asyncio.sleep`: the repr of the delay it was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sleep: Option<String>,
    /// What could not be read of this task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One frame of a coroutine stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoroFrameSnapshot {
    /// `co_qualname`.
    pub function: String,
    /// `co_filename`.
    pub filename: String,
    /// The line the coroutine will resume at.
    pub line: Option<u32>,
}

/// An object a task waits on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AwaitedSnapshot {
    /// Its address, as hex.
    pub id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_name: Option<String>,
    /// Its repr (bounded, read without running code).
    pub repr: String,
    /// When it is a task of the dump: its id.
    pub task: Option<String>,
}
