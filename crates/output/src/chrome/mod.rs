//! Chrome Trace Event JSON (loads in Perfetto and `chrome://tracing`): a complete (`"X"`) event
//! per frame activation per thread, reconstructed from consecutive samples.
//!
//! A sample taken at `t` with weight `w` stands for `[t - w, t]`. Walking a thread's samples in
//! time order, frames shared with the previous stack (same prefix) stay open; the rest close at
//! the start of the new sample and the new ones open there. When a thread has a gap (it was not
//! sampled, or its samples were filtered out, e.g. idle ones) all its frames close at the end of
//! the last sample before the gap. Without a timeline the aggregated stacks are laid end to end
//! per thread instead, and `otherData.synthetic_timeline` says so. [`ChromeRecorder`] writes
//! the same from a stream of samples (see `stream.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use strobe_aggregate::{Frame, FrameId, Metadata, Profile, Sample, Tables, ThreadId};

use crate::{json, label_of, Format};

mod stream;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub(crate) use stream::ChromeRecorder;

/// The `chrome` format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chrome;

/// A frame activation: frame `F` open at `depth` from `start_ns` to `end_ns`.
struct Event<F> {
    frame: F,
    depth: usize,
    start_ns: u64,
    end_ns: u64,
}

/// One thread's open frames as its samples come in time order; events are handed out as
/// frames close.
struct Activations<F> {
    open: Vec<(F, u64)>,
    last_end: u64,
}

impl<F: Copy + PartialEq> Activations<F> {
    fn new() -> Activations<F> {
        Activations {
            open: Vec::new(),
            last_end: 0,
        }
    }

    fn close_from(&mut self, keep: usize, at: u64, emit: &mut impl FnMut(Event<F>)) {
        while self.open.len() > keep {
            if let Some((frame, start_ns)) = self.open.pop() {
                emit(Event {
                    frame,
                    depth: self.open.len(),
                    start_ns,
                    end_ns: at.max(start_ns),
                });
            }
        }
    }

    /// The thread's next sample: taken at `ts`, weighing `weight`, `frames` outermost first.
    fn sample(&mut self, ts: u64, weight: u64, frames: &[F], emit: &mut impl FnMut(Event<F>)) {
        let start = ts.saturating_sub(weight).max(self.last_end);
        if start > self.last_end && !self.open.is_empty() {
            self.close_from(0, self.last_end, emit);
        }
        let common = self
            .open
            .iter()
            .zip(frames)
            .take_while(|((a, _), b)| a == *b)
            .count();
        self.close_from(common, start, emit);
        for f in frames.get(common..).unwrap_or(&[]) {
            self.open.push((*f, start));
        }
        self.last_end = ts.max(start);
    }

    /// After the thread's last sample.
    fn finish(&mut self, emit: &mut impl FnMut(Event<F>)) {
        self.close_from(0, self.last_end, emit);
    }
}

/// One sample of a thread: (timestamp ns, weight ns, stack outermost first).
type TimedStack<'a> = (u64, u64, &'a [FrameId]);

