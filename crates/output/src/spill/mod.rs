//! Bounded memory for the folded formats (`collapsed` and `svg`, the default) while recording.
//!
//! A [`FoldedRecorder`] is fed every sample as it is drained (with the tables that define it,
//! which may forget stacks: `strobe_aggregate::pipeline_streamed`). It turns each sample into
//! its folded line at once and counts lines in a sorted map. While the map is small that is the
//! whole story (no disk). Past a byte budget the map is written out as a sorted run to a spill
//! directory next to the output and emptied; at the end the runs are merged (k-way) into one
//! sorted stream of distinct lines with summed counts, so memory holds one line per run.
//!
//! * collapsed streams that sorted stream (folded text order, as [`crate::Collapsed`] does).
//! * svg: inferno keeps every frame of every line in memory, so the lines handed to it are
//!   pruned first. inferno leaves out every rectangle narrower than `min_width` percent of the
//!   total, and a node is never wider than its parent, so the whole subtree of a node narrower
//!   than that can be replaced by one line naming the node with the subtree's total: the node
//!   keeps its place and width and is still not drawn, and nothing under it was drawn (and
//!   such lines are merged further: see [`Pruner`]). For svg
//!   the map's keys separate frames with a character that sorts below any a label can hold
//!   (labels are escaped: no control characters), so a node's subtree is contiguous in the
//!   stream; a first pass sums the total (inferno's) and a second prunes. The picture is
//!   byte-identical to [`crate::Svg`]'s (tests compare them), except in one case inferno itself
//!   splits a node: when a frame label is another's plus text starting with a character that
//!   sorts below `;` (a space, say), inferno's plain text sort can separate the node's lines.
//!
//! Spill files live in a directory `.strobe-spill-PID-N` created on the first spill and removed
//! when the recorder is dropped (success, error, or a first stop signal: strobe handles those
//! and returns normally), or, at a second stop signal, by the exit: [`dir`], which the other
//! streamed writers (`crate::stream`) share; one left by a killed strobe is removed by the next
//! run ([`remove_stale_spill_dirs`]). The budget is [`DEFAULT_SPILL_BYTES`], or
//! [`SPILL_BYTES_ENV`] (for tests and benchmarks).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use inferno::flamegraph::color::{Color, PaletteMap};
use inferno::flamegraph::{self};
use strobe_aggregate::{
    thread_label_in, Count, CountKey, FrameKind, Metadata, ProfileOptions, Sample, Tables, ThreadId,
};

pub use dir::budget_from_env;
#[cfg(test)]
pub(crate) use dir::SPILL_DIRS;
pub(crate) use dir::{get_varint, put_varint, spill_error, SpillDir, SpoolFile, Spools};

use crate::collapsed::escape;
use crate::stream::Recorder;
use crate::svg::{empty_svg, kind_colour, options_for, printable};
use crate::{label_of, FormatKind, Svg, Value};

/// The environment variable that sets the spill budget in bytes (for tests and benchmarks:
/// `1` spills at every new line).
pub const SPILL_BYTES_ENV: &str = "STROBE_SPILL_BYTES";
/// How many bytes of distinct folded lines are kept in memory before they are spilled.
pub const DEFAULT_SPILL_BYTES: usize = 1 << 20;
/// What one map entry costs besides its text (node share, `String` and `Count`).
const ENTRY_OVERHEAD: usize = 64;
/// How many runs of one size are merged into one bigger run (and so the most runs a merge
/// reads at once, each through a [`RUN_BUFFER`]-byte buffer, per size).
const FAN_IN: usize = 16;
/// The read buffer of each run being merged.
const RUN_BUFFER: usize = 16 << 10;
/// Separates frames in svg keys: below every character of an escaped label.
const TREE_SEP: char = '\u{1}';

/// Distinct lines with their counts: a sorted map, spilled as sorted runs past a budget.
#[derive(Debug)]
struct Spool {
    map: BTreeMap<String, Count>,
    bytes: usize,
    budget: usize,
    dir: SpillDir,
    /// Sorted runs on disk, each with its level (a run of level `n + 1` is [`FAN_IN`] runs of
    /// level `n` merged), levels never increasing along the list.
    runs: Vec<(u32, PathBuf)>,
    /// Run files written so far (for their names).
    written: usize,
}

