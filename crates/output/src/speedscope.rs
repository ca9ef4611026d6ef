//! speedscope's JSON file format (`https://www.speedscope.app/file-format-schema.json`), as
//! "sampled" profiles: one per thread under `--threads`, else one for all threads.
//!
//! Samples list frame indexes outermost first, weighted in nanoseconds. With a timeline the
//! samples are in time order (speedscope's "Time Order" view then means something); without one
//! they are the aggregated stacks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use strobe_aggregate::{FrameKind, Profile, StackId, ThreadId};

use crate::json;
use crate::{push_source, Format};

/// The `speedscope` format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Speedscope;

impl Format for Speedscope {
    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let t = &profile.tables;
        let mut s = String::with_capacity(1 << 16);
        s.push_str("{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\",\n");
        s.push_str("\"exporter\":");
        json::push_str(&mut s, &format!("strobe {}", profile.meta.strobe_version));
        s.push_str(",\n\"name\":");
        json::push_str(&mut s, &profile.meta.target);
        s.push_str(",\n\"activeProfileIndex\":0,\n\"shared\":{\"frames\":[");
        for (i, (_, f)) in t.frames().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("\n{\"name\":");
            match f.kind {
                FrameKind::Python => {
                    json::push_str(&mut s, t.str(f.function));
                    s.push_str(",\"file\":");
                    json::push_str(&mut s, t.str(f.filename));
                    // The line running; aggregated by function (no line), the function's
                    // first line, where speedscope shows a function's location.
                    if let Some(line) = f.line.or(f.first_line) {
                        let _ = write!(s, ",\"line\":{line}");
                    }
                }
                // The file is the shared object (what speedscope groups and colours by); a
                // source location from DWARF goes in the name.
                FrameKind::Native
                | FrameKind::Kernel
                | FrameKind::Interpreter
                | FrameKind::Exception
                | FrameKind::Task => {
                    let mut name = t.str(f.function).to_string();
                    push_source(&mut name, t.str(f.filename), f.line);
                    json::push_str(&mut s, &name);
                    s.push_str(",\"file\":");
                    json::push_str(&mut s, f.module.map_or("", |m| t.str(m)));
                }
            }
            s.push('}');
        }
        s.push_str("]},\n\"profiles\":[");

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
            let name = match thread {
                Some(th) => profile.thread_label(*th),
                None => String::from("all threads"),
            };
            let end: u64 = samples.iter().map(|(_, w)| *w).fold(0, u64::saturating_add);
            s.push_str("\n{\"type\":\"sampled\",\"name\":");
            json::push_str(&mut s, &name);
            let _ = write!(
                s,
                ",\"unit\":\"nanoseconds\",\"startValue\":0,\"endValue\":{end},\n\"samples\":["
            );
            for (i, (stack, _)) in samples.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push('[');
                for (j, f) in t.stack(*stack).iter().enumerate() {
                    if j > 0 {
                        s.push(',');
                    }
                    let _ = write!(s, "{}", f.0);
                }
                s.push(']');
            }
            s.push_str("],\n\"weights\":[");
            for (i, (_, w)) in samples.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{w}");
            }
            s.push_str("]}");
            if s.len() > 1 << 20 {
                out.write_all(s.as_bytes())?;
                s.clear();
            }
        }
        s.push_str("]}\n");
        out.write_all(s.as_bytes())?;
        Ok(())
    }
}
