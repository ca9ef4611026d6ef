//! `strobe dump --async`: the asyncio tasks of a live target, grouped by event loop, with
//! their coroutine stacks and who awaits whom (see [`strobe_walker::asyncio`]).
//!
//! The target describes its `_asyncio` module in an ELF section named `.AsyncioDebug`
//! (CPython 3.14+): in the `_asyncio` extension module (`_asyncio.cpython-314-*.so`, Debian's
//! 3.14) or in the interpreter's own file when the module is built in (Debian's 3.15). The
//! section is found in the file the target mapped (opened through `/proc/PID/root`) and read
//! from the target's memory at its run-time address.

mod legacy;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use goblin::elf::{program_header, Elf};
use strobe_locate::maps::{self, Mapping};
use strobe_walker::asyncio::{self as reader, AsyncioOffsets, Awaited, ASYNCIO_DEBUG_LEN};
use strobe_walker::walk::Walker;
use strobe_walker::{RemoteMemory, WalkError};

use crate::snapshot::{
    AsyncDump, AsyncSnapshot, AwaitedSnapshot, CoroFrameSnapshot, LoopSnapshot, TaskSnapshot,
};
use crate::{AttachError, Target, TargetMemory};

/// The section CPython 3.14+ puts `_Py_AsyncioModuleDebugOffsets` in.
const SECTION: &str = ".AsyncioDebug";
/// Larger files are not ours to parse.
const MAX_FILE: u64 = 1 << 30;
/// First minor release with `_Py_AsyncioModuleDebugOffsets`.
const FIRST_MINOR: u8 = 14;
/// First minor release whose tasks strobe reads without it (`legacy`).
const FIRST_LEGACY_MINOR: u8 = 8;

/// Why `dump --async` cannot read a target's tasks. Every message is meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum AsyncError {
    /// The interpreter predates the task objects strobe reads.
    #[error(
        "--async needs CPython 3.8 or newer (strobe reads the _asyncio module's C tasks from \
         3.8 on); process {pid} runs CPython {version}"
    )]
    Unsupported {
        /// The target.
        pid: i32,
        /// Its version.
        version: String,
    },
    /// A 3.8–3.13 build whose `_asyncio` layout strobe has no table for (free-threaded).
    #[error(
        "--async does not know the _asyncio task layout of this build (free-threaded CPython \
         before 3.14); process {pid} runs CPython {version}"
    )]
    UnsupportedBuild {
        /// The target.
        pid: i32,
        /// Its version.
        version: String,
    },
    /// A core file.
    #[error("--async reads live processes only, not core files")]
    Core,
    /// Reading failed.
    #[error("reading the asyncio tasks of process {pid} failed: {why}")]
    Read {
        /// The target.
        pid: i32,
        /// What went wrong.
        why: String,
    },
}

impl From<AsyncError> for AttachError {
    fn from(e: AsyncError) -> AttachError {
        AttachError::Async(e.to_string())
    }
}

impl Target {
    /// Read every asyncio task of the process once (the target keeps running unless
    /// `blocking`, in which case it is stopped for the read).
    pub fn async_snapshot(&mut self, blocking: bool) -> Result<AsyncDump, AttachError> {
        let pid = self.pid();
        let version = self.process.version;
        if self.core.is_some() {
            return Err(AsyncError::Core.into());
        }
        if (version.major, version.minor) < (3, FIRST_LEGACY_MINOR) {
            return Err(AsyncError::Unsupported {
                pid,
                version: version.to_string(),
            }
            .into());
        }
        if (version.major, version.minor) < (3, FIRST_MINOR) {
            return self.async_snapshot_legacy(blocking);
        }
        let read_err = |why: String| AttachError::from(AsyncError::Read { pid, why });
        let Some(offsets) = self.asyncio_offsets().map_err(read_err)? else {
            return Ok(self.no_asyncio_dump());
        };
        // The files are read before the freeze, which then lasts only for the memory reads.
        let (state, thread_of) = self.read_threads_then(
            blocking,
            |walker, interps, tstates| reader::read_tasks(walker, &offsets, interps, tstates),
            |target, error| target.exited_or(AttachError::Walk { pid, error }),
        )?;
        Ok(self.tasks_dump(&state, &thread_of))
    }

