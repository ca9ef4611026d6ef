//! Task chains for samples (`record --async`, `top --async`) on CPython 3.8–3.13.
//!
//! These versions neither record a thread's running task in its thread state nor who awaits
//! a task, so a sample cannot follow a chain the way 3.14's ([`crate::asyncio::ChainReader`])
//! does, and reading every task (as `dump --async` does, [`super::read_tasks`]) costs far too
//! much per sample. [`LegacyChains`] therefore keeps a *task graph*: the result of one
//! [`super::read_tasks`] (every pending task, its name and the tasks awaiting it, derived as
//! for the dump), each thread's running loop, and per interpreter the `_asyncio.Task` type and
//! the `_current_tasks` dict. The sampler rebuilds it now and then ([`LegacyChains::rebuild`]).
//!
//! Per sample ([`LegacyChains::running`]) only the thread's own facts are read: the entries of
//! `_current_tasks` (the dict's keys object, then its entries: two reads while the dict keeps
//! its keys object, three when it changed) give the task its loop runs now; the task object
//! (one read) must be of exactly the `Task` type,
//! pending and on that loop. Its chain is kept per (task, coroutine, name object) until the
//! next rebuild: while a task is pending, every task awaiting it stays suspended at the same
//! `await`. A chain is built from the graph's links, each awaiting task proven pending and its
//! coroutine frames read where they wait. A running task the graph does not know (created
//! since) gets its parent from the graph's tasks whose `_fut_waiter` is it, or a `gather()`
//! holding it ([`MAX_SCAN`] tasks looked at); when none is found the answer is
//! [`Running::Unknown`]: the caller may rebuild and ask again, and otherwise the sample keeps
//! the thread's own stack. A chain is never guessed: it ends at a task the graph shows awaited
//! by none only when the graph is whole (every task container, task, `gather()` and
//! `TaskGroup` read: `read_graph`); in a graph read while the target changed a set
//! beyond what `asyncio_legacy/sets.rs` can follow, or with a task that could not be read, such a task
//! may have an awaiter the read missed, and the answer is [`Running::Unknown`] as well. In a
//! whole graph too, a task shown awaited by none may have an awaiter now (the graph was read
//! before its awaiter suspended on it, or its node is of an earlier task at the same address):
//! a running task's chain asks the tasks' `_fut_waiter` and `gather()`s, as for a new task,
//! before it ends at such a task (waiting tasks' chains take the graph's word).

use std::collections::{HashMap, HashSet};

use strobe_memory::{le, RemoteMemory};

use super::{follow, list_items, read_graph, task_name, task_type, Gen, LegacyTasks};
use super::{AsyncioLegacy, MAX_CHILDREN};
use crate::addrmap::AddrMap;
use crate::asyncio::ChainEnd;
use crate::asyncio::{ChainLink, TaskChain, TaskState, MAX_CHAIN};
use crate::error::WalkError;
use crate::process::Process;
use crate::threadnames::{DictKeys, Names, MAX_DICT_ENTRIES};
use crate::value::ValueReader;
use crate::walk::Walker;

/// Most tasks of the graph whose `_fut_waiter` is read to find who awaits a new task.
pub const MAX_SCAN: usize = 256;
/// Most `gather()`s looked into for a new task.
const MAX_GATHERS: usize = 16;
/// Largest task object read per sample (every table's `sizeof(TaskObj)` is smaller).
const MAX_TASK_BYTES: usize = 512;
/// Names and chains kept at most; past it the cache starts again.
const MAX_CACHED: usize = 4096;

/// One pending task of the graph.
#[derive(Debug, Clone)]
struct Node {
    /// The tasks awaiting it, in the order the dump's reader found them.
    parents: Vec<u64>,
    /// Its loop.
    loop_addr: u64,
}

/// What a thread's running task is looked up in.
#[derive(Debug, Clone, Copy)]
struct ThreadLoop {
    loop_addr: u64,
    /// `_current_tasks` of the thread's interpreter.
    current: u64,
}

/// The tasks as of the last rebuild.
#[derive(Debug, Default)]
struct Graph {
    tasks: HashMap<u64, Node>,
    /// The pending tasks, in the dump's tree order.
    order: Vec<u64>,
    /// Running loops by thread state, and threads by loop.
    loops: AddrMap<u64, ThreadLoop>,
    threads_of_loop: HashMap<u64, u64>,
    /// `_asyncio.Task` of each interpreter that imported it.
    task_types: HashSet<u64>,
    /// Every link was read (`read_graph`): a task awaited by none is a root. When
    /// not, such a task may have an awaiter the read missed, and no chain ends at it.
    whole: bool,
}

