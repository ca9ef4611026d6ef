//! Invariants of the generated tables and the lookup functions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strobe_python_abi::{
    debug_offsets_for, layout_for, DictModel, Flavour, FrameModel, GilModel, LineTable,
    RuntimeModel, StringModel, ALL, DEBUG_OFFSETS,
};

const FT: Flavour = Flavour {
    free_threaded: true,
    debug: false,
};
const DEBUG: Flavour = Flavour {
    free_threaded: false,
    debug: true,
};

#[test]
fn every_expected_table_exists_once() {
    let mut expected = vec![(2, 7, Flavour::DEFAULT)];
    expected.extend((6..=12).map(|m| (3, m, Flavour::DEFAULT)));
    for m in 13..=15 {
        expected.extend([(3, m, Flavour::DEFAULT), (3, m, FT), (3, m, DEBUG)]);
    }
    for &(major, minor, flavour) in &expected {
        let layout = layout_for(major, minor, flavour)
            .unwrap_or_else(|| panic!("no layout for {major}.{minor} {flavour:?}"));
        assert_eq!((layout.version.major, layout.version.minor), (major, minor));
        assert_eq!(layout.flavour, flavour);
        let matches = ALL
            .iter()
            .filter(|l| l.version.same_minor(layout.version) && l.flavour == flavour)
            .count();
        assert_eq!(
            matches, 1,
            "{major}.{minor} {flavour:?} appears {matches} times"
        );
    }
    assert_eq!(ALL.len(), expected.len());
    assert!(layout_for(3, 5, Flavour::DEFAULT).is_none());
    assert!(layout_for(3, 12, FT).is_none());
}

#[test]
fn object_header_sizes_follow_the_flavour() {
    for l in ALL.iter().filter(|l| l.version.major == 3) {
        let (ob_type, size) = if l.flavour.free_threaded {
            (24, 32)
        } else {
            (8, 16)
        };
        assert_eq!(l.pyobject_ob_type, ob_type, "{}", l.version);
        assert_eq!(l.pyobject_size, size, "{}", l.version);
        assert_eq!(l.pyvarobject_ob_size, size, "{}", l.version);
    }
}

#[test]
fn shapes_carry_the_fields_they_need() {
    for l in ALL {
        let v = l.version;
        match l.frame_model {
            FrameModel::FrameObject => {
                assert!(l.tstate_frame.is_some() && l.frame_back.is_some(), "{v}");
                assert!(l.frame_code.is_some() && l.frame_lasti.is_some(), "{v}");
                assert!(
                    l.iframe_size.is_none() && l.tstate_current_frame.is_none(),
                    "{v}"
                );
            }
            FrameModel::CFrame311 => {
                assert!(
                    l.tstate_cframe.is_some() && l.cframe_current_frame.is_some(),
                    "{v}"
                );
                assert!(
                    l.tstate_frame.is_none() && l.tstate_current_frame.is_none(),
                    "{v}"
                );
            }
            FrameModel::Direct313 => {
                assert!(l.tstate_current_frame.is_some(), "{v}");
                assert!(l.tstate_frame.is_none() && l.tstate_cframe.is_none(), "{v}");
            }
        }
        if l.frame_model != FrameModel::FrameObject {
            for f in [
                l.iframe_size,
                l.iframe_previous,
                l.iframe_code,
                l.iframe_instr_ptr,
                l.iframe_owner,
                l.iframe_localsplus,
                l.tstate_datastack_chunk,
                l.chunk_previous,
                l.chunk_size,
                l.chunk_top,
                l.chunk_data,
                l.code_code_adaptive,
            ] {
                assert!(f.is_some(), "{v}: interpreter-frame field missing");
            }
            // The struct ends with `localsplus[1]`.
            assert_eq!(l.iframe_size, l.iframe_localsplus.map(|o| o + 8), "{v}");
        }
        match l.line_table {
            LineTable::Lnotab27 | LineTable::Lnotab36 => assert!(l.code_lnotab.is_some()),
            LineTable::Linetable310 | LineTable::Location311 => {
                assert!(l.code_linetable.is_some() && l.code_lnotab.is_none(), "{v}")
            }
        }
        match l.string_model {
            StringModel::Bytes27 => assert!(l.unicode_state.is_none(), "{v}"),
            StringModel::Compact33 => {
                let masks = [
                    l.unicode_kind_mask.unwrap(),
                    l.unicode_compact_mask.unwrap(),
                    l.unicode_ascii_mask.unwrap(),
                ];
                // kind is three bits wide; compact and ascii one bit each; no overlap.
                assert_eq!(masks[0].count_ones(), 3, "{v}");
                assert_eq!(masks[1].count_ones() + masks[2].count_ones(), 2, "{v}");
                assert_eq!(
                    masks[0] & masks[1] | masks[0] & masks[2] | masks[1] & masks[2],
                    0
                );
                assert!(l.unicode_ascii_size < l.unicode_compact_size, "{v}");
            }
        }
        match l.dict_model {
            DictModel::Table27 => assert!(l.dictkeys_size.is_none(), "{v}"),
            DictModel::Compact36 => {
                assert!(
                    l.dictkeys_size.is_some() && l.dictkeys_kind.is_none(),
                    "{v}"
                )
            }
            DictModel::Compact311 => {
                assert!(l.dictkeys_kind.is_some() && l.dictkeys_log2_index_bytes.is_some())
            }
        }
        match l.runtime_model {
            RuntimeModel::InterpHead => assert!(l.runtime_interpreters_head.is_none(), "{v}"),
            RuntimeModel::PyRuntime37 => assert!(l.runtime_interpreters_head.is_some(), "{v}"),
        }
        match l.gil_model {
            GilModel::CurrentSymbol => assert!(l.gil_locked.is_none(), "{v}"),
            GilModel::RuntimeTstateCurrent => assert!(l.runtime_tstate_current.is_some(), "{v}"),
            GilModel::InterpGilPointer => {
                assert!(
                    l.interp_ceval_gil.is_some() && l.gil_last_holder.is_some(),
                    "{v}"
                )
            }
        }
        // Tag masks exist exactly where frames hold `_PyStackRef`s.
        assert_eq!(
            l.stackref_mask != u64::MAX,
            l.iframe_stackpointer.is_some(),
            "{v}"
        );
        // Thread-local bytecode is a free-threaded 3.14+ feature.
        let tlbc = l.flavour.free_threaded && l.iframe_stackpointer.is_some();
        assert_eq!(l.iframe_tlbc_index.is_some(), tlbc, "{v}");
        assert_eq!(l.code_tlbc.is_some(), tlbc, "{v}");
    }
}

