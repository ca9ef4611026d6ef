//! asyncio tasks of a target (`strobe dump --async`), read from CPython 3.14+'s own
//! description of its `_asyncio` module.
//!
//! From 3.14 the `_asyncio` module (an extension module, or built into the executable) holds
//! `_Py_AsyncioModuleDebugOffsets` in an ELF section named `.AsyncioDebug`
//! (Modules/_asynciomodule.c): thirteen `uint64_t`, in order
//! - `asyncio_task_object`: size, task_name, task_awaited_by, task_is_task,
//!   task_awaited_by_is_set, task_coro, task_node;
//! - `asyncio_interpreter_state`: size, asyncio_tasks_head;
//! - `asyncio_thread_state`: size, asyncio_running_loop, asyncio_running_task,
//!   asyncio_tasks_head.
//!
//! Finding the section is the caller's job (it needs the target's files); [`AsyncioOffsets::decode`]
//! checks its bytes. Every native `_asyncio.Task` is on a linked list (`struct llist_node`,
//! `{next, prev}`) headed in the thread state of the thread that created it, or in the
//! interpreter state once that thread is gone; `task_node` is the task's link.
//!
//! Three fields the struct does not give are placed as `TaskObj` in Modules/_asynciomodule.c
//! (3.14, 3.15) has them: `fut_loop` first after the object header, `fut_state` (an `int`)
//! right after `fut_awaited_by`, and `task_fut_waiter` right before `task_coro`. That layout is
//! proven against the target's own numbers first (`task_awaited_by` is ten pointers after the
//! header, `task_is_task` 12 bytes after it, `task_name` right after `task_coro`); a target
//! whose numbers disagree is refused.
//!
//! A task's coroutine stack: its coroutine (`task_coro`) embeds its frame at `gi_iframe`; while
//! suspended in an `await` (`gi_frame_state` is `FRAME_SUSPENDED_YIELD_FROM`) the awaited
//! object is on top of that frame's stack (`stackpointer[-1]`, CPython's `_PyGen_yf`; 3.15
//! puts a tagged null above it, so the first non-null of the top two is taken). A
//! coroutine there is followed; an `_asyncio.FutureIter` (`{PyObject_HEAD; future}`) gives the
//! future; anything else ends the chain.
//!
//! Nothing is trusted: every list, chain and set is bounded, and a task that cannot be read
//! gets an error in its entry while the others go on.
//!
//! Task-aware stacks (`record --async`, `top --async`) read chains of tasks per sample through
//! [`ChainReader`] (submodule `chain`), with this module's coroutine walk.

use std::collections::HashSet;

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::Layout;

use crate::error::WalkError;
use crate::frame::FrameDecoder;
use crate::limits::MAX_STRUCT;
use crate::strings::read_string;
use crate::value::{Kind, Value, ValueReader};
use crate::walk::Walker;

mod chain;
mod coroutines;
pub use chain::{ChainLink, ChainReader, TaskChain, CHAIN_REUSES, MAX_CHAIN};
use coroutines::{awaited, coro_chain, follow_coroutines};
pub(crate) use coroutines::{push_coro_frame, ChainEnd};

/// Bytes of `_Py_AsyncioModuleDebugOffsets` (13 `uint64_t`, 3.14 and 3.15).
pub const ASYNCIO_DEBUG_LEN: usize = 13 * 8;
/// Most tasks read (all lists of a process together).
pub const MAX_TASKS: usize = 100_000;
/// Deepest chain of awaiting coroutines followed for one task.
pub const MAX_AWAIT_DEPTH: usize = 256;
/// Most `awaited_by` entries read for one task.
pub const MAX_AWAITED_BY: usize = 1024;
/// Largest `TaskObj` we believe.
const MAX_TASK_SIZE: u64 = 4096;
/// Largest distance between a coroutine frame's locals and its stack pointer we believe.
const MAX_FRAME_STACK: u64 = 1 << 20;

