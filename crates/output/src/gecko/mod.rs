//! The Firefox Profiler's "processed profile" JSON (`profiler.firefox.com` loads it directly and
//! upgrades it to its current version), written as `preprocessedProfileVersion` 56: the string
//! table shared by all threads at `shared.stringArray`, stack nodes without their own category
//! (a node takes its frame's category), frames without an `implementation` column, and
//! `funcTable.fileName` (version 58 moved file names to a shared sources table; the front end's
//! upgrader converts).
//!
//! One thread (track) per profiled thread, named `name (tid)` after its `threading` name. Every
//! sample keeps its timestamp (`samples.time`, ms since `meta.startTime`) and counts once
//! (`weight`, `weightType: "samples"`). Without a timeline the aggregated stacks are laid end to
//! end per thread, one sample each weighted by its sample count, and `meta.extra` says so.
//!
//! Frames carry their line (`frameTable.line`), functions their file (`funcTable.fileName`)
//! and first line (`funcTable.lineNumber`, `null` where unknown).
//! Categories colour Python frames, native (and kernel) frames, GC and idle samples apart: the
//! leaf frame of an idle sample is in the Idle category, so the sample is too. A native
//! function is named with its shared object (`qsort (libc.so.6)`), its file is the DWARF
//! source file where there is one.
//!
//! [`GeckoRecorder`] writes the same from a stream of samples (see `stream.rs`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, Write};

use strobe_aggregate::{
    Frame, FrameId, FrameKind, Metadata, Profile, SampleFlags, StrId, Tables, ThreadId,
};

use crate::{json, module_name, Format};

mod stream;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub(crate) use stream::GeckoRecorder;

/// The `gecko` format (Firefox Profiler).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gecko;

/// The processed-profile version written (see the module docs for what it implies).
pub const PROCESSED_PROFILE_VERSION: u32 = 56;

/// The categories of `meta.categories`, in index order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Category {
    /// The default category (the format requires a grey one): nothing is put in it.
    Other = 0,
    /// Python frames.
    Python = 1,
    /// Native (C, C++, Rust) and kernel frames (`--native`).
    Native = 2,
    /// Garbage collection: the `<GC>` frame ([`FrameKind::Interpreter`]).
    Gc = 3,
    /// The leaf of samples of threads that were not running.
    Idle = 4,
    /// An exception being raised or handled: the `<raise T>` frame
    /// ([`FrameKind::Exception`]).
    Exception = 5,
}

impl Category {
    const ALL: [Category; 6] = [
        Category::Other,
        Category::Python,
        Category::Native,
        Category::Gc,
        Category::Idle,
        Category::Exception,
    ];

    fn name(self) -> &'static str {
        match self {
            Category::Other => "Other",
            Category::Python => "Python",
            Category::Native => "Native",
            Category::Gc => "GC",
            Category::Idle => "Idle",
            Category::Exception => "Exception",
        }
    }

    /// One of the colour names the front end knows.
    fn color(self) -> &'static str {
        match self {
            Category::Other => "grey",
            Category::Python => "blue",
            Category::Native => "orange",
            Category::Gc => "yellow",
            Category::Idle => "transparent",
            Category::Exception => "red",
        }
    }

    /// The category of a frame: the leaf of an idle sample is Idle, `<GC>` GC, `<raise T>`
    /// Exception, native and kernel frames Native, every other frame Python.
    fn of(is_leaf: bool, flags: SampleFlags, kind: FrameKind) -> Category {
        if is_leaf && flags.idle() {
            Category::Idle
        } else if kind == FrameKind::Python {
            Category::Python
        } else if kind == FrameKind::Interpreter {
            Category::Gc
        } else if kind == FrameKind::Exception {
            Category::Exception
        } else {
            Category::Native
        }
    }
}

/// The string table shared by all threads.
#[derive(Default)]
struct Strings {
    index: HashMap<String, usize>,
    list: Vec<String>,
}

