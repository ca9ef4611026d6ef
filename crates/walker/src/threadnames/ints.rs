//! `int` objects decoded as thread idents (the keys of `threading._active`): 2.7's `int` and
//! `long`, and 3.x's `int` before and after 3.12's `lv_tag`.

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::StringModel;

use super::{field, Kind, Reader};
use crate::error::WalkError;

/// `PYLONG_BITS_IN_DIGIT` (`Include/pyport.h`): 30 on every 64-bit build we support.
const LONG_DIGIT_BITS: u32 = 30;
/// `NON_SIZE_BITS` (3.12+, `Include/internal/pycore_long.h`): `lv_tag >> 3` is the digit count.
const LV_TAG_NON_SIZE_BITS: u32 = 3;
/// `SIGN_MASK` (3.12+, `pycore_long.h`): 0 positive, 1 zero, 2 negative.
const LV_TAG_SIGN_MASK: u64 = 3;
/// A `pthread_t` needs at most three 30-bit digits.
const MAX_IDENT_DIGITS: usize = 3;

impl<'a, M: RemoteMemory + ?Sized> Reader<'a, M> {
    /// The value of an `int` key as a thread ident; `None` for anything that is not a
    /// non-negative integer fitting in 64 bits.
    pub(super) fn read_ident(&mut self, obj: u64) -> Result<Option<u64>, WalkError> {
        let l = self.layout;
        match self.kind_of(obj)? {
            // 2.7 `PyIntObject {PyObject_HEAD; long ob_ival}` (`Include/intobject.h`);
            // `Layout::long_digit` holds `ob_ival` there.
            Kind::Int if l.string_model == StringModel::Bytes27 => {
                let v = self.mem.read_u64(field(obj, u64::from(l.long_digit)))? as i64;
                Ok(u64::try_from(v).ok())
            }
            Kind::Int => {
                let (negative, ndigits) = match l.long_lv_tag {
                    // 3.12+ (`pycore_long.h`): `lv_tag` = digit count << 3 | sign.
                    Some(tag_off) => {
                        let tag = self.mem.read_u64(field(obj, u64::from(tag_off)))?;
                        (tag & LV_TAG_SIGN_MASK == 2, tag >> LV_TAG_NON_SIZE_BITS)
                    }
                    // ≤3.11 (`Include/longintrepr.h`): `ob_size` is the signed digit count.
                    None => {
                        let size = self
                            .mem
                            .read_u64(field(obj, u64::from(l.pyvarobject_ob_size)))?
                            as i64;
                        (size < 0, size.unsigned_abs())
                    }
                };
                if negative {
                    return Ok(None);
                }
                self.read_digits(field(obj, u64::from(l.long_digit)), ndigits)
            }
            // 2.7 `PyLongObject {PyObject_VAR_HEAD; digit ob_digit[1]}` (`longintrepr.h`):
            // digits right after the variable-size header.
            Kind::Long27 => {
                let size = self
                    .mem
                    .read_u64(field(obj, u64::from(l.pyvarobject_ob_size)))?
                    as i64;
                if size < 0 {
                    return Ok(None);
                }
                let digits = field(obj, u64::from(l.pyvarobject_ob_size) + 8);
                self.read_digits(digits, size.unsigned_abs())
            }
            _ => Ok(None),
        }
    }

    /// Combine `ndigits` 30-bit digits (least significant first) into a `u64`.
    fn read_digits(&self, addr: u64, ndigits: u64) -> Result<Option<u64>, WalkError> {
        let Some(n) = usize::try_from(ndigits)
            .ok()
            .filter(|&n| n <= MAX_IDENT_DIGITS)
        else {
            return Ok(None);
        };
        let buf = self.mem.read_vec(addr, n * 4, MAX_IDENT_DIGITS * 4)?;
        let mut value: u128 = 0;
        for (i, c) in buf.chunks_exact(4).enumerate() {
            let d = le::u32_at(c, 0).ok_or(Self::corrupt("int digit", addr))?;
            if d >> LONG_DIGIT_BITS != 0 {
                return Err(Self::corrupt("int digit", addr));
            }
            value |= u128::from(d) << (LONG_DIGIT_BITS as usize * i);
        }
        Ok(u64::try_from(value).ok())
    }
}
