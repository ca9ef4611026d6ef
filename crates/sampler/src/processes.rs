//! The set of processes being sampled: the one strobe was given (the *root*, when it can be
//! read) and, under `--subprocesses`, the descendants the scout ([`crate::family`]) hands over.
//!
//! A round reads each of them in turn. The failure policy:
//! * a descendant that exited, or replaced its program (`exec`: its read fails, or a check
//!   every [`EXEC_CHECK_EVERY_NS`] finds its auxiliary vector changed), is *retired*: dropped
//!   without counting an error, its warnings kept under its PID, and forgotten by the scout,
//!   which attaches to its new program if that is Python;
//! * the root's exit or `exec` ends sampling;
//! * other failures are counted per kind; after [`CLEAR_CACHES_AFTER`] in a row the process's
//!   caches are dropped, in case a stale entry is what keeps failing.
//!
//! Every process's thread states come from one per-CPU switch reader ([`SharedSwitches`]),
//! drained once at the start of each round of them all; a process no longer sampled is
//! unwatched in it (its `KernelThreads` is dropped).
//!
//! A process the scout found is announced (through [`SamplerStats::take_new_processes`]) and
//! counted in the summary when its first sample is recorded, not when it is first read: a
//! read can succeed and record nothing (every thread idle without `--idle`, filtered out, or
//! without frames yet), and an announced process must have samples in the profile.

use strobe_aggregate::SamplerSide;
use strobe_remote::procfs;
use strobe_target::{AttachError, Target};

use crate::config::SamplerConfig;
use crate::error::SamplerError;
use crate::failure::{gone_or_fatal, RoundError};
use crate::family::{self, Scout, Scouted};
use crate::lifecycle::{program_replaced, read_auxv};
use crate::memo::process_frame;
use crate::placement::MAX_PLACED;
use crate::round::round;
use crate::stats::{NewProcess, SamplerStats};
use crate::summary::EndReason;
use crate::threads::SharedSwitches;
use crate::view::ProcessView;

/// After this many failed rounds in a row, the walker's code-object cache is dropped, in case
/// a stale entry is what keeps failing.
const CLEAR_CACHES_AFTER: u32 = 8;
/// How often a descendant whose reads succeed is checked for having replaced its program (one
/// read of its auxiliary vector): an interpreter that is not position-independent and `exec`s
/// itself has its new runtime at the old addresses, so reads do not fail and would go on under
/// the old program's command line, and the scout would never attach to the new one.
const EXEC_CHECK_EVERY_NS: u64 = 50_000_000;

/// One process being sampled.
struct Proc {
    view: ProcessView,
    target: Target,
    /// The command line of a process the scout found (announced with its first sample).
    command: Option<String>,
    /// The process strobe was given (its exit or `exec` ends sampling).
    root: bool,
    failures_in_a_row: u32,
    /// Whether a sample of it was recorded (then it was announced and counted).
    recorded_once: bool,
    /// When it was last checked for an `exec` (ns since the start; descendants only).
    exec_checked_ns: u64,
}

/// What a round of every process found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoundOutcome {
    /// The round is done.
    Done {
        /// Python threads seen (before filters).
        threads: u64,
        /// Samples recorded.
        recorded: u64,
        /// A process's read failed (the round is not counted as complete).
        failed: bool,
    },
    /// The root exited or replaced its program: sampling ends.
    Ended(EndReason),
}

/// See the module documentation.
pub(crate) struct Processes {
    root_pid: i32,
    procs: Vec<Proc>,
    /// Under `--subprocesses`, the thread that finds descendants.
    scout: Option<Scout>,
    /// Warnings of retired processes, each naming its process.
    retired_warnings: Vec<String>,
    /// Descendants with a recorded sample (each counted once per program).
    subprocesses_sampled: u64,
    /// Whether the root is read (without `--subprocesses` always; with it, it may not be
    /// Python, or not yet: then the scout attaches to it like to a descendant, if it ever can).
    root_read: bool,
    /// The per-CPU switch records of every process's threads.
    switches: SharedSwitches,
}

