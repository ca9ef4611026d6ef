//! Command-line arguments.
//!
//! One subcommand per verb, each with its own argument struct; commands that read one process
//! share [`TargetArgs`] for the way it is named and attached to.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

/// Examples shown at the end of `strobe --help`.
const EXAMPLES: &str = "\
Examples:
  strobe record -o app.svg -- python app.py     profile a script into a flamegraph
  strobe record --pid 1234 --duration 30        profile a running process for 30 s
  strobe top --pid 1234                         watch where a running process spends its time
  strobe dump --pid 1234                        print every thread's Python stack now";

const DUMP_EXAMPLES: &str = "\
Examples:
  strobe dump --pid 1234                 every thread's stack, innermost frame first
  strobe dump --pid 1234 --json          the same as one JSON document
  strobe dump --pid 1234 --blocking      stop the process while reading, for an exact view
  strobe dump --pid 1234 --native        C/C++/Rust frames too, interleaved with the Python ones
  strobe dump --pid 1234 --locals        each frame's arguments and local variables too
  strobe dump --pid 1234 --async         asyncio tasks: who awaits whom, coroutine stacks
  strobe dump --core core.1234           the stacks of a crashed (or gcore'd) process
  strobe dump --core core.1234 --sysroot /srv/chroot   a core of a process that ran in a chroot";

const RECORD_EXAMPLES: &str = "\
Examples:
  strobe record -o app.svg -- python app.py           launch a script, write a flamegraph
  strobe record --pid 1234 --duration 30              a running process for 30 s
  strobe record --pid 1234 -o app.pb.gz --rate 250    pprof at 250 samples per second
  strobe record --subprocesses -- ./run.sh            every Python process a launcher starts
  strobe record --native -o app.svg -- python app.py  C, C++ and Rust frames under the Python ones";

const CONVERT_EXAMPLES: &str = "\
Examples:
  strobe record --pid 1234 -o run.raw              record once, in strobe's own format
  strobe convert run.raw -o run.svg --idle         then view it in other ways
  strobe convert run.raw -o run.speedscope.json    or for speedscope";

const DIFF_EXAMPLES: &str = "\
Examples:
  strobe diff before.raw after.raw -o diff.svg     red: more time in after.raw, blue: less";

const TOP_EXAMPLES: &str = "\
Examples:
  strobe top --pid 1234                  watch a running process (q quits, ? lists keys)
  strobe top --lines -- python app.py    launch a script and watch it line by line
  strobe top --native --pid 1234         native functions (numpy, zlib, locks) get rows too";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  strobe completions bash > ~/.local/share/bash-completion/completions/strobe
  strobe completions zsh > ~/.zfunc/_strobe
  strobe completions fish > ~/.config/fish/completions/strobe.fish";

/// A sampling profiler for CPython 2.7 to 3.15: flamegraphs, a live top view and stack dumps of
/// running Python processes, without restarting or slowing them.
#[derive(Debug, Parser)]
#[command(name = "strobe", version, propagate_version = true, after_help = EXAMPLES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the current Python stack of every thread of a running process (or of a core file).
    #[command(after_help = DUMP_EXAMPLES)]
    Dump(DumpArgs),
    /// Record where a program spends its time, into a flamegraph or another profile format.
    ///
    /// Launches the command given after `--` and samples it until it exits, or samples a
    /// running process (`--pid`) until Ctrl-C or `--duration`.
    #[command(after_help = RECORD_EXAMPLES)]
    Record(RecordArgs),
    /// Turn a raw recording (`--format raw`) into another format.
    #[command(after_help = CONVERT_EXAMPLES)]
    Convert(ConvertArgs),
    /// Compare two raw recordings in a differential flamegraph.
    #[command(after_help = DIFF_EXAMPLES)]
    Diff(DiffArgs),
    /// Watch live, full screen, where a running process or a launched command spends its time.
    ///
    /// Press ? in it for the keys.
    #[command(after_help = TOP_EXAMPLES)]
    Top(TopArgs),
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell).
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
    /// Write man pages for strobe and each of its commands into a directory.
    Man(ManArgs),
}

/// `strobe completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `strobe man`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Directory to write `strobe.1`, `strobe-record.1`, ... into (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
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

