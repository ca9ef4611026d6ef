//! Between full checks a sample that does not want every thread reads only the thread states
//! that matter (see "Thread states read only where they matter" in the walker's `sample`
//! module): these tests change the thread lists between samples, as CPython does (a state
//! that leaves is unlinked and keeps its old bytes; a new one is linked in at the head), and
//! check every sample against a walk that remembers nothing.

use super::*;

/// Layouts with `prev` links and each frame model and GIL model.
fn layouts() -> [Layout; 7] {
    [
        layout(3, 6, false),
        l310(),
        l311(),
        l312(),
        l313(),
        l314(),
        l314t(),
    ]
}

/// `n` threads of one interpreter (idents `0x100 + k`, kernel ids `100 + k`), each running one
/// frame of its own code object, nobody holding the GIL, and a long-lived walker on it.
struct Fixture {
    img: Image,
    live: Live,
    w: Walker<Live>,
    raw: RawSample,
    interp: u64,
    ts: Vec<u64>,
    roots: Roots,
    inner: Vec<u64>,
    /// (batched reads, single reads) of the latest sample.
    counts: (usize, usize),
    /// The ranges of the latest sample's batched read.
    batch: Vec<(u64, usize)>,
}

impl Fixture {
    fn new(l: Layout, n: u64) -> Fixture {
        let mut img = Image::new(l);
        let mut threads = Vec::new();
        let mut inner = Vec::new();
        for k in 0..n {
            let code = img.code(&format!("t{k}"), "/t.py", 10, 8);
            let frame = match l.frame_model {
                FrameModel::FrameObject => img.frame_objects(&[(code, 2)]),
                _ => {
                    let c = img.chunk(4096, 0);
                    img.chunk_frames(c, 0, &[(code, 2)], 0)[0]
                }
            };
            inner.push(frame);
            threads.push(Thread::new(0x100 + k, 100 + k as u32, frame));
        }
        let (interp, ts, roots) = img.one_interpreter(&threads);
        set_gil_holder(&mut img, interp, roots, 0);
        let (w, live) = live_walker(&mut img, roots);
        Fixture {
            img,
            live,
            w,
            raw: RawSample::new(),
            interp,
            ts,
            roots,
            inner,
            counts: (0, 0),
            batch: Vec::new(),
        }
    }

    fn off(v: Option<u32>) -> u64 {
        u64::from(v.unwrap())
    }

    /// Unlink thread state `t` as CPython does; its memory keeps its bytes.
    fn unlink(&mut self, t: u64) {
        let interp = self.interp;
        edit(&mut self.img, &self.live, |img| {
            let l = img.l;
            let prev = img.mem.read_u64(t + Self::off(l.tstate_prev)).unwrap();
            let next = img.mem.read_u64(t + u64::from(l.tstate_next)).unwrap();
            match prev {
                0 => img
                    .mem
                    .write_u64(interp + u64::from(l.interp_tstate_head), next),
                p => img.mem.write_u64(p + u64::from(l.tstate_next), next),
            }
            if next != 0 {
                img.mem.write_u64(next + Self::off(l.tstate_prev), prev);
            }
        });
    }

    /// Make `at` (new memory when 0) a thread state with these ids running frame `inner`,
    /// linked in at the head as CPython does; returns it.
    fn link_new(&mut self, at: u64, ident: u64, native: u32, inner: u64) -> u64 {
        let interp = self.interp;
        edit(&mut self.img, &self.live, |img| {
            let l = img.l;
            let t = match at {
                0 => img.mem.alloc(l.tstate_size as usize),
                at => at,
            };
            let head_at = interp + u64::from(l.interp_tstate_head);
            let head = img.mem.read_u64(head_at).unwrap();
            img.mem.write_u64(t + Self::off(l.tstate_prev), 0);
            img.mem.write_u64(t + u64::from(l.tstate_next), head);
            img.mem.write_u64(t + u64::from(l.tstate_interp), interp);
            img.mem.write_u64(t + u64::from(l.tstate_thread_id), ident);
            if let Some(off) = l.tstate_native_thread_id {
                img.mem.write_u64(t + u64::from(off), u64::from(native));
            }
            img.set_innermost(t, inner);
            if head != 0 {
                img.mem.write_u64(head + Self::off(l.tstate_prev), t);
            }
            img.mem.write_u64(head_at, t);
            t
        })
    }

