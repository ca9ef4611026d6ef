//! Interning of strings, frames, threads and stacks into dense `u32` ids.
//!
//! Every table is append-only and ids are indexes, so a copy of the tables can be kept in step by
//! replaying new entries in order (that is how the aggregator thread mirrors the sampler's
//! interner, and how the raw format streams definitions). Lookups hash the borrowed key and
//! compare against the stored entry, so a hit allocates nothing.
//!
//! Stacks alone may be forgotten, when the interner is given a budget
//! ([`Interner::set_stack_budget`]): a target that makes a new stack nearly every sample would
//! otherwise grow the table for the whole run. Stacks live in two generations, each a contiguous
//! range of ids: new stacks go to the current one; a stack found in the previous one is copied
//! into the current one under a new id. When the current generation has used half the budget,
//! [`Interner::collect_stacks`] forgets the previous one (every stack not seen since the
//! generation before began) and starts a new current one. Ids are never reused: a stack that
//! comes back after being forgotten gets a new id, defined again for mirrors and raw files, so
//! a reader that interns by content sees the same stack. What is held is always the ids from
//! [`Tables::first_stack`] to [`Tables::num_stacks`].

use std::hash::Hasher;

use hashbrown::HashTable;

use crate::hash::{hash_str, hash_u32s, FxHasher};

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

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            /// The id as an index into its table.
            #[inline]
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

id_type!(
    /// An interned string (function name, file name, thread name).
    StrId
);
id_type!(
    /// An interned frame: function, file name and (optionally) line.
    FrameId
);
id_type!(
    /// An interned stack: a sequence of frames, outermost first.
    StackId
);
id_type!(
    /// An interned thread identity.
    ThreadId
);

/// What a frame is, so that viewers can tell (and colour) them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum FrameKind {
    /// A Python function's frame.
    #[default]
    Python,
    /// A native (C, C++, Rust, ...) function's frame, under `--native`.
    Native,
    /// The kernel boundary (`[syscall]`): the thread was in a system call.
    Kernel,
    /// Interpreter activity that is not a Python function: `<GC>`, the cyclic garbage
    /// collector running on top of the Python frame that triggered it.
    Interpreter,
    /// The exception the thread was raising or handling (`<raise ValueError>`), on top of its
    /// Python frames; shown by `--mode exception`.
    Exception,
    /// An asyncio task (`<task NAME>`) in a task-aware stack (`--async`): the frames above it
    /// are that task's coroutines, the frames below belong to the tasks awaiting it.
    Task,
}

impl FrameKind {
    /// The kind's code in file formats (`raw`): 0, 1, 2, 3, 4, 5.
    pub fn code(self) -> u8 {
        match self {
            FrameKind::Python => 0,
            FrameKind::Native => 1,
            FrameKind::Kernel => 2,
            FrameKind::Interpreter => 3,
            FrameKind::Exception => 4,
            FrameKind::Task => 5,
        }
    }

    /// The kind of [`FrameKind::code`] `c`.
    pub fn from_code(c: u8) -> Option<FrameKind> {
        match c {
            0 => Some(FrameKind::Python),
            1 => Some(FrameKind::Native),
            2 => Some(FrameKind::Kernel),
            3 => Some(FrameKind::Interpreter),
            4 => Some(FrameKind::Exception),
            5 => Some(FrameKind::Task),
            _ => None,
        }
    }

    /// `python`, `native`, `kernel`, `interpreter`, `exception` or `task`.
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Python => "python",
            FrameKind::Native => "native",
            FrameKind::Kernel => "kernel",
            FrameKind::Interpreter => "interpreter",
            FrameKind::Exception => "exception",
            FrameKind::Task => "task",
        }
    }
}

/// A frame as the walker sees it, borrowed; the key for [`Interner::intern_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameKey<'a> {
    /// Python: the qualified name where the interpreter has one (`co_qualname`, 3.11+), else
    /// `co_name`. Native: the symbol (demangled), or `module+0xoffset` without one.
    pub function: &'a str,
    /// Python: `co_filename`. Native: the source file from DWARF, or empty.
    pub filename: &'a str,
    /// Line being executed; `None` when unknown or when aggregating by function.
    pub line: Option<i32>,
    /// What the frame is.
    pub kind: FrameKind,
    /// Native frames: the path of the shared object (or executable) the code is in.
    pub module: Option<&'a str>,
    /// The function's first line (Python: `co_firstlineno`, the `def` line or its first
    /// decorator); `None` when unknown (native frames, recordings older than raw version 4).
    pub first_line: Option<i32>,
}

