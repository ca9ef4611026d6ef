//! Does a ptrace capture disturb a sleeping thread? Captures thread TID (default: the main
//! thread) of PID N times through [`ThreadTracer`], detaches, then prints how much CPU the main
//! thread used in the following second and the system call it is in, to see that a stop
//! interrupting a sleep (`time.sleep`, a lock wait) restarts it rather than leaving it spinning.
//!
//! `cargo run -p strobe-native --example ploop -- PID N [TID]` (as root).

#![allow(clippy::unwrap_used)]

use strobe_remote::ThreadTracer;

/// User plus system CPU ticks of a thread, from `/proc/PID/task/TID/stat`.
fn cpu(pid: i32, tid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
    let after = &text[text.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pid: i32 = args[1].parse().unwrap();
    let n: u32 = args[2].parse().unwrap();
    let tid: i32 = args.get(3).map_or(pid, |t| t.parse().unwrap());
    let mut stack = Vec::new();
    {
        let mut t = ThreadTracer::seize(pid, tid).unwrap();
        for _ in 0..n {
            t.capture(65536, &mut stack).unwrap();
        }
    }
    let c0 = cpu(pid, pid);
    std::thread::sleep(std::time::Duration::from_secs(1));
    println!(
        "main thread CPU ticks in 1 s after {n} captures: {}",
        cpu(pid, pid) - c0
    );
    println!(
        "{}",
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/syscall")).unwrap()
    );
}
