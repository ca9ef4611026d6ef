//! Opening a file a target names, inside the target's root, in one system call.
//!
//! A target in a container or chroot names its files from its own root, which strobe reaches
//! through `/proc/PID/root`. Only the first step of a path walk goes there: a symbolic link
//! met further down with an absolute target would be resolved against *our* root, and `..`
//! could climb out, so a container could point strobe (running as root) at any host file.
//! `openat2(2)` with `RESOLVE_IN_ROOT` makes the kernel resolve the whole path as if the root
//! directory given were `/` (absolute links restart there, `..` stops there); with
//! `RESOLVE_NO_MAGICLINKS` it also refuses `/proc/…/fd`-style links, which could lead anywhere.
//! Linux has had it since 5.6; where it is missing (`ENOSYS`: an older kernel, or a seccomp
//! filter that hides it) [`open_in_root`] says so and the caller resolves the path itself
//! (`strobe_locate::rootfs`).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `struct open_how` of `linux/openat2.h` (libc's cannot be built outside libc).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `path` read-only (and non-blocking: a FIFO does not wait for a writer) as the process
/// whose root directory `root` is (opened from `/proc/PID/root`, or any directory) would:
/// every component resolved inside `root`. `path`
/// may be absolute (it is taken from `root`). `Ok(None)` if the kernel has no `openat2`
/// (`ENOSYS`); other errors are the open's (`ENOENT`, `EACCES`, `ELOOP` for too many links or
/// a magic link, `EXDEV`…).
#[allow(unsafe_code)]
pub fn open_in_root(root: &File, path: &Path) -> io::Result<Option<File>> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let how = OpenHow {
        // O_NONBLOCK: a FIFO at the path opens at once instead of waiting for a writer (a
        // regular file's reads ignore it).
        flags: (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `openat2` reads a NUL-terminated path (`c_path`, alive for the call) and
    // `size_of::<OpenHow>()` bytes of `how` (a `repr(C)` copy of the kernel's `open_how`,
    // version 0: 24 bytes), and writes nothing of ours; `root`'s descriptor is open for the
    // call. The return value is a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c_path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOSYS) => Ok(None),
            _ => Err(e),
        };
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("openat2 returned no descriptor"))?;
    // SAFETY: `fd` is the descriptor `openat2` just returned, owned by nothing else.
    Ok(Some(File::from(unsafe { OwnedFd::from_raw_fd(fd) })))
}

/// Opens `path` read-only and non-blocking, as [`open_in_root`] does (a FIFO opens at once),
/// for the path a caller resolved itself where `openat2` is missing.
pub fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A directory of our own as a root: an absolute link inside it and `..` stay inside.
    #[test]
    fn links_and_dot_dot_resolve_inside_the_root() {
        let base = std::env::temp_dir().join(format!("strobe-open-root-{}", std::process::id()));
        let marker = base.join("marker");
        let root = base.join("root");
        // The same absolute path inside the root and here, with different contents.
        let inside = root.join(marker.strip_prefix("/").unwrap());
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::write(&inside, b"inside").unwrap();
        std::fs::write(&marker, b"outside").unwrap();
        std::os::unix::fs::symlink(&marker, root.join("abs")).unwrap();
        let read = |f: File| {
            let mut s = String::new();
            (&f).read_to_string(&mut s).unwrap();
            s
        };
        // Through the path, the kernel follows the link to our file.
        assert_eq!(read(File::open(root.join("abs")).unwrap()), "outside");
        let dir = File::open(&root).unwrap();
        let open = |p: &str| open_in_root(&dir, Path::new(p)).unwrap().unwrap();
        assert_eq!(read(open("/abs")), "inside");
        assert_eq!(read(open("abs")), "inside");
        let up = format!("/../../..{}", marker.display());
        assert_eq!(read(open(&up)), "inside");
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// A FIFO planted at a path opens at once (without `O_NONBLOCK` the open would wait for
    /// a writer, forever).
    #[test]
    fn a_fifo_opens_without_waiting_for_a_writer() {
        let root = std::env::temp_dir().join(format!("strobe-open-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(root.join("fifo"))
            .status()
            .unwrap();
        assert!(made.success());
        let dir = File::open(&root).unwrap();
        let f = open_in_root(&dir, Path::new("/fifo")).unwrap().unwrap();
        assert!(!f.metadata().unwrap().is_file());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
