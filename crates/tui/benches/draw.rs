//! What one refresh of `strobe top` costs, by the number of rows the data has: the aggregator
//! thread's view of its counts, the view taking the new data, and the redraw of the table.
//!
//! `cargo bench -p strobe-tui --bench draw` prints the thread CPU time of:
//! - the aggregator's view (`Collector::advance` and `Collector::view`) of 16, 500 and 5,000
//!   functions, every function sampled every refresh, and of 500 and 5,000 with 100 samples a
//!   refresh (`top`'s defaults: 100 Hz, a refresh a second);
//! - the view taking new data (`State::set_data`: filter, the cursor's row found again) and
//!   drawing it into an in-memory 200×50 terminal, the size `top`'s CPU figures in
//!   docs/PERFORMANCE.md were measured at: ratatui's render of the frame (with the rows shown
//!   put in order) and its diff against the previous one. Every number changes between two
//!   refreshes, so each draw is given new counts; the names are made once and shared, as the
//!   collector does.

#![allow(clippy::expect_used)]

use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::time::Instant;

use strobe_aggregate::{pipeline, Count, FrameKey, SampleFilter, SampleFlags, ThreadKey};
use strobe_tui::data::{Collector, FrameSel, Query, Row, ViewData};
use strobe_tui::state::{State, TargetInfo};
use strobe_tui::view::{render, Scratch};

/// The keys of `rows` functions, made once: the collector copies each name once for the run and
/// every view shares it.
fn keys(rows: usize) -> Vec<FrameSel> {
    (0..rows)
        .map(|i| {
            FrameSel::python(
                &format!("package.module{}.Class.method_{i}", i % 37),
                &format!("/srv/app/pkg/module_{}.py", i % 40),
                None,
            )
        })
        .collect()
}

fn data(keys: &[FrameSel], round: u64) -> ViewData {
    let count = |ms: u64| Count {
        samples: ms / 10,
        weight_ns: ms * 1_000_000,
    };
    ViewData {
        rows: (keys.iter().zip(0u64..))
            .map(|(key, i)| Row {
                key: key.clone(),
                interval_own: count(1 + (i * 7 + round) % 97),
                interval_total: count(100 + (i * 13 + round) % 901),
                cumulative_own: count(1000 + i + round * 10),
                cumulative_total: count(5000 + i * 3 + round * 20),
            })
            .collect(),
        interval_total: count(10_000),
        cumulative_total: count(10_000 * (round + 1)),
        interval_wall: Duration::from_secs(1),
        cumulative_wall: Duration::from_secs(round + 1),
        rate_hz: 100.0,
        samples_received: 100 * (round + 1),
        ..Default::default()
    }
}

/// This thread's CPU time: what a draw costs, whatever else runs on the machine.
fn cpu_now() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .expect("thread CPU clock")
}

/// The aggregator's side of a refresh: a collector that counted samples through `rows`
/// functions (two-frame stacks, each function under one of 40 callers), asked for the view
/// of the last interval and since the start, as `top` asks once a refresh. `per_round`
/// samples a refresh, through the functions in turn (`None`: every function, at least 1,000,
/// every round); with fewer samples than functions, a first round (not timed) goes through
/// them all.
fn collector_view(rows: usize, per_round: Option<usize>) -> Duration {
    let names: Vec<String> = (0..rows).map(|i| format!("method_{i}")).collect();
    let callers: Vec<String> = (0..40).map(|i| format!("handler_{i}")).collect();
    let (mut side, agg) = pipeline(1 << 16);
    let mut collector = Collector::new(agg);
    let thread = ThreadKey {
        os_tid: 10,
        name: Some("MainThread"),
        interpreter_id: 0,
    };
    let query = Query {
        by_function: true,
        ..Default::default()
    };
    let mut record = |f: usize, i: usize| {
        let frames = [
            FrameKey::python(&callers[f % 40], "/srv/app/handlers.py", Some(1)),
            FrameKey::python(&names[f], "/srv/app/pkg/module.py", Some(f as i32)),
        ];
        side.record(&thread, &frames, SampleFlags::empty(), i as u64, 10_000_000)
            .expect("record");
    };
    let first_round = per_round.is_some();
    let per_round = per_round.unwrap_or(rows.max(1000));
    let rounds = 50;
    let mut spent = Duration::ZERO;
    let mut next = 0;
    for round in 0..rounds + usize::from(first_round) {
        let n = if first_round && round == 0 {
            rows
        } else {
            per_round
        };
        for i in 0..n {
            record(next % rows, i);
            next += 1;
        }
        collector.pump();
        let start = cpu_now();
        collector.advance(Instant::now());
        let view = collector.view(&query, Instant::now());
        let took = cpu_now().saturating_sub(start);
        if !(first_round && round == 0) {
            spent += took;
        }
        assert!(view.rows.len() >= rows.min(1000) || round == 0);
    }
    spent / rounds as u32
}

fn main() {
    for rows in [16, 500, 5000] {
        println!(
            "{rows:>5} rows: {:>7.1} µs of CPU for the aggregator's view",
            collector_view(rows, None).as_secs_f64() * 1e6
        );
    }
    // `top`'s defaults, 100 Hz and a refresh a second: 100 samples a refresh.
    for rows in [500, 5000] {
        println!(
            "{rows:>5} rows, 100 samples a refresh: {:>7.1} µs of CPU for the aggregator's view",
            collector_view(rows, Some(100)).as_secs_f64() * 1e6
        );
    }
    for rows in [16, 500, 5000] {
        let mut state = State::new(
            TargetInfo {
                process: "pid 4242: python app.py".into(),
                python: "3.12.1".into(),
                rate_hz: 100.0,
            },
            true,
            SampleFilter::default(),
            Duration::from_secs(1),
        );
        let mut terminal = Terminal::new(TestBackend::new(200, 50)).expect("test backend");
        let mut scratch = Scratch::default();
        let rounds = 200;
        let keys = keys(rows);
        let datas: Vec<ViewData> = (0..rounds).map(|r| data(&keys, r)).collect();
        let mut spent = Duration::ZERO;
        let mut taking = Duration::ZERO;
        for d in datas {
            let start = cpu_now();
            state.set_data(d);
            taking += cpu_now().saturating_sub(start);
            let start = cpu_now();
            terminal
                .draw(|f| render(f, &state, &mut scratch))
                .expect("draw");
            spent += cpu_now().saturating_sub(start);
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / rounds as f64;
        println!(
            "{rows:>5} rows: {:>7.1} µs of CPU per draw (200×50), {:>7.1} µs to take the data, \
             {:>7.1} µs both",
            per(spent),
            per(taking),
            per(spent + taking)
        );
    }
}
