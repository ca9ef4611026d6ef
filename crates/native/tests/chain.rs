//! The C chain program (main -> a -> b -> b_in (inlined) -> c), built at test time, captured
//! by each method, unwound and symbolised: exactly that chain, with file:line from its DWARF,
//! from a separate debug file, from symbols only, or as module+offset.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use strobe_native::{DebugSearch, NativeFrame, SymbolSource, UnwindEnd, UnwindMethod};
use support::*;

/// One expected frame: function, marker of its line (None: no line expected), inlined.
type Want<'a> = (&'a str, Option<&'a str>, bool);

/// The chain from `c` down to `main`, as DWARF shows it, `c` reporting line `c_line`.
fn dwarf_chain(c_line: &str) -> Vec<Want<'_>> {
    vec![
        ("c", Some(c_line), false),
        ("b_in", Some("b_in"), true),
        ("b", Some("b"), false),
        ("a", Some("a"), false),
        ("main", Some("main"), false),
    ]
}

/// Assert that `frames`, from the first frame named `c`, are exactly `want`, with the right
/// source lines of the chain's file, and return the index of `c`.
fn assert_chain(frames: &[NativeFrame], want: &[Want<'_>]) -> usize {
    let lines = markers();
    let at = frames
        .iter()
        .position(|f| f.function.as_deref() == Some("c"))
        .unwrap_or_else(|| panic!("no frame `c` in\n{}", show(frames)));
    let got = &frames[at..at + want.len().min(frames.len() - at)];
    assert_eq!(got.len(), want.len(), "chain cut short:\n{}", show(frames));
    for (f, (name, marker, inlined)) in got.iter().zip(want) {
        assert_eq!(f.function.as_deref(), Some(*name), "\n{}", show(frames));
        assert_eq!(f.inlined, *inlined, "{f}\n{}", show(frames));
        match marker {
            Some(m) => {
                assert!(
                    f.file.as_deref().is_some_and(|p| p.ends_with("chain.c")),
                    "{f}\n{}",
                    show(frames)
                );
                assert_eq!(
                    f.line,
                    Some(lines[*m]),
                    "{f}: line of @{m}\n{}",
                    show(frames)
                );
                assert_eq!(f.source, SymbolSource::Dwarf);
            }
            None => {
                assert_eq!(f.file, None, "{f}");
                assert_eq!(f.source, SymbolSource::SymbolTable, "{f}");
                assert!(f.function_offset.is_some(), "{f}");
            }
        }
        assert_eq!(
            f.module.as_ref().map(|m| m.short_name()),
            Some("chain"),
            "{f}"
        );
    }
    at
}

/// Below `main`: libc's start code, then `_start` ends a complete unwind.
fn assert_bottom(frames: &[NativeFrame], unwound: &strobe_native::Unwound) {
    assert_eq!(unwound.end, Some(UnwindEnd::Complete), "\n{}", show(frames));
    let last = frames.last().unwrap();
    assert_eq!(
        last.function.as_deref(),
        Some("_start"),
        "\n{}",
        show(frames)
    );
    assert!(frames
        .iter()
        .any(|f| f.function.as_deref() == Some("__libc_start_call_main")));
}

/// Frames above `c` are libc's, down to the system call: nanosleep's or read's.
fn assert_in_libc(frames: &[NativeFrame], c_at: usize, call: &str) {
    assert!(c_at >= 1, "no libc frame above c:\n{}", show(frames));
    for f in &frames[..c_at] {
        let module = f.module.as_ref().unwrap().short_name().to_string();
        assert!(
            module.starts_with("libc"),
            "{f} in {module}\n{}",
            show(frames)
        );
    }
    assert!(
        frames[..c_at]
            .iter()
            .any(|f| f.function.as_deref().is_some_and(|n| n.contains(call))),
        "no {call} above c:\n{}",
        show(frames)
    );
    // The innermost address (with what was inlined there) is the registers'; every caller
    // was found by CFI.
    for f in frames {
        let want = if f.address == frames[0].address {
            UnwindMethod::Registers
        } else {
            UnwindMethod::Cfi
        };
        assert_eq!(f.unwound_by, want, "{f}\n{}", show(frames));
    }
}

#[test]
fn o2_sleeping_chain_by_ptrace_and_without_a_stop() {
    let dir = TempDir::new("o2");
    let exe = build_chain(&dir.0, "-O2");
    let chain = Chain::start(&exe, "sleep", false);
    let mut native = Native::new(chain.pid(), DebugSearch::default());
    for how in [How::Blocked, How::Ptrace] {
        let (regs, stack) = capture(chain.pid(), chain.tid, how);
        let (frames, unwound) = native.frames(&regs, &stack);
        let at = assert_chain(&frames, &dwarf_chain("c_sleep"));
        assert_in_libc(&frames, at, "nanosleep");
        assert_bottom(&frames, &unwound);
    }
}

#[test]
fn o0_chain_blocked_in_read_on_a_thread() {
    let dir = TempDir::new("o0");
    let exe = build_chain(&dir.0, "-O0");
    let chain = Chain::start(&exe, "read", true);
    assert_ne!(chain.tid, chain.pid());
    let mut native = Native::new(chain.pid(), DebugSearch::default());
    for how in [How::Ptrace, How::Blocked] {
        let (regs, stack) = capture(chain.pid(), chain.tid, how);
        let (frames, unwound) = native.frames(&regs, &stack);
        let mut want = dwarf_chain("c_read");
        want[4] = ("start", Some("start"), false);
        let at = assert_chain(&frames, &want);
        assert_in_libc(&frames, at, "read");
        // A thread ends in libc's thread start, not in _start.
        assert_eq!(
            unwound.end,
            Some(UnwindEnd::Complete),
            "\n{}",
            show(&frames)
        );
        // At -O0 every frame's CFI computes from rbp, which a thread read asleep does not
        // give: the unwind found it on the stack.
        assert_eq!(unwound.recovered_bp.is_some(), how == How::Blocked);
        assert!(
            frames
                .iter()
                .any(|f| f.function.as_deref() == Some("start_thread")),
            "\n{}",
            show(&frames)
        );
    }
}

#[test]
fn spinning_chain_by_perf_and_ptrace() {
    let dir = TempDir::new("spin");
    let exe = build_chain(&dir.0, "-O2");
    let chain = Chain::start(&exe, "spin", false);
    let mut native = Native::new(chain.pid(), DebugSearch::default());
    let (regs, stack) = capture(chain.pid(), chain.tid, How::Ptrace);
    let (frames, unwound) = native.frames(&regs, &stack);
    assert_eq!(assert_chain(&frames, &dwarf_chain("spin")), 0);
    assert_bottom(&frames, &unwound);
    // `Chain::start` waited for the loop to count, so every sample is of the loop itself.
    for (regs, stack) in &perf_samples(chain.pid(), chain.tid, 20) {
        let (frames, unwound) = native.frames(regs, stack);
        // The kernel copies a bounded stack; this one is shallow, so every unwind completes.
        assert_bottom(&frames, &unwound);
        assert_eq!(assert_chain(&frames, &dwarf_chain("spin")), 0);
    }
}

/// A frame computed from `rbx` (`realigned_spin`, as glibc's lazy-binding resolver), the
/// innermost one, is unwound by its own CFI row from the captured `rbx`, by ptrace and by perf
/// samples: the chain below it is whole, and the unwind reaches the thread's first frame.
#[test]
fn a_frame_kept_in_rbx_is_unwound_from_it() {
    let dir = TempDir::new("realign");
    let exe = build_chain(&dir.0, "-O2");
    let chain = Chain::start(&exe, "realign", false);
    let mut native = Native::new(chain.pid(), DebugSearch::default());
    let check = |frames: &[NativeFrame], unwound: &strobe_native::Unwound| {
        assert_eq!(
            frames[0].function.as_deref(),
            Some("realigned_spin"),
            "{}",
            show(frames)
        );
        assert_eq!(assert_chain(frames, &dwarf_chain("c_realign")), 1);
        assert_bottom(frames, unwound);
        assert_eq!(unwound.frames[1].method, UnwindMethod::Cfi);
    };
    let (regs, stack) = capture(chain.pid(), chain.tid, How::Ptrace);
    assert!(regs.bx.is_some());
    let (frames, unwound) = native.frames(&regs, &stack);
    check(&frames, &unwound);
    for (regs, stack) in &perf_samples(chain.pid(), chain.tid, 20) {
        assert!(regs.bx.is_some());
        let (frames, unwound) = native.frames(regs, stack);
        check(&frames, &unwound);
    }
}

#[test]
fn symbols_only_after_strip_debug() {
    let dir = TempDir::new("strip-debug");
    let exe = build_chain(&dir.0, "-O2");
    run(Command::new("strip").arg("--strip-debug").arg(&exe));
    let chain = Chain::start(&exe, "sleep", false);
    let mut native = Native::new(chain.pid(), DebugSearch::default());
    let (regs, stack) = capture(chain.pid(), chain.tid, How::Ptrace);
    let (frames, unwound) = native.frames(&regs, &stack);
    // No DWARF: no inlined b_in, no lines; static functions keep their .symtab names.
    let want: Vec<Want<'_>> = ["c", "b", "a", "main"]
        .iter()
        .map(|n| (*n, None, false))
        .collect();
    assert_chain(&frames, &want);
    assert_bottom(&frames, &unwound);
}

#[test]
fn module_offsets_after_strip_all() {
    let dir = TempDir::new("strip-all");
    let exe = build_chain(&dir.0, "-O2");
    let symbols = nm(&exe, &["c", "b", "a", "main"]);
    run(Command::new("strip").arg("--strip-all").arg(&exe));
    let chain = Chain::start(&exe, "sleep", false);
    let mut native = Native::new(chain.pid(), DebugSearch::default());
    let (regs, stack) = capture(chain.pid(), chain.tid, How::Ptrace);
    let (frames, unwound) = native.frames(&regs, &stack);
    assert_eq!(
        unwound.end,
        Some(UnwindEnd::Complete),
        "\n{}",
        show(&frames)
    );
    let ours: Vec<&NativeFrame> = frames
        .iter()
        .filter(|f| f.module.as_ref().is_some_and(|m| m.short_name() == "chain"))
        .collect();
    // c, b, a, main, _start: all in the executable, none named; each return address (minus
    // one, inside the call) lies inside the function the unstripped file said.
    assert_eq!(ours.len(), 5, "\n{}", show(&frames));
    for (f, (start, size)) in ours.iter().zip(&symbols) {
        assert_eq!(f.function, None, "{f}");
        assert_eq!(f.source, SymbolSource::None);
        assert!(
            (start + 1..=start + size).contains(&f.module_offset),
            "{f}: not in {start:#x}+{size:#x}\n{}",
            show(&frames)
        );
        assert!(f.to_string().starts_with("chain+0x"), "{f}");
    }
}

#[test]
fn separate_debug_file_by_build_id_and_by_debuglink() {
    let dir = TempDir::new("debugfile");
    let exe = build_chain(&dir.0, "-O2");
    let debug = dir.0.join("chain.debug");
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&exe)
        .arg(&debug));
    run(Command::new("strip").arg("--strip-all").arg(&exe));
    let id = Command::new("readelf")
        .arg("-n")
        .arg(&exe)
        .output()
        .unwrap();
    let id = String::from_utf8(id.stdout).unwrap();
    let id = id
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap()
        .to_string();

    // By build-id, in a debug directory of our choosing.
    let debug_dir = dir.0.join("debug");
    let by_id = debug_dir.join(format!(".build-id/{}/{}.debug", &id[..2], &id[2..]));
    std::fs::create_dir_all(by_id.parent().unwrap()).unwrap();
    std::fs::copy(&debug, &by_id).unwrap();
    let search = DebugSearch {
        debug_dirs: vec![debug_dir.to_str().unwrap().to_string()],
    };
    let chain = Chain::start(&exe, "sleep", false);
    let mut native = Native::new(chain.pid(), search);
    let (regs, stack) = capture(chain.pid(), chain.tid, How::Ptrace);
    let (frames, _) = native.frames(&regs, &stack);
    assert_chain(&frames, &dwarf_chain("c_sleep"));
    let module = native.modules.find(regs.ip).map(|m| m.id.path.clone());
    let exe_module = native
        .modules
        .modules()
        .iter()
        .find(|m| m.id.short_name() == "chain")
        .unwrap();
    // Found inside the target's root, which is ours here.
    let found = exe_module
        .binary
        .as_ref()
        .unwrap()
        .debug_path
        .clone()
        .unwrap();
    assert!(
        found.ends_with(by_id.strip_prefix("/").unwrap()),
        "{found:?} for {module:?}"
    );
    drop(chain);

    // By .gnu_debuglink, next to the binary, with no debug directory at all.
    run(Command::new("objcopy")
        .arg(format!("--add-gnu-debuglink={}", debug.display()))
        .arg(&exe));
    let chain = Chain::start(&exe, "sleep", false);
    let mut native = Native::new(chain.pid(), DebugSearch { debug_dirs: vec![] });
    let (regs, stack) = capture(chain.pid(), chain.tid, How::Ptrace);
    let (frames, _) = native.frames(&regs, &stack);
    assert_chain(&frames, &dwarf_chain("c_sleep"));

    // A debug file of another build is not used: a changed copy of the program.
    let mut other = std::fs::read_to_string(CHAIN_SOURCE).unwrap();
    other.push_str("\nint unused_extra(void) { return 7; }\n");
    let other_src = dir.0.join("other.c");
    std::fs::write(&other_src, other).unwrap();
    let other_exe = dir.0.join("other");
    run(Command::new("cc")
        .args(["-g", "-O2", "-pthread", "-o"])
        .arg(&other_exe)
        .arg(&other_src));
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&other_exe)
        .arg(&by_id));
    let chain = Chain::start(&exe, "sleep", false);
    let search = DebugSearch {
        debug_dirs: vec![debug_dir.to_str().unwrap().to_string()],
    };
    std::fs::remove_file(&debug).unwrap();
    let mut native = Native::new(chain.pid(), search);
    let (regs, stack) = capture(chain.pid(), chain.tid, How::Ptrace);
    let (frames, _) = native.frames(&regs, &stack);
    let ours: Vec<&NativeFrame> = frames
        .iter()
        .filter(|f| f.module.as_ref().is_some_and(|m| m.short_name() == "chain"))
        .collect();
    assert_eq!(ours.len(), 5);
    assert!(
        ours.iter().all(|f| f.source == SymbolSource::None),
        "a mismatched debug file was used:\n{}",
        show(&frames)
    );
}

