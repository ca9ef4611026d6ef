//! Starting targets, running strobe, and the expected stacks.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;
use strobe_testkit::interpreters::{self, Interpreter, Source};
use strobe_testkit::Ready;
pub use strobe_testkit::TempDir;
/// Longest wait for a target's READY line (debug builds start slowly on a loaded machine).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const SCRIPT_NAME: &str = "tärget_ü.py";

/// `tests/targets`.
pub fn targets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/targets")
}

/// A target script copied where the interpreter can reach it.
pub struct Script {
    /// Path from here.
    pub here: PathBuf,
    /// Path as the target sees it (its `co_filename`).
    pub in_target: String,
    /// The command line that runs it (without its arguments).
    pub command: Vec<String>,
    _dir: TempDir,
}

impl Script {
    /// `tests/targets/NAME`, copied into a fresh directory the interpreter can reach (inside
    /// the chroot for sid interpreters).
    pub fn new(interp: &Interp, name: &str) -> Script {
        Script::with_files(interp, name, &[])
    }

    /// Same, with more files from `tests/targets` copied beside it (modules it imports).
    pub fn with_files(interp: &Interp, name: &str, extra: &[&str]) -> Script {
        let script = Script::place(interp, name);
        for f in extra {
            std::fs::copy(targets_dir().join(f), script.here.with_file_name(f)).unwrap();
        }
        script
    }

    /// A command running the script with the environment targets get (see
    /// [`target_command`]), stdin and stdout piped; arguments may be added.
    pub fn command(&self) -> Command {
        let mut cmd = target_command(&self.command[0]);
        cmd.args(&self.command[1..]);
        cmd
    }

    /// [`Script::command`] run by `sh -c 'COMMAND; true'`: a shell that stays the parent of
    /// the interpreter (it does not `exec` it) and never runs Python itself.
    pub fn command_through_shell(&self) -> Command {
        let mut cmd = target_command("sh");
        cmd.arg("-c")
            .arg(format!("{}; true", self.command.join(" ")));
        cmd
    }

    fn place(interp: &Interp, name: &str) -> Script {
        interp.require();
        let src = targets_dir().join(name);
        match interp {
            Interp::Host(python) => {
                let dir = TempDir::new();
                let here = dir.path().join(name);
                std::fs::copy(&src, &here).unwrap();
                let in_target = here.to_str().unwrap().to_string();
                Script {
                    command: vec![python.to_str().unwrap().into(), in_target.clone()],
                    here,
                    in_target,
                    _dir: dir,
                }
            }
            Interp::Sid(python) => {
                let sid = interpreters::sid_root();
                let dir = TempDir::new_in(&sid.join("tmp"));
                let here = dir.path().join(name);
                std::fs::copy(&src, &here).unwrap();
                let in_target = format!(
                    "/tmp/{}/{name}",
                    dir.path().file_name().unwrap().to_str().unwrap()
                );
                Script {
                    command: vec![
                        "chroot".into(),
                        sid.to_str().unwrap().into(),
                        (*python).into(),
                        in_target.clone(),
                    ],
                    here,
                    in_target,
                    _dir: dir,
                }
            }
        }
    }

    /// Line numbers of the `# @line:NAME` markers.
    pub fn lines(&self) -> HashMap<String, u32> {
        let text = std::fs::read_to_string(&self.here).unwrap();
        let mut out = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            if let Some(pos) = line.find("# @line:") {
                out.insert(line[pos + 8..].trim().to_string(), i as u32 + 1);
            }
        }
        out
    }

    /// `function (file:line)` for marker `mark`.
    pub fn label(&self, function: &str, mark: &str) -> String {
        format!("{function} ({}:{})", self.in_target, self.lines()[mark])
    }
}

/// A target started by [`Announced::start`]: it prints `READY <pid>` (its own pid: the child
/// may be `chroot` or `runuser` in front of it) as its first line. Its stdin closing ends it;
/// killed and reaped on drop.
pub struct Announced {
    pub ready: Ready,
    pub pid: i32,
}

impl Announced {
    /// Start `cmd` (stdin piped) and wait for its `READY <pid>` line. A target that dies
    /// first ends the read with EOF, so this never hangs on it.
    pub fn start(cmd: &mut Command) -> Announced {
        let ready = Ready::start(cmd.stdin(Stdio::piped()), "the target");
        assert!(
            ready.preamble.is_empty(),
            "the target printed {:?} before READY",
            ready.preamble
        );
        let pid = ready
            .said
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the target did not start: READY {:?}", ready.said));
        Announced { ready, pid }
    }

