//! [`RowTable`]: the table's rows for one query, kept between refreshes and brought up to date
//! with the interval just closed, instead of rebuilt from every count since the start.
//!
//! The counts since the start (or reset) are the closed intervals plus the one in progress.
//! A refresh closes an interval ([`Collector::advance`](super::Collector::advance)) and asks
//! for the view: the table then adds the interval just closed to its cumulative counts and
//! makes it the interval shown, which touches the rows of the functions sampled in that
//! interval and the one before, not every function seen since the start. A new query (another
//! grouping, thread or filter), a reset, or intervals closed without a view rebuild it; a view
//! asked for between refreshes (after a key) adds the interval in progress to a copy.

use std::collections::HashMap;
use std::sync::Arc;

use strobe_aggregate::{
    BreakdownOptions, Count, FrameFold, FrameKind, FrameStat, FxBuild, StrId, Tables,
};

use super::collector::accepts;
use super::{FrameSel, Row};

/// A row's key by the interned ids of its names: no string is copied or hashed to find it.
type Ids = (StrId, StrId, Option<i32>, FrameKind, Option<StrId>);

fn ids(st: &FrameStat) -> Ids {
    (st.function, st.filename, st.line, st.kind, st.module)
}

/// Each interned name as rows carry it: copied once for the whole run (the tables never forget
/// a string), then shared by every view that shows it, so that a refresh copies no name.
#[derive(Debug, Default)]
pub(super) struct Names(Vec<Option<Arc<str>>>);

impl Names {
    fn get(&mut self, tables: &Tables, id: StrId) -> Arc<str> {
        let i = id.index();
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        match self.0.get_mut(i) {
            Some(Some(name)) => name.clone(),
            Some(slot) => slot.insert(tables.str(id).into()).clone(),
            None => tables.str(id).into(),
        }
    }

    fn row(&mut self, tables: &Tables, st: &FrameStat) -> Row {
        Row {
            key: FrameSel {
                function: self.get(tables, st.function),
                filename: self.get(tables, st.filename),
                line: st.line,
                kind: st.kind,
                module: st.module.map(|m| self.get(tables, m)),
            },
            interval_own: Count::default(),
            interval_total: Count::default(),
            cumulative_own: Count::default(),
            cumulative_total: Count::default(),
        }
    }
}

/// Which columns a fold's counts go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// Own and total since the start (or reset).
    SinceReset,
    /// Own and total in the last interval.
    Interval,
}

/// The rows of one query: cumulative counts of the closed intervals, interval counts of the
/// last one. See the module documentation.
#[derive(Debug)]
pub(super) struct RowTable {
    opts: BreakdownOptions,
    /// The number of intervals closed that its cumulative counts include.
    closed: u64,
    index: HashMap<Ids, usize, FxBuild>,
    rows: Vec<Row>,
    cumulative_total: Count,
    interval_total: Count,
    /// The rows with counts in the last interval.
    in_interval: Vec<usize>,
}

/// The rows and totals one view shows.
#[derive(Debug)]
pub(super) struct Rows {
    pub(super) rows: Vec<Row>,
    pub(super) cumulative_total: Count,
    pub(super) interval_total: Count,
}

impl RowTable {
    /// The table of `opts` after `closed` intervals: `since_reset` their counts, `last` the
    /// last one's.
    pub(super) fn build(
        opts: BreakdownOptions,
        closed: u64,
        since_reset: &FrameFold,
        last: &FrameFold,
        tables: &Tables,
        names: &mut Names,
    ) -> RowTable {
        let mut t = RowTable {
            opts,
            closed,
            index: HashMap::default(),
            rows: Vec::new(),
            cumulative_total: Count::default(),
            interval_total: Count::default(),
            in_interval: Vec::new(),
        };
        t.add(since_reset, &[Part::SinceReset], tables, names);
        t.add(last, &[Part::Interval], tables, names);
        t
    }

    /// Whether the table can be brought to `closed` intervals for `opts`: same query, and at
    /// most the interval `last` closed since.
    pub(super) fn fits(&self, opts: &BreakdownOptions, closed: u64) -> bool {
        self.opts == *opts && (closed == self.closed || closed == self.closed + 1)
    }

