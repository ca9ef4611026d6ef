//! How `LineMap` decoding scales with the size of a line table.
//!
//! A code object read from a racing target can carry a table of any size, so decoding must stay
//! linear. This times `LineMap::new` plus one lookup on tables of growing size, for every table
//! model, and prints nanoseconds per table byte: a flat column is linear, a column that grows
//! with the size is not. It prints numbers and asserts nothing about time (tests never do).
//!
//! Run: `cargo bench -p strobe-walker --bench linetable`.

use std::hint::black_box;
use std::time::Instant;

use strobe_python_abi::LineTable;
use strobe_testkit::Rng;
use strobe_walker::linetable::LineMap;

const MODELS: [LineTable; 4] = [
    LineTable::Lnotab27,
    LineTable::Lnotab36,
    LineTable::Linetable310,
    LineTable::Location311,
];

/// Sizes in bytes, each four times the last.
const SIZES: [usize; 5] = [16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];

/// Timed runs per size and model; the fastest is reported.
const RUNS: usize = 5;

fn main() {
    // Mostly entry starts (bit 7 set), like a real 3.11 table: one range per byte at most.
    let mut rng = Rng::new(99);
    let largest = SIZES[SIZES.len() - 1];
    let bytes: Vec<u8> = (0..largest).map(|_| rng.next_u64() as u8 | 0x80).collect();

    print!("{:>14}", "table bytes");
    for model in MODELS {
        print!("{:>16}", format!("{model:?}"));
    }
    println!("   (ns per byte, best of {RUNS})");
    for size in SIZES {
        let table = &bytes[..size];
        print!("{size:>14}");
        for model in MODELS {
            let mut best = f64::INFINITY;
            for _ in 0..RUNS {
                let start = Instant::now();
                let map = LineMap::new(model, black_box(table), 1);
                black_box(map.line(black_box((size / 2) as i64)));
                let ns = start.elapsed().as_nanos() as f64 / size as f64;
                // Sanity, not timing: at most one range per byte plus one.
                assert!(map.ranges().len() <= size + 1, "{model:?}: too many ranges");
                best = best.min(ns);
            }
            print!("{best:>16.2}");
        }
        println!();
    }
}
