//! `LineMap` against the real interpreters.
//!
//! Each test feeds tests/data/linetable/dump_linetables.py to one interpreter on stdin. The
//! script compiles a source with awkward line structure (plus two large stdlib modules) and
//! prints, for every code object, the raw table, `co_firstlineno` and CPython's own line for
//! every instruction offset: from the C function `PyCode_Addr2Line` (what `f_lineno` reports)
//! and from the Python-level API (`dis.findlinestarts`, `co_lines`, `co_positions`). We decode
//! the same bytes and must give the same answers, in the units the walker passes.
//!
//! One test per interpreter of the test registry (`strobe_testkit::interpreters`); a missing
//! interpreter fails its test: run .ci/provision.sh.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;

use strobe_python_abi::{layout_for, Flavour, LineTable};
use strobe_testkit::interpreters::Interpreter;
use strobe_walker::linetable::LineMap;

const SCRIPT: &str = include_str!("data/linetable/dump_linetables.py");

/// Run the dump script under `interp` and return its stdout.
fn dump(interp: &Interpreter) -> String {
    let mut cmd = interp.command();
    let mut child = cmd
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the interpreter");
    // The script is far smaller than a pipe buffer and Python reads all of it before running
    // it, so writing it whole before reading the output cannot deadlock.
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(SCRIPT.as_bytes())
        .expect("write the script");
    let out = child.wait_with_output().expect("wait for the interpreter");
    assert!(
        out.status.success(),
        "dump_linetables.py failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the dump is ASCII JSON")
}

