//! Interpreters that are not where or what their names say: strobe must not depend on names.

use crate::harness::{check_dump, dump_json, Interp, Target, TempDir};
use std::process::Command;
use strobe_testkit::interpreters;

/// A copy of Debian's static python3.11 under a name that says nothing about Python.
#[test]
fn renamed_static_interpreter() {
    let dir = TempDir::new();
    let renamed = dir.path().join("app-server");
    strobe_testkit::copy_executable(&interpreters::debian_3_11().require().path(), &renamed);
    let target = Target::start(&Interp::Host(renamed));
    check_dump(&target, &dump_json(target.pid(), &[]));
}

/// A renamed copy of a shared-libpython build (the runtime lives in libpython, found by its
/// absolute RUNPATH, not next to the executable).
#[test]
fn renamed_shared_interpreter() {
    let original = Interp::pyenv("3.12.1");
    original.require();
    let Interp::Host(path) = original else {
        unreachable!()
    };
    let dir = TempDir::new();
    let renamed = dir.path().join("worker");
    std::fs::copy(path, &renamed).unwrap();
    let target = Target::start(&Interp::Host(renamed));
    check_dump(&target, &dump_json(target.pid(), &[]));
}

/// `python -m venv`: the venv's `bin/python` is a symlink to the base interpreter.
#[test]
fn venv_interpreter() {
    let base = Interp::pyenv("3.12.1");
    base.require();
    let Interp::Host(python) = base else {
        unreachable!()
    };
    let dir = TempDir::new();
    let venv = dir.path().join("venv");
    let status = Command::new(&python)
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(status.success(), "python -m venv failed");
    let target = Target::start(&Interp::Host(venv.join("bin/python")));
    check_dump(&target, &dump_json(target.pid(), &[]));
}

/// A venv made with `--copies` from Debian's static interpreter: the executable is a copy.
#[test]
fn venv_copies_interpreter() {
    let dir = TempDir::new();
    let venv = dir.path().join("venv");
    let status = interpreters::debian_3_11()
        .command()
        .args(["-m", "venv", "--without-pip", "--copies"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(status.success(), "python3.11 -m venv failed");
    let target = Target::start(&Interp::Host(venv.join("bin/python")));
    check_dump(&target, &dump_json(target.pid(), &[]));
}

/// A position-independent executable with libpython linked in statically (no libpython.so
/// mapping; `_PyRuntime` lives in the executable, loaded at a random address). Built here from
/// pyenv 3.12's `libpython3.12.a`, the way an application embedding Python would be.
#[test]
fn static_pie_executable() {
    let base = interpreters::pyenv_version("3.12.1").require().prefix();
    let base = base.display();
    let archive = format!("{base}/lib/python3.12/config-3.12-x86_64-linux-gnu/libpython3.12.a");
    assert!(
        std::path::Path::new(&archive).is_file(),
        "{archive} is missing: run .ci/provision.sh"
    );
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::fs::create_dir_all(dir.path().join("lib")).unwrap();
    // Python finds its standard library relative to the executable: bin/../lib/python3.12;
    // -rdynamic exports the C API to extension modules, as python itself does.
    std::os::unix::fs::symlink(
        format!("{base}/lib/python3.12"),
        dir.path().join("lib/python3.12"),
    )
    .unwrap();
    let src = dir.path().join("main.c");
    std::fs::write(
        &src,
        "#include <Python.h>\nint main(int argc, char **argv) { return Py_BytesMain(argc, argv); }\n",
    )
    .unwrap();
    let exe = dir.path().join("bin/embedded-app");
    let status = Command::new("cc")
        .args(["-fPIE", "-pie", "-O0", "-rdynamic"])
        .arg(format!("-I{base}/include/python3.12"))
        .arg(&src)
        .arg(&archive)
        .args(["-lm", "-ldl", "-lpthread", "-lutil", "-o"])
        .arg(&exe)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "building the static PIE interpreter failed"
    );
    let header = std::fs::read(&exe).unwrap();
    // e_type 3 = ET_DYN: position-independent.
    assert_eq!(u16::from_le_bytes([header[16], header[17]]), 3);
    let target = Target::start(&Interp::Host(exe));
    check_dump(&target, &dump_json(target.pid(), &[]));
}