/// Frame activations of one thread from its time-ordered samples.
fn thread_events(samples: &[TimedStack<'_>]) -> Vec<Event<FrameId>> {
    let mut events = Vec::new();
    let mut emit = |e| events.push(e);
    let mut a = Activations::new();
    for &(ts, weight, frames) in samples {
        a.sample(ts, weight, frames, &mut emit);
    }
    a.finish(&mut emit);
    events.sort_by_key(|e| (e.start_ns, e.depth));
    events
}

/// Everything before the thread names and events.
fn push_header(s: &mut String, meta: &Metadata, synthetic: bool) {
    let pid = meta.pid.unwrap_or(0);
    s.push_str("{\"displayTimeUnit\":\"ms\",\n\"otherData\":{\"exporter\":");
    json::push_str(s, &format!("strobe {}", meta.strobe_version));
    s.push_str(",\"target\":");
    json::push_str(s, &meta.target);
    if let Some(v) = &meta.python_version {
        s.push_str(",\"python_version\":");
        json::push_str(s, v);
    }
    let _ = write!(
        s,
        ",\"rate_requested_hz\":{},\"errors\":{},\"dropped\":{},\"synthetic_timeline\":{synthetic}}},\n\"traceEvents\":[",
        json::number(meta.rate_requested_hz),
        meta.errors,
        meta.dropped
    );
    s.push_str("\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":");
    let _ = write!(s, "{pid},\"tid\":0,\"args\":{{\"name\":");
    json::push_str(s, &meta.target);
    s.push_str("}}");
}

/// After the events.
const END: &str = "\n]}\n";

/// A thread's name event.
fn push_thread(s: &mut String, pid: u32, tid: u64, label: &str) {
    let _ = write!(
        s,
        ",\n{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"name\":"
    );
    json::push_str(s, label);
    s.push_str("}}");
}

/// What an event takes from its frame (`f` of tables `t`, if known): its category, and its
/// name and arguments.
fn frame_fields(t: &Tables, f: Option<&Frame>) -> (&'static str, String) {
    let Some(f) = f else {
        return ("python", String::from("\"name\":\"<unknown frame>\""));
    };
    let mut s = String::from("\"name\":");
    json::push_str(&mut s, &label_of(t, f, f.line));
    s.push_str(",\"args\":{\"file\":");
    json::push_str(&mut s, t.str(f.filename));
    if let Some(line) = f.line {
        let _ = write!(s, ",\"line\":{line}");
    }
    if let Some(m) = f.module {
        s.push_str(",\"module\":");
        json::push_str(&mut s, t.str(m));
    }
    s.push('}');
    (f.kind.name(), s)
}

/// A complete event of thread `tid` from `start_ns` to `end_ns`, with its frame's fields.
fn push_event(
    s: &mut String,
    pid: u32,
    tid: u64,
    start_ns: u64,
    end_ns: u64,
    fields: &(&str, String),
) {
    let _ = write!(
        s,
        ",\n{{\"ph\":\"X\",\"cat\":\"{}\",\"pid\":{pid},\"tid\":{tid},\"ts\":{},\"dur\":{},{}}}",
        fields.0,
        json::micros(start_ns),
        json::micros(end_ns - start_ns),
        fields.1,
    );
}

impl Format for Chrome {
    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let t = &profile.tables;
        let synthetic = profile.timeline.is_empty();
        // Per thread, time-ordered (timestamp, weight, stack).
        let mut per_thread: BTreeMap<ThreadId, Vec<TimedStack<'_>>> = BTreeMap::new();
        if synthetic {
            let mut clock: BTreeMap<ThreadId, u64> = BTreeMap::new();
            for sc in &profile.stacks {
                let now = clock.entry(sc.thread).or_default();
                *now = now.saturating_add(sc.count.weight_ns);
                per_thread.entry(sc.thread).or_default().push((
                    *now,
                    sc.count.weight_ns,
                    t.stack(sc.stack),
                ));
            }
        } else {
            let mut samples: Vec<&Sample> = profile.timeline.iter().collect();
            samples.sort_by_key(|s| (s.thread, s.timestamp_ns));
            for s in samples {
                per_thread.entry(s.thread).or_default().push((
                    s.timestamp_ns,
                    s.weight_ns,
                    t.stack(s.stack),
                ));
            }
        }

        let pid = profile.meta.pid.unwrap_or(0);
        let mut fields: Vec<Option<(&str, String)>> = vec![None; t.num_frames()];
        let mut s = String::with_capacity(1 << 16);
        push_header(&mut s, &profile.meta, synthetic);
        for (thread, samples) in &per_thread {
            let tid = t.thread(*thread).map_or(u64::from(thread.0), |i| i.os_tid);
            push_thread(&mut s, pid, tid, &profile.thread_label(*thread));
            for e in thread_events(samples) {
                let unknown;
                let f = match fields.get_mut(e.frame.index()) {
                    Some(Some(f)) => &*f,
                    Some(slot) => &*slot.insert(frame_fields(t, t.frame(e.frame))),
                    None => {
                        unknown = frame_fields(t, None);
                        &unknown
                    }
                };
                push_event(&mut s, pid, tid, e.start_ns, e.end_ns, f);
                if s.len() > 1 << 20 {
                    out.write_all(s.as_bytes())?;
                    s.clear();
                }
            }
        }
        s.push_str(END);
        out.write_all(s.as_bytes())
    }
}