/// The running task of a thread, as [`LegacyChains::running`] found it.
#[derive(Debug)]
pub enum Running<'a> {
    /// The thread runs no task, or its chain could not be proven.
    None,
    /// The task and the tasks awaiting it.
    Chain(&'a TaskChain),
    /// It runs a task the graph does not know and no known task awaits, or its chain would end
    /// at a task awaited by none in a graph that is not whole: a rebuild may tell.
    Unknown,
}

/// What [`LegacyChains::rebuild`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebuilt {
    /// No interpreter has imported `_asyncio`.
    NotLoaded,
    /// The graph was read.
    Read {
        /// Pending tasks in the graph.
        tasks: usize,
        /// Every link was read; when not, chains that would end at a task awaited by none are
        /// not given ([`Running::Unknown`]).
        whole: bool,
        /// The reader's warnings (containers that could not be read whole, ...).
        errors: Vec<String>,
    },
}

/// Task chains of a 3.8–3.13 target (see the module documentation).
#[derive(Debug, Default)]
pub struct LegacyChains {
    graph: Graph,
    /// Chains by (task, coroutine, name object), kept until the next rebuild.
    chains: AddrMap<(u64, u64, u64), TaskChain>,
    names: HashMap<(u64, u64), String>,
    /// Where each `_current_tasks` dict's entries are, by dict.
    geometry: AddrMap<u64, Option<Geometry>>,
    /// Per thread state, the key of the chain [`LegacyChains::running`] last returned.
    last: AddrMap<u64, (u64, u64, u64)>,
}

/// The fields of a task object a chain needs.
#[derive(Clone, Copy)]
struct TaskFields {
    coro: u64,
    name: u64,
    loop_addr: u64,
}

impl LegacyChains {
    /// A reader with an empty graph.
    pub fn new() -> LegacyChains {
        LegacyChains::default()
    }

    /// Read the task graph again, from the interpreters and threads `threads` (pairs of
    /// interpreter and thread state). Forgets every chain. Refused with
    /// [`WalkError::Unsupported`] when the target's `_asyncio` does not match `table`.
    pub fn rebuild<M: RemoteMemory>(
        &mut self,
        walker: &mut Walker<M>,
        table: &AsyncioLegacy,
        threads: &[(u64, u64)],
    ) -> Result<Rebuilt, WalkError> {
        self.chains.clear();
        self.geometry.clear();
        self.last.clear();
        self.graph = Graph::default();
        let mut interps: Vec<u64> = threads.iter().map(|&(i, _)| i).collect();
        interps.sort_unstable();
        interps.dedup();
        let tstates: Vec<u64> = threads.iter().map(|&(_, t)| t).collect();
        let (state, whole) = match read_graph(walker, table, &interps, &tstates)? {
            (LegacyTasks::NotLoaded, _) => return Ok(Rebuilt::NotLoaded),
            (LegacyTasks::Read(state), whole) => (state, whole),
        };
        let (process, _) = walker.parts_mut();
        let mut names = Names::new(&process.mem, &process.layout);
        let mut values = ValueReader::new(&process.mem, &process.layout);
        let mut current = HashMap::new();
        for &interp in &interps {
            let Some(module) = names.module_dict(interp, "_asyncio")? else {
                continue;
            };
            self.graph
                .task_types
                .insert(task_type(&mut names, &mut values, table, module)?);
            if let Some(dict) = names.get(module, table.current_tasks)? {
                current.insert(interp, dict);
            }
        }
        let g = &mut self.graph;
        g.whole = whole;
        for r in &state.running {
            let interp = threads.iter().find(|&&(_, t)| t == r.tstate).map(|p| p.0);
            if let Some(&dict) = interp.and_then(|i| current.get(&i)) {
                g.loops.insert(
                    r.tstate,
                    ThreadLoop {
                        loop_addr: r.loop_addr,
                        current: dict,
                    },
                );
                g.threads_of_loop.insert(r.loop_addr, r.tstate);
            }
        }
        for t in &state.tasks {
            if t.error.is_none() && matches!(t.state, TaskState::Pending | TaskState::Running) {
                g.tasks.insert(
                    t.addr,
                    Node {
                        parents: t.awaited_by.clone(),
                        loop_addr: t.loop_addr,
                    },
                );
                g.order.push(t.addr);
            }
        }
        Ok(Rebuilt::Read {
            tasks: g.order.len(),
            whole,
            errors: state.errors,
        })
    }

