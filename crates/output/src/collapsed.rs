//! Folded stacks, the input format of flamegraph.pl and inferno: one line per distinct stack,
//! outermost frame first, frames joined by `;`, then a space and the value.
//!
//! The format has no escaping of its own, and a `;` or newline in a name would split a frame or a
//! line. We escape reversibly: `\` → `\\`, `;` → `\x3b`, newline/CR/tab → `\n`/`\r`/`\t`, other
//! control characters → `\xNN`. Spaces are kept: readers split the value off at the last space.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use strobe_aggregate::{Count, Profile};

use crate::{frame_label, Format, Value};

/// The `collapsed` format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Collapsed {
    /// What the numbers count.
    pub value: Value,
}

impl Format for Collapsed {
    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let mut w = io::BufWriter::new(out);
        for (stack, count) in folded(profile) {
            let v = self.value.of(count);
            if v > 0 {
                writeln!(w, "{stack} {v}")?;
            }
        }
        w.flush()
    }
}

/// Escapes one frame name for a folded line.
pub(crate) fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\x3b"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Distinct folded stacks with their counts, sorted by the folded text. Stacks of different
/// threads merge unless the profile was built with `per_thread`, which adds a thread root frame.
pub(crate) fn folded(profile: &Profile) -> BTreeMap<String, Count> {
    let mut lines: BTreeMap<String, Count> = BTreeMap::new();
    let mut labels: Vec<Option<String>> = vec![None; profile.tables.num_frames()];
    let mut line = String::new();
    for sc in &profile.stacks {
        line.clear();
        if profile.options.per_thread {
            escape(&profile.thread_label(sc.thread), &mut line);
        }
        for fid in profile.tables.stack(sc.stack) {
            if !line.is_empty() {
                line.push(';');
            }
            match labels.get_mut(fid.index()) {
                Some(Some(l)) => line.push_str(l),
                Some(slot) => {
                    let mut l = String::new();
                    escape(&frame_label(profile, *fid), &mut l);
                    line.push_str(&l);
                    *slot = Some(l);
                }
                None => line.push_str("<unknown frame>"),
            }
        }
        match lines.get_mut(line.as_str()) {
            Some(c) => c.add(sc.count),
            None => {
                lines.insert(line.clone(), sc.count);
            }
        }
    }
    lines
}
