//! The batch read: ranges of target memory queued and read in one call into one reused buffer,
//! the ranges a thread asks to be copied speculatively ([`Region`]) and where each copy landed
//! ([`CopiedRange`]).

use strobe_memory::{MemError, RemoteMemory};

use crate::fields::FieldSet;

/// Most bytes one sample copies; a bound against garbage sizes and pointer chains.
const MAX_SAMPLE_BYTES: usize = 256 << 20;

/// Ranges to read in one call, and where each lands in one reused buffer.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    reqs: Vec<(u64, usize)>,
    buf: Vec<u8>,
    used: usize,
}

impl Batch {
    /// Forget the queued ranges (the buffer is kept).
    pub(crate) fn clear(&mut self) {
        self.reqs.clear();
        self.used = 0;
    }

    /// Queue a range; returns where its bytes will be in the buffer.
    pub(crate) fn add(&mut self, addr: u64, len: usize) -> usize {
        let off = self.used;
        self.reqs.push((addr, len));
        self.used = self.used.saturating_add(len);
        off
    }

    /// Queue the reads of `fields` for the structure at `base`; returns where they start in
    /// the buffer.
    pub(crate) fn add_fields(&mut self, fields: &FieldSet, base: u64) -> usize {
        let start = self.used;
        for &(off, len) in fields.reads() {
            self.add(base.wrapping_add(off), len);
        }
        start
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
    pub(crate) fn read<M: RemoteMemory>(&mut self, mem: &M) -> Result<(), MemError> {
        self.grow()?;
        mem.read_batch(&self.reqs, &mut self.buf[..self.used])
    }

    /// Read one more range right now (after [`Batch::read`]); returns where it is.
    pub(crate) fn fetch<M: RemoteMemory>(
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

    /// The whole buffer (positions returned by [`Batch::add`] and [`Batch::fetch`] index it).
    #[inline]
    pub(crate) fn buf(&self) -> &[u8] {
        &self.buf
    }

    /// The `len` bytes at `off` in the buffer; empty if they are not all there.
    pub(crate) fn bytes(&self, off: usize, len: usize) -> &[u8] {
        off.checked_add(len)
            .and_then(|end| self.buf.get(off..end))
            .unwrap_or(&[])
    }

    /// Exchange the buffer with `other` (the last delivered sample's, which proofs point into).
    pub(crate) fn swap_buf(&mut self, other: &mut Vec<u8>) {
        std::mem::swap(&mut self.buf, other);
    }
}

/// A range of target memory to copy speculatively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region {
    /// Start in the target.
    pub(crate) addr: u64,
    /// Length in bytes.
    pub(crate) len: usize,
    /// A data-stack chunk (the range starts at its header) rather than one frame.
    pub(crate) chunk: bool,
    /// Samples in a row this frame's range was copied without a frame being found in it.
    pub(crate) age: u8,
}

/// A copy of target memory in the batch buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CopiedRange {
    /// Start in the target.
    pub(crate) addr: u64,
    /// Length in bytes.
    pub(crate) len: usize,
    /// Where the copy starts in the batch buffer.
    pub(crate) off: usize,
    /// A data-stack chunk (from its header on) rather than one frame.
    pub(crate) chunk: bool,
    /// The age of the [`Region`] it was copied for.
    pub(crate) age: u8,
}

impl CopiedRange {
    /// Whether the copy holds all of `[addr, end)`.
    #[inline]
    pub(crate) fn covers(&self, addr: u64, end: u64) -> bool {
        addr >= self.addr && end <= self.addr.saturating_add(self.len as u64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use strobe_testkit::ImageMemory;

    #[test]
    fn queued_ranges_land_one_after_the_other() {
        let mut mem = ImageMemory::new();
        let a = mem.alloc(64);
        let b = mem.alloc(64);
        mem.write(a, &[1, 2, 3, 4]);
        mem.write_u64(b + 8, 0x1122_3344_5566_7788);
        let fields = FieldSet::new(&[Some((8, 8))]);
        let mut batch = Batch::default();
        assert_eq!(batch.add(a, 4), 0);
        assert_eq!(batch.add_fields(&fields, b), 4);
        batch.read(&mem).unwrap();
        assert_eq!(batch.bytes(0, 4), &[1, 2, 3, 4]);
        assert_eq!(fields.u64(batch.buf(), 4, 0), Some(0x1122_3344_5566_7788));
        // A range read afterwards goes after them.
        let off = batch.fetch(&mem, a + 1, 2).unwrap();
        assert_eq!(off, 12);
        assert_eq!(batch.bytes(off, 2), &[2, 3]);
        assert_eq!(batch.bytes(off, 1000), &[] as &[u8]);
        assert_eq!(batch.bytes(usize::MAX, 1), &[] as &[u8]);
    }

    #[test]
    fn an_unmapped_range_fails_the_batch_and_clear_starts_over() {
        let mut mem = ImageMemory::new();
        let a = mem.alloc(16);
        let mut batch = Batch::default();
        batch.add(a, 16);
        batch.add(a + 16, 8);
        assert!(batch.read(&mem).is_err());
        batch.clear();
        assert_eq!(batch.add(a, 8), 0);
        batch.read(&mem).unwrap();
    }

    #[test]
    fn a_sample_larger_than_the_bound_is_refused_before_reading() {
        let mem = ImageMemory::new();
        let mut batch = Batch::default();
        batch.add(0x1000, MAX_SAMPLE_BYTES + 1);
        assert!(matches!(batch.read(&mem), Err(MemError::TooLarge { .. })));
    }

    #[test]
    fn a_copy_covers_only_ranges_inside_it() {
        let copy = CopiedRange {
            addr: 0x1000,
            len: 0x100,
            off: 0,
            chunk: true,
            age: 0,
        };
        assert!(copy.covers(0x1000, 0x1100));
        assert!(copy.covers(0x1080, 0x1090));
        assert!(!copy.covers(0xfff, 0x1010));
        assert!(!copy.covers(0x10f8, 0x1101));
    }
}
