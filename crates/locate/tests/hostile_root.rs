//! A target's filesystem is the target's: symbolic links inside a chroot or container must not
//! lead strobe to files of the host.
//!
//! The kernel does *not* do this for us: through `/proc/PID/root` an absolute symlink of the
//! target resolves against our root (checked by `kernel_follows_absolute_links_to_the_host`
//! with a real chrooted process). `strobe_locate::rootfs::open_in_root` opens inside the
//! target's root (the kernel's `openat2` with `RESOLVE_IN_ROOT`, or where it is missing
//! `resolve_in_root`), and `locate` opens mapped files through it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::process::Stdio;
use strobe_testkit::interpreters::{self, Interpreter};
use strobe_testkit::{Ready, TempDir};

use strobe_locate::locate;
use strobe_locate::rootfs::{open_in_root, resolve_in_root, MAX_SYMLINKS};
use strobe_remote::{procfs, ProcessMemory};

/// A directory named after this process and `tag` under `parent`: the same name in two
/// parents (the chroot's /tmp and the host's) is what the link tests need.
fn tagged_dir(parent: &Path, tag: &str) -> TempDir {
    TempDir::named_in(
        parent,
        &format!("strobe-hostile-{}-{tag}", std::process::id()),
    )
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A fake target root with links that try to leave it.
fn fake_root(tag: &str) -> TempDir {
    let t = tagged_dir(&std::env::temp_dir(), tag);
    let r = t.path();
    write(&r.join("usr/bin/python3.14"), "inside");
    write(&r.join("etc/hostname"), "inside-hostname");
    symlink("/usr/bin/python3.14", r.join("usr/bin/python3")).unwrap();
    symlink("/usr", r.join("usrlink")).unwrap();
    symlink("../../../../../../../../etc/hostname", r.join("usr/bin/up")).unwrap();
    symlink("python3", r.join("usr/bin/python")).unwrap();
    symlink("loop2", r.join("loop1")).unwrap();
    symlink("/loop1", r.join("loop2")).unwrap();
    t
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn absolute_links_restart_at_the_targets_root() {
    let t = fake_root("abs");
    let r = t.path();
    let got = resolve_in_root(r, "/usr/bin/python3").unwrap();
    assert_eq!(got, r.join("usr/bin/python3.14"));
    assert_eq!(read(&got), "inside");
    // A relative link to an absolute one, and a linked directory.
    assert_eq!(
        resolve_in_root(r, "/usr/bin/python").unwrap(),
        r.join("usr/bin/python3.14")
    );
    assert_eq!(
        resolve_in_root(r, "/usrlink/bin/python3").unwrap(),
        r.join("usr/bin/python3.14")
    );
}

#[test]
fn dot_dot_stops_at_the_targets_root() {
    let t = fake_root("dotdot");
    let r = t.path();
    let got = resolve_in_root(r, "/usr/bin/up").unwrap();
    assert_eq!(got, r.join("etc/hostname"));
    assert_eq!(read(&got), "inside-hostname");
    assert_eq!(
        resolve_in_root(r, "/../../../usr/./bin/../bin/python3.14").unwrap(),
        r.join("usr/bin/python3.14")
    );
}

#[test]
fn link_loops_end_with_eloop() {
    let t = fake_root("loop");
    let err = resolve_in_root(t.path(), "/loop1").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(40), "{err}");
    // A chain of exactly MAX_SYMLINKS links still resolves.
    let r = t.path();
    for i in 0..MAX_SYMLINKS {
        let next = if i + 1 == MAX_SYMLINKS {
            "/usr/bin/python3.14".to_string()
        } else {
            format!("/chain{}", i + 1)
        };
        symlink(next, r.join(format!("chain{i}"))).unwrap();
    }
    assert_eq!(
        resolve_in_root(r, "/chain0").unwrap(),
        r.join("usr/bin/python3.14")
    );
    assert!(resolve_in_root(r, "/missing/file").is_err());
}

/// A Python running in the sid chroot, waiting on stdin; killed when dropped.
struct Chrooted(Ready);

impl Chrooted {
    fn start(interp: &Interpreter) -> Chrooted {
        assert!(
            interp.is_sid(),
            "{} does not run in the chroot",
            interp.name
        );
        Chrooted(Ready::start(
            interp
                .command()
                .args([
                    "-c",
                    "import sys\nprint('READY', flush=True)\nsys.stdin.read()",
                ])
                .stdin(Stdio::piped()),
            interp.name,
        ))
    }

    fn pid(&self) -> i32 {
        self.0.pid()
    }
}

#[test]
fn kernel_follows_absolute_links_to_the_host() {
    // The same path holds different files in the chroot and on the host; the chroot also has
    // an absolute link to it.
    let inside = tagged_dir(&interpreters::require_sid().join("tmp"), "live");
    let host = tagged_dir(Path::new("/tmp"), "live");
    assert_ne!(inside.path(), host.path());
    let name = host
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    write(&inside.join("marker"), "inside");
    write(&host.join("marker"), "host");
    symlink(format!("/tmp/{name}/marker"), inside.join("abs")).unwrap();

    let target = Chrooted::start(interpreters::get("sid_3_14"));
    let root = procfs::root(target.pid());
    // What the kernel does through the magic link: the absolute link escapes to the host.
    let naive = root.join(format!("tmp/{name}/abs"));
    assert_eq!(
        read(&naive),
        "host",
        "the kernel resolved the link inside the target's root: this test's premise changed"
    );
    // What strobe does: the kernel resolving inside the root (openat2), and the walk it falls
    // back to without openat2.
    let (shown, mut file) = open_in_root(&root, &format!("/tmp/{name}/abs")).unwrap();
    assert_eq!(shown, root.join(format!("tmp/{name}/abs")));
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    assert_eq!(text, "inside");
    let got = resolve_in_root(&root, &format!("/tmp/{name}/abs")).unwrap();
    assert_eq!(got, root.join(format!("tmp/{name}/marker")));
    assert_eq!(read(&got), "inside");
}

#[test]
fn locate_opens_the_chroots_own_interpreter() {
    let python = interpreters::get("sid_3_14");
    let target = Chrooted::start(python);
    let mem = ProcessMemory::new(target.pid());
    let found = locate(target.pid(), &mem).unwrap();
    let want = std::fs::metadata(python.path()).unwrap();
    let got = std::fs::metadata(&found.binary).unwrap();
    assert_eq!(
        (got.dev(), got.ino()),
        (want.dev(), want.ino()),
        "{found:?}"
    );
    assert_eq!((found.version.major, found.version.minor), (3, 14));
    assert!(found.runtime.is_some());
}
