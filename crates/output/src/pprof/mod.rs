//! pprof: a gzipped `perftools.profiles.Profile` protobuf (google/pprof `proto/profile.proto`),
//! encoded by prost from the message declarations in [`proto`] (the part of the schema strobe
//! writes; declared in Rust, so there is no protoc build step).
//! Sample values are [samples/count, wall/nanoseconds] and the period type wall/nanoseconds
//! (what continuous-profiling servers such as Grafana Pyroscope and Parca index a wall-clock
//! profile by); locations are listed leaf first, as pprof requires. Each sample carries the
//! labels `thread` (strobe's thread label), `thread_id` (kernel id, numeric), `thread_name`
//! (the `threading` name, when known) and `pid` (numeric); the command line, pid, Python
//! version and error counts are comments. A Python function's `start_line` is its
//! `co_firstlineno` (0 where unknown: native frames, recordings older than raw version 4).
//! Native frames are in a mapping per binary, named by its path (no addresses are kept). Under
//! `--threads` a root frame per thread is added as well, like the other formats.
//!
//! [`PprofRecorder`] writes the same profile from a stream of samples (what `record` does) in
//! memory bounded by distinct frames: see `stream.rs`.

use std::collections::HashMap;
use std::io::{self, Write};

use flate2::write::GzEncoder;
use flate2::Compression;
use strobe_aggregate::{Frame, FrameKind, Metadata, Profile, Tables, ThreadId};

use crate::Format;

mod proto;
mod stream;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub(crate) use stream::PprofRecorder;

/// The `pprof` format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pprof;

#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        let mut s = Strings::default();
        s.id(""); // string_table[0] must be "".
        s
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

fn value_type(strings: &mut Strings, ty: &str, unit: &str) -> proto::ValueType {
    proto::ValueType {
        r#type: strings.id(ty),
        unit: strings.id(unit),
    }
}

/// Everything of a pprof profile but its samples, built up as frames and threads are met: the
/// string table, functions (one per name, file and first line), locations (one per frame or
/// thread root, ids from 1 in the order they are added) and mappings (one per binary native
/// frames are in, ids from 1).
#[derive(Default)]
struct Builder {
    strings: Strings,
    out: proto::Profile,
    functions: HashMap<(i64, i64, i64), u64>,
    mappings: HashMap<i64, u64>,
}

impl Builder {
    fn new() -> Builder {
        let mut strings = Strings::new();
        let out = proto::Profile {
            sample_type: vec![
                value_type(&mut strings, "samples", "count"),
                value_type(&mut strings, "wall", "nanoseconds"),
            ],
            ..Default::default()
        };
        Builder {
            strings,
            out,
            ..Builder::default()
        }
    }

    /// A new location: a line in a function (named, in a file, starting at a line).
    fn location(
        &mut self,
        name: &str,
        file: &str,
        line: Option<i32>,
        first_line: Option<i32>,
        mapping_id: u64,
    ) -> u64 {
        let key = (
            self.strings.id(name),
            self.strings.id(file),
            i64::from(first_line.unwrap_or(0)),
        );
        let next = self.out.function.len() as u64 + 1;
        let functions = &mut self.out.function;
        let function_id = *self.functions.entry(key).or_insert_with(|| {
            functions.push(proto::Function {
                id: next,
                name: key.0,
                system_name: key.0,
                filename: key.1,
                start_line: key.2,
            });
            next
        });
        let id = self.out.location.len() as u64 + 1;
        self.out.location.push(proto::Location {
            id,
            mapping_id,
            line: vec![proto::Line {
                function_id,
                line: i64::from(line.unwrap_or(0)),
            }],
        });
        id
    }

    /// A new location for frame `f` of tables `t`.
    fn frame(&mut self, t: &Tables, f: &Frame) -> u64 {
        // Native and kernel frames: the function's file is the shared object (pprof's views
        // group by it); a DWARF source line would point into a file pprof does not name.
        let (file, line, first_line) = match f.kind {
            FrameKind::Python => (t.str(f.filename), f.line, f.first_line),
            FrameKind::Native
            | FrameKind::Kernel
            | FrameKind::Interpreter
            | FrameKind::Exception
            | FrameKind::Task => (f.module.map_or("", |m| t.str(m)), None, None),
        };
        let mapping_id = match f.module {
            Some(m) if f.kind == FrameKind::Native => {
                let filename = self.strings.id(t.str(m));
                let next = self.out.mapping.len() as u64 + 1;
                let mappings = &mut self.out.mapping;
                *self.mappings.entry(filename).or_insert_with(|| {
                    mappings.push(proto::Mapping {
                        id: next,
                        filename,
                        has_functions: true,
                        has_filenames: true,
                    });
                    next
                })
            }
            _ => 0,
        };
        self.location(t.str(f.function), file, line, first_line, mapping_id)
    }

