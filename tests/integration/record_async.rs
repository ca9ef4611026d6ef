//! `record --async` (task-aware stacks: CPython 3.14+ from the thread states, 3.8–3.13 from a
//! cached task graph) against `tests/targets/asyncio_shares.py`:
//! three busy tasks with known shares of the work, one of them ("gamma") doing its share
//! through a task it awaits ("inner"), and a task sleeping throughout. Every running sample's
//! stack is the chain of tasks, each `<task NAME>` followed by its frames (gamma's at the line
//! that awaits inner), with no event-loop frames while a task runs; each task's share of the samples is within 4
//! standard errors of the share the target measured; under `--mode wall` the sleeping task is
//! sampled at its `await`. Before 3.8, one warning and the usual stacks.

use crate::harness::{Announced, Interp, Script, TempDir};
use crate::profiles::{collapsed, speedscope_samples, weighted_se, weighted_share};
use crate::record::{assert_ok, convert_to, record_pid, run_strobe};
use std::collections::HashMap;

/// The innermost `<task NAME>` of a stack of frame names.
fn running_task<'a>(names: impl DoubleEndedIterator<Item = &'a str>) -> Option<&'a str> {
    names
        .rev()
        .find_map(|f| f.strip_prefix("<task ").and_then(|t| t.strip_suffix('>')))
}

fn check_async(interp: Interp) {
    let dir = TempDir::new();
    let script = Script::new(&interp, "asyncio_shares.py");
    let mut target = Announced::start(&mut script.command());
    let raw = dir.path().join("tasks.raw");
    record_pid(
        target.pid,
        &["--rate", "200", "--duration", "3", "--async"],
        &raw,
    );
    let line = target.last_word();
    let mut spent: HashMap<&str, f64> = HashMap::new();
    for word in line.split_whitespace().skip(1) {
        let (name, secs) = word.split_once('=').unwrap();
        let name = match name {
            "alpha" => "alpha",
            "beta" => "beta",
            _ => "inner",
        };
        spent.insert(name, secs.parse().unwrap());
    }
    assert!(line.starts_with("SHARES ") && spent.len() == 3, "{line:?}");
    let all_spent: f64 = spent.values().sum();

    let convert = |name: &str, extra: &[&str]| convert_to(&raw, extra, dir.path().join(name));

    // The chains, with lines: alpha and beta under the main task (which gathers them), inner
    // under gamma, at the line where gamma awaits it; no event-loop frames while a task runs.
    let cpu = collapsed(&convert("cpu.txt", &[]));
    let main = script.label("main", "main");
    let gamma = script.label("gamma", "gamma");
    // A running task's frames may be at any of their lines; a waiting one's at its await.
    let busy = format!("busy ({}:", script.in_target);
    let inner = format!("inner_turn ({}:", script.in_target);
    let mut seen = HashMap::new();
    for (stack, weight) in &cpu {
        let names: Vec<&str> = stack.iter().map(String::as_str).collect();
        // Between task steps (the loop polling, scheduling) the thread's own stack.
        let Some(task) = running_task(names.iter().copied()) else {
            continue;
        };
        // Nothing below the outermost task: the event loop's frames are gone (the running
        // task's own calls into asyncio, `sleep` or `create_task`, stay above it).
        assert!(
            names[0].starts_with("<task "),
            "event-loop frames under a task-aware stack: {names:?}"
        );
        // gamma runs too, between turns of inner (its loop, creating the task).
        let gamma_running = format!("gamma ({}:", script.in_target);
        let (waiting, running): (Vec<&str>, &str) = match task {
            "alpha" | "beta" => (vec!["<task Task-1>", &main, names[2]], &busy),
            "gamma" => (vec!["<task Task-1>", &main, "<task gamma>"], &gamma_running),
            "inner" => (
                vec![
                    "<task Task-1>",
                    &main,
                    "<task gamma>",
                    &gamma,
                    "<task inner>",
                ],
                &inner,
            ),
            other => panic!("a sample of task {other}: {names:?}"),
        };
        assert_eq!(&names[..waiting.len()], &waiting[..], "{names:?}");
        assert_eq!(
            names[2],
            format!("<task {}>", if task == "inner" { "gamma" } else { task }),
            "{names:?}"
        );
        assert!(
            names
                .get(waiting.len())
                .is_some_and(|f| f.starts_with(running)),
            "{names:?}"
        );
        *seen.entry(task).or_insert(0u64) += weight;
    }
    for task in ["alpha", "beta", "inner"] {
        assert!(
            seen.contains_key(task),
            "no samples of task {task}: {cpu:#?}"
        );
    }

    // Each task's share against what the target measured, with the standard error of a
    // weighted proportion (samples weighted by the intervals they stand for; speedscope keeps
    // every sample's weight). 4 standard errors: see record_exceptions.rs.
    let samples = speedscope_samples(&convert("cpu.speedscope.json", &[]));
    for task in ["alpha", "beta", "inner"] {
        let truth = spent[task] / all_spent;
        let is_task = |s: &[String]| running_task(s.iter().map(String::as_str)) == Some(task);
        let share = weighted_share(&samples, is_task);
        let se = weighted_se(&samples, is_task, share);
        let z = (share - truth) / se;
        assert!(
            z.abs() <= 4.0,
            "task {task}: share {share:.3} of {} samples, the target measured {truth:.3} \
             (standard error {se:.3}, z {z:.2})",
            samples.len()
        );
    }

    // Wall mode: the sleeping task, at its await.
    let wall = collapsed(&convert("wall.txt", &["--mode", "wall"]));
    let sleeper = script.label("sleeper", "sleeper");
    assert!(
        wall.keys()
            .any(|s| s.len() >= 2 && s[0] == "<task sleeper>" && s[1] == sleeper),
        "no sample of the sleeping task at {sleeper}: {wall:#?}"
    );
}

