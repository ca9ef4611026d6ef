//! [`KeptStacks`]: the heaviest whole stacks since the start (or reset), within a memory budget,
//! for the call tree (the function table needs none: it is computed from a
//! [`FrameFold`](strobe_aggregate::FrameFold)).
//!
//! The pipeline's tables forget stacks not seen lately, so the stacks kept here are copies (the
//! frames themselves are never forgotten). When the copies pass the budget, the lightest stacks
//! are let go until half of it is free: a stack that comes back starts from zero, and the time
//! of the stacks let go is accounted in [`KeptStacks::let_go`]. A target with fewer distinct
//! stacks than the budget holds keeps them all, and its call trees are exact.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use strobe_aggregate::{Count, FrameId, FxBuild, Sample, SampleFlags, Tables, ThreadId};

/// A kept stack: its thread, its flags, its frames (outermost first) and its count.
#[derive(Debug, Clone)]
struct Kept {
    thread: ThreadId,
    flags: SampleFlags,
    frames: Box<[FrameId]>,
    count: Count,
}

/// Bytes a kept stack takes besides its frames (its entry and hash-table slot).
const STACK_OVERHEAD: usize = std::mem::size_of::<Kept>() + 16;

/// The budget `strobe top` gives its kept stacks: about 4,800 stacks of 12 frames, 2,400 kept
/// after the lightest are let go.
pub const KEPT_STACK_BYTES: usize = 512 << 10;

/// The heaviest stacks within a budget. See the module documentation.
#[derive(Debug, Clone)]
pub struct KeptStacks {
    budget: usize,
    bytes: usize,
    /// The kept stacks, found by the hash of their thread, flags and frames
    /// ([`hash_of`]), so that a sample's stack is looked up by its borrowed frames.
    counts: HashTable<Kept>,
    let_go: Count,
    let_go_stacks: u64,
    /// Frame lists copied so far (one per stack kept: a sample whose stack is kept copies
    /// nothing).
    copies: u64,
}

impl KeptStacks {
    /// Nothing kept yet; the stacks will take about `budget` bytes at most.
    pub fn new(budget: usize) -> KeptStacks {
        KeptStacks {
            budget,
            bytes: 0,
            counts: HashTable::new(),
            let_go: Count::default(),
            let_go_stacks: 0,
            copies: 0,
        }
    }

    /// Counts sample `s`, whose stack `tables` holds (one it no longer holds counts as empty).
    pub fn add(&mut self, tables: &Tables, s: &Sample) {
        let frames = if tables.holds_stack(s.stack) {
            tables.stack(s.stack)
        } else {
            &[]
        };
        let c = Count::one(s.weight_ns);
        let hash = hash_of(s.thread, s.flags, frames);
        let same = |k: &Kept| k.thread == s.thread && k.flags == s.flags && *k.frames == *frames;
        if let Some(kept) = self.counts.find_mut(hash, same) {
            kept.count.add(c);
            return;
        }
        let kept = Kept {
            thread: s.thread,
            flags: s.flags,
            frames: frames.into(),
            count: c,
        };
        self.copies += 1;
        self.bytes += bytes_of(&kept);
        self.insert(hash, kept);
        if self.bytes > self.budget {
            self.let_go_lightest();
        }
    }

    fn insert(&mut self, hash: u64, kept: Kept) {
        self.counts
            .insert_unique(hash, kept, |k| hash_of(k.thread, k.flags, &k.frames));
    }

    /// Lets the lightest stacks go until they take half the budget at most.
    fn let_go_lightest(&mut self) {
        let mut by_weight: Vec<Kept> = self.counts.drain().collect();
        by_weight.sort_by(|a, b| {
            b.count
                .weight_ns
                .cmp(&a.count.weight_ns)
                .then(b.count.samples.cmp(&a.count.samples))
        });
        self.bytes = 0;
        for k in by_weight {
            let bytes = bytes_of(&k);
            if self.bytes + bytes <= self.budget / 2 {
                self.bytes += bytes;
                let hash = hash_of(k.thread, k.flags, &k.frames);
                self.insert(hash, k);
            } else {
                self.let_go.add(k.count);
                self.let_go_stacks += 1;
            }
        }
    }

    /// The kept stacks and their counts.
    pub fn iter(&self) -> impl Iterator<Item = (ThreadId, SampleFlags, &[FrameId], Count)> + '_ {
        self.counts
            .iter()
            .map(|k| (k.thread, k.flags, &k.frames[..], k.count))
    }

    /// The samples of the stacks let go so far (they count in the function table, not in the
    /// kept stacks).
    pub fn let_go(&self) -> Count {
        self.let_go
    }

    /// How many times a stack was let go (a stack let go, seen again and let go again counts
    /// twice).
    pub fn let_go_stacks(&self) -> u64 {
        self.let_go_stacks
    }

    /// The budget, in bytes.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Number of stacks kept.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Bytes the kept stacks take, as the budget counts them.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many frame lists were copied so far: one for each stack kept (again after being
    /// let go), none for a sample whose stack is already kept.
    pub fn copies(&self) -> u64 {
        self.copies
    }
}

/// The hash a stack is found by, computed the same from a sample's borrowed frames as from a
/// kept copy.
fn hash_of(thread: ThreadId, flags: SampleFlags, frames: &[FrameId]) -> u64 {
    FxBuild.hash_one((thread, flags, frames))
}

fn bytes_of(kept: &Kept) -> usize {
    STACK_OVERHEAD + std::mem::size_of_val(&kept.frames[..])
}