    /// Brings the table to `closed` intervals, the last of which was `last` (nothing to do if
    /// it is there already).
    pub(super) fn close(&mut self, closed: u64, last: &FrameFold, tables: &Tables, n: &mut Names) {
        if closed == self.closed {
            return;
        }
        for &i in &self.in_interval {
            if let Some(r) = self.rows.get_mut(i) {
                r.interval_own = Count::default();
                r.interval_total = Count::default();
            }
        }
        self.in_interval.clear();
        self.interval_total = Count::default();
        self.add(last, &[Part::SinceReset, Part::Interval], tables, n);
        self.closed = closed;
    }

    /// Adds what `fold` counted under the table's query to the columns of each of `parts`.
    fn add(&mut self, fold: &FrameFold, parts: &[Part], tables: &Tables, names: &mut Names) {
        let total = total_of(&self.opts, fold, tables);
        for part in parts {
            match part {
                Part::SinceReset => self.cumulative_total.add(total),
                Part::Interval => self.interval_total.add(total),
            }
        }
        for st in frames_of(&self.opts, fold, tables) {
            let rows = &mut self.rows;
            let i =
                *(self.index.entry(ids(&st))).or_insert_with(|| push_row(rows, names, tables, &st));
            let Some(r) = rows.get_mut(i) else {
                continue;
            };
            for &part in parts {
                if part == Part::Interval && r.interval_total.is_zero() {
                    self.in_interval.push(i);
                }
                credit(r, part, &st);
            }
        }
    }

    /// The rows to show: a copy of the table's, with what `current` (the interval in
    /// progress) counted added to the cumulative columns.
    pub(super) fn view(&self, current: &FrameFold, tables: &Tables, names: &mut Names) -> Rows {
        let mut rows = self.rows.clone();
        let mut cumulative_total = self.cumulative_total;
        if !current.is_empty() {
            cumulative_total.add(total_of(&self.opts, current, tables));
            // Frames first seen in the interval in progress have no row in the table.
            let mut added: HashMap<Ids, usize, FxBuild> = HashMap::default();
            for st in frames_of(&self.opts, current, tables) {
                let key = ids(&st);
                let i = match self.index.get(&key) {
                    Some(&i) => i,
                    None => *(added.entry(key))
                        .or_insert_with(|| push_row(&mut rows, names, tables, &st)),
                };
                if let Some(r) = rows.get_mut(i) {
                    credit(r, Part::SinceReset, &st);
                }
            }
        }
        Rows {
            rows,
            cumulative_total,
            interval_total: self.interval_total,
        }
    }
}

/// All the samples `fold` counted that `opts` keeps.
fn total_of(opts: &BreakdownOptions, fold: &FrameFold, tables: &Tables) -> Count {
    let mut total = Count::default();
    for (thread, flags, c) in fold.samples() {
        if accepts(opts, tables, thread, flags) {
            total.add(c);
        }
    }
    total
}

/// The frames `fold` counted in the samples `opts` keeps, grouped as `opts` says.
fn frames_of<'a>(
    opts: &'a BreakdownOptions,
    fold: &'a FrameFold,
    tables: &'a Tables,
) -> impl Iterator<Item = FrameStat> + 'a {
    (fold.frames(opts.by_function, opts.hide_exceptions))
        .filter(move |(thread, flags, _)| accepts(opts, tables, *thread, *flags))
        .map(|(.., st)| st)
}

/// A new row for `st`, at the end of `rows`: its index.
fn push_row(rows: &mut Vec<Row>, names: &mut Names, tables: &Tables, st: &FrameStat) -> usize {
    rows.push(names.row(tables, st));
    rows.len() - 1
}

/// Adds `st`'s own and total counts to `r`'s columns of `part`.
fn credit(r: &mut Row, part: Part, st: &FrameStat) {
    let (own, total) = match part {
        Part::SinceReset => (&mut r.cumulative_own, &mut r.cumulative_total),
        Part::Interval => (&mut r.interval_own, &mut r.interval_total),
    };
    own.add(st.own);
    total.add(st.total);
}
