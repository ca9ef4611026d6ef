//! Hostile core files: a real core (gcore of a pyenv 3.11 target) is corrupted — its ELF
//! header, program headers (offsets, addresses and sizes near 0, `u64::MAX` and the file's
//! size), notes (name and descriptor sizes, `NT_PRSTATUS`, `NT_FILE` counts, page size, ranges
//! and names), memory bytes, and its length (truncated copies) — and read the way
//! `strobe dump --core` reads it: [`Target::open_core`], then a snapshot with thread names.
//! Every case must end with a value or a typed error: no panic, no hang.
//!
//! How: the corruption is written into a copy of the core in place, and undone after the case
//! (a truncated case writes a shorter copy). A watchdog aborts the run, naming the case, if
//! one case takes longer than [`STALL`].
//!
//! Cases: `STROBE_FUZZ_CORE_CASES` (default [`DEFAULT_CASES`]; not `STROBE_FUZZ_CASES`, which
//! counts the walker's far cheaper memory images: a case here opens a core and parses
//! libpython's symbols, ~25 ms; the walker's fuzzing covers hostile memory in depth, this
//! covers the core's structure), `STROBE_FUZZ_SEED` (default fixed, so CI runs are
//! reproducible). A failure prints the case number and its mutations.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strobe_target::{CoreOptions, SnapshotOptions, Target};
use strobe_testkit::{interpreters, Ready, Rng, TempDir};

/// Cases when `STROBE_FUZZ_CORE_CASES` is not set: about 25 s in a debug build on this 2-core
/// machine (3,000 cases took 91 s: each opens the core and parses libpython's symbols anew).
const DEFAULT_CASES: u64 = 800;
/// One case that takes longer than this is a hang.
const STALL: Duration = Duration::from_secs(60);

const TARGET: &str = "\
import threading
def work():
    threading.Event().wait()
for i in range(3):
    threading.Thread(target=work, name='w%d' % i, daemon=True).start()
