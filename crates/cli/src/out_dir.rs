//! The directory an output file goes in: where its temporary file is written before the rename,
//! where `collapsed` and `svg` spill sorted runs (`strobe_output`'s spill directory), and so
//! where a killed strobe may have left a spill directory behind.

use std::path::{Path, PathBuf};

/// The directory of `output` (`.` for a bare file name).
pub(crate) fn output_dir(output: &Path) -> PathBuf {
    match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Removes the spill directories in `dir` left by a strobe that was killed (SIGKILL cannot be
/// caught, so it could not remove its own), saying so in one line.
pub(crate) fn remove_stale_spills(dir: &Path) {
    // A directory that cannot be listed has nothing this run could remove either; writing
    // the output there fails with its own message.
    let removed = strobe_output::remove_stale_spill_dirs(dir).unwrap_or_default();
    if !removed.is_empty() {
        let names: Vec<String> = removed.iter().map(|d| d.display().to_string()).collect();
        say!(
            "strobe: removed {} left by a strobe that was killed: {}",
            if names.len() == 1 {
                "a spill directory"
            } else {
                "spill directories"
            },
            names.join(", ")
        );
    }
}
