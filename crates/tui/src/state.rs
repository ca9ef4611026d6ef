//! Everything the user has chosen, and the last data: pure logic, no terminal.
//!
//! Input turns keys into [`Action`]s ([`crate::input`]); [`State::apply`] carries them out and
//! says what the event loop has to do next ([`Effect`]); the view ([`crate::view`]) only reads.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::time::Duration;

use strobe_aggregate::{Count, SampleFilter};

use crate::data::{FrameSel, Query, Row, ThreadRow, ViewData};

mod order;

use order::Order;

/// Refresh intervals `+`/`-` step through.
pub const REFRESH_STEPS: [Duration; 7] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// What the table is sorted by. Within one period a percentage and a time are proportional,
/// so these four cover every numeric column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Own time in the last interval (`%Own`).
    OwnInterval,
    /// Total time in the last interval (`%Total`).
    TotalInterval,
    /// Own time since the start (`OwnTime`).
    OwnCumulative,
    /// Total time since the start (`TotalTime`).
    TotalCumulative,
    /// Function name, then file and line.
    Name,
}

impl SortKey {
    /// In the order of the keys `1`..`4`, `n`.
    pub const ALL: [SortKey; 5] = [
        SortKey::OwnInterval,
        SortKey::TotalInterval,
        SortKey::OwnCumulative,
        SortKey::TotalCumulative,
        SortKey::Name,
    ];

    /// A short name for the status line.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::OwnInterval => "%Own",
            SortKey::TotalInterval => "%Total",
            SortKey::OwnCumulative => "OwnTime",
            SortKey::TotalCumulative => "TotalTime",
            SortKey::Name => "name",
        }
    }

    /// Names sort ascending by default, numbers descending.
    fn default_descending(self) -> bool {
        self != SortKey::Name
    }

    fn value(self, r: &Row) -> u64 {
        match self {
            SortKey::OwnInterval => r.interval_own.weight_ns,
            SortKey::TotalInterval => r.interval_total.weight_ns,
            SortKey::OwnCumulative => r.cumulative_own.weight_ns,
            SortKey::TotalCumulative => r.cumulative_total.weight_ns,
            SortKey::Name => 0,
        }
    }
}

/// Which screen is in front of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The table.
    Table,
    /// Typing a filter after `/`; the text is applied live.
    Filter,
    /// Choosing a thread; the index is into [`State::thread_choices`].
    Threads(usize),
    /// The call tree of the selected row; the number is the scroll offset.
    Tree(usize),
    /// The key help.
    Help,
}

/// What the user can ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Leave strobe top.
    Quit,
    /// Sort by this key (again: reverse).
    Sort(SortKey),
    /// Move the sort to the next (+1) or previous (-1) key.
    SortStep(i8),
    /// Start typing a filter.
    FilterStart,
    /// A character of the filter.
    FilterChar(char),
    /// Delete the last filter character.
    FilterBackspace,
    /// Keep the filter and go back to the table.
    FilterAccept,
    /// Clear the filter and go back to the table.
    FilterCancel,
    /// Open the thread chooser.
    ThreadsOpen,
    /// Take the highlighted thread.
    ThreadsChoose,
    /// Pause or resume the display.
    TogglePause,
    /// Forget the counts so far.
    Reset,
    /// Refresh less (+1) or more (-1) often.
    RefreshStep(i8),
    /// Show or hide idle samples.
    ToggleIdle,
    /// Count only samples holding the GIL, or all.
    ToggleGil,
    /// The next mode: cpu, wall, gil, exception.
    CycleMode,
    /// Task-aware stacks on or off.
    ToggleAsync,
    /// Functions or lines.
    ToggleLines,
    /// Open the call tree of the selected row.
    TreeOpen,
    /// Show or hide the help.
    Help,
    /// Close whatever is in front of the table.
    Back,
    /// Move the cursor by rows (negative: up).
    Move(i32),
    /// Move the cursor to the first row.
    Home,
    /// Move the cursor to the last row.
    End,
}

/// What the event loop must do after an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Only redraw.
    Redraw,
    /// Ask the collector again with the new query (the interval is not advanced).
    Refetch,
    /// Reset the collector's counts, then refetch.
    Reset,
    /// Leave.
    Quit,
}

/// Static facts about the target, for the header.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TargetInfo {
    /// `pid 1234: python app.py`.
    pub process: String,
    /// `3.12.1` (plus `debug` / `free-threaded` where that applies).
    pub python: String,
    /// The requested sampling rate.
    pub rate_hz: f64,
}

/// What the sampler reports about itself, polled by the event loop.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LiveStatus {
    /// Samples that could not be taken (failed reads).
    pub errors: u64,
    /// Sampling rounds per second since the start, as the sampler counts them (preferred over
    /// the rate estimated from the last interval's samples, which varies with the randomized
    /// clock).
    pub achieved_hz: Option<f64>,
    /// Set once the sampler stopped, with why (e.g. `process 1234 exited`).
    pub ended: Option<String>,
}

