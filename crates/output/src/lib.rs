//! Writes aggregated profiles ([`Profile`]) in the formats `strobe record --format` offers, and
//! reads/writes strobe's own streaming `raw` recording.
//!
//! Every format implements [`Format`]. Names in a profile come from the profiled process and are
//! untrusted: each writer escapes them for its syntax (XML for SVG, JSON string escapes, folded
//! stack separators), and tests feed hostile names through every format.
//!
//! Files are written with [`write_atomically`] so that a failed write never leaves a partial
//! output behind.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt::Write as _;
use std::io::{self, Write};

pub use strobe_aggregate::Profile;
use strobe_aggregate::{FrameId, FrameKind, ThreadId};

mod atomic;
mod chrome;
mod collapsed;
mod gecko;
mod json;
#[cfg(test)]
mod paths_stream;
mod pprof;
pub mod raw;
mod speedscope;
mod spill;
mod stream;
mod svg;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod test_samples;

pub use atomic::write_atomically;
pub use chrome::Chrome;
pub(crate) use chrome::ChromeRecorder;
pub use collapsed::Collapsed;
pub(crate) use gecko::GeckoRecorder;
pub use gecko::{Gecko, PROCESSED_PROFILE_VERSION};
pub use pprof::Pprof;
pub(crate) use pprof::PprofRecorder;
pub use raw::{
    read_raw, read_raw_bytes, read_raw_counts, RawError, RawEvent, RawRecording, RawStats,
    RawStream, RawWriter,
};
pub use speedscope::Speedscope;
pub(crate) use speedscope::SpeedscopeRecorder;
pub use spill::{
    budget_from_env, remove_stale_spill_dirs, FoldedRecorder, DEFAULT_SPILL_BYTES, SPILL_BYTES_ENV,
};
pub use stream::{recorder, Recorder};
pub use svg::{write_diff_svg, DiffSvg, Svg};

/// An output format: turns a whole profile into bytes.
pub trait Format {
    /// Writes `profile` to `out`.
    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()>;
}

/// The `--format` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatKind {
    /// Interactive flamegraph SVG.
    Svg,
    /// speedscope JSON.
    Speedscope,
    /// Folded stacks (`a;b;c 123`).
    Collapsed,
    /// Chrome Trace Event JSON (Perfetto, chrome://tracing).
    Chrome,
    /// gzipped pprof protobuf.
    Pprof,
    /// Firefox Profiler processed-profile JSON.
    Gecko,
    /// strobe's raw recording.
    Raw,
}

impl FormatKind {
    /// Every format, in `--help` order.
    pub const ALL: [FormatKind; 7] = [
        FormatKind::Svg,
        FormatKind::Speedscope,
        FormatKind::Collapsed,
        FormatKind::Chrome,
        FormatKind::Pprof,
        FormatKind::Gecko,
        FormatKind::Raw,
    ];

    /// The `--format` name.
    pub fn name(self) -> &'static str {
        match self {
            FormatKind::Svg => "svg",
            FormatKind::Speedscope => "speedscope",
            FormatKind::Collapsed => "collapsed",
            FormatKind::Chrome => "chrome",
            FormatKind::Pprof => "pprof",
            FormatKind::Gecko => "gecko",
            FormatKind::Raw => "raw",
        }
    }

    /// Parses a `--format` name.
    pub fn from_name(name: &str) -> Option<FormatKind> {
        FormatKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The usual file extension (without the dot) for default output names.
    pub fn extension(self) -> &'static str {
        match self {
            FormatKind::Svg => "svg",
            FormatKind::Speedscope => "speedscope.json",
            FormatKind::Collapsed => "txt",
            FormatKind::Chrome => "trace.json",
            FormatKind::Pprof => "pb.gz",
            FormatKind::Gecko => "gecko.json",
            FormatKind::Raw => "strobe",
        }
    }

    /// Whether the format shows time order and so wants the aggregator to keep the timeline
    /// (`Counts::keep_timeline`). Others only need the aggregated counts.
    pub fn wants_timeline(self) -> bool {
        matches!(
            self,
            FormatKind::Chrome | FormatKind::Speedscope | FormatKind::Gecko | FormatKind::Raw
        )
    }

    /// The writer for this format with default options.
    pub fn writer(self) -> Box<dyn Format> {
        self.writer_of(Value::default())
    }

    /// The writer for this format with default options, its numbers counting `value` where
    /// `value` decides them: the folded formats (collapsed, svg). pprof has both (samples/count
    /// and wall/nanoseconds, a viewer picks one); speedscope, chrome and gecko lay samples out
    /// in time, each as long as the wall time it stands for.
    pub fn writer_of(self, value: Value) -> Box<dyn Format> {
        match self {
            FormatKind::Svg => Box::new(Svg { value, title: None }),
            FormatKind::Speedscope => Box::new(Speedscope),
            FormatKind::Collapsed => Box::new(Collapsed { value }),
            FormatKind::Chrome => Box::new(Chrome),
            FormatKind::Pprof => Box::new(Pprof),
            FormatKind::Gecko => Box::new(Gecko),
            FormatKind::Raw => Box::new(raw::RawFormat),
        }
    }
}

