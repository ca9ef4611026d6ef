//! The hasher of the interning tables: `rustc-hash`'s `FxHasher`, and how our keys are fed to it.
//!
//! The keys are ids and short strings that we hash millions of times a second; SipHash (std's
//! default) costs several times more per byte and its random seed would make table layouts
//! differ between runs. Flooding is not a concern: the worst a hostile target can do with crafted
//! names is slow its own profile down, and every table is bounded by what the walker can read.

use std::hash::Hasher;

/// The `BuildHasher` of every hash map keyed by ids or names, in this crate and the sampler.
pub use rustc_hash::FxBuildHasher as FxBuild;
pub use rustc_hash::FxHasher;

/// Hashes a string (length-prefixed, so concatenations of different splits differ).
#[inline]
pub(crate) fn hash_str(h: &mut FxHasher, s: &str) {
    h.write_usize(s.len());
    h.write(s.as_bytes());
}

/// Hashes a slice of u32 ids two at a time (one multiply per pair instead of per id).
#[inline]
pub(crate) fn hash_u32s(h: &mut FxHasher, ids: impl ExactSizeIterator<Item = u32>) {
    h.write_usize(ids.len());
    let mut pending: Option<u32> = None;
    for id in ids {
        match pending.take() {
            None => pending = Some(id),
            Some(lo) => h.write_u64(u64::from(lo) | (u64::from(id) << 32)),
        }
    }
    if let Some(lo) = pending {
        h.write_u32(lo);
    }
}
