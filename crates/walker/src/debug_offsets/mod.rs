//! `_Py_DebugOffsets`: the layout description CPython 3.13+ keeps at the start of `_PyRuntime`.
//!
//! Since 3.13 the runtime state begins with a struct that spells out the byte offsets of the
//! members an out-of-process reader needs (`Include/internal/pycore_runtime.h` in 3.13,
//! `Include/internal/pycore_debug_offsets.h` since 3.14). Its header is fixed in every version:
//! `char cookie[8] = "xdebugpy"`, `uint64_t version` (`PY_VERSION_HEX`), `uint64_t
//! free_threaded`; sections of `uint64_t` follow, most starting with the described struct's
//! `sizeof`.
//!
//! Where each member sits *inside* `_Py_DebugOffsets` changes between minor releases (and did
//! between pre-releases), so we read it with a generated position table
//! ([`DebugOffsetsTable`]), validate every value we use against the sizes the target reports,
//! and lay the values over the generated [`Layout`] of the same minor release: the target's own
//! numbers win, and distro patches or point-release changes (3.13.1 grew `PyThreadState` by one
//! pointer) are picked up without a new table.

use std::collections::BTreeMap;

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::{DebugOffsetsTable, Flavour, Layout, Version};

use crate::error::WalkError;

mod members;

pub use members::{layout_field, overlay_field_names};
use members::{Kind, FIELDS, MAX_SMALL_SIZE};

/// `_Py_Debug_Cookie` (`pycore_runtime.h` 3.13, `pycore_debug_offsets.h` 3.14+).
pub const COOKIE: &[u8; 8] = b"xdebugpy";

/// Length of the fixed header: `cookie[8]`, `version`, `free_threaded`. Its layout is the same
/// in every version that has the struct, which is what lets us pick a position table.
pub const HEADER_LEN: usize = 24;

/// Upper bound on `sizeof(_Py_DebugOffsets)` we agree to read (3.15 is 888 bytes).
pub const MAX_STRUCT_SIZE: usize = 64 * 1024;

/// First release of each known minor line whose `_Py_DebugOffsets` has the layout of the final
/// release (and so of our generated position table). Earlier pre-releases are refused:
/// - 3.13.0rc2 added members to the struct (3.13.0b4 and rc2 both changed it).
/// - 3.14: members were still being added during the alphas and betas; we only trust the
///   ABI-frozen release candidates.
/// - 3.15.0b4 inserted `thread_state.last_profiled_frame_seq`.
const FIRST_MATCHING_RELEASE: &[(u8, u8, u64)] = &[
    (3, 13, 0x030d_00c2),
    (3, 14, 0x030e_00c1),
    (3, 15, 0x030f_00b4),
];

/// The fixed header of `_Py_DebugOffsets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `PY_VERSION_HEX` of the target.
    pub version: Version,
    /// Whether the target is a free-threaded (`Py_GIL_DISABLED`) build.
    pub free_threaded: bool,
}

/// Read and check the fixed header at `runtime` (the address of `_PyRuntime`).
///
/// `detected` is the version found by other means (symbols, file names); the header must be of
/// the same major.minor, or the address is not what we think it is.
pub fn read_header<M: RemoteMemory + ?Sized>(
    mem: &M,
    runtime: u64,
    detected: Version,
) -> Result<Header, WalkError> {
    let mut buf = [0u8; HEADER_LEN];
    mem.read_into(runtime, &mut buf)?;
    decode_header(&buf, runtime, detected)
}

/// Check and decode the header from a copy of (at least) its first [`HEADER_LEN`] bytes.
fn decode_header(buf: &[u8], runtime: u64, detected: Version) -> Result<Header, WalkError> {
    let cookie = buf.get(..8).unwrap_or_default();
    if cookie != COOKIE {
        return Err(WalkError::Unsupported(format!(
            "_PyRuntime at {runtime:#x} does not start with the _Py_DebugOffsets cookie \
             \"xdebugpy\" (found \"{}\"): CPython {detected} should have it there; either the \
             _PyRuntime symbol was resolved to the wrong address or the target's memory is \
             corrupted. Check that the target really runs CPython {detected}",
            cookie.escape_ascii()
        )));
    }
    let version_hex = le::u64_at(buf, 8).unwrap_or_default();
    let version = Version::from_hex(version_hex);
    if !version.same_minor(detected) || version_hex >> 32 != 0 {
        return Err(WalkError::Unsupported(format!(
            "_Py_DebugOffsets.version is {version_hex:#x} ({version}), but the target was \
             detected as CPython {detected}: refusing to read a layout that contradicts the \
             version; check that the right interpreter (and _PyRuntime) was found"
        )));
    }
    let free_threaded = match le::u64_at(buf, 16).unwrap_or_default() {
        0 => false,
        1 => true,
        other => {
            return Err(WalkError::Unsupported(format!(
                "_Py_DebugOffsets.free_threaded of CPython {version} is {other}, not 0 or 1: the \
                 table is corrupted or from a CPython strobe does not know; refusing to guess"
            )))
        }
    };
    Ok(Header {
        version,
        free_threaded,
    })
}

