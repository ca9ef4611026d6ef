//! Drawing: reads the [`State`], never changes it. Laid out for 80×24 first; a terminal of
//! 120 columns or more also gets the interval's times and the cumulative percentages.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row as TableRow, Table, TableState,
};
use ratatui::Frame;
use strobe_aggregate::Count;

use crate::data::tree::UNKEPT_LABEL;
use crate::data::Row;
use crate::input::HELP;
use crate::state::{percent, Mode, SortKey, State};

/// From this width on, the table shows all eight numbers.
pub const WIDE: u16 = 120;

/// What the view keeps between frames that is not the user's state: the table's scroll
/// position (so moving the cursor up does not jump the page).
#[derive(Debug, Default)]
pub struct Scratch {
    /// The first row shown (an index into the filtered rows).
    first: usize,
}

/// The first row to show of `len` in `height` lines, the cursor at `cursor` and the first row
/// shown before at `first`: the window moves as little as it must to show the cursor, and never
/// leaves lines empty at the bottom that rows could fill.
fn window(first: usize, cursor: usize, height: usize, len: usize) -> usize {
    let first = first.min(len.saturating_sub(height));
    if cursor < first {
        cursor
    } else if height > 0 && cursor >= first + height {
        cursor + 1 - height
    } else {
        first
    }
}

/// Draws one frame.
pub fn render(f: &mut Frame<'_>, s: &State, scratch: &mut Scratch) {
    let [header, table, footer] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    render_header(f, header, s);
    match &s.mode {
        Mode::Tree(offset) => render_tree(f, table, s, *offset),
        _ => render_table(f, table, s, scratch),
    }
    render_footer(f, footer, s);
    match &s.mode {
        Mode::Help => render_help(f, table),
        Mode::Threads(i) => render_threads(f, table, s, *i),
        _ => {}
    }
}

fn render_header(f: &mut Frame<'_>, area: Rect, s: &State) {
    let d = &s.data;
    let mut title = vec![
        Span::styled("strobe top", Style::new().bold()),
        Span::raw("  "),
        Span::raw(s.info.process.clone()),
        Span::raw("  Python "),
        Span::raw(s.info.python.clone()),
    ];
    if s.paused {
        title.push(Span::styled("  PAUSED", Style::new().reversed().bold()));
    }
    let share = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.0}%", v * 100.0));
    let mut stats = format!(
        "rate {:.0}/{:.0}Hz  samples {}  errors {}  threads {}/{}  GIL {}  idle {}",
        s.status.achieved_hz.unwrap_or(d.rate_hz),
        s.info.rate_hz,
        d.samples_received,
        s.status.errors,
        d.active_threads,
        d.threads.len(),
        share(d.gil_share),
        share(d.idle_share),
    );
    // The collector's share, once it has been seen (GC frames can be left out with --no-gc).
    if let Some(gc) = d.gc_share.filter(|&g| g > 0.0) {
        stats.push_str(&format!("  GC {}", share(Some(gc))));
    }
    // Threads raising or handling an exception, once one has been seen.
    if let Some(e) = d.exception_share.filter(|&e| e > 0.0) {
        stats.push_str(&format!("  exc {}", share(Some(e))));
    }
    if d.dropped > 0 {
        stats.push_str(&format!("  dropped {}", d.dropped));
    }
    let sort = format!("{}{}", s.sort.label(), if s.descending { "▼" } else { "▲" });
    let mut settings = format!(
        "{} · {} · idle {} · {}{}refresh {} · sort {}",
        if s.by_function { "functions" } else { "lines" },
        s.thread_label(),
        if s.include_idle { "shown" } else { "hidden" },
        if s.gil_only { "GIL only · " } else { "" },
        match (s.exception_only, s.async_stacks) {
            (true, true) => "exceptions only · tasks · ",
            (true, false) => "exceptions only · ",
            (false, true) => "tasks · ",
            (false, false) => "",
        },
        secs(s.refresh.as_secs_f64()),
        sort,
    );
    if !s.filter.is_empty() && s.mode != Mode::Filter {
        settings.push_str(&format!(" · filter \"{}\"", s.filter));
    }
    let message = if let Some(ended) = &s.status.ended {
        Line::from(Span::styled(
            format!("{ended}; showing the last data, press q to quit"),
            Style::new().reversed().bold(),
        ))
    } else if let Some(e) = &d.error {
        Line::from(Span::styled(e.clone(), Style::new().bold()))
    } else {
        Line::from(Span::styled(
            format!(
                "% over the last {}, times over the last {} (r resets)",
                secs(d.interval_wall.as_secs_f64()),
                clock(d.cumulative_wall.as_secs())
            ),
            Style::new().dim(),
        ))
    };
    let text = Text::from(vec![
        Line::from(title),
        Line::from(stats),
        Line::from(Span::styled(settings, Style::new().dim())),
        message,
    ]);
    f.render_widget(Paragraph::new(text), area);
}