#[test]
fn a_replaced_binary_is_not_used() {
    let dir = TempDir::new("replaced");
    let exe = build_chain(&dir.0, "-O2");
    let chain = Chain::start(&exe, "sleep", false);
    // Replace the file the way installers do (a new file renamed over it), with a different
    // build: through its path, strobe would find a file that is not what the target runs.
    let mut other = std::fs::read_to_string(CHAIN_SOURCE).unwrap();
    other.push_str("\nint unused_extra(void) { return 7; }\n");
    let other_src = dir.0.join("other.c");
    std::fs::write(&other_src, other).unwrap();
    let fresh = dir.0.join("fresh");
    run(Command::new("cc")
        .args(["-g", "-O2", "-pthread", "-o"])
        .arg(&fresh)
        .arg(&other_src));
    std::fs::rename(&fresh, &exe).unwrap();
    let mem = strobe_remote::ProcessMemory::open(chain.pid()).unwrap();
    let mut binaries = strobe_native::Binaries::new(DebugSearch::default());
    let (modules, _) = strobe_native::ModuleMap::read(chain.pid(), &mem, &mut binaries).unwrap();
    let m = modules
        .modules()
        .iter()
        .find(|m| m.id.short_name() == "chain")
        .unwrap();
    // As root, /proc/PID/map_files still reaches the original: the module is intact and its
    // build-id is the one in memory. The replacement's (path) build-id differs.
    let b = m
        .binary
        .as_ref()
        .expect("the mapped file through map_files");
    assert_eq!(b.build_id(), m.id.build_id.as_deref());
    assert!(
        b.path
            .starts_with(format!("/proc/{}/map_files", chain.pid())),
        "{:?}",
        b.path
    );
    let mut native = Native::new(chain.pid(), DebugSearch::default());
    let (regs, stack) = capture(chain.pid(), chain.tid, How::Ptrace);
    let (frames, _) = native.frames(&regs, &stack);
    assert_chain(&frames, &dwarf_chain("c_sleep"));
}

