//! The merge on real interpreters: Python calls libc's `qsort` through ctypes, whose comparison
//! (Python) blocks reading a pipe. The thread is then asleep, so its native stack is captured
//! without a stop (and again with one) and symbolised; the Python side of the same instant is
//! the script's own account of its frames (read through ctypes at strobe's offsets, printed
//! before it blocks). The evaluation loops on the C stack must be exactly as many as the runs
//! of Python frames, with `qsort` between the run that compares and the run that sorts, and
//! the merged stack must interleave them with no interpreter plumbing left.
//!
//! The sampler will get the Python frames and entry flags from the walker; until then the
//! script reports them itself: the walker must provide, per Python frame, whether it was
//! entered from C (3.11 `is_entry`; 3.12+ the owner of the frame below).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use strobe_native::{merge, EvalShape, MergedFrame, NativeEnd, NativeFrame, UnwindEnd};
use strobe_python_abi::{layout_for, Flavour};
use strobe_testkit::Ready;
use support::*;

/// Prints `READY name:entry,...` for its Python frames (innermost first) and blocks in `read`
/// inside a comparison function that `qsort` called. Runs on 2.7 and 3.x.
const SCRIPT: &str = r#"
import ctypes, os, sys
A = dict((k, int(v)) for k, v in (a.split("=", 1) for a in sys.argv[1:]))
libc = ctypes.CDLL("libc.so.6")
CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
r, w = os.pipe()

def frames():
    # (name, entered from C) of the caller's frames, innermost first.
    if "iframe_owner" not in A:
        # Up to 3.10 each frame is its own evaluation: all entries.
        f, out = sys._getframe(1), []
        while f is not None:
            out.append((f.f_code.co_name, 1))
            f = f.f_back
        return out
    mask = A["stackref_mask"]
    get = ctypes.pythonapi.PyThreadState_Get
    get.restype = ctypes.c_void_p
    t = get()
    if "tstate_cframe" in A:
        cf = ctypes.c_uint64.from_address(t + A["tstate_cframe"]).value
        p = ctypes.c_uint64.from_address(cf + A["cframe_current_frame"]).value
    else:
        p = ctypes.c_uint64.from_address(t + A["tstate_current_frame"]).value
    names = {}
    f = sys._getframe()
    while f is not None:
        names[id(f.f_code)] = f.f_code.co_name
        f = f.f_back
    chain = []
    while p:
        code = ctypes.c_uint64.from_address(p + A["iframe_code"]).value & mask
        owner = ctypes.c_uint8.from_address(p + A["iframe_owner"]).value
        entry = 0
        if "iframe_is_entry" in A:
            entry = ctypes.c_uint8.from_address(p + A["iframe_is_entry"]).value
        chain.append((names.get(code), owner, entry))
        p = ctypes.c_uint64.from_address(p + A["iframe_previous"]).value
    out = []
    for i, (name, owner, entry) in enumerate(chain):
        if owner > 2:
            continue  # a shim frame
        if "shim" in A:
            entry = int(i + 1 < len(chain) and chain[i + 1][1] == A["shim"])
        out.append((name, entry))
    return out[1:]  # without frames() itself

def wait_here():
    print("READY " + ",".join("%s:%d" % f for f in frames()))
    sys.stdout.flush()
    os.read(r, 1)

def compare(a, b):
    wait_here()
    return a[0] - b[0]

def sort():
    arr = (ctypes.c_int * 2)(2, 1)
    libc.qsort(arr, 2, ctypes.sizeof(ctypes.c_int), CMP(compare))

sort()
"#;

fn base(f: &NativeFrame) -> &str {
    f.function
        .as_deref()
        .map_or("?", |n| n.split('.').next().unwrap_or(n))
}

/// How to start an interpreter: a host path, or a command inside the sid chroot; with extra
/// interpreter options.
struct Python<'a> {
    exe: &'a str,
    sid: bool,
    options: &'a [&'a str],
}

const D: Flavour = Flavour::DEFAULT;
const DEBUG: Flavour = Flavour {
    free_threaded: false,
    debug: true,
};

