//! Decoding Python `str` (and 2.7 `str`/bytes) objects from the target.

use crate::WalkError;
use strobe_python_abi::{Layout, StringModel};
use strobe_remote::{le, RemoteMemory};

/// Longest string (in characters) we accept for a name or file name.
pub const MAX_STRING_CHARS: usize = 16 * 1024;

/// Read the text of a `str` object (`PyStringObject` on 2.7) at `addr`.
///
/// Every length is bounded by [`MAX_STRING_CHARS`]; invalid UCS-2/UCS-4 code points and
/// unknown kinds are errors, not replacement characters, because they mean we read garbage.
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
            let size_at = addr + u64::from(layout.pyvarobject_ob_size);
            let len = mem.read_u64(size_at)? as i64;
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= MAX_STRING_CHARS)
                .ok_or(WalkError::Corrupt {
                    what: "string length",
                    addr,
                })?;
            let bytes = mem.read_vec(
                addr + u64::from(layout.bytes_ob_sval),
                len,
                MAX_STRING_CHARS,
            )?;
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

    // One read covers the header of every compact string.
    let mut head = [0u8; 128];
    let head_len = (compact_size as usize).min(head.len());
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
        addr + u64::from(if ascii { ascii_size } else { compact_size })
    } else {
        // Legacy (non-compact) strings keep a pointer to their data right after the compact header.
        mem.read_u64(addr + u64::from(compact_size))?
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
        2 => bytes
            .chunks_exact(2)
            .map(|c| char::from_u32(u32::from(u16::from_le_bytes([c[0], c[1]]))))
            .collect::<Option<String>>()
            .ok_or(corrupt("UCS-2 string")),
        _ => bytes
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect::<Option<String>>()
            .ok_or(corrupt("UCS-4 string")),
    }
}