/// Where the fields of asyncio's C objects are, from the target's `.AsyncioDebug` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncioOffsets {
    /// `sizeof(TaskObj)`.
    pub task_size: u64,
    /// `task_name` (a `str`, or an `int` counter shown as `Task-N`).
    pub task_name: u64,
    /// `task_awaited_by`: one waiter, or a `set` of them (see `task_awaited_by_is_set`).
    pub task_awaited_by: u64,
    /// `task_is_task` (a `char`).
    pub task_is_task: u64,
    /// `task_awaited_by_is_set` (a `char`).
    pub task_awaited_by_is_set: u64,
    /// `task_coro`.
    pub task_coro: u64,
    /// `task_node` (`struct llist_node`).
    pub task_node: u64,
    /// `offsetof(PyInterpreterState, asyncio_tasks_head)`.
    pub interp_tasks_head: u64,
    /// `offsetof(PyThreadState, asyncio_running_loop)` (of `_PyThreadStateImpl`).
    pub tstate_running_loop: u64,
    /// `offsetof(PyThreadState, asyncio_running_task)`.
    pub tstate_running_task: u64,
    /// `offsetof(PyThreadState, asyncio_tasks_head)`.
    pub tstate_tasks_head: u64,
    /// `fut_loop` (proven, see the module documentation).
    pub fut_loop: u64,
    /// `fut_state` (an `int`: 0 pending, 1 cancelled, 2 finished).
    pub fut_state: u64,
    /// `task_fut_waiter`: the future the task waits for.
    pub task_fut_waiter: u64,
}

impl AsyncioOffsets {
    /// Decode and check the section's bytes for a target with `layout`.
    pub fn decode(bytes: &[u8], layout: &Layout) -> Result<AsyncioOffsets, WalkError> {
        let refuse = |what: String| {
            WalkError::Unsupported(format!(
                "the target's _Py_AsyncioModuleDebugOffsets (.AsyncioDebug) {what}; strobe \
                 knows the _asyncio task layout of CPython 3.14 and 3.15"
            ))
        };
        let v = |i: usize| le::u64_at(bytes, i * 8).unwrap_or(u64::MAX);
        if bytes.len() < ASYNCIO_DEBUG_LEN {
            return Err(refuse(format!(
                "is {} bytes long, not {ASYNCIO_DEBUG_LEN}",
                bytes.len()
            )));
        }
        let task_size = v(0);
        if !(1..=MAX_TASK_SIZE).contains(&task_size) {
            return Err(refuse(format!(
                "gives an implausible task size ({task_size})"
            )));
        }
        let interp_size = v(7);
        let tstate_size = v(9);
        let o = AsyncioOffsets {
            task_size,
            task_name: v(1),
            task_awaited_by: v(2),
            task_is_task: v(3),
            task_awaited_by_is_set: v(4),
            task_coro: v(5),
            task_node: v(6),
            interp_tasks_head: v(8),
            tstate_running_loop: v(10),
            tstate_running_task: v(11),
            tstate_tasks_head: v(12),
            fut_loop: u64::from(layout.pyobject_size),
            fut_state: v(2).wrapping_add(8),
            task_fut_waiter: v(5).wrapping_sub(8),
        };
        let fits =
            |off: u64, width: u64, size: u64| off.checked_add(width).is_some_and(|e| e <= size);
        for (name, off, width) in [
            ("task_name", o.task_name, 8),
            ("task_awaited_by", o.task_awaited_by, 8),
            ("task_is_task", o.task_is_task, 1),
            ("task_awaited_by_is_set", o.task_awaited_by_is_set, 1),
            ("task_coro", o.task_coro, 8),
            ("task_node", o.task_node, 16),
        ] {
            if !fits(off, width, task_size) {
                return Err(refuse(format!(
                    "puts {name} ({off}) outside the task ({task_size} bytes)"
                )));
            }
        }
        for (name, off, size) in [
            (
                "interpreter asyncio_tasks_head",
                o.interp_tasks_head + 8,
                interp_size,
            ),
            (
                "thread asyncio_running_loop",
                o.tstate_running_loop,
                tstate_size,
            ),
            (
                "thread asyncio_running_task",
                o.tstate_running_task,
                tstate_size,
            ),
            (
                "thread asyncio_tasks_head",
                o.tstate_tasks_head + 8,
                tstate_size,
            ),
        ] {
            if size as usize > MAX_STRUCT * 8 || !fits(off, 8, size) {
                return Err(refuse(format!(
                    "puts {name} ({off}) outside its struct ({size} bytes)"
                )));
            }
        }
        // The TaskObj of Modules/_asynciomodule.c (3.14, 3.15): after the header, ten object
        // pointers then `fut_awaited_by`, `fut_state`, `fut_is_task`, `fut_awaited_by_is_set`;
        // later `task_fut_waiter`, `task_coro`, `task_name`.
        let ptr = 8;
        if o.task_awaited_by != o.fut_loop + 10 * ptr
            || o.task_is_task != o.task_awaited_by + 12
            || o.task_awaited_by_is_set != o.task_is_task + 1
            || o.task_name != o.task_coro + ptr
            || o.task_coro < o.task_is_task + 8 + ptr
        {
            return Err(refuse(
                "does not match the TaskObj layout strobe knows (fut_loop, fut_state, \
                 task_fut_waiter cannot be placed)"
                    .to_string(),
            ));
        }
        Ok(o)
    }
}

