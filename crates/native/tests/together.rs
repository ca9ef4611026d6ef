//! Threads stopped together (`strobe_remote::capture_together`, what a `record --native` round
//! does with the running threads it keeps): both of two busy threads are held through the
//! whole of the read that runs during the capture, so their captures are of one common
//! stopped interval; a thread stopped alone lets the other run on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::{Duration, Instant};
use strobe_remote::{capture_together, ThreadTracer, Together};
use strobe_testkit::Ready;
use support::*;

const TWINS_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/targets/twins.c");

/// The started twins program: its two counting threads and their counters' addresses.
struct Twins {
    ready: Ready,
    tids: [i32; 2],
    counters: [u64; 2],
    mem: std::fs::File,
}

impl Twins {
    fn start(dir: &TempDir) -> Twins {
        let exe = dir.0.join("twins");
        run(Command::new("cc")
            .args(["-O2", "-pthread", "-o"])
            .arg(&exe)
            .arg(TWINS_SOURCE));
        let ready = Ready::start(&mut Command::new(&exe), "twins program");
        let said: Vec<u64> = ready
            .said
            .split_whitespace()
            .map(|w| w.parse().unwrap())
            .collect();
        let mem = std::fs::File::open(format!("/proc/{}/mem", ready.pid())).unwrap();
        Twins {
            tids: [said[0] as i32, said[1] as i32],
            counters: [said[2], said[3]],
            ready,
            mem,
        }
    }

    fn count(&self, i: usize) -> u64 {
        let mut word = [0u8; 8];
        self.mem.read_exact_at(&mut word, self.counters[i]).unwrap();
        u64::from_le_bytes(word)
    }

    fn counts(&self) -> [u64; 2] {
        [self.count(0), self.count(1)]
    }

    /// Wait until thread `i` has counted past `from` (it runs), for at most 20 s.
    fn moves_past(&self, i: usize, from: u64) -> bool {
        let since = Instant::now();
        while since.elapsed() < Duration::from_secs(20) {
            if self.count(i) != from {
                return true;
            }
            std::thread::yield_now();
        }
        false
    }

    fn tracer_of(&self, i: usize) -> i32 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/task/{}/status", self.pid(), self.tids[i]))
                .unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn pid(&self) -> i32 {
        self.ready.pid()
    }
}

#[test]
fn threads_captured_together_are_held_through_one_common_interval() {
    let dir = TempDir::new("together");
    let twins = Twins::start(&dir);
    let pid = twins.pid();
    let before = twins.counts();
    assert!(twins.moves_past(0, before[0]) && twins.moves_past(1, before[1]));

    let mut tracers = [
        ThreadTracer::seize(pid, twins.tids[0]).unwrap(),
        ThreadTracer::seize(pid, twins.tids[1]).unwrap(),
    ];
    let mut stacks = [Vec::new(), Vec::new()];
    let [t0, t1] = &mut tracers;
    let [s0, s1] = &mut stacks;
    let mut group = [Together::new(t0, STACK, s0), Together::new(t1, STACK, s1)];
    // During the capture: the counters, read many times over. Both threads count as fast as
    // they can whenever they run, so any read in which either had run would differ.
    let reads: Vec<[u64; 2]> =
        capture_together(&mut group, || (0..2000).map(|_| twins.counts()).collect());
    let captures = group.map(|mut t| t.take_result().unwrap());

    let held = reads[0];
    assert!(
        reads.iter().all(|r| *r == held),
        "a thread ran during the capture: {:?} then {:?}",
        held,
        reads.iter().find(|r| **r != held)
    );
    assert!(held[0] != before[0] && held[1] != before[1]);
    // Each thread was stopped in its counting loop, with its stack read.
    for (c, stack) in captures.iter().zip(&stacks) {
        assert!(!stack.is_empty());
        assert_eq!(c.syscall, None, "stopped in user space, counting");
    }
    // Let go: both count again, and neither is traced any more.
    assert!(twins.moves_past(0, held[0]) && twins.moves_past(1, held[1]));
    drop(tracers);
    assert_eq!((twins.tracer_of(0), twins.tracer_of(1)), (0, 0));
}

#[test]
fn a_thread_stopped_alone_lets_the_other_run() {
    let dir = TempDir::new("alone");
    let twins = Twins::start(&dir);
    let pid = twins.pid();
    let tracer = ThreadTracer::seize(pid, twins.tids[0]).unwrap();
    let mut stack = Vec::new();
    let (_, (held, other_ran)) = tracer
        .capture_once(STACK, &mut stack, || {
            let at = twins.counts();
            let other_ran = twins.moves_past(1, at[1]);
            (at[0] == twins.count(0), other_ran)
        })
        .unwrap();
    assert!(held, "the stopped thread counted during its stop");
    assert!(
        other_ran,
        "the other thread did not run while one was stopped"
    );
}
