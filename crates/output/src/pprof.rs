//! pprof: a gzipped `perftools.profiles.Profile` protobuf (google/pprof `proto/profile.proto`),
//! encoded by hand — the schema is small and stable, and this saves a protoc build step.
//!
//! Field numbers used (from profile.proto): Profile{1 sample_type, 2 sample, 4 location,
//! 5 function, 6 string_table, 9 time_nanos, 10 duration_nanos, 11 period_type, 12 period,
//! 13 comment, 14 default_sample_type}; ValueType{1 type, 2 unit}; Sample{1 location_id (packed),
//! 2 value (packed), 3 label}; Label{1 key, 2 str, 3 num}; Location{1 id, 4 line};
//! Line{1 function_id, 2 line}; Function{1 id, 2 name, 3 system_name, 4 filename}.
//! Sample values are [samples/count, wall/nanoseconds]; locations are listed leaf first, as
//! pprof requires. Each thread's samples carry `thread` and `thread_id` labels; under
//! `--threads` a root frame per thread is added as well, like the other formats.

use std::collections::HashMap;
use std::io::{self, Write};

use flate2::write::GzEncoder;
use flate2::Compression;
use strobe_aggregate::Profile;

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

pub(crate) fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn uint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(out, field, 0);
        varint(out, v);
    }
}

fn int_field(out: &mut Vec<u8>, field: u32, v: i64) {
    // int64 is encoded as the two's-complement u64 (not zigzag).
    uint_field(out, field, v as u64);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn packed_field(out: &mut Vec<u8>, field: u32, values: impl Iterator<Item = u64>) {
    let mut body = Vec::new();
    for v in values {
        varint(&mut body, v);
    }
    if !body.is_empty() {
        bytes_field(out, field, &body);
    }
}

fn value_type(strings: &mut Strings, ty: &str, unit: &str) -> Vec<u8> {
    let mut m = Vec::new();
    int_field(&mut m, 1, strings.id(ty));
    int_field(&mut m, 2, strings.id(unit));
    m
}

/// Encodes `profile` as an uncompressed profile.proto message.
pub(crate) fn encode(profile: &Profile) -> Vec<u8> {
    let t = &profile.tables;
    let mut strings = Strings::new();
    let mut out = Vec::with_capacity(1 << 16);

    let st = value_type(&mut strings, "samples", "count");
    bytes_field(&mut out, 1, &st);
    let st = value_type(&mut strings, "wall", "nanoseconds");
    bytes_field(&mut out, 1, &st);

    // Functions: one per (name, file); locations: one per frame (a line in a function), ids
    // frame index + 1. Thread root frames get ids after them.
    let mut functions: HashMap<(i64, i64), u64> = HashMap::new();
    let mut function_msgs: Vec<Vec<u8>> = Vec::new();
    let mut location_msgs: Vec<Vec<u8>> = Vec::new();
    let mut add_location =
        |strings: &mut Strings, name: &str, file: &str, line: Option<i32>| -> u64 {
            let key = (strings.id(name), strings.id(file));
            let next = function_msgs.len() as u64 + 1;
            let fid = *functions.entry(key).or_insert_with(|| {
                let mut m = Vec::new();
                uint_field(&mut m, 1, next);
                int_field(&mut m, 2, key.0);
                int_field(&mut m, 3, key.0);
                int_field(&mut m, 4, key.1);
                function_msgs.push(m);
                next
            });
            let lid = location_msgs.len() as u64 + 1;
            let mut line_msg = Vec::new();
            uint_field(&mut line_msg, 1, fid);
            int_field(&mut line_msg, 2, i64::from(line.unwrap_or(0)));
            let mut m = Vec::new();
            uint_field(&mut m, 1, lid);
            bytes_field(&mut m, 4, &line_msg);
            location_msgs.push(m);
            lid
        };
    for (_, f) in t.frames() {
        add_location(&mut strings, t.str(f.function), t.str(f.filename), f.line);
    }
    let mut thread_roots: HashMap<u32, u64> = HashMap::new();
    let thread_key = strings.id("thread");
    let thread_id_key = strings.id("thread_id");
    for sc in &profile.stacks {
        let label = profile.thread_label(sc.thread);
        let root = if profile.options.per_thread {
            Some(
                *thread_roots
                    .entry(sc.thread.0)
                    .or_insert_with(|| add_location(&mut strings, &label, "", None)),
            )
        } else {
            None
        };
        let mut m = Vec::new();
        let leaf_first = t.stack(sc.stack).iter().rev().map(|f| u64::from(f.0) + 1);
        packed_field(&mut m, 1, leaf_first.chain(root));
        packed_field(
            &mut m,
            2,
            [sc.count.samples, sc.count.weight_ns].into_iter(),
        );
        let mut l = Vec::new();
        int_field(&mut l, 1, thread_key);
        int_field(&mut l, 2, strings.id(&label));
        bytes_field(&mut m, 3, &l);
        if let Some(th) = t.thread(sc.thread) {
            let mut l = Vec::new();
            int_field(&mut l, 1, thread_id_key);
            int_field(&mut l, 3, th.os_tid as i64);
            bytes_field(&mut m, 3, &l);
        }
        bytes_field(&mut out, 2, &m);
    }
    for m in &location_msgs {
        bytes_field(&mut out, 4, m);
    }
    for m in &function_msgs {
        bytes_field(&mut out, 5, m);
    }
    let meta = &profile.meta;
    int_field(&mut out, 9, meta.start_unix_ns as i64);
    int_field(&mut out, 10, meta.duration_ns as i64);
    let pt = value_type(&mut strings, "wall", "nanoseconds");
    bytes_field(&mut out, 11, &pt);
    if meta.rate_requested_hz > 0.0 {
        int_field(&mut out, 12, (1e9 / meta.rate_requested_hz).round() as i64);
    }
    let mut comments = vec![
        format!("target: {}", meta.target),
        format!("profiler: strobe {}", meta.strobe_version),
    ];
    if let Some(v) = &meta.python_version {
        comments.push(format!("python: {v}"));
    }
    comments.push(format!(
        "errors: {}, dropped: {}",
        meta.errors, meta.dropped
    ));
    for c in comments {
        int_field(&mut out, 13, strings.id(&c));
    }
    int_field(&mut out, 14, strings.id("wall"));
    // The string table goes last: everything above may have added strings.
    for s in &strings.table {
        bytes_field(&mut out, 6, s.as_bytes());
    }
    out
}

impl Format for Pprof {
    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let body = encode(profile);
        let mut gz = GzEncoder::new(out, Compression::default());
        gz.write_all(&body)?;
        gz.finish()?.flush()
    }
}
