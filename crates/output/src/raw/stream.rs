//! [`RawStream`]: a raw recording read in file order, one sample or count at a time, with the
//! tables that define it, in memory bounded by what the recorder held.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use strobe_aggregate::{Count, CountKey, Def, Metadata, Sample, Tables};

use super::plan::ForgetPlan;
use super::reader::open;
use super::records::{RawError, Record, Records};
use super::FORGET_VERSION;

/// What a raw recording counts, one record at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEvent {
    /// One sample.
    Sample(Sample),
    /// A pre-counted stack (a recording converted from a profile without a timeline).
    Aggregate(CountKey, Count),
}

impl RawEvent {
    /// The thread, stack and flags counted.
    pub fn key(&self) -> CountKey {
        match *self {
            RawEvent::Sample(s) => CountKey {
                thread: s.thread,
                stack: s.stack,
                flags: s.flags,
            },
            RawEvent::Aggregate(k, _) => k,
        }
    }

    /// What is counted: one sample of its weight, or the pre-counted count.
    pub fn count(&self) -> Count {
        match *self {
            RawEvent::Sample(s) => Count::one(s.weight_ns),
            RawEvent::Aggregate(_, c) => c,
        }
    }
}

/// A raw recording read as a stream: [`RawStream::next_event`] yields each sample and count in
/// file order with the tables so far, whose ids are the file's. The tables hold every string,
/// frame and thread (bounded by the program's distinct frames) and only the stacks not
/// forgotten (the FORGET records of format version 5: see the module documentation), so
/// memory does not grow with the recording's length. A file of an older version does not say
/// what it forgot: one that can be read twice (a regular file, or bytes) is read once first to
/// find out (`plan.rs`: 4 bytes a chunk), and the stream then stops at the end the first pass
/// found; one that cannot (a pipe) holds every stack it defines. Chunks are read and checked
/// one at a time; a torn or damaged tail ends the stream cleanly ([`RawStream::ignored_bytes`]),
/// a chunk that passed its checksum but does not decode is an error.
pub struct RawStream<R> {
    records: Records<R>,
    tables: Tables,
    /// For a file of version 4 or older read twice: when to forget which stacks.
    plan: Option<ForgetPlan>,
    /// Chunks entered so far, and whether the stream went past the plan's last one.
    entered: usize,
    past_plan: bool,
}

impl RawStream<BufReader<File>> {
    /// Opens the recording at `path` and reads its header (and, for a regular file of version
    /// 4 or older, the whole file once: see the type documentation).
    pub fn open(path: &Path) -> Result<RawStream<BufReader<File>>, RawError> {
        let records = open(path)?;
        let twice = std::fs::metadata(path).is_ok_and(|m| m.is_file());
        let plan = if records.version() < FORGET_VERSION && twice {
            Some(ForgetPlan::scan(open(path)?)?)
        } else {
            None
        };
        Ok(RawStream::new(records, plan))
    }
}

impl<'a> RawStream<&'a [u8]> {
    /// A recording in memory; reads its header (and, for version 4 or older, the whole
    /// recording once: see the type documentation).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<RawStream<&'a [u8]>, RawError> {
        let records = Records::new(bytes, PathBuf::new())?;
        let plan = if records.version() < FORGET_VERSION {
            Some(ForgetPlan::scan(Records::new(bytes, PathBuf::new())?)?)
        } else {
            None
        };
        Ok(RawStream::new(records, plan))
    }
}

/// What a record read by [`RawStream::next_event`] is, once it no longer borrows the reader.
enum Item {
    Event(RawEvent),
    Def(Def),
}

impl<R: Read> RawStream<R> {
    fn new(records: Records<R>, plan: Option<ForgetPlan>) -> RawStream<R> {
        RawStream {
            records,
            tables: Tables::default(),
            plan,
            entered: 0,
            past_plan: false,
        }
    }

    /// The next sample or count with the tables that define it, or `None` after the last
    /// complete chunk.
    pub fn next_event(&mut self) -> Result<Option<(&Tables, RawEvent)>, RawError> {
        loop {
            if self.past_plan {
                return Ok(None);
            }
            let read = match self.records.next()? {
                None => return Ok(None),
                Some(Record::Sample(s)) => Item::Event(RawEvent::Sample(s)),
                Some(Record::Aggregate(k, c)) => Item::Event(RawEvent::Aggregate(k, c)),
                Some(Record::Str(s)) => Item::Def(Def::Str(s.into())),
                Some(Record::Frame(f)) => Item::Def(Def::Frame(f)),
                Some(Record::Thread(t)) => Item::Def(Def::Thread(t)),
                Some(Record::Stack(frames)) => Item::Def(Def::Stack(frames.into())),
                Some(Record::Forget(below)) => Item::Def(Def::ForgetStacks(below)),
            };
            if let Some(plan) = &self.plan {
                let chunks = self.records.chunks();
                if chunks > self.entered {
                    self.entered = chunks;
                    if !plan.enter_chunk(chunks - 1, &mut self.tables) {
                        self.past_plan = true;
                        return Ok(None);
                    }
                }
            }
            match read {
                Item::Event(e) => return Ok(Some((&self.tables, e))),
                // The file's ids are the tables' ids: every definition is applied, in order.
                Item::Def(def) => self.tables.apply(def)?,
            }
        }
    }

    /// The tables so far.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The recording's metadata as read so far, complete after the last event: its duration is
    /// the last statistics record's, or else the span of the samples.
    pub fn metadata(&self) -> Metadata {
        self.records.metadata()
    }

    /// Complete chunks read so far.
    pub fn chunks(&self) -> usize {
        match &self.plan {
            Some(plan) if self.past_plan => plan.chunks(),
            _ => self.records.chunks(),
        }
    }

    /// Bytes at the end that were ignored (a chunk torn by a crash, or damaged): known once
    /// [`RawStream::next_event`] returned `None`.
    pub fn ignored_bytes(&self) -> usize {
        match &self.plan {
            Some(plan) if self.past_plan => plan.ignored_bytes(),
            _ => self.records.ignored_bytes(),
        }
    }

    /// Stack definitions read so far (a stack the recorder forgot and met again is defined
    /// again).
    pub fn stack_definitions(&self) -> usize {
        self.records.stack_definitions()
    }
}