/// What `strobe dump` reads: a running process, or a core file.
#[derive(Debug, Clone, Args)]
pub struct DumpTargetArgs {
    /// Process id of the running Python program.
    #[arg(
        long,
        short,
        value_name = "PID",
        value_parser = clap::value_parser!(i32).range(1..),
        required_unless_present = "core",
        conflicts_with_all = ["core", "executable", "sysroot"]
    )]
    pub pid: Option<i32>,
    /// Stop the target (ptrace) while reading it, for a consistent view. The target is always
    /// resumed before strobe exits.
    #[arg(long, conflicts_with = "core")]
    pub blocking: bool,
    /// An ELF core file of a Python process (written by the kernel, or by gdb's gcore) to read
    /// instead of a running process.
    #[arg(long, value_name = "CORE")]
    pub core: Option<PathBuf>,
    /// With --core: the executable the process ran, when it is no longer at the path the
    /// core names (checked against the core's build-id).
    #[arg(long, value_name = "PATH", requires = "core")]
    pub executable: Option<PathBuf>,
    /// With --core: the root directory the process ran in (a chroot, a container's root
    /// filesystem); the files the core names are looked up inside it.
    #[arg(long, value_name = "DIR", requires = "core")]
    pub sysroot: Option<PathBuf>,
}

/// `strobe dump`.
#[derive(Debug, Clone, Args)]
pub struct DumpArgs {
    /// The target process or core file.
    #[command(flatten)]
    pub target: DumpTargetArgs,
    /// Print one JSON document instead of text (field reference: README, "JSON output").
    #[arg(long)]
    pub json: bool,
    /// Do not look up `threading` thread names (saves reading the interpreter's module table).
    #[arg(long)]
    pub no_names: bool,
    /// Also show native frames (C, C++, Rust, libc, the system call a thread sleeps in),
    /// interleaved with the Python frames in call order. Needs ptrace permission (root or
    /// CAP_SYS_PTRACE); a running thread is stopped alone for a few microseconds
    #[arg(long)]
    pub native: bool,
    /// Also show each Python frame's arguments and local variables (cell and free variables
    /// too), as bounded reprs read from the target's memory without running its code
    #[arg(long)]
    pub locals: bool,
    /// Show the asyncio tasks instead of the threads: for every event loop, its tasks as a
    /// tree of who awaits whom, each suspended task's coroutine stack and what it waits on
    /// (CPython 3.8+, live processes)
    #[arg(long = "async", conflicts_with_all = ["native", "locals", "core"])]
    pub asyncio: bool,
}

/// The output formats of `record` and `convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Interactive flamegraph SVG.
    Svg,
    /// speedscope JSON (opens in www.speedscope.app).
    Speedscope,
    /// Folded stacks, one `frame;frame;frame count` line per stack (flamegraph.pl, inferno).
    Collapsed,
    /// Chrome Trace Event JSON (Perfetto, chrome://tracing).
    Chrome,
    /// gzipped pprof protobuf (`go tool pprof`).
    Pprof,
    /// Firefox Profiler JSON (opens in profiler.firefox.com): a track per thread.
    Gecko,
    /// strobe's own recording, streamed while recording; convert it later.
    Raw,
}

/// How samples are grouped and filtered in the output (shared by `record` and `convert`).
#[derive(Debug, Clone, Args)]
pub struct ViewArgs {
    /// Which samples count: `cpu` (threads the kernel reports running; the default), `wall`
    /// (every thread, idle ones included; as --idle), `gil` (the thread holding the GIL; as
    /// --gil), `exception` (running threads raising or handling an exception, the exception's
    /// type shown as a `<raise T>` frame)
    #[arg(long, value_enum, value_name = "MODE", conflicts_with_all = ["idle", "gil"])]
    pub mode: Option<ModeArg>,
    /// Include idle threads (waiting on I/O, locks, sleep); by default only threads the kernel
    /// reports as running are shown. The same as --mode wall.
    #[arg(long)]
    pub idle: bool,
    /// Only samples of the thread holding the GIL. The same as --mode gil.
    #[arg(long)]
    pub gil: bool,
    /// Give every thread its own root frame, named after it.
    #[arg(long)]
    pub threads: bool,
    /// Aggregate by function instead of by line.
    #[arg(long)]
    pub function: bool,
    /// Leave out the `<GC>` frames that mark samples taken while the thread ran the cyclic
    /// garbage collector; those samples count for the Python line that triggered it.
    #[arg(long)]
    pub no_gc: bool,
    /// What the numbers of collapsed stacks and flamegraph widths (svg, and diff) count:
    /// `micros` (wall time in µs; each sample weighted by the time it stands for, more than
    /// one interval when the sampler was late; the default) or `samples` (plain sample counts,
    /// each sample counting 1). pprof always carries both; speedscope, chrome and gecko lay
    /// samples out in time and are not affected
    #[arg(long, value_enum, value_name = "VALUE", default_value_t = ValueArg::Micros)]
    pub value: ValueArg,
}

