//! The calling thread's scheduler statistics, from `/proc/thread-self/schedstat`
//! ([`Schedstat`]: its time on a CPU, its time queued for a CPU). The file, opened on the
//! thread it describes, stays bound to that thread; each reading is one `pread` (~0.3 µs
//! here). Used for strobe's own cost ([`crate::selfcost`]), to tell a wake-up held back for a
//! CPU from one that was not ([`crate::pacing`]), and for the thread's share of a core
//! ([`crate::priority`]).

use std::fs::File;
use std::os::unix::fs::FileExt;

pub(crate) use strobe_remote::procfs::Schedstat;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct ThreadSchedstat(Option<File>);

impl ThreadSchedstat {
    /// For the calling thread; readings are `None` where the kernel does not offer the file.
    pub(crate) fn of_this_thread() -> ThreadSchedstat {
        ThreadSchedstat(File::open("/proc/thread-self/schedstat").ok())
    }

    /// The counts now.
    pub(crate) fn read(&self) -> Option<Schedstat> {
        let mut buf = [0u8; 128];
        let n = self.0.as_ref()?.read_at(&mut buf, 0).ok()?;
        Schedstat::parse(buf.get(..n)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn this_threads_own_counts() {
        let stat = ThreadSchedstat::of_this_thread();
        let first = stat.read().expect("schedstat on this machine");
        // The same thread's counts, read through its task's own path, between two readings.
        let tid = nix::unistd::gettid();
        let own = std::fs::read(format!("/proc/self/task/{tid}/schedstat")).unwrap();
        let own = Schedstat::parse(&own).unwrap();
        let last = stat.read().unwrap();
        assert!(
            first.ran_ns <= own.ran_ns && own.ran_ns <= last.ran_ns,
            "{first:?} {own:?}"
        );
        assert!(first.queued_ns <= own.queued_ns && own.queued_ns <= last.queued_ns);
    }

    /// The time on a CPU is the thread's CPU clock: 50 ms spun on it show as 50 ms (less at
    /// most a scheduler tick not yet accounted: the file is not brought up to date on read).
    #[test]
    fn time_on_a_cpu_is_the_threads_cpu_clock() {
        use nix::time::{clock_gettime, ClockId};
        let cpu = || {
            let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
            t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
        };
        let stat = ThreadSchedstat::of_this_thread();
        let (before, cpu_before) = (stat.read().unwrap(), cpu());
        while cpu() - cpu_before < 50_000_000 {}
        let (after, spun) = (stat.read().unwrap(), cpu() - cpu_before);
        let ran = after.ran_ns - before.ran_ns;
        assert!(
            ran <= spun + 10_000_000 && ran + 10_000_000 >= spun,
            "{ran} ns, {spun} ns"
        );
    }
}
