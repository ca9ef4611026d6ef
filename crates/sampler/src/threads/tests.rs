//! Tests of the kernel's view of threads: our own process's threads as targets.

use super::*;

#[test]
fn reads_our_own_threads() {
    let pid = std::process::id() as i32;
    let mut k = KernelThreads::new(pid);
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
    let mut k = KernelThreads::new(pid);
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
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let pid = std::process::id() as i32;
    let mut k = KernelThreads::new(pid);
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
        std::thread::yield_now();
    }
    let preads = k.preads();
    assert!(preads >= 1);
    if k.watches() == 0 {
        // Perf events refused here: every lookup is a /proc read, which is the fallback.
        assert!(!k.watching);
        return;
    }
    assert_eq!(k.read_state(tid), Some('S'));
    go_tx.send(()).unwrap();
    // Running (or preempted: runnable) once it spins, and asleep again after: all from
    // the watch, with no further /proc read.
    while k.read_state(tid) != Some('R') {
        std::thread::yield_now();
    }
    spin.store(false, Ordering::Relaxed);
    while k.read_state(tid) != Some('S') {
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
fn a_thread_switching_more_than_once_a_round_is_read_through_proc() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::mpsc::channel;
    use std::sync::Arc;
    let pid = std::process::id() as i32;
    let mut k = KernelThreads::new(pid);
    // `busy` blocks and wakes many times a round (a ping-pong with its partner), `quiet`
    // sleeps in a receive throughout.
    let (tid_tx, tid_rx) = channel();
    let (end_tx, end_rx) = channel::<()>();
    let quiet_tid = tid_tx.clone();
    let quiet = std::thread::spawn(move || {
        quiet_tid
            .send(nix::unistd::gettid().as_raw() as u32)
            .unwrap();
        let _ = end_rx.recv();
    });
    let (ping_tx, ping_rx) = channel::<bool>();
    let (pong_tx, pong_rx) = channel::<()>();
    let partner = std::thread::spawn(move || {
        while ping_rx.recv() == Ok(true) {
            pong_tx.send(()).unwrap();
        }
    });
    let rounds = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&rounds);
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let busy = std::thread::spawn(move || {
        tid_tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
        while !stopped.load(Ordering::Relaxed) {
            ping_tx.send(true).unwrap();
            pong_rx.recv().unwrap();
            counted.fetch_add(1, Ordering::Relaxed);
        }
        ping_tx.send(false).unwrap();
    });
    let quiet_tid = tid_rx.recv().unwrap();
    let busy_tid = tid_rx.recv().unwrap();
    // The quiet thread's first lookup may come before it is asleep.
    while k.read_state(quiet_tid) != Some('S') {
        std::thread::yield_now();
    }
    if k.watches() == 0 {
        assert!(
            !k.watching,
            "perf events refused: every lookup is a /proc read"
        );
        stop.store(true, Ordering::Relaxed);
        drop(end_tx);
        for t in [quiet, partner, busy] {
            t.join().unwrap();
        }
        return;
    }
    let watched = |k: &KernelThreads, tid: u32| {
        matches!(k.tasks.get(&tid).map(|t| &t.watch), Some(Watch::On { .. }))
    };
    // Each round, after the busy thread has blocked and woken at least twice more.
    for _ in 0..=WINDOW_ROUNDS {
        let at = rounds.load(Ordering::Relaxed);
        while rounds.load(Ordering::Relaxed) < at + 2 {
            std::thread::yield_now();
        }
        k.start_round();
        k.read_state(busy_tid).unwrap();
        k.read_state(quiet_tid).unwrap();
    }
    assert!(!watched(&k, busy_tid), "the busy thread is still watched");
    assert!(matches!(k.tasks[&busy_tid].watch, Watch::Shed { .. }));
    assert!(watched(&k, quiet_tid), "the quiet thread lost its watch");
    // From now on the busy thread costs a /proc read a round, the quiet one none.
    let preads = k.preads();
    k.start_round();
    assert!(k.read_state(busy_tid).is_some());
    assert_eq!(k.read_state(quiet_tid), Some('S'));
    assert_eq!(k.preads(), preads + 1);
    stop.store(true, Ordering::Relaxed);
    drop(end_tx);
    for t in [quiet, partner, busy] {
        t.join().unwrap();
    }
}

#[test]
fn a_thread_read_through_proc_is_watched_again_later_each_time_later() {
    assert_eq!(shed_for(0), SHED_FOR);
    assert_eq!(shed_for(1), SHED_FOR * 2);
    assert_eq!(shed_for(2), SHED_FOR * 4);
    assert_eq!(shed_for(30), SHED_MAX);
}