    /// Wait until all its threads sleep in system calls, its main thread in `read(2)` (see
    /// [`wait_until_blocked`]); for targets that print READY just before blocking there.
    pub fn wait_until_blocked(&self) {
        wait_until_blocked(self.pid);
    }

    /// Close its stdin: the target winds down and exits by itself.
    pub fn close_stdin(&mut self) {
        drop(self.ready.child.stdin.take());
    }

    /// Close its stdin and return the line it prints as it ends (its own account of the run).
    pub fn last_word(&mut self) -> String {
        self.close_stdin();
        let mut line = String::new();
        self.ready
            .stdout
            .read_line(&mut line)
            .expect("reading the target's last line");
        line
    }
}

/// The strobe binary under test.
pub fn strobe_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strobe"))
}

/// An interpreter to run the target under.
#[derive(Debug, Clone)]
pub enum Interp {
    /// A binary on this machine.
    Host(PathBuf),
    /// A binary inside the sid chroot, named as the chroot sees it (`python3.14`).
    Sid(&'static str),
}

impl Interp {
    /// A pyenv build of the registry, e.g. `pyenv("3.12.1")`.
    pub fn pyenv(version: &str) -> Interp {
        Interp::from(interpreters::pyenv_version(version))
    }

    /// A registry entry by name, e.g. `named("debian_3_11")`.
    pub fn named(name: &str) -> Interp {
        Interp::from(interpreters::get(name))
    }

    /// Fail (not skip) when the interpreter is not provisioned.
    pub fn require(&self) {
        match self {
            Interp::Host(p) => assert!(
                p.is_file(),
                "required interpreter {} is missing: run .ci/provision.sh",
                p.display()
            ),
            Interp::Sid(name) => {
                let sid = interpreters::require_sid();
                let bin = sid.join("usr/bin").join(name);
                assert!(
                    bin.is_file(),
                    "required interpreter {name} is missing from {}: run .ci/provision.sh",
                    sid.display()
                );
            }
        }
    }
}

impl From<&Interpreter> for Interp {
    fn from(interp: &Interpreter) -> Interp {
        match interp.source {
            Source::Sid(program) => Interp::Sid(program),
            Source::Pyenv(_) | Source::System(_) => Interp::Host(interp.path()),
        }
    }
}

/// What the target prints about itself after READY.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    pub pid: i32,
    pub version: (u64, u64, u64),
    pub depth: usize,
    /// (name, ident, native id)
    pub threads: Vec<(String, u64, Option<u32>)>,
}

/// A running target script; killed and reaped on drop.
pub struct Target {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub info: TargetInfo,
    /// The script's path as the target sees it (its `co_filename`).
    pub script_in_target: String,
    /// The script's path from here (to read its markers).
    pub script_here: PathBuf,
    _script: Script,
}