/// Refuse pre-releases whose `_Py_DebugOffsets` layout predates our position table.
pub fn check_release(version: Version) -> Result<(), WalkError> {
    let first = FIRST_MATCHING_RELEASE
        .iter()
        .find(|(major, minor, _)| *major == version.major && *minor == version.minor);
    match first {
        Some(&(_, _, first)) if version.to_hex() < first => Err(WalkError::Unsupported(format!(
            "CPython {version} is a pre-release whose _Py_DebugOffsets layout differs from the \
                 final {}.{} release strobe knows (supported from {}); refusing to guess its \
                 layout: profile a newer {}.{} release",
            version.major,
            version.minor,
            Version::from_hex(first),
            version.major,
            version.minor,
        ))),
        _ => Ok(()),
    }
}

/// The generated tables to use for one target.
#[derive(Debug, Clone)]
pub struct Selected<'a> {
    /// The generated layout the target's values are laid over.
    pub base: &'a Layout,
    /// Where each member sits inside `_Py_DebugOffsets`.
    pub positions: &'a DebugOffsetsTable,
    /// Set when the target is newer than every table we have.
    pub warning: Option<String>,
}

/// Pick the generated layout and position table for `version` and `flavour`.
///
/// A minor newer than any we know uses the newest known tables of the same flavour (the struct
/// has so far only grown between minors, and every value we take from it is validated), with a
/// warning. A known minor without a table for this flavour is refused.
pub fn select<'a>(
    version: Version,
    flavour: Flavour,
    layouts: &'a [Layout],
    tables: &'a [DebugOffsetsTable],
) -> Result<Selected<'a>, WalkError> {
    let layout_for = |minor: u8| {
        layouts.iter().find(|l| {
            l.version.major == version.major && l.version.minor == minor && l.flavour == flavour
        })
    };
    let table_for = |minor: u8| {
        tables.iter().find(|t| {
            t.version.major == version.major && t.version.minor == minor && t.flavour == flavour
        })
    };
    if let (Some(base), Some(positions)) = (layout_for(version.minor), table_for(version.minor)) {
        return Ok(Selected {
            base,
            positions,
            warning: None,
        });
    }
    let newest = tables
        .iter()
        .filter(|t| t.version.major == version.major && t.flavour == flavour)
        .map(|t| t.version.minor)
        .filter(|&minor| layout_for(minor).is_some())
        .max();
    match (
        newest,
        newest.and_then(layout_for),
        newest.and_then(table_for),
    ) {
        (Some(minor), Some(base), Some(positions)) if version.minor > minor => Ok(Selected {
            base,
            positions,
            warning: Some(format!(
                "CPython {version} is newer than strobe knows (newest {}.{minor}); using its \
                 _Py_DebugOffsets",
                version.major
            )),
        }),
        _ => Err(WalkError::Unsupported(format!(
            "strobe has no layout for CPython {version} ({}); known for this flavour: {}",
            flavour_name(flavour),
            known_minors(tables, version.major, flavour)
        ))),
    }
}

fn flavour_name(flavour: Flavour) -> &'static str {
    match (flavour.free_threaded, flavour.debug) {
        (false, false) => "default build",
        (true, false) => "free-threaded build",
        (false, true) => "debug build",
        (true, true) => "free-threaded debug build",
    }
}

