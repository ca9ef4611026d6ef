//! [`BlockedThread`]: the stack of a thread asleep in the kernel, read without stopping it.
//!
//! `/proc/PID/task/TID/syscall` gives a blocked thread's system call number, user stack
//! pointer and instruction pointer (the kernel reads them only once the thread is off the CPU,
//! and says `running` otherwise). A sleeping thread's stack does not change, so a copy taken
//! while it sleeps is exact, provided it really slept throughout: that is proven by the
//! scheduler's count of the times the thread was put on a CPU (`schedstat`'s third field),
//! equal before the first look and after the copy, with the same `syscall` line both times.

use crate::procfs::Schedstat;
use crate::stack::{copy_stack, task_file, StackError, StackSpan, UserRegs};
use nix::errno::Errno;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// What `/proc/PID/task/TID/syscall` says about a thread that is not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallState {
    /// The system call number, or -1 if the thread is blocked outside a system call (a page
    /// fault, a ptrace or job-control stop).
    pub nr: i64,
    /// User stack pointer.
    pub sp: u64,
    /// User instruction pointer (after the `syscall` instruction).
    pub pc: u64,
}

/// The line of `/proc/PID/task/TID/syscall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallLine {
    /// `running`: the thread is on a CPU (or was about to be).
    Running,
    /// The thread is off the CPU, there.
    Blocked(SyscallState),
}

impl SyscallLine {
    /// Parse the file's one line; `None` if it has none of the kernel's three shapes.
    pub fn parse(line: &str) -> Option<SyscallLine> {
        let line = line.trim();
        if line == "running" {
            return Some(SyscallLine::Running);
        }
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        // `nr sp pc` outside a system call, `nr arg1..arg6 sp pc` inside one.
        if fields.len() != 3 && fields.len() != 9 {
            return None;
        }
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
        Some(SyscallLine::Blocked(SyscallState {
            nr: fields[0].parse().ok()?,
            sp: hex(fields[fields.len() - 2])?,
            pc: hex(fields[fields.len() - 1])?,
        }))
    }
}

/// What a capture of a blocked thread returns besides the stack bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockedCapture {
    /// Where the thread sleeps.
    pub state: SyscallState,
    /// The registers to unwind from: `ip` and `sp` from the kernel; `bp` is not known.
    pub regs: UserRegs,
}

/// Which counter proves that a thread did not run.
#[derive(Debug)]
enum RunCounter {
    /// `/proc/PID/task/TID/schedstat`, third field: times put on a CPU.
    Schedstat(File),
    /// `/proc/PID/task/TID/status`, voluntary + involuntary context switches: times taken
    /// off a CPU (kernels without CONFIG_SCHED_INFO). A thread that woke up and is still on
    /// the CPU is not counted here, but its `syscall` file then says `running`.
    Status(File),
}

/// A thread whose stack is read while it sleeps. Keeps its `/proc` files open, so a capture
/// costs four `pread`s and one `process_vm_readv`.
#[derive(Debug)]
pub struct BlockedThread {
    pid: i32,
    tid: i32,
    syscall: File,
    counter: RunCounter,
    text: Vec<u8>,
}

impl BlockedThread {
    /// Open the `/proc` files of thread `tid` of process `pid`.
    pub fn open(pid: i32, tid: i32) -> Result<BlockedThread, StackError> {
        let open = |name: &str| {
            let path = task_file(pid, tid, name);
            File::open(&path).map_err(|e| proc_error(pid, tid, path, e))
        };
        let syscall = open("syscall")?;
        let counter = match open("schedstat") {
            Ok(f) => RunCounter::Schedstat(f),
            Err(StackError::Proc { .. }) => RunCounter::Status(open("status")?),
            Err(e) => return Err(e),
        };
        Ok(BlockedThread {
            pid,
            tid,
            syscall,
            counter,
            text: Vec::with_capacity(256),
        })
    }

    /// The thread.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// Where the thread is blocked, or `None` if it is running.
    pub fn state(&mut self) -> Result<Option<SyscallState>, StackError> {
        let path = || task_file(self.pid, self.tid, "syscall");
        read_at_start(&self.syscall, &mut self.text).map_err(|e| {
            let path = path();
            proc_error(self.pid, self.tid, path, e)
        })?;
        let text = String::from_utf8_lossy(&self.text);
        match SyscallLine::parse(&text) {
            Some(SyscallLine::Running) => Ok(None),
            Some(SyscallLine::Blocked(state)) => Ok(Some(state)),
            None => Err(StackError::Proc {
                path: path(),
                errno: Errno::EINVAL,
            }),
        }
    }

