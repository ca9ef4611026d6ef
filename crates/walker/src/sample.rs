//! The sampling hot path: [`Walker::sample_into`].
//!
//! A sample of a running target costs, in steady state, one batched read of its memory
//! ([`RemoteMemory::read_batch`], one `process_vm_readv` for up to 1024 ranges) and no heap
//! allocation. That read takes, in one go:
//! - the head of the interpreter list, and per interpreter its `next`, thread-list head and GIL
//!   pointer (plus the GIL's `locked`/`last_holder`, 3.12+), or the process-wide GIL holder;
//! - per thread state remembered from the last sample: the fields we use (`next`, `interp`,
//!   ids, innermost frame, data-stack chunk) and, on 3.11–3.12, the `current_frame` of the
//!   `_PyCFrame` it pointed at;
//! - per thread, speculatively, the memory its frames occupied last time: the used part of each
//!   data-stack chunk (3.11+) plus some slack, frames outside chunks (generators), or every
//!   frame object (≤3.10).
//!
//! Why speculation is safe: bytes copied in this sample's read are the target's bytes at those
//! addresses *now*, whatever the cache believed they were. A frame is taken from a copy only
//! when the copy covers the frame's address (reached through this sample's pointers), so a
//! stale guess costs a miss, never a wrong frame: a miss is read directly (and remembered for
//! the next sample). The lists themselves are validated: if the interpreter or thread lists
//! read in the batch differ from the remembered ones (a thread started or exited), the lists
//! are walked again and the batch is redone. A remembered range that is no longer mapped makes
//! the batch fail; it is forgotten and the batch redone.
//!
//! Frames whose (address, code object, instruction) did not change since the thread's previous
//! sample keep their line without looking at the code object again; for a thread deep in a
//! stable call stack that is all but the innermost frame or two. [`RawThread::unchanged`] tells
//! the caller how many (outermost) frames that was, so it can skip interning them too.

use std::collections::HashSet;
use std::ops::Range;

use strobe_memory::{le, MemError, RemoteMemory};
use strobe_python_abi::{FrameModel, GilModel, Layout};

use crate::walk::{
    need, struct_len, AddrMap, FrameFields, Walker, MAX_CHUNK_COPY, MAX_DEPTH, MAX_THREADS,
};
use crate::WalkError;

/// Slack read past the innermost frame of a chunk, so that a stack a few frames deeper than
/// last time is still covered (a small frame is about 100–200 bytes). Bytes are cheap next to
/// a second system call: ~0.06 µs per KiB against ~1.1 µs per call here.
const CHUNK_SLACK: u64 = 1024;
/// Most bytes one sample copies; a bound against garbage sizes and pointer chains.
const MAX_SAMPLE_BYTES: usize = 256 << 20;
/// Frame-list steps per thread (including frames that are not Python frames) before the
/// list is declared endless.
const MAX_FRAME_STEPS: usize = 4 * MAX_DEPTH;
/// Fields within this many bytes of each other are read as one range.
const CLUSTER_SPAN: u64 = 512;
/// Tries per sample when the thread lists change under us, a guess faults or a copy is torn.
const ATTEMPTS: usize = 4;
/// Samples between two full checks of the interpreter list and each interpreter's fields
/// (thread-list head, GIL pointer). In between, the thread lists are checked from the thread
/// states alone (`prev`, `next`, `interp`), which the sample reads anyway: a new thread is
/// linked in at the head, so the head's `prev` stops being NULL; a thread that leaves changes
/// its neighbours' links. What only the full check sees is an interpreter created or destroyed
/// (or the last thread of one leaving), so those show up at most this many samples late.
const FULL_CHECK_EVERY: u32 = 16;
/// Above this, a chunk header's `size` is garbage (CPython's chunks are 16 KiB or a few
/// times that for huge frames).
const MAX_PLAUSIBLE_CHUNK: u64 = 1 << 30;
/// Up to this span, the chunk prefix up to a frame is copied without first reading the chunk
/// header (the header is part of the copy and validates it afterwards).
const CHUNK_SPECULATIVE: u64 = 64 * 1024;

/// One Python frame of a [`RawSample`]: enough to key it, no strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawFrame {
    /// Address of the code object. With `line`, a stable key for interning while the code
    /// object lives; [`Walker::frame_info`] turns it into names.
    pub code_addr: u64,
    /// The instruction, in the units [`crate::linetable::LineMap::line`] takes for this
    /// layout (bytes ≤3.9, code units 3.10+; negative before the first instruction).
    pub lasti: i64,
    /// The current line; `None` when the line table has none for the instruction.
    pub line: Option<i32>,
}

/// One thread of a [`RawSample`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawThread {
    /// Address of the thread's `PyInterpreterState`.
    pub interp_addr: u64,
    /// The interpreter's id (0 for the main interpreter).
    pub interp_id: i64,
    /// Address of the `PyThreadState`: stable while the thread lives.
    pub tstate_addr: u64,
    /// `pthread_t`, equal to `threading.get_ident()` in the target.
    pub thread_id: u64,
    /// Kernel thread id (3.11+: `native_thread_id`; `None` before, or while unknown).
    pub native_id: Option<u32>,
    /// Whether this thread holds the GIL of its interpreter.
    pub holds_gil: bool,
    /// This thread's frames in [`RawSample::frames`], innermost first.
    pub frames: Range<usize>,
    /// The stack was deeper than [`MAX_DEPTH`] and was cut there.
    pub truncated: bool,
    /// How many of the outermost frames are the same frames, at the same instructions, as
    /// the outermost frames of this thread state in the previous sample `sample_into`
    /// returned successfully (0 on its first sample). Attempts that failed or were retried
    /// inside `sample_into` never count as the previous sample.
    /// Callers that keep per-thread results may reuse theirs for these frames.
    pub unchanged: usize,
}

/// A sample of every thread, in buffers reused from one sample to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawSample {
    /// Threads, interpreter by interpreter, in each interpreter's list order.
    pub threads: Vec<RawThread>,
    /// Frames of all threads; each thread's are the range [`RawThread::frames`].
    pub frames: Vec<RawFrame>,
}

impl RawSample {
    /// An empty sample; buffers grow on the first samples, then stay.
    pub fn new() -> RawSample {
        RawSample::default()
    }

    /// Empty it, keeping the buffers.
    pub fn clear(&mut self) {
        self.threads.clear();
        self.frames.clear();
    }

    /// The frames of `thread`, innermost first.
    pub fn frames_of(&self, thread: &RawThread) -> &[RawFrame] {
        self.frames.get(thread.frames.clone()).unwrap_or(&[])
    }
}

// ---------------------------------------------------------------------------------------------
// Remembered state

/// Interpreters and threads as the last sample saw them.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    ready: bool,
    /// Samples since the last full check of the lists (see [`FULL_CHECK_EVERY`]).
    since_full: u32,
    interps: Vec<InterpPlan>,
    /// All threads; each interpreter owns a range.
    threads: Vec<ThreadPlan>,
}

impl Plan {
    /// A speculative region overlapping `[addr, addr + len)` (a failed read may name a range
    /// merged from several requests).
    fn region_in(&self, addr: u64, len: usize) -> Option<u64> {
        let end = addr.saturating_add(len.max(1) as u64);
        self.threads
            .iter()
            .flat_map(|t| &t.regions)
            .find(|r| r.addr < end && r.addr.saturating_add(r.len as u64) > addr)
            .map(|r| r.addr)
    }

    fn forget_region(&mut self, addr: u64) {
        for t in &mut self.threads {
            t.regions.retain(|r| r.addr != addr);
        }
    }

    fn forget_regions(&mut self) {
        for t in &mut self.threads {
            t.regions.clear();
        }
    }
}

#[derive(Debug, Clone)]
struct InterpPlan {
    addr: u64,
    id: i64,
    /// `interp->ceval.gil` (3.12+), 0 when unknown.
    gil: u64,
    threads: Range<usize>,
}

