//! Threads, frames and code objects: the core of a sample.
//!
//! [`Walker::walk`] follows, for every interpreter, the thread-state list and each thread's
//! frame chain, and turns every Python frame into a [`Frame`] (function, file, line). All
//! structure comes from the [`Layout`]; the only branches are on its named shapes
//! ([`FrameModel`], [`RuntimeModel`], [`GilModel`], [`LineTable`]).
//!
//! Costs: a thread state is one read; on 3.11+ the used part of a thread's data-stack chunk is
//! one read that holds most of its frames; code objects are decoded once and cached by address.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use strobe_python_abi::{FrameModel, GilModel, Layout, LineTable, RuntimeModel};
use strobe_remote::{le, RemoteMemory};

use crate::linetable::LineMap;
use crate::strings::read_string;
use crate::WalkError;

/// Most interpreters (main + sub-interpreters) we follow in one process.
pub const MAX_INTERPRETERS: usize = 1024;
/// Most thread states we follow in one interpreter.
pub const MAX_THREADS: usize = 4096;
/// Deepest stack we report; deeper stacks are cut and marked [`ThreadStack::truncated`].
pub const MAX_DEPTH: usize = 10_000;
/// Largest part of a data-stack chunk copied in one read (3.11+).
pub const MAX_CHUNK_COPY: usize = 1 << 20;
/// Largest line table (`co_lnotab` / `co_linetable` bytes) we read.
pub const MAX_LINETABLE_BYTES: usize = 1 << 20;
/// Largest fixed part of a code object / thread state / frame we accept from a layout.
const MAX_STRUCT: usize = 64 * 1024;
/// Past this many cached code objects the cache is dropped and refilled.
const MAX_CODE_CACHE: usize = 1 << 16;
/// Up to this span, the chunk prefix up to the innermost frame is read without first reading
/// the chunk header (the header is part of the copy and validates it afterwards).
const CHUNK_SPECULATIVE: u64 = 64 * 1024;
/// Largest `_PyCodeArray.size` (one entry per thread that specialised the code) we accept.
const MAX_TLBC_ENTRIES: u64 = 1 << 16;
/// Up to this span, the interpreter fields we need are fetched in one read.
const MAX_FIELD_SPAN: usize = 4096;

/// `_PyCodeArray` (Include/cpython/code.h, 3.14 free-threaded): `Py_ssize_t size` then
/// `char *entries[]`. Entry 0 is the code object's own `co_code_adaptive`.
const CODE_ARRAY_SIZE: u64 = 0;
const CODE_ARRAY_ENTRIES: u64 = 8;

/// Addresses the locate step found; which ones are needed depends on the layout's shapes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roots {
    /// Address of `_PyRuntime` (3.7+).
    pub runtime: Option<u64>,
    /// Address of the `interp_head` static (≤3.6).
    pub interp_head: Option<u64>,
    /// Address of the `_PyThreadState_Current` variable (≤3.6): the GIL holder.
    pub tstate_current: Option<u64>,
}

/// One Python frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Address of the code object (stable key for interning while the code lives).
    pub code_addr: u64,
    /// `co_qualname` where the version has it (3.11+), else `co_name`.
    pub function: Arc<str>,
    /// `co_filename`.
    pub filename: Arc<str>,
    /// Current line; `None` when the line table has no line for the instruction.
    pub line: Option<i32>,
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
    /// Kernel thread id (3.8+; `None` before, or while unknown).
    pub native_id: Option<u32>,
    /// Whether this thread holds the GIL of its interpreter.
    pub holds_gil: bool,
    /// Frames, innermost first.
    pub frames: Vec<Frame>,
    /// The stack was deeper than [`MAX_DEPTH`] and was cut there.
    pub truncated: bool,
}

/// A decoded code object.
#[derive(Debug)]
struct CodeInfo {
    function: Arc<str>,
    filename: Arc<str>,
    lines: LineMap,
    /// Bytecode length in code units (3.11+, `Py_SIZE(code)`), to catch a recycled address.
    code_units: Option<i64>,
}

