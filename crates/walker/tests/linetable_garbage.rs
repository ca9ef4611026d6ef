//! `LineMap` on arbitrary bytes: a code object read from a racing target can hold anything.
//!
//! Property-style: many pseudo-random tables (a fixed-seed generator, so a failure reproduces)
//! in several byte distributions, for every model. The decoder must not panic, must produce
//! sorted contiguous ranges bounded by the table length, and must answer every query exactly as
//! a naive per-query scan of the same table (written the way `PyCode_Addr2Line` reads it).
//! That decoding stays linear in the table size is measured by `benches/linetable.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strobe_python_abi::LineTable;
use strobe_testkit::Rng;
use strobe_walker::linetable::LineMap;

const MODELS: [LineTable; 4] = [
    LineTable::Lnotab27,
    LineTable::Lnotab36,
    LineTable::Linetable310,
    LineTable::Location311,
];

/// One random table byte in `style`.
fn byte(rng: &mut Rng, style: u64) -> u8 {
    let b = rng.next_u64() as u8;
    match style {
        0 => b,
        // Mostly entry starts (bit 7), like a real 3.11 table.
        1 => b | 0x80,
        // Long varint continuation runs and kind 13/14 entry starts.
        2 => {
            if rng.below(4) == 0 {
                0xe8 | (b & 0x17)
            } else {
                0x40 | (b & 0x3f)
            }
        }
        // Small values: zero-length ranges, -128 "no line" markers, extremes.
        _ => [0, 1, 0x7f, 0x80, 0xff, 0xf8, 0x40][usize::from(b) % 7],
    }
}

/// Byte offset for a `lasti` in the units the walker passes.
fn unit(model: LineTable) -> i64 {
    match model {
        LineTable::Lnotab27 | LineTable::Lnotab36 => 1,
        LineTable::Linetable310 | LineTable::Location311 => 2,
    }
}

/// The line for byte offset `addr`, scanning the table from the start like CPython does.
fn naive(model: LineTable, t: &[u8], first: i32, addr: u64) -> Option<i32> {
    match model {
        LineTable::Lnotab27 | LineTable::Lnotab36 => {
            let mut line = first;
            let mut a: u64 = 0;
            for p in t.chunks_exact(2) {
                a += u64::from(p[0]);
                if a > addr {
                    break;
                }
                let d = if model == LineTable::Lnotab27 {
                    i32::from(p[1])
                } else {
                    i32::from(p[1] as i8)
                };
                line = line.wrapping_add(d);
            }
            Some(line)
        }
        LineTable::Linetable310 => {
            let (mut end, mut computed) = (0u64, first);
            for p in t.chunks_exact(2) {
                let start = end;
                end += u64::from(p[0]);
                let no_line = p[1] == 0x80;
                if !no_line {
                    computed = computed.wrapping_add(i32::from(p[1] as i8));
                }
                if start <= addr && addr < end {
                    return (!no_line).then_some(computed);
                }
            }
            None
        }
        LineTable::Location311 => {
            let (mut end, mut computed, mut i) = (0u64, first, 0usize);
            while i < t.len() {
                let b = t[i];
                let delta = match (b >> 3) & 15 {
                    13 | 14 => {
                        let (mut v, mut shift, mut j) = (0u64, 0u32, i + 1);
                        while j < t.len() {
                            if shift < 32 {
                                v |= u64::from(t[j] & 63) << shift;
                            }
                            if t[j] & 64 == 0 {
                                break;
                            }
                            shift += 6;
                            j += 1;
                        }
                        let v = v as u32;
                        let m = (v >> 1) as i32;
                        if v & 1 == 1 {
                            -m
                        } else {
                            m
                        }
                    }
                    11 => 1,
                    12 => 2,
                    _ => 0,
                };
                computed = computed.wrapping_add(delta);
                let start = end;
                end += (u64::from(b & 7) + 1) * 2;
                if start <= addr && addr < end {
                    return (b >> 3 != 0x1f).then_some(computed);
                }
                i += 1;
                while i < t.len() && t[i] & 0x80 == 0 {
                    i += 1;
                }
            }
            None
        }
    }
}

fn check_table(model: LineTable, table: &[u8], first: i32, rng: &mut Rng) {
    let map = LineMap::new(model, table, first);
    let ranges = map.ranges();
    assert!(
        ranges.len() <= table.len() + 1,
        "{model:?}: too many ranges"
    );
    let mut expect_start = 0;
    for r in ranges {
        assert_eq!(
            r.start, expect_start,
            "{model:?}: ranges not contiguous: {table:02x?}"
        );
        assert!(r.start < r.end, "{model:?}: empty range: {table:02x?}");
        expect_start = r.end;
    }
    assert_eq!(map.line(-1), Some(first));
    let covered = ranges.last().map_or(0, |r| r.end.min(1 << 40));
    let u = unit(model);
    let mut queries: Vec<i64> = (0..64)
        .map(|_| (rng.below(covered + 16) as i64) / u)
        .collect();
    queries.extend([0, (covered as i64) / u, i64::MAX, i64::MIN, -1]);
    for lasti in queries {
        let want = if lasti < 0 {
            Some(first)
        } else {
            naive(model, table, first, lasti.saturating_mul(u) as u64)
        };
        assert_eq!(
            map.line(lasti),
            want,
            "{model:?} first {first} lasti {lasti} table {table:02x?}"
        );
    }
}

#[test]
fn random_tables_never_panic_and_match_a_naive_scan() {
    let mut rng = Rng::from_state(0x5eed_1234_abcd_0001);
    for round in 0..4000u64 {
        let style = round % 4;
        let len = rng.below(300) as usize;
        let table: Vec<u8> = (0..len).map(|_| byte(&mut rng, style)).collect();
        let first = match rng.below(4) {
            0 => i32::MAX - rng.below(3) as i32,
            1 => i32::MIN + rng.below(3) as i32,
            _ => rng.below(100_000) as i32,
        };
        for model in MODELS {
            check_table(model, &table, first, &mut rng);
        }
    }
}

#[test]
fn adversarial_shapes() {
    let mut rng = Rng::from_state(7);
    let shapes: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff],
        vec![0x80],
        // A long-form entry whose varint never ends.
        std::iter::once(0xf0)
            .chain(std::iter::repeat_n(0x7f, 200))
            .collect(),
        // No byte has bit 7: one entry swallowing the table.
        vec![0x41; 100],
        // Only zero-length ranges and huge line increments.
        [0u8, 0x7f].repeat(100),
        [0u8, 0xff].repeat(100),
        // Maximal ranges.
        [0xffu8, 0x7f].repeat(100),
    ];
    for table in &shapes {
        for model in MODELS {
            for first in [i32::MIN, -1, 0, 1, i32::MAX] {
                check_table(model, table, first, &mut rng);
            }
        }
    }
}
