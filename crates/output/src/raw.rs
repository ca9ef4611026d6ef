//! strobe's raw recording: written while recording, readable after a crash.
//!
//! # Layout (version 4)
//!
//! Older versions are read too: version 3 is version 4 without the first line ending FRAME and
//! KFRAME (its frames have no first line), frame kinds 4 and 5 and sample flag 4; version 2 is
//! version 3 without frame kind 3; version 1 is version 2 without record 9.
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
//! ```
//!
//! Ids are implicit (each definition takes the next id of its kind) and file-local. A chunk holds
//! the definitions its samples need, so a chunk is self-contained given the chunks before it.
//! The same frames may be defined as several stacks: `record` forgets stacks not seen lately
//! (its stack table is bounded, see `strobe_aggregate::pipeline_streamed`), and one that comes
//! back is defined again under a new id; a stack forgotten before it was written is defined
//! empty, to keep the ids in step, and no sample names it. The reader interns stacks by
//! content, so such a file reads as one with each stack defined once (versions 1 to 3 all allow
//! this: a reader of any of them reads it). The
//! writer emits a chunk at every [`RawWriter::flush`] (the recorder calls it at least once a
//! second) and whenever its buffer passes 1 MiB; a killed recorder leaves at most a torn last
//! chunk, which the reader detects by its length or checksum and skips, reporting the bytes it
//! ignored. No fsync: a `write` has reached the kernel, which survives the recorder being killed;
//! power loss is out of scope.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use strobe_aggregate::{
    CapacityError, Count, CountKey, Counts, Frame, FrameId, FrameKind, Interner, Marks, Metadata,
    Profile, ProfileOptions, Sample, SampleFlags, StackCount, StackId, StrId, Tables, Thread,
    ThreadId,
};

use crate::Format;

/// The file magic.
pub const MAGIC: &[u8; 8] = b"STROBRAW";
/// The format version this code writes and reads.
pub const VERSION: u16 = 4;
/// The first format version whose frames carry their function's first line.
const FIRST_LINE_VERSION: u16 = 4;
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

/// Streams samples to a raw recording. See the module documentation.
#[derive(Debug)]
pub struct RawWriter<W: Write> {
    out: W,
    /// Pending chunk: 8 reserved header bytes, then the payload.
    buf: Vec<u8>,
    marks: Marks,
    prev_ts: u64,
}

