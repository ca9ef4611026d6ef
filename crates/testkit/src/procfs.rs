//! What `/proc` says about a process the test started: its threads, their states and tracers,
//! its children.

use std::path::Path;

/// The thread ids of `pid` (`/proc/PID/task`). Panics when the process is gone.
pub fn tasks(pid: i32) -> Vec<i32> {
    let dir = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {dir}: {e}"));
    let mut tids: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids
}

/// A thread of `pid` other than its main thread: the one a test's target started, when it
/// started one. Panics when there is none.
pub fn other_thread(pid: i32) -> u32 {
    let tid = tasks(pid)
        .into_iter()
        .find(|&t| t != pid)
        .unwrap_or_else(|| panic!("process {pid} has no thread but its main one"));
    u32::try_from(tid).unwrap_or_else(|_| panic!("thread id {tid} is negative"))
}

/// How many times the thread of `pid` named `comm` has been given a CPU (the third field of
/// `/proc/PID/task/TID/schedstat`), or `None` when there is no such thread. A thread that
/// sleeps between rounds of work (strobe's `strobe-sampler`) runs once per round, so this
/// counts its rounds, at least: what a test waits on to know work was done.
pub fn times_run(pid: i32, comm: &str) -> Option<u64> {
    tasks(pid).into_iter().find_map(|tid| {
        let task = format!("/proc/{pid}/task/{tid}");
        let name = std::fs::read_to_string(format!("{task}/comm")).ok()?;
        (name.trim() == comm).then_some(())?;
        let stat = std::fs::read_to_string(format!("{task}/schedstat")).ok()?;
        stat.split_whitespace().nth(2)?.parse().ok()
    })
}

/// Waits until the thread of `pid` named `comm` has been given a CPU at least `runs` times
/// ([`times_run`]); returns the count seen. Panics after `timeout`, naming what it saw.
pub fn wait_for_runs(pid: i32, comm: &str, runs: u64, timeout: std::time::Duration) -> u64 {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let ran = times_run(pid, comm);
        if let Some(n) = ran.filter(|&n| n >= runs) {
            return n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "thread {comm} of {pid} ran {ran:?} times, not {runs}, in {timeout:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// What the kernel says one thread of a process is doing right now
/// (`/proc/PID/task/TID/{stat,syscall}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadNow {
    /// The thread id.
    pub tid: i32,
    /// The state letter of `stat` (`R`, `S`, `D`, `t`, ...), `None` when it could not be read.
    pub state: Option<char>,
    /// The system call in progress (`syscall`'s first field), `None` when the thread is in
    /// user space (`running`) or the file could not be read.
    pub syscall: Option<i64>,
}

impl ThreadNow {
    /// Asleep in a system call: state `S` with a call in progress. Nothing of it runs, so
    /// its stack and the memory only it writes hold still.
    pub fn asleep(&self) -> bool {
        self.state == Some('S') && self.syscall.is_some_and(|n| n >= 0)
    }
}

/// Every thread of `pid`, as [`ThreadNow`], by thread id.
pub fn threads_now(pid: i32) -> Vec<ThreadNow> {
    tasks(pid)
        .into_iter()
        .map(|tid| {
            let dir = format!("/proc/{pid}/task/{tid}");
            let stat = std::fs::read_to_string(format!("{dir}/stat")).unwrap_or_default();
            let syscall = std::fs::read_to_string(format!("{dir}/syscall")).unwrap_or_default();
            ThreadNow {
                tid,
                state: stat
                    .rfind(')')
                    .and_then(|i| stat[i + 1..].split_whitespace().next())
                    .and_then(|s| s.chars().next()),
                syscall: syscall
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<i64>().ok()),
            }
        })
        .collect()
}

/// Waits until `done` holds for the threads of `pid` ([`threads_now`], polled every
/// millisecond: the wait ends as soon as the kernel says so). Panics after `timeout`, saying
/// `what` was awaited and what each thread was doing.
pub fn wait_threads(
    pid: i32,
    timeout: std::time::Duration,
    what: &str,
    done: impl Fn(&[ThreadNow]) -> bool,
) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let now = threads_now(pid);
        if done(&now) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the threads of {pid}: not {what} within {timeout:?}: {now:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Waits until every thread of `pid` sleeps in a system call ([`ThreadNow::asleep`]): nothing
/// of the process runs, so its memory holds still. Panics after `timeout`.
pub fn wait_all_asleep(pid: i32, timeout: std::time::Duration) {
    wait_threads(pid, timeout, "all asleep", |threads| {
        threads.iter().all(ThreadNow::asleep)
    });
}

/// The value of `key` (`"State"`, `"TracerPid"`, ...) in `/proc/PID/task/TID/status`, or
/// `None` when the thread is gone. Panics when a present thread's status lacks the key.
pub fn status_field(pid: i32, tid: i32, key: &str) -> Option<String> {
    let path = format!("/proc/{pid}/task/{tid}/status");
    let status = std::fs::read_to_string(&path).ok()?;
    let prefix = format!("{key}:");
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {path}: {status}"));
    Some(value.trim().to_string())
}

/// Whether any thread of `pid` is traced right now (`TracerPid` not 0).
pub fn traced(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .filter_map(|l| l.strip_prefix("TracerPid:"))
            .any(|v| v.trim() != "0")
    })
}

/// Asserts that every thread of `pid` is untraced (`TracerPid: 0`) and not in a stopped state
/// (`t` or `T`); returns how many threads were checked (threads that exit meanwhile are not
/// counted).
pub fn assert_not_stopped(pid: i32) -> usize {
    let mut checked = 0;
    for tid in tasks(pid) {
        let (Some(tracer), Some(state)) = (
            status_field(pid, tid, "TracerPid"),
            status_field(pid, tid, "State"),
        ) else {
            continue; // a thread that just exited
        };
        assert_eq!(tracer, "0", "thread {tid} of {pid} is traced");
        assert!(
            !state.starts_with('t') && !state.starts_with('T'),
            "thread {tid} of {pid} is stopped: {state}"
        );
        checked += 1;
    }
    checked
}

/// The child processes of `pid`, from `/proc/PID/task/*/children`.
pub fn children(pid: i32) -> Vec<i32> {
    let mut kids = Vec::new();
    for tid in tasks(pid) {
        let text =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children")).unwrap_or_default();
        kids.extend(
            text.split_whitespace()
                .filter_map(|k| k.parse::<i32>().ok()),
        );
    }
    kids
}

/// The parent of `pid` (field 4 of `/proc/PID/stat`). Panics when the process is gone.
pub fn parent(pid: i32) -> i32 {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    let after = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .unwrap_or_else(|| panic!("malformed {path}: {stat}"));
    after
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("malformed {path}: {stat}"))
}

/// Whether `/proc/PID` exists (a zombie still counts).
pub fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_seen_as_it_is() {
        let me = std::process::id() as i32;
        assert!(tasks(me).contains(&me));
        assert_eq!(
            status_field(me, me, "Pid").as_deref(),
            Some(me.to_string().as_str())
        );
        assert!(!traced(me), "the test process itself is traced");
        assert!(assert_not_stopped(me) >= 1);
        assert!(exists(me));
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let kid = child.id() as i32;
        assert!(children(me).contains(&kid));
        assert_eq!(parent(kid), me);
        let _ = child.kill();
        let _ = child.wait();
        assert!(!children(me).contains(&kid));
    }
}
