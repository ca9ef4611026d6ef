//! strobe's raw recording: written while recording, readable after a crash.
//!
//! # Layout (version 5)
//!
//! Older versions are read too: version 4 is version 5 without record 10 (FORGET); version 3 is
//! version 4 without the first line ending FRAME and KFRAME (its frames have no first line),
//! frame kinds 4 and 5 and sample flag 4; version 2 is version 3 without frame kind 3; version 1
//! is version 2 without record 9.
//!
//! ```text
//! header:  "STROBRAW"  u16 LE version  u16 LE reserved (0)
//! chunk*:  u32 LE payload length  u32 LE CRC-32 (IEEE) of the payload  payload
//! payload: record*
//! record:  u8 tag, then fields; integers are LEB128 varints, strings are varint length + UTF-8
//!   1 META      varint n, n × (key string, value string)
//!   2 STR       string                         (defines the next string id)
//!   3 FRAME     function str id, file str id, line (0 = none, else zigzag(line) + 1),
//!               the function's first line (as line)
//!   4 THREAD    os tid, zigzag(interpreter id), name (0 = none, else str id + 1)
//!   5 STACK     depth, depth × frame id, outermost first
//!   6 SAMPLE    stack id, thread id, u8 flags, zigzag(timestamp − previous timestamp), weight ns
//!               (flags: 1 idle, 2 holds the GIL, 4 raising or handling an exception)
//!   7 STATS     duration ns, errors, dropped   (cumulative: the last one wins)
//!   8 AGGREGATE stack id, thread id, u8 flags, samples, weight ns   (a pre-counted stack)
//!   9 KFRAME    u8 kind (1 native, 2 kernel, 3 interpreter: `<GC>`, 4 exception: `<raise T>`,
//!               5 task: `<task NAME>`), function str id, file str id, line as in FRAME,
//!               module (0 = none, else str id + 1), first line as in FRAME   (a frame that
//!               is not Python's; frame ids are shared with FRAME)
//!  10 FORGET    stack id: every stack whose id is below it is forgotten (no later record
//!               names one); never lower than an earlier FORGET's
//! ```
//!
//! Ids are implicit (each definition takes the next id of its kind) and file-local. A chunk holds
//! the definitions its samples need, so a chunk is self-contained given the chunks before it.
//! The same frames may be defined as several stacks: `record` forgets stacks not seen lately
//! (its stack table is bounded, see `strobe_aggregate::pipeline_streamed`), and one that comes
//! back is defined again under a new id; a stack forgotten before it was written is defined
//! empty, to keep the ids in step, and no sample names it. The writer says what it forgot with
//! a FORGET record (it learns of it from the tables it is handed: their first held stack
//! moved), before the first sample after it, so a reader need hold only the stacks not
//! forgotten: [`RawStream`] does, and so reads in memory bounded by the recorder's stack table
//! and the file's distinct frames, whatever the file's length. [`read_raw`] interns stacks by
//! content instead (it builds a whole profile), so such a file reads as one with each stack
//! defined once (versions 1 to 4 all allow this: a reader of any of them reads it, FORGET
//! aside). The
//! writer emits a chunk at every [`RawWriter::flush`] (the recorder calls it at least once a
//! second) and whenever its buffer passes 1 MiB; a killed recorder leaves at most a torn last
//! chunk, which the reader detects by its length or checksum and skips, reporting the bytes it
//! ignored. No fsync: a `write` has reached the kernel, which survives the recorder being killed;
//! power loss is out of scope.
//!
//! The writer ([`RawWriter`], and `strobe convert --format raw`) is in the `writer` submodule.
//! Reading is in layers: `records` reads the file a chunk at a time, checks each chunk and
//! decodes its records one by one, checking every id against the definitions before it; on
//! top of it `stream` ([`RawStream`]) keeps the tables so far and yields samples and counts in
//! file order (for a file of version 4 or older, after a first pass, `plan`, that finds when
//! each stack was last named, so that it too holds only the stacks still to be named), and `reader` ([`read_raw`], [`read_raw_bytes`], [`read_raw_counts`]) builds a
//! [`Profile`](strobe_aggregate::Profile). The format's constants and encodings, shared by
//! all, are here.

mod plan;
mod reader;
mod records;
mod stream;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
mod writer;

pub use reader::{read_raw, read_raw_bytes, read_raw_counts, RawRecording};
pub use records::RawError;
pub use stream::{RawEvent, RawStream};
pub(crate) use writer::RawFormat;
pub use writer::RawWriter;

/// The file magic.
pub const MAGIC: &[u8; 8] = b"STROBRAW";
/// The format version this code writes and reads.
pub const VERSION: u16 = 5;
/// The first format version whose frames carry their function's first line.
const FIRST_LINE_VERSION: u16 = 4;
/// The first format version with FORGET records.
const FORGET_VERSION: u16 = 5;
/// The oldest format version this code reads.
pub const OLDEST_VERSION: u16 = 1;
const HEADER_LEN: usize = 12;
const CHUNK_HEADER_LEN: usize = 8;
/// A chunk longer than this is treated as corrupt (the writer stays far below it).
const MAX_CHUNK_LEN: usize = 256 << 20;
const FLUSH_AT: usize = 1 << 20;

const META: u8 = 1;
const STR: u8 = 2;
const FRAME: u8 = 3;
const THREAD: u8 = 4;
const STACK: u8 = 5;
const SAMPLE: u8 = 6;
const STATS: u8 = 7;
const AGGREGATE: u8 = 8;
const KFRAME: u8 = 9;
const FORGET: u8 = 10;

/// Run statistics recorded alongside samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawStats {
    /// Recording duration so far, ns.
    pub duration_ns: u64,
    /// Samples that failed.
    pub errors: u64,
    /// Samples dropped by the queue.
    pub dropped: u64,
}

/// LEB128, as protobuf writes it.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A line as FRAME stores it: 0 for none, else zigzag(line) + 1.
fn line_code(line: Option<i32>) -> u64 {
    line.map_or(0, |l| zigzag(i64::from(l)) + 1)
}

fn string(out: &mut Vec<u8>, s: &str) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}