    /// The dump of a process that has not loaded `_asyncio`: no tasks, and a warning saying so.
    pub(super) fn no_asyncio_dump(&self) -> AsyncDump {
        let mut warnings = self.warnings.clone();
        warnings.push(
            "the process has not loaded the _asyncio module: it has no asyncio tasks".to_string(),
        );
        AsyncDump {
            pid: self.pid(),
            executable: self.executable.clone(),
            python: self.python_info(),
            asyncio: AsyncSnapshot {
                loops: Vec::new(),
                cycles: Vec::new(),
            },
            warnings,
        }
    }

    /// The dump of the tasks read (either reader's), with the reads' errors as warnings.
    pub(super) fn tasks_dump(
        &mut self,
        state: &reader::AsyncState,
        thread_of: &HashMap<u64, u64>,
    ) -> AsyncDump {
        let mut warnings = self.warnings.clone();
        warnings.extend(state.errors.iter().cloned());
        let loop_types = self.loop_types(state);
        let sleeps = self.sleep_delays(state);
        AsyncDump {
            pid: self.pid(),
            executable: self.executable.clone(),
            python: self.python_info(),
            asyncio: model(state, thread_of, &loop_types, &sleeps),
            warnings,
        }
    }

    /// The delay of each task sleeping in `asyncio.sleep` (its innermost coroutine), read from
    /// Walk every thread once (the whole target frozen for it when `blocking`), then `read`
    /// with the interpreters and thread states found; a running target that changes under the
    /// reader is read again a few times, as `snapshot` does. Also returns each thread state's
    /// ident. A failure that retrying does not cure is `fail`'s to report.
    pub(super) fn read_threads_then<T>(
        &mut self,
        blocking: bool,
        mut read: impl FnMut(&mut Walker<TargetMemory>, &[u64], &[u64]) -> Result<T, WalkError>,
        fail: impl FnOnce(&Target, WalkError) -> AttachError,
    ) -> Result<(T, HashMap<u64, u64>), AttachError> {
        let pid = self.pid();
        // Order matters: signals are deferred before the freeze and restored after it ends.
        let (_signals, _freeze) = if blocking {
            let s = strobe_signals::DeferSignals::new().map_err(AttachError::Signals)?;
            let f = strobe_remote::Freeze::all_threads(pid)
                .map_err(|e| crate::exited_or(pid, e.into()))?;
            (Some(s), Some(f))
        } else {
            (None, None)
        };
        let attempts = if blocking {
            1
        } else {
            crate::TRANSIENT_ATTEMPTS
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let got = self.walker.walk().and_then(|stacks| {
                let mut interps: Vec<u64> = stacks.iter().map(|t| t.interp_addr).collect();
                interps.sort_unstable();
                interps.dedup();
                let tstates: Vec<u64> = stacks.iter().map(|t| t.tstate_addr).collect();
                let thread_of: HashMap<u64, u64> = stacks
                    .iter()
                    .map(|t| (t.tstate_addr, t.thread_id))
                    .collect();
                read(&mut self.walker, &interps, &tstates).map(|found| (found, thread_of))
            });
            match got {
                Ok(got) => return Ok(got),
                Err(e)
                    if e.is_transient()
                        && attempt < attempts
                        && !strobe_remote::procfs::is_gone_or_exiting(pid) =>
                {
                    self.walker.clear_caches();
                }
                Err(error) => return Err(fail(self, error)),
            }
        }
    }

    /// that frame's locals.
    fn sleep_delays(&self, state: &reader::AsyncState) -> HashMap<u64, String> {
        let layout = *self.walker.layout();
        let mut locals = strobe_walker::locals::LocalsReader::new(self.walker.memory(), &layout);
        let mut out = HashMap::new();
        for t in &state.tasks {
            let Some(f) = t.stack.last() else {
                continue;
            };
            if f.function != "sleep" || !f.filename.ends_with("asyncio/tasks.py") {
                continue;
            }
            let delay = locals.frame_locals(f.frame).ok().and_then(|ls| {
                ls.into_iter()
                    .find(|l| l.name == "delay")
                    .and_then(|l| l.value)
            });
            if let Some(v) = delay {
                out.insert(t.addr, v.repr);
            }
        }
        out
    }

