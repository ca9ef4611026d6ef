//! Proofs of unchanged stacks against real interpreters (3.7+), at every depth across
//! data-stack chunk boundaries (3.11+; frame objects ≤3.10): a thread parked at a known depth, with and without a coroutine
//! between its frames, is proven after the samples that settle the batched read, and what the
//! proof gives is what a fresh walk sees.
//!
//! The target recurses `n` frames deep (directly, under a coroutine it drives with `send`, or
//! under `asyncio.run`), says `AT` and blocks reading its next order from stdin: its stack
//! cannot change until the test writes that order. Depths sweep up from 10 to 200 (each
//! 16 KiB chunk holds ~140 small frames, so the stack moves into a second chunk one frame at a
//! time) and back down (the newer chunk is freed, and allocated again on the way up).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Stdio;

use strobe_python_abi::Version;
use strobe_remote::ProcessMemory;
use strobe_testkit::interpreters::Interpreter;
use strobe_testkit::Ready;
use strobe_walker::{RawSample, Roots, ThreadStack, Walker};

/// The target. `_PyRuntime` is found through ctypes: pyenv builds keep it in libpython's
/// dynamic symbols.
const SCRIPT: &str = r#"import sys, asyncio, ctypes

def rec(n):
    if n > 1:
        return rec(n - 1)
    sys.stdout.write("AT\n"); sys.stdout.flush(); return sys.stdin.readline()

async def co(n):
    return rec(n)

def drive(n):
    c = co(n)
    try:
        c.send(None)
    except StopIteration as e:
        return e.value

def run(order):
    mode, n = order.split()
    n = int(n)
    if mode == "plain":
        return rec(n)
    if mode == "coro":
        return drive(n)
    return asyncio.run(co(n))

runtime = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
sys.stdout.write("READY %d %d\n" % (runtime, sys.hexversion)); sys.stdout.flush()
order = sys.stdin.readline()
while order.strip():
    order = run(order)
"#;

/// Samples taken at each stop; the last is settled (the first two after a change settle the
/// batched read: a new chunk is copied on demand, which voids the first sample's proof).
const SAMPLES: usize = 3;

/// `(thread id, [(code, line)])` per thread.
type Shape = Vec<(u64, Vec<(u64, Option<i32>)>)>;

fn shape_of(stacks: &[ThreadStack]) -> Shape {
    let frames = |t: &ThreadStack| t.frames.iter().map(|f| (f.code_addr, f.line)).collect();
    stacks.iter().map(|t| (t.thread_id, frames(t))).collect()
}

fn sampled(raw: &RawSample) -> Shape {
    let frames = |t| {
        raw.frames_of(t)
            .iter()
            .map(|f| (f.code_addr, f.line))
            .collect()
    };
    raw.threads
        .iter()
        .map(|t| (t.thread_id, frames(t)))
        .collect()
}

/// The target's script file, removed however the test ends.
struct Script(PathBuf);

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn check_proofs(interp: &Interpreter) {
    let version = interp.name;
    let script = Script(std::env::temp_dir().join(format!(
        "strobe-walk-proof-{}-{version}.py",
        std::process::id()
    )));
    std::fs::write(&script.0, SCRIPT).unwrap();
    let mut cmd = interp.command();
    cmd.arg(&script.0)
        .stdin(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut target = Ready::start(&mut cmd, version);
    let said: Vec<u64> = target
        .said
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let (runtime, v) = (said[0], Version::from_hex(said[1]));
    let mem = ProcessMemory::new(target.pid());
    let layout = strobe_walker::layout::resolve(&mem, v, false, Some(runtime))
        .unwrap()
        .layout;
    let roots = Roots {
        runtime: Some(runtime),
        ..Roots::default()
    };
    let mut orders = target.child.stdin.take().unwrap();
    let mut walker = Walker::new(mem, layout, roots);
    let mut raw = RawSample::new();
    let depths: Vec<usize> = (10..=200).chain((10..200).rev()).collect();
    let (mut stops, mut unproven, mut proven_frames) = (0, Vec::new(), 0);
    for mode in ["plain", "coro", "asyncio"] {
        for &depth in &depths {
            writeln!(orders, "{mode} {depth}").unwrap();
            orders.flush().unwrap();
            let mut line = String::new();
            target.stdout.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "AT", "{version}: {mode} {depth}");
            // The target is blocked reading its next order: its stack cannot change.
            let fresh = shape_of(&Walker::new(mem, layout, roots).walk().unwrap());
            let frames = fresh.iter().map(|t| t.1.len()).sum::<usize>();
            assert!(frames > depth, "{version}: {mode} {depth}: {fresh:?}");
            let mut proven = 0;
            for i in 0..SAMPLES {
                let before = walker.frames_proven();
                walker.sample_into(&mut raw).unwrap();
                proven = walker.frames_proven() - before;
                assert_eq!(
                    sampled(&raw),
                    fresh,
                    "{version}: {mode} {depth}, sample {i}"
                );
            }
            stops += 1;
            proven_frames += proven;
            // All but the innermost frame (3.12+ walk the frame blocked in a call).
            if proven + 1 < frames as u64 {
                unproven.push(format!("{mode} {depth}: {proven} of {frames}"));
            }
        }
    }
    eprintln!(
        "{version}: {stops} stops, {proven_frames} frames proven at settled samples, {} stops \
         not proven",
        unproven.len()
    );
    assert!(
        unproven.is_empty(),
        "{version}: settled samples not proven: {unproven:?}"
    );
    drop(orders);
    drop(target);
}

strobe_testkit::per_interpreter! {
    fn chunk_boundaries(interp) for [pyenv_3_11, pyenv_3_12, pyenv_3_13] {
        check_proofs(interp);
    }
}

// ≤3.10: frame objects, proven object by object (the same script: no chunks, but the same
// stacks growing and shrinking one frame at a time, plain and under coroutines).
strobe_testkit::per_interpreter! {
    fn frame_objects(interp) for [pyenv_3_7, pyenv_3_8, pyenv_3_9, pyenv_3_10] {
        check_proofs(interp);
    }
}