/// What one interpreter frame (3.11+) or frame object (≤3.10) tells us.
#[derive(Debug, Clone, Copy)]
struct RawFrame {
    previous: u64,
    code: u64,
    /// `f_lasti` (≤3.10) or the instruction pointer (3.11+).
    position: i64,
    owner: Option<u8>,
    tlbc_index: i32,
}

/// A copy of the used part of one `_PyStackChunk`.
#[derive(Debug)]
struct ChunkCopy {
    base: u64,
    bytes: Vec<u8>,
}

/// A chunk of the thread being walked that has not been copied yet.
#[derive(Debug)]
struct PendingChunk {
    base: u64,
    /// `_PyStackChunk.size`, once a look at the header told us.
    size: Option<u64>,
}

/// Chunk copies of the thread being walked, plus chunks we may still copy.
#[derive(Debug, Default)]
struct Chunks {
    copies: Vec<ChunkCopy>,
    /// The current chunk, then `previous` links as copies reveal them.
    pending: Vec<PendingChunk>,
}

/// Why a chunk was not copied.
enum NoCopy {
    /// The chunk is `size` bytes long and does not reach the frame.
    Short(u64),
    /// The chunk cannot be used (unreadable, implausible header).
    Unusable,
}

/// Walks the threads and stacks of a CPython process through [`RemoteMemory`].
#[derive(Debug)]
pub struct Walker<M: RemoteMemory> {
    mem: M,
    layout: Layout,
    roots: Roots,
    code_cache: HashMap<u64, Arc<CodeInfo>>,
    /// Type object address → whether its `tp_name` is "code".
    code_types: HashMap<u64, bool>,
    /// (code address, tlbc index) → start of that thread-local bytecode copy (3.14t).
    tlbc_bases: HashMap<(u64, i32), u64>,
    seen: HashSet<u64>,
    /// Code addresses decoded afresh during the current walk.
    refreshed: HashSet<u64>,
}

impl<M: RemoteMemory> Walker<M> {
    /// A walker over `mem` for an interpreter with `layout`, starting from `roots`.
    pub fn new(mem: M, layout: Layout, roots: Roots) -> Self {
        Walker {
            mem,
            layout,
            roots,
            code_cache: HashMap::new(),
            code_types: HashMap::new(),
            tlbc_bases: HashMap::new(),
            seen: HashSet::new(),
            refreshed: HashSet::new(),
        }
    }

    /// The memory being read.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The layout in use.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The roots in use.
    pub fn roots(&self) -> Roots {
        self.roots
    }

    /// Forget every cached code object (e.g. after the target reloaded modules).
    pub fn clear_caches(&mut self) {
        self.code_cache.clear();
        self.code_types.clear();
        self.tlbc_bases.clear();
    }

    /// Interpreter states `(address, id)`, main interpreter's list order. The id is
    /// `PyInterpreterState.id` where it exists (3.7+), else the position in the list.
    pub fn interpreters(&mut self) -> Result<Vec<(u64, i64)>, WalkError> {
        let l = self.layout;
        let mut addr = self.first_interpreter()?;
        let mut out = Vec::new();
        self.seen.clear();
        while addr != 0 {
            if out.len() >= MAX_INTERPRETERS || !self.seen.insert(addr) {
                return Err(WalkError::Unbounded {
                    what: "interpreter",
                    limit: MAX_INTERPRETERS,
                });
            }
            let (next, id) = match l.interp_id {
                Some(off) => {
                    let [next, id] = self.read_words(addr, [l.interp_next, off])?;
                    (next, id as i64)
                }
                // ≤3.6 interpreters have no id; the main interpreter is the last one created,
                // but the list position is the only stable label we have.
                None => (
                    self.mem.read_u64(addr + u64::from(l.interp_next))?,
                    out.len() as i64,
                ),
            };
            out.push((addr, id));
            addr = next;
        }
        Ok(out)
    }

    /// Every thread of every interpreter, innermost frame first.
    pub fn walk(&mut self) -> Result<Vec<ThreadStack>, WalkError> {
        self.refreshed.clear();
        let interps = self.interpreters()?;
        let global_holder = self.global_gil_holder()?;
        let mut out = Vec::new();
        for (interp, interp_id) in interps {
            let holder = match self.layout.gil_model {
                GilModel::InterpGilPointer => self.interp_gil_holder(interp)?,
                GilModel::CurrentSymbol | GilModel::RuntimeTstateCurrent => global_holder,
            };
            self.walk_interpreter(interp, interp_id, holder, &mut out)?;
        }
        Ok(out)
    }