    /// The type name of each loop object, for the headers.
    fn loop_types(&mut self, state: &reader::AsyncState) -> HashMap<u64, String> {
        let layout = *self.walker.layout();
        let mut values = strobe_walker::value::ValueReader::new(self.walker.memory(), &layout);
        let mut out = HashMap::new();
        for l in state
            .tasks
            .iter()
            .map(|t| t.loop_addr)
            .chain(state.running.iter().map(|r| r.loop_addr))
        {
            if l != 0 && !out.contains_key(&l) {
                if let Some(name) = values.repr(l).type_name {
                    out.insert(l, name);
                }
            }
        }
        out
    }

    /// For task-aware stacks (`record --async`): the target's asyncio description, `Ok(None)`
    /// while no `_asyncio` module is loaded (look again later: a program imports asyncio when
    /// it starts using it). An error when the interpreter predates the description or its
    /// files cannot be read.
    pub fn task_offsets(&self) -> Result<Option<AsyncioOffsets>, String> {
        let pid = self.pid();
        let version = self.process.version;
        if self.core.is_some() {
            return Err(AsyncError::Core.to_string());
        }
        if (version.major, version.minor) < (3, FIRST_MINOR) {
            // 3.8–3.13 default and debug builds are sampled from a cached task graph (the
            // sampler's `tasks_legacy`), which does not ask for this description; what is
            // left has no task layout strobe knows.
            return Err(if (version.major, version.minor) < (3, 8) {
                format!("they need CPython 3.8 or newer; process {pid} runs CPython {version}")
            } else {
                format!(
                    "before CPython 3.14 they are not available for free-threaded builds; \
                     process {pid} runs CPython {version}"
                )
            });
        }
        self.asyncio_offsets()
            .map_err(|why| AsyncError::Read { pid, why }.to_string())
    }

    /// The target's `_Py_AsyncioModuleDebugOffsets`, found in the files it mapped.
    /// `None`: no `_asyncio` module is loaded (the interpreter lacks the section and no
    /// `_asyncio*.so` is mapped).
    fn asyncio_offsets(&self) -> Result<Option<AsyncioOffsets>, String> {
        let pid = self.pid();
        let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map_err(|e| format!("cannot read /proc/{pid}/maps: {e}"))?;
        let mappings = maps::parse(&text);
        // The interpreter's own file first (3.15 builds _asyncio in), then _asyncio modules.
        let mut candidates: Vec<(&str, Option<u64>)> = vec![(
            self.process.binary_in_target.as_str(),
            Some(self.process.load_bias),
        )];
        let mut seen = HashSet::new();
        for m in &mappings {
            let Some(path) = m.path.as_deref() else {
                continue;
            };
            let file = path.rsplit('/').next().unwrap_or_default();
            if m.is_file()
                && file.starts_with("_asyncio")
                && file.ends_with(".so")
                && seen.insert(path)
            {
                candidates.push((path, None));
            }
        }
        let modules = candidates.len() - 1;
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        let mut tried = Vec::new();
        for (path, bias) in candidates {
            let Some(host) = host_file(pid, &root, path, &mappings) else {
                tried.push(format!("{path} (not reachable from here)"));
                continue;
            };
            match section_in(host, path, bias, &mappings) {
                Ok(Some(addr)) => {
                    let bytes = self
                        .walker
                        .memory()
                        .read_vec(addr, ASYNCIO_DEBUG_LEN, ASYNCIO_DEBUG_LEN)
                        .map_err(|e| format!("reading {SECTION} of {path}: {e}"))?;
                    return AsyncioOffsets::decode(&bytes, self.walker.layout())
                        .map(Some)
                        .map_err(|e| e.to_string());
                }
                Ok(None) => tried.push(path.to_string()),
                Err(e) => tried.push(format!("{path} ({e})")),
            }
        }
        if modules == 0 {
            return Ok(None);
        }
        Err(format!(
            "no {SECTION} section in the interpreter or the _asyncio module it loaded (looked \
             in {}): this build of CPython does not describe its asyncio tasks",
            tried.join(", ")
        ))
    }
}

