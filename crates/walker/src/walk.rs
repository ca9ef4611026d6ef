//! Threads, frames and code objects: the core of a sample.
//!
//! Two ways to take a sample:
//! - [`Walker::sample_into`] (module [`crate::sample`]) is the hot path: it fills a reused
//!   [`RawSample`] with `(code address, instruction, line)` per frame, allocation-free and in one
//!   batched read of the target per sample in steady state. Names and files come from
//!   [`Walker::frame_info`], once per code object and line, when the caller first meets them.
//! - [`Walker::walk`] returns every thread's stack with names resolved ([`ThreadStack`]); it
//!   is `sample_into` followed by `frame_info` for each frame.
//!
//! All structure comes from the [`Layout`]; the only branches are on its named shapes
//! ([`FrameModel`](strobe_python_abi::FrameModel), [`RuntimeModel`], [`GilModel`], [`LineTable`]). Code objects are decoded
//! once (names, file, line table) and cached by address.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::{GilModel, Layout, LineTable, RuntimeModel};

use crate::linetable::LineMap;
use crate::sample::{Plan, RawFrame, RawSample, Scratch, Shapes};
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
pub(crate) const MAX_STRUCT: usize = 64 * 1024;
/// Past this many cached code objects the cache is dropped and refilled.
const MAX_CODE_CACHE: usize = 1 << 16;
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
pub struct PyFrame {
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
    /// Kernel thread id (3.11+: `native_thread_id`; `None` before, or while unknown).
    pub native_id: Option<u32>,
    /// Whether this thread holds the GIL of its interpreter.
    pub holds_gil: bool,
    /// Frames, innermost first.
    pub frames: Vec<PyFrame>,
    /// The stack was deeper than [`MAX_DEPTH`] and was cut there.
    pub truncated: bool,
}

/// A decoded code object.
#[derive(Debug)]
pub(crate) struct CodeInfo {
    function: Arc<str>,
    filename: Arc<str>,
    lines: LineMap,
    /// Bytecode length in code units (3.11+, `Py_SIZE(code)`), to catch a recycled address.
    code_units: Option<i64>,
    /// Which decoding this is (see [`Walker::code_serial`]).
    serial: u64,
}

/// What one interpreter frame (3.11+) or frame object (≤3.10) tells us.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameFields {
    pub(crate) previous: u64,
    pub(crate) code: u64,
    /// `f_lasti` (≤3.10) or the instruction pointer (3.11+).
    pub(crate) position: i64,
    pub(crate) owner: Option<u8>,
    pub(crate) tlbc_index: i32,
}

/// Hasher for maps keyed by target addresses: a multiply-xorshift mix (addresses are aligned,
/// so their low bits alone would make poor bucket indices). Not DoS-resistant, which is fine:
/// the keys are a few thousand pointers, and hashing sits on the sampling hot path.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        let h = (self.0 ^ (self.0 >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^ (h >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(17) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_i32(&mut self, v: i32) {
        self.write_u64(v as u32 as u64);
    }
}

pub(crate) type AddrMap<K, V> = HashMap<K, V, BuildHasherDefault<AddrHasher>>;

/// Walks the threads and stacks of a CPython process through [`RemoteMemory`].
#[derive(Debug)]
pub struct Walker<M: RemoteMemory> {
    pub(crate) mem: M,
    pub(crate) layout: Layout,
    pub(crate) roots: Roots,
    code_cache: AddrMap<u64, Arc<CodeInfo>>,
    /// Code objects decoded so far: the next one's serial.
    code_serials: u64,
    /// Type object address → whether its `tp_name` is "code".
    code_types: AddrMap<u64, bool>,
    /// (code address, tlbc index) → start of that thread-local bytecode copy (3.14t).
    tlbc_bases: AddrMap<(u64, i32), u64>,
    seen: HashSet<u64>,
    /// Code addresses decoded afresh during the current sample.
    pub(crate) refreshed: HashSet<u64>,
    /// Interpreters and threads as last seen, and what to read speculatively for them.
    pub(crate) plan: Plan,
    /// Buffers reused from sample to sample.
    pub(crate) scratch: Scratch,
    /// Which fields of each structure a sample reads, grouped into as few reads as possible.
    pub(crate) shapes: Shapes,
    /// The sample `walk` fills before resolving names.
    walk_buf: RawSample,
}

