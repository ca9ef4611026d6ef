//! [`ProcessMemory`]: reading a live process with `process_vm_readv(2)`.

use crate::error::RemoteError;
use crate::procfs;
use nix::errno::Errno;
use std::cell::RefCell;
use strobe_memory::{MemError, RemoteMemory};

/// `UIO_MAXIOV` (`include/uapi/linux/uio.h`): the most iovecs one call accepts on each side.
const MAX_IOVECS: usize = 1024;

/// A live process's memory, read with `process_vm_readv(2)`.
///
/// The target keeps running while we read (unless frozen with [`crate::Freeze`]), so what a
/// sequence of reads returns need not be consistent; callers validate what they decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessMemory {
    pid: i32,
}

impl ProcessMemory {
    /// A reader for `pid`, without checking anything; reads report what goes wrong.
    pub fn new(pid: i32) -> Self {
        ProcessMemory { pid }
    }

    /// A reader for `pid`, after checking that the process exists and that we may read it
    /// (one real read of its first readable mapping), so that the user gets the
    /// "no process" / "permission denied" message up front instead of at the first sample.
    pub fn open(pid: i32) -> Result<Self, RemoteError> {
        Self::open_with_maps(pid).map(|(mem, _)| mem)
    }

    /// [`ProcessMemory::open`], also returning the text of `/proc/PID/maps` it read to find a
    /// readable address, so that a caller that needs the maps too (attaching: finding the
    /// interpreter) does not read them a second time.
    pub fn open_with_maps(pid: i32) -> Result<(Self, String), RemoteError> {
        if !procfs::exists(pid) {
            return Err(RemoteError::NoSuchProcess { pid });
        }
        let mem = ProcessMemory { pid };
        // Reading /proc/PID/maps needs the same ptrace-read access as process_vm_readv, so a
        // refusal here is already the answer.
        let maps_path = procfs::proc_dir(pid).join("maps");
        let maps = std::fs::read_to_string(&maps_path)
            .map_err(|e| RemoteError::from_proc_io(pid, maps_path, e))?;
        let Some(addr) = first_readable_address(&maps) else {
            // No user mappings: a kernel thread or a zombie. Nothing to read, but nothing
            // refused either; callers that care check procfs::is_kernel_thread / is_zombie.
            return Ok((mem, maps));
        };
        let mut probe = [0u8; 1];
        match mem.read_into(addr, &mut probe) {
            Ok(()) | Err(MemError::Fault { .. }) => Ok((mem, maps)),
            Err(MemError::PermissionDenied { pid }) => Err(RemoteError::PermissionDenied { pid }),
            Err(MemError::ProcessGone { pid }) => Err(RemoteError::ProcessGone { pid }),
            Err(e) => Err(e.into()),
        }
    }

    /// The target process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// One `process_vm_readv` of at most [`MAX_IOVECS`] ranges: `local[i]` is filled from
    /// `remote[i]`; both describe the same lengths. On a short transfer, the error names the
    /// remote range the transfer stopped in.
    ///
    /// Every `local` entry must point at memory that is writable for its length and not used
    /// in any other way until this returns (all callers build them from `&mut` buffers they
    /// hold for the duration of the call).
    #[allow(unsafe_code)]
    fn readv(
        &self,
        local: &[nix::libc::iovec],
        remote: &[nix::libc::iovec],
    ) -> Result<(), MemError> {
        debug_assert_eq!(local.len(), remote.len());
        debug_assert!(local.len() <= MAX_IOVECS);
        let wanted: usize = remote.iter().map(|r| r.iov_len).sum();
        let first = remote
            .first()
            .map_or((0, 0), |r| (r.iov_base as u64, r.iov_len));
        // SAFETY: `local` and `remote` are valid arrays of `len()` iovecs each (at most
        // UIO_MAXIOV). Each local iovec points at a writable buffer of its length that the
        // caller holds exclusively for this call (see the doc comment), and the kernel writes
        // at most `iov_len` bytes into each. Remote iovecs are only addresses in the target,
        // which the kernel validates; nothing in our address space is read through them.
        let got = unsafe {
            nix::libc::process_vm_readv(
                self.pid,
                local.as_ptr(),
                local.len() as nix::libc::c_ulong,
                remote.as_ptr(),
                remote.len() as nix::libc::c_ulong,
                0,
            )
        };
        if got < 0 {
            // The kernel reports an error only when nothing at all was transferred, i.e. the
            // first range failed.
            return Err(self.map_errno(Errno::last(), first.0, first.1));
        }
        let got = got as usize;
        if got == wanted {
            return Ok(());
        }
        // Short read: find the range the transfer stopped in.
        let mut done = 0usize;
        for r in remote {
            if done + r.iov_len > got {
                return Err(MemError::Fault {
                    addr: r.iov_base as u64,
                    len: r.iov_len,
                });
            }
            done += r.iov_len;
        }
        Err(MemError::Fault {
            addr: first.0,
            len: wanted,
        })
    }

