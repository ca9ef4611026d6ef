//! Generated layout tables (placeholder until python-abi/gen/abigen.py runs).

use crate::{DebugOffsetsTable, Layout};

/// Every generated layout.
pub static ALL: &[Layout] = &[];

/// Every generated `_Py_DebugOffsets` position table (3.13+).
pub static DEBUG_OFFSETS: &[DebugOffsetsTable] = &[];
