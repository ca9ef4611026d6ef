//! The Firefox Profiler format (`--format gecko`) on a synthetic profile, checked field by field
//! against the processed-profile type definitions the profiler publishes (`src/types/profile.ts`
//! and `docs-developer/CHANGELOG-formats.md` in firefox-devtools/profiler), version 56.
//!
//! Fields checked:
//! - top level: `meta` (object), `libs` (array), `threads` (array), `shared.stringArray`
//!   (array of strings; every string index below points into it).
//! - `meta`: `preprocessedProfileVersion` = 56, `interval` (ms, = 1000 / rate), `startTime` (ms
//!   since the epoch), `profilingEndTime` (ms after `startTime`), `symbolicationNotSupported`,
//!   `sourceCodeIsNotOnSearchfox`, `keepProfileThreadOrder` (imported-profile switches),
//!   `product` (string), `categories` (array of `{name, color, subcategories}` with a known
//!   colour name, subcategories non-empty, and at least one `grey` category: the default one),
//!   `markerSchema` = [], `extra` (sections of `{label, entries: [{label, format, value}]}`)
//!   carrying Python version, rate, errors, dropped, strobe version.
//! - every thread: `name` (string), `processType` (string), `pid` (string), `tid` (number),
//!   `isMainThread` (bool), `processStartupTime` (number), `registerTime` (number),
//!   `pausedRanges` (array), and the tables below, each with every column an array of exactly
//!   `length` entries.
//! - `samples`: `stack` (index into stackTable), `time` (ms, non-decreasing), `weight` (numbers),
//!   `weightType` = "samples".
//! - `stackTable`: `frame` (index into frameTable), `prefix` (null or an index smaller than the
//!   stack's own, so the table is a tree in topological order).
//! - `frameTable`: `address` (-1: not native), `inlineDepth`, `category` (index into
//!   `meta.categories`), `subcategory` (0), `func` (index into funcTable), `nativeSymbol`,
//!   `innerWindowID`, `line` (number or null), `column`.
//! - `funcTable`: `name` and `fileName` (string indexes), `isJS`, `relevantForJS` (bools),
//!   `resource` (-1 or an index into resourceTable), `lineNumber` (the function's first line:
//!   a positive number, or null where unknown), `columnNumber`.
//! - `markers`, `resourceTable`, `nativeSymbols`: present with their columns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use strobe_aggregate::{
    Aggregator, FrameKey, Metadata, Profile, ProfileOptions, SampleFlags, ThreadKey,
};
use strobe_output::{Format, Gecko, PROCESSED_PROFILE_VERSION};

const HOSTILE: &str = "quote\"back\\slash <script>\n\u{2028}";

fn meta() -> Metadata {
    Metadata {
        target: "python app.py --name '<x>'".to_owned(),
        pid: Some(100),
        python_version: Some("3.12.1".to_owned()),
        strobe_version: "0.1.0".to_owned(),
        rate_requested_hz: 250.0,
        start_unix_ns: 1_700_000_000_123_456_789,
        duration_ns: 100_000_000,
        errors: 2,
        dropped: 1,
    }
}

/// Two threads (one unnamed), an idle sample, a late sample, a hostile name, and a sample
/// recorded out of time order.
fn profile(timeline: bool) -> Profile {
    let mut a = Aggregator::new();
    a.counts_mut().keep_timeline(timeline);
    let main = ThreadKey {
        os_tid: 100,
        name: Some("MainThread"),
        interpreter_id: 0,
    };
    let other = ThreadKey {
        os_tid: 101,
        name: None,
        interpreter_id: 0,
    };
    let f = |function: &'static str, line| FrameKey::python(function, "/app/main.py", Some(line));
    let gil = SampleFlags::HOLDS_GIL;
    let samples: Vec<(&ThreadKey<'_>, Vec<FrameKey<'_>>, SampleFlags, u64, u64)> = vec![
        (
            &main,
            vec![f("<module>", 1), f("main", 10)],
            gil,
            4_000_000,
            4_000_000,
        ),
        (
            &main,
            vec![f("<module>", 1), f("main", 10), f("work", 20)],
            gil,
            8_000_000,
            4_000_000,
        ),
        (
            &other,
            vec![f("run", 5), f("wait", 3)],
            SampleFlags::IDLE,
            8_500_000,
            4_000_000,
        ),
        // Late: stands for 12 ms.
        (
            &main,
            vec![f("<module>", 1), f("main", 11)],
            gil,
            20_000_000,
            12_000_000,
        ),
        (
            &other,
            vec![f("run", 5), FrameKey::python(HOSTILE, HOSTILE, None)],
            SampleFlags::empty(),
            13_000_000,
            4_000_000,
        ),
        // Recorded after a later one of another thread.
        (
            &other,
            vec![f("run", 5), f("wait", 3)],
            SampleFlags::IDLE,
            12_500_000,
            4_000_000,
        ),
    ];
    for (th, frames, flags, t, w) in &samples {
        a.record(th, frames, *flags, *t, *w).unwrap();
    }
    a.profile(meta(), ProfileOptions::EVERYTHING).unwrap()
}

