//! Proving the outer part of a stack unchanged since the thread's previous sample, without
//! walking it: what a walk read ([`Proof`]), the frames it gave ([`WalkedFrame`], kept as the
//! thread's memo), and the comparison of a new walk against them ([`PreviousWalk`]).

use crate::frame::FrameFields;
use crate::limits::MAX_DEPTH;
use crate::sample::batch::CopiedRange;
use crate::sample::chunks::{chunk_copy, frame_copy};

/// A frame as walked, and what it resolved to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalkedFrame {
    /// Its address.
    pub(crate) frame: u64,
    /// What it holds.
    pub(crate) fields: FrameFields,
    /// `None`: its code slot does not hold a code object (not reported).
    pub(crate) resolved: Option<(i64, Option<i32>)>,
    /// In a memo: how many of the frames up to and including this one (outermost first) were
    /// reported, i.e. how many of `memo_out` they account for.
    pub(crate) outs: u32,
    /// Taken from a data-stack chunk copy (else a generator's or coroutine's frame, in its
    /// object, or a frame object): only these can be where a walk meets the memo.
    pub(crate) in_chunk: bool,
    /// An evaluation loop call was entered with this frame (see [`crate::frame::EntryRule`]);
    /// set when the thread's frames are resolved.
    pub(crate) entry: bool,
}

impl WalkedFrame {
    /// The same frame at the same instruction (its line is then the same too).
    #[inline]
    pub(crate) fn same_as(&self, other: &WalkedFrame) -> bool {
        self.frame == other.frame
            && self.fields.code == other.fields.code
            && self.fields.position == other.fields.position
            && self.fields.tlbc_index == other.fields.tlbc_index
    }
}

/// What one thread's walk read, kept so that the next sample can prove the outer part of the
/// stack unchanged without walking it: the walk's frames below a frame F depend only on the
/// bytes it read for them, so if every one of those bytes is the same in this sample's copy
/// as in the last one, the walk from F on would produce the same frames again.
///
/// Only simple walks vouch for themselves: every Python frame in a data-stack chunk copy, the
/// frames of each chunk taken one after the other at falling addresses (so that below a frame,
/// the walk read only the chunk's prefix up to it, and older chunks), anything else walked
/// (entry frames on the C stack) listed in `outside`, nothing read outside the batch, nothing
/// cut at the depth limit. On ≤3.10 every frame is a frame object, listed in `outside`: below a
/// frame object, the walk read only the frame objects it listed after it.
///
/// Chunks are separate allocations in no order of address (a newer chunk is often below an
/// older one), so frames fall in address only within a chunk: each chunk is recorded once, when
/// the walk takes a frame from it, and a walk that comes back to a chunk after another one
/// (not after frames outside the chunks, such as a coroutine's between two runs of one chunk)
/// vouches for nothing. A stack is proven whatever chunk boundary it crosses and wherever its
/// coroutine frames sit (`tests/walk_proof_live.rs`).
#[derive(Debug, Default)]
pub(crate) struct Proof {
    /// Whether the walk was simple enough to vouch for itself (see above).
    pub(crate) valid: bool,
    /// Chunks in walk order (newest first).
    pub(crate) chunks: Vec<ChunkRead>,
    /// Frames walked outside chunks, in walk order.
    pub(crate) outside: Vec<Outside>,
}

/// A chunk copy a [`Proof`]'s walk took frames from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkRead {
    /// The chunk's address.
    pub(crate) addr: u64,
    /// Where its copy was in that sample's batch buffer.
    pub(crate) off: usize,
    /// The copy's length.
    pub(crate) len: usize,
    /// How far into the copy the walk read (the end of its highest frame).
    pub(crate) end: usize,
    /// Python frames from its first frame on (during the walk: before it).
    pub(crate) below: usize,
}

impl Proof {
    /// Start over for a new walk, which may vouch for itself if `valid`.
    pub(crate) fn reset(&mut self, valid: bool) {
        self.valid = valid;
        self.chunks.clear();
        self.outside.clear();
    }

