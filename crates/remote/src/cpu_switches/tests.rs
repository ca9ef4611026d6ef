#![allow(clippy::unwrap_used)]

use super::*;
use crate::test_threads::{state, wait_asleep};
use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc, Mutex};

/// The tests that open events, one at a time: every CPU's ring sees every test's switches,
/// and the one that floods them would make the others lose records.
static CPUS: Mutex<()> = Mutex::new(());

/// The events opened with `pages` of ring a CPU (holding [`CPUS`]), watching this process.
fn watching_us(pages: usize) -> (std::sync::MutexGuard<'static, ()>, u32, CpuSwitches) {
    let cpus = CPUS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let pid = std::process::id();
    let mut cs = CpuSwitches::open(pages).unwrap();
    cs.watch(pid);
    (cpus, pid, cs)
}

fn gettid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}

/// A thread of this process that sleeps in `recv` until told to spin, spins until told to
/// stop, then sleeps again: each change is read from the CPUs' records.
#[test]
fn follows_a_thread_from_sleeping_to_running_and_back() {
    let (_cpus, pid, mut cs) = watching_us(64);
    let (tid_tx, tid_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (spinning_tx, spinning_rx) = mpsc::channel::<()>();
    let (end_tx, end_rx) = mpsc::channel::<()>();
    let stop = Arc::new(AtomicBool::new(false));
    let spin_stop = Arc::clone(&stop);
    let t = std::thread::spawn(move || {
        tid_tx.send(gettid()).unwrap();
        go_rx.recv().unwrap();
        spinning_tx.send(()).unwrap();
        while !spin_stop.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
        end_rx.recv().unwrap();
    });
    let tid = tid_rx.recv().unwrap();
    wait_asleep(pid, tid);
    cs.drain();
    assert_eq!(cs.lost(), 0);
    // Started after the events were opened: switched in, then out to wait in recv.
    assert_eq!(cs.last(tid), Some(LastSwitch::Blocked));
    let asleep = cs.switches(tid).unwrap();
    assert!(asleep >= 2, "{asleep}");
    // Asleep, it neither gets nor leaves a CPU.
    assert_eq!(state(pid, tid), 'S');
    cs.drain();
    assert_eq!(cs.switches(tid), Some(asleep));
    go_tx.send(()).unwrap();
    spinning_rx.recv().unwrap();
    cs.drain();
    let seen = cs.last(tid).unwrap();
    assert!(
        matches!(seen, LastSwitch::In | LastSwitch::Preempted),
        "{seen:?}"
    );
    assert!(
        cs.switches(tid).unwrap() > asleep,
        "it ran, so it was switched in"
    );
    stop.store(true, Ordering::Relaxed);
    wait_asleep(pid, tid);
    cs.drain();
    assert_eq!(cs.last(tid), Some(LastSwitch::Blocked));
    assert_eq!(cs.lost(), 0);
    end_tx.send(()).unwrap();
    t.join().unwrap();
    // Our main thread switched too (it waited for the others), but the records were parsed
    // as this process's: every thread kept is ours.
    assert!(cs.threads.values().all(|s| s.pid == pid));
}

/// Only the processes watched are kept: another process's switches, on the same CPUs, are
/// not taken for ours, nor ours for its.
#[test]
fn keeps_only_the_processes_watched() {
    let _cpus = CPUS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut cs = CpuSwitches::open(64).unwrap();
    let mut child = std::process::Command::new("sh")
        .args(["-c", "read x; sleep 0.01; sleep 0.01"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let child_pid = child.id();
    wait_asleep(child_pid, child_pid);
    cs.watch(child_pid);
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    child.wait().unwrap();
    cs.drain();
    assert_eq!(cs.lost(), 0);
    // The shell slept in read, was woken, slept twice more in wait: switches of its own.
    assert!(cs.switches(child_pid).unwrap() >= 4, "{:?}", cs.threads);
    assert!(cs.threads.values().all(|s| s.pid == child_pid));
    // Our main thread switched meanwhile (it waited for the child): not kept.
    assert_eq!(cs.switches(gettid()), None);
    cs.unwatch(child_pid);
    assert!(cs.threads.is_empty());
}

/// Rings too small for the switches between two drains: the kernel drops records and says
/// so, and a thread whose state was known is unknown afterwards (it may have switched in a
/// record dropped), its count moved.
#[test]
fn lost_records_make_states_unknown() {
    let (_cpus, pid, mut cs) = watching_us(8);
    let (tid_tx, tid_rx) = mpsc::channel();
    let (end_tx, end_rx) = mpsc::channel::<()>();
    let parked = std::thread::spawn(move || {
        tid_tx.send(gettid()).unwrap();
        end_rx.recv().unwrap();
    });
    let tid = tid_rx.recv().unwrap();
    wait_asleep(pid, tid);
    cs.drain();
    assert_eq!(cs.last(tid), Some(LastSwitch::Blocked));
    let before = cs.switches(tid).unwrap();
    // Two threads passing a token back and forth, each waiting for it: every pass is a
    // switch out and one in, far more records than the rings hold (8 pages of 32-byte
    // records per CPU).
    let capacity = cs.rings.len() * cs.rings[0].ring.data_size() / 32;
    let passes = 8 * capacity;
    let (ping_tx, ping_rx) = mpsc::sync_channel::<()>(0);
    let (pong_tx, pong_rx) = mpsc::sync_channel::<()>(0);
    let echo = std::thread::spawn(move || {
        while ping_rx.recv().is_ok() {
            pong_tx.send(()).unwrap();
        }
    });
    for _ in 0..passes {
        ping_tx.send(()).unwrap();
        pong_rx.recv().unwrap();
    }
    drop(ping_tx);
    echo.join().unwrap();
    cs.drain();
    assert!(cs.lost() > 0, "{} records drained", cs.records());
    assert_eq!(cs.last(tid), None, "unknown after the loss");
    assert!(cs.switches(tid).unwrap() > before);
    end_tx.send(()).unwrap();
    parked.join().unwrap();
}

fn empty() -> CpuSwitches {
    CpuSwitches::with_rings(Vec::new())
}

/// A thread that moved between CPUs is read from its newest record, whichever ring it was
/// drained from; after a loss only a record newer than the loss tells its state.
#[test]
fn the_newest_record_wins_across_rings_and_losses() {
    let mut cs = empty();
    cs.note_switch(7, 70, 200, LastSwitch::In, None);
    // An older record from another CPU's ring, drained later.
    cs.note_switch(7, 70, 100, LastSwitch::Preempted, None);
    assert_eq!(cs.last(70), Some(LastSwitch::In));
    assert_eq!(cs.switches(70), Some(2));
    // Counted whether or not it is the newest, and without registers recorded.
    assert_eq!((cs.preemptions(), cs.preemption_samples()), (1, 0));
    assert!(cs.moved_since(70, 199));
    assert!(!cs.moved_since(70, 200));
    assert!(!cs.moved_since(72, 0), "never seen, nothing lost");
    cs.note_loss(3, 300);
    assert_eq!(cs.last(70), None);
    assert_eq!(cs.switches(70), Some(3));
    assert_eq!(cs.lost(), 3);
    assert!(
        cs.moved_since(70, 299),
        "it may have switched in a record lost"
    );
    assert!(cs.moved_since(72, 299));
    assert!(!cs.moved_since(72, 300));
    // Older than the loss (from a ring drained after the one that lost): still unknown.
    cs.note_switch(7, 70, 250, LastSwitch::Blocked, None);
    assert_eq!(cs.last(70), None);
    cs.note_switch(7, 70, 350, LastSwitch::Blocked, None);
    assert_eq!(cs.last(70), Some(LastSwitch::Blocked));
    // A thread first seen in a record older than the loss is unknown too.
    cs.note_switch(7, 71, 290, LastSwitch::In, None);
    assert_eq!(cs.last(71), None);
    assert_eq!(cs.switches(71), Some(1));
    cs.forget(71);
    assert_eq!(cs.switches(71), None);
}

/// One reader for several processes: a scan of one process's threads forgets only its own
/// exited threads, and unwatching a process forgets only its threads.
#[test]
fn retain_and_unwatch_touch_one_process() {
    let mut cs = empty();
    cs.watch(7);
    cs.watch(8);
    cs.note_switch(7, 70, 100, LastSwitch::In, None);
    cs.note_switch(7, 71, 100, LastSwitch::In, None);
    cs.note_switch(8, 80, 100, LastSwitch::Blocked, None);
    cs.retain(7, |tid| tid == 70);
    assert_eq!(cs.switches(70), Some(1));
    assert_eq!(cs.switches(71), None, "exited: forgotten");
    assert_eq!(cs.last(80), Some(LastSwitch::Blocked), "another process's");
    cs.unwatch(8);
    assert!(!cs.watching(8));
    assert!(cs.watching(7));
    assert_eq!(cs.switches(80), None);
    assert_eq!(cs.switches(70), Some(1));
}

#[test]
fn cpu_lists_parse() {
    assert_eq!(parse_cpu_list("0-3,5"), Some(vec![0, 1, 2, 3, 5]));
    assert_eq!(parse_cpu_list("0"), Some(vec![0]));
    assert_eq!(parse_cpu_list(""), None);
    assert_eq!(parse_cpu_list("x"), None);
}

#[test]
fn attr_bytes_match_the_kernel_layout() {
    let a = attr();
    let u64_at = |o: usize| u64::from_le_bytes(a[o..o + 8].try_into().unwrap());
    assert_eq!(u64_at(8), 9, "dummy");
    assert_eq!(u64_at(16), 0, "no samples");
    assert_eq!(u64_at(24), 0b110, "tid, time");
    assert_eq!(
        u64_at(40),
        (1 << 5) | (1 << 6) | (1 << 18) | (1 << 25) | (1 << 26)
    );
}

/// Two threads of this process spinning on one CPU take it from each other: each time one
/// is found preempted, the registers recorded at that preemption are its own (the stack
/// pointer on its stack, just below a local of its spin loop; the instruction pointer in
/// this program's code), and they stay its registers until it is switched in again.
#[test]
fn preempted_threads_come_with_their_registers() {
    let (_cpus, _, mut cs) = watching_us(64);
    cs.record_preemptions().unwrap();
    let cpu = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .ok()
        .and_then(|set| (0..nix::sched::CpuSet::count()).find(|&c| set.is_set(c).unwrap_or(false)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let (tx, stop) = (tx.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut one = nix::sched::CpuSet::new();
                one.set(cpu).unwrap();
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).unwrap();
                let local = 0u64;
                let at = std::ptr::addr_of!(local) as u64;
                tx.send((gettid(), at)).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(&local);
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let spinners_at: Vec<(u32, u64)> = (0..2).map(|_| rx.recv().unwrap()).collect();
    // Preemptions from here on are in the spin loops.
    let spinning = crate::perf_clock_ns();
    let text = own_code();
    let mut seen = HashSet::new();
    let start = std::time::Instant::now();
    while seen.len() < 40 && start.elapsed() < std::time::Duration::from_secs(20) {
        cs.drain();
        for &(tid, local) in &spinners_at {
            let Some((time, regs)) = cs.preempted(tid).filter(|&(time, _)| time > spinning) else {
                continue;
            };
            seen.insert((tid, time));
            assert!(
                regs.sp < local && local - regs.sp < 4096,
                "sp {:#x}, local {local:#x}",
                regs.sp
            );
            assert!(
                text.iter().any(|&(lo, hi)| lo <= regs.ip && regs.ip < hi),
                "ip {:#x}",
                regs.ip
            );
            assert!(cs.still_out(tid, time) && cs.last(tid) == Some(LastSwitch::Preempted));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    assert_eq!(cs.lost(), 0);
    let found = seen.len() as u64;
    assert!(found >= 40, "found preempted with registers {found} times");
    assert!(cs.preemption_samples() >= found);
}

/// With sleeps recorded too, a thread of this process that keeps going to sleep (`nanosleep`)
/// comes with the registers it went to sleep with: the instruction pointer just after a
/// `syscall` instruction, the stack pointer on its own stack, below a local of its loop; and
/// only while its last switch is that sleep. Without sleeps, none are recorded.
#[test]
fn sleeping_threads_come_with_their_registers_when_asked() {
    let (_cpus, _, mut cs) = watching_us(64);
    cs.record_preemptions().unwrap();
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let sleeper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let local = 0u64;
            tx.send((gettid(), std::ptr::addr_of!(local) as u64))
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                std::hint::black_box(&local);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let (tid, local) = rx.recv().unwrap();
    // Sleeps of the thread seen with registers, up to `want` of them, within `ms`.
    let found = |cs: &mut CpuSwitches, want: usize, ms: u64| {
        let mut seen = HashSet::new();
        let start = std::time::Instant::now();
        let since = crate::perf_clock_ns();
        while seen.len() < want && start.elapsed() < std::time::Duration::from_millis(ms) {
            std::thread::sleep(std::time::Duration::from_millis(1));
            cs.drain();
            if let Some((time, regs)) = cs.blocked(tid).filter(|&(time, _)| time > since) {
                seen.insert((time, regs.ip, regs.sp));
            }
        }
        seen
    };
    // Preemptions alone: none of the ~100 sleeps of 300 ms comes with registers.
    assert!(found(&mut cs, 1, 300).is_empty());
    cs.record_sleeps().unwrap();
    let seen = found(&mut cs, 20, 5000);
    stop.store(true, Ordering::Relaxed);
    sleeper.join().unwrap();
    assert!(
        seen.len() >= 20,
        "found asleep with registers {} times",
        seen.len()
    );
    for &(_, ip, sp) in &seen {
        assert!(
            sp < local && local - sp < 16384,
            "sp {sp:#x}, local {local:#x}"
        );
        let before = own_bytes(ip - 2);
        assert_eq!(
            before,
            [0x0f, 0x05],
            "ip {ip:#x} is not just after a syscall"
        );
    }
    assert_eq!(cs.lost(), 0);
}

/// Two bytes of this process's own memory at `at`, read through `/proc/self/mem`.
fn own_bytes(at: u64) -> [u8; 2] {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open("/proc/self/mem").unwrap();
    let mut b = [0u8; 2];
    mem.read_exact_at(&mut b, at).unwrap();
    b
}

/// This program's executable mappings.
fn own_code() -> Vec<(u64, u64)> {
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter(|l| l.contains(" r-xp ") && l.ends_with(exe.to_str().unwrap()))
        .map(|l| {
            let (lo, rest) = l.split_once('-').unwrap();
            let hi = rest.split_once(' ').unwrap().0;
            let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
            (hex(lo), hex(hi))
        })
        .collect()
}
