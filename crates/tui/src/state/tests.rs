//! Unit tests of the parent module.

use super::*;

fn c(ms: u64) -> Count {
    Count {
        samples: ms / 10,
        weight_ns: ms * 1_000_000,
    }
}

fn row(f: &str, io: u64, it: u64, co: u64, ct: u64) -> Row {
    Row {
        key: FrameSel::python(f, &format!("/app/{f}.py"), None),
        interval_own: c(io),
        interval_total: c(it),
        cumulative_own: c(co),
        cumulative_total: c(ct),
    }
}

fn state() -> State {
    let mut s = State::new(
        TargetInfo::default(),
        true,
        SampleFilter::default(),
        Duration::from_secs(1),
    );
    s.set_data(ViewData {
        rows: vec![
            row("alpha", 10, 100, 900, 950),
            row("beta", 60, 60, 100, 100),
            row("gamma", 30, 90, 0, 1000),
        ],
        threads: vec![
            ThreadRow {
                os_tid: 7,
                name: Some("MainThread".into()),
                samples: 1,
                idle_samples: 0,
            },
            ThreadRow {
                os_tid: 9,
                name: None,
                samples: 1,
                idle_samples: 1,
            },
        ],
        ..Default::default()
    });
    s
}

fn names(s: &State) -> Vec<&str> {
    s.visible().map(|r| &*r.key.function).collect()
}

#[test]
fn sorting_by_each_column_and_reversing() {
    let mut s = state();
    assert_eq!(names(&s), ["beta", "gamma", "alpha"], "default: %Own");
    s.apply(Action::Sort(SortKey::TotalInterval));
    assert_eq!(names(&s), ["alpha", "gamma", "beta"]);
    s.apply(Action::Sort(SortKey::OwnCumulative));
    assert_eq!(names(&s), ["alpha", "beta", "gamma"]);
    s.apply(Action::Sort(SortKey::TotalCumulative));
    assert_eq!(names(&s), ["gamma", "alpha", "beta"]);
    s.apply(Action::Sort(SortKey::TotalCumulative));
    assert_eq!(names(&s), ["beta", "alpha", "gamma"], "same key reverses");
    s.apply(Action::Sort(SortKey::Name));
    assert_eq!(names(&s), ["alpha", "beta", "gamma"]);
    s.apply(Action::SortStep(1));
    assert_eq!(s.sort, SortKey::OwnInterval, "wraps around");
    s.apply(Action::SortStep(-1));
    assert_eq!(s.sort, SortKey::Name);
}

#[test]
fn filter_matches_function_or_file_and_cancel_clears() {
    let mut s = state();
    s.apply(Action::FilterStart);
    assert_eq!(s.mode, Mode::Filter);
    for ch in "AM".chars() {
        s.apply(Action::FilterChar(ch));
    }
    assert_eq!(names(&s), ["gamma"], "case-insensitive, live");
    s.apply(Action::FilterBackspace);
    s.apply(Action::FilterChar('l'));
    assert_eq!(names(&s), ["alpha"]);
    s.apply(Action::FilterAccept);
    assert_eq!((s.mode.clone(), s.filter.as_str()), (Mode::Table, "Al"));
    s.apply(Action::FilterStart);
    s.apply(Action::FilterCancel);
    assert_eq!(s.visible_len(), 3);
    s.apply(Action::FilterStart);
    s.apply(Action::FilterChar('/'));
    s.apply(Action::FilterChar('b'));
    assert_eq!(names(&s), ["beta"], "file names match too");
}

