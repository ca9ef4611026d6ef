//! `strobe dump --native` against real interpreters: native and Python frames interleaved in
//! call order, asserted exactly where the stack is known.
//!
//! `native_qsort.py`: Python calls libc's `qsort` through ctypes, whose comparison (Python)
//! blocks reading stdin, while a second thread sleeps in `time.sleep` and a third waits on a
//! lock.
//! `native_ext_recurse.py`: Python calls a C extension (`native_ext.c`, built here with `cc`
//! against the interpreter's own headers) that calls back into Python, three levels deep;
//! with DWARF, with symbols only (`strip -g`) and with none (`strip`).

use crate::harness::{strobe, Announced, Interp, Script};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use strobe_testkit::interpreters::Interpreter;
use strobe_testkit::run_ok as run;

/// Longest wait for the target's threads to be asleep in the kernel.
const ASLEEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Interpreter plumbing that must not be left in a merged stack.
const PLUMBING: &[&str] = &[
    "_PyEval_",
    "PyEval_",
    "PyObject_Call",
    "_PyObject_",
    "_PyFunction_",
];

/// Wait until the target has at least `threads` threads, every one blocked in a system call
/// (its `syscall` file no longer says `running`): a state polled, so the dump sees the stacks
/// the script set up.
fn wait_all_asleep(pid: i32, threads: usize) {
    let what = format!("{threads} threads, all in a system call");
    strobe_testkit::procfs::wait_threads(pid, ASLEEP_TIMEOUT, &what, |now| {
        now.len() >= threads && now.iter().all(|t| t.syscall.is_some())
    });
}

