//! Chrome Trace Event JSON (loads in Perfetto and `chrome://tracing`): a complete (`"X"`) event
//! per frame activation per thread, reconstructed from consecutive samples.
//!
//! A sample taken at `t` with weight `w` stands for `[t - w, t]`. Walking a thread's samples in
//! time order, frames shared with the previous stack (same prefix) stay open; the rest close at
//! the start of the new sample and the new ones open there. When a thread has a gap (it was not
//! sampled, or its samples were filtered out, e.g. idle ones) all its frames close at the end of
//! the last sample before the gap. Without a timeline the aggregated stacks are laid end to end
//! per thread instead, and `otherData.synthetic_timeline` says so.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use strobe_aggregate::{FrameId, Profile, Sample, ThreadId};

use crate::{frame_label, json, Format};

/// The `chrome` format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chrome;

struct Event {
    frame: FrameId,
    depth: usize,
    start_ns: u64,
    end_ns: u64,
}

/// One sample of a thread: (timestamp ns, weight ns, stack outermost first).
type TimedStack<'a> = (u64, u64, &'a [FrameId]);

/// Frame activations of one thread from its time-ordered samples.
fn thread_events(samples: &[TimedStack<'_>]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut open: Vec<(FrameId, u64)> = Vec::new();
    let mut last_end = 0u64;
    let close_from =
        |open: &mut Vec<(FrameId, u64)>, keep: usize, at: u64, events: &mut Vec<Event>| {
            while open.len() > keep {
                if let Some((frame, start_ns)) = open.pop() {
                    events.push(Event {
                        frame,
                        depth: open.len(),
                        start_ns,
                        end_ns: at.max(start_ns),
                    });
                }
            }
        };
    for &(ts, weight, frames) in samples {
        let start = ts.saturating_sub(weight).max(last_end);
        if start > last_end && !open.is_empty() {
            close_from(&mut open, 0, last_end, &mut events);
        }
        let common = open
            .iter()
            .zip(frames)
            .take_while(|((a, _), b)| a == *b)
            .count();
        close_from(&mut open, common, start, &mut events);
        for f in frames.get(common..).unwrap_or(&[]) {
            open.push((*f, start));
        }
        last_end = ts.max(start);
    }
    close_from(&mut open, 0, last_end, &mut events);
    events.sort_by_key(|e| (e.start_ns, e.depth));
    events
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
        let mut labels: Vec<Option<String>> = vec![None; t.num_frames()];
        let mut s = String::with_capacity(1 << 16);
        s.push_str("{\"displayTimeUnit\":\"ms\",\n\"otherData\":{\"exporter\":");
        json::push_str(&mut s, &format!("strobe {}", profile.meta.strobe_version));
        s.push_str(",\"target\":");
        json::push_str(&mut s, &profile.meta.target);
        if let Some(v) = &profile.meta.python_version {
            s.push_str(",\"python_version\":");
            json::push_str(&mut s, v);
        }
        let _ = write!(
            s,
            ",\"rate_requested_hz\":{},\"errors\":{},\"dropped\":{},\"synthetic_timeline\":{synthetic}}},\n\"traceEvents\":[",
            json::number(profile.meta.rate_requested_hz),
            profile.meta.errors,
            profile.meta.dropped
        );
        s.push_str("\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":");
        let _ = write!(s, "{pid},\"tid\":0,\"args\":{{\"name\":");
        json::push_str(&mut s, &profile.meta.target);
        s.push_str("}}");
        for (thread, samples) in &per_thread {
            let tid = t.thread(*thread).map_or(u64::from(thread.0), |i| i.os_tid);
            let _ = write!(s, ",\n{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"name\":");
            json::push_str(&mut s, &profile.thread_label(*thread));
            s.push_str("}}");
            for e in thread_events(samples) {
                let label = match labels.get_mut(e.frame.index()) {
                    Some(Some(l)) => l.as_str(),
                    Some(slot) => slot
                        .insert(json::string(&frame_label(profile, e.frame)))
                        .as_str(),
                    None => "\"<unknown frame>\"",
                };
                let frame = t.frame(e.frame);
                let _ = write!(
                    s,
                    ",\n{{\"ph\":\"X\",\"cat\":\"{}\",\"pid\":{pid},\"tid\":{tid},\"ts\":{},\"dur\":{},\"name\":{label}",
                    frame.map_or("python", |f| f.kind.name()),
                    json::micros(e.start_ns),
                    json::micros(e.end_ns - e.start_ns),
                );
                if let Some(f) = frame {
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
                }
                s.push('}');
                if s.len() > 1 << 20 {
                    out.write_all(s.as_bytes())?;
                    s.clear();
                }
            }
        }
        s.push_str("\n]}\n");
        out.write_all(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_follow_stack_changes_and_gaps() {
        let (a, b, c) = (FrameId(0), FrameId(1), FrameId(2));
        let ab: &[FrameId] = &[a, b];
        let ac: &[FrameId] = &[a, c];
        // 0-10 a>b, 10-20 a>c, gap 20-40, 40-50 a>c.
        let ev = thread_events(&[(10, 10, ab), (20, 10, ac), (50, 10, ac)]);
        let got: Vec<(u32, usize, u64, u64)> = ev
            .iter()
            .map(|e| (e.frame.0, e.depth, e.start_ns, e.end_ns))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 0, 0, 20),
                (1, 1, 0, 10),
                (2, 1, 10, 20),
                (0, 0, 40, 50),
                (2, 1, 40, 50)
            ]
        );
    }
}
