//! The walker against real interpreters: every pyenv build on this machine runs a script with a
//! known stack, announces READY once that stack can no longer change, and the test walks it.
//!
//! The roots come from the library's symbol table (`nm`) and `/proc/PID/maps`, so this test
//! depends on neither the locate crate nor anything else being written in parallel.
//! A missing interpreter is a failure: `.ci/provision.sh` installs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use strobe_python_abi::{layout_for, Flavour, Layout, Version};
use strobe_remote::{Freeze, ProcessMemory};
use strobe_testkit::interpreters::Interpreter;
use strobe_testkit::Ready;
use strobe_walker::{RawSample, Roots, ThreadStack, Walker};

/// The target. Each statement that must not move once READY is printed shares one line with
/// the blocking call after it, so the reported line is the same at every instant after READY.
const SCRIPT: &str = r#"import sys, threading, time
try:
    import _thread as thread_mod
except ImportError:
    import thread as thread_mod

started = threading.Event()
forever = threading.Event()

def worker_fn():
    started.set(); forever.wait()  # MARK worker_fn

def c(worker):
    sys.stdout.write("READY %d %d %d\n" % (thread_mod.get_ident(), worker.ident, sys.hexversion)); sys.stdout.flush(); time.sleep(100000)  # MARK c

def b(worker):
    c(worker)  # MARK b

def a():
    t = threading.Thread(target=worker_fn, name="worker"); t.daemon = True; t.start(); started.wait(); b(t)  # MARK a

a()  # MARK <module>
"#;

/// The line of `script` that ends with `# MARK {mark}`.
fn mark_line(script: &str, mark: &str) -> i32 {
    script
        .lines()
        .position(|l| l.ends_with(&format!("# MARK {mark}")))
        .map(|i| i as i32 + 1)
        .unwrap()
}

/// Address of `symbol` in `lib` as linked (`nm`; `dynamic` selects the dynamic table).
fn symbol(lib: &Path, symbol: &str, dynamic: bool) -> u64 {
    let mut cmd = Command::new("nm");
    if dynamic {
        cmd.arg("-D");
    }
    let out = cmd.arg("--defined-only").arg(lib).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, _, name) = (f.next()?, f.next()?, f.next()?);
            (name == symbol).then(|| u64::from_str_radix(addr, 16).ok())?
        })
        .unwrap_or_else(|| panic!("{symbol} not in {}", lib.display()))
}

/// Load bias of the ELF file `elf` (as the host opens it) in `pid`: where its mapping at file
/// offset 0 starts, minus the virtual address its first PT_LOAD asks for (0 for libpython,
/// 0x400000 for a non-PIE executable).
fn load_bias(pid: u32, elf: &Path) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let name = elf.file_name().unwrap().to_str().unwrap();
    let start = maps
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let hit = f.len() >= 6
                && f[5].ends_with(&format!("/{name}"))
                && u64::from_str_radix(f[2], 16) == Ok(0);
            hit.then(|| u64::from_str_radix(f[0].split('-').next()?, 16).ok())?
        })
        .unwrap_or_else(|| panic!("{name} not mapped in {pid}"));
    let out = Command::new("readelf")
        .arg("-lW")
        .arg(elf)
        .output()
        .unwrap();
    let first_load = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.trim_start().starts_with("LOAD"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .unwrap();
    start - first_load
}

/// How to start one interpreter.
struct Launch {
    /// Label for messages.
    name: String,
    /// Command line up to (not including) the script.
    argv: Vec<String>,
    /// Where the host writes the script, and the path the target is given.
    script_host: PathBuf,
    script_target: String,
    /// The ELF holding the runtime, opened from the host (a libpython, or the executable).
    elf: PathBuf,
    debug_build: bool,
}

