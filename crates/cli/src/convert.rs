//! `strobe convert`: a raw recording into another format, with the grouping and filters chosen
//! now (a raw recording keeps every sample, idle ones included, by line).

use std::path::Path;

use anyhow::Context;
use strobe_output::{read_raw, write_atomically, FoldedRecorder, FormatKind, RawStream};

use crate::args::ConvertArgs;
use crate::out_dir::{output_dir, remove_stale_spills};
use crate::record::{check_writable, format_for, profile_options, write_profile};

/// Run `strobe convert`.
pub fn run(args: &ConvertArgs) -> anyhow::Result<()> {
    let kind = format_for(&args.output, args.format);
    check_writable(&args.output)?;
    let samples = if FoldedRecorder::supports(kind) {
        fold(args, kind)?
    } else {
        let rec = read_raw(&args.input)?;
        warn_ignored(&args.input, rec.ignored_bytes);
        let profile = rec
            .profile
            .with_options(profile_options(&args.view))
            .with_context(|| format!("converting {}", args.input.display()))?;
        write_profile(&args.output, kind, &profile)?;
        profile.total().samples
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
    let mut f = FoldedRecorder::new(kind, view, &dir, FoldedRecorder::budget_from_env());
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
