//! `strobe completions` and `strobe man`: shell completion scripts and man pages, both generated
//! from the same clap definitions as the parser (`args.rs`), so they cannot drift from it.

use std::fs;
use std::io::{self, Write};

use anyhow::Context;
use clap::CommandFactory;

use crate::args::{Cli, CompletionsArgs, ManArgs};

/// Print the completion script for `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    let mut out = io::BufWriter::new(io::stdout().lock());
    clap_complete::generate(args.shell, &mut cmd, "strobe", &mut out);
    out.flush()?;
    Ok(())
}

/// Write `strobe.1` and one `strobe-COMMAND.1` per command into `args.dir`.
pub fn man_pages(args: &ManArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = Cli::command();
    let mut pages = vec![("strobe".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let name = format!("strobe-{}", sub.get_name());
        // A man page names its command in full (`strobe-record`), so that its synopsis and the
        // page's title agree with the file name.
        let page = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("strobe {}", sub.get_name()));
        pages.push((name, page));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut buf)
            .with_context(|| format!("cannot render the man page {name}.1"))?;
        fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