/// Environment for targets: a UTF-8 locale (3.6 otherwise decodes the non-ASCII file name
/// with surrogate escapes) and nothing inherited that changes how Python starts.
fn target_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LC_ALL", "C.UTF-8")
        .env("PYTHONIOENCODING", "utf-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

impl Target {
    /// Start the target under `interp` and wait until it is READY.
    pub fn start(interp: &Interp) -> Target {
        Target::start_as(interp, None)
    }

    /// Same, able to dump core: run through `prlimit --core=unlimited` (the limit of the
    /// target alone) with `dir` (from here; inside the sid chroot for sid interpreters) as its
    /// working directory, where a relative `core_pattern` (the kernel's default, `core`) puts
    /// its core. `chroot` changes to `/`, so sid targets change directory in a shell first.
    pub fn start_dumpable(interp: &Interp, dir: &Path) -> Target {
        let script = Script::new(interp, SCRIPT_NAME);
        let mut cmd = target_command("prlimit");
        cmd.arg("--core=unlimited:unlimited").arg("--");
        match interp {
            Interp::Host(_) => {
                cmd.args(&script.command).current_dir(dir);
            }
            Interp::Sid(_) => {
                let sid = interpreters::sid_root();
                let inside = Path::new("/").join(dir.strip_prefix(&sid).unwrap());
                let (chroot, rest) = script.command.split_at(2);
                cmd.args(chroot)
                    .args(["/bin/sh", "-c", "cd \"$0\" && exec \"$@\""])
                    .arg(inside)
                    .args(rest);
            }
        }
        Target::spawn(cmd, script)
    }

    /// Send SIGABRT (whose default action dumps core) and wait until the target has exited,
    /// its core written.
    pub fn abort_and_wait(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.info.pid),
            nix::sys::signal::Signal::SIGABRT,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        self.info.pid = 0;
        status
    }

    /// Same, optionally as another user (via `runuser`; only for host interpreters).
    pub fn start_as(interp: &Interp, user: Option<&str>) -> Target {
        let script = Script::new(interp, SCRIPT_NAME);
        let cmd = match user {
            Some(user) => {
                assert!(
                    matches!(interp, Interp::Host(_)),
                    "runuser is only used with host interpreters"
                );
                let mut c = target_command("runuser");
                c.args(["-u", user, "--"]).args(&script.command);
                c
            }
            None => script.command(),
        };
        Target::spawn(cmd, script)
    }

    fn spawn(mut cmd: Command, script: Script) -> Target {
        let mut child = cmd.spawn().expect("could not start the target");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut target = Target {
            child,
            stdin,
            lines: rx,
            info: TargetInfo {
                pid: 0,
                version: (0, 0, 0),
                depth: 0,
                threads: vec![],
            },
            script_in_target: script.in_target.clone(),
            script_here: script.here.clone(),
            _script: script,
        };
        let ready = target.next_line();
        assert_eq!(ready, "READY", "the target did not start as expected");
        let info: Value = serde_json::from_str(&target.next_line()).unwrap();
        let v = info["version"].as_array().unwrap();
        target.info = TargetInfo {
            pid: info["pid"].as_i64().unwrap() as i32,
            version: (
                v[0].as_u64().unwrap(),
                v[1].as_u64().unwrap(),
                v[2].as_u64().unwrap(),
            ),
            depth: info["depth"].as_u64().unwrap() as usize,
            threads: info["threads"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap().to_string(),
                        t["ident"].as_u64().unwrap(),
                        t["native_id"].as_u64().map(|n| n as u32),
                    )
                })
                .collect(),
        };
        target.wait_until_blocked();
        target
    }

    /// See [`wait_until_blocked`].
    fn wait_until_blocked(&self) {
        wait_until_blocked(self.info.pid);
    }

    /// The next line the target prints, failing after [`READY_TIMEOUT`].
    pub fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(e) => panic!("no line from the target within {READY_TIMEOUT:?}: {e}"),
        }
    }

    /// Send a line and expect `pong`: proves the target is alive and not stopped.
    pub fn ping(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(b"ping\n").unwrap();
        stdin.flush().unwrap();
        assert_eq!(self.next_line(), "pong");
        self.wait_until_blocked();
    }

    pub fn pid(&self) -> i32 {
        self.info.pid
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // End of input makes the target exit by itself; the kill covers a stuck one (and the
        // runuser case, where our child is runuser and the target its child).
        drop(self.stdin.take());
        if self.info.pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.info.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `strobe` with `args`.
pub fn strobe(args: &[&str]) -> Output {
    Command::new(strobe_bin())
        .args(args)
        .output()
        .expect("could not run strobe")
}

/// `strobe dump --pid P --json` (plus `extra`), parsed; fails the test on a non-zero exit.
pub fn dump_json(pid: i32, extra: &[&str]) -> Value {
    let pid = pid.to_string();
    let mut args = vec!["dump", "--pid", pid.as_str(), "--json"];
    args.extend_from_slice(extra);
    let out = strobe(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "strobe {args:?} failed ({}): {stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "strobe printed invalid JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Line numbers of the `# @block:NAME` markers in the script.
pub fn markers(script: &Path) -> HashMap<String, u32> {
    let text = std::fs::read_to_string(script).unwrap();
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(pos) = line.find("# @block:") {
            let name = line[pos + "# @block:".len()..].trim().to_string();
            assert!(
                out.insert(name.clone(), i as u32 + 1).is_none(),
                "marker {name} appears twice"
            );
        }
    }
    out
}

/// One frame we expect in our script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub function: String,
    pub line: u32,
}

/// The stack a thread of the target must show: our frames innermost first, then whether the
/// rest must be `threading.py` frames (worker threads) or nothing (the main thread).
pub fn expected_stack(
    thread: &str,
    version: (u64, u64, u64),
    depth: usize,
    marks: &HashMap<String, u32>,
) -> (Vec<Expected>, bool) {
    let at = |function: &str, marker: &str| Expected {
        function: function.to_string(),
        line: *marks
            .get(marker)
            .unwrap_or_else(|| panic!("no # @block:{marker} in the script")),
    };
    // 3.11+ reports co_qualname, which includes the class for methods.
    let qualnames = version >= (3, 11, 0);
    match thread {
        "deep" => {
            let mut v = vec![at("deep", "deep")];
            v.extend((0..depth).map(|_| at("deep", "deep-recurse")));
            (v, true)
        }
        "gen" => (vec![at("gen", "gen"), at("run_gen", "gen-caller")], true),
        "lambda" => (vec![at("<lambda>", "lambda")], true),
        "method" => (
            vec![at(
                if qualnames {
                    "Worker.run_job"
                } else {
                    "run_job"
                },
                "method",
            )],
            true,
        ),
        "unicode-ü" => (vec![at("grüße", "unicode")], true),
        "MainThread" => (vec![at("main", "main"), at("<module>", "main-call")], false),
        other => panic!("the target reported an unknown thread {other:?}"),
    }
}

/// Check a `strobe dump --json` document against the target, thread by thread.
pub fn check_dump(target: &Target, dump: &Value) {
    let info = &target.info;
    let marks = markers(&target.script_here);
    assert_eq!(dump["pid"].as_i64(), Some(i64::from(target.pid())));
    let want_version = format!("{}.{}.{}", info.version.0, info.version.1, info.version.2);
    let got_version = dump["python"]["version"].as_str().unwrap();
    assert!(
        got_version.starts_with(&want_version),
        "version {got_version}, target says {want_version}"
    );
    let threads = dump["threads"].as_array().unwrap();
    assert_eq!(
        threads.len(),
        info.threads.len(),
        "thread count differs from the target's own list: {dump:#}"
    );
    for (name, ident, native) in &info.threads {
        let t = threads
            .iter()
            .find(|t| t["thread_id"].as_u64() == Some(*ident))
            .unwrap_or_else(|| panic!("thread {name} (ident {ident}) missing: {dump:#}"));
        let ctx = format!("thread {name}: {t:#}");
        assert_eq!(t["name"].as_str(), Some(name.as_str()), "{ctx}");
        if let Some(native) = native {
            assert_eq!(t["native_id"].as_u64(), Some(u64::from(*native)), "{ctx}");
        }
        // Every thread of the target is blocked: in lock.acquire() or in stdin.readline().
        assert_eq!(t["state"].as_str(), Some("idle"), "{ctx}");
        if dump["python"]["free_threaded"] == Value::Bool(true) {
            assert!(t["holds_gil"].is_null(), "{ctx}");
        } else {
            assert_eq!(t["holds_gil"].as_bool(), Some(false), "{ctx}");
        }
        assert_eq!(t["truncated"].as_bool(), Some(false), "{ctx}");

        let (ours, rest_in_threading) = expected_stack(name, info.version, info.depth, &marks);
        let frames = t["frames"].as_array().unwrap();
        assert!(frames.len() >= ours.len(), "{ctx}");
        for (i, want) in ours.iter().enumerate() {
            let f = &frames[i];
            assert_eq!(
                f["function"].as_str(),
                Some(want.function.as_str()),
                "frame {i} of {ctx}"
            );
            assert_eq!(
                f["filename"].as_str(),
                Some(target.script_in_target.as_str()),
                "frame {i} of {ctx}"
            );
            assert_eq!(
                f["line"].as_u64(),
                Some(u64::from(want.line)),
                "frame {i} of {ctx}"
            );
        }
        let rest = &frames[ours.len()..];
        if rest_in_threading {
            assert!(!rest.is_empty(), "no threading.py frames under {ctx}");
            for f in rest {
                let file = f["filename"].as_str().unwrap();
                assert!(
                    file.ends_with("threading.py"),
                    "unexpected frame {f} in {ctx}"
                );
            }
        } else {
            assert!(rest.is_empty(), "unexpected outer frames in {ctx}");
        }
    }
}

/// Wait until every thread of the target is asleep in a system call, the main thread in
/// `read(2)` of its stdin. The target prints READY (or `pong`) just before the main thread
/// blocks, and a strobe that attaches within a millisecond would otherwise find that thread
/// still on its way there: running, not idle. Polls the kernel's view of each thread
/// (`/proc/PID/task/TID/syscall`, `stat`) rather than sleeping for a guessed time.
pub fn wait_until_blocked(pid: i32) {
    wait_blocked(pid, true);
}

/// Wait until every thread but the main one sleeps in a system call (for targets whose main
/// thread stays busy).
pub fn wait_until_others_blocked(pid: i32) {
    wait_blocked(pid, false);
}

fn wait_blocked(pid: i32, main_too: bool) {
    /// `read` on x86-64 (asm/unistd_64.h).
    const SYS_READ: i64 = 0;
    let what = if main_too {
        "all asleep, the main thread in read(2)"
    } else {
        "all but the main thread asleep"
    };
    strobe_testkit::procfs::wait_threads(pid, READY_TIMEOUT, what, |threads| {
        threads.iter().all(|t| match t.tid == pid {
            true => !main_too || (t.asleep() && t.syscall == Some(SYS_READ)),
            false => t.asleep(),
        })
    });
}
