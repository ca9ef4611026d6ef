//! Frames that are not Python's, on top of a thread's stack: the exception the thread raises
//! or handles (`<raise T>`, [`RawThread::exception`]) and `<GC>` while it runs the cyclic
//! garbage collector ([`RawThread::gc`]), on a stack built from the Python frames
//! ([`topped_stack`]), a merged native stack ([`on_top`]) or a task-aware one (see
//! `tasks::build_stack`).
//!
//! [`RawThread::exception`]: strobe_walker::RawThread::exception
//! [`RawThread::gc`]: strobe_walker::RawThread::gc

use std::collections::HashMap;

use strobe_aggregate::{exception_label, FrameId, FrameKey, FxBuild, SamplerSide, StackId};
use strobe_memory::RemoteMemory;
use strobe_walker::Walker;

use crate::failure::RoundError;
use crate::memo::{ThreadMemo, MAX_FRAME_CACHE};

/// The frames that are not Python's to put on top of a thread's stack: the exception it
/// raises or handles (`<raise T>`, [`RawThread::exception`]), then `<GC>` if it runs the
/// cyclic garbage collector ([`RawThread::gc`]). Empty (no allocation) for most samples.
pub(crate) fn top_frames(
    side: &mut SamplerSide,
    exception: Option<FrameId>,
    gc: bool,
) -> Result<Vec<FrameId>, RoundError> {
    let mut top = Vec::new();
    top.extend(exception);
    if gc {
        let gc = side
            .interner()
            .intern_frame(&FrameKey::gc())
            .map_err(|e| RoundError::Fatal(e.into()))?;
        top.push(gc);
    }
    Ok(top)
}

/// The stack [`stack_of`] just interned for `memo` with `top` ([`top_frames`]) on it. Costs a
/// lookup for the stack, only in samples that have such frames.
pub(crate) fn topped_stack(
    memo: &ThreadMemo,
    fresh: &mut Vec<FrameId>,
    side: &mut SamplerSide,
    top: &[FrameId],
) -> Result<StackId, RoundError> {
    fresh.clear();
    fresh.extend_from_slice(&memo.ids);
    fresh.extend_from_slice(top);
    side.interner()
        .intern_stack(fresh)
        .map_err(|e| RoundError::Fatal(e.into()))
}

/// Stack `base` (just interned: a merged native stack) with `top` on it.
pub(crate) fn on_top(
    fresh: &mut Vec<FrameId>,
    side: &mut SamplerSide,
    base: StackId,
    top: &[FrameId],
) -> Result<StackId, RoundError> {
    if top.is_empty() || !side.interner().tables().holds_stack(base) {
        return Ok(base);
    }
    fresh.clear();
    fresh.extend_from_slice(side.interner().tables().stack(base));
    fresh.extend_from_slice(top);
    side.interner()
        .intern_stack(fresh)
        .map_err(|e| RoundError::Fatal(e.into()))
}

/// The `<raise T>` frame for exception type `type_addr` (cached per type in `cache`), or
/// `None` when the walker no longer holds the type's name (its cache was emptied since the
/// sample: the sample keeps its exception flag, without the frame).
pub(crate) fn exception_frame<M: RemoteMemory>(
    cache: &mut HashMap<u64, FrameId, FxBuild>,
    walker: &Walker<M>,
    side: &mut SamplerSide,
    type_addr: u64,
) -> Result<Option<FrameId>, RoundError> {
    if let Some(&id) = cache.get(&type_addr) {
        return Ok(Some(id));
    }
    let Some(name) = walker.exception_name(type_addr) else {
        return Ok(None);
    };
    let id = side
        .interner()
        .intern_frame(&FrameKey::exception(&exception_label(&name)))
        .map_err(|e| RoundError::Fatal(e.into()))?;
    if cache.len() >= MAX_FRAME_CACHE {
        cache.clear();
    }
    cache.insert(type_addr, id);
    Ok(Some(id))
}
