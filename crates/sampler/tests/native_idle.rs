//! `--native` without `--blocking` stops the round's running threads; a thread it stopped
//! while computing is still running in the next round even if it has not had a CPU since
//! (see the `round` module documentation, "Idle under `--native`").
//!
//! The target's worker calls `zlib.crc32` in a loop (C code that releases the GIL), and never
//! sleeps: the main thread waits in `read` before the worker says READY, so nobody else wants
//! the GIL. The target is pinned to one CPU, and a thread of this test spins on the same CPU,
//! so that a worker our stop switched out waits behind it for its CPU, often past the next
//! round (as on a busy machine). Every sample of the worker must be running.
//!
//! The same with a worker that spends its time on a CPU inside a system call (`read` of 16 MiB
//! from `/dev/zero`, which the kernel fills without sleeping): stopped in the call, it was
//! running too, and stays so until it next gets a CPU.
//!
//! Interpreters: pyenv 3.12 and 3.13; a missing one fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strobe_aggregate::SampleFlags;
use strobe_sampler::SamplerConfig;
use strobe_target::Target;
use strobe_testkit::{procfs, Interpreter, Ready};

mod support;
use support::sample_until;

/// The target (started on one CPU): its worker prints READY once the main thread waits in
/// `read` (`/proc/self/task/TID/syscall` starts with 0, `read` on x86-64), then computes.
const SCRIPT: &str = r#"import os, sys, threading, zlib

DATA = os.urandom(1 << 16)
MAIN = str(threading.get_native_id())

def in_read():
    with open("/proc/self/task/%s/syscall" % MAIN) as f:
        return f.read().split()[0] == "0"

def work():
    while not in_read():
        pass
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    while True:
        LOOP

t = threading.Thread(target=work, name="worker")
t.daemon = True
t.start()
r, w = os.pipe()
os.read(r, 1)
"#;

/// A thread of ours spinning on CPU `cpu` until dropped.
struct Hog {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hog {
    fn on(cpu: usize) -> Hog {
        let stop = Arc::new(AtomicBool::new(false));
        let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            strobe_testkit::pin(0, cpu);
            pinned_tx.send(()).unwrap();
            while !flag.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        pinned_rx.recv().unwrap();
        Hog {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The worker's loops: computing in user space, and on a CPU inside a system call.
const IN_USER_SPACE: &str = "zlib.crc32(DATA)";
const IN_A_CALL: &str = "os.read(ZERO, 1 << 24)";

fn check(interp: &Interpreter, work: &str) {
    let version = interp.name;
    let cpu = strobe_testkit::last_cpu();
    let python = interp.require().path();
    let script = SCRIPT.replace("LOOP", work).replace(
        "DATA = ",
        "ZERO = os.open('/dev/zero', os.O_RDONLY)\nDATA = ",
    );
    let victim =
        Ready::python_script_on(cpu, python.to_str().unwrap(), "native-idle", &script, &[]);
    let pid = victim.pid();
    let worker = procfs::other_thread(pid);

    let hog = Hog::on(cpu);
    let cfg = SamplerConfig {
        rate_hz: 1000.0,
        native: true,
        include_idle: true,
        tids: vec![worker],
        ..SamplerConfig::default()
    };
    let (samples, _, _) = sample_until(Target::attach(pid).unwrap(), cfg, 40);
    drop(hog);
    let flags: Vec<SampleFlags> = samples.iter().map(|s| s.flags).collect();
    let idle = flags.iter().filter(|f| f.idle()).count();
    assert_eq!(
        idle,
        0,
        "{version}: the worker running `{work}` was taken as idle in {idle} of {} samples",
        flags.len()
    );
}

strobe_testkit::per_interpreter! {
    fn a_thread_our_stop_switched_out_is_still_running(interp) for [pyenv_3_12, pyenv_3_13] {
        check(interp, IN_USER_SPACE);
    }
}

strobe_testkit::per_interpreter! {
    fn a_thread_our_stop_switched_out_in_a_call_is_still_running(interp)
        for [pyenv_3_12, pyenv_3_13] {
        check(interp, IN_A_CALL);
    }
}
