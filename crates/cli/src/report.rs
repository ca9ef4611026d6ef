//! The table that ends `strobe record` on a terminal: the functions with the most own time and
//! the most total time, so the answer is on screen before anyone opens the file.

use strobe_aggregate::{Breakdown, BreakdownOptions, FrameKind, FrameStat, SampleFilter, Tables};

/// Rows per table.
const ROWS: usize = 10;

/// What the tables count: by function, the samples `filter` keeps, `<GC>` left out with
/// `hide_gc`, `<raise T>` left out unless only exception samples are kept.
pub(crate) fn summary_options(filter: SampleFilter, hide_gc: bool) -> BreakdownOptions {
    BreakdownOptions {
        by_function: true,
        os_tid: None,
        filter,
        hide_gc,
        hide_exceptions: !filter.exception_only,
    }
}

/// The two tables as lines (without the `strobe: ` prefix), from a breakdown by
/// [`summary_options`]. Percentages are of the wall time those samples stand for. Empty when nothing
/// was recorded.
pub(crate) fn top_functions(b: &Breakdown, tables: &Tables) -> Vec<String> {
    let total = b.cumulative_total;
    if total.weight_ns == 0 {
        return Vec::new();
    }
    let pct = |w: u64| 100.0 * w as f64 / total.weight_ns as f64;
    let mut by_own: Vec<&FrameStat> = b
        .cumulative
        .iter()
        .filter(|s| s.own.weight_ns > 0)
        .collect();
    by_own.sort_by(|a, b| {
        b.own
            .weight_ns
            .cmp(&a.own.weight_ns)
            .then(b.total.weight_ns.cmp(&a.total.weight_ns))
    });
    // `cumulative` is sorted by total weight already.
    let by_total: Vec<&FrameStat> = b.cumulative.iter().collect();
    let mut lines = Vec::new();
    for (title, rows) in [
        ("most own time (the function itself was running)", by_own),
        ("most total time (the function or what it called)", by_total),
    ] {
        lines.push(format!(
            "{title}, of {} samples:",
            crate::status::thousands(total.samples)
        ));
        lines.push(format!("  {:>6}  {:>6}  function", "%own", "%total"));
        for s in rows.into_iter().take(ROWS) {
            lines.push(format!(
                "  {:>6.1}  {:>6.1}  {}",
                pct(s.own.weight_ns),
                pct(s.total.weight_ns),
                label(tables, s)
            ));
        }
    }
    lines
}

/// `function (file)`, the file without its directories; native functions with their shared
/// object, `[syscall]` alone.
fn label(t: &Tables, s: &FrameStat) -> String {
    let short = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    let function = t.str(s.function);
    match s.kind {
        FrameKind::Python => format!("{function} ({})", short(t.str(s.filename))),
        FrameKind::Native => match s.module {
            Some(m) => format!("{function} ({})", short(t.str(m))),
            None => function.to_string(),
        },
        FrameKind::Kernel | FrameKind::Interpreter | FrameKind::Exception | FrameKind::Task => {
            function.to_string()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use strobe_aggregate::{Aggregator, FrameKey, FunctionTotals, Sample, SampleFlags, ThreadKey};

    #[test]
    fn own_and_total_tables_in_percent_of_wall_time() {
        let mut a = Aggregator::new();
        // The same samples counted as a streamed recording counts them, one by one.
        let opts = summary_options(SampleFilter::default(), false);
        let mut streamed = FunctionTotals::new(opts);
        let mut samples: Vec<Sample> = Vec::new();
        let t = ThreadKey {
            os_tid: 1,
            name: None,
            interpreter_id: 0,
        };
        let f = |name, line| FrameKey::python(name, "/srv/app/main.py", Some(line));
        for i in 0..3 {
            samples.push(
                a.record(
                    &t,
                    &[f("main", 1), f("heavy", 10 + i)],
                    SampleFlags::HOLDS_GIL,
                    i as u64,
                    10,
                )
                .unwrap(),
            );
        }
        samples.push(
            a.record(
                &t,
                &[f("main", 2), f("light", 20)],
                SampleFlags::HOLDS_GIL,
                9,
                10,
            )
            .unwrap(),
        );
        // Idle samples are left out with the default filter.
        samples.push(
            a.record(
                &t,
                &[f("main", 3), f("wait", 30)],
                SampleFlags::IDLE,
                10,
                10,
            )
            .unwrap(),
        );
        let tables = a.tables().clone();
        for s in &samples {
            streamed.add(&tables, s);
        }
        let lines = top_functions(&a.counts_mut().breakdown(&tables, &opts), &tables);
        assert_eq!(top_functions(&streamed.breakdown(), &tables), lines);
        assert_eq!(
            lines,
            [
                "most own time (the function itself was running), of 4 samples:",
                "    %own  %total  function",
                "    75.0    75.0  heavy (main.py)",
                "    25.0    25.0  light (main.py)",
                "most total time (the function or what it called), of 4 samples:",
                "    %own  %total  function",
                "     0.0   100.0  main (main.py)",
                "    75.0    75.0  heavy (main.py)",
                "    25.0    25.0  light (main.py)",
            ]
        );
    }
}