    /// The walk takes a frame ending at `end` from the chunk copy `copy`, with `walked` Python
    /// frames before it; `lowest` is the lowest frame address taken in the current chunk
    /// (`u64::MAX`: none yet, 0: they did not fall), reset when the walk moves to another.
    #[inline]
    pub(crate) fn chunk(&mut self, copy: &CopiedRange, walked: usize, end: u64, lowest: &mut u64) {
        let read_to = usize::try_from(end.saturating_sub(copy.addr)).unwrap_or(usize::MAX);
        match self.chunks.last_mut() {
            Some(current) if current.addr == copy.addr => {
                current.end = current.end.max(read_to);
                return;
            }
            _ => {}
        }
        if self.chunks.iter().any(|read| read.addr == copy.addr) {
            // Back in a chunk left before.
            self.valid = false;
        }
        *lowest = u64::MAX;
        self.chunks.push(ChunkRead {
            addr: copy.addr,
            off: copy.off,
            len: copy.len,
            end: read_to,
            below: walked,
        });
    }
}

/// A frame of a [`Proof`]'s walk that was not in its chunk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outside {
    /// The frame's address.
    pub(crate) addr: u64,
    /// Its length.
    pub(crate) len: usize,
    /// Where its bytes were in that sample's batch buffer.
    pub(crate) off: usize,
    /// Python frames the walk took after it (during the walk: before it, see `walk_frames`).
    pub(crate) below: usize,
}

/// Tries per walk at proving the rest of a stack unchanged. The innermost frames met first
/// often sit at the same addresses with other contents (a caller's locals changed while it
/// ran, the instruction of a frame that ran since): such a try fails within the few hundred
/// bytes compared first; a try that succeeds compares the whole prefix once.
pub(crate) const MEET_TRIES: u8 = 4;

/// Bytes at the end of a chunk prefix compared before the rest (see `PreviousWalk::same`),
/// after the met frame's own bytes where the walk meets the memo.
const SAME_TAIL_FIRST: usize = 512;

/// ≤3.10: memo frames looked at for each frame object walked (see
/// [`PreviousWalk::candidate_object`]).
const OBJECT_LOOKAHEAD: usize = 4;

/// Where a walk stands against the memo's frames.
#[derive(Debug)]
pub(crate) struct MemoCursor {
    /// The memo's frames `[..at_or_below]` are at or below the frame being walked.
    pub(crate) at_or_below: usize,
    /// Tries at a proof left (see [`MEET_TRIES`]).
    pub(crate) tries_left: u8,
}

/// The last delivered walk of a thread, as a walk in its chunk copy looks at it.
pub(crate) struct PreviousWalk<'a> {
    /// Its frames, outermost first.
    pub(crate) memo: &'a [WalkedFrame],
    /// What it read.
    pub(crate) proof: &'a Proof,
    /// The batch buffer `proof` points into.
    pub(crate) prev_buf: &'a [u8],
    /// This sample's batch buffer.
    pub(crate) buf: &'a [u8],
    /// This sample's copies for the thread.
    pub(crate) copies: &'a [CopiedRange],
    /// Where this walk stands against `memo`.
    pub(crate) cursor: &'a mut MemoCursor,
}

impl<'a> PreviousWalk<'a> {
    /// The previous walk `memo` (with `proof`, over the buffer `prev_buf`) as this sample's
    /// walk over `buf`, with its `copies`, sees it from `cursor`.
    pub(crate) fn new(
        memo: &'a [WalkedFrame],
        proof: &'a Proof,
        (prev_buf, buf): (&'a [u8], &'a [u8]),
        copies: &'a [CopiedRange],
        cursor: &'a mut MemoCursor,
    ) -> PreviousWalk<'a> {
        PreviousWalk {
            memo,
            proof,
            prev_buf,
            buf,
            copies,
            cursor,
        }
    }

    /// Spend one try at proving the memo's frame `index` met at `depth` frames into this
    /// walk: the previous walk's proof, if it may prove it (valid, and within the depth
    /// limit).
    fn spend_try(&mut self, index: usize, depth: usize) -> Option<&'a Proof> {
        self.cursor.tries_left = self.cursor.tries_left.saturating_sub(1);
        let proof = self.proof;
        (proof.valid && depth + index < MAX_DEPTH).then_some(proof)
    }
}

