//! Paths as a target process sees them, resolved inside its root directory.
//!
//! `/proc/PID/root` is a magic link to the target's root, but only the first step of a path
//! walk goes there: a symbolic link met further down is resolved against *our* root when its
//! target is absolute, and `..` can climb out of the target's root. Measured here with a
//! chrooted process: `/proc/PID/root/tmp/x/abs`, where `abs -> /tmp/x/marker` inside the chroot,
//! opens the host's `/tmp/x/marker`. A container (or a chroot) can therefore point strobe,
//! running as root, at any file of the host. [`resolve_in_root`] walks the path one component
//! at a time the way the kernel's `RESOLVE_IN_ROOT` (`openat2(2)`) does: absolute link targets
//! restart at the target's root and `..` stops there.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// `MAXSYMLINKS` of Linux path resolution (`include/linux/namei.h`): more links than this in
/// one lookup is `ELOOP`.
pub const MAX_SYMLINKS: usize = 40;

/// Longest path we resolve (`PATH_MAX`).
const MAX_PATH: usize = 4096;

/// `path` (absolute, as the target names it) resolved inside `root`: the result is `root`
/// joined with components that, at the time of the call, are no symbolic links and never
/// climb above `root`.
///
/// Errors: `NotFound` for a missing component, `ELOOP` (as `io::Error::from_raw_os_error`)
/// after [`MAX_SYMLINKS`] links, `InvalidInput` for overlong paths.
pub fn resolve_in_root(root: &Path, path: &str) -> io::Result<PathBuf> {
    // Components still to walk, last one first, so that a link's target can be pushed on top.
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, Path::new(path))?;
    let mut done: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            // `..` at the target's root stays there, as it does for the target itself.
            done.pop();
            continue;
        }
        let mut here = root.to_path_buf();
        here.extend(&done);
        here.push(&name);
        let md = std::fs::symlink_metadata(&here)?;
        if !md.file_type().is_symlink() {
            done.push(name);
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(io::Error::from_raw_os_error(libc_eloop()));
        }
        let target = std::fs::read_link(&here)?;
        if target.is_absolute() {
            done.clear();
        }
        push_components(&mut todo, &target)?;
    }
    let mut out = root.to_path_buf();
    out.extend(&done);
    Ok(out)
}

/// Push the components of `p` onto `todo` so that its first component is popped first.
fn push_components(todo: &mut Vec<OsString>, p: &Path) -> io::Result<()> {
    if p.as_os_str().len() > MAX_PATH || todo.len() > MAX_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path longer than PATH_MAX",
        ));
    }
    let names: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    todo.extend(names.into_iter().rev());
    Ok(())
}

/// `ELOOP` on Linux (asm-generic/errno.h).
fn libc_eloop() -> i32 {
    40
}
