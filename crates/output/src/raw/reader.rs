//! Reading a raw recording back into a [`Profile`] ([`read_raw`], [`read_raw_bytes`]): every
//! definition is interned by content, so a stack the recorder defined again reads as one.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use strobe_aggregate::{
    CapacityError, Counts, FrameId, Interner, Profile, ProfileOptions, StackId, StrId, Thread,
    ThreadId,
};

use super::records::{RawError, Record, Records};

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

/// Opens a raw recording for reading, buffered.
pub(super) fn open(path: &Path) -> Result<Records<BufReader<File>>, RawError> {
    let file = File::open(path).map_err(|error| RawError::Io {
        path: path.to_owned(),
        error,
    })?;
    Records::new(BufReader::with_capacity(1 << 16, file), path.to_owned())
}

/// Reads a raw recording from a file. See [`read_raw_bytes`].
pub fn read_raw(path: &Path) -> Result<RawRecording, RawError> {
    read(open(path)?, true)
}

/// [`read_raw`] without the timeline (the profile's `timeline` is empty): for formats that
/// only need the counts per stack, 32 bytes per sample less.
pub fn read_raw_counts(path: &Path) -> Result<RawRecording, RawError> {
    read(open(path)?, false)
}

/// Reads a raw recording from memory. Stops cleanly at a torn or damaged tail (reported in
/// [`RawRecording::ignored_bytes`]); fails only when the header is missing or wrong, or when a
/// chunk with a valid checksum does not decode.
pub fn read_raw_bytes(bytes: &[u8]) -> Result<RawRecording, RawError> {
    read(Records::new(bytes, PathBuf::new())?, true)
}

/// The file's ids of each kind, translated to the interner's.
#[derive(Default)]
struct Reader {
    interner: Interner,
    counts: Counts,
    strs: Vec<StrId>,
    frames: Vec<FrameId>,
    threads: Vec<ThreadId>,
    /// The stacks not forgotten: file id `first_stack + i` is `stacks[i]`.
    stacks: Vec<StackId>,
    first_stack: usize,
    stack_buf: Vec<FrameId>,
}

/// The interner's id for a file id (`file` itself if unknown, which cannot be: the records
/// layer checked that the file defined it).
fn map<T: Copy>(ids: &[T], file: T, index: usize) -> T {
    ids.get(index).copied().unwrap_or(file)
}

impl Reader {
    fn str(&self, id: StrId) -> StrId {
        map(&self.strs, id, id.index())
    }

    fn thread(&self, id: ThreadId) -> ThreadId {
        map(&self.threads, id, id.index())
    }

    fn stack(&self, id: StackId) -> StackId {
        map(
            &self.stacks,
            id,
            id.index().saturating_sub(self.first_stack),
        )
    }

    fn apply(&mut self, record: Record<'_>) -> Result<(), CapacityError> {
        match record {
            Record::Str(s) => {
                let id = self.interner.intern_str(&s)?;
                self.strs.push(id);
            }
            Record::Frame(mut f) => {
                f.function = self.str(f.function);
                f.filename = self.str(f.filename);
                f.module = f.module.map(|m| self.str(m));
                let id = self.interner.intern_frame_ids(f)?;
                self.frames.push(id);
            }
            Record::Thread(t) => {
                let id = self.interner.intern_thread_info(Thread {
                    name: t.name.map(|n| self.str(n)),
                    ..t
                })?;
                self.threads.push(id);
            }
            Record::Stack(frames) => {
                self.stack_buf.clear();
                self.stack_buf
                    .extend(frames.iter().map(|&f| map(&self.frames, f, f.index())));
                let id = self.interner.intern_stack(&self.stack_buf)?;
                self.stacks.push(id);
            }
            Record::Forget(below) => {
                let k = below.index().saturating_sub(self.first_stack);
                self.stacks.drain(..k.min(self.stacks.len()));
                self.first_stack += k;
            }
            Record::Sample(mut s) => {
                s.stack = self.stack(s.stack);
                s.thread = self.thread(s.thread);
                self.counts.add(&s);
            }
            Record::Aggregate(mut key, count) => {
                key.stack = self.stack(key.stack);
                key.thread = self.thread(key.thread);
                self.counts.add_count(key, count);
            }
        }
        Ok(())
    }
}

fn read<R: Read>(mut records: Records<R>, timeline: bool) -> Result<RawRecording, RawError> {
    let mut r = Reader::default();
    r.counts.keep_timeline(timeline);
    while let Some(record) = records.next()? {
        r.apply(record)?;
    }
    let profile = Profile::from_counts(
        records.metadata(),
        r.interner.tables(),
        &r.counts,
        ProfileOptions::EVERYTHING,
    )?;
    Ok(RawRecording {
        profile,
        chunks: records.chunks(),
        ignored_bytes: records.ignored_bytes(),
        stack_definitions: records.stack_definitions(),
    })
}