fn known_minors(tables: &[DebugOffsetsTable], major: u8, flavour: Flavour) -> String {
    let mut minors: Vec<u8> = tables
        .iter()
        .filter(|t| t.version.major == major && t.flavour == flavour)
        .map(|t| t.version.minor)
        .collect();
    minors.sort_unstable();
    minors.dedup();
    if minors.is_empty() {
        return "none".to_string();
    }
    minors
        .iter()
        .map(|m| format!("{major}.{m}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The values of a target's `_Py_DebugOffsets`, by member name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugOffsets {
    /// The target's exact version.
    pub version: Version,
    /// Whether the target is free-threaded.
    pub free_threaded: bool,
    /// How many bytes were read (`sizeof(_Py_DebugOffsets)` of the position table).
    pub struct_size: usize,
    values: BTreeMap<&'static str, u64>,
}

impl DebugOffsets {
    /// Read the whole struct at `runtime` in one bounded read, check its header against
    /// `detected` (see [`read_header`]) and decode every member the position table names.
    pub fn read<M: RemoteMemory + ?Sized>(
        mem: &M,
        runtime: u64,
        detected: Version,
        positions: &DebugOffsetsTable,
    ) -> Result<DebugOffsets, WalkError> {
        let refuse = |what: String| {
            WalkError::Unsupported(format!(
                "the generated _Py_DebugOffsets position table for CPython {}.{} is unusable: \
                 {what}; regenerate python-abi tables (python-abi/gen/abigen.py)",
                positions.version.major, positions.version.minor
            ))
        };
        // The header is fixed; a table that disagrees was generated from something else.
        for (name, pos) in [("cookie", 0), ("version", 8), ("free_threaded", 16)] {
            if positions.position(name) != Some(pos) {
                return Err(refuse(format!("{name} is not at byte {pos}")));
            }
        }
        let size = positions
            .position("__size")
            .ok_or_else(|| refuse("it has no __size".to_string()))?;
        let size = usize::try_from(size).map_err(|_| refuse("__size overflows".to_string()))?;
        if !(HEADER_LEN..=MAX_STRUCT_SIZE).contains(&size) {
            return Err(refuse(format!("__size {size} is out of bounds")));
        }
        let buf = mem.read_vec(runtime, size, MAX_STRUCT_SIZE)?;
        let header = decode_header(&buf, runtime, detected)?;
        let mut values = BTreeMap::new();
        for &(name, pos) in positions.fields {
            if matches!(name, "cookie" | "__size") {
                continue;
            }
            let value = usize::try_from(pos)
                .ok()
                .and_then(|pos| le::u64_at(&buf, pos))
                .ok_or_else(|| refuse(format!("{name} at byte {pos} is past __size {size}")))?;
            values.insert(name, value);
        }
        Ok(DebugOffsets {
            version: header.version,
            free_threaded: header.free_threaded,
            struct_size: size,
            values,
        })
    }

    /// The raw value of a member (`"thread_state.current_frame"`), if the table names it.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.values.get(name).copied()
    }

    /// Lay the target's values over `base` (the generated layout for this minor and flavour,
    /// or the newest known one), validating every value used.
    ///
    /// The result's `version` and `flavour.free_threaded` are the target's.
    pub fn overlay(&self, base: &Layout) -> Result<Overlay, WalkError> {
        let mut layout = *base;
        layout.version = self.version;
        layout.flavour.free_threaded = self.free_threaded;
        let mut fields = Vec::new();
        let mut checked_sizes: BTreeMap<&'static str, u64> = BTreeMap::new();

        for f in FIELDS {
            let Some(raw) = self.get(f.source) else {
                // Not in this version's struct (e.g. `interpreter_frame.stackpointer` before
                // 3.14): keep the generated value.
                continue;
            };
            let value = match f.kind {
                Kind::Size { max } => {
                    if raw == 0 || raw > max {
                        return Err(self.invalid(format!(
                            "{} = {raw} is not a plausible struct size (1..={max})",
                            f.source
                        )));
                    }
                    checked_sizes.insert(f.source, raw);
                    raw
                }
                Kind::SizeWithin { within } => {
                    let limit = self.limit(within, &checked_sizes)?;
                    if raw == 0 || raw > limit {
                        return Err(self.invalid(format!(
                            "{} = {raw} does not fit in {within} = {limit}",
                            f.source
                        )));
                    }
                    checked_sizes.insert(f.source, raw);
                    raw
                }
                Kind::Offset { within, width } => {
                    self.check_fits(f.source, raw, width, within, &checked_sizes)?;
                    raw
                }
                Kind::OffsetIfFreeThreaded { within, width } => {
                    // The header defines these as 0 in default builds
                    // (`_Py_Debug_code_object_co_tlbc`, `_Py_Debug_interpreter_frame_tlbc_index`
                    // in pycore_debug_offsets.h): the member does not exist there.
                    if !self.free_threaded {
                        if let Some(target) = f.target {
                            (target.set)(&mut layout, None);
                            push_once(&mut fields, target.name);
                        }
                        continue;
                    }
                    if raw == 0 {
                        return Err(self.invalid(format!(
                            "{} is 0 in a free-threaded build, where the member exists",
                            f.source
                        )));
                    }
                    self.check_fits(f.source, raw, width, within, &checked_sizes)?;
                    raw
                }
                Kind::GilMember { width } => {
                    // `gil_runtime_state_*` are offsets within PyInterpreterState of members of
                    // its embedded `_gil` (pycore_debug_offsets.h: `offsetof(PyInterpreterState,
                    // _gil.locked)`); our Layout wants them relative to `struct
                    // _gil_runtime_state`, since `ceval.gil` may point at another interpreter's.
                    let base_name = "interpreter_state.gil_runtime_state";
                    let gil = self.get(base_name).ok_or_else(|| {
                        self.invalid(format!("{} is present but {base_name} is not", f.source))
                    })?;
                    self.check_fits(base_name, gil, 1, "interpreter_state.size", &checked_sizes)?;
                    self.check_fits(
                        f.source,
                        raw,
                        width,
                        "interpreter_state.size",
                        &checked_sizes,
                    )?;
                    if raw < gil || raw - gil > MAX_SMALL_SIZE {
                        return Err(self.invalid(format!(
                            "{} = {raw} is not inside the GIL state at {base_name} = {gil}",
                            f.source
                        )));
                    }
                    raw - gil
                }
                Kind::GcMember { width } => {
                    // `gc.*` are offsets within `struct _gc_runtime_state`, which the
                    // interpreter embeds at `interpreter_state.gc` (pycore_debug_offsets.h:
                    // `.gc = offsetof(PyInterpreterState, gc)`); our Layout wants them
                    // relative to PyInterpreterState.
                    let base_name = "interpreter_state.gc";
                    let gc = self.get(base_name).ok_or_else(|| {
                        self.invalid(format!("{} is present but {base_name} is not", f.source))
                    })?;
                    self.check_fits(f.source, raw, width, members::GC, &checked_sizes)?;
                    let gc_size = self.limit(members::GC, &checked_sizes)?;
                    self.check_fits(
                        base_name,
                        gc,
                        gc_size,
                        "interpreter_state.size",
                        &checked_sizes,
                    )?;
                    gc + raw
                }
            };
            let value = u32::try_from(value)
                .map_err(|_| self.invalid(format!("{} = {value} overflows", f.source)))?;
            if let Some(target) = f.target {
                (target.set)(&mut layout, Some(value));
                push_once(&mut fields, target.name);
            }
        }
        Ok(Overlay { layout, fields })
    }

    fn limit(&self, within: &str, checked: &BTreeMap<&'static str, u64>) -> Result<u64, WalkError> {
        checked.get(within).copied().ok_or_else(|| {
            self.invalid(format!(
                "{within} is missing, so the offsets of its struct cannot be checked"
            ))
        })
    }

    fn check_fits(
        &self,
        name: &str,
        offset: u64,
        width: u64,
        within: &str,
        checked: &BTreeMap<&'static str, u64>,
    ) -> Result<(), WalkError> {
        let limit = self.limit(within, checked)?;
        if offset.checked_add(width).is_none_or(|end| end > limit) {
            return Err(self.invalid(format!(
                "{name} = {offset} (+{width} bytes) does not fit in {within} = {limit}"
            )));
        }
        Ok(())
    }

    fn invalid(&self, what: String) -> WalkError {
        WalkError::Unsupported(format!(
            "the _Py_DebugOffsets of CPython {} failed validation: {what}. The target's memory \
             may be corrupted, or it is a CPython build whose layout strobe does not know; \
             strobe refuses to guess. Please report the interpreter version and build",
            self.version
        ))
    }
}

fn push_once(fields: &mut Vec<&'static str>, name: &'static str) {
    if !fields.contains(&name) {
        fields.push(name);
    }
}

/// A layout built from the target's `_Py_DebugOffsets` over a generated one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// The resulting layout.
    pub layout: Layout,
    /// Names of the [`Layout`] fields whose value came from the target (e.g.
    /// `"tstate_current_frame"`).
    pub fields: Vec<&'static str>,
}
