//! `_Py_DebugOffsets` parsing and layout resolution: synthetic images (hand-made and generated
//! position tables) and the real structs of every installed 3.13+ interpreter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use strobe_python_abi::{
    DebugOffsetsTable, DictModel, Flavour, FrameModel, GilModel, Layout, LineTable, RuntimeModel,
    StringModel, Version, DEBUG_OFFSETS,
};
use strobe_testkit::interpreters::{self, Interpreter};
use strobe_testkit::ImageMemory;
use strobe_walker::debug_offsets::{layout_field, overlay_field_names, DebugOffsets};
use strobe_walker::layout::{resolve, resolve_with, Resolved};
use strobe_walker::WalkError;

// ---------------------------------------------------------------------------------------------
// Hand-made position tables, written from the headers (independently of the generator).

/// Members of `_Py_DebugOffsets` after the header, in declaration order
/// (3.13: Include/internal/pycore_runtime.h).
const MEMBERS_313: &[&str] = &[
    "runtime_state.size",
    "runtime_state.finalizing",
    "runtime_state.interpreters_head",
    "interpreter_state.size",
    "interpreter_state.id",
    "interpreter_state.next",
    "interpreter_state.threads_head",
    "interpreter_state.gc",
    "interpreter_state.imports_modules",
    "interpreter_state.sysdict",
    "interpreter_state.builtins",
    "interpreter_state.ceval_gil",
    "interpreter_state.gil_runtime_state",
    "interpreter_state.gil_runtime_state_enabled",
    "interpreter_state.gil_runtime_state_locked",
    "interpreter_state.gil_runtime_state_holder",
    "thread_state.size",
    "thread_state.prev",
    "thread_state.next",
    "thread_state.interp",
    "thread_state.current_frame",
    "thread_state.thread_id",
    "thread_state.native_thread_id",
    "thread_state.datastack_chunk",
    "thread_state.status",
    "interpreter_frame.size",
    "interpreter_frame.previous",
    "interpreter_frame.executable",
    "interpreter_frame.instr_ptr",
    "interpreter_frame.localsplus",
    "interpreter_frame.owner",
    "code_object.size",
    "code_object.filename",
    "code_object.name",
    "code_object.qualname",
    "code_object.linetable",
    "code_object.firstlineno",
    "code_object.argcount",
    "code_object.localsplusnames",
    "code_object.localspluskinds",
    "code_object.co_code_adaptive",
    "pyobject.size",
    "pyobject.ob_type",
    "type_object.size",
    "type_object.tp_name",
    "type_object.tp_repr",
    "type_object.tp_flags",
    "tuple_object.size",
    "tuple_object.ob_item",
    "tuple_object.ob_size",
    "list_object.size",
    "list_object.ob_item",
    "list_object.ob_size",
    "dict_object.size",
    "dict_object.ma_keys",
    "dict_object.ma_values",
    "float_object.size",
    "float_object.ob_fval",
    "long_object.size",
    "long_object.lv_tag",
    "long_object.ob_digit",
    "bytes_object.size",
    "bytes_object.ob_size",
    "bytes_object.ob_sval",
    "unicode_object.size",
    "unicode_object.state",
    "unicode_object.length",
    "unicode_object.asciiobject_size",
    "gc.size",
    "gc.collecting",
];