impl Strings {
    fn get(&mut self, s: &str) -> usize {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len();
        self.list.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// One thread's functions and frames (as many as distinct frames, times categories).
#[derive(Default)]
struct FuncFrames {
    func_index: HashMap<(StrId, StrId, Option<StrId>, Option<i32>), usize>,
    func_name: Vec<usize>,
    func_file: Vec<usize>,
    /// The function's first line (`funcTable.lineNumber`).
    func_line: Vec<Option<i32>>,
    frame_index: HashMap<(u32, Category), usize>,
    frame_func: Vec<usize>,
    frame_category: Vec<Category>,
    frame_line: Vec<Option<i32>>,
}

impl FuncFrames {
    /// The frame table index of the frame numbered `key` (frame `f` of tables `t`, if known)
    /// in `category`.
    fn frame(
        &mut self,
        strings: &mut Strings,
        t: &Tables,
        key: u32,
        f: Option<&Frame>,
        category: Category,
    ) -> usize {
        if let Some(&i) = self.frame_index.get(&(key, category)) {
            return i;
        }
        let (name, file, module, line, first_line) = match f {
            Some(f) => (f.function, f.filename, f.module, f.line, f.first_line),
            None => (StrId(u32::MAX), StrId(u32::MAX), None, None, None),
        };
        let func_key = (name, file, module, first_line);
        let func = match self.func_index.get(&func_key) {
            Some(&i) => i,
            None => {
                let i = self.func_name.len();
                let (n, f) = if name.0 == u32::MAX {
                    (strings.get("<unknown frame>"), strings.get(""))
                } else {
                    // A native function is named with its shared object.
                    let n = match module {
                        Some(m) => {
                            strings.get(&format!("{} ({})", t.str(name), module_name(t.str(m))))
                        }
                        None => strings.get(t.str(name)),
                    };
                    (n, strings.get(t.str(file)))
                };
                self.func_name.push(n);
                self.func_file.push(f);
                self.func_line.push(first_line);
                self.func_index.insert(func_key, i);
                i
            }
        };
        let i = self.frame_func.len();
        self.frame_func.push(func);
        self.frame_category.push(category);
        self.frame_line.push(line);
        self.frame_index.insert((key, category), i);
        i
    }
}

/// One thread's tables, built as its samples are added.
#[derive(Default)]
struct ThreadTables {
    ff: FuncFrames,
    stack_index: HashMap<(Option<usize>, usize), usize>,
    stack_frame: Vec<usize>,
    stack_prefix: Vec<Option<usize>>,
    /// (time ns, stack index, weight).
    samples: Vec<(u64, usize, u64)>,
}

impl ThreadTables {
    fn add(
        &mut self,
        profile: &Profile,
        strings: &mut Strings,
        frames: &[FrameId],
        flags: SampleFlags,
        time_ns: u64,
        weight: u64,
    ) {
        let t = &profile.tables;
        let mut prefix: Option<usize> = None;
        for (depth, &fid) in frames.iter().enumerate() {
            let f = t.frame(fid);
            let kind = f.map_or(FrameKind::Python, |f| f.kind);
            let category = Category::of(depth + 1 == frames.len(), flags, kind);
            let frame = self.ff.frame(strings, t, fid.0, f, category);
            let stack = *self.stack_index.entry((prefix, frame)).or_insert_with(|| {
                self.stack_frame.push(frame);
                self.stack_prefix.push(prefix);
                self.stack_frame.len() - 1
            });
            prefix = Some(stack);
        }
        if let Some(stack) = prefix {
            self.samples.push((time_ns, stack, weight));
        }
    }
}

/// Nanoseconds as milliseconds with six decimals, exactly.
fn millis(ns: u64) -> String {
    format!("{}.{:06}", ns / 1_000_000, ns % 1_000_000)
}

fn push_list<T>(s: &mut String, items: impl IntoIterator<Item = T>, f: impl FnMut(&mut String, T)) {
    s.push('[');
    push_items(s, items, f);
    s.push(']');
}

fn push_opt(s: &mut String, x: Option<impl std::fmt::Display>) {
    match x {
        Some(v) => {
            let _ = write!(s, "{v}");
        }
        None => s.push_str("null"),
    }
}

/// `name (tid)`, `Thread (tid)` without a name, plus the interpreter when not the main one.
fn track_name(t: &Tables, id: ThreadId) -> String {
    match t.thread(id) {
        Some(th) => {
            let name = th.name.map_or("Thread", |n| t.str(n));
            let mut s = format!("{name} ({})", th.os_tid);
            if th.interpreter_id != 0 {
                let _ = write!(s, " [interpreter {}]", th.interpreter_id);
            }
            s
        }
        None => format!("Thread #{}", id.0),
    }
}

/// The thread marked as the main one: the one whose id is the process's, else the first.
fn main_tid(pid: u32, tids: impl Iterator<Item = u64> + Clone) -> Option<u64> {
    let mut all = tids.clone();
    tids.into_iter()
        .find(|&tid| tid == u64::from(pid))
        .or_else(|| all.next())
}

/// Everything before the threads.
fn push_meta(s: &mut String, meta: &Metadata, synthetic: bool) {
    let interval_ms = if meta.rate_requested_hz > 0.0 {
        1000.0 / meta.rate_requested_hz
    } else {
        10.0
    };
    s.push_str("{\"meta\":{");
    let _ = write!(
        s,
        "\"version\":27,\"preprocessedProfileVersion\":{PROCESSED_PROFILE_VERSION},\"interval\":{},\"startTime\":{},\"processType\":0,\"stackwalk\":0,\"debug\":false,\"symbolicated\":true,\"product\":",
        json::number(interval_ms),
        millis(meta.start_unix_ns),
    );
    json::push_str(s, &format!("strobe: {}", meta.target));
    let _ = write!(
        s,
        ",\"profilingStartTime\":0,\"profilingEndTime\":{},\"symbolicationNotSupported\":true,\"usesOnlyOneStackType\":true,\"sourceCodeIsNotOnSearchfox\":true,\"keepProfileThreadOrder\":true",
        millis(meta.duration_ns)
    );
    s.push_str(",\"importedFrom\":");
    json::push_str(s, &format!("strobe {}", meta.strobe_version));
    s.push_str(",\"arguments\":");
    json::push_str(s, &meta.target);
    s.push_str(",\"categories\":");
    push_list(s, Category::ALL, |s, c| {
        s.push_str("{\"name\":");
        json::push_str(s, c.name());
        s.push_str(",\"color\":");
        json::push_str(s, c.color());
        s.push_str(",\"subcategories\":[\"Other\"]}");
    });
    s.push_str(",\"markerSchema\":[],\"extra\":[{\"label\":\"Recording\",\"entries\":[");
    let mut entries: Vec<(&str, &str, String)> = vec![
        ("Target", "string", json::string(&meta.target)),
        (
            "Python version",
            "string",
            json::string(meta.python_version.as_deref().unwrap_or("unknown")),
        ),
        (
            "Requested rate (Hz)",
            "string",
            json::string(&json::number(meta.rate_requested_hz)),
        ),
        ("Duration", "milliseconds", millis(meta.duration_ns)),
        ("Errors", "integer", meta.errors.to_string()),
        ("Dropped", "integer", meta.dropped.to_string()),
        (
            "Recorded by",
            "string",
            json::string(&format!("strobe {}", meta.strobe_version)),
        ),
    ];
    if synthetic {
        entries.push((
            "Timeline",
            "string",
            json::string("synthetic: aggregated stacks laid end to end"),
        ));
    }
    for (i, (label, format, value)) in entries.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"label\":");
        json::push_str(s, label);
        let _ = write!(s, ",\"format\":\"{format}\",\"value\":{value}}}");
    }
    s.push_str("]}],\"strobe\":{\"target\":");
    json::push_str(s, &meta.target);
    s.push_str(",\"python_version\":");
    match &meta.python_version {
        Some(v) => json::push_str(s, v),
        None => s.push_str("null"),
    }
    let _ = write!(
        s,
        ",\"rate_requested_hz\":{},\"errors\":{},\"dropped\":{},\"synthetic_timeline\":{synthetic},\"strobe_version\":",
        json::number(meta.rate_requested_hz),
        meta.errors,
        meta.dropped
    );
    json::push_str(s, &meta.strobe_version);
    s.push_str("}},\n\"libs\":[],\"counters\":[],\n\"threads\":[");
}