    fn first_interpreter(&self) -> Result<u64, WalkError> {
        match self.layout.runtime_model {
            RuntimeModel::PyRuntime37 => {
                let runtime = self.roots.runtime.ok_or_else(|| {
                    WalkError::Unsupported(
                        "the address of _PyRuntime is unknown, so the interpreter list cannot be \
                         found; the interpreter binary may be stripped of its dynamic symbols"
                            .into(),
                    )
                })?;
                let off = self.layout.runtime_interpreters_head.ok_or_else(|| {
                    WalkError::Unsupported("layout lacks _PyRuntime.interpreters.head".into())
                })?;
                Ok(self.mem.read_u64(runtime + u64::from(off))?)
            }
            RuntimeModel::InterpHead => {
                let head = self.roots.interp_head.ok_or_else(|| {
                    WalkError::Unsupported(
                        "the address of the interp_head static is unknown (it comes from the \
                         interpreter's symbol table): the interpreter list cannot be found"
                            .into(),
                    )
                })?;
                Ok(self.mem.read_u64(head)?)
            }
        }
    }

    /// The GIL holder for shapes that record it once per process; `None` when nobody holds
    /// it, when it is recorded per interpreter, or when the root is unknown.
    fn global_gil_holder(&self) -> Result<Option<u64>, WalkError> {
        let at = match self.layout.gil_model {
            // Include/pystate.h (≤3.6): `_PyThreadState_Current` is NULL while the GIL is free.
            GilModel::CurrentSymbol => self.roots.tstate_current,
            // Include/internal/pycore_runtime.h (3.7–3.11): `gilstate.tstate_current` is swapped
            // to NULL by PyEval_SaveThread when a thread releases the GIL.
            GilModel::RuntimeTstateCurrent => self
                .roots
                .runtime
                .zip(self.layout.runtime_tstate_current)
                .map(|(r, off)| r + u64::from(off)),
            GilModel::InterpGilPointer => None,
        };
        match at {
            Some(at) => Ok(Some(self.mem.read_u64(at)?).filter(|&t| t != 0)),
            None => Ok(None),
        }
    }

    /// 3.12+ (Include/internal/pycore_ceval_state.h, pycore_gil.h): `interp->ceval.gil` points at
    /// the `_gil_runtime_state` in use; `last_holder` is the holder while `locked` is set.
    fn interp_gil_holder(&self, interp: u64) -> Result<Option<u64>, WalkError> {
        let l = &self.layout;
        let (Some(gil_ptr), Some(locked), Some(holder)) =
            (l.interp_ceval_gil, l.gil_locked, l.gil_last_holder)
        else {
            return Ok(None);
        };
        let gil = self.mem.read_u64(interp + u64::from(gil_ptr))?;
        if gil == 0 {
            return Ok(None);
        }
        if self.mem.read_i32(gil + u64::from(locked))? == 0 {
            return Ok(None);
        }
        Ok(Some(self.mem.read_u64(gil + u64::from(holder))?).filter(|&t| t != 0))
    }

