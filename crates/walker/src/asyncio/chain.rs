//! Chains of tasks for task-aware stacks (`record --async`, `top --async`, CPython 3.14+):
//! the running task of a thread and the tasks awaiting it, or a suspended task and its
//! awaiters, with the coroutine frames where each waits.

use std::collections::{HashMap, HashSet};

use strobe_memory::{le, RemoteMemory};

use super::{follow_coroutines, list_tasks, task_name, AsyncioOffsets, Gen};
use super::{MAX_AWAITED_BY, MAX_TASK_SIZE};
use crate::error::WalkError;
use crate::limits::MAX_STRUCT;
use crate::value::{Types, ValueReader};
use crate::walk::Walker;

/// Most tasks followed up an await chain for one sample.
pub const MAX_CHAIN: usize = 32;

/// One task of a chain, for task-aware stacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// The task object.
    pub task: u64,
    /// Its name (`Task-N` for an unnamed task).
    pub name: String,
    /// Its coroutine frames where it is suspended, outermost first (empty for the running
    /// task of a thread, whose frames are on the thread's own stack).
    pub frames: Vec<crate::RawFrame>,
}

/// A task and the tasks awaiting it, innermost first: `links[0]` is the task itself, then the
/// task that awaits it, and so on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskChain {
    /// The code object of the first task's own coroutine (the outermost of its frames).
    pub coro_code: u64,
    /// The tasks.
    pub links: Vec<ChainLink>,
    /// The chain went on past [`MAX_CHAIN`] tasks, or looped.
    pub truncated: bool,
}

/// Reads task chains for samples: the running task of a thread and the tasks awaiting it, or
/// every suspended task. Task names are kept per (task, name object).
#[derive(Debug, Default)]
pub struct ChainReader {
    names: HashMap<(u64, u64), String>,
    /// Chains of running tasks by (task, coroutine, name object), with how often each was
    /// reused since it was read.
    chains: HashMap<(u64, u64, u64), (TaskChain, u32)>,
    /// The key of the chain last returned per running task.
    last: HashMap<u64, (u64, u64, u64)>,
    /// Types learnt while reading chains (see [`ChainReader::forget_heap_types`]).
    types: Types,
}

/// A running task's chain is reused this many times before it is read again.
pub const CHAIN_REUSES: u32 = 64;

/// Running tasks whose chains are kept at most.
const MAX_CHAINS: usize = 1024;

/// Names kept at most; past it the cache starts again.
const MAX_NAMES: usize = 4096;

impl ChainReader {
    /// A reader with nothing cached.
    pub fn new() -> ChainReader {
        ChainReader::default()
    }