/// A position table: the 8-byte cookie, then one `uint64_t` per member.
fn hand_table(version: u64, flavour: Flavour, members: &[&'static str]) -> DebugOffsetsTable {
    let mut fields: Vec<(&'static str, u32)> =
        vec![("cookie", 0), ("version", 8), ("free_threaded", 16)];
    for (i, m) in members.iter().enumerate() {
        fields.push((m, 24 + 8 * i as u32));
    }
    fields.push(("__size", 24 + 8 * members.len() as u32));
    fields.sort_by(|a, b| a.0.cmp(b.0));
    DebugOffsetsTable {
        version: Version::from_hex(version),
        flavour,
        fields: Box::leak(fields.into_boxed_slice()),
    }
}

/// A 3.13-shaped layout; offsets as measured on pyenv's 3.13.0 (default build), the rest
/// plausible. `free_threaded` moves object members by 16 as `Py_GIL_DISABLED` does.
fn hand_layout(free_threaded: bool) -> Layout {
    let o = if free_threaded { 16 } else { 0 };
    Layout {
        version: Version::from_hex(0x030d_00f0),
        flavour: Flavour {
            free_threaded,
            debug: false,
        },
        frame_model: FrameModel::Direct313,
        line_table: LineTable::Location311,
        string_model: StringModel::Compact33,
        dict_model: DictModel::Compact311,
        runtime_model: RuntimeModel::PyRuntime37,
        gil_model: GilModel::InterpGilPointer,
        pyobject_size: 16 + o,
        pyobject_ob_type: 8 + o,
        pyvarobject_ob_size: 16 + o,
        runtime_interpreters_head: Some(632),
        runtime_tstate_current: None,
        interp_next: 7264,
        interp_tstate_head: 7344,
        interp_id: Some(7272),
        interp_modules: 7656,
        interp_ceval_gil: Some(16),
        gil_locked: Some(16),
        gil_last_holder: Some(8),
        tstate_size: 304,
        tstate_next: 8,
        tstate_interp: 16,
        tstate_prev: Some(0),
        tstate_frame: None,
        tstate_cframe: None,
        cframe_current_frame: None,
        tstate_current_frame: Some(72),
        tstate_thread_id: 152,
        tstate_native_thread_id: Some(160),
        tstate_datastack_chunk: Some(232),
        frame_back: None,
        frame_code: None,
        frame_lasti: None,
        iframe_size: Some(80),
        iframe_previous: Some(8),
        iframe_code: Some(0),
        iframe_instr_ptr: Some(56),
        iframe_owner: Some(70),
        iframe_is_entry: None,
        iframe_localsplus: Some(72),
        iframe_stackpointer: None,
        iframe_tlbc_index: None,
        owner_cstack: Some(3),
        owner_interpreter: None,
        stackref_mask: u64::MAX,
        chunk_previous: Some(0),
        chunk_size: Some(8),
        chunk_top: Some(16),
        chunk_data: Some(24),
        code_size: 208 + o,
        code_filename: 112 + o,
        code_name: 120 + o,
        code_qualname: Some(128 + o),
        code_firstlineno: 68 + o,
        code_lnotab: None,
        code_linetable: Some(136 + o),
        code_code_adaptive: Some(200 + o),
        code_tlbc: None,
        bytes_ob_sval: 32 + o,
        unicode_length: Some(16 + o),
        unicode_state: Some(32 + o),
        unicode_ascii_size: Some(40 + o),
        unicode_compact_size: Some(56 + o),
        unicode_kind_mask: Some(0x1c),
        unicode_compact_mask: Some(0x20),
        unicode_ascii_mask: Some(0x40),
        dict_ma_used: 16 + o,
        dict_ma_keys: 32 + o,
        dict_ma_values: 40 + o,
        dictkeys_size: Some(8),
        dictkeys_log2_index_bytes: Some(9),
        dictkeys_kind: Some(10),
        dictkeys_nentries: Some(24),
        dictkeys_indices: Some(32),
        module_dict: 16 + o,
        type_basicsize: 32 + o,
        type_dictoffset: 288 + o,
        type_flags: 168 + o,
        heaptype_cached_keys: Some(896 + o),
        long_digit: 24 + o,
        long_lv_tag: Some(16 + o),
        // The members `dump --locals` reads: as generated for 3.13 of this flavour.
        ..*strobe_python_abi::layout_for(
            3,
            13,
            Flavour {
                free_threaded,
                debug: false,
            },
        )
        .expect("generated 3.13 layout")
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic images: a `_Py_DebugOffsets` written from a layout, the way the interpreter's
// initialiser (`_Py_DebugOffsets_INIT`) fills it.

const RUNTIME_ADDR: u64 = 0x7f00_0000_0000;
const GIL_AT: u64 = 7752;

/// `(member, value)` for every member, from `layout`; members with no counterpart in `Layout`
/// get a plausible value inside their struct.
fn struct_values(layout: &Layout, free_threaded: bool) -> Vec<(&'static str, u64)> {
    let o = |v: Option<u32>| u64::from(v.expect("layout field needed by the image"));
    let r = |v: u32| u64::from(v);
    let tlbc = |v: Option<u32>| {
        if free_threaded {
            v.map_or(0, u64::from)
        } else {
            0
        }
    };
    let mut v = vec![
        ("runtime_state.size", 300_000),
        ("runtime_state.finalizing", 600),
        (
            "runtime_state.interpreters_head",
            o(layout.runtime_interpreters_head),
        ),
        ("interpreter_state.size", 200_000),
        ("interpreter_state.id", o(layout.interp_id)),
        ("interpreter_state.next", r(layout.interp_next)),
        (
            "interpreter_state.threads_head",
            r(layout.interp_tstate_head),
        ),
        ("interpreter_state.threads_main", 7400),
        ("interpreter_state.gc", 7408),
        (
            "interpreter_state.imports_modules",
            r(layout.interp_modules),
        ),
        ("interpreter_state.ceval_gil", o(layout.interp_ceval_gil)),
        ("interpreter_state.gil_runtime_state", GIL_AT),
        (
            "interpreter_state.gil_runtime_state_locked",
            GIL_AT + o(layout.gil_locked),
        ),
        (
            "interpreter_state.gil_runtime_state_holder",
            GIL_AT + o(layout.gil_last_holder),
        ),
        ("thread_state.size", r(layout.tstate_size)),
        ("thread_state.next", r(layout.tstate_next)),
        ("thread_state.interp", r(layout.tstate_interp)),
        ("thread_state.current_frame", o(layout.tstate_current_frame)),
        ("thread_state.thread_id", r(layout.tstate_thread_id)),
        (
            "thread_state.native_thread_id",
            o(layout.tstate_native_thread_id),
        ),
        (
            "thread_state.datastack_chunk",
            o(layout.tstate_datastack_chunk),
        ),
        (
            "thread_state.current_exception",
            o(layout.tstate_current_exception),
        ),
        ("thread_state.exc_state", o(layout.tstate_exc_state)),
        ("thread_state.status", 32),
        ("interpreter_frame.size", o(layout.iframe_size)),
        ("interpreter_frame.previous", o(layout.iframe_previous)),
        ("interpreter_frame.executable", o(layout.iframe_code)),
        ("interpreter_frame.instr_ptr", o(layout.iframe_instr_ptr)),
        ("interpreter_frame.localsplus", o(layout.iframe_localsplus)),
        ("interpreter_frame.owner", o(layout.iframe_owner)),
        (
            "interpreter_frame.tlbc_index",
            tlbc(layout.iframe_tlbc_index),
        ),
        ("code_object.size", r(layout.code_size)),
        ("code_object.filename", r(layout.code_filename)),
        ("code_object.name", r(layout.code_name)),
        ("code_object.qualname", o(layout.code_qualname)),
        ("code_object.linetable", o(layout.code_linetable)),
        ("code_object.firstlineno", r(layout.code_firstlineno)),
        ("code_object.co_code_adaptive", o(layout.code_code_adaptive)),
        ("code_object.co_tlbc", tlbc(layout.code_tlbc)),
        ("pyobject.size", r(layout.pyobject_size)),
        ("pyobject.ob_type", r(layout.pyobject_ob_type)),
        ("type_object.size", 1024),
        ("type_object.tp_flags", r(layout.type_flags)),
        ("type_object.tp_basicsize", r(layout.type_basicsize)),
        ("type_object.tp_dictoffset", r(layout.type_dictoffset)),
        ("heap_type_object.size", 1024),
        ("tuple_object.size", 64),
        ("tuple_object.ob_size", r(layout.pyvarobject_ob_size)),
        ("tuple_object.ob_item", r(layout.tuple_ob_item)),
        ("list_object.size", 64),
        ("list_object.ob_item", r(layout.list_ob_item)),
        ("float_object.size", 64),
        ("float_object.ob_fval", r(layout.float_ob_fval)),
        ("set_object.size", 256),
        ("set_object.used", r(layout.set_used)),
        ("set_object.mask", r(layout.set_mask)),
        ("set_object.table", r(layout.set_table)),
        ("type_object.tp_name", r(layout.type_name)),
        ("code_object.argcount", r(layout.code_argcount)),
        (
            "code_object.localsplusnames",
            o(layout.code_localsplusnames),
        ),
        (
            "code_object.localspluskinds",
            o(layout.code_localspluskinds),
        ),
        ("dict_object.size", 128),
        ("dict_object.ma_keys", r(layout.dict_ma_keys)),
        ("dict_object.ma_values", r(layout.dict_ma_values)),
        ("long_object.size", 64),
        ("long_object.lv_tag", o(layout.long_lv_tag)),
        ("long_object.ob_digit", r(layout.long_digit)),
        ("bytes_object.size", 64),
        ("bytes_object.ob_sval", r(layout.bytes_ob_sval)),
        ("unicode_object.size", 128),
        ("unicode_object.state", o(layout.unicode_state)),
        ("unicode_object.length", o(layout.unicode_length)),
        (
            "unicode_object.asciiobject_size",
            o(layout.unicode_ascii_size),
        ),
        // `struct _gc_runtime_state` at `interpreter_state.gc` (7408 above).
        ("gc.size", 1024),
        ("gc.collecting", o(layout.gc_collecting) - 7408),
    ];
    if let Some(cached) = layout.heaptype_cached_keys {
        v.push(("heap_type_object.ht_cached_keys", u64::from(cached)));
    }
    if let Some(sp) = layout.iframe_stackpointer {
        v.push(("interpreter_frame.stackpointer", u64::from(sp)));
    }
    if let (Some(iframe), Some(state)) = (layout.gen_iframe, layout.gen_frame_state) {
        // PyGenObject (3.14+): the frame is its last member.
        v.push(("gen_object.size", u64::from(iframe) + 80));
        v.push(("gen_object.gi_iframe", u64::from(iframe)));
        v.push(("gen_object.gi_frame_state", u64::from(state)));
    }
    if let Some(compact) = layout.unicode_compact_size {
        v.push((
            "unicode_object.compactunicodeobject_size",
            u64::from(compact),
        ));
    }
    v
}

/// Build an image holding `_PyRuntime` with a `_Py_DebugOffsets` laid out as `positions` says.
fn image(
    positions: &DebugOffsetsTable,
    layout: &Layout,
    version: u64,
    free_threaded: bool,
) -> ImageMemory {
    let size = positions.position("__size").unwrap() as usize;
    let mut mem = ImageMemory::new();
    mem.map(RUNTIME_ADDR, vec![0; size + 4096]);
    mem.write(RUNTIME_ADDR, b"xdebugpy");
    mem.write_u64(RUNTIME_ADDR + 8, version);
    mem.write_u64(RUNTIME_ADDR + 16, u64::from(free_threaded));
    for (name, value) in struct_values(layout, free_threaded) {
        // Members this version's struct does not have are simply not written.
        if let Some(pos) = positions.position(name) {
            mem.write_u64(RUNTIME_ADDR + u64::from(pos), value);
        }
    }
    mem
}

fn set(mem: &mut ImageMemory, positions: &DebugOffsetsTable, name: &str, value: u64) {
    let pos = positions.position(name).unwrap();
    mem.write_u64(RUNTIME_ADDR + u64::from(pos), value);
}

fn unsupported(r: Result<Resolved, WalkError>) -> String {
    match r {
        Err(WalkError::Unsupported(msg)) => msg,
        other => panic!("expected an Unsupported error, got {other:?}"),
    }
}

struct Hand {
    layouts: Vec<Layout>,
    tables: Vec<DebugOffsetsTable>,
}

fn hand() -> Hand {
    let ft = Flavour {
        free_threaded: true,
        debug: false,
    };
    Hand {
        layouts: vec![hand_layout(false), hand_layout(true)],
        tables: vec![
            hand_table(0x030d_00f0, Flavour::DEFAULT, MEMBERS_313),
            hand_table(0x030d_00f0, ft, MEMBERS_313),
        ],
    }
}

fn v(hex: u64) -> Version {
    Version::from_hex(hex)
}

// ---------------------------------------------------------------------------------------------
// Hand-made tables.

#[test]
fn hand_made_313_image_resolves_to_its_layout() {
    let h = hand();
    let base = hand_layout(false);
    let mem = image(&h.tables[0], &base, 0x030d_05f0, false);
    let r = resolve_with(
        &mem,
        v(0x030d_05f0),
        false,
        Some(RUNTIME_ADDR),
        &h.layouts,
        &h.tables,
    )
    .unwrap();
    let mut expected = base;
    expected.version = v(0x030d_05f0);
    assert_eq!(r.layout, expected);
    assert!(r.from_debug_offsets);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    for name in [
        "tstate_current_frame",
        "gil_locked",
        "runtime_interpreters_head",
    ] {
        assert!(
            r.target_fields.contains(&name),
            "{name} not from the target"
        );
    }
    // 3.13 has neither `stackpointer` nor the free-threaded-only members with a value.
    assert!(!r.target_fields.contains(&"iframe_stackpointer"));
}

#[test]
fn the_target_values_win_over_the_generated_ones() {
    let h = hand();
    let mut target = hand_layout(false);
    // As between 3.13.0 and 3.13.1: PyThreadState grew, and pretend a member moved.
    target.tstate_size = 312;
    target.tstate_datastack_chunk = Some(240);
    let mem = image(&h.tables[0], &target, 0x030d_01f0, false);
    let r = resolve_with(
        &mem,
        v(0x030d_01f0),
        false,
        Some(RUNTIME_ADDR),
        &h.layouts,
        &h.tables,
    )
    .unwrap();
    assert_eq!(r.layout.tstate_size, 312);
    assert_eq!(r.layout.tstate_datastack_chunk, Some(240));
    assert_eq!(r.layout.version, v(0x030d_01f0));
}

#[test]
fn free_threaded_header_selects_the_t_layout() {
    let h = hand();
    let base = hand_layout(true);
    let mem = image(&h.tables[1], &base, 0x030d_00f0, true);
    let r = resolve_with(
        &mem,
        v(0x030d_00f0),
        false,
        Some(RUNTIME_ADDR),
        &h.layouts,
        &h.tables,
    )
    .unwrap();
    assert!(r.layout.flavour.free_threaded);
    assert_eq!(r.layout.pyobject_ob_type, 24);
    assert_eq!(r.layout, base);
}

#[test]
fn newer_minor_uses_the_newest_table_with_one_warning() {
    let h = hand();
    let base = hand_layout(false);
    let mem = image(&h.tables[0], &base, 0x030e_00f0, false);
    let r = resolve_with(
        &mem,
        v(0x030e_00f0),
        false,
        Some(RUNTIME_ADDR),
        &h.layouts,
        &h.tables,
    )
    .unwrap();
    assert_eq!(
        r.warnings,
        vec!["CPython 3.14.0 is newer than strobe knows (newest 3.13); using its _Py_DebugOffsets"]
    );
    assert_eq!(r.layout.version, v(0x030e_00f0));
    assert_eq!(r.layout.tstate_current_frame, base.tstate_current_frame);
}

#[test]
fn corrupted_images_are_refused_with_the_failing_field() {
    let h = hand();
    let base = hand_layout(false);
    let t = &h.tables[0];
    let resolve_313 = |mem: &ImageMemory| {
        resolve_with(
            mem,
            v(0x030d_00f0),
            false,
            Some(RUNTIME_ADDR),
            &h.layouts,
            &h.tables,
        )
    };

    let mut mem = image(t, &base, 0x030d_00f0, false);
    mem.write(RUNTIME_ADDR, b"xdebugpz");
    let msg = unsupported(resolve_313(&mem));
    assert!(msg.contains("cookie") && msg.contains("xdebugpz"), "{msg}");

    let mut mem = image(t, &base, 0x030d_00f0, false);
    set(&mut mem, t, "thread_state.current_frame", 300);
    let msg = unsupported(resolve_313(&mem));
    assert!(
        msg.contains("thread_state.current_frame = 300") && msg.contains("thread_state.size = 304"),
        "{msg}"
    );

    let mut mem = image(t, &base, 0x030d_00f0, false);
    set(&mut mem, t, "code_object.size", 1 << 40);
    let msg = unsupported(resolve_313(&mem));
    assert!(msg.contains("code_object.size = 1099511627776"), "{msg}");

    let mut mem = image(t, &base, 0x030d_00f0, false);
    set(
        &mut mem,
        t,
        "interpreter_state.gil_runtime_state_locked",
        GIL_AT - 8,
    );
    let msg = unsupported(resolve_313(&mem));
    assert!(msg.contains("gil_runtime_state_locked"), "{msg}");

    // The collector flag must lie inside `struct _gc_runtime_state`, and that inside the
    // interpreter.
    let mut mem = image(t, &base, 0x030d_00f0, false);
    set(&mut mem, t, "gc.collecting", 1022);
    let msg = unsupported(resolve_313(&mem));
    assert!(
        msg.contains("gc.collecting = 1022") && msg.contains("gc.size = 1024"),
        "{msg}"
    );
    let mut mem = image(t, &base, 0x030d_00f0, false);
    set(&mut mem, t, "interpreter_state.gc", 199_500);
    let msg = unsupported(resolve_313(&mem));
    assert!(msg.contains("interpreter_state.gc = 199500"), "{msg}");

    let mut mem = image(t, &base, 0x030d_00f0, false);
    set(&mut mem, t, "free_threaded", 7);
    let msg = unsupported(resolve_313(&mem));
    assert!(msg.contains("free_threaded") && msg.contains('7'), "{msg}");

    // The struct says 3.13, the target was detected as 3.14.
    let mem = image(t, &base, 0x030d_00f0, false);
    let msg = unsupported(resolve_with(
        &mem,
        v(0x030e_00f0),
        false,
        Some(RUNTIME_ADDR),
        &h.layouts,
        &h.tables,
    ));
    assert!(msg.contains("0x30d00f0") && msg.contains("3.14.0"), "{msg}");

    // A pre-release from before the layout settled.
    let mem = image(t, &base, 0x030d_00c1, false);
    let msg = unsupported(resolve_with(
        &mem,
        v(0x030d_00c1),
        false,
        Some(RUNTIME_ADDR),
        &h.layouts,
        &h.tables,
    ));
    assert!(
        msg.contains("3.13.0rc1") && msg.contains("3.13.0rc2"),
        "{msg}"
    );

    // A free-threaded debug build: no table for that flavour.
    let mem = image(t, &base, 0x030d_00f0, true);
    let msg = unsupported(resolve_with(
        &mem,
        v(0x030d_00f0),
        true,
        Some(RUNTIME_ADDR),
        &h.layouts,
        &h.tables,
    ));
    assert!(msg.contains("free-threaded debug build"), "{msg}");

    // _PyRuntime not found.
    let msg = unsupported(resolve_with(
        &ImageMemory::new(),
        v(0x030d_00f0),
        false,
        None,
        &h.layouts,
        &h.tables,
    ));
    assert!(msg.contains("_PyRuntime"), "{msg}");
}

#[test]
fn unreadable_runtime_is_a_memory_error() {
    let h = hand();
    let r = resolve_with(
        &ImageMemory::new(),
        v(0x030d_00f0),
        false,
        Some(RUNTIME_ADDR),
        &h.layouts,
        &h.tables,
    );
    assert!(matches!(r, Err(WalkError::Mem(_))), "{r:?}");
}

#[test]
fn debug_offsets_values_are_read_by_name() {
    let h = hand();
    let mem = image(&h.tables[0], &hand_layout(false), 0x030d_00f0, false);
    let d = DebugOffsets::read(&mem, RUNTIME_ADDR, v(0x030d_00f0), &h.tables[0]).unwrap();
    assert_eq!(d.get("runtime_state.interpreters_head"), Some(632));
    assert_eq!(d.get("interpreter_state.gil_runtime_state"), Some(GIL_AT));
    assert_eq!(d.get("no_such.member"), None);
    assert_eq!(d.struct_size, 24 + 8 * MEMBERS_313.len());
}

// ---------------------------------------------------------------------------------------------
// Generated tables.

fn generated_pairs() -> Vec<(&'static DebugOffsetsTable, &'static Layout)> {
    let pairs: Vec<_> = DEBUG_OFFSETS
        .iter()
        .filter_map(|t| {
            strobe_python_abi::layout_for(t.version.major, t.version.minor, t.flavour)
                .map(|l| (t, l))
        })
        .collect();
    for minor in [13, 14, 15] {
        for debug in [false, true] {
            let flavour = Flavour {
                free_threaded: false,
                debug,
            };
            assert!(
                pairs
                    .iter()
                    .any(|(t, _)| t.version.minor == minor && t.flavour == flavour),
                "no generated _Py_DebugOffsets table + layout for 3.{minor} {flavour:?}: \
                 run python-abi/gen/abigen.py"
            );
        }
    }
    pairs
}

#[test]
fn hand_made_313_positions_match_the_generated_ones() {
    let hand = hand_table(0x030d_00f0, Flavour::DEFAULT, MEMBERS_313);
    let generated = strobe_python_abi::debug_offsets_for(3, 13, Flavour::DEFAULT)
        .expect("no generated 3.13 table: run python-abi/gen/abigen.py");
    assert_eq!(hand.fields, generated.fields);
}

#[test]
fn generated_images_resolve_to_the_generated_layouts() {
    for (positions, generated) in generated_pairs() {
        let version = generated.version.to_hex();
        let ft = generated.flavour.free_threaded;
        let mem = image(positions, generated, version, ft);
        let r = resolve(
            &mem,
            generated.version,
            generated.flavour.debug,
            Some(RUNTIME_ADDR),
        )
        .unwrap_or_else(|e| panic!("{} {:?}: {e}", generated.version, generated.flavour));
        assert_eq!(
            &r.layout, generated,
            "{} {:?}",
            generated.version, generated.flavour
        );
        assert!(r.warnings.is_empty());
        assert!(r.target_fields.len() >= 40, "{:?}", r.target_fields);
    }
}

#[test]
fn generated_free_threaded_image_gives_the_t_layout() {
    let ft = Flavour {
        free_threaded: true,
        debug: false,
    };
    let mut seen = 0;
    for (positions, generated) in generated_pairs() {
        if generated.flavour != ft {
            continue;
        }
        seen += 1;
        let mem = image(positions, generated, generated.version.to_hex(), true);
        let r = resolve(&mem, generated.version, false, Some(RUNTIME_ADDR)).unwrap();
        assert_eq!(&r.layout, generated);
        assert!(r.layout.flavour.free_threaded);
        assert_eq!(r.layout.pyobject_ob_type, 24);
    }
    assert!(
        seen > 0,
        "no generated free-threaded table: run python-abi/gen/abigen.py"
    );
}

#[test]
fn generated_316_image_uses_315_positions_with_one_warning() {
    let positions = strobe_python_abi::debug_offsets_for(3, 15, Flavour::DEFAULT).unwrap();
    let base = strobe_python_abi::layout_for(3, 15, Flavour::DEFAULT).unwrap();
    let mem = image(positions, base, 0x0310_00f0, false);
    let r = resolve(&mem, v(0x0310_00f0), false, Some(RUNTIME_ADDR)).unwrap();
    assert_eq!(
        r.warnings,
        vec!["CPython 3.16.0 is newer than strobe knows (newest 3.15); using its _Py_DebugOffsets"]
    );
    let mut expected = *base;
    expected.version = v(0x0310_00f0);
    assert_eq!(r.layout, expected);
}

#[test]
fn generated_corrupted_images_are_refused() {
    let positions = strobe_python_abi::debug_offsets_for(3, 14, Flavour::DEFAULT).unwrap();
    let base = strobe_python_abi::layout_for(3, 14, Flavour::DEFAULT).unwrap();
    let hex = base.version.to_hex();
    let run = |mem: &ImageMemory| resolve(mem, base.version, false, Some(RUNTIME_ADDR));

    let mut mem = image(positions, base, hex, false);
    mem.write(RUNTIME_ADDR, b"XDEBUGPY");
    assert!(unsupported(run(&mem)).contains("cookie"));

    let mut mem = image(positions, base, hex, false);
    let size = u64::from(base.iframe_size.unwrap());
    set(&mut mem, positions, "interpreter_frame.owner", size);
    let msg = unsupported(run(&mem));
    assert!(msg.contains("interpreter_frame.owner"), "{msg}");

    let mut mem = image(positions, base, hex, false);
    set(&mut mem, positions, "runtime_state.size", 1 << 30);
    let msg = unsupported(run(&mem));
    assert!(msg.contains("runtime_state.size"), "{msg}");

    let mut mem = image(positions, base, hex, false);
    set(&mut mem, positions, "version", 0x030f_00f0);
    let msg = unsupported(run(&mem));
    assert!(msg.contains("0x30f00f0"), "{msg}");
}

#[test]
fn unknown_old_versions_name_what_is_supported() {
    for hex in [0x0305_00f0, 0x0304_00f0, 0x0206_00f0] {
        let msg = unsupported(resolve(&ImageMemory::new(), v(hex), false, None));
        assert!(msg.contains(&v(hex).to_string()), "{msg}");
        assert!(
            msg.contains("supported: 2.7, 3.6\u{2013}3.15 and newer 3.x with _Py_DebugOffsets"),
            "{msg}"
        );
    }
}

#[test]
fn old_versions_use_the_generated_table_with_the_exact_version() {
    let r = resolve(&ImageMemory::new(), v(0x030c_07f0), false, None).unwrap();
    let generated = strobe_python_abi::layout_for(3, 12, Flavour::DEFAULT).unwrap();
    let mut expected = *generated;
    expected.version = v(0x030c_07f0);
    assert_eq!(r.layout, expected);
    assert!(!r.from_debug_offsets);
}

// ---------------------------------------------------------------------------------------------
// Live: the real `_Py_DebugOffsets` of every installed 3.13+ interpreter.

/// Prints `_PyRuntime`'s address, `sys.hexversion`, whether it is a debug build, and the first
/// 4 KiB of `_PyRuntime` (far more than `sizeof(_Py_DebugOffsets)`; `_PyRuntime` is hundreds
/// of KiB) in hex. `ctypes.pythonapi` is `dlopen(NULL)`: it finds the symbol both in a shared
/// libpython and in a static executable exporting its symbols.
const DUMP: &str = "import ctypes, sys\n\
a = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, '_PyRuntime'))\n\
print('DUMP', a, sys.hexversion, int(hasattr(sys, 'gettotalrefcount')), ctypes.string_at(a, 4096).hex())\n";

struct Dump {
    addr: u64,
    version: Version,
    debug: bool,
    bytes: Vec<u8>,
}

fn dump(interp: &Interpreter) -> Dump {
    let interpreter = interp.name;
    let mut cmd = interp.command();
    let out = cmd.args(["-c", DUMP]).output().unwrap();
    assert!(
        out.status.success(),
        "{interpreter}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout.lines().find(|l| l.starts_with("DUMP ")).unwrap();
    let parts: Vec<&str> = line.split(' ').collect();
    let hex = parts[4];
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    Dump {
        addr: parts[1].parse().unwrap(),
        version: Version::from_hex(parts[2].parse().unwrap()),
        debug: parts[3] == "1",
        bytes,
    }
}

/// Differences between a target and the generated table that are expected: the table is
/// generated from sid's 3.13.x headers, and 3.13.1 appended `datastack_cached_chunk` to
/// `PyThreadState` (cpython/pystate.h), so pyenv's 3.13.0 reports 304 where the table has 312.
const KNOWN_DIFFERENCES: &[(u64, &str, u32, u32)] = &[(0x030d_00f0, "tstate_size", 304, 312)];

#[test]
fn live_debug_offsets_agree_with_the_generated_tables() {
    // Every registered interpreter that has `_Py_DebugOffsets`: pyenv's 3.13.0 and sid's.
    let targets: Vec<&Interpreter> = interpreters::ALL
        .iter()
        .filter(|i| i.version >= (3, 13))
        .collect();
    assert!(targets.len() >= 8, "{targets:?}");
    let mut failures = Vec::new();
    let mut known_seen = Vec::new();
    for interp in targets {
        let interpreter = interp.name;
        let d = dump(interp);
        let mut mem = ImageMemory::new();
        mem.map(d.addr, d.bytes);
        let r = resolve(&mem, d.version, d.debug, Some(d.addr))
            .unwrap_or_else(|e| panic!("{interpreter} ({}): {e}", d.version));
        assert!(r.from_debug_offsets);
        assert!(r.warnings.is_empty(), "{interpreter}: {:?}", r.warnings);
        assert_eq!(r.layout.version, d.version, "{interpreter}");
        assert_eq!(r.layout.flavour.debug, d.debug, "{interpreter}");
        assert!(!r.layout.flavour.free_threaded, "{interpreter}");
        let generated =
            strobe_python_abi::layout_for(3, d.version.minor, r.layout.flavour).unwrap();
        for name in [
            "runtime_interpreters_head",
            "tstate_current_frame",
            "iframe_code",
            "code_code_adaptive",
        ] {
            assert!(r.target_fields.contains(&name), "{interpreter}: {name}");
        }
        for &name in &r.target_fields {
            let target = layout_field(&r.layout, name).unwrap();
            let table = layout_field(generated, name).unwrap();
            let known = KNOWN_DIFFERENCES.iter().any(|&(hex, n, t, g)| {
                hex == d.version.to_hex() && n == name && target == Some(t) && table == Some(g)
            });
            if known {
                known_seen.push(name);
            }
            if target != table && !known {
                failures.push(format!(
                    "{interpreter} ({}): {name}: target {target:?}, generated {table:?}",
                    d.version
                ));
            }
        }
        // Everything else comes from the generated table unchanged.
        for name in overlay_field_names() {
            if !r.target_fields.contains(&name) {
                assert_eq!(
                    layout_field(&r.layout, name),
                    layout_field(generated, name),
                    "{interpreter}: {name}"
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A known difference that no longer shows up means the list (or the tables) went stale.
    assert_eq!(known_seen.len(), KNOWN_DIFFERENCES.len(), "{known_seen:?}");
}