/// The function name of the frame put on top of a thread's stack while it runs the cyclic
/// garbage collector ([`FrameKey::gc`]).
pub const GC_FRAME: &str = "<GC>";

/// The function name of the [`FrameKind::Exception`] frame for an exception of type
/// `type_name`: `<raise ValueError>`.
pub fn exception_label(type_name: &str) -> String {
    format!("<raise {type_name}>")
}

/// The function name of the [`FrameKind::Task`] frame of a task named `name`: `<task NAME>`.
pub fn task_label(name: &str) -> String {
    format!("<task {name}>")
}

impl<'a> FrameKey<'a> {
    /// The `<GC>` frame: the thread is running the cyclic garbage collector.
    pub fn gc() -> FrameKey<'static> {
        FrameKey {
            function: GC_FRAME,
            filename: "",
            line: None,
            kind: FrameKind::Interpreter,
            module: None,
            first_line: None,
        }
    }

    /// The frame for an exception being raised or handled: `label` is
    /// [`exception_label`]`(type name)`.
    pub fn exception(label: &'a str) -> FrameKey<'a> {
        FrameKey {
            function: label,
            filename: "",
            line: None,
            kind: FrameKind::Exception,
            module: None,
            first_line: None,
        }
    }

    /// The frame for an asyncio task: `label` is [`task_label`]`(task name)`.
    pub fn task(label: &'a str) -> FrameKey<'a> {
        FrameKey {
            function: label,
            filename: "",
            line: None,
            kind: FrameKind::Task,
            module: None,
            first_line: None,
        }
    }

    /// A Python frame (first line unknown; see [`FrameKey::with_first_line`]).
    pub fn python(function: &'a str, filename: &'a str, line: Option<i32>) -> FrameKey<'a> {
        FrameKey {
            function,
            filename,
            line,
            kind: FrameKind::Python,
            module: None,
            first_line: None,
        }
    }

    /// The same frame with the function's first line.
    pub fn with_first_line(self, first_line: Option<i32>) -> FrameKey<'a> {
        FrameKey { first_line, ..self }
    }
}

/// A thread identity as the walker sees it, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThreadKey<'a> {
    /// Native thread id (Linux TID) where known, else the interpreter's thread id.
    pub os_tid: u64,
    /// Python-level thread name, if the reader found one.
    pub name: Option<&'a str>,
    /// Interpreter id (0 for the main interpreter).
    pub interpreter_id: i64,
}

/// An interned frame (see [`FrameKey`] for what each field holds per kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Function name.
    pub function: StrId,
    /// File name.
    pub filename: StrId,
    /// Line, if known.
    pub line: Option<i32>,
    /// What the frame is.
    pub kind: FrameKind,
    /// Native frames: the shared object's path.
    pub module: Option<StrId>,
    /// The function's first line, if known.
    pub first_line: Option<i32>,
}

impl Frame {
    /// A Python frame of interned strings (first line unknown).
    pub fn python(function: StrId, filename: StrId, line: Option<i32>) -> Frame {
        Frame {
            function,
            filename,
            line,
            kind: FrameKind::Python,
            module: None,
            first_line: None,
        }
    }
}

/// An interned thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Thread {
    /// Native thread id.
    pub os_tid: u64,
    /// Thread name.
    pub name: Option<StrId>,
    /// Interpreter id.
    pub interpreter_id: i64,
}

/// The id → definition side of the interner: what every consumer of samples needs.
#[derive(Debug, Clone)]
pub struct Tables {
    strings: Vec<Box<str>>,
    frames: Vec<Frame>,
    threads: Vec<Thread>,
    /// The id of the first stack held: those below it were forgotten.
    first_stack: usize,
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

    /// Forgets every stack whose id is below `below` (see the module documentation); ids not
    /// given out yet are not affected. Costs a move of the stacks kept.
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