    /// The task loop `loop_addr` runs now (0: none), from `_current_tasks` at `current`.
    fn current_task<M: RemoteMemory>(
        &mut self,
        mem: &M,
        layout: &crate::Layout,
        current: u64,
        loop_addr: u64,
    ) -> Result<u64, WalkError> {
        let geometry = self.geometry.entry(current).or_default();
        current_task(mem, layout, geometry, current, loop_addr)
    }

    /// The running task of thread state `tstate` and the tasks awaiting it. A chain built
    /// afresh is returned only when the loop still runs the task after it was built (else
    /// [`Running::None`]).
    pub fn running<M: RemoteMemory>(
        &mut self,
        walker: &mut Walker<M>,
        table: &AsyncioLegacy,
        tstate: u64,
    ) -> Result<Running<'_>, WalkError> {
        let Some(&tl) = self.graph.loops.get(&tstate) else {
            return Ok(Running::None);
        };
        let (process, _) = walker.parts_mut();
        let task = self.current_task(&process.mem, &process.layout, tl.current, tl.loop_addr)?;
        if task == 0 {
            return Ok(Running::None);
        }
        let Some(f) = self.task_fields(&process.mem, &process.layout, table, task)? else {
            return Ok(Running::None);
        };
        if f.loop_addr != tl.loop_addr {
            return Ok(Running::None);
        }
        let key = (task, f.coro, f.name);
        if !self.chains.contains_key(&key) {
            let parent = match self.graph.tasks.get(&task) {
                Some(node) => node.parents.first().copied(),
                None => match self.find_parent(walker.parts_mut().0, table, task)? {
                    Some(p) => Some(p),
                    None => return Ok(Running::Unknown),
                },
            };
            let chain = match self.build(walker, table, task, &f, parent, false)? {
                Built::Chain(chain) => chain,
                Built::Gone => return Ok(Running::None),
                Built::Unproven => return Ok(Running::Unknown),
            };
            // Read while the target runs on: had the task stopped running meanwhile, its
            // awaiters' frames may have been read past their `await` (see
            // `ChainReader::running`); such a chain is dropped, not kept.
            let (process, _) = walker.parts_mut();
            let now = self.current_task(&process.mem, &process.layout, tl.current, tl.loop_addr)?;
            if now != task {
                return Ok(Running::None);
            }
            if self.chains.len() >= MAX_CACHED {
                self.chains.clear();
            }
            self.chains.insert(key, chain);
        }
        if self.last.len() >= MAX_CACHED {
            self.last.clear();
        }
        self.last.insert(tstate, key);
        Ok(self.chains.get(&key).map_or(Running::None, Running::Chain))
    }

    /// The chain [`LegacyChains::running`] last returned for thread state `tstate`, if the
    /// graph has not been read since: for a caller that proved from the sample alone that the
    /// same coroutine still runs (its frame among the outermost frames the walker proved
    /// unchanged, byte for byte, since the thread's previous sample, which read this chain).
    /// Such a sample costs no read at all.
    pub fn reusable(&self, tstate: u64) -> Option<&TaskChain> {
        self.chains.get(self.last.get(&tstate)?)
    }

    /// Chains of the graph's pending tasks that are not in `running` and not running now, at
    /// most `max`, each with the thread state running its loop, its own frames where it waits.
    pub fn suspended<M: RemoteMemory>(
        &mut self,
        walker: &mut Walker<M>,
        table: &AsyncioLegacy,
        running: &HashSet<u64>,
        max: usize,
    ) -> Result<Vec<(u64, TaskChain)>, WalkError> {
        let mut out = Vec::new();
        // The task each loop runs now, looked up once per loop.
        let mut now_running: HashMap<u64, u64> = HashMap::new();
        let order = self.graph.order.clone();
        for task in order {
            if out.len() >= max {
                break;
            }
            if running.contains(&task) {
                continue;
            }
            let Some(node) = self.graph.tasks.get(&task) else {
                continue;
            };
            let loop_addr = node.loop_addr;
            let parent = node.parents.first().copied();
            let Some(&tstate) = self.graph.threads_of_loop.get(&loop_addr) else {
                continue;
            };
            let Some(tl) = self.graph.loops.get(&tstate).copied() else {
                continue;
            };
            let (process, _) = walker.parts_mut();
            let runs = match now_running.get(&loop_addr) {
                Some(&t) => t,
                None => {
                    let t =
                        self.current_task(&process.mem, &process.layout, tl.current, loop_addr)?;
                    now_running.insert(loop_addr, t);
                    t
                }
            };
            if runs == task {
                continue;
            }
            let Some(f) = self.task_fields(&process.mem, &process.layout, table, task)? else {
                continue;
            };
            if let Ok(Built::Chain(chain)) = self.build(walker, table, task, &f, parent, true) {
                out.push((tstate, chain));
            }
        }
        Ok(out)
    }

    /// The fields of `task`, if it is a pending task of exactly an `_asyncio.Task` type.
    fn task_fields<M: RemoteMemory>(
        &self,
        mem: &M,
        layout: &crate::Layout,
        table: &AsyncioLegacy,
        task: u64,
    ) -> Result<Option<TaskFields>, WalkError> {
        let mut buf = [0u8; MAX_TASK_BYTES];
        let Some(t) = buf.get_mut(..table.task_size as usize) else {
            return Err(WalkError::Unsupported(format!(
                "sizeof(TaskObj) {} is larger than strobe reads",
                table.task_size
            )));
        };
        mem.read_into(task, t)?;
        let word = |off: u32| le::u64_at(t, off as usize).unwrap_or(0);
        let ty = word(layout.pyobject_ob_type);
        let state = le::i32_at(t, table.fut_state as usize);
        if !self.graph.task_types.contains(&ty) || state != Some(0) {
            return Ok(None);
        }
        Ok(Some(TaskFields {
            coro: word(table.task_coro),
            name: word(table.task_name),
            loop_addr: word(table.fut_loop),
        }))
    }

    /// The task of the graph awaiting `task`: its `_fut_waiter` is `task`, or a `gather()`
    /// whose children include `task`.
    fn find_parent<M: RemoteMemory>(
        &self,
        process: &Process<M>,
        table: &AsyncioLegacy,
        task: u64,
    ) -> Result<Option<u64>, WalkError> {
        let mem = &process.mem;
        let mut futures: Vec<(u64, u64)> = Vec::new();
        let scan: Vec<u64> = self.graph.order.iter().take(MAX_SCAN).copied().collect();
        for (p, w) in fut_waiters(mem, table, &scan) {
            if w == task {
                return Ok(Some(p));
            }
            if w != 0 && !self.graph.tasks.contains_key(&w) {
                futures.push((p, w));
            }
        }
        let mut names = Names::new(mem, &process.layout);
        let mut values = ValueReader::new(mem, &process.layout);
        for (p, w) in futures.into_iter().take(MAX_GATHERS) {
            values.allow_reads(16);
            let gathering = values
                .type_of(w)
                .is_ok_and(|t| &*t.name == "_GatheringFuture");
            if !gathering {
                continue;
            }
            if let Ok(Some(children)) = names.attr(w, "_children") {
                if list_items(&mut values, &process.layout, children, MAX_CHILDREN)
                    .is_some_and(|c| c.contains(&task))
                {
                    return Ok(Some(p));
                }
            }
        }
        Ok(None)
    }

    /// The chain of `task` (fields `f`) awaited by `parent` (`None`: by no task of the
    /// graph), up to a task awaited by none, which must be a root: [`Built::Unproven`] when the
    /// graph is not whole. With `suspended`, the task's own frames too.
    fn build<M: RemoteMemory>(
        &mut self,
        walker: &mut Walker<M>,
        table: &AsyncioLegacy,
        task: u64,
        f: &TaskFields,
        parent: Option<u64>,
        suspended: bool,
    ) -> Result<Built, WalkError> {
        // A running task's chain is proven to its root; the waiting ones are drawn as the
        // graph has them.
        let verify_root = !suspended;
        let (process, code) = walker.parts_mut();
        let gen = Gen::new(&process.layout, table)?;
        let mut values = ValueReader::new(&process.mem, &process.layout);
        let mut out = TaskChain::default();
        let mut seen = HashSet::new();
        let mut addr = task;
        let mut fields = Some(*f);
        loop {
            if out.links.len() >= MAX_CHAIN || !seen.insert(addr) {
                out.truncated = true;
                break;
            }
            let f = match fields.take() {
                Some(f) => f,
                None => match self.task_fields(&process.mem, &process.layout, table, addr)? {
                    Some(f) => f,
                    None => return Ok(Built::Gone),
                },
            };
            let name = match self.names.get(&(addr, f.name)) {
                Some(n) => n.clone(),
                None => {
                    let n = task_name(&mut values, f.name);
                    if self.names.len() >= MAX_CACHED {
                        self.names.clear();
                    }
                    self.names.insert((addr, f.name), n.clone());
                    n
                }
            };
            let mut frames = Vec::new();
            let own = out.links.is_empty();
            if f.coro != 0 && (suspended || !own) {
                let end = follow(
                    &mut values,
                    code,
                    process,
                    &gen,
                    f.coro,
                    &mut |_, _, raw| {
                        frames.push(raw);
                        Ok(())
                    },
                )?;
                if matches!(end, ChainEnd::TooDeep) {
                    out.truncated = true;
                }
            }
            if own {
                if f.coro == 0 {
                    return Ok(Built::Gone);
                }
                let frame = gen.frame(&process.mem, f.coro)?;
                if frame == 0 {
                    return Ok(Built::Gone);
                }
                let bytes =
                    process
                        .mem
                        .read_vec(frame, gen.decoder.len, crate::limits::MAX_STRUCT)?;
                out.coro_code = gen
                    .decoder
                    .decode(&bytes)
                    .ok_or(WalkError::Corrupt {
                        what: "coroutine frame",
                        addr: frame,
                    })?
                    .code;
            }
            out.links.push(ChainLink {
                task: addr,
                name,
                frames,
            });
            let next = if own {
                parent
            } else {
                self.graph
                    .tasks
                    .get(&addr)
                    .and_then(|n| n.parents.first().copied())
            };
            match next {
                Some(p) => addr = p,
                None if !self.graph.whole => return Ok(Built::Unproven),
                // The graph's word that no task awaits it may be out of date (read before its
                // awaiter suspended on it, or about an earlier task at the same address): the
                // tasks awaiting it now, if any, are looked for first.
                None if verify_root => match self.find_parent(process, table, addr)? {
                    Some(p) => addr = p,
                    None => break,
                },
                None => break,
            }
        }
        Ok(Built::Chain(out))
    }
}

