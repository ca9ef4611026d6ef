//! Rendering a [`Snapshot`] as text or JSON.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use strobe_target::snapshot::{
    AsyncDump, FrameKind, FrameSnapshot, Snapshot, TaskSnapshot, ThreadSnapshot, ThreadState,
};

/// Write the human-readable form:
///
/// ```text
/// Process 123: /usr/bin/python3.11 (CPython 3.11.2)
///
/// Thread 124 "worker" (idle)
///     run_job (/srv/app.py:12)
/// ```
///
/// With native frames, those are marked so they stand apart from Python's:
///
/// ```text
/// Thread 125 (idle)
///   [kernel] [syscall]
///   [native] __GI___libc_read (libc.so.6) [../sysdeps/unix/sysv/linux/read.c:26]
///     wait_here (/srv/app.py:7)
///   [native] msort_with_tmp+0x2e1 (libc.so.6)
/// ```
///
/// The interpreter id is shown only when threads of more than one interpreter are present.
pub fn write_text<W: Write>(out: &mut W, snap: &Snapshot) -> io::Result<()> {
    let exe = snap
        .executable
        .as_deref()
        .unwrap_or(snap.python.binary.as_str());
    let mut flavour = String::new();
    if snap.python.free_threaded {
        flavour.push_str(", free-threaded");
    }
    if snap.python.debug_build {
        flavour.push_str(", debug build");
    }
    writeln!(
        out,
        "Process {}: {} (CPython {}{})",
        snap.pid, exe, snap.python.version, flavour
    )?;
    let multi_interp = snap
        .threads
        .iter()
        .any(|t| t.interpreter_id != snap.threads[0].interpreter_id);
    for thread in &snap.threads {
        writeln!(out)?;
        writeln!(out, "{}", thread_header(thread, multi_interp))?;
        if thread.frames.is_empty() {
            writeln!(out, "    (no Python frames)")?;
        }
        for frame in &thread.frames {
            writeln!(out, "{}", frame_line(frame))?;
            write_locals(out, frame)?;
        }
        if let Some(why) = &thread.native_error {
            writeln!(out, "    (no native frames: {why})")?;
        }
        if thread.truncated {
            writeln!(out, "    ... (deeper frames not shown)")?;
        }
    }
    out.flush()
}

/// A Python frame's locals (`dump --locals`), one per line under the frame:
///
/// ```text
///     handle (/srv/app.py:12)
///         request (arg) = <Request object at 0x7f3a2c1b2d30>
///         retries (local) = 3
///         body (local) = <unbound>
/// ```
fn write_locals<W: Write>(out: &mut W, frame: &FrameSnapshot) -> io::Result<()> {
    if let Some(why) = &frame.locals_error {
        writeln!(out, "        ({why})")?;
    }
    for local in frame.locals.iter().flatten() {
        writeln!(
            out,
            "        {} ({}) = {}",
            local.name,
            local.kind.as_str(),
            local.repr
        )?;
    }
    Ok(())
}

/// One frame's line: `    function (file:line)` for Python; native and kernel frames are
/// prefixed `  [native] ` / `  [kernel] ` and show `symbol (module) [file:line]`.
fn frame_line(frame: &FrameSnapshot) -> String {
    match frame.kind {
        FrameKind::Python => match frame.line {
            Some(line) => format!("    {} ({}:{})", frame.function, frame.filename, line),
            None => format!("    {} ({})", frame.function, frame.filename),
        },
        FrameKind::Kernel => format!("  [kernel] {}", frame.function),
        FrameKind::Native => {
            let mut text = format!("  [native] {}", frame.function);
            let info = frame.native.as_ref();
            if let Some(off) = info.and_then(|n| n.symbol_offset) {
                text.push_str(&format!("+{off:#x}"));
            }
            if let Some(module) = info.and_then(|n| n.module.as_deref()) {
                let short = module.rsplit('/').next().unwrap_or(module);
                text.push_str(&format!(" ({short})"));
            }
            if !frame.filename.is_empty() {
                match frame.line {
                    Some(line) => text.push_str(&format!(" [{}:{line}]", frame.filename)),
                    None => text.push_str(&format!(" [{}]", frame.filename)),
                }
            }
            if info.is_some_and(|n| n.inlined) {
                text.push_str(" (inlined)");
            }
            text
        }
    }
}

