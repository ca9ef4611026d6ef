//! How a sampling run ended: [`SamplerSummary`] and its [`EndReason`].

use std::process::{Child, ExitStatus};

use crate::stats::StatsSnapshot;

/// Why sampling ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// [`SamplerHandle::stop`](crate::SamplerHandle::stop) was called.
    Stopped,
    /// The configured duration elapsed.
    DurationElapsed,
    /// The target process exited.
    TargetExited,
    /// The target process replaced its program (execve): the interpreter it ran is gone,
    /// while the process (and, when strobe launched it, the command) lives on.
    TargetExeced,
}

/// How a sampling run ended.
#[derive(Debug)]
pub struct SamplerSummary {
    /// Final counters.
    pub stats: StatsSnapshot,
    /// Why it ended.
    pub reason: EndReason,
    /// The exit status of a launched target that exited (see [`start`](crate::start)'s `child`).
    pub exit_status: Option<ExitStatus>,
    /// Caveats found while sampling (each reported once).
    pub warnings: Vec<String>,
    /// A launched target that was still running when sampling stopped, handed back.
    pub child: Option<Child>,
    /// The CPUs the sampler thread had restricted itself to at the end, to stay off those
    /// the target's running threads were on; `None` when it was not restricted.
    pub placement: Option<Vec<usize>>,
    /// Descendant processes with at least one recorded sample (`--subprocesses`; each counted
    /// once per program it ran).
    pub subprocesses_sampled: u64,
}
