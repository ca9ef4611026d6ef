//! A sampler round's native capture (`Target::native_round`) on a real interpreter: two threads
//! spinning in C (called through ctypes, the GIL released) and one asleep, captured in one
//! round. Each merged stack has the C function under the Python function that called it, the
//! sleeping thread's ends in its system call, and the Python read inside the capture copied
//! only the requested threads' stacks (not the main thread's). And a round that stops first
//! (`Target::native_stop_first`, then `Target::native_round_after`): a thread stopped before
//! the read is merged with its frames in that read, without a capture of its own, and only a
//! kept thread that was not stopped is captured again. And, with the per-CPU records of
//! each preemption's registers, a thread found preempted is read first, before anything is
//! stopped, and merged with its frames in that earlier read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::{Command, Stdio};

use std::cell::RefCell;
use strobe_native::MergedFrame;

use strobe_remote::CpuSwitches;
use strobe_target::{CpuPreemptions, NativeRequest, Target, WatchesOf};
use strobe_testkit::{Ready, TempDir};
use strobe_walker::RawSample;

const SPIN_C: &str = r#"
void spin_here(volatile unsigned long *counter) {
    for (;;) (*counter)++;
}
"#;

/// Two spinners and a sleeper; once both spinners count and the sleeper waits in `futex`,
/// prints their `get_ident()` values.
const SCRIPT: &str = r#"
import ctypes, sys, threading
lib = ctypes.CDLL(sys.argv[1])
counters = [ctypes.c_ulong(0), ctypes.c_ulong(0)]
def spinner(i):
    lib.spin_here(ctypes.byref(counters[i]))
def sleeper():
    threading.Event().wait()
threads = [threading.Thread(target=spinner, args=(0,), daemon=True),
           threading.Thread(target=spinner, args=(1,), daemon=True),
           threading.Thread(target=sleeper, daemon=True)]
for t in threads:
    t.start()
while counters[0].value == 0 or counters[1].value == 0:
    pass
def blocked(tid):
    # In `futex` (202 on x86-64): the sleeper's wait has begun (reading releases the GIL).
    try:
        with open("/proc/self/task/%d/syscall" % tid) as f:
            return f.read().split()[0] == "202"
    except (OSError, IndexError):
        return False
while not blocked(threads[2].native_id):
    pass
print("READY %d %d %d" % tuple(t.ident for t in threads))
sys.stdout.flush()
sys.stdin.read()
"#;

/// The target started (its library's directory kept), attached with native stacks enabled, a
/// first read of it, and requests for its spinner, spinner and sleeper (which may sleep).
fn start() -> (TempDir, Ready, Target, RawSample, [NativeRequest; 3]) {
    let dir = TempDir::new();
    let lib = dir.path().join("libspin.so");
    let src = dir.path().join("spin.c");
    std::fs::write(&src, SPIN_C).unwrap();
    let out = Command::new("cc")
        .args(["-g", "-O1", "-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python = strobe_testkit::interpreters::get("pyenv_3_12")
        .require()
        .path();
    let t = Ready::start(
        Command::new(&python)
            .arg("-c")
            .arg(SCRIPT)
            .arg(&lib)
            .stdin(Stdio::piped()),
        "spinners",
    );
    let idents: Vec<u64> = t
        .said
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let mut target = Target::attach(t.pid()).unwrap();
    target.enable_native().unwrap();
    let mut raw = RawSample::new();
    target.walker_mut().sample_into(&mut raw).unwrap();
    let by_ident: HashMap<u64, _> = raw.threads.iter().map(|t| (t.thread_id, t)).collect();
    let request = |ident: u64, may_sleep: bool| {
        let t = by_ident[&ident];
        NativeRequest {
            tid: t.native_id.unwrap() as i32,
            ident,
            interp: t.interp_id,
            tstate: t.tstate_addr,
            may_sleep,
        }
    };
    let wanted = [
        request(idents[0], false),
        request(idents[1], false),
        request(idents[2], true),
    ];
    (dir, t, target, raw, wanted)
}

/// A merged stack as [`named`] gives it: (kinds, names), innermost first.
type Named = (Vec<String>, Vec<String>);

/// A merged stack's frames innermost first, as (kind, name) lists; its Python frames are those
/// of `raw.threads[index]`.
fn named(
    stack: strobe_target::NativeStack<'_>,
    raw: &RawSample,
    index: usize,
    walker: &mut strobe_walker::Walker<strobe_target::TargetMemory>,
) -> Named {
    let frames = raw.frames_of(&raw.threads[index]);
    let mut kinds = Vec::new();
    let mut names = Vec::new();
    for m in stack.merged {
        match *m {
            MergedFrame::Python(p) => {
                kinds.push("python".to_string());
                names.push(walker.frame_info(frames[p]).unwrap().function.to_string());
            }
            MergedFrame::Native(n) => {
                kinds.push("native".to_string());
                names.push(
                    stack.native[n]
                        .function
                        .as_deref()
                        .unwrap_or("?")
                        .to_string(),
                );
            }
            MergedFrame::Kernel(_) => {
                kinds.push("kernel".to_string());
                names.push("[syscall]".to_string());
            }
            MergedFrame::Truncated => {
                kinds.push("truncated".to_string());
                names.push("...".to_string());
            }
        }
    }
    (kinds, names)
}

/// A spinner's merged stack: innermost, the C loop; further out (past ctypes' and libffi's
/// frames), the Python function that called it.
fn assert_spinner((kinds, names): &Named) {
    assert_eq!(names[0], "spin_here", "{names:?}");
    assert_eq!(kinds[0], "native");
    let python = kinds.iter().position(|k| k == "python").unwrap();
    assert_eq!(names[python], "spinner", "{names:?}");
}

/// Per request index of a capture: whether its frames are those of a read given beforehand
/// (the one taken inside the first stops), whether it was read preempted, and its stack.
type Got = HashMap<usize, (bool, bool, Named)>;

/// The callback of a capture that fills `got`; `first` is the read taken beforehand, if any.
fn collect<'a>(
    got: &'a mut Got,
    first: Option<&'a RawSample>,
) -> impl FnMut(
    usize,
    strobe_target::NativeResult<'_>,
    &RawSample,
    &mut strobe_walker::Walker<strobe_target::TargetMemory>,
) -> Result<(), ()>
       + 'a {
    move |i, result, raw, walker| {
        let (stack, index) = result.unwrap_or_else(|e| panic!("thread {i}: {e}"));
        let in_first = first.is_some_and(|f| std::ptr::eq(raw, f));
        let preempted = stack.preempted;
        got.insert(i, (in_first, preempted, named(stack, raw, index, walker)));
        Ok(())
    }
}

