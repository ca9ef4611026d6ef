//! Kernel thread ids for Pythons that do not record them (≤3.10), from glibc's thread
//! descriptors.
//!
//! Before 3.8 a thread state holds only `thread_id`, the `pthread_t` that
//! `threading.get_ident()` returns. In glibc a `pthread_t` is the address of the thread's
//! `struct pthread` (nptl/descr.h), whose `tid` member sits at a fixed offset for a given
//! glibc build (0x2d0 on current x86-64 glibc, but it has moved between releases and
//! differs on other architectures and libcs). We find that offset from the target itself:
//! it is the offset at which every thread's descriptor holds a distinct live thread id.
//! This module only interprets memory; the caller says which thread ids are alive (from
//! `/proc`), in the target's own PID namespace, since that is what the descriptors hold.

use std::collections::{HashMap, HashSet};
use strobe_memory::{le, MemError, RemoteMemory};

/// How far into `struct pthread` we look for `tid`; glibc's has always been well within.
const SEARCH_BYTES: usize = 2048;

/// Map `pthread_t` idents to the kernel thread ids their descriptors hold, as the target
/// sees them (its PID namespace).
///
/// `live` holds the target's live thread ids and `main` its main thread's id, both in the
/// target's namespace. The field offset is calibrated on the idents given: the smallest
/// 4-aligned offset below 2048 at which every ident's descriptor holds a distinct member of
/// `live`, preferring an offset at which one of them is `main`. `Ok(None)` when no offset
/// fits, e.g. when a thread exited after its ident was read (the kernel zeroes `tid` at
/// exit); callers can retry with a fresh list. With a single thread the calibration has only
/// one value to go on and is correspondingly weaker.
pub fn tids_from_descriptors<M: RemoteMemory>(
    mem: &M,
    idents: &[u64],
    live: &HashSet<u32>,
    main: u32,
) -> Result<Option<HashMap<u64, u32>>, MemError> {
    if idents.is_empty() {
        return Ok(Some(HashMap::new()));
    }
    let mut blocks = Vec::with_capacity(idents.len());
    for &ident in idents {
        blocks.push(mem.read_vec(ident, SEARCH_BYTES, SEARCH_BYTES)?);
    }
    let Some(offset) = calibrate(&blocks, live, main) else {
        return Ok(None);
    };
    Ok(Some(
        idents
            .iter()
            .zip(&blocks)
            .filter_map(|(&ident, block)| Some((ident, le::u32_at(block, offset)?)))
            .collect(),
    ))
}

/// The offset at which every block holds a distinct member of `live`; among those, the
/// smallest at which some block holds `main`, else the smallest.
fn calibrate(blocks: &[Vec<u8>], live: &HashSet<u32>, main: u32) -> Option<usize> {
    let mut first_fit = None;
    for off in (0..SEARCH_BYTES).step_by(4) {
        let mut values = HashSet::new();
        let fits = blocks.iter().all(|b| {
            le::u32_at(b, off).is_some_and(|v| v != 0 && live.contains(&v) && values.insert(v))
        });
        if fits {
            if values.contains(&main) {
                return Some(off);
            }
            first_fit.get_or_insert(off);
        }
    }
    first_fit
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn block(fields: &[(usize, u32)]) -> Vec<u8> {
        let mut b = vec![0u8; SEARCH_BYTES];
        for &(off, v) in fields {
            b[off..off + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[test]
    fn picks_the_offset_holding_distinct_live_ids() {
        let live: HashSet<u32> = [100, 101, 102].into();
        // Offset 24 holds a live id in every block, but the same one (a flag equal to a
        // thread id by accident): not distinct, so not the tid field.
        let blocks = vec![
            block(&[(24, 101), (720, 100)]),
            block(&[(24, 101), (720, 101)]),
            block(&[(24, 101), (720, 102)]),
        ];
        assert_eq!(calibrate(&blocks, &live, 100), Some(720));
    }

    #[test]
    fn prefers_an_offset_that_sees_the_main_thread() {
        let live: HashSet<u32> = [100, 101, 102].into();
        let blocks = vec![
            block(&[(8, 101), (720, 100)]),
            block(&[(8, 102), (720, 101)]),
        ];
        assert_eq!(calibrate(&blocks, &live, 100), Some(720));
        // Without the main thread among the idents, the smallest fit wins.
        assert_eq!(calibrate(&blocks, &live, 999), Some(8));
    }

    #[test]
    fn no_fit_is_none() {
        let live: HashSet<u32> = [100].into();
        assert_eq!(calibrate(&[block(&[(720, 0)])], &live, 100), None);
    }
}
