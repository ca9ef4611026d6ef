//! Unit tests of the raw format: old versions read, new fields round-trip, FORGET records, and
//! the streamed reader folding every version exactly as the profile of it does.

use strobe_aggregate::{
    pipeline_streamed, BreakdownOptions, FrameKey, FrameKind, Interner, Metadata, ProfileOptions,
    Sample, SampleFilter, SampleFlags, StackId, Tables, ThreadKey, STACK_BYTES,
};

use super::*;
use crate::paths_stream::{path_frames, two_threads};
use crate::{FoldedRecorder, FormatKind};

/// Writes a recording by hand, record by record, at any format version.
struct Enc {
    version: u16,
    file: Vec<u8>,
    chunk: Vec<u8>,
}

impl Enc {
    fn new(version: u16) -> Enc {
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&version.to_le_bytes());
        file.extend_from_slice(&0u16.to_le_bytes());
        Enc {
            version,
            file,
            chunk: Vec::new(),
        }
    }

    fn meta(&mut self, pairs: &[(&str, &str)]) {
        self.chunk.push(META);
        varint(&mut self.chunk, pairs.len() as u64);
        for (k, v) in pairs {
            string(&mut self.chunk, k);
            string(&mut self.chunk, v);
        }
    }

    fn strs(&mut self, strs: &[&str]) {
        for s in strs {
            self.chunk.push(STR);
            string(&mut self.chunk, s);
        }
    }

    /// A frame: FRAME for Python, else KFRAME with `module` (0 none, else str id + 1); the
    /// first line only from version 4.
    fn frame(&mut self, kind: FrameKind, function: u64, file: u64, line: Option<i32>, module: u64) {
        let c = &mut self.chunk;
        if kind == FrameKind::Python {
            c.push(FRAME);
        } else {
            c.extend_from_slice(&[KFRAME, kind.code()]);
        }
        varint(c, function);
        varint(c, file);
        varint(c, line_code(line));
        if kind != FrameKind::Python {
            varint(c, module);
        }
        if self.version >= FIRST_LINE_VERSION {
            varint(c, line_code(line.map(|l| l - 2)));
        }
    }

    fn record(&mut self, tag: u8, fields: &[u64]) {
        self.chunk.push(tag);
        for &f in fields {
            varint(&mut self.chunk, f);
        }
    }

    fn stack(&mut self, frames: &[u64]) {
        self.chunk.push(STACK);
        varint(&mut self.chunk, frames.len() as u64);
        for &f in frames {
            varint(&mut self.chunk, f);
        }
    }

    fn sample(&mut self, stack: u64, thread: u64, flags: u8, dt: i64, weight: u64) {
        self.record(SAMPLE, &[stack, thread]);
        self.chunk.push(flags);
        varint(&mut self.chunk, zigzag(dt));
        varint(&mut self.chunk, weight);
    }

    fn end_chunk(&mut self) {
        self.file
            .extend_from_slice(&(self.chunk.len() as u32).to_le_bytes());
        self.file
            .extend_from_slice(&crc32fast::hash(&self.chunk).to_le_bytes());
        self.file.append(&mut self.chunk);
    }
}

