//! What sampling remembers from one sample to the next, as one type, [`SamplingState`]: the
//! plan (interpreters and threads as last seen, and what to copy speculatively for them), the
//! reused buffers, and the shapes of the structures read.

use std::ops::Range;

use strobe_python_abi::Layout;

use crate::sample::batch::{Batch, CopiedRange, Region};
use crate::sample::chunks::ThreadChunks;
use crate::sample::outer::OuterFrames;
use crate::sample::output::RawFrame;
use crate::sample::proof::{Proof, WalkedFrame};
use crate::sample::shapes::Shapes;

/// Samples between two full checks of the interpreter list, each interpreter's fields
/// (thread-list head, GIL pointer) and every thread state. In between, the thread lists are
/// checked from the thread states a sample reads (`prev`, `next`, `interp`): every state when
/// every thread is wanted (a new thread is linked in at the head, so the head's `prev` stops
/// being NULL; a thread that leaves changes its neighbours' links), else only those of the
/// threads that matter with their neighbours, and each interpreter's thread-list head (see
/// "Thread states read only where they matter" in the module documentation of `sample`).
/// What only the full check sees is an interpreter created or destroyed (or, when every
/// state is read, the last thread of one leaving), and a thread no sample wanted leaving, so
/// those show up at most this many samples late.
pub(crate) const FULL_CHECK_EVERY: u32 = 16;

/// Code objects of one thread copied speculatively for their identity checks, at most: those
/// of its last stack, deduplicated, the outermost first (as the memo lists them). A stack with
/// more has the checks of the others read on their own, as before, so the copies save that
/// read only for stacks of up to this many functions (a deep recursion is few of them); each
/// copy is a code object's size (~200 bytes on 3.12).
pub(crate) const MAX_SPECULATED_CODES: usize = 16;

/// Everything [`Walker::sample_into`](crate::walk::Walker::sample_into) keeps between samples.
#[derive(Debug)]
pub(crate) struct SamplingState {
    /// Interpreters and threads as last seen, and what to read speculatively for them.
    pub(crate) plan: Plan,
    /// Buffers reused from sample to sample.
    pub(crate) scratch: Scratch,
    /// Which fields of each structure a sample reads, grouped into as few reads as possible.
    pub(crate) shapes: Shapes,
    /// Offset of a word past the thread state's fields to read with each thread (the running
    /// asyncio task, 3.14+), if asked for.
    pub(crate) task_word: Option<u64>,
    /// Whether samples read the GIL's state (see
    /// [`Walker::sample_wanted_without_gil_into`](crate::walk::Walker::sample_wanted_without_gil_into)).
    pub(crate) gil_read: bool,
}

impl SamplingState {
    /// Nothing known yet about a target with `layout`.
    pub(crate) fn new(layout: &Layout) -> SamplingState {
        SamplingState {
            plan: Plan::default(),
            scratch: Scratch::default(),
            shapes: Shapes::new(layout),
            task_word: None,
            gil_read: true,
        }
    }

    /// Forget the interpreters, threads and stacks seen so far.
    pub(crate) fn forget_plan(&mut self) {
        self.plan = Plan::default();
    }

    /// How many times a sample was read again because a copy was torn.
    pub(crate) fn torn_reads(&self) -> u64 {
        self.scratch.torn_reads
    }

    /// How many frames of delivered samples were proven unchanged instead of walked.
    pub(crate) fn frames_proven(&self) -> u64 {
        self.scratch.proven
    }
}

/// Interpreters and threads as the last sample saw them.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Whether the lists were walked since the plan was last found stale.
    pub(crate) ready: bool,
    /// Samples since the last full check of the lists (see [`FULL_CHECK_EVERY`]).
    pub(crate) since_full: u32,
    /// Interpreters in list order.
    pub(crate) interps: Vec<InterpPlan>,
    /// All threads; each interpreter owns a range.
    pub(crate) threads: Vec<ThreadPlan>,
}

impl Plan {
    /// A speculative region overlapping `[addr, addr + len)` (a failed read may name a range
    /// merged from several requests).
    pub(crate) fn region_in(&self, addr: u64, len: usize) -> Option<u64> {
        let end = addr.saturating_add(len.max(1) as u64);
        let overlaps =
            |start: u64, len: usize| start < end && start.saturating_add(len as u64) > addr;
        self.threads
            .iter()
            .flat_map(|t| &t.regions)
            .find(|r| overlaps(r.addr, r.len))
            .map(|r| r.addr)
            .or_else(|| {
                // An exception item (at most 64 bytes), or an instance's header.
                self.threads
                    .iter()
                    .flat_map(|t| t.exc_items.iter().chain([&t.exc_instance]))
                    .find(|&&at| at != 0 && overlaps(at, 64))
                    .copied()
            })
            .or_else(|| {
                self.threads
                    .iter()
                    .flat_map(|t| &t.codes)
                    .find(|&&(at, len)| overlaps(at, len))
                    .map(|&(at, _)| at)
            })
    }

