//! `--blocking`: the target is stopped for the read and running again afterwards.

use crate::harness::{check_dump, dump_json, Interp, Target};
use strobe_testkit::procfs;

/// Every thread of `pid`: not traced and not in a stop state; and there are the target's
/// threads to check.
fn assert_untraced(pid: i32) {
    let n = procfs::assert_not_stopped(pid);
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