fn render(p: &Profile) -> Value {
    let mut out = Vec::new();
    Gecko.write(p, &mut out).unwrap();
    serde_json::from_slice(&out).expect("gecko output is JSON")
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{key} is not an array in {v}"))
}

fn idx(v: &Value) -> usize {
    usize::try_from(v.as_u64().unwrap_or_else(|| panic!("{v} is not an index"))).unwrap()
}

/// Checks a table: every column in `columns` is an array of `length` entries.
fn table<'a>(thread: &'a Value, name: &str, columns: &[&str]) -> (&'a Value, usize) {
    let t = &thread[name];
    let len = idx(&t["length"]);
    for c in columns {
        assert_eq!(arr(t, c).len(), len, "{name}.{c} has {len} entries");
    }
    (t, len)
}

/// One sample as read back: (time ms, category name of the leaf, frames outermost first as
/// (function, file, line)).
type ReadSample = (f64, String, Vec<(String, String, Option<i64>)>);

/// Validates the whole document against the field list in the module docs; returns per track
/// name its samples.
fn validate(doc: &Value) -> Vec<(String, Vec<ReadSample>)> {
    let strings: Vec<&str> = arr(&doc["shared"], "stringArray")
        .iter()
        .map(|s| s.as_str().expect("stringArray holds strings"))
        .collect();
    let meta = &doc["meta"];
    assert_eq!(
        meta["preprocessedProfileVersion"],
        u64::from(PROCESSED_PROFILE_VERSION)
    );
    assert_eq!(PROCESSED_PROFILE_VERSION, 56);
    assert!(meta["interval"].as_f64().unwrap() > 0.0);
    assert!(meta["startTime"].as_f64().unwrap() >= 0.0);
    assert!(meta["product"].is_string());
    assert_eq!(meta["markerSchema"], Value::Array(vec![]));
    assert!(arr(doc, "libs").is_empty());
    let categories = arr(meta, "categories");
    let known_colors = [
        "transparent",
        "purple",
        "green",
        "orange",
        "yellow",
        "lightblue",
        "grey",
        "blue",
        "brown",
        "magenta",
        "red",
        "darkgray",
    ];
    for c in categories {
        assert!(c["name"].is_string());
        assert!(known_colors.contains(&c["color"].as_str().unwrap()), "{c}");
        assert!(!arr(c, "subcategories").is_empty());
    }
    assert!(categories.iter().any(|c| c["color"] == "grey"));
    for section in arr(meta, "extra") {
        assert!(section["label"].is_string());
        for e in arr(section, "entries") {
            assert!(e["label"].is_string() && e["format"].is_string(), "{e}");
            assert!(e.get("value").is_some());
        }
    }

    let mut tracks = Vec::new();
    for th in arr(doc, "threads") {
        assert!(th["processType"].is_string());
        assert!(th["pid"].is_string());
        assert!(th["tid"].is_u64());
        assert!(th["isMainThread"].is_boolean());
        assert!(th["processStartupTime"].is_number() && th["registerTime"].is_number());
        assert!(th["pausedRanges"].is_array());
        table(
            th,
            "markers",
            &["data", "name", "startTime", "endTime", "phase", "category"],
        );
        let (_, nres) = table(th, "resourceTable", &["lib", "name", "host", "type"]);
        table(
            th,
            "nativeSymbols",
            &["libIndex", "address", "name", "functionSize"],
        );
        let (funcs, nfunc) = table(
            th,
            "funcTable",
            &[
                "name",
                "isJS",
                "relevantForJS",
                "resource",
                "fileName",
                "lineNumber",
                "columnNumber",
            ],
        );
        for i in 0..nfunc {
            assert!(idx(&funcs["name"][i]) < strings.len());
            assert!(idx(&funcs["fileName"][i]) < strings.len());
            assert!(funcs["isJS"][i].is_boolean() && funcs["relevantForJS"][i].is_boolean());
            let r = funcs["resource"][i].as_i64().unwrap();
            assert!(r == -1 || (0..nres as i64).contains(&r));
            let first = &funcs["lineNumber"][i];
            assert!(first.is_null() || first.as_i64().is_some_and(|l| l > 0));
        }
        let (frames, nframe) = table(
            th,
            "frameTable",
            &[
                "address",
                "inlineDepth",
                "category",
                "subcategory",
                "func",
                "nativeSymbol",
                "innerWindowID",
                "line",
                "column",
            ],
        );
        for i in 0..nframe {
            assert_eq!(frames["address"][i], -1);
            assert!(idx(&frames["category"][i]) < categories.len());
            assert_eq!(frames["subcategory"][i], 0);
            assert!(idx(&frames["func"][i]) < nfunc);
            assert!(frames["line"][i].is_null() || frames["line"][i].is_i64());
        }
        let (stacks, nstack) = table(th, "stackTable", &["frame", "prefix"]);
        for i in 0..nstack {
            assert!(idx(&stacks["frame"][i]) < nframe);
            let p = &stacks["prefix"][i];
            assert!(p.is_null() || idx(p) < i, "prefix of stack {i} comes first");
        }
        let (samples, nsample) = table(th, "samples", &["stack", "time", "weight"]);
        assert_eq!(samples["weightType"], "samples");
        let mut read = Vec::new();
        let mut last = f64::NEG_INFINITY;
        for i in 0..nsample {
            let time = samples["time"][i].as_f64().unwrap();
            assert!(time >= last, "sample times are monotonic per thread");
            last = time;
            assert!(samples["weight"][i].as_u64().unwrap() >= 1);
            let mut s = idx(&samples["stack"][i]);
            assert!(s < nstack);
            let leaf_cat = idx(&frames["category"][idx(&stacks["frame"][s])]);
            let mut path = Vec::new();
            loop {
                let fr = idx(&stacks["frame"][s]);
                let func = idx(&frames["func"][fr]);
                path.push((
                    strings[idx(&funcs["name"][func])].to_owned(),
                    strings[idx(&funcs["fileName"][func])].to_owned(),
                    frames["line"][fr].as_i64(),
                ));
                match stacks["prefix"][s].as_u64() {
                    Some(p) => s = usize::try_from(p).unwrap(),
                    None => break,
                }
            }
            path.reverse();
            let cat = categories[leaf_cat]["name"].as_str().unwrap().to_owned();
            read.push((time, cat, path));
        }
        tracks.push((th["name"].as_str().unwrap().to_owned(), read));
    }
    tracks
}

