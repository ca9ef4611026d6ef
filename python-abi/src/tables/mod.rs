//! Generated layout tables (placeholder until python-abi/gen/abigen.py runs).

use crate::Layout;

/// Every generated layout.
pub static ALL: &[Layout] = &[];