    fn walk_interpreter(
        &mut self,
        interp: u64,
        interp_id: i64,
        holder: Option<u64>,
        out: &mut Vec<ThreadStack>,
    ) -> Result<(), WalkError> {
        let l = self.layout;
        let tsize = struct_len(l.tstate_size, "thread state")?;
        let mut tstate = self
            .mem
            .read_u64(interp + u64::from(l.interp_tstate_head))?;
        let mut threads: HashSet<u64> = HashSet::new();
        let mut buf = vec![0u8; tsize];
        while tstate != 0 {
            if threads.len() >= MAX_THREADS || !threads.insert(tstate) {
                return Err(WalkError::Unbounded {
                    what: "thread state",
                    limit: MAX_THREADS,
                });
            }
            // One read per thread state; every field is decoded from this copy.
            self.mem.read_into(tstate, &mut buf)?;
            let field = |off: u32| {
                le::u64_at(&buf, off as usize).ok_or(WalkError::Corrupt {
                    what: "thread-state layout (field past tstate_size)",
                    addr: tstate,
                })
            };
            let next = field(l.tstate_next)?;
            if field(l.tstate_interp)? != interp {
                // The thread exited and its memory was reused, or the list is being edited.
                return Err(WalkError::Corrupt {
                    what: "thread state whose interp pointer is not its interpreter",
                    addr: tstate,
                });
            }
            let thread_id = field(l.tstate_thread_id)?;
            let native_id = match l.tstate_native_thread_id {
                Some(off) => u32::try_from(field(off)?).ok().filter(|&t| t != 0),
                None => None,
            };
            let innermost = match l.frame_model {
                FrameModel::FrameObject => field(need(l.tstate_frame, "tstate.frame")?)?,
                FrameModel::CFrame311 => {
                    let cframe = field(need(l.tstate_cframe, "tstate.cframe")?)?;
                    if cframe == 0 {
                        0
                    } else {
                        let off = need(l.cframe_current_frame, "cframe.current_frame")?;
                        self.mem.read_u64(cframe + u64::from(off))?
                    }
                }
                FrameModel::Direct313 => {
                    field(need(l.tstate_current_frame, "tstate.current_frame")?)?
                }
            };
            let chunk = match l.tstate_datastack_chunk {
                Some(off) => field(off)?,
                None => 0,
            };
            let (frames, truncated) = match l.frame_model {
                FrameModel::FrameObject => self.frames_objects(innermost)?,
                FrameModel::CFrame311 | FrameModel::Direct313 => {
                    self.frames_interpreter(innermost, chunk)?
                }
            };
            out.push(ThreadStack {
                interp_addr: interp,
                interp_id,
                tstate_addr: tstate,
                thread_id,
                native_id,
                holds_gil: holder == Some(tstate),
                frames,
                truncated,
            });
            tstate = next;
        }
        Ok(())
    }

    /// ≤3.10: `PyFrameObject`s linked by `f_back` (Include/frameobject.h; Include/cpython/
    /// frameobject.h in 3.9–3.10). One read per frame covering `f_back`, `f_code`, `f_lasti`.
    fn frames_objects(&mut self, mut addr: u64) -> Result<(Vec<Frame>, bool), WalkError> {
        let l = self.layout;
        let back = need(l.frame_back, "frame.f_back")? as usize;
        let code = need(l.frame_code, "frame.f_code")? as usize;
        let lasti = need(l.frame_lasti, "frame.f_lasti")? as usize;
        let len = (back + 8).max(code + 8).max(lasti + 4);
        let len = struct_len(len as u32, "frame object")?;
        let mut buf = vec![0u8; len];
        let mut frames = Vec::new();
        self.seen.clear();
        while addr != 0 {
            if frames.len() >= MAX_DEPTH {
                return Ok((frames, true));
            }
            if !self.seen.insert(addr) {
                return Err(WalkError::Unbounded {
                    what: "frame",
                    limit: MAX_DEPTH,
                });
            }
            self.mem.read_into(addr, &mut buf)?;
            let corrupt = WalkError::Corrupt {
                what: "frame object",
                addr,
            };
            let raw = RawFrame {
                previous: le::u64_at(&buf, back).ok_or(corrupt.clone())?,
                code: le::u64_at(&buf, code).ok_or(corrupt.clone())?,
                position: i64::from(le::i32_at(&buf, lasti).ok_or(corrupt)?),
                owner: None,
                tlbc_index: 0,
            };
            if raw.code != 0 {
                if let Some(f) = self.python_frame(&raw)? {
                    frames.push(f);
                }
            }
            addr = raw.previous;
        }
        Ok((frames, false))
    }

