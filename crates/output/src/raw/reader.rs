//! Reading a raw recording back ([`read_raw`], [`read_raw_bytes`]): chunks are checked and
//! decoded in order, and reading stops cleanly at a torn or damaged tail.

use std::io;
use std::path::{Path, PathBuf};

use strobe_aggregate::{
    CapacityError, Count, CountKey, Counts, Frame, FrameId, FrameKind, Interner, Metadata, Profile,
    ProfileOptions, Sample, SampleFlags, StackId, StrId, Thread, ThreadId,
};

use super::{
    unzigzag, RawStats, AGGREGATE, CHUNK_HEADER_LEN, FIRST_LINE_VERSION, FRAME, HEADER_LEN, KFRAME,
    MAGIC, MAX_CHUNK_LEN, META, OLDEST_VERSION, SAMPLE, STACK, STATS, STR, THREAD, VERSION,
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

/// [`read_raw`] without the timeline (the profile's `timeline` is empty): for formats that
/// only need the counts per stack, 32 bytes per sample less.
pub fn read_raw_counts(path: &Path) -> Result<RawRecording, RawError> {
    let bytes = std::fs::read(path).map_err(|error| RawError::Io {
        path: path.to_owned(),
        error,
    })?;
    read_raw_bytes_with(&bytes, false)
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

    /// A line as [`line_code`](super::line_code) stored it.
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
    read_raw_bytes_with(bytes, true)
}

fn read_raw_bytes_with(bytes: &[u8], timeline: bool) -> Result<RawRecording, RawError> {
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
    r.counts.keep_timeline(timeline);
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
