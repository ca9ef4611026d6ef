//! [`RawWriter`], which streams a recording chunk by chunk, and [`RawFormat`], which writes a
//! whole profile with it.

use std::io::{self, Write};

use strobe_aggregate::{
    FrameId, FrameKind, Marks, Metadata, Profile, Sample, StackCount, StackId, StrId, Tables,
    ThreadId,
};

use super::{
    line_code, string, varint, zigzag, RawStats, AGGREGATE, CHUNK_HEADER_LEN, FLUSH_AT, FORGET,
    FRAME, HEADER_LEN, KFRAME, MAGIC, META, SAMPLE, STACK, STATS, STR, THREAD, VERSION,
};
use crate::Format;

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
    /// holds is written empty: see the module documentation), and a FORGET when `tables` forgot
    /// stacks since.
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
        let first = tables.first_stack();
        if first.index() > self.marks.first_stack {
            b.push(FORGET);
            varint(b, u64::from(first.0));
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
