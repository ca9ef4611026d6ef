//! asyncio tasks of a CPython 3.8–3.13 target (`strobe dump --async`), for which the
//! `_asyncio` module does not describe itself (3.14+: [`crate::asyncio`]).
//!
//! Where the tasks are: before 3.14 no thread or interpreter state lists them. The `_asyncio`
//! C module keeps them in Python containers it also exposes as module attributes
//! (`sys.modules["_asyncio"]`): a `weakref.WeakSet` (`_all_tasks` 3.8–3.11,
//! `_scheduled_tasks` 3.12–3.13; its `data` attribute is a `set` of weak references, whose
//! `wr_object` is the task), a `set` of tasks running eagerly (`_eager_tasks`, 3.12–3.13), and
//! `_current_tasks`, a dict mapping each loop to the task it runs right now. A thread's running
//! loop is in its thread-state dict (3.8–3.12) or right after its `PyThreadState` (3.13).
//!
//! How the objects are laid out: python-abi's [`AsyncioLegacy`] tables (hand-written from
//! Modules/_asynciomodule.c, confirmed on real interpreters). The table is proven against the
//! target before any task is read: `_asyncio.Task`'s `tp_basicsize` must be the table's
//! `sizeof(TaskObj)`, and only objects of exactly that type are read as tasks (subclasses of
//! `Task` and the pure-Python `_PyTask` are counted and left out).
//!
//! A coroutine's frame is a `PyFrameObject` at `gi_frame` (≤3.10) or embedded at `gi_iframe`
//! (3.11+); what it awaits is CPython's `_PyGen_yf` ([`CoroFrameModel`]). The chain is followed
//! as for 3.14: a coroutine (or generator) is followed, an `_asyncio.FutureIter` gives its
//! future, anything else ends it.
//!
//! Who awaits whom is not recorded before 3.14 (3.14's `task_awaited_by`); it is derived: a
//! task awaiting (innermost `await`, or `_fut_waiter`) another task is its parent; a task
//! awaiting a `gather()` (`_GatheringFuture`) is the parent of the gathered tasks (its
//! `_children`); a task inside `TaskGroup.__aexit__` is the parent of the group's tasks (the
//! `TaskGroup` is that frame's `self`, its tasks the `_tasks` set). Other ways of waiting on a
//! task (`asyncio.wait`, `as_completed`, a callback) leave no link a reader can follow.
//!
//! Nothing is trusted: every set, dict, list and chain is bounded, and a task that cannot be
//! read gets an error in its entry while the others go on.

mod chains;
mod links;
mod sets;

use std::collections::{HashMap, HashSet};

pub use chains::{LegacyChains, Rebuilt, Running, MAX_SCAN};
use strobe_memory::{le, RemoteMemory};
pub use strobe_python_abi::{asyncio_legacy_for, AsyncioLegacy};
use strobe_python_abi::{CoroFrameModel, Layout, RunningLoopModel};

use crate::asyncio::{
    push_coro_frame, AsyncState, Awaited, ChainEnd, RunningLoop, Task, TaskState,
};
use crate::asyncio::{MAX_AWAIT_DEPTH, MAX_TASKS};
use crate::code::CodeCache;
use crate::error::WalkError;
use crate::frame::FrameDecoder;
use crate::limits::MAX_STRUCT;
use crate::process::Process;
use crate::strings::read_string;
use crate::threadnames::Names;
use crate::value::{read_c_string, Kind, ValueReader};
use crate::walk::Walker;
use links::{link, list_items, tree_order};
use sets::set_members;

/// Most children of one `gather()` (or tasks of one `TaskGroup`) read.
const MAX_CHILDREN: usize = 4096;
/// Most `gather()`s and `TaskGroup`s whose tasks are read for one dump.
pub const MAX_GROUPS: usize = 1024;
/// Largest value stack (slots) of a coroutine frame we believe.
const MAX_STACK_SLOTS: i64 = 1 << 16;
/// The `_asyncio.Task` type's `tp_name`.
const TASK_TYPE: &str = "_asyncio.Task";

