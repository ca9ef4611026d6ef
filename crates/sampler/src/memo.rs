//! Per thread state, what its previous sample resolved to, so that the next sample of the
//! same stack costs no lookups: frame ids, stack id, thread id.
//!
//! A round is meant to cost little more than the walker's one batched read. Per thread state
//! (`PyThreadState` address) the sampler keeps a [`ThreadMemo`]. The walker reports how many
//! outermost frames are unchanged since its previous walk ([`RawThread::unchanged`]); their ids
//! are reused without a lookup, and a stack whose ids all match the previous one reuses its
//! stack id without interning. Other frames take their id from a cache of one [`FrameId`] per
//! (code object, line) ([`frame_id`]). Thread states no longer present are forgotten at the
//! end of the round ([`note_threads`]).

use std::collections::HashMap;
use std::sync::Arc;

use strobe_aggregate::{FrameId, FrameKey, FxBuild, SamplerSide, StackId, ThreadId, ThreadKey};
use strobe_memory::RemoteMemory;
use strobe_walker::{RawFrame, RawThread, WalkError, Walker};

use crate::error::SamplerError;
use crate::failure::RoundError;
use crate::stats::ErrorKind;

/// Cached frame ids beyond this are dropped and the cache refilled.
pub(crate) const MAX_FRAME_CACHE: usize = 1 << 16;

/// (code object address, line) → the names the walker gave it and their interned frame.
pub(crate) type FrameCache = HashMap<(u64, Option<i32>), (u64, FrameId), FxBuild>;

/// Memos by thread state address.
pub(crate) type Memos = HashMap<u64, ThreadMemo, FxBuild>;

/// What one thread state's previous sample resolved to, so that the next sample of the same
/// stack costs no lookups.
#[derive(Debug, Default)]
pub(crate) struct ThreadMemo {
    /// `(interpreter, thread ident)` of the thread that owns the thread state: a thread state
    /// freed and reused by another thread starts a new memo.
    pub(crate) owner: (u64, u64),
    /// The walk whose frames `frames` and `ids` are; `None` when they are of no use (never
    /// resolved, or the last attempt failed).
    walk: Option<u64>,
    /// The last round (walk) that saw this thread state: memos not seen are forgotten.
    seen: u64,
    /// The frames `ids` were resolved from, outermost first.
    frames: Vec<RawFrame>,
    /// Their interned ids, outermost first.
    pub(crate) ids: Vec<FrameId>,
    /// `ids` interned as a stack.
    pub(crate) stack: Option<StackId>,
    /// The interned thread identity and what it was interned from.
    ident: Option<Ident>,
    /// The `threading` name, as of the names generation `names_gen`.
    pub(crate) name: Option<Arc<str>>,
    /// See `name`.
    pub(crate) names_gen: u64,
    /// Our kernel id of the thread, as last seen: whose run state decides, before the next
    /// round's read, whether its frames are wanted.
    pub(crate) host: Option<u32>,
    /// The round (`ProcessView::rounds_started`) whose native capture stopped `host` before
    /// the round's read (see "Stop first, read after" in `round`); 0 if none did.
    pub(crate) stopped_in: u64,
    /// The round whose read inside those stops copies its frames: the rounds it was stopped
    /// in, and those it was found running in but not stopped, as `frameless`.
    pub(crate) read_in: u64,
    /// The latest read of its frames found none (a thread state held by C code between
    /// calls into Python): a stop before the next round's read would likely be for nothing.
    pub(crate) frameless: bool,
}

impl ThreadMemo {
    fn new(owner: (u64, u64)) -> ThreadMemo {
        ThreadMemo {
            owner,
            ..ThreadMemo::default()
        }
    }
}

/// A thread identity as interned.
#[derive(Debug)]
struct Ident {
    os_tid: u64,
    interp_id: i64,
    name: Option<Arc<str>>,
    id: ThreadId,
}

