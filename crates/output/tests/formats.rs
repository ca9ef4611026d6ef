//! Every output format on a small profile with hostile names: golden files for the text formats
//! (`STROBE_BLESS=1 cargo test -p strobe-output` rewrites them), parsers for the rest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../src/paths_stream.rs"]
mod paths_stream;

use paths_stream::{path_frames, two_threads};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use strobe_aggregate::{
    Aggregator, FrameKey, FrameKind, Metadata, Profile, ProfileOptions, SampleFilter, SampleFlags,
    ThreadKey,
};
use strobe_output::{
    read_raw_bytes, write_atomically, write_diff_svg, Chrome, Collapsed, DiffSvg, Format,
    FormatKind, Pprof, RawStats, RawWriter, Speedscope, Svg, Value,
};

const SCRIPT: &str = "<script>alert(1)</script>";

fn hostile_names() -> Vec<String> {
    vec![
        SCRIPT.to_owned(),
        "semi;colon\nnew line".to_owned(),
        "quote\"back\\slash 'apos' & amp".to_owned(),
        "ctl\u{1}\u{1b}[31m\u{7f}".to_owned(),
        // What the reader produces for a Python str holding a lone surrogate.
        String::from_utf16_lossy(&[0xD800, 0x61]),
        "end]]>--> \u{2028}x".to_owned(),
    ]
}

fn meta(target: &str) -> Metadata {
    Metadata {
        target: target.to_owned(),
        pid: Some(4242),
        python_version: Some("3.12.1".to_owned()),
        strobe_version: "0.1.0".to_owned(),
        rate_requested_hz: 100.0,
        start_unix_ns: 1_700_000_000_000_000_000,
        duration_ns: 100_000_000,
        errors: 2,
        dropped: 1,
    }
}

const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";

/// A native frame.
fn native<'a>(
    function: &'a str,
    filename: &'a str,
    line: Option<i32>,
    module: &'a str,
) -> FrameKey<'a> {
    FrameKey {
        function,
        filename,
        line,
        kind: FrameKind::Native,
        module: Some(module),
        first_line: None,
    }
}

/// Two threads, repeated stacks, recursion, an idle sample, hostile names, a late sample, a
/// stack with native and kernel frames.
fn aggregator() -> Aggregator {
    let names = hostile_names();
    let mut a = Aggregator::new();
    a.counts_mut().keep_timeline(true);
    let main = ThreadKey {
        os_tid: 100,
        name: Some("MainThread"),
        interpreter_id: 0,
    };
    let worker = ThreadKey {
        os_tid: 101,
        name: Some("worker <b>"),
        interpreter_id: 0,
    };
    let f = |function: &'static str, line| FrameKey::python(function, "/app/main.py", Some(line));
    let gil = SampleFlags::HOLDS_GIL;
    let mut t = 0u64;
    let mut rec =
        |a: &mut Aggregator, th: &ThreadKey<'_>, frames: &[FrameKey<'_>], flags, w: u64| {
            t += w;
            a.record(th, frames, flags, t, w).unwrap();
        };
    for i in 0..4 {
        rec(
            &mut a,
            &main,
            &[f("<module>", 1), f("main", 10), f("work", 20 + i % 2)],
            gil,
            10_000_000,
        );
    }
    // Late: stands for 30 ms.
    rec(
        &mut a,
        &main,
        &[f("<module>", 1), f("main", 10), f("work", 20)],
        gil,
        30_000_000,
    );
    rec(
        &mut a,
        &main,
        &[
            f("<module>", 1),
            f("main", 11),
            f("main", 11),
            f("main", 12),
        ],
        gil,
        10_000_000,
    );
    // Under `--native`: Python frames called from C called from Python, down to a system call.
    rec(
        &mut a,
        &main,
        &[
            f("<module>", 1),
            f("main", 13),
            native("qsort", "", None, LIBC),
            f("compare", 30),
            native("recurse", "/src/chain.c", Some(42), "/opt/ext/libchain.so"),
            native("libchain.so+0x1f00", "", None, "/opt/ext/libchain.so"),
            FrameKey {
                function: "[syscall]",
                filename: "",
                line: None,
                kind: FrameKind::Kernel,
                module: None,
                first_line: None,
            },
        ],
        gil,
        10_000_000,
    );
    for n in &names {
        let frames = [f("<module>", 1), FrameKey::python(n, n, Some(7))];
        rec(&mut a, &worker, &frames, SampleFlags::empty(), 1_000_000);
    }
    rec(
        &mut a,
        &worker,
        &[f("<module>", 1), f("wait", 3)],
        SampleFlags::IDLE,
        5_000_000,
    );
    a
}

fn profile(options: ProfileOptions) -> Profile {
    aggregator()
        .profile(meta("python app.py --name '<x>'"), options)
        .unwrap()
}

fn render(format: &dyn Format, p: &Profile) -> Vec<u8> {
    let mut out = Vec::new();
    format.write(p, &mut out).unwrap();
    out
}

fn golden(name: &str, actual: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("STROBE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with STROBE_BLESS=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the output; if the change is intended, rerun with STROBE_BLESS=1 and review the diff\n--- actual ---\n{}",
        path.display(),
        String::from_utf8_lossy(actual)
    );
}

