//! `strobe convert`: a raw recording into another format, with the grouping and filters chosen
//! now (a raw recording keeps every sample, idle ones included, by line).

use anyhow::Context;
use strobe_output::{read_raw, read_raw_counts, write_atomically, FoldedRecorder};

use crate::args::ConvertArgs;
use crate::record::{check_writable, format_for, profile_options, write_profile};

/// Run `strobe convert`.
pub fn run(args: &ConvertArgs) -> anyhow::Result<()> {
    let kind = format_for(&args.output, args.format);
    check_writable(&args.output)?;
    let folded = FoldedRecorder::supports(kind);
    // collapsed and svg need no timeline, and are folded in bounded memory (as `record` does).
    let rec = if folded {
        read_raw_counts(&args.input)?
    } else {
        read_raw(&args.input)?
    };
    if rec.ignored_bytes > 0 {
        eprintln!(
            "strobe: warning: the last {} bytes of {} are an incomplete chunk (the recorder was \
             stopped while writing it) and were skipped; everything before them was read",
            rec.ignored_bytes,
            args.input.display()
        );
    }
    if folded {
        let dir = match args.output.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let p = &rec.profile;
        let view = profile_options(&args.view);
        let mut f = FoldedRecorder::new(kind, view, &dir, FoldedRecorder::budget_from_env());
        let write = |f: &mut FoldedRecorder| -> std::io::Result<()> {
            f.add_profile(p)?;
            write_atomically(&args.output, |w| f.write(&p.meta, w))
        };
        write(&mut f).with_context(|| format!("writing {}", args.output.display()))?;
        eprintln!(
            "strobe: wrote {} ({}, {} samples)",
            args.output.display(),
            kind.name(),
            f.total().samples
        );
        return Ok(());
    }
    let profile = rec
        .profile
        .with_options(profile_options(&args.view))
        .with_context(|| format!("converting {}", args.input.display()))?;
    write_profile(&args.output, kind, &profile)?;
    eprintln!(
        "strobe: wrote {} ({}, {} samples)",
        args.output.display(),
        kind.name(),
        profile.total().samples
    );
    Ok(())
}
