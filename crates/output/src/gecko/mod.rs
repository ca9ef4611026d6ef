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

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, Write};

use strobe_aggregate::{FrameId, FrameKind, Profile, SampleFlags, StrId, ThreadId};

use crate::{json, module_name, Format};

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

/// One thread's tables, built as its samples are added.
#[derive(Default)]
struct ThreadTables {
    func_index: HashMap<(StrId, StrId, Option<StrId>, Option<i32>), usize>,
    func_name: Vec<usize>,
    func_file: Vec<usize>,
    /// The function's first line (`funcTable.lineNumber`).
    func_line: Vec<Option<i32>>,
    frame_index: HashMap<(FrameId, Category), usize>,
    frame_func: Vec<usize>,
    frame_category: Vec<Category>,
    frame_line: Vec<Option<i32>>,
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
            let kind = t.frame(fid).map_or(FrameKind::Python, |f| f.kind);
            let category = Category::of(depth + 1 == frames.len(), flags, kind);
            let frame = match self.frame_index.get(&(fid, category)) {
                Some(&i) => i,
                None => {
                    let (name, file, module, line, first_line) = match t.frame(fid) {
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
                                    Some(m) => strings.get(&format!(
                                        "{} ({})",
                                        t.str(name),
                                        module_name(t.str(m))
                                    )),
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
                    self.frame_index.insert((fid, category), i);
                    i
                }
            };
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

fn push_list<T>(
    s: &mut String,
    items: impl IntoIterator<Item = T>,
    mut f: impl FnMut(&mut String, T),
) {
    s.push('[');
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        f(s, x);
    }
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
fn track_name(profile: &Profile, id: ThreadId) -> String {
    match profile.tables.thread(id) {
        Some(th) => {
            let name = th.name.map_or("Thread", |n| profile.tables.str(n));
            let mut s = format!("{name} ({})", th.os_tid);
            if th.interpreter_id != 0 {
                let _ = write!(s, " [interpreter {}]", th.interpreter_id);
            }
            s
        }
        None => format!("Thread #{}", id.0),
    }
}

impl Format for Gecko {
    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
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
        let main_tid = threads
            .keys()
            .filter_map(|id| t.thread(*id).map(|th| th.os_tid))
            .find(|&tid| tid == u64::from(pid))
            .or_else(|| {
                threads
                    .keys()
                    .next()
                    .and_then(|id| t.thread(*id).map(|th| th.os_tid))
            });
        let interval_ms = if meta.rate_requested_hz > 0.0 {
            1000.0 / meta.rate_requested_hz
        } else {
            10.0
        };

        let mut s = String::with_capacity(1 << 16);
        s.push_str("{\"meta\":{");
        let _ = write!(
            s,
            "\"version\":27,\"preprocessedProfileVersion\":{PROCESSED_PROFILE_VERSION},\"interval\":{},\"startTime\":{},\"processType\":0,\"stackwalk\":0,\"debug\":false,\"symbolicated\":true,\"product\":",
            json::number(interval_ms),
            millis(meta.start_unix_ns),
        );
        json::push_str(&mut s, &format!("strobe: {}", meta.target));
        let _ = write!(
            s,
            ",\"profilingStartTime\":0,\"profilingEndTime\":{},\"symbolicationNotSupported\":true,\"usesOnlyOneStackType\":true,\"sourceCodeIsNotOnSearchfox\":true,\"keepProfileThreadOrder\":true",
            millis(meta.duration_ns)
        );
        s.push_str(",\"importedFrom\":");
        json::push_str(&mut s, &format!("strobe {}", meta.strobe_version));
        s.push_str(",\"arguments\":");
        json::push_str(&mut s, &meta.target);
        s.push_str(",\"categories\":");
        push_list(&mut s, Category::ALL, |s, c| {
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
            json::push_str(&mut s, label);
            let _ = write!(s, ",\"format\":\"{format}\",\"value\":{value}}}");
        }
        s.push_str("]}],\"strobe\":{\"target\":");
        json::push_str(&mut s, &meta.target);
        s.push_str(",\"python_version\":");
        match &meta.python_version {
            Some(v) => json::push_str(&mut s, v),
            None => s.push_str("null"),
        }
        let _ = write!(
            s,
            ",\"rate_requested_hz\":{},\"errors\":{},\"dropped\":{},\"synthetic_timeline\":{synthetic},\"strobe_version\":",
            json::number(meta.rate_requested_hz),
            meta.errors,
            meta.dropped
        );
        json::push_str(&mut s, &meta.strobe_version);
        s.push_str("}},\n\"libs\":[],\"counters\":[],\n\"threads\":[");

        for (ti, (id, tt)) in threads.iter().enumerate() {
            if ti > 0 {
                s.push(',');
            }
            let tid = t.thread(*id).map_or(u64::from(id.0), |th| th.os_tid);
            s.push_str("\n{\"name\":");
            json::push_str(&mut s, &track_name(profile, *id));
            s.push_str(",\"processName\":");
            json::push_str(&mut s, &meta.target);
            let _ = write!(
                s,
                ",\"processType\":\"default\",\"processStartupTime\":0,\"processShutdownTime\":null,\"registerTime\":0,\"unregisterTime\":null,\"pausedRanges\":[],\"isMainThread\":{},\"pid\":\"{pid}\",\"tid\":{tid},",
                Some(tid) == main_tid
            );
            s.push_str("\n\"samples\":{\"stack\":");
            push_list(&mut s, &tt.samples, |s, x| {
                let _ = write!(s, "{}", x.1);
            });
            s.push_str(",\"time\":");
            push_list(&mut s, &tt.samples, |s, x| s.push_str(&millis(x.0)));
            s.push_str(",\"weight\":");
            push_list(&mut s, &tt.samples, |s, x| {
                let _ = write!(s, "{}", x.2);
            });
            let _ = write!(
                s,
                ",\"weightType\":\"samples\",\"length\":{}}},",
                tt.samples.len()
            );
            s.push_str("\n\"markers\":{\"data\":[],\"name\":[],\"startTime\":[],\"endTime\":[],\"phase\":[],\"category\":[],\"length\":0},");
            s.push_str("\n\"stackTable\":{\"frame\":");
            push_list(&mut s, &tt.stack_frame, |s, x| {
                let _ = write!(s, "{x}");
            });
            s.push_str(",\"prefix\":");
            push_list(&mut s, &tt.stack_prefix, |s, x| push_opt(s, *x));
            let _ = write!(s, ",\"length\":{}}},", tt.stack_frame.len());
            let nf = tt.frame_func.len();
            s.push_str("\n\"frameTable\":{\"address\":");
            push_list(&mut s, 0..nf, |s, _| s.push_str("-1"));
            s.push_str(",\"inlineDepth\":");
            push_list(&mut s, 0..nf, |s, _| s.push('0'));
            s.push_str(",\"category\":");
            push_list(&mut s, &tt.frame_category, |s, c| {
                let _ = write!(s, "{}", *c as u8);
            });
            s.push_str(",\"subcategory\":");
            push_list(&mut s, 0..nf, |s, _| s.push('0'));
            s.push_str(",\"func\":");
            push_list(&mut s, &tt.frame_func, |s, x| {
                let _ = write!(s, "{x}");
            });
            s.push_str(",\"nativeSymbol\":");
            push_list(&mut s, 0..nf, |s, _| s.push_str("null"));
            s.push_str(",\"innerWindowID\":");
            push_list(&mut s, 0..nf, |s, _| s.push('0'));
            s.push_str(",\"line\":");
            push_list(&mut s, &tt.frame_line, |s, x| push_opt(s, *x));
            s.push_str(",\"column\":");
            push_list(&mut s, 0..nf, |s, _| s.push_str("null"));
            let _ = write!(s, ",\"length\":{nf}}},");
            let nfn = tt.func_name.len();
            s.push_str("\n\"funcTable\":{\"name\":");
            push_list(&mut s, &tt.func_name, |s, x| {
                let _ = write!(s, "{x}");
            });
            s.push_str(",\"isJS\":");
            push_list(&mut s, 0..nfn, |s, _| s.push_str("true"));
            s.push_str(",\"relevantForJS\":");
            push_list(&mut s, 0..nfn, |s, _| s.push_str("false"));
            s.push_str(",\"resource\":");
            push_list(&mut s, 0..nfn, |s, _| s.push_str("-1"));
            s.push_str(",\"fileName\":");
            push_list(&mut s, &tt.func_file, |s, x| {
                let _ = write!(s, "{x}");
            });
            s.push_str(",\"lineNumber\":");
            push_list(&mut s, &tt.func_line, |s, x| push_opt(s, *x));
            s.push_str(",\"columnNumber\":");
            push_list(&mut s, 0..nfn, |s, _| s.push_str("null"));
            let _ = write!(s, ",\"length\":{nfn}}},");
            s.push_str("\n\"resourceTable\":{\"lib\":[],\"name\":[],\"host\":[],\"type\":[],\"length\":0},");
            s.push_str("\n\"nativeSymbols\":{\"libIndex\":[],\"address\":[],\"name\":[],\"functionSize\":[],\"length\":0}}");
            if s.len() > 1 << 20 {
                out.write_all(s.as_bytes())?;
                s.clear();
            }
        }
        s.push_str("],\n\"shared\":{\"stringArray\":");
        push_list(&mut s, &strings.list, |s, x| json::push_str(s, x));
        s.push_str("}}\n");
        out.write_all(s.as_bytes())
    }
}
