//! `dump --locals`: each walked frame paired with the frame found again from its thread state
//! (by code object, the outermost part that is still the same on a running thread), its
//! locals read, and put onto the snapshot's frames.

use strobe_walker::locals::{FrameRef, LocalsReader};
use strobe_walker::walk::{PyFrame, ThreadStack};

use crate::snapshot::{FrameKind, FrameSnapshot, LocalSnapshot, ThreadSnapshot};
use crate::Target;

impl Target {
    /// The locals of every frame of `stacks`, thread by thread, frame by frame. A thread's
    /// frames are found again from its thread state and paired with the walked ones by code
    /// object: all of them when nothing changed in between; otherwise, on a running target,
    /// the outermost frames that are still the same, the others saying the stack changed.
    pub(crate) fn read_locals(&self, stacks: &[ThreadStack]) -> Vec<Vec<FrameLocals>> {
        let mem = self.walker.memory();
        let layout = self.walker.layout();
        let mut reader = LocalsReader::new(mem, layout);
        stacks
            .iter()
            .map(|t| {
                let n = t.frames.len();
                let refs = match strobe_walker::locals::thread_frames(mem, layout, t.tstate_addr) {
                    Ok(refs) => refs,
                    Err(e) => return vec![Err(format!("locals are unavailable: {e}")); n],
                };
                let pairs = pair_frames(&t.frames, &refs);
                pairs
                    .into_iter()
                    .map(|r| match r {
                        Some(r) => reader
                            .frame_locals(r)
                            .map(|locals| locals.into_iter().map(local_snapshot).collect())
                            .map_err(|e| format!("locals are unavailable: {e}")),
                        None => Err(STACK_CHANGED.to_string()),
                    })
                    .collect()
            })
            .collect()
    }
}

/// For each walked frame, the frame found again that runs the same code object: every frame
/// when the innermost frames agree (the usual case, and always inside a freeze), else the
/// frames of the common outermost part (what a running thread did not return from).
fn pair_frames(walked: &[PyFrame], found: &[FrameRef]) -> Vec<Option<FrameRef>> {
    let n = walked.len();
    if found.len() >= n && found.iter().zip(walked).all(|(r, f)| r.code == f.code_addr) {
        return found[..n].iter().copied().map(Some).collect();
    }
    let mut out = vec![None; n];
    for (slot, (f, r)) in out
        .iter_mut()
        .rev()
        .zip(walked.iter().rev().zip(found.iter().rev()))
    {
        if f.code_addr != r.code {
            break;
        }
        *slot = Some(*r);
    }
    out
}

/// One frame's locals, or why they could not be read.
pub(crate) type FrameLocals = Result<Vec<LocalSnapshot>, String>;

pub(crate) const STACK_CHANGED: &str =
    "the stack changed while its locals were read (--blocking reads it at one instant)";

/// Put the locals read for a thread's Python frames (`python`: their function and file, in
/// order) onto its frames, which native frames may have replaced since: the Python frames
/// among them must be the same ones.
pub(crate) fn attach_locals(
    thread: &mut ThreadSnapshot,
    read: Vec<FrameLocals>,
    python: &[(String, String)],
) {
    let now: Vec<&mut FrameSnapshot> = thread
        .frames
        .iter_mut()
        .filter(|f| f.kind == FrameKind::Python)
        .collect();
    let same = now.len() == python.len()
        && now
            .iter()
            .zip(python)
            .all(|(f, (function, file))| f.function == *function && f.filename == *file);
    for (frame, locals) in now.into_iter().zip(read) {
        match locals {
            Ok(locals) if same => frame.locals = Some(locals),
            Ok(_) => frame.locals_error = Some(STACK_CHANGED.to_string()),
            Err(why) => frame.locals_error = Some(why),
        }
    }
}

/// The snapshot's form of a walker's local.
fn local_snapshot(l: strobe_walker::locals::Local) -> LocalSnapshot {
    let kind = l.kind;
    match l.value {
        Some(v) => LocalSnapshot {
            name: l.name,
            kind,
            type_name: v.type_name,
            repr: v.repr,
            truncated: v.truncated,
            unbound: false,
        },
        None => LocalSnapshot {
            name: l.name,
            kind,
            type_name: None,
            repr: "<unbound>".to_string(),
            truncated: false,
            unbound: true,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn walked(codes: &[u64]) -> Vec<PyFrame> {
        codes
            .iter()
            .map(|&code_addr| PyFrame {
                code_addr,
                function: "f".into(),
                filename: "f.py".into(),
                line: None,
                first_line: 1,
                entry: false,
            })
            .collect()
    }

    fn found(codes: &[u64]) -> Vec<FrameRef> {
        codes
            .iter()
            .map(|&code| FrameRef {
                addr: code * 16,
                code,
            })
            .collect()
    }

    #[test]
    fn frames_found_again_pair_with_the_walked_ones_by_code() {
        let same = pair_frames(&walked(&[3, 2, 1]), &found(&[3, 2, 1]));
        assert_eq!(
            same,
            found(&[3, 2, 1]).into_iter().map(Some).collect::<Vec<_>>()
        );
        // A running thread returned from 3 and called 4: only the outer frames pair.
        let moved = pair_frames(&walked(&[3, 2, 1]), &found(&[4, 2, 1]));
        assert_eq!(
            moved,
            vec![None, Some(found(&[2])[0]), Some(found(&[1])[0])]
        );
        // It called deeper: the walked frames are still the outer ones.
        let deeper = pair_frames(&walked(&[2, 1]), &found(&[5, 2, 1]));
        assert_eq!(deeper, vec![Some(found(&[2])[0]), Some(found(&[1])[0])]);
        // Nothing in common.
        assert_eq!(
            pair_frames(&walked(&[2, 1]), &found(&[7])),
            vec![None, None]
        );
        assert_eq!(pair_frames(&walked(&[]), &found(&[7])), vec![]);
    }
}