/// `--value`: what the numbers count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValueArg {
    /// Wall time in microseconds (samples weighted by the time they stand for).
    Micros,
    /// Plain sample counts.
    Samples,
}

impl ValueArg {
    /// The output crate's value.
    pub fn value(self) -> strobe_output::Value {
        match self {
            ValueArg::Micros => strobe_output::Value::Micros,
            ValueArg::Samples => strobe_output::Value::Samples,
        }
    }
}

/// `--mode`: which samples count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Threads the kernel reports as running (the default).
    Cpu,
    /// Every thread, idle ones included (wall-clock time).
    Wall,
    /// Only the thread holding the GIL.
    Gil,
    /// Only running threads that are raising or handling an exception (inside an `except` or
    /// `finally` block, or an exception propagating), with the exception's type as a
    /// `<raise ValueError>` frame on top.
    Exception,
}

impl ViewArgs {
    /// Whether idle samples count (`--mode wall` or `--idle`).
    pub fn include_idle(&self) -> bool {
        self.idle || self.mode == Some(ModeArg::Wall)
    }

    /// Whether only the GIL holder's samples count (`--mode gil` or `--gil`).
    pub fn gil_only(&self) -> bool {
        self.gil || self.mode == Some(ModeArg::Gil)
    }

    /// Whether only samples in an exception count (`--mode exception`).
    pub fn exception_only(&self) -> bool {
        self.mode == Some(ModeArg::Exception)
    }
}

/// `--stack-table-bytes`' default: 2 MiB of stacks (two generations of 1 MiB, about 15,000
/// stacks of 12 frames each), in the sampler's table and again, without its index, in the
/// aggregator's mirror.
pub const DEFAULT_STACK_TABLE_BYTES: usize = 2 << 20;

/// `strobe record`.
#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// Attach to this running process instead of launching a command.
    #[arg(long, short, value_name = "PID", value_parser = clap::value_parser!(i32).range(1..))]
    pub pid: Option<i32>,
    /// Output file. The format comes from --format, else from the extension (.svg, .json or
    /// .speedscope.json, .trace.json, .gecko.json, .txt/.folded/.collapsed, .pb.gz/.pprof,
    /// .raw/.strobe), else svg. Default: strobe-PID-TIME.svg (or the format's extension).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, value_name = "FORMAT")]
    pub format: Option<FormatArg>,
    /// Samples per second (on average; intervals are randomized). Up to 1000000, which samples
    /// as fast as possible.
    #[arg(long, short, value_name = "HZ", default_value_t = 100.0)]
    pub rate: f64,
    /// Stop after this many seconds (default: until the target exits or Ctrl-C).
    #[arg(long, short, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Grouping and filters.
    #[command(flatten)]
    pub view: ViewArgs,
    /// Only these threads (kernel thread id, as `threading.get_native_id()` or `top -H` shows
    /// it); repeat for several.
    #[arg(long = "tid", value_name = "TID")]
    pub tids: Vec<u32>,
    /// Only threads with this `threading` name; repeat for several.
    #[arg(long = "thread-name", value_name = "NAME")]
    pub thread_names: Vec<String>,
    /// Stop the target (ptrace) during each sample, for exactly consistent stacks. Slows the
    /// target down.
    #[arg(long, overrides_with = "nonblocking")]
    pub blocking: bool,
    /// Read the target while it runs (the default).
    #[arg(long, overrides_with = "blocking")]
    pub nonblocking: bool,
    /// Also sample the target's child processes (and theirs) that run Python, as they start:
    /// multiprocessing workers, subprocesses, forked servers. Each stack then starts with a
    /// `process PID` frame naming the process and its command line.
    #[arg(long)]
    pub subprocesses: bool,
    /// After writing the file, print the ten functions with the most own time and the ten
    /// with the most total time (the default when stderr is a terminal)
    #[arg(long, overrides_with = "no_summary")]
    pub summary: bool,
    /// Do not print that table
    #[arg(long, overrides_with = "summary")]
    pub no_summary: bool,
    /// Print nothing on stderr but errors: no status line, summary or warnings
    #[arg(long, short)]
    pub quiet: bool,
    /// Task-aware stacks (CPython 3.8+): a thread running an asyncio task is recorded as the
    /// task's coroutine frames under a `<task NAME>` frame, under the tasks awaiting it (each at
    /// its `await`), instead of under the event loop's frames; with idle samples kept (--mode
    /// wall, raw recordings), every waiting task is sampled too, at the line it waits on
    #[arg(long = "async")]
    pub async_stacks: bool,
    /// Also record native frames (C, C++, Rust, libc, the system call a thread waits in),
    /// interleaved with the Python frames in call order. Needs ptrace permission (root or
    /// CAP_SYS_PTRACE); each running thread is stopped alone for a few microseconds per sample
    /// (with --blocking, every thread's native stack is read during the whole-process stop)
    #[arg(long)]
    pub native: bool,
    /// With --native (not --blocking): stop a thread preempted from its CPU like a running
    /// one, instead of reading it from the registers the kernel records at its preemption (the
    /// default where per-CPU perf events and tracefs allow). For comparisons: see
    /// docs/PERFORMANCE.md, "Issue 12: preempted threads' registers from the per-CPU records".
    #[arg(long, hide = true)]
    pub native_stop_preempted: bool,
    /// With `--format raw`: bytes of stacks the sampler's table holds before it forgets stacks
    /// not seen lately (a forgotten stack that comes back is written again). For tests; the
    /// default keeps memory flat on targets that make a new stack every sample.
    #[arg(long, hide = true, default_value_t = DEFAULT_STACK_TABLE_BYTES)]
    pub stack_table_bytes: usize,
    /// The command to launch and profile, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// `strobe convert`.
