//! What one ptrace capture of a running thread costs strobe, three ways, alternating in blocks
//! so that all three share the same minutes of a shared machine:
//! `capture_cost PID TID [ROUNDS]`.
//!
//! - `once`: seize, stop, read, detach (each sample a new tracer: `ThreadTracer::capture_once`);
//! - `held`: one tracer kept across captures (`ThreadTracer::capture`), 256 KiB copied;
//! - `held+reach`: the same, the copy ending where the thread's first complete unwind read.
//!
//! Prints per way the median and mean wall time of a capture (interrupt to resume), the
//! median time the thread was held, and the bytes copied. Medians are robust to the
//! preemptions of a loaded machine; means are not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};
use strobe_native::{Binaries, DebugSearch, ModuleMap, Unwinder, Unwound};
use strobe_remote::{ProcessMemory, StackSpan, ThreadTracer};

const STACK: usize = 256 * 1024;
const BLOCK: usize = 500;

#[derive(Default)]
struct Way {
    took: Vec<Duration>,
    held: Vec<Duration>,
    bytes: usize,
}

impl Way {
    fn report(&mut self, name: &str) {
        self.took.sort();
        self.held.sort();
        let n = self.took.len().max(1);
        let mean = self.took.iter().sum::<Duration>() / n as u32;
        println!(
            "{name:>11}: capture median {:.1} µs, mean {:.1} µs; thread held median {:.1} µs; {} bytes copied on average ({n} captures)",
            self.took[n / 2].as_secs_f64() * 1e6,
            mean.as_secs_f64() * 1e6,
            self.held[n / 2].as_secs_f64() * 1e6,
            self.bytes / n
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pid: i32 = args[1].parse().unwrap();
    let tid: i32 = args[2].parse().unwrap();
    let rounds: usize = args.get(3).map_or(10, |r| r.parse().unwrap());
    let mem = ProcessMemory::open(pid).unwrap();
    let mut binaries = Binaries::new(DebugSearch::default());
    let (modules, _) = ModuleMap::read(pid, &mem, &mut binaries).unwrap();
    let mut unwinder = Unwinder::new(&modules);
    let mut stack = Vec::new();
    let mut unwound = Unwound::default();
    // The reach: one complete unwind of a full copy.
    let reach = {
        let mut t = ThreadTracer::seize(pid, tid).unwrap();
        let c = t.capture(STACK, &mut stack).unwrap();
        unwinder.unwind(&c.regs, &stack, &mut unwound);
        assert_eq!(unwound.end, Some(strobe_native::UnwindEnd::Complete));
        unwound.reach
    };
    let (mut once, mut held, mut bounded) = (Way::default(), Way::default(), Way::default());
    for _ in 0..rounds {
        for _ in 0..BLOCK {
            let since = Instant::now();
            let t = ThreadTracer::seize(pid, tid).unwrap();
            let (c, ()) = t.capture_once(STACK, &mut stack, || ()).unwrap();
            once.took.push(since.elapsed());
            once.held.push(c.stopped_for);
            once.bytes += stack.len();
        }
        let mut t = ThreadTracer::seize(pid, tid).unwrap();
        for (way, span) in [
            (&mut held, StackSpan::from(STACK)),
            (
                &mut bounded,
                StackSpan {
                    max: STACK,
                    end: Some(reach),
                },
            ),
        ] {
            for _ in 0..BLOCK {
                let since = Instant::now();
                let c = t.capture(span, &mut stack).unwrap();
                way.took.push(since.elapsed());
                way.held.push(c.stopped_for);
                way.bytes += stack.len();
            }
        }
    }
    once.report("once");
    held.report("held");
    bounded.report("held+reach");
}
