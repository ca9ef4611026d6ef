//! Following a coroutine: the frames of a task's coroutine and of every coroutine it awaits
//! in turn (`dump --async`), and where the chain ends (what the innermost one awaits).

use std::collections::HashSet;

use strobe_memory::{le, RemoteMemory};

use super::{Awaited, CoroFrame, Gen, Task, MAX_AWAIT_DEPTH, MAX_FRAME_STACK};
use crate::error::WalkError;
use crate::limits::MAX_STRUCT;
use crate::value::ValueReader;

pub(super) fn awaited<M: RemoteMemory>(values: &mut ValueReader<'_, M>, addr: u64) -> Awaited {
    Awaited {
        addr,
        value: values.repr(addr),
    }
}

/// Put coroutine frame `raw` (at `frame`) on `stack` as `dump --async` shows it: named, with
/// its line and what `--locals` needs to read it.
pub(crate) fn push_coro_frame<M: RemoteMemory>(
    code: &mut crate::code::CodeCache,
    process: &crate::process::Process<M>,
    stack: &mut Vec<CoroFrame>,
    frame: u64,
    raw: crate::RawFrame,
) -> Result<(), WalkError> {
    if let Some(info) = code.code_info(process, raw.code_addr)? {
        stack.push(CoroFrame {
            function: info.function.to_string(),
            filename: info.filename.to_string(),
            line: raw.line,
            frame: crate::locals::FrameRef {
                addr: frame,
                code: raw.code_addr,
            },
        });
    }
    Ok(())
}

/// Follow the task's coroutine and what each coroutine awaits.
pub(super) fn coro_chain<M: RemoteMemory>(
    values: &mut ValueReader<'_, M>,
    code: &mut crate::code::CodeCache,
    process: &crate::process::Process<M>,
    gen: &Gen,
    first: u64,
    task: &mut Task,
) -> Result<(), WalkError> {
    let stack = &mut task.stack;
    let end = follow_coroutines(
        values,
        code,
        process,
        gen,
        first,
        &mut |code, frame, raw| push_coro_frame(code, process, stack, frame, raw),
    )?;
    end.record(task, |obj| awaited(values, obj));
    Ok(())
}

/// Where a chain of coroutines ends.
pub(crate) enum ChainEnd {
    /// The innermost coroutine is not suspended in an `await` (it runs, has not started, or
    /// has finished).
    Running,
    /// It awaits this object (a future, a task, anything not a coroutine).
    Awaits(u64),
    /// Deeper than [`MAX_AWAIT_DEPTH`], or a cycle.
    TooDeep,
}

impl ChainEnd {
    /// Records in `task` where its chain ended: what it awaits (as `awaited` describes the
    /// object), or that its stack was cut.
    pub(crate) fn record(self, task: &mut Task, awaited: impl FnOnce(u64) -> Awaited) {
        match self {
            ChainEnd::Awaits(obj) => task.awaits = Some(awaited(obj)),
            ChainEnd::TooDeep => task.stack_truncated = true,
            ChainEnd::Running => {}
        }
    }
}

/// Follow coroutine `first` and what each awaits, calling `on_frame` with each coroutine's
/// frame (address and, as a sample reports it, code and position), outermost first.
pub(super) fn follow_coroutines<M: RemoteMemory>(
    values: &mut ValueReader<'_, M>,
    code: &mut crate::code::CodeCache,
    process: &crate::process::Process<M>,
    gen: &Gen,
    first: u64,
    on_frame: &mut dyn FnMut(
        &mut crate::code::CodeCache,
        u64,
        crate::RawFrame,
    ) -> Result<(), WalkError>,
) -> Result<ChainEnd, WalkError> {
    let mut obj = first;
    let mut seen = HashSet::new();
    loop {
        if !seen.insert(obj) || seen.len() > MAX_AWAIT_DEPTH {
            return Ok(ChainEnd::TooDeep);
        }
        values.allow_reads(64);
        let ty = values.type_of(obj)?;
        let name = ty.name.to_string();
        if !matches!(name.as_str(), "coroutine" | "generator") {
            if name == "_asyncio.FutureIter" || name == "FutureIter" {
                // futureiterobject: {PyObject_HEAD; FutureObj *future}.
                let fut = values
                    .memory()
                    .read_u64(obj.wrapping_add(u64::from(process.layout.pyobject_size)))?;
                if fut != 0 {
                    return Ok(ChainEnd::Awaits(fut));
                }
            }
            return Ok(ChainEnd::Awaits(obj));
        }
        // The generator's state and its frame, with the frame's stack pointer, in one read.
        let frame = obj.wrapping_add(gen.iframe);
        let span = gen.span_len();
        let bytes =
            values
                .memory()
                .read_vec(obj.wrapping_add(gen.frame_state), span, MAX_STRUCT)?;
        let in_frame = (gen.iframe - gen.frame_state) as usize;
        let fields = bytes
            .get(in_frame..)
            .and_then(|b| gen.decoder.decode(b))
            .ok_or(WalkError::Corrupt {
                what: "coroutine frame",
                addr: frame,
            })?;
        if let Some((lasti, line)) = code.resolve_frame(process, &fields)? {
            let raw = crate::RawFrame {
                code_addr: fields.code,
                lasti,
                line,
            };
            on_frame(code, frame, raw)?;
        }
        let state = bytes.first().copied().unwrap_or(0) as i8;
        if !gen.yield_from.contains(&Some(state)) {
            return Ok(ChainEnd::Running);
        }
        let sp =
            le::u64_at(&bytes, in_frame + gen.stackpointer as usize).ok_or(WalkError::Corrupt {
                what: "coroutine frame",
                addr: frame,
            })?;
        let base = frame.wrapping_add(gen.localsplus);
        if sp <= base || sp - base > MAX_FRAME_STACK || sp % 8 != 0 {
            return Err(WalkError::Corrupt {
                what: "coroutine stack pointer",
                addr: frame,
            });
        }
        // 3.14 keeps the awaited object on top of the stack; 3.15 keeps a tagged null above
        // it (`_PyGen_yf` peeks one deeper): take the first non-null of the two.
        obj = values.memory().read_u64(sp - 8)? & gen.mask;
        if obj == 0 && sp - 8 > base {
            obj = values.memory().read_u64(sp - 16)? & gen.mask;
        }
        if obj == 0 {
            return Ok(ChainEnd::Running);
        }
    }
}
