//! `dump --async`'s reader for CPython 3.8–3.13 (`strobe_walker::asyncio_legacy::read_tasks`)
//! over a synthetic image per layout and over corrupted copies of it: the image must read back
//! exactly, a `TaskObj` of another size must be refused, and every corrupted case must end with
//! a value or a typed error: no panic, no endless loop, no giant read.
//!
//! The image is the fuzz walker's image of each 3.8–3.13 layout (`support::build`: code
//! objects, strings, frames) plus what asyncio adds, built in `support/asyncio_legacy.rs` with python-abi's
//! `AsyncioLegacy` table: `sys.modules["_asyncio"]` with `Task`, the task `WeakSet` (its `data`
//! set of weak references: three tasks, a dead reference, an object of another class), the
//! eager set (3.12+), `_current_tasks`; a thread whose running loop is recorded as the version
//! records it; three tasks (`outer` awaits a `gather()` of `mid` and `leaf`; `mid` awaits the
//! task `leaf`; `leaf` a coroutine awaiting a future) whose coroutines' frames are copies of a
//! frame of the image (so their code and line are known), made to look suspended in an `await`
//! as each version tells it.
//!
//! The same image through the sampler's reader (`LegacyChains`, `record --async`): the running
//! task's chain and the waiting tasks' chains read back exactly, and corrupted copies end
//! within the same bounds. The image changing while it is read (`Racing`): a task added to
//! the task set right after its header was read does not hide the parent of the running task
//! (issue: `record --async` showed a gathered task as a root), and when the set changes during
//! every read, or a `gather()`'s tasks cannot be read, the running task gets no chain rather
//! than one that ends at it.
//!
//! Cases: `STROBE_FUZZ_CASES` / 50 (default 20,000 in all), `STROBE_FUZZ_SEED`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use strobe_python_abi::{asyncio_legacy_for, Layout, ALL};
use strobe_testkit::Rng;
use strobe_walker::asyncio::{AsyncState, TaskState};
use strobe_walker::asyncio_legacy::{read_tasks, LegacyChains, LegacyTasks, Rebuilt, Running};
use strobe_walker::{WalkError, Walker};
use support::asyncio_legacy::{image, put, Image, BASE, READ_BUDGET};
use support::{FuzzMemory, Racing, MAX_READ};

fn read(mem: &FuzzMemory, l: &Layout, img: &Image) -> Result<LegacyTasks, WalkError> {
    let mut w = Walker::new(mem, *l, img.built.roots);
    read_tasks(&mut w, img.table, &[img.interp], &[img.tstate])
}

fn layouts() -> impl Iterator<Item = &'static Layout> {
    ALL.iter().filter(|l| {
        asyncio_legacy_for(l.version.major, l.version.minor, l.flavour.free_threaded).is_some()
    })
}

fn tasks_of(got: LegacyTasks) -> AsyncState {
    match got {
        LegacyTasks::Read(state) => state,
        LegacyTasks::NotLoaded => panic!("_asyncio not found"),
    }
}

