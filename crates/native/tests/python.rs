//! Real interpreters: a main thread in `time.sleep` and a thread waiting on a lock show
//! libc's frames down to the system call, the evaluation loop, and the start of the program.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use strobe_native::{DebugSearch, NativeFrame, SymbolSource, UnwindEnd};
use strobe_testkit::Ready;
use support::*;

const SCRIPT: &str = r#"
import threading, time, sys
lock = threading.Lock()
lock.acquire()
t = threading.Thread(target=lock.acquire)
t.start()
print("READY %d" % t.native_id)
sys.stdout.flush()
time.sleep(100000)
"#;

/// A function's name without the suffix of a compiler-made part or clone
/// (`time_sleep.lto_priv.0`, `_PyEval_EvalFrameDefault.cold`); `?` for an unnamed frame.
fn base(f: &NativeFrame) -> &str {
    f.function
        .as_deref()
        .map_or("?", |n| n.split('.').next().unwrap_or(n))
}

fn names(frames: &[NativeFrame]) -> Vec<&str> {
    frames.iter().map(base).collect()
}

fn position(frames: &[NativeFrame], name: &str) -> usize {
    frames
        .iter()
        .position(|f| base(f) == name)
        .unwrap_or_else(|| panic!("no {name} in\n{}", show(frames)))
}

/// Libc at the top (the frame the system call returns to), then `below` somewhere under it,
/// then the evaluation loop, then `bottom` functions in this order at the end.
fn assert_stack(frames: &[NativeFrame], below: &str, bottom: &[&str]) {
    let top = frames[0].module.as_ref().unwrap().short_name();
    assert!(
        top.starts_with("libc"),
        "top frame in {top}:\n{}",
        show(frames)
    );
    let b = position(frames, below);
    let eval = position(frames, "_PyEval_EvalFrameDefault");
    assert!(b < eval, "\n{}", show(frames));
    let n = names(frames);
    let tail: Vec<&str> = n[n.len() - bottom.len()..].to_vec();
    assert_eq!(tail, bottom, "\n{}", show(frames));
}

/// What each interpreter's stacks must show: the main thread's bottom frames; the lock
/// function and bottom frames of the waiting thread.
struct Expect<'a> {
    main_bottom: &'a [&'a str],
    lock: &'a str,
    thread_bottom: &'a [&'a str],
}

fn check(pid: i32, thread: i32, search: DebugSearch, expect: &Expect<'_>) -> Vec<NativeFrame> {
    let mut native = Native::new(pid, search);
    let mut eval_frames = Vec::new();
    for how in [How::Blocked, How::Ptrace] {
        let (regs, stack) = capture(pid, pid, how);
        let (frames, unwound) = native.frames(&regs, &stack);
        assert_eq!(
            unwound.end,
            Some(UnwindEnd::Complete),
            "\n{}",
            show(&frames)
        );
        assert_stack(&frames, "time_sleep", expect.main_bottom);
        let (regs, stack) = capture(pid, thread, how);
        let (frames, unwound) = native.frames(&regs, &stack);
        assert_eq!(
            unwound.end,
            Some(UnwindEnd::Complete),
            "\n{}",
            show(&frames)
        );
        assert_stack(&frames, expect.lock, expect.thread_bottom);
        eval_frames.push(frames[position(&frames, "_PyEval_EvalFrameDefault")].clone());
    }
    eval_frames
}

#[test]
fn pyenv_312_sleep_and_lock() {
    let py = strobe_testkit::interpreters::require_path_str("pyenv_3_12");
    let target = Ready::python_script(py, "native-312", SCRIPT, &[]);
    let thread: i32 = target.said.parse().unwrap();
    // pyenv's `main` calls Py_BytesMain as a tail call, so `main` has no frame of its own.
    let bottom = [
        "Py_BytesMain",
        "__libc_start_call_main",
        "__libc_start_main_impl",
        "_start",
    ];
    let expect = Expect {
        main_bottom: &bottom,
        lock: "PyThread_acquire_lock_timed",
        thread_bottom: &["start_thread", "clone3"],
    };
    for eval in check(target.pid(), thread, DebugSearch::default(), &expect) {
        // libpython3.12 carries its own DWARF.
        assert_eq!(eval.source, SymbolSource::Dwarf, "{eval}");
        assert!(eval.file.as_deref().unwrap().ends_with(".c"), "{eval}");
    }
}

#[test]
fn sid_chroot_314_sleep_and_lock() {
    let root = strobe_testkit::interpreters::require_sid_str();
    let script = std::env::temp_dir().join(format!("strobe-native-sid-{}.py", std::process::id()));
    // The script must be inside the chroot to be run there.
    let inside = format!("/tmp/{}", script.file_name().unwrap().to_str().unwrap());
    std::fs::write(format!("{root}{inside}"), SCRIPT).unwrap();
    let target = Ready::start(
        Command::new("chroot").args([root, "python3.14", &inside]),
        "python3.14 in the sid chroot",
    );
    let _ = std::fs::remove_file(format!("{root}{inside}"));
    let thread: i32 = target.said.parse().unwrap();
    // The chroot's libc has no debug file: its frames come from .dynsym, and its static
    // __libc_start_call_main has no name there. Debian's python3.14 is stripped; the
    // python3.14-dbg debug file, found by build-id inside the chroot, gives DWARF for the
    // interpreter. Its `main` calls Py_BytesMain as a tail call, as pyenv's does.
    // 3.14 locks through its parking lot; the thread starts in libc's unnamed start_thread
    // and clone3.
    let expect = Expect {
        main_bottom: &["Py_BytesMain", "?", "__libc_start_main", "_start"],
        lock: "lock_PyThread_acquire_lock",
        thread_bottom: &["pythread_wrapper", "?", "?"],
    };
    let eval = check(target.pid(), thread, DebugSearch::default(), &expect);
    for e in eval {
        assert_eq!(e.source, SymbolSource::Dwarf, "{e}");
        assert!(e.file.as_deref().unwrap().contains("/Python/"), "{e}");
    }
}
