//! Shared by the live tests: the C chain program built at test time, capture by each method,
//! and unwinding plus symbolisation of what was captured.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use strobe_native::{Binaries, DebugSearch, ModuleMap, NativeFrame, Symbolizer, Unwinder, Unwound};
use strobe_remote::{
    BlockedThread, PerfConfig, PerfThread, ProcessMemory, StackError, ThreadTracer, UserRegs,
};
use strobe_testkit::Ready;

/// The C source of the chain program.
pub const CHAIN_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/targets/chain.c");

/// A directory of its own under the temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "strobe-native-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run a tool, panicking with its output if it fails.
pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compile the chain program with `cc -g <opt>` into `dir`.
pub fn build_chain(dir: &Path, opt: &str) -> PathBuf {
    let exe = dir.join("chain");
    run(Command::new("cc")
        .args(["-g", opt, "-pthread", "-o"])
        .arg(&exe)
        .arg(CHAIN_SOURCE));
    exe
}

/// Line numbers of the `/* @name */` markers in the chain's source.
pub fn markers() -> HashMap<String, u32> {
    let text = std::fs::read_to_string(CHAIN_SOURCE).unwrap();
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(at) = line.find("/* @") {
            let name = line[at + 4..].split_whitespace().next().unwrap();
            out.insert(name.to_string(), i as u32 + 1);
        }
    }
    out
}

/// `nm -S`: (address, size) of each of `names` in `exe`.
pub fn nm(exe: &Path, names: &[&str]) -> Vec<(u64, u64)> {
    let out = Command::new("nm").arg("-S").arg(exe).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    names
        .iter()
        .map(|name| {
            text.lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() == 4 && f[3] == *name).then(|| {
                        (
                            u64::from_str_radix(f[0], 16).unwrap(),
                            u64::from_str_radix(f[1], 16).unwrap(),
                        )
                    })
                })
                .unwrap_or_else(|| panic!("{name} not in nm output"))
        })
        .collect()
}

/// A started chain program and the thread that runs the chain.
pub struct Chain {
    pub ready: Ready,
    pub tid: i32,
}

impl Chain {
    pub fn start(exe: &Path, mode: &str, thread: bool) -> Chain {
        let mut cmd = Command::new(exe);
        cmd.arg(mode).stdin(Stdio::piped());
        if thread {
            cmd.arg("thread");
        }
        let ready = Ready::start(&mut cmd, "chain program");
        let tid = ready.said.trim().parse().unwrap();
        let chain = Chain { ready, tid };
        // READY is printed just before the chain blocks: wait until the kernel shows it in
        // the blocking call the mode is about (a state polled, not a delay guessed), so that
        // no capture, stopped or not, catches it still finishing the READY line in write(2).
        let calls: &[&str] = match mode {
            // nanosleep, clock_nanosleep (x86-64).
            "sleep" => &["35", "230"],
            // read.
            "read" => &["0"],
            _ => &[],
        };
        if mode == "spin" || mode == "realign" {
            chain.wait_for_spin(exe);
        }
        if !calls.is_empty() {
            let since = std::time::Instant::now();
            while !in_syscall(chain.pid(), tid, calls) {
                assert!(
                    since.elapsed().as_secs() < 10,
                    "the chain never blocked in {mode}"
                );
                std::thread::yield_now();
            }
        }
        chain
    }

    pub fn pid(&self) -> i32 {
        self.ready.pid()
    }

    /// Waits until the spin loop's counter (`sink`) has counted: the chain is then in its loop
    /// for good, past READY's `printf` and `fflush`, whose tail a capture could otherwise catch.
    fn wait_for_spin(&self, exe: &Path) {
        let [(offset, _)] = nm(exe, &["sink"])[..] else {
            unreachable!()
        };
        let exe = std::fs::canonicalize(exe).unwrap();
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.pid())).unwrap();
        // The executable is position independent: its first mapping (file offset 0) is where
        // the addresses `nm` gives count from.
        let base = maps
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 6 && Path::new(f[5]) == exe && u64::from_str_radix(f[2], 16) == Ok(0))
                    .then(|| u64::from_str_radix(f[0].split('-').next().unwrap(), 16).unwrap())
            })
            .expect("the chain program's first mapping");
        let mem = ProcessMemory::open(self.pid()).unwrap();
        let since = std::time::Instant::now();
        loop {
            let mut word = [0u8; 8];
            strobe_memory::RemoteMemory::read_into(&mem, base + offset, &mut word).unwrap();
            if u64::from_le_bytes(word) != 0 {
                return;
            }
            assert!(since.elapsed().as_secs() < 10, "the chain never spun");
            std::thread::yield_now();
        }
    }
}