#[test]
fn collapsed_golden_and_escaping() {
    let p = profile(ProfileOptions::default());
    let out = render(&Collapsed::default(), &p);
    golden("collapsed.txt", &out);
    let text = String::from_utf8(out).unwrap();
    // Each line: stack, space, positive integer; no raw control characters anywhere.
    for line in text.lines() {
        let (_, v) = line.rsplit_once(' ').unwrap();
        assert!(v.parse::<u64>().unwrap() > 0, "{line}");
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
    }
    assert!(text.contains("semi\\x3bcolon\\nnew line"), "{text}");
    assert!(!text.contains("wait"), "idle excluded by default");
    // The late sample counts 30 ms: work:20 has 2 x 10 + 30 = 50 ms.
    assert!(text.contains("work (/app/main.py:20) 50000\n"), "{text}");

    let opts = ProfileOptions {
        filter: SampleFilter {
            include_idle: true,
            gil_only: false,
            exception_only: false,
        },
        per_thread: true,
        by_function: true,
        hide_gc: false,
        hide_exceptions: false,
    };
    let out = render(
        &Collapsed {
            value: Value::Samples,
        },
        &profile(opts),
    );
    golden("collapsed-threads-function-idle.txt", &out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("thread 100 (MainThread);<module> (/app/main.py);main (/app/main.py);work (/app/main.py) 5\n"), "{text}");
    assert!(
        text.contains("thread 101 (worker <b>);<module> (/app/main.py);wait (/app/main.py) 1\n"),
        "{text}"
    );
}

#[test]
fn speedscope_golden_and_schema() {
    let opts = ProfileOptions {
        per_thread: true,
        ..ProfileOptions::default()
    };
    let out = render(&Speedscope, &profile(opts));
    golden("speedscope.json", &out);
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let schema_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/speedscope-file-format-schema.json");
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    // Beyond the schema: indexes in range, one weight per sample, names round-trip exactly.
    let frames = doc["shared"]["frames"].as_array().unwrap();
    let names: Vec<&str> = frames.iter().map(|f| f["name"].as_str().unwrap()).collect();
    for n in hostile_names() {
        assert!(names.contains(&n.as_str()), "{n:?} missing from {names:?}");
    }
    let profiles = doc["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 2, "one per thread");
    let mut total = 0u64;
    for p in profiles {
        let samples = p["samples"].as_array().unwrap();
        let weights = p["weights"].as_array().unwrap();
        assert_eq!(samples.len(), weights.len());
        for s in samples {
            for i in s.as_array().unwrap() {
                assert!((i.as_u64().unwrap() as usize) < frames.len());
            }
        }
        let sum: u64 = weights.iter().map(|w| w.as_u64().unwrap()).sum();
        assert_eq!(p["endValue"].as_u64().unwrap(), sum);
        total += sum;
    }
    assert_eq!(
        total,
        4 * 10_000_000 + 30_000_000 + 10_000_000 + 10_000_000 + 6 * 1_000_000
    );

    // Also valid with no samples at all.
    let empty = render(&Speedscope, &Profile::default());
    let doc: serde_json::Value = serde_json::from_slice(&empty).unwrap();
    assert!(validator.is_valid(&doc));
}

#[test]
fn chrome_golden_and_structure() {
    let out = render(&Chrome, &profile(ProfileOptions::default()));
    golden("chrome.json", &out);
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["otherData"]["synthetic_timeline"], false);
    let events = doc["traceEvents"].as_array().unwrap();
    let x: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    // Per thread, X events nest properly: sorted by start, a child ends within its parent.
    let mut by_tid: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
    for e in &x {
        by_tid.entry(e["tid"].as_u64().unwrap()).or_default().push((
            e["ts"].as_f64().unwrap(),
            e["ts"].as_f64().unwrap() + e["dur"].as_f64().unwrap(),
        ));
    }
    for spans in by_tid.values() {
        let mut open: Vec<(f64, f64)> = Vec::new();
        for &(s, e) in spans {
            while open.last().is_some_and(|&(_, pe)| pe <= s) {
                open.pop();
            }
            if let Some(&(ps, pe)) = open.last() {
                assert!(ps <= s && e <= pe + 1e-9, "({s},{e}) overlaps ({ps},{pe})");
            }
            open.push((s, e));
        }
    }
    // MainThread's <module> frame is one continuous activation of 4*10+30+10+10 ms.
    let module = x
        .iter()
        .find(|e| e["tid"] == 100 && e["name"].as_str().unwrap().starts_with("<module>"))
        .unwrap();
    assert_eq!(module["dur"].as_f64().unwrap(), 90_000.0);
    // Native and kernel frames say so, with their shared object.
    let qsort = x.iter().find(|e| e["name"] == "qsort (libc.so.6)").unwrap();
    assert_eq!(qsort["cat"], "native");
    assert_eq!(qsort["args"]["module"], LIBC);
    assert!(x
        .iter()
        .any(|e| e["name"] == "[syscall]" && e["cat"] == "kernel"));
    let names: Vec<&str> = x.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(names.iter().any(|n| n.starts_with(SCRIPT)));
    assert!(events
        .iter()
        .any(|e| e["ph"] == "M" && e["args"]["name"] == "thread 101 (worker <b>)"));

    // Without a timeline: laid out, flagged as synthetic, still valid.
    let mut p = profile(ProfileOptions::default());
    p.timeline.clear();
    let doc: serde_json::Value = serde_json::from_slice(&render(&Chrome, &p)).unwrap();
    assert_eq!(doc["otherData"]["synthetic_timeline"], true);
}

fn xml_opts<'a>() -> roxmltree::ParsingOptions<'a> {
    // inferno emits the standard SVG 1.1 DOCTYPE (no internal subset, no entities).
    roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    }
}