    /// 3.11+: `_PyInterpreterFrame`s linked by `previous` (Include/internal/pycore_frame.h;
    /// pycore_interpframe_structs.h since 3.14). Frames in the thread's data-stack chunks are
    /// served from one copy per chunk; others (generator frames) are read one by one.
    fn frames_interpreter(
        &mut self,
        mut addr: u64,
        chunk: u64,
    ) -> Result<(Vec<Frame>, bool), WalkError> {
        let l = self.layout;
        let size = struct_len(need(l.iframe_size, "interpreter frame size")?, "frame")?;
        let mut chunks = Chunks::default();
        if chunk != 0 {
            chunks.pending.push(PendingChunk {
                base: chunk,
                size: None,
            });
        }
        let mut direct = vec![0u8; size];
        let mut frames = Vec::new();
        self.seen.clear();
        while addr != 0 {
            if frames.len() >= MAX_DEPTH {
                return Ok((frames, true));
            }
            if !self.seen.insert(addr) {
                return Err(WalkError::Unbounded {
                    what: "frame",
                    limit: MAX_DEPTH,
                });
            }
            let raw = match self.chunk_frame(&mut chunks, addr, size) {
                Some(bytes) => decode_iframe(&l, bytes, addr)?,
                None => {
                    self.mem.read_into(addr, &mut direct)?;
                    decode_iframe(&l, &direct, addr)?
                }
            };
            let skip = raw.owner.is_some()
                && (raw.owner == l.owner_cstack || raw.owner == l.owner_interpreter);
            if !skip && raw.code != 0 {
                if let Some(f) = self.python_frame(&raw)? {
                    frames.push(f);
                }
            }
            addr = raw.previous;
        }
        Ok((frames, false))
    }

