//! Recognising CPython version strings (`PY_VERSION` from `Include/patchlevel.h`).

use strobe_python_abi::Version;

/// Longest `PY_VERSION` we accept, e.g. `3.14.10rc10+`.
const MAX_LEN: usize = 16;

/// Parse a whole `PY_VERSION` string: `3.9.18`, `3.13.0rc3`, `3.14.0a1+` (a `+` marks a
/// development build after that release and does not change the numbers).
pub fn parse(s: &str) -> Option<Version> {
    let s = s.strip_suffix('+').unwrap_or(s);
    let mut parts = s.splitn(3, '.');
    let major: u8 = parts.next()?.parse().ok()?;
    let minor: u8 = parts.next()?.parse().ok()?;
    let tail = parts.next()?;
    let digits = tail
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(tail.len());
    let micro: u8 = tail.get(..digits)?.parse().ok()?;
    let rest = tail.get(digits..)?;
    let (level, serial) = if rest.is_empty() {
        (0xf, 0)
    } else {
        let (level, n) = if let Some(n) = rest.strip_prefix("rc") {
            (0xc, n)
        } else if let Some(n) = rest.strip_prefix('a') {
            (0xa, n)
        } else if let Some(n) = rest.strip_prefix('b') {
            (0xb, n)
        } else {
            return None;
        };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        (level, n.parse::<u8>().ok().filter(|&s| s < 16)?)
    };
    // Leading zeros or absurd numbers mean this is not a version string.
    let canonical = |p: &str| p == "0" || !p.starts_with('0');
    let mut it = s.splitn(3, '.');
    if !(it.next().is_some_and(canonical) && it.next().is_some_and(canonical)) {
        return None;
    }
    if !(2..=9).contains(&major) || minor > 99 {
        return None;
    }
    Some(Version {
        major,
        minor,
        micro,
        level,
        serial,
    })
}

/// Versions at the *end* of NUL-terminated strings in read-only data. `PY_VERSION` is a
/// string of its own, but the linker merges it into the tail of a longer string that ends
/// the same way (pyenv's libpython3.9 stores it only as the end of its install prefix
/// `/root/.pyenv/versions/3.9.18`), so suffixes are considered too, starting after a
/// character that cannot be part of a version.
pub fn in_rodata(bytes: &[u8]) -> Vec<Version> {
    let mut found = Vec::new();
    for seg in bytes.split(|&b| b == 0) {
        let from = seg.len().saturating_sub(MAX_LEN);
        for i in from..seg.len() {
            let boundary = i == 0 || !matches!(seg[i - 1], b'0'..=b'9' | b'.');
            if !boundary || !seg[i].is_ascii_digit() {
                continue;
            }
            if let Some(v) = std::str::from_utf8(&seg[i..]).ok().and_then(parse) {
                if !found.contains(&v) {
                    found.push(v);
                }
                break;
            }
        }
    }
    found
}

/// Versions at the start of `sys.version`-style strings (`3.9.18 (main, May  9 2026, ...`)
/// in writable data: `Py_GetVersion()` formats that string into a static buffer when the
/// interpreter starts, so it sits in the data segment of a running interpreter.
pub fn in_version_buffers(bytes: &[u8]) -> Vec<Version> {
    let mut found = Vec::new();
    for seg in bytes.split(|&b| b == 0) {
        let Some(space) = seg.iter().take(MAX_LEN + 1).position(|&b| b == b' ') else {
            continue;
        };
        if seg.get(space + 1) != Some(&b'(') {
            continue;
        }
        if let Some(v) = std::str::from_utf8(&seg[..space]).ok().and_then(parse) {
            if !found.contains(&v) {
                found.push(v);
            }
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v(s: &str) -> u64 {
        parse(s).unwrap().to_hex()
    }

    #[test]
    fn parses_release_levels() {
        assert_eq!(v("3.9.18"), 0x030912f0);
        assert_eq!(v("2.7.18"), 0x020712f0);
        assert_eq!(v("3.13.0rc3"), 0x030d00c3);
        assert_eq!(v("3.14.0a1+"), 0x030e00a1);
        assert_eq!(v("3.12.0b4"), 0x030c00b4);
        assert_eq!(v("3.15.2"), 0x030f02f0);
    }

    #[test]
    fn rejects_non_versions() {
        for s in [
            "", "3", "3.9", "3.9.", "1.2.13", "3.9.18x", "3.9.18rc", "03.9.1", "3.09.1", "v3.9.1",
            "3.9.1 ",
        ] {
            assert_eq!(parse(s), None, "{s:?}");
        }
    }

    #[test]
    fn finds_tail_merged_versions_in_rodata() {
        let data = b"\0%.80s (%.80s) %.80s\0/root/.pyenv/versions/3.9.18\0python3.9\0zlib 1.2.13\0x86_64\0";
        assert_eq!(in_rodata(data), vec![parse("3.9.18").unwrap()]);
        // Not at a boundary: the tail of a longer number.
        assert_eq!(in_rodata(b"\x00123.9.18\0"), vec![]);
        assert_eq!(in_rodata(b"\0x13.9.18.1\0"), vec![]);
    }

    #[test]
    fn finds_sys_version_buffers() {
        let data = b"\0\0\x003.10.13 (main, May  9 2026, 07:40:01) [GCC 12.2.0]\0\x003.10.13\0";
        assert_eq!(in_version_buffers(data), vec![parse("3.10.13").unwrap()]);
        assert_eq!(in_version_buffers(b"3.10.13(x)\0 (3.1.1 (\0"), vec![]);
    }
}
