//! What the three ways of capturing a thread's native stack have in common: the registers an
//! unwinder starts from, the copy of the stack, and [`StackError`].
//!
//! - [`crate::ThreadTracer`]: the thread alone stopped with ptrace for the few microseconds of
//!   reading its registers and copying its stack;
//! - [`crate::PerfThread`]: the kernel's own copy, taken at a `cpu-clock` sampling interrupt,
//!   the thread never stopped;
//! - [`crate::BlockedThread`]: a thread asleep in a system call, read without stopping it and
//!   proven to have stayed asleep while its stack was copied.

use nix::errno::Errno;
use std::path::PathBuf;

/// The registers an x86-64 unwinder starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserRegs {
    /// Instruction pointer: where the thread is (for a thread in a system call, the
    /// instruction after the `syscall`).
    pub ip: u64,
    /// Stack pointer: the copied stack starts here.
    pub sp: u64,
    /// Frame pointer (`rbp`), or `None` where the capture method does not see it
    /// ([`crate::BlockedThread`]).
    pub bp: Option<u64>,
    /// `rbx`, where the capture has it: a function that realigns its stack may compute its
    /// frame from it (glibc's `_dl_runtime_resolve_*`, the lazy binding of a library call).
    pub bx: Option<u64>,
}

/// How much of a thread's stack a capture copies, from the stack pointer up: at most `max`
/// bytes, and not past `end` where that is known. An unwind needs the stack only up to its
/// outermost frame (`start_thread`, `_start`), which stays where it is for the thread's life,
/// so the highest address one unwind of the thread read bounds the next copy; without it the
/// copy runs on to `max` or to the first unreadable page, which for a thread's stack is often
/// far past its top (the mappings above it are readable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackSpan {
    /// At most this many bytes.
    pub max: usize,
    /// Not past this address, where known; ignored unless it lies above the stack pointer and
    /// within `max` bytes of it.
    pub end: Option<u64>,
}

impl StackSpan {
    /// How many bytes to copy from stack pointer `sp`.
    pub fn bytes_from(&self, sp: u64) -> usize {
        match self.end {
            Some(end) if end > sp && end - sp <= self.max as u64 => (end - sp) as usize,
            _ => self.max,
        }
    }
}

impl From<usize> for StackSpan {
    fn from(max: usize) -> StackSpan {
        StackSpan { max, end: None }
    }
}

/// Why a thread's stack could not be captured.
///
/// Messages are for the person running strobe: each says what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The thread exited (before or during the capture).
    #[error("thread {tid} of process {pid} exited")]
    ThreadGone {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
    },
    /// The kernel does not let us trace or read the thread.
    #[error(
        "permission denied reading the native stack of thread {tid} of process {pid}: run \
         strobe as root, or grant it CAP_SYS_PTRACE (sudo setcap cap_sys_ptrace+ep $(which \
         strobe)); if the target is your own process, check /proc/sys/kernel/yama/ptrace_scope \
         (0 allows tracing your own processes); in a container add --cap-add SYS_PTRACE"
    )]
    PermissionDenied {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
    },
    /// Another tracer (a debugger, another profiler) holds the thread.
    #[error(
        "thread {tid} of process {pid} is already traced by process {tracer} (a debugger or \
         another profiler?): detach it first"
    )]
    AlreadyTraced {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// `TracerPid:` of the thread.
        tracer: i32,
    },
    /// A ptrace request failed for another reason.
    #[error("ptrace {op} on thread {tid} of process {pid} failed: {errno}")]
    Ptrace {
        /// The request.
        op: &'static str,
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// What the kernel said.
        errno: Errno,
    },
    /// The thread was running, so its stack cannot be read without stopping it (transient:
    /// [`crate::BlockedThread`] only reads sleeping threads).
    #[error("thread {tid} of process {pid} is running, not blocked")]
    NotBlocked {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
    },
    /// The thread ran while its stack was copied, so the copy may be torn (transient).
    #[error("thread {tid} of process {pid} woke up while its stack was copied")]
    WokeUp {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
    },
    /// Nothing of the stack could be read at the stack pointer.
    #[error("the stack of thread {tid} of process {pid} is unreadable at {sp:#x}: {errno}")]
    StackUnreadable {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The stack pointer.
        sp: u64,
        /// What the kernel said.
        errno: Errno,
    },
    /// A `/proc` file of the thread could not be read or made sense of.
    #[error("could not read {}: {errno}", path.display())]
    Proc {
        /// The file.
        path: PathBuf,
        /// What the kernel said (`EINVAL` for contents we could not parse).
        errno: Errno,
    },
}

