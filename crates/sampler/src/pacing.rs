//! When to take the next round, and what it stands for: waiting for the clock's deadlines
//! (see [`crate::clock`]), skipping those that passed while the sampler was busy and carrying
//! them in the next round's weight, or, above [`FLAT_OUT_HZ`], sampling back to back.
//!
//! # Late wake-ups
//! A sampler that waited for its deadline but was woken long after it is not sampled either:
//! on a busy machine the wake-up was held back until the CPU it needed was given up, which
//! happens at a scheduler tick (every 4 ms at the common `CONFIG_HZ=250`, 1 ms at 1000). Such
//! a sample is taken at a time set by the kernel's fixed tick, not by the Poisson clock, and
//! aliases with a target whose rhythm shares that period: measured on a 2-CPU machine running
//! a target that alternates 3 ms / 1 ms, every sample more than 1 ms late fell into the same
//! eighth of the target's 4 ms cycle, and with a third of the samples late a function with 52%
//! of the time was given 36%. A wake-up more than [`MAX_WAKE_LATENESS_NS`] after its deadline
//! is therefore skipped like a deadline that passed while busy, and carried by the next round
//! taken on time. So that a machine too busy to ever wake the sampler on time still gets
//! samples, after [`MAX_LATE_SKIPS`] such skips in a row the late round is taken anyway (it is
//! counted late either way).
//!
//! Only a wake-up held back for a CPU is skipped, though: a late one that was not waiting in a
//! run queue is taken. A virtual machine's idle CPU is woken late by itself, hundreds of µs
//! after a long sleep, at a time the scheduler's tick has no part in: measured on this 2-vCPU
//! VM, a thread sleeping 500 ms on the idle CPU while the other ran a busy Python program woke
//! more than 250 µs late one time in four, with no time at all in a run queue, where a wake-up
//! held back by a busy CPU had spent all but a few µs of its lateness queued. At 2 Hz every
//! skip cost half a second of sampling, and with most rounds skipped a 9 s recording took 2.
//! The time queued is the thread's `run_delay` ([`crate::schedstat`], one `pread` of ~0.3 µs
//! before each wait and after a late wake-up); where the kernel keeps none, every late wake-up
//! counts as held back.

use std::time::Duration;

use crate::clock::Clock;

/// Waits shorter than this (ns) are spun rather than slept: sleeping and being woken costs
/// the sampler more CPU than that here, and overshoots (at high rates most waits are this
/// short; at 100 Hz almost none is).
const SPIN_BELOW_NS: u64 = 10_000;
/// Rates above this sample back to back: the mean interval is then about what a sample costs,
/// and waiting for each deadline would only add wake-up latency.
const FLAT_OUT_HZ: f64 = 20_000.0;
/// A wake-up later than this after its deadline, and queued for a CPU for as long, is skipped
/// (see "Late wake-ups" above): well above the usual wake-up latency (tens of µs), well below
/// a scheduler tick.
const MAX_WAKE_LATENESS_NS: u64 = 250_000;
/// Late wake-ups skipped in a row before one is sampled regardless.
const MAX_LATE_SKIPS: u32 = 8;

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// The configured duration has elapsed.
    Ended,
    /// Wait this many ns (or less: woken by a stop), then ask again.
    Wait(u64),
    /// A deadline passed while the sampler was busy; it was skipped. Ask again.
    Skipped,
    /// Take a round now.
    Round {
        /// Deadlines it consumed: 1 when on time, more when late.
        intervals: u64,
        /// The wall time each of its samples stands for, in ns.
        weight_ns: u64,
    },
}

/// See the module documentation. Times are ns since sampling started.
#[derive(Debug)]
pub(crate) struct Pacer {
    clock: Clock,
    /// Above [`FLAT_OUT_HZ`]: rounds back to back, no deadlines.
    flat_out: bool,
    /// When sampling ends, if it does by itself.
    end_ns: Option<u64>,
    /// Deadlines skipped since the last round (they passed while the sampler was busy).
    carried: u64,
    /// Whether the sampler waited for the current deadline (else it passed while busy).
    waited: bool,
    /// Flat out: when the previous round was taken.
    previous_ns: u64,
    /// Late wake-ups skipped since the last round.
    late_skips: u32,
    /// The thread's time queued for a CPU when it began waiting for the current deadline.
    queued_at_wait: Option<u64>,
}

