//! The walker's one error type.

use strobe_memory::MemError;

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
