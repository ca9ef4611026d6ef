//! Text: 3.x `str` (PEP 393), 2.7 `unicode`, `bytes` (2.7 `str`) and C strings read from the
//! target, and their reprs quoted and escaped as Python writes them.

use std::fmt::Write as _;

use strobe_memory::RemoteMemory;
use strobe_python_abi::StringModel;

use super::{corrupt, field, le_units, missing, Ctx, ValueReader, MAX_TEXT};
use crate::error::WalkError;

impl<M: RemoteMemory + ?Sized> ValueReader<'_, M> {
    /// A 3.x `str` (PEP 393): its first [`MAX_TEXT`] code points, quoted and escaped.
    pub(super) fn write_str(&self, obj: u64, ctx: &mut Ctx) -> Result<(), WalkError> {
        let l = self.layout;
        let need = |v: Option<u32>| v.ok_or_else(|| missing("unicode offsets"));
        let length_off = need(l.unicode_length)?;
        let state_off = need(l.unicode_state)?;
        let ascii_size = need(l.unicode_ascii_size)?;
        let compact_size = need(l.unicode_compact_size)?;
        let kind_mask = need(l.unicode_kind_mask)?;
        let compact_mask = need(l.unicode_compact_mask)?;
        let ascii_mask = need(l.unicode_ascii_mask)?;
        let length = self.read_len(obj, length_off, "str length")?;
        let state = self.mem.read_u32(field(obj, state_off))?;
        let kind = (state & kind_mask) >> kind_mask.trailing_zeros();
        let ascii = state & ascii_mask != 0;
        let data = if state & compact_mask != 0 {
            field(obj, if ascii { ascii_size } else { compact_size })
        } else {
            // Legacy strings keep a pointer to their data after the compact header
            // (`PyUnicodeObject.data`, Include/cpython/unicodeobject.h).
            self.mem.read_u64(field(obj, compact_size))?
        };
        let width = match kind {
            1 | 2 | 4 => kind as usize,
            _ => return Err(corrupt("str kind", obj)),
        };
        let shown = length.min(MAX_TEXT as u64) as usize;
        let bytes = self.mem.read_vec(data, shown * width, MAX_TEXT * 4)?;
        let chars: Vec<u32> = le_units(&bytes, width).collect();
        if chars.iter().any(|&c| c > 0x10_FFFF) || (ascii && chars.iter().any(|&c| c > 0x7f)) {
            return Err(corrupt("str text", obj));
        }
        ctx.out.push_str(&str_repr(&chars));
        ctx.more_of(length, shown as u64, "chars");
        Ok(())
    }

    /// A 2.7 `unicode`: `Py_UNICODE` (2 or 4 bytes) text behind a pointer.
    pub(super) fn write_unicode27(&self, obj: u64, ctx: &mut Ctx) -> Result<(), WalkError> {
        let l = self.layout;
        let need = |v: Option<u32>| v.ok_or_else(|| missing("2.7 unicode offsets"));
        let length = self.read_len(obj, need(l.unicode27_length)?, "unicode length")?;
        let data = self.mem.read_u64(field(obj, need(l.unicode27_str)?))?;
        let width = need(l.unicode27_char_size)? as usize;
        if width != 2 && width != 4 {
            return Err(missing("a plausible Py_UNICODE size"));
        }
        // One more unit than shown, so a surrogate pair at the cut is not split.
        let shown = length.min(MAX_TEXT as u64 + 1) as usize;
        let bytes = self.mem.read_vec(data, shown * width, (MAX_TEXT + 1) * 4)?;
        let mut units: Vec<u32> = le_units(&bytes, width).collect();
        units.truncate(MAX_TEXT);
        ctx.out.push_str(&unicode27_repr(&units));
        ctx.more_of(length, units.len() as u64, "chars");
        Ok(())
    }

    /// A 3.x `bytes` or 2.7 `str`: its first [`MAX_TEXT`] bytes, quoted and escaped.
    pub(super) fn write_bytes(&self, obj: u64, ctx: &mut Ctx) -> Result<(), WalkError> {
        let l = self.layout;
        let n = self.var_size(obj)?;
        let shown = n.min(MAX_TEXT as u64) as usize;
        let bytes = self
            .mem
            .read_vec(field(obj, l.bytes_ob_sval), shown, MAX_TEXT)?;
        let prefix = if l.string_model == StringModel::Bytes27 {
            ""
        } else {
            "b"
        };
        ctx.out.push_str(&bytes_repr(prefix, &bytes));
        ctx.more_of(n, shown as u64, "bytes");
        Ok(())
    }
}

/// A NUL-terminated C string of at most `max` bytes, read in 16-byte aligned pieces (an aligned
/// piece never crosses a page, so a name at the end of a mapping is still read; a piece that
/// fails anyway is read byte by byte), decoded lossily.
pub(crate) fn read_c_string<M: RemoteMemory + ?Sized>(
    mem: &M,
    addr: u64,
    max: usize,
) -> Result<String, WalkError> {
    if addr == 0 {
        return Err(corrupt("NULL name", addr));
    }
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < max {
        let piece = (16 - (at % 16)) as usize;
        let mut buf = [0u8; 16];
        if mem.read_into(at, &mut buf[..piece]).is_err() {
            // Memory that is not mapped by pages (a synthetic image, a core file's segment
            // ending mid-page): byte by byte, up to the NUL.
            for (i, b) in buf[..piece].iter_mut().enumerate() {
                *b = mem.read_u8(at.wrapping_add(i as u64))?;
                if *b == 0 {
                    break;
                }
            }
        }
        if let Some(end) = buf[..piece].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&buf[..piece]);
        at = at.wrapping_add(piece as u64);
    }
    out.truncate(max);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `text` with control characters (C0, DEL, C1) written as `\xNN`: a name from the target