/// The root frame of a process's stacks under `--subprocesses`: `process PID`, with its
/// command line where a Python frame has its file name.
pub(crate) fn process_frame(
    side: &mut SamplerSide,
    pid: i32,
    command: &str,
) -> Result<FrameId, SamplerError> {
    let function = format!("process {pid}");
    Ok(side
        .interner()
        .intern_frame(&FrameKey::python(&function, command, None))?)
}

/// Give every thread of this walk a memo (a new one if its thread state now belongs to
/// another thread) and forget the memos of thread states that are gone. Returns whether a
/// thread is new.
pub(crate) fn note_threads(memos: &mut Memos, stacks: &[RawThread], walk: u64) -> bool {
    let mut new = false;
    for t in stacks {
        let owner = (t.interp_addr, t.thread_id);
        let memo = memos
            .entry(t.tstate_addr)
            .or_insert_with(|| ThreadMemo::new(owner));
        if memo.owner != owner {
            *memo = ThreadMemo::new(owner);
        }
        new |= memo.seen == 0;
        memo.seen = walk;
    }
    // Every present thread state was just marked: more memos than threads means some are
    // of threads that exited.
    if memos.len() > stacks.len() {
        memos.retain(|_, m| m.seen == walk);
    }
    new
}

/// What names a Python frame's function: (function, file name, the function's first line).
pub(crate) type CodeNames = (Arc<str>, Arc<str>, Option<i32>);

/// Names of the code object of a frame: the walker's, a stub in tests.
pub(crate) trait FrameNames {
    /// Which decoding of the code object at `code_addr` names are taken from (it changes when
    /// a freed code object's address is reused); `None` when it is not decoded at the moment.
    fn code_serial(&mut self, code_addr: u64) -> Option<u64>;
    /// (function, file name, the function's first line).
    fn names(&mut self, f: RawFrame) -> Result<CodeNames, WalkError>;
}

impl<M: RemoteMemory> FrameNames for Walker<M> {
    fn code_serial(&mut self, code_addr: u64) -> Option<u64> {
        Walker::code_serial(self, code_addr)
    }

    fn names(&mut self, f: RawFrame) -> Result<CodeNames, WalkError> {
        let info = self.frame_info(f)?;
        Ok((info.function, info.filename, Some(info.first_line)))
    }
}

/// The interned stack of `frames` (innermost first), reusing what `memo` kept from this
/// thread state's previous sample where the walker vouches for it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stack_of(
    memo: &mut ThreadMemo,
    cache: &mut FrameCache,
    fresh: &mut Vec<FrameId>,
    side: &mut SamplerSide,
    names: &mut impl FrameNames,
    t: &RawThread,
    frames: &[RawFrame],
    walk: u64,
    by_function: bool,
    root: Option<FrameId>,
) -> Result<StackId, RoundError> {
    // `memo.ids` starts with `root`, if there is one.
    let base = usize::from(root.is_some());
    if root.is_some() && memo.ids.first().copied() != root {
        memo.ids.clear();
        memo.ids.extend(root);
        memo.frames.clear();
        memo.stack = None;
    }
    // Outermost frames whose ids are kept: the walker says they are the same frames at the
    // same instructions as in the previous sample it returned (so they still run the same,
    // live code objects: no check that a code object was freed is needed; attempts it retried
    // or that failed never count as that sample), and our ids are of that sample.
    let keep = if memo.walk.is_some_and(|w| w + 1 == walk) {
        t.unchanged.min(frames.len()).min(memo.frames.len())
    } else {
        0
    };
    let changed = frames.get(..frames.len() - keep).unwrap_or(&[]);
    fresh.clear();
    // Until the ids are complete, the memo no longer describes the previous walk.
    memo.walk = None;
    for &f in changed.iter().rev() {
        fresh.push(frame_id(cache, side, names, f, by_function)?);
    }
    let stack = match memo.stack {
        // A stack of the interner's previous generation is interned again (moved into the
        // current one), or a bounded table would forget it while this memo still used it.
        Some(stack)
            if memo.ids.get(base + keep..) == Some(&fresh[..])
                && side.interner().is_current(stack) =>
        {
            stack
        }
        _ => {
            memo.stack = None;
            memo.ids.truncate(base + keep);
            memo.ids.extend_from_slice(fresh);
            side.interner()
                .intern_stack(&memo.ids)
                .map_err(|e| RoundError::Fatal(e.into()))?
        }
    };
    memo.stack = Some(stack);
    memo.frames.truncate(keep);
    memo.frames.extend(changed.iter().rev().copied());
    memo.walk = Some(walk);
    Ok(stack)
}