/// After the threads: the shared string table.
fn push_end(s: &mut String, strings: &Strings) {
    s.push_str("],\n\"shared\":{\"stringArray\":");
    push_list(s, &strings.list, |s, x| json::push_str(s, x));
    s.push_str("}}\n");
}

/// The lists of a thread that grow with its samples, written by the caller as JSON array
/// bodies.
#[derive(Debug, Clone, Copy)]
enum List {
    SampleStack = 0,
    SampleTime = 1,
    SampleWeight = 2,
    StackFrame = 3,
    StackPrefix = 4,
}

/// How a thread is shown.
struct ThreadHead<'a> {
    name: &'a str,
    tid: u64,
    is_main: bool,
    samples: usize,
    stacks: usize,
}

/// Thread `head` with functions and frames `ff`; `list` writes each [`List`]'s elements.
fn write_thread(
    out: &mut dyn Write,
    meta: &Metadata,
    head: &ThreadHead<'_>,
    ff: &FuncFrames,
    list: &mut dyn FnMut(List, &mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let pid = meta.pid.unwrap_or(0);
    let mut s = String::with_capacity(4096);
    s.push_str("\n{\"name\":");
    json::push_str(&mut s, head.name);
    s.push_str(",\"processName\":");
    json::push_str(&mut s, &meta.target);
    let _ = write!(
        s,
        ",\"processType\":\"default\",\"processStartupTime\":0,\"processShutdownTime\":null,\"registerTime\":0,\"unregisterTime\":null,\"pausedRanges\":[],\"isMainThread\":{},\"pid\":\"{pid}\",\"tid\":{},",
        head.is_main, head.tid
    );
    s.push_str("\n\"samples\":{\"stack\":[");
    out.write_all(s.as_bytes())?;
    list(List::SampleStack, out)?;
    out.write_all(b"],\"time\":[")?;
    list(List::SampleTime, out)?;
    out.write_all(b"],\"weight\":[")?;
    list(List::SampleWeight, out)?;
    s.clear();
    let _ = write!(
        s,
        "],\"weightType\":\"samples\",\"length\":{}}},",
        head.samples
    );
    s.push_str("\n\"markers\":{\"data\":[],\"name\":[],\"startTime\":[],\"endTime\":[],\"phase\":[],\"category\":[],\"length\":0},");
    s.push_str("\n\"stackTable\":{\"frame\":[");
    out.write_all(s.as_bytes())?;
    list(List::StackFrame, out)?;
    out.write_all(b"],\"prefix\":[")?;
    list(List::StackPrefix, out)?;
    s.clear();
    let _ = write!(s, "],\"length\":{}}},", head.stacks);
    push_func_frames(&mut s, ff);
    s.push_str(
        "\n\"resourceTable\":{\"lib\":[],\"name\":[],\"host\":[],\"type\":[],\"length\":0},",
    );
    s.push_str("\n\"nativeSymbols\":{\"libIndex\":[],\"address\":[],\"name\":[],\"functionSize\":[],\"length\":0}}");
    out.write_all(s.as_bytes())
}

/// A thread's `frameTable` and `funcTable`.
fn push_func_frames(s: &mut String, ff: &FuncFrames) {
    let nf = ff.frame_func.len();
    s.push_str("\n\"frameTable\":{\"address\":");
    push_list(s, 0..nf, |s, _| s.push_str("-1"));
    s.push_str(",\"inlineDepth\":");
    push_list(s, 0..nf, |s, _| s.push('0'));
    s.push_str(",\"category\":");
    push_list(s, &ff.frame_category, |s, c| {
        let _ = write!(s, "{}", *c as u8);
    });
    s.push_str(",\"subcategory\":");
    push_list(s, 0..nf, |s, _| s.push('0'));
    s.push_str(",\"func\":");
    push_list(s, &ff.frame_func, |s, x| {
        let _ = write!(s, "{x}");
    });
    s.push_str(",\"nativeSymbol\":");
    push_list(s, 0..nf, |s, _| s.push_str("null"));
    s.push_str(",\"innerWindowID\":");
    push_list(s, 0..nf, |s, _| s.push('0'));
    s.push_str(",\"line\":");
    push_list(s, &ff.frame_line, |s, x| push_opt(s, *x));
    s.push_str(",\"column\":");
    push_list(s, 0..nf, |s, _| s.push_str("null"));
    let _ = write!(s, ",\"length\":{nf}}},");
    let nfn = ff.func_name.len();
    s.push_str("\n\"funcTable\":{\"name\":");
    push_list(s, &ff.func_name, |s, x| {
        let _ = write!(s, "{x}");
    });
    s.push_str(",\"isJS\":");
    push_list(s, 0..nfn, |s, _| s.push_str("true"));
    s.push_str(",\"relevantForJS\":");
    push_list(s, 0..nfn, |s, _| s.push_str("false"));
    s.push_str(",\"resource\":");
    push_list(s, 0..nfn, |s, _| s.push_str("-1"));
    s.push_str(",\"fileName\":");
    push_list(s, &ff.func_file, |s, x| {
        let _ = write!(s, "{x}");
    });
    s.push_str(",\"lineNumber\":");
    push_list(s, &ff.func_line, |s, x| push_opt(s, *x));
    s.push_str(",\"columnNumber\":");
    push_list(s, 0..nfn, |s, _| s.push_str("null"));
    let _ = write!(s, ",\"length\":{nfn}}},");
}

/// The elements of `items`, comma-separated, each written by `f`.
fn push_items<T>(
    s: &mut String,
    items: impl IntoIterator<Item = T>,
    mut f: impl FnMut(&mut String, T),
) {
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        f(s, x);
    }
}