/// `Thread 12345 "MainThread" (holds GIL, running)`; the id is the kernel thread id, or the
/// `pthread_t` in hex when the kernel id is unknown. For a target in another PID namespace (a
/// container) the id is strobe's (the host's, as `top -H` shows it) followed by the target's:
/// `Thread 12345 (7 in its PID namespace) ...`.
fn thread_header(thread: &ThreadSnapshot, show_interp: bool) -> String {
    let id = match (thread.host_native_id, thread.native_id) {
        (Some(host), Some(inner)) if host != inner => {
            format!("{host} ({inner} in its PID namespace)")
        }
        (_, Some(tid)) => tid.to_string(),
        (Some(host), None) => host.to_string(),
        (None, None) => format!("{:#x}", thread.thread_id),
    };
    let mut header = format!("Thread {id}");
    if let Some(name) = &thread.name {
        header.push_str(&format!(" {name:?}"));
    }
    let mut flags = Vec::new();
    if thread.holds_gil == Some(true) {
        flags.push("holds GIL");
    }
    flags.push(match thread.state {
        ThreadState::Running => "running",
        ThreadState::Idle => "idle",
        ThreadState::Unknown => "state unknown",
    });
    let exception = thread
        .exception
        .as_ref()
        .map(|e| format!("{} {}", e.state, e.type_name));
    flags.extend(exception.as_deref());
    header.push_str(&format!(" ({})", flags.join(", ")));
    if show_interp {
        header.push_str(&format!(" [interpreter {}]", thread.interpreter_id));
    }
    header
}

/// Write the snapshot as one pretty-printed JSON document followed by a newline.
pub fn write_json<W: Write>(out: &mut W, snap: &Snapshot) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, snap).map_err(io::Error::from)?;
    writeln!(out)?;
    out.flush()
}

/// Write `dump --async` as one pretty-printed JSON document followed by a newline.
pub fn write_async_json<W: Write>(out: &mut W, dump: &AsyncDump) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, dump).map_err(io::Error::from)?;
    writeln!(out)?;
    out.flush()
}

/// Write `dump --async` as text: per event loop, its tasks as a tree of who awaits whom (a
/// task under the task that awaits it, as `python -m asyncio pstree` draws it), each with its
/// coroutine stack innermost first and what it waits on:
///
/// ```text
/// Event loop 0x7f.. (_UnixSelectorEventLoop), running in thread 1401
/// └── Task 'main' (running) [0x7f..]
///       main (/srv/app.py:30)
///     └── Task 'sleeper' (pending) [0x7f..]
///           sleep (/usr/lib/python3.14/asyncio/tasks.py:718)
///           sleeper (/srv/app.py:12)
///           waits on <_asyncio.Future object at 0x7f..>
/// ```
///
/// A task awaited by several tasks is drawn in full under the first, and named under the
/// others. Cycles of tasks awaiting each other are listed at the end.
pub fn write_async_text<W: Write>(out: &mut W, dump: &AsyncDump) -> io::Result<()> {
    let exe = dump
        .executable
        .as_deref()
        .unwrap_or(dump.python.binary.as_str());
    writeln!(
        out,
        "Process {}: {} (CPython {})",
        dump.pid, exe, dump.python.version
    )?;
    let names: HashMap<&str, &str> = dump
        .asyncio
        .loops
        .iter()
        .flat_map(|l| &l.tasks)
        .map(|t| (t.id.as_str(), t.name.as_str()))
        .collect();
    if dump.asyncio.loops.is_empty() {
        writeln!(out)?;
        writeln!(out, "No event loop is running and no asyncio task exists.")?;
    }
    for l in &dump.asyncio.loops {
        writeln!(out)?;
        let mut header = format!("Event loop {}", l.id);
        if let Some(t) = &l.type_name {
            header.push_str(&format!(" ({t})"));
        }
        match l.running_in_thread {
            Some(thread) => header.push_str(&format!(", running in thread {thread}")),
            None => header.push_str(", not running"),
        }
        writeln!(out, "{header}")?;
        if l.tasks.is_empty() {
            writeln!(out, "    (no tasks)")?;
        }
        let ids: HashSet<&str> = l.tasks.iter().map(|t| t.id.as_str()).collect();
        let is_root = |t: &TaskSnapshot| !t.awaited_by.iter().any(|p| ids.contains(p.as_str()));
        // Top level: the tasks nobody awaits, then one task of each group awaited only from
        // inside itself (a cycle), so that every task is drawn.
        let mut top: Vec<&TaskSnapshot> = l.tasks.iter().filter(|t| is_root(t)).collect();
        // The tasks each task awaits: those naming it in their `awaited_by`.
        let mut children: Children = HashMap::new();
        for t in &l.tasks {
            for p in &t.awaited_by {
                children.entry(p.as_str()).or_default().push(t);
            }
        }
        let mut reached: HashSet<&str> = HashSet::new();
        for t in &top {
            reach(&children, t, &mut reached);
        }
        for t in &l.tasks {
            if !reached.contains(t.id.as_str()) {
                reach(&children, t, &mut reached);
                top.push(t);
            }
        }
        let mut drawn = HashSet::new();
        let n = top.len();
        for (i, t) in top.into_iter().enumerate() {
            write_task(out, &children, t, "", i + 1 == n, &mut drawn, &names)?;
        }
    }
    if !dump.asyncio.cycles.is_empty() {
        writeln!(out)?;
        writeln!(out, "Cycles (tasks awaiting each other, a deadlock):")?;
        for c in &dump.asyncio.cycles {
            let mut names: Vec<String> = c
                .iter()
                .map(|id| format!("'{}'", names.get(id.as_str()).copied().unwrap_or(id)))
                .collect();
            if let Some(first) = names.first().cloned() {
                names.push(first);
            }
            writeln!(out, "    {}", names.join(" -> "))?;
        }
    }
    out.flush()
}