    /// The `size` bytes of the frame at `addr` from a chunk copy, copying a chunk first if
    /// `addr` may lie in one not yet copied. `None`: read the frame directly.
    fn chunk_frame<'c>(&self, chunks: &'c mut Chunks, addr: u64, size: usize) -> Option<&'c [u8]> {
        let end = addr.checked_add(size as u64)?;
        let found = |c: &ChunkCopy| addr >= c.base && end <= c.base + c.bytes.len() as u64;
        if !chunks.copies.iter().any(found) {
            let candidate = chunks.pending.iter().position(|p| {
                addr >= p.base
                    && end - p.base <= p.size.unwrap_or(MAX_CHUNK_COPY as u64)
                    && end - p.base <= MAX_CHUNK_COPY as u64
            });
            if let Some(i) = candidate {
                match self.copy_chunk(chunks.pending[i].base, end) {
                    Ok(copy) => {
                        chunks.pending.swap_remove(i);
                        // Frames further out may live in the previous (older) chunk.
                        let previous = self
                            .layout
                            .chunk_previous
                            .and_then(|off| le::u64_at(&copy.bytes, off as usize))
                            .filter(|&p| p != 0)
                            .filter(|&p| !chunks.copies.iter().any(|c| c.base == p))
                            .filter(|&p| chunks.pending.iter().all(|c| c.base != p));
                        if let Some(base) = previous {
                            chunks.pending.push(PendingChunk { base, size: None });
                        }
                        chunks.copies.push(copy);
                    }
                    // A generator frame just above the chunk: remember the chunk's real size
                    // so that its own frames are still copied in one go later.
                    Err(NoCopy::Short(len)) => chunks.pending[i].size = Some(len),
                    Err(NoCopy::Unusable) => {
                        chunks.pending.swap_remove(i);
                    }
                }
            }
        }
        let c = chunks.copies.iter().find(|c| found(c))?;
        let off = (addr - c.base) as usize;
        c.bytes.get(off..off + size)
    }

    /// Copy `[base, end)` of the chunk at `base` if the chunk's own `size` says it reaches
    /// `end`.
    fn copy_chunk(&self, base: u64, end: u64) -> Result<ChunkCopy, NoCopy> {
        let l = &self.layout;
        let (Some(size_off), Some(data_off)) = (l.chunk_size, l.chunk_data) else {
            return Err(NoCopy::Unusable);
        };
        let size_off = size_off as usize;
        let len = end.checked_sub(base).ok_or(NoCopy::Unusable)?;
        if len < u64::from(data_off) || len > MAX_CHUNK_COPY as u64 {
            return Err(NoCopy::Unusable);
        }
        // `_PyStackChunk.size` is the chunk's allocation in bytes (Python/pystate.c,
        // allocate_chunk): a frame ending past it is not in this chunk.
        let check = |chunk_size: u64| {
            if chunk_size > 1 << 30 {
                Err(NoCopy::Unusable)
            } else if chunk_size < len {
                Err(NoCopy::Short(chunk_size))
            } else {
                Ok(())
            }
        };
        if len > CHUNK_SPECULATIVE {
            let head = self
                .mem
                .read_vec(base, data_off as usize, 64)
                .map_err(|_| NoCopy::Unusable)?;
            check(le::u64_at(&head, size_off).ok_or(NoCopy::Unusable)?)?;
        }
        let bytes = self
            .mem
            .read_vec(base, len as usize, MAX_CHUNK_COPY)
            .map_err(|_| NoCopy::Unusable)?;
        check(le::u64_at(&bytes, size_off).ok_or(NoCopy::Unusable)?)?;
        Ok(ChunkCopy { base, bytes })
    }

    /// Turn a raw frame into a [`Frame`]; `None` when its code slot does not hold a code object.
    fn python_frame(&mut self, raw: &RawFrame) -> Result<Option<Frame>, WalkError> {
        let Some(mut info) = self.code_info(raw.code)? else {
            return Ok(None);
        };
        let mut lasti = self.lasti(raw, &info)?;
        if !plausible_lasti(&info, lasti) && self.refreshed.insert(raw.code) {
            // 3.11+: the address was probably freed and reused by another code object since we
            // cached it. Decode it afresh, at most once per code address and sample (a frame
            // that has not started has no meaningful position either).
            self.code_cache.remove(&raw.code);
            self.tlbc_bases.retain(|&(c, _), _| c != raw.code);
            match self.code_info(raw.code)? {
                Some(fresh) => info = fresh,
                None => return Ok(None),
            }
            lasti = self.lasti(raw, &info)?;
        }
        let line = if plausible_lasti(&info, lasti) {
            info.lines.line(lasti)
        } else {
            None
        };
        Ok(Some(Frame {
            code_addr: raw.code,
            function: info.function.clone(),
            filename: info.filename.clone(),
            line,
        }))
    }

    /// The `lasti` units [`LineMap::line`] expects for this layout's line table.
    fn lasti(&mut self, raw: &RawFrame, info: &CodeInfo) -> Result<i64, WalkError> {
        match self.layout.line_table {
            // ≤3.10: `f_lasti` as stored (bytes ≤3.9, code units in 3.10).
            LineTable::Lnotab27 | LineTable::Lnotab36 | LineTable::Linetable310 => Ok(raw.position),
            // 3.11+: index of the instruction in code units, relative to the bytecode copy the
            // frame executes (Include/internal/pycore_frame.h `_PyInterpreterFrame_LASTI`;
            // 3.14t `_PyFrame_GetBytecode` in pycore_interpframe.h).
            LineTable::Location311 => {
                let base = self.bytecode_base(raw, info)?;
                Ok(((raw.position as u64).wrapping_sub(base) as i64) >> 1)
            }
        }
    }

    /// Start of the bytecode `instr_ptr` points into: `co_code_adaptive`, or on free-threaded
    /// 3.14+ the thread-local copy `co_tlbc->entries[tlbc_index]`.
    fn bytecode_base(&mut self, raw: &RawFrame, info: &CodeInfo) -> Result<u64, WalkError> {
        let adaptive = need(self.layout.code_code_adaptive, "code.co_code_adaptive")?;
        let main = raw.code + u64::from(adaptive);
        let (Some(tlbc_off), true) = (self.layout.code_tlbc, raw.tlbc_index != 0) else {
            return Ok(main);
        };
        let key = (raw.code, raw.tlbc_index);
        if let Some(&base) = self.tlbc_bases.get(&key) {
            if in_bytecode(info, raw.position, base) {
                return Ok(base);
            }
        }
        let corrupt = WalkError::Corrupt {
            what: "thread-local bytecode index",
            addr: raw.code,
        };
        let index = u64::try_from(raw.tlbc_index).map_err(|_| corrupt.clone())?;
        let array = self.mem.read_u64(raw.code + u64::from(tlbc_off))?;
        if array == 0 {
            return Err(corrupt);
        }
        let count = self.mem.read_u64(array + CODE_ARRAY_SIZE)?;
        if count > MAX_TLBC_ENTRIES || index >= count {
            return Err(corrupt);
        }
        let base = self.mem.read_u64(array + CODE_ARRAY_ENTRIES + index * 8)?;
        if base == 0 {
            return Err(corrupt);
        }
        self.tlbc_bases.insert(key, base);
        Ok(base)
    }

    /// The decoded code object at `addr`, from the cache or read now; `None` when the object
    /// is not a code object (3.13+ entry frames may hold `None` in `f_executable`).
    fn code_info(&mut self, addr: u64) -> Result<Option<Arc<CodeInfo>>, WalkError> {
        if let Some(info) = self.code_cache.get(&addr) {
            return Ok(Some(info.clone()));
        }
        let l = self.layout;
        // The object header first: reading a whole PyCodeObject's worth from a small object
        // such as None could run off its mapping.
        let head_len = struct_len(l.pyobject_size, "object header")?;
        let head = self.mem.read_vec(addr, head_len, MAX_STRUCT)?;
        let ob_type = le::u64_at(&head, l.pyobject_ob_type as usize).ok_or(WalkError::Corrupt {
            what: "object header",
            addr,
        })?;
        if !self.is_code_type(ob_type)? {
            return Ok(None);
        }
        let code = self
            .mem
            .read_vec(addr, struct_len(l.code_size, "code object")?, MAX_STRUCT)?;
        let corrupt = WalkError::Corrupt {
            what: "code object",
            addr,
        };
        let ptr = |off: u32| le::u64_at(&code, off as usize).ok_or(corrupt.clone());
        let name_ptr = match l.code_qualname {
            Some(off) => ptr(off)?,
            None => ptr(l.code_name)?,
        };
        let filename_ptr = ptr(l.code_filename)?;
        let firstlineno = le::i32_at(&code, l.code_firstlineno as usize).ok_or(corrupt.clone())?;
        let table_ptr = match (l.code_linetable, l.code_lnotab) {
            (Some(off), _) | (None, Some(off)) => ptr(off)?,
            (None, None) => 0,
        };
        // 3.11+ PyCodeObject is a PyVarObject whose size is the bytecode length in code units
        // (Include/cpython/code.h, `_PyCode_NBYTES`).
        let code_units = match l.line_table {
            LineTable::Location311 => Some(ptr(l.pyvarobject_ob_size)? as i64),
            _ => None,
        };
        let function: Arc<str> = read_string(&self.mem, &l, name_ptr)?.into();
        let filename: Arc<str> = read_string(&self.mem, &l, filename_ptr)?.into();
        let table = if table_ptr == 0 {
            Vec::new()
        } else {
            self.read_bytes(table_ptr)?
        };
        let info = Arc::new(CodeInfo {
            function,
            filename,
            lines: LineMap::new(l.line_table, &table, firstlineno),
            code_units,
        });
        if self.code_cache.len() >= MAX_CODE_CACHE {
            self.code_cache.clear();
            self.tlbc_bases.clear();
        }
        self.code_cache.insert(addr, info.clone());
        Ok(Some(info))
    }

    /// The payload of a `bytes` object (`str` on 2.7), bounded by [`MAX_LINETABLE_BYTES`].
    fn read_bytes(&self, addr: u64) -> Result<Vec<u8>, WalkError> {
        let l = &self.layout;
        let len = self.mem.read_u64(addr + u64::from(l.pyvarobject_ob_size))? as i64;
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= MAX_LINETABLE_BYTES)
            .ok_or(WalkError::Corrupt {
                what: "line table length",
                addr,
            })?;
        Ok(self
            .mem
            .read_vec(addr + u64::from(l.bytes_ob_sval), len, MAX_LINETABLE_BYTES)?)
    }

    /// Whether the type object at `ty` is `code` (its `tp_name`), asked once per type.
    fn is_code_type(&mut self, ty: u64) -> Result<bool, WalkError> {
        if let Some(&known) = self.code_types.get(&ty) {
            return Ok(known);
        }
        if ty == 0 {
            return Ok(false);
        }
        // Include/cpython/object.h: `struct _typeobject { PyObject_VAR_HEAD; const char
        // *tp_name; ...}`: tp_name directly follows ob_size.
        let tp_name_at = ty + u64::from(self.layout.pyvarobject_ob_size) + 8;
        let name = self.mem.read_u64(tp_name_at)?;
        let mut text = [0u8; 5];
        let is_code = name != 0 && {
            self.mem.read_into(name, &mut text)?;
            &text == b"code\0"
        };
        if self.code_types.len() < 1024 {
            self.code_types.insert(ty, is_code);
        }
        Ok(is_code)
    }

    /// Read the u64s at `base + offs[i]`, in one read when they lie close together.
    fn read_words<const N: usize>(&self, base: u64, offs: [u32; N]) -> Result<[u64; N], WalkError> {
        let mut out = [0u64; N];
        let lo = offs.iter().copied().min().unwrap_or(0) as usize;
        let hi = offs.iter().copied().max().unwrap_or(0) as usize + 8;
        if hi - lo <= MAX_FIELD_SPAN {
            let buf = self
                .mem
                .read_vec(base + lo as u64, hi - lo, MAX_FIELD_SPAN)?;
            for (o, off) in out.iter_mut().zip(offs) {
                *o = le::u64_at(&buf, off as usize - lo).ok_or(WalkError::Corrupt {
                    what: "field span",
                    addr: base,
                })?;
            }
        } else {
            for (o, off) in out.iter_mut().zip(offs) {
                *o = self.mem.read_u64(base + u64::from(off))?;
            }
        }
        Ok(out)
    }
}