    /// Copy up to `max_stack` bytes of the sleeping thread's stack into `stack`. Fails with
    /// [`StackError::NotBlocked`] if it is running and [`StackError::WokeUp`] if it ran while
    /// the stack was copied (both transient: try again, or use another method).
    pub fn capture(
        &mut self,
        max_stack: impl Into<StackSpan>,
        stack: &mut Vec<u8>,
    ) -> Result<BlockedCapture, StackError> {
        let (pid, tid) = (self.pid, self.tid);
        let runs_before = self.runs()?;
        let Some(state) = self.state()? else {
            return Err(StackError::NotBlocked { pid, tid });
        };
        if let Err(e) = copy_stack(pid, tid, state.sp, max_stack.into(), stack) {
            // An exited thread that is not yet reaped (a zombie, e.g. held by a tracer) still
            // has a `syscall` file, with nothing behind it.
            return Err(if exited(pid, tid) {
                StackError::ThreadGone { pid, tid }
            } else {
                e
            });
        }
        let again = self.state()?;
        let runs_after = self.runs()?;
        if again != Some(state) || runs_after != runs_before {
            return Err(StackError::WokeUp { pid, tid });
        }
        Ok(BlockedCapture {
            state,
            regs: UserRegs {
                ip: state.pc,
                sp: state.sp,
                bp: None,
                bx: None,
            },
        })
    }

    /// The run counter's current value.
    fn runs(&mut self) -> Result<u64, StackError> {
        let (file, name) = match &self.counter {
            RunCounter::Schedstat(f) => (f, "schedstat"),
            RunCounter::Status(f) => (f, "status"),
        };
        read_at_start(file, &mut self.text)
            .map_err(|e| proc_error(self.pid, self.tid, task_file(self.pid, self.tid, name), e))?;
        let text = String::from_utf8_lossy(&self.text);
        let value = match self.counter {
            RunCounter::Schedstat(_) => Schedstat::parse(&self.text).map(|s| s.runs),
            RunCounter::Status(_) => {
                let field = |name: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(name))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                };
                field("voluntary_ctxt_switches:")
                    .zip(field("nonvoluntary_ctxt_switches:"))
                    .map(|(a, b)| a.wrapping_add(b))
            }
        };
        value.ok_or_else(|| StackError::Proc {
            path: task_file(self.pid, self.tid, name),
            errno: Errno::EINVAL,
        })
    }
}

/// Whether the thread is gone or a zombie.
fn exited(pid: i32, tid: i32) -> bool {
    match std::fs::read_to_string(task_file(pid, tid, "stat")) {
        Ok(text) => crate::procfs::ProcStat::parse(&text)
            .is_some_and(|st| matches!(st.state, 'Z' | 'X' | 'x')),
        Err(_) => true,
    }
}

/// Read a whole small `/proc` file from its start into `buf` (kept open: each read at offset 0
/// makes the kernel generate the text afresh).
fn read_at_start(file: &File, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    buf.resize(4096, 0);
    let mut len = 0;
    loop {
        let n = file.read_at(&mut buf[len..], len as u64)?;
        if n == 0 {
            break;
        }
        len += n;
        if len == buf.len() {
            // `status` is the longest file we read (~1.5 KiB); anything longer is not it.
            break;
        }
    }
    buf.truncate(len);
    Ok(())
}

fn proc_error(pid: i32, tid: i32, path: PathBuf, e: std::io::Error) -> StackError {
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOENT | Errno::ESRCH) => StackError::ThreadGone { pid, tid },
        Some(Errno::EACCES | Errno::EPERM) => StackError::PermissionDenied { pid, tid },
        Some(errno) => StackError::Proc { path, errno },
        None => StackError::Proc {
            path,
            errno: Errno::EIO,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_shapes_of_the_syscall_file() {
        assert_eq!(SyscallLine::parse("running\n"), Some(SyscallLine::Running));
        let blocked = |line| match SyscallLine::parse(line) {
            Some(SyscallLine::Blocked(s)) => (s.nr, s.sp, s.pc),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            blocked("230 0x0 0x0 0x7ffc0 0x7ffc0 0x0 0x0 0x7ffc6d2a3e10 0x7f0e1b2c3d4e\n"),
            (230, 0x7ffc6d2a3e10, 0x7f0e1b2c3d4e)
        );
        assert_eq!(
            blocked("-1 0x7ffc6d2a3e10 0x401000\n"),
            (-1, 0x7ffc6d2a3e10, 0x401000)
        );
        assert_eq!(SyscallLine::parse("230 0x0"), None);
        assert_eq!(SyscallLine::parse("x 0x1 0x2"), None);
    }
}
