//! Which Python frames were entered from C, read live at our offsets.
//!
//! Merging native and Python stacks needs to know where one evaluation loop call ends and the
//! next begins: 3.11 sets `_PyInterpreterFrame.is_entry` on the first frame of each call, 3.12+
//! put a shim frame below it instead, owned by `FRAME_OWNED_BY_CSTACK` (3.12, 3.13) or
//! `FRAME_OWNED_BY_INTERPRETER` (3.14+, where the enum was renumbered). A script running in
//! the real interpreter walks its own frame chain through ctypes at our table's offsets from
//! places whose callers are known: a `sorted(key=...)` key function and a `__del__` (both
//! called from C), and a function called from Python; the test decides from the flags or the
//! owners which frames are entries and compares with what the calls were.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use strobe_python_abi::{layout_for, Flavour, Layout};

/// Prints one line per place: `NAME code:owner:is_entry ...`, innermost frame first, starting
/// at the caller of `chain` (code is a name from NAMES or `?`; is_entry is -1 when the version
/// has no such member).
const SCRIPT: &str = r#"
import ctypes, sys
A = dict((k, int(v)) for k, v in (a.split("=", 1) for a in sys.argv[1:]))
MASK = A["stackref_mask"]
get = ctypes.pythonapi.PyThreadState_Get
get.restype = ctypes.c_void_p

def u64(a):
    return ctypes.c_uint64.from_address(a).value

def u8(a):
    return ctypes.c_uint8.from_address(a).value

def chain():
    # Read inline: a Python helper called here would be the innermost frame.
    t = get()
    if "tstate_cframe" in A:
        cf = ctypes.c_uint64.from_address(t + A["tstate_cframe"]).value
        p = ctypes.c_uint64.from_address(cf + A["cframe_current_frame"]).value
    else:
        p = ctypes.c_uint64.from_address(t + A["tstate_current_frame"]).value
    if u64(p + A["iframe_code"]) & MASK != id(chain.__code__):
        raise SystemExit("the innermost frame is not chain's")
    p = u64(p + A["iframe_previous"])
    out = []
    while p and len(out) < 100:
        code = u64(p + A["iframe_code"]) & MASK
        entry = u8(p + A["iframe_is_entry"]) if "iframe_is_entry" in A else -1
        out.append("%s:%d:%d" % (NAMES.get(code, "?"), u8(p + A["iframe_owner"]), entry))
        p = u64(p + A["iframe_previous"])
    return " ".join(out)

def key(x):
    SEEN.append("key " + chain())
    return x

def by_python():
    return sorted([2, 1], key=key)

class D(object):
    def __del__(self):
        SEEN.append("del " + chain())

def drop():
    d = D()
    del d

def plain():
    SEEN.append("plain " + chain())

SEEN = []
NAMES = {}
for f in (key, by_python, drop, plain, D.__del__):
    NAMES[id(f.__code__)] = f.__name__
NAMES[id(sys._getframe().f_code)] = "module"
by_python()
drop()
plain()
for line in SEEN[:1] + SEEN[-2:]:
    print(line)
"#;

enum Where {
    Host(&'static str),
    Sid(&'static str),
}

/// One frame of the chain as the script saw it.
#[derive(Debug)]
struct Seen {
    name: String,
    owner: u8,
    is_entry: i32,
}

fn offsets(l: &Layout) -> Vec<String> {
    let mut args = vec![format!("stackref_mask={}", l.stackref_mask)];
    let fields = [
        ("tstate_cframe", l.tstate_cframe),
        ("cframe_current_frame", l.cframe_current_frame),
        ("tstate_current_frame", l.tstate_current_frame),
        ("iframe_previous", l.iframe_previous),
        ("iframe_code", l.iframe_code),
        ("iframe_owner", l.iframe_owner),
        ("iframe_is_entry", l.iframe_is_entry),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            args.push(format!("{name}={v}"));
        }
    }
    args
}

/// Runs the script; returns each place's frames, innermost first.
fn run(target: Where, layout: &Layout) -> Vec<(String, Vec<Seen>)> {
    let mut cmd = match target {
        Where::Host(exe) => {
            assert!(Path::new(exe).exists(), "{exe} is missing (machine image)");
            Command::new(exe)
        }
        Where::Sid(exe) => {
            assert!(
                Path::new(strobe_testkit::interpreters::require_sid_str())
                    .join("usr/bin")
                    .join(exe)
                    .exists(),
                "{}/usr/bin/{exe} is missing: run .ci/provision.sh to create the sid chroot",
                strobe_testkit::interpreters::require_sid_str()
            );
            let mut cmd = Command::new("chroot");
            cmd.arg(strobe_testkit::interpreters::require_sid_str())
                .arg(exe);
            cmd
        }
    };
    let output = cmd
        .arg("-c")
        .arg(SCRIPT)
        .args(offsets(layout))
        .output()
        .expect("start the interpreter");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "script exited {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let place = words.next().unwrap().to_string();
            let frames = words
                .map(|w| {
                    let mut f = w.rsplitn(3, ':');
                    let is_entry = f.next().unwrap().parse().unwrap();
                    let owner = f.next().unwrap().parse().unwrap();
                    let name = f.next().unwrap().to_string();
                    Seen {
                        name,
                        owner,
                        is_entry,
                    }
                })
                .collect();
            (place, frames)
        })
        .collect()
}

