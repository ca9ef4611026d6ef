//! The id → definition tables ([`Tables`]), the definitions that keep a copy of them in step
//! ([`Def`], [`Marks`]), and their capacity limit ([`MAX_ENTRIES`], [`CapacityError`]).

use super::keys::{Frame, FrameId, StackId, StrId, Thread, ThreadId};

/// The tables hold at most this many entries of each kind; ids fit in a `u32` with room for
/// "none" encodings in file formats.
pub const MAX_ENTRIES: usize = (u32::MAX - 1) as usize;

/// A table reached [`MAX_ENTRIES`]; more than four billion distinct names or stacks means the
/// target is producing unbounded unique data, and the recording cannot usefully continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the profile has more than {MAX_ENTRIES} distinct {0}; stop the recording and profile a shorter run"
)]
pub struct CapacityError(pub &'static str);

/// The id → definition side of the interner: what every consumer of samples needs.
#[derive(Debug, Clone)]
pub struct Tables {
    pub(super) strings: Vec<Box<str>>,
    pub(super) frames: Vec<Frame>,
    pub(super) threads: Vec<Thread>,
    /// The id of the first stack held: those below it were forgotten.
    pub(super) first_stack: usize,
    /// Stack `first_stack + i` is `stack_frames[stack_starts[i]..stack_starts[i + 1]]`; one flat
    /// buffer keeps a unique stack at one allocation-free append instead of a `Box` each (and
    /// at 4 bytes an offset: a stack costs 4 bytes plus 4 a frame).
    stack_starts: Vec<u32>,
    stack_frames: Vec<FrameId>,
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            strings: Vec::new(),
            frames: Vec::new(),
            threads: Vec::new(),
            first_stack: 0,
            stack_starts: vec![0],
            stack_frames: Vec::new(),
        }
    }
}

impl Tables {
    /// The string for `id`; an id from another table set yields `""` rather than panicking.
    pub fn str(&self, id: StrId) -> &str {
        self.strings.get(id.index()).map_or("", |s| s)
    }

    /// The frame for `id`, if it exists.
    pub fn frame(&self, id: FrameId) -> Option<&Frame> {
        self.frames.get(id.index())
    }

    /// The thread for `id`, if it exists.
    pub fn thread(&self, id: ThreadId) -> Option<&Thread> {
        self.threads.get(id.index())
    }