/// The run-time address of the [`SECTION`] of the target's file `path`, if it has one.
/// `bias`: the file's load bias when known; else computed from its mappings.
fn section_in(
    host: File,
    path: &str,
    bias: Option<u64>,
    mappings: &[Mapping],
) -> Result<Option<u64>, String> {
    let len = host.metadata().map_err(|e| e.to_string())?.len();
    if len > MAX_FILE {
        return Err(format!("larger than {MAX_FILE} bytes"));
    }
    let mut bytes = Vec::new();
    host.take(MAX_FILE)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    let elf = Elf::parse(&bytes).map_err(|e| e.to_string())?;
    let Some(sh) = elf
        .section_headers
        .iter()
        .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(SECTION))
    else {
        return Ok(None);
    };
    if (sh.sh_size as usize) < ASYNCIO_DEBUG_LEN {
        return Err(format!("its {SECTION} is {} bytes", sh.sh_size));
    }
    let bias = match bias {
        Some(b) => b,
        None => {
            // The mapping of the lowest file offset: the PT_LOAD segment holding that offset
            // lands there.
            let first = mappings
                .iter()
                .filter(|m| m.path.as_deref() == Some(path))
                .min_by_key(|m| m.offset)
                .ok_or("not mapped")?;
            let seg = elf
                .program_headers
                .iter()
                .filter(|ph| ph.p_type == program_header::PT_LOAD)
                .find(|ph| {
                    ph.p_offset >= first.offset && ph.p_offset - first.offset < ph.p_align.max(4096)
                })
                .ok_or("no loadable segment at its first mapping")?;
            let at = first
                .start
                .checked_add(seg.p_offset - first.offset)
                .ok_or("implausible mapping")?;
            at.wrapping_sub(seg.p_vaddr)
        }
    };
    Ok(Some(sh.sh_addr.wrapping_add(bias)))
}

/// The target's file `path`, opened: inside the target's root
/// ([`strobe_locate::rootfs::open_in_root`]), as named (a target chrooted under our root names
/// our paths), or through `/proc/PID/map_files`; the first whose inode is the mapping's.
fn host_file(pid: i32, root: &Path, path: &str, mappings: &[Mapping]) -> Option<File> {
    use std::os::unix::fs::MetadataExt;
    let m = mappings.iter().find(|m| m.path.as_deref() == Some(path))?;
    let in_root = strobe_locate::rootfs::open_in_root(root, path)
        .ok()
        .map(|(_, f)| f);
    let map_file = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end));
    let mapped = |f: &File| f.metadata().is_ok_and(|md| md.ino() == m.inode);
    in_root.filter(mapped).or_else(|| {
        [PathBuf::from(path), map_file]
            .into_iter()
            .filter_map(|p| File::open(p).ok())
            .find(mapped)
    })
}

fn hex(addr: u64) -> String {
    format!("{addr:#x}")
}

fn awaited_snapshot(a: &Awaited, tasks: &HashSet<u64>) -> AwaitedSnapshot {
    AwaitedSnapshot {
        id: hex(a.addr),
        type_name: a.value.type_name.clone(),
        repr: a.value.repr.clone(),
        task: tasks.contains(&a.addr).then(|| hex(a.addr)),
    }
}

/// Group the tasks by loop, and find the cycles of the await graph.
fn model(
    state: &reader::AsyncState,
    thread_of: &HashMap<u64, u64>,
    loop_types: &HashMap<u64, String>,
    sleeps: &HashMap<u64, String>,
) -> AsyncSnapshot {
    let ids: HashSet<u64> = state.tasks.iter().map(|t| t.addr).collect();
    let mut loops: Vec<LoopSnapshot> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut loop_for = |addr: u64, loops: &mut Vec<LoopSnapshot>| -> usize {
        *index.entry(addr).or_insert_with(|| {
            loops.push(LoopSnapshot {
                id: hex(addr),
                type_name: loop_types.get(&addr).cloned(),
                running_in_thread: state
                    .running
                    .iter()
                    .find(|r| r.loop_addr == addr)
                    .and_then(|r| thread_of.get(&r.tstate).copied()),
                tasks: Vec::new(),
            });
            loops.len() - 1
        })
    };
    for r in &state.running {
        if r.loop_addr != 0 {
            loop_for(r.loop_addr, &mut loops);
        }
    }
    for t in &state.tasks {
        let i = loop_for(t.loop_addr, &mut loops);
        loops[i].tasks.push(TaskSnapshot {
            id: hex(t.addr),
            name: t.name.clone(),
            state: t.state.as_str(),
            stack: t
                .stack
                .iter()
                .map(|f| CoroFrameSnapshot {
                    function: f.function.clone(),
                    filename: f.filename.clone(),
                    line: f.line.and_then(|l| u32::try_from(l).ok()),
                })
                .collect(),
            stack_truncated: t.stack_truncated,
            awaits: t.awaits.as_ref().map(|a| awaited_snapshot(a, &ids)),
            waiter: t.waiter.as_ref().map(|a| awaited_snapshot(a, &ids)),
            awaited_by: t.awaited_by.iter().map(|&a| hex(a)).collect(),
            sleep: sleeps.get(&t.addr).cloned(),
            error: t.error.clone(),
        });
    }
    AsyncSnapshot {
        cycles: cycles(state),
        loops,
    }
}