#[derive(Debug, Default)]
struct ThreadPlan {
    tstate: u64,
    /// The `_PyCFrame` the thread state pointed at (3.11–3.12), 0 when unknown.
    cframe: u64,
    /// What this thread's frames occupied last time, to copy speculatively.
    regions: Vec<Region>,
    /// The frames of the last sample handed to the caller, **outermost first**, with their
    /// lines: what [`RawThread::unchanged`] is counted against, and what an outer part proven
    /// unchanged is taken from.
    memo: Vec<Seen>,
    /// The frames of `memo` that were reported (those with a code object), outermost first.
    memo_out: Vec<RawFrame>,
    /// What the walk behind `memo` read, to prove its outer part unchanged.
    proof: Proof,
    /// This attempt's newly walked frames (innermost first) over the `next_keep` outermost
    /// frames of `memo` it proved unchanged, and what it read. They replace `memo` and
    /// `proof` only if the whole sample succeeds, so that a retried attempt (the lists changed
    /// half-way) never counts `unchanged` against a walk the caller did not see.
    next_memo: Vec<Seen>,
    next_keep: usize,
    next_proof: Proof,
}

/// What one thread's walk read, kept so that the next sample can prove the outer part of the
/// stack unchanged without walking it: the walk's frames below a frame F depend only on the
/// bytes it read for them, so if every one of those bytes is the same in this sample's copy
/// as in the last one, the walk from F on would produce the same frames again.
///
/// Only simple walks vouch for themselves: every Python frame in a data-stack chunk copy, the
/// frames of each chunk taken one after the other at falling addresses (so that below a frame,
/// the walk read only the chunk's prefix up to it, and older chunks), anything else walked
/// (entry frames on the C stack) listed in `outside`, nothing read outside the batch, nothing
/// cut at the depth limit.
#[derive(Debug, Default)]
struct Proof {
    valid: bool,
    /// Chunks in walk order (newest first).
    chunks: Vec<ChunkRead>,
    outside: Vec<Outside>,
}

/// A chunk copy a [`Proof`]'s walk took frames from.
#[derive(Debug, Clone, Copy)]
struct ChunkRead {
    addr: u64,
    /// Where its copy was in that sample's batch buffer, and the copy's length.
    off: usize,
    len: usize,
    /// How far into the copy the walk read (the end of its highest frame).
    end: usize,
    /// Python frames from its first frame on (during the walk: before it).
    below: usize,
}

impl Proof {
    fn reset(&mut self, valid: bool) {
        self.valid = valid;
        self.chunks.clear();
        self.outside.clear();
    }

    /// The walk takes a frame ending at `end` from the chunk copy `sp`, with `seq` Python
    /// frames before it; `lowest` is the lowest frame address taken in the current chunk
    /// (`u64::MAX`: none yet, 0: they did not fall), reset when the walk moves to another.
    fn chunk(&mut self, sp: &Span, seq: usize, end: u64, lowest: &mut u64) {
        let rel = usize::try_from(end.saturating_sub(sp.addr)).unwrap_or(usize::MAX);
        match self.chunks.last_mut() {
            Some(c) if c.addr == sp.addr => {
                c.end = c.end.max(rel);
                return;
            }
            _ => {}
        }
        if self.chunks.iter().any(|c| c.addr == sp.addr) {
            // Back in a chunk left before.
            self.valid = false;
        }
        *lowest = u64::MAX;
        self.chunks.push(ChunkRead {
            addr: sp.addr,
            off: sp.off,
            len: sp.len,
            end: rel,
            below: seq,
        });
    }
}

/// A frame of a [`Proof`]'s walk that was not in its chunk.
#[derive(Debug, Clone, Copy)]
struct Outside {
    addr: u64,
    len: usize,
    /// Where its bytes were in that sample's batch buffer.
    off: usize,
    /// Python frames the walk took after it (during the walk: before it, see `walk_frames`).
    below: usize,
}

impl ThreadPlan {
    /// This attempt's walk becomes the reference for the next sample (the whole sample
    /// succeeded): `memo` keeps the outer frames the walk proved unchanged and takes the
    /// newly walked ones on top.
    fn commit(&mut self) {
        let keep = self.next_keep.min(self.memo.len());
        self.memo.truncate(keep);
        let mut outs = self.memo.last().map_or(0, |f| f.outs);
        self.memo_out.truncate(outs as usize);
        for f in self.next_memo.iter().rev() {
            if let Some((lasti, line)) = f.resolved {
                outs += 1;
                self.memo_out.push(RawFrame {
                    code_addr: f.fields.code,
                    lasti,
                    line,
                });
            }
            self.memo.push(Seen { outs, ..*f });
        }
        std::mem::swap(&mut self.proof, &mut self.next_proof);
    }
}

/// A range of target memory to copy speculatively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    addr: u64,
    len: usize,
    /// A data-stack chunk (the range starts at its header) rather than one frame.
    chunk: bool,
    /// Samples in a row this frame's range was copied without a frame being found in it.
    age: u8,
}

/// A frame's range is still copied for this many samples after its frame was last seen: a
/// frame that comes and goes (a leaf function called in a loop, whose frame object or C-stack
/// entry frame is reused at the same address) is then found in the copy instead of costing a
/// second read every time it reappears.
const REGION_KEEP_SAMPLES: u8 = 8;

/// A frame as walked, and what it resolved to.
#[derive(Debug, Clone, Copy)]
struct Seen {
    frame: u64,
    fields: FrameFields,
    /// `None`: its code slot does not hold a code object (not reported).
    resolved: Option<(i64, Option<i32>)>,
    /// In a memo: how many of the frames up to and including this one (outermost first) were
    /// reported, i.e. how many of `memo_out` they account for.
    outs: u32,
    /// Taken from a data-stack chunk copy (else a generator's or coroutine's frame, in its
    /// object, or a frame object): only these can be where a walk meets the memo.
    in_chunk: bool,
}

impl Seen {
    fn same_as(&self, other: &Seen) -> bool {
        self.frame == other.frame
            && self.fields.code == other.fields.code
            && self.fields.position == other.fields.position
            && self.fields.tlbc_index == other.fields.tlbc_index
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Ranges to read in one call, and where each lands in one reused buffer.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    reqs: Vec<(u64, usize)>,
    buf: Vec<u8>,
    used: usize,
}

impl Batch {
    fn clear(&mut self) {
        self.reqs.clear();
        self.used = 0;
    }

    /// Queue a range; returns where its bytes will be in the buffer.
    fn add(&mut self, addr: u64, len: usize) -> usize {
        let off = self.used;
        self.reqs.push((addr, len));
        self.used = self.used.saturating_add(len);
        off
    }

    fn grow(&mut self) -> Result<(), MemError> {
        if self.used > MAX_SAMPLE_BYTES {
            return Err(MemError::TooLarge {
                addr: self.reqs.first().map_or(0, |r| r.0),
                len: self.used,
                limit: MAX_SAMPLE_BYTES,
            });
        }
        if self.buf.len() < self.used {
            self.buf.resize(self.used, 0);
        }
        Ok(())
    }

    /// Read every queued range.
    fn read<M: RemoteMemory>(&mut self, mem: &M) -> Result<(), MemError> {
        self.grow()?;
        mem.read_batch(&self.reqs, &mut self.buf[..self.used])
    }

    /// Read one more range right now (after [`Batch::read`]); returns where it is.
    fn fetch<M: RemoteMemory>(
        &mut self,
        mem: &M,
        addr: u64,
        len: usize,
    ) -> Result<usize, MemError> {
        let off = self.used;
        self.used = self.used.saturating_add(len);
        self.grow()?;
        mem.read_into(addr, &mut self.buf[off..off + len])?;
        Ok(off)
    }

    fn bytes(&self, off: usize, len: usize) -> &[u8] {
        off.checked_add(len)
            .and_then(|end| self.buf.get(off..end))
            .unwrap_or(&[])
    }
}

/// The fields of one structure a sample needs, grouped into few reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldSet {
    /// `(offset, length)` of each read, relative to the structure.
    reads: Vec<(u64, usize)>,
    /// Each field's position in the concatenated reads (`None`: the layout lacks it).
    at: Vec<Option<usize>>,
}