impl Pacer {
    /// For `rate_hz` rounds a second, for `duration` if given; `seed` draws the intervals.
    pub(crate) fn new(rate_hz: f64, duration: Option<Duration>, seed: u64) -> Pacer {
        Pacer {
            clock: Clock::new(rate_hz, seed),
            flat_out: rate_hz > FLAT_OUT_HZ,
            end_ns: duration.map(|d| d.as_nanos() as u64),
            carried: 0,
            waited: false,
            previous_ns: 0,
            late_skips: 0,
            queued_at_wait: None,
        }
    }

    /// Whether rounds wait for deadlines (not flat out).
    pub(crate) fn is_paced(&self) -> bool {
        !self.flat_out
    }

    /// What to do at `now_ns`; `queued` reads the thread's total time queued for a CPU, in ns
    /// (see [`crate::schedstat`]), which is asked only when a wait begins or a wake-up is late.
    pub(crate) fn pace(&mut self, now_ns: u64, queued: impl FnOnce() -> Option<u64>) -> Pace {
        if self.end_ns.is_some_and(|end| now_ns >= end) {
            return Pace::Ended;
        }
        if self.flat_out {
            // Back to back, no deadlines to draw: each round stands for the time since the
            // previous one (the weights add up to the recording's wall time exactly). Not
            // late: sampling as fast as it can is what was asked; the summary reports the
            // rate achieved against the rate requested.
            let gap = now_ns.saturating_sub(self.previous_ns).max(1);
            self.previous_ns = now_ns;
            return Pace::Round {
                intervals: 1,
                weight_ns: gap,
            };
        }
        let deadline = self.clock.next_deadline_ns();
        if now_ns < deadline {
            let until = self.end_ns.map_or(deadline, |end| end.min(deadline));
            if !self.waited {
                self.queued_at_wait = queued();
            }
            self.waited = true;
            return Pace::Wait(until.saturating_sub(now_ns));
        }
        if !self.waited {
            // Passed while we were busy: sampling now would be at a time set by our own cost.
            self.carried += self.clock.skip(now_ns);
            return Pace::Skipped;
        }
        self.waited = false;
        if now_ns - deadline > MAX_WAKE_LATENESS_NS
            && self.late_skips < MAX_LATE_SKIPS
            && self.held_back(queued)
        {
            // Woken at a time the scheduler chose, not the clock.
            self.late_skips += 1;
            self.carried += self.clock.skip(now_ns);
            return Pace::Skipped;
        }
        self.late_skips = 0;
        let intervals = self.clock.tick(now_ns).intervals + self.carried;
        self.carried = 0;
        Pace::Round {
            intervals,
            weight_ns: (intervals as f64 * self.clock.mean_ns()).round() as u64,
        }
    }

    /// Whether a late wake-up spent more than [`MAX_WAKE_LATENESS_NS`] queued for a CPU since
    /// its wait began; when that is not known, it is taken to have been.
    fn held_back(&self, queued: impl FnOnce() -> Option<u64>) -> bool {
        match (self.queued_at_wait, queued()) {
            (Some(before), Some(after)) => after.saturating_sub(before) > MAX_WAKE_LATENESS_NS,
            _ => true,
        }
    }
}

