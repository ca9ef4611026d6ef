//! Chrome trace events from a stream of samples in memory bounded by distinct frames and
//! threads: each thread's open frames ([`Activations`]) are kept, and an event is appended to
//! a spool (`crate::spill::Spools`: in memory up to the spill budget, then a file) as its
//! frame closes; the header and thread names are written at the end, before the spool. Event
//! order is free in the format (viewers sort), so events come in the order they closed, not
//! sorted by start as [`super::Chrome`] has them. A thread's samples must come in time order,
//! as the sampler takes them.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use strobe_aggregate::{thread_label_in, Metadata, ProfileOptions, Sample, Tables, ThreadId};

use super::{frame_fields, push_event, push_header, push_thread, Activations, Event, END};
use crate::spill::Spools;
use crate::stream::{FrameMap, Recorder};

/// The spool of events.
const EVENTS: usize = 0;

struct Thread {
    tid: u64,
    label: String,
    /// Where it goes among the others: as a `Profile` orders threads.
    order: (u64, i64, Option<String>),
    open: Activations<u32>,
}

/// Records a Chrome trace sample by sample (see the module documentation); the output means
/// what [`super::Chrome`] writes of the profile built from the same samples.
pub(crate) struct ChromeRecorder {
    options: ProfileOptions,
    pid: u32,
    frames: FrameMap,
    /// Each frame's event fields, by number.
    fields: Vec<(&'static str, String)>,
    threads: Vec<Thread>,
    thread_of: HashMap<ThreadId, usize>,
    spools: Spools,
    numbers: Vec<u32>,
    text: String,
}

/// Appends the event `e` of thread `tid` to `text`.
fn event_text(
    text: &mut String,
    pid: u32,
    tid: u64,
    fields: &[(&'static str, String)],
    e: &Event<u32>,
) {
    if let Some(f) = fields.get(e.frame as usize) {
        push_event(text, pid, tid, e.start_ns, e.end_ns, f);
    }
}

impl ChromeRecorder {
    /// A recorder with `options` for samples of process `pid`, spilling to a directory it
    /// creates in `dir` past `budget` bytes of events.
    pub(crate) fn new(
        options: ProfileOptions,
        pid: Option<u32>,
        dir: &Path,
        budget: usize,
    ) -> ChromeRecorder {
        ChromeRecorder {
            options,
            pid: pid.unwrap_or(0),
            frames: FrameMap::new(options),
            fields: Vec::new(),
            threads: Vec::new(),
            thread_of: HashMap::new(),
            spools: Spools::new(dir, budget),
            numbers: Vec::new(),
            text: String::new(),
        }
    }

    /// Spools the events in `text`, if it has grown.
    fn spool_text(&mut self, at_least: usize) -> io::Result<()> {
        if self.text.len() >= at_least {
            self.spools.append(EVENTS, self.text.as_bytes())?;
            self.text.clear();
        }
        Ok(())
    }
}

impl Recorder for ChromeRecorder {
    fn add(&mut self, tables: &Tables, s: &Sample) -> io::Result<()> {
        if !self.options.filter.accepts(s.flags) {
            return Ok(());
        }
        let fields = &mut self.fields;
        self.frames
            .stack(tables, s.stack, &mut self.numbers, |_, f| {
                fields.push(frame_fields(tables, Some(f)));
                Ok::<(), io::Error>(())
            })?;
        if self.numbers.is_empty() {
            return Ok(());
        }
        let i = match self.thread_of.get(&s.thread) {
            Some(&i) => i,
            None => {
                let info = tables.thread(s.thread);
                self.threads.push(Thread {
                    tid: info.map_or(u64::from(s.thread.0), |th| th.os_tid),
                    label: thread_label_in(tables, s.thread),
                    order: info.map_or((0, 0, None), |th| {
                        (
                            th.os_tid,
                            th.interpreter_id,
                            th.name.map(|n| tables.str(n).to_owned()),
                        )
                    }),
                    open: Activations::new(),
                });
                self.thread_of.insert(s.thread, self.threads.len() - 1);
                self.threads.len() - 1
            }
        };
        let th = &mut self.threads[i];
        let (text, fields, pid, tid) = (&mut self.text, &self.fields, self.pid, th.tid);
        th.open
            .sample(s.timestamp_ns, s.weight_ns, &self.numbers, &mut |e| {
                event_text(text, pid, tid, fields, &e);
            });
        self.spool_text(16 << 10)
    }

    fn write(&mut self, meta: &Metadata, out: &mut dyn Write) -> io::Result<()> {
        for th in &mut self.threads {
            let (text, fields, pid, tid) = (&mut self.text, &self.fields, self.pid, th.tid);
            th.open
                .finish(&mut |e| event_text(text, pid, tid, fields, &e));
        }
        self.spool_text(0)?;
        let mut w = BufWriter::with_capacity(64 << 10, out);
        let mut s = String::new();
        // A profile with no samples has no timeline: Chrome lays out its (no) stacks instead.
        push_header(&mut s, meta, self.threads.is_empty());
        self.threads.sort_by(|a, b| a.order.cmp(&b.order));
        for th in &self.threads {
            push_thread(&mut s, self.pid, th.tid, &th.label);
        }
        w.write_all(s.as_bytes())?;
        self.spools.copy_to(EVENTS, &mut w)?;
        w.write_all(END.as_bytes())?;
        w.flush()
    }

    fn spill_note(&self) -> Option<String> {
        self.spools.spill_note()
    }
}
