//! Strobe's own cost of sampling: the sampler thread's CPU time, published in the stats every
//! [`CPU_EVERY`] and at the end for the summary.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::stats::SamplerStats;

/// How often the sampler thread's CPU time is published in the stats (a `/proc` read).
const CPU_EVERY: Duration = Duration::from_millis(250);

/// Publishes the calling thread's CPU time (see the module documentation).
pub(crate) struct SelfCost {
    cpu: ThreadCpu,
    /// When it was last published (ns since the start).
    at: u64,
}

impl SelfCost {
    /// For the calling thread (the one whose time is measured).
    pub(crate) fn new() -> SelfCost {
        SelfCost {
            cpu: ThreadCpu::open(),
            at: 0,
        }
    }

    /// Publish the CPU time in `stats` if the last time was [`CPU_EVERY`] before `now_ns`.
    pub(crate) fn publish_if_due(&mut self, now_ns: u64, stats: &SamplerStats) {
        if now_ns.saturating_sub(self.at) >= CPU_EVERY.as_nanos() as u64 {
            self.at = now_ns;
            self.cpu.publish(stats);
        }
    }

    /// Publish the CPU time in `stats` now.
    pub(crate) fn publish(&mut self, stats: &SamplerStats) {
        self.cpu.publish(stats);
    }
}

/// The calling thread's CPU time, from `/proc/thread-self/schedstat`, whose first field is the
/// time the thread has run in ns (`se.sum_exec_runtime`, fs/proc/base.c `proc_pid_schedstat`;
/// the sum `CLOCK_THREAD_CPUTIME_ID` reports). The file, opened on the thread it measures,
/// stays bound to that thread; each reading is one `pread`.
struct ThreadCpu {
    file: Option<File>,
}

impl ThreadCpu {
    /// For the calling thread; readings are `None` where the kernel does not offer the file.
    fn open() -> ThreadCpu {
        ThreadCpu {
            file: File::open("/proc/thread-self/schedstat").ok(),
        }
    }

    fn read(&mut self) -> Option<Duration> {
        let mut buf = [0u8; 128];
        let n = self.file.as_ref()?.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(buf.get(..n)?).ok()?;
        let ns: u64 = text.split_ascii_whitespace().next()?.parse().ok()?;
        Some(Duration::from_nanos(ns))
    }

    /// Store the current reading in `stats` (nothing if there is none).
    fn publish(&mut self, stats: &SamplerStats) {
        if let Some(cpu) = self.read() {
            stats.set_cpu(cpu);
        }
    }
}