#[test]
fn debug_builds_share_the_default_layout_where_it_matters() {
    // Py_DEBUG no longer implies Py_TRACE_REFS (3.8+), so object headers do not grow.
    for minor in 13..=15 {
        let d = layout_for(3, minor, DEBUG).unwrap();
        let r = layout_for(3, minor, Flavour::DEFAULT).unwrap();
        assert_eq!(d.pyobject_size, r.pyobject_size);
        assert_eq!(d.tstate_current_frame, r.tstate_current_frame);
        assert_eq!(d.runtime_interpreters_head, r.runtime_interpreters_head);
    }
}

#[test]
fn pyenv_3_13_debug_offsets_cross_check() {
    // Measured on pyenv's 3.13.0: `_Py_DebugOffsets.runtime_state.interpreters_head` is 632
    // (see shared notes). The table is generated from sid's 3.13 headers.
    let l = layout_for(3, 13, Flavour::DEFAULT).unwrap();
    assert_eq!(l.runtime_interpreters_head, Some(632));
}

#[test]
fn debug_offset_tables_are_sorted_and_complete() {
    assert_eq!(DEBUG_OFFSETS.len(), 9);
    for t in DEBUG_OFFSETS {
        let v = t.version;
        assert!(
            t.fields.windows(2).all(|w| w[0].0 < w[1].0),
            "{v}: not sorted"
        );
        assert_eq!(t.position("cookie"), Some(0), "{v}");
        assert_eq!(t.position("version"), Some(8), "{v}");
        assert_eq!(t.position("free_threaded"), Some(16), "{v}");
        let size = t.position("__size").unwrap();
        assert!(t.fields.iter().all(|&(_, p)| p <= size), "{v}");
        assert!(t.position("no_such.member").is_none());
        // Every member is a u64 after the 8-byte cookie: positions are distinct multiples of 8.
        let mut positions: Vec<u32> = t.fields.iter().map(|f| f.1).collect();
        positions.sort_unstable();
        positions.dedup();
        assert_eq!(positions.len(), t.fields.len(), "{v}: duplicate positions");
        assert!(positions.iter().all(|p| p % 8 == 0), "{v}");
        let l = layout_for(v.major, v.minor, t.flavour).unwrap();
        assert_eq!(l.version, t.version);
        for name in [
            "runtime_state.interpreters_head",
            "interpreter_state.threads_head",
            "thread_state.current_frame",
            "thread_state.native_thread_id",
            "interpreter_frame.owner",
            "code_object.co_code_adaptive",
        ] {
            assert!(t.position(name).is_some(), "{v}: {name}");
        }
    }
    let t313 = debug_offsets_for(3, 13, Flavour::DEFAULT).unwrap();
    assert!(t313.position("interpreter_frame.stackpointer").is_none());
    let t314 = debug_offsets_for(3, 14, Flavour::DEFAULT).unwrap();
    assert!(t314.position("interpreter_frame.stackpointer").is_some());
    let t315 = debug_offsets_for(3, 15, Flavour::DEFAULT).unwrap();
    assert!(t315.position("thread_state.holds_gil").is_some());
    assert!(debug_offsets_for(3, 12, Flavour::DEFAULT).is_none());
}
