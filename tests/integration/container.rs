//! Targets in a container: started as a container runtime starts them, in a PID namespace of
//! their own (`unshare --pid --fork --mount-proc`) and a root of their own (the sid chroot),
//! and profiled from the host. Inside, the interpreter is PID 1 and its threads have small ids
//! of their own; strobe is given the host's PID and must show both thread ids, where they
//! differ, as the kernel lists them in `/proc/PID/task/TID/status` (`NSpid:`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::{dump_json, strobe, targets_dir, Announced, TempDir};
use crate::record::{assert_ok, parse_collapsed, run_strobe, strobe_cmd, Parsed};
use crate::top_hangup::OnPty;

/// The Debian sid chroot made by `.ci/provision.sh`, from the test registry.
fn sid_root() -> PathBuf {
    strobe_testkit::interpreters::require_sid()
}

/// A script of `tests/targets` running in a container: `unshare` (ours, on the host) forks the
/// container's PID 1, which becomes the interpreter through `chroot`. Killing `unshare` (on
/// drop) kills the whole container (`--kill-child`).
struct Contained {
    process: Announced,
    /// The interpreter's PID on the host.
    host_pid: i32,
    /// The script's path inside the container.
    in_target: String,
    /// The script's path from here.
    here: PathBuf,
    _dir: TempDir,
}

impl Contained {
    fn start(python: &str, script: &str, args: &[&str]) -> Contained {
        let root = sid_root();
        assert!(
            root.join("usr/bin").join(python).is_file(),
            "required interpreter {python} is missing from {}: run .ci/provision.sh",
            root.display()
        );
        let dir = TempDir::new_in(&root.join("tmp"));
        let here = dir.path().join(script);
        std::fs::copy(targets_dir().join(script), &here).unwrap();
        let in_target = format!(
            "/tmp/{}/{script}",
            dir.path().file_name().unwrap().to_str().unwrap()
        );
        let mut cmd = Command::new("unshare");
        cmd.arg("--pid")
            .arg("--fork")
            .arg("--kill-child")
            .arg(format!("--mount-proc={}", root.join("proc").display()))
            .arg("chroot")
            .arg(&root)
            .arg(python)
            .arg(&in_target)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C.UTF-8")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stderr(Stdio::inherit());
        let process = Announced::start(&mut cmd);
        // The script printed its PID as it sees it: the container's first process.
        assert_eq!(process.pid, 1, "the interpreter is the container's PID 1");
        let unshare = process.ready.child.id() as i32;
        let children = children_of(unshare);
        assert_eq!(children.len(), 1, "unshare's children: {children:?}");
        let host_pid = children[0];
        assert_eq!(
            thread_ids(host_pid).get(&(host_pid as u32)),
            Some(&1),
            "NSpid of the interpreter"
        );
        Contained {
            process,
            host_pid,
            in_target,
            here,
            _dir: dir,
        }
    }

    /// `function (file:line)` for the script's `# @line:MARK`, as strobe labels frames.
    fn label(&self, function: &str, mark: &str) -> String {
        let text = std::fs::read_to_string(&self.here).unwrap();
        let tag = format!("# @line:{mark}");
        let line = text
            .lines()
            .position(|l| l.trim_end().ends_with(&tag))
            .unwrap_or_else(|| panic!("no {tag} in {}", self.here.display()))
            + 1;
        format!("{function} ({}:{line})", self.in_target)
    }
}

/// The processes whose parent is `pid`, from `/proc/*/stat`.
fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        if after.split(' ').nth(1).and_then(|p| p.parse().ok()) == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Each thread of `pid`: its id on the host → its id in the innermost PID namespace, from
/// the `NSpid:` lines the kernel writes.
fn thread_ids(pid: i32) -> BTreeMap<u32, u32> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let host: u32 = entry.file_name().to_str().unwrap().parse().unwrap();
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap();
        let nspid = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .expect("the kernel writes NSpid lines");
        let ids: Vec<u32> = nspid
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(ids.first(), Some(&host), "{nspid}");
        out.insert(host, *ids.last().unwrap());
    }
    out
}

