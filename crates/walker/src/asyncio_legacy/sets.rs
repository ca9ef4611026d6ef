//! The members of a live `set` (the tasks' `WeakSet` data, `_eager_tasks`, a `TaskGroup`'s
//! `_tasks`), read while the target keeps changing it.
//!
//! A member that stays in the set throughout the read must be in the result, or the read must
//! fail: the sampler derives who awaits whom from these tasks, and a task read without its
//! parent would be drawn as a root. Two things could lose such a member:
//!
//! - Stopping at `used` members: `used` is read before the table, and a member added in
//!   between, in an earlier slot, would push the last one out. Every slot is scanned instead.
//! - A resize (`set_table_resize` in Objects/setobject.c) moves every member to new slots of a
//!   new table (or rebuilds the 8-slot `smalltable` in place) while the old slots are read.
//!   It always sets `fill` to `used` and, outside the small table, installs a newly allocated
//!   `table`; adding a member raises `fill` and `used`, discarding one lowers `used`. So the
//!   header (`fill`, `used`, `mask`, `table`) is read before and after the slots, and the
//!   slots count only when it did not change; otherwise they are read again, at most
//!   [`SET_READS`] times. (Resizes during the read that end on the same table address with
//!   the same three counts would go unseen.)

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::Layout;

use crate::error::WalkError;

/// Most slots of a `set` table we scan (a set of [`crate::asyncio::MAX_TASKS`] entries has
/// fewer).
const MAX_SET_SLOTS: u64 = 1 << 18;
/// Slots read at a time.
const SET_CHUNK: u64 = 1 << 12;
/// Reads of a set's slots before giving up on a set that changes each time.
pub(super) const SET_READS: usize = 3;

/// `fill`, `used`, `mask` and `table` of a set: `Py_ssize_t fill` comes right before `used`
/// in every `PySetObject` (Include/cpython/setobject.h, 2.7 to 3.15).
type Header = [u64; 4];

fn header<M: RemoteMemory + ?Sized>(mem: &M, l: &Layout, set: u64) -> Result<Header, WalkError> {
    let at = |off: u32| mem.read_u64(set.wrapping_add(u64::from(off)));
    Ok([
        at(l.set_used.wrapping_sub(8))?,
        at(l.set_used)?,
        at(l.set_mask)?,
        at(l.set_table)?,
    ])
}

/// The keys of the `set` at `set`, at most `max` (more: [`WalkError::Unbounded`]), scanning at
/// most [`MAX_SET_SLOTS`] slots, read so that no member present throughout is missed (see the
/// module documentation); [`WalkError::Corrupt`] when the set changed during each of
/// [`SET_READS`] reads.
pub(super) fn set_members<M: RemoteMemory + ?Sized>(
    mem: &M,
    l: &Layout,
    set: u64,
    max: usize,
) -> Result<Vec<u64>, WalkError> {
    let mut before = header(mem, l, set)?;
    for _ in 0..SET_READS {
        let keys = slots(mem, l, set, before, max)?;
        let after = header(mem, l, set)?;
        if after == before {
            return Ok(keys);
        }
        before = after;
    }
    Err(WalkError::Corrupt {
        what: "set (it changed during every read)",
        addr: set,
    })
}

/// The keys in the table `header` names.
fn slots<M: RemoteMemory + ?Sized>(
    mem: &M,
    l: &Layout,
    set: u64,
    [_, used, mask, table]: Header,
    max: usize,
) -> Result<Vec<u64>, WalkError> {
    let corrupt = WalkError::Corrupt {
        what: "set",
        addr: set,
    };
    let too_many = WalkError::Unbounded {
        what: "asyncio task",
        limit: max,
    };
    if used > max as u64 {
        return Err(too_many);
    }
    let slots = mask
        .checked_add(1)
        .filter(|s| s.is_power_of_two() && *s <= MAX_SET_SLOTS)
        .ok_or(corrupt.clone())?;
    let stride = u64::from(l.setentry_size);
    if stride == 0 || stride > 64 {
        return Err(corrupt);
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < slots {
        let n = SET_CHUNK.min(slots - at);
        let bytes = mem.read_vec(
            table.wrapping_add(at * stride),
            (n * stride) as usize,
            (SET_CHUNK * stride) as usize,
        )?;
        for c in bytes.chunks_exact(stride as usize) {
            let key = le::u64_at(c, l.setentry_key as usize).unwrap_or(0);
            let hash = le::u64_at(c, l.setentry_hash as usize).unwrap_or(u64::MAX);
            // Free slots have a NULL key, deleted ones the dummy key with hash -1.
            if key != 0 && hash != u64::MAX {
                if out.len() >= max {
                    return Err(too_many);
                }
                out.push(key);
            }
        }
        at += n;
    }
    Ok(out)
}