impl Processes {
    /// The set for root `pid`, read through `target` when it is a Python strobe can read; the
    /// scout is started under `cfg.subprocesses`.
    pub(crate) fn new(
        pid: i32,
        target: Option<Target>,
        cfg: &SamplerConfig,
        side: &mut SamplerSide,
    ) -> Result<Processes, SamplerError> {
        let root_frame = if cfg.subprocesses {
            let command = procfs::command_line(pid, family::LABEL_CHARS).unwrap_or_default();
            Some(process_frame(side, pid, &command)?)
        } else {
            None
        };
        let root_read = target.is_some();
        let switches = SharedSwitches::new();
        let mut procs: Vec<Proc> = target
            .into_iter()
            .map(|target| Proc {
                view: ProcessView::new(
                    pid,
                    target.free_threaded(),
                    root_frame,
                    read_auxv(pid),
                    switches.clone(),
                ),
                target,
                command: None,
                root: true,
                failures_in_a_row: 0,
                recorded_once: false,
                exec_checked_ns: 0,
            })
            .collect();
        if let Some(view) = procs.first_mut().map(|p| &mut p.view) {
            if cfg.gil_only && view.free_threaded {
                view.warn_once(
                    "gil",
                    "--gil has no effect: this is a free-threaded interpreter, which has no GIL"
                        .into(),
                );
            }
            if let Err(e) = view.kernel.rescan() {
                match gone_or_fatal(pid, e) {
                    // The target exited between attaching and this first look: the first round
                    // sees it too and ends the recording as a target exit, with a complete
                    // output.
                    SamplerError::Attach(AttachError::Exited { .. }) => {}
                    e => return Err(e),
                }
            }
        }
        let scout = if cfg.subprocesses {
            Some(Scout::start(pid, !root_read).map_err(SamplerError::Spawn)?)
        } else {
            None
        };
        Ok(Processes {
            root_pid: pid,
            procs,
            scout,
            retired_warnings: Vec::new(),
            subprocesses_sampled: 0,
            root_read,
            switches,
        })
    }

    /// Whether the root is read (else its exit is watched through `/proc`).
    pub(crate) fn root_read(&self) -> bool {
        self.root_read
    }

    /// Take over what the scout found since the last call: attached processes join the set,
    /// those that cannot be attached are announced with the reason.
    pub(crate) fn take_scouted(
        &mut self,
        side: &mut SamplerSide,
        stats: &SamplerStats,
    ) -> Result<(), SamplerError> {
        let Some(scout) = &self.scout else {
            return Ok(());
        };
        while let Some(scouted) = scout.next_found() {
            let f = match scouted {
                Scouted::Attached(f) => *f,
                Scouted::Failed {
                    pid,
                    command,
                    error,
                } => {
                    stats.announce(NewProcess {
                        pid,
                        command,
                        error: Some(error),
                    });
                    // News for the aggregator's thread, which prints it.
                    side.ring();
                    continue;
                }
            };
            let frame = process_frame(side, f.pid, &f.command)?;
            let root = f.pid == self.root_pid;
            self.procs.push(Proc {
                view: ProcessView::new(
                    f.pid,
                    f.target.free_threaded(),
                    Some(frame),
                    f.auxv,
                    self.switches.clone(),
                ),
                target: f.target,
                command: Some(f.command),
                root,
                failures_in_a_row: 0,
                recorded_once: false,
                exec_checked_ns: 0,
            });
            self.root_read |= root;
        }
        Ok(())
    }

