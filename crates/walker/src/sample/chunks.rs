//! Data-stack chunks (3.11+) of the thread being walked: finding a frame's bytes among this
//! sample's copies, copying a chunk the speculative read missed, and remembering how much of
//! each chunk to copy next time.

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::Layout;

use crate::limits::MAX_CHUNK_COPY;
use crate::sample::batch::{Batch, CopiedRange, Region};

/// Slack read past the innermost frame of a chunk, so that a stack a few frames deeper than
/// last time is still covered (a small frame is about 100–200 bytes). Bytes are cheap next to
/// a second system call: ~0.06 µs per KiB against ~1.1 µs per call here.
const CHUNK_SLACK: u64 = 1024;
/// Above this, a chunk header's `size` is garbage (CPython's chunks are 16 KiB or a few
/// times that for huge frames).
const MAX_PLAUSIBLE_CHUNK: u64 = 1 << 30;
/// Up to this span, the chunk prefix up to a frame is copied without first reading the chunk
/// header (the header is part of the copy and validates it afterwards).
const CHUNK_SPECULATIVE: u64 = 64 * 1024;

/// This sample's copy of the chunk at `addr` among one thread's copies `copies`.
#[inline]
pub(crate) fn chunk_copy(copies: &[CopiedRange], addr: u64) -> Option<&CopiedRange> {
    copies.iter().find(|copy| copy.chunk && copy.addr == addr)
}