    /// The running task of thread state `tstate` and the tasks awaiting it; `None` when the
    /// thread runs no task. `task` is the thread state's running task when the sample read it
    /// already ([`Walker::watch_running_task`]); otherwise it is read here.
    ///
    /// While a task is pending, every task awaiting it is suspended at the same `await` (it
    /// cannot resume before the task it awaits is done), so the chain above a running task is
    /// kept per (task, coroutine, name object) and read again only every
    /// [`CHAIN_REUSES`]th time (a new waiter may start awaiting the task meanwhile): a sample
    /// whose running task was seen running before costs one read, the task's own fields (see
    /// [`ChainReader::reusable`] for when even that is skipped). A chain read afresh is
    /// returned only when the thread still runs the task after the read (else `None`).
    pub fn running<M: RemoteMemory>(
        &mut self,
        walker: &mut Walker<M>,
        offsets: &AsyncioOffsets,
        tstate: u64,
        task: Option<u64>,
    ) -> Result<Option<&TaskChain>, WalkError> {
        let mem = walker.memory();
        let task = match task {
            Some(task) => task,
            None => mem.read_u64(tstate.wrapping_add(offsets.tstate_running_task))?,
        };
        if task == 0 {
            return Ok(None);
        }
        let mut t = [0u8; MAX_TASK_SIZE as usize];
        let size = (offsets.task_size as usize).min(t.len());
        let t = &mut t[..size];
        mem.read_into(task, t)?;
        let field = |off: u64| le::u64_at(t, off as usize).unwrap_or(0);
        let key = (task, field(offsets.task_coro), field(offsets.task_name));
        let fresh = match self.chains.get_mut(&key) {
            Some((_, uses)) if *uses < CHAIN_REUSES => {
                *uses += 1;
                false
            }
            _ => true,
        };
        if fresh {
            self.forget_heap_types();
            let chain = self.chain(walker, offsets, task, false)?;
            // The chain is read while the target runs on. Had the task stopped running
            // meanwhile (finished, its awaiter resumed past the `await`), the awaiters' frames
            // read may be past the line where they await it: such a chain is dropped, not
            // kept for the next uses. The same task still running after the read (it only
            // stops running when it awaits or ends) proves the awaiters waited throughout.
            let now = walker
                .memory()
                .read_u64(tstate.wrapping_add(offsets.tstate_running_task))?;
            if now != task {
                return Ok(None);
            }
            if self.chains.len() >= MAX_CHAINS {
                self.chains.clear();
                self.last.clear();
            }
            self.chains.insert(key, (chain, 0));
        }
        self.last.insert(task, key);
        Ok(self.chains.get(&key).map(|(chain, _)| chain))
    }

    /// The chain [`ChainReader::running`] last returned for running task `task`, counted as
    /// one more use of it, if it has uses left: for a caller that proved, from the sample
    /// alone, that the same task object is still running the same coroutine (the thread
    /// state's running task is the same address, and the coroutine's frame is among the
    /// outermost frames the walker proved unchanged, byte for byte, since the previous sample).
    /// Such a sample costs no read at all.
    pub fn reusable(&mut self, task: u64) -> Option<&TaskChain> {
        let key = self.last.get(&task)?;
        match self.chains.get_mut(key) {
            Some((chain, uses)) if *uses < CHAIN_REUSES => {
                *uses += 1;
                Some(chain)
            }
            _ => None,
        }
    }

    /// The chain of `task`: with its own suspended frames when `suspended`, without them for
    /// a running task.
    pub fn chain<M: RemoteMemory>(
        &mut self,
        walker: &mut Walker<M>,
        offsets: &AsyncioOffsets,
        task: u64,
        suspended: bool,
    ) -> Result<TaskChain, WalkError> {
        let (process, code) = walker.parts_mut();
        let gen = Gen::new(&process.layout)?;
        let types = std::mem::take(&mut self.types);
        let mut values = ValueReader::with_types(&process.mem, &process.layout, types);
        let result = self.chain_with(&mut values, code, process, &gen, offsets, task, suspended);
        self.types = values.into_types();
        result
    }

    /// Forget the heap types learnt (a class can be freed and another allocated at its
    /// address); static types (`coroutine`, `generator`, `FutureIter`) are kept for good.
    /// Called at the start of each pass over the suspended tasks and of each chain read.
    pub fn forget_heap_types(&mut self) {
        self.types.retain(|_, info| !info.heap);
    }

