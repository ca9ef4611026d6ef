//! The paced sampler thread's standing with the scheduler: real time while it stays cheap.
//!
//! A paced round should start at its deadline. A time-shared thread woken on a CPU that runs
//! the target is queued behind it until the scheduler decides to preempt it, and a nice value
//! only weighs the thread's share; it does not make the wake-up preempt. Measured on a 2-vCPU
//! machine running a 50-thread target that keeps both CPUs busy, a loop sleeping to deadlines
//! every 10 ms woke 227–256 µs late on average at nice −10 (13% of wake-ups more than 250 µs
//! late, up to 4.5 ms), and 25–31 µs late in the real-time first-in first-out class at its
//! lowest priority (`SCHED_FIFO` 1; 0–2 of 300 more than 250 µs late). `strobe record
//! --native --rate 100` on that target took 80–82 rounds a second at nice −10 and 95–97 at
//! real time, with 1 kHz 640–660 and 870–880.
//!
//! So, paced, the sampler thread asks for nice −10 and then for `SCHED_FIFO` 1 (both need
//! `CAP_SYS_NICE`; without it the thread keeps what it was given, and the pacer skips what
//! the scheduler held back). A real-time thread that runs without pause takes its CPU from
//! every time-shared thread on it (the kernel caps real-time threads at 95% of each second by
//! default), so the thread watches what it asks of a CPU: its time on one plus its time queued
//! for one ([`crate::schedstat`]; at real time the second is near zero). Over any [`WINDOW_NS`]
//! in which that came to more than [`LOWER_ABOVE`] of a core (rounds back to back at a rate it
//! cannot keep, a burst of first-time symbol loading) it goes back to time sharing at nice
//! −10, and it returns to real time after a window under [`RAISE_BELOW`]. Time sharing, a
//! thread that would run without pause still asks for the whole core, though it gets less:
//! counting the time queued keeps it from being raised again only because it got less (a
//! first version, judging by time on a CPU alone, went back and forth 13 times in 8 s at
//! 19 kHz on 50 busy threads). Flat out, there are no deadlines to keep and the thread stays as
//! it was started; so does a thread started real time already (strobe run under `chrt`, at a
//! priority its user chose).

use strobe_remote::{
    set_thread_nice, set_thread_realtime, set_thread_timeshared, thread_is_realtime,
};

use crate::schedstat::Schedstat;
use crate::stats::SamplerStats;

/// The nice value asked for when paced (kept under real time, and used when that is lowered
/// or refused).
const SAMPLER_NICE: i32 = -10;
/// The window over which the thread's share of a core is measured, in ns.
const WINDOW_NS: u64 = 100_000_000;
/// Above this share of one core over a window, real time is given up.
const LOWER_ABOVE: f64 = 0.5;
/// Below this share of one core over a window, real time is taken back.
const RAISE_BELOW: f64 = 0.25;

/// The scheduling the sampler thread runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SamplerPriority {
    /// As started (flat out, started real time already, or nothing else was allowed).
    #[default]
    Default,
    /// Time-shared at nice −10.
    Favoured,
    /// `SCHED_FIFO` 1.
    RealTime,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Priority {
    current: SamplerPriority,
    /// What the thread falls back to when real time is given up.
    below_realtime: SamplerPriority,
    /// Real time was granted once, so it may be asked for again.
    realtime_granted: bool,
    /// The current window's start: (ns since sampling started, the thread's time on a CPU
    /// plus its time queued for one, in ns).
    window: Option<(u64, u64)>,
    /// Times real time was given up.
    lowered: u64,
}

impl Priority {
    /// Paced: ask for nice −10 and then real time for the calling thread (best effort). A
    /// thread already real time (strobe started under `chrt`) is left as it is.
    pub(crate) fn take(paced: bool) -> Priority {
        let (mut current, mut below_realtime, mut realtime_granted) =
            (SamplerPriority::Default, SamplerPriority::Default, false);
        let me = nix::unistd::gettid().as_raw();
        if paced && !thread_is_realtime(me).unwrap_or(false) {
            if set_thread_nice(SAMPLER_NICE).is_ok() {
                (current, below_realtime) = (SamplerPriority::Favoured, SamplerPriority::Favoured);
            }
            if set_thread_realtime().is_ok() {
                (current, realtime_granted) = (SamplerPriority::RealTime, true);
            }
        }
        Priority {
            current,
            below_realtime,
            realtime_granted,
            window: None,
            lowered: 0,
        }
    }

    /// The thread's counts were `now` at `now_ns` (ns since sampling started): at the end of
    /// each window, give up or take back real time as the share of a core it asked for says,
    /// and publish the standing in `stats`.
    pub(crate) fn observe(&mut self, now_ns: u64, now: Schedstat, stats: &SamplerStats) {
        let asked = now.ran_ns.saturating_add(now.queued_ns);
        let Some((since_ns, asked_since)) = self.window else {
            self.window = Some((now_ns, asked));
            stats.set_priority(self.current, self.lowered);
            return;
        };
        let span = now_ns.saturating_sub(since_ns);
        if span < WINDOW_NS {
            return;
        }
        self.window = Some((now_ns, asked));
        let share = asked.saturating_sub(asked_since) as f64 / span as f64;
        match change(self.current, self.realtime_granted, share) {
            Some(Change::Lower) if set_thread_timeshared().is_ok() => {
                self.current = self.below_realtime;
                self.lowered += 1;
            }
            Some(Change::Raise) if set_thread_realtime().is_ok() => {
                self.current = SamplerPriority::RealTime;
            }
            _ => return,
        }
        stats.set_priority(self.current, self.lowered);
    }
}

