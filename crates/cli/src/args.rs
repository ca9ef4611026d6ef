//! Command-line arguments.
//!
//! One subcommand per verb. `dump` is the only one today; `record`, `top`, `convert` and `diff`
//! become further variants of [`Command`] with their own argument structs, sharing
//! [`TargetArgs`] for the way a process is named and attached to.

use clap::{Args, Parser, Subcommand};

/// strobe: a sampling profiler for CPython 2.7 to 3.15.
#[derive(Debug, Parser)]
#[command(name = "strobe", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the current Python stack of every thread of a running process.
    Dump(DumpArgs),
}

/// How to find and attach to the target process (shared by every command that reads one).
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Process id of the running Python program.
    #[arg(long, short, value_name = "PID", value_parser = clap::value_parser!(i32).range(1..))]
    pub pid: i32,
    /// Stop the target (ptrace) while reading it, for a consistent view. The target is always
    /// resumed before strobe exits.
    #[arg(long)]
    pub blocking: bool,
}

/// `strobe dump`.
#[derive(Debug, Clone, Args)]
pub struct DumpArgs {
    /// The target process.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print one JSON document instead of text (field reference: README, "JSON output").
    #[arg(long)]
    pub json: bool,
    /// Do not look up `threading` thread names (saves reading the interpreter's module table).
    #[arg(long)]
    pub no_names: bool,
}
