//! `strobe dump` names the exception a thread is handling: a target whose main thread waits
//! inside an `except KeyError` block while another thread waits outside any exception
//! (`tests/targets/exception_wait.py`). JSON and text, on every interpreter.

use crate::harness::{strobe, Announced, Interp, Script};
use serde_json::Value;

fn check(interp: Interp) {
    let script = Script::new(&interp, "exception_wait.py");
    let mut target = Announced::start(&mut script.command());
    target.wait_until_blocked();
    let pid = target.pid.to_string();
    let out = strobe(&["dump", "--pid", &pid, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump: Value = serde_json::from_slice(&out.stdout).unwrap();
    let threads = dump["threads"].as_array().unwrap();
    let wait = script.lines()["wait"];
    let calm = script.lines()["calm"];
    let on_line = |line: u32| {
        threads
            .iter()
            .find(|t| {
                t["frames"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f["line"] == line)
            })
            .unwrap_or_else(|| panic!("no thread at line {line}: {dump:#}"))
    };
    let handling = on_line(wait);
    assert_eq!(handling["exception"]["type"], "KeyError", "{handling:#}");
    assert_eq!(handling["exception"]["state"], "handling", "{handling:#}");
    assert!(on_line(calm).get("exception").is_none(), "{dump:#}");

    let text = strobe(&["dump", "--pid", &pid]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(", handling KeyError)"), "{text}");
    assert_eq!(text.matches("handling").count(), 1, "{text}");
    target.close_stdin();
}

strobe_testkit::per_interpreter! {
    fn dump_exception(interp) {
        check(Interp::from(interp));
    }
}