/// The user's choices and the data on screen.
#[derive(Debug, Clone)]
pub struct State {
    /// The target.
    pub info: TargetInfo,
    /// The sampler's status.
    pub status: LiveStatus,
    /// The last data.
    pub data: ViewData,
    /// Front screen.
    pub mode: Mode,
    /// Sort key.
    pub sort: SortKey,
    /// Sort direction.
    pub descending: bool,
    /// Case-insensitive substring of function or file names.
    pub filter: String,
    /// Group by function (otherwise by line).
    pub by_function: bool,
    /// Only this thread.
    pub os_tid: Option<u64>,
    /// Idle samples shown.
    pub include_idle: bool,
    /// Only GIL-holding samples.
    pub gil_only: bool,
    /// Only samples of threads raising or handling an exception (`<raise T>` frames shown).
    pub exception_only: bool,
    /// Task-aware stacks (`a`).
    pub async_stacks: bool,
    /// The display is frozen.
    pub paused: bool,
    /// Time between refreshes.
    pub refresh: Duration,
    /// Highlighted row (index into [`State::visible`]).
    pub cursor: usize,
    /// The highlighted row's key, kept across refreshes so the cursor follows its row.
    pub selected: Option<FrameSel>,
    /// The frame the open call tree is about.
    pub focus: Option<FrameSel>,
    /// The rows of `data.rows` that pass the filter, sorted only as far as they were looked at
    /// (the rows on screen and the cursor's): looking is not a change, hence the cell.
    visible: RefCell<Order<Ranked>>,
}

impl State {
    /// The initial state.
    pub fn new(
        info: TargetInfo,
        by_function: bool,
        filter: SampleFilter,
        refresh: Duration,
    ) -> State {
        State {
            info,
            status: LiveStatus::default(),
            data: ViewData::default(),
            mode: Mode::Table,
            sort: SortKey::OwnInterval,
            descending: true,
            filter: String::new(),
            by_function,
            os_tid: None,
            include_idle: filter.include_idle,
            gil_only: filter.gil_only,
            exception_only: filter.exception_only,
            async_stacks: false,
            paused: false,
            refresh,
            cursor: 0,
            selected: None,
            focus: None,
            visible: RefCell::new(Order::new(Vec::new())),
        }
    }

    /// What the sampler should follow.
    pub fn shown(&self) -> crate::Shown {
        crate::Shown {
            idle: self.include_idle,
            tasks: self.async_stacks,
        }
    }

    /// What to ask the collector for.
    pub fn query(&self) -> Query {
        Query {
            by_function: self.by_function,
            os_tid: self.os_tid,
            filter: SampleFilter {
                include_idle: self.include_idle,
                gil_only: self.gil_only,
                exception_only: self.exception_only,
            },
            focus: match self.mode {
                Mode::Tree(_) => self.focus.clone(),
                _ => None,
            },
        }
    }

    /// Takes new data; the cursor stays on the same row if it still exists.
    pub fn set_data(&mut self, data: ViewData) {
        self.data = data;
        self.recompute();
    }

