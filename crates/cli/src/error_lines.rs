//! Every error kind a user can meet, formatted as `strobe: error:` prints it: each link of the
//! chain once, and the cause's detail still in the line.
//!
//! An error that prints its cause in its message *and* returns it as `source()` shows the cause
//! twice once [`crate::error_message`] walks the chain. Each list below builds every variant of
//! one error type; the exhaustive `match` next to it stops compiling when a variant is added, and
//! the coverage check fails until the new variant is in the list.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::error::Error as StdError;
use std::path::PathBuf;

use strobe_aggregate::CapacityError;
use strobe_locate::LocateError;
use strobe_memory::MemError;
use strobe_output::RawError;
use strobe_remote::RemoteError;
use strobe_sampler::SamplerError;
use strobe_target::{AttachError, CoreError};
use strobe_tui::data::CollectorGone;
use strobe_tui::TuiError;
use strobe_walker::WalkError;

use crate::error_message;

/// An OS error whose text the line must still contain.
fn eio() -> std::io::Error {
    std::io::Error::from_raw_os_error(nix::libc::EIO)
}

const EIO_TEXT: &str = "Input/output error";

/// What is wrong with the line `strobe: error:` prints for `err` under a context, if anything:
/// a link of the chain that contains the next one's text, a link that appears more than once,
/// or `detail` missing.
fn line_problem<E>(err: E, detail: &str) -> Option<String>
where
    E: StdError + Send + Sync + 'static,
{
    let e = anyhow::Error::from(err).context("doing the thing");
    let line = error_message(&e);
    for link in e.chain() {
        let text = link.to_string();
        if let Some(cause) = link.source() {
            if text.contains(&cause.to_string()) {
                return Some(format!("{text:?} prints its source {cause:?} too: {line}"));
            }
        }
        if line.matches(&text).count() != 1 {
            return Some(format!("{text:?} is not in the line exactly once: {line}"));
        }
    }
    (!line.contains(detail)).then(|| format!("the line lacks {detail:?}: {line}"))
}

#[track_caller]
fn check<E>(err: E, detail: &str)
where
    E: StdError + Send + Sync + 'static,
{
    if let Some(problem) = line_problem(err, detail) {
        panic!("{problem}");
    }
}

/// Asserts that `kinds` (each list entry's variant index) covers `0..variants`.
#[track_caller]
fn covers(kinds: impl Iterator<Item = usize>, variants: usize) {
    let seen: BTreeSet<usize> = kinds.collect();
    assert_eq!(
        seen,
        (0..variants).collect::<BTreeSet<_>>(),
        "a variant has no example"
    );
}

#[test]
fn the_check_catches_a_cause_printed_twice() {
    #[derive(Debug, thiserror::Error)]
    #[error("outer failed: {source}")]
    struct Twice {
        source: std::io::Error,
    }
    assert!(line_problem(Twice { source: eio() }, EIO_TEXT).is_some());

    #[derive(Debug, thiserror::Error)]
    #[error("outer failed")]
    struct Dropped;
    assert!(line_problem(Dropped, EIO_TEXT).is_some());
}

fn mem_errors() -> Vec<(MemError, &'static str)> {
    vec![
        (MemError::Fault { addr: 0x10, len: 8 }, "0x10"),
        (MemError::PermissionDenied { pid: 7 }, "CAP_SYS_PTRACE"),
        (MemError::ProcessGone { pid: 7 }, "exited"),
        (
            MemError::TooLarge {
                addr: 0x10,
                len: 9,
                limit: 8,
            },
            "8-byte bound",
        ),
        (
            MemError::Os {
                addr: 0x10,
                len: 8,
                errno: 5,
            },
            "failed: 5",
        ),
    ]
}

fn mem_kind(e: &MemError) -> usize {
    match e {
        MemError::Fault { .. } => 0,
        MemError::PermissionDenied { .. } => 1,
        MemError::ProcessGone { .. } => 2,
        MemError::TooLarge { .. } => 3,
        MemError::Os { .. } => 4,
    }
}

#[test]
fn memory_errors() {
    let all = mem_errors();
    covers(all.iter().map(|(e, _)| mem_kind(e)), 5);
    for (e, detail) in all {
        check(e, detail);
    }
}

