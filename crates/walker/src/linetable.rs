//! Instruction offset → source line, for every line-table format CPython has used.
//!
//! A code object's table is decoded once into contiguous, sorted address ranges
//! ([`LineMap::new`]); each sample then costs one binary search ([`LineMap::line`]). The
//! decoders are written to give exactly the answer of the target's own `PyCode_Addr2Line` (which
//! is what `frame.f_lineno` reports for a frame that is not being traced), including its odd
//! corners: offsets before the first instruction, zero-length entries, "no line" markers and
//! offsets past the end of the table.
//!
//! Tables come from the target and may be garbage (a code object freed and reused while we
//! read). The decoders never index out of bounds, always make progress, and allocate at most one
//! range per table byte (plus one), so the caller's bound on the table length bounds the work.

use strobe_python_abi::LineTable;

/// One decoded range: the instructions at byte offsets `start..end` of the bytecode belong to
/// `line` (`None`: the table says the instructions have no line, e.g. compiler-generated cleanup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRange {
    /// First byte offset of the range (inclusive).
    pub start: u64,
    /// End byte offset (exclusive). `u64::MAX` for the open-ended last range of an `lnotab`.
    pub end: u64,
    /// The line, or `None` for "no line".
    pub line: Option<i32>,
}

/// A decoded line table: maps the instruction position a frame reports to its source line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineMap {
    /// Contiguous from offset 0, sorted, non-empty, adjacent ranges with equal lines merged.
    ranges: Vec<LineRange>,
    /// What a frame that has not started yet reports (`PyCode_Addr2Line` with a negative offset).
    firstlineno: i32,
    /// Bytes per unit of the `lasti` the walker passes (1: bytes, 2: `_Py_CODEUNIT`s).
    unit: i64,
}

impl LineMap {
    /// Decode a code object's table once (the walker caches the result per code object).
    ///
    /// `table` is `co_lnotab` (2.7–3.9) or `co_linetable` (3.10+); `firstlineno` is
    /// `co_firstlineno`. Never fails: a malformed table yields whatever ranges its bytes
    /// describe, as CPython would.
    pub fn new(model: LineTable, table: &[u8], firstlineno: i32) -> LineMap {
        let mut builder = Builder::default();
        let unit = match model {
            LineTable::Lnotab27 => {
                decode_lnotab(table, firstlineno, false, &mut builder);
                1
            }
            LineTable::Lnotab36 => {
                decode_lnotab(table, firstlineno, true, &mut builder);
                1
            }
            LineTable::Linetable310 => {
                decode_linetable310(table, firstlineno, &mut builder);
                2
            }
            LineTable::Location311 => {
                decode_location311(table, firstlineno, &mut builder);
                2
            }
        };
        LineMap {
            ranges: builder.ranges,
            firstlineno,
            unit,
        }
    }

    /// Line for the instruction at `lasti`; `None` when the table says "no line" or `lasti` lies
    /// past the end of a 3.10+ table.
    ///
    /// Units of `lasti` depend on the model, exactly as the walker reads them from a frame:
    /// - `Lnotab27` / `Lnotab36`: `f_lasti` in bytes (-1 before the frame has started);
    /// - `Linetable310`: `f_lasti` in code units (3.10's `PyFrame_GetLineNumber` passes
    ///   `f_lasti * 2` to `PyCode_Addr2Line`, Objects/frameobject.c);
    /// - `Location311`: `(instr_ptr - co_code_adaptive) / 2`, in code units (3.11's
    ///   `_PyInterpreterFrame_GetLine` passes `_PyInterpreterFrame_LASTI(frame) * 2`).
    ///
    /// A negative position is a frame that has not executed an instruction yet; every version's
    /// `PyCode_Addr2Line` answers `co_firstlineno` for it.
    pub fn line(&self, lasti: i64) -> Option<i32> {
        if lasti < 0 {
            return Some(self.firstlineno);
        }
        let addr = u64::try_from(lasti.saturating_mul(self.unit)).unwrap_or(u64::MAX);
        let i = self.ranges.partition_point(|r| r.end <= addr);
        match self.ranges.get(i) {
            Some(r) if r.start <= addr => r.line,
            _ => None,
        }
    }

    /// The decoded ranges, in byte offsets of the bytecode, sorted and contiguous from 0.
    pub fn ranges(&self) -> &[LineRange] {
        &self.ranges
    }

    /// `co_firstlineno` as given to [`LineMap::new`].
    pub fn firstlineno(&self) -> i32 {
        self.firstlineno
    }
}

/// Collects ranges in order, dropping empty ones and merging neighbours with the same line.
#[derive(Default)]
struct Builder {
    ranges: Vec<LineRange>,
}

impl Builder {
    /// Append `start..end`. Callers pass `start` equal to the previous `end`, so the ranges stay
    /// contiguous; an empty or backwards range is ignored.
    fn push(&mut self, start: u64, end: u64, line: Option<i32>) {
        if end <= start {
            return;
        }
        if let Some(last) = self.ranges.last_mut() {
            if last.end == start && last.line == line {
                last.end = end;
                return;
            }
        }
        self.ranges.push(LineRange { start, end, line });
    }
}

