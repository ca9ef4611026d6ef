//! Interpreters that are not where or what their names say: strobe must not depend on names.

use crate::harness::{check_dump, dump_json, Interp, Target, TempDir};
use std::process::Command;

/// A copy of Debian's static python3.11 under a name that says nothing about Python.
#[test]
fn renamed_static_interpreter() {
    let dir = TempDir::new();
    let renamed = dir.path().join("app-server");
    std::fs::copy("/usr/bin/python3.11", &renamed).unwrap();
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
    let status = Command::new("/usr/bin/python3.11")
        .args(["-m", "venv", "--without-pip", "--copies"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(status.success(), "python3.11 -m venv failed");
    let target = Target::start(&Interp::Host(venv.join("bin/python")));
    check_dump(&target, &dump_json(target.pid(), &[]));
}