    /// Stop copying the region that starts at `addr`.
    pub(crate) fn forget_region(&mut self, addr: u64) {
        for t in &mut self.threads {
            t.regions.retain(|r| r.addr != addr);
            t.exc_items.retain(|&item| item != addr);
            t.codes.retain(|&(code, _)| code != addr);
            if t.exc_instance == addr {
                t.exc_instance = 0;
            }
        }
    }

    /// Stop copying anything speculatively (until walks find frames again).
    pub(crate) fn forget_regions(&mut self) {
        for t in &mut self.threads {
            t.regions.clear();
            t.exc_items.clear();
            t.codes.clear();
            t.exc_instance = 0;
        }
    }
}

/// One interpreter of the plan.
#[derive(Debug, Clone)]
pub(crate) struct InterpPlan {
    /// Its `PyInterpreterState`.
    pub(crate) addr: u64,
    /// Its id.
    pub(crate) id: i64,
    /// `interp->ceval.gil` (3.12+), 0 when unknown.
    pub(crate) gil: u64,
    /// Its threads in [`Plan::threads`].
    pub(crate) threads: Range<usize>,
}

/// One thread of the plan, and its stack as last delivered.
#[derive(Debug, Default)]
pub(crate) struct ThreadPlan {
    /// Its `PyThreadState`.
    pub(crate) tstate: u64,
    /// The `_PyCFrame` the thread state pointed at (3.11–3.12), 0 when unknown.
    pub(crate) cframe: u64,
    /// What this thread's frames occupied last time, to copy speculatively.
    pub(crate) regions: Vec<Region>,
    /// The `_PyErr_StackItem`s outside its thread state (generators', coroutines') that its
    /// last sample visited, to copy speculatively.
    pub(crate) exc_items: Vec<u64>,
    /// The exception instance whose type its last sample read (0: none), to copy that
    /// instance's `ob_type` speculatively.
    pub(crate) exc_instance: u64,
    /// The frames of the last sample handed to the caller, **outermost first**, with their
    /// lines: what [`RawThread::unchanged`](crate::sample::RawThread::unchanged) is counted
    /// against, and what an outer part proven unchanged is taken from.
    pub(crate) memo: Vec<WalkedFrame>,
    /// The frames of `memo` that were reported (those with a code object) and their entry
    /// flags, innermost first, so that the outermost ones go into a sample with two copies.
    pub(crate) memo_out: OuterFrames,
    /// What the walk behind `memo` read, to prove its outer part unchanged.
    pub(crate) proof: Proof,
    /// This attempt's newly walked frames (innermost first) over the `next_keep` outermost
    /// frames of `memo` it proved unchanged, and what it read. They replace `memo` and
    /// `proof` only if the whole sample succeeds, so that a retried attempt (the lists changed
    /// half-way) never counts `unchanged` against a walk the caller did not see.
    pub(crate) next_memo: Vec<WalkedFrame>,
    /// See `next_memo`.
    pub(crate) next_keep: usize,
    /// See `next_memo`.
    pub(crate) next_proof: Proof,
    /// Whether this attempt left its frames unread (not wanted): its memo is then dropped at
    /// [`ThreadPlan::commit`] (nothing of this sample's copy can prove its frames later), and
    /// its code objects kept in `codes`.
    pub(crate) skipped: bool,
    /// The code objects its last walked frames ran, (address, bytes to read), kept while its
    /// walks are skipped: once it is wanted again with no memo, every frame of its walk is new
    /// and has its code object's identity checked, and these are copied in the sample's batch
    /// for that (usually the very code objects it runs), so that the check needs no read of
    /// its own ([`crate::code::CodeCache::check_identities`]).
    pub(crate) codes: Vec<(u64, usize)>,
    /// Its thread id and kernel thread id as last read (what a sample that does not read its
    /// state reports).
    pub(crate) ids: (u64, Option<u32>),
    /// Whether those ids are final, so that its state may be left unread between full checks:
    /// the thread id is not 0, the kernel id is known (where the layout has one), and no other
    /// planned thread state has the same thread id. A state preallocated for a thread being
    /// started has 0 (3.12+) or its creator's ids (≤3.11) until the thread binds it.
    pub(crate) settled: bool,
}

