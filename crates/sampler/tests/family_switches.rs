//! `--subprocesses` thread states from one per-CPU switch reader (pyenv 3.12).
//!
//! A parent starts three children; each child has a worker thread that sleeps (blocked in
//! `read`) or spins (hashing with the GIL released, so the sampler looks its state up rather
//! than taking a GIL holder as running) as the test tells it through the parent. Phases:
//! asleep, spinning, asleep, spinning. Every worker sample of a phase must have the phase's
//! state: idle while asleep (in `rest`), running while spinning. And while all four processes
//! are sampled, the sampler has one set of per-CPU switch events open (one perf descriptor per
//! online CPU), not one set per process.
//!
//! A phase's samples are those of rounds that began after the test heard the phase was set
//! (`READY` from the parent: every worker blocked in `read`, per `/proc/PID/task/TID/syscall`,
//! or every worker said it spins) and ended before the test asked for the next phase: a later
//! round began before that (rounds run one after another; each sample carries its round's
//! start). The round in flight when the phase changes may pair a state with frames read after
//! the change, and is left out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strobe_aggregate::AggregatorSide;
use strobe_sampler::{start, SamplerConfig};
use strobe_target::Target;
use strobe_testkit::{Ready, TempDir};

/// The family. The parent prints `READY <child pids>` once every worker is blocked in `read`;
/// then on each line `spin` or `sleep` of its stdin it tells every child so, and prints
/// `READY ...` once every worker spins (it said so) or is blocked in `read` again. A child
/// whose stdin closes (the parent ended) ends.
const SCRIPT: &str = r#"import hashlib, os, select, subprocess, sys, threading

CHILDREN = 3

def rest():
    return os.read(0, 1)

def spin(buf):
    while not select.select([0], [], [], 0)[0]:
        hashlib.sha256(buf).digest()

def worker():
    buf = b"x" * (1 << 20)
    while True:
        cmd = rest()
        if cmd == b"s":
            os.write(1, b"s")
            spin(buf)
        elif cmd != b"z":
            return

def child():
    t = threading.Thread(target=worker, name="worker")
    t.start()
    os.write(1, b"%d\n" % t.native_id)
    t.join()

def blocked_in_read(pid, tid):
    try:
        with open("/proc/%d/task/%d/syscall" % (pid, tid)) as f:
            return f.read().split()[0] == "0"
    except (OSError, IndexError):
        return False

def wait_asleep(children, tids):
    for c, tid in zip(children, tids):
        while not blocked_in_read(c.pid, tid):
            pass

def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

def parent():
    children = [subprocess.Popen([sys.executable, __file__, "child"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE) for _ in range(CHILDREN)]
    tids = [int(c.stdout.readline()) for c in children]
    wait_asleep(children, tids)
    say("READY " + " ".join(str(c.pid) for c in children))
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "spin":
            for c in children:
                c.stdin.write(b"s")
                c.stdin.flush()
            for c in children:
                if c.stdout.read(1) != b"s":
                    sys.exit("a child did not start spinning")
            say("READY spinning")
        elif cmd == "sleep":
            for c in children:
                c.stdin.write(b"z")
                c.stdin.flush()
            wait_asleep(children, tids)
            say("READY asleep")
    for c in children:
        c.stdin.close()
    for c in children:
        c.wait()

if sys.argv[1:] == ["child"]:
    child()
else:
    parent()
"#;

/// Worker samples each child must have in each phase.
const PER_PHASE: usize = 20;

/// One sample of a worker thread.
#[derive(Debug, Clone)]
struct Seen {
    /// Its round's start (ns since the recording started).
    at: u64,
    /// The child it is of.
    pid: i32,
    /// Its innermost function.
    leaf: String,
    idle: bool,
}

/// Every sample drained so far: the workers' and every round's start.
#[derive(Default)]
struct Collected {
    workers: Vec<Seen>,
    rounds: Vec<u64>,
}

impl Collected {
    fn drain(&mut self, agg: &mut AggregatorSide) {
        let d = agg.drain().unwrap();
        for s in d.samples {
            self.rounds.push(s.timestamp_ns);
            let stack = d.tables.stack(s.stack);
            let names: Vec<&str> = stack
                .iter()
                .map(|&f| d.tables.str(d.tables.frame(f).unwrap().function))
                .collect();
            if !names.contains(&"worker") {
                continue;
            }
            let pid = names[0]
                .strip_prefix("process ")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no process frame: {names:?}"));
            self.workers.push(Seen {
                at: s.timestamp_ns,
                pid,
                leaf: names.last().unwrap().to_string(),
                idle: s.flags.idle(),
            });
        }
    }

    /// Worker samples of child `pid` from rounds that began after `from` (ns).
    fn since(&self, pid: i32, from: u64) -> usize {
        self.workers
            .iter()
            .filter(|s| s.pid == pid && s.at > from)
            .count()
    }
}

/// Perf event descriptors this process has open.
fn perf_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy() == "anon_inode:[perf_event]")
        .count()
}

