//! JSON string escaping.
//!
//! A Rust `&str` is valid UTF-8, so it cannot hold a lone surrogate: the reader replaces those
//! (Python allows them in `str`, e.g. `surrogateescape`d file names) with U+FFFD when it decodes
//! a name, and here every string is written as valid JSON whatever it contains.

/// Appends `s` as a quoted JSON string. Control characters become `\uXXXX`; U+2028 and U+2029
/// are escaped too, since they end lines in JavaScript and some viewers `eval`-like load traces.
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a quoted JSON string.
pub(crate) fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_str(&mut out, s);
    out
}

/// A finite f64 as JSON (JSON has no NaN/inf: those become 0).
pub(crate) fn number(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        String::from("0")
    }
}

/// Nanoseconds as microseconds with three decimals, exactly (no float rounding).
pub(crate) fn micros(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}