/// What [`read_tasks`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyTasks {
    /// No interpreter of the process has imported `_asyncio`.
    NotLoaded,
    /// The tasks.
    Read(AsyncState),
}

/// Read every asyncio task of the interpreters `interps` (threads `tstates`) of a 3.8–3.13
/// target, with `table` for its version. Refused with [`WalkError::Unsupported`] when the
/// target's `_asyncio.Task` does not have the table's size.
pub fn read_tasks<M: RemoteMemory>(
    walker: &mut Walker<M>,
    table: &AsyncioLegacy,
    interps: &[u64],
    tstates: &[u64],
) -> Result<LegacyTasks, WalkError> {
    read_graph(walker, table, interps, tstates).map(|(tasks, _)| tasks)
}

/// [`read_tasks`], and whether every link was read: false when a task container could not be
/// read whole, a task could not be read, or the tasks of a `gather()` or `TaskGroup` a task
/// awaits could not be read, so that a task shown awaited by none may have an awaiter the
/// read missed. (Tasks of other classes are left out either way; see the module
/// documentation.)
pub(super) fn read_graph<M: RemoteMemory>(
    walker: &mut Walker<M>,
    table: &AsyncioLegacy,
    interps: &[u64],
    tstates: &[u64],
) -> Result<(LegacyTasks, bool), WalkError> {
    let (process, code) = walker.parts_mut();
    let layout = &process.layout;
    let mem = &process.mem;
    let mut names = Names::new(mem, layout);
    let mut values = ValueReader::new(mem, layout);
    let mut out = AsyncState::default();
    let mut addrs: Vec<u64> = Vec::new();
    let mut seen = HashSet::new();
    let mut others = 0usize;
    let mut current: HashMap<u64, u64> = HashMap::new();
    let mut loaded = false;
    let mut whole = true;
    let mut task_types = HashSet::new();
    for &interp in interps {
        let Some(module) = names.module_dict(interp, "_asyncio")? else {
            continue;
        };
        loaded = true;
        let task_type = task_type(&mut names, &mut values, table, module)?;
        task_types.insert(task_type);
        // Candidates from every container, then kept if their type is exactly the task type.
        let mut candidates: Vec<u64> = Vec::new();
        for &attr in table.weak_sets {
            let Some(weak) = names.get(module, attr)? else {
                continue;
            };
            let read = names.attr(weak, "data").and_then(|data| {
                let refs = match data {
                    Some(d) => set_members(mem, layout, d, MAX_TASKS)?,
                    None => Vec::new(),
                };
                for r in refs {
                    let obj = mem.read_u64(r.wrapping_add(u64::from(table.weakref_object)))?;
                    // A dead reference points at None: neither a task nor counted.
                    if obj != 0 && !is_none(&mut values, obj) {
                        candidates.push(obj);
                    }
                }
                Ok(())
            });
            if let Err(e) = read {
                whole = false;
                out.errors.push(format!(
                    "_asyncio.{attr} (the tasks) could not be read whole: {e}"
                ));
            }
        }
        for &attr in table.sets {
            let Some(set) = names.get(module, attr)? else {
                continue;
            };
            match set_members(mem, layout, set, MAX_TASKS) {
                Ok(tasks) => candidates.extend(tasks),
                Err(e) => {
                    whole = false;
                    out.errors.push(format!(
                        "_asyncio.{attr} (tasks running eagerly) could not be read whole: {e}"
                    ));
                }
            }
        }
        for obj in candidates {
            if ob_type(mem, layout, obj)? != task_type {
                others += 1;
            } else if seen.insert(obj) {
                if addrs.len() >= MAX_TASKS {
                    return Err(WalkError::Unbounded {
                        what: "asyncio task",
                        limit: MAX_TASKS,
                    });
                }
                addrs.push(obj);
            }
        }
        if let Some(dict) = names.get(module, table.current_tasks)? {
            match names.items(dict) {
                Ok(items) => current.extend(items.unwrap_or_default()),
                Err(e) => out.errors.push(format!(
                    "_asyncio.{} (the running tasks) could not be read: {e}",
                    table.current_tasks
                )),
            }
        }
    }
    if !loaded {
        return Ok((LegacyTasks::NotLoaded, true));
    }
    // Running tasks are also in the sets; add them in case a set could not be read.
    let running: HashSet<u64> = current.values().copied().filter(|&t| t != 0).collect();
    for &t in &running {
        if seen.insert(t)
            && addrs.len() < MAX_TASKS
            && ob_type(mem, layout, t).is_ok_and(|ty| task_types.contains(&ty))
        {
            addrs.push(t);
        }
    }
    if others > 0 {
        out.errors.push(format!(
            "{others} task(s) of other classes (subclasses of asyncio.Task, or pure-Python \
             tasks) are not shown: strobe reads _asyncio.Task objects only"
        ));
    }
    for &t in tstates {
        match running_loop(&mut names, layout, table, t) {
            Ok(0) => {}
            Ok(loop_addr) => out.running.push(RunningLoop {
                tstate: t,
                loop_addr,
                task: current.get(&loop_addr).copied().unwrap_or(0),
            }),
            Err(e) => out.errors.push(format!(
                "the running loop of a thread could not be read: {e}"
            )),
        }
    }
    let gen = Gen::new(layout, table)?;
    let mut tasks = Vec::with_capacity(addrs.len());
    for addr in addrs {
        tasks.push(Task::read_with(addr, &running, |task| {
            read_task(&mut values, code, process, &gen, table, task)
        }));
    }
    whole &= tasks.iter().all(|t| t.error.is_none());
    let (links, linked) = link(&mut names, &mut values, layout, &mut tasks, &mut out.errors);
    out.tasks = tree_order(tasks, &links);
    Ok((LegacyTasks::Read(out), whole && linked))
}

