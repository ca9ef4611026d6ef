//! The sampling hot path: [`Walker::sample_into`](crate::walk::Walker::sample_into).
//!
//! A sample of a running target costs, in steady state, one batched read of its memory
//! ([`RemoteMemory::read_batch`], one `process_vm_readv` for up to 1024 ranges) and no heap
//! allocation. That read takes, in one go:
//! - the head of the interpreter list, and per interpreter its `next`, thread-list head and GIL
//!   pointer (plus the GIL's `locked`/`last_holder`, 3.12+), or the process-wide GIL holder;
//! - per thread state remembered from the last sample (all of them, or those that matter: see
//!   below): the fields we use (`next`, `interp`, ids, innermost frame, data-stack chunk) and,
//!   on 3.11–3.12, the `current_frame` of the `_PyCFrame` it pointed at;
//! - per thread, speculatively, the memory its frames occupied last time: the used part of each
//!   data-stack chunk (3.11+) plus some slack, frames outside chunks (generators), or every
//!   frame object (≤3.10).
//!
//! Why speculation is safe: bytes copied in this sample's read are the target's bytes at those
//! addresses *now*, whatever the cache believed they were. A frame is taken from a copy only
//! when the copy covers the frame's address (reached through this sample's pointers), so a
//! stale guess costs a miss, never a wrong frame: a miss is read directly (and remembered for
//! the next sample). The lists themselves are validated: if the interpreter or thread lists
//! read in the batch differ from the remembered ones (a thread started or exited), the lists
//! are walked again and the batch is redone. A remembered range that is no longer mapped makes
//! the batch fail; it is forgotten and the batch redone.
//!
//! # Thread states read only where they matter
//! A caller of [`Walker::sample_wanted_into`](crate::walk::Walker::sample_wanted_into) wants
//! the frames of a few threads (those the kernel says run); the others' thread states, ~1.2 KB
//! apart, were most of the read on a target with many threads. So between two full checks
//! (every `FULL_CHECK_EVERY` samples, where everything is read) and when some thread is not
//! wanted, a sample reads the thread states of:
//! - each interpreter's first thread (the list's head), and its thread-list head word
//!   (`interp->threads.head`, 8 bytes);
//! - each thread that is wanted, or whose ids are not settled (0, or shared with another
//!   planned state: a state preallocated for a thread being started has 0 (3.12+) or its
//!   creator's ids (≤3.11) until the thread binds it), and its two neighbours in the plan;
//! - after the batch, the GIL holder's, if it is none of those (its frames are always read).
//!
//! The plan holds for them when: every interpreter's head word is the plan's first thread;
//! every state read has the plan's `next`, `prev` and `interp` (so the head's `prev` is NULL,
//! and a wanted thread's neighbours point back at it). Anything else is a stale plan, as when
//! every state is read. Why that is enough, knowing that a freed state may keep its old bytes:
//! - *A thread added* is linked in at the head, so the head word changes. The head's own
//!   `prev` is not enough: a head that left keeps `prev` NULL in its freed memory, and threads
//!   added after it write the new head's `prev`. The head word also shows an interpreter's last
//!   thread leaving, which only a full check saw when every state was read.
//! - *A thread read that left*: its removal wrote its neighbours' links (`prev->next`,
//!   `next->prev`, or the head word), which are read. A neighbour that left too wrote the
//!   links of the states around it: of a wanted thread and its neighbours, whichever left last
//!   has a link the plan does not have, or the head word moved.
//! - *A freed state reused* by a new thread is linked in at the head (above); reused for
//!   anything else, its links are not the plan's.
//!
//! What is not seen until the next full check: a thread whose state was not read leaving. It
//! is reported meanwhile with its ids as last read and
//! [`RawThread::state_read`](crate::sample::RawThread::state_read) `false` (as are the other
//! unread threads), and as soon as a caller wants it, its state and its neighbours' are read.
//! 2.7 has no `prev` links: every state is read every sample.
//!
//! Frames whose (address, code object, instruction) did not change since the thread's previous
//! sample keep their line without looking at the code object again; for a thread deep in a
//! stable call stack that is all but the innermost frame or two. [`RawThread::unchanged`] tells
//! the caller how many (outermost) frames that was, so it can skip interning them too.
//!
//! Modules, leaves first: `output` (what the caller gets), `batch` (the one read), `shapes`
//! (which fields of each structure it takes), `chunks` (data-stack chunk copies), `proof`
//! (proving the outer stack unchanged), `outer` (the reported frames kept for the next
//! sample), `state` (what is kept between samples), `plan` (the
//! interpreter and thread lists), `subset` (which thread states a sample reads), `frames`
//! (one thread's frame walk), and this module, which
//! runs the attempts of a sample and turns each thread's walk into its part of the output.

