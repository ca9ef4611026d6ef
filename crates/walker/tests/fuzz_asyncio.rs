//! `dump --async`'s reader (`strobe_walker::asyncio::read_tasks`) over a synthetic image and
//! over corrupted copies of it: the image must read back exactly, and every corrupted case must
//! end with a value or a typed error: no panic, no endless loop, no giant read.
//!
//! The image is the fuzz walker's image of each 3.14+ layout (free-threaded ones included) (`support::build`: code objects,
//! strings, frames) plus what asyncio adds, built here: a thread's task list (the asyncio
//! fields of a thread state), three tasks (`outer` awaited by nobody, `inner` awaited by
//! `outer`, `leaf` awaited by `inner`), their coroutines (whose frames are copies of a frame of
//! the image, so their code and line are known), a coroutine awaited by another, a
//! `FutureIter` and a future, and the type objects naming them.
//!
//! Cases: `STROBE_FUZZ_CASES` / 50 (default 20,000 in all), `STROBE_FUZZ_SEED`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use strobe_python_abi::{debug_offsets_for, Layout, ALL};
use strobe_testkit::Rng;
use strobe_walker::asyncio::{read_tasks, AsyncState, AsyncioOffsets, ChainReader, TaskState};
use strobe_walker::Walker;
use support::build::{build, Built};
use support::{FuzzMemory, Racing, MAX_READ};

/// Most reads one call may make.
const READ_BUDGET: u64 = 200_000;
/// Where our regions start (the builder's start at 0x5555_0000_0000).
const BASE: u64 = 0x6666_0000_0000;

/// Regions we add, by address.
struct Extra {
    regions: Vec<(u64, Vec<u8>)>,
    next: u64,
}

impl Extra {
    fn alloc(&mut self, len: usize) -> u64 {
        let at = self.next;
        self.regions.push((at, vec![0; len]));
        self.next += (len as u64 + 0xfff) & !0xfff;
        at
    }
    fn put(&mut self, addr: u64, bytes: &[u8]) {
        let (base, r) = self
            .regions
            .iter_mut()
            .find(|(b, r)| addr >= *b && addr < *b + r.len() as u64)
            .unwrap();
        let off = (addr - *base) as usize;
        r[off..off + bytes.len()].copy_from_slice(bytes);
    }
    fn u64(&mut self, addr: u64, v: u64) {
        self.put(addr, &v.to_le_bytes());
    }
    /// A static type object named `name`.
    fn type_object(&mut self, l: &Layout, name: &str) -> u64 {
        let t = self.alloc(1024);
        let s = self.alloc(name.len() + 1);
        self.put(s, name.as_bytes());
        self.u64(t + u64::from(l.type_name), s);
        self.u64(t + u64::from(l.type_flags), 0);
        t
    }
    fn object(&mut self, l: &Layout, ty: u64, len: usize) -> u64 {
        let o = self.alloc(len);
        self.u64(o + u64::from(l.pyobject_ob_type), ty);
        o
    }
}

