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

/// `_Py_Debug_Cookie` (`pycore_runtime.h` 3.13, `pycore_debug_offsets.h` 3.14+).
pub const COOKIE: &[u8; 8] = b"xdebugpy";

/// Length of the fixed header: `cookie[8]`, `version`, `free_threaded`. Its layout is the same
/// in every version that has the struct, which is what lets us pick a position table.
pub const HEADER_LEN: usize = 24;

/// Upper bound on `sizeof(_Py_DebugOffsets)` we agree to read (3.15 is 888 bytes).
pub const MAX_STRUCT_SIZE: usize = 64 * 1024;

/// Bound on `sizeof(_PyRuntimeState)` and `sizeof(PyInterpreterState)`: both embed large
/// static tables (measured here: runtime 283–347 KiB, interpreter 191–221 KiB for 3.13–3.15).
const MAX_BIG_SIZE: u64 = 1 << 20;

/// Bound on every other struct size the table reports (thread state, frame, code, objects:
/// all below 1 KiB in 3.13–3.15).
const MAX_SMALL_SIZE: u64 = 64 * 1024;

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

/// How a `_Py_DebugOffsets` member is validated and converted.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A struct size, bounded by `max`.
    Size { max: u64 },
    /// A size that must fit in an already-validated size (e.g. `sizeof(PyASCIIObject)` within
    /// `sizeof(PyUnicodeObject)`).
    SizeWithin { within: &'static str },
    /// An offset of a `width`-byte member inside the struct whose size is `within`.
    Offset { within: &'static str, width: u64 },
    /// Like `Offset`, but the member only exists in free-threaded builds (0 otherwise).
    OffsetIfFreeThreaded { within: &'static str, width: u64 },
    /// A member of the interpreter's embedded `_gil`, rebased onto `struct _gil_runtime_state`.
    GilMember { width: u64 },
}

/// One `_Py_DebugOffsets` member we use, and the `Layout` field it provides (none for the sizes
/// that only bound other members).
struct Field {
    source: &'static str,
    kind: Kind,
    target: Option<Accessor>,
}

/// Name and accessors of one `Layout` field.
#[derive(Clone, Copy)]
struct Accessor {
    name: &'static str,
    get: fn(&Layout) -> Option<u32>,
    set: fn(&mut Layout, Option<u32>),
}

/// Accessors for a `u32` field. Only free-threaded-only members are ever cleared, and those are
/// `Option`s, so a `None` never reaches these.
macro_rules! req {
    ($f:ident) => {
        Some(Accessor {
            name: stringify!($f),
            get: |l: &Layout| Some(l.$f),
            set: |l: &mut Layout, v: Option<u32>| {
                if let Some(v) = v {
                    l.$f = v;
                }
            },
        })
    };
}

/// Accessors for an `Option<u32>` field.
macro_rules! opt {
    ($f:ident) => {
        Some(Accessor {
            name: stringify!($f),
            get: |l: &Layout| l.$f,
            set: |l: &mut Layout, v: Option<u32>| l.$f = v,
        })
    };
}

const fn f(target: Option<Accessor>, source: &'static str, kind: Kind) -> Field {
    Field {
        source,
        kind,
        target,
    }
}

const fn size(max: u64) -> Kind {
    Kind::Size { max }
}

const fn within(within: &'static str) -> Kind {
    Kind::SizeWithin { within }
}

const fn off(within: &'static str, width: u64) -> Kind {
    Kind::Offset { within, width }
}

const fn ft_only(within: &'static str, width: u64) -> Kind {
    Kind::OffsetIfFreeThreaded { within, width }
}

const RUNTIME: &str = "runtime_state.size";
const INTERP: &str = "interpreter_state.size";
const TSTATE: &str = "thread_state.size";
const IFRAME: &str = "interpreter_frame.size";
const CODE: &str = "code_object.size";
const OBJECT: &str = "pyobject.size";
const TYPE: &str = "type_object.size";
const HEAPTYPE: &str = "heap_type_object.size";
const TUPLE: &str = "tuple_object.size";
const DICT: &str = "dict_object.size";
const LONG: &str = "long_object.size";
const BYTES: &str = "bytes_object.size";
const UNICODE: &str = "unicode_object.size";
const ASCII: &str = "unicode_object.asciiobject_size";

/// Every `_Py_DebugOffsets` member we use. Sizes come before the offsets they bound. Member
/// widths are those of the C members (3.13–3.15 headers): pointers, `Py_ssize_t`, `unsigned
/// long`, `int64_t`, `uintptr_t` 8 bytes; `int`, `digit` and the `state` bitfield word 4;
/// `char` 1 (`owner`, and the first byte of the `co_code_adaptive` / `ob_sval` arrays).
static FIELDS: &[Field] = &[
    // Struct sizes.
    f(None, RUNTIME, size(MAX_BIG_SIZE)),
    f(None, INTERP, size(MAX_BIG_SIZE)),
    f(req!(tstate_size), TSTATE, size(MAX_SMALL_SIZE)),
    f(opt!(iframe_size), IFRAME, size(MAX_SMALL_SIZE)),
    f(req!(code_size), CODE, size(MAX_SMALL_SIZE)),
    f(req!(pyobject_size), OBJECT, size(MAX_SMALL_SIZE)),
    f(None, TYPE, size(MAX_SMALL_SIZE)),
    f(None, HEAPTYPE, size(MAX_SMALL_SIZE)),
    f(None, TUPLE, size(MAX_SMALL_SIZE)),
    f(None, DICT, size(MAX_SMALL_SIZE)),
    f(None, LONG, size(MAX_SMALL_SIZE)),
    f(None, BYTES, size(MAX_SMALL_SIZE)),
    f(None, UNICODE, size(MAX_SMALL_SIZE)),
    f(opt!(unicode_ascii_size), ASCII, within(UNICODE)),
    f(
        opt!(unicode_compact_size),
        "unicode_object.compactunicodeobject_size",
        within(UNICODE),
    ),
    // PyObject / PyVarObject (`ob_base.ob_size` of a tuple is PyVarObject's `ob_size`).
    f(req!(pyobject_ob_type), "pyobject.ob_type", off(OBJECT, 8)),
    f(
        req!(pyvarobject_ob_size),
        "tuple_object.ob_size",
        off(TUPLE, 8),
    ),
    // _PyRuntimeState.
    f(
        opt!(runtime_interpreters_head),
        "runtime_state.interpreters_head",
        off(RUNTIME, 8),
    ),
    // PyInterpreterState.
    f(req!(interp_next), "interpreter_state.next", off(INTERP, 8)),
    f(
        req!(interp_tstate_head),
        "interpreter_state.threads_head",
        off(INTERP, 8),
    ),
    f(opt!(interp_id), "interpreter_state.id", off(INTERP, 8)),
    f(
        req!(interp_modules),
        "interpreter_state.imports_modules",
        off(INTERP, 8),
    ),
    f(
        opt!(interp_ceval_gil),
        "interpreter_state.ceval_gil",
        off(INTERP, 8),
    ),
    f(
        opt!(gil_locked),
        "interpreter_state.gil_runtime_state_locked",
        Kind::GilMember { width: 4 },
    ),
    f(
        opt!(gil_last_holder),
        "interpreter_state.gil_runtime_state_holder",
        Kind::GilMember { width: 8 },
    ),
    // PyThreadState.
    f(req!(tstate_next), "thread_state.next", off(TSTATE, 8)),
    f(req!(tstate_interp), "thread_state.interp", off(TSTATE, 8)),
    f(opt!(tstate_prev), "thread_state.prev", off(TSTATE, 8)),
    f(
        opt!(tstate_current_frame),
        "thread_state.current_frame",
        off(TSTATE, 8),
    ),
    f(
        req!(tstate_thread_id),
        "thread_state.thread_id",
        off(TSTATE, 8),
    ),
    f(
        opt!(tstate_native_thread_id),
        "thread_state.native_thread_id",
        off(TSTATE, 8),
    ),
    f(
        opt!(tstate_datastack_chunk),
        "thread_state.datastack_chunk",
        off(TSTATE, 8),
    ),
    // _PyInterpreterFrame.
    f(
        opt!(iframe_previous),
        "interpreter_frame.previous",
        off(IFRAME, 8),
    ),
    f(
        opt!(iframe_code),
        "interpreter_frame.executable",
        off(IFRAME, 8),
    ),
    f(
        opt!(iframe_instr_ptr),
        "interpreter_frame.instr_ptr",
        off(IFRAME, 8),
    ),
    f(
        opt!(iframe_localsplus),
        "interpreter_frame.localsplus",
        off(IFRAME, 8),
    ),
    f(
        opt!(iframe_owner),
        "interpreter_frame.owner",
        off(IFRAME, 1),
    ),
    f(
        opt!(iframe_stackpointer),
        "interpreter_frame.stackpointer",
        off(IFRAME, 8),
    ),
    f(
        opt!(iframe_tlbc_index),
        "interpreter_frame.tlbc_index",
        ft_only(IFRAME, 4),
    ),
    // PyCodeObject.
    f(req!(code_filename), "code_object.filename", off(CODE, 8)),
    f(req!(code_name), "code_object.name", off(CODE, 8)),
    f(opt!(code_qualname), "code_object.qualname", off(CODE, 8)),
    f(opt!(code_linetable), "code_object.linetable", off(CODE, 8)),
    f(
        req!(code_firstlineno),
        "code_object.firstlineno",
        off(CODE, 4),
    ),
    f(
        opt!(code_code_adaptive),
        "code_object.co_code_adaptive",
        off(CODE, 1),
    ),
    f(opt!(code_tlbc), "code_object.co_tlbc", ft_only(CODE, 8)),
    // Types (tp_basicsize, tp_dictoffset and the heap type since 3.15).
    f(req!(type_flags), "type_object.tp_flags", off(TYPE, 8)),
    f(
        req!(type_basicsize),
        "type_object.tp_basicsize",
        off(TYPE, 8),
    ),
    f(
        req!(type_dictoffset),
        "type_object.tp_dictoffset",
        off(TYPE, 8),
    ),
    f(
        opt!(heaptype_cached_keys),
        "heap_type_object.ht_cached_keys",
        off(HEAPTYPE, 8),
    ),
    // dict / long / bytes / str.
    f(req!(dict_ma_keys), "dict_object.ma_keys", off(DICT, 8)),
    f(req!(dict_ma_values), "dict_object.ma_values", off(DICT, 8)),
    f(req!(long_digit), "long_object.ob_digit", off(LONG, 4)),
    f(opt!(long_lv_tag), "long_object.lv_tag", off(LONG, 8)),
    f(req!(bytes_ob_sval), "bytes_object.ob_sval", off(BYTES, 1)),
    f(opt!(unicode_state), "unicode_object.state", off(ASCII, 4)),
    f(opt!(unicode_length), "unicode_object.length", off(ASCII, 8)),
];

/// The value of a `Layout` field that `_Py_DebugOffsets` can provide, by name (as listed in
/// [`Overlay::fields`]): `None` for a name we do not take from the target, `Some(None)` when the
/// layout has no such member.
pub fn layout_field(layout: &Layout, name: &str) -> Option<Option<u32>> {
    FIELDS
        .iter()
        .filter_map(|f| f.target)
        .find(|a| a.name == name)
        .map(|a| (a.get)(layout))
}

/// Names of every `Layout` field that `_Py_DebugOffsets` can provide, each once.
pub fn overlay_field_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for a in FIELDS.iter().filter_map(|f| f.target) {
        if !names.contains(&a.name) {
            names.push(a.name);
        }
    }
    names
}
