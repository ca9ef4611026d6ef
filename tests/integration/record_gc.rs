//! `<GC>` frames: `strobe record` on a target that spends nearly all its time in `gc.collect()`
//! on a large heap of live reference cycles (`tests/targets/gc_heap.py collect`) shows the
//! collector as `<GC>` on top of the line that called it; `convert --no-gc` leaves those frames
//! out and keeps every sample; automatic collections show on top of the allocating function;
//! a target that never collects shows none. On every interpreter.

use crate::harness::{Announced, Interp, Script, TempDir};
use crate::profiles::collapsed;
use crate::record::{convert_to, record_pid};
use std::collections::BTreeMap;
use std::path::Path;

fn convert(raw: &Path, out: &Path, extra: &[&str]) -> BTreeMap<Vec<String>, u64> {
    collapsed(&convert_to(raw, extra, out))
}

/// Start `gc_heap.py MODE`, record it at 200 Hz for `duration` seconds into `out` (the format
/// its extension names), then let it end.
fn record(script: &Script, mode: &str, duration: &str, out: &Path) {
    let mut target = Announced::start(script.command().arg(mode));
    record_pid(target.pid, &["--rate", "200", "--duration", duration], out);
    target.close_stdin();
}

fn check_gc(interp: Interp) {
    let dir = TempDir::new();
    let script = Script::new(&interp, "gc_heap.py");
    let collect = script.label("collect_forever", "collect");

    // Collecting.
    let raw = dir.path().join("gc.raw");
    record(&script, "collect", "1.5", &raw);
    let with = convert(&raw, &dir.path().join("with.txt"), &[]);
    let total: u64 = with.values().sum();
    assert!(total > 0, "no samples");
    let mut in_gc = 0;
    for (stack, weight) in &with {
        if let Some(at) = stack.iter().position(|f| f == "<GC>") {
            // `<GC>` only ever on top, right above the line that called gc.collect().
            assert_eq!(at + 1, stack.len(), "<GC> not on top: {stack:?}");
            assert_eq!(stack[at - 1], collect, "{stack:?}");
            in_gc += weight;
        }
    }
    // The target does nothing but collect: most of its time is the collector.
    assert!(
        in_gc * 4 >= total * 3,
        "<GC> in {in_gc} of {total}: {with:#?}"
    );

    // --no-gc: the same samples, the collector's on the calling line.
    let without = convert(&raw, &dir.path().join("without.txt"), &["--no-gc"]);
    assert!(
        without
            .keys()
            .all(|s| !s.iter().any(|f| f.contains("<GC>"))),
        "{without:#?}"
    );
    assert_eq!(without.values().sum::<u64>(), total);
    let on_line: u64 = without
        .iter()
        .filter(|(s, _)| s.last() == Some(&collect))
        .map(|(_, w)| w)
        .sum();
    let was_on_line: u64 = with
        .iter()
        .filter(|(s, _)| s.last() == Some(&collect) || s.iter().any(|f| f == "<GC>"))
        .map(|(_, w)| w)
        .sum();
    assert_eq!(on_line, was_on_line);

    // Automatic collections, triggered by the allocations of `allocate_forever`: `<GC>` on top
    // of that function (at whichever of its lines the collection started).
    let out = dir.path().join("auto.txt");
    record(&script, "auto", "1", &out);
    let stacks = collapsed(&out);
    let allocate = format!("allocate_forever ({}:", script.in_target);
    let total: u64 = stacks.values().sum();
    let mut in_gc = 0;
    for (stack, weight) in &stacks {
        if let Some(at) = stack.iter().position(|f| f == "<GC>") {
            assert_eq!(at + 1, stack.len(), "<GC> not on top: {stack:?}");
            assert!(stack[at - 1].starts_with(&allocate), "{stack:?}");
            in_gc += weight;
        }
    }
    // Measured: 40–70% of the time in the collector; 5% leaves room for a loaded machine.
    assert!(
        in_gc * 20 >= total,
        "<GC> in {in_gc} of {total}: {stacks:#?}"
    );

    // Never collecting (gc disabled, no cycles): no `<GC>`, and the samples are there.
    let out = dir.path().join("plain.txt");
    record(&script, "plain", "0.5", &out);
    let stacks = collapsed(&out);
    let spin = script.label("spin_forever", "spin");
    assert!(
        stacks.keys().any(|s| s.last() == Some(&spin)),
        "{stacks:#?}"
    );
    assert!(
        stacks.keys().all(|s| !s.iter().any(|f| f.contains("<GC>"))),
        "{stacks:#?}"
    );
}

strobe_testkit::per_interpreter! {
    fn gc_frames(interp) {
        check_gc(Interp::from(interp));
    }
}
