//! `strobe diff`: a differential flamegraph of two raw recordings. Frame widths come from the
//! new recording; colours show where time grew (red) or shrank (blue) relative to the base.

use anyhow::Context;
use strobe_output::{read_raw, write_atomically, write_diff_svg, DiffSvg, RawRecording};

use crate::args::DiffArgs;
use crate::record::{check_writable, profile_options};

/// Run `strobe diff`.
pub fn run(args: &DiffArgs) -> anyhow::Result<()> {
    check_writable(&args.output)?;
    let opts = profile_options(&args.view);
    let read = |path: &std::path::Path| -> anyhow::Result<strobe_aggregate::Profile> {
        let rec: RawRecording = read_raw(path)?;
        if rec.ignored_bytes > 0 {
            eprintln!(
                "strobe: warning: the last {} bytes of {} are an incomplete chunk and were skipped",
                rec.ignored_bytes,
                path.display()
            );
        }
        rec.profile
            .with_options(opts)
            .with_context(|| format!("reading {}", path.display()))
    };
    let base = read(&args.base)?;
    let new = read(&args.new)?;
    let svg = DiffSvg {
        normalize: !args.no_normalize,
        value: args.view.value.value(),
    };
    write_atomically(&args.output, |w| write_diff_svg(&base, &new, &svg, w))
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("strobe: wrote {}", args.output.display());
    Ok(())
}
