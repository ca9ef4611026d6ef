//! Whether recording preempted threads' registers pays for itself ([`Worth`]).
//!
//! The registers a preemption record carries cost the target at every preemption of a watched
//! thread (the tracepoint's filter at every switch of the machine, and a sample written for
//! each preemption of a watched thread); what they save is a stop for every thread a capture
//! finds preempted. The first grows with how often the target's threads are preempted, the
//! second with the sampling rate. On `benches/native_target.py 50` (50 busy threads, 2 vCPUs)
//! the records alone cost the target about 2 points of its throughput (~40 ms of CPU a second
//! for ~7,000 preemptions: ~6 µs each). At 100 Hz, with ~200 threads a second found
//! preempted (~35 preemptions each), recording them left the target 1.2 points faster
//! (medians of 8 alternated runs) than stopping them: a stop of a preempted thread costs it
//! ~300 µs, so the records pay while there are fewer than ~50 preemptions for each thread
//! found preempted. That is every rate from ~100 Hz up on this target (~6 at 1 kHz), and any
//! rate on a few threads (~8 with 4 threads at 100 Hz); at 20 Hz on 50 threads, ~175, they
//! do not. See docs/PERFORMANCE.md, "Issue 12: preemption records only where they pay".
//!
//! Both counts come from the switch records whether or not the registers are recorded: a switch
//! out that is a preemption says so, and a capture asks the records about each thread it would
//! stop. So every [`WINDOW`] the two are compared, and the registers are recorded only while
//! there are few preemptions for each thread found preempted.

use std::time::{Duration, Instant};

/// How often the decision is taken again.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);
/// Recording stops when a window had more preemptions than this for each thread found
/// preempted...
pub(crate) const OFF_ABOVE: u64 = 64;
/// ...and starts again when one had at most this many (apart, so that a rate near the limit
/// does not open and close the events every window).
pub(crate) const ON_AT_MOST: u64 = 40;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Worth {
    /// Whether the registers are to be recorded.
    pub(crate) on: bool,
    /// The current window's start, and the count of preemptions then.
    since: Instant,
    preemptions_then: u64,
    /// Threads found preempted by captures in the current window.
    found: u64,
    /// Windows decided with the records on, and off.
    pub(crate) windows_on: u64,
    pub(crate) windows_off: u64,
}

impl Worth {
    /// Recording from `now`, when `preemptions` had been counted.
    pub(crate) fn new(now: Instant, preemptions: u64) -> Worth {
        Worth {
            on: true,
            since: now,
            preemptions_then: preemptions,
            found: 0,
            windows_on: 0,
            windows_off: 0,
        }
    }

    /// A capture found a thread preempted.
    pub(crate) fn found_preempted(&mut self) {
        self.found += 1;
    }

    /// At a round's first drain, at `now`, with `preemptions` counted so far: whether the
    /// records are to be turned on (`Some(true)`) or off (`Some(false)`); `None` to leave them
    /// as they are.
    pub(crate) fn decide(&mut self, now: Instant, preemptions: u64) -> Option<bool> {
        if now.saturating_duration_since(self.since) < WINDOW {
            return None;
        }
        let seen = preemptions.saturating_sub(self.preemptions_then);
        let found = std::mem::take(&mut self.found);
        self.since = now;
        self.preemptions_then = preemptions;
        if self.on {
            self.windows_on += 1;
        } else {
            self.windows_off += 1;
        }
        if seen == 0 && found == 0 {
            // Nothing preempted: nothing either way.
            return None;
        }
        let limit = if self.on { OFF_ABOVE } else { ON_AT_MOST };
        let worth = seen <= limit.saturating_mul(found);
        (worth != self.on).then(|| {
            self.on = worth;
            worth
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One window of `seen` preemptions and `found` threads found preempted, ending at `at`.
    fn window(
        w: &mut Worth,
        at: &mut Instant,
        total: &mut u64,
        seen: u64,
        found: u64,
    ) -> Option<bool> {
        for _ in 0..found {
            w.found_preempted();
        }
        *total += seen;
        *at += WINDOW;
        w.decide(*at, *total)
    }

    #[test]
    fn records_stop_where_preemptions_outnumber_the_stops_saved_and_start_again_where_they_do_not()
    {
        let mut at = Instant::now();
        let mut total = 1_000;
        let mut w = Worth::new(at, total);
        // Not a window yet.
        assert_eq!(w.decide(at + WINDOW / 2, total + 10_000), None);
        // 1 kHz on few threads: a handful of preemptions per thread found preempted.
        assert_eq!(window(&mut w, &mut at, &mut total, 6_000, 1_000), None);
        assert!(w.on);
        // Up to the limit, still on.
        assert_eq!(
            window(&mut w, &mut at, &mut total, OFF_ABOVE * 100, 100),
            None
        );
        // 50 busy threads at 100 Hz: ~35 a thread found.
        assert_eq!(window(&mut w, &mut at, &mut total, 7_000, 200), None);
        // At 20 Hz: ~175.
        assert_eq!(window(&mut w, &mut at, &mut total, 7_000, 40), Some(false));
        assert!(!w.on);
        // Between the two limits: stays off.
        assert_eq!(window(&mut w, &mut at, &mut total, 5_000, 100), None);
        // Preemptions and nothing found preempted: off.
        assert_eq!(window(&mut w, &mut at, &mut total, 500, 0), None);
        // Nothing at all: as it was.
        assert_eq!(window(&mut w, &mut at, &mut total, 0, 0), None);
        // Back to few: on again.
        assert_eq!(
            window(&mut w, &mut at, &mut total, ON_AT_MOST * 100, 100),
            Some(true)
        );
        assert!(w.on);
        assert_eq!(window(&mut w, &mut at, &mut total, 0, 0), None);
        assert!(w.on);
        assert_eq!((w.windows_on, w.windows_off), (5, 4));
    }
}
