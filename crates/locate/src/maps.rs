//! `/proc/PID/maps`, parsed by hand.
//!
//! The format is five whitespace-separated columns and a path, which is optional and is the
//! rest of the line, spaces included. The `proc-maps` crate (0.5) splits the path at
//! whitespace and joins the words with one space, so `/opt/my  dir/libpython3.9.so` (two
//! spaces) or a name ending in a space comes back as another file's path; it also keeps
//! ` (deleted)` in the path, gives the device as text, fails the whole listing on one odd line,
//! and only reads `/proc/PID/maps` itself (no parsing of text we hold). A target chooses its
//! file names, so we keep the path byte for byte, with the device and inode numbers we match
//! files by.

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
    /// Offset in the file of the first mapped byte.
    pub offset: u64,
    /// Device major number of the file (0 for anonymous mappings).
    pub dev_major: u32,
    /// Device minor number.
    pub dev_minor: u32,
    /// Inode of the file (0 for anonymous mappings).
    pub inode: u64,
    /// Path as the kernel prints it (relative to *our* root when the target is chrooted
    /// under it, to the target's mount namespace otherwise), without a ` (deleted)` suffix;
    /// pseudo-paths like `[heap]` are kept as they are.
    pub path: Option<String>,
    /// The file was deleted or replaced since it was mapped.
    pub deleted: bool,
}

impl Mapping {
    /// Backed by a regular file (not anonymous, not `[heap]`-style).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.path.as_deref().is_some_and(|p| p.starts_with('/'))
    }
}

/// Parse the text of a maps file; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mapping> {
    let mut rest = line;
    let mut field = || {
        let t = rest.trim_start();
        let end = t.find(char::is_whitespace).unwrap_or(t.len());
        let (f, r) = t.split_at(end);
        rest = r;
        Some(f).filter(|f| !f.is_empty())
    };
    let (start, end) = field()?.split_once('-')?;
    let perms = field()?.as_bytes();
    let offset = field()?;
    let (major, minor) = field()?.split_once(':')?;
    let inode = field()?.parse().ok()?;
    let path = rest.trim_start();
    let (path, deleted) = match path.strip_suffix(" (deleted)") {
        Some(p) => (p, true),
        None => (path, false),
    };
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        read: perms.first() == Some(&b'r'),
        write: perms.get(1) == Some(&b'w'),
        exec: perms.get(2) == Some(&b'x'),
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev_major: u32::from_str_radix(major, 16).ok()?,
        dev_minor: u32::from_str_radix(minor, 16).ok()?,
        inode,
        path: (!path.is_empty()).then(|| path.to_string()),
        deleted,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_files_anonymous_and_pseudo_mappings() {
        let text = "\
00400000-00422000 r--p 00000000 fe:00 742378                             /var/cache/strobe/sid/usr/bin/python3.14
7f1c2a000000-7f1c2a021000 rw-p 00000000 00:00 0 
7f1c2b000000-7f1c2b400000 r-xp 00123000 103:02 99 /opt/my dir/libpython3.9.so.1.0 (deleted)
7ffd5e3f0000-7ffd5e411000 rw-p 00000000 00:00 0                          [stack]
garbage
";
        let m = parse(text);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].start, 0x400000);
        assert_eq!(m[0].end, 0x422000);
        assert!(m[0].read && !m[0].write && !m[0].exec);
        assert_eq!(
            (m[0].dev_major, m[0].dev_minor, m[0].inode),
            (0xfe, 0, 742378)
        );
        assert_eq!(
            m[0].path.as_deref(),
            Some("/var/cache/strobe/sid/usr/bin/python3.14")
        );
        assert!(m[0].is_file());
        assert_eq!(m[1].path, None);
        assert!(!m[1].is_file() && m[1].write);
        assert_eq!(
            m[2].path.as_deref(),
            Some("/opt/my dir/libpython3.9.so.1.0")
        );
        assert!(m[2].deleted && m[2].exec);
        assert_eq!(m[2].offset, 0x123000);
        assert_eq!((m[2].dev_major, m[2].dev_minor), (0x103, 2));
        assert_eq!(m[3].path.as_deref(), Some("[stack]"));
        assert!(!m[3].is_file());
    }

    #[test]
    fn paths_keep_every_space() {
        // Columns are padded with spaces; the path is everything after them, as the file is
        // named: runs of spaces and a trailing space included.
        let text = "7f00-7f10 r--p 00000000 fe:00 7                          \
                    /tmp/my  dir/libpython3.9.so.1.0 \n\
                    7f10-7f20 r-xp 00001000 fe:00 8 /tmp/x (deleted) (deleted)\n";
        let m = parse(text);
        assert_eq!(
            m[0].path.as_deref(),
            Some("/tmp/my  dir/libpython3.9.so.1.0 ")
        );
        assert!(!m[0].deleted);
        // Only the kernel's own suffix is taken off.
        assert_eq!(m[1].path.as_deref(), Some("/tmp/x (deleted)"));
        assert!(m[1].deleted);
    }

    #[test]
    fn own_maps_contain_our_executable() {
        let m = parse(&std::fs::read_to_string("/proc/self/maps").unwrap());
        let exe = std::env::current_exe().unwrap();
        assert!(m
            .iter()
            .any(|x| x.path.as_deref() == exe.to_str() && x.offset == 0));
    }
}