    fn push_string(&mut self, s: Box<str>) -> Result<StrId, CapacityError> {
        let id = next_id(self.strings.len(), "strings")?;
        self.strings.push(s);
        Ok(StrId(id))
    }

    fn push_frame(&mut self, f: Frame) -> Result<FrameId, CapacityError> {
        let id = next_id(self.frames.len(), "frames")?;
        self.frames.push(f);
        Ok(FrameId(id))
    }

    fn push_thread(&mut self, t: Thread) -> Result<ThreadId, CapacityError> {
        let id = next_id(self.threads.len(), "threads")?;
        self.threads.push(t);
        Ok(ThreadId(id))
    }

    fn push_stack(
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
    /// id order; that is what [`Interner::definitions_since`] produces.
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

/// Interns walker output into ids. See the module documentation.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    tables: Tables,
    // Each index entry stores (hash, id) so that growing the table never needs the content.
    str_index: HashTable<(u64, StrId)>,
    frame_index: HashTable<(u64, FrameId)>,
    thread_index: HashTable<(u64, ThreadId)>,
    stack_index: HashTable<(u64, StackId)>,
    scratch: Vec<FrameId>,
    /// Bytes the stacks of a generation may take, if stacks are forgotten.
    stack_budget: Option<usize>,
    /// The first id of the current generation (0, and nothing is forgotten, without a budget).
    current_stacks: usize,
    /// Bytes the current generation takes ([`STACK_BYTES`] a stack and 4 a frame).
    current_bytes: usize,
}

/// What a stack costs the interner besides 4 bytes per frame: its offset in the frame buffer
/// and its entry in the hash index (16 bytes, at most 7/8 full).
pub const STACK_BYTES: usize = 4 + 16 * 8 / 7;

impl Interner {
    /// An empty interner.
    pub fn new() -> Interner {
        Interner::default()
    }

    /// The id → definition tables.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Bounds the stacks held to about `bytes` (two generations of `bytes / 2`; see the module
    /// documentation), or lifts the bound (`None`, the default: every stack is kept). Stacks are
    /// only forgotten in [`Interner::collect_stacks`].
    pub fn set_stack_budget(&mut self, bytes: Option<usize>) {
        self.stack_budget = bytes;
    }

    /// Whether stack `id` is in the current generation: an id that is not may be forgotten at
    /// the next [`Interner::collect_stacks`], so a caller keeping ids between samples interns
    /// the stack again ([`Interner::intern_stack`] moves it into the current generation).
    /// Always true without a budget.
    #[inline]
    pub fn is_current(&self, id: StackId) -> bool {
        id.index() >= self.current_stacks
    }

    /// If the current generation has used its half of the budget: forgets the previous one and
    /// starts a new current one. Returns whether a new generation was started. Call it where no stack
    /// id interned since the last call is still waiting to be used (between sampling rounds):
    /// an id is only forgotten by the second call after it was interned or found.
    pub fn collect_stacks(&mut self) -> bool {
        let Some(budget) = self.stack_budget else {
            return false;
        };
        // An empty generation is never ended, whatever the budget (0 included).
        if self.current_bytes == 0 || self.current_bytes < budget / 2 {
            return false;
        }
        let keep = StackId(self.current_stacks as u32);
        self.tables.forget_stacks_below(keep);
        self.stack_index.retain(|&mut (_, id)| id >= keep);
        self.current_stacks = self.tables.num_stacks();
        self.current_bytes = 0;
        true
    }

    /// Gives up the tables (e.g. to put them in a [`crate::Profile`]).
    pub fn into_tables(self) -> Tables {
        self.tables
    }

    /// Interns a string.
    pub fn intern_str(&mut self, s: &str) -> Result<StrId, CapacityError> {
        let mut h = FxHasher::default();
        hash_str(&mut h, s);
        let hash = h.finish();
        let strings = &self.tables.strings;
        if let Some(&(_, id)) = self.str_index.find(hash, |&(eh, id)| {
            eh == hash && strings.get(id.index()).is_some_and(|e| &**e == s)
        }) {
            return Ok(id);
        }
        let id = self.tables.push_string(s.into())?;
        self.str_index
            .insert_unique(hash, (hash, id), |&(eh, _)| eh);
        Ok(id)
    }