    /// One round of every process, failures handled as the module documentation says.
    pub(crate) fn round(
        &mut self,
        cfg: &SamplerConfig,
        side: &mut SamplerSide,
        now_ns: u64,
        weight_ns: u64,
        stats: &SamplerStats,
    ) -> Result<RoundOutcome, SamplerError> {
        let mut threads = 0;
        let mut recorded = 0;
        let mut failed = false;
        // Every process's switches since the previous round, parsed once for all of them.
        self.switches.drain_for_round();
        let mut i = 0;
        while let Some(p) = self.procs.get_mut(i) {
            let descendant = !p.root;
            if descendant && now_ns.saturating_sub(p.exec_checked_ns) >= EXEC_CHECK_EVERY_NS {
                p.exec_checked_ns = now_ns;
                if program_replaced(p.view.pid, p.view.auxv.as_deref()) {
                    self.retire(i);
                    continue;
                }
            }
            match round(
                &mut p.view,
                &mut p.target,
                cfg,
                side,
                now_ns,
                weight_ns,
                stats,
            ) {
                Ok(counts) => {
                    p.failures_in_a_row = 0;
                    threads += counts.threads;
                    recorded += counts.recorded;
                    if !p.recorded_once && counts.recorded > 0 {
                        p.recorded_once = true;
                        self.subprocesses_sampled += u64::from(descendant);
                        if let Some(command) = &p.command {
                            stats.announce(NewProcess {
                                pid: p.view.pid,
                                command: command.clone(),
                                error: None,
                            });
                            side.ring();
                        }
                    }
                }
                Err(RoundError::Gone) if descendant => {
                    self.retire(i);
                    continue;
                }
                Err(RoundError::Gone) => return Ok(RoundOutcome::Ended(EndReason::TargetExited)),
                Err(RoundError::Transient(_))
                    if descendant && program_replaced(p.view.pid, p.view.auxv.as_deref()) =>
                {
                    // A descendant that ran `exec`: not a failed read of the program we
                    // attached to. The scout attaches to its new program, if Python.
                    self.retire(i);
                    continue;
                }
                Err(RoundError::Transient(kind)) => {
                    if stats.add_error(kind) {
                        if let Some(bell) = &cfg.error_bell {
                            bell.ring();
                        }
                    }
                    failed = true;
                    p.failures_in_a_row += 1;
                    if p.failures_in_a_row >= CLEAR_CACHES_AFTER {
                        // Every round failing may mean the program was replaced (exec): then
                        // the interpreter we read is gone for good and no round will succeed
                        // again.
                        if program_replaced(p.view.pid, p.view.auxv.as_deref()) {
                            return Ok(RoundOutcome::Ended(EndReason::TargetExeced));
                        }
                        p.failures_in_a_row = 0;
                        p.target.walker_mut().clear_caches();
                        p.view.frames.clear();
                        p.view.memos.clear();
                    }
                }
                Err(RoundError::Fatal(e)) => return Err(e),
            }
            i += 1;
        }
        if let Some((on, off)) = self.switches.record_windows() {
            stats.set_native_record_windows(on, off);
        }
        Ok(RoundOutcome::Done {
            threads,
            recorded,
            failed,
        })
    }

    /// The CPUs the running threads of the last round last ran on, at most [`MAX_PLACED`],
    /// into `cpus` (emptied first).
    pub(crate) fn running_cpus(&mut self, cpus: &mut Vec<u32>) {
        cpus.clear();
        for p in &mut self.procs {
            for &h in &p.view.running {
                if cpus.len() >= MAX_PLACED {
                    break;
                }
                cpus.extend(p.view.kernel.read_cpu(h));
            }
        }
    }

    /// Drop process `i` of the set (a descendant no longer sampled): its warnings are kept,
    /// naming it, and the scout may attach to its PID again.
    fn retire(&mut self, i: usize) {
        let p = self.procs.remove(i);
        retire(p, self.scout.as_ref(), &mut self.retired_warnings);
    }

    /// Stop the scout; the warnings of every process (the first one's as they are: the
    /// root's, when it was read from the start; the others naming their process) and the
    /// number of descendants sampled.
    pub(crate) fn finish(self) -> (Vec<String>, u64) {
        drop(self.scout);
        let mut all = Vec::new();
        let mut procs = self.procs.into_iter();
        if let Some(first) = procs.next() {
            all = first.view.warnings;
        }
        let mut retired = self.retired_warnings;
        all.append(&mut retired);
        for p in procs {
            retire(p, None, &mut all);
        }
        (all, self.subprocesses_sampled)
    }
}

/// Keep the warnings of `p`, no longer sampled, naming it; tell `scout` it may attach to its
/// PID again.
fn retire(p: Proc, scout: Option<&Scout>, warnings: &mut Vec<String>) {
    let pid = p.view.pid;
    warnings.extend(
        p.view
            .warnings
            .into_iter()
            .map(|w| format!("process {pid}: {w}")),
    );
    if let Some(s) = scout {
        s.forget(pid);
    }
}
