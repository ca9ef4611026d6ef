//! `strobe record --subprocesses` against real interpreters.
//!
//! The target (`tests/targets/family.py`) is a parent with a child started by `fork`
//! (multiprocessing) and one by `fork` + `exec` (subprocess running the same interpreter).
//! Attached: once strobe says it samples both children, it is stopped with SIGINT, and every
//! process's stack must be in the output under its own `process PID` root, each at the line
//! where that process waits; without `--subprocesses` the same recording has no child and no
//! process roots. Launched: the children start after the recording, and must be found and
//! recorded under their roots too.

use crate::harness::{Announced, Interp, Script, TempDir};
use crate::record::{assert_ok, parse_collapsed, run_strobe, strobe_cmd, Parsed};
use std::io::{BufRead, BufReader};
use std::process::{ChildStderr, Stdio};

/// Read strobe's stderr until it has announced a descendant whose command line ends with
/// `exec-child` and one other descendant. Returns (forked child, exec'd child) and what was
/// read.
fn wait_for_children(err: &mut BufReader<ChildStderr>) -> (i32, i32, String) {
    let mut seen = String::new();
    let mut forked = None;
    let mut execd = None;
    let mut others = Vec::new();
    loop {
        let mut line = String::new();
        let n = err.read_line(&mut line).unwrap();
        assert!(n > 0, "strobe ended before sampling both children: {seen}");
        seen.push_str(&line);
        if let Some(rest) = line.strip_prefix("strobe: sampling subprocess ") {
            let (pid, command) = rest.split_once(' ').unwrap();
            let pid: i32 = pid.parse().unwrap();
            if command.trim_end().ends_with("exec-child)") {
                execd = Some(pid);
            } else {
                // The exec'd child is announced under the parent's command line too if strobe
                // read it between fork and exec: only a PID other than its counts.
                others.push(pid);
            }
        }
        if let Some(e) = execd {
            forked = forked.or_else(|| others.iter().copied().find(|&p| p != e));
            if let Some(f) = forked {
                return (f, e, seen);
            }
        }
    }
}

/// The stacks under root `process PID (...)`, without the root.
fn under(parsed: &Parsed, pid: i32) -> Vec<(Vec<String>, String)> {
    let prefix = format!("process {pid} (");
    parsed
        .stacks
        .iter()
        .filter(|(s, _)| s.first().is_some_and(|r| r.starts_with(&prefix)))
        .map(|(s, _)| (s[1..].to_vec(), s[0].clone()))
        .collect()
}

fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Every process of the family stood at its waiting line in some sample, under its own root.
fn check_family(parsed: &Parsed, script: &Script, parent: i32, forked: i32, execd: i32) {
    let roots: std::collections::BTreeSet<&str> = parsed
        .stacks
        .iter()
        .filter_map(|(s, _)| s.first().map(String::as_str))
        .collect();
    assert!(
        roots.iter().all(|r| r.starts_with("process ")),
        "a stack without a process root: {roots:?}"
    );
    for (pid, function, mark) in [
        (parent, "parent_wait", "parent"),
        (forked, "forked_child", "forked"),
        (execd, "exec_child", "exec"),
    ] {
        let want = script.label(function, mark);
        let stacks = under(parsed, pid);
        assert!(
            stacks.iter().any(|(s, _)| s.last() == Some(&want)),
            "no stack of process {pid} ends at {want}: {stacks:#?}\nroots: {roots:?}"
        );
    }
    let execd_roots: Vec<String> = under(parsed, execd).into_iter().map(|(_, r)| r).collect();
    assert!(
        execd_roots
            .iter()
            .any(|r| r.ends_with(&format!("{} exec-child)", script.in_target))),
        "the exec'd child's root names its command line: {execd_roots:?}"
    );
}

