//! Which fields of each structure a sample reads, from the layout.

use strobe_python_abi::{ExcModel, FrameModel, GilModel, Layout};

use crate::error::WalkError;
use crate::fields::FieldSet;
use crate::frame::FrameDecoder;

// Field indices of the structures read every sample.
pub(crate) const I_NEXT: usize = 0;
pub(crate) const I_TSTATES: usize = 1;
pub(crate) const I_GIL: usize = 2;
pub(crate) const T_NEXT: usize = 0;
pub(crate) const T_INTERP: usize = 1;
pub(crate) const T_THREAD_ID: usize = 2;
pub(crate) const T_NATIVE: usize = 3;
pub(crate) const T_FRAME: usize = 4;
pub(crate) const T_CHUNK: usize = 5;
pub(crate) const T_PREV: usize = 6;
/// The exception being raised: `curexc_type` (≤3.11) or `current_exception` (3.12+).
pub(crate) const T_EXC_RAISED: usize = 7;
/// The exception being handled: `exc_type` (≤3.6) or the `exc_info` pointer (3.7+).
pub(crate) const T_EXC_HANDLED: usize = 8;
/// The thread's own `_PyErr_StackItem`'s exception (`exc_state.exc_type`/`exc_value`, 3.7+):
/// what `exc_info` points at outside generators, so most samples need no further read.
pub(crate) const T_EXC_BOTTOM: usize = 9;
pub(crate) const G_LOCKED: usize = 0;
pub(crate) const G_HOLDER: usize = 1;

/// What a sample reads of each structure, from the layout.
#[derive(Debug, Clone)]
pub(crate) struct Shapes {
    /// `PyInterpreterState`: [`I_NEXT`], [`I_TSTATES`], [`I_GIL`].
    pub(crate) interp: FieldSet,
    /// `PyThreadState`: the `T_` fields.
    pub(crate) tstate: FieldSet,
    /// `_gil_runtime_state` (3.12+): [`G_LOCKED`], [`G_HOLDER`].
    pub(crate) gil: FieldSet,
    /// How a frame is decoded (or why this layout's frames cannot be).
    pub(crate) frame: Result<FrameDecoder, WalkError>,
}

impl Shapes {
    /// What a sample of a target with `layout` reads.
    pub(crate) fn new(layout: &Layout) -> Shapes {
        let w8 = |o: Option<u32>| o.map(|o| (o, 8));
        let gil_ptr = match layout.gil_model {
            GilModel::InterpGilPointer => layout.interp_ceval_gil,
            GilModel::CurrentSymbol | GilModel::RuntimeTstateCurrent => None,
        };
        let interp = FieldSet::new(&[
            w8(Some(layout.interp_next)),
            w8(Some(layout.interp_tstate_head)),
            w8(gil_ptr),
        ]);
        let frame = match layout.frame_model {
            FrameModel::FrameObject => layout.tstate_frame,
            FrameModel::CFrame311 => layout.tstate_cframe,
            FrameModel::Direct313 => layout.tstate_current_frame,
        };
        let tstate = FieldSet::new(&[
            w8(Some(layout.tstate_next)),
            w8(Some(layout.tstate_interp)),
            w8(Some(layout.tstate_thread_id)),
            w8(layout.tstate_native_thread_id),
            w8(frame),
            w8(layout.tstate_datastack_chunk),
            w8(layout.tstate_prev),
            w8(layout
                .tstate_curexc_type
                .or(layout.tstate_current_exception)),
            w8(match layout.exc_model {
                ExcModel::ThreadTypes => layout.tstate_exc_type,
                _ => layout.tstate_exc_info,
            }),
            w8(layout
                .tstate_exc_state
                .zip(layout.stackitem_exc)
                .map(|(state, exc)| state + exc)),
        ]);
        let gil = FieldSet::new(&[
            layout.gil_locked.map(|o| (o, 4)),
            w8(layout.gil_last_holder),
        ]);
        Shapes {
            interp,
            tstate,
            gil,
            frame: FrameDecoder::new(layout),
        }
    }
}
