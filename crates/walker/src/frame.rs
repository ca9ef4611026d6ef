//! Decoding one Python frame from a copy of its bytes.
//!
//! [`FrameDecoder`] resolves, once per layout, where the fields of an interpreter frame (3.11+)
//! or frame object (≤3.10) lie; [`FrameFields`] is what it decodes from one frame's copy.

use strobe_memory::le;
use strobe_python_abi::{FrameModel, Layout};

use crate::error::WalkError;
use crate::limits::{need, struct_len};

/// What one interpreter frame (3.11+) or frame object (≤3.10) tells us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameFields {
    /// The calling frame (`previous` / `f_back`), 0 at the outermost.
    pub(crate) previous: u64,
    /// The code object (tag bits of a 3.14+ stack reference cleared), 0 for none.
    pub(crate) code: u64,
    /// `f_lasti` (≤3.10) or the instruction pointer (3.11+).
    pub(crate) position: i64,
    /// The `owner` byte (3.11+).
    pub(crate) owner: Option<u8>,
    /// Which thread-local bytecode copy the frame executes (3.14 free-threaded), else 0.
    pub(crate) tlbc_index: i32,
    /// 3.11's `is_entry` byte: the frame was pushed by its own evaluation loop call (it was
    /// called from C). Always false in other versions (see [`EntryRule`]).
    pub(crate) is_entry: bool,
}

/// How a layout tells which Python frames an evaluation loop call was entered with: what the
/// native merge needs to pair each `_PyEval_EvalFrameDefault` on the C stack with its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryRule {
    /// ≤3.10: every frame is evaluated by a loop call of its own.
    EveryFrame,
    /// 3.11: the frame's own `is_entry` byte ([`FrameFields::is_entry`]).
    Flag,
    /// 3.12+: the loop call pushes a shim frame (owned by the C stack, or by the interpreter
    /// from 3.14) below its first Python frame, so a frame is an entry when its `previous`
    /// is not the next Python frame of the chain (the walk skips shims), and the outermost
    /// Python frame always is.
    ShimBelow,
}

/// Where the fields of a frame are in its copy, resolved from the layout once: decoding a
/// frame is then a handful of bounds-checked loads. A frame copy is `len` bytes: `iframe_size`
/// for a `_PyInterpreterFrame` (3.11+), or a `PyFrameObject`'s prefix up to `f_lasti` (≤3.10).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameDecoder {
    /// Bytes of one frame copy.
    pub(crate) len: usize,
    /// ≤3.10 frame objects: `position` is the `int f_lasti`; no owner, no tag bits.
    pub(crate) objects: bool,
    previous: usize,
    code: usize,
    position: usize,
    owner: Option<usize>,
    tlbc_index: Option<usize>,
    stackref_mask: u64,
    /// `FRAME_OWNED_BY_CSTACK` / `FRAME_OWNED_BY_INTERPRETER`, or 256 (matches no byte).
    owner_cstack: u16,
    owner_interpreter: u16,
    /// Where 3.11's `is_entry` byte is.
    is_entry: Option<usize>,
    /// How entry frames are told apart in this layout.
    pub(crate) entry_rule: EntryRule,
}

impl FrameDecoder {
    /// The decoder for `layout`'s frames, or why they cannot be decoded.
    pub(crate) fn new(layout: &Layout) -> Result<FrameDecoder, WalkError> {
        let at = |off: Option<u32>, what: &str| need(off, what).map(|o| o as usize);
        let opt = |off: Option<u32>| off.map(|o| o as usize);
        match layout.frame_model {
            FrameModel::FrameObject => {
                let back = need(layout.frame_back, "frame.f_back")?;
                let code = need(layout.frame_code, "frame.f_code")?;
                let lasti = need(layout.frame_lasti, "frame.f_lasti")?;
                let len = (back + 8).max(code + 8).max(lasti + 4);
                Ok(FrameDecoder {
                    len: struct_len(len, "frame object")?,
                    objects: true,
                    previous: back as usize,
                    code: code as usize,
                    position: lasti as usize,
                    owner: None,
                    tlbc_index: None,
                    stackref_mask: u64::MAX,
                    owner_cstack: 256,
                    owner_interpreter: 256,
                    is_entry: None,
                    entry_rule: EntryRule::EveryFrame,
                })
            }
            FrameModel::CFrame311 | FrameModel::Direct313 => Ok(FrameDecoder {
                len: need(layout.iframe_size, "interpreter frame size")
                    .and_then(|n| struct_len(n, "frame"))?,
                objects: false,
                previous: at(layout.iframe_previous, "frame.previous")?,
                // 3.14+: f_executable is a `_PyStackRef` whose low bits are tags
                // (Include/internal/pycore_stackref.h).
                code: at(layout.iframe_code, "frame.f_executable")?,
                position: at(layout.iframe_instr_ptr, "frame.instr_ptr")?,
                owner: opt(layout.iframe_owner),
                tlbc_index: opt(layout.iframe_tlbc_index),
                stackref_mask: layout.stackref_mask,
                owner_cstack: layout.owner_cstack.map_or(256, u16::from),
                owner_interpreter: layout.owner_interpreter.map_or(256, u16::from),
                is_entry: opt(layout.iframe_is_entry),
                entry_rule: if layout.iframe_is_entry.is_some() {
                    EntryRule::Flag
                } else {
                    EntryRule::ShimBelow
                },
            }),
        }
    }