    /// Set the ids of thread state `t` (a thread binding its preallocated state).
    fn set_ids(&mut self, t: u64, ident: u64, native: u32) {
        edit(&mut self.img, &self.live, |img| {
            let l = img.l;
            img.mem.write_u64(t + u64::from(l.tstate_thread_id), ident);
            if let Some(off) = l.tstate_native_thread_id {
                img.mem.write_u64(t + u64::from(off), u64::from(native));
            }
        });
    }

    fn set_holder(&mut self, holder: u64) {
        let (interp, roots) = (self.interp, self.roots);
        edit(&mut self.img, &self.live, |img| {
            set_gil_holder(img, interp, roots, holder)
        });
    }

    /// A sample wanting the frames of `want` only, checked against a fresh walk: every thread
    /// there is here, in the same order and with the same ids and GIL; every thread here is
    /// there unless its state was not read (a thread that left, reported until a full check);
    /// a thread whose state was read and that is wanted or holds the GIL has the fresh walk's
    /// frames. Returns how many threads were reported without their state read.
    fn sample(&mut self, want: &[u64]) -> usize {
        let version = self.img.l.version;
        self.live.take_counts();
        self.w
            .sample_wanted_into(&mut self.raw, &mut |t| want.contains(&t))
            .unwrap();
        self.counts = self.live.take_counts();
        self.batch = self.live.last_batch.borrow().clone();
        let fresh = Walker::new(self.live.clone(), self.img.l, self.roots)
            .walk()
            .unwrap();
        let fresh = flat_walk(&fresh);
        let mut unread = 0;
        let mut next_fresh = fresh.iter().peekable();
        for t in &self.raw.threads {
            let matching = next_fresh.peek().filter(|f| f.0 == t.tstate_addr);
            let Some(f) = matching else {
                assert!(
                    !t.state_read && !t.walked,
                    "{version:?}: {:#x} (ident {:#x}) is not in the list but was read; \
                     fresh: {fresh:x?}",
                    t.tstate_addr,
                    t.thread_id
                );
                unread += 1;
                continue;
            };
            if !t.state_read {
                unread += 1;
                assert!(!t.walked && t.exception.is_none() && !t.holds_gil);
            }
            assert_eq!(
                (t.thread_id, t.holds_gil),
                (f.1, f.2),
                "{version:?}: {:#x}",
                t.tstate_addr
            );
            if t.walked {
                let frames: Vec<_> = f.3.iter().map(no_entry).collect();
                let got: Vec<_> = self
                    .raw
                    .frames_of(t)
                    .iter()
                    .map(|&fr| {
                        let info = self.w.frame_info(fr).unwrap();
                        (
                            info.function.to_string(),
                            info.filename.to_string(),
                            fr.line,
                        )
                    })
                    .collect();
                assert_eq!(got, frames, "{version:?}: {:#x}", t.tstate_addr);
            }
            assert!(
                t.walked || !(want.contains(&t.tstate_addr) || t.holds_gil),
                "{version:?}: {:#x} wanted but not walked",
                t.tstate_addr
            );
            next_fresh.next();
        }
        assert!(
            next_fresh.next().is_none(),
            "{version:?}: a thread of the list is missing: {:x?}",
            self.raw.threads
        );
        unread
    }

    /// Which threads of the latest sample had their state read.
    fn read_pattern(&self) -> Vec<bool> {
        self.raw.threads.iter().map(|t| t.state_read).collect()
    }

    /// Whether the latest batched read touched thread state `t`'s first fields.
    fn batch_touched(&self, t: u64) -> bool {
        self.batch
            .iter()
            .any(|&(a, n)| a < t + 32 && t < a + n as u64)
    }
}