/// How to start `interp` on the script: pyenv builds keep the runtime in their libpython,
/// Debian's and sid's link it into the executable; sid interpreters run in the chroot (their
/// files are reached through the chroot's root).
fn launch(interp: &Interpreter) -> Launch {
    interp.require();
    let (major, minor) = interp.version;
    let file = format!("strobe-walk-live-{}-{}.py", std::process::id(), interp.name);
    let (argv, script_host, script_target) = match interp.chroot() {
        None => {
            let script = std::env::temp_dir().join(file);
            (
                interp.argv(),
                script.clone(),
                script.to_string_lossy().into_owned(),
            )
        }
        Some(root) => (
            vec![
                "chroot".into(),
                root.to_string_lossy().into_owned(),
                interp.path_in_target().to_string_lossy().into_owned(),
            ],
            root.join("tmp").join(&file),
            format!("/tmp/{file}"),
        ),
    };
    let elf = if interp.static_libpython {
        interp.path()
    } else {
        // 3.6 and 3.7 keep the pymalloc ABI flag in the library's name.
        let abiflags = if (major, minor) == (3, 6) || (major, minor) == (3, 7) {
            "m"
        } else {
            ""
        };
        interp
            .prefix()
            .join("lib")
            .join(format!("libpython{major}.{minor}{abiflags}.so.1.0"))
    };
    Launch {
        name: interp.name.to_string(),
        argv,
        script_host,
        script_target,
        elf,
        debug_build: interp.debug,
    }
}

/// Run the script, walk it, check the stacks.
/// `(thread id, [(code object, line)])`, innermost first.
type ThreadLines = (u64, Vec<(u64, Option<i32>)>);

fn check_live(launch: Launch) {
    let version = launch.name.as_str();
    std::fs::write(&launch.script_host, SCRIPT).unwrap();
    let target = Ready::start(
        Command::new(&launch.argv[0])
            .args(&launch.argv[1..])
            .arg(&launch.script_target)
            .stderr(Stdio::inherit()),
        version,
    );
    let pid = target.pid() as u32;
    let fields: Vec<u64> = target
        .said
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    let (main_ident, worker_ident) = (fields[0], fields[1]);
    let v = Version::from_hex(fields[2]);

    let mem = ProcessMemory::new(pid as i32);
    let bias = load_bias(pid, &launch.elf);
    let (layout, roots) = if (v.major, v.minor) >= (3, 7) {
        let runtime = bias + symbol(&launch.elf, "_PyRuntime", true);
        let layout = strobe_walker::layout::resolve(&mem, v, launch.debug_build, Some(runtime))
            .unwrap()
            .layout;
        if v.minor <= 12 {
            // ≤3.12 the generated table is the layout; only the exact version differs.
            let table = generated(v.major, v.minor);
            assert_eq!(
                Layout {
                    version: table.version,
                    ..layout
                },
                table
            );
        }
        let roots = Roots {
            runtime: Some(runtime),
            ..Roots::default()
        };
        (layout, roots)
    } else {
        let roots = Roots {
            interp_head: Some(bias + symbol(&launch.elf, "interp_head", false)),
            tstate_current: Some(bias + symbol(&launch.elf, "_PyThreadState_Current", false)),
            ..Roots::default()
        };
        (generated(v.major, v.minor), roots)
    };

    let mut walker = Walker::new(mem, layout, roots);
    let stacks = walker.walk().unwrap();
    // Twice: the second walk runs on cached code objects and must agree.
    assert_eq!(walker.walk().unwrap(), stacks);
    let script_name = launch.script_target.as_str();

    let main = find(&stacks, main_ident);
    let got: Vec<(&str, &str, Option<i32>)> = main
        .frames
        .iter()
        .map(|f| (&*f.function, &*f.filename, f.line))
        .collect();
    let want: Vec<(&str, &str, Option<i32>)> = ["c", "b", "a", "<module>"]
        .iter()
        .map(|&m| (m, script_name, Some(mark_line(SCRIPT, m))))
        .collect();
    assert_eq!(got, want, "{version}: main thread");
    if layout.tstate_native_thread_id.is_some() {
        assert_eq!(
            main.native_id,
            Some(pid),
            "{version}: main thread's TID is the PID"
        );
    }

    let worker = find(&stacks, worker_ident);
    let at = worker
        .frames
        .iter()
        .position(|f| &*f.function == "worker_fn")
        .unwrap_or_else(|| panic!("{version}: worker_fn not on {:?}", worker.frames));
    assert_eq!(worker.frames[at].line, Some(mark_line(SCRIPT, "worker_fn")));
    assert!(
        worker.frames[..at]
            .iter()
            .all(|f| f.filename.ends_with("threading.py")),
        "{version}: above worker_fn only threading's wait: {:?}",
        worker.frames
    );
    assert!(stacks.iter().filter(|t| t.holds_gil).count() <= 1);
    assert!(stacks.iter().all(|t| t.interp_id == stacks[0].interp_id));

    // The sampling path on the same, idle, target: from the third sample on (the first two
    // settle the batched read), the unchanged stacks are proven instead of walked (data-stack
    // chunks on 3.11+, frame objects before), and it still reports what a walk sees.
    let mut raw = RawSample::new();
    for _ in 0..4 {
        walker.sample_into(&mut raw).unwrap();
    }
    let sampled: Vec<ThreadLines> = raw
        .threads
        .iter()
        .map(|t| {
            let frames = raw.frames_of(t).iter().map(|f| (f.code_addr, f.line));
            (t.thread_id, frames.collect())
        })
        .collect();
    let walked: Vec<ThreadLines> = stacks
        .iter()
        .map(|t| {
            let frames = t.frames.iter().map(|f| (f.code_addr, f.line));
            (t.thread_id, frames.collect())
        })
        .collect();
    assert_eq!(sampled, walked, "{version}: sample_into against walk");
    assert!(
        walker.frames_proven() >= 8,
        "{version}: {} frames proven",
        walker.frames_proven()
    );
    drop(target);
    let _ = std::fs::remove_file(&launch.script_host);
}

