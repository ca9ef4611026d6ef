//! `strobe dump`: one look at every thread's stack, printed as text or JSON.

use crate::args::DumpArgs;
use crate::output;
use anyhow::Context;
use std::io::{self, BufWriter};
use strobe_target::{CoreOptions, SnapshotOptions, Target};

/// Run `strobe dump`.
pub fn run(args: &DumpArgs) -> anyhow::Result<()> {
    let mut target = match (&args.target.core, args.target.pid) {
        (Some(core), _) => Target::open_core(
            core,
            CoreOptions {
                executable: args.target.executable.as_deref(),
                sysroot: args.target.sysroot.as_deref(),
            },
        )?,
        (None, Some(pid)) => Target::attach(pid)?,
        // clap's group requires one of the two.
        (None, None) => anyhow::bail!("give --pid or --core"),
    };
    let snap = target.snapshot(SnapshotOptions {
        names: !args.no_names,
        blocking: args.target.blocking,
        native: args.native,
        locals: args.locals,
    })?;
    for warning in &snap.warnings {
        eprintln!("strobe: warning: {warning}");
    }
    let mut out = BufWriter::new(io::stdout().lock());
    if args.json {
        output::write_json(&mut out, &snap)
    } else {
        output::write_text(&mut out, &snap)
    }
    .context("writing to stdout")
}