fn model_for(major: u8, minor: u8) -> LineTable {
    match (major, minor) {
        (2, _) => LineTable::Lnotab27,
        (3, 0..=9) => LineTable::Lnotab36,
        (3, 10) => LineTable::Linetable310,
        _ => LineTable::Location311,
    }
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex string");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// What the tables of one interpreter exercised; asserted so that the test source keeps
/// covering the cases it claims to.
#[derive(Default, Debug)]
struct Seen {
    codes: usize,
    offsets: usize,
    no_line: usize,
    negative_step: usize,
    jump_over_255_lines: usize,
    line_over_255_bytes: usize,
}

fn check(interp: &Interpreter) {
    let (major, minor) = (interp.version.0 as u8, interp.version.1 as u8);
    let debug = interp.debug;
    let text = dump(interp);
    let doc = json::parse(&text);
    let version: Vec<i64> = doc["version"].arr().iter().map(|v| v.int()).collect();
    assert_eq!(
        (version[0], version[1]),
        (i64::from(major), i64::from(minor)),
        "the interpreter reports version {version:?}"
    );
    assert_eq!(doc["debug"].bool(), debug, "Py_DEBUG build?");

    let model = model_for(major, minor);
    let flavour = Flavour {
        free_threaded: false,
        debug,
    };
    if let Some(layout) = layout_for(major, minor, flavour) {
        assert_eq!(layout.line_table, model, "python-abi's line-table model");
    }
    // The walker passes bytes up to 3.9 and code units from 3.10.
    let unit: i64 = if model == LineTable::Linetable310 || model == LineTable::Location311 {
        2
    } else {
        1
    };

    let mut seen = Seen::default();
    let mut failures = Vec::new();
    for code in doc["codes"].arr() {
        let name = code["name"].str();
        let firstlineno = i32::try_from(code["firstlineno"].int()).unwrap();
        let table = hex(code["table"].str());
        let nbytes = code["nbytes"].int();
        let step = code["step"].int();
        assert_eq!(step, unit, "offset step of the dump");
        let map = LineMap::new(model, &table, firstlineno);
        let mut fail = |what: &str, lasti: i64, want: Option<i32>, got: Option<i32>| {
            failures.push(format!(
                "{name} (line {firstlineno}) lasti {lasti}: {what} says {want:?}, LineMap {got:?}; \
                 table {}",
                code["table"].str()
            ));
        };

        // PyCode_Addr2Line: -1 means "no line" from 3.10 on (_PyCode_CheckLineNumber).
        for pair in code["c"].arr() {
            let (off, line) = (pair.arr()[0].int(), pair.arr()[1].int());
            assert_eq!(off % unit, 0, "offset {off} is not a whole unit");
            let lasti = off / unit;
            let line = i32::try_from(line).unwrap();
            let want = if unit == 2 && line == -1 {
                None
            } else {
                Some(line)
            };
            let got = map.line(lasti);
            if got != want {
                fail("PyCode_Addr2Line", lasti, want, got);
            }
        }

        // The Python-level answers, one per unit of the bytecode.
        let py = code["py"].arr();
        assert_eq!(
            py.len() as i64,
            nbytes / unit,
            "{name}: one answer per offset"
        );
        let mut prev: Option<(usize, i32)> = None;
        let mut run_start = 0;
        for (i, v) in py.iter().enumerate() {
            let want = v.opt_int().map(|l| i32::try_from(l).unwrap());
            let lasti = i as i64;
            let got = map.line(lasti);
            if got != want {
                fail("the Python-level API", lasti, want, got);
            }
            seen.offsets += 1;
            match (prev, want) {
                (_, None) => seen.no_line += 1,
                (Some((_, p)), Some(l)) => {
                    if l < p {
                        seen.negative_step += 1;
                    }
                    if (i64::from(l) - i64::from(p)).abs() > 255 {
                        seen.jump_over_255_lines += 1;
                    }
                    if l != p {
                        run_start = i;
                    }
                }
                (None, Some(_)) => run_start = i,
            }
            if want.is_some() && (i - run_start) as i64 * unit == 256 {
                seen.line_over_255_bytes += 1;
            }
            if let Some(l) = want {
                prev = Some((i, l));
            }
        }

        // Past the end: the last line up to 3.9, no line from 3.10.
        let past_end = map.line(nbytes / unit + 1);
        if unit == 2 {
            assert_eq!(past_end, None, "{name}: past the end");
        }
        seen.codes += 1;
    }

    assert!(
        failures.is_empty(),
        "{} mismatches against Python {major}.{minor}; first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    eprintln!("Python {major}.{minor}: {seen:?}");
    // The source must keep exercising what it was written for.
    assert!(seen.codes > 200, "{seen:?}");
    assert!(seen.jump_over_255_lines >= 2, "{seen:?}");
    assert!(seen.line_over_255_bytes >= 1, "{seen:?}");
    if (major, minor) >= (3, 8) {
        assert!(seen.negative_step > 0, "{seen:?}");
    }
    if (major, minor) >= (3, 10) {
        assert!(seen.no_line > 0, "{seen:?}");
    }
}

strobe_testkit::per_interpreter! {
    fn linetables(interp) {
        check(interp);
    }
}

/// Just enough JSON for the dump: objects, arrays, integers, strings, booleans, null.
mod json {
    use super::BTreeMap;

    #[derive(Debug)]
    pub enum Value {
        Null,
        Bool(bool),
        Int(i64),
        Str(String),
        Arr(Vec<Value>),
        Obj(BTreeMap<String, Value>),
    }

    impl Value {
        pub fn int(&self) -> i64 {
            match self {
                Value::Int(i) => *i,
                other => panic!("expected an integer, got {other:?}"),
            }
        }
        pub fn opt_int(&self) -> Option<i64> {
            match self {
                Value::Null => None,
                other => Some(other.int()),
            }
        }
        pub fn bool(&self) -> bool {
            match self {
                Value::Bool(b) => *b,
                other => panic!("expected a boolean, got {other:?}"),
            }
        }
        pub fn str(&self) -> &str {
            match self {
                Value::Str(s) => s,
                other => panic!("expected a string, got {other:?}"),
            }
        }
        pub fn arr(&self) -> &[Value] {
            match self {
                Value::Arr(a) => a,
                other => panic!("expected an array, got {other:?}"),
            }
        }
    }

    impl std::ops::Index<&str> for Value {
        type Output = Value;
        fn index(&self, key: &str) -> &Value {
            match self {
                Value::Obj(m) => m.get(key).unwrap_or_else(|| panic!("no key {key:?}")),
                other => panic!("expected an object, got {other:?}"),
            }
        }
    }

    pub fn parse(text: &str) -> Value {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.s.len(), "trailing data after the JSON document");
        v
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }
        fn peek(&mut self) -> u8 {
            self.ws();
            *self.s.get(self.i).expect("unexpected end of JSON")
        }
        fn eat(&mut self, lit: &str) {
            assert!(
                self.s[self.i..].starts_with(lit.as_bytes()),
                "expected {lit:?} at byte {}",
                self.i
            );
            self.i += lit.len();
        }
        fn value(&mut self) -> Value {
            match self.peek() {
                b'{' => {
                    self.i += 1;
                    let mut m = BTreeMap::new();
                    if self.peek() == b'}' {
                        self.i += 1;
                        return Value::Obj(m);
                    }
                    loop {
                        let Value::Str(k) = self.value() else {
                            panic!("object key is not a string at byte {}", self.i)
                        };
                        assert_eq!(self.peek(), b':');
                        self.i += 1;
                        let v = self.value();
                        m.insert(k, v);
                        match self.peek() {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                return Value::Obj(m);
                            }
                            c => panic!("unexpected {:?} at byte {}", c as char, self.i),
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    let mut a = Vec::new();
                    if self.peek() == b']' {
                        self.i += 1;
                        return Value::Arr(a);
                    }
                    loop {
                        a.push(self.value());
                        match self.peek() {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                return Value::Arr(a);
                            }
                            c => panic!("unexpected {:?} at byte {}", c as char, self.i),
                        }
                    }
                }
                b'"' => Value::Str(self.string()),
                b'n' => {
                    self.eat("null");
                    Value::Null
                }
                b't' => {
                    self.eat("true");
                    Value::Bool(true)
                }
                b'f' => {
                    self.eat("false");
                    Value::Bool(false)
                }
                _ => {
                    let start = self.i;
                    if self.s[self.i] == b'-' {
                        self.i += 1;
                    }
                    while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                        self.i += 1;
                    }
                    let t = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                    Value::Int(
                        t.parse()
                            .unwrap_or_else(|_| panic!("bad number {t:?} at byte {start}")),
                    )
                }
            }
        }
        fn string(&mut self) -> String {
            self.i += 1; // opening quote
            let mut out = String::new();
            loop {
                let c = self.s[self.i];
                self.i += 1;
                match c {
                    b'"' => return out,
                    b'\\' => {
                        let e = self.s[self.i];
                        self.i += 1;
                        match e {
                            b'n' => out.push('\n'),
                            b't' => out.push('\t'),
                            b'r' => out.push('\r'),
                            b'b' => out.push('\u{8}'),
                            b'f' => out.push('\u{c}'),
                            b'u' => {
                                let h = std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
                                self.i += 4;
                                let cp = u32::from_str_radix(h, 16).unwrap();
                                out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                            }
                            other => out.push(other as char),
                        }
                    }
                    // The dump is ASCII (json.dump's default ensure_ascii).
                    other => out.push(other as char),
                }
            }
        }
    }
}