fn generated(major: u8, minor: u8) -> Layout {
    *layout_for(major, minor, Flavour::DEFAULT)
        .unwrap_or_else(|| panic!("python-abi has no {major}.{minor} table"))
}

fn find(stacks: &[ThreadStack], ident: u64) -> &ThreadStack {
    stacks
        .iter()
        .find(|t| t.thread_id == ident)
        .unwrap_or_else(|| panic!("no thread {ident:#x} in {stacks:?}"))
}

// Every interpreter of the registry: pyenv's (libpython shared), Debian's /usr/bin/python3.11
// and sid's (libpython linked statically into the executable), release and debug.
strobe_testkit::per_interpreter! {
    fn live(interp) {
        check_live(launch(interp));
    }
}

/// A target whose threads and stacks never stop changing: threads start and exit, recursion
/// depth jumps across data-stack chunk boundaries (16 KiB each, ~100 frames), generators and
/// C-to-Python calls (`sorted` with a key, 3.11–3.12 `_PyCFrame` changes) come and go.
const CHURN: &str = r#"import sys, threading, random

def leaf(n):
    return sum(range(n))

def gen(depth):
    yield rec(depth)

def rec(depth):
    if depth <= 0:
        return leaf(3000)
    if depth % 17 == 0:
        return sum(gen(depth - 1))
    if depth % 23 == 0:
        return sorted([depth], key=lambda x: rec(depth - 1))[0]
    return rec(depth - 1)

def worker(seed):
    r = random.Random(seed)
    for _ in range(3):
        rec(r.randint(0, 150))

def main(depth):
    # The churn runs 200 frames deep, so every sample of this thread crosses data-stack chunks
    # whatever the scheduling (a loaded machine may otherwise catch it only shallow).
    if depth > 0:
        return main(depth - 1)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    r = random.Random(1)
    n = 0
    while True:
        ts = [threading.Thread(target=worker, args=(n + k,)) for k in range(2)]
        n += 2
        for t in ts:
            t.start()
        for _ in range(3):
            rec(r.randint(150, 400))
        for t in ts:
            t.join()

main(200)
"#;

/// `(tstate, thread id, GIL, [(code, line)])` per thread.
type Shape = Vec<(u64, u64, bool, Vec<(u64, Option<i32>)>)>;

fn shape_of(stacks: &[ThreadStack]) -> Shape {
    stacks
        .iter()
        .map(|t| {
            (
                t.tstate_addr,
                t.thread_id,
                t.holds_gil,
                t.frames.iter().map(|f| (f.code_addr, f.line)).collect(),
            )
        })
        .collect()
}

/// A pyenv interpreter running `script` (its own file, named after `tag`), once it said READY,
/// with what a walker of it needs.
struct Scripted {
    target: Ready,
    mem: ProcessMemory,
    layout: Layout,
    roots: Roots,
    script: PathBuf,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.script);
    }
}

