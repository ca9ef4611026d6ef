//! `strobe convert`: a raw recording into another format, with the grouping and filters chosen
//! now (a raw recording keeps every sample, idle ones included, by line).
//!
//! A stop signal (Ctrl-C, SIGTERM, SIGHUP) ends it at once with status 128 + signal number, as
//! `record`'s second one does: there is nothing worth finishing, and the spill directory and
//! the output's temporary file (the output is only ever renamed into place, whole) are removed
//! first ([`strobe_signals::exit_at_stop_signal`]).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use strobe_aggregate::{ProfileOptions, Sample, Tables};
use strobe_output::{
    budget_from_env, read_raw, recorder, write_atomically, FoldedRecorder, FormatKind, RawEvent,
    RawStream, Recorder,
};

use crate::args::ConvertArgs;
use crate::out_dir::{output_dir, remove_stale_spills};
use crate::record::{check_writable, format_for, profile_options, write_profile};

/// Run `strobe convert`.
pub fn run(args: &ConvertArgs) -> anyhow::Result<()> {
    let kind = format_for(&args.output, args.format);
    check_writable(&args.output)?;
    let output = args.output.display().to_string();
    strobe_signals::exit_at_stop_signal(move |sig| {
        // Not `eprintln!`, which panics when stderr fails (a terminal gone at SIGHUP): the
        // exit must come.
        let _ = writeln!(
            std::io::stderr(),
            "strobe: convert interrupted by {}: stopped at once, leaving no spill files and no \
             partial {output}",
            sig.as_str()
        );
    })
    .context("setting up signal handling")?;
    let streamed = if FoldedRecorder::supports(kind) {
        Some(fold(args, kind)?)
    } else if kind == FormatKind::Raw {
        None
    } else {
        stream(args, kind)?
    };
    let samples = match streamed {
        Some(samples) => samples,
        None => {
            let rec = read_raw(&args.input)?;
            warn_ignored(&args.input, rec.ignored_bytes);
            let profile = rec
                .profile
                .with_options(profile_options(&args.view))
                .with_context(|| format!("converting {}", args.input.display()))?;
            write_profile(&args.output, kind, args.view.value.value(), &profile)?;
            profile.total().samples
        }
    };
    eprintln!(
        "strobe: wrote {} ({}, {samples} samples)",
        args.output.display(),
        kind.name(),
    );
    Ok(())
}

/// collapsed and svg: each sample is folded as it is read, as `record` does (a
/// [`FoldedRecorder`], spilling sorted runs past its budget), and no profile is built, so
/// memory is bounded by the recorder's stack table and the file's distinct frames (for a
/// recording of format version 5: older ones do not say which stacks were forgotten).
/// Returns the samples written.
fn fold(args: &ConvertArgs, kind: FormatKind) -> anyhow::Result<u64> {
    let dir = output_dir(&args.output);
    remove_stale_spills(&dir);
    let view = profile_options(&args.view);
    let mut f = FoldedRecorder::new(kind, view, &dir, budget_from_env())
        .with_value(args.view.value.value());
    let mut raw = RawStream::open(&args.input)?;
    let writing = || format!("writing {}", args.output.display());
    while let Some((tables, event)) = raw.next_event()? {
        f.add_count(tables, event.key(), event.count())
            .with_context(writing)?;
    }
    warn_ignored(&args.input, raw.ignored_bytes());
    let meta = raw.metadata();
    write_atomically(&args.output, |w| f.write(&meta, w)).with_context(writing)?;
    Ok(f.total().samples)
}

/// pprof, speedscope, chrome and gecko: each sample goes to the format's streamed writer as it
/// is read, as `record` does ([`strobe_output::recorder`], spilling past its budget), in
/// memory bounded as [`fold`]'s. Returns the samples written, or `None` for a recording of
/// pre-counted stacks (one converted from a profile without a timeline), which only a whole
/// profile can write in these formats.
fn stream(args: &ConvertArgs, kind: FormatKind) -> anyhow::Result<Option<u64>> {
    let dir = output_dir(&args.output);
    remove_stale_spills(&dir);
    let view = profile_options(&args.view);
    let value = args.view.value.value();
    let mut raw = RawStream::open(&args.input)?;
    let writing = || format!("writing {}", args.output.display());
    let mut writer: Option<Box<dyn Recorder>> = None;
    let mut samples = 0;
    loop {
        let sample = match raw.next_event()? {
            None => break,
            Some((_, RawEvent::Sample(s))) => s,
            Some((_, RawEvent::Aggregate(..))) => return Ok(None),
        };
        // Made at the first sample: the process id is in the metadata read by then.
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(
                recorder(
                    kind,
                    view,
                    value,
                    raw.metadata().pid,
                    &dir,
                    budget_from_env(),
                )
                .ok_or_else(|| anyhow::anyhow!("{} is not streamed", kind.name()))?,
            ),
        };
        let tables = raw.tables();
        w.add(tables, &sample).with_context(writing)?;
        if shown(&view, tables, &sample) {
            samples += 1;
        }
    }
    warn_ignored(&args.input, raw.ignored_bytes());
    let meta = raw.metadata();
    let mut w = match writer {
        Some(w) => w,
        // No samples: the writer of an empty profile.
        None => recorder(kind, view, value, meta.pid, &dir, budget_from_env())
            .ok_or_else(|| anyhow::anyhow!("{} is not streamed", kind.name()))?,
    };
    write_atomically(&args.output, |out| w.write(&meta, out)).with_context(writing)?;
    if let Some(note) = w.spill_note() {
        eprintln!("strobe: {note}");
    }
    Ok(Some(samples))
}

/// Whether `s` is in a profile with options `view`: its flags pass the filter, and a frame of
/// its stack is shown (a stack whose every frame is hidden is left out).
fn shown(view: &ProfileOptions, tables: &Tables, s: &Sample) -> bool {
    view.filter.accepts(s.flags)
        && tables
            .stack(s.stack)
            .iter()
            .any(|&f| tables.frame(f).is_some_and(|f| !view.hides(f.kind)))
}

/// Says that the end of `input` was an incomplete chunk, if it was.
fn warn_ignored(input: &Path, ignored_bytes: usize) {
    if ignored_bytes > 0 {
        eprintln!(
            "strobe: warning: the last {ignored_bytes} bytes of {} are an incomplete chunk (the \
             recorder was stopped while writing it) and were skipped; everything before them \
             was read",
            input.display()
        );
    }
}