#[test]
fn the_image_reads_back_exactly() {
    // 3.8, 3.9, 3.10, 3.11, 3.12, 3.13 and 3.13d.
    assert_eq!(layouts().count(), 7);
    for l in layouts() {
        let v = format!(
            "3.{}{}",
            l.version.minor,
            if l.flavour.debug { "d" } else { "" }
        );
        let img = image(l);
        let mem = FuzzMemory::new(img.regions.clone());
        mem.reset_reads(READ_BUDGET);
        let state = tasks_of(read(&mem, l, &img).unwrap());
        // One reference was to a Future: counted, not shown.
        assert_eq!(state.errors.len(), 1, "{v}: {:?}", state.errors);
        assert!(
            state.errors[0].starts_with("1 task(s) of other classes"),
            "{v}"
        );
        let [outer, mid, leaf] = img.tasks;
        let order: Vec<u64> = state.tasks.iter().map(|t| t.addr).collect();
        assert_eq!(order, vec![outer, mid, leaf], "{v}: tree order");
        let names: Vec<&str> = state.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["outer", "mid", "leaf"], "{v}");
        for (i, t) in state.tasks.iter().enumerate() {
            assert_eq!(t.error, None, "{v}: {t:?}");
            assert_eq!(t.loop_addr, img.the_loop, "{v}");
            let want_state = if t.addr == mid {
                TaskState::Running
            } else {
                TaskState::Pending
            };
            assert_eq!(t.state, want_state, "{v}: {t:?}");
            let stack: Vec<(String, String, Option<i32>)> = t
                .stack
                .iter()
                .map(|f| (f.function.clone(), f.filename.clone(), f.line))
                .collect();
            assert_eq!(
                stack,
                vec![img.frame.clone(); if i == 2 { 2 } else { 1 }],
                "{v}: {t:?}"
            );
            for f in &t.stack {
                assert_eq!(f.frame.code, img.built.leaf_code, "{v}: {t:?}");
            }
            // What each awaits, its FutureIter seen through.
            let (awaits, type_name) = [
                (img.gathering, "_GatheringFuture"),
                (leaf, "_asyncio.Task"),
                (img.future, "_asyncio.Future"),
            ][i];
            let a = t.awaits.as_ref().unwrap();
            assert_eq!(
                (a.addr, a.value.type_name.as_deref()),
                (awaits, Some(type_name)),
                "{v}"
            );
            assert_eq!(t.waiter.as_ref().unwrap().addr, awaits, "{v}");
        }
        // Derived links: the gather's children under outer; leaf also awaited by mid.
        let by: Vec<Vec<u64>> = state.tasks.iter().map(|t| t.awaited_by.clone()).collect();
        assert_eq!(by, vec![vec![], vec![outer], vec![outer, mid]], "{v}");
        assert_eq!(state.running.len(), 1, "{v}");
        assert_eq!(
            (
                state.running[0].tstate,
                state.running[0].loop_addr,
                state.running[0].task
            ),
            (img.tstate, img.the_loop, mid),
            "{v}"
        );
    }
}

/// The sampler's reader on the image: `mid` runs (the loop's entry in `_current_tasks`),
/// awaited by `outer` (through the `gather()`), which waits at the image's frame; waiting,
/// `outer` alone and `leaf` under `outer` (its first awaiter), each at its frames.
#[test]
fn the_sampler_reads_the_chains_back_exactly() {
    for l in layouts() {
        let v = format!("3.{}", l.version.minor);
        let img = image(l);
        let mem = FuzzMemory::new(img.regions.clone());
        mem.reset_reads(READ_BUDGET);
        let mut w = Walker::new(&mem, *l, img.built.roots);
        let mut chains = LegacyChains::new();
        let built = chains.rebuild(&mut w, img.table, &[(img.interp, img.tstate)]);
        assert!(
            matches!(built, Ok(Rebuilt::Read { tasks: 3, .. })),
            "{v}: {built:?}"
        );
        let [outer, mid, leaf] = img.tasks;
        let frames_of = |w: &mut Walker<&FuzzMemory>, c: &strobe_walker::asyncio::TaskChain| {
            let names: Vec<Vec<(String, String, Option<i32>)>> = c
                .links
                .iter()
                .map(|link| {
                    link.frames
                        .iter()
                        .map(|&f| {
                            let p = w.frame_info(f).unwrap();
                            (p.function.to_string(), p.filename.to_string(), p.line)
                        })
                        .collect()
                })
                .collect();
            names
        };
        let chain = match chains.running(&mut w, img.table, img.tstate).unwrap() {
            Running::Chain(c) => c.clone(),
            other => panic!("{v}: {other:?}"),
        };
        let tasks: Vec<(u64, &str)> = chain.links.iter().map(|k| (k.task, &*k.name)).collect();
        assert_eq!(tasks, [(mid, "mid"), (outer, "outer")], "{v}");
        assert_eq!(chain.coro_code, img.built.leaf_code, "{v}");
        assert!(!chain.truncated, "{v}");
        assert_eq!(
            frames_of(&mut w, &chain),
            [vec![], vec![img.frame.clone()]],
            "{v}"
        );
        // Another thread runs no loop.
        let other = img.tstate + 8;
        assert!(matches!(
            chains.running(&mut w, img.table, other),
            Ok(Running::None)
        ));
        let running = [mid].into_iter().collect();
        let waiting = chains.suspended(&mut w, img.table, &running, 64).unwrap();
        let got: Vec<(u64, Vec<u64>)> = waiting
            .iter()
            .map(|(t, c)| (*t, c.links.iter().map(|k| k.task).collect()))
            .collect();
        assert_eq!(
            got,
            [(img.tstate, vec![outer]), (img.tstate, vec![leaf, outer])],
            "{v}"
        );
        let leaf_frames = frames_of(&mut w, &waiting[1].1);
        assert_eq!(
            leaf_frames,
            [vec![img.frame.clone(); 2], vec![img.frame.clone()]],
            "{v}"
        );
    }
}