impl<M: RemoteMemory> Walker<M> {
    /// A walker over `mem` for an interpreter with `layout`, starting from `roots`.
    pub fn new(mem: M, layout: Layout, roots: Roots) -> Self {
        Walker {
            mem,
            layout,
            roots,
            code_cache: AddrMap::default(),
            code_serials: 0,
            code_types: AddrMap::default(),
            tlbc_bases: AddrMap::default(),
            seen: HashSet::new(),
            refreshed: HashSet::new(),
            plan: Plan::default(),
            scratch: Scratch::default(),
            shapes: Shapes::new(&layout),
            walk_buf: RawSample::default(),
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

    /// Forget every cached code object and everything remembered about threads and stacks
    /// (e.g. after the target reloaded modules, or after repeated failed samples).
    pub fn clear_caches(&mut self) {
        self.code_cache.clear();
        self.code_types.clear();
        self.tlbc_bases.clear();
        self.plan = Plan::default();
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
                    self.mem
                        .read_u64(addr.wrapping_add(u64::from(l.interp_next)))?,
                    out.len() as i64,
                ),
            };
            out.push((addr, id));
            addr = next;
        }
        Ok(out)
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
                let frames = raw
                    .frames_of(t)
                    .iter()
                    .map(|&f| self.frame_info(f))
                    .collect::<Result<Vec<PyFrame>, WalkError>>()?;
                out.push(ThreadStack {
                    interp_addr: t.interp_addr,
                    interp_id: t.interp_id,
                    tstate_addr: t.tstate_addr,
                    thread_id: t.thread_id,
                    native_id: t.native_id,
                    holds_gil: t.holds_gil,
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
        self.code_cache.get(&code_addr).map(|info| info.serial)
    }

    /// Name, file and line of a frame from [`Walker::sample_into`].
    ///
    /// The code object was decoded when the sample first met it, so this is a cache lookup;
    /// callers that intern frames should key them by `(code_addr, line)` and call this only
    /// for keys they have not seen. Fails if the code object is no longer cached and the
    /// address no longer holds a code object (it was freed since the sample).
    pub fn frame_info(&mut self, f: RawFrame) -> Result<PyFrame, WalkError> {
        let info = self.code_info(f.code_addr)?.ok_or(WalkError::Corrupt {
            what: "code object",
            addr: f.code_addr,
        })?;
        Ok(PyFrame {
            code_addr: f.code_addr,
            function: info.function.clone(),
            filename: info.filename.clone(),
            line: f.line,
        })
    }

    pub(crate) fn first_interpreter(&self) -> Result<u64, WalkError> {
        let at = self.interp_head_address()?;
        Ok(self.mem.read_u64(at)?)
    }

    /// Where the pointer to the first interpreter lives.
    pub(crate) fn interp_head_address(&self) -> Result<u64, WalkError> {
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
                Ok(runtime.wrapping_add(u64::from(off)))
            }
            RuntimeModel::InterpHead => self.roots.interp_head.ok_or_else(|| {
                WalkError::Unsupported(
                    "the address of the interp_head static is unknown (it comes from the \
                     interpreter's symbol table): the interpreter list cannot be found"
                        .into(),
                )
            }),
        }
    }

    /// Where the GIL holder is recorded once per process (≤3.11): `None` when it is
    /// recorded per interpreter or the root is unknown.
    pub(crate) fn global_gil_address(&self) -> Option<u64> {
        match self.layout.gil_model {
            // Include/pystate.h (≤3.6): `_PyThreadState_Current` is NULL while the GIL is free.
            GilModel::CurrentSymbol => self.roots.tstate_current,
            // Include/internal/pycore_runtime.h (3.7–3.11): `gilstate.tstate_current` is swapped
            // to NULL by PyEval_SaveThread when a thread releases the GIL.
            GilModel::RuntimeTstateCurrent => self
                .roots
                .runtime
                .zip(self.layout.runtime_tstate_current)
                .map(|(r, off)| r.wrapping_add(u64::from(off))),
            GilModel::InterpGilPointer => None,
        }
    }

    /// 3.12+ (Include/internal/pycore_ceval_state.h, pycore_gil.h): `interp->ceval.gil` points at
    /// the `_gil_runtime_state` in use; `last_holder` is the holder while `locked` is set.
    pub(crate) fn gil_holder_at(&self, gil: u64) -> Result<Option<u64>, WalkError> {
        let l = &self.layout;
        let (Some(locked), Some(holder)) = (l.gil_locked, l.gil_last_holder) else {
            return Ok(None);
        };
        if gil == 0 || self.mem.read_i32(gil.wrapping_add(u64::from(locked)))? == 0 {
            return Ok(None);
        }
        Ok(Some(self.mem.read_u64(gil.wrapping_add(u64::from(holder)))?).filter(|&t| t != 0))
    }

    /// Line of a frame: `Ok(None)` when its code slot does not hold a code object, else the
    /// `lasti` [`LineMap::line`] takes and the line.
    pub(crate) fn resolve_frame(
        &mut self,
        raw: &FrameFields,
    ) -> Result<Option<(i64, Option<i32>)>, WalkError> {
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
        Ok(Some((lasti, line)))
    }

    /// The `lasti` units [`LineMap::line`] expects for this layout's line table.
    fn lasti(&mut self, raw: &FrameFields, info: &CodeInfo) -> Result<i64, WalkError> {
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
    fn bytecode_base(&mut self, raw: &FrameFields, info: &CodeInfo) -> Result<u64, WalkError> {
        let adaptive = need(self.layout.code_code_adaptive, "code.co_code_adaptive")?;
        let main = raw.code.wrapping_add(u64::from(adaptive));
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
        let array = self
            .mem
            .read_u64(raw.code.wrapping_add(u64::from(tlbc_off)))?;
        if array == 0 {
            return Err(corrupt);
        }
        let count = self.mem.read_u64(array.wrapping_add(CODE_ARRAY_SIZE))?;
        if count > MAX_TLBC_ENTRIES || index >= count {
            return Err(corrupt);
        }
        let base = self
            .mem
            .read_u64(array.wrapping_add(CODE_ARRAY_ENTRIES + index * 8))?;
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
        self.code_serials += 1;
        let info = Arc::new(CodeInfo {
            function,
            filename,
            lines: LineMap::new(l.line_table, &table, firstlineno),
            code_units,
            serial: self.code_serials,
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
        let len =
            self.mem
                .read_u64(addr.wrapping_add(u64::from(l.pyvarobject_ob_size)))? as i64;
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= MAX_LINETABLE_BYTES)
            .ok_or(WalkError::Corrupt {
                what: "line table length",
                addr,
            })?;
        Ok(self.mem.read_vec(
            addr.wrapping_add(u64::from(l.bytes_ob_sval)),
            len,
            MAX_LINETABLE_BYTES,
        )?)
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
        let tp_name_at = ty
            .wrapping_add(u64::from(self.layout.pyvarobject_ob_size))
            .wrapping_add(8);
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
                .read_vec(base.wrapping_add(lo as u64), hi - lo, MAX_FIELD_SPAN)?;
            for (o, off) in out.iter_mut().zip(offs) {
                *o = le::u64_at(&buf, off as usize - lo).ok_or(WalkError::Corrupt {
                    what: "field span",
                    addr: base,
                })?;
            }
        } else {
            for (o, off) in out.iter_mut().zip(offs) {
                *o = self.mem.read_u64(base.wrapping_add(u64::from(off)))?;
            }
        }
        Ok(out)
    }
}