/// A change of standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Lower,
    Raise,
}

/// What a window in which the thread asked for `share` of a core calls for, standing at
/// `current`.
fn change(current: SamplerPriority, realtime_granted: bool, share: f64) -> Option<Change> {
    match current {
        SamplerPriority::RealTime if share > LOWER_ABOVE => Some(Change::Lower),
        SamplerPriority::RealTime => None,
        _ if realtime_granted && share < RAISE_BELOW => Some(Change::Raise),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn real_time_is_given_up_above_half_a_core_and_taken_back_below_a_quarter() {
        use SamplerPriority::*;
        assert_eq!(change(RealTime, true, 0.02), None);
        assert_eq!(change(RealTime, true, LOWER_ABOVE), None);
        assert_eq!(change(RealTime, true, 0.51), Some(Change::Lower));
        assert_eq!(change(RealTime, true, 0.97), Some(Change::Lower));
        // Between the two limits a lowered thread stays lowered.
        assert_eq!(change(Favoured, true, 0.4), None);
        assert_eq!(change(Favoured, true, RAISE_BELOW), None);
        assert_eq!(change(Favoured, true, 0.2), Some(Change::Raise));
        assert_eq!(change(Default, true, 0.2), Some(Change::Raise));
        // Never granted (no CAP_SYS_NICE, or flat out): never asked for.
        assert_eq!(change(Favoured, false, 0.0), None);
        assert_eq!(change(Default, false, 0.0), None);
    }

    fn snap(stats: &SamplerStats) -> (SamplerPriority, u64) {
        let s = stats.snapshot();
        (s.priority, s.priority_lowered)
    }

    fn counts(ran_ms: u64, queued_ms: u64) -> Schedstat {
        Schedstat {
            ran_ns: ran_ms * 1_000_000,
            queued_ns: queued_ms * 1_000_000,
            runs: 0,
        }
    }

    /// Root, as strobe's tests run: a window of running most of the time lowers the thread,
    /// one of asking as much but getting less keeps it lowered, one of sleeping raises it
    /// again, and the stats say so.
    #[test]
    fn the_thread_leaves_real_time_while_it_uses_more_than_half_a_core() {
        std::thread::spawn(|| {
            let me = nix::unistd::gettid().as_raw();
            let stats = SamplerStats::new();
            let mut p = Priority::take(true);
            assert_eq!(p.current, SamplerPriority::RealTime);
            assert!(strobe_remote::thread_is_realtime(me).unwrap());
            p.observe(0, counts(0, 0), &stats);
            assert_eq!(snap(&stats), (SamplerPriority::RealTime, 0));
            // 100 ms spent 80 ms on a CPU: lowered.
            p.observe(WINDOW_NS, counts(80, 0), &stats);
            assert!(!strobe_remote::thread_is_realtime(me).unwrap());
            assert_eq!(strobe_remote::thread_nice().unwrap(), SAMPLER_NICE);
            assert_eq!(snap(&stats), (SamplerPriority::Favoured, 1));
            // Too soon to judge again.
            p.observe(WINDOW_NS + 1, counts(80, 0), &stats);
            assert_eq!(p.current, SamplerPriority::Favoured);
            // The next 100 ms, 10 ms on a CPU and 60 queued: it still asks for most of one.
            p.observe(2 * WINDOW_NS + 1, counts(90, 60), &stats);
            assert_eq!(p.current, SamplerPriority::Favoured);
            // The next 100 ms, 1 ms and 1 ms: back to real time.
            p.observe(3 * WINDOW_NS + 1, counts(91, 61), &stats);
            assert!(strobe_remote::thread_is_realtime(me).unwrap());
            assert_eq!(snap(&stats), (SamplerPriority::RealTime, 1));
        })
        .join()
        .unwrap();
    }

    /// Started real time (under `chrt`, say): left there, and never lowered by the guard.
    #[test]
    fn a_thread_already_real_time_is_left_as_it_is() {
        std::thread::spawn(|| {
            let me = nix::unistd::gettid().as_raw();
            set_thread_realtime().unwrap();
            let stats = SamplerStats::new();
            let mut p = Priority::take(true);
            assert_eq!(p.current, SamplerPriority::Default);
            p.observe(0, counts(0, 0), &stats);
            p.observe(WINDOW_NS, counts(90, 0), &stats);
            assert!(strobe_remote::thread_is_realtime(me).unwrap());
            assert_eq!(snap(&stats), (SamplerPriority::Default, 0));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn flat_out_the_thread_stays_as_it_was() {
        std::thread::spawn(|| {
            let me = nix::unistd::gettid().as_raw();
            let nice = strobe_remote::thread_nice().unwrap();
            let p = Priority::take(false);
            assert_eq!(p.current, SamplerPriority::Default);
            assert!(!strobe_remote::thread_is_realtime(me).unwrap());
            assert_eq!(strobe_remote::thread_nice().unwrap(), nice);
        })
        .join()
        .unwrap();
    }
}
