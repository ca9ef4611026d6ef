//! Checks every generated table against a real interpreter of that version.
//!
//! `tests/data/selfcheck.py` runs inside the interpreter and reads its own objects through
//! ctypes at the offsets of our table (passed on the command line), comparing with what the
//! interpreter's API reports; on 3.13+ it also compares with the interpreter's own
//! `_Py_DebugOffsets`, read at the positions of our `DEBUG_OFFSETS` table. Every field the table
//! fills in must be confirmed by at least one check (a short list of exceptions is documented in
//! `unverifiable`), so a check that quietly does nothing fails the test.
//!
//! Interpreters are every entry of the test registry (`strobe_testkit::interpreters`): the pyenv
//! builds, Debian's static /usr/bin/python3.11 and the Debian sid chroot from
//! `.ci/provision.sh`. A missing interpreter fails its test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use strobe_python_abi::{debug_offsets_for, layout_for, Flavour, Layout};
use strobe_testkit::interpreters::Interpreter;

mod support;
use support::{run_check_script, Checked};

/// Splits the `Debug` rendering of a `Layout` into its top-level `name: value` pairs, so new
/// fields are passed to (and required from) the script without editing this test.
fn layout_fields(layout: &Layout) -> Vec<(String, String)> {
    let text = format!("{layout:?}");
    let body = text
        .strip_prefix("Layout { ")
        .and_then(|t| t.strip_suffix(" }"))
        .unwrap();
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in body.char_indices() {
        match c {
            '{' | '(' => depth += 1,
            '}' | ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(body[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(body[start..].trim().to_string());
    parts
        .into_iter()
        .map(|p| {
            let (name, value) = p.split_once(": ").unwrap();
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// Fields that a live process cannot confirm on this version (see the comments).
fn unverifiable(layout: &Layout, has_debug_offsets: bool, stdout: &str) -> BTreeSet<&'static str> {
    let mut out = BTreeSet::new();
    if !has_debug_offsets {
        // Struct sizes are only reported by `_Py_DebugOffsets` (3.13+).
        out.extend(["tstate_size", "iframe_size"]);
    }
    if stdout.contains("NOTE tstate_size") {
        // PyThreadState grew at its end within 3.13 (3.13.0: 304, later 3.13.x: 312); the
        // script saw an older release of the minor than the headers.
        out.insert("tstate_size");
    }
    if layout.stackref_mask == u64::MAX {
        // No tagged references before 3.14: the mask is all ones and changes nothing.
        out.insert("stackref_mask");
    }
    if layout.interp_ceval_gil.is_none() {
        // 3.7-3.11 keep the GIL inside `_PyRuntime.ceval`, whose offset the table does not need.
        out.extend(["gil_locked", "gil_last_holder"]);
    }
    // Only one of the two entry-frame owners shows up on a given version's frame chain; the
    // script fails on any owner value it does not know, and `check` below requires one of them.
    out.extend(["owner_cstack", "owner_interpreter"]);
    // A generator is in FRAME_SUSPENDED_YIELD_FROM_LOCKED (3.15+) only while another thread
    // inspects it; the value is the header's, next to FRAME_SUSPENDED_YIELD_FROM (checked).
    out.insert("frame_suspended_yield_from_locked");
    // The exception being raised is set only while C code propagates it: CPython moves it into
    // the handler (or saves it around any hook, trace function or `__del__`) before Python code
    // runs again, so a script never sees it set. Confirmed against `_Py_DebugOffsets` where the
    // interpreter lists it (3.15+).
    if !stdout.contains("PASS tstate_current_exception") {
        out.extend(["tstate_curexc_type", "tstate_current_exception"]);
    }
    out
}

fn run_selfcheck(target: &Interpreter) {
    let (major, minor) = (target.version.0 as u8, target.version.1 as u8);
    let flavour = Flavour {
        free_threaded: false,
        debug: target.debug,
    };
    let layout = layout_for(major, minor, flavour)
        .unwrap_or_else(|| panic!("no table for {major}.{minor} {flavour:?}"));
    let debug = debug_offsets_for(major, minor, flavour);

    let mut args: Vec<String> = Vec::new();
    let mut filled = BTreeSet::new();
    for (name, value) in layout_fields(layout) {
        let value = match value.strip_prefix("Some(") {
            Some(v) => v.trim_end_matches(')').to_string(),
            None => value,
        };
        if value == "None" || name == "version" || name == "flavour" {
            continue;
        }
        if value.chars().all(|c| c.is_ascii_digit()) {
            filled.insert(name.clone());
        }
        args.push(format!("{name}={value}"));
    }
    args.push(format!("header_version={}", layout.version.to_hex()));
    args.push(format!("free_threaded={}", u8::from(flavour.free_threaded)));
    if let Some(table) = debug {
        args.extend(table.fields.iter().map(|(n, p)| format!("debug:{n}={p}")));
    }

    let Checked {
        passed,
        stdout,
        context,
    } = run_check_script(target, "selfcheck.py", "selfcheck", &args);
    let exempt = unverifiable(layout, debug.is_some(), &stdout);
    let unconfirmed: Vec<&String> = filled
        .iter()
        .filter(|f| !passed.contains(f.as_str()) && !exempt.contains(f.as_str()))
        .collect();
    assert!(
        unconfirmed.is_empty(),
        "fields filled in but confirmed by no check: {unconfirmed:?}\n{context}"
    );
    if minor >= 12 {
        assert!(
            passed.contains("owner_cstack") || passed.contains("owner_interpreter"),
            "no entry frame with a known owner seen\n{context}"
        );
    }
    if debug.is_some() {
        for name in ["debug:cookie", "debug:version", "debug:free_threaded"] {
            assert!(passed.contains(name), "{name} not checked\n{context}");
        }
    }
}

// One test per registry entry. pyenv's 3.13.0 is checked against the table generated from
// sid's newer 3.13 headers, Debian 12's static python3.11 (3.11.2) against the table from
// pyenv's 3.11.7 headers.
strobe_testkit::per_interpreter! {
    fn selfcheck(interp) {
        run_selfcheck(interp);
    }
}
