//! The layer under both readers ([`Records`]): the file is read a chunk at a time, each chunk's
//! length and checksum checked, and its records decoded one by one, every id checked against
//! the definitions the file made before it (and did not forget). Reading stops cleanly at a
//! torn or damaged tail, whose length is kept. Metadata and statistics are kept here; what a
//! record defines or counts is handed up in the file's own ids.

use std::borrow::Cow;
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use strobe_aggregate::{
    CapacityError, Count, CountKey, Frame, FrameId, FrameKind, Metadata, Sample, SampleFlags,
    StackId, StrId, Thread, ThreadId,
};

use super::{
    unzigzag, RawStats, AGGREGATE, CHUNK_HEADER_LEN, FIRST_LINE_VERSION, FORGET, FORGET_VERSION,
    FRAME, HEADER_LEN, KFRAME, MAGIC, MAX_CHUNK_LEN, META, OLDEST_VERSION, SAMPLE, STACK, STATS,
    STR, THREAD, VERSION,
};

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

/// One record that defines or counts something, in the file's ids (strings, frames, threads
/// and stacks each numbered from 0 in the order the file defines them).
pub(super) enum Record<'a> {
    /// The next string.
    Str(Cow<'a, str>),
    /// The next frame (its strings in file ids).
    Frame(Frame),
    /// The next thread (its name in file ids).
    Thread(Thread),
    /// The next stack's frames, outermost first.
    Stack(&'a [FrameId]),
    /// Every stack below this id is forgotten.
    Forget(StackId),
    /// One sample.
    Sample(Sample),
    /// A pre-counted stack.
    Aggregate(CountKey, Count),
}

/// A decoded record before it is handed out (what it borrows stays in [`Records`]).
enum Decoded {
    Str(Range<usize>),
    Frame(Frame),
    Thread(Thread),
    /// In [`Records::stack_buf`].
    Stack,
    Forget(StackId),
    Sample(Sample),
    Aggregate(CountKey, Count),
}

type Dec<T> = Result<T, &'static str>;

/// How many entries of each kind the file defined so far.
#[derive(Debug, Default, Clone, Copy)]
struct Defined {
    strings: u64,
    frames: u64,
    threads: u64,
    stacks: u64,
    /// The first stack not forgotten.
    first_stack: u64,
}

/// Checks that `id` is one of the `n` defined so far.
fn defined(id: u64, n: u64, what: &'static str) -> Dec<u32> {
    if id < n {
        u32::try_from(id).map_err(|_| what)
    } else {
        Err(what)
    }
}

fn io_error(path: &Path, error: io::Error) -> RawError {
    RawError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Reads `buf.len()` bytes unless the input ends first; returns how many it read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The records of a raw recording, in file order. See the module documentation.
pub(super) struct Records<R> {
    src: R,
    /// The file, for I/O errors.
    path: PathBuf,
    version: u16,
    /// The payload of the chunk being decoded, and the position of the next record in it.
    chunk: Vec<u8>,
    pos: usize,
    /// Byte offset of that chunk's header in the file, and of the next chunk's.
    chunk_offset: usize,
    next_offset: usize,
    chunks: usize,
    ignored: usize,
    /// The last chunk was read (or the tail that could not be).
    end: bool,
    defined: Defined,
    stack_buf: Vec<FrameId>,
    meta: Metadata,
    stats: Option<RawStats>,
    prev_ts: u64,
    first_start: Option<u64>,
    last_ts: u64,
}

impl<R: Read> Records<R> {
    /// Reads and checks the header of the recording `src` (named `path` in errors).
    pub(super) fn new(mut src: R, path: PathBuf) -> Result<Records<R>, RawError> {
        let mut header = [0u8; HEADER_LEN];
        let n = read_full(&mut src, &mut header).map_err(|e| io_error(&path, e))?;
        if n < HEADER_LEN {
            let m = n.min(MAGIC.len());
            return Err(if header[..m] == MAGIC[..m] {
                RawError::TruncatedHeader(n)
            } else {
                RawError::NotRaw
            });
        }
        if !header.starts_with(MAGIC) {
            return Err(RawError::NotRaw);
        }
        let version = u16::from_le_bytes([header[8], header[9]]);
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(RawError::UnsupportedVersion(version));
        }
        Ok(Records {
            src,
            path,
            version,
            chunk: Vec::new(),
            pos: 0,
            chunk_offset: HEADER_LEN,
            next_offset: HEADER_LEN,
            chunks: 0,
            ignored: 0,
            end: false,
            defined: Defined::default(),
            stack_buf: Vec::new(),
            meta: Metadata::default(),
            stats: None,
            prev_ts: 0,
            first_start: None,
            last_ts: 0,
        })
    }

    /// The next record that defines or counts something, or `None` after the last complete
    /// chunk.
    pub(super) fn next(&mut self) -> Result<Option<Record<'_>>, RawError> {
        let decoded = loop {
            if self.pos >= self.chunk.len() {
                if !self.next_chunk()? {
                    return Ok(None);
                }
                continue;
            }
            match self.decode() {
                Ok(None) => {}
                Ok(Some(d)) => break d,
                Err(what) => {
                    return Err(RawError::Corrupt {
                        offset: self.chunk_offset,
                        what,
                    })
                }
            }
        };
        Ok(Some(match decoded {
            Decoded::Str(range) => Record::Str(String::from_utf8_lossy(
                self.chunk.get(range).unwrap_or(&[]),
            )),
            Decoded::Frame(f) => Record::Frame(f),
            Decoded::Thread(t) => Record::Thread(t),
            Decoded::Stack => Record::Stack(&self.stack_buf),
            Decoded::Forget(below) => Record::Forget(below),
            Decoded::Sample(s) => Record::Sample(s),
            Decoded::Aggregate(k, c) => Record::Aggregate(k, c),
        }))
    }

    /// The recording's metadata as read so far (complete after the last record): its duration
    /// is the last statistics record's, or else the span of the samples read.
    pub(super) fn metadata(&self) -> Metadata {
        let mut meta = self.meta.clone();
        match self.stats {
            Some(s) => {
                meta.duration_ns = s.duration_ns;
                meta.errors = s.errors;
                meta.dropped = s.dropped;
            }
            None => {
                meta.duration_ns = self
                    .first_start
                    .map_or(0, |f| self.last_ts.saturating_sub(f))
            }
        }
        meta
    }

    /// The file's format version.
    pub(super) fn version(&self) -> u16 {
        self.version
    }

    /// Complete chunks read so far.
    pub(super) fn chunks(&self) -> usize {
        self.chunks
    }

    /// Bytes at the end that were ignored (a torn or damaged chunk); known at the end.
    pub(super) fn ignored_bytes(&self) -> usize {
        self.ignored
    }

    /// Stack definitions read so far.
    pub(super) fn stack_definitions(&self) -> usize {
        self.defined.stacks as usize
    }

    /// Reads the next chunk; false at the end (a torn or damaged tail is counted as ignored,
    /// and nothing after it is read).
    fn next_chunk(&mut self) -> Result<bool, RawError> {
        if self.end {
            return Ok(false);
        }
        self.chunk.clear();
        self.pos = 0;
        self.chunk_offset = self.next_offset;
        let mut h = [0u8; CHUNK_HEADER_LEN];
        let n = read_full(&mut self.src, &mut h).map_err(|e| io_error(&self.path, e))?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let complete = n == CHUNK_HEADER_LEN && len <= MAX_CHUNK_LEN && {
            // Read up to `len` bytes: a torn chunk's length may promise more than the file has.
            let got = (&mut self.src)
                .take(len as u64)
                .read_to_end(&mut self.chunk)
                .map_err(|e| io_error(&self.path, e))?;
            got == len && crc32fast::hash(&self.chunk) == crc
        };
        if !complete {
            self.end = true;
            let rest =
                io::copy(&mut self.src, &mut io::sink()).map_err(|e| io_error(&self.path, e))?;
            self.ignored = n + self.chunk.len() + rest as usize;
            self.chunk.clear();
            return Ok(false);
        }
        self.chunks += 1;
        self.next_offset = self.chunk_offset + CHUNK_HEADER_LEN + len;
        Ok(true)
    }

    fn u8(&mut self) -> Dec<u8> {
        let v = *self
            .chunk
            .get(self.pos)
            .ok_or("record runs past the chunk")?;
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

    /// A length-prefixed string's bytes, as a range of the chunk.
    fn bytes(&mut self) -> Dec<Range<usize>> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length overflows")?;
        let end = self.pos.checked_add(len).ok_or("length overflows")?;
        if end > self.chunk.len() {
            return Err("string runs past the chunk");
        }
        let r = self.pos..end;
        self.pos = end;
        Ok(r)
    }

    fn string(&mut self) -> Dec<String> {
        let r = self.bytes()?;
        Ok(String::from_utf8_lossy(self.chunk.get(r).unwrap_or(&[])).into_owned())
    }

    /// A line as [`line_code`](super::line_code) stored it.
    fn line(&mut self) -> Dec<Option<i32>> {
        match self.varint()? {
            0 => Ok(None),
            v => i32::try_from(unzigzag(v - 1))
                .map(Some)
                .map_err(|_| "line out of range"),
        }
    }

    fn str_id(&mut self, what: &'static str) -> Dec<StrId> {
        let id = self.varint()?;
        defined(id, self.defined.strings, what).map(StrId)
    }

    /// A string id stored as id + 1, 0 meaning none.
    fn opt_str_id(&mut self, what: &'static str) -> Dec<Option<StrId>> {
        match self.varint()? {
            0 => Ok(None),
            v => defined(v - 1, self.defined.strings, what).map(|i| Some(StrId(i))),
        }
    }

    /// A stack id that names a stack defined and not forgotten.
    fn stack_id(&mut self, undefined: &'static str) -> Dec<StackId> {
        let id = self.varint()?;
        if id < self.defined.first_stack {
            return Err("a record names a forgotten stack");
        }
        defined(id, self.defined.stacks, undefined).map(StackId)
    }

    fn thread_id(&mut self, undefined: &'static str) -> Dec<ThreadId> {
        let id = self.varint()?;
        defined(id, self.defined.threads, undefined).map(ThreadId)
    }

    /// The next record of the chunk; `None` for one kept here (META, STATS).
    fn decode(&mut self) -> Dec<Option<Decoded>> {
        const FRAME_STR: &str = "frame names an undefined string";
        let tag = self.u8()?;
        Ok(Some(match tag {
            META => {
                let n = self.varint()?;
                for _ in 0..n {
                    let k = self.string()?;
                    let v = self.string()?;
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
                return Ok(None);
            }
            STR => {
                let r = self.bytes()?;
                self.defined.strings += 1;
                Decoded::Str(r)
            }
            FRAME | KFRAME => {
                let kind = if tag == KFRAME {
                    FrameKind::from_code(self.u8()?).ok_or("unknown frame kind")?
                } else {
                    FrameKind::Python
                };
                let function = self.str_id(FRAME_STR)?;
                let filename = self.str_id(FRAME_STR)?;
                let line = self.line()?;
                let module = match kind {
                    FrameKind::Python => None,
                    _ => self.opt_str_id(FRAME_STR)?,
                };
                let first_line = if self.version >= FIRST_LINE_VERSION {
                    self.line()?
                } else {
                    None
                };
                self.defined.frames += 1;
                Decoded::Frame(Frame {
                    function,
                    filename,
                    line,
                    kind,
                    module,
                    first_line,
                })
            }
            THREAD => {
                let os_tid = self.varint()?;
                let interpreter_id = unzigzag(self.varint()?);
                let name = self.opt_str_id("thread names an undefined string")?;
                self.defined.threads += 1;
                Decoded::Thread(Thread {
                    os_tid,
                    name,
                    interpreter_id,
                })
            }
            STACK => {
                let depth = self.varint()?;
                if depth > (self.chunk.len() - self.pos) as u64 {
                    return Err("stack deeper than its chunk");
                }
                self.stack_buf.clear();
                for _ in 0..depth {
                    let f = self.varint()?;
                    let f = defined(f, self.defined.frames, "stack names an undefined frame")?;
                    self.stack_buf.push(FrameId(f));
                }
                self.defined.stacks += 1;
                Decoded::Stack
            }
            FORGET if self.version >= FORGET_VERSION => {
                const UNDEFINED: &str = "forget names an undefined stack";
                let below = self.varint()?;
                if below > self.defined.stacks {
                    return Err(UNDEFINED);
                }
                let d = &mut self.defined;
                d.first_stack = d.first_stack.max(below);
                Decoded::Forget(StackId(u32::try_from(below).map_err(|_| UNDEFINED)?))
            }
            SAMPLE => {
                let stack = self.stack_id("sample names an undefined stack")?;
                let thread = self.thread_id("sample names an undefined thread")?;
                let flags = SampleFlags(self.u8()? & SampleFlags::KNOWN.0);
                let ts = self.prev_ts.wrapping_add(unzigzag(self.varint()?) as u64);
                let weight_ns = self.varint()?;
                self.prev_ts = ts;
                let start = ts.saturating_sub(weight_ns);
                self.first_start = Some(self.first_start.map_or(start, |f| f.min(start)));
                self.last_ts = self.last_ts.max(ts);
                Decoded::Sample(Sample {
                    stack,
                    thread,
                    flags,
                    timestamp_ns: ts,
                    weight_ns,
                })
            }
            STATS => {
                let duration_ns = self.varint()?;
                let errors = self.varint()?;
                let dropped = self.varint()?;
                self.stats = Some(RawStats {
                    duration_ns,
                    errors,
                    dropped,
                });
                return Ok(None);
            }
            AGGREGATE => {
                let stack = self.stack_id("count names an undefined stack")?;
                let thread = self.thread_id("count names an undefined thread")?;
                let flags = SampleFlags(self.u8()? & SampleFlags::KNOWN.0);
                let samples = self.varint()?;
                let weight_ns = self.varint()?;
                Decoded::Aggregate(
                    CountKey {
                        thread,
                        stack,
                        flags,
                    },
                    Count { samples, weight_ns },
                )
            }
            _ => return Err("unknown record type"),
        }))
    }
}
