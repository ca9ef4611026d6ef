//! Cases `fuzz_walker.rs` found, pinned one by one on the same valid images
//! (`support::build`), each with the single corruption that triggered it.
//!
//! A pointer read from the target can be anything, including a value just below `u64::MAX`;
//! adding a member offset to it must give an unmapped address (and a typed error), not an
//! arithmetic overflow, which panics in debug builds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use strobe_memory::MemError;
use strobe_python_abi::{debug_offsets_for, layout_for, Flavour, Layout, StringModel};
use strobe_walker::strings::read_string;
use strobe_walker::threadnames::thread_names;
use strobe_walker::{WalkError, Walker};

use support::build::{build, Built};
use support::FuzzMemory;

/// A pointer whose members all lie past the end of the address space.
const NEAR_MAX: u64 = u64::MAX - 7;

fn image(minor: u8, free_threaded: bool) -> (Built, FuzzMemory) {
    let flavour = Flavour {
        free_threaded,
        debug: false,
    };
    let l: &Layout = layout_for(3, minor, flavour).expect("generated layout");
    let b = build(l, debug_offsets_for(3, minor, flavour));
    let mem = FuzzMemory::new(b.regions.clone());
    (b, mem)
}

fn expect_fault<T: std::fmt::Debug>(r: Result<T, WalkError>) {
    match r {
        Err(WalkError::Mem(MemError::Fault { .. })) => {}
        other => panic!("expected a memory fault, got {other:?}"),
    }
}

fn walk(b: &Built, mem: &FuzzMemory) -> Result<usize, WalkError> {
    Walker::new(mem, b.layout, b.roots).walk().map(|s| s.len())
}

/// A corrupt pointer ends the sample with a retryable error (or is tolerated): never a panic,
/// never an error that would end the run.
fn expect_transient(r: Result<usize, WalkError>) {
    if let Err(e) = &r {
        assert!(e.is_transient(), "{e:?}");
    }
}

/// The slot of `owner + off` among the pointers the builder wrote.
fn slot(b: &Built, at: u64) -> u64 {
    assert!(
        b.slots.ptrs.iter().any(|&(s, _)| s == at),
        "{at:#x} is not a pointer slot of the image"
    );
    at
}

// --- strings.rs and threadnames.rs (fixed) ----------------------------------------------------

#[test]
fn string_pointer_near_max_is_a_fault() {
    for minor in [7, 12, 14] {
        let (b, mem) = image(minor, false);
        expect_fault(read_string(&mem, &b.layout, NEAR_MAX));
    }
    let l = layout_for(2, 7, Flavour::DEFAULT).unwrap();
    assert_eq!(l.string_model, StringModel::Bytes27);
    let b = build(l, None);
    let mem = FuzzMemory::new(b.regions.clone());
    expect_fault(read_string(&mem, l, NEAR_MAX));
}

#[test]
fn sys_modules_near_max_is_a_fault() {
    for minor in [6, 11, 13] {
        let (b, mem) = image(minor, false);
        let at = slot(&b, b.interp + u64::from(b.layout.interp_modules));
        mem.poke_u64(at, NEAR_MAX);
        expect_fault(thread_names(&mem, &b.layout, b.interp));
    }
}

#[test]
fn type_pointer_near_max_in_a_dict_key_is_a_fault() {
    // Every object's `ob_type` slot set near u64::MAX in turn: thread_names must fail with a
    // typed error or skip the object, never panic.
    let (b, mem) = image(12, false);
    let ob_type = u64::from(b.layout.pyobject_ob_type);
    for &(s, owner) in &b.slots.ptrs {
        if s != owner + ob_type {
            continue;
        }
        mem.poke_u64(s, NEAR_MAX);
        let _ = thread_names(&mem, &b.layout, b.interp);
        mem.restore();
    }
}

// --- walk.rs / sample.rs (found by fuzz_walker.rs, fixed by the walker's owner) ------------------

#[test]
fn gil_pointer_near_max_is_transient() {
    let (b, mem) = image(12, false);
    let gil = b.layout.interp_ceval_gil.unwrap();
    mem.poke_u64(slot(&b, b.interp + u64::from(gil)), NEAR_MAX);
    expect_transient(walk(&b, &mem));
}

#[test]
fn line_table_pointer_near_max_is_transient() {
    let (b, mem) = image(11, false);
    let off = u64::from(b.layout.code_linetable.unwrap());
    // Every code object's co_linetable.
    let mut hit = 0;
    for &(s, owner) in &b.slots.ptrs {
        if s == owner + off && b.slots.objects.contains(&owner) {
            mem.poke_u64(s, NEAR_MAX);
            hit += 1;
        }
    }
    assert!(hit >= 4, "{hit}");
    expect_transient(walk(&b, &mem));
}

#[test]
fn code_type_pointer_near_max_is_handled() {
    let (b, mem) = image(13, false);
    let ob_type = u64::from(b.layout.pyobject_ob_type);
    let code_off = u64::from(b.layout.code_filename);
    // The type of every code object (objects with a co_filename slot).
    for &(s, owner) in &b.slots.ptrs {
        if s == owner + code_off {
            mem.poke_u64(owner + ob_type, NEAR_MAX);
        }
    }
    expect_transient(walk(&b, &mem));
}

#[test]
fn interpreter_pointer_near_max_is_transient() {
    let (b, mem) = image(10, false);
    let head = b.runtime.unwrap() + u64::from(b.layout.runtime_interpreters_head.unwrap());
    mem.poke_u64(slot(&b, head), NEAR_MAX);
    expect_transient(walk(&b, &mem));
}

#[test]
fn tlbc_array_pointer_near_max_is_transient() {
    let (b, mem) = image(14, true);
    let off = u64::from(b.layout.code_tlbc.unwrap());
    let mut hit = 0;
    for &(s, owner) in &b.slots.ptrs {
        if s == owner + off {
            mem.poke_u64(s, NEAR_MAX);
            hit += 1;
        }
    }
    assert_eq!(hit, 1);
    expect_transient(walk(&b, &mem));
}

#[test]
fn cframe_pointer_near_max_is_transient() {
    for minor in [11, 12] {
        let (b, mem) = image(minor, false);
        let off = u64::from(b.layout.tstate_cframe.unwrap());
        let mut hit = 0;
        for &(s, owner) in &b.slots.ptrs {
            if s == owner + off && s != owner {
                mem.poke_u64(s, NEAR_MAX);
                hit += 1;
            }
        }
        assert!(hit >= 4, "{hit}");
        expect_transient(walk(&b, &mem));
    }
}
