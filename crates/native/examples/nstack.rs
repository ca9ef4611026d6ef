//! Print the native stack of one thread: `nstack PID TID [ptrace|perf|blocked]`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strobe_native::{Binaries, DebugSearch, ModuleMap, Symbolizer, Unwinder, Unwound};
use strobe_remote::{BlockedThread, PerfConfig, PerfThread, ProcessMemory, ThreadTracer, UserRegs};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pid: i32 = args[1].parse().unwrap();
    let tid: i32 = args.get(2).map_or(pid, |t| t.parse().unwrap());
    let method = args.get(3).map_or("ptrace", |s| s.as_str());
    let mem = ProcessMemory::open(pid).unwrap();
    let mut binaries = Binaries::new(DebugSearch::default());
    let (modules, problems) = ModuleMap::read(pid, &mem, &mut binaries).unwrap();
    for p in problems {
        eprintln!("warning: {p}");
    }
    let mut stack = Vec::new();
    let regs: UserRegs = match method {
        "ptrace" => {
            let mut t = ThreadTracer::seize(pid, tid).unwrap();
            let c = t.capture(128 * 1024, &mut stack).unwrap();
            eprintln!("stopped for {:?}", c.stopped_for);
            c.regs
        }
        "blocked" => {
            let mut t = BlockedThread::open(pid, tid).unwrap();
            t.capture(128 * 1024, &mut stack).unwrap().regs
        }
        _ => {
            let mut p = PerfThread::open(pid, tid, &PerfConfig::default()).unwrap();
            let mut got = None;
            while got.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(50));
                p.drain(|s| {
                    if let Some(r) = s.regs {
                        stack = s.stack.to_vec();
                        got = Some(r);
                    }
                });
            }
            got.unwrap()
        }
    };
    let mut unwinder = Unwinder::new(&modules);
    let mut unwound = Unwound::default();
    unwinder.unwind(&regs, &stack, &mut unwound);
    let mut frames = Vec::new();
    Symbolizer::new().symbolize(&modules, &unwound, &mut frames);
    for f in &frames {
        println!(
            "{:#014x} {:?} {}{}",
            f.address,
            f.unwound_by,
            if f.inlined { "(inlined) " } else { "" },
            f
        );
    }
    println!("end: {:?}", unwound.end);
}
