//! Where every streamed writer spills: a directory `.strobe-spill-PID-N` beside the output,
//! created on the first spill and removed with everything in it when dropped (success, error,
//! or a first stop signal: strobe handles those and returns normally), or by a second stop
//! signal's exit (it is registered with `strobe_signals`); one left by a strobe that was killed
//! (SIGKILL cannot be caught) is removed by the next `record` or `convert` writing to the same
//! directory ([`remove_stale_spill_dirs`]). Also: append-only spool files in it, and the varints
//! their records are written with.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use strobe_signals::{create_dir_removed_on_exit, create_in_registered_dir, remove_registered};

use super::{DEFAULT_SPILL_BYTES, SPILL_BYTES_ENV};

const PREFIX: &str = ".strobe-spill-";

pub(crate) static SPILL_DIRS: AtomicUsize = AtomicUsize::new(0);

/// The spill budget: [`SPILL_BYTES_ENV`] if set to a number, else [`DEFAULT_SPILL_BYTES`].
pub fn budget_from_env() -> usize {
    std::env::var(SPILL_BYTES_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_SPILL_BYTES)
}

/// A directory for spill files, created when first needed, removed with everything in it when
/// dropped.
#[derive(Debug)]
pub(crate) struct SpillDir {
    parent: PathBuf,
    dir: Option<PathBuf>,
    /// Files named so far (for their names).
    files: usize,
}

impl SpillDir {
    /// A spill directory to be created in `parent` when first needed.
    pub(crate) fn new(parent: &Path) -> SpillDir {
        SpillDir {
            parent: parent.to_owned(),
            dir: None,
            files: 0,
        }
    }

    fn path(&mut self) -> io::Result<PathBuf> {
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

    /// A new file in the directory (`prefix-N`, open for reading and writing), creating the
    /// directory if needed. Created under `strobe_signals`' lock, so that a stop signal's exit
    /// removing the directory meanwhile cannot be kept from it by a file it did not see.
    pub(crate) fn create_file(&mut self, prefix: &str) -> io::Result<(PathBuf, File)> {
        let dir = self.path()?;
        self.files += 1;
        let path = dir.join(format!("{prefix}-{}", self.files));
        let open = || {
            File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
        };
        match create_in_registered_dir(open) {
            Ok(f) => Ok((path, f)),
            Err(e) => Err(spill_error(&path, e)),
        }
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = remove_registered(d);
        }
    }
}

/// An I/O error while spilling, saying where and what to do.
pub(crate) fn spill_error(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "cannot spill the profile's stacks to {}: {e}; free space there, or record with \
             --format raw (a few bytes per sample) and convert later",
            path.display()
        ),
    )
}

/// The write buffer of each [`SpoolFile`].
const SPOOL_BUFFER: usize = 8 << 10;

/// An append-only file in a [`SpillDir`], copied into the output at the end.
#[derive(Debug)]
pub(crate) struct SpoolFile {
    path: PathBuf,
    w: BufWriter<File>,
    len: u64,
}

impl SpoolFile {
    /// A new empty spool file in `dir`.
    pub(crate) fn create(dir: &mut SpillDir, prefix: &str) -> io::Result<SpoolFile> {
        let (path, f) = dir.create_file(prefix)?;
        Ok(SpoolFile {
            path,
            w: BufWriter::with_capacity(SPOOL_BUFFER, f),
            len: 0,
        })
    }

    /// Appends `bytes`.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.w
            .write_all(bytes)
            .map_err(|e| spill_error(&self.path, e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Copies everything written to `out` (once: appending after it is not supported).
    pub(crate) fn copy_to(&mut self, out: &mut dyn Write) -> io::Result<()> {
        let path = self.path.clone();
        let at = |e: io::Error| spill_error(&path, e);
        self.w.flush().map_err(at)?;
        let f = self.w.get_mut();
        f.rewind().map_err(at)?;
        let mut r = BufReader::with_capacity(64 << 10, f.take(self.len));
        io::copy(&mut r, out)?;
        Ok(())
    }
}

/// Byte streams appended to by index, held in memory until together they pass a budget, then
/// each moved to a [`SpoolFile`], which the stream's later bytes go to directly (through its
/// buffer).
#[derive(Debug)]
pub(crate) struct Spools {
    dir: SpillDir,
    budget: usize,
    in_memory: usize,
    spools: Vec<(Vec<u8>, Option<SpoolFile>)>,
    spills: usize,
}

impl Spools {
    /// Spools spilling to a directory created in `parent` past `budget` bytes in memory.
    pub(crate) fn new(parent: &Path, budget: usize) -> Spools {
        Spools {
            dir: SpillDir::new(parent),
            budget,
            in_memory: 0,
            spools: Vec::new(),
            spills: 0,
        }
    }

    /// Appends `bytes` to spool `i`.
    pub(crate) fn append(&mut self, i: usize, bytes: &[u8]) -> io::Result<()> {
        if self.spools.len() <= i {
            self.spools.resize_with(i + 1, || (Vec::new(), None));
        }
        let (mem, file) = &mut self.spools[i];
        if let Some(f) = file {
            // Spilled before: on to the file (through its buffer), so that memory is not
            // allocated and freed again in budget-sized blocks.
            return f.write(bytes);
        }
        mem.extend_from_slice(bytes);
        self.in_memory += bytes.len();
        if self.in_memory > self.budget {
            for (mem, file) in &mut self.spools {
                if mem.is_empty() {
                    continue;
                }
                let f = match file {
                    Some(f) => f,
                    None => file.insert(SpoolFile::create(&mut self.dir, "spool")?),
                };
                f.write(mem)?;
                *mem = Vec::new();
            }
            self.in_memory = 0;
            self.spills += 1;
        }
        Ok(())
    }

    /// Copies everything appended to spool `i` to `out` (once).
    pub(crate) fn copy_to(&mut self, i: usize, out: &mut dyn Write) -> io::Result<()> {
        let Some((mem, file)) = self.spools.get_mut(i) else {
            return Ok(());
        };
        if let Some(f) = file {
            f.copy_to(out)?;
        }
        out.write_all(mem)
    }

    /// What was spilled, in a sentence, if anything was.
    pub(crate) fn spill_note(&self) -> Option<String> {
        let bytes: u64 = self
            .spools
            .iter()
            .filter_map(|(_, f)| f.as_ref().map(SpoolFile::len))
            .sum();
        (self.spills > 0).then(|| {
            format!(
                "the samples outgrew the memory budget: {bytes} bytes were spilled to disk (in \
                 {} goes) and copied into the output",
                self.spills
            )
        })
    }
}

pub(crate) fn put_varint(w: &mut impl Write, mut v: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        buf[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    buf[n] = v as u8;
    w.write_all(&buf[..=n])
}

/// A varint, or `None` at a clean end of file.
pub(crate) fn get_varint(r: &mut impl Read) -> io::Result<Option<u64>> {
    let mut v = 0u64;
    let mut shift = 0;
    let mut b = [0u8; 1];
    loop {
        if r.read(&mut b)? == 0 {
            return if shift == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        v |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
        shift += 7;
        if shift > 63 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "corrupt spill file",
            ));
        }
    }
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
