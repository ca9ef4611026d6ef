//! pprof from a stream of samples in memory bounded by distinct frames.
//!
//! pprof sums samples with the same locations and labels, and a protobuf's repeated fields may
//! come in any order and be split anywhere, so samples need not be whole per stack: drained
//! samples are counted in a map by (thread, locations) that, past the spill budget, is encoded
//! as `sample` fields into a spool file and emptied. Locations, functions, mappings and strings
//! (bounded by distinct frames and threads) are built as frames are met ([`Builder`]) and
//! written at the end, after the spooled samples: the encoded profile is the spool's bytes
//! followed by the message of everything else, which protobuf reads as one message.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::Path;

use strobe_aggregate::{
    thread_label_in, Count, Metadata, ProfileOptions, Sample, Tables, ThreadId,
};

use super::{gzip, proto, values, Builder};
use crate::spill::{SpillDir, SpoolFile};
use crate::stream::{FrameMap, Recorder};

/// What one pending sample costs besides its locations (map node, key, count).
const ENTRY_OVERHEAD: usize = 96;
/// The `sample` field of `Profile`.
const SAMPLE_TAG: u32 = 2;

/// A thread's labels and, under `--threads`, its root location.
struct ThreadOut {
    labels: Vec<proto::Label>,
    root: Option<u64>,
}

/// Records a pprof profile sample by sample (see the module documentation); the output means
/// what [`crate::Pprof`] writes of the profile built from the same samples with the same
/// options.
pub(crate) struct PprofRecorder {
    options: ProfileOptions,
    pid: Option<u32>,
    b: Builder,
    frames: FrameMap,
    /// Location id by frame number.
    locations: Vec<u64>,
    threads: HashMap<ThreadId, ThreadOut>,
    /// Counts by (thread, location ids leaf first) not yet spooled.
    pending: BTreeMap<(ThreadId, Box<[u64]>), Count>,
    pending_bytes: usize,
    budget: usize,
    dir: SpillDir,
    spool: Option<SpoolFile>,
    /// How many times the pending samples were spooled.
    spills: usize,
    numbers: Vec<u32>,
    buf: Vec<u8>,
}

impl PprofRecorder {
    /// A recorder with `options` for samples of process `pid`, spilling to a directory it
    /// creates in `dir` past `budget` bytes of pending samples.
    pub(crate) fn new(
        options: ProfileOptions,
        pid: Option<u32>,
        dir: &Path,
        budget: usize,
    ) -> PprofRecorder {
        PprofRecorder {
            options,
            pid,
            b: Builder::new(),
            frames: FrameMap::new(options),
            locations: Vec::new(),
            threads: HashMap::new(),
            pending: BTreeMap::new(),
            pending_bytes: 0,
            budget,
            dir: SpillDir::new(dir),
            spool: None,
            spills: 0,
            numbers: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// Encodes the pending samples as `sample` fields into the spool and empties the map.
    fn spill(&mut self) -> io::Result<()> {
        let spool = match &mut self.spool {
            Some(s) => s,
            None => self
                .spool
                .insert(SpoolFile::create(&mut self.dir, "pprof")?),
        };
        for ((thread, locations), c) in std::mem::take(&mut self.pending) {
            self.buf.clear();
            let s = sample(&self.threads, thread, locations.into_vec(), c);
            prost::encoding::message::encode(SAMPLE_TAG, &s, &mut self.buf);
            spool.write(&self.buf)?;
        }
        self.pending_bytes = 0;
        self.spills += 1;
        Ok(())
    }
}

fn sample(
    threads: &HashMap<ThreadId, ThreadOut>,
    thread: ThreadId,
    location_id: Vec<u64>,
    c: Count,
) -> proto::Sample {
    proto::Sample {
        location_id,
        value: values(c),
        label: threads
            .get(&thread)
            .map(|t| t.labels.clone())
            .unwrap_or_default(),
    }
}

impl Recorder for PprofRecorder {
    fn add(&mut self, tables: &Tables, s: &Sample) -> io::Result<()> {
        if !self.options.filter.accepts(s.flags) {
            return Ok(());
        }
        let (b, locations) = (&mut self.b, &mut self.locations);
        self.frames
            .stack(tables, s.stack, &mut self.numbers, |n, f| {
                debug_assert_eq!(n as usize, locations.len());
                locations.push(b.frame(tables, f));
                Ok::<(), io::Error>(())
            })?;
        if self.numbers.is_empty() {
            // Every frame hidden: not in a profile.
            return Ok(());
        }
        if !self.threads.contains_key(&s.thread) {
            let label = thread_label_in(tables, s.thread);
            let out = ThreadOut {
                labels: self.b.labels(tables, s.thread, &label, self.pid),
                root: self
                    .options
                    .per_thread
                    .then(|| self.b.location(&label, "", None, None, 0)),
            };
            self.threads.insert(s.thread, out);
        }
        let root = self.threads.get(&s.thread).and_then(|t| t.root);
        let locations = &self.locations;
        let key: Box<[u64]> = self
            .numbers
            .iter()
            .rev()
            .map(|n| locations[*n as usize])
            .chain(root)
            .collect();
        let len = key.len();
        let count = Count::one(s.weight_ns);
        match self.pending.entry((s.thread, key)) {
            Entry::Occupied(mut e) => e.get_mut().add(count),
            Entry::Vacant(e) => {
                e.insert(count);
                self.pending_bytes += 8 * len + ENTRY_OVERHEAD;
                if self.pending_bytes > self.budget {
                    self.spill()?;
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, meta: &Metadata, out: &mut dyn Write) -> io::Result<()> {
        let samples: Vec<proto::Sample> = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|((thread, locations), c)| sample(&self.threads, thread, locations.into_vec(), c))
            .collect();
        let b = std::mem::take(&mut self.b);
        let body = prost::Message::encode_to_vec(&b.finish(meta, samples));
        gzip(self.spool.as_mut(), &body, out)
    }

    fn spill_note(&self) -> Option<String> {
        let bytes = self.spool.as_ref().map_or(0, SpoolFile::len);
        (self.spills > 0).then(|| {
            format!(
                "the distinct stacks outgrew the memory budget: their counts were \
                 spilled to disk {} times ({bytes} bytes) and copied into the output",
                self.spills
            )
        })
    }
}