/// The expected samples of each thread from the profile itself, in time order.
fn expected(p: &Profile) -> Vec<Vec<ReadSample>> {
    let t = &p.tables;
    let mut out = Vec::new();
    for (id, _) in t.threads() {
        let mut samples: Vec<_> = p.timeline.iter().filter(|s| s.thread == id).collect();
        samples.sort_by_key(|s| s.timestamp_ns);
        out.push(
            samples
                .iter()
                .map(|s| {
                    let frames = t
                        .stack(s.stack)
                        .iter()
                        .map(|f| {
                            let f = t.frame(*f).unwrap();
                            (
                                t.str(f.function).to_owned(),
                                t.str(f.filename).to_owned(),
                                f.line.map(i64::from),
                            )
                        })
                        .collect();
                    let cat = if s.flags.idle() { "Idle" } else { "Python" };
                    (s.timestamp_ns as f64 / 1e6, cat.to_owned(), frames)
                })
                .collect(),
        );
    }
    out
}

#[test]
fn every_sample_reads_back_with_time_frames_and_category() {
    let p = profile(true);
    let doc = render(&p);
    let tracks = validate(&doc);
    let names: Vec<&str> = tracks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["MainThread (100)", "Thread (101)"]);
    let want = expected(&p);
    assert_eq!(want.len(), tracks.len());
    for ((name, got), want) in tracks.iter().zip(&want) {
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(want) {
            assert!((g.0 - w.0).abs() < 1e-9, "{name}: time {} vs {}", g.0, w.0);
            assert_eq!((&g.1, &g.2), (&w.1, &w.2), "{name}");
        }
    }
    // The idle samples are in the Idle category, the others in Python; both occur.
    let cats: Vec<&str> = tracks
        .iter()
        .flat_map(|(_, s)| s.iter().map(|x| x.1.as_str()))
        .collect();
    assert_eq!(cats.iter().filter(|c| **c == "Idle").count(), 2);
    assert_eq!(cats.iter().filter(|c| **c == "Python").count(), 4);
    // The hostile name survives JSON escaping.
    assert!(tracks[1]
        .1
        .iter()
        .any(|s| s.2[1].0 == HOSTILE && s.2[1].2.is_none()));

    let threads = arr(&doc, "threads");
    assert_eq!(
        threads[0]["isMainThread"], true,
        "tid == pid is the main thread"
    );
    assert_eq!(threads[1]["isMainThread"], false);
    assert_eq!(threads[0]["pid"], "100");
    assert_eq!(threads[1]["tid"], 101);
}