/// The state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Not done, not running now.
    Pending,
    /// Running now: some thread's `asyncio_running_task`.
    Running,
    /// Cancelled.
    Cancelled,
    /// Finished (a result or an exception).
    Finished,
    /// A `fut_state` value strobe does not know.
    Unknown(i32),
}

impl TaskState {
    /// `pending`, `running`, `cancelled`, `finished` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Cancelled => "cancelled",
            TaskState::Finished => "finished",
            TaskState::Unknown(_) => "unknown",
        }
    }
}

/// One frame of a task's coroutine stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoroFrame {
    /// `co_qualname`.
    pub function: String,
    /// `co_filename`.
    pub filename: String,
    /// The line it will resume at (or runs, for a running task).
    pub line: Option<i32>,
    /// The frame (inside the coroutine object) and its code object: what
    /// [`crate::locals::LocalsReader::frame_locals`] reads the coroutine's locals from.
    pub frame: crate::locals::FrameRef,
}

/// An object something waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awaited {
    /// Its address.
    pub addr: u64,
    /// Its type and repr.
    pub value: Value,
}

/// One asyncio task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The task object's address (its identity in `awaited_by`).
    pub addr: u64,
    /// Its name (`Task-N` for an unnamed task).
    pub name: String,
    /// Its state.
    pub state: TaskState,
    /// Its event loop object.
    pub loop_addr: u64,
    /// The coroutine stack, outermost first (the task's own coroutine, then what it awaits).
    pub stack: Vec<CoroFrame>,
    /// The chain went deeper than [`MAX_AWAIT_DEPTH`].
    pub stack_truncated: bool,
    /// What the innermost coroutine awaits (a future, a task...), when suspended in an `await`.
    pub awaits: Option<Awaited>,
    /// `task_fut_waiter`: the future the task waits on.
    pub waiter: Option<Awaited>,
    /// Addresses of the tasks and futures awaiting this one.
    pub awaited_by: Vec<u64>,
    /// What could not be read of this task.
    pub error: Option<String>,
}

impl Task {
    /// Task `addr` as `read` fills it in: what could not be read goes into its `error`, and a
    /// pending task in `running` (some thread's running task) is `Running`.
    pub(crate) fn read_with(
        addr: u64,
        running: &HashSet<u64>,
        read: impl FnOnce(&mut Task) -> Result<(), WalkError>,
    ) -> Task {
        let mut task = Task {
            addr,
            name: String::new(),
            state: TaskState::Unknown(-1),
            loop_addr: 0,
            stack: Vec::new(),
            stack_truncated: false,
            awaits: None,
            waiter: None,
            awaited_by: Vec::new(),
            error: None,
        };
        if let Err(e) = read(&mut task) {
            task.error = Some(e.to_string());
        }
        if running.contains(&addr) && task.state == TaskState::Pending {
            task.state = TaskState::Running;
        }
        task
    }
}

/// The running loop and task of one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningLoop {
    /// The thread state.
    pub tstate: u64,
    /// The loop object (0: none).
    pub loop_addr: u64,
    /// The running task (0: none).
    pub task: u64,
}

