//! [`LocateError`]: why a process's interpreter could not be found.

use std::path::PathBuf;
use strobe_memory::MemError;
use strobe_remote::RemoteError;

/// Why [`crate::locate`] failed. Each message is one line meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// No such process.
    #[error("no process with PID {pid}")]
    NoSuchProcess {
        /// The PID asked for.
        pid: i32,
    },
    /// We may not read the process.
    #[error(
        "permission denied reading process {pid}: run strobe as root, or grant it \
         CAP_SYS_PTRACE (sudo setcap cap_sys_ptrace+ep $(which strobe)); if the target is your \
         own process, check /proc/sys/kernel/yama/ptrace_scope (0 allows reading your own \
         processes); in a container add --cap-add SYS_PTRACE"
    )]
    PermissionDenied {
        /// The target process.
        pid: i32,
    },
    /// A kernel thread has no user space, let alone Python.
    #[error("process {pid} ({comm}) is a kernel thread, not a Python process")]
    KernelThread {
        /// The target process.
        pid: i32,
        /// Its name.
        comm: String,
    },
    /// The process has exited and waits to be reaped.
    #[error(
        "process {pid} ({comm}) is a zombie: it has exited and only waits for its parent to \
         collect it, so there is nothing left to profile"
    )]
    Zombie {
        /// The target process.
        pid: i32,
        /// Its name.
        comm: String,
    },
    /// The process exited while we looked at it.
    #[error("process {pid} exited while strobe was reading it")]
    Exited {
        /// The target process.
        pid: i32,
    },
    /// No interpreter found.
    #[error(
        "process {pid} ({name}) does not look like Python: no libpython or \
         _PyRuntime/interp_head symbol found"
    )]
    NotPython {
        /// The target process.
        pid: i32,
        /// The executable's name (or `comm`).
        name: String,
    },
    /// The interpreter was found but its exact version could not be established.
    #[error("cannot tell the Python version of process {pid} ({}): {found}", binary.display())]
    UnknownVersion {
        /// The target process.
        pid: i32,
        /// The ELF file holding the interpreter.
        binary: PathBuf,
        /// What was found instead.
        found: String,
    },
    /// The interpreter's ELF file could not be read or understood.
    #[error("cannot read the interpreter binary {} of process {pid}: {reason}", path.display())]
    Elf {
        /// The target process.
        pid: i32,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Something else under `/proc` or in the target's memory failed.
    #[error(transparent)]
    Remote(RemoteError),
}

impl LocateError {
    /// Translate a `/proc` or memory error, knowing that the process existed when we began.
    pub(crate) fn from_remote(pid: i32, err: RemoteError) -> LocateError {
        match err {
            RemoteError::NoSuchProcess { .. } | RemoteError::ProcessGone { .. } => {
                if !strobe_remote::procfs::is_gone_or_exiting(pid) {
                    // A thread's file vanished, not the process: report the original error.
                    LocateError::Remote(err)
                } else {
                    LocateError::Exited { pid }
                }
            }
            RemoteError::PermissionDenied { .. } => LocateError::PermissionDenied { pid },
            RemoteError::Mem(m) => LocateError::from_mem(pid, m),
            other => LocateError::Remote(other),
        }
    }

    pub(crate) fn from_mem(pid: i32, err: MemError) -> LocateError {
        match err {
            MemError::ProcessGone { .. } => LocateError::Exited { pid },
            MemError::PermissionDenied { .. } => LocateError::PermissionDenied { pid },
            _ if strobe_remote::procfs::is_gone_or_exiting(pid) => LocateError::Exited { pid },
            other => LocateError::Remote(RemoteError::Mem(other)),
        }
    }
}