impl ThreadPlan {
    /// This attempt's walk becomes the reference for the next sample (the whole sample
    /// succeeded): `memo` keeps the outer frames the walk proved unchanged and takes the
    /// newly walked ones on top.
    pub(crate) fn commit(&mut self, code_len: Option<usize>) {
        if self.skipped {
            if let (Some(len), false) = (code_len, self.memo.is_empty()) {
                self.codes.clear();
                for f in &self.memo {
                    let code = f.fields.code;
                    if f.resolved.is_some() && !self.codes.iter().any(|&(c, _)| c == code) {
                        self.codes.push((code, len));
                    }
                }
                self.codes.truncate(MAX_SPECULATED_CODES);
            }
        } else {
            self.codes.clear();
        }
        let keep = self.next_keep.min(self.memo.len());
        self.memo.truncate(keep);
        let mut outs = self.memo.last().map_or(0, |f| f.outs);
        self.memo_out.keep_outer(outs as usize);
        for walked in self.next_memo.iter().rev() {
            if let Some((lasti, line)) = walked.resolved {
                outs += 1;
                self.memo_out.push_inner(
                    RawFrame {
                        code_addr: walked.fields.code,
                        lasti,
                        line,
                    },
                    walked.entry,
                );
            }
            self.memo.push(WalkedFrame { outs, ..*walked });
        }
        std::mem::swap(&mut self.proof, &mut self.next_proof);
    }
}

/// Buffers reused by every sample.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// This sample's read.
    pub(crate) batch: Batch,
    /// Per planned interpreter: where its fields (full checks only) and its GIL's are in the
    /// batch.
    pub(crate) interp_at: Vec<(Option<usize>, Option<usize>)>,
    /// Per planned interpreter: where its collector flag is in the batch (3.9+; every
    /// sample, it is not one of the fields checked only on full checks).
    pub(crate) gc_at: Vec<Option<usize>>,
    /// Per planned thread.
    pub(crate) thread_at: Vec<ThreadAt>,
    /// Per planned thread: whether the caller wants its frames (else they are read only if
    /// it holds the GIL).
    pub(crate) wanted: Vec<bool>,
    /// Per planned thread: whether this attempt reads its thread state.
    pub(crate) read: Vec<bool>,
    /// Per planned interpreter: where its thread-list head is in the batch, when this attempt
    /// leaves some thread states unread.
    pub(crate) head_at: Vec<Option<usize>>,
    /// A thread's ids changed (or the plan was rebuilt) since [`ThreadPlan::settled`] was last
    /// worked out.
    pub(crate) ids_changed: bool,
    /// Thread ids and plan indices, to find duplicates.
    pub(crate) by_id: Vec<(u64, usize)>,
    /// Speculative copies of all threads.
    pub(crate) copies: Vec<CopiedRange>,
    /// Speculative copies of exception items of all threads: (item, offset in the batch).
    pub(crate) exc_copies: Vec<(u64, usize)>,
    /// Speculative copies of code objects (see [`ThreadPlan::codes`]): (code object, offset
    /// in the batch).
    pub(crate) code_copies: Vec<(u64, usize)>,
    /// Frames of the thread being walked.
    pub(crate) frames: Vec<WalkedFrame>,
    /// Regions of the thread being walked, for its next sample.
    pub(crate) regions: Vec<Region>,
    /// Chunks of the thread being walked.
    pub(crate) chunks: ThreadChunks,
    /// Per speculative copy of the thread being walked: whether a frame was found in it.
    pub(crate) copy_used: Vec<bool>,
    /// Which of the speculative copies of the thread being walked are data-stack chunks.
    pub(crate) chunk_copies: Vec<usize>,
    /// The batch buffer of the last sample handed to the caller (the buffers swap roles after
    /// every such sample): what the memos' proofs point into.
    pub(crate) prev_buf: Vec<u8>,
    /// The proof being gathered by the walk of the thread being walked.
    pub(crate) proof: Proof,
    /// Frames of delivered samples proven unchanged instead of walked, in all.
    pub(crate) proven: u64,
    /// Samples read a second time because the first copy was torn.
    pub(crate) torn_reads: u64,
}

/// Where one planned thread's reads are in the batch.
#[derive(Debug, Clone)]
pub(crate) struct ThreadAt {
    /// Its thread-state fields; `None` when this attempt does not read its state.
    pub(crate) tstate: Option<usize>,
    /// Its `_PyCFrame`'s `current_frame` (3.11–3.12), if read.
    pub(crate) cframe: Option<usize>,
    /// Its speculative copies in [`Scratch::copies`].
    pub(crate) copies: Range<usize>,
    /// Its exception items' copies in [`Scratch::exc_copies`].
    pub(crate) exc: Range<usize>,
    /// Its exception instance's `ob_type` ([`ThreadPlan::exc_instance`]), if read.
    pub(crate) exc_type: Option<usize>,
    /// Its running-task word ([`SamplingState::task_word`]), if read.
    pub(crate) task: Option<usize>,
}