impl Spool {
    fn add(&mut self, key: &str, c: Count) -> io::Result<()> {
        if let Some(x) = self.map.get_mut(key) {
            x.add(c);
            return Ok(());
        }
        self.bytes += key.len() + ENTRY_OVERHEAD;
        self.map.insert(key.to_owned(), c);
        if self.bytes > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn next_run(&mut self) -> io::Result<(PathBuf, File)> {
        self.written += 1;
        self.dir.create_file("run")
    }

    fn spill(&mut self) -> io::Result<()> {
        let (path, file) = self.next_run()?;
        let write = |file: File| -> io::Result<()> {
            let mut w = BufWriter::new(file);
            for (k, c) in &self.map {
                put_entry(&mut w, k, *c)?;
            }
            w.flush()
        };
        write(file).map_err(|e| spill_error(&path, e))?;
        self.runs.push((0, path));
        self.map.clear();
        self.bytes = 0;
        // FAN_IN runs of one level become one of the next, so a merge never reads more than
        // FAN_IN runs per level at once and each line is rewritten once per level.
        while self.runs.len() >= FAN_IN {
            let tail = &self.runs[self.runs.len() - FAN_IN..];
            let level = tail[0].0;
            if tail.iter().any(|(l, _)| *l != level) {
                break;
            }
            let inputs: Vec<PathBuf> = tail.iter().map(|(_, p)| p.clone()).collect();
            let (path, file) = self.next_run()?;
            let merge = |file: File| -> io::Result<()> {
                let mut m = Merge::open(&inputs)?;
                let mut w = BufWriter::new(file);
                while let Some((k, c)) = m.next()? {
                    put_entry(&mut w, &k, c)?;
                }
                w.flush()
            };
            merge(file).map_err(|e| spill_error(&path, e))?;
            for p in &inputs {
                let _ = fs::remove_file(p);
            }
            self.runs.truncate(self.runs.len() - FAN_IN);
            self.runs.push((level + 1, path));
        }
        Ok(())
    }

    /// After the last [`Spool::add`]: whatever is in memory joins the runs, if there are any.
    fn finish(&mut self) -> io::Result<()> {
        if !self.runs.is_empty() && !self.map.is_empty() {
            self.spill()?;
        }
        Ok(())
    }

    /// The distinct lines in order with their summed counts (after [`Spool::finish`]).
    fn entries(&self) -> io::Result<Entries<'_>> {
        if self.runs.is_empty() {
            return Ok(Entries::Memory(self.map.iter()));
        }
        let paths: Vec<PathBuf> = self.runs.iter().map(|(_, p)| p.clone()).collect();
        Ok(Entries::Merge(Merge::open(&paths)?))
    }
}

fn put_entry(w: &mut impl Write, key: &str, c: Count) -> io::Result<()> {
    put_varint(w, key.len() as u64)?;
    w.write_all(key.as_bytes())?;
    put_varint(w, c.samples)?;
    put_varint(w, c.weight_ns)
}

enum Entries<'a> {
    Memory(std::collections::btree_map::Iter<'a, String, Count>),
    Merge(Merge),
}

impl Entries<'_> {
    fn next(&mut self) -> io::Result<Option<(String, Count)>> {
        match self {
            Entries::Memory(it) => Ok(it.next().map(|(k, c)| (k.clone(), *c))),
            Entries::Merge(m) => m.next(),
        }
    }
}

/// A k-way merge of sorted runs, summing equal keys.
struct Merge {
    readers: Vec<BufReader<File>>,
    /// The count of each run's current key (the key is in the heap).
    heads: Vec<Count>,
    heap: BinaryHeap<Reverse<(String, usize)>>,
}

impl Merge {
    fn open(paths: &[PathBuf]) -> io::Result<Merge> {
        let mut m = Merge {
            readers: Vec::with_capacity(paths.len()),
            heads: Vec::with_capacity(paths.len()),
            heap: BinaryHeap::new(),
        };
        for (i, p) in paths.iter().enumerate() {
            let f = File::open(p).map_err(|e| spill_error(p, e))?;
            m.readers.push(BufReader::with_capacity(RUN_BUFFER, f));
            m.heads.push(Count::default());
            m.refill(i)?;
        }
        Ok(m)
    }