fn assert_safe_svg(svg: &str) {
    let doc = roxmltree::Document::parse_with_options(svg, xml_opts())
        .unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"));
    // inferno's own interactive script is the only <script>, and our payload is not in it.
    let scripts: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("script"))
        .collect();
    assert!(scripts.len() <= 1, "injected <script>");
    for s in &scripts {
        let code: String = s.descendants().filter_map(|n| n.text()).collect();
        assert!(!code.contains("alert(1)"), "payload inside the script");
    }
    assert!(
        !doc.descendants().any(|n| n.has_tag_name("b")),
        "injected element"
    );
}

/// The fill colour of each frame of a flamegraph SVG, by the start of its title.
fn svg_fills(svg: &str) -> Vec<(String, String)> {
    let doc = roxmltree::Document::parse_with_options(svg, xml_opts()).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("g"))
        .filter_map(|g| {
            let title = g.children().find(|c| c.has_tag_name("title"))?.text()?;
            let fill = g
                .children()
                .find(|c| c.has_tag_name("rect"))?
                .attribute("fill")?;
            Some((title.to_string(), fill.to_string()))
        })
        .collect()
}

/// `rgb(r,g,b)` → (r, g, b).
fn rgb(fill: &str) -> (u8, u8, u8) {
    let v: Vec<u8> = fill
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .map(|x| x.trim().parse().unwrap())
        .collect();
    (v[0], v[1], v[2])
}

#[test]
fn svg_colours_native_and_kernel_frames_apart() {
    let p = profile(ProfileOptions::default());
    let svg = String::from_utf8(render(&Svg::default(), &p)).unwrap();
    let fills = svg_fills(&svg);
    let fill_of = |prefix: &str| {
        let (_, f) = fills
            .iter()
            .find(|(t, _)| t.starts_with(prefix))
            .unwrap_or_else(|| panic!("no frame {prefix}: {fills:?}"));
        rgb(f)
    };
    for native in [
        "qsort (libc.so.6)",
        "recurse (libchain.so) [/src/chain.c:42]",
    ] {
        let (r, g, b) = fill_of(native);
        assert!(b > r && b > g, "{native} is not blue: {r},{g},{b}");
    }
    let (r, g, b) = fill_of("[syscall]");
    assert!(r > g && g > b, "[syscall] is not orange: {r},{g},{b}");
    // Python frames keep inferno's Python palette (reds, yellows, aqua): never the blues.
    for python in ["compare (/app/main.py:30)", "main (/app/main.py:13)"] {
        let (r, _, b) = fill_of(python);
        assert!(r > b, "{python}: {r},{b}");
    }
}

#[test]
fn svg_escapes_hostile_names() {
    let opts = ProfileOptions {
        per_thread: true,
        ..ProfileOptions::default()
    };
    let mut p = profile(opts);
    p.meta.target = format!("{SCRIPT} \u{1b}]0;title\u{7}");
    let svg = String::from_utf8(render(&Svg::default(), &p)).unwrap();
    assert_safe_svg(&svg);
    let doc = roxmltree::Document::parse_with_options(&svg, xml_opts()).unwrap();
    let texts: String = doc
        .descendants()
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(texts.contains(SCRIPT), "the name is shown as text");
    assert!(texts.contains("worker <b>"));
    // Same input, same bytes.
    assert_eq!(svg.as_bytes(), render(&Svg::default(), &p));

    let empty = String::from_utf8(render(
        &Svg::default(),
        &Profile {
            meta: p.meta.clone(),
            ..Profile::default()
        },
    ))
    .unwrap();
    assert_safe_svg(&empty);
    assert!(empty.contains("No samples were recorded."));
}

#[test]
fn diff_svg_marks_growth() {
    let base = profile(ProfileOptions::default());
    let mut a = aggregator();
    let main = ThreadKey {
        os_tid: 100,
        name: Some("MainThread"),
        interpreter_id: 0,
    };
    let slow = [
        FrameKey::python("<module>", "/app/main.py", Some(1)),
        FrameKey::python("slow_new_path", "/app/main.py", Some(99)),
    ];
    for i in 0..20 {
        a.record(
            &main,
            &slow,
            SampleFlags::HOLDS_GIL,
            1_000_000_000 + i,
            10_000_000,
        )
        .unwrap();
    }
    let new = a.profile(meta(SCRIPT), ProfileOptions::default()).unwrap();
    let mut out = Vec::new();
    write_diff_svg(&base, &new, &DiffSvg::default(), &mut out).unwrap();
    let svg = String::from_utf8(out).unwrap();
    assert_safe_svg(&svg);
    let doc = roxmltree::Document::parse_with_options(&svg, xml_opts()).unwrap();
    // inferno puts the delta in each frame's <title>: the new frame is all growth.
    let title = doc
        .descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text())
        .find(|t| t.starts_with("slow_new_path"))
        .expect("new frame drawn");
    assert!(title.contains('+'), "{title}");
}

// ---- pprof: a minimal protobuf decoder ----

#[derive(Debug)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(b: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*pos];
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

fn fields(b: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < b.len() {
        let key = varint(b, &mut pos);
        let f = match key & 7 {
            0 => Field::Varint(varint(b, &mut pos)),
            2 => {
                let len = varint(b, &mut pos) as usize;
                pos += len;
                Field::Bytes(&b[pos - len..pos])
            }
            w => panic!("unexpected wire type {w}"),
        };
        out.push((key >> 3, f));
    }
    out
}