impl Format for Gecko {
    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let mut out = io::BufWriter::with_capacity(64 << 10, out);
        let out: &mut dyn Write = &mut out;
        let t = &profile.tables;
        let meta = &profile.meta;
        let synthetic = profile.timeline.is_empty();
        let mut strings = Strings::default();
        let mut threads: BTreeMap<ThreadId, ThreadTables> = BTreeMap::new();
        if synthetic {
            let mut clock: BTreeMap<ThreadId, u64> = BTreeMap::new();
            for sc in &profile.stacks {
                let now = clock.entry(sc.thread).or_default();
                let at = *now;
                *now = now.saturating_add(sc.count.weight_ns);
                threads.entry(sc.thread).or_default().add(
                    profile,
                    &mut strings,
                    t.stack(sc.stack),
                    sc.flags,
                    at,
                    sc.count.samples,
                );
            }
        } else {
            let mut order: Vec<usize> = (0..profile.timeline.len()).collect();
            order.sort_by_key(|&i| {
                let s = &profile.timeline[i];
                (s.thread, s.timestamp_ns, i)
            });
            for i in order {
                let s = &profile.timeline[i];
                threads.entry(s.thread).or_default().add(
                    profile,
                    &mut strings,
                    t.stack(s.stack),
                    s.flags,
                    s.timestamp_ns,
                    1,
                );
            }
        }

