//! [`SharedBytes`]: a binary file mapped read-only (or bytes we own), shareable and sliceable,
//! so that unwind tables and DWARF are read in place instead of copied.
//!
//! # Truncation (SIGBUS)
//! Touching a page of a mapping past the end of its file raises SIGBUS, which would kill
//! strobe. What guards against it:
//! - the file's size is taken when it is mapped and every section or segment range is checked
//!   against it before use (callers slice through [`SharedBytes::slice`], which refuses ranges
//!   past the end);
//! - the files mapped are binaries that a running process has mapped too. Package managers and
//!   linkers replace them by writing a new file and renaming it over the old one: the old inode,
//!   and so our mapping, stays intact. An executable being run cannot be opened for writing at
//!   all (`ETXTBSY`);
//! - callers check the file's build-id against the image in the target's memory, so a replaced
//!   file is not used.
//!
//! The residual risk is a shared library truncated *in place* (`truncate`, `>` in a shell)
//! while strobe reads it. That also crashes the target the next time it touches the lost pages,
//! so it is not a state a profiled program survives; we accept it rather than copy every
//! section out (tens of megabytes of DWARF for libpython).

use memmap2::{Mmap, MmapOptions};
use std::fs::File;
use std::ops::{Deref, Range};
use std::sync::Arc;

enum Backing {
    Mapped(Mmap),
    Owned(Box<[u8]>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Owned(b) => b,
        }
    }
}

/// Bytes of a mapped file (or an owned buffer, e.g. a decompressed section), cheap to clone
/// and to slice: clones share the mapping, which is unmapped when the last one is dropped.
///
/// It dereferences to the same address for as long as it lives (and so do its clones), which
/// makes it usable as a `gimli` reader's storage (`gimli::EndianReader`).
#[derive(Clone)]
pub struct SharedBytes {
    backing: Arc<Backing>,
    range: Range<usize>,
}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match *self.backing {
            Backing::Mapped(_) => "mapped",
            Backing::Owned(_) => "owned",
        };
        write!(f, "SharedBytes({kind}, {:?})", self.range)
    }
}

impl SharedBytes {
    /// Map all of `file` read-only and private. An empty file gives empty bytes (mapping zero
    /// bytes is an error for the kernel).
    #[allow(unsafe_code)]
    pub fn map_file(file: &File) -> std::io::Result<SharedBytes> {
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(SharedBytes::from_vec(Vec::new()));
        }
        let len = usize::try_from(len)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "file too large"))?;
        // SAFETY: `Mmap` is only unsound if the file changes under the mapping: a write shows up
        // in our bytes (we only ever read them and validate what we decode, so changed bytes are
        // wrong data, not undefined behaviour of our code) and a truncation raises SIGBUS. The
        // module comment explains why binaries mapped by a running target are not truncated in
        // place, and that callers refuse a file whose build-id differs from the target's image.
        // The length is the size we just measured, so no range we hand out starts past it.
        let map = unsafe { MmapOptions::new().len(len).map_copy_read_only(file)? };
        Ok(SharedBytes {
            backing: Arc::new(Backing::Mapped(map)),
            range: 0..len,
        })
    }

    /// Own `bytes` (a decompressed section, an image copied out of the target's memory).
    pub fn from_vec(bytes: Vec<u8>) -> SharedBytes {
        let len = bytes.len();
        SharedBytes {
            backing: Arc::new(Backing::Owned(bytes.into_boxed_slice())),
            range: 0..len,
        }
    }

    /// The bytes at `range` of these bytes, sharing the same storage; `None` if the range is
    /// not inside them.
    pub fn slice(&self, range: Range<usize>) -> Option<SharedBytes> {
        if range.start > range.end || range.end > self.range.len() {
            return None;
        }
        Some(SharedBytes {
            backing: Arc::clone(&self.backing),
            range: self.range.start + range.start..self.range.start + range.end,
        })
    }

    /// Whether the bytes come from a file mapping (as opposed to memory we own).
    pub fn is_mapped(&self) -> bool {
        matches!(*self.backing, Backing::Mapped(_))
    }
}

impl Default for SharedBytes {
    /// No bytes.
    fn default() -> Self {
        SharedBytes::from_vec(Vec::new())
    }
}

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // `range` is inside the backing by construction (checked in `slice`).
        self.backing.bytes().get(self.range.clone()).unwrap_or(&[])
    }
}

// SAFETY: the bytes live in a file mapping or a boxed slice owned by the `Arc`, never in the
// `SharedBytes` value itself, and neither is ever moved, resized or unmapped while an `Arc`
// to it exists. So `deref` returns the same address however the value is moved.
#[allow(unsafe_code)]
unsafe impl stable_deref_trait::StableDeref for SharedBytes {}

// SAFETY: a clone shares the same `Arc` and range, so it dereferences to the same address as
// the original, for as long as either lives.
#[allow(unsafe_code)]
unsafe impl stable_deref_trait::CloneStableDeref for SharedBytes {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_slices_and_refuses_ranges_past_the_end() {
        let path = std::env::temp_dir().join(format!("strobe-map-{}", std::process::id()));
        let mut f = File::create(&path).unwrap();
        f.write_all(b"0123456789").unwrap();
        drop(f);
        let bytes = SharedBytes::map_file(&File::open(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(bytes.is_mapped());
        assert_eq!(&*bytes, b"0123456789");
        let mid = bytes.slice(2..6).unwrap();
        assert_eq!(&*mid, b"2345");
        assert_eq!(&*mid.slice(1..3).unwrap(), b"34");
        assert!(mid.slice(3..5).is_none());
        assert!(bytes.slice(0..11).is_none());
        let clone = mid.clone();
        assert_eq!(clone.as_ptr(), mid.as_ptr());
        drop(bytes);
        assert_eq!(&*clone, b"2345", "slices keep the mapping alive");
    }

    #[test]
    fn empty_files_and_owned_bytes() {
        let path = std::env::temp_dir().join(format!("strobe-map-empty-{}", std::process::id()));
        File::create(&path).unwrap();
        let bytes = SharedBytes::map_file(&File::open(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(bytes.is_empty());
        let owned = SharedBytes::from_vec(vec![1, 2, 3]);
        assert!(!owned.is_mapped());
        assert_eq!(&*owned.slice(1..3).unwrap(), &[2, 3]);
    }
}
