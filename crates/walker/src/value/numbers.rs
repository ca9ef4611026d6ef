//! Numbers: `int` (any size, 3.x and 2.7 `long`) read digit by digit and converted to decimal,
//! and `float` written as Python's `repr` writes it.

use std::fmt::Write as _;

use strobe_memory::RemoteMemory;
use strobe_python_abi::StringModel;

use super::{corrupt, field, le_units, missing, Ctx, ValueReader, MAX_INT_SHOWN, MAX_INT_WORDS};
use crate::error::WalkError;

impl<M: RemoteMemory + ?Sized> ValueReader<'_, M> {
    /// Sign and 30-bit digits (least significant first) of a 3.x `int` / 2.7 `long` whose digits
    /// start at `digits`; refuses more than [`MAX_INT_WORDS`] with `Ok((_, empty))` never: the
    /// caller checks the count first through [`ValueReader::long_size`].
    pub(super) fn long_digits(&self, obj: u64, digits: u64) -> Result<(bool, Vec<u32>), WalkError> {
        let (negative, n) = self.long_size(obj)?;
        if n > MAX_INT_WORDS as u64 {
            return Err(corrupt("int size", obj));
        }
        self.read_digits(digits, n as usize).map(|d| (negative, d))
    }

    /// Sign and digit count of an `int`: `lv_tag` (3.12+, `pycore_long.h`: count << 3 | sign,
    /// sign 0 positive, 1 zero, 2 negative) or the signed `ob_size` (≤3.11, 2.7 `long`).
    fn long_size(&self, obj: u64) -> Result<(bool, u64), WalkError> {
        let l = self.layout;
        match l.long_lv_tag {
            Some(tag_at) if l.string_model != StringModel::Bytes27 => {
                let tag = self.mem.read_u64(field(obj, tag_at))?;
                let sign = tag & 3;
                if sign == 3 {
                    return Err(corrupt("int lv_tag", obj));
                }
                let n = tag >> 3;
                if sign == 1 && n != 0 {
                    return Err(corrupt("int lv_tag", obj));
                }
                Ok((sign == 2, n))
            }
            _ => {
                let size = self.mem.read_u64(field(obj, l.pyvarobject_ob_size))? as i64;
                Ok((size < 0, size.unsigned_abs()))
            }
        }
    }

    fn read_digits(&self, at: u64, n: usize) -> Result<Vec<u32>, WalkError> {
        let l = self.layout;
        let size = l.long_digit_size as usize;
        if !(size == 2 || size == 4) || l.long_digit_bits == 0 || l.long_digit_bits > 31 {
            return Err(missing("a plausible int digit size"));
        }
        let buf = self.mem.read_vec(at, n * size, MAX_INT_WORDS * size)?;
        le_units(&buf, size)
            .map(|d| {
                if d >> l.long_digit_bits != 0 {
                    Err(corrupt("int digit", at))
                } else {
                    Ok(d)
                }
            })
            .collect()
    }

    pub(super) fn write_long(
        &self,
        obj: u64,
        digits_at: u64,
        suffix: &str,
        ctx: &mut Ctx,
    ) -> Result<(), WalkError> {
        let (negative, n) = self.long_size(obj)?;
        if n > MAX_INT_WORDS as u64 {
            let bits = n.saturating_mul(u64::from(self.layout.long_digit_bits));
            let _ = write!(
                ctx.out,
                "<{}int of about {bits} bits>",
                if negative { "negative " } else { "" }
            );
            ctx.truncated = true;
            return Ok(());
        }
        let digits = self.read_digits(digits_at, n as usize)?;
        let decimal = to_decimal(&digits, self.layout.long_digit_bits);
        if negative && decimal != "0" {
            ctx.out.push('-');
        }
        if decimal.len() > MAX_INT_SHOWN {
            let _ = write!(
                ctx.out,
                "{}... ({} digits)",
                &decimal[..MAX_INT_SHOWN],
                decimal.len()
            );
            ctx.truncated = true;
        } else {
            ctx.out.push_str(&decimal);
            ctx.out.push_str(suffix);
        }
        Ok(())
    }
}

/// Decimal text of the magnitude whose `bits`-bit digits are `digits`, least significant first.
fn to_decimal(digits: &[u32], bits: u32) -> String {
    // Base 10^9 limbs, least significant first: multiply by 2^bits and add each digit.
    const BASE: u64 = 1_000_000_000;
    let mut limbs: Vec<u64> = Vec::new();
    for &d in digits.iter().rev() {
        let mut carry = u64::from(d);
        for limb in limbs.iter_mut() {
            let v = (*limb << bits) + carry;
            *limb = v % BASE;
            carry = v / BASE;
        }
        while carry > 0 {
            limbs.push(carry % BASE);
            carry /= BASE;
        }
    }
    let Some((top, rest)) = limbs.split_last() else {
        return "0".to_string();
    };
    let mut s = top.to_string();
    for limb in rest.iter().rev() {
        let _ = write!(s, "{limb:09}");
    }
    s
}

/// Python's `repr(float)`: the shortest digits that read back the same, in fixed notation when
/// the decimal point falls within 16 digits, else in exponent notation (`1e+16`, `1.5e-07`)
/// (`float_repr_style` "short", `format_float_short` with mode 'r').
pub fn float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let decpt = exp + 1;
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    } else if decpt <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat(decpt.unsigned_abs() as usize));
        out.push_str(&digits);
    } else {
        let decpt = decpt as usize;
        if decpt >= digits.len() {
            out.push_str(&digits);
            out.push_str(&"0".repeat(decpt - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt]);
            out.push('.');
            out.push_str(&digits[decpt..]);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_back_like_python() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (std::f64::consts::PI, "3.141592653589793"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-2.5e300, "-2.5e+300"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (v, want) in cases {
            assert_eq!(float_repr(v), want, "{v:e}");
        }
    }

    #[test]
    fn ints_convert_to_decimal() {
        assert_eq!(to_decimal(&[], 30), "0");
        assert_eq!(to_decimal(&[5], 30), "5");
        // 2**30 and 2**60 + 1.
        assert_eq!(to_decimal(&[0, 1], 30), "1073741824");
        assert_eq!(to_decimal(&[1, 0, 1], 30), "1152921504606846977");
        // 2**200: digit 6 (bit 180) holds 2**20.
        let mut d = vec![0u32; 7];
        d[6] = 1 << 20;
        assert_eq!(
            to_decimal(&d, 30),
            "1606938044258990275541962092341162602522202993782792835301376"
        );
    }
}
