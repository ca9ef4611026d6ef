//! `strobe dump --locals` against `tests/targets/locals.py` under every interpreter: the
//! arguments, locals, cell and free variables of each of its frames, exactly, in JSON and in
//! text; the hostile `__repr__` never runs.
//!
//! The expected reprs are written out here from the values the script assigns (Python's own
//! repr rules, plus strobe's bounds: 10 items, 100 characters, 100 digits, 3 levels of nesting).

use crate::harness::{dump_json, strobe, Announced, Interp, Script};
use serde_json::Value;
use std::io::Write;

/// One expected local: name, kind, type, repr, truncated (unbound when the type is `None`).
type Want = (String, &'static str, Option<&'static str>, String, bool);

fn want(name: &str, kind: &'static str, ty: &'static str, repr: &str) -> Want {
    (name.to_string(), kind, Some(ty), repr.to_string(), false)
}

fn cut(name: &str, kind: &'static str, ty: &'static str, repr: &str) -> Want {
    (name.to_string(), kind, Some(ty), repr.to_string(), true)
}

fn unbound(name: &str, kind: &'static str) -> Want {
    (name.to_string(), kind, None, "<unbound>".to_string(), false)
}

/// The ids the target wrote beside itself: `obj`, `evil`, `closure` → hex address.
fn ids(script: &Script) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(script.here.with_file_name("locals_ids.txt")).unwrap();
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .chunks(2)
        .map(|p| (p[0].to_string(), format!("0x{}", p[1])))
        .collect()
}

