//! In CPU mode `--native` stops the threads the kernel says run before the round's read (see
//! "Stop first, read after" in the `round` module documentation). A thread state with no
//! Python frames gives no sample: stopping it is for nothing. Such a thread is read, not
//! stopped, once a read found it without frames; when it has frames again, the round
//! captures it after the read.
//!
//! The target: a C thread of a small extension (built here with the interpreter's own
//! headers) takes a thread state (`PyGILState_Ensure`), lets the GIL go and computes in C,
//! without Python frames, for 0.3 s; then calls a Python function that computes for 0.1 s,
//! and so on. A Python worker calls `zlib.crc32` in a loop throughout. Each cycle may cost
//! one stop that ends in no sample (the first round after the C thread went back to C); the
//! stops before stopped the C thread in every round its frameless phase ran (~¾ of them).
//! The C thread's Python phases must still be sampled, with their native frames.
//!
//! Interpreters: pyenv 3.12 and 3.13; a missing one fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use strobe_aggregate::{Sample, Tables};
use strobe_sampler::SamplerConfig;
use strobe_target::Target;
use strobe_testkit::{run_ok as run, Interpreter, Ready, TempDir};

mod support;
use support::sample_until;

/// The C thread: a thread state without Python frames for `FRAMELESS` s, then `callback()`,
/// over and over.
const EXTENSION: &str = r#"#include <Python.h>
#include <pthread.h>
#include <time.h>

#define FRAMELESS 0.3

static PyObject *callback;
static volatile unsigned long sink;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void frameless_spin(double secs)
{
    double end = now() + secs;
    while (now() < end) {
        for (int i = 0; i < 1000; i++)
            sink += i;
    }
}

static void *frameless_thread(void *arg)
{
    (void)arg;
    PyGILState_Ensure();
    PyThreadState *ts = PyEval_SaveThread();
    for (;;) {
        frameless_spin(FRAMELESS);
        PyEval_RestoreThread(ts);
        PyObject *r = PyObject_CallNoArgs(callback);
        Py_XDECREF(r);
        ts = PyEval_SaveThread();
    }
    return NULL;
}

static PyObject *start(PyObject *self, PyObject *cb)
{
    (void)self;
    pthread_t t;
    Py_INCREF(cb);
    callback = cb;
    if (pthread_create(&t, NULL, frameless_thread, NULL) != 0)
        return PyErr_Format(PyExc_OSError, "pthread_create failed");
    pthread_detach(t);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"start", start, METH_O, "start the C thread"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "frameless", NULL, -1, methods};

PyMODINIT_FUNC PyInit_frameless(void) { return PyModule_Create(&module); }
"#;

/// argv[1]: the directory of the built extension.
const SCRIPT: &str = r#"import os, sys, threading, time, zlib

sys.path.insert(0, sys.argv[1])
import frameless

DATA = os.urandom(1 << 16)

def in_python():
    end = time.monotonic() + 0.1
    while time.monotonic() < end:
        pass

def work():
    while True:
        zlib.crc32(DATA)

threading.Thread(target=work, name="worker", daemon=True).start()
frameless.start(in_python)
sys.stdout.write("READY\n")
sys.stdout.flush()
r, w = os.pipe()
os.read(r, 1)
"#;

/// Build the extension into `dir` with `interp`'s headers.
fn build(interp: &Interpreter, dir: &Path) {
    let include = run(interp.command().args([
        "-c",
        "import sysconfig; print(sysconfig.get_paths()['include'])",
    ]));
    let source = dir.join("frameless.c");
    std::fs::write(&source, EXTENSION).unwrap();
    run(Command::new("cc")
        .args(["-shared", "-fPIC", "-g", "-O1", "-pthread", "-I"])
        .arg(include.trim())
        .arg("-o")
        .arg(dir.join("frameless.so"))
        .arg(&source));
}

fn check(interp: &Interpreter) {
    let version = interp.name;
    let python = interp.require().path();
    let dir = TempDir::new();
    build(interp, dir.path());
    let victim = Ready::python_script(
        python.to_str().unwrap(),
        "native-frameless",
        SCRIPT,
        &[dir.path().to_str().unwrap()],
    );
    let cfg = SamplerConfig {
        rate_hz: 1000.0,
        native: true,
        by_function: true,
        ..SamplerConfig::default()
    };
    let (samples, tables, summary) = sample_until(Target::attach(victim.pid()).unwrap(), cfg, 3000);
    let s = summary.stats;
    let has = |t: &Tables, s: &Sample, name: &str| {
        t.stack(s.stack)
            .iter()
            .any(|&f| t.str(t.frame(f).unwrap().function) == name)
    };
    let python_phase: Vec<&Sample> = samples
        .iter()
        .filter(|x| has(&tables, x, "in_python"))
        .collect();
    let with_c = python_phase
        .iter()
        .filter(|x| has(&tables, x, "frameless_thread"))
        .count();
    let worker = samples.iter().filter(|x| has(&tables, x, "work")).count();
    let context = format!(
        "{version}: {} rounds in {:?}, {} samples ({worker} of the worker), {} of the C \
         thread's Python phases ({with_c} with its C frames), {} stops without a sample",
        s.rounds,
        s.elapsed,
        samples.len(),
        python_phase.len(),
        s.native_stops_unused
    );
    eprintln!("{context}");
    // A cycle of the C thread lasts 0.4 s at least, and costs one stop at most (the first
    // round after it went back to C); one more for a cycle cut by the start or the end.
    let cycles = s.elapsed.as_secs_f64() / 0.4 + 2.0;
    assert!(
        (s.native_stops_unused as f64) <= cycles,
        "more stops ended in no sample than the C thread's {cycles:.0} cycles: {context}"
    );
    assert!(with_c > 0, "the C thread's Python phases: {context}");
}

strobe_testkit::per_interpreter! {
    fn a_thread_state_without_frames_is_not_stopped(interp) for [pyenv_3_12, pyenv_3_13] {
        check(interp);
    }
}
