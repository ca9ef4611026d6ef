//! [`Ring`]: a perf event's control page and ring buffer, mapped; shared by
//! [`super::PerfThread`] (drained, writable), `crate::SwitchWatch` and `crate::PreemptWatch`
//! (read-only: the kernel overwrites the oldest records).

use super::{page_size, PerfError, PAGE_DATA_OFFSET, PAGE_DATA_SIZE};
use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Ring {
    /// The whole mapping: the control page, then the data pages.
    map: *mut u8,
    map_len: usize,
    data_offset: usize,
    data_size: usize,
}

// SAFETY: the mapping is owned by this value alone (nothing else holds `map`), and the kernel
// synchronises with us only through the atomics of the control page and the records we read
// as atomics (or, for a drained ring, records it does not touch until we release them), so
// moving the value to another thread is as safe as using it on this one.
#[allow(unsafe_code)]
unsafe impl Send for Ring {}

impl Ring {
    /// Map event `fd`'s control page and `data_pages` pages of ring (a power of two), shared;
    /// `writable` when we publish `data_tail` (a drained ring), else read-only, which makes the
    /// ring one the kernel overwrites (the newest records are kept).
    pub(crate) fn map(fd: &OwnedFd, data_pages: usize, writable: bool) -> Result<Ring, PerfError> {
        if !data_pages.is_power_of_two() {
            return Err(PerfError::Config(
                "the ring buffer must be a power of two pages",
            ));
        }
        let page = page_size();
        let map_len = page * (data_pages + 1);
        let map = map_ring(fd, map_len, writable).map_err(|errno| PerfError::Mmap {
            kib: map_len / 1024,
            errno,
        })?;
        let mut ring = Ring {
            map,
            map_len,
            data_offset: page,
            data_size: page * data_pages,
        };
        if let Some((offset, size)) = data_area(
            ring.control(PAGE_DATA_OFFSET),
            ring.control(PAGE_DATA_SIZE),
            map_len,
        )? {
            ring.data_offset = offset;
            ring.data_size = size;
        }
        Ok(ring)
    }

    /// The data area's length in bytes (a power of two).
    pub(crate) fn data_size(&self) -> usize {
        self.data_size
    }

    /// Where ring position `pos` (a count of bytes written, as `data_head` and `data_tail`
    /// are) falls in the data area: a mask, the size being a power of two (a `%` by a size
    /// not known at compile time is a division, once per word read while draining).
    pub(crate) fn offset_of(&self, pos: u64) -> usize {
        (pos & (self.data_size as u64 - 1)) as usize
    }

    /// A `u64` field of the control page, as the atomic the kernel treats it as.
    #[allow(unsafe_code)]
    pub(crate) fn control(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset & 7 == 0 && offset + 8 <= page_size());
        // SAFETY: the control page is the first page of our mapping (page-aligned, so the
        // 8-aligned offset is aligned for `AtomicU64`), and lives until `drop`. The kernel
        // updates these fields concurrently, which is why they are only accessed atomically.
        unsafe { &*self.map.add(offset).cast::<AtomicU64>() }
    }

    /// The 8 bytes at `at` in the data area, as an atomic (the kernel may overwrite them).
    #[allow(unsafe_code)]
    pub(crate) fn word(&self, at: usize) -> &AtomicU64 {
        assert!(
            at.is_multiple_of(8) && at + 8 <= self.data_size,
            "word outside the ring"
        );
        // SAFETY: `data_offset + data_size <= map_len` and `data_offset % 8 == 0` (checked in
        // `map`, the mapping is page-aligned), and the assertion keeps the 8 aligned bytes
        // inside the data area of our live mapping (unmapped only in `drop`, which needs
        // `&mut self`). The kernel writes there concurrently; reading as an atomic makes that
        // a race on values, not undefined behaviour, and the callers discard torn reads.
        unsafe { &*self.map.add(self.data_offset + at).cast::<AtomicU64>() }
    }

    /// The data area's bytes `off..off + len`.
    ///
    /// # Safety
    /// The kernel must not write these bytes while the borrow lives: they are published
    /// records of a drained ring that our `data_tail` has not passed yet.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn span(&self, off: usize, len: usize) -> &[u8] {
        assert!(
            off.checked_add(len)
                .is_some_and(|end| end <= self.data_size),
            "ring span out of range"
        );
        // SAFETY: `data_offset + data_size <= map_len` (checked in `map`), and the assertion
        // keeps `off + len` inside the data area, so the range is inside our live mapping
        // (unmapped only in `drop`, which needs `&mut self`, so not while this borrow lives);
        // the caller promises the kernel leaves the bytes alone meanwhile.
        unsafe { std::slice::from_raw_parts(self.map.add(self.data_offset + off), len) }
    }
}

impl Drop for Ring {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: `map` and `map_len` are exactly what mmap returned in `map`, unmapped once
        // here; no borrow of the mapping outlives `&self` methods, so none is live now.
        unsafe {
            nix::libc::munmap(self.map.cast(), self.map_len);
        }
    }
}

/// Where the ring's data area is, from the control page's `data_offset` and `data_size`:
/// `None` on kernels before 4.1, which leave them 0 and put the data right after the page.
/// Checked to lie inside the `map_len` bytes mapped, 8-aligned, and a power of two long.
fn data_area(
    offset: &AtomicU64,
    size: &AtomicU64,
    map_len: usize,
) -> Result<Option<(usize, usize)>, PerfError> {
    let (offset, size) = (offset.load(Ordering::Relaxed), size.load(Ordering::Relaxed));
    if size == 0 {
        return Ok(None);
    }
    let impossible = PerfError::Config("the kernel reported an impossible ring");
    let (Ok(offset), Ok(size)) = (usize::try_from(offset), usize::try_from(size)) else {
        return Err(impossible);
    };
    if offset.checked_add(size).is_none_or(|end| end > map_len)
        || !size.is_power_of_two()
        || !offset.is_multiple_of(8)
    {
        return Err(impossible);
    }
    Ok(Some((offset, size)))
}

/// Map the event's control page and ring, shared.
#[allow(unsafe_code)]
fn map_ring(fd: &OwnedFd, len: usize, writable: bool) -> Result<*mut u8, Errno> {
    let prot = if writable {
        nix::libc::PROT_READ | nix::libc::PROT_WRITE
    } else {
        nix::libc::PROT_READ
    };
    // SAFETY: a fresh shared mapping of the perf fd at a kernel-chosen address: it overlaps
    // nothing of ours, and the pointer is only used within `len` (see `span`, `control`,
    // `word`).
    let p = unsafe {
        nix::libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            nix::libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == nix::libc::MAP_FAILED {
        return Err(Errno::last());
    }
    Ok(p.cast())
}
