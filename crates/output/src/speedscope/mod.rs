//! speedscope's JSON file format (`https://www.speedscope.app/file-format-schema.json`), as
//! "sampled" profiles: one per thread under `--threads`, else one for all threads.
//!
//! Samples list frame indexes outermost first, weighted in nanoseconds. With a timeline the
//! samples are in time order (speedscope's "Time Order" view then means something); without one
//! they are the aggregated stacks. [`SpeedscopeRecorder`] writes the same from a stream of
//! samples (see `stream.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use strobe_aggregate::{Frame, FrameKind, Metadata, Profile, StackId, Tables, ThreadId};

use crate::json;
use crate::{push_source, Format};

mod stream;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub(crate) use stream::SpeedscopeRecorder;

/// The `speedscope` format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Speedscope;

/// Everything before the frames.
fn push_header(s: &mut String, meta: &Metadata) {
    s.push_str("{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\",\n");
    s.push_str("\"exporter\":");
    json::push_str(s, &format!("strobe {}", meta.strobe_version));
    s.push_str(",\n\"name\":");
    json::push_str(s, &meta.target);
    s.push_str(",\n\"activeProfileIndex\":0,\n\"shared\":{\"frames\":[");
}

/// Between the frames and the profiles.
const FRAMES_END: &str = "]},\n\"profiles\":[";
/// Between a profile's samples and its weights.
const WEIGHTS: &str = "],\n\"weights\":[";
/// After a profile's weights.
const PROFILE_END: &str = "]}";
/// After the profiles.
const END: &str = "]}\n";

/// Frame `f` of tables `t` as an entry of `shared.frames`.
fn push_frame(s: &mut String, t: &Tables, f: &Frame) {
    s.push_str("\n{\"name\":");
    match f.kind {
        FrameKind::Python => {
            json::push_str(s, t.str(f.function));
            s.push_str(",\"file\":");
            json::push_str(s, t.str(f.filename));
            // The line running; aggregated by function (no line), the function's first line,
            // where speedscope shows a function's location.
            if let Some(line) = f.line.or(f.first_line) {
                let _ = write!(s, ",\"line\":{line}");
            }
        }
        // The file is the shared object (what speedscope groups and colours by); a source
        // location from DWARF goes in the name.
        FrameKind::Native
        | FrameKind::Kernel
        | FrameKind::Interpreter
        | FrameKind::Exception
        | FrameKind::Task => {
            let mut name = t.str(f.function).to_string();
            push_source(&mut name, t.str(f.filename), f.line);
            json::push_str(s, &name);
            s.push_str(",\"file\":");
            json::push_str(s, f.module.map_or("", |m| t.str(m)));
        }
    }
    s.push('}');
}

/// The start of a profile named `name` whose weights sum to `end`, up to its samples.
fn push_profile_start(s: &mut String, name: &str, end: u64) {
    s.push_str("\n{\"type\":\"sampled\",\"name\":");
    json::push_str(s, name);
    let _ = write!(
        s,
        ",\"unit\":\"nanoseconds\",\"startValue\":0,\"endValue\":{end},\n\"samples\":["
    );
}

/// A sample's frame numbers as a JSON array.
fn push_sample(s: &mut String, frames: impl IntoIterator<Item = u32>) {
    s.push('[');
    for (j, f) in frames.into_iter().enumerate() {
        if j > 0 {
            s.push(',');
        }
        let _ = write!(s, "{f}");
    }
    s.push(']');
}

/// The profile name of a group: a thread's label, or all threads.
fn group_name(label: Option<String>) -> String {
    label.unwrap_or_else(|| String::from("all threads"))
}

impl Format for Speedscope {
    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let t = &profile.tables;
        let mut s = String::with_capacity(1 << 16);
        push_header(&mut s, &profile.meta);
        for (i, (_, f)) in t.frames().enumerate() {
            if i > 0 {
                s.push(',');
            }
            push_frame(&mut s, t, f);
        }
        s.push_str(FRAMES_END);

        // (thread or None for all) → samples as (stack, weight).
        let mut groups: BTreeMap<Option<ThreadId>, Vec<(StackId, u64)>> = BTreeMap::new();
        let group = |th: ThreadId| profile.options.per_thread.then_some(th);
        if profile.timeline.is_empty() {
            for sc in &profile.stacks {
                groups
                    .entry(group(sc.thread))
                    .or_default()
                    .push((sc.stack, sc.count.weight_ns));
            }
        } else {
            for smp in &profile.timeline {
                groups
                    .entry(group(smp.thread))
                    .or_default()
                    .push((smp.stack, smp.weight_ns));
            }
        }
        if groups.is_empty() {
            groups.insert(None, Vec::new());
        }
        for (gi, (thread, samples)) in groups.iter().enumerate() {
            if gi > 0 {
                s.push(',');
            }
            let name = group_name(thread.map(|th| profile.thread_label(th)));
            let end: u64 = samples.iter().map(|(_, w)| *w).fold(0, u64::saturating_add);
            push_profile_start(&mut s, &name, end);
            for (i, (stack, _)) in samples.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                push_sample(&mut s, t.stack(*stack).iter().map(|f| f.0));
            }
            s.push_str(WEIGHTS);
            for (i, (_, w)) in samples.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{w}");
            }
            s.push_str(PROFILE_END);
            if s.len() > 1 << 20 {
                out.write_all(s.as_bytes())?;
                s.clear();
            }
        }
        s.push_str(END);
        out.write_all(s.as_bytes())?;
        Ok(())
    }
}