fn render_table(f: &mut Frame<'_>, area: Rect, s: &State, scratch: &mut Scratch) {
    let d = &s.data;
    if s.visible_len() == 0 {
        let msg = if d.rows.is_empty() {
            "waiting for samples...".to_string()
        } else {
            format!("no function or file matches \"{}\"", s.filter)
        };
        f.render_widget(Paragraph::new(msg), area);
        return;
    }
    let wide = area.width >= WIDE;
    let arrow = |k: SortKey| {
        if s.sort != k {
            ""
        } else if s.descending {
            "▼"
        } else {
            "▲"
        }
    };
    use SortKey::*;
    let mut titles: Vec<(String, usize)> = vec![
        (format!("%Own{}", arrow(OwnInterval)), 7),
        (format!("%Total{}", arrow(TotalInterval)), 7),
    ];
    if wide {
        titles.extend([
            ("Own".to_string(), 8),
            ("Total".to_string(), 8),
            ("%OwnAll".to_string(), 7),
            ("%TotAll".to_string(), 7),
        ]);
    }
    titles.push((format!("OwnTime{}", arrow(OwnCumulative)), 8));
    titles.push((format!("TotalTime{}", arrow(TotalCumulative)), 10));
    let mut widths: Vec<Constraint> = titles
        .iter()
        .map(|(_, w)| Constraint::Length(*w as u16))
        .collect();
    widths.push(Constraint::Min(10));
    let mut header: Vec<String> = titles.iter().map(|(t, w)| format!("{t:>w$}")).collect();
    header.push(format!("Function (file){}", arrow(Name)));
    let header =
        TableRow::new(header.into_iter().map(Cell::from)).style(Style::new().reversed().bold());
    // Only the rows that fit are built (a program has thousands of functions, each row nine
    // formatted strings): the window is kept here, and the table is given just those rows.
    let height = usize::from(area.height.saturating_sub(1));
    scratch.first = window(scratch.first, s.cursor, height, s.visible_len());
    let rows =
        (s.visible().skip(scratch.first).take(height)).map(|r| table_row(r, s, wide, &titles));
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut shown = TableState::default().with_selected(s.cursor.checked_sub(scratch.first));
    f.render_stateful_widget(table, area, &mut shown);
}

fn table_row<'a>(r: &'a Row, s: &State, wide: bool, titles: &[(String, usize)]) -> TableRow<'a> {
    let d = &s.data;
    let pct = |c: Count, whole: Count| format!("{:.2}", percent(c, whole));
    let mut values = vec![
        pct(r.interval_own, d.interval_total),
        pct(r.interval_total, d.interval_total),
    ];
    if wide {
        values.push(duration(r.interval_own.weight_ns));
        values.push(duration(r.interval_total.weight_ns));
        values.push(pct(r.cumulative_own, d.cumulative_total));
        values.push(pct(r.cumulative_total, d.cumulative_total));
    }
    values.push(duration(r.cumulative_own.weight_ns));
    values.push(duration(r.cumulative_total.weight_ns));
    let mut cells: Vec<String> = values
        .into_iter()
        .zip(titles)
        .map(|(v, (_, w))| format!("{v:>w$}"))
        .collect();
    cells.push(r.key.label());
    TableRow::new(cells.into_iter().map(Cell::from))
}

