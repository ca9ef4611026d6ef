//! Live tests: `locate` against every interpreter on the machine, each compared with what the
//! target says about itself.
//!
//! Each target prints one `INFO` line (its `sys.hexversion`, whether it is a debug build, and
//! the address of `_PyRuntime` / `_PyThreadState_Current` as `ctypes` resolves it), then
//! `READY`, and waits on stdin. Tests synchronise on that output, never on sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use strobe_locate::{locate, LocateError, VersionSource};
use strobe_memory::RemoteMemory;
use strobe_remote::ProcessMemory;
use strobe_testkit::interpreters::{self, Interpreter, Source};
use strobe_testkit::{Ready, TempDir};

const PROBE: &str = r#"
import sys, ctypes
name = "_PyRuntime" if sys.version_info >= (3, 7) else "_PyThreadState_Current"
addr = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, name))
sys.stdout.write("INFO %d %d %d\n" % (sys.hexversion, hasattr(sys, "gettotalrefcount"), addr))
sys.stdout.write("READY\n")
sys.stdout.flush()
sys.stdin.read()
"#;

struct Target {
    process: Ready,
    hexversion: u64,
    debug: bool,
    root_addr: u64,
}

impl Target {
    fn spawn(mut cmd: Command) -> Target {
        let what = format!("{cmd:?}");
        let process = Ready::start(cmd.stdin(Stdio::piped()), &what);
        let info = process.preamble.iter().find_map(|line| {
            let rest = line.trim().strip_prefix("INFO ")?;
            let f: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
            Some((f[0], f[1] == 1, f[2]))
        });
        let (hexversion, debug, root_addr) = info.expect("no INFO line");
        Target {
            process,
            hexversion,
            debug,
            root_addr,
        }
    }

    fn python(exe: impl AsRef<Path>) -> Target {
        let mut cmd = Command::new(exe.as_ref());
        cmd.arg("-c").arg(PROBE);
        Target::spawn(cmd)
    }

    /// A registry interpreter (sid's run in the chroot, which execs them: the PID stays).
    fn interpreter(interp: &Interpreter) -> Target {
        let mut cmd = interp.command();
        cmd.arg("-c").arg(PROBE);
        Target::spawn(cmd)
    }

    fn pid(&self) -> i32 {
        self.process.pid()
    }
}

/// Locate `t` and check everything against what it printed about itself.
fn check(t: &Target) -> strobe_locate::PythonProcess {
    let mem = ProcessMemory::open(t.pid()).unwrap();
    let p = locate(t.pid(), &mem).unwrap_or_else(|e| panic!("locate failed: {e}"));
    assert_eq!(p.pid, t.pid());
    assert_eq!(
        p.version.to_hex(),
        t.hexversion,
        "version {} vs target's {:#x}",
        p.version,
        t.hexversion
    );
    assert_eq!(p.debug_build, t.debug, "debug_build");
    assert!(p.binary.exists(), "{}", p.binary.display());
    let modern = t.hexversion >= 0x0307_0000;
    if modern {
        assert_eq!(p.runtime, Some(t.root_addr), "_PyRuntime address");
        assert_eq!((p.interp_head, p.tstate_current), (None, None));
    } else {
        assert_eq!(p.runtime, None);
        assert_eq!(
            p.tstate_current,
            Some(t.root_addr),
            "_PyThreadState_Current address"
        );
        // pyenv's libraries are unstripped: the static list head is found, and it points at
        // the (only) interpreter.
        let head = p.interp_head.expect("interp_head");
        assert_ne!(mem.read_u64(head).unwrap(), 0);
    }
    if t.hexversion >= 0x030d_0000 {
        // _Py_DebugOffsets opens _PyRuntime with its cookie (Include/internal/pycore_runtime.h).
        let mut cookie = [0u8; 8];
        mem.read_into(p.runtime.unwrap(), &mut cookie).unwrap();
        assert_eq!(&cookie, b"xdebugpy");
        assert_eq!(mem.read_u64(p.runtime.unwrap() + 8).unwrap(), t.hexversion);
    }
    let expected_source = if t.hexversion >= 0x030b_0000 {
        VersionSource::PyVersionSymbol
    } else {
        VersionSource::VersionBuffer
    };
    assert_eq!(p.version_source, expected_source);
    assert!(p.notes.is_empty(), "{:?}", p.notes);
    p
}

fn pyenv(version: &str) -> PathBuf {
    interpreters::pyenv_version(version).require().path()
}

/// Every interpreter of the registry, located and checked against what it says, plus what
/// its kind of build implies about the file that holds the runtime.
fn check_interpreter(interp: &Interpreter) {
    let t = Target::interpreter(interp.require());
    let p = check(&t);
    match interp.source {
        Source::Pyenv(_) => {
            assert!(
                p.binary_in_target.contains("/lib/libpython"),
                "{}",
                p.binary_in_target
            );
            assert_ne!(p.load_bias, 0, "shared libraries are relocated");
            assert_eq!(p.load_bias % 4096, 0);
        }
        Source::System(path) => {
            assert_eq!(p.binary_in_target, path);
            assert_eq!(
                p.load_bias, 0,
                "Debian's python3.11 is linked at fixed addresses"
            );
            // Opened through the target's root, so that a container's files are the ones we
            // read.
            assert_eq!(
                p.binary,
                PathBuf::from(format!("/proc/{}/root{path}", t.pid()))
            );
        }
        Source::Sid(_) => {
            // Maps name the file by its path from here; it is opened as that same file.
            let root = interpreters::sid_root();
            assert!(
                Path::new(&p.binary_in_target).starts_with(&root),
                "{}",
                p.binary_in_target
            );
            assert!(p.binary_in_target.contains("/usr/bin/python3.1"));
            // That path does not exist under the target's root (/proc/PID/root/var/cache/...),
            // so the file is opened as named, after checking it is the mapped inode.
            assert_eq!(p.binary, PathBuf::from(&p.binary_in_target));
            if interp.name == "sid_3_14" {
                // python3.14 is the non-PIE build: linked at fixed addresses, bias 0.
                assert_eq!(p.load_bias, 0);
            }
        }
    }
}