strobe_testkit::per_interpreter! {
    fn record_async(interp) for [
        pyenv_3_8, pyenv_3_9, pyenv_3_10, pyenv_3_11, pyenv_3_12, pyenv_3_13, debian_3_11,
        sid_3_13, sid_3_13_debug, sid_3_14, sid_3_14_debug, sid_3_14_pie, sid_3_15,
        sid_3_15_debug,
    ] {
        check_async(Interp::from(interp));
    }
}

strobe_testkit::per_interpreter! {
    /// Before 3.8 `--async` says why it does nothing and records the usual stacks.
    fn record_async_before_3_8(interp) for [pyenv_3_7] {
        let dir = TempDir::new();
        let script = Script::new(&Interp::from(interp), "asyncio_shares.py");
        let mut target = Announced::start(&mut script.command());
        let out = dir.path().join("plain.txt");
        let pid = target.pid.to_string();
        let rec = run_strobe(&[
            "record", "--pid", &pid, "--duration", "0.5", "--async", "-o", out.to_str().unwrap(),
        ]);
        assert_ok(&rec, "record");
        target.close_stdin();
        let stderr = String::from_utf8_lossy(&rec.stderr);
        assert!(
            stderr.contains("task-aware stacks are unavailable: they need CPython 3.8 or newer"),
            "{stderr}"
        );
        let stacks = collapsed(&out);
        let burn = script.label("burn", "burn");
        assert!(stacks.keys().any(|s| s.last() == Some(&burn)), "{stacks:#?}");
        assert!(stacks.keys().all(|s| !s.iter().any(|f| f.starts_with("<task "))), "{stacks:#?}");
    }
}

strobe_testkit::per_interpreter! {
    /// Every task of `tests/targets/asyncio_tree.py` (all suspended: a `gather()`, a task
    /// awaiting a task, a `TaskGroup` from 3.11) is sampled in wall mode under the chain of tasks
    /// awaiting it, each at its marked line: on 3.14+ from the tasks' own links, before from
    /// the cached task graph.
    fn record_async_tree(interp) for [
        pyenv_3_8, pyenv_3_9, pyenv_3_10, pyenv_3_11, pyenv_3_12, pyenv_3_13, debian_3_11,
        sid_3_13, sid_3_13_debug, sid_3_14, sid_3_15,
    ] {
        let dir = TempDir::new();
        let script = Script::new(&Interp::from(interp), "asyncio_tree.py");
        let target = Announced::start(&mut script.command());
        let raw = dir.path().join("tree.raw");
        record_pid(target.pid, &["--rate", "200", "--duration", "1", "--async"], &raw);
        let out = convert_to(&raw, &["--mode", "wall"], dir.path().join("wall.txt"));
        let wall = collapsed(&out);
        let main = ["<task Task-1>".to_string(), script.label("main", "main")];
        let task = |name: &str| format!("<task {name}>");
        let mut want: Vec<Vec<String>> = vec![
            vec![task("sleeper"), script.label("sleeper", "sleeper")],
            vec![task("consumer"), script.label("consumer", "consumer")],
            vec![task("parent"), script.label("parent", "parent")],
            vec![
                task("parent"),
                script.label("parent", "parent"),
                task("child"),
                script.label("child_fn", "child"),
            ],
        ];
        if interp.version >= (3, 11) {
            want.push(vec![task("grouper"), script.label("grouper", "grouper")]);
        }
        for tail in want {
            let prefix: Vec<String> = main.iter().cloned().chain(tail).collect();
            assert!(
                wall.keys().any(|s| s.starts_with(&prefix)),
                "no sample under {prefix:?}: {wall:#?}"
            );
        }
        if interp.version >= (3, 11) {
            // tg-leaf under grouper's `TaskGroup.__aexit__` (and `_aexit` from 3.13.1).
            let leaf = script.label("tg_leaf", "tg_leaf");
            let grouper = script.label("grouper", "grouper");
            assert!(
                wall.keys().any(|s| {
                    s.starts_with(&main)
                        && s.get(2).is_some_and(|f| f == "<task grouper>")
                        && s.get(3) == Some(&grouper)
                        && s.iter().position(|f| f == "<task tg-leaf>").is_some_and(|i| {
                            s[4..i].iter().all(|f| f.starts_with("TaskGroup."))
                                && s.get(i + 1) == Some(&leaf)
                        })
                }),
                "no sample of tg-leaf under grouper: {wall:#?}"
            );
        }
    }
}
