//! Target processes for live tests: started, waited for until they print `READY`, and killed
//! and reaped however the test ends.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

/// A process started by [`Ready::start`]; killed and reaped (and its script file, if any,
/// removed) when dropped.
#[derive(Debug)]
pub struct Ready {
    /// The process. Its stdout has been taken: see [`Ready::stdout`].
    pub child: Child,
    /// The rest of its output, after the `READY` line.
    pub stdout: BufReader<ChildStdout>,
    /// Lines it printed before `READY`.
    pub preamble: Vec<String>,
    /// What followed `READY ` on its line (targets may report addresses there).
    pub said: String,
    script: Option<PathBuf>,
}

impl Ready {
    /// Start `cmd` with stdout piped and read its output up to the line `READY` or
    /// `READY <words>` (targets announce that they are set up; tests synchronise on it, never
    /// on sleeps). Panics with `what` and what the process said if it ends before that.
    pub fn start(cmd: &mut Command, what: &str) -> Ready {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let out = child.stdout.take();
        let mut ready = Ready {
            child,
            stdout: BufReader::new(out.unwrap_or_else(|| panic!("{what}: no stdout"))),
            preamble: Vec::new(),
            said: String::new(),
            script: None,
        };
        loop {
            let mut line = String::new();
            match ready.stdout.read_line(&mut line) {
                Ok(0) | Err(_) => panic!(
                    "{what} ended before READY; it printed: {:?}",
                    ready.preamble
                ),
                Ok(_) => {
                    let line = line.trim_end();
                    if line == "READY" {
                        return ready;
                    }
                    if let Some(rest) = line.strip_prefix("READY ") {
                        ready.said = rest.to_string();
                        return ready;
                    }
                    ready.preamble.push(line.to_string());
                }
            }
        }
    }

    /// Write `source` to a fresh file named after `name` in the temporary directory and start
    /// `python` on it with `args`, as [`Ready::start`]; the file is removed on drop.
    pub fn python_script(python: &str, name: &str, source: &str, args: &[&str]) -> Ready {
        Ready::script(None, python, name, source, args)
    }

    /// [`Ready::python_script`] with the process started on CPU `cpu` alone: it and every
    /// thread it starts run there (see [`crate::last_cpu`]).
    pub fn python_script_on(
        cpu: usize,
        python: &str,
        name: &str,
        source: &str,
        args: &[&str],
    ) -> Ready {
        Ready::script(Some(cpu), python, name, source, args)
    }

    /// [`Ready::start`] with the process started on CPU `cpu` alone: it is started from a
    /// thread pinned there, whose affinity it inherits.
    pub fn start_on(cpu: usize, cmd: &mut Command, what: &str) -> Ready {
        std::thread::scope(|s| {
            let started = s.spawn(|| {
                crate::pin(0, cpu);
                Ready::start(cmd, what)
            });
            started
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// [`Ready::python_script`], on CPU `cpu` alone if there is one.
    fn script(cpu: Option<usize>, python: &str, name: &str, source: &str, args: &[&str]) -> Ready {
        let script = std::env::temp_dir().join(format!(
            "strobe-{name}-{}-{}.py",
            std::process::id(),
            unique()
        ));
        std::fs::write(&script, source)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", script.display()));
        let mut cmd = Command::new(python);
        cmd.arg(&script).args(args);
        let mut ready = match cpu {
            Some(cpu) => Ready::start_on(cpu, &mut cmd, name),
            None => Ready::start(&mut cmd, name),
        };
        ready.script = Some(script);
        ready
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(script) = &self.script {
            let _ = std::fs::remove_file(script);
        }
    }
}

/// A number no other call in this process returns, for file names.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
