//! A Python target started on one CPU ([`Ready::python_script_on`]) runs there alone, and so
//! does a thread it starts; [`strobe_testkit::pin`] pins the thread it is given.
//!
//! Interpreter: pyenv 3.12; a missing one fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strobe_testkit::{cpus, interpreters, Ready};

/// Prints the CPUs its main thread and a thread it started may run on.
const SCRIPT: &str = r#"import os, sys, threading

seen = []
t = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0))))
t.start()
t.join()
print("READY %s %s" % (",".join(map(str, sorted(os.sched_getaffinity(0)))),
                        ",".join(map(str, seen[0]))))
sys.stdout.flush()
r, w = os.pipe()
os.read(r, 1)
"#;

#[test]
fn a_target_started_on_one_cpu_runs_there_alone() {
    let python = interpreters::pyenv_version("3.12.1").require().path();
    let before = cpus::allowed_cpus();
    let cpu = cpus::last_cpu();
    let t = Ready::python_script_on(cpu, python.to_str().unwrap(), "cpus", SCRIPT, &[]);
    let one = cpu.to_string();
    assert_eq!(
        t.said,
        format!("{one} {one}"),
        "main thread, then its thread"
    );
    // Not this test's own thread: the target was started from another, pinned one.
    assert_eq!(cpus::allowed_cpus(), before);
}

#[test]
fn pin_pins_the_thread_it_is_given() {
    let allowed = cpus::allowed_cpus();
    let first = allowed[0];
    let (on, after) = std::thread::spawn(move || {
        cpus::pin(0, first);
        (
            cpus::allowed_cpus(),
            std::thread::spawn(cpus::allowed_cpus).join().unwrap(),
        )
    })
    .join()
    .unwrap();
    assert_eq!(on, [first]);
    assert_eq!(after, [first], "a thread it starts inherits it");
    assert_eq!(
        cpus::allowed_cpus(),
        allowed,
        "other threads are left alone"
    );
}
