//! CPU cost of [`Walker::sample_into`] itself, over a synthetic address space (no system
//! calls): what a change to the walker's code does to its speed, apart from the cost of
//! reading a live process (for that, the workspace's `benches/sampling.rs`).
//!
//! ```text
//! cargo bench -p strobe-walker --bench sample_into
//! ```
//!
//! One thread whose stack is `depth` frames, laid out as the generated 3.10 (frame objects)
//! and 3.13 (frames in a data-stack chunk) tables say. "steady": the stack does not change
//! between samples (the outer part is proven unchanged from the copy). "moving": the innermost
//! frame's instruction changes before every sample, as in a running target. Reported: ns per
//! sample, the best of several rounds (the least disturbed by other load on the host).
//! `STROBE_BENCH_SAMPLES=N` sets the samples per round.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::Instant;

use strobe_memory::{MemError, RemoteMemory};
use strobe_python_abi::{layout_for, Flavour, FrameModel, Layout};
use strobe_testkit::ImageMemory;
use strobe_walker::{RawSample, Roots, Walker};

/// Rounds per row; the fastest is reported.
const ROUNDS: usize = 7;
/// Bytecode length of every code object, in code units.
const CODE_UNITS: u64 = 64;
/// Locals and value stack after each interpreter frame in its chunk.
const FRAME_LOCALS: u64 = 64;

/// An image the bench can change between samples while a walker reads it.
#[derive(Clone)]
struct Shared(Rc<RefCell<ImageMemory>>);

impl RemoteMemory for Shared {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.0.borrow().read_into(addr, buf)
    }
}

fn off(v: Option<u32>) -> u64 {
    u64::from(v.expect("layout field the bench image uses"))
}

/// A compact ASCII `str`.
fn put_str(mem: &mut ImageMemory, l: &Layout, s: &str) -> u64 {
    let header = l.unicode_ascii_size.unwrap() as usize;
    let at = mem.alloc(header + s.len() + 1);
    mem.write_u64(at + off(l.unicode_length), s.len() as u64);
    let kind_mask = l.unicode_kind_mask.unwrap();
    let state = ((1 << kind_mask.trailing_zeros()) & kind_mask)
        | l.unicode_compact_mask.unwrap()
        | l.unicode_ascii_mask.unwrap();
    mem.write_u32(at + off(l.unicode_state), state);
    mem.write(at + header as u64, s.as_bytes());
    at
}

/// A type object named `name`.
fn put_type(mem: &mut ImageMemory, l: &Layout, name: &str) -> u64 {
    let cname = mem.alloc(name.len() + 1);
    mem.write(cname, name.as_bytes());
    let ty = mem.alloc(512);
    // tp_name follows PyObject_VAR_HEAD (Include/cpython/object.h).
    mem.write_u64(ty + u64::from(l.pyvarobject_ob_size) + 8, cname);
    ty
}

/// A code object without a line table.
fn put_code(mem: &mut ImageMemory, l: &Layout, code_type: u64, name: &str) -> u64 {
    let size = u64::from(l.code_size).max(l.code_code_adaptive.map_or(0, u64::from));
    let code = mem.alloc((size + 2 * CODE_UNITS) as usize);
    mem.write_u64(code + u64::from(l.pyobject_ob_type), code_type);
    if l.code_code_adaptive.is_some() {
        mem.write_u64(code + u64::from(l.pyvarobject_ob_size), CODE_UNITS);
    }
    let name = put_str(mem, l, name);
    let file = put_str(mem, l, "bench.py");
    mem.write_u64(code + u64::from(l.code_name), name);
    if let Some(q) = l.code_qualname {
        mem.write_u64(code + u64::from(q), name);
    }
    mem.write_u64(code + u64::from(l.code_filename), file);
    mem.write_i32(code + u64::from(l.code_firstlineno), 1);
    code
}

/// A target with one thread `depth` frames deep, and where its innermost frame's instruction
/// is kept.
struct Target {
    mem: Shared,
    layout: Layout,
    roots: Roots,
    /// Where the innermost frame's instruction is, and the bytecode start it is relative to.
    innermost_position: u64,
    innermost_bytecode: u64,
}