    /// The rows to show, filtered and sorted (all of them: this sorts every row; the view asks
    /// for [`State::rows`]).
    pub fn visible(&self) -> impl Iterator<Item = &Row> + '_ {
        self.rows(0, usize::MAX).into_iter()
    }

    /// The rows shown from the `first`th on, `n` at most, sorted: only these (and the rows
    /// looked at before since the data or the order changed) are put in order.
    pub fn rows(&self, first: usize, n: usize) -> Vec<&Row> {
        let rows = &self.data.rows;
        let mut order = self.visible.borrow_mut();
        order
            .ranks(
                first,
                first.saturating_add(n),
                by(self.sort, self.descending, rows),
            )
            .iter()
            .filter_map(|k| rows.get(k.row))
            .collect()
    }

    /// Number of rows after filtering.
    pub fn visible_len(&self) -> usize {
        self.visible.borrow().len()
    }

    /// "All threads" (`None`), then each thread.
    pub fn thread_choices(&self) -> Vec<Option<&ThreadRow>> {
        std::iter::once(None)
            .chain(self.data.threads.iter().map(Some))
            .collect()
    }

    /// The thread selection in words.
    pub fn thread_label(&self) -> String {
        match self.os_tid {
            None => "all threads".to_string(),
            Some(tid) => match self
                .data
                .threads
                .iter()
                .find(|t| t.os_tid == tid)
                .and_then(|t| t.name.as_deref())
            {
                Some(name) => format!("thread {tid} ({name})"),
                None => format!("thread {tid}"),
            },
        }
    }

    fn recompute(&mut self) {
        let needle = self.filter.to_lowercase();
        let rows = &self.data.rows;
        let (sort, descending) = (self.sort, self.descending);
        let visible: Vec<Ranked> = (rows.iter().enumerate())
            .filter(|(_, r)| {
                needle.is_empty()
                    || r.key.function.to_lowercase().contains(&needle)
                    || r.key.filename.to_lowercase().contains(&needle)
            })
            .map(|(row, r)| Ranked::new(sort, descending, r, row))
            .collect();
        // The cursor's row found again by its rank (the rows ranking before it, counted): no
        // sort needed.
        let cmp = by(sort, descending, rows);
        let found = self.selected.as_ref().and_then(|sel| {
            let row = visible
                .iter()
                .filter(|k| rows.get(k.row).is_some_and(|r| &r.key == sel))
                .min_by(|a, b| cmp(a, b))?;
            Some(visible.iter().filter(|k| cmp(k, row).is_lt()).count())
        });
        self.visible = RefCell::new(Order::new(visible));
        match found {
            Some(i) => self.cursor = i,
            None => {
                self.cursor = self.cursor.min(self.visible_len().saturating_sub(1));
                self.selected = self.row_at(self.cursor).map(|r| r.key.clone());
            }
        }
    }

    fn row_at(&self, i: usize) -> Option<&Row> {
        self.rows(i, 1).into_iter().next()
    }

    fn move_cursor(&mut self, to: usize) {
        self.cursor = to.min(self.visible_len().saturating_sub(1));
        self.selected = self.row_at(self.cursor).map(|r| r.key.clone());
    }

    /// Carries out `a`.
    pub fn apply(&mut self, a: Action) -> Effect {
        match a {
            Action::Quit => return Effect::Quit,
            Action::Sort(k) => {
                if self.sort == k {
                    self.descending = !self.descending;
                } else {
                    self.sort = k;
                    self.descending = k.default_descending();
                }
                self.recompute();
            }
            Action::SortStep(d) => {
                let n = SortKey::ALL.len() as i32;
                let i = SortKey::ALL
                    .iter()
                    .position(|&k| k == self.sort)
                    .unwrap_or(0) as i32;
                let j = (i + i32::from(d)).rem_euclid(n) as usize;
                if let Some(&k) = SortKey::ALL.get(j) {
                    self.sort = k;
                    self.descending = k.default_descending();
                }
                self.recompute();
            }
            Action::FilterStart => self.mode = Mode::Filter,
            Action::FilterChar(c) => {
                // Bounded: a filter longer than any name cannot match anything new.
                if self.filter.chars().count() < 200 {
                    self.filter.push(c);
                    self.recompute();
                }
            }
            Action::FilterBackspace => {
                self.filter.pop();
                self.recompute();
            }
            Action::FilterAccept => self.mode = Mode::Table,
            Action::FilterCancel => {
                self.filter.clear();
                self.mode = Mode::Table;
                self.recompute();
            }
            Action::ThreadsOpen => {
                let at = match self.os_tid {
                    None => 0,
                    Some(tid) => self
                        .data
                        .threads
                        .iter()
                        .position(|t| t.os_tid == tid)
                        .map_or(0, |i| i + 1),
                };
                self.mode = Mode::Threads(at);
            }
            Action::ThreadsChoose => {
                if let Mode::Threads(i) = self.mode {
                    self.os_tid = self
                        .thread_choices()
                        .get(i)
                        .copied()
                        .flatten()
                        .map(|t| t.os_tid);
                    self.mode = Mode::Table;
                    return Effect::Refetch;
                }
            }
            Action::TogglePause => self.paused = !self.paused,
            Action::Reset => return Effect::Reset,
            Action::RefreshStep(d) => {
                let i = REFRESH_STEPS
                    .iter()
                    .position(|&r| r >= self.refresh)
                    .unwrap_or(REFRESH_STEPS.len() - 1) as i32;
                let j = (i + i32::from(d)).clamp(0, REFRESH_STEPS.len() as i32 - 1) as usize;
                if let Some(&r) = REFRESH_STEPS.get(j) {
                    self.refresh = r;
                }
            }
            Action::ToggleIdle => {
                self.include_idle = !self.include_idle;
                return Effect::Refetch;
            }
            Action::ToggleGil => {
                self.gil_only = !self.gil_only;
                return Effect::Refetch;
            }
            Action::ToggleAsync => {
                // Stacks of the other kind would mix with these: start counting afresh.
                self.async_stacks = !self.async_stacks;
                return Effect::Reset;
            }
            Action::CycleMode => {
                // cpu → wall → gil → exception → cpu, each as `--mode` sets it.
                let (idle, gil, exception) =
                    match (self.include_idle, self.gil_only, self.exception_only) {
                        (_, _, true) => (false, false, false),
                        (_, true, false) => (false, false, true),
                        (true, false, false) => (false, true, false),
                        (false, false, false) => (true, false, false),
                    };
                self.include_idle = idle;
                self.gil_only = gil;
                self.exception_only = exception;
                return Effect::Refetch;
            }
            Action::ToggleLines => {
                self.by_function = !self.by_function;
                // The selected key names a line (or not); keep the cursor on the same function.
                if let Some(sel) = &mut self.selected {
                    sel.line = None;
                }
                return Effect::Refetch;
            }
            Action::TreeOpen => {
                if let Some(sel) = self.selected.clone() {
                    self.focus = Some(sel);
                    self.mode = Mode::Tree(0);
                    return Effect::Refetch;
                }
            }
            Action::Help => {
                self.mode = if self.mode == Mode::Help {
                    Mode::Table
                } else {
                    Mode::Help
                };
            }
            Action::Back => {
                let was_tree = matches!(self.mode, Mode::Tree(_));
                self.mode = Mode::Table;
                if was_tree {
                    self.focus = None;
                }
            }
            Action::Move(d) => match &mut self.mode {
                Mode::Threads(i) => {
                    let n = self.data.threads.len() + 1;
                    *i = (*i as i64 + i64::from(d)).clamp(0, n as i64 - 1) as usize;
                }
                Mode::Tree(off) => {
                    *off = (*off as i64 + i64::from(d)).max(0) as usize;
                }
                _ => {
                    let to = (self.cursor as i64 + i64::from(d)).max(0) as usize;
                    self.move_cursor(to);
                }
            },
            Action::Home => match &mut self.mode {
                Mode::Threads(i) | Mode::Tree(i) => *i = 0,
                _ => self.move_cursor(0),
            },
            Action::End => match &mut self.mode {
                Mode::Threads(i) => *i = self.data.threads.len(),
                Mode::Tree(off) => *off = usize::MAX / 2,
                _ => self.move_cursor(usize::MAX),
            },
        }
        Effect::Redraw
    }
}