/// Wait `ns` on the calling thread: spun when too short to sleep, else parked (woken early by
/// an unpark from `SamplerHandle::stop`; a spurious wake-up only makes the wait shorter).
pub(crate) fn wait(ns: u64) {
    if ns < SPIN_BELOW_NS {
        // Too short to sleep: a park and its wake-up cost more than the wait itself and would
        // overshoot the deadline. Spin on the clock instead.
        std::hint::spin_loop();
    } else {
        std::thread::park_timeout(Duration::from_nanos(ns));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A kernel that keeps no count of time queued.
    fn unknown() -> Option<u64> {
        None
    }

    #[test]
    fn a_deadline_that_passed_unwaited_is_carried_by_the_next_round() {
        let mut p = Pacer::new(1000.0, None, 7);
        let first = p.clock.next_deadline_ns();
        assert_eq!(p.pace(0, unknown), Pace::Wait(first));
        // Woken at the deadline: a round for one interval.
        assert_eq!(
            p.pace(first, unknown),
            Pace::Round {
                intervals: 1,
                weight_ns: 1_000_000
            }
        );
        // The round took long enough for the next deadline (and maybe more) to pass.
        let late = p.clock.next_deadline_ns() + 1;
        assert_eq!(p.pace(late, unknown), Pace::Skipped);
        let next = p.clock.next_deadline_ns();
        assert!(matches!(p.pace(late, unknown), Pace::Wait(ns) if ns == next - late));
        match p.pace(next, unknown) {
            Pace::Round {
                intervals,
                weight_ns,
            } => {
                assert!(intervals >= 2, "{intervals}");
                assert_eq!(weight_ns, intervals * 1_000_000);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_late_wake_up_is_skipped_and_carried_unless_every_one_is_late() {
        let mut p = Pacer::new(1000.0, None, 11);
        let mut carried = 0;
        for _ in 0..MAX_LATE_SKIPS {
            let deadline = p.clock.next_deadline_ns();
            assert!(matches!(p.pace(deadline - 1, unknown), Pace::Wait(1)));
            // Woken a whole scheduler tick late.
            let woken = deadline + 4_000_000;
            assert_eq!(p.pace(woken, unknown), Pace::Skipped);
            carried += 1;
        }
        // Always late: the next one is taken anyway, carrying everything skipped.
        let deadline = p.clock.next_deadline_ns();
        assert!(matches!(p.pace(deadline - 1, unknown), Pace::Wait(1)));
        match p.pace(deadline + 4_000_000, unknown) {
            Pace::Round { intervals, .. } => assert!(intervals > carried, "{intervals}"),
            other => panic!("{other:?}"),
        }
        // A wake-up within the usual latency is sampled, and the count of skips starts over.
        let deadline = p.clock.next_deadline_ns();
        assert!(matches!(p.pace(deadline - 1, unknown), Pace::Wait(1)));
        assert!(matches!(
            p.pace(deadline + MAX_WAKE_LATENESS_NS, unknown),
            Pace::Round { .. }
        ));
        let deadline = p.clock.next_deadline_ns();
        assert!(matches!(p.pace(deadline - 1, unknown), Pace::Wait(1)));
        assert_eq!(
            p.pace(deadline + MAX_WAKE_LATENESS_NS + 1, unknown),
            Pace::Skipped
        );
    }

    #[test]
    fn a_late_wake_up_not_held_back_for_a_cpu_is_taken() {
        let mut p = Pacer::new(2.0, None, 5);
        let deadline = p.clock.next_deadline_ns();
        assert!(matches!(p.pace(0, || Some(7_000)), Pace::Wait(_)));
        // Asked only when the wait began, not at each wake-up before the deadline.
        assert!(matches!(p.pace(1, || panic!("read again")), Pace::Wait(_)));
        // 400 µs late, 10 µs of it queued (a VM's idle CPU woken late): taken, on time.
        assert_eq!(
            p.pace(deadline + 400_000, || Some(17_000)),
            Pace::Round {
                intervals: 1,
                weight_ns: 500_000_000
            }
        );
        // 400 µs late, all of it queued behind a busy CPU's current task: skipped.
        let deadline = p.clock.next_deadline_ns();
        assert!(matches!(
            p.pace(deadline - 1, || Some(20_000)),
            Pace::Wait(1)
        ));
        assert_eq!(p.pace(deadline + 400_000, || Some(420_000)), Pace::Skipped);
        // Queued time known before the wait but not after: skipped as if held back.
        let deadline = p.clock.next_deadline_ns();
        assert!(matches!(p.pace(deadline - 1, || Some(0)), Pace::Wait(1)));
        assert_eq!(p.pace(deadline + 400_000, unknown), Pace::Skipped);
    }

    #[test]
    fn flat_out_rounds_weigh_the_time_since_the_previous_one() {
        let mut p = Pacer::new(1e6, Some(Duration::from_micros(10)), 1);
        assert_eq!(
            p.pace(3_000, unknown),
            Pace::Round {
                intervals: 1,
                weight_ns: 3_000
            }
        );
        assert_eq!(
            p.pace(3_000, unknown),
            Pace::Round {
                intervals: 1,
                weight_ns: 1
            }
        );
        assert_eq!(p.pace(10_000, unknown), Pace::Ended);
    }

    #[test]
    fn waits_stop_at_the_end_of_the_duration() {
        let mut p = Pacer::new(0.01, Some(Duration::from_millis(5)), 3);
        assert_eq!(p.pace(1_000_000, unknown), Pace::Wait(4_000_000));
        assert_eq!(p.pace(5_000_000, unknown), Pace::Ended);
    }
}
