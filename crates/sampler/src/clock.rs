//! The sampling clock: absolute deadlines, exponentially distributed intervals.
//!
//! A fixed period aliases with periodic programs: a target that alternates 3 ms and 1 ms of
//! work, sampled every 4 ms, is seen in the same phase every time and attributed 100% / 0%.
//! Drawing each interval from an exponential distribution with the requested mean makes the
//! sample times a Poisson process, which is independent of any rhythm in the target, so every
//! state is hit in proportion to the time spent in it.
//!
//! Deadlines are absolute (each one is the previous *deadline* plus an interval, not "now" plus
//! an interval), so the time a sample takes and the lateness of a wake-up do not stretch the
//! clock. A deadline that passes while the sampler is busy is not sampled late: sampling at
//! "as soon as the previous sample ended" would put samples at times set by the sampler's own
//! cost, which can alias with the target just like a fixed period. Such deadlines are skipped
//! ([`Clock::skip`]) and carried by the next sample taken at a deadline the sampler waited for:
//! its weight is the number of deadlines it stands for times the mean interval. That keeps
//! weights an unbiased estimate of wall time, and late samples are counted, not hidden.

/// Lateness beyond this many mean intervals is settled in one step instead of drawing every
/// missed deadline (a target stopped for minutes at a high rate would otherwise take a while).
const MAX_DRAWS: f64 = 10_000.0;

/// A small, fast, non-cryptographic generator (SplitMix64); enough to decorrelate sample
/// times from the target.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1]: never 0, so its logarithm is finite.
    pub fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// What taking a sample at a given moment stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Deadlines this sample consumed: 1 when on time, more when the sampler was late.
    pub intervals: u64,
    /// The wall time the sample stands for: `intervals` mean intervals, in ns.
    pub weight_ns: u64,
}

/// See the module documentation. Times are ns since the recording started.
#[derive(Debug, Clone)]
pub struct Clock {
    mean_ns: f64,
    next_ns: f64,
    rng: SplitMix64,
}

impl Clock {
    /// A clock ticking `rate_hz` times a second on average, first deadline one random interval
    /// after time 0. `rate_hz` must be finite and positive (the CLI validates it).
    pub fn new(rate_hz: f64, seed: u64) -> Clock {
        let mean_ns = 1e9 / rate_hz;
        let mut c = Clock {
            mean_ns,
            next_ns: 0.0,
            rng: SplitMix64::new(seed),
        };
        c.next_ns = c.draw();
        c
    }

    /// The mean interval in ns.
    pub fn mean_ns(&self) -> f64 {
        self.mean_ns
    }

    fn draw(&mut self) -> f64 {
        -self.rng.next_open01().ln() * self.mean_ns
    }

    /// When the next sample is due.
    pub fn next_deadline_ns(&self) -> u64 {
        self.next_ns as u64
    }

    /// Consume every deadline at or before `now_ns` without sampling (the sampler was busy
    /// when they passed); returns how many. The next deadline is then in the future.
    pub fn skip(&mut self, now_ns: u64) -> u64 {
        let now = now_ns as f64;
        let mut skipped = 0u64;
        if (now - self.next_ns) > MAX_DRAWS * self.mean_ns {
            skipped += ((now - self.next_ns) / self.mean_ns).round() as u64;
            self.next_ns = now;
        }
        while self.next_ns <= now {
            skipped += 1;
            self.next_ns += self.draw();
        }
        skipped
    }

    /// Take the sample due now (`now_ns` at or after [`Clock::next_deadline_ns`]): consumes the
    /// due deadline and every later one that has also passed, and schedules the next.
    pub fn tick(&mut self, now_ns: u64) -> Tick {
        let now = now_ns as f64;
        let mut intervals = 1u64;
        self.next_ns += self.draw();
        if (now - self.next_ns) > MAX_DRAWS * self.mean_ns {
            // Expected number of deadlines in the gap; restart the clock from now.
            intervals += ((now - self.next_ns) / self.mean_ns).round() as u64;
            self.next_ns = now + self.draw();
        }
        while self.next_ns <= now {
            intervals += 1;
            self.next_ns += self.draw();
        }
        Tick {
            intervals,
            weight_ns: (intervals as f64 * self.mean_ns).round() as u64,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_exponential_with_the_requested_mean() {
        let mut c = Clock::new(1000.0, 7);
        let n = 200_000;
        let mut prev = 0u64;
        let mut gaps = Vec::with_capacity(n);
        for _ in 0..n {
            let d = c.next_deadline_ns();
            gaps.push((d - prev) as f64);
            prev = d;
            assert_eq!(
                c.tick(d).intervals,
                1,
                "sampling exactly on time is never late"
            );
        }
        let mean = gaps.iter().sum::<f64>() / n as f64;
        // Standard error of the mean of an exponential is mean/sqrt(n) = 2.2 µs here.
        assert!((mean - 1e6).abs() < 5.0 * 1e6 / (n as f64).sqrt(), "{mean}");
        // Exponential: P(gap > mean) = 1/e; a jittered fixed period would be near 0.5 or 0.
        let above = gaps.iter().filter(|&&g| g > 1e6).count() as f64 / n as f64;
        let sd =
            ((1.0 / std::f64::consts::E) * (1.0 - 1.0 / std::f64::consts::E) / n as f64).sqrt();
        assert!(
            (above - 1.0 / std::f64::consts::E).abs() < 5.0 * sd,
            "{above}"
        );
    }

    #[test]
    fn a_late_sample_stands_for_every_deadline_it_missed() {
        let mut c = Clock::new(1000.0, 1);
        // Sample 50 ms late, then on time: the weights add up to the elapsed time.
        let first = c.next_deadline_ns();
        let t = c.tick(first + 50_000_000);
        assert!(t.intervals > 10, "{t:?}");
        assert_eq!(t.weight_ns, t.intervals * 1_000_000);
        assert!(c.next_deadline_ns() > first + 50_000_000);
        // Over a long late run, weight tracks wall time.
        let mut total = t.weight_ns;
        let mut now = first + 50_000_000;
        for _ in 0..20_000 {
            now = now.max(c.next_deadline_ns()) + 3_000_000; // every sample takes 3 ms
            total += c.tick(now).weight_ns;
        }
        let ratio = total as f64 / now as f64;
        assert!((ratio - 1.0).abs() < 0.02, "{ratio}");
    }

    #[test]
    fn skipping_consumes_passed_deadlines_only() {
        let mut c = Clock::new(1000.0, 5);
        assert_eq!(c.skip(0), 0);
        let first = c.next_deadline_ns();
        let n = c.skip(first + 20_000_000);
        assert!(n >= 1, "{n}");
        assert!(c.next_deadline_ns() > first + 20_000_000);
        // About 20 deadlines fit in 20 ms at 1 kHz (Poisson: 5 sd is about 22).
        assert!(n.abs_diff(21) < 25, "{n}");
    }

    #[test]
    fn a_huge_gap_is_settled_without_drawing_every_deadline() {
        let mut c = Clock::new(1_000_000.0, 3);
        let t = c.tick(3_600 * 1_000_000_000);
        let expected = 3_600_000_000u64;
        assert!(t.intervals.abs_diff(expected) < expected / 100, "{t:?}");
        assert!(c.next_deadline_ns() > 3_600 * 1_000_000_000);
    }
}