#[test]
fn dump_shows_the_host_and_container_thread_ids_on_sid_3_14() {
    let target = Contained::start("python3.14", "top_split.py", &["--until-eof"]);
    let pid = target.host_pid;
    let ids = thread_ids(pid);
    assert_eq!(ids.len(), 2, "MainThread and eof-waiter: {ids:?}");
    assert!(ids.iter().all(|(h, n)| h != n), "{ids:?}");

    // The waiter starts reading just after READY: wait until the kernel has it asleep.
    crate::harness::wait_until_others_blocked(pid);
    let dump = dump_json(pid, &[]);
    assert_eq!(dump["pid"], pid);
    let threads = dump["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 2, "{dump:#}");
    let mut seen = BTreeMap::new();
    for t in threads {
        let host = t["host_native_id"].as_u64().unwrap() as u32;
        let inner = t["native_id"].as_u64().unwrap() as u32;
        seen.insert(host, inner);
        if t["name"] == "eof-waiter" {
            // Blocked reading its stdin (a pipe that stays open): asleep for sure.
            assert_eq!(t["state"], "idle", "{t:#}");
        }
    }
    assert_eq!(seen, ids, "host → container thread ids: {dump:#}");

    let out = strobe(&["dump", "--pid", &pid.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for (host, inner) in &ids {
        let header = format!("Thread {host} ({inner} in its PID namespace) ");
        assert!(text.contains(&header), "no {header:?} in:\n{text}");
    }
}

/// Every frame label of the recording that names `function`.
fn has_function(parsed: &Parsed, function: &str) -> bool {
    let prefix = format!("{function} (");
    parsed.labels.iter().any(|l| l.starts_with(&prefix))
}

#[test]
fn record_keeps_running_and_idle_threads_apart_on_sid_3_13() {
    let target = Contained::start("python3.13", "top_split.py", &["--until-eof"]);
    let pid = target.host_pid.to_string();
    let dir = TempDir::new();
    let busy = dir.path().join("busy.txt");
    let all = dir.path().join("all.txt");
    for (path, idle) in [(&busy, false), (&all, true)] {
        let mut args = vec!["record", "--pid", &pid, "--duration", "1", "-o"];
        args.push(path.to_str().unwrap());
        if idle {
            args.push("--idle");
        }
        assert_ok(&run_strobe(&args), "strobe record --pid (container)");
    }
    let busy = parse_collapsed(&busy);
    assert!(has_function(&busy, "heavy_work"), "{busy:#?}");
    assert!(
        !has_function(&busy, "wait_for_eof"),
        "the thread blocked on its stdin was recorded as running: {busy:#?}"
    );
    let all = parse_collapsed(&all);
    assert!(has_function(&all, "heavy_work"), "{all:#?}");
    assert!(has_function(&all, "wait_for_eof"), "{all:#?}");

    // Threads are named by the host's id (what `top -H` on the host shows), not the container's.
    let ids = thread_ids(target.host_pid);
    let threads = dir.path().join("threads.txt");
    let args = [
        "record",
        "--pid",
        &pid,
        "--duration",
        "1",
        "--idle",
        "--threads",
        "-o",
        threads.to_str().unwrap(),
    ];
    assert_ok(
        &run_strobe(&args),
        "strobe record --threads --pid (container)",
    );
    let threads = parse_collapsed(&threads);
    for (host, inner) in &ids {
        let host_label = format!("thread {host} (");
        let inner_label = format!("thread {inner} (");
        assert!(
            threads.labels.iter().any(|l| l.starts_with(&host_label)),
            "no root frame for thread {host} (host id): {threads:#?}"
        );
        assert!(
            !threads.labels.iter().any(|l| l.starts_with(&inner_label)),
            "thread {host} is named by its container id {inner}: {threads:#?}"
        );
    }
}

#[test]
fn top_on_sid_3_14() {
    let target = Contained::start("python3.14", "top_split.py", &["--until-eof"]);
    let mut pty = OnPty::start(&["top".into(), "--pid".into(), target.host_pid.to_string()]);
    pty.wait_for("heavy_work");
    assert_eq!(pty.type_and_wait_exit("q"), Some(0));
    assert!(
        Path::new(&format!("/proc/{}", target.host_pid)).exists(),
        "the container's interpreter runs on after top"
    );
}

#[test]
fn subprocesses_of_a_container_on_sid_3_13() {
    let target = Contained::start("python3.13", "family.py", &[]);
    let unshare = target.process.ready.child.id() as i32;
    let parent = target.host_pid;
    let dir = TempDir::new();
    let path = dir.path().join("family.txt");
    let unshare_arg = unshare.to_string();
    let mut strobe = strobe_cmd(&[
        "record",
        "--subprocesses",
        "--idle",
        "--pid",
        &unshare_arg,
        "--duration",
        "120",
        "-o",
        path.to_str().unwrap(),
    ])
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut err = BufReader::new(strobe.stderr.take().unwrap());
    // The family: the parent (the container's PID 1) and its two children, on the host.
    let mut family = children_of(parent);
    family.push(parent);
    family.sort();
    assert_eq!(family.len(), 3, "the family's processes: {family:?}");
    let mut said = String::new();
    let mut announced = Vec::new();
    while !family.iter().all(|p| announced.contains(p)) {
        let mut line = String::new();
        let n = err.read_line(&mut line).unwrap();
        assert!(n > 0, "strobe ended before sampling the family: {said}");
        said.push_str(&line);
        if let Some(rest) = line.strip_prefix("strobe: sampling process ") {
            announced.push(rest.split(' ').next().unwrap().parse::<i32>().unwrap());
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(strobe.id() as i32),
        nix::sys::signal::SIGINT,
    )
    .unwrap();
    let status = strobe.wait().unwrap();
    let mut rest = String::new();
    while err.read_line(&mut rest).unwrap() > 0 {}
    said.push_str(&rest);
    assert!(status.success(), "{status}: {said}");

    let parsed = parse_collapsed(&path);
    let execd = children_of(parent)
        .into_iter()
        .find(|&c| {
            std::fs::read_to_string(format!("/proc/{c}/cmdline"))
                .is_ok_and(|cmd| cmd.contains("exec-child"))
        })
        .expect("the exec'd child");
    let forked = family
        .iter()
        .copied()
        .find(|&p| p != parent && p != execd)
        .unwrap();
    for (pid, function, mark) in [
        (parent, "parent_wait", "parent"),
        (forked, "forked_child", "forked"),
        (execd, "exec_child", "exec"),
    ] {
        // Host PIDs name the roots: in the container these processes are 1, 2 and 3.
        assert_ne!(thread_ids(pid).get(&(pid as u32)), Some(&(pid as u32)));
        let want = target.label(function, mark);
        let prefix = format!("process {pid} (");
        assert!(
            parsed
                .stacks
                .iter()
                .any(|(s, _)| s.first().is_some_and(|r| r.starts_with(&prefix))
                    && s.last() == Some(&want)),
            "no stack under process {pid} ends at {want}: {parsed:#?}"
        );
    }
}