/// The Python frames of a chain with, for each, whether it was entered from C, decided the
/// way the version marks it. Panics on an owner value the version does not explain.
fn entries(layout: &Layout, frames: &[Seen]) -> Vec<(String, bool)> {
    // 0..=2: owned by a thread, a generator, a frame object (the same in every version).
    let python = |o: u8| o <= 2;
    if layout.iframe_is_entry.is_some() {
        return frames
            .iter()
            .map(|f| {
                assert!(python(f.owner), "3.11 has no shim frames: {frames:?}");
                assert!(f.is_entry == 0 || f.is_entry == 1, "a bool: {frames:?}");
                (f.name.clone(), f.is_entry == 1)
            })
            .collect();
    }
    // 3.12+: the owner of the shim below an entry frame. 3.14 still declares
    // FRAME_OWNED_BY_CSTACK but marks the shim with FRAME_OWNED_BY_INTERPRETER.
    let shim = layout.entry_shim_owner().expect("3.12+ has a shim owner");
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if python(f.owner) {
            let below = frames.get(i + 1).map(|b| b.owner);
            out.push((f.name.clone(), below == Some(shim)));
        } else {
            assert_eq!(f.owner, shim, "unexpected owner at {i}: {frames:?}");
        }
    }
    out
}

fn check(target: Where, major: u8, minor: u8, flavour: Flavour) {
    let layout = layout_for(major, minor, flavour).unwrap();
    let places = run(target, layout);
    let got: Vec<(String, Vec<(String, bool)>)> = places
        .iter()
        .map(|(place, frames)| (place.clone(), entries(layout, frames)))
        .collect();
    let e = |name: &str, entry: bool| (name.to_string(), entry);
    let want = vec![
        (
            "key".to_string(),
            // sorted() calls key from C; by_python was called by the module's code.
            vec![e("key", true), e("by_python", false), e("module", true)],
        ),
        (
            "del".to_string(),
            // The deallocator calls __del__ from C.
            vec![e("__del__", true), e("drop", false), e("module", true)],
        ),
        (
            "plain".to_string(),
            vec![e("plain", false), e("module", true)],
        ),
    ];
    assert_eq!(got, want, "{places:?}");
}

const D: Flavour = Flavour::DEFAULT;
const DEBUG: Flavour = Flavour {
    free_threaded: false,
    debug: true,
};

#[test]
fn pyenv_3_11_is_entry() {
    check(
        Where::Host(strobe_testkit::interpreters::require_path_str("pyenv_3_11")),
        3,
        11,
        D,
    );
}

#[test]
fn debian_3_11_is_entry() {
    check(
        Where::Host(strobe_testkit::interpreters::require_path_str(
            "debian_3_11",
        )),
        3,
        11,
        D,
    );
}

#[test]
fn pyenv_3_12_cstack_shim() {
    check(
        Where::Host(strobe_testkit::interpreters::require_path_str("pyenv_3_12")),
        3,
        12,
        D,
    );
}

#[test]
fn pyenv_3_13_cstack_shim() {
    check(
        Where::Host(strobe_testkit::interpreters::require_path_str("pyenv_3_13")),
        3,
        13,
        D,
    );
}

#[test]
fn sid_3_13_cstack_shim() {
    check(Where::Sid("python3.13"), 3, 13, D);
    check(Where::Sid("python3.13d"), 3, 13, DEBUG);
}

#[test]
fn sid_3_14_interpreter_shim() {
    check(Where::Sid("python3.14"), 3, 14, D);
    check(Where::Sid("python3.14d"), 3, 14, DEBUG);
}

#[test]
fn sid_3_15_interpreter_shim() {
    check(Where::Sid("python3.15"), 3, 15, D);
    check(Where::Sid("python3.15d"), 3, 15, DEBUG);
}
