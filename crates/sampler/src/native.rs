//! Native stacks under `--native`: one thread's native frames and Python frames, taken at the
//! same instant by the target (`strobe_target::Target::native_sample`), merged and interned
//! as one stack.
//!
//! Per thread kept by a round, after the round's own walk has decided that it is kept (filters,
//! idle state): the target captures that thread alone (read without a stop if it was idle and
//! provably still asleep, else stopped alone) and reads every Python stack of the process
//! during the capture, so the merged stack is of one instant. A thread whose stack cannot be
//! merged keeps the Python stack of the round's walk, and the reason is counted for the
//! summary ([`crate::stats::SamplerStats::native_failures`]): never a guessed merge.
//!
//! Every native capture is a walk of the walker, so the round counts it
//! ([`crate::view::ProcessView::walks`]): the per-thread memos of [`crate::memo`] are valid
//! only from one walk to the next.

use std::collections::HashMap;

use strobe_aggregate::{FrameId, FrameKey, FrameKind, FxBuild, SamplerSide, StackId};
use strobe_native::{MergedFrame, NativeFrame, KERNEL_FRAME, TRUNCATED_FRAME};
use strobe_remote::Freeze;
use strobe_target::TargetMemory;
use strobe_target::{NativeStack, Target};
use strobe_walker::{RawFrame, RawSample, RawThread, Walker};

use crate::failure::RoundError;
use crate::memo::{frame_id, FrameCache};

/// Whether native stacks are being taken from a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NativeMode {
    /// Not asked for, or not yet set up (the first round does).
    Off,
    /// Taken.
    On,
    /// Asked for, but the target cannot give them (said once, when it was found).
    Unavailable,
}

/// What the sampler keeps for native stacks of one process.
#[derive(Debug)]
pub(crate) struct NativeView {
    pub(crate) mode: NativeMode,
    /// The Python stacks read during the latest capture.
    raw: RawSample,
    /// The merged stack's frame ids, outermost first (scratch).
    ids: Vec<FrameId>,
    /// `--blocking`: each thread state's stack from the latest freeze.
    frozen: HashMap<u64, NativeOutcome, FxBuild>,
}

/// What [`NativeView::stack`] gave for a thread.
#[derive(Debug)]
pub(crate) enum NativeOutcome {
    /// The merged stack, interned.
    Merged(StackId),
    /// Why there is none (the Python stack is recorded instead).
    Failed(String),
}

/// Which thread to capture, and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NativeTarget<'a> {
    /// The thread as the round's walk saw it.
    pub(crate) thread: &'a RawThread,
    /// Its kernel id as seen from strobe, if known.
    pub(crate) host_tid: Option<u32>,
    /// The round found it idle: it may be read without a stop.
    pub(crate) idle: bool,
    /// Intern Python frames without lines (`--function`); native frames too.
    pub(crate) by_function: bool,
    /// The process's root frame under `--subprocesses`.
    pub(crate) root: Option<FrameId>,
}

impl NativeView {
    pub(crate) fn new() -> NativeView {
        NativeView {
            mode: NativeMode::Off,
            raw: RawSample::new(),
            ids: Vec::new(),
            frozen: HashMap::default(),
        }
    }

    /// Capture, merge and intern the stack of `which`.
    pub(crate) fn stack(
        &mut self,
        target: &mut Target,
        side: &mut SamplerSide,
        cache: &mut FrameCache,
        which: NativeTarget<'_>,
    ) -> Result<NativeOutcome, RoundError> {
        let Some(tid) = which.host_tid.and_then(|h| i32::try_from(h).ok()) else {
            return Ok(NativeOutcome::Failed(
                "the thread's kernel id is unknown, so its native stack cannot be read".into(),
            ));
        };
        let t = which.thread;
        let (stack, index, walker) =
            match target.native_sample(tid, t.thread_id, t.interp_id, which.idle, &mut self.raw) {
                Ok(got) => got,
                Err(why) => return Ok(NativeOutcome::Failed(why)),
            };
        let Some(thread) = self.raw.threads.get(index) else {
            return Ok(NativeOutcome::Failed(
                "the thread vanished from the read".into(),
            ));
        };
        let python = self.raw.frames_of(thread);
        intern_merged(&mut self.ids, side, cache, walker, stack, python, which)
    }

