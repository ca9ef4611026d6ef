//! The frame walk of one thread: following its frame chain from the innermost frame through
//! this sample's copies, reading what they miss, and stopping early where the rest of the
//! stack is proven the same as in the thread's previous sample.
//!
//! Two tight loops do most of the work: [`run_in_chunk`] for 3.11+ frames inside a data-stack
//! chunk copy, [`run_of_objects`] for ≤3.10 frame objects found exactly where the last
//! sample's were. Anything else (the first frame of another chunk, a generator's frame, a frame
//! no copy covers) takes the general path of [`FrameWalk::run`], one frame at a time.

use std::ops::Range;

use strobe_memory::RemoteMemory;

use crate::error::WalkError;
use crate::frame::FrameDecoder;
use crate::limits::MAX_DEPTH;
use crate::process::Process;
use crate::sample::batch::{CopiedRange, Region};
use crate::sample::chunks::{chunk_copy, frame_copy};
use crate::sample::proof::{ChunkRead, MemoCursor, Outside, PreviousWalk, WalkedFrame, MEET_TRIES};
use crate::sample::state::{SamplingState, Scratch, ThreadPlan};

/// Frame-list steps per thread (including frames that are not Python frames) before the
/// list is declared endless.
const MAX_FRAME_STEPS: usize = 4 * MAX_DEPTH;

/// A frame's range is still copied for this many samples after its frame was last seen: a
/// frame that comes and goes (a leaf function called in a loop, whose frame object or C-stack
/// entry frame is reused at the same address) is then found in the copy instead of costing a
/// second read every time it reappears.
const REGION_KEEP_SAMPLES: u8 = 8;

impl SamplingState {
    /// Follow planned thread `thread`'s frame chain from `innermost`, filling `scratch.frames`,
    /// `scratch.regions` (what to copy next time) and `scratch.proof` (what was read).
    /// `copies` are the thread's speculative copies in `scratch.copies`, `current_chunk` its
    /// data-stack chunk (3.11+). Returns whether the stack was cut at [`MAX_DEPTH`], and how many
    /// outermost frames of the thread's memo were proven unchanged instead of walked (they
    /// continue the stack below the frames in `scratch.frames`).
    pub(crate) fn walk_frames<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        thread: usize,
        copies: Range<usize>,
        innermost: u64,
        current_chunk: u64,
    ) -> Result<(bool, usize), WalkError> {
        let decoder = self.shapes.frame.clone()?;
        let plan = &self.plan.threads[thread];
        let mut walk = FrameWalk {
            process,
            decoder,
            thread: plan,
            scratch: &mut self.scratch,
            copies,
            current_chunk,
            chunks_seeded: false,
            // Where the memo's frames (outermost first, at rising addresses) may meet this walk.
            memo_cursor: MemoCursor {
                at_or_below: plan.memo.len(),
                tries_left: if plan.proof.valid { MEET_TRIES } else { 0 },
            },
            cursor: WalkCursor::new(innermost),
        };
        walk.start();
        let truncated = walk.run()?;
        walk.finish(truncated);
        Ok((truncated, walk.cursor.kept))
    }
}

/// Where a walk of one thread's frame chain stands.
#[derive(Debug)]
struct WalkCursor {
    /// The next frame to take (0: the chain ended, or the rest was proven unchanged).
    addr: u64,
    /// Frame-list steps so far (Python frames or not), bounded by [`MAX_FRAME_STEPS`].
    steps: usize,
    /// The cycle check over the frames' addresses.
    cycle: Cycle,
    /// The thread's copy the next frame is probably in: the chunk copy the walk is in, or the
    /// copy after the last frame object found in one.
    hint: usize,
    /// The lowest frame address taken in the current chunk (`u64::MAX`: none yet, 0: they did
    /// not fall, so the walk cannot vouch for itself).
    lowest: u64,
    /// How many outermost frames of the memo were proven unchanged (where the walk stopped).
    kept: usize,
}

impl WalkCursor {
    fn new(innermost: u64) -> WalkCursor {
        WalkCursor {
            addr: innermost,
            steps: 0,
            cycle: Cycle::new(),
            hint: 0,
            lowest: u64::MAX,
            kept: 0,
        }
    }

    /// Count a step to the frame at `at`; an error if the chain is too long or loops.
    #[inline]
    fn step(&mut self, at: u64) -> Result<(), WalkError> {
        self.steps += 1;
        if self.steps > MAX_FRAME_STEPS || self.cycle.step(at) {
            return Err(WalkError::Unbounded {
                what: "frame",
                limit: MAX_DEPTH,
            });
        }
        Ok(())
    }
}