#[test]
fn a_round_captures_its_threads_together_and_reads_only_theirs() {
    let (_dir, _t, mut target, raw, wanted) = start();
    let main_tstate = raw
        .threads
        .iter()
        .find(|t| wanted.iter().all(|w| w.tstate != t.tstate_addr))
        .unwrap()
        .tstate_addr;

    let mut read = RawSample::new();
    let mut got = Got::new();
    let mut each = collect(&mut got, None);
    target
        .native_round(
            &wanted,
            &mut read,
            std::time::Instant::now(),
            None,
            &mut each,
        )
        .unwrap();
    drop(each);

    assert_eq!(got.len(), 3);
    for spinner in [0, 1] {
        // Innermost first: the C loop, then (past ctypes' and libffi's frames) the Python
        // function that called it.
        assert_spinner(&got[&spinner].2);
    }
    let (_, _, (kinds, names)) = &got[&2];
    assert_eq!(kinds[0], "kernel", "{names:?}");
    assert!(names.iter().any(|n| n == "sleeper"), "{names:?}");
    // Only the requested threads' stacks were copied inside the capture.
    let main = read
        .threads
        .iter()
        .find(|t| t.tstate_addr == main_tstate)
        .unwrap();
    assert!(
        !main.walked || main.holds_gil,
        "the main thread's stack was read"
    );
    for w in &wanted {
        let t = read
            .threads
            .iter()
            .find(|t| t.tstate_addr == w.tstate)
            .unwrap();
        assert!(t.walked && !read.frames_of(t).is_empty());
    }
}

#[test]
fn a_round_that_stops_first_merges_the_stopped_threads_with_its_read() {
    let (_dir, _t, mut target, _, wanted) = start();
    let (stopped, later) = (wanted[0], wanted[1]);
    // Spinner 0 stopped, and the round's whole read taken inside its stop.
    let mut first = RawSample::new();
    let mut walked = Ok(());
    let read_at = target.native_stop_first(&[(stopped.tid, stopped.tstate)], None, &mut |walker| {
        walked = walker.sample_into(&mut first);
    });
    walked.unwrap();
    // Stopped spinning in user space: running when the stop came.
    assert_eq!(
        target.native_stopped_awake(),
        &[strobe_target::StoppedAwake {
            tid: stopped.tid,
            in_call: false
        }]
    );

    let mut read = RawSample::new();
    // Per request: whether its frames are those of the first read, and its stack.
    let mut got = Got::new();
    let mut each = collect(&mut got, Some(&first));
    target
        .native_round_after(
            &[stopped, later],
            &first,
            &mut read,
            read_at,
            None,
            &mut each,
        )
        .unwrap();
    drop(each);

    assert_eq!(got.len(), 2);
    for (i, from_first) in [(0, true), (1, false)] {
        let (in_first, _, stack) = &got[&i];
        assert_eq!(*in_first, from_first, "spinner {i}");
        assert_spinner(stack);
    }
    // The later capture read the frames of the thread it captured, and not again those of the
    // thread stopped first.
    let of = |tstate: u64| {
        read.threads
            .iter()
            .find(|t| t.tstate_addr == tstate)
            .unwrap()
    };
    let again = of(stopped.tstate);
    assert!(!again.walked || again.holds_gil, "spinner 0 was read again");
    assert!(of(later.tstate).walked);
    // Only the later capture's stop is left in the list.
    assert_eq!(
        target.native_stopped_awake(),
        &[strobe_target::StoppedAwake {
            tid: later.tid,
            in_call: false
        }]
    );
}