    /// The labels of a sample of `thread` (labelled `label`) of tables `t`, from process `pid`.
    fn labels(
        &mut self,
        t: &Tables,
        thread: ThreadId,
        label: &str,
        pid: Option<u32>,
    ) -> Vec<proto::Label> {
        let s = &mut self.strings;
        let mut labels = vec![proto::Label {
            key: s.id("thread"),
            str: s.id(label),
            num: 0,
        }];
        if let Some(th) = t.thread(thread) {
            labels.push(proto::Label {
                key: s.id("thread_id"),
                str: 0,
                num: th.os_tid as i64,
            });
            if let Some(name) = th.name {
                labels.push(proto::Label {
                    key: s.id("thread_name"),
                    str: s.id(t.str(name)),
                    num: 0,
                });
            }
        }
        if let Some(pid) = pid {
            labels.push(proto::Label {
                key: s.id("pid"),
                str: 0,
                num: i64::from(pid),
            });
        }
        labels
    }

    /// The profile with `samples` and what `meta` says; the string table goes last, since
    /// everything before may add strings.
    fn finish(mut self, meta: &Metadata, samples: Vec<proto::Sample>) -> proto::Profile {
        let mut out = std::mem::take(&mut self.out);
        let strings = &mut self.strings;
        out.sample = samples;
        out.time_nanos = meta.start_unix_ns as i64;
        out.duration_nanos = meta.duration_ns as i64;
        out.period_type = Some(value_type(strings, "wall", "nanoseconds"));
        if meta.rate_requested_hz > 0.0 {
            out.period = (1e9 / meta.rate_requested_hz).round() as i64;
        }
        let mut comments = vec![
            format!("target: {}", meta.target),
            format!(
                "pid: {}",
                meta.pid
                    .map_or_else(|| "unknown".to_string(), |p| p.to_string())
            ),
            format!("profiler: strobe {}", meta.strobe_version),
        ];
        if let Some(v) = &meta.python_version {
            comments.push(format!("python: {v}"));
        }
        comments.push(format!(
            "errors: {}, dropped: {}",
            meta.errors, meta.dropped
        ));
        out.comment = comments.iter().map(|c| strings.id(c)).collect();
        out.default_sample_type = strings.id("wall");
        out.string_table = std::mem::take(&mut strings.table);
        out
    }
}

/// A sample's values: [samples, wall ns].
fn values(c: strobe_aggregate::Count) -> Vec<i64> {
    vec![c.samples as i64, c.weight_ns as i64]
}

/// Encodes `profile` as an uncompressed profile.proto message.
pub(crate) fn encode(profile: &Profile) -> Vec<u8> {
    let t = &profile.tables;
    let mut b = Builder::new();
    // One location per frame (ids frame index + 1); thread root frames get ids after them.
    for (_, f) in t.frames() {
        b.frame(t, f);
    }
    let mut thread_roots: HashMap<ThreadId, u64> = HashMap::new();
    let mut samples = Vec::with_capacity(profile.stacks.len());
    for sc in &profile.stacks {
        let label = profile.thread_label(sc.thread);
        let root = profile.options.per_thread.then(|| {
            *thread_roots
                .entry(sc.thread)
                .or_insert_with(|| b.location(&label, "", None, None, 0))
        });
        let leaf_first = t.stack(sc.stack).iter().rev().map(|f| u64::from(f.0) + 1);
        samples.push(proto::Sample {
            location_id: leaf_first.chain(root).collect(),
            value: values(sc.count),
            label: b.labels(t, sc.thread, &label, profile.meta.pid),
        });
    }
    prost::Message::encode_to_vec(&b.finish(&profile.meta, samples))
}

/// Gzips an encoded profile: `spooled` (encoded `sample` fields, if any) then `body`.
fn gzip(
    spooled: Option<&mut crate::spill::SpoolFile>,
    body: &[u8],
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut gz = GzEncoder::new(out, Compression::default());
    if let Some(s) = spooled {
        s.copy_to(&mut gz)?;
    }
    gz.write_all(body)?;
    gz.finish()?.flush()
}

impl Format for Pprof {
    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        gzip(None, &encode(profile), out)
    }
}
