//! Shared pieces of the hostile-memory tests (their generator is `strobe_testkit::Rng`): a
//! mutable address space that counts and bounds reads and can undo mutations cheaply, and a
//! builder that lays out a complete, valid CPython process image (threads, frames, code
//! objects, strings, the `threading` dicts, `_Py_DebugOffsets`) for any generated [`Layout`].

#![allow(dead_code)]

pub mod asyncio_legacy;
pub mod build;

use std::cell::{Cell, RefCell};

use strobe_memory::{MemError, RemoteMemory};

/// Largest single read the walker may ask for. `read_vec` limits in the walker are all well
/// below this (the largest is the 6 MiB bound on a 2.7 dict table); a read above it means a
/// length from the target reached an allocation unchecked.
pub const MAX_READ: usize = 16 << 20;

/// One mapped region; `len` may be shorter than `bytes` while a mutation truncates it.
#[derive(Debug, Clone)]
struct Region {
    base: u64,
    bytes: Vec<u8>,
    len: usize,
}

#[derive(Debug, Clone)]
enum Undo {
    Bytes {
        region: usize,
        off: usize,
        old: [u8; 8],
        n: usize,
    },
    Len {
        region: usize,
        old: usize,
    },
}

/// A sparse address space for fuzzing: reads are counted and fail once a budget is spent (so
/// a walk that does not end shows up as "over budget" instead of hanging the test), reads
/// longer than [`MAX_READ`] are refused and recorded, and every mutation can be undone.
#[derive(Debug)]
pub struct FuzzMemory {
    regions: RefCell<Vec<Region>>,
    undo: RefCell<Vec<Undo>>,
    reads: Cell<u64>,
    budget: Cell<u64>,
    /// Set when a read was refused because the budget was spent.
    over_budget: Cell<bool>,
    /// The largest read asked for, and where.
    largest: Cell<(usize, u64)>,
}

impl FuzzMemory {
    /// Regions must be sorted by address and must not overlap.
    pub fn new(regions: Vec<(u64, Vec<u8>)>) -> FuzzMemory {
        let regions: Vec<Region> = regions
            .into_iter()
            .map(|(base, bytes)| Region {
                base,
                len: bytes.len(),
                bytes,
            })
            .collect();
        for w in regions.windows(2) {
            assert!(w[0].base + w[0].bytes.len() as u64 <= w[1].base, "overlap");
        }
        FuzzMemory {
            regions: RefCell::new(regions),
            undo: RefCell::new(Vec::new()),
            reads: Cell::new(0),
            budget: Cell::new(u64::MAX),
            over_budget: Cell::new(false),
            largest: Cell::new((0, 0)),
        }
    }

    /// Start counting reads afresh with room for `budget` more.
    pub fn reset_reads(&self, budget: u64) {
        self.reads.set(0);
        self.budget.set(budget);
        self.over_budget.set(false);
        self.largest.set((0, 0));
    }

    pub fn reads(&self) -> u64 {
        self.reads.get()
    }

    pub fn over_budget(&self) -> bool {
        self.over_budget.get()
    }

    /// `(length, address)` of the largest read since [`FuzzMemory::reset_reads`].
    pub fn largest_read(&self) -> (usize, u64) {
        self.largest.get()
    }

    pub fn region_count(&self) -> usize {
        self.regions.borrow().len()
    }

    /// The regions at or above `base` at least one word long: where a test's own structures
    /// are, for [`FuzzMemory::poke_words`].
    pub fn regions_from(&self, base: u64) -> Vec<(u64, usize)> {
        (0..self.region_count())
            .map(|i| self.region(i))
            .filter(|&(b, len)| b >= base && len >= 8)
            .collect()
    }

