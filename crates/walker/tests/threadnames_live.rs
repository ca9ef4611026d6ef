//! `threadnames::thread_names` against real interpreters: every version we support, and one
//! that never imported `threading` (synthetic images are in `threadnames.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use strobe_memory::{MemError, RemoteMemory};

use strobe_python_abi::{layout_for, Flavour, Layout};
use strobe_remote::ProcessMemory;
use strobe_testkit::interpreters;
use strobe_walker::threadnames::{thread_names, ThreadNameCache};
// ------------------------------------------------------------------------------------------------
// Real interpreters
// ------------------------------------------------------------------------------------------------

const TARGET: &str = include_str!("data/threadnames/target.py");

/// A running target; killed when dropped so a failing assertion leaves nothing behind.
struct Target {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Option<Lines<BufReader<ChildStdout>>>,
}

impl Drop for Target {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the target says about itself.
struct Report {
    major: u8,
    minor: u8,
    flavour: Flavour,
    interp: u64,
    names: HashMap<u64, String>,
}

fn start(mut cmd: Command) -> (Target, Report) {
    cmd.args(["-c", TARGET])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("start the target interpreter");
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut report = Report {
        major: 0,
        minor: 0,
        flavour: Flavour::DEFAULT,
        interp: 0,
        names: HashMap::new(),
    };
    let mut ready = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split(' ').collect();
        match words[..] {
            ["VERSION", major, minor, debug, ft] => {
                report.major = major.parse().unwrap();
                report.minor = minor.parse().unwrap();
                report.flavour = Flavour {
                    debug: debug == "1",
                    free_threaded: ft == "1",
                };
            }
            ["INTERP", addr] => report.interp = addr.parse().unwrap(),
            ["THREAD", ident, hex] => {
                report.names.insert(ident.parse().unwrap(), unhex(hex));
            }
            ["READY"] => {
                ready = true;
                break;
            }
            _ => panic!("unexpected line from target: {line:?}"),
        }
    }
    assert!(ready, "target exited before READY (see its stderr above)");
    // Keep the pipes open: the target follows commands on stdin until the test is done.
    let target = Target {
        child,
        stdin,
        lines: Some(lines),
    };
    (target, report)
}

fn unhex(hex: &str) -> String {
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    String::from_utf8(bytes).unwrap()
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

impl Target {
    /// Send one command (see target.py) and wait for its OK; the THREAD line a `start`
    /// prints comes back as `(ident, name)`.
    fn command(&mut self, line: &str) -> Option<(u64, String)> {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut thread = None;
        for reply in self.lines.as_mut().unwrap() {
            let reply = reply.unwrap();
            let words: Vec<&str> = reply.split(' ').collect();
            match words[..] {
                ["OK"] => return thread,
                ["THREAD", ident, hex] => thread = Some((ident.parse().unwrap(), unhex(hex))),
                _ => panic!("unexpected reply to {line:?}: {reply:?}"),
            }
        }
        panic!("target exited after {line:?} (see its stderr above)");
    }
}

/// Counts the reads made through it: a batched read counts once.
struct Counting<'a> {
    mem: &'a ProcessMemory,
    reads: Cell<usize>,
}

impl RemoteMemory for Counting<'_> {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.reads.set(self.reads.get() + 1);
        self.mem.read_into(addr, buf)
    }

    fn read_batch(&self, reqs: &[(u64, usize)], buf: &mut [u8]) -> Result<(), MemError> {
        self.reads.set(self.reads.get() + 1);
        self.mem.read_batch(reqs, buf)
    }
}

fn layout(report: &Report) -> &'static Layout {
    layout_for(report.major, report.minor, report.flavour).unwrap_or_else(|| {
        panic!(
            "no generated layout for {}.{} {:?} in python-abi",
            report.major, report.minor, report.flavour
        )
    })
}

