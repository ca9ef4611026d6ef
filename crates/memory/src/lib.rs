//! The [`RemoteMemory`] trait, its typed error [`MemError`], and little-endian decoding ([`le`]).
//!
//! Everything strobe reads from a target goes through this trait: a live process
//! (`strobe-remote`), a synthetic image in tests (`strobe-testkit`), later a core file. The crate
//! has no system dependencies, so the walker, which does no I/O, does not pull any in.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Why a read of target memory failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemError {
    /// The address range is not mapped (or only partly) in the target.
    #[error("address {addr:#x} (+{len} bytes) is not readable in the target")]
    Fault {
        /// Start of the failed read.
        addr: u64,
        /// Length of the failed read.
        len: usize,
    },
    /// The kernel refused access to the process.
    #[error(
        "permission denied reading process {pid}: run strobe as root, or grant it CAP_SYS_PTRACE \
         (sudo setcap cap_sys_ptrace+ep $(which strobe)); if the target is your own process, check \
         /proc/sys/kernel/yama/ptrace_scope (0 allows reading your own processes); in a container \
         add --cap-add SYS_PTRACE"
    )]
    PermissionDenied {
        /// The target process.
        pid: i32,
    },
    /// The process no longer exists.
    #[error("process {pid} exited")]
    ProcessGone {
        /// The target process.
        pid: i32,
    },
    /// A read was refused before it was made because a length or count read from the target
    /// was out of bounds.
    #[error("refusing to read {len} bytes at {addr:#x}: larger than the {limit}-byte bound")]
    TooLarge {
        /// Start of the refused read.
        addr: u64,
        /// Requested length.
        len: usize,
        /// The bound it broke.
        limit: usize,
    },
    /// Any other operating-system error.
    #[error("reading {len} bytes at {addr:#x} failed: {errno}")]
    Os {
        /// Start of the failed read.
        addr: u64,
        /// Length of the failed read.
        len: usize,
        /// The OS error number.
        errno: i32,
    },
}

impl MemError {
    /// Whether the same read may succeed on a later sample (the target changed under us),
    /// as opposed to errors that end the run (process gone, permission denied).
    pub fn is_transient(&self) -> bool {
        matches!(self, MemError::Fault { .. } | MemError::TooLarge { .. })
    }
}

/// Read-only access to a target's address space.
///
/// Implementations fill `buf` completely or fail; partial reads are failures. Everything
/// else (integers, pointers, bounded vectors) is decoded explicitly from bytes by the
/// provided methods, little-endian, never by reinterpreting memory as Rust structs.
pub trait RemoteMemory {
    /// Fill `buf` with the bytes at `addr` in the target.
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError>;

    /// Fill `buf` with the bytes of several ranges of the target, in one go where the
    /// implementation can (a live process: one `process_vm_readv` per 1024 ranges).
    ///
    /// `reqs` are `(address, length)` pairs; the bytes of the first land at the start of
    /// `buf`, each next one's directly after the previous one's, so `buf` must be exactly as
    /// long as the lengths together. All or nothing: on error, the error names the first range
    /// that could not be filled, and `buf`'s contents are unspecified. The provided version
    /// reads the ranges one by one.
    fn read_batch(&self, reqs: &[(u64, usize)], buf: &mut [u8]) -> Result<(), MemError> {
        let mut rest = buf;
        for &(addr, len) in reqs {
            let (head, tail) = split_request(std::mem::take(&mut rest), addr, len)?;
            self.read_into(addr, head)?;
            rest = tail;
        }
        Ok(())
    }

    /// Read `len` bytes, refusing lengths above `limit` before touching the target.
    fn read_vec(&self, addr: u64, len: usize, limit: usize) -> Result<Vec<u8>, MemError> {
        if len > limit {
            return Err(MemError::TooLarge { addr, len, limit });
        }
        let mut buf = vec![0u8; len];
        self.read_into(addr, &mut buf)?;
        Ok(buf)
    }

    /// Read a little-endian `u64` (also used for pointers).
    fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read_into(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Read a little-endian `u32`.
    fn read_u32(&self, addr: u64) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read_into(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Read a little-endian `i32`.
    fn read_i32(&self, addr: u64) -> Result<i32, MemError> {
        let mut b = [0u8; 4];
        self.read_into(addr, &mut b)?;
        Ok(i32::from_le_bytes(b))
    }

    /// Read one byte.
    fn read_u8(&self, addr: u64) -> Result<u8, MemError> {
        let mut b = [0u8; 1];
        self.read_into(addr, &mut b)?;
        Ok(b[0])
    }
}

impl<T: RemoteMemory + ?Sized> RemoteMemory for &T {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        (**self).read_into(addr, buf)
    }

    fn read_batch(&self, reqs: &[(u64, usize)], buf: &mut [u8]) -> Result<(), MemError> {
        (**self).read_batch(reqs, buf)
    }
}

/// Split the first `len` bytes off `buf` for the request at `addr`; a `buf` too short for the
/// requests is refused like an oversized read.
fn split_request(
    buf: &mut [u8],
    addr: u64,
    len: usize,
) -> Result<(&mut [u8], &mut [u8]), MemError> {
    if len > buf.len() {
        return Err(MemError::TooLarge {
            addr,
            len,
            limit: buf.len(),
        });
    }
    Ok(buf.split_at_mut(len))
}

/// Little-endian field decoding from a buffer already copied out of the target.
///
/// Out-of-range offsets decode as `None` instead of panicking: a struct copy may be shorter
/// than a corrupted offset claims.
pub mod le {
    /// `u64` at `off`.
    pub fn u64_at(buf: &[u8], off: usize) -> Option<u64> {
        let b = buf.get(off..off.checked_add(8)?)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }
    /// `u32` at `off`.
    pub fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
        let b = buf.get(off..off.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }
    /// `i32` at `off`.
    pub fn i32_at(buf: &[u8], off: usize) -> Option<i32> {
        let b = buf.get(off..off.checked_add(4)?)?;
        Some(i32::from_le_bytes(b.try_into().ok()?))
    }
    /// `u16` at `off`.
    pub fn u16_at(buf: &[u8], off: usize) -> Option<u16> {
        let b = buf.get(off..off.checked_add(2)?)?;
        Some(u16::from_le_bytes(b.try_into().ok()?))
    }
    /// `u8` at `off`.
    pub fn u8_at(buf: &[u8], off: usize) -> Option<u8> {
        buf.get(off).copied()
    }
}