    fn refill(&mut self, i: usize) -> io::Result<()> {
        let r = &mut self.readers[i];
        let Some(len) = get_varint(r)? else {
            return Ok(());
        };
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidData)?;
        let mut key = vec![0u8; len];
        r.read_exact(&mut key)?;
        let key = String::from_utf8(key).map_err(|_| io::ErrorKind::InvalidData)?;
        let samples = get_varint(r)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        let weight_ns = get_varint(r)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        self.heads[i] = Count { samples, weight_ns };
        self.heap.push(Reverse((key, i)));
        Ok(())
    }

    fn next(&mut self) -> io::Result<Option<(String, Count)>> {
        let Some(Reverse((key, i))) = self.heap.pop() else {
            return Ok(None);
        };
        let mut total = self.heads[i];
        self.refill(i)?;
        while let Some(Reverse((k, j))) = self.heap.peek() {
            if *k != key {
                break;
            }
            let j = *j;
            self.heap.pop();
            total.add(self.heads[j]);
            self.refill(j)?;
        }
        Ok(Some((key, total)))
    }
}

/// Records a `collapsed` or `svg` profile sample by sample in bounded memory (see the module
/// documentation); the output is the same as that format's writer makes of the [`Profile`]
/// built from the same samples with the same options.
///
/// [`Profile`]: strobe_aggregate::Profile
#[derive(Debug)]
pub struct FoldedRecorder {
    svg: bool,
    /// What the numbers count.
    value: Value,
    options: ProfileOptions,
    /// Escaped labels by frame id (frames are never forgotten).
    labels: Vec<Option<String>>,
    /// Colours of the non-Python frames seen (svg).
    palette: Vec<(String, Color)>,
    /// Samples per thread (for the achieved rate).
    per_thread: HashMap<ThreadId, u64>,
    total: Count,
    spool: Spool,
    line: String,
}

impl FoldedRecorder {
    /// Whether `kind` can be recorded this way.
    pub fn supports(kind: FormatKind) -> bool {
        matches!(kind, FormatKind::Collapsed | FormatKind::Svg)
    }

    /// The spill budget: [`SPILL_BYTES_ENV`] if set to a number, else [`DEFAULT_SPILL_BYTES`].
    pub fn budget_from_env() -> usize {
        budget_from_env()
    }

    /// A recorder of `kind` (one [`FoldedRecorder::supports`]) with `options`, spilling to a
    /// directory it creates in `dir` past `budget` bytes of lines.
    pub fn new(
        kind: FormatKind,
        options: ProfileOptions,
        dir: &Path,
        budget: usize,
    ) -> FoldedRecorder {
        FoldedRecorder {
            svg: kind == FormatKind::Svg,
            value: Value::default(),
            options,
            labels: Vec::new(),
            palette: Vec::new(),
            per_thread: HashMap::new(),
            total: Count::default(),
            spool: Spool {
                map: BTreeMap::new(),
                bytes: 0,
                budget,
                dir: SpillDir::new(dir),
                runs: Vec::new(),
                written: 0,
            },
            line: String::new(),
        }
    }

    /// The same recorder, its numbers counting `value` (wall time by default).
    pub fn with_value(mut self, value: Value) -> FoldedRecorder {
        self.value = value;
        self
    }

    /// Counts one sample, whose ids `tables` define.
    pub fn add(&mut self, tables: &Tables, s: &Sample) -> io::Result<()> {
        self.add_count(tables, s.key(), Count::one(s.weight_ns))
    }

    /// Counts every stack of `profile` (a profile of everything, whose counts this recorder's
    /// options then filter and label, folds as the profile's samples would): how `convert`
    /// folded raw recordings before it streamed them, kept as the tests' reference.
    #[cfg(test)]
    pub(crate) fn add_profile(&mut self, profile: &strobe_aggregate::Profile) -> io::Result<()> {
        for sc in &profile.stacks {
            let key = CountKey {
                thread: sc.thread,
                stack: sc.stack,
                flags: sc.flags,
            };
            self.add_count(&profile.tables, key, sc.count)?;
        }
        Ok(())
    }