/// `strobe dump --native --json`, parsed, with its stderr.
fn dump_native(pid: i32) -> (Value, String) {
    let pid = pid.to_string();
    let out = strobe(&["dump", "--pid", &pid, "--native", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "strobe failed: {stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

fn kind(f: &Value) -> &str {
    f["kind"].as_str().unwrap()
}

fn function(f: &Value) -> &str {
    f["function"].as_str().unwrap()
}

/// The file name of a native frame's module.
fn module(f: &Value) -> &str {
    let m = f["module"].as_str().unwrap_or("?");
    m.rsplit('/').next().unwrap_or(m)
}

fn show(frames: &[Value]) -> String {
    frames
        .iter()
        .map(|f| {
            format!(
                "  {:7} {} ({}) {}:{}\n",
                kind(f),
                function(f),
                module(f),
                f["filename"].as_str().unwrap_or(""),
                f["line"]
            )
        })
        .collect()
}

/// The merged stack of the thread that runs `python_function` (innermost Python frame).
fn thread_running<'a>(dump: &'a Value, python_function: &str) -> &'a [Value] {
    let threads = dump["threads"].as_array().unwrap();
    threads
        .iter()
        .map(|t| t["frames"].as_array().unwrap().as_slice())
        .find(|frames| {
            frames
                .iter()
                .find(|f| kind(f) == "python")
                .is_some_and(|f| function(f) == python_function)
        })
        .unwrap_or_else(|| panic!("no thread in {python_function}: {dump:#}"))
}

/// Where the native frames start: after the `[syscall]` frame of a thread read asleep (a
/// thread read while stopped, when its unstopped read did not merge, has none: the stop took
/// it out of the kernel).
fn kernel_top(frames: &[Value], context: &str) -> usize {
    if kind(&frames[0]) == "kernel" {
        assert_eq!(function(&frames[0]), "[syscall]", "{context}");
        assert!(frames[1..].iter().all(|f| kind(f) != "kernel"), "{context}");
        1
    } else {
        0
    }
}

fn check_qsort(interp: Interp) {
    let script = Script::new(&interp, "native_qsort.py");
    let target = Announced::start(&mut script.command());
    let pid = target.pid;
    wait_all_asleep(pid, 3);
    let (dump, stderr) = dump_native(pid);
    let lines = script.lines();
    let file = script.in_target.as_str();
    for t in dump["threads"].as_array().unwrap() {
        assert!(
            t.get("native_error").is_none(),
            "{}\n{stderr}",
            t["native_error"]
        );
        // No interpreter plumbing left in any thread.
        let frames = t["frames"].as_array().unwrap();
        for f in frames.iter().filter(|f| kind(f) == "native") {
            for p in PLUMBING {
                assert!(
                    !function(f).starts_with(p),
                    "{} left\n{}{stderr}",
                    function(f),
                    show(frames)
                );
            }
        }
    }

    // The main thread: [syscall], libc's read, the Python frames (compare and wait_here one
    // after the other), qsort from libc between compare and sort, and no plumbing.
    let frames = thread_running(&dump, "wait_here");
    let context = format!("{}{stderr}", show(frames));
    let top = kernel_top(frames, &context);
    // libc's read wrapper innermost, or under glibc's own unexported helpers (2.41's
    // syscall cancellation), which a stripped libc shows as libc.so.6+offset.
    let first_python = frames.iter().position(|f| kind(f) == "python").unwrap();
    assert!(
        frames[top..first_python]
            .iter()
            .take_while(|f| module(f).starts_with("libc"))
            .any(|f| function(f).contains("read")),
        "libc's read is the innermost named frame\n{context}"
    );
    let python: Vec<(usize, &str, u64)> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| kind(f) == "python")
        .map(|(i, f)| (i, function(f), f["line"].as_u64().unwrap()))
        .collect();
    for f in frames.iter().filter(|f| kind(f) == "python") {
        assert_eq!(f["filename"], file, "{context}");
    }
    let names: Vec<(&str, u64)> = python.iter().map(|&(_, n, l)| (n, l)).collect();
    assert_eq!(
        names,
        [
            ("wait_here", u64::from(lines["read"])),
            ("compare", u64::from(lines["compare"])),
            ("sort", u64::from(lines["qsort"])),
            ("<module>", u64::from(lines["module"])),
        ],
        "{context}"
    );
    assert_eq!(python[1].0, python[0].0 + 1, "{context}");
    let qsort: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| kind(f) == "native" && function(f).contains("qsort"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(qsort.len(), 1, "one qsort frame\n{context}");
    assert!(
        python[1].0 < qsort[0] && qsort[0] < python[2].0,
        "{context}"
    );
    assert!(module(&frames[qsort[0]]).starts_with("libc"), "{context}");
    // Between the innermost native frames and wait_here: only the read's callers.
    assert!(
        frames[top..python[0].0].iter().all(|f| kind(f) == "native"),
        "{context}"
    );
    for f in frames.iter().filter(|f| kind(f) == "native") {
        for p in PLUMBING {
            assert!(
                !function(f).starts_with(p),
                "{} left\n{context}",
                function(f)
            );
        }
    }

    // The sleeping thread: [syscall], C frames of the sleep, then `sleeper` at its line.
    let frames = thread_running(&dump, "sleeper");
    let context = format!("{}{stderr}", show(frames));
    let top = kernel_top(frames, &context);
    let first_python = frames.iter().position(|f| kind(f) == "python").unwrap();
    assert!(first_python >= 2, "C frames under time.sleep\n{context}");
    assert!(
        frames[top..first_python]
            .iter()
            .all(|f| kind(f) == "native"),
        "{context}"
    );
    let wrapper = frames[top..first_python]
        .iter()
        .take_while(|f| module(f).starts_with("libc"))
        .find(|f| {
            ["sleep", "select", "poll"]
                .iter()
                .any(|s| function(f).contains(s))
        });
    assert!(
        wrapper.is_some(),
        "the innermost named frame is libc's sleeping call\n{context}"
    );
    assert_eq!(function(&frames[first_python]), "sleeper", "{context}");
    assert_eq!(
        frames[first_python]["line"].as_u64(),
        Some(u64::from(lines["sleep"])),
        "{context}"
    );

    // The thread waiting on a lock: libc's wait innermost, the interpreter's lock acquisition
    // under it, then `waiter` at its line.
    let frames = thread_running(&dump, "waiter");
    let context = format!("{}{stderr}", show(frames));
    let top = kernel_top(frames, &context);
    let first_python = frames.iter().position(|f| kind(f) == "python").unwrap();
    let natives = &frames[top..first_python];
    assert!(natives.iter().all(|f| kind(f) == "native"), "{context}");
    assert!(module(&natives[0]).starts_with("libc"), "{context}");
    assert!(
        natives.iter().any(|f| function(f).contains("acquire")),
        "the interpreter's lock acquisition\n{context}"
    );
    assert_eq!(
        frames[first_python]["line"].as_u64(),
        Some(u64::from(lines["acquire"])),
        "{context}"
    );
    drop(target);
}

strobe_testkit::per_interpreter! {
    fn qsort(interp) {
        check_qsort(Interp::from(interp));
    }
}

/// The text form marks native and kernel frames apart from Python ones.
#[test]
fn text_marks_native_frames() {
    let interp = Interp::pyenv("3.12.1");
    let script = Script::new(&interp, "native_qsort.py");
    let target = Announced::start(&mut script.command());
    wait_all_asleep(target.pid, 3);
    let out = strobe(&["dump", "--pid", &target.pid.to_string(), "--native"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = script.lines();
    let file = &script.in_target;
    let at = |want: &str| {
        text.lines()
            .position(|l| l == want || l.starts_with(want))
            .unwrap_or_else(|| panic!("no line {want:?} in:\n{text}"))
    };
    let wait_here = at(&format!("    wait_here ({file}:{})", lines["read"]));
    let compare = at(&format!("    compare ({file}:{})", lines["compare"]));
    assert_eq!(compare, wait_here + 1, "{text}");
    let sort = at(&format!("    sort ({file}:{})", lines["qsort"]));
    let qsort = text
        .lines()
        .position(|l| l.starts_with("  [native] ") && l.contains("qsort") && l.contains("(libc"))
        .unwrap_or_else(|| panic!("no qsort line in:\n{text}"));
    assert!(compare < qsort && qsort < sort, "{text}");
    assert!(text.contains("\n  [kernel] [syscall]\n"), "{text}");
}

/// How much of the extension's symbol information is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strip {
    /// Built with `-g`: names, files and lines.
    None,
    /// `strip -g`: symbol table only.
    Debug,
    /// `strip`: no symbols at all (its unwind tables stay).
    All,
}

/// Build `native_ext.c` into `dir` as `native_ext.so` for `interp`, with its own headers.
fn build_extension(interp: &Interpreter, dir: &Path, strip: Strip) {
    let include = run(interp.command().args([
        "-c",
        "import sysconfig; print(sysconfig.get_paths()['include'])",
    ]));
    let include = include.trim();
    let mut cc = Command::new("cc");
    cc.args(["-shared", "-fPIC", "-g", "-O0", "-o"])
        .arg(dir.join("native_ext.so"))
        .arg(crate::harness::targets_dir().join("native_ext.c"));
    match interp.chroot() {
        Some(root) => {
            // Debian's pyconfig.h includes <x86_64-linux-gnu/python3.x/pyconfig.h>: the
            // chroot's /usr/include after ours, so the host's C library headers win.
            cc.arg("-I")
                .arg(root.join(include.trim_start_matches('/')))
                .arg("-idirafter")
                .arg(root.join("usr/include"));
        }
        None => {
            cc.arg("-I").arg(include);
        }
    }
    run(&mut cc);
    let so = dir.join("native_ext.so");
    match strip {
        Strip::None => {}
        Strip::Debug => {
            run(Command::new("strip").arg("-g").arg(&so));
        }
        Strip::All => {
            run(Command::new("strip").arg(&so));
        }
    }
}

/// Line of the `/* @c:NAME */` marker in `native_ext.c`.
fn c_line(name: &str) -> u64 {
    let text = std::fs::read_to_string(crate::harness::targets_dir().join("native_ext.c")).unwrap();
    let mark = format!("/* @c:{name} */");
    text.lines().position(|l| l.contains(&mark)).unwrap() as u64 + 1
}

fn check_extension(interp: &Interpreter, strip: Strip) {
    let script = Script::new(&Interp::from(interp), "native_ext_recurse.py");
    build_extension(interp, script.here.parent().unwrap(), strip);
    let target = Announced::start(&mut script.command());
    wait_all_asleep(target.pid, 1);
    let (dump, stderr) = dump_native(target.pid);
    let frames = thread_running(&dump, "wait_here");
    let context = format!("{strip:?}\n{}{stderr}", show(frames));
    assert!(
        dump["threads"][0].get("native_error").is_none(),
        "{}\n{context}",
        dump["threads"][0]["native_error"]
    );
    let lines = script.lines();
    let call = c_line("call");
    // The Python frames and the extension's, in order: nothing else of either in between.
    let ours: Vec<String> = frames
        .iter()
        .filter(|f| kind(f) == "python" || module(f) == "native_ext.so")
        .map(|f| match kind(f) {
            "python" => format!("py {} {}", function(f), f["line"]),
            _ => {
                let file = f["filename"].as_str().unwrap();
                let file = file.rsplit('/').next().unwrap();
                match strip {
                    Strip::None => format!("c {} {file}:{}", function(f), f["line"]),
                    Strip::Debug => {
                        assert!(f["symbol_offset"].is_u64(), "{context}");
                        format!("c {} {file}:{}", function(f), f["line"])
                    }
                    Strip::All => {
                        let offset = f["module_offset"].as_u64().unwrap();
                        assert_eq!(
                            function(f),
                            format!("native_ext.so+{offset:#x}"),
                            "{context}"
                        );
                        format!("c module+offset {file}:{}", f["line"])
                    }
                }
            }
        })
        .collect();
    let c = match strip {
        Strip::None => format!("c descend native_ext.c:{call}"),
        Strip::Debug => "c descend :null".to_string(),
        Strip::All => "c module+offset :null".to_string(),
    };
    let py = |name: &str, mark: &str| format!("py {name} {}", lines[mark]);
    let want = [
        py("wait_here", "read"),
        py("step", "leaf"),
        c.clone(),
        py("step", "step"),
        c.clone(),
        py("step", "step"),
        c,
        py("<module>", "module"),
    ];
    assert_eq!(ours, want, "{context}");
    for f in frames.iter().filter(|f| kind(f) == "native") {
        for p in PLUMBING {
            assert!(
                !function(f).starts_with(p),
                "{} left\n{context}",
                function(f)
            );
        }
    }
    if strip == Strip::All {
        assert!(
            stderr.contains("native_ext.so") && stderr.contains("module+offset"),
            "one line says which module has no symbols: {stderr}"
        );
    }
}

strobe_testkit::per_interpreter! {
    fn extension(interp) {
        check_extension(interp, Strip::None);
    }
}

strobe_testkit::per_interpreter! {
    fn extension_stripped(interp) for [pyenv_2_7, pyenv_3_12, debian_3_11, sid_3_14, sid_3_15_debug] {
        check_extension(interp, Strip::Debug);
        check_extension(interp, Strip::All);
    }
}

/// Wait until thread `pid` of `pid` runs (its `syscall` file says `running`).
fn wait_running(pid: i32) {
    let since = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/syscall"))
        .unwrap()
        .starts_with("running")
    {
        assert!(since.elapsed() < ASLEEP_TIMEOUT, "the target never ran");
        std::thread::yield_now();
    }
}

/// A running thread is stopped alone and read during the stop: its merged stack is the
/// builtin's C frames over the Python line that called it, with no kernel frame.
fn check_running(interp: Interp) {
    let script = Script::new(&interp, "native_spin.py");
    let target = Announced::start(&mut script.command());
    wait_running(target.pid);
    let (dump, stderr) = dump_native(target.pid);
    let frames = thread_running(&dump, "spin");
    let context = format!("{}{stderr}", show(frames));
    assert!(
        dump["threads"][0].get("native_error").is_none(),
        "{}\n{context}",
        dump["threads"][0]["native_error"]
    );
    let lines = script.lines();
    let python: Vec<(usize, String)> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| kind(f) == "python")
        .map(|(i, f)| (i, format!("{} {}", function(f), f["line"])))
        .collect();
    let names: Vec<&str> = python.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("spin {}", lines["sum"]),
            format!("<module> {}", lines["module"])
        ],
        "{context}"
    );
    assert!(frames.iter().all(|f| kind(f) != "kernel"), "{context}");
    // The builtin runs above spin: named, or (Debian's stripped python3.11, whose static
    // functions have no symbol) as offsets into the interpreter binary.
    let above = &frames[..python[0].0];
    assert!(!above.is_empty(), "{context}");
    assert!(
        above.iter().any(|f| function(f).contains("builtin_sum"))
            || above.iter().all(|f| {
                let offset = f["module_offset"].as_u64().unwrap();
                module(f).starts_with("python")
                    && function(f) == format!("{}+{offset:#x}", module(f))
            }),
        "the builtin runs above spin\n{context}"
    );
}

strobe_testkit::per_interpreter! {
    fn running(interp) {
        check_running(Interp::from(interp));
    }
}