/// What [`LegacyChains::build`] found.
enum Built {
    /// The chain, up to a task awaited by none.
    Chain(TaskChain),
    /// A task on it is no longer pending (or the running one has no frame).
    Gone,
    /// It would end at a task awaited by none in a graph that is not whole.
    Unproven,
}

/// The `_fut_waiter` of each task of `tasks` that could be read: in one read of them all, or
/// one by one when that fails (a task freed since the graph was read).
fn fut_waiters<M: RemoteMemory>(mem: &M, table: &AsyncioLegacy, tasks: &[u64]) -> Vec<(u64, u64)> {
    let at = |p: u64| p.wrapping_add(u64::from(table.task_fut_waiter));
    let reqs: Vec<(u64, usize)> = tasks.iter().map(|&p| (at(p), 8)).collect();
    let mut buf = vec![0u8; 8 * reqs.len()];
    if mem.read_batch(&reqs, &mut buf).is_ok() {
        return tasks
            .iter()
            .zip(buf.chunks_exact(8))
            .filter_map(|(&p, w)| Some((p, le::u64_at(w, 0)?)))
            .collect();
    }
    tasks
        .iter()
        .filter_map(|&p| Some((p, mem.read_u64(at(p)).ok()?)))
        .collect()
}

/// Where the entries of a `_current_tasks` keys object are, kept while the dict keeps it.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    keys: u64,
    addr: u64,
    capacity: usize,
    stride: usize,
    key: usize,
    value: usize,
}