/// Whether `lasti` (code units) can belong to this code object: from -1 (3.11–3.12
/// `prev_instr` before the first instruction) to its length. Always true before 3.11.
fn plausible_lasti(info: &CodeInfo, lasti: i64) -> bool {
    info.code_units.is_none_or(|n| (-1..=n).contains(&lasti))
}

fn in_bytecode(info: &CodeInfo, instr_ptr: i64, base: u64) -> bool {
    plausible_lasti(info, ((instr_ptr as u64).wrapping_sub(base) as i64) >> 1)
}

pub(crate) fn need(v: Option<u32>, what: &str) -> Result<u32, WalkError> {
    v.ok_or_else(|| {
        WalkError::Unsupported(format!(
            "the interpreter layout lacks {what}, which its frame model needs"
        ))
    })
}

pub(crate) fn struct_len(len: u32, what: &str) -> Result<usize, WalkError> {
    let len = len as usize;
    if len == 0 || len > MAX_STRUCT {
        return Err(WalkError::Unsupported(format!(
            "the interpreter layout gives an implausible {what} size ({len} bytes)"
        )));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn aligned_addresses_spread_over_buckets() {
        // 4096 16-byte-aligned addresses must not pile into a few of 4096 buckets.
        let b = BuildHasherDefault::<AddrHasher>::default();
        let mut used = HashSet::new();
        for i in 0..4096u64 {
            used.insert(b.hash_one(0x7f00_0000_0000 + i * 16) & 4095);
        }
        assert!(used.len() > 2000, "{} buckets used", used.len());
    }
}