/// The online CPUs (`/sys/devices/system/cpu/online`: `0-3,5`).
fn online_cpus() -> usize {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    list.trim()
        .split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Asleep,
    Spinning,
}

#[test]
fn a_family_s_thread_states_come_from_one_per_cpu_reader() {
    let python = strobe_testkit::interpreters::get("pyenv_3_12")
        .require()
        .path();
    let dir = TempDir::new();
    let script = dir.join("family_switches.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let mut family = Ready::start(
        Command::new(python).arg(&script).stdin(Stdio::piped()),
        "family-switches",
    );
    let mut tell = family.child.stdin.take().unwrap();
    let children: Vec<i32> = family
        .said
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(children.len(), 3, "{}", family.said);

    let (side, mut agg) = strobe_aggregate::pipeline(1 << 18);
    let cfg = SamplerConfig {
        rate_hz: 1000.0,
        include_idle: true,
        subprocesses: true,
        duration: Some(Duration::from_secs(120)),
        ..SamplerConfig::default()
    };
    let handle = start(Target::attach(family.pid()).unwrap(), None, cfg, side).unwrap();
    let clock = handle.stats().start();
    let now_ns = || clock.elapsed().as_nanos() as u64;
    let deadline = Instant::now() + Duration::from_secs(100);
    let mut seen = Collected::default();
    // Each phase: what it is, when it was known to be set, when the next was asked for.
    let mut phases: Vec<(Phase, u64, u64)> = Vec::new();
    let mut fds = Vec::new();
    // The workers have been asleep since before the sampler started.
    let (mut phase, mut set_at) = (Phase::Asleep, 0);
    for next in [
        Some(Phase::Spinning),
        Some(Phase::Asleep),
        Some(Phase::Spinning),
        None,
    ] {
        // Enough samples of every child's worker in this phase (one more than asserted: the
        // round in flight at the change is left out).
        while !children.iter().all(|&c| seen.since(c, set_at) > PER_PHASE) {
            assert!(
                !handle.is_finished() && Instant::now() < deadline,
                "{phase:?}: worker samples per child {:?}",
                children
                    .iter()
                    .map(|&c| seen.since(c, set_at))
                    .collect::<Vec<_>>()
            );
            seen.drain(&mut agg);
            // Polling the queue, as `strobe record` does; not a wait for anything to happen.
            std::thread::sleep(Duration::from_millis(2));
        }
        // Every process has been read and its threads' states looked up by now.
        fds.push(perf_fds());
        let Some(next) = next else {
            phases.push((phase, set_at, u64::MAX));
            break;
        };
        let asked_at = now_ns();
        phases.push((phase, set_at, asked_at));
        let command: &[u8] = match next {
            Phase::Spinning => b"spin\n",
            Phase::Asleep => b"sleep\n",
        };
        tell.write_all(command).unwrap();
        tell.flush().unwrap();
        let mut line = String::new();
        family.stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("READY"), "the family said {line:?}");
        (phase, set_at) = (next, now_ns());
    }
    handle.stop();
    let summary = handle.join().unwrap();
    while !agg.finished() {
        seen.drain(&mut agg);
    }
    drop(tell);
    drop(family);

    assert_eq!(summary.subprocesses_sampled, 3, "{summary:?}");
    let cpus = online_cpus();
    assert!(
        fds.iter().all(|&n| n == cpus),
        "perf descriptors open at each phase's end {fds:?}: one per CPU ({cpus}) expected"
    );
    seen.rounds.sort_unstable();
    seen.rounds.dedup();
    for &(phase, from, to) in &phases {
        // Rounds that ended before `to`: a later round began before it.
        let last_start = seen.rounds.iter().copied().filter(|&r| r < to).max();
        let within = |s: &&Seen| s.at > from && last_start.is_some_and(|l| s.at < l);
        for &child in &children {
            let of: Vec<&Seen> = seen
                .workers
                .iter()
                .filter(|s| s.pid == child)
                .filter(within)
                .collect();
            assert!(
                of.len() >= PER_PHASE,
                "{phase:?} ({from}..{to} ns): {} samples of child {child}'s worker",
                of.len()
            );
            let wrong: Vec<&&Seen> = of
                .iter()
                .filter(|s| match phase {
                    Phase::Asleep => s.leaf != "rest" || !s.idle,
                    Phase::Spinning => s.idle || !matches!(s.leaf.as_str(), "spin" | "worker"),
                })
                .collect();
            assert!(
                wrong.is_empty(),
                "{phase:?} ({from}..{to} ns), child {child}: {} of {} samples wrong: {:?}",
                wrong.len(),
                of.len(),
                &wrong[..wrong.len().min(10)]
            );
        }
    }
    let by_child: HashMap<i32, usize> = seen.workers.iter().fold(HashMap::new(), |mut m, s| {
        *m.entry(s.pid).or_default() += 1;
        m
    });
    assert_eq!(by_child.len(), 3, "{by_child:?}");
}
