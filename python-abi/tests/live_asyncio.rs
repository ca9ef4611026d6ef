//! Checks the asyncio tables for CPython 3.8–3.13 (`src/asyncio_legacy.rs`) against every real
//! interpreter of those versions in the test registry: `tests/data/selfcheck_asyncio.py` reads
//! its own tasks, coroutines and thread state through ctypes at the table's offsets and compares
//! with what asyncio reports. Every value passed must be confirmed by a check (a `PASS` line).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strobe_python_abi::{
    asyncio_legacy_for, layout_for, CoroFrameModel, Flavour, RunningLoopModel,
};
use strobe_testkit::interpreters::Interpreter;

mod support;
use support::{run_check_script, Checked};

fn run(target: &Interpreter) {
    let (major, minor) = (target.version.0 as u8, target.version.1 as u8);
    let t = asyncio_legacy_for(major, minor, false).expect("a table");
    let flavour = Flavour {
        free_threaded: false,
        debug: target.debug,
    };
    let layout = layout_for(major, minor, flavour).unwrap();
    let mut args: Vec<(String, String)> = Vec::new();
    let mut arg = |k: &str, v: String| args.push((k.to_string(), v));
    arg("weak_sets", t.weak_sets.join(","));
    arg("sets", t.sets.join(","));
    arg("current_tasks", t.current_tasks.to_string());
    for (k, v) in [
        ("task_size", t.task_size),
        ("fut_loop", t.fut_loop),
        ("fut_state", t.fut_state),
        ("task_fut_waiter", t.task_fut_waiter),
        ("task_coro", t.task_coro),
        ("task_name", t.task_name),
        ("weakref_object", t.weakref_object),
        ("future_iter_future", t.future_iter_future),
    ] {
        arg(k, v.to_string());
    }
    // Layout values the script needs to find things (checked by tests/live.rs, not here).
    let mut helpers = vec!["coro", "running_loop", "frame_lasti"];
    if let Some(lasti) = layout.frame_lasti {
        arg("frame_lasti", lasti.to_string());
    }
    match t.coro {
        CoroFrameModel::StackTop38 {
            gi_frame,
            f_stacktop,
            co_code,
            yield_from,
        } => {
            arg("coro", "StackTop38".into());
            arg("gi_frame", gi_frame.to_string());
            arg("f_stacktop", f_stacktop.to_string());
            arg("co_code", co_code.to_string());
            arg("yield_from", yield_from.to_string());
        }
        CoroFrameModel::StackDepth310 {
            gi_frame,
            f_valuestack,
            f_stackdepth,
            f_state,
            suspended,
            co_code,
            yield_from,
        } => {
            arg("coro", "StackDepth310".into());
            arg("gi_frame", gi_frame.to_string());
            arg("f_valuestack", f_valuestack.to_string());
            arg("f_stackdepth", f_stackdepth.to_string());
            arg("f_state", f_state.to_string());
            arg("suspended", suspended.to_string());
            arg("co_code", co_code.to_string());
            arg("yield_from", yield_from.to_string());
        }
        CoroFrameModel::Embedded311 {
            gi_iframe,
            gi_frame_state,
            stacktop,
            suspended_yield_from,
            resume_ops,
        } => {
            arg("coro", "Embedded311".into());
            arg("gi_iframe", gi_iframe.to_string());
            arg("gi_frame_state", gi_frame_state.to_string());
            arg("stacktop", stacktop.to_string());
            arg("suspended_yield_from", suspended_yield_from.to_string());
            let ops: Vec<String> = resume_ops.iter().map(u8::to_string).collect();
            arg("resume_ops", ops.join(","));
            for (k, v) in [
                ("iframe_localsplus", layout.iframe_localsplus),
                ("iframe_code", layout.iframe_code),
                ("iframe_instr_ptr", layout.iframe_instr_ptr),
            ] {
                arg(k, v.unwrap().to_string());
                helpers.push(k);
            }
            arg("stackref_mask", layout.stackref_mask.to_string());
            helpers.push("stackref_mask");
        }
    }
    match t.running_loop {
        RunningLoopModel::ThreadDict {
            tstate_dict,
            holder_loop,
        } => {
            arg("running_loop", "ThreadDict".into());
            arg("tstate_dict", tstate_dict.to_string());
            if let Some(h) = holder_loop {
                arg("holder_loop", h.to_string());
            }
        }
        RunningLoopModel::AfterThreadState => {
            arg("running_loop", "AfterThreadState".into());
            // The public PyThreadState grew within 3.13 (3.13.0: 304 bytes, later 312): the
            // size of the release running, as its `sys.version` says.
            arg("tstate_size", tstate_size_313(target).to_string());
            helpers.push("tstate_size");
        }
    }
    let strings: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let Checked {
        passed, context, ..
    } = run_check_script(target, "selfcheck_asyncio.py", "asyncio", &strings);
    let unconfirmed: Vec<&str> = args
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !passed.contains(*k) && !helpers.contains(k))
        .collect();
    assert!(
        unconfirmed.is_empty(),
        "passed but confirmed by no check: {unconfirmed:?}\n{context}"
    );
    assert!(passed.contains("running_loop"), "{context}");
}

/// `sizeof(PyThreadState)` of a 3.13 interpreter: 304 in 3.13.0, 312 from 3.13.1 (the
/// generated table has the later size).
fn tstate_size_313(target: &Interpreter) -> u32 {
    let out = target
        .command()
        .args(["-c", "import sys; print(sys.version_info[2])"])
        .output()
        .unwrap();
    let micro: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    if micro == 0 {
        304
    } else {
        layout_for(3, 13, Flavour::DEFAULT).unwrap().tstate_size
    }
}

strobe_testkit::per_interpreter! {
    fn selfcheck_asyncio(interp) for [
        pyenv_3_8, pyenv_3_9, pyenv_3_10, pyenv_3_11, pyenv_3_12, pyenv_3_13, debian_3_11,
        sid_3_13, sid_3_13_debug
    ] {
        run(interp);
    }
}
