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

//!
//! Submodules:
//!
//! * `keys`: the id types, the borrowed keys the interner takes ([`FrameKey`], [`ThreadKey`]),
//!   the interned [`Frame`] and [`Thread`], [`FrameKind`] and the labels of non-function frames.
//! * `tables`: [`Tables`], the id → definition side, and the [`Def`]s and [`Marks`] that keep
//!   mirrors of it in step.
//! * [`Interner`] itself, the definition → id side, is here.

use std::hash::Hasher;

use hashbrown::HashTable;

use crate::hash::{hash_str, hash_u32s, FxHasher};

mod keys;
mod tables;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub use keys::{
    exception_label, task_label, Frame, FrameId, FrameKey, FrameKind, StackId, StrId, Thread,
    ThreadId, ThreadKey, GC_FRAME,
};
pub use tables::{CapacityError, Def, Marks, Tables, MAX_ENTRIES};

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