        let pid = meta.pid.unwrap_or(0);
        let tids = threads
            .keys()
            .filter_map(|id| t.thread(*id).map(|th| th.os_tid));
        let main_tid = main_tid(pid, tids);
        let mut s = String::with_capacity(1 << 16);
        push_meta(&mut s, meta, synthetic);
        out.write_all(s.as_bytes())?;
        for (ti, (id, tt)) in threads.iter().enumerate() {
            if ti > 0 {
                out.write_all(b",")?;
            }
            let tid = t.thread(*id).map_or(u64::from(id.0), |th| th.os_tid);
            let head = ThreadHead {
                name: &track_name(t, *id),
                tid,
                is_main: Some(tid) == main_tid,
                samples: tt.samples.len(),
                stacks: tt.stack_frame.len(),
            };
            write_thread(out, meta, &head, &tt.ff, &mut |which, out| {
                let mut s = String::new();
                match which {
                    List::SampleStack => push_items(&mut s, &tt.samples, |s, x| {
                        let _ = write!(s, "{}", x.1);
                    }),
                    List::SampleTime => {
                        push_items(&mut s, &tt.samples, |s, x| s.push_str(&millis(x.0)))
                    }
                    List::SampleWeight => push_items(&mut s, &tt.samples, |s, x| {
                        let _ = write!(s, "{}", x.2);
                    }),
                    List::StackFrame => push_items(&mut s, &tt.stack_frame, |s, x| {
                        let _ = write!(s, "{x}");
                    }),
                    List::StackPrefix => {
                        push_items(&mut s, &tt.stack_prefix, |s, x| push_opt(s, *x))
                    }
                }
                out.write_all(s.as_bytes())
            })?;
        }
        s.clear();
        push_end(&mut s, &strings);
        out.write_all(s.as_bytes())?;
        out.flush()
    }
}