/// One thread's walk in progress.
struct FrameWalk<'a, M: RemoteMemory> {
    process: &'a Process<M>,
    decoder: FrameDecoder,
    /// The thread's plan: its memo and the proof behind it.
    thread: &'a ThreadPlan,
    scratch: &'a mut Scratch,
    /// The thread's speculative copies in `scratch.copies`.
    copies: Range<usize>,
    /// The thread state's data-stack chunk (3.11+), 0 if none.
    current_chunk: u64,
    /// Whether the chunks that may hold frames no copy covers were listed yet.
    chunks_seeded: bool,
    memo_cursor: MemoCursor,
    cursor: WalkCursor,
}

impl<M: RemoteMemory> FrameWalk<'_, M> {
    fn start(&mut self) {
        let scratch = &mut *self.scratch;
        scratch.frames.clear();
        scratch.regions.clear();
        scratch.chunks.clear();
        scratch.copy_used.clear();
        scratch.copy_used.resize(self.copies.len(), false);
        scratch.chunk_copies.clear();
        let mine = scratch.copies[self.copies.clone()].iter();
        scratch
            .chunk_copies
            .extend(mine.enumerate().filter(|(_, c)| c.chunk).map(|(i, _)| i));
        scratch.proof.reset(true);
    }

    /// Walk the chain; returns whether it was cut at [`MAX_DEPTH`].
    fn run(&mut self) -> Result<bool, WalkError> {
        let layout = &self.process.layout;
        let objects = self.decoder.objects;
        let size = self.decoder.len;
        while self.cursor.addr != 0 {
            // The common case on 3.11+: a run of frames inside the chunk copy that holds the
            // next frame, decoded in a tight loop. It stops at the first frame outside that copy
            // (or at the depth limit), which the general path below then handles, or where the
            // rest of the stack is proven the same as in the memo. Only a copy the run takes a
            // frame from is recorded in the proof: the chunk the walk was in last (or the copy
            // after a frame object) recorded as read again would void it (see `Proof::chunk`).
            let in_chunk = if objects {
                None
            } else {
                self.chunk_copy_at(self.cursor.addr, size)
            };
            let scratch = &mut *self.scratch;
            if let Some(index) = in_chunk {
                self.cursor.hint = index;
                if let Some(&copy) = scratch.copies[self.copies.clone()].get(index) {
                    scratch
                        .proof
                        .chunk(&copy, scratch.frames.len(), 0, &mut self.cursor.lowest);
                    let mut previous = PreviousWalk::new(
                        &self.thread.memo,
                        &self.thread.proof,
                        (&scratch.prev_buf, scratch.batch.buf()),
                        &scratch.copies[self.copies.clone()],
                        &mut self.memo_cursor,
                    );
                    previous.enter(&copy);
                    let end_max = run_in_chunk(
                        &self.decoder,
                        scratch.batch.buf(),
                        &copy,
                        &mut self.cursor,
                        &mut scratch.frames,
                        &mut previous,
                    )?;
                    if end_max != 0 {
                        scratch
                            .chunks
                            .note_use(layout, scratch.batch.buf(), &copy, end_max);
                        scratch.proof.chunk(
                            &copy,
                            scratch.frames.len(),
                            end_max,
                            &mut self.cursor.lowest,
                        );
                        if self.cursor.lowest == 0 {
                            scratch.proof.valid = false;
                        }
                        continue;
                    }
                }
            }
            // ≤3.10: a run of frame objects that are, one after the other, exactly where last
            // sample's copies are (the common case: a stack that did not move).
            if objects {
                let mut previous = PreviousWalk::new(
                    &self.thread.memo,
                    &self.thread.proof,
                    (&scratch.prev_buf, scratch.batch.buf()),
                    &scratch.copies[self.copies.clone()],
                    &mut self.memo_cursor,
                );
                let taken = run_of_objects(
                    &self.decoder,
                    &mut previous,
                    &mut scratch.copy_used,
                    &mut self.cursor,
                    (&mut scratch.frames, &mut scratch.regions),
                    &mut scratch.proof.outside,
                )?;
                if taken != 0 {
                    continue;
                }
            }
            if scratch.frames.len() >= MAX_DEPTH {
                return Ok(true);
            }
            let addr = self.cursor.addr;
            self.cursor.step(addr)?;
            let end = addr.checked_add(size as u64).ok_or(WalkError::Corrupt {
                what: "frame address",
                addr,
            })?;
            let (off, in_chunk) = self.locate(addr, end)?;
            let scratch = &mut *self.scratch;
            let fields =
                self.decoder
                    .decode(scratch.batch.bytes(off, size))
                    .ok_or(WalkError::Corrupt {
                        what: if objects {
                            "frame object"
                        } else {
                            "interpreter frame"
                        },
                        addr,
                    })?;
            if !in_chunk {
                // An entry frame on the C stack, or a generator's or coroutine's frame in its
                // object: a proof compares it byte for byte. `below` holds the Python frames
                // before it until the walk is over.
                scratch.proof.outside.push(Outside {
                    addr,
                    len: size,
                    off,
                    below: scratch.frames.len(),
                });
            }
            if self.decoder.is_python(&fields) {
                scratch.frames.push(WalkedFrame {
                    frame: addr,
                    fields,
                    resolved: None,
                    outs: 0,
                    in_chunk,
                    entry: false,
                });
            }
            self.cursor.addr = fields.previous;
        }
        Ok(false)
    }

    /// The index among the thread's copies of the chunk copy holding the whole frame at
    /// `addr` (`size` bytes), if any: the copy the walk is in, else another chunk copy (the
    /// first frame of another chunk, or a chunk frame after a frame outside the chunks).
    #[inline]
    fn chunk_copy_at(&self, addr: u64, size: usize) -> Option<usize> {
        let mine = &self.scratch.copies[self.copies.clone()];
        let end = addr.checked_add(size as u64)?;
        let holds = |i: usize| mine.get(i).is_some_and(|c| c.chunk && c.covers(addr, end));
        if holds(self.cursor.hint) {
            return Some(self.cursor.hint);
        }
        self.scratch
            .chunk_copies
            .iter()
            .copied()
            .find(|&i| holds(i))
    }

    /// Where the bytes of the frame `[addr, end)` are in the batch buffer, read now if no copy
    /// holds them, and whether they are in one of the thread's chunk copies.
    fn locate(&mut self, addr: u64, end: u64) -> Result<(usize, bool), WalkError> {
        let layout = &self.process.layout;
        let objects = self.decoder.objects;
        let size = self.decoder.len;
        let scratch = &mut *self.scratch;
        let mine = &scratch.copies[self.copies.clone()];
        let hit = match mine.get(self.cursor.hint) {
            Some(copy) if copy.covers(addr, end) => Some(self.cursor.hint),
            _ => mine.iter().position(|copy| copy.covers(addr, end)),
        };
        if let Some(index) = hit {
            let copy = mine[index];
            if copy.chunk {
                self.cursor.hint = index;
                scratch
                    .chunks
                    .note_use(layout, scratch.batch.buf(), &copy, end);
                let lowest = &mut self.cursor.lowest;
                scratch
                    .proof
                    .chunk(&copy, scratch.frames.len(), end, lowest);
                *lowest = if addr < *lowest { addr } else { 0 };
                if *lowest == 0 {
                    scratch.proof.valid = false;
                }
            } else {
                self.cursor.hint = index + 1;
                if let Some(used) = scratch.copy_used.get_mut(index) {
                    *used = true;
                }
                scratch.regions.push(Region {
                    addr,
                    len: size,
                    chunk: false,
                    age: 0,
                });
            }
            return Ok((copy.off + (addr - copy.addr) as usize, copy.chunk));
        }
        if let Some(copy) = (!objects)
            .then(|| scratch.chunks.copy_covering(addr, end))
            .flatten()
        {
            scratch
                .chunks
                .note_use(layout, scratch.batch.buf(), &copy, end);
            scratch.proof.valid = false;
            return Ok((copy.off + (addr - copy.addr) as usize, false));
        }
        if !objects && !self.chunks_seeded {
            self.chunks_seeded = true;
            scratch.chunks.seed(
                layout,
                scratch.batch.buf(),
                &scratch.copies[self.copies.clone()],
                self.current_chunk,
            );
        }
        let copied = if objects {
            None
        } else {
            scratch
                .chunks
                .copy_pending(&self.process.mem, layout, &mut scratch.batch, addr, end)
        };
        if let Some(copy) = copied {
            scratch
                .chunks
                .note_use(layout, scratch.batch.buf(), &copy, end);
            scratch.proof.valid = false;
            return Ok((copy.off + (addr - copy.addr) as usize, false));
        }
        let off = scratch.batch.fetch(&self.process.mem, addr, size)?;
        scratch.regions.push(Region {
            addr,
            len: size,
            chunk: false,
            age: 0,
        });
        Ok((off, false))
    }

    /// After the walk: settle the proof's counts, carry on what the part proven unchanged
    /// read, and list what to copy next sample.
    fn finish(&mut self, truncated: bool) {
        let kept = self.cursor.kept;
        let scratch = &mut *self.scratch;
        if truncated {
            scratch.proof.valid = false;
        }
        let total = scratch.frames.len() + kept;
        for outside in &mut scratch.proof.outside {
            outside.below = total - outside.below;
        }
        for read in &mut scratch.proof.chunks {
            read.below = total - read.below;
        }
        if kept > 0 {
            self.carry_proven(kept);
        }
        let scratch = &mut *self.scratch;
        for (index, copy) in scratch.copies[self.copies.clone()].iter().enumerate() {
            let used = scratch.copy_used.get(index).copied().unwrap_or(true);
            if !copy.chunk && !used && copy.age < REGION_KEEP_SAMPLES {
                scratch.regions.push(Region {
                    addr: copy.addr,
                    len: copy.len,
                    chunk: false,
                    age: copy.age + 1,
                });
            }
        }
        scratch.chunks.push_regions(&mut scratch.regions);
    }

    /// What lies below the meeting point (the memo's `kept` outermost frames) was proven
    /// unchanged, not walked: it is used all the same, and the proof carries it on.
    fn carry_proven(&mut self, kept: usize) {
        let layout = &self.process.layout;
        let previous = &self.thread.proof;
        let scratch = &mut *self.scratch;
        let mine = &scratch.copies[self.copies.clone()];
        for read in previous.chunks.iter().filter(|read| read.below < kept) {
            let Some(copy) = chunk_copy(mine, read.addr) else {
                scratch.proof.valid = false;
                continue;
            };
            scratch.chunks.note_use(
                layout,
                scratch.batch.buf(),
                copy,
                read.addr + read.end as u64,
            );
            scratch.proof.chunks.push(ChunkRead {
                off: copy.off,
                len: copy.len,
                ..*read
            });
        }
        let mut hint = 0;
        for outside in previous.outside.iter().filter(|o| o.below < kept) {
            let Some((index, off)) = frame_copy(mine, outside.addr, outside.len, hint) else {
                // `PreviousWalk::proves` found every one of them.
                scratch.proof.valid = false;
                continue;
            };
            hint = index + 1;
            if let Some(used) = scratch.copy_used.get_mut(index) {
                *used = true;
            }
            scratch.regions.push(Region {
                addr: outside.addr,
                len: outside.len,
                chunk: false,
                age: 0,
            });
            scratch.proof.outside.push(Outside { off, ..*outside });
        }
    }
}