fn packed(b: &[u8]) -> Vec<u64> {
    let mut pos = 0;
    let mut v = Vec::new();
    while pos < b.len() {
        v.push(varint(b, &mut pos));
    }
    v
}

fn get_varint(fs: &[(u64, Field<'_>)], n: u64) -> u64 {
    fs.iter()
        .find_map(|(k, f)| match f {
            Field::Varint(v) if *k == n => Some(*v),
            _ => None,
        })
        .unwrap_or(0)
}

fn get_bytes<'a>(fs: &[(u64, Field<'a>)], n: u64) -> Vec<&'a [u8]> {
    fs.iter()
        .filter_map(|(k, f)| match f {
            Field::Bytes(b) if *k == n => Some(*b),
            _ => None,
        })
        .collect()
}

fn pprof_bytes(p: &Profile) -> Vec<u8> {
    let gz = render(&Pprof, p);
    let mut body = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut body)
        .unwrap();
    body
}

/// Decodes to: folded stacks (leaf last, "function:line") → [samples, ns].
fn decode_pprof(body: &[u8]) -> (BTreeMap<String, Vec<u64>>, Vec<String>) {
    let top = fields(body);
    let strings: Vec<String> = get_bytes(&top, 6)
        .iter()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    assert_eq!(strings[0], "");
    let mut functions: BTreeMap<u64, String> = BTreeMap::new();
    for f in get_bytes(&top, 5) {
        let f = fields(f);
        functions.insert(
            get_varint(&f, 1),
            strings[get_varint(&f, 2) as usize].clone(),
        );
    }
    let mut locations: BTreeMap<u64, String> = BTreeMap::new();
    for l in get_bytes(&top, 4) {
        let l = fields(l);
        let line = fields(get_bytes(&l, 4)[0]);
        let name = &functions[&get_varint(&line, 1)];
        locations.insert(
            get_varint(&l, 1),
            format!("{name}:{}", get_varint(&line, 2)),
        );
    }
    let types: Vec<String> = get_bytes(&top, 1)
        .iter()
        .map(|t| {
            let t = fields(t);
            format!(
                "{}/{}",
                strings[get_varint(&t, 1) as usize],
                strings[get_varint(&t, 2) as usize]
            )
        })
        .collect();
    let mut stacks = BTreeMap::new();
    for s in get_bytes(&top, 2) {
        let s = fields(s);
        let mut locs = packed(get_bytes(&s, 1)[0]);
        locs.reverse();
        let key = locs
            .iter()
            .map(|l| locations[l].clone())
            .collect::<Vec<_>>()
            .join(";");
        let values = packed(get_bytes(&s, 2)[0]);
        let e = stacks.entry(key).or_insert(vec![0, 0]);
        e[0] += values[0];
        e[1] += values[1];
    }
    (stacks, types)
}

#[test]
fn pprof_decodes_back() {
    let p = profile(ProfileOptions::default());
    let (stacks, types) = decode_pprof(&pprof_bytes(&p));
    assert_eq!(types, ["samples/count", "wall/nanoseconds"]);
    assert_eq!(stacks["<module>:1;main:10;work:20"], vec![3, 50_000_000]);
    assert_eq!(
        stacks["<module>:1;main:11;main:11;main:12"],
        vec![1, 10_000_000]
    );
    assert_eq!(
        stacks[&format!("<module>:1;{SCRIPT}:7")],
        vec![1, 1_000_000]
    );
    let total: u64 = stacks.values().map(|v| v[0]).sum();
    assert_eq!(total, p.total().samples);

    let threads = ProfileOptions {
        per_thread: true,
        ..ProfileOptions::default()
    };
    let (stacks, _) = decode_pprof(&pprof_bytes(&profile(threads)));
    assert!(
        stacks.contains_key("thread 100 (MainThread):0;<module>:1;main:10;work:20"),
        "{stacks:?}"
    );
}

#[test]
fn pprof_loads_in_go_tool_pprof() {
    // `.ci/provision.sh` installs go; a missing one is a failure, not a skip.
    let stdout = go_pprof(&["-top", "-nodecount=100", "-sample_index=wall"]);
    assert!(stdout.contains("Type: wall"), "{stdout}");
    // The heaviest leaf is work: lines 20 and 21 together, 50 + 20 ms, flat and cumulative.
    let first = stdout
        .lines()
        .skip_while(|l| !l.contains("flat%"))
        .nth(1)
        .unwrap_or("");
    assert!(
        first.trim_start().starts_with("70ms") && first.ends_with(" work"),
        "{stdout}"
    );
    assert!(stdout.contains("Total samples = 96ms"), "{stdout}");
    // The native stack's leaf: the kernel boundary.
    assert!(stdout.contains("10ms 10.42%  [syscall]"), "{stdout}");
}