    /// Interns a frame. A frame seen before costs one hash of its two names and one comparison.
    pub fn intern_frame(&mut self, key: &FrameKey<'_>) -> Result<FrameId, CapacityError> {
        let hash = frame_hash(key);
        if let Some(id) = self.find_frame_hashed(hash, key) {
            return Ok(id);
        }
        let function = self.intern_str(key.function)?;
        let filename = self.intern_str(key.filename)?;
        let module = match key.module {
            Some(m) => Some(self.intern_str(m)?),
            None => None,
        };
        self.insert_frame(
            hash,
            Frame {
                function,
                filename,
                line: key.line,
                kind: key.kind,
                module,
                first_line: key.first_line,
            },
        )
    }

    /// Interns a frame whose strings are already interned in this interner.
    pub fn intern_frame_ids(&mut self, frame: Frame) -> Result<FrameId, CapacityError> {
        let hash = frame_hash(&FrameKey {
            function: self.tables.str(frame.function),
            filename: self.tables.str(frame.filename),
            line: frame.line,
            kind: frame.kind,
            module: frame.module.map(|m| self.tables.str(m)),
            first_line: frame.first_line,
        });
        let frames = &self.tables.frames;
        if let Some(&(_, id)) = self.frame_index.find(hash, |&(eh, id)| {
            eh == hash && frames.get(id.index()) == Some(&frame)
        }) {
            return Ok(id);
        }
        self.insert_frame(hash, frame)
    }

    fn insert_frame(&mut self, hash: u64, frame: Frame) -> Result<FrameId, CapacityError> {
        let id = self.tables.push_frame(frame)?;
        self.frame_index
            .insert_unique(hash, (hash, id), |&(eh, _)| eh);
        Ok(id)
    }

    /// Interns a thread identity.
    pub fn intern_thread(&mut self, key: &ThreadKey<'_>) -> Result<ThreadId, CapacityError> {
        let name = match key.name {
            Some(n) => Some(self.intern_str(n)?),
            None => None,
        };
        let info = Thread {
            os_tid: key.os_tid,
            name,
            interpreter_id: key.interpreter_id,
        };
        self.intern_thread_info(info)
    }

    /// Interns a thread whose name is already interned in this interner.
    pub fn intern_thread_info(&mut self, info: Thread) -> Result<ThreadId, CapacityError> {
        let mut h = FxHasher::default();
        h.write_u64(info.os_tid);
        h.write_u64(info.interpreter_id as u64);
        h.write_u32(info.name.map_or(u32::MAX, |n| n.0));
        let hash = h.finish();
        let threads = &self.tables.threads;
        if let Some(&(_, id)) = self.thread_index.find(hash, |&(eh, id)| {
            eh == hash && threads.get(id.index()) == Some(&info)
        }) {
            return Ok(id);
        }
        let id = self.tables.push_thread(info)?;
        self.thread_index
            .insert_unique(hash, (hash, id), |&(eh, _)| eh);
        Ok(id)
    }

    /// Interns a stack given outermost frame first. A stack seen before costs one hash over the
    /// ids and one slice comparison; nothing is allocated. A stack of the previous generation
    /// is copied into the current one under a new id.
    pub fn intern_stack(&mut self, frames: &[FrameId]) -> Result<StackId, CapacityError> {
        let mut h = FxHasher::default();
        hash_u32s(&mut h, frames.iter().map(|f| f.0));
        let hash = h.finish();
        let t = &self.tables;
        let current = self.current_stacks;
        if let Some(entry) = self
            .stack_index
            .find_mut(hash, |&(eh, id)| eh == hash && t.stack(id) == frames)
        {
            if entry.1.index() >= current {
                return Ok(entry.1);
            }
            let id = self.tables.push_stack(frames.iter().copied())?;
            entry.1 = id;
            self.current_bytes += STACK_BYTES + 4 * frames.len();
            return Ok(id);
        }
        let id = self.tables.push_stack(frames.iter().copied())?;
        self.current_bytes += STACK_BYTES + 4 * frames.len();
        self.stack_index
            .insert_unique(hash, (hash, id), |&(eh, _)| eh);
        Ok(id)
    }