    fn map_errno(&self, errno: Errno, addr: u64, len: usize) -> MemError {
        match errno {
            Errno::EFAULT | Errno::EIO => MemError::Fault { addr, len },
            Errno::EPERM | Errno::EACCES => MemError::PermissionDenied { pid: self.pid },
            Errno::ESRCH => MemError::ProcessGone { pid: self.pid },
            other => MemError::Os {
                addr,
                len,
                errno: other as i32,
            },
        }
    }
}

/// A local iovec for `len` bytes at `ptr`.
fn iovec(ptr: *mut u8, len: usize) -> nix::libc::iovec {
    nix::libc::iovec {
        iov_base: ptr.cast(),
        iov_len: len,
    }
}

/// A remote iovec: an address in the target, never dereferenced here.
fn remote_iovec(addr: u64, len: usize) -> Result<nix::libc::iovec, MemError> {
    let base = usize::try_from(addr).map_err(|_| MemError::Fault { addr, len })?;
    Ok(iovec(std::ptr::without_provenance_mut(base), len))
}

/// Buffers [`ProcessMemory::read_batch`] reuses from call to call on each thread, so that a
/// sample allocates nothing in steady state.
#[derive(Default)]
struct BatchScratch {
    /// How the last two distinct request lists were sorted and merged: a sampler sends the
    /// same list (or alternates between two) sample after sample, and sorting hundreds of
    /// ranges (one per frame object, ≤3.10) costs more than comparing the list.
    plans: [MergePlan; 2],
    /// Which of `plans` was used last.
    last: usize,
    /// Where each request's bytes go in the caller's buffer.
    offsets: Vec<usize>,
    /// Bytes of merged ranges holding more than one request, scattered afterwards.
    copy: Vec<u8>,
    local: Vec<nix::libc::iovec>,
    remote: Vec<nix::libc::iovec>,
}

/// One request list, sorted and merged.
#[derive(Default)]
struct MergePlan {
    /// The requests as the caller gave them.
    reqs: Vec<(u64, usize)>,
    /// Requests by address: (address, length, index in the caller's list).
    order: Vec<(u64, usize, usize)>,
    /// Merged ranges: (address, length, how many requests).
    merged: Vec<(u64, u64, usize)>,
}

impl MergePlan {
    fn make(&mut self, reqs: &[(u64, usize)]) {
        self.reqs.clear();
        self.reqs.extend_from_slice(reqs);
        self.order.clear();
        for (i, &(addr, len)) in reqs.iter().enumerate() {
            if len > 0 {
                self.order.push((addr, len, i));
            }
        }
        self.order.sort_unstable_by_key(|r| r.0);
        coalesce_into(&self.order, &mut self.merged);
    }
}

thread_local! {
    static SCRATCH: RefCell<BatchScratch> = RefCell::new(BatchScratch::default());
}

impl RemoteMemory for ProcessMemory {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        if buf.is_empty() {
            return Ok(());
        }
        let local = [iovec(buf.as_mut_ptr(), buf.len())];
        let remote = [remote_iovec(addr, buf.len())?];
        self.readv(&local, &remote)
    }

    /// Requests that share or touch neighbouring pages are merged into one iovec first: the
    /// kernel charges about as much per iovec as for one and a half extra pages copied, and
    /// every page of a merged range is a page one of its requests reads anyway, so merging
    /// never reads a page that was not asked for. A failure names the merged range: the address
    /// of its first request and a length covering all of them. No allocation in steady state:
    /// the working lists are kept per thread.
    fn read_batch(&self, reqs: &[(u64, usize)], buf: &mut [u8]) -> Result<(), MemError> {
        let total: usize = reqs.iter().map(|r| r.1).sum();
        if total != buf.len() {
            let (addr, len) = reqs.first().copied().unwrap_or((0, total));
            return Err(MemError::TooLarge {
                addr,
                len,
                limit: buf.len(),
            });
        }
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.read_batch_with(&mut scratch, reqs, buf),
            // Re-entered on this thread (cannot happen today): use fresh buffers.
            Err(_) => self.read_batch_with(&mut BatchScratch::default(), reqs, buf),
        })
    }
}

