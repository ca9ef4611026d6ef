//! Why a round produced no samples: the target is gone, this round failed (the next may not),
//! or sampling cannot go on; and the sorting of the walker's and `/proc`'s errors into these.

use strobe_memory::MemError;
use strobe_remote::RemoteError;
use strobe_target::AttachError;
use strobe_walker::WalkError;

use crate::error::SamplerError;
use crate::lifecycle::target_gone;
use crate::stats::ErrorKind;

/// Why a round produced no samples.
#[derive(Debug)]
pub(crate) enum RoundError {
    /// The target has exited.
    Gone,
    /// This round failed; the next may not.
    Transient(ErrorKind),
    /// Sampling cannot continue.
    Fatal(SamplerError),
}

/// A failed walk of process `pid`.
pub(crate) fn walk_error(pid: i32, e: WalkError) -> RoundError {
    let kind = match &e {
        WalkError::Mem(MemError::ProcessGone { .. }) => return RoundError::Gone,
        WalkError::Mem(m) if m.is_transient() => ErrorKind::Read,
        WalkError::Corrupt { .. } | WalkError::Unbounded { .. } => ErrorKind::Torn,
        _ => ErrorKind::Read,
    };
    if target_gone(pid) {
        return RoundError::Gone;
    }
    if e.is_transient() {
        RoundError::Transient(kind)
    } else {
        RoundError::Fatal(SamplerError::Walk { pid, error: e })
    }
}

/// A failed `--blocking` freeze of process `pid`.
pub(crate) fn freeze_error(pid: i32, e: RemoteError) -> RoundError {
    if target_gone(pid) {
        return RoundError::Gone;
    }
    match gone_or_fatal(pid, e) {
        SamplerError::Attach(AttachError::Exited { .. }) => RoundError::Gone,
        SamplerError::Attach(AttachError::Remote(
            e @ (RemoteError::AlreadyTraced { .. } | RemoteError::PermissionDenied { .. }),
        )) => RoundError::Fatal(SamplerError::Attach(AttachError::Remote(e))),
        _ => RoundError::Transient(ErrorKind::Freeze),
    }
}

/// A failed read of process `pid`'s task list.
pub(crate) fn proc_error(pid: i32, e: RemoteError) -> RoundError {
    match gone_or_fatal(pid, e) {
        SamplerError::Attach(AttachError::Exited { .. }) => RoundError::Gone,
        _ => RoundError::Transient(ErrorKind::Proc),
    }
}

/// A `/proc` or ptrace error of process `pid`, as the error that ends sampling.
pub(crate) fn gone_or_fatal(pid: i32, e: RemoteError) -> SamplerError {
    // Once attached, "no such process" means the target exited (at attach time it means the
    // user named a PID that does not exist, which `exited_or` keeps as it is).
    if let RemoteError::NoSuchProcess { .. } = e {
        return SamplerError::Attach(AttachError::Exited { pid });
    }
    SamplerError::Attach(strobe_target::exited_or(pid, AttachError::Remote(e)))
}