impl FieldSet {
    /// `fields[i]`: `(offset, width)` of field `i`, if the layout has it.
    fn new(fields: &[Option<(u32, u32)>]) -> FieldSet {
        let mut present: Vec<(u64, u64)> = fields
            .iter()
            .flatten()
            .map(|&(o, w)| (u64::from(o), u64::from(w)))
            .collect();
        present.sort_unstable();
        let mut clusters: Vec<(u64, u64)> = Vec::new();
        for (off, width) in present {
            match clusters.last_mut() {
                Some((lo, end)) if off + width - *lo <= CLUSTER_SPAN => {
                    *end = (*end).max(off + width);
                }
                _ => clusters.push((off, off + width)),
            }
        }
        let mut starts = Vec::with_capacity(clusters.len());
        let mut total = 0usize;
        for &(lo, end) in &clusters {
            starts.push(total);
            total += (end - lo) as usize;
        }
        let at = fields
            .iter()
            .map(|f| {
                let (off, _) = (*f)?;
                let off = u64::from(off);
                let k = clusters
                    .iter()
                    .position(|&(lo, end)| off >= lo && off < end)?;
                Some(starts[k] + (off - clusters[k].0) as usize)
            })
            .collect();
        let reads = clusters
            .iter()
            .map(|&(lo, end)| (lo, (end - lo) as usize))
            .collect();
        FieldSet { reads, at }
    }

    /// Queue the reads for the structure at `base`; returns where they start in the buffer.
    fn add(&self, batch: &mut Batch, base: u64) -> usize {
        let start = batch.used;
        for &(off, len) in &self.reads {
            batch.add(base.wrapping_add(off), len);
        }
        start
    }

    fn u64(&self, batch: &Batch, start: usize, field: usize) -> Option<u64> {
        let at = (*self.at.get(field)?)?;
        le::u64_at(&batch.buf, start.checked_add(at)?)
    }

    fn i32(&self, batch: &Batch, start: usize, field: usize) -> Option<i32> {
        let at = (*self.at.get(field)?)?;
        le::i32_at(&batch.buf, start.checked_add(at)?)
    }
}

// Field indices of the structures read every sample.
const I_NEXT: usize = 0;
const I_TSTATES: usize = 1;
const I_GIL: usize = 2;
const T_NEXT: usize = 0;
const T_INTERP: usize = 1;
const T_THREAD_ID: usize = 2;
const T_NATIVE: usize = 3;
const T_FRAME: usize = 4;
const T_CHUNK: usize = 5;
const T_PREV: usize = 6;
const G_LOCKED: usize = 0;
const G_HOLDER: usize = 1;

/// What a sample reads of each structure, from the layout.
#[derive(Debug, Clone)]
pub(crate) struct Shapes {
    interp: FieldSet,
    tstate: FieldSet,
    gil: FieldSet,
    /// How a frame is decoded (or why this layout's frames cannot be).
    frame: Result<FrameDecoder, WalkError>,
}

/// Where the fields of a frame are in its copy, resolved from the layout once: decoding a
/// frame is then a handful of bounds-checked loads. A frame copy is `len` bytes: `iframe_size`
/// for a `_PyInterpreterFrame` (3.11+), or a `PyFrameObject`'s prefix up to `f_lasti` (≤3.10).
#[derive(Debug, Clone, Copy)]
struct FrameDecoder {
    len: usize,
    /// ≤3.10 frame objects: `position` is the `int f_lasti`; no owner, no tag bits.
    objects: bool,
    previous: usize,
    code: usize,
    position: usize,
    owner: Option<usize>,
    tlbc_index: Option<usize>,
    stackref_mask: u64,
    /// `FRAME_OWNED_BY_CSTACK` / `FRAME_OWNED_BY_INTERPRETER`, or 256 (matches no byte).
    owner_cstack: u16,
    owner_interpreter: u16,
}

impl FrameDecoder {
    fn new(l: &Layout) -> Result<FrameDecoder, WalkError> {
        let at = |off: Option<u32>, what: &str| need(off, what).map(|o| o as usize);
        let opt = |off: Option<u32>| off.map(|o| o as usize);
        match l.frame_model {
            FrameModel::FrameObject => {
                let back = need(l.frame_back, "frame.f_back")?;
                let code = need(l.frame_code, "frame.f_code")?;
                let lasti = need(l.frame_lasti, "frame.f_lasti")?;
                let len = (back + 8).max(code + 8).max(lasti + 4);
                Ok(FrameDecoder {
                    len: struct_len(len, "frame object")?,
                    objects: true,
                    previous: back as usize,
                    code: code as usize,
                    position: lasti as usize,
                    owner: None,
                    tlbc_index: None,
                    stackref_mask: u64::MAX,
                    owner_cstack: 256,
                    owner_interpreter: 256,
                })
            }
            FrameModel::CFrame311 | FrameModel::Direct313 => Ok(FrameDecoder {
                len: need(l.iframe_size, "interpreter frame size")
                    .and_then(|n| struct_len(n, "frame"))?,
                objects: false,
                previous: at(l.iframe_previous, "frame.previous")?,
                // 3.14+: f_executable is a `_PyStackRef` whose low bits are tags
                // (Include/internal/pycore_stackref.h).
                code: at(l.iframe_code, "frame.f_executable")?,
                position: at(l.iframe_instr_ptr, "frame.instr_ptr")?,
                owner: opt(l.iframe_owner),
                tlbc_index: opt(l.iframe_tlbc_index),
                stackref_mask: l.stackref_mask,
                owner_cstack: l.owner_cstack.map_or(256, u16::from),
                owner_interpreter: l.owner_interpreter.map_or(256, u16::from),
            }),
        }
    }

    /// The fields of the frame whose copy starts `f`; `None` when `f` is shorter than a frame
    /// or the layout puts a field past the frame's end.
    #[inline]
    fn decode(&self, f: &[u8]) -> Option<FrameFields> {
        let f = f.get(..self.len)?;
        Some(FrameFields {
            previous: le::u64_at(f, self.previous)?,
            code: le::u64_at(f, self.code)? & self.stackref_mask,
            position: if self.objects {
                i64::from(le::i32_at(f, self.position)?)
            } else {
                le::u64_at(f, self.position)? as i64
            },
            owner: match self.owner {
                Some(o) => Some(*f.get(o)?),
                None => None,
            },
            tlbc_index: match self.tlbc_index {
                Some(o) => le::i32_at(f, o)?,
                None => 0,
            },
        })
    }

    /// Frames owned by the C stack or the interpreter are not Python frames
    /// (Include/internal/pycore_frame.h `_frameowner`), nor are frames without a code object.
    #[inline]
    fn is_python(&self, fields: &FrameFields) -> bool {
        // No owner byte (frame objects) matches neither constant, absent ones included.
        let owner = fields.owner.map_or(512, u16::from);
        owner != self.owner_cstack && owner != self.owner_interpreter && fields.code != 0
    }
}

impl Shapes {
    pub(crate) fn new(l: &Layout) -> Shapes {
        let w8 = |o: Option<u32>| o.map(|o| (o, 8));
        let gil_ptr = match l.gil_model {
            GilModel::InterpGilPointer => l.interp_ceval_gil,
            GilModel::CurrentSymbol | GilModel::RuntimeTstateCurrent => None,
        };
        let interp = FieldSet::new(&[
            w8(Some(l.interp_next)),
            w8(Some(l.interp_tstate_head)),
            w8(gil_ptr),
        ]);
        let frame = match l.frame_model {
            FrameModel::FrameObject => l.tstate_frame,
            FrameModel::CFrame311 => l.tstate_cframe,
            FrameModel::Direct313 => l.tstate_current_frame,
        };
        let tstate = FieldSet::new(&[
            w8(Some(l.tstate_next)),
            w8(Some(l.tstate_interp)),
            w8(Some(l.tstate_thread_id)),
            w8(l.tstate_native_thread_id),
            w8(frame),
            w8(l.tstate_datastack_chunk),
            w8(l.tstate_prev),
        ]);
        let gil = FieldSet::new(&[l.gil_locked.map(|o| (o, 4)), w8(l.gil_last_holder)]);
        Shapes {
            interp,
            tstate,
            gil,
            frame: FrameDecoder::new(l),
        }
    }
}