/// `go tool pprof ARGS profile.pb.gz` on the test profile: stdout.
fn go_pprof(args: &[&str]) -> String {
    let go = which("go").expect("`go` is not installed: run .ci/provision.sh (installs golang-go)");
    let tmp = strobe_testkit::TempDir::new();
    let dir = tmp.path();
    let file = dir.join("profile.pb.gz");
    let p = profile(ProfileOptions::default());
    write_atomically(&file, |w| Pprof.write(&p, w)).unwrap();
    let out = std::process::Command::new(go)
        .args(["tool", "pprof"])
        .args(args)
        .arg(&file)
        .env("HOME", dir)
        .env("GOCACHE", dir.join("gocache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "go tool pprof {args:?} failed: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What continuous-profiling servers index on, read back by pprof itself: thread name, id and
/// pid labels (`-tags`, `-tagfocus`), lines (`-lines`), and a mapping per native binary.
#[test]
fn pprof_labels_lines_and_mappings_for_the_fleet() {
    let tags = go_pprof(&["-tags", "-sample_index=wall"]);
    for want in [
        "thread_name",
        "MainThread",
        "worker <b>",
        "thread_id",
        "pid",
        "4242",
    ] {
        assert!(tags.contains(want), "{want} missing from -tags:\n{tags}");
    }
    // Only MainThread's samples: 4 x 10 + 30 + 10 + 10 ms.
    let main = go_pprof(&[
        "-top",
        "-sample_index=wall",
        "-tagfocus=thread_name=MainThread",
    ]);
    assert!(main.contains("Total samples = 96ms"), "{main}");
    assert!(main.contains("Showing nodes accounting for 90ms"), "{main}");
    let lines = go_pprof(&["-top", "-lines", "-sample_index=wall", "-nodecount=100"]);
    assert!(lines.contains("work /app/main.py:20"), "{lines}");
    assert!(lines.contains("work /app/main.py:21"), "{lines}");
    let raw = go_pprof(&["-raw"]);
    let mappings = raw
        .split("Mappings")
        .nth(1)
        .unwrap_or_else(|| panic!("no mappings:\n{raw}"));
    for binary in [LIBC, "/opt/ext/libchain.so"] {
        assert!(mappings.contains(binary), "{binary} has no mapping:\n{raw}");
    }
}

fn which(cmd: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(cmd))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

// ---- raw ----

/// Writes a recording the way the recorder does: several appends and flushes.
fn raw_recording() -> (Vec<u8>, Vec<usize>, Vec<u64>) {
    let a = aggregator();
    let timeline = a.counts().timeline().to_vec();
    let mut w = RawWriter::new(Vec::new(), &meta("python app.py")).unwrap();
    // Chunk boundaries (file offsets after each flush) and samples complete at each.
    let mut ends = vec![w.get_ref().len()];
    let mut complete = vec![0u64];
    let mut done = 0u64;
    for (i, batch) in timeline.chunks(3).enumerate() {
        w.append(a.tables(), batch).unwrap();
        done += batch.len() as u64;
        w.record_stats(&RawStats {
            duration_ns: 1_000 * (i as u64 + 1),
            errors: i as u64,
            dropped: 0,
        });
        w.flush().unwrap();
        ends.push(w.get_ref().len());
        complete.push(done);
    }
    (w.finish().unwrap(), ends, complete)
}

#[test]
fn raw_round_trips() {
    let (bytes, ends, _) = raw_recording();
    let r = read_raw_bytes(&bytes).unwrap();
    assert_eq!(r.ignored_bytes, 0);
    let original = aggregator()
        .profile(meta("python app.py"), ProfileOptions::EVERYTHING)
        .unwrap();
    assert_eq!(r.profile.stacks, original.stacks);
    assert_eq!(r.profile.timeline, original.timeline);
    assert_eq!(
        format!("{:?}", r.profile.tables),
        format!("{:?}", original.tables)
    );
    assert_eq!(r.profile.meta.target, "python app.py");
    assert_eq!(r.profile.meta.pid, Some(4242));
    assert_eq!(r.profile.meta.python_version.as_deref(), Some("3.12.1"));
    assert_eq!(r.profile.meta.rate_requested_hz, 100.0);
    assert_eq!(
        r.profile.meta.errors,
        ends.len() as u64 - 2,
        "last stats record wins"
    );
    assert_eq!(r.chunks, ends.len());
    // Converting the recording gives the same output as the live profile.
    for opts in [
        ProfileOptions::default(),
        ProfileOptions {
            per_thread: true,
            by_function: true,
            ..Default::default()
        },
    ] {
        let live = aggregator().profile(r.profile.meta.clone(), opts).unwrap();
        let converted = r.profile.with_options(opts).unwrap();
        for kind in [
            FormatKind::Collapsed,
            FormatKind::Speedscope,
            FormatKind::Chrome,
        ] {
            assert_eq!(
                render(&*kind.writer(), &converted),
                render(&*kind.writer(), &live),
                "{kind:?}"
            );
        }
    }
    // A profile written as raw (no timeline: aggregated records) reads back with equal counts.
    let mut p = profile(ProfileOptions::default());
    p.timeline.clear();
    let again = read_raw_bytes(&render(&*FormatKind::Raw.writer(), &p)).unwrap();
    assert_eq!(again.profile.stacks, p.stacks);
    assert_eq!(again.profile.meta, p.meta);
}

#[test]
fn raw_truncated_at_every_byte_reads_every_complete_chunk() {
    let (bytes, ends, complete) = raw_recording();
    assert!(ends.len() > 3);
    for cut in 0..=bytes.len() {
        let r = read_raw_bytes(&bytes[..cut]);
        if cut < 12 {
            assert!(r.is_err(), "cut {cut}");
            continue;
        }
        let r = r.unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        // The last chunk boundary at or before the cut.
        let i = ends.iter().rposition(|&e| e <= cut).unwrap_or(0);
        let expect_samples = if cut < ends[0] { 0 } else { complete[i] };
        assert_eq!(r.profile.timeline.len() as u64, expect_samples, "cut {cut}");
        let boundary = if cut < ends[0] { 12 } else { ends[i] };
        assert_eq!(r.ignored_bytes, cut - boundary, "cut {cut}");
    }
    // A flipped bit in the middle stops reading there, cleanly.
    let mut bad = bytes.clone();
    let mid = ends[2] + 10;
    bad[mid] ^= 0x40;
    let r = read_raw_bytes(&bad).unwrap();
    assert_eq!(r.profile.timeline.len() as u64, complete[2]);
    assert_eq!(r.ignored_bytes, bytes.len() - ends[2]);
    // Not a recording at all.
    assert!(read_raw_bytes(b"<svg></svg> and more bytes")
        .unwrap_err()
        .to_string()
        .contains("not a strobe raw recording"));
}

#[test]
fn format_names_round_trip() {
    for k in FormatKind::ALL {
        assert_eq!(FormatKind::from_name(k.name()), Some(k));
    }
    assert_eq!(FormatKind::from_name("flamegraph"), None);
}

#[test]
fn gil_filter_keeps_only_holders() {
    let gil = ProfileOptions {
        filter: SampleFilter {
            include_idle: false,
            gil_only: true,
            exception_only: false,
        },
        ..Default::default()
    };
    let text = String::from_utf8(render(
        &Collapsed {
            value: Value::Samples,
        },
        &profile(gil),
    ))
    .unwrap();
    assert!(text.contains("work"));
    assert!(!text.contains("alert"), "worker never held the GIL: {text}");
}

/// A thread in the collector: `<GC>` on top of the line that triggered it, 3 samples of 5
/// (10 ms each; collapsed counts µs).
fn gc_aggregator() -> Aggregator {
    let mut a = Aggregator::new();
    a.counts_mut().keep_timeline(true);
    let main = ThreadKey {
        os_tid: 100,
        name: Some("MainThread"),
        interpreter_id: 0,
    };
    let f = |function: &'static str, line| FrameKey::python(function, "/app/gc.py", Some(line));
    for i in 0..5u64 {
        let mut frames = vec![f("<module>", 1), f("allocate", 10)];
        if i % 2 == 0 {
            frames.push(FrameKey::gc());
        }
        a.record(
            &main,
            &frames,
            SampleFlags::HOLDS_GIL,
            (i + 1) * 10_000_000,
            10_000_000,
        )
        .unwrap();
    }
    a
}

#[test]
fn gc_frames_survive_raw_and_every_format_and_no_gc_drops_only_them() {
    let a = gc_aggregator();
    let mut w = RawWriter::new(Vec::new(), &meta("python gc.py")).unwrap();
    w.append(a.tables(), a.counts().timeline()).unwrap();
    let bytes = w.finish().unwrap();
    assert_eq!(&bytes[8..10], &5u16.to_le_bytes(), "raw format version 5");
    let r = read_raw_bytes(&bytes).unwrap();
    let gc_frames: Vec<_> = r
        .profile
        .tables
        .frames()
        .filter(|(_, f)| f.kind == FrameKind::Interpreter)
        .map(|(_, f)| r.profile.tables.str(f.function).to_string())
        .collect();
    assert_eq!(gc_frames, vec!["<GC>".to_string()]);

    let with = r.profile.with_options(ProfileOptions::default()).unwrap();
    let collapsed = String::from_utf8(render(&Collapsed::default(), &with)).unwrap();
    assert_eq!(
        collapsed,
        "<module> (/app/gc.py:1);allocate (/app/gc.py:10) 20000\n\
         <module> (/app/gc.py:1);allocate (/app/gc.py:10);<GC> 30000\n"
    );
    for kind in FormatKind::ALL {
        let out = match kind {
            FormatKind::Pprof => pprof_bytes(&with),
            _ => render(&*kind.writer(), &with),
        };
        let text = String::from_utf8_lossy(&out);
        assert!(
            ["<GC>", "&lt;GC&gt;", "\\u003cGC\\u003e"]
                .iter()
                .any(|s| text.contains(s)),
            "{kind:?} lost the <GC> frame"
        );
    }

    // --no-gc: the same samples, on the line below.
    let without = r
        .profile
        .with_options(ProfileOptions {
            hide_gc: true,
            ..Default::default()
        })
        .unwrap();
    let collapsed = String::from_utf8(render(&Collapsed::default(), &without)).unwrap();
    assert_eq!(
        collapsed,
        "<module> (/app/gc.py:1);allocate (/app/gc.py:10) 50000\n"
    );
    assert_eq!(without.total(), with.total());
    for kind in FormatKind::ALL {
        let out = match kind {
            FormatKind::Pprof => pprof_bytes(&without),
            _ => render(&*kind.writer(), &without),
        };
        assert!(
            !String::from_utf8_lossy(&out).contains("GC&gt;")
                && !String::from_utf8_lossy(&out).contains("<GC>"),
            "{kind:?}"
        );
    }
}

/// A thread that handles `ValueError` in 2 samples of 5: the flag set, `<raise ValueError>` on
/// top of the handling line.
fn exception_aggregator() -> Aggregator {
    let mut a = Aggregator::new();
    a.counts_mut().keep_timeline(true);
    let main = ThreadKey {
        os_tid: 100,
        name: Some("MainThread"),
        interpreter_id: 0,
    };
    let f = |function: &'static str, line| FrameKey::python(function, "/app/exc.py", Some(line));
    let label = strobe_aggregate::exception_label("ValueError");
    for i in 0..5u64 {
        let (frames, flags) = if i % 3 == 1 {
            (
                vec![
                    f("<module>", 1),
                    f("handle", 20),
                    FrameKey::exception(&label),
                ],
                SampleFlags::HOLDS_GIL.with(SampleFlags::EXCEPTION),
            )
        } else {
            (
                vec![f("<module>", 1), f("work", 10)],
                SampleFlags::HOLDS_GIL,
            )
        };
        a.record(&main, &frames, flags, (i + 1) * 10_000_000, 10_000_000)
            .unwrap();
    }
    a
}

#[test]
fn exception_frames_and_flags_survive_raw_and_the_exception_filter_keeps_only_them() {
    let a = exception_aggregator();
    let mut w = RawWriter::new(Vec::new(), &meta("python exc.py")).unwrap();
    w.append(a.tables(), a.counts().timeline()).unwrap();
    let bytes = w.finish().unwrap();
    let r = read_raw_bytes(&bytes).unwrap();

    // `--mode exception`: only the two samples in the except block, with the frame.
    let only = r
        .profile
        .with_options(ProfileOptions {
            filter: SampleFilter {
                include_idle: false,
                gil_only: false,
                exception_only: true,
            },
            ..Default::default()
        })
        .unwrap();
    let collapsed = String::from_utf8(render(&Collapsed::default(), &only)).unwrap();
    assert_eq!(
        collapsed,
        "<module> (/app/exc.py:1);handle (/app/exc.py:20);<raise ValueError> 20000\n"
    );
    for kind in FormatKind::ALL {
        let out = match kind {
            FormatKind::Pprof => pprof_bytes(&only),
            _ => render(&*kind.writer(), &only),
        };
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("raise ValueError"),
            "{kind:?} lost the <raise ValueError> frame"
        );
    }

    // Other modes: every sample, the frame left out (its samples are the line's own).
    let cpu = r
        .profile
        .with_options(ProfileOptions {
            hide_exceptions: true,
            ..Default::default()
        })
        .unwrap();
    let collapsed = String::from_utf8(render(&Collapsed::default(), &cpu)).unwrap();
    assert_eq!(
        collapsed,
        "<module> (/app/exc.py:1);handle (/app/exc.py:20) 20000\n\
         <module> (/app/exc.py:1);work (/app/exc.py:10) 30000\n"
    );
}

/// A function's first line (`co_firstlineno`) survives the raw format and reaches pprof's
/// `Function.start_line` (field 5), gecko's `funcTable.lineNumber` and, aggregated by function,
/// speedscope's frame `line`; two functions of one name and file but other first lines stay two.
#[test]
fn first_lines_reach_pprof_gecko_and_speedscope() {
    let mut a = Aggregator::new();
    a.counts_mut().keep_timeline(true);
    let main = ThreadKey {
        os_tid: 100,
        name: Some("MainThread"),
        interpreter_id: 0,
    };
    let f = |function: &'static str, line, first| {
        FrameKey::python(function, "/app/first.py", Some(line)).with_first_line(Some(first))
    };
    let stacks = [
        vec![f("<module>", 30, 1), f("main", 25, 20), f("inner", 8, 6)],
        vec![f("<module>", 30, 1), f("main", 26, 20), f("inner", 14, 12)],
        vec![
            f("<module>", 30, 1),
            f("main", 26, 20),
            native("qsort", "", None, LIBC),
        ],
    ];
    for (i, s) in stacks.iter().enumerate() {
        a.record(
            &main,
            s,
            SampleFlags::HOLDS_GIL,
            (i as u64 + 1) * 10_000_000,
            10_000_000,
        )
        .unwrap();
    }
    let mut w = RawWriter::new(Vec::new(), &meta("python first.py")).unwrap();
    w.append(a.tables(), a.counts().timeline()).unwrap();
    let raw = read_raw_bytes(&w.finish().unwrap()).unwrap();
    let t = &raw.profile.tables;
    let mut firsts: Vec<(String, Option<i32>, Option<i32>)> = t
        .frames()
        .map(|(_, f)| (t.str(f.function).to_string(), f.line, f.first_line))
        .collect();
    firsts.sort();
    assert_eq!(
        firsts,
        [
            ("<module>".to_string(), Some(30), Some(1)),
            ("inner".to_string(), Some(8), Some(6)),
            ("inner".to_string(), Some(14), Some(12)),
            ("main".to_string(), Some(25), Some(20)),
            ("main".to_string(), Some(26), Some(20)),
            ("qsort".to_string(), None, None),
        ]
    );
    let p = raw.profile.with_options(ProfileOptions::default()).unwrap();

    // pprof: (name, start_line) of every Function.
    let body = pprof_bytes(&p);
    let top = fields(&body);
    let strings: Vec<String> = get_bytes(&top, 6)
        .iter()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    let mut functions: Vec<(String, u64)> = get_bytes(&top, 5)
        .iter()
        .map(|f| {
            let f = fields(f);
            (
                strings[get_varint(&f, 2) as usize].clone(),
                get_varint(&f, 5),
            )
        })
        .collect();
    functions.sort();
    assert_eq!(
        functions,
        [
            ("<module>".to_string(), 1),
            ("inner".to_string(), 6),
            ("inner".to_string(), 12),
            ("main".to_string(), 20),
            ("qsort".to_string(), 0),
        ]
    );

    // gecko: funcTable.lineNumber, null for the native function.
    let v: serde_json::Value = serde_json::from_slice(&render(&strobe_output::Gecko, &p)).unwrap();
    let names = v["shared"]["stringArray"].as_array().unwrap();
    let ft = &v["threads"][0]["funcTable"];
    let mut gecko: Vec<(String, Option<u64>)> = ft["name"]
        .as_array()
        .unwrap()
        .iter()
        .zip(ft["lineNumber"].as_array().unwrap())
        .map(|(n, l)| {
            (
                names[n.as_u64().unwrap() as usize]
                    .as_str()
                    .unwrap()
                    .to_string(),
                l.as_u64(),
            )
        })
        .collect();
    gecko.sort();
    assert_eq!(
        gecko,
        [
            ("<module>".to_string(), Some(1)),
            ("inner".to_string(), Some(6)),
            ("inner".to_string(), Some(12)),
            ("main".to_string(), Some(20)),
            ("qsort (libc.so.6)".to_string(), None),
        ]
    );

    // speedscope: the running line per frame; by function, the function's first line.
    let by_function = raw
        .profile
        .with_options(ProfileOptions {
            by_function: true,
            ..Default::default()
        })
        .unwrap();
    for (profile, want) in [
        (&p, vec![8, 14, 25, 26, 30]),
        (&by_function, vec![1, 6, 12, 20]),
    ] {
        let v: serde_json::Value = serde_json::from_slice(&render(&Speedscope, profile)).unwrap();
        let mut lines: Vec<u64> = v["shared"]["frames"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["name"] != "qsort")
            .map(|f| f["line"].as_u64().unwrap())
            .collect();
        lines.sort_unstable();
        assert_eq!(lines, want);
    }
}

/// Sample `n` of a many-stacks stream: a path through 16 functions, 1 to 24 deep, on one of two
/// threads; every seventh sample the same short idle stack (a hot stack that comes back).
fn many_stacks_sample(names: &[String], n: u64) -> (ThreadKey<'static>, Vec<FrameKey<'_>>) {
    if n.is_multiple_of(7) {
        let f = |name, line| FrameKey::python(name, "/srv/app/main.py", Some(line));
        return (two_threads(n), vec![f("main", 1), f("wait", 2)]);
    }
    (two_threads(n), path_frames(names, n, 24))
}

#[test]
fn raw_recorded_with_a_tiny_stack_table_converts_to_exactly_the_profile_without_one() {
    use strobe_aggregate::{pipeline_streamed, BreakdownOptions, STACK_BYTES};
    let names: Vec<String> = (0..16).map(|i| format!("f{i}")).collect();
    // About 8 stacks a generation: nearly every stack is forgotten and some come back.
    let budget = 2 * 8 * (STACK_BYTES + 48);
    let (mut sampler, mut agg) = pipeline_streamed(64, budget, BreakdownOptions::default());
    let mut w = RawWriter::new(Vec::new(), &meta("python paths.py")).unwrap();
    let mut reference = Aggregator::new();
    reference.counts_mut().keep_timeline(true);
    let flags = |n: u64| {
        if n.is_multiple_of(3) {
            SampleFlags::HOLDS_GIL
        } else {
            SampleFlags::IDLE
        }
    };
    let mut n = 0u64;
    // Rounds of 1 to 4 samples; the writer drains after 1 to 5 rounds, so forgets reach the
    // aggregator with samples older than them still queued.
    for round in 0..3_000u64 {
        for _ in 0..1 + round % 4 {
            let (thread, frames) = many_stacks_sample(&names, n);
            assert!(sampler
                .record(&thread, &frames, flags(n), n * 1000, 1000 + n % 5)
                .unwrap());
            reference
                .record(&thread, &frames, flags(n), n * 1000, 1000 + n % 5)
                .unwrap();
            n += 1;
        }
        sampler.collect_stacks();
        if round % 5 == round % 3 {
            let d = agg.drain().unwrap();
            w.append(d.tables, d.samples).unwrap();
            if round % 7 == 0 {
                w.flush().unwrap();
            }
        }
    }
    drop(sampler);
    while !agg.finished() {
        let d = agg.drain().unwrap();
        w.append(d.tables, d.samples).unwrap();
    }
    assert_eq!(agg.counts().total().samples, n);
    let redefined = agg.tables().num_stacks();
    let bytes = w.finish().unwrap();
    let r = read_raw_bytes(&bytes).unwrap();
    assert_eq!(r.ignored_bytes, 0);
    let without = reference
        .profile(r.profile.meta.clone(), ProfileOptions::EVERYTHING)
        .unwrap();
    // Stacks were forgotten and defined again: more stack ids than distinct stacks.
    assert!(agg.tables().first_stack().index() > 1000);
    assert!(
        redefined > reference.tables().num_stacks() + 100,
        "{redefined} ids for {} stacks",
        reference.tables().num_stacks()
    );
    assert_eq!(r.profile.stacks, without.stacks);
    assert_eq!(r.profile.timeline, without.timeline);
    assert_eq!(
        format!("{:?}", r.profile.tables),
        format!("{:?}", without.tables)
    );
    for opts in [
        ProfileOptions::default(),
        ProfileOptions {
            per_thread: true,
            by_function: true,
            filter: SampleFilter {
                include_idle: true,
                gil_only: true,
                exception_only: false,
            },
            hide_gc: false,
            hide_exceptions: false,
        },
    ] {
        let converted = r.profile.with_options(opts).unwrap();
        let live = reference.profile(r.profile.meta.clone(), opts).unwrap();
        for kind in [
            FormatKind::Collapsed,
            FormatKind::Speedscope,
            FormatKind::Pprof,
        ] {
            assert_eq!(
                render(&*kind.writer(), &converted),
                render(&*kind.writer(), &live),
                "{kind:?}"
            );
        }
    }
}
