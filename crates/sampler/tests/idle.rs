//! Idle detection against real interpreters: a busy main thread (it holds the GIL, so the
//! sampler takes it as running without reading `/proc`) and a thread blocked in `read`
//! (idle: its state is read). Without `include_idle` only the busy thread is recorded; with it
//! the blocked thread is recorded and flagged idle, the busy one never.
//!
//! Interpreters: pyenv 2.7 and 3.10 (kernel thread ids from the pthread lookup), 3.12
//! (per-interpreter GIL state) and 3.13; a missing one fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strobe_testkit::{Interpreter, Ready};

use strobe_aggregate::SampleFlags;
use strobe_sampler::{LiveSwitch, SamplerConfig};
use strobe_target::Target;

mod support;
use support::sample_until;

/// The target. It prints READY once the waiter thread is blocked in its `read` system call
/// (`/proc/self/task/TID/syscall` starts with 0, `read` on x86-64), found by polling `/proc`
/// (file reads release the GIL, so the waiter gets there), then spins.
const SCRIPT: &str = r#"import os, sys, threading

def wait_here(fd):
    os.read(fd, 1)

def busy():
    n = 0
    while True:
        n = (n * 3 + 1) & 0xffff

def in_read(tid):
    try:
        with open("/proc/self/task/%s/syscall" % tid) as f:
            return f.read().split()[0] == "0"
    except (IOError, OSError, IndexError):
        return False

def main():
    r, w = os.pipe()
    t = threading.Thread(target=wait_here, args=(r,), name="waiter")
    t.daemon = True
    t.start()
    me = str(os.getpid())
    while True:
        others = [tid for tid in os.listdir("/proc/self/task") if tid != me]
        if others and all(in_read(tid) for tid in others):
            break
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    busy()

main()
"#;

/// Whether a sample's innermost function is the main thread's: `busy`, or `main` itself in the
/// moment between printing READY and calling `busy` (the first round can fall there).
fn main_thread(function: &str) -> bool {
    function == "busy" || function == "main"
}

fn launch(interp: &Interpreter) -> Ready {
    let python = interp.require().path();
    Ready::python_script(python.to_str().unwrap(), "idle", SCRIPT, &[])
}

/// Per recorded sample: (innermost function, flags).
fn record(pid: i32, include_idle: bool, blocking: bool) -> Vec<(String, SampleFlags)> {
    let cfg = SamplerConfig {
        rate_hz: 1000.0,
        include_idle,
        blocking,
        ..SamplerConfig::default()
    };
    let (samples, t, _) = sample_until(Target::attach(pid).unwrap(), cfg, 60);
    samples
        .iter()
        .map(|s| {
            let leaf = t.stack(s.stack).last().copied().unwrap();
            (t.str(t.frame(leaf).unwrap().function).to_string(), s.flags)
        })
        .collect()
}

fn check(interp: &Interpreter) {
    let version = interp.name;
    let victim = launch(interp);
    let pid = victim.pid();

    let hidden = record(pid, false, false);
    assert!(!hidden.is_empty(), "{version}: nothing recorded");
    for (leaf, flags) in &hidden {
        assert!(
            main_thread(leaf),
            "{version}: an idle thread was recorded: {hidden:?}"
        );
        assert!(!flags.idle(), "{version}");
    }

    for blocking in [false, true] {
        let shown = record(pid, true, blocking);
        let waiter: Vec<_> = shown.iter().filter(|(f, _)| f == "wait_here").collect();
        let busy: Vec<_> = shown.iter().filter(|(f, _)| main_thread(f)).collect();
        assert_eq!(
            waiter.len() + busy.len(),
            shown.len(),
            "{version}: unexpected stacks: {shown:?}"
        );
        assert!(
            !waiter.is_empty() && !busy.is_empty(),
            "{version} (blocking: {blocking}): {shown:?}"
        );
        if blocking {
            // Each freeze interrupts the waiter's `read`; after the release it restarts the
            // system call, and on a loaded host it can still be runnable when the next
            // round reads states: some of its samples may be taken as running.
            assert!(
                waiter.iter().any(|(_, flags)| flags.idle()),
                "{version} (blocking): the blocked thread never idle: {waiter:?}"
            );
        } else {
            assert!(
                waiter.iter().all(|(_, flags)| flags.idle()),
                "{version}: the blocked thread not idle: {waiter:?}"
            );
        }
        assert!(
            busy.iter().all(|(_, flags)| !flags.idle()),
            "{version} (blocking: {blocking}): the busy thread idle: {busy:?}"
        );
    }
}

strobe_testkit::per_interpreter! {
    fn idle_threads(interp) for [pyenv_2_7, pyenv_3_10, pyenv_3_12, pyenv_3_13] {
        check(interp);
    }
}

/// Per recorded sample under a live idle switch: (innermost function, or `None` for a sample
/// with no frames, flags).
fn record_switched(pid: i32, on: bool) -> Vec<(Option<String>, SampleFlags)> {
    let cfg = SamplerConfig {
        rate_hz: 1000.0,
        idle_switch: Some(LiveSwitch::new(on)),
        ..SamplerConfig::default()
    };
    let (samples, t, _) = sample_until(Target::attach(pid).unwrap(), cfg, 60);
    samples
        .iter()
        .map(|s| {
            let leaf = t
                .stack(s.stack)
                .last()
                .map(|&leaf| t.str(t.frame(leaf).unwrap().function).to_string());
            (leaf, s.flags)
        })
        .collect()
}

/// `strobe top`'s switch: off, the blocked thread is counted idle with no frames (its stack is
/// not read); on, it is sampled with its stack, as `include_idle` does.
fn check_switch(interp: &Interpreter) {
    let version = interp.name;
    let victim = launch(interp);
    let pid = victim.pid();
    let off = record_switched(pid, false);
    let busy = off
        .iter()
        .filter(|(f, _)| f.as_deref().is_some_and(main_thread))
        .count();
    let bare: Vec<_> = off.iter().filter(|(f, _)| f.is_none()).collect();
    assert!(busy > 0, "{version}: {off:?}");
    assert!(
        !bare.is_empty(),
        "{version}: the idle thread was not counted: {off:?}"
    );
    assert_eq!(busy + bare.len(), off.len(), "{version}: {off:?}");
    assert!(
        bare.iter().all(|(_, flags)| flags.idle()),
        "{version}: {bare:?}"
    );
    let on = record_switched(pid, true);
    let waiter: Vec<_> = on
        .iter()
        .filter(|(f, _)| f.as_deref() == Some("wait_here"))
        .collect();
    assert!(!waiter.is_empty(), "{version}: {on:?}");
    assert!(waiter.iter().all(|(_, flags)| flags.idle()), "{version}");
    assert!(on.iter().all(|(f, _)| f.is_some()), "{version}: {on:?}");
}

strobe_testkit::per_interpreter! {
    fn idle_switch(interp) for [pyenv_2_7, pyenv_3_12, pyenv_3_13] {
        check_switch(interp);
    }
}