/// Buffers reused by every sample.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    batch: Batch,
    /// Per planned interpreter: where its fields (full checks only) and its GIL's are in the
    /// batch.
    interp_at: Vec<(Option<usize>, Option<usize>)>,
    /// Per planned thread.
    thread_at: Vec<ThreadAt>,
    /// Speculative copies of all threads.
    spans: Vec<Span>,
    /// Frames of the thread being walked.
    raw: Vec<Seen>,
    /// Regions of the thread being walked, for its next sample.
    regions: Vec<Region>,
    /// Chunks the thread's frames were found in.
    usage: Vec<ChunkUse>,
    /// Chunks copied because no speculative copy covered a frame.
    copies: Vec<Span>,
    /// Chunks that may still be copied.
    pending: Vec<PendingChunk>,
    /// Per speculative copy of the thread being walked: whether a frame was found in it.
    used: Vec<bool>,
    /// The batch buffer of the last sample handed to the caller (the buffers swap roles after
    /// every such sample): what the memos' proofs point into.
    prev_buf: Vec<u8>,
    /// The proof being gathered by the walk of the thread being walked.
    proof: Proof,
    /// Frames of delivered samples proven unchanged instead of walked, in all.
    proven: u64,
    /// Samples read a second time because the first copy was torn.
    torn_reads: u64,
}

#[derive(Debug, Clone)]
struct ThreadAt {
    tstate: usize,
    cframe: Option<usize>,
    spans: Range<usize>,
}

/// A copy of target memory in the batch buffer.
#[derive(Debug, Clone, Copy)]
struct Span {
    addr: u64,
    len: usize,
    off: usize,
    chunk: bool,
    age: u8,
}

impl Span {
    fn covers(&self, addr: u64, end: u64) -> bool {
        addr >= self.addr && end <= self.addr.saturating_add(self.len as u64)
    }
}

/// How far into a chunk this sample's frames reached.
#[derive(Debug, Clone, Copy)]
struct ChunkUse {
    base: u64,
    end: u64,
    /// `_PyStackChunk.size` as the copy's header says.
    size: u64,
}

/// A chunk of the thread being walked that has not been copied yet.
#[derive(Debug, Clone, Copy)]
struct PendingChunk {
    base: u64,
    /// `_PyStackChunk.size`, once a look at the header told us.
    size: Option<u64>,
}

/// Why a chunk was not copied.
enum NoCopy {
    /// The chunk is `size` bytes long and does not reach the frame.
    Short(u64),
    /// The chunk cannot be used (unreadable, implausible header).
    Unusable,
}

/// Why an attempt at a sample did not produce one.
enum Retry {
    /// The interpreter or thread lists changed: walk them again.
    Stale,
    /// A speculative range at this address is no longer readable.
    Speculation(u64),
    /// A real failure, reported to the caller.
    Fail(WalkError),
}

impl From<WalkError> for Retry {
    fn from(e: WalkError) -> Retry {
        Retry::Fail(e)
    }
}

impl From<MemError> for Retry {
    fn from(e: MemError) -> Retry {
        Retry::Fail(e.into())
    }
}

/// Brent's cycle detection over a pointer chain: O(1) memory and work per step.
#[derive(Debug)]
struct Cycle {
    tortoise: u64,
    power: u32,
    lambda: u32,
}

impl Cycle {
    fn new() -> Cycle {
        Cycle {
            tortoise: 0,
            power: 1,
            lambda: 0,
        }
    }

    /// Whether `addr` closes a cycle.
    fn step(&mut self, addr: u64) -> bool {
        if addr == self.tortoise {
            return true;
        }
        self.lambda += 1;
        if self.lambda == self.power {
            self.tortoise = addr;
            self.power = self.power.saturating_mul(2);
            self.lambda = 0;
        }
        false
    }
}

// ---------------------------------------------------------------------------------------------
// The sample

/// Whether a failed attempt may have read memory the target was changing (worth one more
/// read), as opposed to a layout strobe cannot read.
fn torn_read(e: &WalkError) -> bool {
    e.is_transient()
}

impl<M: RemoteMemory> Walker<M> {
    /// Sample every thread of every interpreter into `out` (cleared first).
    ///
    /// The hot path: no allocation once `out` and the walker's buffers have grown, one
    /// batched read of the target in steady state, no strings. Turn frames into names with
    /// [`Walker::frame_info`] (or key them by `(code_addr, line)` and do so only for new keys).
    ///
    /// Errors are those of [`Walker::walk`]; `out` is empty after one.
    pub fn sample_into(&mut self, out: &mut RawSample) -> Result<(), WalkError> {
        if !self.refreshed.is_empty() {
            self.refreshed.clear();
        }
        for attempt in 0..ATTEMPTS {
            out.clear();
            if !self.plan.ready {
                self.rebuild_plan()?;
            }
            match self.try_sample(out) {
                Ok(()) => return Ok(()),
                // What the batch copied was torn: the target pushed, popped or resumed frames
                // while the kernel copied them (a link to a frame since popped, a cycle
                // through a generator resumed from elsewhere). Those rounds fall on code that
                // moves its frames, so dropping them would bias the profile against it; another
                // read almost always finds the stack settled (the first one does in most cases,
                // a thread being started or ending can take a few).
                Err(Retry::Fail(e)) if attempt + 1 < ATTEMPTS && torn_read(&e) => {
                    self.scratch.torn_reads += 1;
                }
                Err(Retry::Stale) => self.plan.ready = false,
                Err(Retry::Speculation(addr)) => {
                    self.plan.forget_region(addr);
                    if attempt > 0 {
                        self.plan.forget_regions();
                    }
                }
                Err(Retry::Fail(e)) => {
                    out.clear();
                    return Err(e);
                }
            }
        }
        out.clear();
        self.plan.ready = false;
        Err(WalkError::Corrupt {
            what: "thread list (it changed during every attempt to read it)",
            addr: self.interp_head_address()?,
        })
    }

    /// How many times [`Walker::sample_into`] read the target again because a copy was torn
    /// (see there).
    pub fn torn_reads(&self) -> u64 {
        self.scratch.torn_reads
    }

    /// How many frames of the samples [`Walker::sample_into`] delivered were proven unchanged
    /// since the thread's previous sample (every byte the previous walk read for them is the
    /// same in this sample's copy) rather than walked: a measure of how much walking the
    /// comparison saved.
    pub fn frames_proven(&self) -> u64 {
        self.scratch.proven
    }

    /// Walk the interpreter and thread lists one read at a time, remembering what is known
    /// about threads that are still there.
    fn rebuild_plan(&mut self) -> Result<(), WalkError> {
        let l = self.layout;
        let interps = self.interpreters()?;
        let mut old: AddrMap<u64, ThreadPlan> = std::mem::take(&mut self.plan.threads)
            .into_iter()
            .map(|t| (t.tstate, t))
            .collect();
        let mut plan = Plan::default();
        let mut batch = Batch::default();
        let mut seen = HashSet::new();
        for (addr, id) in interps {
            let head = self
                .mem
                .read_u64(addr.wrapping_add(u64::from(l.interp_tstate_head)))?;
            let gil = match (l.gil_model, l.interp_ceval_gil) {
                (GilModel::InterpGilPointer, Some(off)) => {
                    self.mem.read_u64(addr.wrapping_add(u64::from(off)))?
                }
                _ => 0,
            };
            let start = plan.threads.len();
            seen.clear();
            let mut tstate = head;
            while tstate != 0 {
                if plan.threads.len() - start >= MAX_THREADS || !seen.insert(tstate) {
                    return Err(WalkError::Unbounded {
                        what: "thread state",
                        limit: MAX_THREADS,
                    });
                }
                batch.clear();
                let at = self.shapes.tstate.add(&mut batch, tstate);
                batch.read(&self.mem)?;
                let corrupt = WalkError::Corrupt {
                    what: "thread-state layout (field past tstate_size)",
                    addr: tstate,
                };
                let next = self
                    .shapes
                    .tstate
                    .u64(&batch, at, T_NEXT)
                    .ok_or(corrupt.clone())?;
                if self
                    .shapes
                    .tstate
                    .u64(&batch, at, T_INTERP)
                    .ok_or(corrupt)?
                    != addr
                {
                    // The thread exited and its memory was reused, or the list is being edited.
                    return Err(WalkError::Corrupt {
                        what: "thread state whose interp pointer is not its interpreter",
                        addr: tstate,
                    });
                }
                plan.threads.push(old.remove(&tstate).unwrap_or(ThreadPlan {
                    tstate,
                    ..ThreadPlan::default()
                }));
                tstate = next;
            }
            plan.interps.push(InterpPlan {
                addr,
                id,
                gil,
                threads: start..plan.threads.len(),
            });
        }
        plan.ready = true;
        // The lists were just read link by link; the first sample checks them in full anyway.
        plan.since_full = FULL_CHECK_EVERY;
        self.plan = plan;
        Ok(())
    }

