//! `strobe record`: sample a launched command or a running process into a profile file.
//!
//! Flow: check the arguments and that the output can be written (before anything starts, so
//! bad input leaves no file behind) → block the stop signals ([`StopSignals`]) → launch and
//! attach, or attach to `--pid` → start the sampler thread (`strobe_sampler::start_process`) → this
//! thread is the aggregator: it drains the pipeline every few ms, streams samples into the raw
//! file (for `--format raw`, flushed at least every [`RAW_FLUSH_EVERY`]) or feeds them to the
//! format's streamed writer ([`strobe_output::recorder`], which spills to disk past a memory
//! budget), redraws the status line, and waits for a stop signal or the end of sampling →
//! final drain → the output is written (atomically, except raw, which was streamed) → summary.

use std::fs::{File, OpenOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus};
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::Signal;
use strobe_aggregate::{Metadata, ProfileOptions, SampleFilter};
use strobe_output::{write_atomically, FormatKind, RawStats};
use strobe_sampler::{EndReason, SamplerConfig, SamplerPriority, StatsSnapshot};
use strobe_signals::StopSignals;

use crate::args::{FormatArg, RecordArgs, ViewArgs};
use crate::launch::{self, Launched};
use crate::out_dir::{output_dir, remove_stale_spills};
use crate::report;
use crate::sink::Sink;
use crate::status::{self, StatusLine};

/// The raw file is flushed at least this often while recording (the format promises every
/// second; a kill loses at most this much).
pub(crate) const RAW_FLUSH_EVERY: Duration = Duration::from_millis(500);
/// The longest the aggregator sleeps when nothing wakes it (the sampler's doorbell rings when
/// the queue is a quarter full or sampling ends; a stop signal unparks it too).
const DRAIN_EVERY: Duration = Duration::from_millis(500);
/// How often the status line is redrawn.
const STATUS_EVERY: Duration = Duration::from_millis(250);

/// How long the aggregator may sleep at `now`: until the raw file's next flush (`last_flush`,
/// if there is a raw file), the status line's next redraw (`last_status`, if it is drawn), and
/// at most [`DRAIN_EVERY`]. At ordinary rates every wake-up costs more CPU than a sample, so
/// the queue is drained seldom; the doorbell and the signal thread unpark it early.
fn aggregator_wait(
    now: Instant,
    last_flush: Option<Instant>,
    last_status: Option<Instant>,
) -> Duration {
    let until = |last: Option<Instant>, every: Duration| {
        last.map_or(DRAIN_EVERY, |t| (t + every).saturating_duration_since(now))
    };
    DRAIN_EVERY
        .min(until(last_flush, RAW_FLUSH_EVERY))
        .min(until(last_status, STATUS_EVERY))
}