#[test]
fn between_full_checks_only_the_states_that_matter_are_read() {
    for l in layouts().into_iter().chain([l27()]) {
        let mut f = Fixture::new(l, 6);
        let want = [f.ts[3]];
        assert_eq!(
            f.sample(&want),
            0,
            "{:?}: the first sample reads all",
            l.version
        );
        let unread = f.sample(&want);
        assert_eq!(f.counts, (1, 0), "{:?}", l.version);
        if l.tstate_prev.is_none() {
            // 2.7: without `prev` links the states alone cannot show a new thread.
            assert_eq!(unread, 0);
            continue;
        }
        // The head, and the wanted thread with its neighbours.
        assert_eq!(
            f.read_pattern(),
            [true, false, true, true, true, false],
            "{:?}",
            l.version
        );
        assert!(!f.batch_touched(f.ts[1]) && !f.batch_touched(f.ts[5]));
        assert!(f.batch_touched(f.ts[3]));
        // Unread threads keep their ids and kernel ids.
        let t5 = &f.raw.threads[5];
        assert_eq!((t5.thread_id, t5.walked), (0x105, false));
        if l.tstate_native_thread_id.is_some() {
            assert_eq!(t5.native_id, Some(105));
        }
        // A full check (every state read) after every 16 samples.
        let full = (0..34)
            .filter(|_| {
                f.sample(&want);
                f.read_pattern().iter().all(|&r| r)
            })
            .count();
        assert_eq!(full, 2, "{:?}", l.version);
        // Every thread wanted: every state, every sample.
        for _ in 0..3 {
            let all = f.ts.clone();
            assert_eq!(f.sample(&all), 0, "{:?}", l.version);
        }
    }
}

/// Which thread leaves, or what happens to the list, in [`changes_to_the_list_are_seen`].
#[derive(Debug, Clone, Copy)]
enum Change {
    /// Thread k leaves.
    Leaves(usize),
    /// The head leaves and a new thread is linked in, between two samples.
    HeadLeavesThenNew,
    /// Thread k leaves and a new thread's state takes its memory.
    Reused(usize),
    /// A new thread is linked in at the head.
    New,
}

/// A change to the list between two samples that want thread 3's frames, from every phase of
/// the full-check cycle: changes that touch a state the sample reads are seen at the next
/// sample; a thread whose state is not read leaving is seen by the next full check, and is
/// never reported as read meanwhile.
#[test]
fn changes_to_the_list_are_seen() {
    let changes = [
        Change::Leaves(3),
        Change::Leaves(2),
        Change::Leaves(4),
        Change::Leaves(0),
        Change::Leaves(1),
        Change::Leaves(5),
        Change::HeadLeavesThenNew,
        Change::Reused(1),
        Change::Reused(3),
        Change::New,
    ];
    for l in layouts() {
        for change in changes {
            for phase in 0..17 {
                let mut f = Fixture::new(l, 6);
                let want = [f.ts[3]];
                for _ in 0..=phase {
                    f.sample(&want);
                }
                let new_frame = f.inner[0];
                match change {
                    Change::Leaves(k) => f.unlink(f.ts[k]),
                    Change::HeadLeavesThenNew => {
                        f.unlink(f.ts[0]);
                        f.link_new(0, 0x900, 900, new_frame);
                    }
                    Change::Reused(k) => {
                        f.unlink(f.ts[k]);
                        f.link_new(f.ts[k], 0x900, 900, new_frame);
                    }
                    Change::New => {
                        f.link_new(0, 0x900, 900, new_frame);
                    }
                }
                f.sample(&want);
                let seen_now = !matches!(change, Change::Leaves(1) | Change::Leaves(5));
                if seen_now {
                    // The sample's own checks allow an unread thread that left: here none.
                    let stale = f.raw.threads.len() - f.fresh_len();
                    assert_eq!(stale, 0, "{:?} {change:?} phase {phase}", l.version);
                }
                if matches!(change, Change::New | Change::HeadLeavesThenNew) {
                    let t = &f.raw.threads[0];
                    assert_eq!((t.thread_id, t.state_read), (0x900, true));
                }
                for _ in 0..16 {
                    f.sample(&want);
                }
                assert_eq!(
                    f.raw.threads.len(),
                    f.fresh_len(),
                    "{:?} {change:?} phase {phase}: left over after a full check",
                    l.version
                );
            }
        }
    }
}

impl Fixture {
    /// Threads in the list now.
    fn fresh_len(&self) -> usize {
        Walker::new(self.live.clone(), self.img.l, self.roots)
            .walk()
            .unwrap()
            .len()
    }
}

/// The GIL holder's frames are read whoever is wanted; when the batch left its state out, its
/// state is read after it, and its links are checked too.
#[test]
fn the_gil_holder_is_walked_even_when_its_state_was_left_unread() {
    for l in layouts() {
        let mut f = Fixture::new(l, 8);
        let want = [f.ts[7]];
        f.sample(&want);
        f.set_holder(f.ts[3]);
        f.sample(&want);
        let t3 = &f.raw.threads[3];
        assert!(t3.holds_gil, "{:?}", l.version);
        assert!(t3.state_read && t3.walked, "{:?}", l.version);
        assert!(!f.raw.threads[2].state_read, "{:?}", l.version);
        // Its neighbour leaves: only the holder's own links show it.
        f.unlink(f.ts[2]);
        f.sample(&want);
        assert_eq!(f.raw.threads.len(), 7, "{:?}", l.version);
        assert!(f.raw.threads[2].holds_gil && f.raw.threads[2].walked);
    }
}