pub fn check_attach(interp: &Interp) {
    let script = Script::new(interp, "family.py");
    let mut target = Announced::start(&mut script.command());
    let pid = target.pid.to_string();
    let dir = TempDir::new();

    // Without --subprocesses: the parent only, no process roots.
    let plain = dir.path().join("plain.txt");
    let out = run_strobe(&[
        "record",
        "--pid",
        &pid,
        "--idle",
        "--duration",
        "0.3",
        "-o",
        plain.to_str().unwrap(),
    ]);
    assert_ok(&out, "strobe record --pid");
    let parsed = parse_collapsed(&plain);
    assert!(
        parsed.has_suffix(&[script.label("parent_wait", "parent")]),
        "{parsed:#?}"
    );
    for l in &parsed.labels {
        assert!(
            !l.starts_with("process ")
                && !l.starts_with("forked_child")
                && !l.starts_with("exec_child"),
            "{l} recorded without --subprocesses"
        );
    }

    let path = dir.path().join("family.txt");
    let mut strobe = strobe_cmd(&[
        "record",
        "--subprocesses",
        "--pid",
        &pid,
        "--idle",
        // Only so that a strobe that never finds the children ends the test instead of
        // hanging it; it is stopped by SIGINT long before.
        "--duration",
        "120",
        "-o",
        path.to_str().unwrap(),
    ])
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut err = BufReader::new(strobe.stderr.take().unwrap());
    let (forked, execd, mut seen) = wait_for_children(&mut err);
    assert_eq!(parent_of(forked), target.pid, "{seen}");
    assert_eq!(parent_of(execd), target.pid, "{seen}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(strobe.id() as i32),
        nix::sys::signal::SIGINT,
    )
    .unwrap();
    let status = strobe.wait().unwrap();
    let mut rest = String::new();
    while err.read_line(&mut rest).unwrap() > 0 {}
    seen.push_str(&rest);
    assert!(
        status.success(),
        "strobe record --subprocesses: {status}: {seen}"
    );
    assert!(
        seen.contains("sampled 2 subprocesses besides process"),
        "{seen}"
    );
    check_family(&parse_collapsed(&path), &script, target.pid, forked, execd);
    target.close_stdin();
}

pub fn check_launch(interp: &Interp) {
    let script = Script::new(interp, "family.py");
    let dir = TempDir::new();
    let path = dir.path().join("family.txt");
    let mut args = vec![
        "record",
        "--subprocesses",
        "--idle",
        // As in check_attach: a bound for a broken strobe, not a wait.
        "--duration",
        "120",
        "-o",
        path.to_str().unwrap(),
        "--",
    ];
    args.extend(script.command.iter().map(String::as_str));
    // The launched parent reads strobe's stdin: closing it ends the family.
    let mut strobe = strobe_cmd(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(strobe.stderr.take().unwrap());
    let (forked, execd, mut seen) = wait_for_children(&mut err);
    let parent = parent_of(forked);
    assert_eq!(parent_of(execd), parent, "{seen}");
    drop(strobe.stdin.take());
    let status = strobe.wait().unwrap();
    let mut rest = String::new();
    while err.read_line(&mut rest).unwrap() > 0 {}
    seen.push_str(&rest);
    assert!(
        status.success(),
        "strobe record --subprocesses -- ...: {status}: {seen}"
    );
    assert!(seen.contains("the command exited with status 0"), "{seen}");
    let parsed = parse_collapsed(&path);
    for pid in [parent, forked, execd] {
        assert!(
            !under(&parsed, pid).is_empty(),
            "nothing recorded under process {pid}: {seen}\n{parsed:#?}"
        );
    }
    // The parent went through `main` (every sample of it is under its root).
    assert!(
        under(&parsed, parent)
            .iter()
            .any(|(s, _)| s.iter().any(|f| f.starts_with("main ("))),
        "{parsed:#?}"
    );
}

macro_rules! subprocess_tests {
    ($($name:ident => $interp:expr;)*) => {
        mod attach {
            use super::*;
            $(
                #[test]
                fn $name() {
                    check_attach(&$interp);
                }
            )*
        }
        mod launch {
            use super::*;
            $(
                #[test]
                fn $name() {
                    check_launch(&$interp);
                }
            )*
        }
    };
}

subprocess_tests! {
    pyenv_2_7_18 => Interp::pyenv("2.7.18");
    pyenv_3_6_15 => Interp::pyenv("3.6.15");
    pyenv_3_8_18 => Interp::pyenv("3.8.18");
    pyenv_3_10_13 => Interp::pyenv("3.10.13");
    pyenv_3_11_7 => Interp::pyenv("3.11.7");
    pyenv_3_12_1 => Interp::pyenv("3.12.1");
    pyenv_3_13_0 => Interp::pyenv("3.13.0");
    debian_3_11_static => Interp::Host("/usr/bin/python3.11".into());
    sid_3_14 => Interp::Sid("python3.14");
    sid_3_15 => Interp::Sid("python3.15");
    sid_3_14_debug => Interp::Sid("python3.14d");
}
