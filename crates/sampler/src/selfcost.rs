//! Strobe's own cost of sampling: the sampler thread's CPU time ([`crate::schedstat`]),
//! published in the stats every [`CPU_EVERY`] and at the end for the summary.

use std::time::Duration;

use crate::schedstat::ThreadSchedstat;
use crate::stats::SamplerStats;

/// How often the sampler thread's CPU time is published in the stats (a `/proc` read).
const CPU_EVERY: Duration = Duration::from_millis(250);

/// Publishes the sampler thread's CPU time (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct SelfCost {
    /// When it was last published (ns since the start).
    at: u64,
}

impl SelfCost {
    /// Publish the CPU time `schedstat` reads in `stats` if the last time was [`CPU_EVERY`]
    /// before `now_ns`.
    pub(crate) fn publish_if_due(
        &mut self,
        now_ns: u64,
        schedstat: &ThreadSchedstat,
        stats: &SamplerStats,
    ) {
        if now_ns.saturating_sub(self.at) >= CPU_EVERY.as_nanos() as u64 {
            self.at = now_ns;
            self.publish(schedstat, stats);
        }
    }

    /// Publish the CPU time `schedstat` reads in `stats` now (nothing where the kernel gives
    /// no reading).
    pub(crate) fn publish(&mut self, schedstat: &ThreadSchedstat, stats: &SamplerStats) {
        if let Some(s) = schedstat.read() {
            stats.set_cpu(Duration::from_nanos(s.ran_ns));
        }
    }
}
