//! The plan of a sample: walking the interpreter and thread lists link by link when nothing
//! is known (or what was known went stale), checking the lists a batch read against the plan,
//! and the GIL holder of each interpreter.

use std::collections::HashSet;

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::{GilModel, Layout};

use crate::addrmap::AddrMap;
use crate::error::WalkError;
use crate::limits::MAX_THREADS;
use crate::process::Process;
use crate::sample::batch::Batch;
use crate::sample::shapes::{
    G_HOLDER, G_LOCKED, I_GIL, I_NEXT, I_TSTATES, T_INTERP, T_NEXT, T_PREV,
};
use crate::sample::state::{InterpPlan, Plan, SamplingState, ThreadPlan, FULL_CHECK_EVERY};

impl SamplingState {
    /// Walk the interpreter and thread lists one read at a time, remembering what is known
    /// about threads that are still there.
    pub(crate) fn rebuild_plan<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
    ) -> Result<(), WalkError> {
        let layout = &process.layout;
        let mut seen = HashSet::new();
        let interps = process.interpreters(&mut seen)?;
        let mut known: AddrMap<u64, ThreadPlan> = std::mem::take(&mut self.plan.threads)
            .into_iter()
            .map(|t| (t.tstate, t))
            .collect();
        let mut plan = Plan::default();
        let mut batch = Batch::default();
        for (addr, id) in interps {
            let head = process
                .mem
                .read_u64(addr.wrapping_add(u64::from(layout.interp_tstate_head)))?;
            let gil = match (layout.gil_model, layout.interp_ceval_gil) {
                (GilModel::InterpGilPointer, Some(off)) => {
                    process.mem.read_u64(addr.wrapping_add(u64::from(off)))?
                }
                _ => 0,
            };
            let start = plan.threads.len();
            seen.clear();
            let mut tstate = head;
            while tstate != 0 {
                if plan.threads.len() - start >= MAX_THREADS || !seen.insert(tstate) {
                    return Err(WalkError::Unbounded {
                        what: "thread state",
                        limit: MAX_THREADS,
                    });
                }
                batch.clear();
                let at = batch.add_fields(&self.shapes.tstate, tstate);
                batch.read(&process.mem)?;
                let corrupt = WalkError::Corrupt {
                    what: "thread-state layout (field past tstate_size)",
                    addr: tstate,
                };
                let next = self
                    .shapes
                    .tstate
                    .u64(batch.buf(), at, T_NEXT)
                    .ok_or(corrupt.clone())?;
                if self
                    .shapes
                    .tstate
                    .u64(batch.buf(), at, T_INTERP)
                    .ok_or(corrupt)?
                    != addr
                {
                    // The thread exited and its memory was reused, or the list is being edited.
                    return Err(WalkError::Corrupt {
                        what: "thread state whose interp pointer is not its interpreter",
                        addr: tstate,
                    });
                }
                plan.threads
                    .push(known.remove(&tstate).unwrap_or(ThreadPlan {
                        tstate,
                        ..ThreadPlan::default()
                    }));
                tstate = next;
            }
            plan.interps.push(InterpPlan {
                addr,
                id,
                gil,
                threads: start..plan.threads.len(),
            });
        }
        plan.ready = true;
        // The lists were just read link by link; the first sample checks them in full anyway.
        plan.since_full = FULL_CHECK_EVERY;
        self.plan = plan;
        // New threads' ids are not known yet; a thread that left may have shared ids.
        self.scratch.ids_changed = true;
        Ok(())
    }

    /// Whether the lists read in this batch are the remembered ones. `head_off` is where the
    /// interpreter-list head is in the batch on a full check (interpreter fields were read too).
    /// Thread states left unread this attempt are not checked; each interpreter's thread-list
    /// head is, when some are (see "Thread states read only where they matter" in the module
    /// documentation of `sample`).
    pub(crate) fn lists_unchanged(&self, layout: &Layout, head_off: Option<usize>) -> bool {
        let scratch = &self.scratch;
        let plan = &self.plan;
        let buf = scratch.batch.buf();
        if let Some(head_off) = head_off {
            let head = le::u64_at(buf, head_off);
            if head != Some(plan.interps.first().map_or(0, |i| i.addr)) {
                return false;
            }
        }
        let has_prev = layout.tstate_prev.is_some();
        for (i, interp) in plan.interps.iter().enumerate() {
            let first = plan
                .threads
                .get(interp.threads.clone())
                .and_then(|t| t.first())
                .map_or(0, |t| t.tstate);
            if let (Some(at), _) = scratch.interp_at[i] {
                let next = self.shapes.interp.u64(buf, at, I_NEXT);
                if next != Some(plan.interps.get(i + 1).map_or(0, |n| n.addr)) {
                    return false;
                }
                if self.shapes.interp.u64(buf, at, I_TSTATES) != Some(first) {
                    return false;
                }
            }
            if let Some(Some(at)) = scratch.head_at.get(i) {
                if le::u64_at(buf, *at) != Some(first) {
                    return false;
                }
            }
            for j in interp.threads.clone() {
                let Some(at) = scratch.thread_at[j].tstate else {
                    continue;
                };
                if !self.links_as_planned(at, i, j, has_prev) {
                    return false;
                }
            }
        }
        true
    }

    /// Whether the thread state of planned thread `j` of interpreter `i`, read at `at` in the
    /// batch, has the plan's `next`, `prev` (`has_prev`) and `interp`.
    pub(crate) fn links_as_planned(&self, at: usize, i: usize, j: usize, has_prev: bool) -> bool {
        let plan = &self.plan;
        let threads = plan.interps[i].threads.clone();
        let buf = self.scratch.batch.buf();
        let want_next = if j + 1 < threads.end {
            plan.threads[j + 1].tstate
        } else {
            0
        };
        let want_prev = if j > threads.start {
            plan.threads[j - 1].tstate
        } else {
            0
        };
        self.shapes.tstate.u64(buf, at, T_NEXT) == Some(want_next)
            && self.shapes.tstate.u64(buf, at, T_INTERP) == Some(plan.interps[i].addr)
            && (!has_prev || self.shapes.tstate.u64(buf, at, T_PREV) == Some(want_prev))
    }

    /// The GIL holder of planned interpreter `i`.
    pub(crate) fn gil_holder<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        i: usize,
        global_off: Option<usize>,
    ) -> Result<Option<u64>, WalkError> {
        if !self.gil_read {
            return Ok(None);
        }
        let buf = self.scratch.batch.buf();
        match process.layout.gil_model {
            GilModel::CurrentSymbol | GilModel::RuntimeTstateCurrent => Ok(global_off
                .and_then(|off| le::u64_at(buf, off))
                .filter(|&t| t != 0)),
            GilModel::InterpGilPointer => {
                let (at, gil_at) = self.scratch.interp_at[i];
                // Between full checks the pointer is the one the last full check confirmed
                // (it changes only while an interpreter is created or finalised).
                let ptr = match at {
                    Some(at) => self.shapes.interp.u64(buf, at, I_GIL).unwrap_or(0),
                    None => self.plan.interps[i].gil,
                };
                match gil_at {
                    Some(g) if ptr == self.plan.interps[i].gil => {
                        if self.shapes.gil.i32(buf, g, G_LOCKED).unwrap_or(0) == 0 {
                            return Ok(None);
                        }
                        Ok(self.shapes.gil.u64(buf, g, G_HOLDER).filter(|&t| t != 0))
                    }
                    _ => {
                        self.plan.interps[i].gil = ptr;
                        process.gil_holder_at(ptr)
                    }
                }
            }
        }
    }
}
