//! What a user meets first: `--help` of every command (golden files under `tests/golden/help`;
//! `STROBE_BLESS=1` rewrites them), completions typed with Tab in a real interactive bash, and
//! the generated man pages.

use crate::harness::{strobe, strobe_bin, TempDir};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/help")
}

/// The commands whose help is pinned, as `strobe ARGS --help` arguments.
const HELP_PAGES: &[&[&str]] = &[
    &[],
    &["dump"],
    &["record"],
    &["convert"],
    &["diff"],
    &["top"],
    &["completions"],
    &["man"],
];

#[test]
fn help_pages_match_their_golden_files_and_open_with_the_user() {
    let bless = std::env::var_os("STROBE_BLESS").is_some();
    let mut stale = Vec::new();
    for args in HELP_PAGES {
        let mut full: Vec<&str> = args.to_vec();
        full.push("--help");
        let out = strobe(&full);
        assert!(out.status.success(), "strobe {full:?}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        // No contributor-facing text; the first line says what the command does.
        for word in ["crate", "argument parsing", "TODO", "struct"] {
            assert!(
                !text.contains(word),
                "strobe {full:?} mentions {word:?}:\n{text}"
            );
        }
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.len() > 20 && !first.starts_with("Usage"),
            "strobe {full:?} does not open with what it does: {first:?}"
        );
        if !["completions", "man"].contains(&args.first().copied().unwrap_or("")) {
            assert!(
                text.contains("\nExamples:\n  strobe "),
                "strobe {full:?} ends without examples:\n{text}"
            );
        }
        let name = if args.is_empty() {
            "strobe".to_string()
        } else {
            format!("strobe-{}", args.join("-"))
        };
        let path = golden_dir().join(format!("{name}.txt"));
        if bless {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with STROBE_BLESS=1 to create it",
                path.display()
            )
        });
        if want != text {
            stale.push(format!("--- {} ---\n{text}", path.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "help differs from its golden file; if intended, rerun with STROBE_BLESS=1 and review the diff\n{}",
        stale.join("\n")
    );
}

#[test]
fn man_pages_are_written_for_every_command() {
    let dir = TempDir::new();
    let out = strobe(&["man", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    for name in [
        "strobe",
        "strobe-dump",
        "strobe-record",
        "strobe-convert",
        "strobe-diff",
        "strobe-top",
        "strobe-completions",
        "strobe-man",
    ] {
        let page = std::fs::read_to_string(dir.path().join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}"));
        assert!(
            page.starts_with(".ie"),
            "{name}.1 is not roff: {}",
            &page[..page.len().min(80)]
        );
        assert!(
            page.contains(&format!(".TH {name} 1")),
            "{name}.1 has no title line"
        );
    }
    let record = std::fs::read_to_string(dir.path().join("strobe-record.1")).unwrap();
    for option in ["\\-\\-pid", "\\-\\-subprocesses", "\\-\\-format"] {
        assert!(record.contains(option), "strobe-record.1 lacks {option}");
    }
}

/// An interactive bash in a private tmux server, with strobe's completion script sourced.
struct Bash {
    socket: String,
    _dir: TempDir,
}

const PROMPT: &str = "ready$ ";

impl Bash {
    fn start() -> Bash {
        let dir = TempDir::new();
        let socket = format!("strobe-completion-{}", std::process::id());
        let rc = dir.path().join("rc");
        let bin_dir = strobe_bin().parent().unwrap().to_path_buf();
        std::fs::write(
            &rc,
            format!(
                "export PATH={}:$PATH\nsource <(strobe completions bash)\nPS1='{PROMPT}'\n",
                bin_dir.display()
            ),
        )
        .unwrap();
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "150",
                "-y",
                "20",
                "-s",
                "sh",
            ])
            .arg(format!("bash --noprofile --rcfile {}", rc.display()))
            .env_remove("TMUX")
            .status()
            .expect("tmux is required for the completion test: run .ci/provision.sh");
        assert!(status.success(), "tmux new-session failed");
        let bash = Bash { socket, _dir: dir };
        bash.wait_for("the prompt", |s| s.contains(PROMPT.trim_end()));
        bash
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "sh"])
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen shows:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Type `text`, press Tab, and return the prompt line once bash has completed it.
    fn complete(&self, text: &str, want: &str) -> String {
        self.tmux(&["send-keys", "-t", "sh", "C-u"]);
        self.tmux(&["send-keys", "-t", "sh", "-l", text]);
        self.tmux(&["send-keys", "-t", "sh", "Tab"]);
        let screen = self.wait_for(&format!("{text:?} + Tab to become {want:?}"), |s| {
            s.lines()
                .any(|l| l.trim_end() == format!("{PROMPT}{want}").trim_end())
        });
        screen
    }
}

impl Drop for Bash {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[test]
fn bash_completes_commands_and_options_on_tab() {
    let bash = Bash::start();
    bash.complete("strobe rec", "strobe record ");
    bash.complete("strobe record --for", "strobe record --format ");
    bash.complete(
        "strobe record --format spe",
        "strobe record --format speedscope ",
    );
    bash.complete("strobe completions fi", "strobe completions fish ");
}