impl Target {
    fn new(layout: Layout, depth: usize) -> Target {
        let l = &layout;
        let mut mem = ImageMemory::new();
        let code_type = put_type(&mut mem, l, "code");
        let codes: Vec<u64> = (0..8)
            .map(|i| put_code(&mut mem, l, code_type, &format!("function_{i}")))
            .collect();
        let runtime = mem.alloc(4096);
        let interp_fields = [
            Some(l.interp_next),
            Some(l.interp_tstate_head),
            l.interp_id,
            l.interp_ceval_gil,
        ];
        let interp = mem.alloc(*interp_fields.iter().flatten().max().unwrap() as usize + 8);
        mem.write_u64(runtime + off(l.runtime_interpreters_head), interp);
        let tstate = mem.alloc(l.tstate_size as usize);
        mem.write_u64(interp + u64::from(l.interp_tstate_head), tstate);
        mem.write_u64(tstate + u64::from(l.tstate_interp), interp);
        mem.write_u64(tstate + u64::from(l.tstate_thread_id), 0x7f00_0000_1000);
        if let Some(native) = l.tstate_native_thread_id {
            mem.write_u64(tstate + u64::from(native), 4242);
        }
        let (innermost, innermost_position, innermost_bytecode) = match l.frame_model {
            FrameModel::FrameObject => {
                let len = off(l.frame_lasti) + 8;
                let mut back = 0;
                for k in 0..depth {
                    let frame = mem.alloc(len as usize);
                    mem.write_u64(frame + off(l.frame_back), back);
                    mem.write_u64(frame + off(l.frame_code), codes[k % codes.len()]);
                    mem.write_i32(frame + off(l.frame_lasti), 2);
                    back = frame;
                }
                mem.write_u64(tstate + off(l.tstate_frame), back);
                (back, back + off(l.frame_lasti), 0)
            }
            FrameModel::Direct313 => {
                let size = off(l.iframe_size);
                let chunk_len = off(l.chunk_data) + depth as u64 * (size + FRAME_LOCALS) + 4096;
                let chunk = mem.alloc(chunk_len as usize);
                mem.write_u64(chunk + off(l.chunk_size), chunk_len);
                mem.write_u64(tstate + off(l.tstate_datastack_chunk), chunk);
                let mut at = chunk + off(l.chunk_data);
                let mut previous = 0;
                let mut code = 0;
                for k in 0..depth {
                    code = codes[k % codes.len()];
                    let bytecode = code + off(l.code_code_adaptive);
                    mem.write_u64(at + off(l.iframe_previous), previous);
                    mem.write_u64(at + off(l.iframe_code), code);
                    mem.write_u64(at + off(l.iframe_instr_ptr), bytecode + 2);
                    previous = at;
                    at += size + FRAME_LOCALS;
                }
                mem.write_u64(tstate + off(l.tstate_current_frame), previous);
                let bytecode = code + off(l.code_code_adaptive);
                (previous, previous + off(l.iframe_instr_ptr), bytecode)
            }
            FrameModel::CFrame311 => unreachable!("the bench lays out 3.10 and 3.13 only"),
        };
        assert_ne!(innermost, 0);
        Target {
            mem: Shared(Rc::new(RefCell::new(mem))),
            layout,
            roots: Roots {
                runtime: Some(runtime),
                ..Roots::default()
            },
            innermost_position,
            innermost_bytecode,
        }
    }

    /// Move the innermost frame to instruction `k` (code units).
    fn set_instruction(&self, k: u64) {
        let mut mem = self.mem.0.borrow_mut();
        match self.layout.frame_model {
            FrameModel::FrameObject => mem.write_i32(self.innermost_position, (2 * k) as i32),
            _ => mem.write_u64(self.innermost_position, self.innermost_bytecode + 2 * k),
        }
    }
}

/// Best ns per sample over [`ROUNDS`] rounds of `samples` samples.
fn measure(target: &Target, moving: bool, samples: usize) -> f64 {
    let mut walker = Walker::new(target.mem.clone(), target.layout, target.roots);
    let mut out = RawSample::new();
    walker.sample_into(&mut out).unwrap();
    let depth = out.frames.len();
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..samples {
            if moving {
                target.set_instruction(1 + (i as u64 % (CODE_UNITS - 2)));
            }
            walker.sample_into(&mut out).unwrap();
            black_box(&out);
        }
        let ns = start.elapsed().as_nanos() as f64 / samples as f64;
        best = best.min(ns);
        assert_eq!(out.frames.len(), depth);
    }
    best
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    let samples = std::env::var("STROBE_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000usize);
    println!(
        "{:<8} {:>6} {:>14} {:>14}",
        "layout", "depth", "steady ns", "moving ns"
    );
    for minor in [10u8, 13] {
        let layout = *layout_for(3, minor, Flavour::DEFAULT).expect("generated table");
        for depth in [50usize, 200] {
            let target = Target::new(layout, depth);
            let steady = measure(&target, false, samples);
            let moving = measure(&target, true, samples);
            println!(
                "{:<8} {:>6} {:>14.0} {:>14.0}",
                format!("3.{minor}"),
                depth,
                steady,
                moving
            );
        }
    }
}
