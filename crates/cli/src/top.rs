//! `strobe top`: the live terminal view (`strobe-tui`) over the same sampler and pipeline as
//! `strobe record`.
//!
//! Threads: the sampler thread (`strobe_sampler::start_process`) pushes samples into the pipeline;
//! the TUI's aggregator thread drains it; this (main) thread draws and reads keys. A slow
//! terminal blocks only the main thread.

use std::io::Write;
use std::process::{Child, ExitCode};
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use strobe_aggregate::SampleFilter;
use strobe_sampler::{
    start_process, EndReason, ErrorBell, LiveSwitch, SamplerConfig, SamplerHandle,
};
use strobe_signals::StopSignals;
use strobe_target::Target;
use strobe_tui::state::{LiveStatus, TargetInfo};
use strobe_tui::{Ending, TopOptions};

use crate::args::{ModeArg, TopArgs};
use crate::launch::{self, Launched};

/// How long a launched command gets to exit after SIGTERM when the user quits, before SIGKILL.
const CHILD_GRACE: Duration = Duration::from_secs(2);
const CHILD_POLL: Duration = Duration::from_millis(10);

/// The stack budget of `top`'s pipeline (the sampler's table, and the mirror's copy of it):
/// half a recording's, which keeps `top --rate 1000` on a program making a new stack every
/// sample under 15 MB (docs/PERFORMANCE.md, "Memory: `strobe top`"). A stack not seen within
/// about 7,000 new ones (12 frames each) is interned again when it comes back.
const TOP_STACK_BUDGET: usize = 1 << 20;

