//! The reported frames of a thread's last sample, kept so that the outermost ones a walk proves
//! unchanged are handed to the caller with two slice copies ([`OuterFrames`]).

use crate::sample::output::RawFrame;

/// Filler for the free room in front of the innermost frame (never read).
const FREE: RawFrame = RawFrame {
    code_addr: 0,
    lasti: 0,
    line: None,
};

/// Room made in front of the innermost frame when there is none, at least.
const MIN_ROOM: usize = 16;

/// A thread's reported frames and their entry flags, **innermost first** as a sample
/// lists them, stored at the end of two buffers with free room in front: the `n` outermost
/// frames are the last `n` of each buffer (copied into a sample with `extend_from_slice`, a
/// `memcpy`), dropping inner frames moves the start up, and a frame pushed at the inner end
/// takes the slot before the start. Buffers grow (by at least what they hold) only when the
/// room is used up.
#[derive(Debug, Default)]
pub(crate) struct OuterFrames {
    frames: Vec<RawFrame>,
    entries: Vec<bool>,
    /// Where the innermost frame is; everything before it is free room.
    start: usize,
}

impl OuterFrames {
    /// How many frames it holds.
    pub(crate) fn len(&self) -> usize {
        self.frames.len() - self.start
    }

    /// Keep only the `n` outermost frames (all of them if it holds fewer).
    pub(crate) fn keep_outer(&mut self, n: usize) {
        self.start = self.frames.len() - n.min(self.len());
    }

    /// Add `frame`, with its entry flag, as the new innermost frame.
    pub(crate) fn push_inner(&mut self, frame: RawFrame, entry: bool) {
        if self.start == 0 {
            self.make_room();
        }
        self.start -= 1;
        self.frames[self.start] = frame;
        self.entries[self.start] = entry;
    }

    /// The `n` outermost frames and their entry flags, innermost first; empty if it holds
    /// fewer than `n`.
    pub(crate) fn outermost(&self, n: usize) -> (&[RawFrame], &[bool]) {
        if n > self.len() {
            return (&[], &[]);
        }
        let from = self.frames.len() - n;
        (&self.frames[from..], &self.entries[from..])
    }

    fn make_room(&mut self) {
        let len = self.len();
        let room = len.max(MIN_ROOM);
        let mut frames = Vec::with_capacity(room + len);
        frames.resize(room, FREE);
        frames.extend_from_slice(&self.frames[self.start..]);
        let mut entries = Vec::with_capacity(room + len);
        entries.resize(room, false);
        entries.extend_from_slice(&self.entries[self.start..]);
        self.frames = frames;
        self.entries = entries;
        self.start = room;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn frame(n: u64) -> RawFrame {
        RawFrame {
            code_addr: n,
            lasti: n as i64,
            line: Some(n as i32),
        }
    }

    /// The same operations on a plain vector, outermost first.
    #[test]
    fn matches_a_plain_stack_through_pushes_and_cuts() {
        let mut outer = OuterFrames::default();
        let mut plain: Vec<(RawFrame, bool)> = Vec::new();
        let mut next = 0u64;
        // Grow past several reallocations, shrink, regrow, with cuts of every size.
        for round in 0..200usize {
            let keep = (round * 7919) % (plain.len() + 1);
            outer.keep_outer(keep);
            plain.truncate(keep);
            for _ in 0..(round % 23) {
                next += 1;
                let entry = next % 3 == 2;
                outer.push_inner(frame(next), entry);
                plain.push((frame(next), entry));
            }
            assert_eq!(outer.len(), plain.len());
            for n in 0..=plain.len() {
                let (frames, entries) = outer.outermost(n);
                let want: Vec<(RawFrame, bool)> = plain[..n].iter().rev().copied().collect();
                let got: Vec<(RawFrame, bool)> = frames
                    .iter()
                    .copied()
                    .zip(entries.iter().copied())
                    .collect();
                assert_eq!(got, want, "round {round}, {n} outermost");
            }
            let (frames, entries) = outer.outermost(plain.len() + 1);
            assert!(frames.is_empty() && entries.is_empty());
        }
    }

    #[test]
    fn keeping_more_than_it_holds_keeps_everything() {
        let mut outer = OuterFrames::default();
        outer.push_inner(frame(1), true);
        outer.push_inner(frame(2), false);
        outer.keep_outer(5);
        assert_eq!(outer.len(), 2);
        assert_eq!(outer.outermost(2).0, &[frame(2), frame(1)]);
        assert_eq!(outer.outermost(2).1, &[false, true]);
        outer.keep_outer(0);
        assert_eq!(outer.len(), 0);
    }
}
