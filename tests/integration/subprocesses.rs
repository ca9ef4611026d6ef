//! `strobe record --subprocesses` against real interpreters.
//!
//! The target (`tests/targets/family.py`) is a parent with a child started by `fork`
//! (multiprocessing) and one by `fork` + `exec` (subprocess running the same interpreter).
//! Attached: once strobe says it samples both children, it is stopped with SIGINT, and every
//! process's stack must be in the output under its own `process PID` root, each at the line
//! where that process waits; without `--subprocesses` the same recording has no child and no
//! process roots. Launched: the children start after the recording, and must be found and
//! recorded under their roots too.
//!
//! strobe says `sampling process PID` once a sample of that process is recorded, so the tests
//! end the family (or the recording) only after every process they look for in the output was
//! announced: each announcement proves samples of it exist.

use crate::harness::{Announced, Interp, Script, TempDir};
use crate::record::{parse_collapsed, record_idle_briefly, strobe_cmd, Parsed};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, ExitStatus, Stdio};

/// What strobe said about the family while recording.
struct Seen {
    /// The process strobe was given (its "recording process N" line).
    root: i32,
    /// The family's parent, fork child and exec'd child.
    parent: i32,
    forked: i32,
    execd: i32,
    stderr: String,
}

/// Read strobe's stderr until it has announced the exec'd child (its command line ends with
/// `exec-child`), the fork child (a process other than the one strobe was given, the exec'd
/// child and their parent) and, with `parent_announced`, their parent (which is not announced
/// when it is the Python process strobe was given and attached to at the start).
fn wait_for_children(err: &mut BufReader<ChildStderr>, parent_announced: bool) -> Seen {
    let mut stderr = String::new();
    let mut root = None;
    let mut execd = None;
    let mut announced = Vec::new();
    loop {
        let mut line = String::new();
        let n = err.read_line(&mut line).unwrap();
        stderr.push_str(&line);
        // Its summary, not only the end of its stderr: launched processes that outlive strobe
        // hold the pipe open.
        assert!(
            n > 0 && !line.starts_with("strobe: recorded "),
            "strobe ended before announcing the family: {stderr}"
        );
        if let Some(rest) = line.strip_prefix("strobe: recording process ") {
            root = Some(rest.split(' ').next().unwrap().parse::<i32>().unwrap());
        }
        if let Some(rest) = line.strip_prefix("strobe: sampling process ") {
            let (pid, command) = rest.split_once(' ').unwrap();
            let pid: i32 = pid.parse().unwrap();
            if command.trim_end().ends_with("exec-child)") {
                execd = Some(pid);
            }
            // The exec'd child is announced under its parent's command line too if strobe read
            // it between fork and exec: PIDs are compared, not command lines.
            announced.push(pid);
        }
        let (Some(root), Some(execd)) = (root, execd) else {
            continue;
        };
        let parent = parent_of(execd);
        if parent_announced && !announced.contains(&parent) {
            continue;
        }
        if let Some(&forked) = announced
            .iter()
            .find(|&&p| p != root && p != execd && p != parent)
        {
            return Seen {
                root,
                parent,
                forked,
                execd,
                stderr,
            };
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
    strobe_testkit::procfs::parent(pid)
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

/// `strobe record --subprocesses --pid PID EXTRA.. -o PATH`, stderr piped.
fn start_recording(
    pid: i32,
    extra: &[&str],
    path: &std::path::Path,
) -> (Child, BufReader<ChildStderr>) {
    let pid = pid.to_string();
    let mut args = vec!["record", "--subprocesses", "--pid", &pid];
    args.extend_from_slice(extra);
    // Only so that a strobe that never gets where the test waits for ends the test instead of
    // hanging it; it is stopped by SIGINT long before.
    args.extend(["--duration", "120", "-o", path.to_str().unwrap()]);
    let mut strobe = strobe_cmd(&args).stderr(Stdio::piped()).spawn().unwrap();
    let err = BufReader::new(strobe.stderr.take().unwrap());
    (strobe, err)
}

/// SIGINT to a recording, then its exit status and the rest of what it said.
fn interrupt(strobe: &mut Child, err: &mut BufReader<ChildStderr>) -> (ExitStatus, String) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(strobe.id() as i32),
        nix::sys::signal::SIGINT,
    )
    .unwrap();
    let status = strobe.wait().unwrap();
    let mut rest = String::new();
    while err.read_line(&mut rest).unwrap() > 0 {}
    (status, rest)
}

/// `strobe record --subprocesses --idle --pid PID -o PATH`, stopped by SIGINT once both
/// children (and, with `parent_announced`, their parent) were announced; what it said, all of
/// its stderr included.
fn record_family(pid: i32, path: &std::path::Path, parent_announced: bool) -> Seen {
    let (mut strobe, mut err) = start_recording(pid, &["--idle"], path);
    let mut seen = wait_for_children(&mut err, parent_announced);
    let (status, rest) = interrupt(&mut strobe, &mut err);
    seen.stderr.push_str(&rest);
    assert!(
        status.success(),
        "strobe record --subprocesses --pid {pid}: {status}: {}",
        seen.stderr
    );
    seen
}

pub fn check_attach(interp: &Interp) {
    let script = Script::new(interp, "family.py");
    let mut target = Announced::start(&mut script.command());
    let pid = target.pid.to_string();
    let dir = TempDir::new();

    // Without --subprocesses: the parent only, no process roots.
    let plain = dir.path().join("plain.txt");
    record_idle_briefly(&pid, &plain);
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
    // The parent is the Python strobe attaches to, so it is not announced: it is read first in
    // every round, including those that recorded the children's first samples.
    let seen = record_family(target.pid, &path, false);
    let said = &seen.stderr;
    assert_eq!((seen.root, seen.parent), (target.pid, target.pid), "{said}");
    assert_eq!(parent_of(seen.forked), target.pid, "{said}");
    assert!(
        said.contains("sampled 2 subprocesses besides process"),
        "{said}"
    );
    let parsed = parse_collapsed(&path);
    check_family(&parsed, &script, target.pid, seen.forked, seen.execd);
    target.close_stdin();
}

/// `--pid` of a shell whose child is the family's parent: the shell is not Python, so only
/// the family is sampled.
pub fn check_attach_shell(interp: &Interp) {
    let script = Script::new(interp, "family.py");
    let mut target = Announced::start(&mut script.command_through_shell());
    let shell = target.ready.child.id() as i32;
    assert_eq!(parent_of(target.pid), shell);
    let dir = TempDir::new();
    let path = dir.path().join("family.txt");
    let seen = record_family(shell, &path, true);
    let said = &seen.stderr;
    assert_eq!((seen.root, seen.parent), (shell, target.pid), "{said}");
    assert!(
        said.contains(&format!("process {shell} is not a Python strobe can read")),
        "{said}"
    );
    assert!(
        said.contains("sampled 3 subprocesses besides process"),
        "{said}"
    );
    let parsed = parse_collapsed(&path);
    check_family(&parsed, &script, seen.parent, seen.forked, seen.execd);
    assert!(
        under(&parsed, shell).is_empty(),
        "the shell was sampled: {parsed:#?}"
    );
    target.close_stdin();
}

/// `through_shell`: the command is `sh -c 'FAMILY; true'`, so the process strobe starts is a
/// shell that never runs Python, and the family's parent is its child.
pub fn check_launch(interp: &Interp, through_shell: bool) {
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
    let shell_line = format!("{}; true", script.command.join(" "));
    if through_shell {
        // As Script::command_through_shell.
        args.extend(["sh", "-c", &shell_line]);
    } else {
        args.extend(script.command.iter().map(String::as_str));
    }
    // The launched parent reads strobe's stdin: closing it ends the family.
    let mut strobe = strobe_cmd(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(strobe.stderr.take().unwrap());
    let Seen {
        root,
        parent,
        forked,
        execd,
        stderr: mut seen,
    } = wait_for_children(&mut err, true);
    assert_eq!(parent_of(forked), parent, "{seen}");
    if !through_shell {
        assert_eq!(root, parent, "{seen}");
    } else {
        assert_eq!(parent_of(parent), root, "{seen}");
    }
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
    if through_shell {
        assert!(
            under(&parsed, root).is_empty(),
            "the shell was sampled: {parsed:#?}"
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

// The family tests run on a spread of the registry's interpreters (every frame model, a
// static libpython, the chroot, a debug build); each of the four ways is its own module.
strobe_testkit::per_interpreter! {
    fn attach(interp) for [pyenv_2_7, pyenv_3_6, pyenv_3_8, pyenv_3_10, pyenv_3_11, pyenv_3_12, pyenv_3_13, debian_3_11, sid_3_14, sid_3_15, sid_3_14_debug] {
        check_attach(&Interp::from(interp));
    }
}

strobe_testkit::per_interpreter! {
    fn launch(interp) for [pyenv_2_7, pyenv_3_6, pyenv_3_8, pyenv_3_10, pyenv_3_11, pyenv_3_12, pyenv_3_13, debian_3_11, sid_3_14, sid_3_15, sid_3_14_debug] {
        check_launch(&Interp::from(interp), false);
    }
}

strobe_testkit::per_interpreter! {
    fn attach_shell(interp) for [pyenv_2_7, pyenv_3_6, pyenv_3_8, pyenv_3_10, pyenv_3_11, pyenv_3_12, pyenv_3_13, debian_3_11, sid_3_14, sid_3_15, sid_3_14_debug] {
        check_attach_shell(&Interp::from(interp));
    }
}

strobe_testkit::per_interpreter! {
    fn through_shell(interp) for [pyenv_2_7, pyenv_3_6, pyenv_3_8, pyenv_3_10, pyenv_3_11, pyenv_3_12, pyenv_3_13, debian_3_11, sid_3_14, sid_3_15, sid_3_14_debug] {
        check_launch(&Interp::from(interp), true);
    }
}

/// A descendant named like Python that strobe cannot read (here `sleep` under the name
/// `python3.12`, as a stripped build would look) is reported once with the reason, not
/// silently left out; a shell in between is not.
#[test]
fn an_unreadable_python_subprocess_is_reported() {
    let dir = TempDir::new();
    let fake = dir.path().join("python3.12");
    strobe_testkit::copy_executable("/bin/sleep".as_ref(), &fake);
    let mut shell = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{} 600; true", fake.display()))
        .spawn()
        .unwrap();
    let out = dir.path().join("out.txt");
    let shell_pid = shell.id().to_string();
    let (mut strobe, mut err) = start_recording(shell.id() as i32, &[], &out);
    let mut seen = String::new();
    let warning = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "{seen}");
        seen.push_str(&line);
        if line.starts_with("strobe: warning: cannot sample process") {
            break line;
        }
    };
    let (status, rest) = interrupt(&mut strobe, &mut err);
    seen.push_str(&rest);
    let children =
        std::fs::read_to_string(format!("/proc/{shell_pid}/task/{shell_pid}/children")).unwrap();
    let sleeper: i32 = children.trim().parse().unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sleeper),
        nix::sys::signal::SIGKILL,
    );
    shell.wait().unwrap();
    assert!(status.success(), "{seen}");
    assert!(
        warning.contains(&format!("({} 600)", fake.display()))
            && warning.contains("does not look like Python"),
        "{warning}"
    );
    assert_eq!(seen.matches("cannot sample process").count(), 1, "{seen}");
    assert!(
        seen.contains(&format!("process {shell_pid} is not a Python")),
        "{seen}"
    );
    assert!(seen.contains("sampled 0 subprocesses"), "{seen}");
}