#[test]
fn metadata_carries_the_recording() {
    let doc = render(&profile(true));
    let meta = &doc["meta"];
    assert_eq!(meta["interval"].as_f64().unwrap(), 4.0, "1000 / 250 Hz");
    assert!((meta["startTime"].as_f64().unwrap() - 1_700_000_000_123.457).abs() < 1e-3);
    let entries: Vec<(String, Value)> = arr(meta, "extra")
        .iter()
        .flat_map(|s| arr(s, "entries").iter())
        .map(|e| (e["label"].as_str().unwrap().to_owned(), e["value"].clone()))
        .collect();
    let get = |l: &str| {
        entries
            .iter()
            .find(|(k, _)| k == l)
            .unwrap_or_else(|| panic!("no {l} in {entries:?}"))
            .1
            .clone()
    };
    assert_eq!(get("Python version"), "3.12.1");
    assert_eq!(get("Target"), "python app.py --name '<x>'");
    assert_eq!(get("Requested rate (Hz)"), "250");
    assert_eq!(get("Errors"), 2);
    assert_eq!(get("Dropped"), 1);
    assert_eq!(get("Recorded by"), "strobe 0.1.0");
    assert_eq!(meta["strobe"]["synthetic_timeline"], false);
    // Options for imported profiles: nothing to symbolicate, no Searchfox, our thread order.
    assert_eq!(meta["symbolicationNotSupported"], true);
    assert_eq!(meta["sourceCodeIsNotOnSearchfox"], true);
    assert_eq!(meta["keepProfileThreadOrder"], true);
    assert_eq!(meta["profilingEndTime"].as_f64().unwrap(), 100.0);
    let cats: Vec<(&str, &str)> = arr(meta, "categories")
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["color"].as_str().unwrap()))
        .collect();
    for want in [("Python", "blue"), ("Native", "orange"), ("GC", "yellow")] {
        assert!(cats.contains(&want), "{cats:?}");
    }
}

#[test]
fn without_a_timeline_stacks_are_laid_end_to_end_with_their_counts() {
    let p = profile(false);
    assert!(p.timeline.is_empty());
    let doc = render(&p);
    let tracks = validate(&doc);
    assert_eq!(doc["meta"]["strobe"]["synthetic_timeline"], true);
    // Weights add up to the samples counted per thread.
    for (th, (id, _)) in arr(&doc, "threads").iter().zip(p.tables.threads()) {
        let total: u64 = arr(&th["samples"], "weight")
            .iter()
            .map(|w| w.as_u64().unwrap())
            .sum();
        let want: u64 = p
            .stacks
            .iter()
            .filter(|s| s.thread == id)
            .map(|s| s.count.samples)
            .sum();
        assert_eq!(total, want);
    }
    assert_eq!(tracks.len(), 2);
}

#[test]
fn an_empty_profile_is_a_valid_document() {
    let p = Aggregator::new()
        .profile(meta(), ProfileOptions::EVERYTHING)
        .unwrap();
    let doc = render(&p);
    assert!(validate(&doc).is_empty());
}
