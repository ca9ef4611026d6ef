//! [`AttachError`]: why attaching to or reading a target failed, with messages for the user;
//! and how a failure is reported when the process exited meanwhile, or the target is a core.

use std::path::PathBuf;

use strobe_corefile::{Core, CoreError};
use strobe_locate::LocateError;
use strobe_memory::MemError;
use strobe_remote::{procfs, RemoteError};
use strobe_walker::WalkError;

use crate::Target;

/// Why attaching to or reading a target failed. Every message is meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Opening, inspecting or freezing the process failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The process is not a Python we can find.
    #[error(transparent)]
    Locate(#[from] LocateError),
    /// The process went away in the middle.
    #[error("process {pid} exited while being read")]
    Exited {
        /// The target.
        pid: i32,
    },
    /// The interpreter's layout could not be determined (e.g. a version strobe does not know).
    #[error("cannot read process {pid}: {error}")]
    Layout {
        /// The target.
        pid: i32,
        /// What went wrong (part of the message, so not also the `source()`).
        error: WalkError,
    },
    /// Walking the interpreter's structures failed.
    #[error("reading the Python stacks of process {pid} failed: {error}")]
    Walk {
        /// The target.
        pid: i32,
        /// What went wrong (part of the message, so not also the `source()`).
        error: WalkError,
    },
    /// No offset inside glibc's `struct pthread` held the thread ids of all given threads.
    #[error(
        "could not find the thread-id field in the pthread structures of process {pid} \
         ({threads} threads): native thread ids are unavailable for this target"
    )]
    PthreadCalibration {
        /// The target process.
        pid: i32,
        /// How many thread idents were given.
        threads: usize,
    },
    /// The core file cannot be read.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The interpreter could not be found in a core file.
    #[error("core file {}: {error}", core.display())]
    CoreLocate {
        /// The core file.
        core: PathBuf,
        /// What went wrong (part of the message, so not also the `source()`).
        error: LocateError,
    },
    /// The interpreter's layout or stacks could not be read from a core file.
    #[error(
        "core file {}: {error}{}{}",
        core.display(),
        missing_memory_hint(error),
        unusable_files(unusable)
    )]
    CoreWalk {
        /// The core file.
        core: PathBuf,
        /// What went wrong (part of the message, so not also the `source()`).
        error: WalkError,
        /// When a read fell outside the core: the files it names that could not be used
        /// (missing, or another build), one line each joined by `; `; else empty.
        unusable: String,
    },
    /// `dump --async` could not read the asyncio tasks (the message says why and what to do).
    #[error("{0}")]
    Async(String),
    /// Signals could not be held off around `--blocking`.
    #[error("could not block signals while the target is frozen: {0}")]
    Signals(nix::Error),
}

impl Target {
    /// `err`, or that the process exited if it did (never for a core: its process is gone,
    /// and another may have its id).
    pub(crate) fn exited_or(&self, err: AttachError) -> AttachError {
        match (&self.core, err) {
            (Some(core), AttachError::Walk { error, .. } | AttachError::Layout { error, .. }) => {
                core_walk(core, error)
            }
            (Some(_), err) => err,
            (None, err) => exited_or(self.pid(), err),
        }
    }
}

/// A walk error on `core`, with the files it names that could not be used when a read fell
/// outside it.
pub(crate) fn core_walk(core: &Core, error: WalkError) -> AttachError {
    let unusable = match error {
        WalkError::Mem(MemError::Fault { .. }) => core.file_problems().join("; "),
        _ => String::new(),
    };
    AttachError::CoreWalk {
        core: core.path().to_path_buf(),
        error,
        unusable,
    }
}

/// The tail of a [`AttachError::CoreWalk`] message naming unusable files.
fn unusable_files(unusable: &str) -> String {
    if unusable.is_empty() {
        String::new()
    } else {
        format!("; files the core names that could not be used: {unusable}")
    }
}

/// What to add to a walk error on a core: a read outside the core's memory means the core
/// lacks the interpreter's memory.
fn missing_memory_hint(error: &WalkError) -> &'static str {
    match error {
        WalkError::Mem(MemError::Fault { .. }) => {
            " (the core does not hold the interpreter's memory there: it was written without \
             the process's data pages (see coredump_filter in core(5)), or it does not belong \
             to the executable and libraries found for it)"
        }
        _ => "",
    }
}

/// If the target is gone, say so instead of reporting whichever read happened to fail.
/// (Also used by the sampler for errors of its rounds.)
pub fn exited_or(pid: i32, err: AttachError) -> AttachError {
    let gone = match &err {
        AttachError::Remote(RemoteError::ProcessGone { .. })
        | AttachError::Remote(RemoteError::Mem(MemError::ProcessGone { .. }))
        | AttachError::Walk {
            error: WalkError::Mem(MemError::ProcessGone { .. }),
            ..
        } => true,
        AttachError::Remote(RemoteError::NoSuchProcess { .. }) => false,
        _ => procfs::is_gone_or_exiting(pid),
    };
    if gone {
        AttachError::Exited { pid }
    } else {
        err
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A PID no process can have: PIDs are always below `pid_max`.
    fn vanished_pid() -> i32 {
        std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn failed_read_of_a_vanished_process_reports_the_exit() {
        let pid = vanished_pid();
        let fault = AttachError::Walk {
            pid,
            error: WalkError::Mem(MemError::Fault {
                addr: 0x1000,
                len: 8,
            }),
        };
        let err = exited_or(pid, fault);
        assert_eq!(
            err.to_string(),
            format!("process {pid} exited while being read")
        );
    }

    #[test]
    fn process_gone_is_an_exit_even_before_proc_catches_up() {
        let me = std::process::id() as i32;
        let gone = AttachError::Remote(RemoteError::Mem(MemError::ProcessGone { pid: me }));
        assert!(matches!(exited_or(me, gone), AttachError::Exited { .. }));
    }

    #[test]
    fn errors_of_a_live_process_are_kept() {
        let me = std::process::id() as i32;
        let fault = AttachError::Walk {
            pid: me,
            error: WalkError::Mem(MemError::Fault {
                addr: 0x1000,
                len: 8,
            }),
        };
        assert!(matches!(exited_or(me, fault), AttachError::Walk { .. }));
        let missing = AttachError::Remote(RemoteError::NoSuchProcess {
            pid: vanished_pid(),
        });
        assert!(matches!(
            exited_or(vanished_pid(), missing),
            AttachError::Remote(RemoteError::NoSuchProcess { .. })
        ));
    }
}
