//! Threads, frames and code objects: the core of a sample.
//!
//! Two ways to take a sample:
//! - [`Walker::sample_into`] (its work is done in module [`crate::sample`]) is the hot path: it
//!   fills a reused [`RawSample`] with `(code address, instruction, line)` per frame,
//!   allocation-free and in one batched read of the target per sample in steady state. Names
//!   and files come from [`Walker::frame_info`], once per code object and line, when the
//!   caller first meets them.
//! - [`Walker::walk`] returns every thread's stack with names resolved ([`ThreadStack`]); it
//!   is `sample_into` followed by `frame_info` for each frame.
//!
//! All structure comes from the [`Layout`]; the only branches are on its named shapes
//! (`FrameModel`, `RuntimeModel`, `GilModel`, `LineTable` of `strobe_python_abi`). Code objects
//! are decoded once (names, file, line table) and cached by address (module `code`).

use std::collections::HashSet;
use std::sync::Arc;

use strobe_memory::RemoteMemory;
use strobe_python_abi::Layout;

use crate::code::CodeCache;
use crate::error::WalkError;
use crate::process::Process;
use crate::sample::{RawFrame, RawSample, SamplingState};

pub use crate::limits::{
    MAX_CHUNK_COPY, MAX_DEPTH, MAX_INTERPRETERS, MAX_LINETABLE_BYTES, MAX_THREADS,
};
pub use crate::process::Roots;

/// One Python frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyFrame {
    /// Address of the code object (stable key for interning while the code lives).
    pub code_addr: u64,
    /// `co_qualname` where the version has it (3.11+), else `co_name`.
    pub function: Arc<str>,
    /// `co_filename`.
    pub filename: Arc<str>,
    /// Current line; `None` when the line table has no line for the instruction.
    pub line: Option<i32>,
    /// The function's first line: `co_firstlineno` (its `def` line, or its first decorator's).
    pub first_line: i32,
    /// An evaluation loop call was entered with this frame (see [`RawSample::entries`]).
    pub entry: bool,
}

/// An exception a thread is raising or handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadException {
    /// The type's name (`ValueError`).
    pub type_name: Arc<str>,
    /// `true`: being raised (propagating through the frames); `false`: being handled (inside
    /// an `except` or `finally` block).
    pub raised: bool,
}

/// The Python stack of one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadStack {
    /// Address of the thread's `PyInterpreterState`.
    pub interp_addr: u64,
    /// The interpreter's id (0 for the main interpreter).
    pub interp_id: i64,
    /// Address of the `PyThreadState`.
    pub tstate_addr: u64,
    /// `pthread_t`, equal to `threading.get_ident()` in the target.
    pub thread_id: u64,
    /// Kernel thread id (3.11+: `native_thread_id`; `None` before, or while unknown).
    pub native_id: Option<u32>,
    /// Whether this thread holds the GIL of its interpreter.
    pub holds_gil: bool,
    /// Whether this thread is running the cyclic garbage collector (see
    /// [`RawThread::gc`](crate::RawThread::gc)).
    pub gc: bool,
    /// The exception the thread is raising or handling, if any (see
    /// [`RawThread::exception`](crate::RawThread::exception)).
    pub exception: Option<ThreadException>,
    /// Frames, innermost first.
    pub frames: Vec<PyFrame>,
    /// The stack was deeper than [`MAX_DEPTH`] and was cut there.
    pub truncated: bool,
}

/// Walks the threads and stacks of a CPython process through [`RemoteMemory`].
#[derive(Debug)]
pub struct Walker<M: RemoteMemory> {
    /// The memory, layout and roots.
    process: Process<M>,
    /// Decoded code objects.
    code: CodeCache,
    /// What [`Walker::sample_into`] remembers and reuses from sample to sample.
    sampling: SamplingState,
    /// Scratch space for [`Walker::interpreters`].
    seen: HashSet<u64>,
    /// The sample `walk` fills before resolving names.
    walk_buf: RawSample,
}

