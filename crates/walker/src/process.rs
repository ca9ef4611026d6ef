//! The process being read: its memory, its interpreter's layout and the roots the locate step
//! found, with the lookups that start from the roots (the interpreter list, the GIL holder).

use std::collections::HashSet;

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::{GilModel, Layout, RuntimeModel};

use crate::error::WalkError;
use crate::limits::MAX_INTERPRETERS;

/// Up to this span, the interpreter fields we need are fetched in one read.
const MAX_FIELD_SPAN: usize = 4096;

/// Addresses the locate step found; which ones are needed depends on the layout's shapes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roots {
    /// Address of `_PyRuntime` (3.7+).
    pub runtime: Option<u64>,
    /// Address of the `interp_head` static (≤3.6).
    pub interp_head: Option<u64>,
    /// Address of the `_PyThreadState_Current` variable (≤3.6): the GIL holder.
    pub tstate_current: Option<u64>,
}

/// The memory, layout and roots of one target process.
#[derive(Debug)]
pub(crate) struct Process<M: RemoteMemory> {
    /// The target's memory.
    pub(crate) mem: M,
    /// Its interpreter's layout.
    pub(crate) layout: Layout,
    /// Where its interpreter list and GIL holder are found.
    pub(crate) roots: Roots,
}

impl<M: RemoteMemory> Process<M> {
    /// Interpreter states `(address, id)`, main interpreter's list order. The id is
    /// `PyInterpreterState.id` where it exists (3.7+), else the position in the list. `seen` is
    /// scratch space for the cycle check.
    pub(crate) fn interpreters(
        &self,
        seen: &mut HashSet<u64>,
    ) -> Result<Vec<(u64, i64)>, WalkError> {
        let layout = &self.layout;
        let mut addr = self.first_interpreter()?;
        let mut out = Vec::new();
        seen.clear();
        while addr != 0 {
            if out.len() >= MAX_INTERPRETERS || !seen.insert(addr) {
                return Err(WalkError::Unbounded {
                    what: "interpreter",
                    limit: MAX_INTERPRETERS,
                });
            }
            let (next, id) = match layout.interp_id {
                Some(off) => {
                    let [next, id] = self.read_words(addr, [layout.interp_next, off])?;
                    (next, id as i64)
                }
                // ≤3.6 interpreters have no id; the main interpreter is the last one created,
                // but the list position is the only stable label we have.
                None => (
                    self.mem
                        .read_u64(addr.wrapping_add(u64::from(layout.interp_next)))?,
                    out.len() as i64,
                ),
            };
            out.push((addr, id));
            addr = next;
        }
        Ok(out)
    }

    /// The address of the first interpreter state (the head of the list).
    pub(crate) fn first_interpreter(&self) -> Result<u64, WalkError> {
        let at = self.interp_head_address()?;
        Ok(self.mem.read_u64(at)?)
    }

    /// Where the pointer to the first interpreter lives.
    pub(crate) fn interp_head_address(&self) -> Result<u64, WalkError> {
        match self.layout.runtime_model {
            RuntimeModel::PyRuntime37 => {
                let runtime = self.roots.runtime.ok_or_else(|| {
                    WalkError::Unsupported(
                        "the address of _PyRuntime is unknown, so the interpreter list cannot be \
                         found; the interpreter binary may be stripped of its dynamic symbols"
                            .into(),
                    )
                })?;
                let off = self.layout.runtime_interpreters_head.ok_or_else(|| {
                    WalkError::Unsupported("layout lacks _PyRuntime.interpreters.head".into())
                })?;
                Ok(runtime.wrapping_add(u64::from(off)))
            }
            RuntimeModel::InterpHead => self.roots.interp_head.ok_or_else(|| {
                WalkError::Unsupported(
                    "the address of the interp_head static is unknown (it comes from the \
                     interpreter's symbol table): the interpreter list cannot be found"
                        .into(),
                )
            }),
        }
    }

    /// Where the GIL holder is recorded once per process (≤3.11): `None` when it is
    /// recorded per interpreter or the root is unknown.
    pub(crate) fn global_gil_address(&self) -> Option<u64> {
        match self.layout.gil_model {
            // Include/pystate.h (≤3.6): `_PyThreadState_Current` is NULL while the GIL is free.
            GilModel::CurrentSymbol => self.roots.tstate_current,
            // Include/internal/pycore_runtime.h (3.7–3.11): `gilstate.tstate_current` is swapped
            // to NULL by PyEval_SaveThread when a thread releases the GIL.
            GilModel::RuntimeTstateCurrent => self
                .roots
                .runtime
                .zip(self.layout.runtime_tstate_current)
                .map(|(r, off)| r.wrapping_add(u64::from(off))),
            GilModel::InterpGilPointer => None,
        }
    }

    /// 3.12+ (Include/internal/pycore_ceval_state.h, pycore_gil.h): `interp->ceval.gil` points at
    /// the `_gil_runtime_state` in use; `last_holder` is the holder while `locked` is set.
    pub(crate) fn gil_holder_at(&self, gil: u64) -> Result<Option<u64>, WalkError> {
        let layout = &self.layout;
        let (Some(locked), Some(holder)) = (layout.gil_locked, layout.gil_last_holder) else {
            return Ok(None);
        };
        if gil == 0 || self.mem.read_i32(gil.wrapping_add(u64::from(locked)))? == 0 {
            return Ok(None);
        }
        Ok(Some(self.mem.read_u64(gil.wrapping_add(u64::from(holder)))?).filter(|&t| t != 0))
    }

    /// Read the u64s at `base + offs[i]`, in one read when they lie close together.
    fn read_words<const N: usize>(&self, base: u64, offs: [u32; N]) -> Result<[u64; N], WalkError> {
        let mut out = [0u64; N];
        let lo = offs.iter().copied().min().unwrap_or(0) as usize;
        let hi = offs.iter().copied().max().unwrap_or(0) as usize + 8;
        if hi - lo <= MAX_FIELD_SPAN {
            let buf = self
                .mem
                .read_vec(base.wrapping_add(lo as u64), hi - lo, MAX_FIELD_SPAN)?;
            for (o, off) in out.iter_mut().zip(offs) {
                *o = le::u64_at(&buf, off as usize - lo).ok_or(WalkError::Corrupt {
                    what: "field span",
                    addr: base,
                })?;
            }
        } else {
            for (o, off) in out.iter_mut().zip(offs) {
                *o = self.mem.read_u64(base.wrapping_add(u64::from(off)))?;
            }
        }
        Ok(out)
    }
}
