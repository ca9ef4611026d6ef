//! Finding the interpreter without a live process (a core file): the mappings and the files
//! behind them are given by the caller instead of read from `/proc`.

use crate::elf;
use crate::maps::Mapping;
use crate::{describe, group_files, LocateError, MappedFile, PythonProcess};
use std::path::PathBuf;
use strobe_memory::RemoteMemory;
use strobe_remote::SharedBytes;

/// Gives the bytes of the file behind a mapping, and the path it was found at from here.
pub type OpenMapped<'a> = dyn Fn(&Mapping) -> Result<(PathBuf, SharedBytes), LocateError> + 'a;

/// Find the interpreter of process `pid` (a label for messages: the process is gone) in
/// `mappings`, reading its memory through `mem`. `executable` is the executable's path as the
/// mappings name it; `open` gives the bytes of the file behind a mapping, and the path it was
/// found at from here. Candidates are chosen as [`crate::locate`] chooses them.
pub fn locate_in<M: RemoteMemory>(
    pid: i32,
    mem: &M,
    mappings: &[Mapping],
    executable: Option<&str>,
    open: &OpenMapped<'_>,
) -> Result<PythonProcess, LocateError> {
    let files = group_files(mappings);
    let mut candidates: Vec<&MappedFile> = Vec::new();
    candidates.extend(files.iter().filter(|f| Some(f.path()) == executable));
    candidates.extend(files.iter().filter(|f| {
        Some(f.path()) != executable
            && f.file_name().starts_with("libpython")
            && f.file_name().contains(".so")
    }));
    for file in candidates {
        let (path, bytes) = open(file.lowest())?;
        let info = elf::analyze(pid, path, &bytes)?;
        if info.has_runtime() {
            return describe(pid, mem, file, info);
        }
    }
    let name = executable
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or("unknown")
        .to_string();
    Err(LocateError::NotPython { pid, name })
}