/// One task, its stack, and below it the tasks it awaits (those naming it in their
/// `awaited_by`).
fn write_task<'a, W: Write>(
    out: &mut W,
    children: &Children<'a>,
    t: &'a TaskSnapshot,
    prefix: &str,
    last: bool,
    drawn: &mut HashSet<&'a str>,
    names: &HashMap<&str, &str>,
) -> io::Result<()> {
    let branch = if last { "└── " } else { "├── " };
    let again = !drawn.insert(t.id.as_str());
    if again {
        return writeln!(
            out,
            "{prefix}{branch}Task '{}' [{}] (shown above)",
            t.name, t.id
        );
    }
    writeln!(
        out,
        "{prefix}{branch}Task '{}' ({}) [{}]",
        t.name, t.state, t.id
    )?;
    let inner = format!("{prefix}{}", if last { "    " } else { "│   " });
    if let Some(why) = &t.error {
        writeln!(out, "{inner}  (unreadable: {why})")?;
    }
    for f in t.stack.iter().rev() {
        let line = f.line.map_or("?".to_string(), |n| n.to_string());
        writeln!(out, "{inner}  {} ({}:{})", f.function, f.filename, line)?;
    }
    if t.stack_truncated {
        writeln!(out, "{inner}  ... (longer chain of awaits not shown)")?;
    }
    if let Some(w) = t.waiter.as_ref().or(t.awaits.as_ref()) {
        match w.task.as_deref() {
            Some(id) => writeln!(
                out,
                "{inner}  waits on Task '{}' [{id}]",
                names.get(id).copied().unwrap_or(id)
            )?,
            None => match &t.sleep {
                Some(delay) => {
                    writeln!(out, "{inner}  waits on asyncio.sleep({delay}): {}", w.repr)?
                }
                None => writeln!(out, "{inner}  waits on {}", w.repr)?,
            },
        }
    }
    let below = children
        .get(t.id.as_str())
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !below.is_empty() && inner.chars().count() / 4 >= MAX_TREE_DEPTH {
        return writeln!(out, "{inner}... (tasks awaited deeper not shown)");
    }
    let n = below.len();
    for (i, c) in below.iter().enumerate() {
        write_task(out, children, c, &inner, i + 1 == n, drawn, names)?;
    }
    Ok(())
}

/// Mark `t` and every task below it (awaited by it, transitively) as reached.
fn reach<'a>(children: &Children<'a>, t: &'a TaskSnapshot, reached: &mut HashSet<&'a str>) {
    let mut todo = vec![t];
    while let Some(t) = todo.pop() {
        if reached.insert(t.id.as_str()) {
            todo.extend(children.get(t.id.as_str()).into_iter().flatten());
        }
    }
}

