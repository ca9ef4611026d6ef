//! Walks CPython's interpreter structures in another process.
//!
//! The walker never does I/O itself: everything goes through [`RemoteMemory`], so the same code
//! runs on live processes and on synthetic memory images. It never branches on version
//! numbers, only on the named shapes of [`Layout`] (frame model, line table, string model...).
//!
//! [`Walker`] (module [`walk`]) is the entry point: give it the memory, the [`Layout`] the
//! `layout` module resolved and the [`Roots`] the locate step found, then call
//! [`Walker::sample_into`] once per sample (the allocation-free hot path, module [`sample`]) and
//! [`Walker::frame_info`] for frames not seen before, or [`Walker::walk`] for every thread's
//! stack with names resolved.

#![warn(missing_docs)]

pub mod debug_offsets;
pub mod layout;
pub mod linetable;
pub mod pthreads;
pub mod sample;
pub mod strings;
pub mod threadnames;
pub mod walk;

use strobe_memory::MemError;

pub use sample::{RawFrame, RawSample, RawThread};
pub use strobe_memory::RemoteMemory;
pub use strobe_python_abi::{Flavour, Layout, Version};
pub use walk::{PyFrame, Roots, ThreadStack, Walker};

/// Why a walk failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    /// Reading target memory failed.
    #[error(transparent)]
    Mem(#[from] MemError),
    /// A value read from the target is not plausible (a bound was exceeded, a kind is unknown,
    /// text does not decode). Usually the target changed while we read it: retry next sample.
    #[error("implausible {what} at {addr:#x}")]
    Corrupt {
        /// What was being decoded.
        what: &'static str,
        /// Where.
        addr: u64,
    },
    /// A linked list read from the target loops back on itself or exceeds its bound.
    #[error("{what} list does not end (cycle or more than {limit} entries)")]
    Unbounded {
        /// Which list.
        what: &'static str,
        /// The bound.
        limit: usize,
    },
    /// The interpreter's layout is not supported (unknown version, invalid debug offsets).
    #[error("{0}")]
    Unsupported(String),
}

impl WalkError {
    /// Whether the next sample may succeed (the target was changing under us).
    pub fn is_transient(&self) -> bool {
        match self {
            WalkError::Mem(e) => e.is_transient(),
            WalkError::Corrupt { .. } | WalkError::Unbounded { .. } => true,
            WalkError::Unsupported(_) => false,
        }
    }
}