/// The interned identity of the thread of `memo`, interned again only when its kernel id,
/// name or interpreter changed.
pub(crate) fn thread_of(
    memo: &mut ThreadMemo,
    side: &mut SamplerSide,
    os_tid: u64,
    interp_id: i64,
) -> Result<ThreadId, RoundError> {
    if let Some(i) = &memo.ident {
        let same_name = match (&i.name, &memo.name) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        };
        if i.os_tid == os_tid && i.interp_id == interp_id && same_name {
            return Ok(i.id);
        }
    }
    let id = side
        .interner()
        .intern_thread(&ThreadKey {
            os_tid,
            name: memo.name.as_deref(),
            interpreter_id: interp_id,
        })
        .map_err(|e| RoundError::Fatal(e.into()))?;
    memo.ident = Some(Ident {
        os_tid,
        interp_id,
        name: memo.name.clone(),
        id,
    });
    Ok(id)
}

/// The interned id of a frame, cached by (code object, line). The walker decodes a code object
/// once and numbers each decoding (a code object freed and its address reused by another is
/// decoded afresh, under a new number), so a cached id whose number is the walker's current
/// one for that address is still right: one lookup on each side, no reading of the target, no
/// names. Called only for frames that changed since the thread's previous sample.
pub(crate) fn frame_id(
    cache: &mut FrameCache,
    side: &mut SamplerSide,
    names: &mut impl FrameNames,
    f: RawFrame,
    by_function: bool,
) -> Result<FrameId, RoundError> {
    let line = if by_function { None } else { f.line };
    let key = (f.code_addr, line);
    let serial = names.code_serial(f.code_addr);
    if let (Some(serial), Some(&(cached, id))) = (serial, cache.get(&key)) {
        if cached == serial {
            return Ok(id);
        }
    }
    // A code object freed since the sample: the round saw a target in mid-change.
    let (function, filename, first_line) = names
        .names(f)
        .map_err(|_| RoundError::Transient(ErrorKind::Torn))?;
    let id = side
        .interner()
        .intern_frame(&FrameKey::python(&function, &filename, line).with_first_line(first_line))
        .map_err(|e| RoundError::Fatal(e.into()))?;
    // Decoded now if it was not before.
    match serial.or_else(|| names.code_serial(f.code_addr)) {
        Some(serial) => {
            cache.insert(key, (serial, id));
        }
        None => {
            cache.remove(&key);
        }
    }
    Ok(id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use strobe_aggregate::AggregatorSide;

    /// Code objects by address (with the number of their decoding), counting lookups.
    #[derive(Default)]
    struct Codes {
        names: HashMap<u64, CodeNames>,
        serials: HashMap<u64, u64>,
        decoded: u64,
        lookups: usize,
    }

    impl Codes {
        /// (Re)define the code object at `addr`, as the walker does when it decodes one.
        fn define(&mut self, addr: u64, function: &str) {
            self.names
                .insert(addr, (function.into(), Arc::from("/app/x.py"), Some(1)));
            self.decoded += 1;
            self.serials.insert(addr, self.decoded);
        }
    }

    impl FrameNames for Codes {
        fn code_serial(&mut self, code_addr: u64) -> Option<u64> {
            self.lookups += 1;
            self.serials.get(&code_addr).copied()
        }

        fn names(&mut self, f: RawFrame) -> Result<CodeNames, WalkError> {
            self.names
                .get(&f.code_addr)
                .cloned()
                .ok_or(WalkError::Corrupt {
                    what: "code object",
                    addr: f.code_addr,
                })
        }
    }

    fn frame(code: u64, line: i32) -> RawFrame {
        RawFrame {
            code_addr: code,
            lasti: i64::from(line) * 4,
            line: Some(line),
        }
    }

    fn thread(unchanged: usize, holds_gil: bool) -> RawThread {
        RawThread {
            interp_addr: 0x1000,
            tstate_addr: 0x2000,
            thread_id: 77,
            holds_gil,
            unchanged,
            walked: true,
            ..RawThread::default()
        }
    }

    /// One thread state's memo and everything `stack_of` needs.
    struct Rig {
        memo: ThreadMemo,
        cache: FrameCache,
        fresh: Vec<FrameId>,
        side: SamplerSide,
        _agg: AggregatorSide,
        codes: Codes,
        walk: u64,
        /// The `--subprocesses` root frame, if any.
        root: Option<FrameId>,
    }

    impl Rig {
        fn new() -> Rig {
            let (side, agg) = strobe_aggregate::pipeline(16);
            let mut codes = Codes::default();
            for (addr, name) in [
                (0x10, "main"),
                (0x20, "work"),
                (0x30, "leaf"),
                (0x40, "other"),
            ] {
                codes.define(addr, name);
            }
            Rig {
                memo: ThreadMemo::new((0x1000, 77)),
                cache: FrameCache::default(),
                fresh: Vec::new(),
                side,
                _agg: agg,
                codes,
                walk: 0,
                root: None,
            }
        }

        /// A walk of `frames` (innermost first) of which the walker reports `unchanged`
        /// outermost ones as unchanged: the stack and the code lookups it took.
        fn sample(&mut self, frames: &[RawFrame], unchanged: usize) -> (StackId, usize) {
            self.walk += 1;
            let before = self.codes.lookups;
            let stack = self
                .try_sample(frames, unchanged)
                .unwrap_or_else(|_| panic!("failed"));
            (stack, self.codes.lookups - before)
        }

        fn try_sample(&mut self, frames: &[RawFrame], unchanged: usize) -> Result<StackId, ()> {
            stack_of(
                &mut self.memo,
                &mut self.cache,
                &mut self.fresh,
                &mut self.side,
                &mut self.codes,
                &thread(unchanged, true),
                frames,
                self.walk,
                false,
                self.root,
            )
            .map_err(|_| ())
        }

        /// The stack as (function, line), outermost first.
        fn resolve(&mut self, stack: StackId) -> Vec<(String, Option<i32>)> {
            let tables = self.side.interner().tables();
            tables
                .stack(stack)
                .iter()
                .map(|&id| {
                    let f = tables.frame(id).unwrap();
                    (tables.str(f.function).to_string(), f.line)
                })
                .collect()
        }

        fn stacks(&mut self) -> usize {
            self.side.interner().tables().num_stacks()
        }
    }

    fn names(stack: &[(String, Option<i32>)]) -> Vec<&str> {
        stack.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn a_changed_innermost_frame_reuses_the_outer_ids() {
        let mut rig = Rig::new();
        let first = [frame(0x30, 5), frame(0x20, 3), frame(0x10, 1)];
        let (s1, lookups) = rig.sample(&first, 0);
        assert_eq!(lookups, 3, "a first sample resolves every frame");
        assert_eq!(names(&rig.resolve(s1)), ["main", "work", "leaf"]);

        // The leaf moved to another line: only it is looked up.
        let second = [frame(0x30, 6), frame(0x20, 3), frame(0x10, 1)];
        let (s2, lookups) = rig.sample(&second, 2);
        assert_eq!(lookups, 1);
        assert_ne!(s1, s2);
        assert_eq!(
            rig.resolve(s2),
            [
                ("main".to_string(), Some(1)),
                ("work".to_string(), Some(3)),
                ("leaf".to_string(), Some(6))
            ]
        );

        // A different innermost function, one frame deeper.
        let third = [
            frame(0x40, 9),
            frame(0x30, 6),
            frame(0x20, 3),
            frame(0x10, 1),
        ];
        let (s3, lookups) = rig.sample(&third, 3);
        assert_eq!(lookups, 1);
        assert_eq!(names(&rig.resolve(s3)), ["main", "work", "leaf", "other"]);
    }

    #[test]
    fn a_process_root_frame_starts_every_stack_and_ids_are_still_reused() {
        let mut rig = Rig::new();
        let root = process_frame(&mut rig.side, 4242, "python app.py").unwrap();
        rig.root = Some(root);
        let first = [frame(0x30, 5), frame(0x20, 3), frame(0x10, 1)];
        let (s1, lookups) = rig.sample(&first, 0);
        assert_eq!(lookups, 3);
        assert_eq!(
            names(&rig.resolve(s1)),
            ["process 4242", "main", "work", "leaf"]
        );
        {
            let tables = rig.side.interner().tables();
            let f = tables.frame(root).unwrap();
            assert_eq!((tables.str(f.filename), f.line), ("python app.py", None));
        }
        // Same stack: no lookup, same id, nothing interned.
        let stacks = rig.stacks();
        let (s2, lookups) = rig.sample(&first, 3);
        assert_eq!((s2, lookups, rig.stacks()), (s1, 0, stacks));
        // The leaf moved: one lookup, the root and the outer frames kept.
        let second = [frame(0x30, 6), frame(0x20, 3), frame(0x10, 1)];
        let (s3, lookups) = rig.sample(&second, 2);
        assert_eq!(lookups, 1);
        assert_eq!(
            rig.resolve(s3),
            [
                ("process 4242".to_string(), None),
                ("main".to_string(), Some(1)),
                ("work".to_string(), Some(3)),
                ("leaf".to_string(), Some(6))
            ]
        );
        // Fewer frames: the root stays.
        let (s4, _) = rig.sample(&second[1..], 2);
        assert_eq!(names(&rig.resolve(s4)), ["process 4242", "main", "work"]);
    }

    #[test]
    fn an_unchanged_stack_reuses_its_stack_without_interning() {
        let mut rig = Rig::new();
        let frames = [frame(0x30, 5), frame(0x20, 3), frame(0x10, 1)];
        let (s1, _) = rig.sample(&frames, 0);
        let stacks = rig.stacks();
        let (s2, lookups) = rig.sample(&frames, 3);
        assert_eq!((s2, lookups, rig.stacks()), (s1, 0, stacks));

        // The innermost instruction moved within its line: looked up, same ids, same stack.
        let mut moved = frames;
        moved[0].lasti += 2;
        let (s3, lookups) = rig.sample(&moved, 2);
        assert_eq!((s3, lookups, rig.stacks()), (s1, 1, stacks));
    }

    #[test]
    fn with_a_bounded_stack_table_an_unchanged_stack_moves_to_the_current_generation() {
        let mut rig = Rig::new();
        let (side, agg) = strobe_aggregate::pipeline_streamed(
            16,
            1,
            strobe_aggregate::BreakdownOptions::default(),
        );
        (rig.side, rig._agg) = (side, agg);
        let frames = [frame(0x30, 5), frame(0x20, 3), frame(0x10, 1)];
        let (s1, _) = rig.sample(&frames, 0);
        let (s2, lookups) = rig.sample(&frames, 3);
        assert_eq!((s2, lookups), (s1, 0), "same generation: the memo's id");
        // A budget of one byte: every collection starts a new generation.
        assert!(rig.side.collect_stacks());
        let (s3, lookups) = rig.sample(&frames, 3);
        assert_eq!(lookups, 0, "no frame is looked up again");
        assert_ne!(s3, s1, "interned again, into the current generation");
        assert!(rig.side.interner().is_current(s3));
        // Two more collections forget s1's generation; s3 moved on before that.
        assert!(rig.side.collect_stacks());
        let (s4, _) = rig.sample(&frames, 3);
        assert!(rig.side.collect_stacks());
        assert!(!rig.side.interner().tables().holds_stack(s1));
        let (s5, _) = rig.sample(&frames, 3);
        assert!(rig.side.interner().tables().holds_stack(s5));
        assert_eq!(names(&rig.resolve(s5)), ["main", "work", "leaf"]);
        assert!(s5 > s4 && s4 > s3);
    }

    #[test]
    fn ids_are_only_reused_for_the_walk_right_after_theirs() {
        let mut rig = Rig::new();
        let frames = [frame(0x30, 5), frame(0x20, 3), frame(0x10, 1)];
        rig.sample(&frames, 0);
        // A walk in between that this memo did not see (the thread was filtered out, or the
        // round failed): the walker's `unchanged` refers to that walk, not to ours.
        rig.walk += 1;
        let (_, lookups) = rig.sample(&frames, 3);
        assert_eq!(lookups, 3);
    }

    #[test]
    fn a_code_object_replaced_at_the_same_address_is_interned_anew() {
        let mut rig = Rig::new();
        let frames = [frame(0x30, 5), frame(0x10, 1)];
        let (s1, _) = rig.sample(&frames, 0);
        // The leaf returned, its code object was freed and another one took its address; a
        // new call to it stands at the same line (so the walker reports it as changed).
        rig.codes.define(0x30, "reborn");
        let (s2, lookups) = rig.sample(&frames, 1);
        assert_eq!(lookups, 1);
        assert_ne!(s1, s2);
        assert_eq!(names(&rig.resolve(s2)), ["main", "reborn"]);
    }

    #[test]
    fn a_failed_lookup_leaves_no_half_updated_memo() {
        let mut rig = Rig::new();
        let (s1, _) = rig.sample(&[frame(0x30, 5), frame(0x10, 1)], 0);
        rig.walk += 1;
        assert!(rig
            .try_sample(&[frame(0x99, 5), frame(0x10, 1)], 1)
            .is_err());
        // The next walk cannot build on the failed one; it resolves everything again.
        let (s2, lookups) = rig.sample(&[frame(0x30, 5), frame(0x10, 1)], 2);
        assert_eq!((s2, lookups), (s1, 2));
    }

    #[test]
    fn thread_identity_is_interned_again_only_when_it_changes() {
        let mut rig = Rig::new();
        let threads = |rig: &mut Rig| rig.side.interner().tables().num_threads();
        let a = thread_of(&mut rig.memo, &mut rig.side, 501, 0).unwrap();
        assert_eq!(thread_of(&mut rig.memo, &mut rig.side, 501, 0).unwrap(), a);
        assert_eq!(threads(&mut rig), 1);
        // Renamed: a name lookup produced a new string.
        rig.memo.name = Some("worker-1".into());
        let b = thread_of(&mut rig.memo, &mut rig.side, 501, 0).unwrap();
        assert_ne!(a, b);
        // The same name from a later lookup (another allocation) is the same identity.
        rig.memo.name = Some("worker-1".into());
        assert_eq!(thread_of(&mut rig.memo, &mut rig.side, 501, 0).unwrap(), b);
        assert_ne!(thread_of(&mut rig.memo, &mut rig.side, 502, 0).unwrap(), b);
        assert_eq!(threads(&mut rig), 3);
    }

    #[test]
    fn threads_that_exit_are_forgotten_and_reused_thread_states_start_afresh() {
        let mut memos = HashMap::default();
        let at = |tstate: u64, ident: u64| RawThread {
            tstate_addr: tstate,
            thread_id: ident,
            ..thread(0, false)
        };
        assert!(note_threads(&mut memos, &[at(0xa0, 1), at(0xb0, 2)], 1));
        memos.get_mut(&0xb0).unwrap().stack = Some(StackId(7));
        // Nothing new.
        assert!(!note_threads(&mut memos, &[at(0xa0, 1), at(0xb0, 2)], 2));
        assert_eq!(memos[&0xb0].stack, Some(StackId(7)));
        // Thread 1 exited.
        assert!(!note_threads(&mut memos, &[at(0xb0, 2)], 3));
        assert_eq!(memos.len(), 1);
        assert!(!memos.contains_key(&0xa0));
        // Thread 2 exited and a new thread got its thread state: nothing of 2 is kept.
        assert!(note_threads(&mut memos, &[at(0xb0, 3)], 4));
        assert_eq!(memos[&0xb0].owner, (0x1000, 3));
        assert_eq!(memos[&0xb0].stack, None);
    }
}
