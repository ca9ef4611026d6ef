//! Bounds on what the walker accepts from a target, and the checks of layout values against
//! them. Every count and length read from another process is held to one of these.

use crate::error::WalkError;

/// Most interpreters (main + sub-interpreters) we follow in one process.
pub const MAX_INTERPRETERS: usize = 1024;
/// Most thread states we follow in one interpreter.
pub const MAX_THREADS: usize = 4096;
/// Deepest stack we report; deeper stacks are cut and marked
/// [`ThreadStack::truncated`](crate::walk::ThreadStack::truncated).
pub const MAX_DEPTH: usize = 10_000;
/// Largest part of a data-stack chunk copied in one read (3.11+).
pub const MAX_CHUNK_COPY: usize = 1 << 20;
/// Largest line table (`co_lnotab` / `co_linetable` bytes) we read.
pub const MAX_LINETABLE_BYTES: usize = 1 << 20;
/// Largest fixed part of a code object / thread state / frame we accept from a layout.
pub(crate) const MAX_STRUCT: usize = 64 * 1024;

/// The offset `v` of a field the frame model needs, or an error naming it (`what`).
pub(crate) fn need(v: Option<u32>, what: &str) -> Result<u32, WalkError> {
    v.ok_or_else(|| {
        WalkError::Unsupported(format!(
            "the interpreter layout lacks {what}, which its frame model needs"
        ))
    })
}

/// A structure size from the layout, if it is plausible (1 to [`MAX_STRUCT`] bytes).
pub(crate) fn struct_len(len: u32, what: &str) -> Result<usize, WalkError> {
    let len = len as usize;
    if len == 0 || len > MAX_STRUCT {
        return Err(WalkError::Unsupported(format!(
            "the interpreter layout gives an implausible {what} size ({len} bytes)"
        )));
    }
    Ok(len)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_field_is_named_in_the_error() {
        assert_eq!(need(Some(24), "frame.f_back"), Ok(24));
        let err = need(None, "frame.f_back").unwrap_err();
        assert!(err.to_string().contains("frame.f_back"), "{err}");
        assert!(!err.is_transient());
    }

    #[test]
    fn struct_sizes_outside_one_to_max_are_refused() {
        assert!(struct_len(0, "frame").is_err());
        assert_eq!(struct_len(1, "frame"), Ok(1));
        assert_eq!(struct_len(MAX_STRUCT as u32, "frame"), Ok(MAX_STRUCT));
        let err = struct_len(MAX_STRUCT as u32 + 1, "code object").unwrap_err();
        assert!(err.to_string().contains("code object"), "{err}");
    }
}
