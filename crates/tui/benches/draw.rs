//! What one redraw of `strobe top`'s table costs, by the number of rows the data has.
//!
//! `cargo bench -p strobe-tui --bench draw` renders the view of a program with 16, 500 and
//! 5,000 functions (or lines) into an in-memory 200×50 terminal, the size `top`'s CPU
//! figures in docs/PERFORMANCE.md were measured at, and prints the CPU time per draw: ratatui's
//! render of the frame and its diff against the previous one, as at every refresh (every
//! number changes between two refreshes, so each draw is given new counts).

#![allow(clippy::expect_used)]

use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use strobe_aggregate::{Count, SampleFilter};
use strobe_tui::data::{FrameSel, Row, ViewData};
use strobe_tui::state::{State, TargetInfo};
use strobe_tui::view::{render, Scratch};

fn data(rows: usize, round: u64) -> ViewData {
    let count = |ms: u64| Count {
        samples: ms / 10,
        weight_ns: ms * 1_000_000,
    };
    ViewData {
        rows: (0..rows as u64)
            .map(|i| Row {
                key: FrameSel::python(
                    &format!("package.module{}.Class.method_{i}", i % 37),
                    &format!("/srv/app/pkg/module_{}.py", i % 40),
                    None,
                ),
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

fn main() {
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
        let datas: Vec<ViewData> = (0..rounds).map(|r| data(rows, r)).collect();
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
        println!(
            "{rows:>5} rows: {:>7.1} µs of CPU per draw (200×50), {:>7.1} µs to take the data",
            spent.as_secs_f64() * 1e6 / rounds as f64,
            taking.as_secs_f64() * 1e6 / rounds as f64
        );
    }
}