fn start_script(interp: &Interpreter, tag: &str, script: &str) -> Scripted {
    let version = interp.name;
    let mut launch = launch(interp);
    // Its own script file: the live test of the same version runs concurrently and would
    // otherwise overwrite (and delete) the same path.
    launch.script_host = launch.script_host.with_file_name(format!(
        "strobe-walk-{tag}-{}-{version}.py",
        std::process::id()
    ));
    launch.script_target = launch.script_host.to_string_lossy().into_owned();
    std::fs::write(&launch.script_host, script).unwrap();
    let target = Ready::start(
        Command::new(&launch.argv[0])
            .args(&launch.argv[1..])
            .arg(&launch.script_target)
            .stdin(Stdio::piped())
            .stderr(Stdio::inherit()),
        version,
    );
    let pid = target.pid() as u32;
    let mem = ProcessMemory::new(pid as i32);
    let bias = load_bias(pid, &launch.elf);
    let runtime = bias + symbol(&launch.elf, "_PyRuntime", true);
    // The exact version resolves the layout: only pyenv builds name it.
    let full = interp
        .full_version()
        .unwrap_or_else(|| panic!("{version}: scripted tests run pyenv builds"));
    let parts: Vec<u64> = full.split('.').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts[1], u64::from(interp.version.1));
    let v = Version::from_hex((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | 0xf0);
    let layout = strobe_walker::layout::resolve(&mem, v, false, Some(runtime))
        .unwrap()
        .layout;
    let roots = Roots {
        runtime: Some(runtime),
        ..Roots::default()
    };
    Scripted {
        target,
        mem,
        layout,
        roots,
        script: launch.script_host,
    }
}

/// `sample_into` with `w`, as a [`Shape`]; the names of every frame it resolved must be
/// available.
fn sample_shape(
    w: &mut Walker<ProcessMemory>,
    raw: &mut RawSample,
) -> Result<Shape, strobe_walker::WalkError> {
    w.sample_into(raw)?;
    Ok(raw
        .threads
        .iter()
        .map(|t| {
            let frames = raw
                .frames_of(t)
                .iter()
                .map(|f| {
                    w.frame_info(*f).unwrap();
                    (f.code_addr, f.line)
                })
                .collect();
            (t.tstate_addr, t.thread_id, t.holds_gil, frames)
        })
        .collect())
}

/// Most samples [`check_churn`] takes while waiting for the target's churn to show.
const MAX_CHURN_SAMPLES: usize = 20_000;

fn check_churn(interp: &Interpreter) {
    let version = interp.name;
    let run = start_script(interp, "churn", CHURN);
    let (pid, mem, layout, roots) = (run.target.pid() as u32, run.mem, run.layout, run.roots);
    let mut long_lived = Walker::new(mem, layout, roots);
    let mut raw = RawSample::new();
    let (mut list_changes, mut deepest, mut max_threads, mut failed) = (0, 0, 0, 0);
    let mut last_list: Vec<u64> = Vec::new();
    // At least 300 samples, and on until the churn shows (threads came and went, a stack crossed
    // chunks): how many samples that takes depends on how fast this loop runs against the
    // target's churn, not on the walker.
    let mut samples = 0;
    for i in 0..MAX_CHURN_SAMPLES {
        if i >= 300 && list_changes > 5 && deepest > 150 {
            break;
        }
        samples += 1;
        let freeze = Freeze::all_threads(pid as i32).unwrap();
        // The same frozen memory through both walkers: the one that remembers (speculative
        // ranges, thread lists, C frames, unchanged frames) must see what a fresh one sees.
        let fresh = Walker::new(mem, layout, roots).walk();
        let fast = sample_shape(&mut long_lived, &mut raw);
        drop(freeze);
        // Paced like a sampler at 1 kHz (not a wait for anything): back to back, the freezes
        // would leave the target almost no time to run between them, and so no churn.
        std::thread::sleep(std::time::Duration::from_millis(1));
        let fresh = fresh.map(|s| shape_of(&s));
        assert_eq!(fast, fresh, "{version}: sample {i}");
        // A thread stopped half-way through exiting can leave pointers to memory it already
        // freed: both walkers then fail the same way, and the next sample is fine.
        let stacks = match fresh {
            Ok(stacks) => stacks,
            Err(e) => {
                assert!(e.is_transient(), "{version}: sample {i}: {e}");
                failed += 1;
                continue;
            }
        };
        max_threads = max_threads.max(stacks.len());
        let list: Vec<u64> = stacks.iter().map(|t| t.0).collect();
        if list != last_list {
            list_changes += 1;
            last_list = list;
        }
        for t in &stacks {
            deepest = deepest.max(t.3.len());
        }
    }
    // The churn really happened: threads came and went, and stacks crossed chunks.
    assert!(
        list_changes > 5,
        "{version}: the thread list changed {list_changes} times"
    );
    assert!(max_threads >= 2);
    assert!(
        failed * 10 < samples,
        "{version}: {failed} of {samples} samples failed"
    );
    assert!(deepest > 150, "{version}: deepest stack {deepest}");
    if interp.version.1 >= 11 {
        // Proofs were used on this churn (and agreed with the fresh walks above).
        assert!(
            long_lived.frames_proven() > 0,
            "{version}: no frame was ever proven"
        );
    }
    drop(run);
}