impl<M: RemoteMemory> Walker<M> {
    /// A walker over `mem` for an interpreter with `layout`, starting from `roots`.
    pub fn new(mem: M, layout: Layout, roots: Roots) -> Self {
        Walker {
            process: Process { mem, layout, roots },
            code: CodeCache::default(),
            sampling: SamplingState::new(&layout),
            seen: HashSet::new(),
            walk_buf: RawSample::default(),
        }
    }

    /// The memory being read.
    pub fn memory(&self) -> &M {
        &self.process.mem
    }

    /// The layout in use.
    pub fn layout(&self) -> &Layout {
        &self.process.layout
    }

    /// The roots in use.
    pub fn roots(&self) -> Roots {
        self.process.roots
    }

    /// The process and the code cache, borrowed together (for readers of other structures
    /// that name frames, like [`crate::asyncio`]).
    pub(crate) fn parts_mut(&mut self) -> (&Process<M>, &mut CodeCache) {
        (&self.process, &mut self.code)
    }

    /// Forget every cached code object and everything remembered about threads and stacks
    /// (e.g. after the target reloaded modules, or after repeated failed samples).
    pub fn clear_caches(&mut self) {
        self.code.clear();
        self.sampling.forget_plan();
    }

    /// Interpreter states `(address, id)`, main interpreter's list order. The id is
    /// `PyInterpreterState.id` where it exists (3.7+), else the position in the list.
    pub fn interpreters(&mut self) -> Result<Vec<(u64, i64)>, WalkError> {
        self.process.interpreters(&mut self.seen)
    }

    /// Sample every thread of every interpreter into `out` (cleared first).
    ///
    /// The hot path: no allocation once `out` and the walker's buffers have grown, one
    /// batched read of the target in steady state, no strings. Turn frames into names with
    /// [`Walker::frame_info`] (or key them by `(code_addr, line)` and do so only for new keys).
    ///
    /// Errors are those of [`Walker::walk`]; `out` is empty after one.
    pub fn sample_into(&mut self, out: &mut RawSample) -> Result<(), WalkError> {
        self.sampling
            .sample_into(&self.process, &mut self.code, out, &mut |_| true)
    }

    /// [`Walker::sample_into`], reading the frames only of threads `wanted` says yes to (by
    /// thread-state address), and of whichever thread holds the GIL. The others are in
    /// `out.threads` with [`RawThread::walked`](crate::RawThread::walked) false and no frames; not copying their stacks
    /// makes the read smaller. A sampler that drops idle threads asks the kernel which those
    /// are first.
    pub fn sample_wanted_into(
        &mut self,
        out: &mut RawSample,
        wanted: &mut dyn FnMut(u64) -> bool,
    ) -> Result<(), WalkError> {
        self.sampling
            .sample_into(&self.process, &mut self.code, out, wanted)
    }

    /// [`Walker::sample_wanted_into`] reading nothing of the GIL: every thread's
    /// [`RawThread::holds_gil`](crate::RawThread::holds_gil) is false, and the GIL holder's
    /// frames are read only if wanted. For a read that must leave alone the memory the running
    /// threads hand the GIL over with (the holder's word, the GIL's flag and mutex, written
    /// with locked instructions at every hand-over): our read of those cache lines makes the
    /// next such write wait, so a thread stopped right after is found in `take_gil` more often
    /// than it runs there. The thread states and frames of the threads wanted, if they are not
    /// running, are memory no other thread writes.
    pub fn sample_wanted_without_gil_into(
        &mut self,
        out: &mut RawSample,
        wanted: &mut dyn FnMut(u64) -> bool,
    ) -> Result<(), WalkError> {
        self.sampling.gil_read = false;
        let got = self
            .sampling
            .sample_into(&self.process, &mut self.code, out, wanted);
        self.sampling.gil_read = true;
        got
    }

    /// Read the word at `offset` past each thread state with every sample, as
    /// [`RawThread::running_task`](crate::RawThread::running_task) (`None`: stop). Task-aware
    /// stacks ask for `asyncio_running_task` (3.14+), which lies past the `PyThreadState` the
    /// layout describes, in the `_PyThreadStateImpl` that holds it: one more range of the
    /// sample's batched read instead of a read of its own.
    pub fn watch_running_task(&mut self, offset: Option<u64>) {
        self.sampling.task_word = offset;
    }