/// The format for `path`: `--format` if given, else by extension, else svg.
pub(crate) fn format_for(path: &Path, arg: Option<FormatArg>) -> FormatKind {
    if let Some(a) = arg {
        return match a {
            FormatArg::Svg => FormatKind::Svg,
            FormatArg::Speedscope => FormatKind::Speedscope,
            FormatArg::Collapsed => FormatKind::Collapsed,
            FormatArg::Chrome => FormatKind::Chrome,
            FormatArg::Pprof => FormatKind::Pprof,
            FormatArg::Gecko => FormatKind::Gecko,
            FormatArg::Raw => FormatKind::Raw,
        };
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let ends = |exts: &[&str]| exts.iter().any(|e| name.ends_with(e));
    if ends(&[".trace.json", ".chrome.json"]) {
        FormatKind::Chrome
    } else if ends(&[".gecko.json"]) {
        FormatKind::Gecko
    } else if ends(&[".json"]) {
        FormatKind::Speedscope
    } else if ends(&[".txt", ".folded", ".collapsed"]) {
        FormatKind::Collapsed
    } else if ends(&[".pb.gz", ".pprof", ".pb"]) {
        FormatKind::Pprof
    } else if ends(&[".raw", ".strobe"]) {
        FormatKind::Raw
    } else {
        FormatKind::Svg
    }
}

/// The grouping and filter flags as profile options.
pub(crate) fn profile_options(view: &ViewArgs) -> ProfileOptions {
    ProfileOptions {
        filter: SampleFilter {
            include_idle: view.include_idle(),
            gil_only: view.gil_only(),
            exception_only: view.exception_only(),
        },
        per_thread: view.threads,
        by_function: view.function,
        hide_gc: view.no_gc,
        hide_exceptions: !view.exception_only(),
    }
}

/// Fail now, with the reason, if `path` cannot be written; nothing is left behind.
pub(crate) fn check_writable(path: &Path) -> anyhow::Result<()> {
    let cannot = |why: String| anyhow!("cannot write {}: {why}", path.display());
    let Some(name) = path.file_name() else {
        return Err(cannot("it does not name a file".into()));
    };
    if path.is_dir() {
        return Err(cannot("it is a directory".into()));
    }
    let dir = output_dir(path);
    if !dir.is_dir() {
        return Err(cannot(format!(
            "the directory {} does not exist",
            dir.display()
        )));
    }
    // The output is written to a temporary file in the same directory and renamed, so that is
    // what must be possible.
    let probe = dir.join(format!(
        ".{}.strobe-probe-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(cannot(e.to_string())),
    }
}

/// Write `profile` to `path` in `kind` (atomically).
pub(crate) fn write_profile(
    path: &Path,
    kind: FormatKind,
    value: strobe_output::Value,
    profile: &strobe_aggregate::Profile,
) -> anyhow::Result<()> {
    write_atomically(path, |w| kind.writer_of(value).write(profile, w))
        .with_context(|| format!("writing {}", path.display()))
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn default_output(args: &RecordArgs, kind: FormatKind) -> PathBuf {
    let who = match (args.pid, args.command.first()) {
        (Some(pid), _) => pid.to_string(),
        (None, Some(program)) => Path::new(program)
            .file_name()
            .map_or_else(|| "command".into(), |n| n.to_string_lossy().into_owned()),
        (None, None) => "profile".into(),
    };
    PathBuf::from(format!(
        "strobe-{who}-{}.{}",
        unix_now().as_secs(),
        kind.extension()
    ))
}

/// Run `strobe record`.
pub fn run(args: &RecordArgs) -> anyhow::Result<ExitCode> {
    crate::QUIET.store(args.quiet, std::sync::atomic::Ordering::Relaxed);
    // Everything the user can get wrong is checked before anything starts.
    match (args.pid, args.command.is_empty()) {
        (Some(_), false) => bail!("give either --pid or a command after '--', not both"),
        (None, true) => {
            bail!("nothing to record: give a command after '--' (strobe record -- python app.py) or --pid PID")
        }
        _ => {}
    }
    let kind = match &args.output {
        Some(p) => format_for(p, args.format),
        None => format_for(Path::new(""), args.format),
    };
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(args, kind));
    let duration = match args.duration {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 => Some(
            Duration::try_from_secs_f64(s)
                .map_err(|_| anyhow!("--duration {s} is too long: give a number of seconds"))?,
        ),
        Some(s) => bail!("--duration {s} is not a positive number of seconds"),
    };
    let raw = kind == FormatKind::Raw;
    let cfg = SamplerConfig {
        rate_hz: args.rate,
        blocking: args.blocking,
        // A raw recording keeps everything, so that `convert` can choose later.
        include_idle: raw || args.view.include_idle(),
        gil_only: !raw && args.view.gil_only(),
        tids: args.tids.clone(),
        thread_names: args.thread_names.clone(),
        duration,
        by_function: !raw && args.view.function,
        names: true,
        subprocesses: args.subprocesses,
        native: args.native,
        native_read_preempted: !args.native_stop_preempted,
        async_stacks: args.async_stacks,
        ..SamplerConfig::default()
    };
    cfg.validate()?;
    check_writable(&output)?;

    // The command starts before the stop signals are blocked, so that it does not inherit
    // the block (see `launch::spawn`).
    let spawned = match args.pid {
        Some(_) => None,
        None => Some(launch::spawn(&args.command)?),
    };
    let signals = StopSignals::install().context("setting up signal handling")?;
    let start_unix = unix_now();
    let (mut target, child, target_desc) = match args.pid {
        Some(pid) => match launch::attach_pid(pid, args.subprocesses)? {
            Ok(target) => {
                let exe = target.process().binary_in_target.rsplit('/').next();
                let desc = format!("pid {pid} ({})", exe.unwrap_or(""));
                (Some(target), None, desc)
            }
            Err(e) => {
                say!(
                    "strobe: process {pid} is not a Python strobe can read ({e}); \
                     sampling the Python processes it starts"
                );
                (None, None, format!("pid {pid}"))
            }
        },
        // With --subprocesses the command may be a shell or launcher: the sampler's scout
        // attaches to it, or to the Python processes it starts, as they appear.
        None if args.subprocesses => (
            None,
            Some(spawned.ok_or_else(|| anyhow!("the command was not started"))?),
            launch::display_command(&args.command),
        ),
        None => match launch::attach(
            spawned.ok_or_else(|| anyhow!("the command was not started"))?,
            signals.receiver(),
        )? {
            Launched::Attached { child, target } => (
                Some(*target),
                Some(child),
                launch::display_command(&args.command),
            ),
            Launched::ExitedEarly(status) => {
                return exited_early(&output, kind, args, status, start_unix);
            }
        },
    };
    for w in target.iter().flat_map(|t| t.warnings()) {
        say!("strobe: warning: {w}");
    }
    let pid = launch::root_pid(target.as_ref(), child.as_ref(), args.pid)?;
    // After the launch: the command keeps the limits it was given.
    launch::raise_open_files_limit();
    if args.native {
        launch::prepare_native(target.as_mut());
    }
    let child_pid = child.as_ref().map(|c| c.id() as i32);
    let mut meta = Metadata {
        target: target_desc,
        pid: u32::try_from(pid).ok(),
        python_version: target.as_ref().map(|t| t.process().version.to_string()),
        strobe_version: env!("CARGO_PKG_VERSION").to_string(),
        rate_requested_hz: args.rate,
        ..Metadata::default()
    };

    // Created before sampling starts, so that an unwritable path fails at once.
    let raw_file = if raw {
        Some(File::create(&output).with_context(|| format!("cannot write {}", output.display()))?)
    } else {
        None
    };

    let view = profile_options(&args.view);
    let summary_options = report::summary_options(view.filter, view.hide_gc);
    // Every format but raw is written sample by sample as the samples are drained, in memory
    // bounded by distinct frames (spilling next to the output past a budget; see
    // strobe_output's `stream`).
    let dir = output_dir(&output);
    remove_stale_spills(&dir);
    let streamed = strobe_output::recorder(
        kind,
        view,
        args.view.value.value(),
        meta.pid,
        &dir,
        strobe_output::budget_from_env(),
    );
    // A quarter second of samples at the requested rate for a few threads; bounded both ways.
    let capacity = ((args.rate * 0.25 * 8.0) as usize).clamp(4096, 1 << 16);
    // Every format is streamed: the tables forget stacks not seen lately and no counts are
    // kept per stack, so memory does not grow with distinct stacks (nor with samples: no
    // timeline is kept).
    let (side, mut agg) =
        strobe_aggregate::pipeline_streamed(capacity, args.stack_table_bytes, summary_options);
    agg.keep_interval(false);
    // This thread sleeps until there is something to do (see `aggregator_wait`).
    agg.wake_this_thread();
    signals.unpark_this_thread_on_signal();
    let handle = strobe_sampler::start_process(pid, target, child, cfg, side)?;
    let stats = handle.stats();
    // Sample timestamps count from the sampler's start, so the profile starts there too (not
    // when strobe began launching or attaching): start + timestamp is when a sample was taken.
    meta.start_unix_ns = stats.start_unix_ns();
    let mut sink = match Sink::new(raw_file, streamed, &meta) {
        Ok(sink) => sink,
        Err(e) => {
            handle.stop();
            let _ = handle.join();
            return Err(e).with_context(|| format!("writing {}", output.display()));
        }
    };
    say!(
        "strobe: recording process {pid} at {} Hz into {} ({}); Ctrl-C to stop",
        args.rate,
        output.display(),
        kind.name()
    );

    let mut line = StatusLine::new(!args.quiet);
    let mut last_status: Option<Instant> = None;
    let mut stopped_by: Option<Signal> = None;
    let mut write_error: Option<anyhow::Error> = None;
    let raw_stats = |s: &StatsSnapshot| RawStats {
        duration_ns: s.elapsed.as_nanos() as u64,
        errors: s.total_errors(),
        dropped: s.dropped,
    };
    loop {
        // Once the sampler's side is gone everything it sent is queued; the thread is ending.
        let finished = handle.is_finished() || agg.sampler_gone();
        let drained = agg.drain()?;
        if write_error.is_none() {
            let taken = sink.take(&drained);
            if let Err(e) = taken.and_then(|()| sink.flush_if_due(|| raw_stats(&stats.snapshot())))
            {
                write_error = Some(e.into());
            }
        }
        if let Some(e) = write_error.as_ref() {
            // The disk is full or gone: stop sampling, nothing more can be kept.
            if !finished {
                line.clear();
                eprintln!("strobe: error: writing {}: {e}; stopping", output.display());
                handle.stop();
            }
        }
        let new_processes = stats.take_new_processes();
        if !new_processes.is_empty() {
            line.clear();
            for p in new_processes {
                match p.error {
                    None => say!("strobe: sampling process {} ({})", p.pid, p.command),
                    Some(e) => say!(
                        "strobe: warning: cannot sample process {} ({}): {e}",
                        p.pid,
                        p.command
                    ),
                }
            }
            last_status = None;
        }
        if last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
            last_status = Some(Instant::now());
            line.draw(&stats.snapshot());
        }
        if finished {
            break;
        }
        match signals.receiver().try_recv() {
            Ok(sig) => {
                stopped_by = Some(sig);
                handle.stop();
                // Ctrl-C reached a launched command through the terminal already; the other
                // stop signals are meant for the whole run, so they are passed on.
                if let (Some(cpid), true) = (child_pid, sig != Signal::SIGINT) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(cpid), sig);
                }
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                let flush = sink.last_flush();
                let status = line.active().then_some(last_status).flatten();
                std::thread::park_timeout(aggregator_wait(Instant::now(), flush, status));
            }
        }
    }
    line.clear();
    let result = handle.join();
    // Whatever was queued before the sampler ended.
    while !agg.finished() {
        let drained = agg.drain()?;
        if write_error.is_none() {
            if let Err(e) = sink.take(&drained) {
                write_error = Some(e.into());
            }
        }
    }
    let final_stats = match &result {
        Ok(s) => s.stats,
        Err(_) => stats.snapshot(),
    };
    meta.duration_ns = final_stats.elapsed.as_nanos() as u64;
    meta.errors = final_stats.total_errors();
    meta.dropped = final_stats.dropped;

    // The output is written even when sampling failed: what was recorded is kept.
    let write_result = sink.finish(
        write_error,
        &mut meta,
        raw_stats(&final_stats),
        agg.dropped(),
        &output,
    );

    if let Some(sig) = stopped_by {
        say!("strobe: stopped by {sig}");
    }
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            // Sampling failed (or the sampler thread panicked; the join caught it): what was
            // counted so far is still summarised and written before the error is reported.
            let counts = agg.counts().total().samples;
            for l in status::summary(&final_stats, args.rate, counts)
                .into_iter()
                .chain(status::native_summary(
                    &final_stats,
                    &stats.native_failures(),
                ))
            {
                say!("strobe: {l}");
            }
            if let Some(l) = sampler_cost(&final_stats) {
                say!("strobe: {l}");
            }
            write_result?;
            say!("strobe: wrote {} ({})", output.display(), kind.name());
            return Err(e.into());
        }
    };
    for w in &summary.warnings {
        say!("strobe: warning: {w}");
    }
    let counts = agg.counts().total().samples;
    for l in status::summary(&summary.stats, args.rate, counts)
        .into_iter()
        .chain(status::native_summary(
            &summary.stats,
            &stats.native_failures(),
        ))
    {
        say!("strobe: {l}");
    }
    if let Some(l) = sampler_cost(&summary.stats) {
        say!("strobe: {l}");
    }
    if args.subprocesses {
        let n = summary.subprocesses_sampled;
        let s = if n == 1 { "" } else { "es" };
        say!("strobe: sampled {n} subprocess{s} besides process {pid}");
    }
    if summary.stats.rounds > 0 && counts == 0 {
        say!(
            "strobe: warning: no stacks were recorded: every thread was idle or filtered out \
             (--idle includes idle threads)"
        );
    }
    write_result?;
    say!("strobe: wrote {} ({})", output.display(), kind.name());
    let table = args.summary || (!args.no_summary && std::io::stderr().is_terminal());
    if table && !args.quiet {
        let b = agg.function_breakdown(&summary_options);
        for l in report::top_functions(&b, agg.tables()) {
            eprintln!("strobe: {l}");
        }
    }
    match summary.reason {
        EndReason::TargetExited if summary.exit_status.is_none() => {
            say!("strobe: process {pid} exited")
        }
        EndReason::TargetExeced => say!(
            "strobe: process {pid} replaced its program (exec), so its Python interpreter is \
             gone; the recording ended there"
        ),
        _ => {}
    }
    let exit_status = match (summary.exit_status, summary.child) {
        (Some(status), _) => Some(status),
        // The whole run was asked to end: the command got the signal too (passed on, or from
        // the terminal), so its exit is waited for and reported.
        (None, Some(c)) if stopped_by.is_some() => launch::wait_for_command(c),
        (None, Some(c)) => {
            say!("strobe: the command (process {}) is still running", c.id());
            None
        }
        (None, None) => None,
    };
    Ok(match exit_status {
        Some(status) => launch::report_exit(status),
        None => ExitCode::SUCCESS,
    })
}