mod batch;
mod chunks;
mod frames;
mod outer;
mod output;
mod plan;
mod proof;
mod shapes;
mod state;
mod subset;

use strobe_memory::{le, MemError, RemoteMemory};
use strobe_python_abi::{FrameModel, GilModel};

use crate::code::CodeCache;
use crate::error::WalkError;
use crate::exception::{item_len, ExcFields, ItemCopies};
use crate::frame::EntryRule;
use crate::limits::{need, struct_len};
use crate::process::Process;
use crate::sample::batch::CopiedRange;
use crate::sample::shapes::{T_CHUNK, T_EXC_BOTTOM, T_EXC_HANDLED, T_EXC_RAISED, T_FRAME};
use crate::sample::state::{InterpPlan, ThreadAt, FULL_CHECK_EVERY};

pub use crate::sample::output::{RawFrame, RawSample, RawThread};
pub(crate) use crate::sample::state::SamplingState;

/// Tries per sample when the thread lists change under us, a guess faults or a copy is torn.
const ATTEMPTS: usize = 4;

/// Why an attempt at a sample did not produce one.
enum Retry {
    /// The interpreter or thread lists changed: walk them again.
    Stale,
    /// A speculative range at this address is no longer readable.
    Speculation(u64),
    /// A real failure, reported to the caller.
    Fail(WalkError),
}

impl From<WalkError> for Retry {
    fn from(e: WalkError) -> Retry {
        Retry::Fail(e)
    }
}

impl From<MemError> for Retry {
    fn from(e: MemError) -> Retry {
        Retry::Fail(e.into())
    }
}

/// Whether a failed attempt may have read memory the target was changing (worth one more
/// read), as opposed to a layout strobe cannot read.
fn torn_read(e: &WalkError) -> bool {
    e.is_transient()
}