strobe_testkit::per_interpreter! {
    fn churn(interp) for [pyenv_3_10, pyenv_3_11, pyenv_3_12, pyenv_3_13] {
        check_churn(interp);
    }
}

/// An asyncio program: three tasks whose coroutines await each other three deep, the innermost
/// descending twice (by two lines) through `work` 10 to 149 frames deep (some stacks cross
/// data-stack chunks), spinning at the bottom, then switching tasks. Coroutine frames live in
/// their objects, between the event loop's frames and their callees in the data-stack chunk.
/// At each bottom the task says where it is (`READY`/`AT task frames path`) and waits for a
/// byte on stdin: the test samples that known stack, then lets it go on.
const ASYNC: &str = r#"import asyncio, os, sys

word = ["READY"]

def work(k, frames, left, path):
    if left > 1:
        if path: return work(k, frames, left - 1, path)  # MARK recurse 1
        return work(k, frames, left - 1, path)  # MARK recurse 0
    sys.stdout.write("%s %d %d %d\n" % (word[0], k, frames, path)); sys.stdout.flush(); word[0] = "AT"; os.read(0, 1)  # MARK gate
    total = 0
    for i in range(20000):
        total += i * i
    return total

def descents(k, frames):
    work(k, frames, frames, 0); work(k, frames, frames, 1)  # MARK descents

async def co_inner(k):
    step = 0
    while True:
        frames = 10 + (37 * step + 11 * k) % 140
        if k == 0: descents(k, frames)  # MARK co_inner 0
        if k == 1: descents(k, frames)  # MARK co_inner 1
        if k == 2: descents(k, frames)  # MARK co_inner 2
        step += 1
        await asyncio.sleep(0)

async def co_middle(k):
    await co_inner(k)  # MARK co_middle

async def co_outer(k):
    await co_middle(k)  # MARK co_outer

async def main():
    tasks = [asyncio.ensure_future(co_outer(k)) for k in range(3)]
    await asyncio.gather(*tasks)

asyncio.run(main())  # MARK <module>
"#;

/// Steps of [`check_asyncio`]: one stop at a gate each, both of a task's descents in turn.
const ASYNC_STEPS: usize = 60;

/// Least number of steps whose settled gate sample proves every frame but the innermost: all,
/// whatever the depths (walk_proof_live.rs sweeps them across chunk boundaries; a stack whose
/// newest chunk held one frame, or 3.11's coroutine stacks past a boundary, once proved none).
const ASYNC_PROVEN_STEPS: usize = ASYNC_STEPS;

/// The asyncio program's main stack at its gate with `depth` `work` frames, innermost first:
/// names and, for the script's own frames, lines.
fn async_stack(task: usize, depth: usize, path: usize) -> Vec<(String, Option<i32>)> {
    let line = |mark: &str| Some(mark_line(ASYNC, mark));
    let mut want = vec![("work".to_string(), line("gate"))];
    let recurse = line(&format!("recurse {path}"));
    want.extend((1..depth).map(|_| ("work".to_string(), recurse)));
    want.push(("descents".into(), line("descents")));
    want.push(("co_inner".into(), line(&format!("co_inner {task}"))));
    want.extend(["co_middle", "co_outer"].map(|c| (c.to_string(), line(c))));
    // The event loop's frames are asyncio's: their lines are not checked.
    let rest = "Handle._run BaseEventLoop._run_once BaseEventLoop.run_forever \
                BaseEventLoop.run_until_complete Runner.run run";
    want.extend(rest.split_whitespace().map(|n| (n.to_string(), None)));
    want.push(("<module>".into(), line("<module>")));
    want
}