/// (`type("a\nb", (), {})` makes a class whose name holds a newline) must not break the line
/// it is printed on.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        let c = u32::from(ch);
        if c < 0x20 || (0x7f..0xa0).contains(&c) {
            let _ = write!(out, "\\x{c:02x}");
        } else {
            out.push(ch);
        }
    }
    out
}

/// The quote Python picks: `'` unless the text has `'` and no `"`.
fn quote_for(has_single: bool, has_double: bool) -> char {
    if has_single && !has_double {
        '"'
    } else {
        '\''
    }
}

/// Python 3's `repr(str)` of code points `chars` (see the module documentation for what counts
/// as printable).
pub(crate) fn str_repr(chars: &[u32]) -> String {
    let q = quote_for(chars.contains(&0x27), chars.contains(&0x22));
    let mut out = String::with_capacity(chars.len() + 2);
    out.push(q);
    for &c in chars {
        if push_plain(&mut out, c, q) {
            continue;
        }
        match char::from_u32(c) {
            Some(ch) if c >= 0x80 && printable(c) => out.push(ch),
            _ => escape_code_point(&mut out, c),
        }
    }
    out.push(q);
    out
}

/// Write `c` as every text repr of Python writes it inside quotes `q`: backslash, tab,
/// newline, carriage return and `q` escaped, other printable ASCII as itself. `false`, and
/// nothing written, for any other code point (each repr escapes those its own way).
fn push_plain(out: &mut String, c: u32, q: char) -> bool {
    match c {
        0x5c => out.push_str("\\\\"),
        0x09 => out.push_str("\\t"),
        0x0a => out.push_str("\\n"),
        0x0d => out.push_str("\\r"),
        _ if c == q as u32 => {
            out.push('\\');
            out.push(q);
        }
        0x20..=0x7e => out.push(c as u8 as char),
        _ => return false,
    }
    true
}

/// `\xNN`, `\uNNNN` or `\UNNNNNNNN`, the shortest that fits, as Python writes them.
fn escape_code_point(out: &mut String, c: u32) {
    let _ = if c <= 0xff {
        write!(out, "\\x{c:02x}")
    } else if c <= 0xffff {
        write!(out, "\\u{c:04x}")
    } else {
        write!(out, "\\U{c:08x}")
    };
}

/// Whether Python's `str.isprintable` holds for the non-ASCII code point `c` (approximated:
/// see the module documentation).
fn printable(c: u32) -> bool {
    !matches!(c,
        0x80..=0xa0 | 0xad
        | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f
        | 0x1680 | 0x180e
        | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x206f
        | 0x3000
        | 0xd800..=0xf8ff
        | 0xfeff | 0xfff9..=0xfffb | 0xfffe | 0xffff
        | 0xe0001 | 0xe0020..=0xe007f
        | 0xf0000..=0x10ffff)
        && (c & 0xfffe) != 0xfffe
}

/// Python's `repr(bytes)` (`prefix` "b"), or 2.7's `repr(str)` (`prefix` "").
pub(crate) fn bytes_repr(prefix: &str, bytes: &[u8]) -> String {
    let q = quote_for(bytes.contains(&b'\''), bytes.contains(&b'"'));
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push_str(prefix);
    out.push(q);
    for &b in bytes {
        if !push_plain(&mut out, u32::from(b), q) {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push(q);
    out
}

/// Python 2.7's `repr(unicode)`: `u'...'`, everything outside printable ASCII escaped; UTF-16
/// surrogate pairs (UCS-2 builds) combined into one `\U` escape.
pub(crate) fn unicode27_repr(units: &[u32]) -> String {
    let q = quote_for(units.contains(&0x27), units.contains(&0x22));
    let mut out = String::from("u");
    out.push(q);
    let mut i = 0;
    while i < units.len() {
        let mut c = units[i];
        if (0xd800..0xdc00).contains(&c) {
            if let Some(&low) = units
                .get(i + 1)
                .filter(|&&lo| (0xdc00..0xe000).contains(&lo))
            {
                c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
                i += 1;
            }
        }
        if !push_plain(&mut out, c, q) {
            escape_code_point(&mut out, c);
        }
        i += 1;
    }
    out.push(q);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_are_escaped() {
        assert_eq!(escape_controls("a\nb\x7f\u{85}é"), "a\\x0ab\\x7f\\x85é");
        assert_eq!(escape_controls("Plain"), "Plain");
    }

    #[test]
    fn text_is_quoted_and_escaped_like_python() {
        let cps = |s: &str| s.chars().map(u32::from).collect::<Vec<_>>();
        assert_eq!(str_repr(&cps("abc")), "'abc'");
        assert_eq!(str_repr(&cps("it's")), "\"it's\"");
        assert_eq!(str_repr(&cps("'\"")), "'\\'\"'");
        assert_eq!(
            str_repr(&cps("a\tb\n\\\x00\x7f")),
            "'a\\tb\\n\\\\\\x00\\x7f'"
        );
        assert_eq!(str_repr(&cps("grüße 中 😀")), "'grüße 中 😀'");
        assert_eq!(
            str_repr(&[0xa0, 0xad, 0x2028, 0xdc80, 0x1f600]),
            "'\\xa0\\xad\\u2028\\udc80😀'"
        );
        assert_eq!(bytes_repr("b", b"a'\x00\xff\""), "b'a\\'\\x00\\xff\"'");
        assert_eq!(bytes_repr("b", b"it's"), "b\"it's\"");
        assert_eq!(
            unicode27_repr(&[0x67, 0xfc, 0x4e2d, 0xd83d, 0xde00, 0x1f600]),
            "u'g\\xfc\\u4e2d\\U0001f600\\U0001f600'"
        );
    }
}