/// 2.7–3.9 `co_lnotab`: pairs of (bytecode increment, line increment), Objects/lnotab_notes.txt.
///
/// `PyCode_Addr2Line` (Objects/codeobject.c, 2.7–3.9) walks the pairs adding the byte increment
/// and stops at the first pair whose address passes the query; otherwise it adds the line
/// increment. So the line at `addr` is `firstlineno` plus the increments of every pair whose
/// cumulative address is `<= addr`, and the last line extends past the end of the bytecode. Line
/// increments are unsigned in 2.7 and `signed char` since 3.6 (bpo-26107). A trailing odd byte
/// is ignored (`size = len / 2`).
fn decode_lnotab(table: &[u8], firstlineno: i32, signed: bool, out: &mut Builder) {
    let mut start: u64 = 0;
    let mut addr: u64 = 0;
    let mut line = firstlineno;
    for pair in table.chunks_exact(2) {
        let (addr_incr, line_incr) = (pair[0], pair[1]);
        addr = addr.saturating_add(u64::from(addr_incr));
        if addr > start {
            out.push(start, addr, Some(line));
            start = addr;
        }
        let delta = if signed {
            i32::from(line_incr as i8)
        } else {
            i32::from(line_incr)
        };
        line = line.wrapping_add(delta);
    }
    out.push(start, u64::MAX, Some(line));
}

/// 3.10 `co_linetable`: pairs of (unsigned byte length, signed line delta), where a delta of
/// -128 marks a range without a line (Objects/lnotab_notes.txt, 3.10).
///
/// Mirrors `advance`/`_PyLineTable_NextAddressRange`/`_PyCode_CheckLineNumber` in 3.10's
/// Objects/codeobject.c: each pair starts where the previous one ended; zero-length pairs only
/// move the computed line; a "no line" pair leaves the computed line unchanged; an address past
/// the last range has no line (-1).
fn decode_linetable310(table: &[u8], firstlineno: i32, out: &mut Builder) {
    let mut end: u64 = 0;
    let mut computed = firstlineno;
    for pair in table.chunks_exact(2) {
        let start = end;
        end = end.saturating_add(u64::from(pair[0]));
        let ldelta = pair[1] as i8;
        let line = if ldelta == -128 {
            None
        } else {
            computed = computed.wrapping_add(i32::from(ldelta));
            Some(computed)
        };
        out.push(start, end, line);
    }
}

/// Location-entry kinds of the 3.11+ table (`_PyCodeLocationInfoKind`, Include/cpython/code.h
/// in 3.11–3.12, Include/internal/pycore_code.h later; format in InternalDocs/locations.md).
const LOCATION_NO_COLUMNS: u8 = 13;
const LOCATION_LONG: u8 = 14;
const LOCATION_ONE_LINE0: u8 = 10;
const LOCATION_ONE_LINE1: u8 = 11;
const LOCATION_ONE_LINE2: u8 = 12;

/// 3.11+ location table.
///
/// Each entry starts with a byte with bit 7 set: bits 3–6 are the kind, bits 0–2 the length in
/// code units minus one. Kinds 0–9 (short forms) stay on the line; 10–12 move by 0, 1 or 2 lines;
/// 13 (no columns) and 14 (long) carry a signed varint line delta right after the first byte;
/// 15 means "no line" and keeps the computed line. Mirrors `advance`, `get_line_delta`,
/// `is_no_line_marker` and `_PyCode_CheckLineNumber` in Objects/codeobject.c (3.11–3.15): the
/// next entry begins at the next byte with bit 7 set, and an address past the last entry has no
/// line (-1).
fn decode_location311(table: &[u8], firstlineno: i32, out: &mut Builder) {
    let mut end: u64 = 0;
    let mut computed = firstlineno;
    let mut pos = 0;
    while let Some(&first) = table.get(pos) {
        computed = computed.wrapping_add(location_line_delta(table, pos));
        // `is_no_line_marker`: kind 15 with bit 7 set.
        let line = if first >> 3 == 0x1f {
            None
        } else {
            Some(computed)
        };
        let start = end;
        end = end.saturating_add((u64::from(first & 7) + 1) * 2);
        out.push(start, end, line);
        pos += 1;
        while table.get(pos).is_some_and(|b| b & 0x80 == 0) {
            pos += 1;
        }
    }
}

/// `get_line_delta` for the entry whose first byte is at `table[pos]`.
fn location_line_delta(table: &[u8], pos: usize) -> i32 {
    let Some(&first) = table.get(pos) else {
        return 0;
    };
    match (first >> 3) & 15 {
        LOCATION_NO_COLUMNS | LOCATION_LONG => scan_signed_varint(table, pos + 1),
        LOCATION_ONE_LINE0 => 0,
        LOCATION_ONE_LINE1 => 1,
        LOCATION_ONE_LINE2 => 2,
        // Short forms and "no line": same line.
        _ => 0,
    }
}