/// The frames of one thread's chain that lie in the chunk copy `copy`, from `cursor.addr` on,
/// decoded in a tight loop: stops at the first frame outside the copy, at a null `previous`,
/// at the depth limit, or where `previous` proves the rest of the stack unchanged, leaving the
/// cursor at the frame not taken. Returns the end of the highest frame taken (0: none). A
/// separate function so that its slices and vectors are distinct parameters, which lets the
/// compiler keep their lengths and pointers in registers.
fn run_in_chunk(
    decoder: &FrameDecoder,
    buf: &[u8],
    copy: &CopiedRange,
    cursor: &mut WalkCursor,
    frames: &mut Vec<WalkedFrame>,
    previous: &mut PreviousWalk<'_>,
) -> Result<u64, WalkError> {
    let size = decoder.len as u64;
    let mut end_max = 0u64;
    let mut at = cursor.addr;
    while at != 0 && frames.len() < MAX_DEPTH {
        let rel = at.wrapping_sub(copy.addr);
        if rel.saturating_add(size) > copy.len as u64 {
            break;
        }
        if let Some(memo_index) = previous.candidate(at, copy) {
            if at < cursor.lowest
                && previous.proves(memo_index, at, decoder.len, copy, frames.len())
            {
                cursor.kept = memo_index + 1;
                cursor.lowest = at;
                cursor.addr = 0;
                return Ok(end_max.max(at + size));
            }
        }
        let Some(fields) = buf
            .get(copy.off + rel as usize..)
            .and_then(|bytes| decoder.decode(bytes))
        else {
            break;
        };
        if let Err(e) = cursor.step(at) {
            cursor.addr = at;
            return Err(e);
        }
        end_max = end_max.max(at + size);
        // Frames below in the chunk must sit lower: 0 marks that they did not.
        cursor.lowest = if at < cursor.lowest { at } else { 0 };
        if decoder.is_python(&fields) {
            frames.push(WalkedFrame {
                frame: at,
                fields,
                resolved: None,
                outs: 0,
                in_chunk: true,
                entry: false,
            });
        }
        at = fields.previous;
    }
    cursor.addr = at;
    Ok(end_max)
}