fn remote_errors() -> Vec<(RemoteError, &'static str)> {
    vec![
        (RemoteError::NoSuchProcess { pid: 7 }, "PID 7"),
        (RemoteError::PermissionDenied { pid: 7 }, "CAP_SYS_PTRACE"),
        (
            RemoteError::AlreadyTraced { pid: 7, tracer: 9 },
            "process 9",
        ),
        (RemoteError::ProcessGone { pid: 7 }, "exited"),
        (
            RemoteError::Proc {
                path: PathBuf::from("/proc/7/maps"),
                error: eio(),
            },
            EIO_TEXT,
        ),
        (
            RemoteError::Ptrace {
                op: "PTRACE_SEIZE",
                pid: 7,
                tid: 8,
                errno: nix::errno::Errno::EIO,
            },
            "EIO",
        ),
        (RemoteError::ThreadsUnstable { pid: 7, rounds: 3 }, "3"),
        (
            RemoteError::Mem(MemError::Fault { addr: 0x10, len: 8 }),
            "0x10",
        ),
    ]
}

fn remote_kind(e: &RemoteError) -> usize {
    match e {
        RemoteError::NoSuchProcess { .. } => 0,
        RemoteError::PermissionDenied { .. } => 1,
        RemoteError::AlreadyTraced { .. } => 2,
        RemoteError::ProcessGone { .. } => 3,
        RemoteError::Proc { .. } => 4,
        RemoteError::Ptrace { .. } => 5,
        RemoteError::ThreadsUnstable { .. } => 6,
        RemoteError::Mem(_) => 7,
    }
}

#[test]
fn remote_errors_read_once() {
    let all = remote_errors();
    covers(all.iter().map(|(e, _)| remote_kind(e)), 8);
    for (e, detail) in all {
        check(e, detail);
    }
}

fn walk_errors() -> Vec<(WalkError, &'static str)> {
    vec![
        (
            WalkError::Mem(MemError::Fault { addr: 0x10, len: 8 }),
            "0x10",
        ),
        (
            WalkError::Corrupt {
                what: "frame",
                addr: 0x20,
            },
            "implausible frame",
        ),
        (
            WalkError::Unbounded {
                what: "thread",
                limit: 4,
            },
            "thread list",
        ),
        (
            WalkError::Unsupported("Python 3.99 is not supported".into()),
            "3.99",
        ),
    ]
}

fn walk_kind(e: &WalkError) -> usize {
    match e {
        WalkError::Mem(_) => 0,
        WalkError::Corrupt { .. } => 1,
        WalkError::Unbounded { .. } => 2,
        WalkError::Unsupported(_) => 3,
    }
}

#[test]
fn walk_errors_read_once() {
    let all = walk_errors();
    covers(all.iter().map(|(e, _)| walk_kind(e)), 4);
    for (e, detail) in all {
        check(e, detail);
    }
}

fn locate_errors() -> Vec<(LocateError, &'static str)> {
    vec![
        (LocateError::NoSuchProcess { pid: 7 }, "PID 7"),
        (LocateError::PermissionDenied { pid: 7 }, "CAP_SYS_PTRACE"),
        (
            LocateError::KernelThread {
                pid: 2,
                comm: "kthreadd".into(),
            },
            "kthreadd",
        ),
        (
            LocateError::Zombie {
                pid: 7,
                comm: "python3".into(),
            },
            "zombie",
        ),
        (LocateError::Exited { pid: 7 }, "exited"),
        (
            LocateError::NotPython {
                pid: 7,
                name: "bash".into(),
            },
            "bash",
        ),
        (
            LocateError::UnknownVersion {
                pid: 7,
                binary: PathBuf::from("/usr/bin/python3"),
                found: "Py_Version reads 0x1".into(),
            },
            "Py_Version reads 0x1",
        ),
        (
            LocateError::Elf {
                pid: 7,
                path: PathBuf::from("/usr/bin/python3"),
                reason: "bad magic".into(),
            },
            "bad magic",
        ),
        (
            LocateError::Remote(RemoteError::Proc {
                path: PathBuf::from("/proc/7/maps"),
                error: eio(),
            }),
            EIO_TEXT,
        ),
    ]
}