impl StackError {
    /// Whether a later capture of the same thread may succeed (it was running, or woke up, at
    /// the wrong moment), as opposed to errors that will repeat.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StackError::NotBlocked { .. } | StackError::WokeUp { .. }
        )
    }
}

/// Copy the thread's stack starting at `sp` into `buf` (cleared first), as much as `span`
/// says, with one `process_vm_readv`. The copy stops early, without error, at the first page
/// that cannot be read (an unmapped gap or a guard page above the stack's top; a readable
/// mapping right above it is copied too, up to the span).
pub fn copy_stack(
    pid: i32,
    tid: i32,
    sp: u64,
    span: StackSpan,
    buf: &mut Vec<u8>,
) -> Result<(), StackError> {
    let max = span.bytes_from(sp);
    // Read straight into spare capacity: zeroing `max` bytes first (256 KiB for a native
    // sample) cost more than the copy, which stops at the stack's top, usually far sooner.
    buf.clear();
    buf.reserve(max);
    let Ok(base) = usize::try_from(sp) else {
        return Err(StackError::StackUnreadable {
            pid,
            tid,
            sp,
            errno: Errno::EFAULT,
        });
    };
    let local = nix::libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: max,
    };
    let remote = nix::libc::iovec {
        iov_base: base as *mut nix::libc::c_void,
        iov_len: max,
    };
    // SAFETY: `local` points at `buf`'s spare capacity, at least `max` bytes (reserved above,
    // `buf` empty), which nothing else uses during the call; the kernel writes at most `max`
    // bytes there. `remote` is only an address in the target, which the kernel validates.
    #[allow(unsafe_code)]
    let got = unsafe { nix::libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    let got = if got < 0 {
        Err(Errno::last())
    } else {
        Ok(got as usize)
    };
    match got {
        Ok(n) => {
            // SAFETY: the kernel wrote the first `n` bytes (n <= max <= capacity).
            #[allow(unsafe_code)]
            unsafe {
                buf.set_len(n.min(max));
            }
            Ok(())
        }
        Err(Errno::ESRCH) => Err(StackError::ThreadGone { pid, tid }),
        Err(Errno::EPERM | Errno::EACCES) => Err(StackError::PermissionDenied { pid, tid }),
        Err(errno) => Err(StackError::StackUnreadable {
            pid,
            tid,
            sp,
            errno,
        }),
    }
}

/// One stack of [`copy_stacks`]: whose, from where, how much, into what, and how it went.
pub struct StackCopy<'a> {
    /// The thread whose stack it is.
    pub tid: i32,
    /// Its stack pointer: the copy starts there.
    pub sp: u64,
    /// How far the copy may go ([`StackSpan::bytes_from`] `sp`).
    pub span: StackSpan,
    /// Where the copy goes (cleared first).
    pub buf: &'a mut Vec<u8>,
    /// The copy's outcome (as [`copy_stack`]'s); `Ok` before the copy.
    pub result: Result<(), StackError>,
}