#[test]
fn a_task_type_of_another_size_is_refused_with_one_line() {
    for l in layouts() {
        let mut img = image(l);
        let size = u64::from(img.table.task_size) + 8;
        put(
            &mut img.regions,
            img.task_type + u64::from(l.type_basicsize),
            &size.to_le_bytes(),
        );
        let mem = FuzzMemory::new(img.regions.clone());
        mem.reset_reads(READ_BUDGET);
        let err = read(&mem, l, &img).unwrap_err();
        let want = format!(
            "the target's _asyncio module does not match the task layout strobe knows for \
             CPython 3.{} (sizeof(TaskObj) is {size}, not {})",
            l.version.minor, img.table.task_size
        );
        assert!(matches!(&err, WalkError::Unsupported(_)), "{err:?}");
        assert!(err.to_string().contains(&want), "{err}");
        assert_eq!(err.to_string().lines().count(), 1);
    }
}

#[test]
fn without_asyncio_nothing_is_read() {
    for l in layouts() {
        let img = image(l);
        let mem = FuzzMemory::new(img.regions.clone());
        // sys.modules without `_asyncio`: the interpreter of the builder's image (threading).
        mem.reset_reads(READ_BUDGET);
        let mut w = Walker::new(&mem, *l, img.built.roots);
        let got = read_tasks(&mut w, img.table, &[img.built.interp], &[img.tstate]).unwrap();
        assert_eq!(got, LegacyTasks::NotLoaded);
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
        .unwrap_or(0x1e9a_c7a5);
    let all: Vec<&'static Layout> = layouts().collect();
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
            let sampled = catch_unwind(AssertUnwindSafe(|| {
                let mut w = Walker::new(&mem, *l, img.built.roots);
                let mut chains = LegacyChains::new();
                let _ = chains.rebuild(&mut w, img.table, &[(img.interp, img.tstate)]);
                let _ = chains.running(&mut w, img.table, img.tstate);
                let _ = chains.suspended(&mut w, img.table, &Default::default(), 64);
            }));
            assert!(
                sampled.is_ok(),
                "3.{} case {case}: panic with {applied:x?}",
                l.version.minor
            );
            assert!(
                !mem.over_budget(),
                "3.{} case {case}: sampler reads",
                l.version.minor
            );
            mem.reset_reads(READ_BUDGET);
            let got = catch_unwind(AssertUnwindSafe(|| read(&mem, l, &img)));
            let name = format!("3.{}", l.version.minor);
            assert!(got.is_ok(), "{name} case {case}: panic with {applied:x?}");
            assert!(
                !mem.over_budget(),
                "{name} case {case}: more than {READ_BUDGET} reads with {applied:x?}"
            );
            assert!(mem.largest_read().0 <= MAX_READ, "{name} case {case}");
            if let Ok(Ok(LegacyTasks::Read(state))) = got {
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

/// The chain `LegacyChains` gives the running task (`mid`) after a rebuild through `mem`, and
/// whether the rebuild called its graph whole.
fn running_chain(
    l: &'static Layout,
    img: &Image,
    mem: &Racing<'_>,
) -> (Result<Vec<u64>, String>, bool) {
    let mut w = Walker::new(mem, *l, img.built.roots);
    let mut chains = LegacyChains::new();
    let whole = match chains.rebuild(&mut w, img.table, &[(img.interp, img.tstate)]) {
        Ok(Rebuilt::Read { whole, .. }) => whole,
        other => panic!("3.{}: {other:?}", l.version.minor),
    };
    let chain = match chains.running(&mut w, img.table, img.tstate) {
        Ok(Running::Chain(c)) => Ok(c.links.iter().map(|k| k.task).collect()),
        other => Err(format!("{other:?}")),
    };
    (chain, whole)
}

/// Slot `i` of the task set's table: its key and hash addresses.
fn slot(mem: &FuzzMemory, l: &Layout, img: &Image, i: u64) -> (u64, u64) {
    let table = mem.peek_u64(img.data + u64::from(l.set_table)).unwrap();
    let e = table + i * u64::from(l.setentry_size);
    (
        e + u64::from(l.setentry_key),
        e + u64::from(l.setentry_hash),
    )
}

/// What CI saw on 3.11 under load (a gathered task sampled as a root): the task set's `used`
/// is read, then the target adds a reference (a new task) into a free slot before the
/// parent's, which sits last. Scanning stopped after `used` members and missed the parent, so
/// the running task, gathered by it, had a chain of its own. The set is read again when its
/// header changed, and every slot is scanned.
#[test]
fn a_task_added_while_the_set_is_read_does_not_hide_the_parent() {
    for l in layouts() {
        let img = image(l);
        let mem = FuzzMemory::new(img.regions.clone());
        let [outer, mid, _] = img.tasks;
        // outer's reference (slot 0) moves to the last slot.
        let mask = mem.peek_u64(img.data + u64::from(l.set_mask)).unwrap();
        let (key0, hash0) = slot(&mem, l, &img, 0);
        let (key_last, hash_last) = slot(&mem, l, &img, mask);
        mem.poke_u64(key_last, mem.peek_u64(key0).unwrap());
        mem.poke_u64(hash_last, 1);
        mem.poke_u64(key0, 0);
        mem.poke_u64(hash0, 0);
        let used_at = img.data + u64::from(l.set_used);
        let add = |m: &FuzzMemory| {
            let (key1, hash1) = slot(m, l, &img, 1);
            m.poke_u64(key1, img.spare_ref);
            m.poke_u64(hash1, 1);
            for at in [used_at - 8, used_at] {
                m.poke_u64(at, m.peek_u64(at).unwrap() + 1);
            }
        };
        let racing = Racing {
            mem: &mem,
            at: used_at,
            times: Cell::new(1),
            change: &add,
        };
        mem.reset_reads(READ_BUDGET);
        let (chain, whole) = running_chain(l, &img, &racing);
        assert_eq!(
            racing.times.get(),
            0,
            "3.{}: the set was not read",
            l.version.minor
        );
        assert_eq!(chain, Ok(vec![mid, outer]), "3.{}", l.version.minor);
        assert!(whole, "3.{}", l.version.minor);
    }
}

/// A task set that changes during every read is not read whole: the graph is not either, and
/// the running task, whose parent only that set holds, gets no chain (the sampler keeps the
/// thread's own stack) rather than one that ends at it; the dump says what was not read.
#[test]
fn a_set_changing_during_every_read_gives_no_chain_that_ends_early() {
    for l in layouts() {
        let img = image(l);
        let mem = FuzzMemory::new(img.regions.clone());
        let used_at = img.data + u64::from(l.set_used);
        let grow = |m: &FuzzMemory| {
            m.poke_u64(used_at, m.peek_u64(used_at).unwrap() + 1);
        };
        let racing = Racing {
            mem: &mem,
            at: used_at,
            times: Cell::new(u32::MAX),
            change: &grow,
        };
        mem.reset_reads(READ_BUDGET);
        let (chain, whole) = running_chain(l, &img, &racing);
        let v = format!("3.{}", l.version.minor);
        assert_eq!(chain, Err("Ok(Unknown)".to_string()), "{v}");
        assert!(!whole, "{v}");
        mem.reset_reads(READ_BUDGET);
        let mut w = Walker::new(&racing, *l, img.built.roots);
        let state = tasks_of(read_tasks(&mut w, img.table, &[img.interp], &[img.tstate]).unwrap());
        assert!(
            state
                .errors
                .iter()
                .any(|e| e.contains("could not be read whole")
                    && e.contains("it changed during every read")),
            "{v}: {:?}",
            state.errors
        );
    }
}

/// A `gather()` whose `_children` cannot be read leaves its tasks without their parent: the
/// graph is not whole, and the running task (gathered) gets no chain.
#[test]
fn unreadable_gather_children_give_no_chain_that_ends_early() {
    for l in layouts() {
        let img = image(l);
        let mem = FuzzMemory::new(img.regions.clone());
        mem.poke_u64(img.children + u64::from(l.pyobject_ob_type), 0);
        let racing = Racing {
            mem: &mem,
            at: 0,
            times: Cell::new(0),
            change: &|_| {},
        };
        mem.reset_reads(READ_BUDGET);
        let (chain, whole) = running_chain(l, &img, &racing);
        let v = format!("3.{}", l.version.minor);
        assert_eq!(chain, Err("Ok(Unknown)".to_string()), "{v}");
        assert!(!whole, "{v}");
    }
}

/// What CI saw too (`<task inner>` at the root): the graph was read while a task had not yet
/// suspended on the task it awaits (`outer` without its coroutine nor `_fut_waiter`, as
/// between `create_task`/`gather()` and its `await`), so it showed `mid` awaited by none. When
/// `mid` runs, `outer` waits on the `gather()` holding it: the chain goes on to `outer`, found
/// from the tasks' `_fut_waiter` at that moment, instead of ending at `mid`.
#[test]
fn a_task_read_before_its_awaiter_suspended_is_not_a_root() {
    for l in layouts() {
        let img = image(l);
        let mem = FuzzMemory::new(img.regions.clone());
        let [outer, mid, _] = img.tasks;
        mem.poke_u64(outer + u64::from(img.table.task_coro), 0);
        mem.poke_u64(outer + u64::from(img.table.task_fut_waiter), 0);
        mem.reset_reads(READ_BUDGET);
        let mut w = Walker::new(&mem, *l, img.built.roots);
        let mut chains = LegacyChains::new();
        let built = chains.rebuild(&mut w, img.table, &[(img.interp, img.tstate)]);
        assert!(
            matches!(
                built,
                Ok(Rebuilt::Read {
                    tasks: 3,
                    whole: true,
                    ..
                })
            ),
            "3.{}: {built:?}",
            l.version.minor
        );
        // outer now waits in the gather.
        mem.restore();
        let chain = match chains.running(&mut w, img.table, img.tstate) {
            Ok(Running::Chain(c)) => c.links.iter().map(|k| k.task).collect::<Vec<u64>>(),
            other => panic!("3.{}: {other:?}", l.version.minor),
        };
        assert_eq!(chain, [mid, outer], "3.{}", l.version.minor);
    }
}

/// The running task's chain is built while the target runs on: a task that stops running
/// meanwhile (its awaiter resumed past its `await` once it finished) gets no chain, and none is
/// kept for its next samples; built undisturbed, the chain is whole (see `fuzz_asyncio.rs`'s
/// test of the same race on 3.14+).
#[test]
fn a_chain_built_while_its_task_stops_running_is_dropped() {
    for l in layouts() {
        let img = image(l);
        let mem = FuzzMemory::new(img.regions.clone());
        let [outer, mid, _] = img.tasks;
        // `_current_tasks`' entry for the loop: its key then its value (mid).
        let pair: Vec<u8> = [img.the_loop, mid]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let value_at = img
            .regions
            .iter()
            .find_map(|(base, r)| {
                let at = r.windows(16).position(|w| w == pair.as_slice())?;
                Some(base + at as u64 + 8)
            })
            .unwrap();
        // Once outer's coroutine is read, outer runs (mid is done).
        let coro = mem
            .peek_u64(outer + u64::from(img.table.task_coro))
            .unwrap();
        let resumes = |m: &FuzzMemory| {
            m.poke_u64(value_at, outer);
        };
        let racing = Racing {
            mem: &mem,
            at: coro + u64::from(l.pyobject_ob_type),
            times: Cell::new(0),
            change: &resumes,
        };
        let v = format!("3.{}", l.version.minor);
        mem.reset_reads(READ_BUDGET);
        let mut w = Walker::new(&racing, *l, img.built.roots);
        let mut chains = LegacyChains::new();
        let rebuilt = chains.rebuild(&mut w, img.table, &[(img.interp, img.tstate)]);
        assert!(
            matches!(rebuilt, Ok(Rebuilt::Read { .. })),
            "{v}: {rebuilt:?}"
        );
        // The graph read whole first; the race is in the chain's build.
        racing.times.set(1);
        let got = chains.running(&mut w, img.table, img.tstate).unwrap();
        assert!(matches!(got, Running::None), "{v}: {got:?}");
        assert_eq!(racing.times.get(), 0, "{v}: the race never ran");
        assert!(
            chains.reusable(img.tstate).is_none(),
            "{v}: a torn chain was kept"
        );

        // Undisturbed (mid running again): the chain of mid and outer.
        mem.restore();
        let Running::Chain(chain) = chains.running(&mut w, img.table, img.tstate).unwrap() else {
            panic!("{v}: no chain");
        };
        let tasks: Vec<u64> = chain.links.iter().map(|k| k.task).collect();
        assert_eq!(tasks, [mid, outer], "{v}");
    }
}
