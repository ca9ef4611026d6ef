//! [`KeptStacks`]: the heaviest whole stacks since the start (or reset), within a memory budget,
//! for the call tree (the function table needs none: it is computed from a
//! [`FrameFold`](strobe_aggregate::FrameFold)).
//!
//! The pipeline's tables forget stacks not seen lately, so the stacks kept here are copies (the
//! frames themselves are never forgotten). When the copies pass the budget, the lightest stacks
//! are let go until half of it is free: a stack that comes back starts from zero, and the time
//! of the stacks let go is accounted in [`KeptStacks::let_go`]. A target with fewer distinct
//! stacks than the budget holds keeps them all, and its call trees are exact.

use std::collections::HashMap;

use strobe_aggregate::{Count, FrameId, FxBuild, Sample, SampleFlags, Tables, ThreadId};

/// What a kept stack is counted under: its thread, its flags and its frames, outermost first.
type Key = (ThreadId, SampleFlags, Box<[FrameId]>);

/// Bytes a kept stack takes besides its frames (its key, count and hash-table slot).
const STACK_OVERHEAD: usize = std::mem::size_of::<(Key, Count)>() + 16;

/// The budget `strobe top` gives its kept stacks: about 4,800 stacks of 12 frames, 2,400 kept
/// after the lightest are let go.
pub const KEPT_STACK_BYTES: usize = 512 << 10;

/// The heaviest stacks within a budget. See the module documentation.
#[derive(Debug, Clone)]
pub struct KeptStacks {
    budget: usize,
    bytes: usize,
    counts: HashMap<Key, Count, FxBuild>,
    let_go: Count,
    let_go_stacks: u64,
}

impl KeptStacks {
    /// Nothing kept yet; the stacks will take about `budget` bytes at most.
    pub fn new(budget: usize) -> KeptStacks {
        KeptStacks {
            budget,
            bytes: 0,
            counts: HashMap::default(),
            let_go: Count::default(),
            let_go_stacks: 0,
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
        // A lookup by borrowed content would need the raw-entry API; the copy made for a miss
        // is the one kept, and a hit (the common case on a steady program) frees it at once.
        let key: Key = (s.thread, s.flags, frames.into());
        if let Some(kept) = self.counts.get_mut(&key) {
            kept.add(c);
            return;
        }
        self.bytes += bytes_of(&key);
        self.counts.insert(key, c);
        if self.bytes > self.budget {
            self.let_go_lightest();
        }
    }

    /// Lets the lightest stacks go until they take half the budget at most.
    fn let_go_lightest(&mut self) {
        let mut by_weight: Vec<(Count, usize, Key)> = self
            .counts
            .drain()
            .map(|(k, c)| (c, bytes_of(&k), k))
            .collect();
        by_weight.sort_by(|a, b| {
            b.0.weight_ns
                .cmp(&a.0.weight_ns)
                .then(b.0.samples.cmp(&a.0.samples))
        });
        self.bytes = 0;
        for (c, bytes, k) in by_weight {
            if self.bytes + bytes <= self.budget / 2 {
                self.bytes += bytes;
                self.counts.insert(k, c);
            } else {
                self.let_go.add(c);
                self.let_go_stacks += 1;
            }
        }
    }

    /// The kept stacks and their counts.
    pub fn iter(&self) -> impl Iterator<Item = (ThreadId, SampleFlags, &[FrameId], Count)> + '_ {
        self.counts
            .iter()
            .map(|((t, f, s), c)| (*t, *f, &s[..], *c))
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
}

fn bytes_of(key: &Key) -> usize {
    STACK_OVERHEAD + std::mem::size_of_val(&key.2[..])
}