/// Everything `dump --async` reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AsyncState {
    /// Every task found, in list order (threads first, then the interpreter's list).
    pub tasks: Vec<Task>,
    /// Each thread's running loop and task.
    pub running: Vec<RunningLoop>,
    /// Lists that could not be read whole, and why.
    pub errors: Vec<String>,
}

/// Read every task of the threads `tstates` (and of interpreters `interps`) of the target
/// `walker` reads. A list, thread or task that cannot be read is reported in
/// [`AsyncState::errors`] or the task's `error`; the others are still read.
pub fn read_tasks<M: RemoteMemory>(
    walker: &mut Walker<M>,
    offsets: &AsyncioOffsets,
    interps: &[u64],
    tstates: &[u64],
) -> Result<AsyncState, WalkError> {
    let (process, code) = walker.parts_mut();
    let layout = &process.layout;
    let gen = Gen::new(layout)?;
    let mem = &process.mem;
    let mut values = ValueReader::new(mem, layout);
    let mut out = AsyncState::default();
    let mut addrs = Vec::new();
    let mut seen = HashSet::new();
    let heads = tstates
        .iter()
        .map(|&t| (t.wrapping_add(offsets.tstate_tasks_head), "thread"))
        .chain(
            interps
                .iter()
                .map(|&i| (i.wrapping_add(offsets.interp_tasks_head), "interpreter")),
        );
    for (head, whose) in heads {
        if let Err(e) = list_tasks(mem, offsets, head, &mut seen, &mut addrs) {
            out.errors.push(format!(
                "the task list of a {whose} could not be read whole: {e}"
            ));
        }
    }
    let mut running = HashSet::new();
    for &t in tstates {
        let read = |off: u64| mem.read_u64(t.wrapping_add(off));
        let (loop_addr, task) = match (
            read(offsets.tstate_running_loop),
            read(offsets.tstate_running_task),
        ) {
            (Ok(l), Ok(t)) => (l, t),
            (Err(e), _) | (_, Err(e)) => {
                out.errors.push(format!(
                    "the running loop of a thread could not be read: {e}"
                ));
                continue;
            }
        };
        if task != 0 {
            running.insert(task);
        }
        if loop_addr != 0 || task != 0 {
            out.running.push(RunningLoop {
                tstate: t,
                loop_addr,
                task,
            });
        }
    }
    for addr in addrs {
        out.tasks.push(Task::read_with(addr, &running, |task| {
            read_task(&mut values, code, process, &gen, offsets, task)
        }));
    }
    Ok(out)
}

/// Follow one `llist_node` list headed at `head`, adding task addresses not seen before.
fn list_tasks<M: RemoteMemory + ?Sized>(
    mem: &M,
    o: &AsyncioOffsets,
    head: u64,
    seen: &mut HashSet<u64>,
    out: &mut Vec<u64>,
) -> Result<(), WalkError> {
    let mut node = mem.read_u64(head)?;
    // An empty list is a head pointing at itself; a never-initialised one is NULL.
    while node != head && node != 0 {
        // The bound is on all lists together.
        if out.len() >= MAX_TASKS {
            return Err(WalkError::Unbounded {
                what: "asyncio task",
                limit: MAX_TASKS,
            });
        }
        let task = node.wrapping_sub(o.task_node);
        if !seen.insert(task) {
            return Err(WalkError::Unbounded {
                what: "asyncio task",
                limit: MAX_TASKS,
            });
        }
        out.push(task);
        node = mem.read_u64(node)?;
    }
    Ok(())
}

/// Where a coroutine's frame and state are.
struct Gen {
    decoder: FrameDecoder,
    iframe: u64,
    frame_state: u64,
    stackpointer: u64,
    localsplus: u64,
    yield_from: [Option<i8>; 2],
    mask: u64,
}

impl Gen {
    /// Bytes from the generator's `gi_frame_state` to the end of its frame's fixed part or of
    /// its `stackpointer`, whichever is later (`gi_frame_state` comes before `gi_iframe`;
    /// checked by [`Gen::new`]).
    fn span_len(&self) -> usize {
        let frame_end = (self.decoder.len as u64).max(self.stackpointer + 8);
        (self.iframe - self.frame_state + frame_end) as usize
    }