/// `innermost`'s locals, from the assignments in `tests/targets/locals.py`.
fn innermost(py2: bool, obj: &str, evil: &str, weird: &str) -> Vec<Want> {
    let big = "1606938044258990275541962092341162602522202993782792835301376";
    let huge = format!("-1{}... (501 digits)", "0".repeat(99));
    let megabyte = format!(
        "'{}'... (1048576 {})",
        "x".repeat(100),
        if py2 { "bytes" } else { "chars" }
    );
    vec![
        want("n", "arg", "str", "'cell value!'"),
        want("flag", "arg", "int", "7"),
        want("rest", "arg", "tuple", "('r1',)"),
        want("options", "arg", "dict", "{'key': 'v'}"),
        want("nothing", "local", "NoneType", "None"),
        want("yes", "local", "bool", "True"),
        want("no", "local", "bool", "False"),
        want("small", "local", "int", "-42"),
        if py2 {
            want("big", "local", "long", &format!("{big}L"))
        } else {
            want("big", "local", "int", big)
        },
        cut("huge", "local", if py2 { "long" } else { "int" }, &huge),
        want("pi", "local", "float", "3.25"),
        want("tiny", "local", "float", "1.5e-07"),
        want("text", "local", "str", r#"'it\'s "q"\n\ttab'"#),
        if py2 {
            want("uni", "local", "unicode", r"u'gr\xfc\xdfe \u4e2d'")
        } else {
            want("uni", "local", "str", "'grüße 中'")
        },
        if py2 {
            want("raw", "local", "str", r#""\x00\xffab'""#)
        } else {
            want("raw", "local", "bytes", r#"b"\x00\xffab'""#)
        },
        cut("megabyte", "local", "str", &megabyte),
        want("tup", "local", "tuple", "(1, 'two', 3.0)"),
        want("single", "local", "tuple", "(7,)"),
        cut(
            "many",
            "local",
            "list",
            "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...] (10000 items)",
        ),
        want("selfref", "local", "list", "[1, 2, [...]]"),
        // 3.6+ dicts keep insertion order; 2.7 iterates its table, where small ints sit in the
        // slot of their own value.
        if py2 {
            want("mapping", "local", "dict", "{1: [1.5], 2: (None,), 3: 'c'}")
        } else {
            want("mapping", "local", "dict", "{3: 'c', 1: [1.5], 2: (None,)}")
        },
        cut("nested", "local", "list", "[[[[...]]]]"),
        want("bag", "local", "set", if py2 { "set([5])" } else { "{5}" }),
        want(
            "frozen",
            "local",
            "frozenset",
            if py2 {
                "frozenset(['a'])"
            } else {
                "frozenset({'a'})"
            },
        ),
        want(
            "empty",
            "local",
            "set",
            if py2 { "set([])" } else { "set()" },
        ),
        want("obj", "local", "Plain", &format!("<Plain object at {obj}>")),
        want(
            "evil",
            "local",
            "Hostile",
            &format!("<Hostile object at {evil}>"),
        ),
        want(
            "weird",
            "local",
            r"We\x0aird",
            &format!(r"<We\x0aird object at {weird}>"),
        ),
        unbound("got", "local"),
        unbound("later", "local"),
    ]
}

fn got(frame: &Value) -> Vec<Want> {
    let locals = frame["locals"]
        .as_array()
        .unwrap_or_else(|| panic!("no locals in {frame}"));
    locals
        .iter()
        .map(|l| {
            let kind: &'static str = match l["kind"].as_str().unwrap() {
                "arg" => "arg",
                "local" => "local",
                "cell" => "cell",
                "free" => "free",
                other => panic!("unknown kind {other}"),
            };
            let ty: Option<&'static str> = l["type"]
                .as_str()
                .map(|t| &*Box::leak(t.to_string().into_boxed_str()));
            assert_eq!(l["unbound"], ty.is_none(), "{l}");
            (
                l["name"].as_str().unwrap().to_string(),
                kind,
                ty,
                l["repr"].as_str().unwrap().to_string(),
                l["truncated"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The frames of the script, innermost first, with what each must hold.
fn expected_frames(
    py2: bool,
    qualified: bool,
    ids: &std::collections::HashMap<String, String>,
) -> Vec<(String, Vec<Want>)> {
    let (middle, arg1, arg2, local) = if py2 {
        ("gruesse", "wert", "anderer", "groesse")
    } else {
        ("grüße", "wert", "anderer", "größe")
    };
    vec![
        (
            "innermost".to_string(),
            innermost(py2, &ids["obj"], &ids["evil"], &ids["weird"]),
        ),
        (
            middle.to_string(),
            vec![
                want(arg1, "arg", "str", "'cell value!'"),
                want(arg2, "arg", "int", "7"),
                want(local, "local", "str", "'cell value!'"),
            ],
        ),
        (
            if qualified {
                "outer.<locals>.closure".to_string()
            } else {
                "closure".to_string()
            },
            vec![
                want("arg_cell", "free", "int", "7"),
                want("captured", "free", "str", "'cell value'"),
            ],
        ),
        (
            "outer".to_string(),
            vec![
                want("arg_cell", "arg", "int", "7"),
                want(
                    "closure",
                    "local",
                    "function",
                    &format!("<function object at {}>", ids["closure"]),
                ),
                want("captured", "cell", "str", "'cell value'"),
            ],
        ),
        // Module-level code keeps its names in a dict, not in slots: no locals shown.
        ("<module>".to_string(), vec![]),
    ]
}

fn check(interp: &strobe_testkit::interpreters::Interpreter) {
    let py2 = interp.version.0 == 2;
    let qualified = interp.version >= (3, 11);
    let script = Script::new(&Interp::from(interp), "locals.py");
    let target = Announced::start(&mut script.command());
    // READY is printed just before the main thread blocks in read(2): dump it there.
    target.wait_until_blocked();
    let ids = ids(&script);
    let pid = target.pid.to_string();
    let expected = expected_frames(py2, qualified, &ids);

    // JSON: every frame of the script, exactly.
    let dump = dump_json(target.pid, &["--locals"]);
    let threads = dump["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 1, "{dump}");
    let frames = threads[0]["frames"].as_array().unwrap();
    let at = frames
        .iter()
        .position(|f| f["function"] == "innermost")
        .unwrap_or_else(|| panic!("no innermost frame in {dump}"));
    let ours = &frames[at..];
    assert_eq!(ours.len(), expected.len(), "{dump}");
    for (frame, (function, locals)) in ours.iter().zip(&expected) {
        assert_eq!(frame["function"], function.as_str(), "{frame}");
        assert!(frame.get("locals_error").is_none(), "{frame}");
        assert_eq!(&got(frame), locals, "frame {function}");
    }

    // Text: the same values, one `name (kind) = repr` line each under the frame's line.
    let out = strobe(&["dump", "--pid", &pid, "--locals"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (function, locals) in &expected {
        let head = format!("    {function} (");
        let at = lines
            .iter()
            .position(|l| l.starts_with(&head))
            .unwrap_or_else(|| panic!("no frame line {head:?} in:\n{text}"));
        let want: Vec<String> = locals
            .iter()
            .map(|(name, kind, _, repr, _)| format!("        {name} ({kind}) = {repr}"))
            .collect();
        let shown: Vec<&str> = lines[at + 1..]
            .iter()
            .take_while(|l| l.starts_with("        "))
            .copied()
            .collect();
        assert_eq!(shown, want, "frame {function} in:\n{text}");
    }

    // The hostile __repr__ never ran: it would have created this file...
    let pwned = script.here.with_file_name("pwned");
    assert!(!pwned.exists(), "strobe ran the target's __repr__");
    // ... as it does when the target itself calls repr() on the object.
    let mut target = target;
    let mut child_in = target.ready.child.stdin.take().unwrap();
    child_in.write_all(b"r").unwrap();
    drop(child_in);
    let status = target.ready.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        pwned.exists(),
        "the target's own repr() did not create {pwned:?}"
    );
}

strobe_testkit::per_interpreter! {
    fn dump_locals(interp) {
        check(interp);
    }
}

/// Without `--locals`, the JSON has no `locals` keys at all (the format is unchanged).
#[test]
fn no_locals_without_the_flag() {
    let interp = strobe_testkit::interpreters::get("pyenv_3_12");
    let script = Script::new(&Interp::from(interp), "locals.py");
    let target = Announced::start(&mut script.command());
    // READY is printed just before the main thread blocks in read(2): dump it there.
    target.wait_until_blocked();
    let dump = dump_json(target.pid, &[]);
    for f in dump["threads"][0]["frames"].as_array().unwrap() {
        assert!(
            f.get("locals").is_none() && f.get("locals_error").is_none(),
            "{f}"
        );
    }
}

/// The locals of each Python frame, by function, from a dump.
fn locals_by_frame(dump: &Value) -> Vec<(String, Value)> {
    dump["threads"][0]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "python")
        .map(|f| {
            (
                f["function"].as_str().unwrap().to_string(),
                f["locals"].clone(),
            )
        })
        .collect()
}

strobe_testkit::per_interpreter! {
    /// `--blocking` (read inside the freeze) and `--native` (Python frames merged with native
    /// ones) give every Python frame the same locals as a plain `--locals` dump.
    fn with_blocking_and_native(interp) for [pyenv_2_7, pyenv_3_10, pyenv_3_12, sid_3_14] {
        let script = Script::new(&Interp::from(interp), "locals.py");
        let target = Announced::start(&mut script.command());
        // READY is printed just before the main thread blocks in read(2): dump it there.
        target.wait_until_blocked();
        let plain = locals_by_frame(&dump_json(target.pid, &["--locals"]));
        assert!(plain.iter().any(|(f, l)| f == "innermost" && l.as_array().is_some_and(|a| a.len() > 20)));
        for extra in [&["--locals", "--blocking"][..], &["--locals", "--native"][..]] {
            let other = locals_by_frame(&dump_json(target.pid, extra));
            assert_eq!(other, plain, "{extra:?}");
        }
    }
}
