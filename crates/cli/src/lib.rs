//! The strobe command line.
//!
//! [`main`] parses arguments ([`args`]), runs one command, and turns every failure into a
//! single `strobe: error: ...` line on stderr: exit status 2 for usage errors, 1 for anything
//! else, 0 when stdout was closed early (`strobe dump ... | head`).
//!
//! Module map: [`args`] (clap definitions) → a command module (`dump`, `record`, `convert`,
//! `diff`) → `strobe_target` (open, locate, resolve the layout, walk: everything that touches
//! the target, and the snapshot data model `dump` prints) → [`output`] (text and JSON). `record` also uses `launch` (start a command and attach to it),
//! the sampler thread of `strobe-sampler`, and `status` (live status line and summary).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};

/// `record --quiet`: informational and warning lines are not printed (errors still are).
static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether `--quiet` was given.
fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// `eprintln!` for everything but errors: silent under `--quiet`.
macro_rules! say {
    ($($arg:tt)*) => {
        if !$crate::quiet() {
            eprintln!($($arg)*);
        }
    };
}

pub mod args;
mod convert;
mod diff;
mod dump;
#[cfg(test)]
mod error_lines;
mod launch;
mod out_dir;
pub mod output;
mod record;
mod report;
pub mod shell;
mod sink;
mod status;
mod top;

use clap::error::ErrorKind;
use clap::Parser;
use std::process::ExitCode;

/// Exit status for a command line that could not be parsed.
const EXIT_USAGE: u8 = 2;

/// Run strobe with the process arguments.
pub fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let result = match &cli.command {
        args::Command::Dump(dump_args) => dump::run(dump_args).map(|()| ExitCode::SUCCESS),
        args::Command::Record(a) => record::run(a),
        args::Command::Convert(a) => convert::run(a).map(|()| ExitCode::SUCCESS),
        args::Command::Diff(a) => diff::run(a).map(|()| ExitCode::SUCCESS),
        args::Command::Top(a) => top::run(a),
        args::Command::Completions(a) => shell::completions(a).map(|()| ExitCode::SUCCESS),
        args::Command::Man(a) => shell::man_pages(a).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strobe: error: {}", error_message(&e));
            ExitCode::FAILURE
        }
    }
}

/// Print a clap error the strobe way, or help/version text for the requests that are not errors.
fn usage_error(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Help and version go to stdout; if that fails there is nowhere left to report it.
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("strobe: error: no command given; try 'strobe --help'");
            ExitCode::from(EXIT_USAGE)
        }
        _ => {
            eprintln!(
                "strobe: error: {}; try 'strobe --help'",
                clap_summary(&e.render().to_string())
            );
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The first paragraph of clap's rendered error, without its `error: ` prefix, as one line.
fn clap_summary(rendered: &str) -> String {
    let first_paragraph: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let text = first_paragraph.join(" ");
    text.strip_prefix("error: ").unwrap_or(&text).to_string()
}

/// The error and its causes as one line, `context: error: cause`. Every library error either
/// prints its cause in its own message or returns it as `source()`, never both (`error_lines`
/// holds each error kind to that), so each link of the chain adds new text.
fn error_message(e: &anyhow::Error) -> String {
    let links: Vec<String> = e.chain().map(ToString::to_string).collect();
    one_line(&links.join(": "))
}

/// Collapse a possibly multi-line message onto one line.
fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether the failure is stdout having been closed by the reader: not an error for a filter.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_become_one_line() {
        let err = args::Cli::try_parse_from(["strobe", "dump"]).unwrap_err();
        let summary = clap_summary(&err.render().to_string());
        assert!(!summary.contains('\n'));
        assert!(summary.contains("--pid"), "{summary}");
        assert!(!summary.starts_with("error:"), "{summary}");
    }

    #[test]
    fn pid_must_be_positive() {
        assert!(args::Cli::try_parse_from(["strobe", "dump", "--pid", "0"]).is_err());
        assert!(args::Cli::try_parse_from(["strobe", "dump", "--pid", "x"]).is_err());
        assert!(args::Cli::try_parse_from(["strobe", "dump", "--pid", "7"]).is_ok());
    }

    #[test]
    fn dump_reads_a_pid_or_a_core() {
        let parse = |a: &[&str]| args::Cli::try_parse_from([&["strobe", "dump"], a].concat());
        assert!(parse(&["--core", "c", "--sysroot", "/r", "--executable", "/e"]).is_ok());
        assert!(parse(&["--core", "c", "--pid", "7"]).is_err());
        assert!(parse(&["--pid", "7", "--sysroot", "/r"]).is_err());
        assert!(parse(&["--core", "c", "--blocking"]).is_err());
        assert!(parse(&["--pid", "7", "--blocking"]).is_ok());
    }

    #[test]
    fn broken_pipe_is_recognised_through_context() {
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let e = anyhow::Error::from(io).context("writing the dump");
        assert!(is_broken_pipe(&e));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }

    #[test]
    fn causes_follow_their_context() {
        let e = anyhow::Error::from(std::io::Error::other("disk on fire")).context("dumping");
        assert_eq!(error_message(&e), "dumping: disk on fire");
        let plain = anyhow::Error::from(std::io::Error::other("x\ny")).context("ctx");
        assert_eq!(error_message(&plain), "ctx: x y");
    }

    #[test]
    fn messages_are_flattened() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }
}
