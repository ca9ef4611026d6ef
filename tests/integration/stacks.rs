//! The full stack check, once per interpreter (one `#[test]` each so a failure names it).

use crate::harness::{check_dump, dump_json, markers, strobe, Interp, Target};

/// Start the target under `interp`, dump it as JSON, and check every thread and frame.
pub fn check_interpreter(interp: Interp) {
    let target = Target::start(&interp);
    let dump = dump_json(target.pid(), &[]);
    check_dump(&target, &dump);
}

strobe_testkit::per_interpreter! {
    fn dump(interp) {
        check_interpreter(Interp::from(interp));
    }
}

/// The text format, once: the process line, thread headers and frame lines.
#[test]
fn text_output() {
    let target = Target::start(&Interp::named("debian_3_11"));
    let pid = target.pid().to_string();
    let out = strobe(&["dump", "--pid", &pid]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "strobe failed: {stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("Process {pid}: /usr/bin/python3.11 (CPython 3.11.2)")
    );
    let marks = markers(&target.script_here);
    let script = &target.script_in_target;
    for (name, _ident, native) in &target.info.threads {
        let native = native.expect("3.11 reports native ids");
        let header = format!("Thread {native} \"{name}\" (idle)");
        let at = lines
            .iter()
            .position(|l| *l == header)
            .unwrap_or_else(|| panic!("no line {header:?} in:\n{text}"));
        let first_frame = lines[at + 1];
        let want = match name.as_str() {
            "deep" => format!("    deep ({script}:{})", marks["deep"]),
            "gen" => format!("    gen ({script}:{})", marks["gen"]),
            "lambda" => format!("    <lambda> ({script}:{})", marks["lambda"]),
            "method" => format!("    Worker.run_job ({script}:{})", marks["method"]),
            "unicode-ü" => format!("    grüße ({script}:{})", marks["unicode"]),
            "MainThread" => format!("    main ({script}:{})", marks["main"]),
            other => panic!("unknown thread {other}"),
        };
        assert_eq!(first_frame, want, "in:\n{text}");
    }
    // One interpreter: no interpreter ids in the headers.
    assert!(!text.contains("[interpreter"), "{text}");
}

/// `strobe dump ... | head -0`: stdout closed before strobe writes is a success, silently.
#[test]
fn closed_stdout_is_not_an_error() {
    let target = Target::start(&Interp::pyenv("3.11.7"));
    let mut child = std::process::Command::new(crate::harness::strobe_bin())
        .args(["dump", "--pid", &target.pid().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closing the read end now, while strobe is still attaching, makes its first write fail
    // with EPIPE (had it been faster, the write succeeds: both must end the same way).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