/// The section bytes of 3.14 and 3.15 (task offsets as in Debian sid's builds; free-threaded
/// builds move every task member by the 16 bytes their object header adds, and end the task
/// with `task_tid`), with the thread fields placed in our small thread area.
fn offsets_bytes(l: &Layout) -> Vec<u8> {
    let d = u64::from(l.pyobject_size) - 16;
    let tid = if l.flavour.free_threaded { 8 } else { 0 };
    let words: [u64; 13] = [
        0xa8 + d + tid,
        0x88 + d,
        0x60 + d,
        0x6c + d,
        0x6d + d,
        0x80 + d,
        0x98 + d, // task
        0x100,
        0x10, // interpreter: size, tasks head
        0x100,
        0x00,
        0x08,
        0x20, // thread: size, running loop, running task, tasks head
    ];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

struct Image {
    built: Built,
    regions: Vec<(u64, Vec<u8>)>,
    offsets: AsyncioOffsets,
    tstate: u64,
    interp: u64,
    tasks: [u64; 3],
    future: u64,
    frame: (String, String, Option<i32>),
}

fn image(l: &Layout) -> Image {
    let built = build(
        l,
        debug_offsets_for(l.version.major, l.version.minor, l.flavour),
    );
    let o = AsyncioOffsets::decode(&offsets_bytes(l), l).unwrap();
    // The leaf frame of the image: what each coroutine's frame is a copy of.
    let mem = FuzzMemory::new(built.regions.clone());
    mem.reset_reads(READ_BUDGET);
    let mut w = Walker::new(&mem, *l, built.roots);
    let stacks = w.walk().unwrap();
    let leaf = stacks
        .iter()
        .find(|t| t.tstate_addr == built.leaf_tstate)
        .unwrap();
    let f = &leaf.frames[0];
    let frame_info = (f.function.to_string(), f.filename.to_string(), f.line);
    let iframe_len = l.iframe_size.unwrap() as usize;
    let frame_bytes: Vec<u8> = {
        let (base, bytes) = built
            .regions
            .iter()
            .find(|(b, r)| built.leaf_frame >= *b && built.leaf_frame < *b + r.len() as u64)
            .unwrap();
        let off = (built.leaf_frame - base) as usize;
        bytes[off..off + iframe_len].to_vec()
    };
    let name = built.slots.strings[0].0;

    let mut x = Extra {
        regions: Vec::new(),
        next: BASE,
    };
    let coro_t = x.type_object(l, "coroutine");
    let iter_t = x.type_object(l, "_asyncio.FutureIter");
    let fut_t = x.type_object(l, "_asyncio.Future");
    let task_t = x.type_object(l, "_asyncio.Task");
    let loop_t = x.type_object(l, "_UnixSelectorEventLoop");
    let the_loop = x.object(l, loop_t, 64);
    let future = x.object(l, fut_t, 256);
    let iter = x.object(l, iter_t, 64);
    x.u64(iter + u64::from(l.pyobject_size), future);
    let tstate = x.alloc(0x100);
    let interp = x.alloc(0x100);
    // Empty interpreter list: the head points at itself.
    x.u64(interp + o.interp_tasks_head, interp + o.interp_tasks_head);
    let gen_size = (l.gen_iframe.unwrap() as usize + iframe_len + 64 * 8).max(1024);
    let coroutine = |x: &mut Extra, awaits: u64| -> u64 {
        let c = x.object(l, coro_t, gen_size);
        let frame = c + u64::from(l.gen_iframe.unwrap());
        x.put(frame, &frame_bytes);
        let base = frame + u64::from(l.iframe_localsplus.unwrap());
        // The awaited object 4 slots up, the stack pointer above it (3.15 keeps a null on top).
        x.u64(base + 3 * 8, awaits);
        x.u64(
            frame + u64::from(l.iframe_stackpointer.unwrap()),
            base + 5 * 8,
        );
        x.put(
            c + u64::from(l.gen_frame_state.unwrap()),
            &[l.frame_suspended_yield_from.unwrap() as u8],
        );
        c
    };
    let mut tasks = [0u64; 3];
    for t in &mut tasks {
        *t = x.object(l, task_t, o.task_size as usize);
    }
    // leaf: a coroutine awaiting a coroutine awaiting the FutureIter of `future`.
    let deep = coroutine(&mut x, iter);
    let coros = [
        coroutine(&mut x, iter),
        coroutine(&mut x, iter),
        coroutine(&mut x, deep),
    ];
    for (i, &t) in tasks.iter().enumerate() {
        x.u64(t + o.fut_loop, the_loop);
        x.put(t + o.fut_state, &0i32.to_le_bytes());
        x.put(t + o.task_is_task, &[1]);
        x.u64(t + o.task_name, name);
        x.u64(t + o.task_coro, coros[i]);
        x.u64(t + o.task_fut_waiter, future);
        x.u64(t + o.task_awaited_by, if i == 0 { 0 } else { tasks[i - 1] });
        // The list: head -> task 0 -> task 1 -> task 2 -> head.
        let node = t + o.task_node;
        let next = if i + 1 < tasks.len() {
            tasks[i + 1] + o.task_node
        } else {
            tstate + o.tstate_tasks_head
        };
        x.u64(node, next);
    }
    x.u64(tstate + o.tstate_tasks_head, tasks[0] + o.task_node);
    x.u64(tstate + o.tstate_running_loop, the_loop);
    x.u64(tstate + o.tstate_running_task, tasks[1]);
    let mut regions = built.regions.clone();
    regions.extend(x.regions);
    Image {
        built,
        regions,
        offsets: o,
        tstate,
        interp,
        tasks,
        future,
        frame: frame_info,
    }
}

fn read(mem: &FuzzMemory, l: &Layout, img: &Image) -> Result<AsyncState, strobe_walker::WalkError> {
    let mut w = Walker::new(mem, *l, img.built.roots);
    read_tasks(&mut w, &img.offsets, &[img.interp], &[img.tstate])
}

fn layouts() -> impl Iterator<Item = &'static Layout> {
    ALL.iter().filter(|l| l.gen_iframe.is_some())
}