/// Frozen samples of the asyncio program agree with fresh walks, at its gates (a known stack
/// under the coroutines, the task told by `co_inner`'s line) and wherever it is just after
/// being let go; at a gate the unchanged stack, the coroutine frames and the event loop's
/// below them included, is proven rather than walked.
///
/// Not back to back on the running target: a freeze right after another lets it run a few
/// µs of CPU (measured 1-15 µs a sample), so 200 such samples froze one or a few instants, and
/// whether those were inside the coroutines was luck (CI: 26 of 200; under load here, 174 of
/// 200 in `_run_once` and `Handle._run`, the target running 8.5 ms of CPU across all 200).
fn check_asyncio(interp: &Interpreter) {
    use std::io::{BufRead, Write};
    let version = interp.name;
    let mut run = start_script(interp, "asyncio", ASYNC);
    let (pid, mem, layout, roots) = (run.target.pid() as u32, run.mem, run.layout, run.roots);
    let mut go = run.target.child.stdin.take().unwrap();
    let mut long_lived = Walker::new(mem, layout, roots);
    let mut raw = RawSample::new();
    // A frozen sample, checked against a fresh walk: names (lines of ours), frames proven.
    let mut sample = |what: &str| {
        let freeze = Freeze::all_threads(pid as i32).unwrap();
        let fresh = Walker::new(mem, layout, roots).walk();
        let before = long_lived.frames_proven();
        let fast = sample_shape(&mut long_lived, &mut raw);
        drop(freeze);
        assert_eq!(fast, fresh.map(|s| shape_of(&s)), "{version}: {what}");
        let frames = raw.threads.iter().flat_map(|t| raw.frames_of(t));
        let names: Vec<(String, Option<i32>)> = frames
            .map(|f| {
                let info = long_lived.frame_info(*f).unwrap();
                let ours = info.filename.contains("strobe-walk-asyncio-");
                (info.function.to_string(), f.line.filter(|_| ours))
            })
            .collect();
        (names, long_lived.frames_proven() - before)
    };
    let mut said = run.target.said.clone();
    let mut proven_steps = 0;
    for step in 0..ASYNC_STEPS {
        let f: Vec<usize> = said.split(' ').map(|w| w.parse().unwrap()).collect();
        let (task, depth, path) = (f[0], f[1], f[2]);
        assert_eq!([task, path], [step / 2 % 3, step % 2], "{version}");
        let want = async_stack(task, depth, path);
        // The target is at its gate (between its flush and its read, or in the read): the
        // names cannot change. The third sample is settled (the first two after a change
        // settle the batched read): it walks at most the innermost frame (ASYNC_PROVEN_STEPS).
        for j in 0..3 {
            let (got, proven) = sample(&format!("step {step}, gate sample {j}"));
            assert_eq!(got, want, "{version}: step {step}, gate sample {j}");
            if j == 2 {
                assert!(
                    proven == 0 || proven + 1 >= want.len() as u64,
                    "{version}: step {step}: {proven} of {} frames proven",
                    want.len()
                );
                proven_steps += usize::from(proven > 0);
            }
        }
        go.write_all(b"g").unwrap();
        go.flush().unwrap();
        // Wherever the target is now: still at the gate, spinning, unwinding or between tasks.
        sample(&format!("step {step}, let go"));
        said.clear();
        run.target.stdout.read_line(&mut said).unwrap();
        said = match said.strip_prefix("AT ") {
            Some(rest) => rest.trim().to_string(),
            None => panic!("{version}: step {step}: the target said {said:?}"),
        };
    }
    assert!(
        proven_steps >= ASYNC_PROVEN_STEPS,
        "{version}: {proven_steps} of {ASYNC_STEPS} gates proven"
    );
}

strobe_testkit::per_interpreter! {
    fn asyncio(interp) for [pyenv_3_11, pyenv_3_12, pyenv_3_13] {
        check_asyncio(interp);
    }
}
