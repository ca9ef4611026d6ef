//! Unit tests of the parent module: what a frame shows, drawn into an in-memory terminal.

use super::*;
use crate::data::{CallTree, FrameSel, ThreadRow, TreeLine, ViewData};
use crate::state::{Action, LiveStatus, TargetInfo};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::time::Duration;
use strobe_aggregate::SampleFilter;

fn c(ms: u64) -> Count {
    Count {
        samples: ms / 10,
        weight_ns: ms * 1_000_000,
    }
}

fn key(f: &str, line: Option<i32>) -> FrameSel {
    FrameSel::python(f, "/srv/app/work.py", line)
}

fn state() -> State {
    let mut s = State::new(
        TargetInfo {
            process: "pid 4242: python work.py".into(),
            python: "3.12.1".into(),
            rate_hz: 100.0,
        },
        true,
        SampleFilter::default(),
        Duration::from_secs(1),
    );
    let row = |f: &str, io, it, co, ct| Row {
        key: key(f, None),
        interval_own: c(io),
        interval_total: c(it),
        cumulative_own: c(co),
        cumulative_total: c(ct),
    };
    s.set_data(ViewData {
        rows: vec![
            row("<module>", 0, 1000, 0, 12_000),
            row("heavy", 750, 750, 9_000, 9_000),
            row("light", 250, 250, 3_000, 3_000),
        ],
        interval_total: c(1000),
        cumulative_total: c(12_000),
        interval_wall: Duration::from_secs(1),
        cumulative_wall: Duration::from_secs(12),
        rate_hz: 99.6,
        samples_received: 1200,
        threads: vec![ThreadRow {
            os_tid: 4242,
            name: Some("MainThread".into()),
            samples: 1200,
            idle_samples: 0,
        }],
        active_threads: 1,
        gil_share: Some(1.0),
        idle_share: Some(0.0),
        gc_share: None,
        exception_share: None,
        ..Default::default()
    });
    s
}

fn draw(s: &State, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    let mut scratch = Scratch::default();
    t.draw(|f| render(f, s, &mut scratch)).unwrap();
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[test]
fn table_at_80x24() {
    let screen = draw(&state(), 80, 24);
    let expected = "\
strobe top  pid 4242: python work.py  Python 3.12.1
rate 100/100Hz  samples 1200  errors 0  threads 1/1  GIL 100%  idle 0%
functions · all threads · idle hidden · refresh 1s · sort %Own▼
% over the last 1s, times over the last 00:12 (r resets)
  %Own▼  %Total  OwnTime  TotalTime Function (file)
  75.00   75.00    9.00s      9.00s heavy (work.py)
  25.00   25.00    3.00s      3.00s light (work.py)
   0.00  100.00    0.00s     12.00s <module> (work.py)
";
    assert!(screen.starts_with(expected), "got:\n{screen}");
    assert!(
        screen.trim_end().ends_with(
            "q quit ? help 1-4 sort / filter t thread l lines i idle p pause r reset +- rate"
        ),
        "{screen}"
    );
    assert_eq!(screen.lines().count(), 24);
    assert!(screen.lines().all(|l| l.chars().count() <= 80));
}

/// A table of `n` functions `f0000`, `f0001`, ... in that order (by %Own).
fn long_state(n: u64) -> State {
    let mut s = state();
    let mut d = s.data.clone();
    d.rows = (0..n)
        .map(|i| Row {
            key: key(&format!("f{i:04}"), None),
            interval_own: c(10 * (n - i)),
            interval_total: c(10 * (n - i)),
            cumulative_own: c(10),
            cumulative_total: c(10),
        })
        .collect();
    s.set_data(d);
    s
}

/// The functions the table shows, top to bottom, and the one highlighted, drawn at 80×24
/// with `scratch` kept from the previous draw.
fn table_rows(s: &State, scratch: &mut Scratch) -> (Vec<String>, Option<String>) {
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| render(f, s, scratch)).unwrap();
    let buf = t.backend().buffer().clone();
    let mut names = Vec::new();
    let mut highlighted = None;
    // Four header lines and the table's own, then the rows, then the footer.
    for y in 5..23 {
        let line: String = (0..80).map(|x| buf[(x, y)].symbol()).collect();
        let Some(name) = line.split_whitespace().find(|w| w.starts_with('f')) else {
            continue;
        };
        if buf[(0, y)].modifier.contains(Modifier::REVERSED) {
            highlighted = Some(name.to_string());
        }
        names.push(name.to_string());
    }
    (names, highlighted)
}

fn names(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("f{i:04}")).collect()
}

#[test]
fn a_long_table_scrolls_as_little_as_the_cursor_needs() {
    let mut s = long_state(1000);
    let mut scratch = Scratch::default();
    // The rows shown (18 fit at 80×24) and the one highlighted.
    let mut check = |s: &State, shown: std::ops::RangeInclusive<u32>, cursor: u32| {
        let expected = (names(shown), Some(format!("f{cursor:04}")));
        assert_eq!(table_rows(s, &mut scratch), expected);
    };
    check(&s, 0..=17, 0);
    s.apply(Action::Move(500));
    check(&s, 483..=500, 500);
    // Up within the page: the page stays.
    s.apply(Action::Move(-10));
    check(&s, 483..=500, 490);
    // Up past its top: the page follows by as much.
    s.apply(Action::Move(-10));
    check(&s, 480..=497, 480);
    s.apply(Action::End);
    check(&s, 982..=999, 999);
    // Fewer rows than before (a filter, a refresh): the page is refilled from below.
    let mut shorter = long_state(990);
    shorter.apply(Action::End);
    shorter.apply(Action::Move(-15));
    check(&shorter, 972..=989, 974);
    s.apply(Action::Home);
    check(&s, 0..=17, 0);
}

