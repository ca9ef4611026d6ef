//! Kernel thread ids of ≤3.10 interpreters, found through glibc's thread descriptors
//! (`Target::native_tids`, `strobe_walker::pthreads`), against what the threads report.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use strobe_target::Target;
use strobe_testkit::Ready;

/// Threads that report `get_ident()` (the pthread_t) and their kernel thread id.
const IDENTS: &str = r#"
import sys, threading, ctypes
try:
    from thread import get_ident
except ImportError:
    from threading import get_ident
syscall = ctypes.CDLL(None).syscall
lock = threading.Lock()
def report():
    with lock:
        sys.stdout.write("T %d %d\n" % (get_ident(), syscall(186)))
        sys.stdout.flush()
started = []
def worker(ev):
    report()
    ev.set()
    threading.Event().wait()
for _ in range(3):
    ev = threading.Event()
    t = threading.Thread(target=worker, args=(ev,))
    t.daemon = True
    t.start()
    ev.wait()
report()
"#;

/// Waits for its stdin to close.
const SERVE: &str = r#"
import sys
print("READY"); sys.stdout.flush()
sys.stdin.read()
"#;

fn check_pthread_tids(name: &str) {
    let python = strobe_testkit::interpreters::get(name).require().path();
    let script = format!("{IDENTS}{SERVE}");
    let t = Ready::start(
        Command::new(&python)
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::piped()),
        name,
    );
    let expected: HashMap<u64, u32> = t
        .preamble
        .iter()
        .filter_map(|l| l.strip_prefix("T "))
        .map(|l| {
            let (ident, tid) = l.split_once(' ').unwrap();
            (ident.parse().unwrap(), tid.parse().unwrap())
        })
        .collect();
    assert_eq!(expected.len(), 4);
    assert!(expected.values().any(|&tid| tid as i32 == t.pid()));
    let target = Target::attach(t.pid()).unwrap();
    let idents: Vec<u64> = expected.keys().copied().collect();
    assert_eq!(target.native_tids(&idents).unwrap(), expected);
    // A subset without the main thread still calibrates to the same field.
    let workers: Vec<u64> = expected
        .iter()
        .filter(|(_, &tid)| tid as i32 != t.pid())
        .map(|(&i, _)| i)
        .collect();
    let got = target.native_tids(&workers).unwrap();
    assert_eq!(got.len(), 3);
    for (ident, tid) in got {
        assert_eq!(expected[&ident], tid);
    }
}

#[test]
fn pthread_tids_python27() {
    check_pthread_tids("pyenv_2_7");
}

#[test]
fn pthread_tids_python36() {
    check_pthread_tids("pyenv_3_6");
}