/// How a test captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Ptrace,
    Blocked,
}

pub const STACK: usize = 128 * 1024;

/// Registers and stack of thread `tid`.
pub fn capture(pid: i32, tid: i32, how: How) -> (UserRegs, Vec<u8>) {
    let mut stack = Vec::new();
    match how {
        How::Ptrace => {
            let mut t = ThreadTracer::seize(pid, tid).unwrap();
            let c = t.capture(STACK, &mut stack).unwrap();
            (c.regs, stack)
        }
        How::Blocked => {
            let mut t = BlockedThread::open(pid, tid).unwrap();
            // The target announced READY just before blocking: wait for the kernel to see it
            // asleep (a state we poll for, not a delay we guess).
            let since = std::time::Instant::now();
            loop {
                match t.capture(STACK, &mut stack) {
                    Ok(c) => return (c.regs, stack),
                    Err(e @ (StackError::NotBlocked { .. } | StackError::WokeUp { .. })) => {
                        assert!(since.elapsed().as_secs() < 10, "never asleep: {e}");
                        std::thread::yield_now();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
}

/// Whether thread `tid` is blocked in one of the system calls numbered `calls`, per
/// `/proc/PID/task/TID/syscall`.
fn in_syscall(pid: i32, tid: i32, calls: &[&str]) -> bool {
    let path = format!("/proc/{pid}/task/{tid}/syscall");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.split_whitespace()
        .next()
        .is_some_and(|nr| calls.contains(&nr))
}

/// Everything needed to unwind and symbolise stacks of one process.
pub struct Native {
    pub modules: ModuleMap,
    pub unwinder: Unwinder,
    pub symbolizer: Symbolizer,
    pub binaries: Binaries,
}

impl Native {
    pub fn new(pid: i32, search: DebugSearch) -> Native {
        let mem = ProcessMemory::open(pid).unwrap();
        let mut binaries = Binaries::new(search);
        let (modules, _problems) = ModuleMap::read(pid, &mem, &mut binaries).unwrap();
        Native {
            unwinder: Unwinder::new(&modules),
            modules,
            symbolizer: Symbolizer::new(),
            binaries,
        }
    }

    pub fn frames(&mut self, regs: &UserRegs, stack: &[u8]) -> (Vec<NativeFrame>, Unwound) {
        let mut unwound = Unwound::default();
        self.unwinder.unwind(regs, stack, &mut unwound);
        let mut frames = Vec::new();
        self.symbolizer
            .symbolize(&self.modules, &unwound, &mut frames);
        (frames, unwound)
    }
}

/// Perf samples of thread `tid` until `want` of them had registers.
pub fn perf_samples(pid: i32, tid: i32, want: usize) -> Vec<(UserRegs, Vec<u8>)> {
    let config = PerfConfig {
        frequency_hz: 1000,
        ..PerfConfig::default()
    };
    let mut p = PerfThread::open(pid, tid, &config).unwrap();
    let mut out = Vec::new();
    let since = std::time::Instant::now();
    while out.len() < want {
        assert!(since.elapsed().as_secs() < 20, "too few perf samples");
        p.drain(|s| {
            if let Some(r) = s.regs {
                out.push((r, s.stack.to_vec()));
            }
        });
        // Waiting for the kernel to take samples of a thread that spins: the samples are the
        // condition, polled; the pause only avoids burning the test's CPU meanwhile.
        std::thread::yield_now();
    }
    // One drain can bring several samples: hand back exactly the number asked for.
    out.truncate(want);
    out
}

/// Print frames, for assertion messages.
pub fn show(frames: &[NativeFrame]) -> String {
    frames
        .iter()
        .map(|f| format!("  {}{f}\n", if f.inlined { "(inlined) " } else { "" }))
        .collect()
}
