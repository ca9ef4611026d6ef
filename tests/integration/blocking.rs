//! `--blocking`: the target is stopped for the read and running again afterwards.

use crate::harness::{check_dump, dump_json, Interp, Target};

/// Every thread of `pid`: not traced and not in a stop state.
fn assert_untraced(pid: i32) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut n = 0;
    for task in tasks {
        let task = task.unwrap().path();
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
                .unwrap()
        };
        assert_eq!(field("TracerPid:"), "0", "{}: {status}", task.display());
        let state = field("State:");
        assert!(
            !state.starts_with('t') && !state.starts_with('T'),
            "{} is stopped: {state}",
            task.display()
        );
        n += 1;
    }
    assert!(n >= 5, "expected the target's threads, found {n}");
}

#[test]
fn blocking_dump_resumes_target() {
    let mut target = Target::start(&Interp::pyenv("3.12.1"));
    let dump = dump_json(target.pid(), &["--blocking"]);
    check_dump(&target, &dump);
    assert_untraced(target.pid());
    // Alive and answering, not merely un-stopped.
    target.ping();
}

#[test]
fn blocking_dump_in_chroot_resumes_target() {
    let mut target = Target::start(&Interp::Sid("python3.15"));
    let dump = dump_json(target.pid(), &["--blocking", "--no-names"]);
    let threads = dump["threads"].as_array().unwrap();
    assert_eq!(threads.len(), target.info.threads.len());
    assert!(
        threads.iter().all(|t| t["name"].is_null()),
        "--no-names: {dump:#}"
    );
    assert_untraced(target.pid());
    target.ping();
}