fn check(cmd: Command) {
    let (target, report) = start(cmd);
    // The target's own view must be rich enough to mean something: main thread, the seven
    // threads it started, a default name and a non-ASCII one.
    assert_eq!(report.names.len(), 8, "target reported {:?}", report.names);
    assert!(report.names.values().any(|n| n == "MainThread"));
    assert!(report.names.values().any(|n| n.starts_with("Thread-")));
    assert!(report.names.values().any(|n| n == "w\u{f6}rker-1"));
    let layout = layout(&report);
    let mem = ProcessMemory::new(target.child.id() as i32);
    let got = thread_names(&mem, layout, report.interp).unwrap();
    assert_eq!(got, report.names);
    cached(target, &report, &mem, layout);
}

/// What a [`ThreadNameCache`] gives while the threads change: the same names as the target,
/// one read when nothing changed, a renamed thread's new name, a new thread's name, an ended
/// thread gone, each at the next lookup.
fn cached(mut target: Target, report: &Report, mem: &ProcessMemory, layout: &Layout) {
    let counting = Counting {
        mem,
        reads: Cell::new(0),
    };
    let mut cache = ThreadNameCache::new();
    let mut want = report.names.clone();
    // Nothing of the target runs during the two lookups (a thread still on its way to its
    // wait, on a loaded machine, changes bytes the second lookup compares).
    strobe_testkit::procfs::wait_all_asleep(
        target.child.id() as i32,
        std::time::Duration::from_secs(60),
    );
    assert_eq!(
        cache.lookup(&counting, layout, report.interp),
        Ok(want.clone())
    );
    counting.reads.set(0);
    assert_eq!(
        cache.lookup(&counting, layout, report.interp),
        Ok(want.clone())
    );
    assert_eq!(
        counting.reads.get(),
        1,
        "reads of a lookup that found no change"
    );

    let new_name = "renamed again \u{e9}";
    target.command(&format!("rename {}", hex(new_name)));
    let renamed = want
        .values_mut()
        .find(|n| n.starts_with("renamed-"))
        .expect("the renamed thread");
    *renamed = new_name.to_string();
    assert_eq!(cache.lookup(mem, layout, report.interp), Ok(want.clone()));

    let (ident, name) = target.command(&format!("start {}", hex("late"))).unwrap();
    assert_eq!(name, "late");
    want.insert(ident, name);
    assert_eq!(cache.lookup(mem, layout, report.interp), Ok(want.clone()));

    target.command("end");
    want.remove(&ident);
    assert_eq!(cache.lookup(mem, layout, report.interp), Ok(want));
}

// Every interpreter of the registry; sid's run through `chroot`, which execs them, so the
// child's PID is Python's.
strobe_testkit::per_interpreter! {
    fn live(interp) {
        check(interp.command());
    }
}

/// A process that never imported `threading` (3.6 does not at startup, and `-S` keeps `site`
/// out) has no names, which is not an error.
#[test]
fn threading_never_imported() {
    let script = "import sys, ctypes\n\
                  assert 'threading' not in sys.modules\n\
                  f = ctypes.pythonapi.PyInterpreterState_Head\n\
                  f.restype = ctypes.c_void_p\n\
                  sys.stdout.write('VERSION %d %d 0 0\\nINTERP %d\\nREADY\\n' % \
                  (sys.version_info[0], sys.version_info[1], f()))\n\
                  sys.stdout.flush()\n\
                  sys.stdin.read()\n";
    let mut cmd = interpreters::pyenv_version("3.6.15").command();
    cmd.arg("-S");
    let (target, interp) = {
        // Same protocol as the main target, minus threads.
        cmd.args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let target = Target {
            child,
            stdin,
            lines: None,
        };
        let mut interp = 0;
        let mut ready = false;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(a) = line.strip_prefix("INTERP ") {
                interp = a.parse().unwrap();
            }
            if line == "READY" {
                ready = true;
                break;
            }
        }
        assert!(ready, "target exited before READY (see its stderr above)");
        (target, interp)
    };
    let layout = layout_for(3, 6, Flavour::DEFAULT).expect("3.6 layout");
    let mem = ProcessMemory::new(target.child.id() as i32);
    assert_eq!(thread_names(&mem, layout, interp), Ok(HashMap::new()));
}