/// What a module's binary holds at an address is the code the target runs there (what a
/// preempted thread's check for a `syscall` before its instruction pointer reads, with no
/// read of the target): the sleeping thread's instruction pointer follows a `syscall` in libc,
/// and code of every module with a binary reads the same from its file as from the target.
#[test]
fn a_modules_file_bytes_are_the_code_the_target_runs() {
    use strobe_memory::RemoteMemory;
    let dir = TempDir::new("file-bytes");
    let exe = build_chain(&dir.0, "-O2");
    let chain = Chain::start(&exe, "sleep", false);
    let mem = strobe_remote::ProcessMemory::open(chain.pid()).unwrap();
    let mut binaries = strobe_native::Binaries::new(DebugSearch::default());
    let (modules, _) = strobe_native::ModuleMap::read(chain.pid(), &mem, &mut binaries).unwrap();
    let (regs, _) = capture(chain.pid(), chain.tid, How::Ptrace);
    let m = modules
        .find(regs.ip - 2)
        .expect("the sleeping thread's module");
    assert!(m.id.short_name().starts_with("libc"), "{:?}", m.id);
    assert_eq!(m.file_bytes(regs.ip - 2..regs.ip), Some(&[0x0f, 0x05][..]));
    let mut compared = 0;
    for m in modules.modules().iter().filter(|m| m.binary.is_some()) {
        for at in (m.avma.start..m.avma.end).step_by(4096).take(64) {
            if let Some(file) = m.file_bytes(at..at + 32) {
                let mut now = [0u8; 32];
                mem.read_into(at, &mut now).unwrap();
                assert_eq!(file, &now[..], "{} at {at:#x}", m.id.path);
                compared += 1;
            }
        }
    }
    assert!(compared >= 10, "only {compared} places compared");
    // Memory no binary holds (the stack) has no file bytes.
    assert_eq!(
        modules
            .find(regs.sp)
            .and_then(|m| m.file_bytes(regs.sp..regs.sp + 8)),
        None
    );
}
