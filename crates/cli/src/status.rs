//! The live status line while recording, and the summary at the end (the same figures).

use std::io::{IsTerminal, Write};

use strobe_sampler::{ErrorKind, StatsSnapshot};

/// One line on stderr, redrawn in place; only when stderr is a terminal.
#[derive(Debug)]
pub struct StatusLine {
    enabled: bool,
    drawn: bool,
}

impl StatusLine {
    /// A status line that draws only if `wanted` and stderr is a terminal.
    pub fn new(wanted: bool) -> StatusLine {
        StatusLine {
            enabled: wanted && std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    /// Whether the line is drawn at all (standard error is a terminal, and not `--quiet`).
    pub fn active(&self) -> bool {
        self.enabled
    }

    /// Redraw with the current figures.
    pub fn draw(&mut self, s: &StatsSnapshot) {
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        // Carriage return, erase line: the line is rewritten, never scrolled.
        let _ = write!(
            err,
            "\r\x1b[2Kstrobe: recording {} (Ctrl-C to stop)",
            figures(s)
        );
        let _ = err.flush();
        self.drawn = true;
    }

    /// Erase the line (before other output).
    pub fn clear(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.drawn = false;
        }
    }
}

/// `12.3 s · 1,234 samples · 100.2 Hz · 0 errors · 0 late`.
pub fn figures(s: &StatsSnapshot) -> String {
    format!(
        "{:.1} s · {} samples · {:.1} Hz · {} errors · {} late",
        s.elapsed.as_secs_f64(),
        thousands(s.rounds),
        s.achieved_hz(),
        thousands(s.total_errors()),
        thousands(s.late),
    )
}

/// The end-of-recording summary: the status figures, then what they mean in detail.
pub fn summary(s: &StatsSnapshot, rate_requested: f64, stacks: u64) -> Vec<String> {
    let mut lines = vec![format!(
        "recorded {} ({} stacks; {:.0} Hz requested)",
        figures(s),
        thousands(stacks),
        rate_requested
    )];
    if s.total_errors() > 0 {
        let kinds: Vec<String> = ErrorKind::ALL
            .iter()
            .filter(|&&k| s.errors_of(k) > 0)
            .map(|&k| format!("{} {}", thousands(s.errors_of(k)), k.describe()))
            .collect();
        lines.push(format!(
            "{} sampling rounds failed and are not in the profile: {}",
            thousands(s.total_errors()),
            kinds.join(", ")
        ));
    }
    let precision = imprecision(s);
    if s.late > 0 {
        lines.push(format!(
            "{} samples were late (the sampler fell behind, or a busy machine woke it late); \
             each is weighted by the {} intervals it stands for in total{}",
            thousands(s.late),
            thousands(s.late + s.missed),
            precision.map_or(String::new(), |p| format!(", so {p}"))
        ));
    } else if let Some(p) = precision {
        // Sampling flat out: each sample stands for the time since the previous one.
        lines.push(format!(
            "the samples' weights differ (the time each stands for), so {p}"
        ));
    }
    if s.dropped > 0 {
        lines.push(format!(
            "{} samples were dropped because the aggregator fell behind",
            thousands(s.dropped)
        ));
    }
    lines
}

/// Below this share of the samples recorded, the effective sample size is reported.
const IMPRECISE: f64 = 0.9;

/// When the samples' weights make the profile's shares notably less precise than their number
/// would (Kish's effective sample size under [`IMPRECISE`] of the samples): says so, and what
/// to do about it.
fn imprecision(s: &StatsSnapshot) -> Option<String> {
    ((s.effective_samples as f64) < IMPRECISE * s.samples as f64).then(|| {
        format!(
            "the profile's shares are only as precise as {} equally weighted samples would make \
             them, of the {} thread samples recorded (on a busy machine, a lower --rate keeps \
             samples on time; --value samples counts them unweighted)",
            thousands(s.effective_samples),
            thousands(s.samples)
        )
    })
}

/// Under `--native`: how many samples have their native stack, and why the others do not.
/// `failures` is [`strobe_sampler::SamplerStats::native_failures`].
pub fn native_summary(s: &StatsSnapshot, failures: &[(String, u64)]) -> Vec<String> {
    let all = s.native_merged + s.native_failed;
    if all == 0 {
        return Vec::new();
    }
    let pct = |n: u64| 100.0 * n as f64 / all as f64;
    let mut first = format!(
        "native stacks merged for {} of {} samples ({:.2}%)",
        thousands(s.native_merged),
        thousands(all),
        pct(s.native_merged)
    );
    if s.native_preempted > 0 {
        first.push_str(&format!(
            "; {} of them read from the kernel's record of their preemption or sleep, \
             without a stop",
            thousands(s.native_preempted)
        ));
    }
    if s.native_held > 0 {
        first.push_str(&format!(
            "; {} of them held from an earlier capture (the thread had not run since)",
            thousands(s.native_held)
        ));
    }
    if s.native_records_off_s > 0 {
        first.push_str(&format!(
            "; preempted threads were stopped, not read, for {} of {} s: recording their \
             registers at every preemption would have cost the program more than the stops",
            thousands(s.native_records_off_s),
            thousands(s.native_records_off_s + s.native_records_on_s)
        ));
    }
    let mut lines = vec![first];
    if s.native_failed > 0 {
        let reasons: Vec<String> = failures
            .iter()
            .map(|(why, n)| format!("{why} ({})", thousands(*n)))
            .collect();
        lines.push(format!(
            "native merge failed for {} samples ({:.2}%), recorded with their Python frames \
             only: {}",
            thousands(s.native_failed),
            pct(s.native_failed),
            reasons.join("; ")
        ));
    }
    lines
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    // Digits before the first separator: 1 to 3; then groups of three.
    let (head, rest) = digits.split_at((digits.len() + 2) % 3 + 1);
    let mut out = String::from(head);
    for group in rest.as_bytes().chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).unwrap_or(""));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn the_native_line_counts_samples_read_preempted() {
        let mut s = StatsSnapshot {
            native_merged: 1500,
            native_failed: 500,
            ..Default::default()
        };
        let failures = [("why".to_string(), 500)];
        assert_eq!(
            native_summary(&s, &failures)[0],
            "native stacks merged for 1,500 of 2,000 samples (75.00%)"
        );
        s.native_preempted = 1200;
        assert_eq!(
            native_summary(&s, &failures)[0],
            "native stacks merged for 1,500 of 2,000 samples (75.00%); 1,200 of them read \
             from the kernel's record of their preemption or sleep, without a stop"
        );
        s.native_preempted = 0;
        s.native_held = 300;
        assert_eq!(
            native_summary(&s, &failures)[0],
            "native stacks merged for 1,500 of 2,000 samples (75.00%); 300 of them held from an \
             earlier capture (the thread had not run since)"
        );
        s.native_held = 0;
        s.native_records_on_s = 2;
        assert_eq!(
            native_summary(&s, &failures)[0],
            "native stacks merged for 1,500 of 2,000 samples (75.00%)"
        );
        s.native_records_off_s = 8;
        assert_eq!(
            native_summary(&s, &failures)[0],
            "native stacks merged for 1,500 of 2,000 samples (75.00%); preempted threads were \
             stopped, not read, for 8 of 10 s: recording their registers at every preemption \
             would have cost the program more than the stops"
        );
    }

    #[test]
    fn summary_names_every_kind_of_loss() {
        let s = StatsSnapshot {
            elapsed: Duration::from_secs(10),
            rounds: 990,
            errors: [4, 6, 0, 0],
            late: 3,
            missed: 5,
            dropped: 2,
            ..Default::default()
        };
        let lines = summary(&s, 100.0, 1980);
        assert_eq!(
            lines[0],
            "recorded 10.0 s · 990 samples · 100.0 Hz · 10 errors · 3 late (1,980 stacks; 100 Hz requested)"
        );
        assert!(lines[1].contains("4 memory read failed"), "{lines:?}");
        assert!(lines[1].contains("6 target changed"), "{lines:?}");
        assert!(lines[2].contains("3 samples were late"), "{lines:?}");
        assert!(lines[2].contains("8 intervals"), "{lines:?}");
        assert!(lines[3].contains("2 samples were dropped"), "{lines:?}");
    }

    #[test]
    fn the_effective_sample_size_is_reported_when_notably_below_the_count() {
        let mut s = StatsSnapshot {
            elapsed: Duration::from_secs(10),
            rounds: 1000,
            samples: 3000,
            effective_samples: 2701,
            late: 3,
            missed: 5,
            ..Default::default()
        };
        // 90% and above: the late line as before, nothing about precision.
        let lines = summary(&s, 100.0, 3000);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[1].ends_with("8 intervals it stands for in total"),
            "{lines:?}"
        );
        // Below 90%: on the same line, with what to do.
        s.effective_samples = 445;
        let lines = summary(&s, 100.0, 3000);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            lines[1],
            "3 samples were late (the sampler fell behind, or a busy machine woke it late); each \
             is weighted by the 8 intervals it stands for in total, so the profile's shares are \
             only as precise as 445 equally weighted samples would make them, of the 3,000 \
             thread samples recorded (on a busy machine, a lower --rate keeps samples on time; \
             --value samples counts them unweighted)"
        );
        // Unequal weights without late samples (sampling flat out): a line of its own.
        s.late = 0;
        s.missed = 0;
        let lines = summary(&s, 1e6, 3000);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[1].starts_with(
                "the samples' weights differ (the time each stands for), so \
                 the profile's shares are only as precise as 445 "
            ),
            "{lines:?}"
        );
        // No samples: nothing to say.
        let empty = StatsSnapshot::default();
        assert_eq!(summary(&empty, 100.0, 0).len(), 1);
    }
}
