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

use std::collections::HashMap;
use std::io::{self, Write};

use flate2::write::GzEncoder;
use flate2::Compression;
use strobe_aggregate::{FrameKind, Profile};

use crate::Format;

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

/// The messages of google/pprof's `proto/profile.proto` that strobe writes, with their field
/// numbers; prost encodes them (no protoc step: the schema is declared here).
mod proto {
    /// `perftools.profiles.Profile`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, packed = "false", tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    /// `ValueType`: indices into the string table.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    /// `Sample`: location ids leaf first, one value per sample type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    /// `Label`: a string or numeric label on a sample.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
    }

    /// `Mapping`: one binary native frames are in. strobe keeps no addresses, so only its
    /// file is given, and it is marked symbolized (pprof must not try to symbolize it again).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
    }

    /// `Location`: one frame (no addresses; native frames name their binary's mapping).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    /// `Line`: a function and a line in it.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    /// `Function`: names and file as string-table indices.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        /// The function's first line; 0 when unknown.
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

fn value_type(strings: &mut Strings, ty: &str, unit: &str) -> proto::ValueType {
    proto::ValueType {
        r#type: strings.id(ty),
        unit: strings.id(unit),
    }
}

/// Encodes `profile` as an uncompressed profile.proto message.
pub(crate) fn encode(profile: &Profile) -> Vec<u8> {
    let t = &profile.tables;
    let mut strings = Strings::new();
    let mut out = proto::Profile {
        sample_type: vec![
            value_type(&mut strings, "samples", "count"),
            value_type(&mut strings, "wall", "nanoseconds"),
        ],
        ..Default::default()
    };

    // Functions: one per (name, file, first line); locations: one per frame (a line in a
    // function), ids frame index + 1. Thread root frames get ids after them.
    let mut functions: HashMap<(i64, i64, i64), u64> = HashMap::new();
    let mut add_location = |out: &mut proto::Profile,
                            strings: &mut Strings,
                            name: &str,
                            file: &str,
                            line: Option<i32>,
                            first_line: Option<i32>,
                            mapping_id: u64|
     -> u64 {
        let key = (
            strings.id(name),
            strings.id(file),
            i64::from(first_line.unwrap_or(0)),
        );
        let next = out.function.len() as u64 + 1;
        let function_id = *functions.entry(key).or_insert_with(|| {
            out.function.push(proto::Function {
                id: next,
                name: key.0,
                system_name: key.0,
                filename: key.1,
                start_line: key.2,
            });
            next
        });
        let id = out.location.len() as u64 + 1;
        out.location.push(proto::Location {
            id,
            mapping_id,
            line: vec![proto::Line {
                function_id,
                line: i64::from(line.unwrap_or(0)),
            }],
        });
        id
    };
    // One mapping per binary that native frames are in, ids from 1.
    let mut mappings: HashMap<i64, u64> = HashMap::new();
    for (_, f) in t.frames() {
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
                let filename = strings.id(t.str(m));
                let next = out.mapping.len() as u64 + 1;
                *mappings.entry(filename).or_insert_with(|| {
                    out.mapping.push(proto::Mapping {
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
        add_location(
            &mut out,
            &mut strings,
            t.str(f.function),
            file,
            line,
            first_line,
            mapping_id,
        );
    }
    let mut thread_roots: HashMap<u32, u64> = HashMap::new();
    let thread_key = strings.id("thread");
    let thread_id_key = strings.id("thread_id");
    let thread_name_key = strings.id("thread_name");
    let pid_key = strings.id("pid");
    let meta = &profile.meta;
    for sc in &profile.stacks {
        let label = profile.thread_label(sc.thread);
        let root = if profile.options.per_thread {
            Some(match thread_roots.get(&sc.thread.0) {
                Some(&id) => id,
                None => {
                    let id = add_location(&mut out, &mut strings, &label, "", None, None, 0);
                    thread_roots.insert(sc.thread.0, id);
                    id
                }
            })
        } else {
            None
        };
        let leaf_first = t.stack(sc.stack).iter().rev().map(|f| u64::from(f.0) + 1);
        let mut labels = vec![proto::Label {
            key: thread_key,
            str: strings.id(&label),
            num: 0,
        }];
        if let Some(th) = t.thread(sc.thread) {
            labels.push(proto::Label {
                key: thread_id_key,
                str: 0,
                num: th.os_tid as i64,
            });
            if let Some(name) = th.name {
                labels.push(proto::Label {
                    key: thread_name_key,
                    str: strings.id(t.str(name)),
                    num: 0,
                });
            }
        }
        if let Some(pid) = meta.pid {
            labels.push(proto::Label {
                key: pid_key,
                str: 0,
                num: i64::from(pid),
            });
        }
        out.sample.push(proto::Sample {
            location_id: leaf_first.chain(root).collect(),
            value: vec![sc.count.samples as i64, sc.count.weight_ns as i64],
            label: labels,
        });
    }
    out.time_nanos = meta.start_unix_ns as i64;
    out.duration_nanos = meta.duration_ns as i64;
    out.period_type = Some(value_type(&mut strings, "wall", "nanoseconds"));
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
    // The string table goes last: everything above may have added strings.
    out.string_table = strings.table;
    prost::Message::encode_to_vec(&out)
}

impl Format for Pprof {
    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let body = encode(profile);
        let mut gz = GzEncoder::new(out, Compression::default());
        gz.write_all(&body)?;
        gz.finish()?.flush()
    }
}