    /// The fields of the frame whose copy starts `frame`; `None` when `frame` is shorter than a
    /// frame
    /// or the layout puts a field past the frame's end.
    #[inline]
    pub(crate) fn decode(&self, frame: &[u8]) -> Option<FrameFields> {
        let frame = frame.get(..self.len)?;
        Some(FrameFields {
            previous: le::u64_at(frame, self.previous)?,
            code: le::u64_at(frame, self.code)? & self.stackref_mask,
            position: if self.objects {
                i64::from(le::i32_at(frame, self.position)?)
            } else {
                le::u64_at(frame, self.position)? as i64
            },
            owner: match self.owner {
                Some(o) => Some(*frame.get(o)?),
                None => None,
            },
            tlbc_index: match self.tlbc_index {
                Some(o) => le::i32_at(frame, o)?,
                None => 0,
            },
            is_entry: match self.is_entry {
                Some(o) => *frame.get(o)? != 0,
                None => false,
            },
        })
    }

    /// Frames owned by the C stack or the interpreter are not Python frames
    /// (Include/internal/pycore_frame.h `_frameowner`), nor are frames without a code object.
    #[inline]
    pub(crate) fn is_python(&self, fields: &FrameFields) -> bool {
        // No owner byte (frame objects) matches neither constant, absent ones included.
        let owner = fields.owner.map_or(512, u16::from);
        owner != self.owner_cstack && owner != self.owner_interpreter && fields.code != 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use strobe_python_abi::{layout_for, Flavour};

    fn layout(minor: u8, free_threaded: bool) -> &'static Layout {
        let flavour = Flavour {
            free_threaded,
            debug: false,
        };
        layout_for(3, minor, flavour).expect("generated layout")
    }

    fn put_u64(buf: &mut [u8], off: u32, v: u64) {
        buf[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn frame_objects_decode_f_back_f_code_and_f_lasti() {
        let l = layout(10, false);
        let decoder = FrameDecoder::new(l).unwrap();
        assert!(decoder.objects);
        let mut frame = vec![0u8; decoder.len];
        put_u64(&mut frame, l.frame_back.unwrap(), 0x1000);
        put_u64(&mut frame, l.frame_code.unwrap(), 0x2000);
        let lasti = l.frame_lasti.unwrap() as usize;
        frame[lasti..lasti + 4].copy_from_slice(&(-1i32).to_le_bytes());
        let fields = decoder.decode(&frame).unwrap();
        assert_eq!(
            fields,
            FrameFields {
                previous: 0x1000,
                code: 0x2000,
                position: -1,
                owner: None,
                tlbc_index: 0,
                is_entry: false,
            }
        );
        assert_eq!(decoder.entry_rule, EntryRule::EveryFrame);
        assert!(decoder.is_python(&fields));
        assert!(!decoder.is_python(&FrameFields { code: 0, ..fields }));
        assert_eq!(decoder.decode(&frame[..decoder.len - 1]), None);
    }

    #[test]
    fn interpreter_frames_owned_by_the_c_stack_are_not_python_frames() {
        let l = layout(12, false);
        let decoder = FrameDecoder::new(l).unwrap();
        assert!(!decoder.objects);
        assert_eq!(decoder.len, l.iframe_size.unwrap() as usize);
        let mut frame = vec![0u8; decoder.len + 16];
        put_u64(&mut frame, l.iframe_previous.unwrap(), 0x3000);
        put_u64(&mut frame, l.iframe_code.unwrap(), 0x4000);
        put_u64(&mut frame, l.iframe_instr_ptr.unwrap(), 0x4100);
        let fields = decoder.decode(&frame).unwrap();
        assert_eq!(
            (fields.previous, fields.code, fields.position),
            (0x3000, 0x4000, 0x4100)
        );
        assert!(decoder.is_python(&fields));
        frame[l.iframe_owner.unwrap() as usize] = l.owner_cstack.unwrap();
        assert!(!decoder.is_python(&decoder.decode(&frame).unwrap()));
        // 3.14 adds frames owned by the interpreter.
        let l = layout(14, false);
        let decoder = FrameDecoder::new(l).unwrap();
        let mut frame = vec![0u8; decoder.len];
        put_u64(&mut frame, l.iframe_code.unwrap(), 0x4000);
        assert!(decoder.is_python(&decoder.decode(&frame).unwrap()));
        frame[l.iframe_owner.unwrap() as usize] = l.owner_interpreter.unwrap();
        assert!(!decoder.is_python(&decoder.decode(&frame).unwrap()));
    }

    #[test]
    fn stack_reference_tags_are_cleared_from_the_code_pointer() {
        let l = layout(14, true);
        assert_ne!(l.stackref_mask, u64::MAX, "3.14t tags its stack references");
        let decoder = FrameDecoder::new(l).unwrap();
        let mut frame = vec![0u8; decoder.len];
        put_u64(&mut frame, l.iframe_code.unwrap(), 0x5000 | 1);
        let tlbc = l.iframe_tlbc_index.unwrap() as usize;
        frame[tlbc..tlbc + 4].copy_from_slice(&3i32.to_le_bytes());
        let fields = decoder.decode(&frame).unwrap();
        assert_eq!(fields.code, 0x5000 & l.stackref_mask);
        assert_eq!(fields.tlbc_index, 3);
    }

    #[test]
    fn a_layout_without_a_needed_field_is_unsupported() {
        let mut l = *layout(12, false);
        l.iframe_previous = None;
        let err = FrameDecoder::new(&l).unwrap_err();
        assert!(err.to_string().contains("frame.previous"), "{err}");
        let mut l = *layout(10, false);
        l.frame_back = None;
        assert!(FrameDecoder::new(&l).is_err());
    }
}