#[test]
fn the_image_reads_back_exactly() {
    assert!(layouts().count() >= 4);
    for l in layouts() {
        let img = image(l);
        let mem = FuzzMemory::new(img.regions.clone());
        mem.reset_reads(READ_BUDGET);
        let state = read(&mem, l, &img).unwrap();
        assert!(state.errors.is_empty(), "{:?}", state.errors);
        assert_eq!(state.tasks.len(), 3);
        let frame = |n: usize| vec![img.frame.clone(); n];
        for (i, t) in state.tasks.iter().enumerate() {
            assert_eq!(t.addr, img.tasks[i]);
            assert_eq!(t.error, None, "{t:?}");
            assert_eq!(
                t.state,
                if i == 1 {
                    TaskState::Running
                } else {
                    TaskState::Pending
                }
            );
            let stack: Vec<(String, String, Option<i32>)> = t
                .stack
                .iter()
                .map(|f| (f.function.clone(), f.filename.clone(), f.line))
                .collect();
            assert_eq!(stack, frame(if i == 2 { 2 } else { 1 }), "{t:?}");
            // Each frame is the one inside its coroutine, running the image's leaf code.
            for f in &t.stack {
                assert_eq!(f.frame.code, img.built.leaf_code, "{t:?}");
            }
            let awaits = t.awaits.as_ref().unwrap();
            assert_eq!(awaits.addr, img.future, "{t:?}");
            assert_eq!(awaits.value.type_name.as_deref(), Some("_asyncio.Future"));
            assert_eq!(t.waiter.as_ref().unwrap().addr, img.future);
            let by: Vec<u64> = if i == 0 {
                vec![]
            } else {
                vec![img.tasks[i - 1]]
            };
            assert_eq!(t.awaited_by, by);
        }
        assert_eq!(state.running.len(), 1);
        assert_eq!(state.running[0].task, img.tasks[1]);
    }
}

#[test]
fn corrupted_images_end_with_a_value_or_an_error() {
    let total: u64 = std::env::var("STROBE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(20_000, |n: u64| (n / 50).max(100));
    let seed: u64 = std::env::var("STROBE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_a5c1);
    let all: Vec<&Layout> = layouts().collect();
    let per = total / all.len() as u64;
    for l in all {
        let img = image(l);
        let mem = FuzzMemory::new(img.regions.clone());
        // Our regions: where the asyncio structures are.
        let ours = mem.regions_from(BASE);
        let mut rng = Rng::new(seed ^ u64::from(l.version.minor));
        for case in 0..per {
            let applied = mem.poke_words(&mut rng, &ours, &img.tasks[..3]);
            mem.reset_reads(READ_BUDGET);
            let got = catch_unwind(AssertUnwindSafe(|| read(&mem, l, &img)));
            let name = format!("{}.{}", l.version.major, l.version.minor);
            assert!(got.is_ok(), "{name} case {case}: panic with {applied:x?}");
            assert!(
                !mem.over_budget(),
                "{name} case {case}: more than {READ_BUDGET} reads with {applied:x?}"
            );
            assert!(mem.largest_read().0 <= MAX_READ, "{name} case {case}");
            if let Ok(Ok(state)) = got {
                assert!(state.tasks.len() <= strobe_walker::asyncio::MAX_TASKS);
                for t in &state.tasks {
                    assert!(t.stack.len() <= strobe_walker::asyncio::MAX_AWAIT_DEPTH + 1);
                    assert!(t.awaited_by.len() <= strobe_walker::asyncio::MAX_AWAITED_BY);
                }
            }
            mem.restore();
        }
    }
}

/// What CI saw on 3.14 under load: the running task's chain was read while the task finished
/// and its awaiter resumed past its `await`, so the awaiter's frame was read at a later line,
/// and that chain was kept for the task's next samples. A chain read while the thread's
/// running task changed is dropped and not kept; read again undisturbed, it is whole.
#[test]
fn a_chain_read_while_its_task_stops_running_is_dropped() {
    for l in layouts() {
        let img = image(l);
        let mem = FuzzMemory::new(img.regions.clone());
        let o = &img.offsets;
        let [outer, mid, _] = img.tasks;
        // The awaiter's coroutine frame: once it is read, `outer` runs (mid is done).
        let coro = mem.peek_u64(outer + o.task_coro).unwrap();
        let resumes = |m: &FuzzMemory| {
            m.poke_u64(img.tstate + o.tstate_running_task, outer);
        };
        let racing = Racing {
            mem: &mem,
            at: coro + u64::from(l.gen_iframe.unwrap()),
            times: Cell::new(1),
            change: &resumes,
        };
        let name = format!("{}.{}", l.version.major, l.version.minor);
        let mut w = Walker::new(&racing, *l, img.built.roots);
        let mut reader = ChainReader::new();
        mem.reset_reads(READ_BUDGET);
        let got = reader.running(&mut w, o, img.tstate, Some(mid)).unwrap();
        assert_eq!(got, None, "{name}");
        assert_eq!(racing.times.get(), 0, "{name}: the race never ran");
        assert!(
            reader.reusable(mid).is_none(),
            "{name}: a torn chain was kept"
        );

        // Undisturbed (mid running again): the chain of mid and outer, kept for reuse.
        mem.restore();
        mem.poke_u64(img.tstate + o.tstate_running_task, mid);
        let chain = reader
            .running(&mut w, o, img.tstate, Some(mid))
            .unwrap()
            .cloned()
            .unwrap();
        let tasks: Vec<u64> = chain.links.iter().map(|k| k.task).collect();
        assert_eq!(tasks, [mid, outer], "{name}");
        assert_eq!(chain.links[1].frames.len(), 1, "{name}");
        assert!(reader.reusable(mid).is_some(), "{name}");
    }
}