fn render_tree(f: &mut Frame<'_>, area: Rect, s: &State, offset: usize) {
    let Some(tree) = &s.data.tree else {
        f.render_widget(Paragraph::new("computing call paths..."), area);
        return;
    };
    let name = tree.focus.as_ref().map(|k| k.label()).unwrap_or_default();
    let mut lines: Vec<Line<'_>> = vec![Line::from(Span::styled(
        format!(
            "Call paths of {name}: {:.1}% of the samples since {}",
            percent(tree.total, tree.grand_total),
            clock(s.data.cumulative_wall.as_secs())
        ),
        Style::new().bold(),
    ))];
    if !tree.unkept.is_zero() {
        lines.push(Line::from(Span::styled(
            format!(
                "{:.1}% of its samples are on rarer stacks not kept in memory: the line {} \
                 holds them, under the heaviest paths",
                percent(tree.unkept, tree.total),
                UNKEPT_LABEL
            ),
            Style::new().dim(),
        )));
    }
    if tree.callers.is_empty() {
        lines.push(Line::from("no samples of it under the current filters"));
    } else {
        let section = |title: &str, items: &[crate::data::TreeLine], lines: &mut Vec<Line<'_>>| {
            lines.push(Line::from(Span::styled(
                title.to_string(),
                Style::new().reversed(),
            )));
            for l in items {
                let indent = "  ".repeat(l.depth.min(40));
                lines.push(Line::from(format!(
                    "{:>6.1}%  {indent}{}{}",
                    percent(l.count, tree.total),
                    if l.depth == 0 { "" } else { "└ " },
                    l.label
                )));
            }
        };
        section(
            "called from (outermost callers further right)",
            &tree.callers,
            &mut lines,
        );
        section("calls (callees further right)", &tree.callees, &mut lines);
    }
    let max_offset = lines.len().saturating_sub(usize::from(area.height));
    let offset = offset.min(max_offset);
    let visible: Vec<Line<'_>> = lines.into_iter().skip(offset).collect();
    f.render_widget(Paragraph::new(visible), area);
}

fn render_footer(f: &mut Frame<'_>, area: Rect, s: &State) {
    let line = match &s.mode {
        Mode::Filter => Line::from(vec![
            Span::styled(" filter: ", Style::new().reversed()),
            Span::raw(s.filter.clone()),
            Span::styled("_", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            Span::styled("  Enter keep · Esc clear", Style::new().dim()),
        ]),
        Mode::Tree(_) => Line::from(Span::styled(
            " Esc back · ↑↓ scroll · l lines · i idle · t thread · q quit",
            Style::new().reversed(),
        )),
        Mode::Threads(_) => Line::from(Span::styled(
            " ↑↓ choose · Enter take · Esc cancel",
            Style::new().reversed(),
        )),
        _ => Line::from(Span::styled(
            " q quit ? help 1-4 sort / filter t thread l lines i idle p pause r reset +- rate",
            Style::new().reversed(),
        )),
    };
    f.render_widget(Paragraph::new(line), area);
}

/// A centred rectangle of at most `w`×`h` inside `area`.
fn centred(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn render_help(f: &mut Frame<'_>, area: Rect) {
    let lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>10}  "), Style::new().bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    let rect = centred(area, 78, HELP.len() as u16 + 2);
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys (Esc closes) "),
        ),
        rect,
    );
}

fn render_threads(f: &mut Frame<'_>, area: Rect, s: &State, cursor: usize) {
    let choices = s.thread_choices();
    let items: Vec<String> = choices
        .iter()
        .map(|c| match c {
            None => "all threads".to_string(),
            Some(t) => {
                let idle = if t.samples == 0 {
                    0.0
                } else {
                    t.idle_samples as f64 * 100.0 / t.samples as f64
                };
                format!(
                    "{:<8} {:<24} {:>8} samples, {:>3.0}% idle",
                    t.os_tid,
                    t.name.as_deref().unwrap_or("-"),
                    t.samples,
                    idle
                )
            }
        })
        .collect();
    let rect = centred(
        area,
        70,
        items.len().min(usize::from(u16::MAX - 2)) as u16 + 2,
    );
    let inner_height = usize::from(rect.height.saturating_sub(2)).max(1);
    // Scroll so the highlighted entry is visible.
    let first = cursor.saturating_sub(inner_height - 1);
    let lines: Vec<Line<'_>> = items
        .into_iter()
        .enumerate()
        .skip(first)
        .take(inner_height)
        .map(|(i, text)| {
            if i == cursor {
                Line::from(Span::styled(text, Style::new().reversed()))
            } else {
                Line::from(text)
            }
        })
        .collect();
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" thread ")),
        rect,
    );
}

/// `0.25s`, `1s`, `2.5s`.
fn secs(v: f64) -> String {
    if v.fract().abs() < 1e-9 {
        format!("{v:.0}s")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + "s"
    }
}

/// `mm:ss` or `h:mm:ss`.
fn clock(total: u64) -> String {
    let (h, m, sec) = (total / 3600, (total / 60) % 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{sec:02}")
    } else {
        format!("{m:02}:{sec:02}")
    }
}

/// A duration for a time column: `0.45s`, `12.30s`, `12m05s`, `3h07m`.
pub fn duration(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if s < 100.0 {
        format!("{s:.2}s")
    } else if s < 3600.0 {
        let t = s as u64;
        format!("{}m{:02}s", t / 60, t % 60)
    } else {
        let t = s as u64;
        format!("{}h{:02}m", t / 3600, (t / 60) % 60)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
}
