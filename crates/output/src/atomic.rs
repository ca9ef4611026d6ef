//! Writing output files so that readers see either the old file or the complete new one.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use strobe_signals::{create_removed_on_exit, remove_registered, rename_registered};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// How many temp names to try before giving up (another process racing on the same names).
const ATTEMPTS: u32 = 16;

/// Writes `path` through `write`: into a new temp file in the same directory (created with
/// `O_CREAT | O_EXCL`, so a symlink planted at the temp name is never followed), then fsync and
/// rename over `path`. If `write` or any step fails, the temp file is removed and `path` is left
/// as it was. The temp file is registered with `strobe_signals` until it is renamed, so that a
/// stop signal's exit at once removes it too.
pub fn write_atomically<F>(path: &Path, write: F) -> io::Result<()>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("output path {} does not name a file", path.display()),
        )
    })?;
    let (tmp, file) = create_temp(&dir, &name.to_string_lossy())?;
    let result = (|| {
        let mut w = BufWriter::new(file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        rename_registered(&tmp, path)?;
        // Make the rename itself durable; failure here does not undo a complete file.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = remove_registered(&tmp);
    }
    result
}

fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    create_temp_at(dir, name, nanos)
}

fn temp_name(dir: &Path, name: &str, nanos: u32, n: u64) -> PathBuf {
    dir.join(format!(
        ".{name}.strobe-tmp-{}-{nanos:x}-{n}",
        std::process::id()
    ))
}

fn create_temp_at(dir: &Path, name: &str, nanos: u32) -> io::Result<(PathBuf, File)> {
    let mut last_err = None;
    for _ in 0..ATTEMPTS {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = temp_name(dir, name, nanos, n);
        // create_new = O_CREAT|O_EXCL: fails on any existing entry, including a symlink.
        let open = |tmp: &Path| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(tmp)
        };
        match create_removed_on_exit(&tmp, open) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot create a temporary file in {}: {e}", dir.display()),
                ))
            }
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no temporary file name was free")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "strobe-output-atomic-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn entries(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_and_replaces() {
        let d = tempdir("ok");
        let p = d.join("out.txt");
        write_atomically(&p, |w| w.write_all(b"one")).unwrap();
        write_atomically(&p, |w| w.write_all(b"two")).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(entries(&d), ["out.txt"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn failure_leaves_old_file_and_no_temp() {
        let d = tempdir("fail");
        let p = d.join("out.txt");
        fs::write(&p, b"old").unwrap();
        let err = write_atomically(&p, |w| {
            w.write_all(&[b'x'; 100_000])?;
            Err(io::Error::other("format failed"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "format failed");
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(entries(&d), ["out.txt"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn planted_symlinks_at_temp_names_are_never_followed() {
        let d = tempdir("symlink");
        let victim = d.join("victim");
        fs::write(&victim, b"precious").unwrap();
        // Plant a symlink to the victim at every name the next attempts can pick.
        let next = COUNTER.load(Ordering::Relaxed);
        for n in next..next + 256 {
            std::os::unix::fs::symlink(&victim, temp_name(&d, "out.txt", 0xabc, n)).unwrap();
        }
        let e = create_temp_at(&d, "out.txt", 0xabc).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        // A real write still works (other names are free) and leaves the victim alone.
        let p = d.join("out.txt");
        write_atomically(&p, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&p).unwrap(), b"new");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_directory_is_an_error_naming_it() {
        let e = write_atomically(Path::new("/nonexistent-strobe-dir/x.svg"), |w| {
            w.write_all(b"x")
        })
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent-strobe-dir"), "{e}");
    }
}