/// Frame objects (≤3.10) of one thread's chain from `cursor.addr` on that start exactly at the
/// speculative copies `copies[cursor.hint]`, `copies[cursor.hint + 1]`, ... (last sample's
/// frames, in walk order), decoded in a tight loop; each is marked in `copy_used`, remembered
/// in `regions` for the next sample and in `outside` for the next proof. Stops at the first
/// frame elsewhere, at a null `f_back`, at the depth limit, or where `previous` proves the
/// rest of the stack unchanged, leaving the cursor there. Returns how many frames it took (the
/// frame met counts).
fn run_of_objects(
    decoder: &FrameDecoder,
    previous: &mut PreviousWalk<'_>,
    copy_used: &mut [bool],
    cursor: &mut WalkCursor,
    (frames, regions): (&mut Vec<WalkedFrame>, &mut Vec<Region>),
    outside: &mut Vec<Outside>,
) -> Result<usize, WalkError> {
    let (buf, copies) = (previous.buf, previous.copies);
    let mut taken = 0;
    let mut at = cursor.addr;
    while at != 0 && frames.len() < MAX_DEPTH {
        let index = cursor.hint;
        let Some(copy) = copies.get(index) else { break };
        if copy.chunk || copy.addr != at || copy.len < decoder.len {
            break;
        }
        let met = previous.candidate_object(at).filter(|&memo_index| {
            previous.proves_object(memo_index, (at, decoder.len, copy.off), index, frames.len())
        });
        let fields = match met {
            Some(_) => None,
            None => match buf.get(copy.off..).and_then(|bytes| decoder.decode(bytes)) {
                Some(fields) => Some(fields),
                None => break,
            },
        };
        if fields.is_some() {
            if let Err(e) = cursor.step(at) {
                cursor.addr = at;
                return Err(e);
            }
        }
        if let Some(used) = copy_used.get_mut(index) {
            *used = true;
        }
        regions.push(Region {
            addr: at,
            len: decoder.len,
            chunk: false,
            age: 0,
        });
        outside.push(Outside {
            addr: at,
            len: decoder.len,
            off: copy.off,
            below: frames.len(),
        });
        cursor.hint = index + 1;
        taken += 1;
        let Some(fields) = fields else {
            // The memo's frames up to this one stand for the rest of the stack.
            cursor.kept = met.map_or(0, |memo_index| memo_index + 1);
            at = 0;
            break;
        };
        if decoder.is_python(&fields) {
            frames.push(WalkedFrame {
                frame: at,
                fields,
                resolved: None,
                outs: 0,
                in_chunk: false,
                entry: false,
            });
        }
        at = fields.previous;
    }
    cursor.addr = at;
    Ok(taken)
}

