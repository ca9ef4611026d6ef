//! Flamegraph SVGs through the `inferno` crate, and differential flamegraphs.
//!
//! inferno writes names through quick-xml, which escapes text and attribute values; the tests
//! parse our output with an XML parser after feeding hostile names and targets through it. We
//! never use inferno's `notes` option (it lands in an XML comment, where `--` cannot be escaped).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{self, Write};

use inferno::flamegraph::color::{Color, MultiPalette, Palette, PaletteMap};
use inferno::flamegraph::{self, Options};
use strobe_aggregate::{Count, FrameId, FrameKind, Metadata, Profile};

use crate::collapsed::{escape, folded};
use crate::{frame_label, Format, Value};

/// Native frames are drawn in blues, kernel frames in orange, `<GC>` in grey, so that they stand apart from
/// the Python frames (reds for application code, yellow for the standard library, aqua for
/// site-packages: inferno's Python palette).
pub(crate) fn kind_colour(kind: FrameKind, label: &str) -> Option<Color> {
    // A stable variation per name, so that neighbouring frames can be told apart.
    let h = label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let v = (h % 40) as u8;
    match kind {
        FrameKind::Python => None,
        FrameKind::Native => Some(Color {
            r: 70 + v,
            g: 130 + v,
            b: 215,
        }),
        FrameKind::Kernel => Some(Color {
            r: 235,
            g: 140 + v / 2,
            b: 40,
        }),
        // `<GC>`: grey, time the interpreter spent on itself.
        FrameKind::Interpreter => Some(Color {
            r: 150,
            g: 150,
            b: 160,
        }),
        // `<raise T>`: red, time spent raising or handling an exception.
        FrameKind::Exception => Some(Color {
            r: 220,
            g: 40 + v,
            b: 40 + v,
        }),
        // `<task NAME>`: purple, where a task's own frames start.
        FrameKind::Task => Some(Color {
            r: 150 + v,
            g: 90,
            b: 200,
        }),
    }
}

/// The colours of the profile's native and kernel frames, by the name inferno sees.
fn kind_palette(profiles: &[&Profile]) -> PaletteMap {
    let mut map = PaletteMap::default();
    for p in profiles {
        for i in 0..p.tables.num_frames() {
            let id = FrameId(i as u32);
            let Some(f) = p.tables.frame(id) else {
                continue;
            };
            if f.kind == FrameKind::Python {
                continue;
            }
            let mut name = String::new();
            escape(&frame_label(p, id), &mut name);
            let name = printable(&name);
            if let Some(c) = kind_colour(f.kind, &name) {
                map.insert(name, c);
            }
        }
    }
    map
}

/// The `svg` format: an interactive flamegraph.
#[derive(Debug, Clone, Default)]
pub struct Svg {
    /// What widths measure.
    pub value: Value,
    /// Title; defaults to `strobe: TARGET`.
    pub title: Option<String>,
}

fn options(profile: &Profile, value: Value, title: Option<&str>) -> Options<'static> {
    options_for(
        &profile.meta,
        profile.total(),
        profile.rate_achieved_hz(),
        value,
        title,
    )
}

/// inferno's options for a profile of `meta` that counted `total` at `rate_achieved_hz`.
pub(crate) fn options_for(
    meta: &Metadata,
    total: Count,
    rate_achieved_hz: f64,
    value: Value,
    title: Option<&str>,
) -> Options<'static> {
    let mut o = Options::default();
    let title = title.map_or_else(|| format!("strobe: {}", meta.target), str::to_owned);
    o.title = printable(&title);
    o.subtitle = Some(printable(&subtitle(meta, total, rate_achieved_hz)));
    o.count_name = value.unit_name().to_owned();
    o.colors = Palette::Multi(MultiPalette::Python);
    // Colour by hash of the name: the same input gives the same picture (diffable, golden-testable).
    o.hash = true;
    o
}