/// The copy among `copies` (not a chunk) holding the `len` bytes at `addr`: its index, and
/// where those bytes are in the batch buffer.
#[inline]
pub(crate) fn frame_copy(copies: &[CopiedRange], addr: u64, len: usize) -> Option<(usize, usize)> {
    let end = addr.saturating_add(len as u64);
    let index = copies
        .iter()
        .position(|copy| !copy.chunk && copy.covers(addr, end))?;
    let copy = copies.get(index)?;
    Some((index, copy.off + (addr - copy.addr) as usize))
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
#[derive(Debug, PartialEq, Eq)]
enum NoCopy {
    /// The chunk is `size` bytes long and does not reach the frame.
    Short(u64),
    /// The chunk cannot be used (unreadable, implausible header).
    Unusable,
}

/// The chunks of the thread being walked: how far its frames reached in each, the chunks
/// copied because no speculative copy covered a frame, and the chunks that may still be.
#[derive(Debug, Default)]
pub(crate) struct ThreadChunks {
    /// Chunks the thread's frames were found in.
    usage: Vec<ChunkUse>,
    /// Chunks copied because no speculative copy covered a frame.
    copies: Vec<CopiedRange>,
    /// Chunks that may still be copied.
    pending: Vec<PendingChunk>,
}

impl ThreadChunks {
    /// A new thread is walked.
    pub(crate) fn clear(&mut self) {
        self.usage.clear();
        self.copies.clear();
        self.pending.clear();
    }

    /// Record that a frame ending at `end` was found in the chunk copy `copy` (whose bytes
    /// are in `buf`).
    pub(crate) fn note_use(&mut self, layout: &Layout, buf: &[u8], copy: &CopiedRange, end: u64) {
        if let Some(used) = self.usage.iter_mut().rev().find(|u| u.base == copy.addr) {
            used.end = used.end.max(end);
            return;
        }
        let size = layout
            .chunk_size
            .and_then(|o| copy.off.checked_add(o as usize))
            .filter(|&o| o + 8 <= copy.off + copy.len)
            .and_then(|o| le::u64_at(buf, o))
            .unwrap_or(0);
        self.usage.push(ChunkUse {
            base: copy.addr,
            end,
            size,
        });
    }

    /// The chunk copied on demand this sample that holds `[addr, end)`, if any.
    pub(crate) fn copy_covering(&self, addr: u64, end: u64) -> Option<CopiedRange> {
        self.copies.iter().find(|c| c.covers(addr, end)).copied()
    }

    /// On the first frame no copy covers: the chunks it may be in are the thread's current
    /// chunk `current` and the older chunks the copied chunk headers among `thread_copies`
    /// (bytes in `buf`) point at.
    pub(crate) fn seed(
        &mut self,
        layout: &Layout,
        buf: &[u8],
        thread_copies: &[CopiedRange],
        current: u64,
    ) {
        let add = |pending: &mut Vec<PendingChunk>, base: u64| {
            if base != 0 && pending.iter().all(|p| p.base != base) {
                pending.push(PendingChunk { base, size: None });
            }
        };
        add(&mut self.pending, current);
        if let Some(prev_off) = layout.chunk_previous {
            for copy in thread_copies {
                if copy.chunk && (prev_off as usize) + 8 <= copy.len {
                    if let Some(prev) = le::u64_at(buf, copy.off + prev_off as usize) {
                        add(&mut self.pending, prev);
                    }
                }
            }
        }
    }

    /// Copy the pending chunk that may hold the frame `[addr, end)`, if any; the copy reaches
    /// `end`.
    pub(crate) fn copy_pending<M: RemoteMemory>(
        &mut self,
        mem: &M,
        layout: &Layout,
        batch: &mut Batch,
        addr: u64,
        end: u64,
    ) -> Option<CopiedRange> {
        let index = self.pending.iter().position(|p| {
            addr >= p.base
                && end - p.base <= p.size.unwrap_or(MAX_CHUNK_COPY as u64)
                && end - p.base <= MAX_CHUNK_COPY as u64
        })?;
        match copy_chunk(mem, layout, batch, self.pending[index].base, end) {
            Ok(copy) => {
                self.pending.swap_remove(index);
                // Frames further out may live in the previous (older) chunk.
                let previous = layout
                    .chunk_previous
                    .and_then(|off| le::u64_at(batch.bytes(copy.off, copy.len), off as usize))
                    .filter(|&p| p != 0)
                    .filter(|&p| !self.copies.iter().any(|c| c.addr == p))
                    .filter(|&p| self.pending.iter().all(|c| c.base != p));
                if let Some(base) = previous {
                    self.pending.push(PendingChunk { base, size: None });
                }
                self.copies.push(copy);
                Some(copy)
            }
            // A generator frame just above the chunk: remember the chunk's real size so that
            // its own frames are still copied in one go later.
            Err(NoCopy::Short(len)) => {
                self.pending[index].size = Some(len);
                None
            }
            Err(NoCopy::Unusable) => {
                self.pending.swap_remove(index);
                None
            }
        }
    }

    /// The ranges to copy next sample for the chunks used this sample: each from its header
    /// to past the highest frame found in it, within the chunk's own size.
    pub(crate) fn push_regions(&self, regions: &mut Vec<Region>) {
        for used in &self.usage {
            let needed = used.end - used.base;
            let mut len = needed.saturating_add(CHUNK_SLACK);
            if (needed..=MAX_PLAUSIBLE_CHUNK).contains(&used.size) {
                len = len.min(used.size);
            } else {
                len = needed;
            }
            let len = len.min(MAX_CHUNK_COPY as u64).max(needed);
            regions.push(Region {
                addr: used.base,
                len: len as usize,
                chunk: true,
                age: 0,
            });
        }
    }
}

/// Copy `[base, end)` of the chunk at `base` if the chunk's own `size` says it reaches `end`.
fn copy_chunk<M: RemoteMemory>(
    mem: &M,
    layout: &Layout,
    batch: &mut Batch,
    base: u64,
    end: u64,
) -> Result<CopiedRange, NoCopy> {
    let (Some(size_off), Some(data_off)) = (layout.chunk_size, layout.chunk_data) else {
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
    Ok(CopiedRange {
        addr: base,
        len,
        off,
        chunk: true,
        age: 0,
    })
}
