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
pub(crate) fn copy_stack(
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

/// `/proc/PID/task/TID/FILE`.
pub(crate) fn task_file(pid: i32, tid: i32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/task/{tid}/{file}"))
}