impl<'a> StackCopy<'a> {
    /// A copy of thread `tid`'s stack from `sp` into `buf`, not made yet.
    pub fn new(tid: i32, sp: u64, span: StackSpan, buf: &'a mut Vec<u8>) -> StackCopy<'a> {
        StackCopy {
            tid,
            sp,
            span,
            buf,
            result: Ok(()),
        }
    }
}

/// Most stacks one [`copy_stacks`] call reads together (far below the kernel's `IOV_MAX`).
const MAX_STACKS_TOGETHER: usize = 64;

/// [`copy_stack`] for several threads of process `pid` with one `process_vm_readv` (one
/// iovec each) instead of one call per thread: the stacks of threads stopped together, or
/// of threads the kernel's records show preempted. Each
/// copy ends as its own call would have: the kernel copies the iovecs in turn and stops at
/// the first page it cannot read, so a stack cut short there is the same copy, and the stacks
/// after it (not reached) are then copied one call each. A call that copies nothing (the
/// process exited, the first stack unreadable at its stack pointer) falls back to one call
/// per stack too, so that each thread gets its own error.
pub fn copy_stacks(pid: i32, copies: &mut [StackCopy<'_>]) {
    if copies.len() > MAX_STACKS_TOGETHER {
        for some in copies.chunks_mut(MAX_STACKS_TOGETHER) {
            copy_stacks(pid, some);
        }
        return;
    }
    if copies.len() < 2 {
        copy_each(pid, copies);
        return;
    }
    let mut local = [iovec_empty(); MAX_STACKS_TOGETHER];
    let mut remote = [iovec_empty(); MAX_STACKS_TOGETHER];
    for (i, c) in copies.iter_mut().enumerate() {
        let max = c.span.bytes_from(c.sp);
        let Ok(base) = usize::try_from(c.sp) else {
            copy_each(pid, copies);
            return;
        };
        // Into spare capacity, as `copy_stack` does.
        c.buf.clear();
        c.buf.reserve(max);
        local[i] = nix::libc::iovec {
            iov_base: c.buf.as_mut_ptr().cast(),
            iov_len: max,
        };
        remote[i] = nix::libc::iovec {
            iov_base: base as *mut nix::libc::c_void,
            iov_len: max,
        };
    }
    let n = copies.len();
    // SAFETY: each `local[i]` points at the spare capacity of `copies[i].buf`, at least
    // `iov_len` bytes (reserved above, the buffer empty), and no two overlap (distinct
    // vectors, borrowed exclusively through `copies` for the whole call); the kernel writes
    // at most `iov_len` bytes into each. `remote` holds only addresses in the target, which the
    // kernel validates. `n` <= MAX_STACKS_TOGETHER, the arrays' length.
    #[allow(unsafe_code)]
    let got = unsafe {
        nix::libc::process_vm_readv(
            pid,
            local.as_ptr(),
            n as nix::libc::c_ulong,
            remote.as_ptr(),
            n as nix::libc::c_ulong,
            0,
        )
    };
    let mut left = match usize::try_from(got) {
        Ok(copied) if copied > 0 => copied,
        _ => {
            copy_each(pid, copies);
            return;
        }
    };
    for i in 0..n {
        let max = local[i].iov_len;
        let len = left.min(max);
        left -= len;
        // SAFETY: the kernel wrote the first `len` bytes of this iovec (the iovecs are filled
        // in order, each fully before the next), and `len` <= `max` <= the capacity.
        #[allow(unsafe_code)]
        unsafe {
            copies[i].buf.set_len(len);
        }
        if len == 0 && max > 0 {
            // Not reached (the previous stack ended the call on a page boundary): this one
            // and the rest on their own, so that an unreadable one gets its error.
            copy_each(pid, &mut copies[i..]);
            return;
        }
        copies[i].result = Ok(());
        if len < max {
            // Cut at an unreadable page: the kernel stopped there, the rest were not read.
            copy_each(pid, &mut copies[i + 1..]);
            return;
        }
    }
}

/// [`copy_stack`] for each of `copies`, one call each.
fn copy_each(pid: i32, copies: &mut [StackCopy<'_>]) {
    for c in copies {
        c.result = copy_stack(pid, c.tid, c.sp, c.span, c.buf);
    }
}

fn iovec_empty() -> nix::libc::iovec {
    nix::libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

/// `/proc/PID/task/TID/FILE`.
pub(crate) fn task_file(pid: i32, tid: i32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/task/{tid}/{file}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Three pages of our own memory, the middle one unreadable, filled with a pattern.
    struct Pages {
        base: *mut u8,
    }

    const PAGE: usize = 4096;

    impl Pages {
        #[allow(unsafe_code)]
        fn new() -> Pages {
            // SAFETY: a fresh anonymous private mapping of three pages, not aliased by
            // anything; the middle page is then made inaccessible, the others are written
            // only within the mapping.
            unsafe {
                let base = nix::libc::mmap(
                    std::ptr::null_mut(),
                    3 * PAGE,
                    nix::libc::PROT_READ | nix::libc::PROT_WRITE,
                    nix::libc::MAP_PRIVATE | nix::libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                assert_ne!(base, nix::libc::MAP_FAILED);
                let base = base.cast::<u8>();
                for i in 0..3 * PAGE {
                    *base.add(i) = (i % 251) as u8;
                }
                let middle = base.add(PAGE).cast();
                assert_eq!(nix::libc::mprotect(middle, PAGE, nix::libc::PROT_NONE), 0);
                Pages { base }
            }
        }

        fn at(&self, off: usize) -> u64 {
            self.base as u64 + off as u64
        }
    }

    impl Drop for Pages {
        #[allow(unsafe_code)]
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`, unmapped once.
            unsafe {
                nix::libc::munmap(self.base.cast(), 3 * PAGE);
            }
        }
    }

    fn pattern(off: usize, len: usize) -> Vec<u8> {
        (off..off + len).map(|i| (i % 251) as u8).collect()
    }

    /// Copies of (offset in the pages, bytes) into fresh buffers; each one's result and bytes.
    fn copy(pages: &Pages, wanted: &[(usize, usize)]) -> Vec<Result<Vec<u8>, String>> {
        let pid = std::process::id() as i32;
        let mut bufs: Vec<Vec<u8>> = wanted.iter().map(|_| vec![0xee; 7]).collect();
        let mut copies: Vec<StackCopy<'_>> = (wanted.iter().zip(bufs.iter_mut()))
            .map(|(&(off, max), buf)| StackCopy {
                tid: pid,
                sp: pages.at(off),
                span: StackSpan::from(max),
                buf,
                result: Ok(()),
            })
            .collect();
        copy_stacks(pid, &mut copies);
        let results: Vec<_> = copies.into_iter().map(|c| c.result).collect();
        (results.into_iter().zip(bufs))
            .map(|(r, buf)| r.map(|()| buf).map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn stacks_copied_together_end_as_copies_of_their_own() {
        let pages = Pages::new();
        // Whole; cut at the unreadable page; whole again after it (the kernel's call stopped at
        // the cut, so this one must be copied on its own); unreadable at its stack pointer.
        let got = copy(
            &pages,
            &[
                (100, 500),
                (PAGE - 300, 1000),
                (2 * PAGE + 10, 200),
                (PAGE + 8, 64),
            ],
        );
        assert_eq!(got[0].as_deref(), Ok(&pattern(100, 500)[..]));
        assert_eq!(got[1].as_deref(), Ok(&pattern(PAGE - 300, 300)[..]));
        assert_eq!(got[2].as_deref(), Ok(&pattern(2 * PAGE + 10, 200)[..]));
        assert!(
            got[3].as_ref().is_err_and(|e| e.contains("unreadable")),
            "{got:?}"
        );

        // A stack that ends on the page boundary, then one the call does not reach: the
        // second gets its own error, the third its bytes.
        let got = copy(&pages, &[(PAGE - 64, 64), (PAGE + 8, 64), (2 * PAGE, 100)]);
        assert_eq!(got[0].as_deref(), Ok(&pattern(PAGE - 64, 64)[..]));
        assert!(
            got[1].as_ref().is_err_and(|e| e.contains("unreadable")),
            "{got:?}"
        );
        assert_eq!(got[2].as_deref(), Ok(&pattern(2 * PAGE, 100)[..]));

        // Nothing copied at all (the first one unreadable): each on its own.
        let got = copy(&pages, &[(PAGE + 100, 64), (0, 4096)]);
        assert!(got[0].is_err(), "{got:?}");
        assert_eq!(got[1].as_deref(), Ok(&pattern(0, 4096)[..]));
    }
}
