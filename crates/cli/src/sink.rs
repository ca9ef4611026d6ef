//! Where `strobe record` puts the samples it drains: the raw file as they come, or the
//! format's streamed writer ([`strobe_output::recorder`]), which writes the output at the end.

use std::fs::File;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Context};
use strobe_aggregate::Metadata;
use strobe_output::{write_atomically, RawStats, RawWriter, Recorder};

use crate::record::RAW_FLUSH_EVERY;

/// Where `record` puts the drained samples: the raw file, written as they come (flushed at
/// least every [`RAW_FLUSH_EVERY`]), or the format's streamed writer, which writes the output
/// at the end.
pub(crate) enum Sink {
    Raw {
        w: RawWriter<File>,
        last_flush: Instant,
    },
    Streamed(Box<dyn Recorder>),
}

impl Sink {
    /// The raw writer of `raw_file` (its header written now, with `meta`), else `streamed`.
    pub(crate) fn new(
        raw_file: Option<File>,
        streamed: Option<Box<dyn Recorder>>,
        meta: &Metadata,
    ) -> anyhow::Result<Sink> {
        match (raw_file, streamed) {
            (Some(file), _) => Ok(Sink::Raw {
                w: RawWriter::new(file, meta)?,
                last_flush: Instant::now(),
            }),
            (None, Some(f)) => Ok(Sink::Streamed(f)),
            (None, None) => Err(anyhow!("no writer for this format")),
        }
    }

    /// Takes the samples of one drain.
    pub(crate) fn take(&mut self, d: &strobe_aggregate::Drained<'_>) -> std::io::Result<()> {
        match self {
            Sink::Raw { w, .. } => w.append(d.tables, d.samples),
            Sink::Streamed(f) => d.samples.iter().try_for_each(|s| f.add(d.tables, s)),
        }
    }

    /// When the raw file was last flushed (nothing to flush for a streamed writer).
    pub(crate) fn last_flush(&self) -> Option<Instant> {
        match self {
            Sink::Raw { last_flush, .. } => Some(*last_flush),
            Sink::Streamed(_) => None,
        }
    }

    /// Flushes the raw file, with the statistics `stats` gives, if [`RAW_FLUSH_EVERY`] passed.
    pub(crate) fn flush_if_due(&mut self, stats: impl FnOnce() -> RawStats) -> std::io::Result<()> {
        match self {
            Sink::Raw { w, last_flush } if last_flush.elapsed() >= RAW_FLUSH_EVERY => {
                *last_flush = Instant::now();
                w.record_stats(&stats());
                w.flush()
            }
            _ => Ok(()),
        }
    }

    /// Ends the output unless writing it already failed (`pending`): the raw file gets its
    /// last statistics (`stats`) and chunk; a streamed writer writes the output atomically with
    /// `meta` (its dropped count raised to the aggregator's `agg_dropped`), says what it
    /// spilled, and is dropped, and its spill files with it, whatever happened.
    pub(crate) fn finish(
        self,
        pending: Option<anyhow::Error>,
        meta: &mut Metadata,
        stats: RawStats,
        agg_dropped: u64,
        output: &Path,
    ) -> anyhow::Result<()> {
        let writing = || format!("writing {}", output.display());
        match self {
            Sink::Raw { mut w, .. } => match pending {
                Some(e) => Err(e),
                None => {
                    w.record_stats(&stats);
                    w.finish().map(drop).with_context(writing)
                }
            },
            Sink::Streamed(mut f) => {
                let result = match pending {
                    Some(e) => Err(e),
                    None => {
                        meta.dropped = meta.dropped.max(agg_dropped);
                        write_atomically(output, |out| f.write(meta, out)).with_context(writing)
                    }
                };
                if let Some(note) = f.spill_note() {
                    say!("strobe: {note}");
                }
                result
            }
        }
    }
}
