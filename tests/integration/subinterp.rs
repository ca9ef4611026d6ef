//! Sub-interpreters: threads of every interpreter are dumped and labelled with their
//! interpreter (3.12+, where the standard library can create one).

use crate::harness::{markers, strobe, Interp, Script};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

fn check(interp: Interp) {
    let script = Script::with_files(&interp, "subinterp.py", &["subinterp_code.py"]);
    let mut child = script.command().spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(120))
            .expect("no line from the target")
    };
    assert_eq!(next(), "READY");
    let info: Value = serde_json::from_str(&next()).unwrap();
    let pid = info["pid"].as_i64().unwrap();
    let code_in_target = info["code"].as_str().unwrap().to_string();
    // READY follows the sub-interpreter's write, not yet its read: wait until the kernel has
    // every thread asleep (seen once: the sub-interpreter still on the line of its write).
    crate::harness::wait_until_blocked(pid as i32);

    let out = strobe(&["dump", "--pid", &pid.to_string(), "--json"]);
    let text = strobe(&["dump", "--pid", &pid.to_string()]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump: Value = serde_json::from_slice(&out.stdout).unwrap();
    let threads = dump["threads"].as_array().unwrap();

    let marks = markers(&script.here.with_file_name("subinterp_code.py"));
    let sub: Vec<&Value> = threads
        .iter()
        .filter(|t| t["interpreter_id"].as_i64() != Some(0))
        .collect();
    assert_eq!(sub.len(), 1, "one thread in the sub-interpreter: {dump:#}");
    let frames = sub[0]["frames"].as_array().unwrap();
    let got: Vec<(&str, &str, i64)> = frames
        .iter()
        .map(|f| {
            (
                f["function"].as_str().unwrap(),
                f["filename"].as_str().unwrap(),
                f["line"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let want_sub = (
        "sub_block",
        code_in_target.as_str(),
        i64::from(marks["sub"]),
    );
    let want_call = (
        "<module>",
        code_in_target.as_str(),
        i64::from(marks["sub-call"]),
    );
    assert_eq!(got.first(), Some(&want_sub), "{dump:#}");
    assert_eq!(got.get(1), Some(&want_call), "{dump:#}");

    // The same OS thread also has a thread state in the main interpreter (running run_sub).
    let native = sub[0]["native_id"].as_u64();
    let runner = threads
        .iter()
        .find(|t| t["interpreter_id"].as_i64() == Some(0) && t["name"] == "sub-runner")
        .unwrap_or_else(|| panic!("no sub-runner thread in interpreter 0: {dump:#}"));
    assert_eq!(runner["native_id"].as_u64(), native, "{dump:#}");
    assert!(
        runner["frames"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["function"] == "run_sub"),
        "{dump:#}"
    );

    // The text output labels threads with their interpreter when there is more than one.
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("[interpreter 0]"), "{text}");
    assert!(text.contains("sub_block ("), "{text}");
}

// Every registered interpreter with subinterpreters worth walking (3.12+), release builds.
strobe_testkit::per_interpreter! {
    fn subinterpreter(interp) for [pyenv_3_12, pyenv_3_13, sid_3_13, sid_3_14, sid_3_15] {
        check(Interp::from(interp));
    }
}