/// Decode the fields we use from a copy of a `_PyInterpreterFrame`.
fn decode_iframe(l: &Layout, buf: &[u8], addr: u64) -> Result<RawFrame, WalkError> {
    let corrupt = || WalkError::Corrupt {
        what: "interpreter frame",
        addr,
    };
    let u64_field = |off: Option<u32>, what: &'static str| -> Result<u64, WalkError> {
        le::u64_at(buf, need(off, what)? as usize).ok_or_else(corrupt)
    };
    let owner = match l.iframe_owner {
        Some(off) => Some(le::u8_at(buf, off as usize).ok_or_else(corrupt)?),
        None => None,
    };
    let tlbc_index = match l.iframe_tlbc_index {
        Some(off) => le::i32_at(buf, off as usize).ok_or_else(corrupt)?,
        None => 0,
    };
    Ok(RawFrame {
        previous: u64_field(l.iframe_previous, "frame.previous")?,
        // 3.14+: f_executable is a `_PyStackRef` whose low bits are tags
        // (Include/internal/pycore_stackref.h).
        code: u64_field(l.iframe_code, "frame.f_executable")? & l.stackref_mask,
        position: u64_field(l.iframe_instr_ptr, "frame.instr_ptr")? as i64,
        owner,
        tlbc_index,
    })
}

/// Whether `lasti` (code units) can belong to this code object: from -1 (3.11–3.12
/// `prev_instr` before the first instruction) to its length. Always true before 3.11.
fn plausible_lasti(info: &CodeInfo, lasti: i64) -> bool {
    info.code_units.is_none_or(|n| (-1..=n).contains(&lasti))
}

fn in_bytecode(info: &CodeInfo, instr_ptr: i64, base: u64) -> bool {
    plausible_lasti(info, ((instr_ptr as u64).wrapping_sub(base) as i64) >> 1)
}

fn need(v: Option<u32>, what: &str) -> Result<u32, WalkError> {
    v.ok_or_else(|| {
        WalkError::Unsupported(format!(
            "the interpreter layout lacks {what}, which its frame model needs"
        ))
    })
}

fn struct_len(len: u32, what: &str) -> Result<usize, WalkError> {
    let len = len as usize;
    if len == 0 || len > MAX_STRUCT {
        return Err(WalkError::Unsupported(format!(
            "the interpreter layout gives an implausible {what} size ({len} bytes)"
        )));
    }
    Ok(len)
}
