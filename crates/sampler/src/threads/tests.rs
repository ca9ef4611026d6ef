#![allow(clippy::unwrap_used)]

use super::*;

/// A round's start as the sampler makes it: the shared per-CPU records drained, then the
/// process's round begun.
fn next_round(k: &mut KernelThreads) {
    k.cpu.drain();
    k.start_round();
}

#[test]
fn reads_our_own_threads() {
    let pid = std::process::id() as i32;
    let mut k = KernelThreads::new(pid, SharedSwitches::new());
    k.rescan().unwrap();
    let me = pid as u32;
    assert_eq!(k.host_of(me), Some(me));
    assert_eq!(k.inner_of(me), me);
    // This thread is running while it reads its own state.
    let tid = nix::unistd::gettid().as_raw() as u32;
    assert_eq!(k.read_state(tid), Some('R'));
    assert_eq!(k.reads(), 1);
}

#[test]
fn threads_started_after_the_scan_are_opened_on_first_read() {
    let pid = std::process::id() as i32;
    let mut k = KernelThreads::new(pid, SharedSwitches::new());
    k.rescan().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
        // Blocks (sleeping in the kernel) until the test has looked at it.
        let _ = done_rx.recv();
    });
    let tid = rx.recv().unwrap();
    assert_eq!(k.host_of(tid), None, "not scanned yet");
    // The thread may still be on its way into recv (running) or already asleep.
    assert!(matches!(k.read_state(tid), Some('R' | 'S')));
    drop(done_tx);
    t.join().unwrap();
    // An id that is no thread of ours is refused without error, and remembered.
    assert_eq!(k.read_state(u32::MAX), None);
    assert!(k.missing.contains(&u32::MAX));
}

#[test]
fn states_after_the_first_come_from_the_switch_watch() {
    let pid = std::process::id() as i32;
    let mut k = KernelThreads::new(pid, SharedSwitches::new());
    // Per-thread watches, as where per-CPU events are refused.
    k.cpu = SharedSwitches::refused();
    sleeps_runs_and_sleeps_again(&mut k, |k| k.watches() > 0 || !k.watching);
}

/// The states of a thread of ours that sleeps, spins, then sleeps again, as `k` reads them, a
/// round each; after the first, from the records (`recorded` says whether `k` has them, else
/// every lookup is a `/proc` read, which is the fallback).
fn sleeps_runs_and_sleeps_again(k: &mut KernelThreads, recorded: fn(&KernelThreads) -> bool) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
    let spin = Arc::new(AtomicBool::new(true));
    let spinning = Arc::clone(&spin);
    let t = std::thread::spawn(move || {
        tid_tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
        go_rx.recv().unwrap();
        while spinning.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
        let _ = end_rx.recv();
    });
    let tid = tid_rx.recv().unwrap();
    // The first lookup reads /proc (and sets the watch); wait until it says asleep.
    while k.read_state(tid) != Some('S') {
        next_round(k);
        std::thread::yield_now();
    }
    let preads = k.preads();
    assert!(preads >= 1);
    assert!(recorded(k));
    if !k.watching {
        // Perf events refused here: every lookup is a /proc read, which is the fallback.
        return;
    }
    next_round(k);
    assert_eq!(k.read_state(tid), Some('S'));
    go_tx.send(()).unwrap();
    // Running (or preempted: runnable) once it spins, and asleep again after: all from
    // the watch, with no further /proc read.
    while k.read_state(tid) != Some('R') {
        next_round(k);
        std::thread::yield_now();
    }
    spin.store(false, Ordering::Relaxed);
    while k.read_state(tid) != Some('S') {
        next_round(k);
        std::thread::yield_now();
    }
    assert_eq!(k.preads(), preads);
    assert!(k.alive(tid));
    drop(end_tx);
    t.join().unwrap();
    // Gone (once the kernel has reaped it, which may follow the join by a moment): the
    // watch would keep its last record; `/proc` knows.
    let deadline = Instant::now() + Duration::from_secs(10);
    while k.alive(tid) {
        assert!(
            Instant::now() < deadline,
            "thread {tid} still alive after its join"
        );
        std::thread::yield_now();
    }
    assert_eq!(k.read_state(tid), None);
}

#[test]
fn states_after_the_first_come_from_the_per_cpu_records() {
    let pid = std::process::id() as i32;
    let mut k = KernelThreads::new(pid, SharedSwitches::new());
    sleeps_runs_and_sleeps_again(&mut k, |k| k.watches() == 0 && k.cpu.with(|_| ()).is_some());
}

/// A thread stopped while it ran and let go is running until it has had a CPU again, though
/// its last record is the switch out into the stop (here: its sleep, recorded before the
/// mark); once it has had a CPU, its records answer again.
#[test]
fn a_thread_let_go_runs_until_it_moves() {
    let pid = std::process::id() as i32;
    let mut k = KernelThreads::new(pid, SharedSwitches::new());
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (ran_tx, ran_rx) = std::sync::mpsc::channel::<()>();
    let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        tid_tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
        go_rx.recv().unwrap();
        ran_tx.send(()).unwrap();
        let _ = end_rx.recv();
    });
    let tid = tid_rx.recv().unwrap();
    while k.read_state(tid) != Some('S') {
        next_round(&mut k);
        std::thread::yield_now();
    }
    next_round(&mut k);
    assert_eq!(k.read_state(tid), Some('S'));
    if k.cpu.with(|_| ()).is_none() {
        return;
    }
    k.stopped_running(tid, None);
    next_round(&mut k);
    assert_eq!(k.read_state(tid), Some('R'), "not moved since the mark");
    assert_eq!(k.preads(), 1, "from the records");
    // Woken, it is switched in (recorded before it runs, so before it says so).
    go_tx.send(()).unwrap();
    ran_rx.recv().unwrap();
    next_round(&mut k);
    k.read_state(tid);
    assert!(!k.stopped.contains_key(&tid), "moved since the mark");
    drop(end_tx);
    t.join().unwrap();
}