strobe_testkit::per_interpreter! {
    fn located(interp) {
        check_interpreter(interp);
    }
}

#[test]
fn renamed_copies_are_still_python() {
    let dir = TempDir::new();
    // A static build (the runtime is in the executable) and a shared one (in libpython,
    // found through the copy's RPATH), neither named like Python.
    for (src, name) in [
        (interpreters::debian_3_11().require().path(), "worker"),
        (pyenv("3.12.1"), "daemon"),
    ] {
        let copy = dir.join(name);
        strobe_testkit::copy_executable(src.as_ref(), &copy);
        let t = Target::python(&copy);
        let p = check(&t);
        if name == "worker" {
            assert_eq!(p.binary_in_target, copy.to_str().unwrap());
        }
    }
}

#[test]
fn venvs_are_python() {
    let dir = TempDir::new();
    for base in [PathBuf::from("/usr/bin/python3"), pyenv("3.10.13")] {
        let venv = dir.join(base.file_name().unwrap());
        let status = Command::new(&base)
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(status.success());
        let t = Target::python(venv.join("bin/python"));
        check(&t);
    }
}

#[test]
fn sleep_is_not_python() {
    let mut child = Command::new("sleep")
        .arg("1000")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // std's spawn returns only after the exec succeeded (it waits for the CLOEXEC error
    // pipe to close), so the process is already `sleep`.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let err = locate(pid, &ProcessMemory::open(pid).unwrap()).unwrap_err();
    let _ = child.kill();
    let _ = child.wait();
    assert!(matches!(err, LocateError::NotPython { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "process {pid} ({}) does not look like Python: no libpython or _PyRuntime/interp_head \
             symbol found",
            exe.file_name().unwrap().to_string_lossy()
        )
    );
}

#[test]
fn bogus_pid() {
    let err = locate(i32::MAX, &ProcessMemory::new(i32::MAX)).unwrap_err();
    assert_eq!(err.to_string(), format!("no process with PID {}", i32::MAX));
}

#[test]
fn kernel_thread() {
    let kthreadd = std::fs::read_to_string("/proc/2/stat").unwrap();
    assert!(kthreadd.starts_with("2 (kthreadd)"), "PID 2 is {kthreadd}");
    let err = locate(2, &ProcessMemory::new(2)).unwrap_err();
    assert!(
        matches!(err, LocateError::KernelThread { pid: 2, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "process 2 (kthreadd) is a kernel thread, not a Python process"
    );
}

#[test]
fn zombie() {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    // Wait for the exit but leave the child unreaped: a zombie.
    waitid(
        Id::Pid(nix::unistd::Pid::from_raw(pid)),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
    )
    .unwrap();
    let err = locate(pid, &ProcessMemory::new(pid)).unwrap_err();
    child.wait().unwrap();
    assert!(matches!(err, LocateError::Zombie { .. }), "{err}");
    assert!(err
        .to_string()
        .starts_with(&format!("process {pid} (true) is a zombie")));
}

#[test]
fn stripped_old_libpython_falls_back_to_tstate_current() {
    // ≤3.6 keeps the interpreter list head in a static (`interp_head`, Python/pystate.c) that
    // only the full symbol table names. Strip a copy of the library and load it instead of
    // the original (RUNPATH yields to LD_LIBRARY_PATH).
    let dir = TempDir::new();
    let lib = "libpython3.6m.so.1.0";
    let status = Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(dir.join(lib))
        .arg(
            interpreters::pyenv_version("3.6.15")
                .prefix()
                .join("lib")
                .join(lib),
        )
        .status()
        .unwrap();
    assert!(status.success());
    let mut cmd = Command::new(pyenv("3.6.15"));
    cmd.env("LD_LIBRARY_PATH", dir.path()).arg("-c").arg(PROBE);
    let t = Target::spawn(cmd);
    let mem = ProcessMemory::open(t.pid()).unwrap();
    let p = locate(t.pid(), &mem).unwrap();
    assert_eq!(p.binary_in_target, dir.join(lib).to_str().unwrap());
    assert_eq!(p.version.to_hex(), t.hexversion);
    assert_eq!(p.interp_head, None);
    assert_eq!(p.tstate_current, Some(t.root_addr));
    assert_eq!(p.notes.len(), 1);
    assert!(
        p.notes[0].contains("_PyThreadState_Current"),
        "{}",
        p.notes[0]
    );
}

/// Two processes of the same interpreter (a pool's workers, under `--subprocesses`): the
/// second one's interpreter file is not read and parsed again, and what is found is right for
/// each (its own addresses, as its own probe says).
#[test]
fn a_second_process_of_the_same_interpreter_reuses_the_analysis() {
    let exe = pyenv("3.12.1");
    let first = Target::python(&exe);
    let second = Target::python(&exe);
    let a = check(&first);
    let before = strobe_locate::analyses_reused();
    let b = check(&second);
    // Tests of this binary run in parallel and may reuse analyses too: more, never fewer.
    assert!(strobe_locate::analyses_reused() > before);
    assert_eq!(a.binary_in_target, b.binary_in_target);
    assert_eq!(a.version, b.version);
}