impl PreviousWalk<'_> {
    /// The walk enters the chunk copy `copy` (a run of frames in it follows): the memo's
    /// frames that may meet it are those of the same chunk, which the memo's walk took from
    /// its frame `below - 1` on (outermost first) if its proof lists the chunk. The frames of
    /// chunks the memo's walk took before it (newer ones, inner in the memo) are passed over
    /// at once: chunks are separate allocations, a newer one may sit below an older one in
    /// memory, and its frames would otherwise stop the cursor short of this chunk's.
    #[inline]
    pub(crate) fn enter(&mut self, copy: &CopiedRange) {
        if let Some(read) = self.proof.chunks.iter().find(|r| r.addr == copy.addr) {
            let below = &mut self.cursor.at_or_below;
            *below = (*below).min(read.below);
        }
    }

    /// The memo's frame at `at`, in the chunk copy `copy` (entered with [`Self::enter`]), if it
    /// may be where the stack stops changing. Walks go down the chunk, so the cursor only ever
    /// moves down the memo: O(1) per frame overall.
    #[inline]
    pub(crate) fn candidate(&mut self, at: u64, copy: &CopiedRange) -> Option<usize> {
        let below = &mut self.cursor.at_or_below;
        // Frames outside chunks (generators, coroutines) are passed over: the memo's frames
        // in this chunk alone fall in address from the innermost, and only they can meet
        // here. A frame of another chunk (an older one, met later) stops the cursor.
        let end = copy.addr.saturating_add(copy.len as u64);
        while *below > 0
            && self.memo.get(*below - 1).is_some_and(|f| {
                !f.in_chunk || (f.frame > at && f.frame >= copy.addr && f.frame < end)
            })
        {
            *below -= 1;
        }
        let index = below.checked_sub(1)?;
        (self.cursor.tries_left > 0 && self.memo.get(index)?.frame == at).then_some(index)
    }

    /// Whether the memo's frames `[..=index]` (outermost first; `index` is the frame at `at`,
    /// `size` bytes, in the chunk copy `copy`) are what walking on from `at` would give, with
    /// `depth` frames walked so far: every byte that walk read is the same now. Below `at` the
    /// proof's walk read only the chunk prefix up to the end of the frame at `at` (its frames
    /// fell in address) and the frames it listed as outside, which must be in this sample's
    /// copies.
    #[cold]
    #[inline(never)]
    pub(crate) fn proves(
        &mut self,
        index: usize,
        at: u64,
        size: usize,
        copy: &CopiedRange,
        depth: usize,
    ) -> bool {
        let Some(proof) = self.spend_try(index, depth) else {
            return false;
        };
        // The chunk of `at`: its prefix up to the end of the frame.
        let Some(prefix) = (at - copy.addr)
            .checked_add(size as u64)
            .and_then(|n| usize::try_from(n).ok())
        else {
            return false;
        };
        // The met frame ends the prefix: it is what most often changed (the instruction of
        // a frame that ran since), so its bytes go first and a failing try stops there.
        if !proof
            .chunks
            .iter()
            .any(|read| read.addr == copy.addr && self.same_prefix(read, copy, prefix, size))
        {
            return false;
        }
        // Older chunks the walk went on into: as far as it read them.
        let older_same = proof
            .chunks
            .iter()
            .filter(|read| read.below <= index)
            .all(|read| {
                chunk_copy(self.copies, read.addr)
                    .is_some_and(|now| self.same_prefix(read, now, read.end, 0))
            });
        older_same && self.outside_same(index, 0)
    }

    /// Whether the frames the proof's walk took outside chunks below the memo's frame
    /// `index` (those after it, outermost first: `below <= index`) are all in this sample's
    /// copies, the same bytes; `hint` is where the first of them probably is among them.
    fn outside_same(&self, index: usize, mut hint: usize) -> bool {
        self.proof
            .outside
            .iter()
            .filter(|o| o.below <= index)
            .all(|o| match frame_copy(self.copies, o.addr, o.len, hint) {
                Some((at, now)) => {
                    hint = at + 1;
                    self.same(now, o.off, o.len, o.len)
                }
                None => false,
            })
    }

    /// ≤3.10: the memo's frame object at `at`, if it may be where the stack stops changing.
    /// Frame objects are anywhere in the heap, but a stack changes at its inner end: the memo
    /// frame met is one of the few just outside the last one met (the memo's innermost at
    /// first). O(1) per frame; a stack that lost more frames than that is walked in full.
    #[inline]
    pub(crate) fn candidate_object(&mut self, at: u64) -> Option<usize> {
        if self.cursor.tries_left == 0 {
            return None;
        }
        let below = self.cursor.at_or_below;
        let index = (below.saturating_sub(OBJECT_LOOKAHEAD)..below)
            .rev()
            .find(|&i| self.memo.get(i).is_some_and(|f| f.frame == at))?;
        self.cursor.at_or_below = index;
        Some(index)
    }

    /// ≤3.10: whether the memo's frames `[..=index]` are what walking on from the frame object
    /// at `at` (its copy at `now` in this sample's buffer, `size` bytes, in copy `copy_index`)
    /// would give, with `depth` frames walked so far: its bytes and those of every frame object
    /// the proof's walk took after it are the same now (a walk reads nothing else of them).
    #[cold]
    #[inline(never)]
    pub(crate) fn proves_object(
        &mut self,
        index: usize,
        (at, size, now): (u64, usize, usize),
        copy_index: usize,
        depth: usize,
    ) -> bool {
        let Some(proof) = self.spend_try(index, depth) else {
            return false;
        };
        // The met frame's own entry (`below` counts it: see `FrameWalk::finish`) first: it is
        // what most often changed (its instruction).
        let met = proof
            .outside
            .iter()
            .find(|o| o.addr == at && o.len == size && o.below == index + 1);
        met.is_some_and(|o| self.same(now, o.off, size, size))
            && self.outside_same(index, copy_index + 1)
    }

    /// Whether the first `n` bytes of this sample's copy `now` are those of the last sample's
    /// copy `then` of the same chunk, the last `first` of them compared first.
    fn same_prefix(&self, then: &ChunkRead, now: &CopiedRange, n: usize, first: usize) -> bool {
        n <= then.len && n <= now.len && self.same(now.off, then.off, n, first)
    }

    /// Whether the `n` bytes at `now` in this sample's buffer are those at `then` in the last
    /// sample's, the last `first` of them compared first.
    fn same(&self, now: usize, then: usize, n: usize, first: usize) -> bool {
        let (Some(now), Some(then)) = (
            now.checked_add(n).and_then(|e| self.buf.get(now..e)),
            then.checked_add(n).and_then(|e| self.prev_buf.get(then..e)),
        ) else {
            return false;
        };
        // The innermost frames change most (the instruction of the frame that ran last, the
        // locals of its caller): look at the end first, so that a failing comparison is short.
        let met = n.saturating_sub(first);
        let tail = met.saturating_sub(SAME_TAIL_FIRST);
        now[met..] == then[met..]
            && now[tail..met] == then[tail..met]
            && now[..tail] == then[..tail]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const CHUNK: u64 = 0x10_0000;
    const FRAME: usize = 0x40;

    fn chunk_copy_at(off: usize, len: usize) -> CopiedRange {
        CopiedRange {
            addr: CHUNK,
            len,
            off,
            chunk: true,
            age: 0,
        }
    }

    fn walked(frame: u64) -> WalkedFrame {
        WalkedFrame {
            frame,
            fields: FrameFields {
                previous: 0,
                code: 0x9000,
                position: 0,
                owner: None,
                tlbc_index: 0,
                is_entry: false,
            },
            resolved: None,
            outs: 0,
            in_chunk: true,
            entry: false,
        }
    }

    #[test]
    fn a_proof_records_each_chunk_once_and_fails_on_a_return_to_one() {
        let mut proof = Proof::default();
        proof.reset(true);
        let mut lowest = 0;
        let first = chunk_copy_at(0, 0x200);
        proof.chunk(&first, 0, CHUNK + 0x80, &mut lowest);
        assert_eq!(lowest, u64::MAX);
        lowest = CHUNK + 0x40;
        proof.chunk(&first, 2, CHUNK + 0x100, &mut lowest);
        assert_eq!(lowest, CHUNK + 0x40, "same chunk: not reset");
        assert_eq!(proof.chunks.len(), 1);
        assert_eq!((proof.chunks[0].end, proof.chunks[0].below), (0x100, 0));
        let other = CopiedRange {
            addr: 0x20_0000,
            ..first
        };
        proof.chunk(&other, 3, 0x20_0040, &mut lowest);
        assert_eq!(proof.chunks.len(), 2);
        assert!(proof.valid);
        proof.chunk(&first, 4, CHUNK + 0x40, &mut lowest);
        assert!(!proof.valid);
    }

    /// A cursor at the memo's outermost end, with `tries` tries left.
    fn cursor_at(memo: &[WalkedFrame], tries: u8) -> MemoCursor {
        MemoCursor {
            at_or_below: memo.len(),
            tries_left: tries,
        }
    }

    /// A previous walk of two frames in one chunk (at 0x80 and 0x40 into it, outermost at
    /// 0x40) whose copy was `prev` at offset 0.
    fn previous_walk_proof() -> (Vec<WalkedFrame>, Proof) {
        let memo = vec![walked(CHUNK + 0x40), walked(CHUNK + 0x80)];
        let proof = Proof {
            valid: true,
            chunks: vec![ChunkRead {
                addr: CHUNK,
                off: 0,
                len: 0x100,
                end: 0x80 + FRAME,
                below: 0,
            }],
            outside: Vec::new(),
        };
        (memo, proof)
    }

    #[test]
    fn an_unchanged_chunk_prefix_proves_the_frames_below() {
        let (memo, proof) = previous_walk_proof();
        let prev: Vec<u8> = (0..0x100u32).map(|i| i as u8).collect();
        // This sample's copy sits elsewhere in its buffer; the bytes past the frame changed.
        let mut buf = vec![0xee; 0x10];
        buf.extend_from_slice(&prev);
        buf[0x10 + 0xf0] ^= 1;
        let copies = [chunk_copy_at(0x10, 0x100)];
        let mut cursor = cursor_at(&memo, MEET_TRIES);
        let mut previous = PreviousWalk::new(&memo, &proof, (&prev, &buf), &copies, &mut cursor);
        // A frame above the memo's meets nothing.
        assert_eq!(previous.candidate(CHUNK + 0xc0, &copies[0]), None);
        assert_eq!(previous.candidate(CHUNK + 0x80, &copies[0]), Some(1));
        assert!(previous.proves(1, CHUNK + 0x80, FRAME, &copies[0], 0));
        assert_eq!(previous.candidate(CHUNK + 0x40, &copies[0]), Some(0));
        assert!(previous.proves(0, CHUNK + 0x40, FRAME, &copies[0], 0));
        // Too deep a stack is not proven.
        assert!(!previous.proves(0, CHUNK + 0x40, FRAME, &copies[0], MAX_DEPTH));
    }

    /// An older chunk than the one at `CHUNK`, above it in memory.
    const OLDER: u64 = 0x20_0000;

    /// A memo of two frames in the chunk at `OLDER` (at 0x40 and 0x80 into it) and one in the
    /// newer chunk at `CHUNK` (at 0x40), its proof, and both chunks' copies (older first).
    fn two_chunk_walk() -> (Vec<WalkedFrame>, Proof, [CopiedRange; 2]) {
        let memo = vec![
            walked(OLDER + 0x40),
            walked(OLDER + 0x80),
            walked(CHUNK + 0x40),
        ];
        let read = |addr, off, end, below| ChunkRead {
            addr,
            off,
            len: 0x100,
            end,
            below,
        };
        let proof = Proof {
            valid: true,
            chunks: vec![
                read(CHUNK, 0x100, 0x40 + FRAME, 3),
                read(OLDER, 0, 0x80 + FRAME, 2),
            ],
            outside: Vec::new(),
        };
        let older = CopiedRange {
            addr: OLDER,
            ..chunk_copy_at(0, 0x100)
        };
        (memo, proof, [older, chunk_copy_at(0x100, 0x100)])
    }

    #[test]
    fn the_older_chunks_frames_meet_though_a_newer_chunk_is_below_it() {
        let (memo, proof, copies) = two_chunk_walk();
        let prev: Vec<u8> = (0..0x200u32).map(|i| i as u8).collect();
        for newer_frame in [CHUNK + 0x40, CHUNK + 0x20] {
            let mut cursor = cursor_at(&memo, MEET_TRIES);
            let mut previous =
                PreviousWalk::new(&memo, &proof, (&prev, &prev), &copies, &mut cursor);
            // The walk's frame in the newer chunk: the memo's one there, or one below it (the
            // memo's older-chunk frames, above it in memory, stop the cursor all the same).
            previous.enter(&copies[1]);
            let met = previous.candidate(newer_frame, &copies[1]);
            assert_eq!(met, (newer_frame == CHUNK + 0x40).then_some(2));
            previous.enter(&copies[0]);
            assert_eq!(previous.candidate(OLDER + 0x80, &copies[0]), Some(1));
            assert!(previous.proves(1, OLDER + 0x80, FRAME, &copies[0], 1));
        }
    }

    #[test]
    fn a_changed_byte_below_the_frame_or_no_tries_left_proves_nothing() {
        let (memo, proof) = previous_walk_proof();
        let prev: Vec<u8> = (0..0x100u32).map(|i| i as u8).collect();
        let mut buf = prev.clone();
        buf[0x50] ^= 1;
        let copies = [chunk_copy_at(0, 0x100)];
        let mut cursor = cursor_at(&memo, 2);
        let mut previous = PreviousWalk::new(&memo, &proof, (&prev, &buf), &copies, &mut cursor);
        assert_eq!(previous.candidate(CHUNK + 0x80, &copies[0]), Some(1));
        assert!(!previous.proves(1, CHUNK + 0x80, FRAME, &copies[0], 0));
        // The outermost frame ends at 0x80: the changed byte at 0x50 is inside it.
        assert!(!previous.proves(0, CHUNK + 0x40, FRAME, &copies[0], 0));
        assert_eq!(previous.cursor.tries_left, 0);
        assert_eq!(previous.candidate(CHUNK + 0x40, &copies[0]), None);
    }

    #[test]
    fn frames_outside_the_chunk_must_be_in_this_samples_copies_unchanged() {
        let (memo, mut proof) = previous_walk_proof();
        proof.outside.push(Outside {
            addr: 0x30_0000,
            len: 0x10,
            off: 0x100,
            below: 0,
        });
        let mut prev: Vec<u8> = (0..0x100u32).map(|i| i as u8).collect();
        prev.extend_from_slice(&[7; 0x10]);
        let mut buf = prev.clone();
        let frame_elsewhere = CopiedRange {
            addr: 0x30_0000,
            len: 0x10,
            off: 0x100,
            chunk: false,
            age: 0,
        };
        for (copies, changed, want) in [
            (vec![chunk_copy_at(0, 0x100), frame_elsewhere], false, true),
            (vec![chunk_copy_at(0, 0x100), frame_elsewhere], true, false),
            (vec![chunk_copy_at(0, 0x100)], false, false),
        ] {
            buf[0x108] = if changed { 8 } else { 7 };
            let mut cursor = cursor_at(&memo, MEET_TRIES);
            let mut previous =
                PreviousWalk::new(&memo, &proof, (&prev, &buf), &copies, &mut cursor);
            assert_eq!(
                previous.proves(1, CHUNK + 0x80, FRAME, &copies[0], 0),
                want,
                "{copies:?} changed {changed}"
            );
        }
    }

    /// ≤3.10: a memo of three frame objects (outermost first at 0x5000, 0x3000, 0x1000, each
    /// `FRAME` bytes), the proof of the walk that took them (`below` as `FrameWalk::finish`
    /// leaves it), their copies in `prev` in walk order, and copies of the same in this sample.
    fn object_walk() -> (Vec<WalkedFrame>, Proof, Vec<u8>, Vec<CopiedRange>) {
        let addrs = [0x5000u64, 0x3000, 0x1000];
        let memo: Vec<WalkedFrame> = addrs
            .iter()
            .map(|&a| WalkedFrame {
                in_chunk: false,
                ..walked(a)
            })
            .collect();
        // Walk order: innermost (0x1000, memo index 2, below 3) first.
        let outside = (0..3)
            .map(|k| Outside {
                addr: addrs[2 - k],
                len: FRAME,
                off: k * FRAME,
                below: 3 - k,
            })
            .collect();
        let proof = Proof {
            valid: true,
            chunks: Vec::new(),
            outside,
        };
        let prev: Vec<u8> = (0..3 * FRAME as u32).map(|i| i as u8).collect();
        let copies = (0..3)
            .map(|k| CopiedRange {
                addr: addrs[2 - k],
                len: FRAME,
                off: k * FRAME,
                chunk: false,
                age: 0,
            })
            .collect();
        (memo, proof, prev, copies)
    }

    #[test]
    fn frame_objects_are_proven_only_when_each_ones_bytes_are_the_same() {
        let (memo, proof, prev, copies) = object_walk();
        // (changed byte in this sample's copy, memo frame met, whether proven)
        for (changed, met, want) in [
            (None, 2, true),
            (None, 1, true),
            // The met frame's own bytes (its instruction), or an outer frame's.
            (Some(0x10), 2, false),
            (Some(FRAME + 0x3f), 2, false),
            (Some(2 * FRAME), 1, false),
            // A frame inner to the one met does not matter.
            (Some(0x10), 1, true),
        ] {
            let mut buf = prev.clone();
            if let Some(at) = changed {
                buf[at] ^= 1;
            }
            let mut cursor = cursor_at(&memo, MEET_TRIES);
            let mut previous =
                PreviousWalk::new(&memo, &proof, (&prev, &buf), &copies, &mut cursor);
            let copy = 2 - met;
            let at = memo[met].frame;
            assert_eq!(previous.candidate_object(at), Some(met));
            assert_eq!(
                previous.proves_object(met, (at, FRAME, copies[copy].off), copy, 0),
                want,
                "{changed:?} met {met}"
            );
        }
    }

    #[test]
    fn a_frame_object_meets_the_memo_only_near_the_last_frame_met() {
        let (memo, proof, prev, copies) = object_walk();
        let mut cursor = cursor_at(&memo, 1);
        let mut previous = PreviousWalk::new(&memo, &proof, (&prev, &prev), &copies, &mut cursor);
        assert_eq!(previous.candidate_object(0x7000), None);
        assert_eq!(previous.candidate_object(0x3000), Some(1));
        // The memo's frames inner to the one met are not met again.
        assert_eq!(previous.candidate_object(0x1000), None);
        // A try spent (the frame's bytes differ or not), none is left.
        assert!(previous.proves_object(1, (0x3000, FRAME, FRAME), 1, 0));
        assert_eq!(previous.candidate_object(0x5000), None);
        // Nor is a proof longer than the depth limit.
        previous.cursor.tries_left = 1;
        assert!(!previous.proves_object(1, (0x3000, FRAME, FRAME), 1, MAX_DEPTH));
    }
}