/// The `_asyncio.Task` type of the module whose namespace is `module`, proven to have the
/// table's size.
fn task_type<M: RemoteMemory + ?Sized>(
    names: &mut Names<'_, M>,
    values: &mut ValueReader<'_, M>,
    table: &AsyncioLegacy,
    module: u64,
) -> Result<u64, WalkError> {
    let refuse = |why: String| {
        WalkError::Unsupported(format!(
            "the target's _asyncio module does not match the task layout strobe knows for \
             CPython 3.{} ({why})",
            table.minor
        ))
    };
    let ty = names
        .get(module, "Task")?
        .ok_or_else(|| refuse("it has no Task".to_string()))?;
    values.allow_reads(64);
    let layout = values.layout();
    let name_ptr = values
        .memory()
        .read_u64(ty.wrapping_add(u64::from(layout.type_name)))?;
    let name = read_c_string(values.memory(), name_ptr, 64)?;
    if name != TASK_TYPE {
        return Err(refuse(format!("its Task type is named {name:?}")));
    }
    let size = values
        .memory()
        .read_u64(ty.wrapping_add(u64::from(layout.type_basicsize)))?;
    if size != u64::from(table.task_size) {
        return Err(refuse(format!(
            "sizeof(TaskObj) is {size}, not {}",
            table.task_size
        )));
    }
    Ok(ty)
}

fn ob_type<M: RemoteMemory + ?Sized>(mem: &M, layout: &Layout, obj: u64) -> Result<u64, WalkError> {
    Ok(mem.read_u64(obj.wrapping_add(u64::from(layout.pyobject_ob_type)))?)
}

fn is_none<M: RemoteMemory + ?Sized>(values: &mut ValueReader<'_, M>, obj: u64) -> bool {
    values.allow_reads(16);
    values.type_of(obj).is_ok_and(|t| t.kind == Kind::NoneType)
}