    /// [`ChainReader::chain`] with the reader to read values through.
    #[allow(clippy::too_many_arguments)]
    fn chain_with<M: RemoteMemory>(
        &mut self,
        values: &mut ValueReader<'_, M>,
        code: &mut crate::code::CodeCache,
        process: &crate::process::Process<M>,
        gen: &Gen,
        offsets: &AsyncioOffsets,
        task: u64,
        suspended: bool,
    ) -> Result<TaskChain, WalkError> {
        let mut out = TaskChain::default();
        let mut seen = HashSet::new();
        let mut addr = task;
        while addr != 0 {
            if out.links.len() >= MAX_CHAIN || !seen.insert(addr) {
                out.truncated = true;
                break;
            }
            values.allow_reads(64);
            let t = values.memory().read_vec(
                addr,
                offsets.task_size as usize,
                MAX_TASK_SIZE as usize,
            )?;
            let bad = WalkError::Corrupt {
                what: "asyncio task",
                addr,
            };
            let u64_at = |off: u64| le::u64_at(&t, off as usize).ok_or(bad.clone());
            if t.get(offsets.task_is_task as usize) != Some(&1) {
                // Awaited by a plain future (gather's): the chain of tasks ends there.
                break;
            }
            let name_obj = u64_at(offsets.task_name)?;
            let name = match self.names.get(&(addr, name_obj)) {
                Some(n) => n.clone(),
                None => {
                    let n = task_name(values, name_obj);
                    if self.names.len() >= MAX_NAMES {
                        self.names.clear();
                    }
                    self.names.insert((addr, name_obj), n.clone());
                    n
                }
            };
            let coro = u64_at(offsets.task_coro)?;
            let mut frames = Vec::new();
            if out.links.is_empty() && coro != 0 {
                out.coro_code = coro_code(values, gen, coro)?;
            }
            if (suspended || !out.links.is_empty()) && coro != 0 {
                follow_coroutines(values, code, process, gen, coro, &mut |_, _, raw| {
                    frames.push(raw);
                    Ok(())
                })?;
            }
            out.links.push(ChainLink {
                task: addr,
                name,
                frames,
            });
            // The first task awaiting this one (a set of them keeps its own order).
            let by = u64_at(offsets.task_awaited_by)?;
            addr = if by != 0 && t.get(offsets.task_awaited_by_is_set as usize) == Some(&1) {
                values.allow_reads(64 + 2 * MAX_AWAITED_BY as u32);
                values
                    .set_keys(by, MAX_AWAITED_BY)?
                    .into_iter()
                    .min()
                    .unwrap_or(0)
            } else {
                by
            };
        }
        Ok(out)
    }

    /// Every task on the lists of `tstates` (then of `interps`) that is pending and not in
    /// `running`, at most `max` of them, with the thread state whose list holds it (0 for an
    /// interpreter's list).
    pub fn suspended<M: RemoteMemory>(
        &mut self,
        walker: &mut Walker<M>,
        offsets: &AsyncioOffsets,
        tstates: &[u64],
        running: &HashSet<u64>,
        max: usize,
    ) -> Result<Vec<(u64, u64)>, WalkError> {
        let mem = walker.memory();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for &t in tstates {
            let mut addrs = Vec::new();
            list_tasks(
                mem,
                offsets,
                t.wrapping_add(offsets.tstate_tasks_head),
                &mut seen,
                &mut addrs,
            )?;
            for task in addrs {
                if out.len() >= max {
                    return Ok(out);
                }
                if running.contains(&task) {
                    continue;
                }
                let state = mem.read_u32(task.wrapping_add(offsets.fut_state))? as i32;
                if state == 0 {
                    out.push((t, task));
                }
            }
        }
        Ok(out)
    }
}

/// The code object of coroutine `coro`'s frame.
fn coro_code<M: RemoteMemory>(
    values: &ValueReader<'_, M>,
    gen: &Gen,
    coro: u64,
) -> Result<u64, WalkError> {
    coro_frame(values, gen, coro).map(|(_, fields)| fields.code)
}

/// The frame embedded in coroutine `coro`: its address and decoded fields.
fn coro_frame<M: RemoteMemory>(
    values: &ValueReader<'_, M>,
    gen: &Gen,
    coro: u64,
) -> Result<(u64, crate::frame::FrameFields), WalkError> {
    let frame = coro.wrapping_add(gen.iframe);
    let bytes = values
        .memory()
        .read_vec(frame, gen.decoder.len, MAX_STRUCT)?;
    let fields = gen.decoder.decode(&bytes).ok_or(WalkError::Corrupt {
        what: "coroutine frame",
        addr: frame,
    })?;
    Ok((frame, fields))
}
