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
    let rows = (s.rows(scratch.first, height).into_iter()).map(|r| table_row(r, s, wide, &titles));
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
mod tests;