/// The loop running in the thread whose state is at `tstate` (0: none).
fn running_loop<M: RemoteMemory + ?Sized>(
    names: &mut Names<'_, M>,
    layout: &Layout,
    table: &AsyncioLegacy,
    tstate: u64,
) -> Result<u64, WalkError> {
    let mem = names.memory();
    match table.running_loop {
        RunningLoopModel::AfterThreadState => {
            Ok(mem.read_u64(tstate.wrapping_add(u64::from(layout.tstate_size)))?)
        }
        RunningLoopModel::ThreadDict {
            tstate_dict,
            holder_loop,
        } => {
            let dict = mem.read_u64(tstate.wrapping_add(u64::from(tstate_dict)))?;
            let Some(held) = names.get(dict, "__asyncio_running_event_loop__")? else {
                return Ok(0);
            };
            match holder_loop {
                Some(off) => Ok(names.memory().read_u64(held.wrapping_add(u64::from(off)))?),
                None => Ok(held),
            }
        }
    }
}

/// Where a coroutine's frame and state are, for this version.
struct Gen {
    decoder: FrameDecoder,
    model: CoroFrameModel,
    /// `_PyInterpreterFrame.localsplus` (3.11+).
    localsplus: u64,
    /// `PyFrameObject.f_lasti` (≤3.10).
    lasti: u64,
    bytes_sval: u64,
}

impl Gen {
    fn new(l: &Layout, table: &AsyncioLegacy) -> Result<Gen, WalkError> {
        let decoder = FrameDecoder::new(l)?;
        let missing = |what: &str| {
            WalkError::Unsupported(format!(
                "the interpreter layout lacks {what}, which reading coroutines needs"
            ))
        };
        let (localsplus, lasti) = match table.coro {
            CoroFrameModel::Embedded311 { .. } => (
                l.iframe_localsplus
                    .ok_or_else(|| missing("frame.localsplus"))?,
                0,
            ),
            _ => (0, l.frame_lasti.ok_or_else(|| missing("frame.f_lasti"))?),
        };
        Ok(Gen {
            decoder,
            model: table.coro,
            localsplus: u64::from(localsplus),
            lasti: u64::from(lasti),
            bytes_sval: u64::from(l.bytes_ob_sval),
        })
    }

    /// The coroutine's frame: embedded (3.11+) or its frame object (≤3.10, 0 once finished).
    fn frame<M: RemoteMemory + ?Sized>(&self, mem: &M, coro: u64) -> Result<u64, WalkError> {
        Ok(match self.model {
            CoroFrameModel::Embedded311 { gi_iframe, .. } => {
                coro.wrapping_add(u64::from(gi_iframe))
            }
            CoroFrameModel::StackTop38 { gi_frame, .. }
            | CoroFrameModel::StackDepth310 { gi_frame, .. } => {
                mem.read_u64(coro.wrapping_add(u64::from(gi_frame)))?
            }
        })
    }