/// Run `strobe top`.
pub fn run(args: &TopArgs) -> anyhow::Result<ExitCode> {
    // Before attaching or launching anything: `strobe top > file` is a usage mistake.
    strobe_tui::check_terminal()?;
    if !(args.refresh.is_finite() && (0.1..=3600.0).contains(&args.refresh)) {
        bail!(
            "--refresh {} is out of range: give seconds between 0.1 and 3600",
            args.refresh
        );
    }
    // Idle threads are sampled while the view shows them (`i`): hidden, their stacks are not
    // read at all, which is most of a round's read in a service whose threads mostly wait.
    let show_idle = args.idle || args.mode == Some(ModeArg::Wall);
    let idle_switch = LiveSwitch::new(show_idle);
    let async_switch = LiveSwitch::new(args.async_stacks);
    let cfg = SamplerConfig {
        rate_hz: args.rate,
        blocking: args.blocking,
        // Everything else is sampled and flagged; the view filters GIL and groups by function
        // or line as the user toggles, without restarting the sampler.
        include_idle: show_idle,
        idle_switch: Some(idle_switch.clone()),
        gil_only: false,
        by_function: false,
        names: true,
        subprocesses: args.subprocesses,
        native: args.native,
        gc_frames: !args.no_gc,
        async_switch: Some(async_switch.clone()),
        ..Default::default()
    };
    cfg.validate()?;
    match (args.pid, args.command.is_empty()) {
        (Some(_), false) => bail!("give either --pid or a command after '--', not both"),
        (None, true) => {
            bail!("nothing to watch: give --pid PID, or a command after '--' (strobe top -- python app.py)")
        }
        _ => {}
    }
    // A launched command starts before the stop signals are blocked: a child inherits the
    // signal mask of the thread that starts it, and must stay interruptible.
    let spawned = match args.pid {
        None => Some(launch::spawn_off_terminal(&args.command)?),
        Some(_) => None,
    };
    // Blocks SIGINT/SIGTERM/SIGHUP in this thread and the threads started after it (the
    // sampler's, the aggregator's), and SIGWINCH, which the view reads from a signalfd.
    strobe_tui::block_resize_signal().context("setting up signal handling")?;
    let signals = StopSignals::install().context("setting up signal handling")?;
    // The view sleeps until it has something to do: a stop signal rings its bell.
    let bell = strobe_tui::ViewBell::new().context("setting up the view")?;
    let ringer = bell.ringer();
    signals.call_on_signal(move || ringer.ring());
    // And so does the sampler's first failed round of each kind: the status line shows it at
    // once, not at the next refresh.
    let ringer = bell.ringer();
    let cfg = SamplerConfig {
        error_bell: Some(ErrorBell::new(move || ringer.ring())),
        ..cfg
    };

    let (mut target, child, what) = match spawned {
        Some(spawned) => {
            let what = format!(
                "pid {}: {}",
                spawned.id(),
                launch::display_command(&args.command)
            );
            // With --subprocesses the command may be a shell or launcher: the sampler's scout
            // attaches to it, or to the Python processes it starts (as `record` does).
            if args.subprocesses {
                (None, Some(spawned), what)
            } else {
                match launch::attach(spawned, signals.receiver())? {
                    Launched::Attached { child, target } => (Some(*target), Some(child), what),
                    Launched::ExitedEarly(status) => bail!(
                        "the command exited ({status}) before strobe could attach to it; \
                         nothing to show"
                    ),
                }
            }
        }
        None => {
            let pid = args.pid.context("no process to watch")?;
            match launch::attach_pid(pid, args.subprocesses)? {
                Ok(target) => (Some(target), None, format!("pid {pid}")),
                Err(_) => (None, None, format!("pid {pid} and its subprocesses")),
            }
        }
    };
    let pid = launch::root_pid(target.as_ref(), child.as_ref(), args.pid)?;
    // After the launch: the command keeps the limits it was given.
    launch::raise_open_files_limit();
    for w in target.iter().flat_map(|t| t.warnings()) {
        eprintln!("strobe: warning: {w}");
    }
    if args.native {
        launch::prepare_native(target.as_mut());
    }
    let info = TargetInfo {
        process: what,
        python: target
            .as_ref()
            .map_or_else(|| "its Python subprocesses".to_string(), python_label),
        rate_hz: args.rate,
    };
    // A few seconds of samples at the requested rate for a handful of threads; the aggregator
    // thread drains it every few ms.
    let capacity = ((args.rate * 16.0) as usize).clamp(4096, 1 << 20);
    // The stack tables forget stacks not seen lately, as a streamed recording's: the view folds
    // each sample per frame as it drains it (memory grows with distinct frames, not stacks).
    let (side, agg) = strobe_aggregate::pipeline_live(capacity, TOP_STACK_BUDGET);
    let sampler = start_process(pid, target, child, cfg, side)?;
    let stats = sampler.stats();

    let mut session = Session {
        pid,
        sampler: Some(sampler),
        ended: None,
        child: None,
    };
    let options = TopOptions {
        by_function: !args.lines,
        filter: SampleFilter {
            include_idle: show_idle,
            gil_only: args.gil || args.mode == Some(ModeArg::Gil),
            exception_only: args.mode == Some(ModeArg::Exception),
        },
        refresh: Duration::from_secs_f64(args.refresh),
        async_stacks: args.async_stacks,
    };
    let ui = strobe_tui::run(
        agg,
        info,
        options,
        bell,
        |sampling_over| {
            session.poll(sampling_over);
            let st = stats.snapshot();
            LiveStatus {
                errors: st.total_errors(),
                achieved_hz: Some(st.achieved_hz()),
                ended: session.ended.clone(),
            }
        },
        || match signals.receiver().try_recv() {
            Ok(_) => true,
            Err(TryRecvError::Empty) => false,
            Err(TryRecvError::Disconnected) => false,
        },
        |shown| {
            idle_switch.set(shown.idle);
            async_switch.set(shown.tasks);
        },
    );
    // Whatever ended the view, a launched command is stopped as on `q`; a --pid target runs on.
    let finish = session.finish();
    match ui? {
        Ending::Quit => {
            finish?;
            Ok(ExitCode::SUCCESS)
        }
        Ending::TerminalGone(gone) => {
            // Standard error may be the terminal that is gone, or a log file: a failed write
            // is ignored (eprintln! would panic on it).
            let _ = writeln!(
                std::io::stderr(),
                "strobe: error: top stopped: {gone}; start it again from a terminal, or use \
                 'strobe record' to profile without one{}",
                match finish {
                    Ok(()) => String::new(),
                    Err(e) => format!(" (and stopping the command failed: {e:#})"),
                }
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `3.12.1`, `3.14.0 debug`, `3.13.1 free-threaded`.
fn python_label(t: &Target) -> String {
    let p = t.process();
    let mut s = p.version.to_string();
    if p.debug_build {
        s.push_str(" debug");
    }
    if t.free_threaded() {
        s.push_str(" free-threaded");
    }
    s
}

/// The sampler, and what became of it.
struct Session {
    pid: i32,
    sampler: Option<SamplerHandle>,
    /// Set once the sampler ended: what the view says.
    ended: Option<String>,
    /// A launched command still running when sampling stopped.
    child: Option<Child>,
}

impl Session {
    /// If the sampler ended, or `over` says that it is ending (its side of the pipeline is
    /// gone, so its thread is returning), collect its summary and say why.
    fn poll(&mut self, over: bool) {
        if over || self.sampler.as_ref().is_some_and(|s| s.is_finished()) {
            if let Some(s) = self.sampler.take() {
                self.collect(s);
            }
        }
    }

    fn collect(&mut self, s: SamplerHandle) {
        let pid = self.pid;
        self.ended = Some(match s.join() {
            Ok(summary) => {
                self.child = summary.child;
                match summary.reason {
                    EndReason::TargetExited => match summary.exit_status {
                        Some(st) => format!("process {pid} exited ({st})"),
                        None => format!("process {pid} exited"),
                    },
                    EndReason::TargetExeced => {
                        format!("process {pid} replaced its program (exec); its Python is gone")
                    }
                    EndReason::DurationElapsed => "sampling time is up".to_string(),
                    EndReason::Stopped => "sampling stopped".to_string(),
                }
            }
            Err(e) => format!("sampling failed: {e}"),
        });
    }

    /// Stop sampling (if it still runs) and end a command strobe launched.
    fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(s) = self.sampler.take() {
            s.stop();
            self.collect(s);
        }
        if let Some(child) = self.child.take() {
            end_child(child)?;
        }
        Ok(())
    }
}

/// The user quit `top` while the command it launched runs on: ask it to stop (SIGTERM), and
/// kill it if it has not within [`CHILD_GRACE`]. Polls `try_wait` (a bounded wait for the exit,
/// not a synchronisation sleep).
fn end_child(mut child: Child) -> anyhow::Result<()> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + CHILD_GRACE;
    while Instant::now() < deadline {
        if child
            .try_wait()
            .context("waiting for the command")?
            .is_some()
        {
            return Ok(());
        }
        std::thread::sleep(CHILD_POLL);
    }
    let _ = child.kill();
    child.wait().context("waiting for the command")?;
    Ok(())
}