    /// Counts `count` for the thread, stack and flags of `key`, whose ids `tables` define: a
    /// profile's [`StackCount`](strobe_aggregate::StackCount), or a raw recording's
    /// [`RawEvent`](crate::RawEvent).
    pub fn add_count(&mut self, tables: &Tables, key: CountKey, count: Count) -> io::Result<()> {
        if !self.options.filter.accepts(key.flags) || count.is_zero() {
            return Ok(());
        }
        let sep = if self.svg { TREE_SEP } else { ';' };
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        if self.options.per_thread {
            escape(&thread_label_in(tables, key.thread), &mut line);
        }
        let mut frames = 0usize;
        for fid in tables.stack(key.stack) {
            let Some(f) = tables.frame(*fid) else {
                continue;
            };
            if self.options.hides(f.kind) {
                continue;
            }
            frames += 1;
            if !line.is_empty() {
                line.push(sep);
            }
            let i = fid.index();
            if self.labels.len() <= i {
                self.labels.resize(i + 1, None);
            }
            let slot = &mut self.labels[i];
            let label = match slot {
                Some(l) => l,
                None => {
                    let number = if self.options.by_function {
                        None
                    } else {
                        f.line
                    };
                    let mut l = String::new();
                    escape(&label_of(tables, f, number), &mut l);
                    if self.svg && f.kind != FrameKind::Python {
                        let name = printable(&l);
                        if let Some(c) = kind_colour(f.kind, &name) {
                            self.palette.push((name, c));
                        }
                    }
                    slot.insert(l)
                }
            };
            line.push_str(label);
        }
        let result = if frames == 0 {
            // An empty stack (every frame hidden) is not in a profile.
            Ok(())
        } else {
            self.total.add(count);
            *self.per_thread.entry(key.thread).or_default() += count.samples;
            self.spool.add(&line, count)
        };
        self.line = line;
        result
    }

    /// Everything counted.
    pub fn total(&self) -> Count {
        self.total
    }

    /// How many sorted runs were spilled to disk so far.
    pub fn spilled_runs(&self) -> usize {
        self.spool.written
    }

    /// Writes the profile, with `meta`, in the recorder's format (default options but the
    /// value).
    pub fn write(&mut self, meta: &Metadata, out: &mut dyn Write) -> io::Result<()> {
        self.spool.finish()?;
        let rate = if meta.duration_ns == 0 {
            0.0
        } else {
            let rounds = self.per_thread.values().copied().max().unwrap_or(0);
            rounds as f64 * 1e9 / meta.duration_ns as f64
        };
        if self.svg {
            self.write_svg(meta, rate, out)
        } else {
            let value = self.value;
            let mut w = BufWriter::new(out);
            let mut e = self.spool.entries()?;
            while let Some((k, c)) = e.next()? {
                let v = value.of(c);
                if v > 0 {
                    writeln!(w, "{k} {v}")?;
                }
            }
            w.flush()
        }
    }

    fn write_svg(&self, meta: &Metadata, rate: f64, out: &mut dyn Write) -> io::Result<()> {
        let svg = Svg {
            value: self.value,
            title: None,
        };
        let mut palette = PaletteMap::default();
        for (name, c) in &self.palette {
            palette.insert(name, *c);
        }
        let mut opts = options_for(meta, self.total, rate, svg.value, svg.title.as_deref());
        opts.palette_map = Some(&mut palette);
        // inferno's total: the sum of the lines' values.
        let mut time = 0u64;
        {
            // Its readers and buffers go before the second pass.
            let mut e = self.spool.entries()?;
            while let Some((_, c)) = e.next()? {
                time += svg.value.of(c);
            }
        }
        if time == 0 {
            return empty_svg(&opts.title, "No samples were recorded.", out);
        }
        // Exactly inferno's threshold: a rectangle narrower than this is not drawn.
        let widthpertime_pct = 100.0 / time as f64;
        let minwidth_time = opts.min_width / widthpertime_pct;
        let mut p = Pruner {
            open: Vec::new(),
            out: Vec::new(),
            minwidth_time,
        };
        let mut e = self.spool.entries()?;
        while let Some((k, c)) = e.next()? {
            let v = svg.value.of(c);
            if v > 0 {
                p.line(&k, v);
            }
        }
        let lines = p.finish();
        flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
    }
}

impl Recorder for FoldedRecorder {
    fn add(&mut self, tables: &Tables, s: &Sample) -> io::Result<()> {
        FoldedRecorder::add(self, tables, s)
    }