impl ProcessMemory {
    fn read_batch_with(
        &self,
        s: &mut BatchScratch,
        reqs: &[(u64, usize)],
        buf: &mut [u8],
    ) -> Result<(), MemError> {
        s.offsets.clear();
        let mut at = 0usize;
        for &(_, len) in reqs {
            s.offsets.push(at);
            at += len;
        }
        let k = if s.plans[s.last].reqs == reqs {
            s.last
        } else if s.plans[1 - s.last].reqs == reqs {
            1 - s.last
        } else {
            let k = 1 - s.last;
            s.plans[k].make(reqs);
            k
        };
        s.last = k;
        let BatchScratch {
            plans,
            offsets,
            copy,
            local,
            remote,
            ..
        } = s;
        let MergePlan { order, merged, .. } = &plans[k];
        let copy_len: usize = merged
            .iter()
            .filter(|m| m.2 > 1)
            .map(|m| m.1 as usize)
            .sum();
        if copy.len() < copy_len {
            copy.resize(copy_len, 0);
        }
        // All destination pointers derive from these two, which stay exclusively borrowed
        // until the reads are done; the ranges they describe do not overlap (each request
        // owns its own part of `buf`, each merged copy its own part of `copy`).
        let buf_base = buf.as_mut_ptr();
        let copy_base = copy.as_mut_ptr();
        let mut first = 0;
        let mut spare = 0usize;
        let mut m = 0;
        while m < merged.len() {
            local.clear();
            remote.clear();
            while m < merged.len() && local.len() < MAX_IOVECS {
                let (addr, len, count) = merged[m];
                let len = len as usize;
                let dest = if count == 1 {
                    let (_, _, to) = order[first];
                    buf_base.wrapping_add(offsets[to])
                } else {
                    let p = copy_base.wrapping_add(spare);
                    spare += len;
                    p
                };
                local.push(iovec(dest, len));
                remote.push(remote_iovec(addr, len)?);
                first += count;
                m += 1;
            }
            self.readv(local, remote)?;
        }
        // Scatter the merged copies back to each request's place.
        let mut base = 0usize;
        let mut first = 0;
        for &(start, len, count) in merged {
            if count > 1 {
                for &(addr, rlen, to) in &order[first..first + count] {
                    let from = base + (addr - start) as usize;
                    let dest = offsets[to];
                    buf[dest..dest + rlen].copy_from_slice(&copy[from..from + rlen]);
                }
                base += len as usize;
            }
            first += count;
        }
        Ok(())
    }
}

/// The ranges `(address, length)` [`ProcessMemory::read_batch`] reads for `reqs`, one iovec
/// each, after merging requests on shared or neighbouring pages (for callers that report what
/// a batch costs).
pub fn merged_ranges(reqs: &[(u64, usize)]) -> Vec<(u64, u64)> {
    let mut plan = MergePlan::default();
    plan.make(reqs);
    plan.merged
        .iter()
        .map(|&(addr, len, _)| (addr, len))
        .collect()
}

/// Page size for merging reads: mappings begin and end on (at least) 4 KiB boundaries.
const PAGE: u64 = 4096;

/// Merge `(addr, len, _)` requests sorted by address into `(addr, len, count)` ranges in
/// `out`, joining a request to the range before it when no page lies between them that neither
/// touches.
fn coalesce_into(sorted: &[(u64, usize, usize)], out: &mut Vec<(u64, u64, usize)>) {
    out.clear();
    for &(addr, len, _) in sorted {
        let end = addr.saturating_add(len as u64);
        match out.last_mut() {
            Some((start, mlen, count)) if addr / PAGE <= (*start + *mlen - 1) / PAGE + 1 => {
                *mlen = (*mlen).max(end - *start);
                *count += 1;
            }
            _ => out.push((addr, end - addr, 1)),
        }
    }
}