#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// A raw recording (`strobe record --format raw`).
    #[arg(value_name = "RECORDING")]
    pub input: PathBuf,
    /// Output file (format from --format, else from the extension, else svg).
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// Output format.
    #[arg(long, short, value_enum, value_name = "FORMAT")]
    pub format: Option<FormatArg>,
    /// Grouping and filters.
    #[command(flatten)]
    pub view: ViewArgs,
}

/// `strobe diff`.
#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The baseline raw recording.
    #[arg(value_name = "BASE")]
    pub base: PathBuf,
    /// The raw recording to compare with it.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    /// Output SVG file.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// Grouping and filters (applied to both recordings).
    #[command(flatten)]
    pub view: ViewArgs,
    /// Compare absolute time instead of scaling the base to the new recording's total.
    #[arg(long)]
    pub no_normalize: bool,
}

/// `strobe top`.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// Watch this running process instead of launching a command.
    #[arg(long, short, value_name = "PID", value_parser = clap::value_parser!(i32).range(1..))]
    pub pid: Option<i32>,
    /// Samples per second (on average; intervals are randomized).
    #[arg(long, short, value_name = "HZ", default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds between screen refreshes (+ and - change it while running).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub refresh: f64,
    /// Start in this mode: `cpu` (running threads), `wall` (idle ones too; as --idle), `gil`
    /// (the GIL holder; as --gil)
    #[arg(long, value_enum, value_name = "MODE", conflicts_with_all = ["idle", "gil"])]
    pub mode: Option<ModeArg>,
    /// Start with idle threads shown (i toggles).
    #[arg(long)]
    pub idle: bool,
    /// Start counting only samples of the thread holding the GIL (g toggles).
    #[arg(long)]
    pub gil: bool,
    /// Start with lines instead of functions (l toggles).
    #[arg(long)]
    pub lines: bool,
    /// Leave out the `<GC>` frames that mark samples taken while the thread ran the cyclic
    /// garbage collector; those samples count for the Python line that triggered it.
    #[arg(long)]
    pub no_gc: bool,
    /// Stop the target (ptrace) during each sample, for exactly consistent stacks. Slows the
    /// target down.
    #[arg(long)]
    pub blocking: bool,
    /// Also sample the target's child processes (and theirs) that run Python; each stack
    /// starts with a `process PID` frame.
    #[arg(long)]
    pub subprocesses: bool,
    /// Start with task-aware stacks (CPython 3.8+; `a` toggles): asyncio tasks under the
    /// tasks awaiting them instead of under the event loop's frames
    #[arg(long = "async")]
    pub async_stacks: bool,
    /// Also show native frames (C, C++, Rust, libc, system calls) under the Python ones.
    /// Needs ptrace permission; each running thread is stopped alone briefly per sample
    #[arg(long)]
    pub native: bool,
    /// The command to launch and watch, after `--`. It is stopped when you quit.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}