/// The value of key `loop_addr` in the dict at `dict` (`_current_tasks`), 0 if absent. The
/// dict's keys object is read (one read), and while it is the one of `geometry` (a dict keeps
/// its keys object until it grows or shrinks) every entry it has room for is read at once
/// (one read: deleted and unused entries have a NULL key); otherwise its header first.
fn current_task<M: RemoteMemory>(
    mem: &M,
    layout: &crate::Layout,
    geometry: &mut Option<Geometry>,
    dict: u64,
    loop_addr: u64,
) -> Result<u64, WalkError> {
    let keys = mem.read_u64(dict.wrapping_add(u64::from(layout.dict_ma_keys)))?;
    if keys == 0 {
        return Ok(0);
    }
    let g = match *geometry {
        Some(g) if g.keys == keys => g,
        _ => {
            let e = DictKeys::new(mem, layout).entries(keys)?;
            let g = Geometry {
                keys,
                addr: e.addr,
                capacity: e.capacity.min(MAX_DICT_ENTRIES),
                stride: e.stride,
                key: e.key,
                value: e.value,
            };
            *geometry = Some(g);
            g
        }
    };
    let bytes = mem.read_vec(g.addr, g.capacity * g.stride, MAX_DICT_ENTRIES * 24)?;
    Ok(bytes
        .chunks_exact(g.stride)
        .find(|c| le::u64_at(c, g.key) == Some(loop_addr))
        .and_then(|c| le::u64_at(c, g.value))
        .unwrap_or(0))
}