/// A state whose ids are not final (0 until a started thread binds it, 3.12+; its creator's
/// until then, ≤3.11) is read every sample until they are.
#[test]
fn ids_not_settled_are_read_every_sample() {
    for l in layouts() {
        for creator in [false, true] {
            let mut f = Fixture::new(l, 6);
            let want = [f.ts[4]];
            f.sample(&want);
            let (ident, native) = if creator { (0x102, 102) } else { (0, 0) };
            let frame = f.inner[0];
            let x = f.link_new(0, ident, native, frame);
            // Linked in at the head, then another one: x is neither head nor a neighbour of
            // the wanted thread.
            f.link_new(0, 0x901, 901, frame);
            for _ in 0..3 {
                f.sample(&want);
                let t = &f.raw.threads[1];
                assert_eq!(t.tstate_addr, x);
                assert!(t.state_read, "{:?} creator {creator}", l.version);
            }
            // The creator (thread 2, at index 4 now) is read too while they share ids.
            if creator {
                assert!(f.raw.threads[4].state_read, "{:?}", l.version);
            }
            f.set_ids(x, 0x900, 900);
            f.sample(&want);
            assert_eq!(f.raw.threads[1].thread_id, 0x900, "{:?}", l.version);
            // Settled: no longer read between full checks.
            let unread = (0..16)
                .filter(|_| {
                    f.sample(&want);
                    !f.raw.threads[1].state_read
                })
                .count();
            assert!(unread >= 14, "{:?} creator {creator}: {unread}", l.version);
        }
    }
}

/// Two interpreters, each with its own list head and (3.12+) its own GIL: a sample wanting a
/// thread of the main interpreter reads the subinterpreter's head, sees its head thread leave
/// and a new one come, and walks its GIL holder although it was not wanted.
#[test]
fn a_subinterpreter_is_checked_by_its_own_head_and_its_gil_holder_walked() {
    for l in [l312(), l313(), l314()] {
        let mut img = Image::new(l);
        let code = img.code("w", "/w.py", 1, 8);
        let mut frame = || {
            let c = img.chunk(4096, 0);
            img.chunk_frames(c, 0, &[(code, 2)], 0)[0]
        };
        let specs = |base: u64, frames: &[u64]| -> Vec<(u64, u32, u64)> {
            (0..frames.len() as u64)
                .map(|k| (base + k, (base + k) as u32, frames[k as usize]))
                .collect()
        };
        let main_frames: Vec<u64> = (0..4).map(|_| frame()).collect();
        let sub_frames: Vec<u64> = (0..5).map(|_| frame()).collect();
        let main = img.interp(0);
        let sub = img.interp(1);
        let main_ts = img.threads(main, &specs(0x100, &main_frames));
        let sub_ts = img.threads(sub, &specs(0x200, &sub_frames));
        let roots = img.roots(&[main, sub]);
        set_gil_holder(&mut img, main, roots, 0);
        set_gil_holder(&mut img, sub, roots, sub_ts[3]);
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        let want = main_ts[2];
        let sample = |w: &mut Walker<Live>, raw: &mut RawSample| {
            w.sample_wanted_into(raw, &mut |t| t == want).unwrap();
            raw.threads
                .iter()
                .map(|t| (t.thread_id, t.state_read, t.walked, t.holds_gil))
                .collect::<Vec<_>>()
        };
        sample(&mut w, &mut raw);
        let got = sample(&mut w, &mut raw);
        // Main: head, and the wanted thread with its neighbours; sub: its head, and its GIL
        // holder read after the batch and walked.
        let read: Vec<bool> = got.iter().map(|t| t.1).collect();
        assert_eq!(
            read,
            [true, true, true, true, true, false, false, true, false],
            "{:?}",
            l.version
        );
        assert_eq!(got[7], (0x203, true, true, true), "{:?}", l.version);
        assert!(got[2].2 && !got[0].2, "{:?}", l.version);
        // The subinterpreter's head leaves and a new thread comes in its place at the head
        // (a freed head keeps NULL in `prev`): seen at the next sample.
        edit(&mut img, &live, |img| {
            let prev = u64::from(l.tstate_prev.unwrap());
            let next = u64::from(l.tstate_next);
            let head_at = sub + u64::from(l.interp_tstate_head);
            img.mem.write_u64(head_at, sub_ts[1]);
            img.mem.write_u64(sub_ts[1] + prev, 0);
            let t = img.mem.alloc(l.tstate_size as usize);
            img.mem.write_u64(t + next, sub_ts[1]);
            img.mem.write_u64(t + u64::from(l.tstate_interp), sub);
            img.mem.write_u64(t + u64::from(l.tstate_thread_id), 0x2ff);
            img.mem
                .write_u64(t + u64::from(l.tstate_native_thread_id.unwrap()), 0x2ff);
            img.set_innermost(t, sub_frames[0]);
            img.mem.write_u64(sub_ts[1] + prev, t);
            img.mem.write_u64(head_at, t);
        });
        let got = sample(&mut w, &mut raw);
        let idents: Vec<u64> = got.iter().map(|t| t.0).collect();
        assert_eq!(
            idents,
            [0x100, 0x101, 0x102, 0x103, 0x2ff, 0x201, 0x202, 0x203, 0x204],
            "{:?}",
            l.version
        );
        let fresh = Walker::new(live.clone(), l, roots).walk().unwrap();
        let fresh: Vec<u64> = fresh.iter().map(|t| t.thread_id).collect();
        assert_eq!(idents, fresh, "{:?}", l.version);
    }
}

