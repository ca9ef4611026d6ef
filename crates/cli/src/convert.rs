//! `strobe convert`: a raw recording into another format, with the grouping and filters chosen
//! now (a raw recording keeps every sample, idle ones included, by line).

use anyhow::Context;
use strobe_output::read_raw;

use crate::args::ConvertArgs;
use crate::record::{check_writable, format_for, profile_options, write_profile};

/// Run `strobe convert`.
pub fn run(args: &ConvertArgs) -> anyhow::Result<()> {
    let kind = format_for(&args.output, args.format);
    check_writable(&args.output)?;
    let rec = read_raw(&args.input)?;
    if rec.ignored_bytes > 0 {
        eprintln!(
            "strobe: warning: the last {} bytes of {} are an incomplete chunk (the recorder was \
             stopped while writing it) and were skipped; everything before them was read",
            rec.ignored_bytes,
            args.input.display()
        );
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