    /// One attempt: the batched read, validation of the lists, then every thread's frames.
    fn try_sample(&mut self, out: &mut RawSample) -> Result<(), Retry> {
        let l = &self.layout;
        let head_at = self.interp_head_address()?;
        let global_gil = self.global_gil_address();
        // Without `prev` links the thread states alone cannot show a new thread.
        let full = self.plan.since_full >= FULL_CHECK_EVERY || l.tstate_prev.is_none();
        let s = &mut self.scratch;
        s.batch.clear();
        s.interp_at.clear();
        s.thread_at.clear();
        s.spans.clear();
        let head_off = full.then(|| s.batch.add(head_at, 8));
        let global_gil_off = global_gil.map(|a| s.batch.add(a, 8));
        for ip in &self.plan.interps {
            let at = full.then(|| self.shapes.interp.add(&mut s.batch, ip.addr));
            let gil = (l.gil_model == GilModel::InterpGilPointer && ip.gil != 0)
                .then(|| self.shapes.gil.add(&mut s.batch, ip.gil));
            s.interp_at.push((at, gil));
        }
        for tp in &self.plan.threads {
            let tstate = self.shapes.tstate.add(&mut s.batch, tp.tstate);
            let cframe = match (l.frame_model, l.cframe_current_frame) {
                (FrameModel::CFrame311, Some(off)) if tp.cframe != 0 => {
                    Some(s.batch.add(tp.cframe.wrapping_add(u64::from(off)), 8))
                }
                _ => None,
            };
            let start = s.spans.len();
            for r in &tp.regions {
                let off = s.batch.add(r.addr, r.len);
                s.spans.push(Span {
                    addr: r.addr,
                    len: r.len,
                    off,
                    chunk: r.chunk,
                    age: r.age,
                });
            }
            s.thread_at.push(ThreadAt {
                tstate,
                cframe,
                spans: start..s.spans.len(),
            });
        }
        if let Err(e) = s.batch.read(&self.mem) {
            return Err(match e {
                MemError::Fault { addr, len } => match self.plan.region_in(addr, len) {
                    Some(region) => Retry::Speculation(region),
                    // A thread state (or its C frame) that went away: the lists changed.
                    None => Retry::Stale,
                },
                e => Retry::Fail(e.into()),
            });
        }
        self.validate_lists(head_off)?;

        for i in 0..self.plan.interps.len() {
            let holder = self.gil_holder(i, global_gil_off)?;
            let ip = self.plan.interps[i].clone();
            for j in ip.threads.clone() {
                self.sample_thread(&ip, j, holder, out)?;
            }
        }
        let s = &mut self.scratch;
        for t in &mut self.plan.threads {
            s.proven += t.next_keep as u64;
            t.commit();
        }
        std::mem::swap(&mut s.batch.buf, &mut s.prev_buf);
        self.plan.since_full = if full {
            0
        } else {
            self.plan.since_full.saturating_add(1)
        };
        Ok(())
    }

    /// Whether the lists read in this batch are the remembered ones. `head_off` is where the
    /// interpreter-list head is in the batch on a full check (interpreter fields were read too).
    fn validate_lists(&self, head_off: Option<usize>) -> Result<(), Retry> {
        let s = &self.scratch;
        let plan = &self.plan;
        let b = &s.batch;
        if let Some(head_off) = head_off {
            let head = le::u64_at(&b.buf, head_off).ok_or(Retry::Stale)?;
            if head != plan.interps.first().map_or(0, |i| i.addr) {
                return Err(Retry::Stale);
            }
        }
        let has_prev = self.layout.tstate_prev.is_some();
        for (i, ip) in plan.interps.iter().enumerate() {
            if let (Some(at), _) = s.interp_at[i] {
                let next = self.shapes.interp.u64(b, at, I_NEXT);
                if next != Some(plan.interps.get(i + 1).map_or(0, |n| n.addr)) {
                    return Err(Retry::Stale);
                }
                let first = plan.threads.get(ip.threads.clone()).and_then(|t| t.first());
                if self.shapes.interp.u64(b, at, I_TSTATES) != Some(first.map_or(0, |t| t.tstate)) {
                    return Err(Retry::Stale);
                }
            }
            for j in ip.threads.clone() {
                let at = s.thread_at[j].tstate;
                let want_next = if j + 1 < ip.threads.end {
                    plan.threads[j + 1].tstate
                } else {
                    0
                };
                let want_prev = if j > ip.threads.start {
                    plan.threads[j - 1].tstate
                } else {
                    0
                };
                if self.shapes.tstate.u64(b, at, T_NEXT) != Some(want_next)
                    || self.shapes.tstate.u64(b, at, T_INTERP) != Some(ip.addr)
                    || (has_prev && self.shapes.tstate.u64(b, at, T_PREV) != Some(want_prev))
                {
                    return Err(Retry::Stale);
                }
            }
        }
        Ok(())
    }

    /// The GIL holder of planned interpreter `i`.
    fn gil_holder(&mut self, i: usize, global_off: Option<usize>) -> Result<Option<u64>, Retry> {
        let b = &self.scratch.batch;
        match self.layout.gil_model {
            GilModel::CurrentSymbol | GilModel::RuntimeTstateCurrent => Ok(global_off
                .and_then(|off| le::u64_at(&b.buf, off))
                .filter(|&t| t != 0)),
            GilModel::InterpGilPointer => {
                let (at, gil_at) = self.scratch.interp_at[i];
                // Between full checks the pointer is the one the last full check confirmed
                // (it changes only while an interpreter is created or finalised).
                let ptr = match at {
                    Some(at) => self.shapes.interp.u64(b, at, I_GIL).unwrap_or(0),
                    None => self.plan.interps[i].gil,
                };
                match gil_at {
                    Some(g) if ptr == self.plan.interps[i].gil => {
                        if self.shapes.gil.i32(b, g, G_LOCKED).unwrap_or(0) == 0 {
                            return Ok(None);
                        }
                        Ok(self.shapes.gil.u64(b, g, G_HOLDER).filter(|&t| t != 0))
                    }
                    _ => {
                        self.plan.interps[i].gil = ptr;
                        Ok(self.gil_holder_at(ptr)?)
                    }
                }
            }
        }
    }

    /// Walk planned thread `j` of interpreter `ip` and append it to `out`.
    fn sample_thread(
        &mut self,
        ip: &InterpPlan,
        j: usize,
        holder: Option<u64>,
        out: &mut RawSample,
    ) -> Result<(), Retry> {
        let l = &self.layout;
        let at = self.scratch.thread_at[j].clone();
        let tstate = self.plan.threads[j].tstate;
        let b = &self.scratch.batch;
        let field = |k: usize| self.shapes.tstate.u64(b, at.tstate, k);
        let thread_id = field(T_THREAD_ID).ok_or(WalkError::Corrupt {
            what: "thread state",
            addr: tstate,
        })?;
        let native_id = field(T_NATIVE)
            .and_then(|v| u32::try_from(v).ok())
            .filter(|&t| t != 0);
        let frame_ptr = field(T_FRAME).ok_or_else(|| {
            WalkError::Unsupported(
                "the interpreter layout lacks the thread state's innermost-frame field, which \
                 its frame model needs"
                    .into(),
            )
        })?;
        let chunk = field(T_CHUNK).unwrap_or(0);
        let innermost = match l.frame_model {
            FrameModel::FrameObject | FrameModel::Direct313 => frame_ptr,
            FrameModel::CFrame311 => {
                let off = need(l.cframe_current_frame, "cframe.current_frame")?;
                if frame_ptr == 0 {
                    0
                } else if let (Some(c), true) =
                    (at.cframe, frame_ptr == self.plan.threads[j].cframe)
                {
                    le::u64_at(&b.buf, c).ok_or(Retry::Stale)?
                } else {
                    self.plan.threads[j].cframe = frame_ptr;
                    self.mem.read_u64(frame_ptr.wrapping_add(u64::from(off)))?
                }
            }
        };
        let (truncated, kept) = self.walk_frames(j, at.spans, innermost, chunk)?;
        let start = out.frames.len();
        let unchanged = self.resolve_thread(j, out, kept)?;
        let t = &mut self.plan.threads[j];
        std::mem::swap(&mut t.regions, &mut self.scratch.regions);
        std::mem::swap(&mut t.next_memo, &mut self.scratch.raw);
        std::mem::swap(&mut t.next_proof, &mut self.scratch.proof);
        t.next_keep = kept;
        out.threads.push(RawThread {
            interp_addr: ip.addr,
            interp_id: ip.id,
            tstate_addr: tstate,
            thread_id,
            native_id,
            holds_gil: holder == Some(tstate),
            frames: start..out.frames.len(),
            truncated,
            unchanged,
        });
        Ok(())
    }