/// With the per-CPU switch records keeping each preemption's registers, drained at each
/// round's start as the sampler does, a spinner found preempted is read first, before
/// anything is stopped (its stack copied), and merged with its frames in that earlier read.
#[test]
fn a_round_reads_a_preempted_thread_from_the_per_cpu_records() {
    let (_dir, t, mut target, spinners) = start_on_one_cpu();
    let mut cs = CpuSwitches::open(64).unwrap();
    cs.watch(t.pid() as u32);
    cs.record_preemptions().unwrap();
    let records = Records(RefCell::new(cs));
    // Both spinners covered by the records' filter (a drain covers the threads it saw).
    // Each spinner found preempted with its registers once (both covered by the filter).
    let mut seen = [false; 2];
    until(&records, "each spinner preempted with registers", || {
        for (i, s) in spinners.iter().enumerate() {
            seen[i] |= records.preempted(s.tid).is_some();
        }
        seen == [true; 2]
    });
    let watches = |_tid: i32| Some(&records as &dyn CpuPreemptions);
    // Each round once a spinner is preempted again (a round's stops leave the threads they
    // stopped switched out into the stop, not preempted, until they run again).
    let again = || {
        until(&records, "a spinner preempted again", || {
            spinners.iter().any(|s| records.preempted(s.tid).is_some())
        })
    };
    read_preempted_first(&mut target, spinners, &watches, again);
}

/// Drain `records` until `done` (a failure after 20 s: the records never showed it).
fn until(records: &Records, what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    loop {
        records.refresh();
        if done() {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the per-CPU records never showed {what}"
        );
        std::hint::spin_loop();
    }
}

/// The target started, its two spinners on one CPU: whenever one runs, the other is
/// preempted (runnable, off it).
fn start_on_one_cpu() -> (TempDir, Ready, Target, [NativeRequest; 2]) {
    let (dir, t, target, _, wanted) = start();
    let spinners = [wanted[0], wanted[1]];
    let cpu = strobe_testkit::last_cpu();
    for s in &spinners {
        strobe_testkit::pin(s.tid, cpu);
    }
    (dir, t, target, spinners)
}

/// [`CpuSwitches`] as the sampler shares it.
struct Records(RefCell<CpuSwitches>);

impl CpuPreemptions for Records {
    fn preempted(&self, tid: i32) -> Option<(u64, strobe_remote::UserRegs)> {
        self.0.borrow().preempted(tid as u32)
    }
    fn refresh(&self) {
        self.0.borrow_mut().drain();
    }
    fn unmoved(&self, tid: i32, mark: u64) -> bool {
        self.0.borrow().still_out(tid as u32, mark)
    }
}

/// 300 stop-first rounds of the two spinners (one CPU), `before` each: a spinner read
/// preempted is merged with its frames in the read of the preempted threads, before the
/// stops, and some are.
fn read_preempted_first(
    target: &mut Target,
    spinners: [NativeRequest; 2],
    watches: &WatchesOf<'_>,
    mut before: impl FnMut(),
) {
    let stop: Vec<(i32, u64)> = spinners.iter().map(|s| (s.tid, s.tstate)).collect();
    let (mut preempted, mut stopped) = (0, 0);
    for _ in 0..300 {
        before();
        let mut first = RawSample::new();
        let mut walked = Ok(());
        let read_at = target.native_stop_first(&stop, Some(watches), &mut |walker| {
            walked = walker.sample_into(&mut first);
        });
        walked.unwrap();
        let mut read = RawSample::new();
        let mut got = Got::new();
        let mut each = collect(&mut got, Some(&first));
        target
            .native_round_after(
                &spinners,
                &first,
                &mut read,
                read_at,
                Some(watches),
                &mut each,
            )
            .unwrap();
        drop(each);
        assert_eq!(got.len(), 2);
        for (i, (in_first, was_preempted, stack)) in &got {
            assert_spinner(stack);
            if *was_preempted {
                // Its frames come from the read of the preempted threads before the stops,
                // not from the round's read inside them.
                assert!(
                    !in_first,
                    "spinner {i} read preempted, merged with the later read"
                );
                preempted += 1;
            } else if *in_first {
                stopped += 1;
            }
        }
    }
    eprintln!("{preempted} spinner captures read preempted, {stopped} stopped");
    assert!(preempted > 0, "no spinner read preempted in 300 rounds");
}