    /// Interns a stack given innermost (leaf) frame first, as CPython's frame chain is walked.
    pub fn intern_stack_leaf_first(
        &mut self,
        frames: &[FrameId],
    ) -> Result<StackId, CapacityError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend(frames.iter().rev().copied());
        let r = self.intern_stack(&scratch);
        self.scratch = scratch;
        r
    }

    /// Looks a frame up without interning it.
    pub fn find_frame(&self, key: &FrameKey<'_>) -> Option<FrameId> {
        let hash = frame_hash(key);
        self.find_frame_hashed(hash, key)
    }

    #[inline]
    fn find_frame_hashed(&self, hash: u64, key: &FrameKey<'_>) -> Option<FrameId> {
        let t = &self.tables;
        self.frame_index
            .find(hash, |&(eh, id)| {
                eh == hash
                    && t.frames.get(id.index()).is_some_and(|f| {
                        f.line == key.line
                            && f.first_line == key.first_line
                            && f.kind == key.kind
                            && t.str(f.function) == key.function
                            && t.str(f.filename) == key.filename
                            && f.module.map(|m| t.str(m)) == key.module
                    })
            })
            .map(|&(_, id)| id)
    }

    /// Calls `send` with every entry added since `marks` (strings, then frames, threads and
    /// stacks, so that every entry only refers to entries sent before it; a stack forgotten
    /// before it was sent is sent empty, to keep the ids in step), then, if stacks were
    /// forgotten since, [`Def::ForgetStacks`], and advances `marks`.
    pub fn definitions_since(&self, marks: &mut Marks, mut send: impl FnMut(Def)) {
        let t = &self.tables;
        for s in t.strings.get(marks.strings..).unwrap_or(&[]) {
            send(Def::Str(s.clone()));
        }
        for f in t.frames.get(marks.frames..).unwrap_or(&[]) {
            send(Def::Frame(*f));
        }
        for th in t.threads.get(marks.threads..).unwrap_or(&[]) {
            send(Def::Thread(*th));
        }
        for i in marks.stacks..t.num_stacks() {
            send(Def::Stack(t.stack(StackId(i as u32)).into()));
        }
        if t.first_stack > marks.first_stack {
            send(Def::ForgetStacks(t.first_stack()));
        }
        *marks = Marks::of(t);
    }
}

#[inline]
fn frame_hash(key: &FrameKey<'_>) -> u64 {
    let mut h = FxHasher::default();
    hash_str(&mut h, key.function);
    hash_str(&mut h, key.filename);
    hash_line(&mut h, key.line);
    hash_line(&mut h, key.first_line);
    if key.kind != FrameKind::Python {
        h.write_u8(key.kind.code());
        if let Some(m) = key.module {
            hash_str(&mut h, m);
        }
    }
    h.finish()
}

