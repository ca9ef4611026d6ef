//! [`RemoteError`]: failures of opening, inspecting or freezing a process, worded for the user.

use std::path::PathBuf;
use strobe_memory::MemError;

/// Why a process could not be opened, inspected through `/proc`, or frozen.
///
/// The messages are written for the person running strobe: each says what happened and,
/// where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// There is no such process (or it exited before we looked).
    #[error("no process with PID {pid}")]
    NoSuchProcess {
        /// The PID asked for.
        pid: i32,
    },
    /// The kernel does not let us read or trace the process.
    #[error(
        "permission denied accessing process {pid}: run strobe as root, or grant it \
         CAP_SYS_PTRACE (sudo setcap cap_sys_ptrace+ep $(which strobe)); if the target is your \
         own process, check /proc/sys/kernel/yama/ptrace_scope (0 allows tracing your own \
         processes); in a container add --cap-add SYS_PTRACE"
    )]
    PermissionDenied {
        /// The target process.
        pid: i32,
    },
    /// Another tracer (a debugger, another profiler) already holds the process; a thread
    /// can have only one ptrace tracer.
    #[error(
        "process {pid} is already being traced by process {tracer} (a debugger or another \
         profiler?): detach that first, or sample without --blocking"
    )]
    AlreadyTraced {
        /// The target process.
        pid: i32,
        /// The tracer's PID, from `TracerPid:` in /proc/PID/status.
        tracer: i32,
    },
    /// The process existed when we started and is gone now.
    #[error("process {pid} exited")]
    ProcessGone {
        /// The target process.
        pid: i32,
    },
    /// A `/proc` file could not be read for a reason other than the ones above.
    #[error("could not read {}: {error}", path.display())]
    Proc {
        /// The file.
        path: PathBuf,
        /// The OS error. Part of the message, so not also the error's `source()`.
        error: std::io::Error,
    },
    /// A ptrace request failed unexpectedly.
    #[error("ptrace {op} on thread {tid} of process {pid} failed: {errno}")]
    Ptrace {
        /// The request (`PTRACE_SEIZE`, ...).
        op: &'static str,
        /// The target process.
        pid: i32,
        /// The thread the request was for.
        tid: i32,
        /// What the kernel said.
        errno: nix::errno::Errno,
    },
    /// New threads kept appearing while we attached to the existing ones.
    #[error(
        "threads of process {pid} kept appearing while freezing it (gave up after {rounds} \
         rounds); try again, or sample without --blocking"
    )]
    ThreadsUnstable {
        /// The target process.
        pid: i32,
        /// How many listing rounds were tried.
        rounds: usize,
    },
    /// Reading target memory failed.
    #[error(transparent)]
    Mem(#[from] MemError),
}

impl RemoteError {
    /// Turn an I/O error on a file under `/proc/PID` into the error a user should see.
    pub(crate) fn from_proc_io(pid: i32, path: PathBuf, error: std::io::Error) -> Self {
        match error.kind() {
            std::io::ErrorKind::NotFound => RemoteError::NoSuchProcess { pid },
            std::io::ErrorKind::PermissionDenied => RemoteError::PermissionDenied { pid },
            // ESRCH: the process died between opening and reading the file.
            _ if error.raw_os_error() == Some(libc::ESRCH) => RemoteError::ProcessGone { pid },
            _ => RemoteError::Proc { path, error },
        }
    }
}
