//! The directory an output file goes in: where its temporary file is written before the rename,
//! and where `collapsed` and `svg` spill sorted runs (`strobe_output`'s spill directory).

use std::path::{Path, PathBuf};

/// The directory of `output` (`.` for a bare file name).
pub(crate) fn output_dir(output: &Path) -> PathBuf {
    match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
