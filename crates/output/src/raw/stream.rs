//! [`RawStream`]: a raw recording read in file order, one sample or count at a time, with the
//! tables that define it, in memory bounded by what the recorder held.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use strobe_aggregate::{Count, CountKey, Def, Metadata, Sample, Tables};

use super::reader::open;
use super::records::{RawError, Record, Records};

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
/// memory does not grow with the recording's length; a file of an older version, which does
/// not say what it forgot, holds every stack it defines. Chunks are read and checked one at a
/// time; a torn or damaged tail ends the stream cleanly ([`RawStream::ignored_bytes`]), a
/// chunk that passed its checksum but does not decode is an error.
pub struct RawStream<R> {
    records: Records<R>,
    tables: Tables,
}

impl RawStream<BufReader<File>> {
    /// Opens the recording at `path` and reads its header.
    pub fn open(path: &Path) -> Result<RawStream<BufReader<File>>, RawError> {
        Ok(RawStream::new(open(path)?))
    }
}

impl<'a> RawStream<&'a [u8]> {
    /// A recording in memory; reads its header.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<RawStream<&'a [u8]>, RawError> {
        Ok(RawStream::new(Records::new(bytes, PathBuf::new())?))
    }
}

impl<R: Read> RawStream<R> {
    fn new(records: Records<R>) -> RawStream<R> {
        RawStream {
            records,
            tables: Tables::default(),
        }
    }

    /// The next sample or count with the tables that define it, or `None` after the last
    /// complete chunk.
    pub fn next_event(&mut self) -> Result<Option<(&Tables, RawEvent)>, RawError> {
        loop {
            let def = match self.records.next()? {
                None => return Ok(None),
                Some(Record::Sample(s)) => return Ok(Some((&self.tables, RawEvent::Sample(s)))),
                Some(Record::Aggregate(k, c)) => {
                    return Ok(Some((&self.tables, RawEvent::Aggregate(k, c))))
                }
                Some(Record::Str(s)) => Def::Str(s.into()),
                Some(Record::Frame(f)) => Def::Frame(f),
                Some(Record::Thread(t)) => Def::Thread(t),
                Some(Record::Stack(frames)) => Def::Stack(frames.into()),
                Some(Record::Forget(below)) => Def::ForgetStacks(below),
            };
            // The file's ids are the tables' ids: every definition is applied, in order.
            self.tables.apply(def)?;
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
        self.records.chunks()
    }

    /// Bytes at the end that were ignored (a chunk torn by a crash, or damaged): known once
    /// [`RawStream::next_event`] returned `None`.
    pub fn ignored_bytes(&self) -> usize {
        self.records.ignored_bytes()
    }

    /// Stack definitions read so far (a stack the recorder forgot and met again is defined
    /// again).
    pub fn stack_definitions(&self) -> usize {
        self.records.stack_definitions()
    }
}
