//! Bad input to `record`, `top` and `dump`: a kernel thread, a zombie, unwritable or missing
//! output paths, an unknown format, out-of-range rates and durations. Each gives one clear
//! `strobe: error:` line, a non-zero exit, no panic, leaves the output directory exactly as it
//! was, and leaves a live target running.
//!
//! `top` needs a terminal before it looks at anything else, so it runs under `script(1)`,
//! which gives it a pseudo-terminal and passes its exit status on (`-e`).

use crate::harness::{strobe_bin, TempDir};
use crate::record::strobe_cmd;
use crate::safety::{py312, Stress};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The names in `dir` (to prove nothing was left behind).
fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// One `strobe: error:` line containing every one of `wants`, a non-zero exit, no panic.
fn one_clear_line(out: &Output, what: &str, wants: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Under script(1) the error arrives on the terminal, i.e. in stdout, with CR LF.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = if stderr.trim().is_empty() {
        stdout.replace('\r', "")
    } else {
        assert!(stdout.trim().is_empty(), "{what}: stdout: {stdout}");
        stderr.into_owned()
    };
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "{what}: exit {}: {text}",
        out.status
    );
    assert!(!text.contains("panicked"), "{what}: {text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: expected one line: {text}");
    assert!(lines[0].starts_with("strobe: error: "), "{what}: {text}");
    for want in wants {
        assert!(
            lines[0].contains(want),
            "{what}: {want:?} missing from {text}"
        );
    }
}

/// `strobe top ARGS` in a pseudo-terminal.
fn top_in_pty(args: &[&str]) -> Output {
    let mut cmd = format!("'{}' top", strobe_bin().display());
    for a in args {
        cmd.push_str(&format!(" '{a}'"));
    }
    Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("script(1) is required (util-linux)")
}

/// A zombie: exited, not reaped (waitid with WNOWAIT), reaped on drop.
struct Zombie(std::process::Child);
impl Zombie {
    fn new() -> Zombie {
        use nix::sys::wait::{waitid, Id, WaitPidFlag};
        let child = Command::new("/bin/true")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        waitid(
            Id::Pid(nix::unistd::Pid::from_raw(child.id() as i32)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        )
        .unwrap();
        Zombie(child)
    }
}
impl Drop for Zombie {
    fn drop(&mut self) {
        let _ = self.0.wait();
    }
}

/// A kernel thread and a zombie, for record (attach), top and dump.
#[test]
fn kernel_threads_and_zombies_are_refused() {
    let dir = TempDir::new();
    let out = dir.path().join("out.svg");
    let out_s = out.to_str().unwrap();
    let before = listing(dir.path());
    let zombie = Zombie::new();
    let zpid = zombie.0.id().to_string();
    for (pid, want) in [("2", "kernel thread"), (zpid.as_str(), "exited")] {
        let what = format!("record --pid {pid}");
        let o = strobe_cmd(&["record", "--pid", pid, "-o", out_s])
            .output()
            .unwrap();
        one_clear_line(&o, &what, &[pid, want]);
        let o = strobe_cmd(&["dump", "--pid", pid]).output().unwrap();
        one_clear_line(&o, &format!("dump --pid {pid}"), &[pid, want]);
        let o = top_in_pty(&["--pid", pid]);
        one_clear_line(&o, &format!("top --pid {pid}"), &[pid, want]);
    }
    assert_eq!(listing(dir.path()), before, "files left behind");
}

/// Output paths that cannot be written, an unknown format, and out-of-range rates and
/// durations: refused before strobe touches the target, which keeps running.
#[test]
fn bad_outputs_rates_and_durations_are_refused_before_anything_starts() {
    let mut target = Stress::start(&py312(), "threads", "0", Some("2"));
    let pid = target.pid.to_string();
    let dir = TempDir::new();
    let ok_out = dir.path().join("out.svg");
    let ok_out = ok_out.to_str().unwrap();
    let missing = dir.path().join("missing/out.svg");
    let not_dir = dir.path().join("plain-file");
    std::fs::write(&not_dir, "x").unwrap();
    let under_file = not_dir.join("out.svg");
    let before = listing(dir.path());
    // Root ignores permission bits, so "unwritable" is a place no one may create files in.
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["-o".into(), "/sys/strobe-out.svg".into()],
            vec!["cannot write /sys/strobe-out.svg"],
        ),
        (
            vec!["-o".into(), missing.display().to_string()],
            vec!["does not exist"],
        ),
        (
            vec!["-o".into(), under_file.display().to_string()],
            vec!["cannot write"],
        ),
        (
            vec!["-o".into(), dir.path().display().to_string()],
            vec!["is a directory"],
        ),
        (
            vec![
                "-o".into(),
                ok_out.into(),
                "--format".into(),
                "bogus".into(),
            ],
            vec!["bogus"],
        ),
        (
            vec!["-o".into(), ok_out.into(), "--rate".into(), "0".into()],
            vec!["--rate 0 is out of range"],
        ),
        (
            vec!["-o".into(), ok_out.into(), "--rate=-5".into()],
            vec!["out of range"],
        ),
        (
            vec!["-o".into(), ok_out.into(), "--rate".into(), "NaN".into()],
            vec!["out of range"],
        ),
        (
            vec!["-o".into(), ok_out.into(), "--rate".into(), "2e6".into()],
            vec!["out of range"],
        ),
        (
            vec!["-o".into(), ok_out.into(), "--duration".into(), "0".into()],
            vec!["--duration 0"],
        ),
        (
            vec!["-o".into(), ok_out.into(), "--duration=-1".into()],
            vec!["--duration -1"],
        ),
        (
            vec![
                "-o".into(),
                ok_out.into(),
                "--duration".into(),
                "NaN".into(),
            ],
            vec!["--duration"],
        ),
    ];
    for (extra, wants) in &cases {
        let mut args = vec!["record", "--pid", &pid];
        args.extend(extra.iter().map(String::as_str));
        let o = strobe_cmd(&args).output().unwrap();
        one_clear_line(&o, &format!("{args:?}"), wants);
        assert_eq!(listing(dir.path()), before, "{args:?} left files behind");
        assert!(!Path::new("/sys/strobe-out.svg").exists());
    }
    // The same rates for top (its own range check runs in a terminal).
    for rate in ["0", "-5", "NaN", "2e6"] {
        let flag = format!("--rate={rate}");
        let o = top_in_pty(&["--pid", &pid, &flag]);
        one_clear_line(&o, &format!("top {flag}"), &["out of range"]);
    }
    // Launch mode: nothing is started for bad input (the command would print READY).
    let o = strobe_cmd(&[
        "record",
        "--rate",
        "0",
        "-o",
        ok_out,
        "--",
        "/bin/echo",
        "STARTED",
    ])
    .output()
    .unwrap();
    one_clear_line(&o, "launch --rate 0", &["out of range"]);
    assert!(o.stdout.is_empty(), "the command was started");
    assert_eq!(listing(dir.path()), before);
    // The target was never disturbed.
    assert!(target.running(), "the target died");
    target.end();
}