    /// `--blocking`: while `freeze` holds the process, take every thread's native stack and
    /// merge it with the Python frames of the round's walk `raw`, read during the same freeze;
    /// kept by thread state for [`NativeView::take_frozen`]. `hosts` gives each thread's
    /// kernel id as seen from here, where known.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn capture_frozen(
        &mut self,
        target: &mut Target,
        side: &mut SamplerSide,
        cache: &mut FrameCache,
        freeze: &Freeze,
        raw: &RawSample,
        hosts: &[Option<u32>],
        by_function: bool,
        root: Option<FrameId>,
    ) -> Result<(), RoundError> {
        self.frozen.clear();
        for (t, host) in raw.threads.iter().zip(hosts) {
            let which = NativeTarget {
                thread: t,
                host_tid: *host,
                idle: false,
                by_function,
                root,
            };
            let outcome = match host.and_then(|h| i32::try_from(h).ok()) {
                None => NativeOutcome::Failed(
                    "the thread's kernel id is unknown, so its native stack cannot be read".into(),
                ),
                Some(tid) => {
                    let entries = raw.entries_of(t);
                    match target.native_frozen(freeze, tid, t.thread_id, t.interp_id, entries) {
                        Ok((stack, walker)) => intern_merged(
                            &mut self.ids,
                            side,
                            cache,
                            walker,
                            stack,
                            raw.frames_of(t),
                            which,
                        )?,
                        Err(why) => NativeOutcome::Failed(why),
                    }
                }
            };
            self.frozen.insert(t.tstate_addr, outcome);
        }
        Ok(())
    }

    /// What [`NativeView::capture_frozen`] found for the thread state at `tstate`.
    pub(crate) fn take_frozen(&mut self, tstate: u64) -> NativeOutcome {
        self.frozen.remove(&tstate).unwrap_or_else(|| {
            NativeOutcome::Failed("the thread was not in the frozen process's read".into())
        })
    }
}

/// Intern a merged stack, outermost first after `which.root`; `python` are the thread's
/// Python frames the merge indexes.
fn intern_merged(
    ids: &mut Vec<FrameId>,
    side: &mut SamplerSide,
    cache: &mut FrameCache,
    walker: &mut Walker<TargetMemory>,
    stack: NativeStack<'_>,
    python: &[RawFrame],
    which: NativeTarget<'_>,
) -> Result<NativeOutcome, RoundError> {
    ids.clear();
    ids.extend(which.root);
    for m in stack.merged.iter().rev() {
        let id = match *m {
            MergedFrame::Python(i) => match python.get(i) {
                Some(&f) => frame_id(cache, side, walker, f, which.by_function)?,
                None => {
                    return Ok(NativeOutcome::Failed(
                        "the merge named a Python frame the read does not have".into(),
                    ))
                }
            },
            MergedFrame::Native(i) => match stack.native.get(i) {
                Some(f) => intern_native(side, f, which.by_function)?,
                None => {
                    return Ok(NativeOutcome::Failed(
                        "the merge named a native frame the unwind does not have".into(),
                    ))
                }
            },
            MergedFrame::Kernel(_) => {
                intern(side, KERNEL_FRAME, "", None, FrameKind::Kernel, None)?
            }
            MergedFrame::Truncated => {
                intern(side, TRUNCATED_FRAME, "", None, FrameKind::Native, None)?
            }
        };
        ids.push(id);
    }
    let stack = side
        .interner()
        .intern_stack(ids)
        .map_err(|e| RoundError::Fatal(e.into()))?;
    Ok(NativeOutcome::Merged(stack))
}

/// A native frame as interned: its symbol (or `module+0xoffset`), DWARF file and line, and its
/// shared object.
fn intern_native(
    side: &mut SamplerSide,
    f: &NativeFrame,
    by_function: bool,
) -> Result<FrameId, RoundError> {
    let module = f.module.as_ref().map(|m| m.path.as_str());
    let line = if by_function {
        None
    } else {
        f.line.and_then(|l| i32::try_from(l).ok())
    };
    let file = f.file.as_deref().unwrap_or("");
    match &f.function {
        Some(name) => intern(side, name, file, line, FrameKind::Native, module),
        None => {
            let short = f.module.as_ref().map_or("?", |m| m.short_name());
            let name = format!("{short}+{:#x}", f.module_offset);
            intern(side, &name, file, line, FrameKind::Native, module)
        }
    }
}

fn intern(
    side: &mut SamplerSide,
    function: &str,
    filename: &str,
    line: Option<i32>,
    kind: FrameKind,
    module: Option<&str>,
) -> Result<FrameId, RoundError> {
    side.interner()
        .intern_frame(&FrameKey {
            function,
            filename,
            line,
            kind,
            module,
            // DWARF has the subprogram's `DW_AT_decl_line`, but addr2line does not hand it
            // out; finding it would mean a second walk of the unit's entries per function.
            first_line: None,
        })
        .map_err(|e| RoundError::Fatal(e.into()))
}