/// `scan_varint`: 6 bits per byte, least significant first, bit 6 = more follows. CPython reads
/// without a bound; we stop at the end of the table and ignore bits beyond 32.
fn scan_varint(table: &[u8], mut pos: usize) -> u32 {
    let mut val: u32 = 0;
    let mut shift: u32 = 0;
    while let Some(&b) = table.get(pos) {
        val |= u32::from(b & 63).checked_shl(shift).unwrap_or(0);
        if b & 64 == 0 {
            break;
        }
        shift = shift.saturating_add(6);
        pos += 1;
    }
    val
}

/// `scan_signed_varint`: zig-zag-like, the low bit is the sign.
fn scan_signed_varint(table: &[u8], pos: usize) -> i32 {
    let uval = scan_varint(table, pos);
    // uval >> 1 < 2^31, so the conversions cannot fail.
    let magnitude = i32::try_from(uval >> 1).unwrap_or(i32::MAX);
    if uval & 1 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(map: &LineMap, lastis: std::ops::Range<i64>) -> Vec<Option<i32>> {
        lastis.map(|i| map.line(i)).collect()
    }

    #[test]
    fn lnotab27_unsigned_increments_and_open_end() {
        // (3 bytes, +1 line), (0, +255), (0, +45), (250, +200)
        let map = LineMap::new(LineTable::Lnotab27, &[3, 1, 0, 255, 0, 45, 250, 200], 10);
        assert_eq!(map.line(-1), Some(10));
        assert_eq!(map.line(0), Some(10));
        assert_eq!(map.line(2), Some(10));
        assert_eq!(map.line(3), Some(311));
        assert_eq!(map.line(252), Some(311));
        assert_eq!(map.line(253), Some(511));
        assert_eq!(map.line(1_000_000), Some(511));
    }

    #[test]
    fn lnotab36_signed_increments() {
        // 0xfe = -2 as signed char; in 2.7 it is +254.
        let table = [2, 5, 4, 0xfe, 1];
        let m36 = LineMap::new(LineTable::Lnotab36, &table, 1);
        let m27 = LineMap::new(LineTable::Lnotab27, &table, 1);
        assert_eq!(lines(&m36, 0..8), [1, 1, 6, 6, 6, 6, 4, 4].map(Some));
        assert_eq!(m27.line(6), Some(260));
    }

    #[test]
    fn linetable310_no_line_zero_length_and_end() {
        // (4 bytes, +2), (0 bytes, +3), (2 bytes, no line), (4 bytes, -1)
        let map = LineMap::new(LineTable::Linetable310, &[4, 2, 0, 3, 2, 0x80, 4, 0xff], 5);
        // lasti in code units.
        assert_eq!(map.line(-1), Some(5));
        assert_eq!(
            lines(&map, 0..6),
            [Some(7), Some(7), None, Some(9), Some(9), None]
        );
    }

    #[test]
    fn location311_kinds() {
        let table = [
            0x80 | (13 << 3),     // no columns, 1 unit,
            0x02,                 // line delta +1
            0x80 | (10 << 3) | 1, // one-line0, 2 units,
            0x05,                 // columns
            0x06,                 //
            0x80 | (12 << 3),     // one-line2, 1 unit
            0x01,                 //
            0x02,                 //
            0x80 | (15 << 3) | 2, // no line, 3 units
            0x80 | (14 << 3),     // long, 1 unit,
            0x40 | 0x03,          // line delta: varint 3 | (1 << 6) = 67 -> -33
            0x01,                 //
            0x00,                 // end line delta
            0x00,                 // column
            0x00,                 // end column
            0x80 | (3 << 3) | 7,  // short form, 8 units
            0x11,                 //
        ];
        let map = LineMap::new(LineTable::Location311, &table, 100);
        let mut want = vec![Some(101), Some(101), Some(101), Some(103), None, None, None];
        want.extend([Some(70); 9]);
        want.push(None);
        assert_eq!(lines(&map, 0..17), want);
        assert_eq!(map.line(-1), Some(100));
    }

    #[test]
    fn empty_tables() {
        assert_eq!(LineMap::new(LineTable::Lnotab27, &[], 3).line(7), Some(3));
        assert_eq!(LineMap::new(LineTable::Linetable310, &[], 3).line(0), None);
        assert_eq!(LineMap::new(LineTable::Location311, &[], 3).line(0), None);
        assert_eq!(
            LineMap::new(LineTable::Location311, &[], 3).line(-1),
            Some(3)
        );
    }

    #[test]
    fn huge_lasti_does_not_overflow() {
        let map = LineMap::new(LineTable::Location311, &[0x80 | (13 << 3), 2], 1);
        assert_eq!(map.line(i64::MAX), None);
        let map = LineMap::new(LineTable::Lnotab36, &[2, 1], 1);
        assert_eq!(map.line(i64::MAX), Some(2));
    }
}
