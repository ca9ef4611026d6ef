//! The sampler thread's scheduling against a real interpreter (pyenv 3.12, one spinning
//! thread), as the kernel reports it for that thread (`sched_getscheduler`), not as the
//! sampler says: paced at an ordinary rate it runs at real-time priority (tests run as root,
//! which may ask for it); paced at a rate whose rounds keep it busy more than half the time
//! it gives real time up; flat out it never takes it. One test, so that one sampler thread
//! of this process runs at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strobe_sampler::{SamplerConfig, SamplerPriority};
use strobe_target::Target;

mod support;
use support::{sample_until_stats, spinner};

/// Whether this process's sampler thread runs at real-time priority now (`None` while there
/// is no sampler thread).
fn sampler_is_realtime() -> Option<bool> {
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else {
            continue;
        };
        if comm.trim_end() == "strobe-sampler" {
            let tid: i32 = task.file_name().unwrap().to_str().unwrap().parse().unwrap();
            return strobe_remote::thread_is_realtime(tid).ok();
        }
    }
    None
}

#[test]
fn the_sampler_runs_at_real_time_while_its_rounds_are_cheap() {
    let victim = spinner("priority");
    let cfg = |rate_hz: f64, native: bool| SamplerConfig {
        rate_hz,
        native,
        ..SamplerConfig::default()
    };
    let attach = || Target::attach(victim.pid()).unwrap();

    // 100 Hz: real time, seen by the kernel after 20 rounds, and never given up.
    let (_, _, summary) = sample_until_stats(
        attach(),
        cfg(100.0, false),
        "20 rounds at real time",
        |_, s| s.rounds >= 20 && sampler_is_realtime() == Some(true),
    );
    assert_eq!(
        summary.stats.priority,
        SamplerPriority::RealTime,
        "{summary:?}"
    );
    assert_eq!(summary.stats.priority_lowered, 0, "{summary:?}");

    // 20 kHz with native stacks (a stop and an unwind a round, more than the 50 µs between
    // deadlines): given up within a window, and not taken back while the rate stays.
    let (_, _, summary) = sample_until_stats(
        attach(),
        cfg(20_000.0, true),
        "real time given up",
        |_, s| s.priority_lowered >= 1 && sampler_is_realtime() == Some(false),
    );
    assert_eq!(
        summary.stats.priority,
        SamplerPriority::Favoured,
        "{summary:?}"
    );
    assert_eq!(summary.stats.priority_lowered, 1, "{summary:?}");

    // Flat out: no deadlines to keep, never real time.
    let mut timeshared = 0;
    let (_, _, summary) = sample_until_stats(
        attach(),
        cfg(1_000_000.0, false),
        "1,000 rounds, the sampler seen time-shared 3 times",
        |_, s| {
            let realtime = sampler_is_realtime();
            assert_ne!(realtime, Some(true), "flat out at real time");
            timeshared += usize::from(realtime == Some(false));
            s.rounds >= 1000 && timeshared >= 3
        },
    );
    assert_eq!(
        summary.stats.priority,
        SamplerPriority::Default,
        "{summary:?}"
    );
}