    /// Lines for the frames just walked (reusing the previous sample's where the frame did not
    /// change), then the `kept` outermost frames of the memo that the walk proved unchanged,
    /// appended to `out.frames` innermost first. Returns how many outermost frames were
    /// unchanged.
    fn resolve_thread(
        &mut self,
        j: usize,
        out: &mut RawSample,
        kept: usize,
    ) -> Result<usize, WalkError> {
        let n = self.scratch.raw.len();
        let tp = &self.plan.threads[j];
        let memo = &tp.memo;
        let kept = kept.min(memo.len());
        // The stack from the bottom is memo[..kept], then the walked frames from the last one
        // up; those that match the memo's next ones keep their lines too.
        let mut same = 0;
        while same < n && kept + same < memo.len() {
            let prev = memo[kept + same];
            let now = &mut self.scratch.raw[n - 1 - same];
            if !now.same_as(&prev) {
                break;
            }
            now.resolved = prev.resolved;
            same += 1;
        }
        let kept_outs = kept
            .checked_sub(1)
            .and_then(|k| memo.get(k))
            .map_or(0, |f| f.outs as usize);
        for i in 0..n - same {
            let fields = self.scratch.raw[i].fields;
            self.scratch.raw[i].resolved = self.resolve_frame(&fields)?;
        }
        let tp = &self.plan.threads[j];
        let mut unchanged = kept_outs;
        for (i, f) in self.scratch.raw.iter().enumerate() {
            if let Some((lasti, line)) = f.resolved {
                out.frames.push(RawFrame {
                    code_addr: f.fields.code,
                    lasti,
                    line,
                });
                if i >= n - same {
                    unchanged += 1;
                }
            }
        }
        let outer = tp.memo_out.get(..kept_outs).unwrap_or(&[]);
        out.frames.extend(outer.iter().rev().copied());
        Ok(unchanged)
    }

    /// Follow planned thread `j`'s frame chain from `innermost`, filling `scratch.raw`
    /// (frames), `scratch.regions` (what to copy next time) and `scratch.proof` (what was
    /// read). Returns whether the stack was cut at [`MAX_DEPTH`], and how many outermost
    /// frames of the thread's memo were proven unchanged instead of walked (they continue the
    /// stack below the frames in `scratch.raw`).
    fn walk_frames(
        &mut self,
        j: usize,
        spans: Range<usize>,
        innermost: u64,
        chunk: u64,
    ) -> Result<(bool, usize), WalkError> {
        let l = &self.layout;
        let dec = self.shapes.frame.clone()?;
        let objects = dec.objects;
        let size = dec.len;
        let tp = &self.plan.threads[j];
        let s = &mut self.scratch;
        s.raw.clear();
        s.regions.clear();
        s.usage.clear();
        s.copies.clear();
        s.pending.clear();
        s.used.clear();
        s.used.resize(spans.len(), false);
        s.proof.reset(!objects);
        // Where the memo's frames (outermost first, at rising addresses) may meet this walk.
        let mut meet = Meet {
            cursor: tp.memo.len(),
            tries: if tp.proof.valid { MEET_TRIES } else { 0 },
        };
        let mut kept = 0usize;
        let mut lowest = u64::MAX;
        let mut seeded = false;
        let mut hint = 0usize;
        let mut cycle = Cycle::new();
        let mut steps = 0usize;
        let mut truncated = false;
        let mut addr = innermost;
        while addr != 0 {
            // The common case on 3.11+: a run of frames inside the chunk copy we are in, decoded
            // in a tight loop. It stops at the first frame outside that copy (or at the depth
            // limit), which the general path below then handles, or where the rest of the
            // stack is proven the same as in the memo.
            if let (false, Some(&sp)) = (objects, s.spans[spans.clone()].get(hint)) {
                if sp.chunk {
                    s.proof.chunk(&sp, s.raw.len(), 0, &mut lowest);
                    let mut old = Old {
                        memo: &tp.memo,
                        proof: &tp.proof,
                        prev: &s.prev_buf,
                        buf: &s.batch.buf,
                        mine: &s.spans[spans.clone()],
                        meet: &mut meet,
                    };
                    let end_max = fast_run(
                        &dec,
                        &s.batch.buf,
                        &sp,
                        &mut addr,
                        &mut s.raw,
                        &mut steps,
                        &mut cycle,
                        &mut old,
                        &mut kept,
                        &mut lowest,
                    )?;
                    if end_max != 0 {
                        note_chunk_use(l, &s.batch, &mut s.usage, &sp, end_max);
                        s.proof.chunk(&sp, s.raw.len(), end_max, &mut lowest);
                        if lowest == 0 {
                            s.proof.valid = false;
                        }
                        continue;
                    }
                }
            }
            // ≤3.10: a run of frame objects that are, one after the other, exactly where last
            // sample's copies are (the common case: a stack that did not move).
            if objects {
                let taken = fast_objects_run(
                    &dec,
                    &s.batch.buf,
                    &s.spans[spans.clone()],
                    &mut s.used,
                    &mut hint,
                    &mut addr,
                    &mut s.raw,
                    &mut s.regions,
                    &mut steps,
                    &mut cycle,
                )?;
                if taken != 0 {
                    continue;
                }
            }
            if s.raw.len() >= MAX_DEPTH {
                truncated = true;
                break;
            }
            steps += 1;
            if steps > MAX_FRAME_STEPS || cycle.step(addr) {
                return Err(WalkError::Unbounded {
                    what: "frame",
                    limit: MAX_DEPTH,
                });
            }
            let end = addr.checked_add(size as u64).ok_or(WalkError::Corrupt {
                what: "frame address",
                addr,
            })?;
            let mine = &s.spans[spans.clone()];
            let hit = match mine.get(hint) {
                Some(sp) if sp.covers(addr, end) => Some(hint),
                _ => mine.iter().position(|sp| sp.covers(addr, end)),
            };
            let mut in_chunk = false;
            let off = if let Some(k) = hit {
                let sp = mine[k];
                if sp.chunk {
                    hint = k;
                    in_chunk = true;
                    note_chunk_use(l, &s.batch, &mut s.usage, &sp, end);
                    s.proof.chunk(&sp, s.raw.len(), end, &mut lowest);
                    lowest = if addr < lowest { addr } else { 0 };
                    if lowest == 0 {
                        s.proof.valid = false;
                    }
                } else {
                    hint = k + 1;
                    if let Some(u) = s.used.get_mut(k) {
                        *u = true;
                    }
                    s.regions.push(Region {
                        addr,
                        len: size,
                        chunk: false,
                        age: 0,
                    });
                }
                sp.off + (addr - sp.addr) as usize
            } else if let Some(sp) = (!objects)
                .then(|| s.copies.iter().find(|c| c.covers(addr, end)).copied())
                .flatten()
            {
                note_chunk_use(l, &s.batch, &mut s.usage, &sp, end);
                s.proof.valid = false;
                sp.off + (addr - sp.addr) as usize
            } else {
                if !objects && !seeded {
                    seeded = true;
                    seed_pending(l, s, &spans, chunk);
                }
                let copied = if objects {
                    None
                } else {
                    copy_pending_chunk(&self.mem, l, s, addr, end)
                };
                match copied {
                    Some(sp) => {
                        note_chunk_use(l, &s.batch, &mut s.usage, &sp, end);
                        s.proof.valid = false;
                        sp.off + (addr - sp.addr) as usize
                    }
                    None => {
                        let off = s.batch.fetch(&self.mem, addr, size)?;
                        s.regions.push(Region {
                            addr,
                            len: size,
                            chunk: false,
                            age: 0,
                        });
                        off
                    }
                }
            };
            let fields = dec
                .decode(s.batch.bytes(off, size))
                .ok_or(WalkError::Corrupt {
                    what: if objects {
                        "frame object"
                    } else {
                        "interpreter frame"
                    },
                    addr,
                })?;
            let python = dec.is_python(&fields);
            if !in_chunk {
                // An entry frame on the C stack, or a generator's or coroutine's frame in its
                // object: a proof compares it byte for byte. `below` holds the Python frames
                // before it until the walk is over.
                s.proof.outside.push(Outside {
                    addr,
                    len: size,
                    off,
                    below: s.raw.len(),
                });
            }
            if python {
                s.raw.push(Seen {
                    frame: addr,
                    fields,
                    resolved: None,
                    outs: 0,
                    in_chunk,
                });
            }
            addr = fields.previous;
        }
        if truncated {
            s.proof.valid = false;
        }
        let total = s.raw.len() + kept;
        for o in &mut s.proof.outside {
            o.below = total - o.below;
        }
        for c in &mut s.proof.chunks {
            c.below = total - c.below;
        }
        if kept > 0 {
            // What lies below the meeting point was proven unchanged, not walked: it is used
            // all the same, and the proof carries it on.
            let mine = &s.spans[spans.clone()];
            for c in tp.proof.chunks.iter().filter(|c| c.below < kept) {
                let Some(sp) = chunk_copy(mine, c.addr) else {
                    s.proof.valid = false;
                    continue;
                };
                note_chunk_use(l, &s.batch, &mut s.usage, sp, c.addr + c.end as u64);
                s.proof.chunks.push(ChunkRead {
                    off: sp.off,
                    len: sp.len,
                    ..*c
                });
            }
            for o in tp.proof.outside.iter().filter(|o| o.below < kept) {
                let Some((k, off)) = frame_copy(mine, o.addr, o.len) else {
                    // `Old::proves` found every one of them.
                    s.proof.valid = false;
                    continue;
                };
                if let Some(u) = s.used.get_mut(k) {
                    *u = true;
                }
                s.regions.push(Region {
                    addr: o.addr,
                    len: o.len,
                    chunk: false,
                    age: 0,
                });
                s.proof.outside.push(Outside { off, ..*o });
            }
        }
        for (k, sp) in s.spans[spans.clone()].iter().enumerate() {
            let used = s.used.get(k).copied().unwrap_or(true);
            if !sp.chunk && !used && sp.age < REGION_KEEP_SAMPLES {
                s.regions.push(Region {
                    addr: sp.addr,
                    len: sp.len,
                    chunk: false,
                    age: sp.age + 1,
                });
            }
        }
        for u in &s.usage {
            let needed = u.end - u.base;
            let mut len = needed.saturating_add(CHUNK_SLACK);
            if (needed..=MAX_PLAUSIBLE_CHUNK).contains(&u.size) {
                len = len.min(u.size);
            } else {
                len = needed;
            }
            let len = len.min(MAX_CHUNK_COPY as u64).max(needed);
            s.regions.push(Region {
                addr: u.base,
                len: len as usize,
                chunk: true,
                age: 0,
            });
        }
        Ok((truncated, kept))
    }
}

