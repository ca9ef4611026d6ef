//! Decoding Python `str` (and 2.7 `str`/bytes) objects from the target.

use crate::error::WalkError;
use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::{Layout, StringModel};

/// Longest string (in characters) we accept for a name or file name.
pub const MAX_STRING_CHARS: usize = 16 * 1024;

/// Read the text of a `str` object (`PyStringObject` on 2.7) at `addr`.
///
/// Every length is bounded by [`MAX_STRING_CHARS`]. Lone surrogates (legal in Python strings,
/// e.g. undecodable bytes of a file name under `surrogateescape`) become U+FFFD; values beyond
/// U+10FFFF, non-ASCII bytes in an ASCII string and unknown kinds are errors, because they mean
/// we read garbage.
pub fn read_string<M: RemoteMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
) -> Result<String, WalkError> {
    if addr == 0 {
        return Err(WalkError::Corrupt {
            what: "NULL string",
            addr,
        });
    }
    match layout.string_model {
        StringModel::Bytes27 => {
            let size_at = field(addr, layout.pyvarobject_ob_size);
            let len = mem.read_u64(size_at)? as i64;
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= MAX_STRING_CHARS)
                .ok_or(WalkError::Corrupt {
                    what: "string length",
                    addr,
                })?;
            let bytes = mem.read_vec(field(addr, layout.bytes_ob_sval), len, MAX_STRING_CHARS)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        StringModel::Compact33 => read_unicode(mem, layout, addr),
    }
}

fn read_unicode<M: RemoteMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
) -> Result<String, WalkError> {
    let missing = || WalkError::Unsupported("layout lacks unicode offsets".into());
    let length_off = layout.unicode_length.ok_or_else(missing)? as usize;
    let state_off = layout.unicode_state.ok_or_else(missing)? as usize;
    let ascii_size = layout.unicode_ascii_size.ok_or_else(missing)?;
    let compact_size = layout.unicode_compact_size.ok_or_else(missing)?;
    let kind_mask = layout.unicode_kind_mask.ok_or_else(missing)?;
    let compact_mask = layout.unicode_compact_mask.ok_or_else(missing)?;
    let ascii_mask = layout.unicode_ascii_mask.ok_or_else(missing)?;

    // `PyASCIIObject` holds length and state; read no more than that, because a short ASCII
    // string ends right after it and the bytes beyond may be unmapped.
    let mut head = [0u8; 128];
    let head_len = ascii_size as usize;
    if head_len > head.len() || head_len < state_off + 4 || head_len < length_off + 8 {
        return Err(WalkError::Unsupported(format!(
            "implausible PyASCIIObject size {head_len} in the layout"
        )));
    }
    mem.read_into(addr, &mut head[..head_len])?;
    let corrupt = |what| WalkError::Corrupt { what, addr };
    let length = le::u64_at(&head, length_off).ok_or(corrupt("string header"))? as i64;
    let state = le::u32_at(&head, state_off).ok_or(corrupt("string header"))?;
    let length = usize::try_from(length)
        .ok()
        .filter(|&l| l <= MAX_STRING_CHARS)
        .ok_or(corrupt("string length"))?;
    let kind = (state & kind_mask) >> kind_mask.trailing_zeros();
    let compact = state & compact_mask != 0;
    let ascii = state & ascii_mask != 0;
    let data = if compact {
        field(addr, if ascii { ascii_size } else { compact_size })
    } else {
        // Legacy (non-compact) strings keep a pointer to their data right after the compact
        // header (`PyUnicodeObject.data`, Include/cpython/unicodeobject.h).
        mem.read_u64(field(addr, compact_size))?
    };
    let width = match kind {
        1 | 2 | 4 => kind as usize,
        _ => return Err(corrupt("string kind")),
    };
    let bytes = mem.read_vec(data, length * width, MAX_STRING_CHARS * 4)?;
    match width {
        1 if ascii => {
            if !bytes.is_ascii() {
                return Err(corrupt("ASCII string"));
            }
            Ok(bytes.iter().map(|&b| b as char).collect())
        }
        1 => Ok(bytes.iter().map(|&b| b as char).collect()),
        2 => Ok(bytes
            .chunks_exact(2)
            .map(|c| ucs_char(u32::from(u16::from_le_bytes([c[0], c[1]]))))
            .collect::<String>()),
        _ => bytes
            .chunks_exact(4)
            .map(|c| {
                let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                // Above U+10FFFF is no code point at all: we are reading garbage.
                (v <= 0x10_FFFF).then(|| ucs_char(v))
            })
            .collect::<Option<String>>()
            .ok_or(corrupt("UCS-4 string")),
    }
}

/// A code point of a UCS-2/UCS-4 string. Python strings may hold lone surrogates
/// (U+D800–U+DFFF, e.g. file names decoded with `surrogateescape`), which Rust's `char` cannot:
/// they become U+FFFD.
fn ucs_char(v: u32) -> char {
    char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// `addr + off`: the address of a member. `addr` comes from the target and may be garbage near
/// `u64::MAX`; the sum wraps to an unmapped address whose read fails, instead of overflowing.
fn field(addr: u64, off: u32) -> u64 {
    addr.wrapping_add(u64::from(off))
}
