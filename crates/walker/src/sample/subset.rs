//! Which thread states a sample reads: all of them at a full check, when every thread is
//! wanted, or on a layout without `prev` links (2.7); otherwise only those of the threads that
//! matter, with what proves the plan still holds for them. The rules are in the module
//! documentation of `sample` ("Thread states read only where they matter").

use strobe_memory::{MemError, RemoteMemory};
use strobe_python_abi::Layout;

use crate::process::Process;
use crate::sample::shapes::{T_NATIVE, T_THREAD_ID};
use crate::sample::state::SamplingState;
use crate::sample::Retry;

impl SamplingState {
    /// Mark in `scratch.read` the thread states this attempt reads, from `scratch.wanted`:
    /// every one on a `full` check or without `prev` links; else each interpreter's head, and
    /// each thread that is wanted or whose ids are not settled, with its two list neighbours.
    /// Returns whether some are left unread.
    pub(crate) fn choose_states(&mut self, layout: &Layout, full: bool) -> bool {
        let n = self.plan.threads.len();
        let read = &mut self.scratch.read;
        read.clear();
        if full || layout.tstate_prev.is_none() {
            read.resize(n, true);
            return false;
        }
        read.resize(n, false);
        for interp in &self.plan.interps {
            let range = interp.threads.clone();
            if let Some(head) = read.get_mut(range.start) {
                *head = range.start < range.end;
            }
            for j in range.clone() {
                let matters = self.scratch.wanted.get(j).copied().unwrap_or(true)
                    || !self.plan.threads[j].settled;
                if !matters {
                    continue;
                }
                read[j] = true;
                if j > range.start {
                    read[j - 1] = true;
                }
                if j + 1 < range.end {
                    read[j + 1] = true;
                }
            }
        }
        read.iter().any(|&r| !r)
    }

    /// Remember the ids read for planned thread `j` (at `at` in the batch); a change makes the
    /// next delivered sample work out which ids are settled again.
    pub(crate) fn note_ids(&mut self, j: usize, ids: (u64, Option<u32>)) {
        let thread = &mut self.plan.threads[j];
        if thread.ids != ids {
            thread.ids = ids;
            self.scratch.ids_changed = true;
        }
    }

    /// Work out [`ThreadPlan::settled`](crate::sample::state::ThreadPlan::settled) for every
    /// planned thread, if some ids changed since it was last worked out.
    pub(crate) fn settle_ids(&mut self, layout: &Layout) {
        if !std::mem::take(&mut self.scratch.ids_changed) {
            return;
        }
        let by_id = &mut self.scratch.by_id;
        by_id.clear();
        by_id.extend(
            self.plan
                .threads
                .iter()
                .enumerate()
                .map(|(j, t)| (t.ids.0, j)),
        );
        by_id.sort_unstable();
        let has_native = layout.tstate_native_thread_id.is_some();
        for (k, &(id, j)) in by_id.iter().enumerate() {
            let shared = (k > 0 && by_id[k - 1].0 == id)
                || by_id.get(k + 1).is_some_and(|&(next, _)| next == id);
            let native_known = !has_native || self.plan.threads[j].ids.1.is_some();
            self.plan.threads[j].settled = id != 0 && native_known && !shared;
        }
    }

    /// Read the state of planned thread `j`, which this attempt left unread, on its own (the
    /// GIL holder, whose frames every sample reads), and check its links against the plan.
    pub(super) fn fetch_state<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        interp_index: usize,
        j: usize,
    ) -> Result<(), Retry> {
        let tstate = self.plan.threads[j].tstate;
        // A fault: its memory went away, the thread left.
        let gone = |e: MemError| match e {
            MemError::Fault { .. } => Retry::Stale,
            e => Retry::Fail(e.into()),
        };
        let mut start = None;
        for &(off, len) in self.shapes.tstate.reads() {
            let at = self
                .scratch
                .batch
                .fetch(&process.mem, tstate.wrapping_add(off), len)
                .map_err(gone)?;
            start.get_or_insert(at);
        }
        let Some(start) = start else {
            return Err(Retry::Stale);
        };
        let has_prev = process.layout.tstate_prev.is_some();
        if !self.links_as_planned(start, interp_index, j, has_prev) {
            return Err(Retry::Stale);
        }
        let at = &mut self.scratch.thread_at[j];
        at.tstate = Some(start);
        at.task = match self.task_word {
            Some(off) => Some(
                self.scratch
                    .batch
                    .fetch(&process.mem, tstate.wrapping_add(off), 8)
                    .map_err(gone)?,
            ),
            None => None,
        };
        Ok(())
    }

    /// The ids of the thread state at `at` in the batch.
    pub(crate) fn ids_at(&self, at: usize) -> Option<(u64, Option<u32>)> {
        let buf = self.scratch.batch.buf();
        let thread_id = self.shapes.tstate.u64(buf, at, T_THREAD_ID)?;
        let native_id = self
            .shapes
            .tstate
            .u64(buf, at, T_NATIVE)
            .and_then(|v| u32::try_from(v).ok())
            .filter(|&t| t != 0);
        Some((thread_id, native_id))
    }
}