    /// How many times [`Walker::sample_into`] read the target again because a copy was torn
    /// (the target moved its frames while they were copied).
    pub fn torn_reads(&self) -> u64 {
        self.sampling.torn_reads()
    }

    /// How many frames of the samples [`Walker::sample_into`] delivered were proven unchanged
    /// since the thread's previous sample (every byte the previous walk read for them is the
    /// same in this sample's copy) rather than walked: a measure of how much walking the
    /// comparison saved.
    pub fn frames_proven(&self) -> u64 {
        self.sampling.frames_proven()
    }

    /// Every thread of every interpreter, innermost frame first, with names resolved.
    ///
    /// The same sample as [`Walker::sample_into`] (and sharing its caches), plus
    /// [`Walker::frame_info`] for every frame: convenient, but it allocates per sample.
    pub fn walk(&mut self) -> Result<Vec<ThreadStack>, WalkError> {
        let mut raw = std::mem::take(&mut self.walk_buf);
        let result = self.sample_into(&mut raw).and_then(|()| {
            let mut out = Vec::with_capacity(raw.threads.len());
            for t in &raw.threads {
                let entries = raw.entries_of(t);
                let frames = raw
                    .frames_of(t)
                    .iter()
                    .enumerate()
                    .map(|(i, &f)| {
                        let mut frame = self.frame_info(f)?;
                        frame.entry = entries.get(i).copied().unwrap_or(false);
                        Ok(frame)
                    })
                    .collect::<Result<Vec<PyFrame>, WalkError>>()?;
                out.push(ThreadStack {
                    interp_addr: t.interp_addr,
                    interp_id: t.interp_id,
                    tstate_addr: t.tstate_addr,
                    thread_id: t.thread_id,
                    native_id: t.native_id,
                    holds_gil: t.holds_gil,
                    gc: t.gc,
                    exception: t.exception.and_then(|e| {
                        Some(ThreadException {
                            type_name: self.exception_name(e.type_addr)?,
                            raised: e.raised,
                        })
                    }),
                    frames,
                    truncated: t.truncated,
                });
            }
            Ok(out)
        });
        self.walk_buf = raw;
        result
    }

    /// Which decoding of the code object at `code_addr` the walker holds, if any: a number
    /// that differs for every code object decoded, so that a caller who keyed something by a
    /// code address can tell, with one lookup and no reading of the target, whether
    /// [`Walker::frame_info`] would still name it the same (a freed code object's address may be
    /// reused by another, which is then decoded afresh). `None`: not held (the cache was
    /// full and emptied, say); [`Walker::frame_info`] decodes it again.
    pub fn code_serial(&self, code_addr: u64) -> Option<u64> {
        self.code.serial(code_addr)
    }

    /// The name (`tp_name`) of an exception type a sample reported in
    /// [`RawThread::exception`](crate::RawThread::exception); `None` if it is no longer held
    /// (the cache was full and emptied since).
    pub fn exception_name(&self, type_addr: u64) -> Option<Arc<str>> {
        self.code.exceptions.name(type_addr)
    }

    /// Name, file and line of a frame from [`Walker::sample_into`] (its `entry` is false:
    /// take it from [`RawSample::entries`]).
    ///
    /// The code object was decoded when the sample first met it, so this is a cache lookup;
    /// callers that intern frames should key them by `(code_addr, line)` and call this only
    /// for keys they have not seen. Fails if the code object is no longer cached and the
    /// address no longer holds a code object (it was freed since the sample).
    pub fn frame_info(&mut self, f: RawFrame) -> Result<PyFrame, WalkError> {
        let info = self
            .code
            .code_info(&self.process, f.code_addr)?
            .ok_or(WalkError::Corrupt {
                what: "code object",
                addr: f.code_addr,
            })?;
        Ok(PyFrame {
            code_addr: f.code_addr,
            function: info.function.clone(),
            filename: info.filename.clone(),
            line: f.line,
            first_line: info.first_line(),
            entry: false,
        })
    }
}