    /// What the coroutine at `coro` (frame at `frame`, `position` its `f_lasti` or instruction
    /// pointer) awaits: CPython's `_PyGen_yf`. 0: it is not suspended in an `await`.
    fn awaited<M: RemoteMemory + ?Sized>(
        &self,
        mem: &M,
        coro: u64,
        frame: u64,
        code: u64,
        position: i64,
    ) -> Result<u64, WalkError> {
        let bad = WalkError::Corrupt {
            what: "coroutine stack",
            addr: frame,
        };
        let slot = |base: u64, index: i64| -> Result<u64, WalkError> {
            if !(0..MAX_STACK_SLOTS).contains(&index) {
                return Err(bad.clone());
            }
            Ok(mem.read_u64(base.wrapping_add(8 * index as u64))?)
        };
        // ≤3.10: the instruction after f_lasti is YIELD_FROM.
        let next_is = |at: i64, op: u8| -> Result<bool, WalkError> {
            if !(0..1 << 30).contains(&at) {
                return Ok(false);
            }
            let co_code = match self.model {
                CoroFrameModel::StackTop38 { co_code, .. }
                | CoroFrameModel::StackDepth310 { co_code, .. } => co_code,
                CoroFrameModel::Embedded311 { .. } => return Ok(false),
            };
            let bytes = mem.read_u64(code.wrapping_add(u64::from(co_code)))?;
            let len = mem.read_u64(bytes.wrapping_add(16))?;
            if at as u64 >= len {
                return Ok(false);
            }
            Ok(mem.read_u8(bytes.wrapping_add(self.bytes_sval).wrapping_add(at as u64))? == op)
        };
        match self.model {
            CoroFrameModel::StackTop38 {
                f_stacktop,
                yield_from,
                ..
            } => {
                let top = mem.read_u64(frame.wrapping_add(u64::from(f_stacktop)))?;
                if top == 0 || position < 0 || !next_is(position + 2, yield_from)? {
                    return Ok(0);
                }
                let lasti_slot = frame.wrapping_add(self.lasti);
                if top <= lasti_slot || top - lasti_slot > 8 * MAX_STACK_SLOTS as u64 {
                    return Err(bad);
                }
                Ok(mem.read_u64(top - 8)?)
            }
            CoroFrameModel::StackDepth310 {
                f_valuestack,
                f_stackdepth,
                f_state,
                suspended,
                yield_from,
                ..
            } => {
                let state = mem.read_u8(frame.wrapping_add(u64::from(f_state)))? as i8;
                if state != suspended || position < 0 || !next_is((position + 1) * 2, yield_from)? {
                    return Ok(0);
                }
                let stack = mem.read_u64(frame.wrapping_add(u64::from(f_valuestack)))?;
                let depth =
                    i64::from(mem.read_u32(frame.wrapping_add(u64::from(f_stackdepth)))? as i32);
                slot(stack, depth - 1)
            }
            CoroFrameModel::Embedded311 {
                gi_frame_state,
                stacktop,
                suspended_yield_from,
                resume_ops,
                ..
            } => {
                let state = mem.read_u8(coro.wrapping_add(u64::from(gi_frame_state)))? as i8;
                if state != suspended_yield_from {
                    return Ok(0);
                }
                if !resume_ops.is_empty() {
                    // 3.11, 3.12: `prev_instr[1]` is RESUME with an argument of 2 or more
                    // after an `await` (`yield from`), 1 after a bare `yield`.
                    let mut unit = [0u8; 2];
                    mem.read_into((position as u64).wrapping_add(2), &mut unit)?;
                    if !resume_ops.contains(&unit[0]) || unit[1] < 2 {
                        return Ok(0);
                    }
                }
                let top = i64::from(mem.read_u32(frame.wrapping_add(u64::from(stacktop)))? as i32);
                slot(frame.wrapping_add(self.localsplus), top - 1)
            }
        }
    }
}

fn read_task<M: RemoteMemory>(
    values: &mut ValueReader<'_, M>,
    code: &mut CodeCache,
    process: &Process<M>,
    gen: &Gen,
    o: &AsyncioLegacy,
    task: &mut Task,
) -> Result<(), WalkError> {
    values.allow_reads(64);
    let t = values
        .memory()
        .read_vec(task.addr, o.task_size as usize, MAX_STRUCT)?;
    let bad = WalkError::Corrupt {
        what: "asyncio task",
        addr: task.addr,
    };
    let u64_at = |off: u32| le::u64_at(&t, off as usize).ok_or(bad.clone());
    task.loop_addr = u64_at(o.fut_loop)?;
    task.state = match le::i32_at(&t, o.fut_state as usize).ok_or(bad.clone())? {
        0 => TaskState::Pending,
        1 => TaskState::Cancelled,
        2 => TaskState::Finished,
        n => TaskState::Unknown(n),
    };
    let name = u64_at(o.task_name)?;
    task.name = task_name(values, name);
    let waiter = u64_at(o.task_fut_waiter)?;
    if waiter != 0 {
        task.waiter = Some(awaited(values, o, waiter));
    }
    let coro = u64_at(o.task_coro)?;
    if coro != 0 {
        coro_chain(values, code, process, gen, o, coro, task)?;
    }
    Ok(())
}