#[test]
fn cursor_follows_its_row_across_refreshes() {
    let mut s = state();
    s.apply(Action::Move(1));
    assert_eq!(&*s.selected.as_ref().unwrap().function, "gamma");
    // New data where gamma moved to the top.
    let mut d = s.data.clone();
    d.rows[2].interval_own = c(500);
    s.set_data(d);
    assert_eq!(s.cursor, 0);
    s.apply(Action::End);
    assert_eq!(s.cursor, 2);
    s.apply(Action::Move(10));
    assert_eq!(s.cursor, 2, "clamped");
    s.apply(Action::Home);
    s.apply(Action::Move(-3));
    assert_eq!(s.cursor, 0);
    // The selected row disappears: the cursor stays in range.
    s.apply(Action::End);
    let mut d = s.data.clone();
    d.rows.truncate(1);
    s.set_data(d);
    assert_eq!(s.cursor, 0);
    assert_eq!(&*s.selected.as_ref().unwrap().function, "alpha");
}

#[test]
fn options_change_the_query() {
    let mut s = state();
    assert_eq!(s.apply(Action::ToggleIdle), Effect::Refetch);
    assert!(s.query().filter.include_idle);
    assert_eq!(s.apply(Action::ToggleGil), Effect::Refetch);
    assert!(s.query().filter.gil_only);
    assert_eq!(s.apply(Action::ToggleLines), Effect::Refetch);
    assert!(!s.query().by_function);
    assert_eq!(s.apply(Action::Reset), Effect::Reset);
    assert_eq!(s.apply(Action::TogglePause), Effect::Redraw);
    assert!(s.paused);
    assert_eq!(s.apply(Action::Quit), Effect::Quit);
}

#[test]
fn choosing_a_thread() {
    let mut s = state();
    s.apply(Action::ThreadsOpen);
    assert_eq!(s.mode, Mode::Threads(0));
    s.apply(Action::Move(5));
    assert_eq!(s.mode, Mode::Threads(2), "clamped to the last thread");
    assert_eq!(s.apply(Action::ThreadsChoose), Effect::Refetch);
    assert_eq!(s.query().os_tid, Some(9));
    assert_eq!(s.thread_label(), "thread 9");
    s.apply(Action::ThreadsOpen);
    assert_eq!(s.mode, Mode::Threads(2), "opens on the current choice");
    s.apply(Action::Move(-1));
    s.apply(Action::ThreadsChoose);
    assert_eq!(s.thread_label(), "thread 7 (MainThread)");
    s.apply(Action::ThreadsOpen);
    s.apply(Action::Home);
    s.apply(Action::ThreadsChoose);
    assert_eq!(s.query().os_tid, None);
}

#[test]
fn refresh_interval_steps_and_clamps() {
    let mut s = state();
    s.apply(Action::RefreshStep(1));
    assert_eq!(s.refresh, Duration::from_secs(2));
    for _ in 0..20 {
        s.apply(Action::RefreshStep(-1));
    }
    assert_eq!(s.refresh, Duration::from_millis(250));
    for _ in 0..20 {
        s.apply(Action::RefreshStep(1));
    }
    assert_eq!(s.refresh, Duration::from_secs(30));
}

#[test]
fn tree_focuses_the_selected_row_and_back_closes_it() {
    let mut s = state();
    assert_eq!(s.query().focus, None);
    assert_eq!(s.apply(Action::TreeOpen), Effect::Refetch);
    assert_eq!(s.mode, Mode::Tree(0));
    assert_eq!(&*s.query().focus.unwrap().function, "beta");
    s.apply(Action::Move(3));
    assert_eq!(s.mode, Mode::Tree(3));
    s.apply(Action::Back);
    assert_eq!(s.mode, Mode::Table);
    assert_eq!(s.query().focus, None);
    s.apply(Action::Help);
    assert_eq!(s.mode, Mode::Help);
    s.apply(Action::Help);
    assert_eq!(s.mode, Mode::Table);
}

#[test]
fn percentages() {
    assert_eq!(percent(c(25), c(100)), 25.0);
    assert_eq!(percent(c(25), Count::default()), 0.0);
}

use crate::test_rng::Rng;

