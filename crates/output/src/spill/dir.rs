//! The spill directory, `.strobe-spill-PID-N` next to the output: created on the first spill,
//! removed when the recorder is dropped, or by a second stop signal's exit (it is registered
//! with `strobe_signals`); one left by a strobe that was killed (SIGKILL cannot be caught) is
//! removed by the next `record` or `convert` writing to the same directory
//! ([`remove_stale_spill_dirs`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use strobe_signals::{create_dir_removed_on_exit, remove_registered_dir};

const PREFIX: &str = ".strobe-spill-";

static SPILL_DIRS: AtomicUsize = AtomicUsize::new(0);

/// A directory for spill files, created when first needed, removed with everything in it when
/// dropped.
#[derive(Debug)]
pub(super) struct SpillDir {
    parent: PathBuf,
    dir: Option<PathBuf>,
}

impl SpillDir {
    /// A spill directory in `parent`, not created yet.
    pub(super) fn new(parent: &Path) -> SpillDir {
        SpillDir {
            parent: parent.to_owned(),
            dir: None,
        }
    }

    /// The directory, created now if it was not yet.
    pub(super) fn path(&mut self) -> io::Result<PathBuf> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        let n = SPILL_DIRS.fetch_add(1, Ordering::Relaxed);
        let d = self
            .parent
            .join(format!("{PREFIX}{}-{n}", std::process::id()));
        create_dir_removed_on_exit(&d).map_err(|e| spill_error(&d, e))?;
        self.dir = Some(d.clone());
        Ok(d)
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = remove_registered_dir(d);
        }
    }
}

/// An I/O error while spilling, saying where and what to do.
pub(super) fn spill_error(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "cannot spill the profile's stacks to {}: {e}; free space there, or record with \
             --format raw (a few bytes per sample) and convert later",
            path.display()
        ),
    )
}

/// The process id in a spill directory's name (`.strobe-spill-PID-N`).
fn owner(name: &str) -> Option<u32> {
    let (pid, n) = name.strip_prefix(PREFIX)?.split_once('-')?;
    n.parse::<usize>().ok()?;
    pid.parse().ok()
}

/// Removes the spill directories in `dir` whose process is gone (a strobe that was killed
/// while it had spilled), and returns them. One whose removal fails is left out (and left for
/// the next run); an unreadable `dir` is the error. "Gone" means no `/proc/PID` here: a strobe
/// in another PID namespace spilling into the same directory would look gone too.
pub fn remove_stale_spill_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(owner) else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if alive || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if fs::remove_dir_all(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_from_spill_directory_names_only() {
        assert_eq!(owner(".strobe-spill-123-0"), Some(123));
        assert_eq!(owner(".strobe-spill-123-17"), Some(123));
        assert_eq!(owner(".strobe-spill-123"), None);
        assert_eq!(owner(".strobe-spill-x-1"), None);
        assert_eq!(owner("strobe-spill-123-0"), None);
        assert_eq!(owner(".strobe-spill-123-0.bak"), None);
    }

    #[test]
    fn only_directories_of_processes_that_are_gone_are_removed() {
        let parent = std::env::temp_dir().join(format!("strobe-stale-{}", std::process::id()));
        fs::create_dir_all(&parent).unwrap();
        // A child that has exited and been waited for: its pid is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let stale = parent.join(format!("{PREFIX}{gone}-0"));
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join("run-1"), b"x").unwrap();
        let ours = parent.join(format!("{PREFIX}{}-0", std::process::id()));
        fs::create_dir(&ours).unwrap();
        let init = parent.join(format!("{PREFIX}1-0"));
        fs::create_dir(&init).unwrap();
        let not_a_dir = parent.join(format!("{PREFIX}{gone}-1"));
        fs::write(&not_a_dir, b"x").unwrap();

        let removed = remove_stale_spill_dirs(&parent).unwrap();
        assert_eq!(removed, std::slice::from_ref(&stale));
        assert!(!stale.exists());
        assert!(ours.is_dir() && init.is_dir() && not_a_dir.is_file());
        fs::remove_dir_all(&parent).unwrap();
    }
}