/// What the numbers in folded stacks and flamegraphs count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Value {
    /// Wall time in microseconds: samples weighted by the interval they stand for (honest when
    /// the sampler was late).
    #[default]
    Micros,
    /// Plain sample counts.
    Samples,
}

impl Value {
    /// The number `c` counts for.
    fn of(self, c: strobe_aggregate::Count) -> u64 {
        match self {
            // Round to nearest; a stack that was sampled keeps at least 1 so it stays visible.
            Value::Micros => ((c.weight_ns + 500) / 1000).max(u64::from(c.samples > 0)),
            Value::Samples => c.samples,
        }
    }

    fn unit_name(self) -> &'static str {
        match self {
            Value::Micros => "µs",
            Value::Samples => "samples",
        }
    }
}

/// The frame label every text format uses (unescaped; each format escapes it):
/// - Python: `function (file:line)`, or `function (file)` without a line;
/// - native: `function (module)` with the shared object's file name, then ` [file:line]` where
///   DWARF gave a source location (`function` is `module+0xoffset` without a symbol);
/// - kernel: `[syscall]`;
/// - interpreter: `<GC>`.
pub fn frame_label(profile: &Profile, id: FrameId) -> String {
    let t = &profile.tables;
    match t.frame(id) {
        Some(f) => label_of(t, f, f.line),
        None => String::from("<unknown frame>"),
    }
}

/// [`frame_label`] of frame `f` of tables `t`, with `line` in place of its own (`None` for
/// `--function`).
pub(crate) fn label_of(
    t: &strobe_aggregate::Tables,
    f: &strobe_aggregate::Frame,
    line: Option<i32>,
) -> String {
    let mut s = String::with_capacity(64);
    s.push_str(t.str(f.function));
    match f.kind {
        FrameKind::Python => {
            s.push_str(" (");
            s.push_str(t.str(f.filename));
            if let Some(line) = line {
                let _ = write!(s, ":{line}");
            }
            s.push(')');
        }
        FrameKind::Native => {
            if let Some(m) = f.module {
                let _ = write!(s, " ({})", module_name(t.str(m)));
            }
            push_source(&mut s, t.str(f.filename), line);
        }
        FrameKind::Kernel | FrameKind::Interpreter | FrameKind::Exception | FrameKind::Task => {}
    }
    s
}

/// ` [file:line]` (or ` [file]`) after a native frame's name, where DWARF gave a file.
pub(crate) fn push_source(s: &mut String, file: &str, line: Option<i32>) {
    if !file.is_empty() {
        let _ = write!(s, " [{file}");
        if let Some(line) = line {
            let _ = write!(s, ":{line}");
        }
        s.push(']');
    }
}

/// The file name of a module path: `libc.so.6` for `/usr/lib/x86_64-linux-gnu/libc.so.6`.
pub fn module_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The root-frame label for a thread under `--threads`.
pub fn thread_label(profile: &Profile, id: ThreadId) -> String {
    profile.thread_label(id)
}
