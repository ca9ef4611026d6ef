//! A small, fast, deterministic hasher for the interning tables.
//!
//! The keys are ids and short strings that we hash millions of times a second; SipHash (std's
//! default) costs several times more per byte and its random seed would make id assignment order
//! differ between runs. Flooding is not a concern: the worst a hostile target can do with crafted
//! names is slow its own profile down, and every table is bounded by what the walker can read.
//! The mixing step is the multiply-rotate scheme popularised by Firefox's "FxHash", with a
//! finaliser (see [`FxHasher::finish`]).

use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// Multiply-rotate hasher; see the module documentation.
#[derive(Default, Clone, Copy, Debug)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // Mix the length in so that "a\0" and "a" differ.
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.add(u64::from(i as u32));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // A multiply only carries entropy upwards, and names that differ in their last bytes
        // (`method_1`, `method_2`) then differ only in high bits. Fold them down with the
        // MurmurHash3 finaliser so both hashbrown's bucket bits (low) and tag bits (high) vary.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// `BuildHasher` for [`FxHasher`].
pub type FxBuild = BuildHasherDefault<FxHasher>;

/// Hashes a string (length-prefixed, so concatenations of different splits differ).
#[inline]
pub(crate) fn hash_str(h: &mut FxHasher, s: &str) {
    h.write_usize(s.len());
    h.write(s.as_bytes());
}

/// Hashes a slice of u32 ids two at a time.
#[inline]
pub(crate) fn hash_u32s(h: &mut FxHasher, ids: impl ExactSizeIterator<Item = u32>) {
    h.write_usize(ids.len());
    let mut pending: Option<u32> = None;
    for id in ids {
        match pending.take() {
            None => pending = Some(id),
            Some(lo) => h.add(u64::from(lo) | (u64::from(id) << 32)),
        }
    }
    if let Some(lo) = pending {
        h.add(u64::from(lo));
    }
}