    /// One fuzz case's mutation: 1–4 aligned words of `ours` overwritten with values a
    /// corrupted or racing target could hold (null, near the top of the address space, an
    /// address inside the region, near one of `near`, random, small); returns what was
    /// written where.
    pub fn poke_words(
        &self,
        rng: &mut strobe_testkit::Rng,
        ours: &[(u64, usize)],
        near: &[u64],
    ) -> Vec<(u64, u64)> {
        let mut applied = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let (base, len) = ours[rng.below(ours.len() as u64) as usize];
            let off = rng.below(len as u64 / 8) * 8;
            let v = match rng.below(6) {
                0 => 0,
                1 => u64::MAX - rng.below(64),
                2 => base + rng.below(len as u64),
                3 => near[rng.below(near.len() as u64) as usize] + rng.below(256),
                4 => rng.next_u64(),
                _ => rng.below(1 << 16),
            };
            self.poke_u64(base + off, v);
            applied.push((base + off, v));
        }
        applied
    }

    /// `(base, current length)` of region `i`.
    pub fn region(&self, i: usize) -> (u64, usize) {
        let r = &self.regions.borrow()[i];
        (r.base, r.len)
    }

    fn find(regions: &[Region], addr: u64) -> Option<usize> {
        let i = regions.partition_point(|r| r.base <= addr);
        let i = i.checked_sub(1)?;
        let r = &regions[i];
        (addr - r.base < r.bytes.len() as u64).then_some(i)
    }

    /// Overwrite up to 8 bytes at `addr` (which must be mapped), remembering the old ones.
    /// Bytes past the end of the region are dropped. Returns false if `addr` is unmapped.
    pub fn poke(&self, addr: u64, bytes: &[u8]) -> bool {
        assert!(bytes.len() <= 8);
        let mut regions = self.regions.borrow_mut();
        let Some(i) = Self::find(&regions, addr) else {
            return false;
        };
        let r = &mut regions[i];
        let off = (addr - r.base) as usize;
        let n = bytes.len().min(r.bytes.len() - off);
        let mut old = [0u8; 8];
        old[..n].copy_from_slice(&r.bytes[off..off + n]);
        self.undo.borrow_mut().push(Undo::Bytes {
            region: i,
            off,
            old,
            n,
        });
        r.bytes[off..off + n].copy_from_slice(&bytes[..n]);
        true
    }

    pub fn poke_u64(&self, addr: u64, v: u64) -> bool {
        self.poke(addr, &v.to_le_bytes())
    }

    /// The u64 at `addr` as currently mapped (ignoring truncation), if mapped.
    pub fn peek_u64(&self, addr: u64) -> Option<u64> {
        let regions = self.regions.borrow();
        let i = Self::find(&regions, addr)?;
        let r = &regions[i];
        let off = (addr - r.base) as usize;
        let b = r.bytes.get(off..off + 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// Make region `i` end after `len` bytes (reads past it fault) until undone.
    pub fn truncate(&self, i: usize, len: usize) {
        let mut regions = self.regions.borrow_mut();
        let r = &mut regions[i];
        self.undo.borrow_mut().push(Undo::Len {
            region: i,
            old: r.len,
        });
        r.len = len.min(r.len);
    }

    /// Undo every mutation since the last call, newest first.
    pub fn restore(&self) {
        let mut regions = self.regions.borrow_mut();
        let mut undo = self.undo.borrow_mut();
        while let Some(u) = undo.pop() {
            match u {
                Undo::Bytes {
                    region,
                    off,
                    old,
                    n,
                } => regions[region].bytes[off..off + n].copy_from_slice(&old[..n]),
                Undo::Len { region, old } => regions[region].len = old,
            }
        }
    }
}

impl RemoteMemory for FuzzMemory {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let fault = MemError::Fault {
            addr,
            len: buf.len(),
        };
        let n = self.reads.get() + 1;
        self.reads.set(n);
        if buf.len() > self.largest.get().0 {
            self.largest.set((buf.len(), addr));
        }
        if n > self.budget.get() {
            self.over_budget.set(true);
            return Err(fault);
        }
        if buf.len() > MAX_READ {
            return Err(MemError::TooLarge {
                addr,
                len: buf.len(),
                limit: MAX_READ,
            });
        }
        let regions = self.regions.borrow();
        let i = regions.partition_point(|r| r.base <= addr);
        let Some(r) = i.checked_sub(1).map(|i| &regions[i]) else {
            return Err(fault);
        };
        let off = usize::try_from(addr - r.base).map_err(|_| fault.clone())?;
        let end = off.checked_add(buf.len()).ok_or(fault.clone())?;
        if end > r.len {
            return Err(fault);
        }
        buf.copy_from_slice(&r.bytes[off..end]);
        Ok(())
    }
}

/// Memory that changes as the target would between two of our reads: after each read that
/// covers `at` (at most `times` of them), `change` runs on the image.
pub struct Racing<'a> {
    pub mem: &'a FuzzMemory,
    pub at: u64,
    pub times: Cell<u32>,
    pub change: &'a dyn Fn(&FuzzMemory),
}

impl RemoteMemory for Racing<'_> {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let read = self.mem.read_into(addr, buf);
        let covers = addr <= self.at && self.at < addr + buf.len() as u64;
        if covers && self.times.get() > 0 {
            self.times.set(self.times.get() - 1);
            (self.change)(self.mem);
        }
        read
    }
}