print('READY', flush=True)
threading.Event().wait()
";

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Where the structures of a core are: (offset, length) of the program header table, each
/// program header's file range, and the note segment.
struct Shape {
    phdrs: (u64, u64),
    segments: Vec<(u64, u64)>,
    notes: (u64, u64),
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn shape(core: &[u8]) -> Shape {
    let phoff = u64_at(core, 32);
    let phnum = u16::from_le_bytes([core[56], core[57]]) as u64;
    let mut segments = Vec::new();
    let mut notes = (0, 0);
    for i in 0..phnum {
        let at = (phoff + i * 56) as usize;
        let p_type = u32::from_le_bytes(core[at..at + 4].try_into().unwrap());
        let range = (u64_at(core, at + 8), u64_at(core, at + 32));
        if p_type == 4 {
            notes = range;
        } else if p_type == 1 && range.1 > 0 {
            segments.push(range);
        }
    }
    assert!(notes.1 > 0, "the core has no notes");
    Shape {
        phdrs: (phoff, phnum * 56),
        segments,
        notes,
    }
}

/// A value for an 8-byte field: the ones that break bounds checks, or random.
fn nasty_u64(rng: &mut Rng, file_len: u64) -> u64 {
    match rng.below(8) {
        0 => 0,
        1 => u64::MAX,
        2 => u64::MAX - rng.below(4096),
        3 => file_len + rng.below(8192),
        4 => file_len.saturating_sub(rng.below(8192)),
        5 => 1 << rng.below(64),
        6 => rng.below(1 << 20),
        _ => rng.next_u64(),
    }
}

/// One corruption: (offset, new bytes).
fn mutation(rng: &mut Rng, shape: &Shape, file_len: u64) -> (u64, Vec<u8>) {
    let (base, len) = match rng.below(10) {
        0 => (0, 64),
        1..=3 => shape.phdrs,
        4..=8 => shape.notes,
        _ => *rng.pick(&shape.segments),
    };
    let at = base + rng.below(len.max(1));
    let bytes = match rng.below(3) {
        0 => nasty_u64(rng, file_len).to_le_bytes().to_vec(),
        1 => (nasty_u64(rng, file_len) as u32).to_le_bytes().to_vec(),
        _ => vec![rng.below(256) as u8],
    };
    // Aligned the way the fields are (header words, 8-byte phdr and note fields).
    let at = if bytes.len() > 1 { at & !3 } else { at };
    (at.min(file_len.saturating_sub(bytes.len() as u64)), bytes)
}

fn read_core(core: &Path) -> Result<usize, String> {
    let mut target = Target::open_core(core, CoreOptions::default()).map_err(|e| e.to_string())?;
    let snap = target
        .snapshot(SnapshotOptions {
            names: true,
            blocking: false,
            native: false,
            locals: true,
        })
        .map_err(|e| e.to_string())?;
    Ok(snap.threads.len())
}

#[test]
fn hostile_core_files_end_in_a_value_or_an_error() {
    let python = interpreters::pyenv_version("3.11.7").require().path();
    let target = Ready::python_script(python.to_str().unwrap(), "fuzz-core", TARGET, &[]);
    let dir = TempDir::new();
    let out = Command::new("gcore")
        .arg("-o")
        .arg(dir.join("seed"))
        .arg(target.pid().to_string())
        .output()
        .expect("gcore (gdb) is missing: run .ci/provision.sh");
    assert!(out.status.success(), "{out:?}");
    drop(target);
    let seed_path = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let seed = std::fs::read(&seed_path).unwrap();
    // The unmutated core reads back: 4 threads.
    assert_eq!(read_core(&seed_path), Ok(4));
    let shape = shape(&seed);
    let len = seed.len() as u64;
    let work = dir.join("case");
    std::fs::write(&work, &seed).unwrap();
    let file = OpenOptions::new().write(true).open(&work).unwrap();
    let cut = dir.join("cut");

    let cases = env_u64("STROBE_FUZZ_CORE_CASES", DEFAULT_CASES);
    let mut rng = Rng::new(env_u64("STROBE_FUZZ_SEED", 0xc0_7e_f1_1e));
    let current = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    {
        let (current, started) = (Arc::clone(&current), Arc::clone(&started));
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let since = t0.elapsed().as_secs() - started.load(Ordering::Relaxed);
            if since > STALL.as_secs() {
                eprintln!(
                    "case {} has run for {since} s: a hang",
                    current.load(Ordering::Relaxed)
                );
                std::process::abort();
            }
        });
    }
    let (mut read, mut refused) = (0u64, 0u64);
    let mut errors = std::collections::BTreeMap::new();
    for case in 0..cases {
        current.store(case, Ordering::Relaxed);
        started.store(t0.elapsed().as_secs(), Ordering::Relaxed);
        let (path, applied) = if case % 50 == 49 {
            let keep = rng.below(len) as usize;
            std::fs::write(&cut, &seed[..keep]).unwrap();
            (cut.as_path(), vec![(keep as u64, b"truncated".to_vec())])
        } else {
            let n = 1 + rng.below(4);
            let applied: Vec<(u64, Vec<u8>)> =
                (0..n).map(|_| mutation(&mut rng, &shape, len)).collect();
            for (at, bytes) in &applied {
                file.write_all_at(bytes, *at).unwrap();
            }
            (work.as_path(), applied)
        };
        let got = catch_unwind(AssertUnwindSafe(|| read_core(path)));
        let got = got.unwrap_or_else(|_| panic!("case {case} panicked; mutations {applied:?}"));
        match got {
            Ok(_) => read += 1,
            Err(e) => {
                refused += 1;
                // Group errors by their first words, to see what the cases reached.
                let kind: String = e.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
                *errors.entry(kind).or_insert(0u64) += 1;
            }
        }
        if path == work.as_path() {
            for (at, bytes) in applied.iter().rev() {
                let at = *at as usize;
                file.write_all_at(&seed[at..at + bytes.len()], at as u64)
                    .unwrap();
            }
        }
    }
    eprintln!("{cases} cases: {read} read, {refused} refused; errors: {errors:#?}");
    assert_eq!(read + refused, cases);
}
