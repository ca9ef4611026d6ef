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
//!
//! A file is opened inside a root with [`open_in_root`]: by the kernel itself in one call
//! (`openat2` with `RESOLVE_IN_ROOT`, [`strobe_remote::open_in_root`]), which leaves no window
//! between the check and the open, and only where the kernel has no `openat2` (`ENOSYS`) by
//! [`resolve_in_root`] and an open of its result.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

/// `path` (absolute, as the target names it) opened read-only inside `root` (`/proc/PID/root`,
/// or a core's `--sysroot`), with a path to show for it: `root` joined with `path` as named.
/// Every component is resolved inside `root` by the kernel (`openat2` with `RESOLVE_IN_ROOT`,
/// no magic links, and `O_NONBLOCK`, so that a FIFO planted there cannot block the open). Where
/// the kernel has no `openat2` (`ENOSYS`: before Linux 5.6, or hidden by a seccomp filter), the
/// path is [`resolve_in_root`]'s and the file is opened through it (non-blocking too), as
/// before `openat2` was used: a link swapped in between the two is followed.
pub fn open_in_root(root: &Path, path: &str) -> io::Result<(PathBuf, File)> {
    let dir = File::open(root)?;
    match strobe_remote::open_in_root(&dir, Path::new(path))? {
        Some(file) => Ok((root.join(path.trim_start_matches('/')), file)),
        None => {
            let resolved = resolve_in_root(root, path)?;
            let file = strobe_remote::open_nonblocking(&resolved)?;
            Ok((resolved, file))
        }
    }
}

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