impl SamplingState {
    /// Sample every thread of every interpreter of `process` into `out` (cleared first),
    /// decoding code objects met for the first time into `code`. See
    /// [`Walker::sample_into`](crate::walk::Walker::sample_into).
    pub(crate) fn sample_into<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        code: &mut CodeCache,
        out: &mut RawSample,
        wanted: &mut dyn FnMut(u64) -> bool,
    ) -> Result<(), WalkError> {
        code.start_sample();
        for attempt in 0..ATTEMPTS {
            out.clear();
            if !self.plan.ready {
                self.rebuild_plan(process)?;
            }
            match self.try_sample(process, code, out, wanted) {
                Ok(()) => return Ok(()),
                // What the batch copied was torn: the target pushed, popped or resumed frames
                // while the kernel copied them (a link to a frame since popped, a cycle
                // through a generator resumed from elsewhere). Those rounds fall on code that
                // moves its frames, so dropping them would bias the profile against it; another
                // read almost always finds the stack settled (the first one does in most cases,
                // a thread being started or ending can take a few).
                Err(Retry::Fail(e)) if attempt + 1 < ATTEMPTS && torn_read(&e) => {
                    self.scratch.torn_reads += 1;
                }
                Err(Retry::Stale) => self.plan.ready = false,
                Err(Retry::Speculation(addr)) => {
                    self.plan.forget_region(addr);
                    if attempt > 0 {
                        self.plan.forget_regions();
                    }
                }
                Err(Retry::Fail(e)) => {
                    out.clear();
                    return Err(e);
                }
            }
        }
        out.clear();
        self.plan.ready = false;
        Err(WalkError::Corrupt {
            what: "thread list (it changed during every attempt to read it)",
            addr: process.interp_head_address()?,
        })
    }

    /// One attempt: the batched read, validation of the lists, then every thread's frames.
    fn try_sample<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        code: &mut CodeCache,
        out: &mut RawSample,
        wanted: &mut dyn FnMut(u64) -> bool,
    ) -> Result<(), Retry> {
        let layout = &process.layout;
        let head_at = process.interp_head_address()?;
        let gil_read = self.gil_read;
        let global_gil = process.global_gil_address().filter(|_| gil_read);
        // Without `prev` links the thread states alone cannot show a new thread.
        let full = self.plan.since_full >= FULL_CHECK_EVERY || layout.tstate_prev.is_none();
        self.scratch.wanted.clear();
        for thread in &self.plan.threads {
            self.scratch.wanted.push(wanted(thread.tstate));
        }
        let subset = self.choose_states(layout, full);
        let scratch = &mut self.scratch;
        scratch.batch.clear();
        scratch.head_at.clear();
        scratch.interp_at.clear();
        scratch.gc_at.clear();
        scratch.thread_at.clear();
        scratch.copies.clear();
        scratch.exc_copies.clear();
        scratch.code_copies.clear();
        let head_off = full.then(|| scratch.batch.add(head_at, 8));
        let global_gil_off = global_gil.map(|a| scratch.batch.add(a, 8));
        // The collector's flag (an `int`), once per process or per interpreter: one more
        // range of the same read.
        let global_gc_off = process.global_gc_address().map(|a| scratch.batch.add(a, 4));
        let item_len = item_len(layout);
        for interp in &self.plan.interps {
            let at = full.then(|| scratch.batch.add_fields(&self.shapes.interp, interp.addr));
            let gil =
                (gil_read && layout.gil_model == GilModel::InterpGilPointer && interp.gil != 0)
                    .then(|| scratch.batch.add_fields(&self.shapes.gil, interp.gil));
            scratch.interp_at.push((at, gil));
            // Some thread states unread: the list's head tells a thread added, or the head
            // leaving, which no state read may show.
            let head = subset.then(|| {
                scratch.batch.add(
                    interp
                        .addr
                        .wrapping_add(u64::from(layout.interp_tstate_head)),
                    8,
                )
            });
            scratch.head_at.push(head);
            let gc = process
                .interp_gc_address(interp.addr)
                .map(|a| scratch.batch.add(a, 4));
            scratch.gc_at.push(gc);
        }
        for (j, thread) in self.plan.threads.iter().enumerate() {
            if !scratch.read[j] {
                // Neither its state nor anything else of it: should it hold the GIL, its
                // state is read on its own after the batch.
                let (copies, exc) = (scratch.copies.len(), scratch.exc_copies.len());
                scratch.thread_at.push(ThreadAt {
                    tstate: None,
                    cframe: None,
                    copies: copies..copies,
                    exc: exc..exc,
                    exc_type: None,
                    task: None,
                });
                continue;
            }
            let tstate = scratch.batch.add_fields(&self.shapes.tstate, thread.tstate);
            // A thread whose frames are not wanted costs its thread-state fields only (not
            // its C frame's word, which is one more range to pin: should it hold the GIL after
            // all, its walk reads the word alone); its regions stay remembered for when it is
            // wanted again.
            let wanted = scratch.wanted[j];
            let cframe = match (layout.frame_model, layout.cframe_current_frame) {
                (FrameModel::CFrame311, Some(off)) if thread.cframe != 0 && wanted => Some(
                    scratch
                        .batch
                        .add(thread.cframe.wrapping_add(u64::from(off)), 8),
                ),
                _ => None,
            };
            let start = scratch.copies.len();
            for region in thread.regions.iter().filter(|_| wanted) {
                let off = scratch.batch.add(region.addr, region.len);
                scratch.copies.push(CopiedRange {
                    addr: region.addr,
                    len: region.len,
                    off,
                    chunk: region.chunk,
                    age: region.age,
                });
            }
            if wanted && thread.memo.is_empty() {
                for &(code, len) in &thread.codes {
                    if !scratch.code_copies.iter().any(|&(c, _)| c == code) {
                        let off = scratch.batch.add(code, len);
                        scratch.code_copies.push((code, off));
                    }
                }
            }
            let exc_start = scratch.exc_copies.len();
            if let Some(len) = item_len {
                for &item in &thread.exc_items {
                    let off = scratch.batch.add(item, len);
                    scratch.exc_copies.push((item, off));
                }
            }
            let exc_type = (thread.exc_instance != 0).then(|| {
                scratch.batch.add(
                    thread
                        .exc_instance
                        .wrapping_add(u64::from(layout.pyobject_ob_type)),
                    8,
                )
            });
            let task = self
                .task_word
                .map(|off| scratch.batch.add(thread.tstate.wrapping_add(off), 8));
            scratch.thread_at.push(ThreadAt {
                tstate: Some(tstate),
                cframe,
                copies: start..scratch.copies.len(),
                exc: exc_start..scratch.exc_copies.len(),
                exc_type,
                task,
            });
        }
        if let Err(e) = scratch.batch.read(&process.mem) {
            return Err(match e {
                MemError::Fault { addr, len } => match self.plan.region_in(addr, len) {
                    Some(region) => Retry::Speculation(region),
                    // A thread state (or its C frame) that went away: the lists changed.
                    None => Retry::Stale,
                },
                e => Retry::Fail(e.into()),
            });
        }
        if !self.lists_unchanged(layout, head_off) {
            return Err(Retry::Stale);
        }

        for interp_index in 0..self.plan.interps.len() {
            let holder = self.gil_holder(process, interp_index, global_gil_off)?;
            let collecting = self.scratch.gc_at[interp_index]
                .or(global_gc_off)
                .and_then(|off| le::i32_at(self.scratch.batch.buf(), off))
                .is_some_and(|flag| flag != 0);
            let interp = self.plan.interps[interp_index].clone();
            // The GIL holder runs Python: its frames are read whether wanted or not, and so
            // its state, if the batch left it out.
            let unread_holder = interp.threads.clone().find(|&j| {
                Some(self.plan.threads[j].tstate) == holder
                    && self.scratch.thread_at[j].tstate.is_none()
            });
            if let Some(j) = unread_holder {
                self.fetch_state(process, interp_index, j)?;
            }
            for thread_index in interp.threads.clone() {
                self.sample_thread(
                    process,
                    code,
                    &interp,
                    thread_index,
                    (holder, collecting),
                    out,
                )?;
            }
        }
        let scratch = &mut self.scratch;
        let code_len = struct_len(layout.code_size, "code object").ok();
        for thread in &mut self.plan.threads {
            scratch.proven += thread.next_keep as u64;
            thread.commit(code_len);
        }
        scratch.batch.swap_buf(&mut scratch.prev_buf);
        self.settle_ids(layout);
        self.plan.since_full = if full {
            0
        } else {
            self.plan.since_full.saturating_add(1)
        };
        Ok(())
    }

    /// Walk planned thread `thread_index` of interpreter `interp` and append it to `out`.
    /// `(holder, collecting)`: the interpreter's GIL holder, and whether its collector runs.
    fn sample_thread<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        code: &mut CodeCache,
        interp: &InterpPlan,
        thread_index: usize,
        (holder, collecting): (Option<u64>, bool),
        out: &mut RawSample,
    ) -> Result<(), Retry> {
        let layout = &process.layout;
        let at = self.scratch.thread_at[thread_index].clone();
        let tstate = self.plan.threads[thread_index].tstate;
        let holds_gil = holder == Some(tstate);
        let Some(tstate_at) = at.tstate else {
            // Not read (nor the GIL holder, whose state is read after the batch): its ids as
            // last read, nothing that changes while it lives.
            let ids = self.plan.threads[thread_index].ids;
            self.skip_walk(thread_index);
            let start = out.frames.len();
            // Not walked, no exception or task known, `state_read` false.
            out.threads.push(RawThread {
                frames: start..start,
                ..unwalked(interp, tstate, ids, holds_gil, collecting && holds_gil)
            });
            return Ok(());
        };
        let (thread_id, native_id) = self.ids_at(tstate_at).ok_or(WalkError::Corrupt {
            what: "thread state",
            addr: tstate,
        })?;
        self.note_ids(thread_index, (thread_id, native_id));
        let buf = self.scratch.batch.buf();
        let field = |field: usize| self.shapes.tstate.u64(buf, tstate_at, field);
        let frame_ptr = field(T_FRAME).ok_or_else(|| {
            WalkError::Unsupported(
                "the interpreter layout lacks the thread state's innermost-frame field, which \
                 its frame model needs"
                    .into(),
            )
        })?;
        let chunk = field(T_CHUNK).unwrap_or(0);
        // The collector runs with the GIL held, on the thread that triggered it: the holder
        // is the collecting thread. Without a known holder (a free-threaded build), no thread
        // is said to collect.
        let gc = collecting && holds_gil;
        let exc = ExcFields {
            raised: field(T_EXC_RAISED).unwrap_or(0),
            handled: field(T_EXC_HANDLED).unwrap_or(0),
            bottom: field(T_EXC_BOTTOM).unwrap_or(0),
        };
        let running_task = at.task.and_then(|off| le::u64_at(buf, off));
        let thread = &mut self.plan.threads[thread_index];
        let exception = if exc.raised == 0 && exc.handled == 0 {
            thread.exc_items.clear();
            thread.exc_instance = 0;
            None
        } else {
            let mut visited = std::mem::take(&mut thread.exc_items);
            visited.clear();
            let mut instance = 0;
            let mut items = ItemCopies {
                buf,
                copies: self.scratch.exc_copies.get(at.exc.clone()).unwrap_or(&[]),
                visited: &mut visited,
                type_word: at.exc_type.map(|off| (thread.exc_instance, off)),
                instance: &mut instance,
            };
            let found = code.exceptions.of_thread(process, tstate, exc, &mut items);
            let thread = &mut self.plan.threads[thread_index];
            thread.exc_items = visited;
            thread.exc_instance = instance;
            found
        };
        // What the thread is; as reported when it is not walked (no frames).
        let base = RawThread {
            exception,
            running_task,
            state_read: true,
            ..unwalked(interp, tstate, (thread_id, native_id), holds_gil, gc)
        };
        if !self.scratch.wanted[thread_index] && !holds_gil {
            self.skip_walk(thread_index);
            let start = out.frames.len();
            out.threads.push(RawThread {
                frames: start..start,
                ..base
            });
            return Ok(());
        }
        let innermost = match layout.frame_model {
            FrameModel::FrameObject | FrameModel::Direct313 => frame_ptr,
            FrameModel::CFrame311 => {
                let off = need(layout.cframe_current_frame, "cframe.current_frame")?;
                if frame_ptr == 0 {
                    0
                } else if let (Some(current_at), true) = (
                    at.cframe,
                    frame_ptr == self.plan.threads[thread_index].cframe,
                ) {
                    le::u64_at(buf, current_at).ok_or(Retry::Stale)?
                } else {
                    self.plan.threads[thread_index].cframe = frame_ptr;
                    process
                        .mem
                        .read_u64(frame_ptr.wrapping_add(u64::from(off)))?
                }
            }
        };
        let (truncated, kept) =
            self.walk_frames(process, thread_index, at.copies, innermost, chunk)?;
        let start = out.frames.len();
        let unchanged = self.resolve_thread(process, code, thread_index, out, kept)?;
        let thread = &mut self.plan.threads[thread_index];
        thread.skipped = false;
        std::mem::swap(&mut thread.regions, &mut self.scratch.regions);
        std::mem::swap(&mut thread.next_memo, &mut self.scratch.frames);
        std::mem::swap(&mut thread.next_proof, &mut self.scratch.proof);
        thread.next_keep = kept;
        out.threads.push(RawThread {
            frames: start..out.frames.len(),
            truncated,
            unchanged,
            walked: true,
            ..base
        });
        Ok(())
    }

    /// Planned thread `thread_index` is not walked this sample: its next walk starts afresh
    /// (nothing of this sample's copy can prove its frames unchanged later).
    fn skip_walk(&mut self, thread_index: usize) {
        let thread = &mut self.plan.threads[thread_index];
        thread.skipped = true;
        thread.next_memo.clear();
        thread.next_keep = 0;
        thread.next_proof.reset(false);
    }

    /// Lines for the frames just walked (reusing the previous sample's where the frame did not
    /// change), then the `kept` outermost frames of the memo that the walk proved unchanged,
    /// appended to `out.frames` innermost first. Returns how many outermost frames were
    /// unchanged.
    fn resolve_thread<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        code: &mut CodeCache,
        thread_index: usize,
        out: &mut RawSample,
        kept: usize,
    ) -> Result<usize, WalkError> {
        let walked = self.scratch.frames.len();
        let memo = &self.plan.threads[thread_index].memo;
        let kept = kept.min(memo.len());
        // The stack from the bottom is memo[..kept], then the walked frames from the last one
        // up; those that match the memo's next ones keep their lines too.
        let mut same = 0;
        while same < walked && kept + same < memo.len() {
            let before = memo[kept + same];
            let now = &mut self.scratch.frames[walked - 1 - same];
            if !now.same_as(&before) {
                break;
            }
            now.resolved = before.resolved;
            same += 1;
        }
        let kept_outs = kept
            .checked_sub(1)
            .and_then(|last| memo.get(last))
            .map_or(0, |frame| frame.outs as usize);
        // A frame the previous sample did not have may run a code object freed and reallocated
        // at an address decoded before (see `CodeCache::check_identities`). The innermost changed frame is usually the same frame
        // at another instruction: not new.
        let moved = memo.get(kept + same).copied();
        let new_frames = self.scratch.frames[..walked - same]
            .iter()
            .enumerate()
            .filter(|&(index, frame)| {
                let same_frame = index + 1 == walked - same
                    && moved.is_some_and(|m| {
                        m.frame == frame.frame && m.fields.code == frame.fields.code
                    });
                !same_frame
            })
            .map(|(_, frame)| (frame.fields.code, frame.frame));
        let copied = (&self.scratch.code_copies[..], self.scratch.batch.buf());
        code.check_identities(process, new_frames, copied);
        for frame in &mut self.scratch.frames[..walked - same] {
            frame.resolved = code.resolve_frame(process, &frame.fields)?;
        }
        // Entry flags, from bytes the walk decoded: the frame's own flag (3.11), or whether
        // its `previous` skips to something that is not the next Python frame (a shim, 3.12+).
        // The next frame after the walked ones is the innermost of the memo's kept frames.
        let rule = self
            .shapes
            .frame
            .as_ref()
            .map_or(EntryRule::EveryFrame, |decoder| decoder.entry_rule);
        let below_walked = kept
            .checked_sub(1)
            .and_then(|i| memo.get(i))
            .map(|f| f.frame);
        for index in 0..walked {
            let next = match self.scratch.frames.get(index + 1) {
                Some(f) => Some(f.frame),
                None => below_walked,
            };
            let frame = &mut self.scratch.frames[index];
            frame.entry = match rule {
                EntryRule::EveryFrame => true,
                EntryRule::Flag => frame.fields.is_entry,
                EntryRule::ShimBelow => next != Some(frame.fields.previous),
            };
        }
        let mut unchanged = kept_outs;
        for (index, frame) in self.scratch.frames.iter().enumerate() {
            if let Some((lasti, line)) = frame.resolved {
                out.frames.push(RawFrame {
                    code_addr: frame.fields.code,
                    lasti,
                    line,
                });
                out.entries.push(frame.entry);
                if index >= walked - same {
                    unchanged += 1;
                }
            }
        }
        // The memo's reported frames, innermost first as the sample lists them.
        let (outer, entries) = self.plan.threads[thread_index]
            .memo_out
            .outermost(kept_outs);
        out.frames.extend_from_slice(outer);
        out.entries.extend_from_slice(entries);
        Ok(unchanged)
    }
}

/// Thread state `tstate` of `interp` with these ids, as reported before anything else is known
/// of it: not walked (no frames), no exception or running task, its state not read.
fn unwalked(
    interp: &InterpPlan,
    tstate: u64,
    (thread_id, native_id): (u64, Option<u32>),
    holds_gil: bool,
    gc: bool,
) -> RawThread {
    RawThread {
        interp_addr: interp.addr,
        interp_id: interp.id,
        tstate_addr: tstate,
        thread_id,
        native_id,
        holds_gil,
        gc,
        ..RawThread::default()
    }
}