fn locate_kind(e: &LocateError) -> usize {
    match e {
        LocateError::NoSuchProcess { .. } => 0,
        LocateError::PermissionDenied { .. } => 1,
        LocateError::KernelThread { .. } => 2,
        LocateError::Zombie { .. } => 3,
        LocateError::Exited { .. } => 4,
        LocateError::NotPython { .. } => 5,
        LocateError::UnknownVersion { .. } => 6,
        LocateError::Elf { .. } => 7,
        LocateError::Remote(_) => 8,
    }
}

#[test]
fn locate_errors_read_once() {
    let all = locate_errors();
    covers(all.iter().map(|(e, _)| locate_kind(e)), 9);
    for (e, detail) in all {
        check(e, detail);
    }
}

fn attach_errors() -> Vec<(AttachError, &'static str)> {
    let mut all = vec![
        (AttachError::Exited { pid: 7 }, "exited"),
        (
            AttachError::PthreadCalibration { pid: 7, threads: 3 },
            "3 threads",
        ),
        (AttachError::Signals(nix::errno::Errno::EINVAL), "EINVAL"),
    ];
    all.extend(
        remote_errors()
            .into_iter()
            .map(|(e, d)| (AttachError::Remote(e), d)),
    );
    all.extend(
        locate_errors()
            .into_iter()
            .map(|(e, d)| (AttachError::Locate(e), d)),
    );
    for (error, detail) in walk_errors() {
        all.push((
            AttachError::Layout {
                pid: 7,
                error: error.clone(),
            },
            detail,
        ));
        all.push((
            AttachError::CoreWalk {
                core: PathBuf::from("core.7"),
                error: error.clone(),
                unusable: String::new(),
            },
            detail,
        ));
        all.push((AttachError::Walk { pid: 7, error }, detail));
    }
    all.extend(locate_errors().into_iter().map(|(error, d)| {
        (
            AttachError::CoreLocate {
                core: PathBuf::from("core.7"),
                error,
            },
            d,
        )
    }));
    all.push((
        AttachError::CoreWalk {
            core: PathBuf::from("core.7"),
            error: WalkError::Mem(MemError::Fault {
                addr: 0x1000,
                len: 8,
            }),
            unusable: "/lib/libx.so: No such file or directory".into(),
        },
        "could not be used: /lib/libx.so",
    ));
    all.extend(
        core_errors()
            .into_iter()
            .map(|(e, d)| (AttachError::Core(e), d)),
    );
    all
}

fn core_errors() -> Vec<(CoreError, &'static str)> {
    let core = || PathBuf::from("core.7");
    vec![
        (
            CoreError::Open {
                path: core(),
                error: eio(),
            },
            EIO_TEXT,
        ),
        (
            CoreError::NotCore {
                path: core(),
                what: "its ELF type is 2".into(),
            },
            "ELF type is 2",
        ),
        (
            CoreError::Architecture {
                path: core(),
                machine: 183,
            },
            "183",
        ),
        (
            CoreError::Truncated {
                path: core(),
                size: 10,
                needed: 20,
                what: "notes",
            },
            "truncated",
        ),
        (CoreError::NoThreads { path: core() }, "NT_PRSTATUS"),
        (
            CoreError::WrongExecutable {
                core: core(),
                executable: PathBuf::from("/usr/bin/python3"),
                core_path: "/usr/bin/python3.11".into(),
                core_id: "aa".into(),
                file_id: "bb".into(),
            },
            "build-id aa",
        ),
        (CoreError::NoExecutable { path: core() }, "--executable"),
    ]
}

fn core_kind(e: &CoreError) -> usize {
    match e {
        CoreError::Open { .. } => 0,
        CoreError::NotCore { .. } => 1,
        CoreError::Architecture { .. } => 2,
        CoreError::Truncated { .. } => 3,
        CoreError::NoThreads { .. } => 4,
        CoreError::WrongExecutable { .. } => 5,
        CoreError::NoExecutable { .. } => 6,
    }
}

#[test]
fn core_errors_read_once() {
    let all = core_errors();
    covers(all.iter().map(|(e, _)| core_kind(e)), 7);
    for (e, detail) in all {
        check(e, detail);
    }
}