fn host(exe: &str) -> Python<'_> {
    Python {
        exe,
        sid: false,
        options: &[],
    }
}

fn sid(exe: &str) -> Python<'_> {
    Python {
        exe,
        sid: true,
        options: &[],
    }
}

fn check(python: Python<'_>, major: u8, minor: u8, flavour: Flavour) {
    let layout = layout_for(major, minor, flavour).unwrap();
    let mut args = vec![format!("stackref_mask={}", layout.stackref_mask)];
    let fields = [
        ("tstate_cframe", layout.tstate_cframe),
        ("cframe_current_frame", layout.cframe_current_frame),
        ("tstate_current_frame", layout.tstate_current_frame),
        ("iframe_previous", layout.iframe_previous),
        ("iframe_code", layout.iframe_code),
        ("iframe_owner", layout.iframe_owner),
        ("iframe_is_entry", layout.iframe_is_entry),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            args.push(format!("{name}={v}"));
        }
    }
    // 3.12+: the owner of the shim frame below an entry frame.
    if let Some(shim) = layout.entry_shim_owner() {
        args.push(format!("shim={shim}"));
    }
    let mut cmd = if python.sid {
        assert!(
            std::path::Path::new(strobe_testkit::interpreters::require_sid_str())
                .join("usr/bin")
                .join(python.exe)
                .exists(),
            "{}/usr/bin/{} is missing: run .ci/provision.sh to create the sid chroot",
            strobe_testkit::interpreters::require_sid_str(),
            python.exe
        );
        let mut cmd = Command::new("chroot");
        cmd.arg(strobe_testkit::interpreters::require_sid_str())
            .arg(python.exe);
        cmd
    } else {
        Command::new(python.exe)
    };
    cmd.args(python.options).arg("-c").arg(SCRIPT).args(&args);
    let target = Ready::start(&mut cmd, python.exe);
    let said: Vec<(String, bool)> = target
        .said
        .split(',')
        .map(|f| {
            let (name, entry) = f.rsplit_once(':').unwrap();
            (name.to_string(), entry == "1")
        })
        .collect();
    let names: Vec<&str> = said.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["wait_here", "compare", "sort", "<module>"]);
    let entries: Vec<bool> = said.iter().map(|(_, e)| *e).collect();
    let shape = EvalShape::for_version(major, minor);
    // The loop calls the merge needs: one per frame up to 3.10, one per run after.
    let runs = match shape {
        EvalShape::EntryRuns => entries.iter().filter(|e| **e).count(),
        _ => entries.len(),
    };

    let pid = target.pid();
    let mut native = Native::new(pid, strobe_native::DebugSearch::default());
    for how in [How::Blocked, How::Ptrace] {
        let (regs, stack) = capture(pid, pid, how);
        let (frames, unwound) = native.frames(&regs, &stack);
        let context = format!("{how:?}, Python {said:?}\n{}", show(&frames));
        assert_eq!(unwound.end, Some(UnwindEnd::Complete), "{context}");
        let loops: Vec<usize> = frames
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                let name = base(f);
                name == "_PyEval_EvalFrameDefault" || (major == 2 && name == "PyEval_EvalFrameEx")
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(loops.len(), runs, "{context}");
        // qsort (glibc: `__GI___qsort_r` by DWARF) runs between the loop evaluating the comparison and the one evaluating `sort`.
        let qsort = frames
            .iter()
            .position(|f| base(f).contains("qsort"))
            .unwrap_or_else(|| panic!("no qsort\n{context}"));
        // The loop that evaluates a frame: the number of runs that end before it (a run ends
        // at an entry frame; up to 3.10 every frame is its own run).
        let compare_loop = match shape {
            EvalShape::EntryRuns => usize::from(entries[0]),
            _ => 1,
        };
        assert!(
            loops[compare_loop] < qsort && qsort < loops[compare_loop + 1],
            "{context}"
        );

        let mut merged = Vec::new();
        merge(
            shape,
            &frames,
            NativeEnd::Complete,
            &entries,
            None,
            true,
            &mut merged,
        )
        .unwrap_or_else(|e| panic!("{e}\n{context}"));
        let rendered: Vec<String> = merged
            .iter()
            .map(|m| match m {
                MergedFrame::Python(i) => format!("py:{}", names[*i]),
                MergedFrame::Native(i) => base(&frames[*i]).to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        let context = format!("{context}merged: {rendered:#?}");
        let at = |name: &str| {
            rendered
                .iter()
                .position(|r| r == name)
                .unwrap_or_else(|| panic!("no {name}\n{context}"))
        };
        // Innermost libc's read, then the Python frames in order, qsort between the two halves.
        let py: Vec<usize> = ["py:wait_here", "py:compare", "py:sort", "py:<module>"]
            .iter()
            .map(|n| at(n))
            .collect();
        assert!(py.windows(2).all(|w| w[0] < w[1]), "{context}");
        assert_eq!(
            py[1],
            py[0] + 1,
            "nothing between two frames of one run\n{context}"
        );
        let q = rendered.iter().position(|r| r.contains("qsort")).unwrap();
        assert!(py[1] < q && q < py[2], "{context}");
        assert!(
            frames[0]
                .module
                .as_ref()
                .unwrap()
                .short_name()
                .starts_with("libc"),
            "{context}"
        );
        assert!(py[0] > 0, "{context}");
        // No plumbing left.
        for r in &rendered {
            for plumbing in [
                "_PyEval_",
                "PyEval_",
                "PyObject_Call",
                "_PyObject_",
                "_PyFunction_",
            ] {
                assert!(!r.starts_with(plumbing), "{r} left\n{context}");
            }
        }
    }
}

#[test]
fn pyenv_2_7() {
    check(
        host(strobe_testkit::interpreters::require_path_str("pyenv_2_7")),
        2,
        7,
        D,
    );
}

#[test]
fn pyenv_3_10() {
    check(
        host(strobe_testkit::interpreters::require_path_str("pyenv_3_10")),
        3,
        10,
        D,
    );
}

#[test]
fn pyenv_3_11() {
    check(
        host(strobe_testkit::interpreters::require_path_str("pyenv_3_11")),
        3,
        11,
        D,
    );
}

#[test]
fn pyenv_3_12() {
    check(
        host(strobe_testkit::interpreters::require_path_str("pyenv_3_12")),
        3,
        12,
        D,
    );
}

/// `-X perf`: each Python function is called through a trampoline in anonymous memory, and
/// every Python frame is its own evaluation loop call (calls between Python functions are not
/// inlined while a custom frame evaluator is set), each marked as an entry.
#[test]
fn pyenv_3_12_perf_trampolines() {
    let python = Python {
        options: &["-X", "perf"],
        ..host(strobe_testkit::interpreters::require_path_str("pyenv_3_12"))
    };
    check(python, 3, 12, D);
}

#[test]
fn pyenv_3_13_perf_trampolines() {
    let python = Python {
        options: &["-X", "perf"],
        ..host(strobe_testkit::interpreters::require_path_str("pyenv_3_13"))
    };
    check(python, 3, 13, D);
}

#[test]
fn sid_3_14_perf_trampolines() {
    let python = Python {
        options: &["-X", "perf"],
        ..sid("python3.14")
    };
    check(python, 3, 14, D);
}

#[test]
fn pyenv_3_13() {
    check(
        host(strobe_testkit::interpreters::require_path_str("pyenv_3_13")),
        3,
        13,
        D,
    );
}

#[test]
fn sid_3_13_debug() {
    check(sid("python3.13d"), 3, 13, DEBUG);
}

#[test]
fn sid_3_14() {
    check(sid("python3.14"), 3, 14, D);
    check(sid("python3.14d"), 3, 14, DEBUG);
}

#[test]
fn sid_3_15() {
    check(sid("python3.15"), 3, 15, D);
    check(sid("python3.15d"), 3, 15, DEBUG);
}

/// Debian 12's python3.11: stripped, libpython linked in, no debug file (names from `.dynsym`).
#[test]
fn debian_3_11() {
    check(
        host(strobe_testkit::interpreters::require_path_str(
            "debian_3_11",
        )),
        3,
        11,
        D,
    );
}