    fn write(&mut self, meta: &Metadata, out: &mut dyn Write) -> io::Result<()> {
        FoldedRecorder::write(self, meta, out)
    }

    fn spill_note(&self) -> Option<String> {
        let n = self.spilled_runs();
        (n > 0).then(|| {
            format!(
                "the distinct stacks outgrew the memory budget: {n} sorted runs were spilled \
                 to disk and merged into the output"
            )
        })
    }
}

/// An open node of the flamegraph's tree while lines stream by in tree order.
struct Node {
    name: String,
    /// Its total so far.
    sum: u64,
    /// Its own line's value, plus the narrow children that came before any wide one.
    own: u64,
    /// Whether a child wide enough to draw was closed.
    wide_child: bool,
    /// The lines of its children's subtrees after the first wide one, narrow ones collapsed.
    lines: Vec<Line>,
}

/// A line for inferno: frames joined by `;`, and its value.
struct Line {
    text: String,
    value: u64,
    /// For a line standing for a run of narrow siblings: how many nodes are open above them.
    run_at: Option<usize>,
}

/// Gives inferno only the lines that shape what it draws:
/// - the subtree of a node narrower than inferno draws becomes one line for the node;
/// - narrow children that come before a node's first wide child become part of the node's
///   own line (its own time comes first in its range: inferno sorts `a;b 5` before `a;b;c 3`;
///   nothing of theirs was drawn, and the next child starts where it did);
/// - runs of narrow siblings after that (adjacent, nothing wide between them) become one line
///   while the run stays narrower than inferno draws: it takes the first one's place and their
///   width, and is not drawn either.
///
/// inferno never looks at the name of a frame it does not draw.
struct Pruner {
    open: Vec<Node>,
    out: Vec<Line>,
    minwidth_time: f64,
}

impl Pruner {
    /// One distinct line: frames separated by [`TREE_SEP`], in tree order.
    fn line(&mut self, key: &str, v: u64) {
        let frames: Vec<&str> = key.split(TREE_SEP).collect();
        let common = self
            .open
            .iter()
            .zip(&frames)
            .take_while(|(n, f)| n.name == **f)
            .count();
        while self.open.len() > common {
            self.close();
        }
        for f in frames.get(common..).unwrap_or_default() {
            self.open.push(Node {
                name: (*f).to_owned(),
                sum: 0,
                own: 0,
                wide_child: false,
                lines: Vec::new(),
            });
        }
        for n in &mut self.open {
            n.sum += v;
        }
        if let Some(n) = self.open.last_mut() {
            n.own += v;
        }
    }

    fn close(&mut self) {
        let Some(n) = self.open.pop() else { return };
        let level = self.open.len();
        let narrow = (n.sum as f64) < self.minwidth_time;
        let path = |open: &[Node]| {
            let mut path = String::new();
            for o in open {
                path.push_str(&o.name);
                path.push(';');
            }
            path.push_str(&n.name);
            path
        };
        if narrow {
            if let Some(parent) = self.open.last_mut() {
                if !parent.wide_child {
                    parent.own += n.sum;
                    return;
                }
            }
            let text = path(&self.open);
            let minwidth_time = self.minwidth_time;
            let dest = match self.open.last_mut() {
                Some(parent) => &mut parent.lines,
                None => &mut self.out,
            };
            match dest.last_mut() {
                Some(last)
                    if last.run_at == Some(level)
                        && ((last.value + n.sum) as f64) < minwidth_time =>
                {
                    last.value += n.sum;
                }
                _ => dest.push(Line {
                    text,
                    value: n.sum,
                    run_at: Some(level),
                }),
            }
            return;
        }
        let own = (n.own > 0).then(|| Line {
            text: path(&self.open),
            value: n.own,
            run_at: None,
        });
        let dest = match self.open.last_mut() {
            Some(parent) => {
                parent.wide_child = true;
                &mut parent.lines
            }
            None => &mut self.out,
        };
        dest.extend(own);
        dest.extend(n.lines);
    }

    fn finish(mut self) -> Vec<String> {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
            .into_iter()
            .map(|l| format!("{} {}", l.text, l.value))
            .collect()
    }
}

mod dir;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub use dir::remove_stale_spill_dirs;