/// Brent's cycle detection over a pointer chain: O(1) memory and work per step.
#[derive(Debug)]
struct Cycle {
    tortoise: u64,
    power: u32,
    lambda: u32,
}

impl Cycle {
    fn new() -> Cycle {
        Cycle {
            tortoise: 0,
            power: 1,
            lambda: 0,
        }
    }

    /// Whether `addr` closes a cycle.
    fn step(&mut self, addr: u64) -> bool {
        if addr == self.tortoise {
            return true;
        }
        self.lambda += 1;
        if self.lambda == self.power {
            self.tortoise = addr;
            self.power = self.power.saturating_mul(2);
            self.lambda = 0;
        }
        false
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_is_found_whatever_its_length_and_start() {
        for lead in 0..5u64 {
            for len in 1..40u64 {
                let mut cycle = Cycle::new();
                let chain = (1..=lead).chain((0..).map(|i| 1000 + i % len));
                let found = chain.take(10_000).position(|addr| cycle.step(addr));
                let found = found.expect("cycle detected");
                // Brent's method finds it within a small multiple of lead + length.
                assert!(
                    found as u64 <= 4 * (lead + len) + 2,
                    "{lead} {len}: {found}"
                );
            }
        }
    }

    #[test]
    fn a_chain_without_a_cycle_is_not_reported() {
        let mut cycle = Cycle::new();
        assert!((1..100_000u64).all(|addr| !cycle.step(addr)));
    }

    #[test]
    fn the_step_bound_ends_a_long_chain() {
        let mut cursor = WalkCursor::new(1);
        for addr in 1..=MAX_FRAME_STEPS as u64 {
            cursor.step(addr).unwrap();
        }
        let err = cursor.step(u64::MAX).unwrap_err();
        assert!(matches!(err, WalkError::Unbounded { what: "frame", .. }));
    }
}
