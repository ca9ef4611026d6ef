//! Temporary directories for tests, removed when dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory, world-readable (so that the unprivileged users of the permission tests
/// and chrooted interpreters can use it), removed with its contents on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory under the system temporary directory.
    pub fn new() -> TempDir {
        TempDir::new_in(&std::env::temp_dir())
    }

    /// A fresh directory under `parent` (created if needed). Panics when it cannot be made.
    pub fn new_in(parent: &Path) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = parent.join(format!(
            "strobe-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("cannot open up {}: {e}", dir.display()));
        TempDir(dir)
    }

    /// The directory `parent/name` exactly (a leftover from an earlier run is removed first),
    /// for tests that need the same name in two places (inside a chroot and outside it).
    pub fn named_in(parent: &Path, name: &str) -> TempDir {
        let dir = parent.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("cannot open up {}: {e}", dir.display()));
        TempDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `name` inside it.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::TempDir;

    #[test]
    fn each_is_fresh_and_gone_after_drop() {
        let a = TempDir::new();
        let b = TempDir::new();
        assert_ne!(a.path(), b.path());
        std::fs::write(a.join("f"), b"x").unwrap_or_else(|e| panic!("{e}"));
        let path = a.path().to_path_buf();
        assert!(path.join("f").is_file());
        drop(a);
        assert!(!path.exists());
    }
}