impl<W: Write> RawWriter<W> {
    /// Writes the header and a metadata chunk (flushed at once, so even an immediately killed
    /// recording identifies its target).
    pub fn new(mut out: W, meta: &Metadata) -> io::Result<RawWriter<W>> {
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes());
        out.write_all(&header)?;
        let mut w = RawWriter {
            out,
            buf: vec![0; CHUNK_HEADER_LEN],
            marks: Marks::default(),
            prev_ts: 0,
        };
        let mut pairs: Vec<(&str, String)> = vec![
            ("target", meta.target.clone()),
            ("strobe_version", meta.strobe_version.clone()),
            ("rate_requested_hz", format!("{}", meta.rate_requested_hz)),
            ("start_unix_ns", meta.start_unix_ns.to_string()),
        ];
        if let Some(pid) = meta.pid {
            pairs.push(("pid", pid.to_string()));
        }
        if let Some(v) = &meta.python_version {
            pairs.push(("python_version", v.clone()));
        }
        w.buf.push(META);
        varint(&mut w.buf, pairs.len() as u64);
        for (k, v) in &pairs {
            string(&mut w.buf, k);
            string(&mut w.buf, v);
        }
        w.flush()?;
        Ok(w)
    }

    /// Emits definitions for table entries new since the last call (a stack `tables` no longer
    /// holds is written empty: see the module documentation).
    fn definitions(&mut self, tables: &Tables) {
        let b = &mut self.buf;
        for i in self.marks.strings..tables.num_strings() {
            b.push(STR);
            string(b, tables.str(StrId(i as u32)));
        }
        for i in self.marks.frames..tables.num_frames() {
            let Some(f) = tables.frame(FrameId(i as u32)) else {
                continue;
            };
            if f.kind == FrameKind::Python {
                b.push(FRAME);
            } else {
                b.push(KFRAME);
                b.push(f.kind.code());
            }
            varint(b, u64::from(f.function.0));
            varint(b, u64::from(f.filename.0));
            varint(b, line_code(f.line));
            if f.kind != FrameKind::Python {
                varint(b, f.module.map_or(0, |m| u64::from(m.0) + 1));
            }
            varint(b, line_code(f.first_line));
        }
        for i in self.marks.threads..tables.num_threads() {
            let Some(t) = tables.thread(ThreadId(i as u32)) else {
                continue;
            };
            b.push(THREAD);
            varint(b, t.os_tid);
            varint(b, zigzag(t.interpreter_id));
            varint(b, t.name.map_or(0, |n| u64::from(n.0) + 1));
        }
        for i in self.marks.stacks..tables.num_stacks() {
            let frames = tables.stack(StackId(i as u32));
            b.push(STACK);
            varint(b, frames.len() as u64);
            for f in frames {
                varint(b, u64::from(f.0));
            }
        }
        self.marks = Marks::of(tables);
    }

    /// Appends samples whose ids are defined in `tables` (the aggregator's tables; the writer
    /// emits whatever entries are new). Writes a chunk when the buffer passes 1 MiB.
    pub fn append(&mut self, tables: &Tables, samples: &[Sample]) -> io::Result<()> {
        self.definitions(tables);
        for s in samples {
            let b = &mut self.buf;
            b.push(SAMPLE);
            varint(b, u64::from(s.stack.0));
            varint(b, u64::from(s.thread.0));
            b.push(s.flags.0);
            varint(b, zigzag(s.timestamp_ns.wrapping_sub(self.prev_ts) as i64));
            varint(b, s.weight_ns);
            self.prev_ts = s.timestamp_ns;
        }
        self.maybe_emit()
    }

    /// Appends already-aggregated counts (for writing a profile that has no timeline).
    pub fn append_counts(&mut self, tables: &Tables, counts: &[StackCount]) -> io::Result<()> {
        self.definitions(tables);
        for c in counts {
            let b = &mut self.buf;
            b.push(AGGREGATE);
            varint(b, u64::from(c.stack.0));
            varint(b, u64::from(c.thread.0));
            b.push(c.flags.0);
            varint(b, c.count.samples);
            varint(b, c.count.weight_ns);
        }
        self.maybe_emit()
    }

    /// Records run statistics (cumulative; the reader keeps the last).
    pub fn record_stats(&mut self, stats: &RawStats) {
        self.buf.push(STATS);
        varint(&mut self.buf, stats.duration_ns);
        varint(&mut self.buf, stats.errors);
        varint(&mut self.buf, stats.dropped);
    }

    fn maybe_emit(&mut self) -> io::Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.emit()?;
        }
        Ok(())
    }

    fn emit(&mut self) -> io::Result<()> {
        if self.buf.len() == CHUNK_HEADER_LEN {
            return Ok(());
        }
        let payload_len = self.buf.len() - CHUNK_HEADER_LEN;
        let len = u32::try_from(payload_len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "raw chunk too large"))?;
        let crc = crc32fast::hash(self.buf.get(CHUNK_HEADER_LEN..).unwrap_or(&[]));
        if let Some(h) = self.buf.get_mut(..CHUNK_HEADER_LEN) {
            h[..4].copy_from_slice(&len.to_le_bytes());
            h[4..].copy_from_slice(&crc.to_le_bytes());
        }
        // One write per chunk: a kill can tear at most this chunk.
        let r = self.out.write_all(&self.buf);
        self.buf.truncate(CHUNK_HEADER_LEN);
        r
    }

    /// Writes everything appended so far as one chunk and flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.emit()?;
        self.out.flush()
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush()?;
        Ok(self.out)
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.out
    }
}