fn attach_kind(e: &AttachError) -> usize {
    match e {
        AttachError::Remote(_) => 0,
        AttachError::Locate(_) => 1,
        AttachError::Exited { .. } => 2,
        AttachError::Layout { .. } => 3,
        AttachError::Walk { .. } => 4,
        AttachError::PthreadCalibration { .. } => 5,
        AttachError::Signals(_) => 6,
        AttachError::Core(_) => 7,
        AttachError::CoreLocate { .. } => 8,
        AttachError::CoreWalk { .. } => 9,
    }
}

#[test]
fn attach_errors_read_once() {
    let all = attach_errors();
    covers(all.iter().map(|(e, _)| attach_kind(e)), 10);
    for (e, detail) in all {
        check(e, detail);
    }
}

fn raw_errors() -> Vec<(RawError, &'static str)> {
    vec![
        (
            RawError::Io {
                path: PathBuf::from("profile.raw"),
                error: eio(),
            },
            EIO_TEXT,
        ),
        (RawError::NotRaw, "STROBRAW"),
        (RawError::TruncatedHeader(3), "only 3 bytes"),
        (RawError::UnsupportedVersion(99), "version 99"),
        (
            RawError::Corrupt {
                offset: 12,
                what: "a stack id",
            },
            "a stack id",
        ),
        (RawError::Capacity(CapacityError("stacks")), "stacks"),
    ]
}

fn raw_kind(e: &RawError) -> usize {
    match e {
        RawError::Io { .. } => 0,
        RawError::NotRaw => 1,
        RawError::TruncatedHeader(_) => 2,
        RawError::UnsupportedVersion(_) => 3,
        RawError::Corrupt { .. } => 4,
        RawError::Capacity(_) => 5,
    }
}

#[test]
fn raw_recording_errors_read_once() {
    let all = raw_errors();
    covers(all.iter().map(|(e, _)| raw_kind(e)), 6);
    for (e, detail) in all {
        check(e, detail);
    }
}

fn tui_errors() -> Vec<(TuiError, &'static str)> {
    vec![
        (TuiError::NotATerminal, "ssh -t"),
        (TuiError::Terminal(eio()), EIO_TEXT),
        (TuiError::Collector(CollectorGone), "aggregator thread"),
    ]
}

fn tui_kind(e: &TuiError) -> usize {
    match e {
        TuiError::NotATerminal => 0,
        TuiError::Terminal(_) => 1,
        TuiError::Collector(_) => 2,
    }
}

#[test]
fn top_errors_read_once() {
    let all = tui_errors();
    covers(all.iter().map(|(e, _)| tui_kind(e)), 3);
    for (e, detail) in all {
        check(e, detail);
    }
}

fn sampler_errors() -> Vec<(SamplerError, &'static str)> {
    let mut all = vec![
        (SamplerError::Config("--rate 0 is too low".into()), "--rate"),
        (SamplerError::Capacity(CapacityError("frames")), "frames"),
        (SamplerError::Spawn(eio()), EIO_TEXT),
        (
            SamplerError::Panicked("index out of bounds".into()),
            "index",
        ),
    ];
    all.extend(
        attach_errors()
            .into_iter()
            .map(|(e, d)| (SamplerError::Attach(e), d)),
    );
    all.extend(
        walk_errors()
            .into_iter()
            .map(|(error, d)| (SamplerError::Walk { pid: 7, error }, d)),
    );
    all
}

fn sampler_kind(e: &SamplerError) -> usize {
    match e {
        SamplerError::Config(_) => 0,
        SamplerError::Attach(_) => 1,
        SamplerError::Capacity(_) => 2,
        SamplerError::Spawn(_) => 3,
        SamplerError::Panicked(_) => 4,
        SamplerError::Walk { .. } => 5,
    }
}

#[test]
fn sampler_errors_read_once() {
    let all = sampler_errors();
    covers(all.iter().map(|(e, _)| sampler_kind(e)), 6);
    for (e, detail) in all {
        check(e, detail);
    }
}

#[test]
fn plain_errors_read_once() {
    check(CapacityError("stacks"), "stacks");
    check(CollectorGone, "aggregator thread");
}