/// The tasks each task (by id) awaits.
type Children<'a> = HashMap<&'a str, Vec<&'a TaskSnapshot>>;

/// Deepest level of the task tree drawn (a chain of tasks each awaiting the next).
const MAX_TREE_DEPTH: usize = 100;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use strobe_target::snapshot::{NativeFrameInfo, PythonInfo};

    fn snapshot(interps: &[i64]) -> Snapshot {
        let threads = interps
            .iter()
            .enumerate()
            .map(|(i, &interp)| ThreadSnapshot {
                thread_id: 0x7f00 + i as u64,
                native_id: if i == 0 { Some(4242) } else { None },
                host_native_id: if i == 0 { Some(4242) } else { None },
                name: if i == 0 {
                    Some("Main\"Thread".into())
                } else {
                    None
                },
                interpreter_id: interp,
                holds_gil: Some(i == 0),
                state: if i == 0 {
                    ThreadState::Running
                } else {
                    ThreadState::Idle
                },
                frames: vec![
                    FrameSnapshot::python("grüße".into(), "/t/ü.py".into(), Some(7)),
                    FrameSnapshot::python("<module>".into(), "/t/ü.py".into(), None),
                ],
                truncated: false,
                native_error: None,
                exception: None,
            })
            .collect();
        Snapshot {
            pid: 42,
            executable: Some("/usr/bin/python3.11".into()),
            python: PythonInfo {
                version: "3.11.2".into(),
                binary: "/usr/bin/python3.11".into(),
                debug_build: false,
                free_threaded: false,
                layout_source: "tables",
            },
            threads,
            warnings: vec![],
        }
    }

    fn text(snap: &Snapshot) -> String {
        let mut buf = Vec::new();
        write_text(&mut buf, snap).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn text_single_interpreter_hides_interpreter_ids() {
        let out = text(&snapshot(&[0, 0]));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Process 42: /usr/bin/python3.11 (CPython 3.11.2)");
        assert_eq!(
            lines[2],
            r#"Thread 4242 "Main\"Thread" (holds GIL, running)"#
        );
        assert_eq!(lines[3], "    grüße (/t/ü.py:7)");
        assert_eq!(lines[4], "    <module> (/t/ü.py)");
        assert_eq!(lines[6], "Thread 0x7f01 (idle)");
        assert!(!out.contains("interpreter"));
    }

    #[test]
    fn text_many_interpreters_shows_ids() {
        let out = text(&snapshot(&[0, 3]));
        assert!(
            out.contains("(holds GIL, running) [interpreter 0]"),
            "{out}"
        );
        assert!(
            out.contains("Thread 0x7f01 (idle) [interpreter 3]"),
            "{out}"
        );
    }

    #[test]
    fn text_shows_both_ids_of_a_thread_in_a_pid_namespace() {
        let mut snap = snapshot(&[0, 0]);
        snap.threads[0].native_id = Some(7);
        snap.threads[0].host_native_id = Some(4242);
        let out = text(&snap);
        assert!(
            out.contains(r#"Thread 4242 (7 in its PID namespace) "Main\"Thread" (holds GIL"#),
            "{out}"
        );
    }

    #[test]
    fn a_thread_in_an_exception_says_which_in_text_and_json() {
        let mut snap = snapshot(&[0, 0]);
        snap.threads[1].exception = Some(strobe_target::snapshot::ExceptionSnapshot {
            type_name: "KeyError".into(),
            state: "handling",
        });
        let out = text(&snap);
        assert!(
            out.contains("Thread 0x7f01 (idle, handling KeyError)"),
            "{out}"
        );
        let mut buf = Vec::new();
        write_json(&mut buf, &snap).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["threads"][1]["exception"]["type"], "KeyError");
        assert_eq!(v["threads"][1]["exception"]["state"], "handling");
        assert!(v["threads"][0].get("exception").is_none());
    }

    #[test]
    fn json_field_names_are_stable() {
        let mut buf = Vec::new();
        write_json(&mut buf, &snapshot(&[0])).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["pid"], 42);
        assert_eq!(v["python"]["version"], "3.11.2");
        assert_eq!(v["python"]["layout_source"], "tables");
        let t = &v["threads"][0];
        assert_eq!(t["thread_id"], 0x7f00);
        assert_eq!(t["native_id"], 4242);
        assert_eq!(t["host_native_id"], 4242);
        assert_eq!(t["name"], "Main\"Thread");
        assert_eq!(t["interpreter_id"], 0);
        assert_eq!(t["holds_gil"], true);
        assert_eq!(t["state"], "running");
        assert_eq!(t["frames"][0]["function"], "grüße");
        assert_eq!(t["frames"][0]["filename"], "/t/ü.py");
        assert_eq!(t["frames"][0]["line"], 7);
        assert!(t["frames"][1]["line"].is_null());
        assert_eq!(t["frames"][0]["kind"], "python");
        assert!(t["frames"][0].get("module").is_none());
        assert!(t.get("native_error").is_none());
    }

    #[test]
    fn locals_are_listed_under_their_frame_in_text_and_json() {
        use strobe_target::snapshot::{LocalKind, LocalSnapshot};
        let mut snap = snapshot(&[0]);
        let local = |name: &str, kind, ty: Option<&str>, repr: &str| LocalSnapshot {
            name: name.into(),
            kind,
            type_name: ty.map(str::to_string),
            repr: repr.into(),
            truncated: false,
            unbound: ty.is_none(),
        };
        snap.threads[0].frames[0].locals = Some(vec![
            local("n", LocalKind::Arg, Some("int"), "3"),
            local("später", LocalKind::Local, None, "<unbound>"),
            local("seen", LocalKind::Cell, Some("set"), "{1, 2}"),
        ]);
        snap.threads[0].frames[1].locals_error = Some("locals are unavailable: x".into());
        let out = text(&snap);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[3], "    grüße (/t/ü.py:7)");
        assert_eq!(lines[4], "        n (arg) = 3");
        assert_eq!(lines[5], "        später (local) = <unbound>");
        assert_eq!(lines[6], "        seen (cell) = {1, 2}");
        assert_eq!(lines[7], "    <module> (/t/ü.py)");
        assert_eq!(lines[8], "        (locals are unavailable: x)");
        let mut buf = Vec::new();
        write_json(&mut buf, &snap).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let frames = &v["threads"][0]["frames"];
        let n = &frames[0]["locals"][0];
        assert_eq!(n["name"], "n");
        assert_eq!(n["kind"], "arg");
        assert_eq!(n["type"], "int");
        assert_eq!(n["repr"], "3");
        assert_eq!(n["truncated"], false);
        assert_eq!(n["unbound"], false);
        assert!(frames[0]["locals"][1]["type"].is_null());
        assert_eq!(frames[0]["locals"][1]["unbound"], true);
        assert_eq!(frames[0]["locals"][2]["kind"], "cell");
        assert!(frames[1].get("locals").is_none());
        assert_eq!(frames[1]["locals_error"], "locals are unavailable: x");
        // Without --locals neither field appears.
        let plain = snapshot(&[0]);
        let mut buf = Vec::new();
        write_json(&mut buf, &plain).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert!(v["threads"][0]["frames"][0].get("locals").is_none());
        assert!(v["threads"][0]["frames"][0].get("locals_error").is_none());
    }

    #[test]
    fn native_frames_are_marked_in_text_and_typed_in_json() {
        let mut snap = snapshot(&[0]);
        let native = |function: &str, file: &str, line, offset| FrameSnapshot {
            function: function.into(),
            filename: file.into(),
            line,
            kind: FrameKind::Native,
            native: Some(NativeFrameInfo {
                module: Some("/usr/lib/x86_64-linux-gnu/libc.so.6".into()),
                module_offset: 0x1234,
                symbol_offset: offset,
                inlined: false,
            }),
            locals: None,
            locals_error: None,
        };
        snap.threads[0].frames.insert(
            0,
            FrameSnapshot {
                function: "[syscall]".into(),
                filename: String::new(),
                line: None,
                kind: FrameKind::Kernel,
                native: None,
                locals: None,
                locals_error: None,
            },
        );
        snap.threads[0]
            .frames
            .insert(1, native("read", "read.c", Some(26), None));
        snap.threads[0]
            .frames
            .push(native("qsort_r", "", None, Some(0x2e)));
        let out = text(&snap);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[3], "  [kernel] [syscall]");
        assert_eq!(lines[4], "  [native] read (libc.so.6) [read.c:26]");
        assert_eq!(lines[5], "    grüße (/t/ü.py:7)");
        assert_eq!(lines[7], "  [native] qsort_r+0x2e (libc.so.6)");
        let mut buf = Vec::new();
        write_json(&mut buf, &snap).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let frames = &v["threads"][0]["frames"];
        assert_eq!(frames[0]["kind"], "kernel");
        assert_eq!(frames[1]["kind"], "native");
        assert_eq!(frames[1]["module"], "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(frames[1]["module_offset"], 0x1234);
        assert_eq!(frames[1]["line"], 26);
        assert_eq!(frames[1]["inlined"], false);
        assert_eq!(frames[4]["symbol_offset"], 0x2e);
        assert_eq!(frames[2]["kind"], "python");
    }

    fn task(id: u64, name: &str, awaited_by: &[u64]) -> TaskSnapshot {
        TaskSnapshot {
            id: format!("{id:#x}"),
            name: name.to_string(),
            state: "pending",
            stack: vec![strobe_target::snapshot::CoroFrameSnapshot {
                function: format!("{name}_fn"),
                filename: "/app.py".to_string(),
                line: Some(7),
            }],
            stack_truncated: false,
            awaits: None,
            waiter: None,
            awaited_by: awaited_by.iter().map(|a| format!("{a:#x}")).collect(),
            sleep: None,
            error: None,
        }
    }

    fn async_dump(tasks: Vec<TaskSnapshot>) -> AsyncDump {
        AsyncDump {
            pid: 9,
            executable: None,
            python: snapshot(&[0]).python,
            asyncio: strobe_target::snapshot::AsyncSnapshot {
                loops: vec![strobe_target::snapshot::LoopSnapshot {
                    id: "0x10".to_string(),
                    type_name: None,
                    running_in_thread: None,
                    tasks,
                }],
                cycles: Vec::new(),
            },
            warnings: Vec::new(),
        }
    }

    fn async_text(dump: &AsyncDump) -> String {
        let mut out = Vec::new();
        write_async_text(&mut out, dump).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_task_awaited_by_two_is_drawn_once_and_named_again() {
        // a awaits c, b awaits c: c in full under a, named under b.
        let dump = async_dump(vec![
            task(1, "a", &[]),
            task(2, "b", &[]),
            task(3, "c", &[1, 2]),
        ]);
        let text = async_text(&dump);
        let lines: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(
            lines,
            [
                "Event loop 0x10, not running",
                "├── Task 'a' (pending) [0x1]",
                "│     a_fn (/app.py:7)",
                "│   └── Task 'c' (pending) [0x3]",
                "│         c_fn (/app.py:7)",
                "└── Task 'b' (pending) [0x2]",
                "      b_fn (/app.py:7)",
                "    └── Task 'c' [0x3] (shown above)",
            ],
            "{text}"
        );
    }

    #[test]
    fn a_long_chain_of_tasks_is_cut_at_the_depth_bound() {
        // Task i awaits task i+1: a chain of 300, drawn 100 deep.
        let tasks: Vec<TaskSnapshot> = (1..=300u64)
            .map(|i| {
                let by: Vec<u64> = if i == 1 { vec![] } else { vec![i - 1] };
                task(i, &format!("t{i}"), &by)
            })
            .collect();
        let text = async_text(&async_dump(tasks));
        let drawn = text.lines().filter(|l| l.contains("── Task '")).count();
        assert_eq!(drawn, MAX_TREE_DEPTH, "{text}");
        assert!(
            text.contains("... (tasks awaited deeper not shown)"),
            "{text}"
        );
        // JSON keeps every task.
        let mut out = Vec::new();
        write_async_json(&mut out, &async_dump(vec![task(1, "a", &[])])).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["async"]["loops"][0]["tasks"][0]["name"], "a");
        assert!(v["async"]["loops"][0]["tasks"][0]
            .get("stack_truncated")
            .is_none());
        assert!(v["async"]["loops"][0]["tasks"][0].get("error").is_none());
    }
}