/// Writes a whole profile as a raw recording (`strobe convert --format raw`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawFormat;

impl Format for RawFormat {
    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let mut w = RawWriter::new(out, &profile.meta)?;
        if profile.timeline.is_empty() {
            w.append_counts(&profile.tables, &profile.stacks)?;
        } else {
            w.append(&profile.tables, &profile.timeline)?;
        }
        let m = &profile.meta;
        w.record_stats(&RawStats {
            duration_ns: m.duration_ns,
            errors: m.errors,
            dropped: m.dropped,
        });
        w.finish()?;
        Ok(())
    }
}

/// Why a raw recording could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// The file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error (part of the message, so not also the `source()`).
        error: io::Error,
    },
    /// Wrong magic.
    #[error("not a strobe raw recording (it does not start with {magic:?}); pass a file written by `strobe record --format raw`", magic = "STROBRAW")]
    NotRaw,
    /// Shorter than the header.
    #[error("the recording is only {0} bytes long, shorter than the {HEADER_LEN}-byte header: the recorder was stopped before it wrote anything")]
    TruncatedHeader(usize),
    /// Written by a newer strobe.
    #[error("raw format version {0} is not supported by this strobe (it reads versions {OLDEST_VERSION} to {VERSION}); convert it with the strobe version that recorded it")]
    UnsupportedVersion(u16),
    /// A chunk passed its checksum but does not decode: a bug or a crafted file.
    #[error("corrupt raw recording at byte {offset}: {what}")]
    Corrupt {
        /// Byte offset of the chunk.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// Too many distinct entries.
    #[error(transparent)]
    Capacity(#[from] CapacityError),
}

/// A raw recording read back.
#[derive(Debug, Clone)]
pub struct RawRecording {
    /// Everything recorded: every sample (also as a timeline), by line, idle included. Use
    /// [`Profile::with_options`] to apply `--idle`, `--gil`, `--threads`, `--function`.
    pub profile: Profile,
    /// Complete chunks read.
    pub chunks: usize,
    /// Bytes at the end that were ignored (a chunk torn by a crash, or damaged).
    pub ignored_bytes: usize,
    /// Stack definitions read: more than the profile's distinct stacks when the recorder
    /// forgot stacks and defined them again.
    pub stack_definitions: usize,
}

/// Reads a raw recording from a file. See [`read_raw_bytes`].
pub fn read_raw(path: &Path) -> Result<RawRecording, RawError> {
    let bytes = std::fs::read(path).map_err(|error| RawError::Io {
        path: path.to_owned(),
        error,
    })?;
    read_raw_bytes(&bytes)
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

type Dec<T> = Result<T, &'static str>;

impl<'a> Cursor<'a> {
    fn done(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn u8(&mut self) -> Dec<u8> {
        let v = *self.b.get(self.pos).ok_or("record runs past the chunk")?;
        self.pos += 1;
        Ok(v)
    }

    fn varint(&mut self) -> Dec<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes")
    }

    fn bytes(&mut self) -> Dec<&'a [u8]> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length overflows")?;
        let end = self.pos.checked_add(len).ok_or("length overflows")?;
        let s = self
            .b
            .get(self.pos..end)
            .ok_or("string runs past the chunk")?;
        self.pos = end;
        Ok(s)
    }

    fn string(&mut self) -> Dec<String> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    /// A line as [`line_code`] stored it.
    fn line(&mut self) -> Dec<Option<i32>> {
        match self.varint()? {
            0 => Ok(None),
            v => i32::try_from(unzigzag(v - 1))
                .map(Some)
                .map_err(|_| "line out of range"),
        }
    }
}

fn get<T: Copy>(v: &[T], id: u64, what: &'static str) -> Dec<T> {
    usize::try_from(id)
        .ok()
        .and_then(|i| v.get(i).copied())
        .ok_or(what)
}

#[derive(Default)]
struct Reader {
    /// The file's format version.
    version: u16,
    interner: Interner,
    counts: Counts,
    strs: Vec<StrId>,
    frames: Vec<FrameId>,
    threads: Vec<ThreadId>,
    stacks: Vec<StackId>,
    meta: Metadata,
    stats: Option<RawStats>,
    prev_ts: u64,
    first_start: Option<u64>,
    last_ts: u64,
    stack_buf: Vec<FrameId>,
}

impl Reader {
    fn chunk(&mut self, payload: &[u8]) -> Result<Dec<()>, CapacityError> {
        let mut c = Cursor { b: payload, pos: 0 };
        while !c.done() {
            if let Err(e) = self.record(&mut c)? {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }

    fn record(&mut self, c: &mut Cursor<'_>) -> Result<Dec<()>, CapacityError> {
        macro_rules! dec {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(what) => return Ok(Err(what)),
                }
            };
        }
        let tag = dec!(c.u8());
        match tag {
            META => {
                let n = dec!(c.varint());
                for _ in 0..n {
                    let k = dec!(c.string());
                    let v = dec!(c.string());
                    let m = &mut self.meta;
                    match k.as_str() {
                        "target" => m.target = v,
                        "strobe_version" => m.strobe_version = v,
                        "python_version" => m.python_version = Some(v),
                        "rate_requested_hz" => m.rate_requested_hz = v.parse().unwrap_or(0.0),
                        "start_unix_ns" => m.start_unix_ns = v.parse().unwrap_or(0),
                        "pid" => m.pid = v.parse().ok(),
                        _ => {} // Unknown keys from newer writers are ignored.
                    }
                }
            }
            STR => {
                let s = dec!(c.string());
                let id = self.interner.intern_str(&s)?;
                self.strs.push(id);
            }
            FRAME | KFRAME => {
                let kind = if tag == KFRAME {
                    dec!(FrameKind::from_code(dec!(c.u8())).ok_or("unknown frame kind"))
                } else {
                    FrameKind::Python
                };
                let function = dec!(get(
                    &self.strs,
                    dec!(c.varint()),
                    "frame names an undefined string"
                ));
                let filename = dec!(get(
                    &self.strs,
                    dec!(c.varint()),
                    "frame names an undefined string"
                ));
                let line = dec!(c.line());
                let module = match kind {
                    FrameKind::Python => None,
                    _ => match dec!(c.varint()) {
                        0 => None,
                        m => Some(dec!(get(
                            &self.strs,
                            m - 1,
                            "frame names an undefined string"
                        ))),
                    },
                };
                let first_line = if self.version >= FIRST_LINE_VERSION {
                    dec!(c.line())
                } else {
                    None
                };
                let id = self.interner.intern_frame_ids(Frame {
                    function,
                    filename,
                    line,
                    kind,
                    module,
                    first_line,
                })?;
                self.frames.push(id);
            }
            THREAD => {
                let os_tid = dec!(c.varint());
                let interpreter_id = unzigzag(dec!(c.varint()));
                let name = match dec!(c.varint()) {
                    0 => None,
                    v => Some(dec!(get(
                        &self.strs,
                        v - 1,
                        "thread names an undefined string"
                    ))),
                };
                let id = self.interner.intern_thread_info(Thread {
                    os_tid,
                    name,
                    interpreter_id,
                })?;
                self.threads.push(id);
            }
            STACK => {
                let depth = dec!(c.varint());
                if depth > (c.b.len() - c.pos) as u64 {
                    return Ok(Err("stack deeper than its chunk"));
                }
                self.stack_buf.clear();
                for _ in 0..depth {
                    let f = dec!(get(
                        &self.frames,
                        dec!(c.varint()),
                        "stack names an undefined frame"
                    ));
                    self.stack_buf.push(f);
                }
                let id = self.interner.intern_stack(&self.stack_buf)?;
                self.stacks.push(id);
            }
            SAMPLE => {
                let stack = dec!(get(
                    &self.stacks,
                    dec!(c.varint()),
                    "sample names an undefined stack"
                ));
                let thread = dec!(get(
                    &self.threads,
                    dec!(c.varint()),
                    "sample names an undefined thread"
                ));
                let flags = SampleFlags(dec!(c.u8()) & SampleFlags::KNOWN.0);
                let ts = self.prev_ts.wrapping_add(unzigzag(dec!(c.varint())) as u64);
                let weight_ns = dec!(c.varint());
                self.prev_ts = ts;
                let start = ts.saturating_sub(weight_ns);
                self.first_start = Some(self.first_start.map_or(start, |f| f.min(start)));
                self.last_ts = self.last_ts.max(ts);
                self.counts.add(&Sample {
                    stack,
                    thread,
                    flags,
                    timestamp_ns: ts,
                    weight_ns,
                });
            }
            STATS => {
                let duration_ns = dec!(c.varint());
                let errors = dec!(c.varint());
                let dropped = dec!(c.varint());
                self.stats = Some(RawStats {
                    duration_ns,
                    errors,
                    dropped,
                });
            }
            AGGREGATE => {
                let stack = dec!(get(
                    &self.stacks,
                    dec!(c.varint()),
                    "count names an undefined stack"
                ));
                let thread = dec!(get(
                    &self.threads,
                    dec!(c.varint()),
                    "count names an undefined thread"
                ));
                let flags = SampleFlags(dec!(c.u8()) & SampleFlags::KNOWN.0);
                let samples = dec!(c.varint());
                let weight_ns = dec!(c.varint());
                self.counts.add_count(
                    CountKey {
                        thread,
                        stack,
                        flags,
                    },
                    Count { samples, weight_ns },
                );
            }
            _ => return Ok(Err("unknown record type")),
        }
        Ok(Ok(()))
    }
}

/// Reads a raw recording from memory. Stops cleanly at a torn or damaged tail (reported in
/// [`RawRecording::ignored_bytes`]); fails only when the header is missing or wrong, or when a
/// chunk with a valid checksum does not decode.
pub fn read_raw_bytes(bytes: &[u8]) -> Result<RawRecording, RawError> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        let n = bytes.len().min(MAGIC.len());
        return Err(if bytes.get(..n) == MAGIC.get(..n) {
            RawError::TruncatedHeader(bytes.len())
        } else {
            RawError::NotRaw
        });
    };
    if !header.starts_with(MAGIC) {
        return Err(RawError::NotRaw);
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        return Err(RawError::UnsupportedVersion(version));
    }
    let mut r = Reader {
        version,
        ..Reader::default()
    };
    r.counts.keep_timeline(true);
    let mut pos = HEADER_LEN;
    let mut chunks = 0;
    while let Some(h) = bytes.get(pos..pos + CHUNK_HEADER_LEN) {
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let start = pos + CHUNK_HEADER_LEN;
        let Some(payload) = (len <= MAX_CHUNK_LEN)
            .then(|| bytes.get(start..start + len))
            .flatten()
        else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        if let Err(what) = r.chunk(payload)? {
            return Err(RawError::Corrupt { offset: pos, what });
        }
        chunks += 1;
        pos = start + len;
    }
    let mut meta = std::mem::take(&mut r.meta);
    match r.stats {
        Some(s) => {
            meta.duration_ns = s.duration_ns;
            meta.errors = s.errors;
            meta.dropped = s.dropped;
        }
        None => meta.duration_ns = r.first_start.map_or(0, |f| r.last_ts.saturating_sub(f)),
    }
    let profile = Profile::from_counts(
        meta,
        r.interner.tables(),
        &r.counts,
        ProfileOptions::EVERYTHING,
    )?;
    Ok(RawRecording {
        profile,
        chunks,
        ignored_bytes: bytes.len() - pos,
        stack_definitions: r.stacks.len(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A recording as strobe 0.1 wrote it at raw format version 3 (before first lines): one
    /// Python frame, one native frame, one thread, one stack, one sample; made by hand.
    fn version_3_file() -> Vec<u8> {
        let mut payload = Vec::new();
        for s in ["work", "/app/x.py", "/lib/libc.so.6", "qsort", ""] {
            payload.push(STR);
            string(&mut payload, s);
        }
        // FRAME work /app/x.py:12, no first-line field.
        payload.extend_from_slice(&[FRAME, 0, 1, (zigzag(12) + 1) as u8]);
        // KFRAME native qsort, no file, no line, module /lib/libc.so.6 (id 2 + 1).
        payload.extend_from_slice(&[KFRAME, 1, 3, 4, 0, 3]);
        payload.extend_from_slice(&[THREAD, 7, 0, 0]);
        payload.extend_from_slice(&[STACK, 2, 0, 1]);
        payload.push(SAMPLE);
        payload.extend_from_slice(&[0, 0, 0]);
        varint(&mut payload, zigzag(5_000_000));
        varint(&mut payload, 5_000_000);
        let mut file = Vec::new();
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&3u16.to_le_bytes());
        file.extend_from_slice(&0u16.to_le_bytes());
        file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        file.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        file.extend_from_slice(&payload);
        file
    }

    #[test]
    fn a_version_3_recording_reads_with_no_first_lines() {
        let r = read_raw_bytes(&version_3_file()).unwrap();
        assert_eq!(r.ignored_bytes, 0);
        let t = &r.profile.tables;
        let frames: Vec<_> = t
            .frames()
            .map(|(_, f)| {
                (
                    t.str(f.function),
                    t.str(f.filename),
                    f.line,
                    f.kind,
                    f.module.map(|m| t.str(m)),
                    f.first_line,
                )
            })
            .collect();
        assert_eq!(
            frames,
            [
                ("work", "/app/x.py", Some(12), FrameKind::Python, None, None),
                (
                    "qsort",
                    "",
                    None,
                    FrameKind::Native,
                    Some("/lib/libc.so.6"),
                    None
                ),
            ]
        );
        assert_eq!(r.profile.total().samples, 1);
    }

    #[test]
    fn version_4_frames_keep_their_first_lines() {
        let mut i = Interner::new();
        let py = i
            .intern_frame(
                &strobe_aggregate::FrameKey::python("work", "/app/x.py", Some(12))
                    .with_first_line(Some(10)),
            )
            .unwrap();
        let native = i
            .intern_frame(&strobe_aggregate::FrameKey {
                function: "qsort",
                filename: "",
                line: None,
                kind: FrameKind::Native,
                module: Some("/lib/libc.so.6"),
                first_line: Some(40),
            })
            .unwrap();
        let stack = i.intern_stack(&[py, native]).unwrap();
        let thread = i
            .intern_thread(&strobe_aggregate::ThreadKey {
                os_tid: 7,
                name: None,
                interpreter_id: 0,
            })
            .unwrap();
        let mut w = RawWriter::new(Vec::new(), &Metadata::default()).unwrap();
        w.append(
            i.tables(),
            &[Sample {
                stack,
                thread,
                flags: SampleFlags::default(),
                timestamp_ns: 5_000_000,
                weight_ns: 5_000_000,
            }],
        )
        .unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(&bytes[8..10], &VERSION.to_le_bytes());
        let r = read_raw_bytes(&bytes).unwrap();
        let t = &r.profile.tables;
        let firsts: Vec<_> = t.frames().map(|(_, f)| f.first_line).collect();
        assert_eq!(firsts, [Some(10), Some(40)]);
    }
}
