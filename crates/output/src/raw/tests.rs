//! Unit tests of the raw format: old versions read, new fields round-trip.

use strobe_aggregate::{FrameKind, Interner, Metadata, Sample, SampleFlags};

use super::*;

/// A recording as strobe 0.1 wrote it at raw format version 3 (before first lines): one
/// Python frame, one native frame, one thread, one stack, one sample; made by hand.
fn version_3_file() -> Vec<u8> {
    let mut payload = Vec::new();
    for s in ["work", "/app/x.py", "/lib/libc.so.6", "qsort", ""] {
        payload.push(STR);
        string(&mut payload, s);
    }
    // FRAME work /app/x.py:12, no first-line field.
    payload.extend_from_slice(&[FRAME, 0, 1, (zigzag(12) + 1) as u8]);
    // KFRAME native qsort, no file, no line, module /lib/libc.so.6 (id 2 + 1).
    payload.extend_from_slice(&[KFRAME, 1, 3, 4, 0, 3]);
    payload.extend_from_slice(&[THREAD, 7, 0, 0]);
    payload.extend_from_slice(&[STACK, 2, 0, 1]);
    payload.push(SAMPLE);
    payload.extend_from_slice(&[0, 0, 0]);
    varint(&mut payload, zigzag(5_000_000));
    varint(&mut payload, 5_000_000);
    let mut file = Vec::new();
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&3u16.to_le_bytes());
    file.extend_from_slice(&0u16.to_le_bytes());
    file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    file.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    file.extend_from_slice(&payload);
    file
}

#[test]
fn a_version_3_recording_reads_with_no_first_lines() {
    let r = read_raw_bytes(&version_3_file()).unwrap();
    assert_eq!(r.ignored_bytes, 0);
    let t = &r.profile.tables;
    let frames: Vec<_> = t
        .frames()
        .map(|(_, f)| {
            (
                t.str(f.function),
                t.str(f.filename),
                f.line,
                f.kind,
                f.module.map(|m| t.str(m)),
                f.first_line,
            )
        })
        .collect();
    assert_eq!(
        frames,
        [
            ("work", "/app/x.py", Some(12), FrameKind::Python, None, None),
            (
                "qsort",
                "",
                None,
                FrameKind::Native,
                Some("/lib/libc.so.6"),
                None
            ),
        ]
    );
    assert_eq!(r.profile.total().samples, 1);
}

#[test]
fn version_4_frames_keep_their_first_lines() {
    let mut i = Interner::new();
    let py = i
        .intern_frame(
            &strobe_aggregate::FrameKey::python("work", "/app/x.py", Some(12))
                .with_first_line(Some(10)),
        )
        .unwrap();
    let native = i
        .intern_frame(&strobe_aggregate::FrameKey {
            function: "qsort",
            filename: "",
            line: None,
            kind: FrameKind::Native,
            module: Some("/lib/libc.so.6"),
            first_line: Some(40),
        })
        .unwrap();
    let stack = i.intern_stack(&[py, native]).unwrap();
    let thread = i
        .intern_thread(&strobe_aggregate::ThreadKey {
            os_tid: 7,
            name: None,
            interpreter_id: 0,
        })
        .unwrap();
    let mut w = RawWriter::new(Vec::new(), &Metadata::default()).unwrap();
    w.append(
        i.tables(),
        &[Sample {
            stack,
            thread,
            flags: SampleFlags::default(),
            timestamp_ns: 5_000_000,
            weight_ns: 5_000_000,
        }],
    )
    .unwrap();
    let bytes = w.finish().unwrap();
    assert_eq!(&bytes[8..10], &VERSION.to_le_bytes());
    let r = read_raw_bytes(&bytes).unwrap();
    let t = &r.profile.tables;
    let firsts: Vec<_> = t.frames().map(|(_, f)| f.first_line).collect();
    assert_eq!(firsts, [Some(10), Some(40)]);
}