/// A row to order, with the numbers its order starts with, so that most comparisons read
/// neither the row nor its names: under a numeric sort, the sort column (its direction
/// applied), then the cumulative total and own time, bigger first, as [`compare`] starts;
/// under [`SortKey::Name`], nothing (the names come first there).
#[derive(Debug, Clone, Copy)]
struct Ranked {
    first: [u64; 3],
    row: usize,
}

impl Ranked {
    fn new(sort: SortKey, descending: bool, r: &Row, row: usize) -> Ranked {
        let first = match sort {
            SortKey::Name => [0; 3],
            k => {
                let v = k.value(r);
                [
                    if descending { u64::MAX - v } else { v },
                    u64::MAX - r.cumulative_total.weight_ns,
                    u64::MAX - r.cumulative_own.weight_ns,
                ]
            }
        };
        Ranked { first, row }
    }
}

/// The order of two rows of `rows` under `sort`: [`compare`] (its first numbers from
/// [`Ranked`]), then the index (what a stable sort of the indexes in ascending order gives),
/// so no two rows are equal.
fn by(sort: SortKey, descending: bool, rows: &[Row]) -> impl Fn(&Ranked, &Ranked) -> Ordering + '_ {
    move |a, b| {
        a.first.cmp(&b.first).then_with(|| {
            match (rows.get(a.row), rows.get(b.row)) {
                (Some(x), Some(y)) => compare(sort, descending, x, y),
                _ => Ordering::Equal,
            }
            .then(a.row.cmp(&b.row))
        })
    }
}

fn compare(sort: SortKey, descending: bool, a: &Row, b: &Row) -> Ordering {
    fn name(r: &Row) -> (&str, &str, Option<i32>) {
        (&r.key.function, &r.key.filename, r.key.line)
    }
    let primary = match sort {
        SortKey::Name => name(a).cmp(&name(b)),
        k => k.value(a).cmp(&k.value(b)),
    };
    let primary = if descending {
        primary.reverse()
    } else {
        primary
    };
    // Ties: the bigger cumulative total first, then by name, then by kind and shared object
    // (no two rows have the same key), so the order depends on nothing but the rows.
    primary
        .then(
            b.cumulative_total
                .weight_ns
                .cmp(&a.cumulative_total.weight_ns),
        )
        .then(b.cumulative_own.weight_ns.cmp(&a.cumulative_own.weight_ns))
        .then_with(|| name(a).cmp(&name(b)))
        .then_with(|| (a.key.kind, &a.key.module).cmp(&(b.key.kind, &b.key.module)))
}

/// `part` as a percentage of `whole` (0 when the whole is empty).
pub fn percent(part: Count, whole: Count) -> f64 {
    if whole.weight_ns == 0 {
        0.0
    } else {
        part.weight_ns as f64 * 100.0 / whole.weight_ns as f64
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