    /// The frames of stack `id`, outermost first; empty if the id is unknown or forgotten.
    pub fn stack(&self, id: StackId) -> &[FrameId] {
        let Some(i) = id.index().checked_sub(self.first_stack) else {
            return &[];
        };
        match (self.stack_starts.get(i), self.stack_starts.get(i + 1)) {
            (Some(&a), Some(&b)) => self.stack_frames.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Whether stack `id` is held (defined and not forgotten).
    pub fn holds_stack(&self, id: StackId) -> bool {
        (self.first_stack..self.num_stacks()).contains(&id.index())
    }

    /// The first stack id held: every id below it was forgotten (0 when nothing was).
    pub fn first_stack(&self) -> StackId {
        StackId(self.first_stack as u32)
    }

    /// Number of stacks held (ids [`Tables::first_stack`] to [`Tables::num_stacks`]).
    pub fn held_stacks(&self) -> usize {
        self.stack_starts.len() - 1
    }

    /// Number of interned strings.
    pub fn num_strings(&self) -> usize {
        self.strings.len()
    }

    /// Number of interned frames.
    pub fn num_frames(&self) -> usize {
        self.frames.len()
    }

    /// Number of interned threads.
    pub fn num_threads(&self) -> usize {
        self.threads.len()
    }

    /// Number of stack ids given out: the next stack's id. Without forgetting, the number of
    /// stacks held.
    pub fn num_stacks(&self) -> usize {
        self.first_stack + self.stack_starts.len() - 1
    }

    /// Iterates over `(id, frame)`.
    pub fn frames(&self) -> impl ExactSizeIterator<Item = (FrameId, &Frame)> {
        self.frames
            .iter()
            .enumerate()
            .map(|(i, f)| (FrameId(i as u32), f))
    }

    /// Iterates over `(id, thread)`.
    pub fn threads(&self) -> impl ExactSizeIterator<Item = (ThreadId, &Thread)> {
        self.threads
            .iter()
            .enumerate()
            .map(|(i, t)| (ThreadId(i as u32), t))
    }

    /// Iterates over `(id, string)`.
    pub fn strings(&self) -> impl ExactSizeIterator<Item = (StrId, &str)> {
        self.strings
            .iter()
            .enumerate()
            .map(|(i, s)| (StrId(i as u32), &**s))
    }

    /// Approximate heap bytes held, for memory accounting in tests and `--verbose` output.
    pub fn heap_bytes(&self) -> usize {
        self.strings.capacity() * std::mem::size_of::<Box<str>>()
            + self.strings.iter().map(|s| s.len()).sum::<usize>()
            + self.frames.capacity() * std::mem::size_of::<Frame>()
            + self.threads.capacity() * std::mem::size_of::<Thread>()
            + self.stack_starts.capacity() * std::mem::size_of::<u32>()
            + self.stack_frames.capacity() * std::mem::size_of::<FrameId>()
    }

    /// Forgets every stack whose id is below `below` (see the `intern` module documentation); ids
    /// not given out yet are not affected. Costs a move of the stacks kept.
    pub fn forget_stacks_below(&mut self, below: StackId) {
        let k = below
            .index()
            .saturating_sub(self.first_stack)
            .min(self.held_stacks());
        if k == 0 {
            return;
        }
        let cut = self.stack_starts.get(k).copied().unwrap_or(0);
        self.stack_frames.drain(..cut as usize);
        self.stack_starts.drain(..k);
        for s in &mut self.stack_starts {
            *s -= cut;
        }
        self.first_stack += k;
    }

    pub(super) fn push_string(&mut self, s: Box<str>) -> Result<StrId, CapacityError> {
        let id = next_id(self.strings.len(), "strings")?;
        self.strings.push(s);
        Ok(StrId(id))
    }

    pub(super) fn push_frame(&mut self, f: Frame) -> Result<FrameId, CapacityError> {
        let id = next_id(self.frames.len(), "frames")?;
        self.frames.push(f);
        Ok(FrameId(id))
    }

    pub(super) fn push_thread(&mut self, t: Thread) -> Result<ThreadId, CapacityError> {
        let id = next_id(self.threads.len(), "threads")?;
        self.threads.push(t);
        Ok(ThreadId(id))
    }

    pub(super) fn push_stack(
        &mut self,
        frames: impl Iterator<Item = FrameId>,
    ) -> Result<StackId, CapacityError> {
        let id = next_id(self.num_stacks(), "stacks")?;
        self.stack_frames.extend(frames);
        let end = match u32::try_from(self.stack_frames.len()) {
            Ok(end) => end,
            Err(_) => {
                let start = self.stack_starts.last().copied().unwrap_or(0);
                self.stack_frames.truncate(start as usize);
                return Err(CapacityError("frames in stacks"));
            }
        };
        self.stack_starts.push(end);
        Ok(StackId(id))
    }

    /// Appends a definition received from another interner (see [`Def`]). Entries must arrive in
    /// id order; that is what
    /// [`Interner::definitions_since`](super::Interner::definitions_since) produces.
    pub fn apply(&mut self, def: Def) -> Result<(), CapacityError> {
        match def {
            Def::Str(s) => self.push_string(s).map(drop),
            Def::Frame(f) => self.push_frame(f).map(drop),
            Def::Thread(t) => self.push_thread(t).map(drop),
            Def::Stack(frames) => self.push_stack(frames.iter().copied()).map(drop),
            Def::ForgetStacks(below) => {
                self.forget_stacks_below(below);
                Ok(())
            }
        }
    }
}

fn next_id(len: usize, what: &'static str) -> Result<u32, CapacityError> {
    if len >= MAX_ENTRIES {
        return Err(CapacityError(what));
    }
    u32::try_from(len).map_err(|_| CapacityError(what))
}

/// One new table entry, as sent from the sampler's interner to a mirror (see [`Tables::apply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Def {
    /// A new string.
    Str(Box<str>),
    /// A new frame.
    Frame(Frame),
    /// A new thread.
    Thread(Thread),
    /// A new stack, outermost frame first (empty for one forgotten before it was sent).
    Stack(Box<[FrameId]>),
    /// The stacks below this id were forgotten: no sample sent after this refers to them.
    ForgetStacks(StackId),
}

/// How many entries of each table a consumer has already seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// Strings seen.
    pub strings: usize,
    /// Frames seen.
    pub frames: usize,
    /// Threads seen.
    pub threads: usize,
    /// Stacks seen.
    pub stacks: usize,
    /// The first stack held when last seen ([`Tables::first_stack`]).
    pub first_stack: usize,
}

impl Marks {
    /// The marks at the current end of `tables`.
    pub fn of(tables: &Tables) -> Marks {
        Marks {
            strings: tables.num_strings(),
            frames: tables.num_frames(),
            threads: tables.num_threads(),
            stacks: tables.num_stacks(),
            first_stack: tables.first_stack,
        }
    }
}
