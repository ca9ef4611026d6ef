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
/// where those bytes are in the batch buffer. `copies[hint]` is looked at first: frames
/// looked up in walk order are usually in consecutive copies (≤3.10 frame objects, copied in
/// the order the last walk took them), which keeps a lookup per frame O(1).
#[inline]
pub(crate) fn frame_copy(
    copies: &[CopiedRange],
    addr: u64,
    len: usize,
    hint: usize,
) -> Option<(usize, usize)> {
    let end = addr.saturating_add(len as u64);
    let holds = |copy: &CopiedRange| !copy.chunk && copy.covers(addr, end);
    let index = match copies.get(hint) {
        Some(copy) if holds(copy) => hint,
        _ => copies.iter().position(holds)?,
    };
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use strobe_python_abi::{layout_for, Flavour};
    use strobe_testkit::ImageMemory;

    fn copy(addr: u64, len: usize, off: usize, chunk: bool) -> CopiedRange {
        CopiedRange {
            addr,
            len,
            off,
            chunk,
            age: 0,
        }
    }

    #[test]
    fn lookups_tell_chunk_copies_from_frame_copies() {
        let copies = [
            copy(0x1000, 0x100, 0, true),
            copy(0x5000, 0x40, 0x100, false),
        ];
        assert_eq!(chunk_copy(&copies, 0x1000).map(|c| c.off), Some(0));
        assert!(chunk_copy(&copies, 0x5000).is_none());
        assert!(chunk_copy(&copies, 0x1008).is_none());
        assert_eq!(frame_copy(&copies, 0x5010, 0x10, 0), Some((1, 0x110)));
        assert_eq!(frame_copy(&copies, 0x5010, 0x10, 1), Some((1, 0x110)));
        assert_eq!(frame_copy(&copies, 0x5010, 0x10, 9), Some((1, 0x110)));
        assert_eq!(frame_copy(&copies, 0x5000, 0x40, 0), Some((1, 0x100)));
        assert_eq!(frame_copy(&copies, 0x5038, 0x10, 1), None);
        assert_eq!(frame_copy(&copies, 0x1010, 8, 0), None);
    }

    /// A 3.12 data-stack chunk at a fresh address whose header says `size` and links to
    /// `previous`, followed by other mapped memory up to `size + 0x100` bytes.
    fn chunk(mem: &mut ImageMemory, layout: &Layout, size: u64, previous: u64) -> u64 {
        let base = mem.alloc(size as usize + 0x100);
        mem.write_u64(base + u64::from(layout.chunk_size.unwrap()), size);
        mem.write_u64(base + u64::from(layout.chunk_previous.unwrap()), previous);
        base
    }

    #[test]
    fn a_pending_chunk_is_copied_up_to_the_frame_and_its_previous_chunk_becomes_pending() {
        let layout = layout_for(3, 12, Flavour::DEFAULT).unwrap();
        let mut mem = ImageMemory::new();
        let older = chunk(&mut mem, layout, 0x4000, 0);
        let current = chunk(&mut mem, layout, 0x4000, older);
        let mut batch = Batch::default();
        batch.read(&mem).unwrap();
        let mut chunks = ThreadChunks::default();
        chunks.seed(layout, batch.buf(), &[], current);
        // A frame in neither chunk: nothing to copy.
        assert!(chunks
            .copy_pending(&mem, layout, &mut batch, 0x10, 0x50)
            .is_none());
        let copied = chunks
            .copy_pending(&mem, layout, &mut batch, current + 0x100, current + 0x140)
            .unwrap();
        assert_eq!(
            (copied.addr, copied.len, copied.chunk),
            (current, 0x140, true)
        );
        let held = chunks
            .copy_covering(current + 0x100, current + 0x140)
            .unwrap();
        assert_eq!(held.off, copied.off);
        assert!(chunks
            .copy_covering(current + 0x100, current + 0x141)
            .is_none());
        // The older chunk is pending now.
        let older_copy = chunks
            .copy_pending(&mem, layout, &mut batch, older + 0x40, older + 0x80)
            .unwrap();
        assert_eq!((older_copy.addr, older_copy.len), (older, 0x80));
    }

    #[test]
    fn a_frame_past_a_chunks_end_is_not_copied_from_it() {
        let layout = layout_for(3, 12, Flavour::DEFAULT).unwrap();
        let mut mem = ImageMemory::new();
        let small = chunk(&mut mem, layout, 0x100, 0);
        let mut batch = Batch::default();
        let mut chunks = ThreadChunks::default();
        chunks.seed(layout, batch.buf(), &[], small);
        // The header says 0x100 bytes: a frame ending at 0x140 is elsewhere (a generator's).
        assert!(chunks
            .copy_pending(&mem, layout, &mut batch, small + 0x100, small + 0x140)
            .is_none());
        // The chunk stays pending, its size known, for its own frames.
        let copied = chunks
            .copy_pending(&mem, layout, &mut batch, small + 0x40, small + 0x80)
            .unwrap();
        assert_eq!((copied.addr, copied.len), (small, 0x80));
    }

    #[test]
    fn next_regions_reach_past_the_highest_frame_within_the_chunk() {
        let layout = layout_for(3, 12, Flavour::DEFAULT).unwrap();
        let size_at = layout.chunk_size.unwrap() as usize;
        // Two chunk copies in one buffer: one of 16 KiB, one whose header is garbage.
        let mut buf = vec![0u8; 0x200];
        buf[size_at..size_at + 8].copy_from_slice(&0x4000u64.to_le_bytes());
        buf[0x100 + size_at..0x100 + size_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let big = copy(0x10_0000, 0x100, 0, true);
        let garbage = copy(0x20_0000, 0x100, 0x100, true);
        let mut chunks = ThreadChunks::default();
        chunks.note_use(layout, &buf, &big, 0x10_0080);
        chunks.note_use(layout, &buf, &big, 0x10_00c0);
        chunks.note_use(layout, &buf, &garbage, 0x20_0040);
        let mut regions = Vec::new();
        chunks.push_regions(&mut regions);
        let lens: Vec<(u64, usize)> = regions.iter().map(|r| (r.addr, r.len)).collect();
        assert_eq!(
            lens,
            [(0x10_0000, 0xc0 + CHUNK_SLACK as usize), (0x20_0000, 0x40)]
        );
        assert!(regions.iter().all(|r| r.chunk && r.age == 0));
    }
}