#[test]
fn the_header_shows_the_gc_share_once_the_collector_ran() {
    let mut s = state();
    let mut d = s.data.clone();
    d.gc_share = Some(0.3);
    s.set_data(d);
    let screen = draw(&s, 80, 24);
    assert!(
        screen
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("GIL 100%  idle 0%  GC 30%"),
        "{screen}"
    );
}

#[test]
fn wide_terminals_show_both_periods() {
    let screen = draw(&state(), 140, 24);
    let header = screen.lines().nth(4).unwrap();
    for col in [
        "%Own",
        "%Total",
        "Own",
        "Total",
        "%OwnAll",
        "%TotAll",
        "OwnTime",
        "TotalTime",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let heavy = screen.lines().find(|l| l.contains("heavy")).unwrap();
    // interval 75%, 0.75s; cumulative 75%, 9s.
    assert!(
        heavy.contains("0.75s") && heavy.contains("9.00s"),
        "{heavy}"
    );
}

#[test]
fn exit_message_pause_filter_and_empty_states() {
    let mut s = state();
    s.status = LiveStatus {
        errors: 3,
        achieved_hz: Some(97.2),
        ended: Some("process 4242 exited".into()),
    };
    s.apply(Action::TogglePause);
    let screen = draw(&s, 80, 24);
    assert!(screen.contains("PAUSED"), "{screen}");
    assert!(
        screen.contains("rate 97/100Hz  samples 1200  errors 3"),
        "{screen}"
    );
    assert!(screen.contains("process 4242 exited; showing the last data, press q to quit"));
    assert!(screen.contains("heavy"), "the last data stays");

    s.apply(Action::FilterStart);
    s.apply(Action::FilterChar('z'));
    let screen = draw(&s, 80, 24);
    assert!(
        screen.contains("no function or file matches \"z\""),
        "{screen}"
    );
    assert!(screen.contains(" filter: z_"), "{screen}");

    let empty = State::new(
        TargetInfo::default(),
        true,
        SampleFilter::default(),
        Duration::from_secs(1),
    );
    assert!(draw(&empty, 80, 24).contains("waiting for samples..."));
}

#[test]
fn help_threads_and_tree_overlays() {
    let mut s = state();
    s.apply(Action::Help);
    let screen = draw(&s, 80, 24);
    assert!(screen.contains("keys (Esc closes)"), "{screen}");
    assert!(screen.contains("reset the counters"), "{screen}");
    s.apply(Action::Back);
    s.apply(Action::ThreadsOpen);
    let screen = draw(&s, 80, 24);
    assert!(screen.contains("all threads"), "{screen}");
    assert!(screen.contains("4242     MainThread"), "{screen}");
    s.apply(Action::Back);

    s.apply(Action::TreeOpen);
    let mut d = s.data.clone();
    let label = key("heavy", None).label();
    d.tree = Some(CallTree {
        focus: Some(key("heavy", None)),
        total: c(9_000),
        grand_total: c(12_000),
        unkept: Count::default(),
        callers: vec![
            TreeLine {
                depth: 0,
                label: label.clone(),
                count: c(9_000),
            },
            TreeLine {
                depth: 1,
                label: "<module> (work.py)".into(),
                count: c(9_000),
            },
        ],
        callees: vec![TreeLine {
            depth: 0,
            label,
            count: c(9_000),
        }],
    });
    s.set_data(d);
    let screen = draw(&s, 80, 24);
    assert!(
        screen.contains("Call paths of heavy (work.py): 75.0% of the samples"),
        "{screen}"
    );
    assert!(
        screen.contains("100.0%    └ <module> (work.py)"),
        "{screen}"
    );
    // Stacks let go: said once at the top, and one line of their own.
    let mut d = s.data.clone();
    if let Some(t) = &mut d.tree {
        t.unkept = c(900);
        let line = |depth, label: &str| TreeLine {
            depth,
            label: label.into(),
            count: c(900),
        };
        t.callers.insert(1, line(1, UNKEPT_LABEL));
    }
    s.set_data(d);
    let screen = draw(&s, 160, 24);
    assert!(
        screen.contains("10.0% of its samples are on rarer stacks"),
        "{screen}"
    );
    assert!(
        screen.contains("10.0%    └ (rarer paths, stacks not kept)"),
        "{screen}"
    );
}

#[test]
fn tiny_terminals_do_not_panic() {
    let mut s = state();
    for (w, h) in [(1, 1), (20, 5), (79, 23), (300, 100)] {
        draw(&s, w, h);
        s.apply(Action::Help);
        draw(&s, w, h);
        s.apply(Action::Back);
        s.apply(Action::ThreadsOpen);
        draw(&s, w, h);
        s.apply(Action::Back);
    }
}

#[test]
fn durations() {
    assert_eq!(duration(450_000_000), "0.45s");
    assert_eq!(duration(725_000_000_000), "12m05s");
    assert_eq!(duration(11_220_000_000_000), "3h07m");
    assert_eq!(secs(0.25), "0.25s");
    assert_eq!(secs(2.0), "2s");
    assert_eq!(clock(3725), "1:02:05");
}