#[inline]
fn hash_line(h: &mut FxHasher, line: Option<i32>) {
    match line {
        Some(l) => h.write_u64(u64::from(l as u32) | (1 << 32)),
        None => h.write_u64(0),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fk<'a>(function: &'a str, filename: &'a str, line: i32) -> FrameKey<'a> {
        FrameKey::python(function, filename, Some(line))
    }

    #[test]
    fn frames_and_stacks_intern_once() {
        let mut i = Interner::new();
        let a = i.intern_frame(&fk("f", "a.py", 1)).unwrap();
        let b = i.intern_frame(&fk("g", "a.py", 2)).unwrap();
        assert_ne!(a, b);
        assert_eq!(i.intern_frame(&fk("f", "a.py", 1)).unwrap(), a);
        // Same names, other line: another frame; no line: yet another.
        let a2 = i.intern_frame(&fk("f", "a.py", 2)).unwrap();
        let a0 = i
            .intern_frame(&FrameKey::python("f", "a.py", None))
            .unwrap();
        assert!(a2 != a && a0 != a && a0 != a2);
        // Strings are shared between frames.
        assert_eq!(i.tables().num_strings(), 3);

        let s1 = i.intern_stack(&[a, b]).unwrap();
        let s2 = i.intern_stack(&[b, a]).unwrap();
        let s3 = i.intern_stack(&[a]).unwrap();
        let s0 = i.intern_stack(&[]).unwrap();
        assert_eq!(i.intern_stack(&[a, b]).unwrap(), s1);
        assert_eq!(i.intern_stack_leaf_first(&[b, a]).unwrap(), s1);
        assert_eq!(i.tables().stack(s2), &[b, a]);
        assert_eq!(i.tables().stack(s3), &[a]);
        assert_eq!(i.tables().stack(s0), &[] as &[FrameId]);
        assert_eq!(i.tables().num_stacks(), 4);
        assert_eq!(i.find_frame(&fk("g", "a.py", 2)), Some(b));
        assert_eq!(i.find_frame(&fk("g", "a.py", 3)), None);
    }

    #[test]
    fn the_first_line_is_part_of_a_frame() {
        let mut i = Interner::new();
        // Two functions of one name in one file (say, `inner` defined in two places).
        let a = i
            .intern_frame(&fk("inner", "a.py", 7).with_first_line(Some(5)))
            .unwrap();
        let b = i
            .intern_frame(&fk("inner", "a.py", 7).with_first_line(Some(6)))
            .unwrap();
        let unknown = i.intern_frame(&fk("inner", "a.py", 7)).unwrap();
        assert!(a != b && a != unknown && b != unknown);
        assert_eq!(i.tables().frame(a).unwrap().first_line, Some(5));
        assert_eq!(i.tables().frame(unknown).unwrap().first_line, None);
        assert_eq!(
            i.find_frame(&fk("inner", "a.py", 7).with_first_line(Some(6))),
            Some(b)
        );
        // Replayed from ids (the raw reader's path), it is the same frame.
        let frame = *i.tables().frame(b).unwrap();
        assert_eq!(i.intern_frame_ids(frame).unwrap(), b);
    }

    #[test]
    fn many_entries_survive_table_growth() {
        let mut i = Interner::new();
        let ids: Vec<FrameId> = (0..5000)
            .map(|n| i.intern_frame(&fk(&format!("f{n}"), "x.py", n)).unwrap())
            .collect();
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(
                i.intern_frame(&fk(&format!("f{n}"), "x.py", n as i32))
                    .unwrap(),
                *id
            );
        }
        let stacks: Vec<StackId> = (0..2000)
            .map(|n| i.intern_stack(&ids[..n]).unwrap())
            .collect();
        for (n, s) in stacks.iter().enumerate() {
            assert_eq!(i.intern_stack(&ids[..n]).unwrap(), *s);
            assert_eq!(i.tables().stack(*s).len(), n);
        }
    }

    #[test]
    fn a_budget_forgets_stacks_not_seen_for_a_generation_and_never_reuses_ids() {
        let mut i = Interner::new();
        let f: Vec<FrameId> = (0..40)
            .map(|n| i.intern_frame(&fk("f", "a.py", n)).unwrap())
            .collect();
        // Each stack of 3 frames costs STACK_BYTES + 12 bytes: 4 of them fill a generation.
        let per_stack = STACK_BYTES + 12;
        i.set_stack_budget(Some(2 * 4 * per_stack));
        let stack = |n: usize| [f[0], f[1 + n % 39], f[1 + n / 39]];
        let hot = i.intern_stack(&stack(0)).unwrap();
        let mut ids = vec![hot];
        for n in 1..4 {
            ids.push(i.intern_stack(&stack(n)).unwrap());
        }
        // The current generation is full: a new one starts, nothing is forgotten yet...
        assert!(i.collect_stacks());
        assert_eq!(i.tables().first_stack(), StackId(0));
        assert!(!i.collect_stacks(), "the new generation is empty");
        i.set_stack_budget(Some(0));
        assert!(!i.collect_stacks(), "not even with no budget at all");
        i.set_stack_budget(Some(2 * 4 * per_stack));
        assert!(!i.is_current(hot));
        // ...and the hot stack, found in the previous generation, moves to the current one.
        let hot2 = i.intern_stack(&stack(0)).unwrap();
        assert!(hot2 > hot && i.is_current(hot2));
        assert_eq!(i.tables().stack(hot2), &stack(0));
        for n in 4..7 {
            ids.push(i.intern_stack(&stack(n)).unwrap());
        }
        assert!(i.collect_stacks());
        // Generation 0 is gone; the hot stack survived in its new place.
        assert_eq!(i.tables().first_stack(), StackId(4));
        assert!(!i.tables().holds_stack(ids[1]));
        assert_eq!(i.tables().stack(ids[1]), &[] as &[FrameId]);
        assert_eq!(i.tables().stack(hot2), &stack(0));
        // Still in the previous generation: seen again, it moves again.
        let hot3 = i.intern_stack(&stack(0)).unwrap();
        assert!(hot3 > hot2 && i.is_current(hot3));
        assert_eq!(i.intern_stack(&stack(0)).unwrap(), hot3);
        // A forgotten stack that comes back gets a new id, never an old one.
        let back = i.intern_stack(&stack(1)).unwrap();
        assert!(back.index() >= i.tables().num_stacks() - 1 && back != ids[1]);
        assert_eq!(i.tables().stack(back), &stack(1));

        // Many stacks later, what is held stays within two generations.
        let mut max_held = 0;
        for n in 7..5000 {
            let s = i.intern_stack(&stack(n % 1500)).unwrap();
            assert_eq!(i.tables().stack(s), &stack(n % 1500));
            i.collect_stacks();
            max_held = max_held.max(i.tables().held_stacks());
        }
        assert!(max_held <= 2 * 4 + 1, "{max_held} stacks held");
        assert!(i.tables().num_stacks() > 4000);
    }

    #[test]
    fn without_a_budget_nothing_is_forgotten() {
        let mut i = Interner::new();
        let f = i.intern_frame(&fk("f", "a.py", 1)).unwrap();
        let a = i.intern_stack(&[f]).unwrap();
        for n in 0..100 {
            i.intern_stack(&vec![f; n + 2]).unwrap();
            assert!(!i.collect_stacks());
        }
        assert!(i.is_current(a));
        assert_eq!(i.intern_stack(&[f]).unwrap(), a);
        assert_eq!(i.tables().held_stacks(), 101);
    }

    #[test]
    fn mirror_replays_definitions() {
        let mut i = Interner::new();
        let mut mirror = Tables::default();
        let mut marks = Marks::default();
        let f = i.intern_frame(&fk("f", "a.py", 1)).unwrap();
        let t = i
            .intern_thread(&ThreadKey {
                os_tid: 7,
                name: Some("Main"),
                interpreter_id: 0,
            })
            .unwrap();
        i.intern_stack(&[f, f]).unwrap();
        i.definitions_since(&mut marks, |d| mirror.apply(d).unwrap());
        let g = i.intern_frame(&fk("g", "b.py", 1)).unwrap();
        let s = i.intern_stack(&[f, g]).unwrap();
        i.definitions_since(&mut marks, |d| mirror.apply(d).unwrap());
        assert_eq!(mirror.stack(s), &[f, g]);
        assert_eq!(mirror.str(mirror.thread(t).unwrap().name.unwrap()), "Main");
        assert_eq!(mirror.str(mirror.frame(g).unwrap().filename), "b.py");
        assert_eq!(Marks::of(&mirror), Marks::of(i.tables()));

        // With forgetting, including stacks forgotten before they were ever sent.
        i.set_stack_budget(Some(1));
        let mut defs = Vec::new();
        for n in 0..6 {
            i.intern_stack(&vec![g; n + 3]).unwrap();
            i.collect_stacks();
            if n % 3 == 2 {
                i.definitions_since(&mut marks, |d| defs.push(d));
            }
        }
        assert!(defs.iter().any(|d| matches!(d, Def::ForgetStacks(_))));
        assert!(
            defs.contains(&Def::Stack(Box::new([]))),
            "a stack never sent"
        );
        for d in defs {
            mirror.apply(d).unwrap();
        }
        assert_eq!(Marks::of(&mirror), Marks::of(i.tables()));
        let held = i.tables().first_stack().index()..i.tables().num_stacks();
        assert!(!held.is_empty());
        for id in held {
            let id = StackId(id as u32);
            assert_eq!(mirror.stack(id), i.tables().stack(id));
            assert!(!mirror.stack(id).is_empty());
        }
    }
}