/// The cycles of the "awaits" graph (task → the tasks in its `awaited_by` are its parents):
/// each as the task ids along it, starting at its lowest address. Every group of tasks
/// awaiting each other in a circle yields at least one cycle; cycles that share tasks with one
/// already found may not be listed separately (the search visits each task once).
fn cycles(state: &reader::AsyncState) -> Vec<Vec<String>> {
    let parents: HashMap<u64, Vec<u64>> = state
        .tasks
        .iter()
        .map(|t| (t.addr, t.awaited_by.clone()))
        .collect();
    let mut found: Vec<Vec<u64>> = Vec::new();
    let mut done: HashSet<u64> = HashSet::new();
    for t in &state.tasks {
        // Iterative depth-first search along parents, with the current path.
        let mut path: Vec<(u64, usize)> = vec![(t.addr, 0)];
        let mut on_path: HashSet<u64> = HashSet::from([t.addr]);
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let ps = parents.get(&node).map(Vec::as_slice).unwrap_or_default();
            if *next >= ps.len() || done.contains(&node) {
                on_path.remove(&node);
                done.insert(node);
                path.pop();
                continue;
            }
            let p = ps[*next];
            *next += 1;
            if on_path.contains(&p) {
                let start = path.iter().position(|&(n, _)| n == p).unwrap_or(0);
                let mut cycle: Vec<u64> = path[start..].iter().map(|&(n, _)| n).collect();
                let min = cycle
                    .iter()
                    .enumerate()
                    .min_by_key(|&(_, a)| *a)
                    .map_or(0, |(i, _)| i);
                cycle.rotate_left(min);
                if !found.contains(&cycle) {
                    found.push(cycle);
                }
            } else if parents.contains_key(&p) && path.len() < reader::MAX_TASKS {
                on_path.insert(p);
                path.push((p, 0));
            }
        }
    }
    found
        .into_iter()
        .map(|c| c.into_iter().map(hex).collect())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use strobe_walker::asyncio::{Task, TaskState};

    fn task(addr: u64, awaited_by: &[u64]) -> Task {
        Task {
            addr,
            name: format!("t{addr}"),
            state: TaskState::Pending,
            loop_addr: 0x100,
            stack: Vec::new(),
            stack_truncated: false,
            awaits: None,
            waiter: None,
            awaited_by: awaited_by.to_vec(),
            error: None,
        }
    }

    #[test]
    fn cycles_are_found_once_from_their_lowest_task() {
        // 3 -> 2 -> 1 -> 3 (each awaited by the next), 4 awaits itself, 5 and 6 form no cycle
        // (6 awaited by 5 and by an unknown future 0x99).
        let state = reader::AsyncState {
            tasks: vec![
                task(1, &[2]),
                task(2, &[3]),
                task(3, &[1]),
                task(4, &[4]),
                task(5, &[]),
                task(6, &[5, 0x99]),
            ],
            running: Vec::new(),
            errors: Vec::new(),
        };
        assert_eq!(
            cycles(&state),
            vec![
                vec!["0x1".to_string(), "0x2".to_string(), "0x3".to_string()],
                vec!["0x4".to_string()],
            ]
        );
        let snap = model(&state, &HashMap::new(), &HashMap::new(), &HashMap::new());
        assert_eq!(snap.loops.len(), 1);
        assert_eq!(snap.loops[0].tasks.len(), 6);
        assert_eq!(snap.loops[0].running_in_thread, None);
    }
}