/// `n` rows with few distinct counts and names, so that ties are everywhere, down to rows
/// whose sort keys are all equal (same names, another kind of frame).
fn random_rows(rng: &mut Rng, n: usize) -> Vec<Row> {
    (0..n)
        .map(|_| {
            let f = format!("mod{}.f{}", rng.next(3), rng.next(8));
            let mut r = row(&f, rng.next(4), rng.next(4), rng.next(5), rng.next(5));
            if rng.next(4) == 0 {
                r.key.kind = strobe_aggregate::FrameKind::Native;
            }
            r
        })
        .collect()
}

/// What the table showed when every refresh sorted every row: filter, stable sort.
fn fully_sorted(s: &State) -> Vec<FrameSel> {
    let needle = s.filter.to_lowercase();
    let mut rows: Vec<&Row> = (s.data.rows.iter())
        .filter(|r| {
            r.key.function.to_lowercase().contains(&needle)
                || r.key.filename.to_lowercase().contains(&needle)
        })
        .collect();
    rows.sort_by(|a, b| compare(s.sort, s.descending, a, b));
    rows.into_iter().map(|r| r.key.clone()).collect()
}

fn keys<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Vec<FrameSel> {
    rows.into_iter().map(|r| r.key.clone()).collect()
}

#[test]
fn windows_and_the_cursor_are_those_of_a_full_sort() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut s = State::new(
        TargetInfo::default(),
        true,
        SampleFilter::default(),
        Duration::from_secs(1),
    );
    for round in 0..200 {
        let n = rng.next(400) as usize;
        let (before, was) = (s.cursor, s.selected.clone());
        s.set_data(ViewData {
            rows: random_rows(&mut rng, n),
            ..Default::default()
        });
        // A sort key change, or a filter, now and then.
        match round % 4 {
            0 => {
                let k = SortKey::ALL[rng.next(5) as usize];
                s.apply(Action::Sort(k));
            }
            1 => {
                s.apply(Action::FilterCancel);
                s.apply(Action::FilterChar(char::from(b'0' + rng.next(3) as u8)));
            }
            _ => {}
        }
        let want = fully_sorted(&s);
        assert_eq!(s.visible_len(), want.len());
        if round % 4 > 1 && was.as_ref().is_none_or(|k| !want.contains(k)) {
            // Its row gone, the cursor stays where it was, within the rows there are.
            assert_eq!(
                s.cursor,
                before.min(want.len().saturating_sub(1)),
                "round {round}"
            );
        }
        // Where the cursor went: the row it was on, wherever that now ranks; else clamped.
        if let Some(sel) = &s.selected {
            assert_eq!(
                want.get(s.cursor),
                Some(sel),
                "round {round}: the cursor's row"
            );
        } else {
            assert!(want.is_empty());
        }
        // Pages looked at in any order, beyond the first too: each as a full sort has it.
        for _ in 0..4 {
            let first = rng.next(n as u64 + 10) as usize;
            let len = 1 + rng.next(50) as usize;
            let end = (first + len).min(want.len());
            let got = keys(s.rows(first, len));
            assert_eq!(
                got,
                want[first.min(end)..end],
                "round {round}: {first}+{len}"
            );
        }
        assert_eq!(keys(s.visible()), want, "round {round}: every row");
        // The cursor somewhere else before the next data.
        s.apply(Action::Move(rng.next(60) as i32 - 20));
        let at = s.cursor;
        assert_eq!(s.selected.as_ref(), want.get(at), "round {round}: moved");
    }
}

#[test]
fn rows_alike_but_for_their_kind_keep_one_order_whatever_order_they_come_in() {
    let mut native = row("f", 10, 10, 10, 10);
    native.key.kind = strobe_aggregate::FrameKind::Native;
    native.key.module = Some("libx.so".into());
    let python = row("f", 10, 10, 10, 10);
    let mut s = state();
    let mut orders = Vec::new();
    for rows in [
        vec![native.clone(), python.clone()],
        vec![python.clone(), native.clone()],
    ] {
        s.set_data(ViewData {
            rows,
            ..Default::default()
        });
        orders.push(keys(s.visible()));
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0][0].kind, strobe_aggregate::FrameKind::Python);
}