/// A task's name: its `str`, or `Task-N` for the counter 3.12+ keep until asked.
fn task_name<M: RemoteMemory>(values: &mut ValueReader<'_, M>, name: u64) -> String {
    values.allow_reads(64);
    match values.type_of(name).map(|t| t.kind) {
        Ok(Kind::Str) => read_string(values.memory(), values.layout(), name)
            .unwrap_or_else(|_| crate::value::UNREADABLE.to_string()),
        Ok(Kind::Int) => format!("Task-{}", values.repr(name).repr),
        _ => values.repr(name).repr,
    }
}

/// An awaited object; an `_asyncio.FutureIter` stands for its future.
fn awaited<M: RemoteMemory>(
    values: &mut ValueReader<'_, M>,
    o: &AsyncioLegacy,
    addr: u64,
) -> Awaited {
    values.allow_reads(64);
    let mut addr = addr;
    if let Ok(t) = values.type_of(addr) {
        if &*t.name == "_asyncio.FutureIter" || &*t.name == "FutureIter" {
            if let Ok(fut) = values
                .memory()
                .read_u64(addr.wrapping_add(u64::from(o.future_iter_future)))
            {
                if fut != 0 {
                    addr = fut;
                }
            }
        }
    }
    Awaited {
        addr,
        value: values.repr(addr),
    }
}

/// Follow the task's coroutine and what each coroutine awaits.
fn coro_chain<M: RemoteMemory>(
    values: &mut ValueReader<'_, M>,
    code: &mut CodeCache,
    process: &Process<M>,
    gen: &Gen,
    o: &AsyncioLegacy,
    first: u64,
    task: &mut Task,
) -> Result<(), WalkError> {
    let stack = &mut task.stack;
    let end = follow(
        values,
        code,
        process,
        gen,
        first,
        &mut |code, frame, raw| push_coro_frame(code, process, stack, frame, raw),
    )?;
    end.record(task, |obj| awaited(values, o, obj));
    Ok(())
}

/// Follow coroutine `first` and what each coroutine awaits, calling `on_frame` with each
/// coroutine's frame whose code object decodes (its address, and as a sample reports it: code,
/// position and line), outermost first.
fn follow<M: RemoteMemory>(
    values: &mut ValueReader<'_, M>,
    code: &mut CodeCache,
    process: &Process<M>,
    gen: &Gen,
    first: u64,
    on_frame: &mut dyn FnMut(&mut CodeCache, u64, crate::RawFrame) -> Result<(), WalkError>,
) -> Result<ChainEnd, WalkError> {
    let mem = &process.mem;
    let mut obj = first;
    let mut seen = HashSet::new();
    loop {
        if !seen.insert(obj) || seen.len() > MAX_AWAIT_DEPTH {
            return Ok(ChainEnd::TooDeep);
        }
        values.allow_reads(64);
        let ty = values.type_of(obj)?;
        if !matches!(&*ty.name, "coroutine" | "generator") {
            return Ok(ChainEnd::Awaits(obj));
        }
        let frame = gen.frame(mem, obj)?;
        if frame == 0 {
            // ≤3.10: a finished coroutine has no frame.
            return Ok(ChainEnd::Running);
        }
        let bytes = mem.read_vec(frame, gen.decoder.len, MAX_STRUCT)?;
        let fields = gen.decoder.decode(&bytes).ok_or(WalkError::Corrupt {
            what: "coroutine frame",
            addr: frame,
        })?;
        if let Some((lasti, line)) = code.resolve_frame(process, &fields)? {
            let raw = crate::RawFrame {
                code_addr: fields.code,
                lasti,
                line,
            };
            on_frame(code, frame, raw)?;
        }
        obj = gen.awaited(mem, obj, frame, fields.code, fields.position)?;
        if obj == 0 {
            return Ok(ChainEnd::Running);
        }
    }
}
