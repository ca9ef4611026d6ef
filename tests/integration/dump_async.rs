//! `strobe dump --async` against `tests/targets/asyncio_tree.py`: one event loop whose tasks form
//! a known tree (a gather of four tasks; one awaits another task, one sleeps, one waits on a
//! queue, one holds a TaskGroup with a sleeping child; before 3.11, no TaskGroup). Checked
//! exactly, in JSON and in text: the tree of who awaits whom, every task's coroutine stack with
//! its lines, what each waits on. 3.14+ read the `_asyncio` module's own description, 3.8–3.13
//! python-abi's tables (the links derived, not recorded); interpreters before 3.8 get one error
//! line naming the versions `--async` supports.

use crate::harness::{strobe, Announced, Interp, Script};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use strobe_testkit::interpreters::{self, Interpreter};

/// Where a frame of a coroutine stack is expected.
enum At {
    /// The target script, at marker `# @line:NAME`.
    Ours(&'static str),
    /// A stdlib file (path suffix); its line must hold an `await`.
    Stdlib(&'static str),
}

/// One expected task: name, parent (the task awaiting it), stack outermost first, the type
/// of what it awaits (or the awaited task's name, as `task:NAME`).
struct Want {
    name: &'static str,
    parent: Option<&'static str>,
    stack: Vec<(&'static str, At)>,
    awaits: &'static str,
}

/// The tree of `asyncio_tree.py` on CPython 3.`minor` (`aexit`: its `TaskGroup.__aexit__`
/// awaits in `TaskGroup._aexit`, as from 3.13.1).
fn expected(minor: u32, aexit: bool) -> Vec<Want> {
    use At::{Ours, Stdlib};
    let future = "_asyncio.Future";
    // Code objects have a qualified name from 3.11 on.
    let queue_get = if minor >= 11 { "Queue.get" } else { "get" };
    let mut group_stack = vec![
        ("grouper", Ours("grouper")),
        ("TaskGroup.__aexit__", Stdlib("asyncio/taskgroups.py")),
    ];
    if aexit {
        group_stack.push(("TaskGroup._aexit", Stdlib("asyncio/taskgroups.py")));
    }
    let mut want = vec![
        Want {
            name: "Task-1",
            parent: None,
            stack: vec![("main", Ours("main"))],
            awaits: "_GatheringFuture",
        },
        Want {
            name: "sleeper",
            parent: Some("Task-1"),
            stack: vec![
                ("sleeper", Ours("sleeper")),
                ("sleep", Stdlib("asyncio/tasks.py")),
            ],
            awaits: future,
        },
        Want {
            name: "consumer",
            parent: Some("Task-1"),
            stack: vec![
                ("consumer", Ours("consumer")),
                (queue_get, Stdlib("asyncio/queues.py")),
            ],
            awaits: future,
        },
        Want {
            name: "parent",
            parent: Some("Task-1"),
            stack: vec![("parent", Ours("parent"))],
            awaits: "task:child",
        },
        Want {
            name: "child",
            parent: Some("parent"),
            stack: vec![("child_fn", Ours("child"))],
            awaits: future,
        },
    ];
    if minor < 11 {
        return want;
    }
    want.extend([
        Want {
            name: "grouper",
            parent: Some("Task-1"),
            stack: group_stack,
            awaits: future,
        },
        Want {
            name: "tg-leaf",
            parent: Some("grouper"),
            stack: vec![
                ("tg_leaf", Ours("tg_leaf")),
                ("sleep", Stdlib("asyncio/tasks.py")),
            ],
            awaits: future,
        },
    ]);
    want
}

/// Whether the interpreter's `TaskGroup` has `_aexit` (3.13.1 moved `__aexit__`'s body there).
fn has_aexit(interp: &Interpreter) -> bool {
    let out = interp
        .command()
        .args([
            "-c",
            "import asyncio; print(hasattr(getattr(asyncio, 'TaskGroup', None), '_aexit'))",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

/// A file the target names, as we can open it.
fn host_file(interp: &Interpreter, name: &str) -> PathBuf {
    match Interp::from(interp) {
        Interp::Sid(_) => interpreters::sid_root().join(name.trim_start_matches('/')),
        Interp::Host(_) => PathBuf::from(name),
    }
}

fn dump(pid: i32, extra: &[&str]) -> Value {
    let pid = pid.to_string();
    let mut args = vec!["dump", "--pid", pid.as_str(), "--async", "--json"];
    args.extend_from_slice(extra);
    let out = strobe(&args);
    assert!(
        out.status.success(),
        "strobe {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_json(interp: &Interpreter, script: &Script, pid: i32, dump: &Value) {
    let lines = script.lines();
    let loops = dump["async"]["loops"].as_array().unwrap();
    assert_eq!(loops.len(), 1, "{dump}");
    let the_loop = &loops[0];
    assert_eq!(the_loop["type"], "_UnixSelectorEventLoop", "{dump}");
    assert!(the_loop["running_in_thread"].as_u64().is_some(), "{dump}");
    assert_eq!(dump["async"]["cycles"], Value::Array(vec![]), "{dump}");
    assert_eq!(dump["pid"], pid);
    let tasks = the_loop["tasks"].as_array().unwrap();
    let name_of: HashMap<&str, &str> = tasks
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["name"].as_str().unwrap()))
        .collect();
    let want = expected(interp.version.1, has_aexit(interp));
    let mut got_names: Vec<&str> = tasks.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let mut want_names: Vec<&str> = want.iter().map(|w| w.name).collect();
    got_names.sort_unstable();
    want_names.sort_unstable();
    assert_eq!(got_names, want_names, "{dump}");
    for w in &want {
        let t = tasks.iter().find(|t| t["name"] == w.name).unwrap();
        assert_eq!(t["state"], "pending", "{t}");
        assert!(t.get("error").is_none(), "{t}");
        // Parents: the tasks in awaited_by (the gather's outer future is no task).
        let parents: Vec<&str> = t["awaited_by"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|id| name_of.get(id.as_str().unwrap()).copied())
            .collect();
        assert_eq!(parents, w.parent.into_iter().collect::<Vec<_>>(), "{t}");
        // The stack, outermost first, each frame's line exact (ours) or an await (stdlib).
        let stack = t["stack"].as_array().unwrap();
        assert_eq!(stack.len(), w.stack.len(), "{t}");
        for (f, (function, at)) in stack.iter().zip(&w.stack) {
            assert_eq!(f["function"], *function, "{t}");
            let file = f["filename"].as_str().unwrap();
            let line = f["line"].as_u64().unwrap_or_else(|| panic!("no line: {t}")) as usize;
            match at {
                At::Ours(mark) => {
                    assert_eq!(file, script.in_target, "{t}");
                    assert_eq!(line, lines[*mark] as usize, "{t}");
                }
                At::Stdlib(suffix) => {
                    assert!(file.ends_with(suffix), "{t}");
                    let text = std::fs::read_to_string(host_file(interp, file)).unwrap();
                    let src = text.lines().nth(line - 1).unwrap_or_default();
                    assert!(
                        src.contains("await "),
                        "line {line} of {file} is {src:?}: {t}"
                    );
                }
            }
        }
        // What it awaits; the task's own `_fut_waiter` is the same object.
        let awaits = &t["awaits"];
        match w.awaits.strip_prefix("task:") {
            Some(task) => {
                let id = awaits["task"].as_str().unwrap_or_else(|| panic!("{t}"));
                assert_eq!(name_of[id], task, "{t}");
                assert_eq!(awaits["type"], "_asyncio.Task", "{t}");
            }
            None => {
                assert_eq!(awaits["type"], w.awaits, "{t}");
                assert!(awaits["task"].is_null(), "{t}");
            }
        }
        assert_eq!(t["waiter"]["id"], awaits["id"], "{t}");
        // The delay of asyncio.sleep, read from its frame's locals.
        let sleeping = matches!(w.name, "sleeper" | "tg-leaf");
        match t.get("sleep") {
            Some(delay) => assert!(sleeping && delay == "3600", "{t}"),
            None => assert!(!sleeping, "{t}"),
        }
    }
}

/// The text form: the tree drawn as `python -m asyncio pstree` does, stacks under each task.
fn check_text(interp: &Interpreter, script: &Script, pid: i32) {
    let group = interp.version.1 >= 11;
    let pid = pid.to_string();
    let out = strobe(&["dump", "--pid", &pid, "--async"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let tree: Vec<String> = text
        .lines()
        .filter(|l| l.contains("── Task '"))
        .map(|l| l.split(" [0x").next().unwrap().to_string())
        .collect();
    let want: &[&str] = if group {
        &[
            "└── Task 'Task-1' (pending)",
            "    ├── Task 'sleeper' (pending)",
            "    ├── Task 'consumer' (pending)",
            "    ├── Task 'parent' (pending)",
            "    │   └── Task 'child' (pending)",
            "    └── Task 'grouper' (pending)",
            "        └── Task 'tg-leaf' (pending)",
        ]
    } else {
        &[
            "└── Task 'Task-1' (pending)",
            "    ├── Task 'sleeper' (pending)",
            "    ├── Task 'consumer' (pending)",
            "    └── Task 'parent' (pending)",
            "        └── Task 'child' (pending)",
        ]
    };
    assert_eq!(tree, want, "{text}");
    let lines = script.lines();
    let mut stacks = vec![
        ("      ", "main", "main"),
        ("    │     ", "sleeper", "sleeper"),
    ];
    if group {
        stacks.extend([
            ("    │         ", "child_fn", "child"),
            ("              ", "tg_leaf", "tg_leaf"),
        ]);
    } else {
        stacks.push(("              ", "child_fn", "child"));
    }
    for (prefix, function, mark) in stacks {
        let want = format!("{prefix}{function} ({}:{})", script.in_target, lines[mark]);
        assert!(text.lines().any(|l| l == want), "no {want:?} in:\n{text}");
    }
    let parent_waits = if group {
        "    │     waits on Task 'child' [0x"
    } else {
        "          waits on Task 'child' [0x"
    };
    assert!(text.contains(parent_waits), "parent's waiter in:\n{text}");
    assert!(
        text.contains("    │     waits on asyncio.sleep(3600): <_asyncio.Future object at 0x"),
        "sleeper's waiter in:\n{text}"
    );
    assert!(text.starts_with(&format!("Process {pid}: ")), "{text}");
    assert!(text.contains("Event loop 0x"), "{text}");
}

strobe_testkit::per_interpreter! {
    fn dump_async(interp) for [
        pyenv_3_8, pyenv_3_9, pyenv_3_10, pyenv_3_11, pyenv_3_12, pyenv_3_13, debian_3_11,
        sid_3_13, sid_3_13_debug, sid_3_14, sid_3_14_debug, sid_3_14_pie, sid_3_15,
        sid_3_15_debug
    ] {
        let script = Script::new(&Interp::from(interp), "asyncio_tree.py");
        let target = Announced::start(&mut script.command());
        check_json(interp, &script, target.pid, &dump(target.pid, &[]));
        check_text(interp, &script, target.pid);
        // Frozen for the read: the same tasks.
        check_json(interp, &script, target.pid, &dump(target.pid, &["--blocking"]));
    }
}

strobe_testkit::per_interpreter! {
    /// Before 3.8 (tasks without names, no table): one error line says which versions
    /// `--async` supports. The target need not use asyncio: the version alone decides.
    fn dump_async_before_3_8(interp) for [pyenv_2_7, pyenv_3_6, pyenv_3_7] {
        let script = Script::new(&Interp::from(interp), "locals.py");
        let target = Announced::start(&mut script.command());
        let pid = target.pid.to_string();
        for extra in [&[][..], &["--json"][..]] {
            let mut args = vec!["dump", "--pid", pid.as_str(), "--async"];
            args.extend_from_slice(extra);
            let out = strobe(&args);
            assert_eq!(out.status.code(), Some(1), "{out:?}");
            assert!(out.stdout.is_empty(), "{out:?}");
            let stderr = String::from_utf8(out.stderr).unwrap();
            let want = format!(
                "strobe: error: --async needs CPython 3.8 or newer (strobe reads the _asyncio \
                 module's C tasks from 3.8 on); process {pid} runs CPython {}.{}.",
                interp.version.0, interp.version.1
            );
            assert!(stderr.starts_with(&want), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
        }
    }
}

strobe_testkit::per_interpreter! {
    /// Two tasks awaiting each other (`tests/targets/asyncio_cycle.py`): the cycle is reported
    /// in JSON and text, and the tree still draws both tasks once.
    fn dump_async_cycle(interp) for [
        pyenv_3_8, pyenv_3_9, pyenv_3_10, pyenv_3_11, pyenv_3_12, pyenv_3_13, sid_3_13, sid_3_14, sid_3_15
    ] {
        let script = Script::new(&Interp::from(interp), "asyncio_cycle.py");
        let target = Announced::start(&mut script.command());
        let dump = dump(target.pid, &[]);
        let tasks = dump["async"]["loops"][0]["tasks"].as_array().unwrap();
        let id_of = |name: &str| {
            tasks.iter().find(|t| t["name"] == name).unwrap()["id"].as_str().unwrap().to_string()
        };
        let (ping, pong) = (id_of("ping"), id_of("pong"));
        let mut want = vec![ping.clone(), pong.clone()];
        want.sort_by_key(|id| u64::from_str_radix(id.trim_start_matches("0x"), 16).unwrap());
        let cycles: Vec<Vec<String>> = serde_json::from_value(dump["async"]["cycles"].clone()).unwrap();
        assert_eq!(cycles, vec![want.clone()], "{dump}");
        let lines = script.lines();
        for (name, other, mark) in [("ping", &pong, "ping"), ("pong", &ping, "pong")] {
            let t = tasks.iter().find(|t| t["name"] == name).unwrap();
            assert_eq!(t["awaits"]["task"], other.as_str(), "{t}");
            assert_eq!(t["stack"][0]["line"], lines[mark], "{t}");
            assert_eq!(t["awaited_by"], serde_json::json!([other]), "{t}");
        }

        let pid = target.pid.to_string();
        let out = strobe(&["dump", "--pid", &pid, "--async"]);
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let names = |id: &str| if id == ping { "'ping'" } else { "'pong'" };
        let cycle_line = format!(
            "    {} -> {} -> {}",
            names(&want[0]),
            names(&want[1]),
            names(&want[0])
        );
        let tail: Vec<&str> = text.lines().rev().take(2).collect();
        assert_eq!(
            tail,
            vec![cycle_line.as_str(), "Cycles (tasks awaiting each other, a deadlock):"],
            "{text}"
        );
        let first = names(&want[0]);
        let drawn = text.lines().filter(|l| l.contains(&format!("── Task {first} ("))).count();
        assert_eq!(drawn, 1, "{text}");
        assert!(text.contains("(shown above)"), "{text}");
    }
}

/// A loop's running thread, and its tasks as (name, innermost function).
type LoopTasks = (Option<u64>, Vec<(String, String)>);

strobe_testkit::per_interpreter! {
    /// Three event loops (`tests/targets/asyncio_threads.py`): the main thread's, another
    /// thread's, and one whose thread has exited (its task lives on in the interpreter's list):
    /// each loop with its own tasks and the thread running it.
    fn dump_async_threads(interp) for [
        pyenv_3_8, pyenv_3_9, pyenv_3_10, pyenv_3_11, pyenv_3_12, pyenv_3_13, sid_3_13, sid_3_14, sid_3_15
    ] {
        let script = Script::new(&Interp::from(interp), "asyncio_threads.py");
        let target = Announced::start(&mut script.command());
        let ids = std::fs::read_to_string(script.here.with_file_name("asyncio_threads_ids.txt"))
            .unwrap();
        let ids: Vec<u64> = ids.split_whitespace().map(|w| w.parse().unwrap()).collect();
        let lines = script.lines();
        for extra in [&[][..], &["--blocking"][..]] {
            let dump = dump(target.pid, extra);
            let loops = dump["async"]["loops"].as_array().unwrap();
            // Each loop: the thread running it, and its tasks (name, innermost function).
            let got: Vec<LoopTasks> = loops
                .iter()
                .map(|l| {
                    let tasks = l["tasks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| {
                            let stack = t["stack"].as_array().unwrap();
                            let last = stack.last().unwrap()["function"].as_str().unwrap();
                            (t["name"].as_str().unwrap().to_string(), last.to_string())
                        })
                        .collect();
                    (l["running_in_thread"].as_u64(), tasks)
                })
                .collect();
            let owned = |v: &[(&str, &str)]| -> Vec<(String, String)> {
                v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
            };
            let mut want = vec![
                (Some(ids[0]), owned(&[("Task-1", "main"), ("main-waiter", "waiter")])),
                (Some(ids[1]), owned(&[("Task-2", "worker_main"), ("worker", "sleep")])),
                (None, owned(&[("orphan", "orphan")])),
            ];
            let mut got_sorted = got.clone();
            got_sorted.sort();
            want.sort();
            assert_eq!(got_sorted, want, "{dump}");
            // Lines of the suspended tasks of both running loops.
            let find = |name: &str| {
                loops
                    .iter()
                    .flat_map(|l| l["tasks"].as_array().unwrap())
                    .find(|t| t["name"] == name)
                    .unwrap()
                    .clone()
            };
            assert_eq!(find("worker")["stack"][0]["line"], lines["worker"]);
            assert_eq!(find("main-waiter")["stack"][0]["line"], lines["main_waiter"]);
            let orphan = find("orphan");
            assert_eq!(orphan["state"], "pending", "{orphan}");
            assert!(orphan["awaits"].is_null(), "a coroutine never started awaits nothing: {orphan}");
        }
    }
}

strobe_testkit::per_interpreter! {
    /// A process that never imported asyncio (`tests/targets/locals.py`) has no tasks: up to
    /// 3.14 it has not loaded its `_asyncio` module (a warning says so), 3.15 has it built in
    /// with empty lists.
    fn dump_async_without_asyncio(interp) for [
        pyenv_3_8, pyenv_3_9, pyenv_3_10, pyenv_3_11, pyenv_3_12, pyenv_3_13, sid_3_13, sid_3_14, sid_3_15
    ] {
        let script = Script::new(&Interp::from(interp), "locals.py");
        let target = Announced::start(&mut script.command());
        let dump = dump(target.pid, &[]);
        assert_eq!(dump["async"]["loops"], serde_json::json!([]), "{dump}");
        assert_eq!(dump["async"]["cycles"], serde_json::json!([]), "{dump}");
        let not_loaded = dump["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("has not loaded the _asyncio module"));
        // 3.15 builds it in; before, it is an extension module imported with asyncio.
        assert_eq!(not_loaded, interp.version != (3, 15), "{dump}");
        let pid = target.pid.to_string();
        let out = strobe(&["dump", "--pid", &pid, "--async"]);
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.ends_with("\nNo event loop is running and no asyncio task exists.\n"),
            "{text}"
        );
    }
}

strobe_testkit::per_interpreter! {
    /// A task running right now (`tests/targets/asyncio_running.py`: busy in its coroutine) is
    /// `running`, at a line of its loop; the others stay `pending`.
    fn dump_async_running(interp) for [
        pyenv_3_8, pyenv_3_9, pyenv_3_10, pyenv_3_11, pyenv_3_12, pyenv_3_13, sid_3_13, sid_3_14, sid_3_15
    ] {
        let script = Script::new(&Interp::from(interp), "asyncio_running.py");
        let target = Announced::start(&mut script.command());
        let lines = script.lines();
        let dump = dump(target.pid, &["--blocking"]);
        let tasks = dump["async"]["loops"][0]["tasks"].as_array().unwrap();
        let find = |name: &str| tasks.iter().find(|t| t["name"] == name).unwrap();
        let spinner = find("spinner");
        assert_eq!(spinner["state"], "running", "{spinner}");
        let stack = spinner["stack"].as_array().unwrap();
        assert_eq!(stack.len(), 1, "a running coroutine awaits nothing: {spinner}");
        assert_eq!(stack[0]["function"], "spinner");
        let line = stack[0]["line"].as_u64().unwrap();
        // Busy in its loop (READY is printed from inside it, so the return from that print
        // may still be on its line).
        assert!(
            lines
                .iter()
                .any(|(mark, &at)| mark.starts_with("spin") && u64::from(at) == line),
            "{spinner}"
        );
        assert!(spinner["awaits"].is_null() && spinner["waiter"].is_null(), "{spinner}");
        assert_eq!(find("idle")["state"], "pending");
        assert_eq!(find("idle")["stack"][0]["line"], lines["idle"]);
        assert_eq!(find("Task-1")["state"], "pending");
    }
}