    fn new(l: &Layout) -> Result<Gen, WalkError> {
        let missing = |what: &str| {
            WalkError::Unsupported(format!(
                "the interpreter layout lacks {what}, which reading coroutines needs \
                 (CPython 3.14 or newer)"
            ))
        };
        let iframe = u64::from(l.gen_iframe.ok_or_else(|| missing("gi_iframe"))?);
        let frame_state = u64::from(l.gen_frame_state.ok_or_else(|| missing("gi_frame_state"))?);
        if frame_state >= iframe {
            return Err(WalkError::Unsupported(format!(
                "the generator's gi_frame_state (offset {frame_state}) does not come before \
                 its frame (offset {iframe}), as in every CPython that strobe reads coroutines of"
            )));
        }
        Ok(Gen {
            decoder: FrameDecoder::new(l)?,
            iframe,
            frame_state,
            stackpointer: u64::from(
                l.iframe_stackpointer
                    .ok_or_else(|| missing("frame.stackpointer"))?,
            ),
            localsplus: u64::from(
                l.iframe_localsplus
                    .ok_or_else(|| missing("frame.localsplus"))?,
            ),
            yield_from: [
                Some(
                    l.frame_suspended_yield_from
                        .ok_or_else(|| missing("FRAME_SUSPENDED_YIELD_FROM"))?,
                ),
                l.frame_suspended_yield_from_locked,
            ],
            mask: l.stackref_mask,
        })
    }
}

fn read_task<M: RemoteMemory>(
    values: &mut ValueReader<'_, M>,
    code: &mut crate::code::CodeCache,
    process: &crate::process::Process<M>,
    gen: &Gen,
    o: &AsyncioOffsets,
    task: &mut Task,
) -> Result<(), WalkError> {
    values.allow_reads(64);
    let t = values
        .memory()
        .read_vec(task.addr, o.task_size as usize, MAX_TASK_SIZE as usize)?;
    let bad = WalkError::Corrupt {
        what: "asyncio task",
        addr: task.addr,
    };
    let u64_at = |off: u64| le::u64_at(&t, off as usize).ok_or(bad.clone());
    if t.get(o.task_is_task as usize) != Some(&1) {
        return Err(bad);
    }
    task.loop_addr = u64_at(o.fut_loop)?;
    task.state = match le::i32_at(&t, o.fut_state as usize).ok_or(bad.clone())? {
        0 => TaskState::Pending,
        1 => TaskState::Cancelled,
        2 => TaskState::Finished,
        n => TaskState::Unknown(n),
    };
    let name = u64_at(o.task_name)?;
    task.name = task_name(values, name);
    // awaited_by: one object, or a set of them.
    let by = u64_at(o.task_awaited_by)?;
    if by != 0 {
        if t.get(o.task_awaited_by_is_set as usize) == Some(&1) {
            values.allow_reads(64 + 2 * MAX_AWAITED_BY as u32);
            task.awaited_by = values.set_keys(by, MAX_AWAITED_BY)?;
        } else {
            task.awaited_by = vec![by];
        }
    }
    let waiter = u64_at(o.task_fut_waiter)?;
    if waiter != 0 {
        task.waiter = Some(awaited(values, waiter));
    }
    let coro = u64_at(o.task_coro)?;
    if coro != 0 {
        coro_chain(values, code, process, gen, coro, task)?;
    }
    Ok(())
}

/// A task's name: its `str`, or `Task-N` for the counter 3.14 keeps until asked.
fn task_name<M: RemoteMemory>(values: &mut ValueReader<'_, M>, name: u64) -> String {
    values.allow_reads(64);
    match values.type_of(name).map(|t| t.kind) {
        Ok(Kind::Str) => read_string(values.memory(), values.layout(), name)
            .unwrap_or_else(|_| crate::value::UNREADABLE.to_string()),
        Ok(Kind::Int) => format!("Task-{}", values.repr(name).repr),
        _ => values.repr(name).repr,
    }
}

#[cfg(test)]
mod tests;