/// A recording as strobe 0.1 wrote it at raw format version 3 (before first lines): one
/// Python frame, one native frame, one thread, one stack, one sample; made by hand.
fn version_3_file() -> Vec<u8> {
    let mut e = Enc::new(3);
    e.strs(&["work", "/app/x.py", "/lib/libc.so.6", "qsort", ""]);
    e.frame(FrameKind::Python, 0, 1, Some(12), 0);
    e.frame(FrameKind::Native, 3, 4, None, 3);
    e.record(THREAD, &[7, 0, 0]);
    e.stack(&[0, 1]);
    e.sample(0, 0, 0, 5_000_000, 5_000_000);
    e.end_chunk();
    e.file
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
        .intern_frame(&FrameKey::python("work", "/app/x.py", Some(12)).with_first_line(Some(10)))
        .unwrap();
    let native = i
        .intern_frame(&FrameKey {
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
        .intern_thread(&ThreadKey {
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

/// A recording at `version` with what that version can hold: Python frames, and from version
/// 2 native ones, from 3 `<GC>`, from 4 exception and task frames and the exception flag;
/// two threads, a stack defined twice and one defined empty, samples in four chunks, a
/// pre-counted stack, statistics, and from version 5 FORGET records. Returns the bytes and
/// where the last chunk starts.
fn recording(version: u16) -> (Vec<u8>, usize) {
    let mut e = Enc::new(version);
    e.meta(&[
        ("target", "python app.py"),
        ("strobe_version", "0.1.0"),
        ("rate_requested_hz", "100"),
        ("start_unix_ns", "1700000000000000000"),
        ("pid", "4242"),
    ]);
    e.end_chunk();
    e.strs(&["main", "/app/x.py", "work", "qsort", "/lib/libc.so.6", ""]);
    e.strs(&[
        "MainThread",
        "<GC>",
        "<raise ValueError>",
        "<task t1>",
        "wait",
    ]);
    let since = |v, kind| {
        if version >= v {
            kind
        } else {
            FrameKind::Python
        }
    };
    e.frame(FrameKind::Python, 0, 1, Some(3), 0); // 0 main
    e.frame(FrameKind::Python, 2, 1, Some(12), 0); // 1 work:12
    e.frame(FrameKind::Python, 2, 1, Some(14), 0); // 2 work:14
    e.frame(since(2, FrameKind::Native), 3, 5, None, 5); // 3 qsort
    e.frame(since(3, FrameKind::Interpreter), 7, 5, None, 0); // 4 <GC>
    e.frame(since(4, FrameKind::Exception), 8, 5, None, 0); // 5 <raise ValueError>
    e.frame(since(4, FrameKind::Task), 9, 5, None, 0); // 6 <task t1>
    e.frame(FrameKind::Python, 10, 1, Some(30), 0); // 7 wait
    e.record(THREAD, &[7, 0, 6 + 1]); // 0: 7 MainThread
    e.record(THREAD, &[8, zigzag(2), 0]); // 1: 8, interpreter 2
    e.stack(&[0, 1]); // 0
    e.stack(&[0, 2, 3]); // 1
    e.stack(&[0, 4]); // 2
    e.stack(&[6, 7]); // 3
    let exc = if version >= 4 {
        SampleFlags::EXCEPTION.0
    } else {
        0
    };
    let gil = SampleFlags::HOLDS_GIL.0;
    let idle = SampleFlags::IDLE.0;
    for (i, (stack, thread, flags)) in [(0, 0, gil), (1, 0, gil), (2, 1, 0), (3, 1, idle)]
        .into_iter()
        .chain([(0, 0, gil | exc), (1, 1, 0)])
        .enumerate()
    {
        e.sample(
            stack,
            thread,
            flags,
            1_000_000 + i as i64,
            1_000_000 + i as u64,
        );
    }
    e.record(STATS, &[4_000_000, 1, 0]);
    e.end_chunk();
    // Stack 0 again (as the recorder defines a stack it forgot and met again), one forgotten
    // before it was written (empty), then stacks 0 to 2 forgotten.
    e.stack(&[0, 1]); // 4
    e.stack(&[]); // 5
    e.stack(&[0, 2, 5]); // 6
    if version >= FORGET_VERSION {
        e.record(FORGET, &[3]);
    }
    e.sample(4, 0, gil, 3_000_000, 2_000_000);
    e.sample(6, 0, exc, -500, 1_000_000);
    e.sample(3, 1, idle, 700, 1_000_000);
    e.record(AGGREGATE, &[4, 1]);
    e.chunk.push(gil);
    varint(&mut e.chunk, 5);
    varint(&mut e.chunk, 5_000_000);
    e.end_chunk();
    if version >= FORGET_VERSION {
        e.record(FORGET, &[6]);
    }
    e.sample(6, 1, 0, 1_000_000, 1_000_000);
    e.record(STATS, &[9_000_000, 2, 1]);
    e.end_chunk();
    let last = e.file.len();
    e.sample(6, 0, 0, 1_000_000, 1_000_000);
    e.end_chunk();
    (e.file, last)
}

/// The view options convert is given in the tests.
fn option_sets() -> [ProfileOptions; 3] {
    [
        ProfileOptions::default(),
        ProfileOptions {
            filter: SampleFilter::ALL,
            per_thread: true,
            ..ProfileOptions::default()
        },
        ProfileOptions {
            filter: SampleFilter {
                include_idle: true,
                gil_only: false,
                exception_only: true,
            },
            by_function: true,
            hide_gc: true,
            hide_exceptions: false,
            ..ProfileOptions::default()
        },
    ]
}

/// What `convert` writes now: the recording streamed into a [`FoldedRecorder`].
fn fold_streamed(
    bytes: &[u8],
    kind: FormatKind,
    options: ProfileOptions,
    budget: usize,
) -> Vec<u8> {
    let mut f = FoldedRecorder::new(kind, options, &std::env::temp_dir(), budget);
    let mut s = RawStream::from_bytes(bytes).unwrap();
    while let Some((tables, event)) = s.next_event().unwrap() {
        f.add_count(tables, event.key(), event.count()).unwrap();
    }
    let mut out = Vec::new();
    f.write(&s.metadata(), &mut out).unwrap();
    out
}

/// What `convert` wrote before: the recording's profile folded.
fn fold_profile(bytes: &[u8], kind: FormatKind, options: ProfileOptions) -> Vec<u8> {
    let r = read_raw_bytes(bytes).unwrap();
    let mut f = FoldedRecorder::new(kind, options, &std::env::temp_dir(), 1 << 30);
    f.add_profile(&r.profile).unwrap();
    let mut out = Vec::new();
    f.write(&r.profile.meta, &mut out).unwrap();
    out
}

#[test]
fn every_version_folds_streamed_exactly_as_its_profile_whole_or_torn() {
    for version in OLDEST_VERSION..=VERSION {
        let (whole, last) = recording(version);
        for cut in [whole.len(), whole.len() - 3, last + 5] {
            let bytes = &whole[..cut];
            let mut s = RawStream::from_bytes(bytes).unwrap();
            let mut events = 0;
            while s.next_event().unwrap().is_some() {
                events += 1;
            }
            let r = read_raw_bytes(bytes).unwrap();
            let case = format!("version {version}, {} bytes cut", whole.len() - cut);
            assert_eq!(events, if cut == whole.len() { 12 } else { 11 }, "{case}");
            let torn = if cut == whole.len() { 0 } else { cut - last };
            assert_eq!(s.ignored_bytes(), torn, "{case}");
            assert_eq!(s.ignored_bytes(), r.ignored_bytes, "{case}");
            assert_eq!(s.chunks(), r.chunks, "{case}");
            assert_eq!(s.metadata(), r.profile.meta, "{case}");
            assert_eq!(r.profile.meta.duration_ns, 9_000_000, "{case}");
            for options in option_sets() {
                for kind in [FormatKind::Collapsed, FormatKind::Svg] {
                    let want = fold_profile(bytes, kind, options);
                    for budget in [1, 1 << 30] {
                        let got = fold_streamed(bytes, kind, options, budget);
                        assert!(
                            got == want,
                            "{case}, {kind:?} {options:?} budget {budget}:\n{}\n---\n{}",
                            String::from_utf8_lossy(&got),
                            String::from_utf8_lossy(&want)
                        );
                    }
                }
            }
        }
        let text = String::from_utf8(fold_streamed(
            &whole,
            FormatKind::Collapsed,
            option_sets()[1],
            1 << 30,
        ))
        .unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("thread 8 [interpreter 2];")
                    && l.contains(";wait (/app/x.py:30) ")),
            "version {version}: {text}"
        );
    }
}

#[test]
fn a_stream_holds_only_the_stacks_not_forgotten() {
    for version in OLDEST_VERSION..=VERSION {
        let (bytes, _) = recording(version);
        let mut s = RawStream::from_bytes(&bytes).unwrap();
        while s.next_event().unwrap().is_some() {}
        let t = s.tables();
        assert_eq!(s.stack_definitions(), 7);
        assert_eq!(t.num_stacks(), 7);
        // Version 5 said stacks 0 to 5 were forgotten; the first pass over an older version
        // found that no record of the last two chunks names them.
        assert_eq!(t.held_stacks(), 1, "version {version}");
        assert!(t.stack(StackId(0)).is_empty());
        assert_eq!(t.stack(StackId(6)).len(), 3);
        assert_eq!(
            (t.num_frames(), t.num_threads(), t.num_strings()),
            (8, 2, 11)
        );
    }
}

/// A version 4 recording of `n` samples in chunks of 10, each sample a new stack that only it
/// names, but for stack 0, which samples name again `back` samples on, once (a stack a
/// recorder forgot is defined again: these are the ids of the stacks it held).
fn old_recording_of_short_lived_stacks(n: u64, back: u64) -> Vec<u8> {
    let mut e = Enc::new(4);
    e.meta(&[("pid", "1")]);
    e.end_chunk();
    e.strs(&["main", "/app/x.py", "f", "g"]);
    e.frame(FrameKind::Python, 0, 1, Some(1), 0);
    e.frame(FrameKind::Python, 2, 1, Some(2), 0);
    e.frame(FrameKind::Python, 3, 1, Some(3), 0);
    e.record(THREAD, &[7, 0, 0]);
    for i in 0..n {
        e.stack(&[0, 1 + i % 2, 2 - i % 2]);
        e.sample(i, 0, SampleFlags::HOLDS_GIL.0, 1_000_000, 1_000_000);
        if i == back {
            e.sample(0, 0, 0, 1_000_000, 1_000_000);
        }
        if i % 10 == 9 {
            e.end_chunk();
        }
    }
    e.end_chunk();
    e.file
}

#[test]
fn an_old_recording_read_twice_holds_only_the_stacks_still_to_be_named() {
    for back in [0, 55] {
        let bytes = old_recording_of_short_lived_stacks(200, back);
        let mut s = RawStream::from_bytes(&bytes).unwrap();
        let mut most = 0;
        while let Some((tables, _)) = s.next_event().unwrap() {
            most = most.max(tables.held_stacks());
        }
        assert_eq!(s.stack_definitions(), 200);
        // A chunk's 10 stacks, and those of the chunks back to the one naming stack 0 again.
        assert!(
            most <= 10 * (back as usize / 10 + 1),
            "back {back}: {most} held"
        );
        for options in option_sets() {
            for kind in [FormatKind::Collapsed, FormatKind::Svg] {
                assert!(
                    fold_streamed(&bytes, kind, options, 1) == fold_profile(&bytes, kind, options),
                    "back {back}, {kind:?}, {options:?}"
                );
            }
        }
    }
}

#[test]
fn an_old_recording_on_disk_is_read_twice_and_from_a_pipe_once() {
    let bytes = old_recording_of_short_lived_stacks(200, 0);
    let path = std::env::temp_dir().join(format!("strobe-raw-v4-{}.raw", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let most_held = |mut s: RawStream<_>| {
        let mut most = 0;
        while let Some((tables, _)) = s.next_event().unwrap() {
            most = most.max(tables.held_stacks());
        }
        most
    };
    assert!(most_held(RawStream::open(&path).unwrap()) <= 10);
    // A pipe cannot be read twice: every stack stays.
    let mut cat = std::process::Command::new("cat")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = cat.stdout.take().unwrap();
    let fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&out));
    assert_eq!(
        most_held(RawStream::open(std::path::Path::new(&fd)).unwrap()),
        200
    );
    assert!(cat.wait().unwrap().success());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn an_old_recording_that_grows_between_the_passes_is_read_to_where_the_first_ended() {
    let (whole, last) = recording(4);
    let path = std::env::temp_dir().join(format!("strobe-raw-grow-{}.raw", std::process::id()));
    std::fs::write(&path, &whole[..last]).unwrap();
    let mut s = RawStream::open(&path).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, &whole[last..]).unwrap();
    let mut events = 0;
    while s.next_event().unwrap().is_some() {
        events += 1;
    }
    let short = read_raw_bytes(&whole[..last]).unwrap();
    assert_eq!(
        (events, s.chunks(), s.ignored_bytes()),
        (11, short.chunks, 0)
    );
    std::fs::remove_file(&path).unwrap();
}

/// `recording(5)` up to its third chunk, then a chunk of `records`.
fn with_chunk(records: impl FnOnce(&mut Enc)) -> Vec<u8> {
    let (bytes, _) = recording(VERSION);
    let mut e = Enc::new(VERSION);
    e.file = bytes;
    records(&mut e);
    e.end_chunk();
    e.file
}

#[test]
fn forget_records_are_checked() {
    let corrupt = |bytes: &[u8]| match read_raw_bytes(bytes) {
        Err(RawError::Corrupt { what, .. }) => what,
        other => panic!("{other:?}"),
    };
    // Stacks below 6 were forgotten by the end of the recording.
    let named = with_chunk(|e| e.sample(2, 0, 0, 1, 1));
    assert_eq!(corrupt(&named), "a record names a forgotten stack");
    let mut s = RawStream::from_bytes(&named).unwrap();
    let err = loop {
        match s.next_event() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("read to the end"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(err.starts_with("corrupt raw recording at byte "), "{err}");
    assert_eq!(
        corrupt(&with_chunk(|e| e.record(FORGET, &[8]))),
        "forget names an undefined stack"
    );
    // Before version 5 there is no such record.
    let mut e = Enc::new(4);
    e.record(FORGET, &[0]);
    e.end_chunk();
    assert_eq!(corrupt(&e.file), "unknown record type");
}

/// The frames of `stack` in `tables`, by content.
fn frames_of(tables: &Tables, stack: StackId) -> Vec<(String, Option<i32>)> {
    tables
        .stack(stack)
        .iter()
        .filter_map(|f| tables.frame(*f))
        .map(|f| (tables.str(f.function).to_owned(), f.line))
        .collect()
}

#[test]
fn a_recorder_with_a_tiny_stack_table_writes_forgets_and_the_stream_holds_no_more_than_it() {
    let names: Vec<String> = (0..16).map(|i| format!("f{i}")).collect();
    // About 8 stacks a generation: nearly every stack is forgotten and some come back.
    let budget = 2 * 8 * (STACK_BYTES + 48);
    let (mut sampler, mut agg) = pipeline_streamed(64, budget, BreakdownOptions::default());
    let mut w = RawWriter::new(Vec::new(), &Metadata::default()).unwrap();
    // Every sample by content, and the most stacks the recorder's tables held at an append.
    let mut want = Vec::new();
    let mut most_held = 0;
    let mut append = |w: &mut RawWriter<Vec<u8>>, d: strobe_aggregate::Drained<'_>| {
        most_held = most_held.max(d.tables.held_stacks());
        for s in d.samples {
            want.push((frames_of(d.tables, s.stack), s.timestamp_ns));
        }
        w.append(d.tables, d.samples).unwrap();
    };
    for n in 0..6_000u64 {
        let (thread, frames) = (two_threads(n), path_frames(&names, n, 12));
        let flags = SampleFlags::HOLDS_GIL;
        assert!(sampler.record(&thread, &frames, flags, n, 1).unwrap());
        sampler.collect_stacks();
        if n % 3 == 0 {
            append(&mut w, agg.drain().unwrap());
        }
        if n % 500 == 0 {
            w.flush().unwrap();
        }
    }
    drop(sampler);
    while !agg.finished() {
        append(&mut w, agg.drain().unwrap());
    }
    let bytes = w.finish().unwrap();

    let mut s = RawStream::from_bytes(&bytes).unwrap();
    let mut got = Vec::new();
    let mut most_read = 0;
    while let Some((tables, event)) = s.next_event().unwrap() {
        most_read = most_read.max(tables.held_stacks());
        let RawEvent::Sample(sample) = event else {
            panic!("{event:?}")
        };
        got.push((frames_of(tables, sample.stack), sample.timestamp_ns));
    }
    assert_eq!(got, want);
    assert!(
        s.stack_definitions() > 20 * most_held,
        "{} stacks defined, at most {most_held} held: forgetting did not happen",
        s.stack_definitions()
    );
    assert!(most_read <= most_held, "{most_read} > {most_held}");
    for options in option_sets() {
        for kind in [FormatKind::Collapsed, FormatKind::Svg] {
            let want = fold_profile(&bytes, kind, options);
            assert!(
                fold_streamed(&bytes, kind, options, 1 << 30) == want,
                "{kind:?}"
            );
        }
    }
}