/// This sample's copy of the chunk at `addr` among one thread's copies `mine`.
fn chunk_copy(mine: &[Span], addr: u64) -> Option<&Span> {
    mine.iter().find(|sp| sp.chunk && sp.addr == addr)
}

/// The copy among `mine` (not a chunk) holding the `len` bytes at `addr`: its index, and where
/// those bytes are in the batch buffer.
fn frame_copy(mine: &[Span], addr: u64, len: usize) -> Option<(usize, usize)> {
    let end = addr.saturating_add(len as u64);
    let k = mine
        .iter()
        .position(|sp| !sp.chunk && sp.covers(addr, end))?;
    let sp = mine.get(k)?;
    Some((k, sp.off + (addr - sp.addr) as usize))
}

/// Tries per walk at proving the rest of a stack unchanged. The innermost frames met first
/// often sit at the same addresses with other contents (a caller's locals changed while it
/// ran, the instruction of a frame that ran since): such a try fails within the few hundred
/// bytes compared first; a try that succeeds compares the whole prefix once.
const MEET_TRIES: u8 = 4;

/// Bytes at the end of a chunk prefix compared before the rest (see `Old::same`).
const SAME_TAIL_FIRST: usize = 512;

/// Where a walk stands against the memo's frames.
#[derive(Debug)]
struct Meet {
    /// The memo's frames `[..cursor]` are at or below the frame being walked.
    cursor: usize,
    tries: u8,
}

/// The last delivered walk of a thread, as a walk in its chunk copy looks at it.
struct Old<'a> {
    /// Outermost first.
    memo: &'a [Seen],
    proof: &'a Proof,
    /// The batch buffer `proof` points into.
    prev: &'a [u8],
    /// This sample's batch buffer.
    buf: &'a [u8],
    /// This sample's copies for the thread.
    mine: &'a [Span],
    meet: &'a mut Meet,
}

impl Old<'_> {
    /// The memo's frame at `at`, if it may be where the stack stops changing. Walks go down
    /// the chunk, so the cursor only ever moves down the memo: O(1) per frame overall.
    #[inline]
    fn candidate(&mut self, at: u64) -> Option<usize> {
        let c = &mut self.meet.cursor;
        // Frames outside chunks (generators, coroutines) are passed over: the memo's chunk
        // frames alone fall in address from the innermost, and only they can meet.
        while *c > 0
            && self
                .memo
                .get(*c - 1)
                .is_some_and(|f| f.frame > at || !f.in_chunk)
        {
            *c -= 1;
        }
        let m = c.checked_sub(1)?;
        (self.meet.tries > 0 && self.memo.get(m)?.frame == at).then_some(m)
    }

    /// Whether the memo's frames `[..=m]` (outermost first; `m` is the frame at `at`, `size`
    /// bytes) are what walking on from `at` would give, with `depth` frames walked so far:
    /// every byte that walk read is the same now. Below `at` the proof's walk read only the
    /// chunk prefix up to the end of the frame at `at` (its frames fell in address) and the
    /// frames it listed as outside, which must be in this sample's copies.
    #[cold]
    #[inline(never)]
    fn proves(&mut self, m: usize, at: u64, size: usize, sp: &Span, depth: usize) -> bool {
        self.meet.tries = self.meet.tries.saturating_sub(1);
        let p = self.proof;
        if !p.valid || depth + m + 1 > MAX_DEPTH {
            return false;
        }
        // The chunk of `at`: its prefix up to the end of the frame.
        let Some(n) = (at - sp.addr)
            .checked_add(size as u64)
            .and_then(|n| usize::try_from(n).ok())
        else {
            return false;
        };
        if !p
            .chunks
            .iter()
            .any(|c| c.addr == sp.addr && self.same_prefix(c, sp, n))
        {
            return false;
        }
        // Older chunks the walk went on into: as far as it read them.
        let older_same = p.chunks.iter().filter(|c| c.below <= m).all(|c| {
            chunk_copy(self.mine, c.addr).is_some_and(|sp| self.same_prefix(c, sp, c.end))
        });
        older_same
            && p.outside.iter().filter(|o| o.below <= m).all(|o| {
                frame_copy(self.mine, o.addr, o.len)
                    .is_some_and(|(_, now)| self.same(now, o.off, o.len))
            })
    }

    /// Whether the first `n` bytes of this sample's copy `sp` are those of the last sample's
    /// copy `c` of the same chunk.
    fn same_prefix(&self, c: &ChunkRead, sp: &Span, n: usize) -> bool {
        n <= c.len && n <= sp.len && self.same(sp.off, c.off, n)
    }

    /// Whether the `n` bytes at `now` in this sample's buffer are those at `then` in the last
    /// sample's.
    fn same(&self, now: usize, then: usize, n: usize) -> bool {
        let (Some(now), Some(then)) = (
            now.checked_add(n).and_then(|e| self.buf.get(now..e)),
            then.checked_add(n).and_then(|e| self.prev.get(then..e)),
        ) else {
            return false;
        };
        // The innermost frames change most (their locals, the instruction of the frame that
        // ran last): look at the end first, so that a failing comparison is short.
        let split = n.saturating_sub(SAME_TAIL_FIRST);
        now[split..] == then[split..] && now[..split] == then[..split]
    }
}

