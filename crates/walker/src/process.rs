//! The process being read: its memory, its interpreter's layout and the roots the locate step
//! found, with the lookups that start from the roots (the interpreter list, the GIL holder).

use std::collections::HashSet;

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::{GcModel, GilModel, Layout, RuntimeModel};

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
    /// Address of the collector's `collecting` static (≤3.6, [`GcModel::StaticSymbol`]).
    ///
    /// [`GcModel::StaticSymbol`]: strobe_python_abi::GcModel::StaticSymbol
    pub gc_collecting: Option<u64>,
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

    /// Where the collector's `collecting` flag is once per process (≤3.8): `None` when it is
    /// recorded per interpreter ([`Process::interp_gc_address`]) or its root is unknown.
    pub(crate) fn global_gc_address(&self) -> Option<u64> {
        match self.layout.gc_model {
            // Modules/gcmodule.c (≤3.6): `static int collecting`.
            GcModel::StaticSymbol => self.roots.gc_collecting,
            // Include/internal/mem.h (3.7), pycore_pymem.h (3.8): `_PyRuntime.gc.collecting`.
            GcModel::Runtime => self
                .roots
                .runtime
                .zip(self.layout.gc_collecting)
                .map(|(r, off)| r.wrapping_add(u64::from(off))),
            GcModel::Interp => None,
        }
    }

    /// Where interpreter `interp`'s collector flag is (3.9+: `interp->gc.collecting`,
    /// pycore_gc.h / pycore_interp_structs.h); `None` where it is once per process.
    pub(crate) fn interp_gc_address(&self, interp: u64) -> Option<u64> {
        match self.layout.gc_model {
            GcModel::Interp => self
                .layout
                .gc_collecting
                .map(|off| interp.wrapping_add(u64::from(off))),
            GcModel::StaticSymbol | GcModel::Runtime => None,
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use strobe_python_abi::{layout_for, Flavour};
    use strobe_testkit::ImageMemory;

    /// A 3.12 runtime whose interpreter list holds interpreters with the given ids; returns
    /// the process and the interpreters' addresses.
    fn runtime_with(ids: &[i64]) -> (Process<ImageMemory>, Vec<u64>) {
        let layout = *layout_for(3, 12, Flavour::DEFAULT).unwrap();
        let mut mem = ImageMemory::new();
        let interps: Vec<u64> = ids.iter().map(|_| mem.alloc(4096)).collect();
        for (k, (&at, &id)) in interps.iter().zip(ids).enumerate() {
            let next = interps.get(k + 1).copied().unwrap_or(0);
            mem.write_u64(at + u64::from(layout.interp_next), next);
            mem.write_u64(at + u64::from(layout.interp_id.unwrap()), id as u64);
        }
        let runtime = mem.alloc(4096);
        let head = runtime + u64::from(layout.runtime_interpreters_head.unwrap());
        mem.write_u64(head, interps.first().copied().unwrap_or(0));
        let roots = Roots {
            runtime: Some(runtime),
            ..Roots::default()
        };
        (Process { mem, layout, roots }, interps)
    }

    #[test]
    fn the_interpreter_list_is_read_in_order_with_ids() {
        let (process, interps) = runtime_with(&[0, 3, 7]);
        let mut seen = HashSet::new();
        let got = process.interpreters(&mut seen).unwrap();
        assert_eq!(got, vec![(interps[0], 0), (interps[1], 3), (interps[2], 7)]);
        let (empty, _) = runtime_with(&[]);
        assert_eq!(empty.interpreters(&mut seen).unwrap(), vec![]);
    }

    #[test]
    fn an_interpreter_list_that_loops_is_unbounded() {
        let (mut process, interps) = runtime_with(&[0, 1]);
        let next = u64::from(process.layout.interp_next);
        process.mem.write_u64(interps[1] + next, interps[0]);
        let err = process.interpreters(&mut HashSet::new()).unwrap_err();
        assert!(
            matches!(
                err,
                WalkError::Unbounded {
                    what: "interpreter",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.is_transient());
    }

    #[test]
    fn a_missing_root_is_unsupported_and_says_which() {
        let (mut process, _) = runtime_with(&[0]);
        process.roots = Roots::default();
        let err = process.first_interpreter().unwrap_err();
        assert!(err.to_string().contains("_PyRuntime"), "{err}");
        assert!(!err.is_transient());
        // 3.12 records the GIL per interpreter: no process-wide address.
        assert_eq!(process.global_gil_address(), None);
    }

    #[test]
    fn words_close_together_and_far_apart_are_both_read() {
        let (mut process, _) = runtime_with(&[]);
        let base = process.mem.alloc(3 * MAX_FIELD_SPAN);
        process.mem.write_u64(base + 8, 1);
        process.mem.write_u64(base + 16, 2);
        process.mem.write_u64(base + 2 * MAX_FIELD_SPAN as u64, 3);
        assert_eq!(process.read_words(base, [16, 8]).unwrap(), [2, 1]);
        let far = 2 * MAX_FIELD_SPAN as u32;
        assert_eq!(process.read_words(base, [8, far]).unwrap(), [1, 3]);
    }
}