/// The start of the first mapping with read permission in a `/proc/PID/maps` text.
fn first_readable_address(maps: &str) -> Option<u64> {
    maps.lines().find_map(|line| {
        let mut fields = line.split_ascii_whitespace();
        let range = fields.next()?;
        let perms = fields.next()?;
        if !perms.starts_with('r') {
            return None;
        }
        let (start, _) = range.split_once('-')?;
        u64::from_str_radix(start, 16).ok()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn me() -> ProcessMemory {
        ProcessMemory::open(std::process::id() as i32).unwrap()
    }

    #[test]
    fn reads_own_memory() {
        let data: Vec<u8> = (0..=255u8).collect();
        let mut buf = vec![0u8; 256];
        me().read_into(data.as_ptr() as u64, &mut buf).unwrap();
        assert_eq!(buf, data);
        let word = 0x1122_3344_5566_7788u64;
        assert_eq!(me().read_u64(&word as *const u64 as u64).unwrap(), word);
    }

    /// Reads `reqs` with `read_batch` and returns each request's bytes.
    fn batch(reqs: &[(u64, usize)]) -> Result<Vec<Vec<u8>>, MemError> {
        let mut buf = vec![0u8; reqs.iter().map(|r| r.1).sum()];
        me().read_batch(reqs, &mut buf)?;
        let mut at = 0;
        Ok(reqs
            .iter()
            .map(|&(_, len)| {
                at += len;
                buf[at - len..at].to_vec()
            })
            .collect())
    }

    #[test]
    fn read_batch_fills_every_request_from_stack_and_heap() {
        let a = *b"first buffer";
        let b = [7u32; 100];
        let c = String::from("third, on the heap");
        let got = batch(&[
            (a.as_ptr() as u64, a.len()),
            (b.as_ptr() as u64, 400),
            (c.as_ptr() as u64, c.len()),
        ])
        .unwrap();
        assert_eq!(got[0], a);
        assert_eq!(
            got[1],
            b.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>()
        );
        assert_eq!(got[2], c.as_bytes());
    }

    #[test]
    fn read_batch_handles_more_ranges_than_one_call_takes() {
        // 1,100 bytes each on its own page with an untouched page between: no two merge, so
        // the batch needs more iovecs than one call accepts.
        let n = MAX_IOVECS + 76;
        let data: Vec<u8> = (0..n * 2 * PAGE as usize)
            .map(|i| (i / (2 * PAGE as usize) % 251) as u8)
            .collect();
        let reqs: Vec<(u64, usize)> = (0..n)
            .map(|i| (data.as_ptr() as u64 + (i * 2) as u64 * PAGE, 1))
            .collect();
        let got = batch(&reqs).unwrap();
        for (i, bytes) in got.iter().enumerate() {
            assert_eq!(bytes[..], [(i % 251) as u8], "range {i}");
        }
    }

    #[test]
    fn read_batch_merges_scatters_and_reuses_its_buffers() {
        let data: Vec<u8> = (0..5 * 4096u32).map(|i| (i * 7 % 251) as u8).collect();
        let base = data.as_ptr() as u64;
        // Same page (merged), overlapping, empty, far apart, and out of address order.
        let shapes: [&[(u64, usize)]; 3] = [
            &[
                (base + 4096 * 4, 100),
                (base + 10, 8),
                (base + 12, 30),
                (base, 0),
                (base + 2000, 3000),
            ],
            &[(base + 1, 1)],
            &[
                (base + 8192, 4096),
                (base + 100, 64),
                (base + 9000, 16),
                (base + 100, 64),
            ],
        ];
        // Repeats and alternations (plans reused from the cache) as well as three in turn
        // (every plan made anew).
        let order = [0, 0, 2, 0, 2, 2, 1, 0, 1, 2, 0, 1];
        for reqs in order.iter().map(|&i| shapes[i]) {
            let total = reqs.iter().map(|r| r.1).sum();
            let mut buf = vec![0u8; total];
            me().read_batch(reqs, &mut buf).unwrap();
            let mut at = 0;
            for &(addr, len) in reqs {
                let from = (addr - base) as usize;
                assert_eq!(
                    &buf[at..at + len],
                    &data[from..from + len],
                    "{addr:#x}+{len}"
                );
                at += len;
            }
        }
        // A merged range that runs into unmapped memory fails as a whole, naming its start.
        let mut buf = [0u8; 16];
        let err = me()
            .read_batch(&[(0x1000, 8), (0x1008, 8)], &mut buf)
            .unwrap_err();
        assert_eq!(
            err,
            MemError::Fault {
                addr: 0x1000,
                len: 16
            }
        );
    }

    #[test]
    fn merged_ranges_join_neighbouring_pages_only() {
        let p = 0x10_0000u64;
        let ranges = merged_ranges(&[
            (p + 3 * PAGE, 8),
            (p + 10, 8),
            (p + PAGE + 5, 3),
            (p + 9 * PAGE, 0),
        ]);
        // Pages 0 and 1 touch: one range from p + 10 to p + PAGE + 8; page 3 stands alone
        // (page 2 lies between); the empty request reads nothing.
        assert_eq!(ranges, [(p + 10, PAGE - 2), (p + 3 * PAGE, 8)]);
    }

    #[test]
    fn unmapped_address_is_a_fault() {
        let mut buf = [0u8; 8];
        assert_eq!(
            me().read_into(0x10, &mut buf),
            Err(MemError::Fault { addr: 0x10, len: 8 })
        );
    }

    /// The readable mappings' `(start, end)` and whether each is readable, from our maps.
    fn own_mappings() -> Vec<(u64, u64, bool)> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .map(|line| {
                let mut f = line.split_whitespace();
                let (s, e) = f.next().unwrap().split_once('-').unwrap();
                let readable = f.next().unwrap().starts_with('r');
                (
                    u64::from_str_radix(s, 16).unwrap(),
                    u64::from_str_radix(e, 16).unwrap(),
                    readable,
                )
            })
            .collect()
    }

    #[test]
    fn short_read_names_the_failed_request() {
        // A readable mapping followed by at least two pages nothing readable covers: a range
        // at its end reads, one a page further out does not, and they are separate iovecs.
        let ranges = own_mappings();
        let end = ranges
            .iter()
            .filter(|r| r.2)
            .map(|r| r.1)
            .find(|&end| {
                !ranges
                    .iter()
                    .any(|r| r.2 && r.0 < end + 2 * PAGE && r.1 > end)
            })
            .unwrap();
        let bad = end + PAGE;
        let err = batch(&[(end - 8, 8), (bad, 8)]).unwrap_err();
        assert_eq!(err, MemError::Fault { addr: bad, len: 8 });
        batch(&[(end - 8, 8)]).unwrap();
    }

    #[test]
    fn read_across_the_end_of_a_mapping_is_a_fault() {
        // A readable mapping not directly followed by another readable one: a read
        // straddling its end is short and must be reported as a fault, not as success.
        let ranges = own_mappings();
        let end = ranges
            .windows(2)
            .find(|w| w[0].2 && (w[1].0 > w[0].1 || !w[1].2))
            .map(|w| w[0].1)
            .unwrap();
        let mut buf = [0u8; 32];
        assert_eq!(
            me().read_into(end - 16, &mut buf),
            Err(MemError::Fault {
                addr: end - 16,
                len: 32
            })
        );
        me().read_into(end - 32, &mut buf).unwrap();
    }

    #[test]
    fn missing_process_is_no_such_process_then_gone() {
        let err = ProcessMemory::open(i32::MAX).unwrap_err();
        assert_eq!(err.to_string(), format!("no process with PID {}", i32::MAX));
        let mut buf = [0u8; 4];
        assert_eq!(
            ProcessMemory::new(i32::MAX).read_into(0x1000, &mut buf),
            Err(MemError::ProcessGone { pid: i32::MAX })
        );
    }

    #[test]
    fn first_readable_address_skips_guard_pages() {
        let maps = "7f00-8000 ---p 00000000 00:00 0\n9000-a000 r--p 00000000 08:01 12 /x\n";
        assert_eq!(first_readable_address(maps), Some(0x9000));
        assert_eq!(first_readable_address(""), None);
    }
}