/// The words a read of the GIL's state takes: the holder's word, or the GIL's flag and holder.
fn gil_words(f: &Fixture) -> Vec<u64> {
    let l = f.img.l;
    match l.gil_model {
        GilModel::CurrentSymbol => vec![f.roots.tstate_current.unwrap()],
        GilModel::RuntimeTstateCurrent => {
            vec![f.roots.runtime.unwrap() + u64::from(l.runtime_tstate_current.unwrap())]
        }
        GilModel::InterpGilPointer => {
            let ptr_at = f.interp + u64::from(l.interp_ceval_gil.unwrap());
            let gil = f.live.mem.borrow().read_u64(ptr_at).unwrap();
            vec![
                gil + u64::from(l.gil_locked.unwrap()),
                gil + u64::from(l.gil_last_holder.unwrap()),
            ]
        }
    }
}

/// A read without the GIL (`Walker::sample_wanted_without_gil_into`) leaves the memory the
/// running threads hand the GIL over with out of its one batched read: no thread holds the GIL
/// in it, and the holder is walked only if wanted. The next ordinary sample has the holder
/// again.
#[test]
fn a_read_without_the_gil_leaves_its_memory_alone() {
    for l in layouts() {
        let mut f = Fixture::new(l, 4);
        let (wanted, holder) = (f.ts[0], f.ts[2]);
        f.set_holder(holder);
        f.sample(&[wanted]);
        assert!(f.raw.threads[2].holds_gil && f.raw.threads[2].walked);
        let words = gil_words(&f);
        let touched =
            |batch: &[(u64, usize)], w: u64| batch.iter().any(|&(a, n)| a <= w && w < a + n as u64);
        assert!(
            words.iter().all(|&w| touched(&f.batch, w)),
            "{:?}: an ordinary sample reads the GIL in its batch",
            l.version
        );
        f.live.take_counts();
        f.w.sample_wanted_without_gil_into(&mut f.raw, &mut |t| t == wanted)
            .unwrap();
        assert_eq!(f.live.take_counts(), (1, 0), "{:?}", l.version);
        let batch = f.live.last_batch.borrow().clone();
        assert!(
            !words.iter().any(|&w| touched(&batch, w)),
            "{:?}: {batch:x?} reads the GIL at {words:x?}",
            l.version
        );
        assert!(
            f.raw.threads.iter().all(|t| !t.holds_gil),
            "{:?}",
            l.version
        );
        assert!(!f.raw.threads[2].walked, "{:?}", l.version);
        let t0 = &f.raw.threads[0];
        assert!(
            t0.walked && f.raw.frames_of(t0).len() == 1,
            "{:?}",
            l.version
        );
        f.sample(&[wanted]);
        assert!(f.raw.threads[2].holds_gil && f.raw.threads[2].walked);
    }
}