fn subtitle(m: &Metadata, total: Count, rate_achieved_hz: f64) -> String {
    let mut s = String::new();
    if let Some(v) = &m.python_version {
        let _ = write!(s, "Python {v} · ");
    }
    let _ = write!(
        s,
        "{} samples over {:.2} s · rate {:.0} Hz requested, {:.0} Hz achieved",
        total.samples,
        m.duration_ns as f64 / 1e9,
        m.rate_requested_hz,
        rate_achieved_hz
    );
    if m.errors > 0 {
        let _ = write!(s, " · {} sampling errors", m.errors);
    }
    if m.dropped > 0 {
        let _ = write!(s, " · {} samples dropped", m.dropped);
    }
    s
}

impl Format for Svg {
    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let lines: Vec<String> = folded(profile)
            .into_iter()
            .filter_map(|(stack, c)| {
                let v = self.value.of(c);
                (v > 0).then(|| format!("{stack} {v}"))
            })
            .collect();
        let mut palette = kind_palette(&[profile]);
        let mut opts = options(profile, self.value, self.title.as_deref());
        opts.palette_map = Some(&mut palette);
        if lines.is_empty() {
            return empty_svg(&opts.title, "No samples were recorded.", out);
        }
        flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
    }
}

/// Options for a differential flamegraph.
#[derive(Debug, Clone, Copy)]
pub struct DiffSvg {
    /// What widths measure.
    pub value: Value,
    /// Scale the base profile to the new one's total first, so that a longer or shorter
    /// recording does not colour everything red or blue.
    pub normalize: bool,
}

impl Default for DiffSvg {
    fn default() -> Self {
        DiffSvg {
            value: Value::Micros,
            normalize: true,
        }
    }
}

/// Writes a differential flamegraph (`strobe diff BASE NEW`): frame widths are from `new`,
/// colours show growth (red) or shrinkage (blue) relative to `base`.
pub fn write_diff_svg(
    base: &Profile,
    new: &Profile,
    opts: &DiffSvg,
    out: &mut dyn Write,
) -> io::Result<()> {
    let a = folded(base);
    let b = folded(new);
    let total = |m: &std::collections::BTreeMap<String, strobe_aggregate::Count>| -> u64 {
        m.values().map(|c| opts.value.of(*c)).sum()
    };
    let (ta, tb) = (total(&a), total(&b));
    let scale = if opts.normalize && ta > 0 {
        tb as f64 / ta as f64
    } else {
        1.0
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let lines: Vec<String> = keys
        .into_iter()
        .map(|k| {
            let va = a.get(k).map_or(0, |c| opts.value.of(*c));
            let vb = b.get(k).map_or(0, |c| opts.value.of(*c));
            let va = (va as f64 * scale).round() as u64;
            format!("{k} {va} {vb}")
        })
        .collect();
    let title = format!("strobe diff: {} → {}", base.meta.target, new.meta.target);
    let mut o = options(new, opts.value, Some(&title));
    o.subtitle = Some(format!(
        "red: more in the new profile, blue: less{}",
        if opts.normalize {
            " (base scaled to the same total)"
        } else {
            ""
        }
    ));
    if lines.is_empty() {
        return empty_svg(&o.title, "Neither profile has samples.", out);
    }
    flamegraph::from_lines(&mut o, lines.iter().map(String::as_str), out)
}

/// quick-xml escapes markup characters but passes control characters through, and XML 1.0
/// cannot contain most of them at all: replace them. (Frame names reach inferno already escaped
/// by the folded format, which spells control characters out.)
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // XML 1.0 cannot represent most control characters, even as references.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

pub(crate) fn empty_svg(title: &str, message: &str, out: &mut dyn Write) -> io::Result<()> {
    write!(
        out,
        concat!(
            r#"<?xml version="1.0" standalone="no"?>"#,
            "\n",
            r#"<svg version="1.1" width="1200" height="80" xmlns="http://www.w3.org/2000/svg">"#,
            "\n",
            r#"<text x="600" y="30" text-anchor="middle" font-size="17" font-family="monospace">{}</text>"#,
            "\n",
            r#"<text x="600" y="60" text-anchor="middle" font-size="14" font-family="monospace">{}</text>"#,
            "\n</svg>\n"
        ),
        xml_escape(title),
        xml_escape(message)
    )
}
