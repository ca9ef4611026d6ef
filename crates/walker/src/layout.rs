//! Choosing the [`Layout`] for a target.
//!
//! Up to 3.12 the generated table for the target's minor release and build flavour is the
//! layout. From 3.13 the interpreter describes itself (`_Py_DebugOffsets` at the start of
//! `_PyRuntime`, see [`crate::debug_offsets`]): its values are laid over the generated table of
//! the same minor, and its `free_threaded` header decides the flavour.

use strobe_python_abi::{DebugOffsetsTable, Flavour, Layout, Version};

use crate::debug_offsets::{self, DebugOffsets};
use crate::error::WalkError;
use strobe_memory::RemoteMemory;

/// First minor release with `_Py_DebugOffsets` (CPython 3.13, `pycore_runtime.h`).
const FIRST_DEBUG_OFFSETS_MINOR: u8 = 13;

/// The layout chosen for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The layout to walk the target with; `version` is the target's exact version.
    pub layout: Layout,
    /// Things the user should know (e.g. the target is newer than strobe), one line each.
    pub warnings: Vec<String>,
    /// Whether the target's `_Py_DebugOffsets` supplied (part of) the layout.
    pub from_debug_offsets: bool,
    /// Names of the `Layout` fields whose values came from the target's `_Py_DebugOffsets`
    /// (empty for ≤3.12).
    pub target_fields: Vec<&'static str>,
}

/// Resolve the layout for a target of `version` using the generated tables.
///
/// `debug_build`: the target is a `Py_DEBUG` build (detected from its symbols). `runtime`: the
/// address of `_PyRuntime` in the target, required from 3.13.
pub fn resolve<M: RemoteMemory>(
    mem: &M,
    version: Version,
    debug_build: bool,
    runtime: Option<u64>,
) -> Result<Resolved, WalkError> {
    resolve_with(
        mem,
        version,
        debug_build,
        runtime,
        strobe_python_abi::ALL,
        strobe_python_abi::DEBUG_OFFSETS,
    )
}

/// [`resolve`] with explicit tables (tests use hand-made ones).
pub fn resolve_with<M: RemoteMemory + ?Sized>(
    mem: &M,
    version: Version,
    debug_build: bool,
    runtime: Option<u64>,
    layouts: &[Layout],
    tables: &[DebugOffsetsTable],
) -> Result<Resolved, WalkError> {
    if version.major == 3 && version.minor >= FIRST_DEBUG_OFFSETS_MINOR {
        return resolve_debug_offsets(mem, version, debug_build, runtime, layouts, tables);
    }
    let flavour = Flavour {
        free_threaded: false,
        debug: debug_build,
    };
    let found = layouts.iter().find(|l| {
        l.version.major == version.major && l.version.minor == version.minor && l.flavour == flavour
    });
    let Some(generated) = found else {
        let build = if debug_build { " debug build" } else { "" };
        return Err(WalkError::Unsupported(format!(
            "CPython {version}{build} is not supported (supported: {})",
            supported_list(layouts, flavour)
        )));
    };
    let mut layout = *generated;
    layout.version = version;
    Ok(Resolved {
        layout,
        warnings: Vec::new(),
        from_debug_offsets: false,
        target_fields: Vec::new(),
    })
}

fn resolve_debug_offsets<M: RemoteMemory + ?Sized>(
    mem: &M,
    version: Version,
    debug_build: bool,
    runtime: Option<u64>,
    layouts: &[Layout],
    tables: &[DebugOffsetsTable],
) -> Result<Resolved, WalkError> {
    let runtime = runtime.ok_or_else(|| {
        WalkError::Unsupported(format!(
            "CPython {version} describes its layout in _Py_DebugOffsets at the start of \
             _PyRuntime, but the _PyRuntime symbol was not found in the target; strobe needs \
             the interpreter's (or libpython's) dynamic symbol table: check that the binary is \
             not stripped of it"
        ))
    })?;
    let header = debug_offsets::read_header(mem, runtime, version)?;
    debug_offsets::check_release(header.version)?;
    let flavour = Flavour {
        free_threaded: header.free_threaded,
        debug: debug_build,
    };
    let selected = debug_offsets::select(header.version, flavour, layouts, tables)?;
    let offsets = DebugOffsets::read(mem, runtime, version, selected.positions)?;
    let overlay = offsets.overlay(selected.base)?;
    let mut layout = overlay.layout;
    layout.flavour = flavour;
    Ok(Resolved {
        layout,
        warnings: selected.warning.into_iter().collect(),
        from_debug_offsets: true,
        target_fields: overlay.fields,
    })
}

/// "2.7, 3.6–3.15 and newer 3.x with _Py_DebugOffsets", from the tables we have.
fn supported_list(layouts: &[Layout], flavour: Flavour) -> String {
    let mut versions: Vec<(u8, u8)> = layouts
        .iter()
        .filter(|l| l.flavour == flavour)
        .map(|l| (l.version.major, l.version.minor))
        .collect();
    versions.sort_unstable();
    versions.dedup();
    let mut ranges: Vec<((u8, u8), (u8, u8))> = Vec::new();
    for v in versions {
        match ranges.last_mut() {
            Some((_, end)) if end.0 == v.0 && end.1.checked_add(1) == Some(v.1) => *end = v,
            _ => ranges.push((v, v)),
        }
    }
    let mut parts: Vec<String> = ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                format!("{}.{}", a.0, a.1)
            } else {
                format!("{}.{}\u{2013}{}.{}", a.0, a.1, b.0, b.1)
            }
        })
        .collect();
    if parts.is_empty() {
        parts.push("none".to_string());
    }
    format!("{} and newer 3.x with _Py_DebugOffsets", parts.join(", "))
}