/// The frames of one thread's chain that lie in the chunk copy `sp`, from `*addr` on, decoded in
/// a tight loop: stops at the first frame outside the copy, at a null `previous`, or at the
/// depth limit, leaving `*addr` at the frame not taken. Returns the end of the highest frame
/// taken (0: none). A separate function so that its slices and vectors are distinct
/// parameters, which lets the compiler keep their lengths and pointers in registers.
#[allow(clippy::too_many_arguments)]
fn fast_run(
    ff: &FrameDecoder,
    buf: &[u8],
    sp: &Span,
    addr: &mut u64,
    raw: &mut Vec<Seen>,
    steps: &mut usize,
    cycle: &mut Cycle,
    old: &mut Old<'_>,
    kept: &mut usize,
    lowest: &mut u64,
) -> Result<u64, WalkError> {
    let size = ff.len as u64;
    let mut end_max = 0u64;
    let mut at = *addr;
    while at != 0 && raw.len() < MAX_DEPTH {
        let rel = at.wrapping_sub(sp.addr);
        if rel.saturating_add(size) > sp.len as u64 {
            break;
        }
        if let Some(m) = old.candidate(at) {
            if at < *lowest && old.proves(m, at, ff.len, sp, raw.len()) {
                *kept = m + 1;
                *lowest = at;
                *addr = 0;
                return Ok(end_max.max(at + size));
            }
        }
        let Some(fields) = buf.get(sp.off + rel as usize..).and_then(|f| ff.decode(f)) else {
            break;
        };
        *steps += 1;
        if *steps > MAX_FRAME_STEPS || cycle.step(at) {
            *addr = at;
            return Err(WalkError::Unbounded {
                what: "frame",
                limit: MAX_DEPTH,
            });
        }
        end_max = end_max.max(at + size);
        // Frames below in the chunk must sit lower: 0 marks that they did not.
        *lowest = if at < *lowest { at } else { 0 };
        if ff.is_python(&fields) {
            raw.push(Seen {
                frame: at,
                fields,
                resolved: None,
                outs: 0,
                in_chunk: true,
            });
        }
        at = fields.previous;
    }
    *addr = at;
    Ok(end_max)
}

/// Frame objects (≤3.10) of one thread's chain from `*addr` on that start exactly at the
/// speculative copies `spans[*hint]`, `spans[*hint + 1]`, ... (last sample's frames, in walk
/// order), decoded in a tight loop; each is marked used and remembered for the next sample.
/// Stops at the first frame elsewhere, at a null `f_back`, or at the depth limit, leaving
/// `*addr` and `*hint` there. Returns how many frames it took.
#[allow(clippy::too_many_arguments)]
fn fast_objects_run(
    fo: &FrameDecoder,
    buf: &[u8],
    spans: &[Span],
    used: &mut [bool],
    hint: &mut usize,
    addr: &mut u64,
    raw: &mut Vec<Seen>,
    regions: &mut Vec<Region>,
    steps: &mut usize,
    cycle: &mut Cycle,
) -> Result<usize, WalkError> {
    let mut taken = 0;
    let mut at = *addr;
    while at != 0 && raw.len() < MAX_DEPTH {
        let k = *hint;
        let Some(sp) = spans.get(k) else { break };
        if sp.chunk || sp.addr != at || sp.len < fo.len {
            break;
        }
        let Some(fields) = buf.get(sp.off..).and_then(|f| fo.decode(f)) else {
            break;
        };
        *steps += 1;
        if *steps > MAX_FRAME_STEPS || cycle.step(at) {
            *addr = at;
            return Err(WalkError::Unbounded {
                what: "frame",
                limit: MAX_DEPTH,
            });
        }
        if let Some(u) = used.get_mut(k) {
            *u = true;
        }
        regions.push(Region {
            addr: at,
            len: fo.len,
            chunk: false,
            age: 0,
        });
        if fo.is_python(&fields) {
            raw.push(Seen {
                frame: at,
                fields,
                resolved: None,
                outs: 0,
                in_chunk: false,
            });
        }
        *hint = k + 1;
        taken += 1;
        at = fields.previous;
    }
    *addr = at;
    Ok(taken)
}

/// Record that a frame ending at `end` was found in the chunk copy `sp`.
fn note_chunk_use(l: &Layout, batch: &Batch, usage: &mut Vec<ChunkUse>, sp: &Span, end: u64) {
    if let Some(u) = usage.iter_mut().rev().find(|u| u.base == sp.addr) {
        u.end = u.end.max(end);
        return;
    }
    let size = l
        .chunk_size
        .and_then(|o| sp.off.checked_add(o as usize))
        .filter(|&o| o + 8 <= sp.off + sp.len)
        .and_then(|o| le::u64_at(&batch.buf, o))
        .unwrap_or(0);
    usage.push(ChunkUse {
        base: sp.addr,
        end,
        size,
    });
}

/// On the first frame no copy covers: the chunks it may be in are the thread's current chunk
/// and the older chunks the copied chunk headers point at.
fn seed_pending(l: &Layout, s: &mut Scratch, spans: &Range<usize>, chunk: u64) {
    let add = |pending: &mut Vec<PendingChunk>, base: u64| {
        if base != 0 && pending.iter().all(|p| p.base != base) {
            pending.push(PendingChunk { base, size: None });
        }
    };
    add(&mut s.pending, chunk);
    if let Some(prev_off) = l.chunk_previous {
        for sp in &s.spans[spans.clone()] {
            if sp.chunk && (prev_off as usize) + 8 <= sp.len {
                if let Some(prev) = le::u64_at(&s.batch.buf, sp.off + prev_off as usize) {
                    add(&mut s.pending, prev);
                }
            }
        }
    }
}

/// Copy the pending chunk that may hold the frame `[addr, end)`, if any; the copy reaches
/// `end`.
fn copy_pending_chunk<M: RemoteMemory>(
    mem: &M,
    l: &Layout,
    s: &mut Scratch,
    addr: u64,
    end: u64,
) -> Option<Span> {
    let i = s.pending.iter().position(|p| {
        addr >= p.base
            && end - p.base <= p.size.unwrap_or(MAX_CHUNK_COPY as u64)
            && end - p.base <= MAX_CHUNK_COPY as u64
    })?;
    match copy_chunk(mem, l, &mut s.batch, s.pending[i].base, end) {
        Ok(copy) => {
            s.pending.swap_remove(i);
            // Frames further out may live in the previous (older) chunk.
            let previous = l
                .chunk_previous
                .and_then(|off| le::u64_at(s.batch.bytes(copy.off, copy.len), off as usize))
                .filter(|&p| p != 0)
                .filter(|&p| !s.copies.iter().any(|c| c.addr == p))
                .filter(|&p| s.pending.iter().all(|c| c.base != p));
            if let Some(base) = previous {
                s.pending.push(PendingChunk { base, size: None });
            }
            s.copies.push(copy);
            Some(copy)
        }
        // A generator frame just above the chunk: remember the chunk's real size so that its
        // own frames are still copied in one go later.
        Err(NoCopy::Short(len)) => {
            s.pending[i].size = Some(len);
            None
        }
        Err(NoCopy::Unusable) => {
            s.pending.swap_remove(i);
            None
        }
    }
}

/// Copy `[base, end)` of the chunk at `base` if the chunk's own `size` says it reaches `end`.
fn copy_chunk<M: RemoteMemory>(
    mem: &M,
    l: &Layout,
    batch: &mut Batch,
    base: u64,
    end: u64,
) -> Result<Span, NoCopy> {
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
        if chunk_size > MAX_PLAUSIBLE_CHUNK {
            Err(NoCopy::Unusable)
        } else if chunk_size < len {
            Err(NoCopy::Short(chunk_size))
        } else {
            Ok(())
        }
    };
    if len > CHUNK_SPECULATIVE {
        let head = batch
            .fetch(mem, base, data_off as usize)
            .map_err(|_| NoCopy::Unusable)?;
        check(le::u64_at(batch.bytes(head, data_off as usize), size_off).ok_or(NoCopy::Unusable)?)?;
    }
    let len = len as usize;
    let off = batch.fetch(mem, base, len).map_err(|_| NoCopy::Unusable)?;
    check(le::u64_at(batch.bytes(off, len), size_off).ok_or(NoCopy::Unusable)?)?;
    Ok(Span {
        addr: base,
        len,
        off,
        chunk: true,
        age: 0,
    })
}