/// strobe's own cost of sampling: the sampler thread's CPU time per sample (round) and as a
/// share of one core over the recording, and whether it ran at real-time priority. The
/// aggregator's and the writer's work are not in it.
fn sampler_cost(s: &StatsSnapshot) -> Option<String> {
    let per = s.cpu_per_round()?.as_secs_f64() * 1e6;
    let share = s.cpu_share()? * 100.0;
    let share = if share >= 1.0 {
        format!("{share:.1}")
    } else {
        format!("{share:.2}")
    };
    let priority = match s.priority_lowered {
        0 if s.priority == SamplerPriority::RealTime => "; real-time priority".to_string(),
        0 => String::new(),
        1 => "; real-time priority, given up once while it used over half a core".to_string(),
        n => format!("; real-time priority, given up {n} times while it used over half a core"),
    };
    Some(format!(
        "sampler used {per:.1} µs of CPU per sample ({share}% of one core{priority})"
    ))
}

/// The launched command ended before strobe could attach: an empty profile is still written
/// (the user asked for a file), and the command's status is passed on.
fn exited_early(
    output: &Path,
    kind: FormatKind,
    args: &RecordArgs,
    status: ExitStatus,
    start_unix: Duration,
) -> anyhow::Result<ExitCode> {
    say!(
        "strobe: warning: the command exited before strobe could attach to it; nothing was recorded"
    );
    let meta = Metadata {
        target: launch::display_command(&args.command),
        strobe_version: env!("CARGO_PKG_VERSION").to_string(),
        rate_requested_hz: args.rate,
        start_unix_ns: start_unix.as_nanos() as u64,
        ..Metadata::default()
    };
    let profile = strobe_aggregate::Aggregator::new().profile(meta, profile_options(&args.view))?;
    write_profile(output, kind, args.view.value.value(), &profile)?;
    say!("strobe: wrote {} ({})", output.display(), kind.name());
    Ok(launch::report_exit(status))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sampler_cost_is_cpu_per_sample_and_share_of_a_core() {
        let mut s = StatsSnapshot {
            elapsed: Duration::from_secs(4),
            rounds: 400,
            ..Default::default()
        };
        assert_eq!(sampler_cost(&s), None, "not measured: no line");
        s.cpu = Some(Duration::from_millis(2));
        assert_eq!(
            sampler_cost(&s).unwrap(),
            "sampler used 5.0 µs of CPU per sample (0.05% of one core)"
        );
        s.cpu = Some(Duration::from_secs(2));
        s.rounds = 800_000;
        assert_eq!(
            sampler_cost(&s).unwrap(),
            "sampler used 2.5 µs of CPU per sample (50.0% of one core)"
        );
        s.priority = SamplerPriority::RealTime;
        assert_eq!(
            sampler_cost(&s).unwrap(),
            "sampler used 2.5 µs of CPU per sample (50.0% of one core; real-time priority)"
        );
        s.priority = SamplerPriority::Favoured;
        s.priority_lowered = 2;
        assert_eq!(
            sampler_cost(&s).unwrap(),
            "sampler used 2.5 µs of CPU per sample (50.0% of one core; real-time priority, \
             given up 2 times while it used over half a core)"
        );
    }

    #[test]
    fn formats_from_extensions() {
        let f = |p: &str| format_for(Path::new(p), None);
        assert_eq!(f("out.svg"), FormatKind::Svg);
        assert_eq!(f("out.SVG"), FormatKind::Svg);
        assert_eq!(f("out.json"), FormatKind::Speedscope);
        assert_eq!(f("out.speedscope.json"), FormatKind::Speedscope);
        assert_eq!(f("out.trace.json"), FormatKind::Chrome);
        assert_eq!(f("out.gecko.json"), FormatKind::Gecko);
        assert_eq!(f("OUT.Gecko.JSON"), FormatKind::Gecko);
        assert_eq!(f("out.txt"), FormatKind::Collapsed);
        assert_eq!(f("out.folded"), FormatKind::Collapsed);
        assert_eq!(f("out.pb.gz"), FormatKind::Pprof);
        assert_eq!(f("out.raw"), FormatKind::Raw);
        assert_eq!(f("out.strobe"), FormatKind::Raw);
        assert_eq!(f("out"), FormatKind::Svg);
        assert_eq!(f("out.html"), FormatKind::Svg);
        assert_eq!(
            format_for(Path::new("x.svg"), Some(FormatArg::Raw)),
            FormatKind::Raw
        );
    }

    #[test]
    fn unwritable_outputs_are_refused_without_leaving_files() {
        let e = check_writable(Path::new("/nonexistent-strobe/x.svg")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot write /nonexistent-strobe/x.svg: the directory /nonexistent-strobe does not exist"
        );
        let dir = std::env::temp_dir();
        let e = check_writable(&dir).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let before: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        check_writable(&dir.join("strobe-probe-test.svg")).unwrap();
        let after: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert!(!dir.join("strobe-probe-test.svg").exists());
        // Other processes may create files in the temp dir meanwhile; ours is gone.
        assert!(after.len() <= before.len() + 2);
    }
}
