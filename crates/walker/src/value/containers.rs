//! Containers: `tuple`, `list`, `dict`, `set` and `frozenset`, their first items written
//! recursively with Python's brackets, a container met again on its own path as `[...]`, and
//! the hash-table scans that find a `dict`'s or `set`'s live entries.

use std::fmt::Write as _;

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::StringModel;

use super::{
    corrupt, field, missing, Ctx, Kind, ValueReader, MAX_ITEMS, MAX_NESTING, MAX_REPR,
    MAX_SCAN_SLOTS,
};
use crate::error::WalkError;

impl<M: RemoteMemory + ?Sized> ValueReader<'_, M> {
    pub(super) fn write_container(
        &mut self,
        obj: u64,
        kind: Kind,
        ctx: &mut Ctx,
        depth: usize,
    ) -> Result<(), WalkError> {
        let python2 = self.layout.string_model == StringModel::Bytes27;
        let (open, close) = match (kind, python2) {
            (Kind::Tuple, _) => ("(", ")"),
            (Kind::List, _) => ("[", "]"),
            (Kind::Dict, _) => ("{", "}"),
            (Kind::Set, true) => ("set([", "])"),
            (Kind::FrozenSet, true) => ("frozenset([", "])"),
            (Kind::Set, false) => ("{", "}"),
            _ => ("frozenset({", "})"),
        };
        if ctx.path.contains(&obj) {
            // Python's own repr of a container inside itself.
            let _ = write!(ctx.out, "{open}...{close}");
            return Ok(());
        }
        if depth >= MAX_NESTING {
            let _ = write!(ctx.out, "{open}...{close}");
            ctx.truncated = true;
            return Ok(());
        }
        let (len, items) = match kind {
            Kind::Tuple => {
                let n = self.var_size(obj)?;
                let shown = n.min(MAX_ITEMS as u64) as usize;
                let items = self.pointers(field(obj, self.layout.tuple_ob_item), shown)?;
                (n, items.into_iter().map(|i| (i, 0)).collect::<Vec<_>>())
            }
            Kind::List => {
                let l = self.layout;
                let n = self.var_size(obj)?;
                let allocated = self.mem.read_u64(field(obj, l.list_allocated))?;
                if n > allocated {
                    return Err(corrupt("list size", obj));
                }
                let shown = n.min(MAX_ITEMS as u64) as usize;
                let items = if shown == 0 {
                    Vec::new()
                } else {
                    let array = self.mem.read_u64(field(obj, l.list_ob_item))?;
                    self.pointers(array, shown)?
                };
                (n, items.into_iter().map(|i| (i, 0)).collect())
            }
            Kind::Dict => self.dict_items(obj, MAX_ITEMS)?,
            _ => self.set_items(obj, MAX_ITEMS)?,
        };
        let empty_set = matches!(kind, Kind::Set | Kind::FrozenSet) && len == 0;
        if empty_set {
            let name = if kind == Kind::Set {
                "set"
            } else {
                "frozenset"
            };
            let _ = write!(ctx.out, "{name}({})", if python2 { "[]" } else { "" });
            return Ok(());
        }
        ctx.path.push(obj);
        ctx.out.push_str(open);
        for (i, &(item, value)) in items.iter().enumerate() {
            if i > 0 {
                ctx.out.push_str(", ");
            }
            self.write(item, ctx, depth + 1);
            if kind == Kind::Dict {
                ctx.out.push_str(": ");
                self.write(value, ctx, depth + 1);
            }
            if ctx.out.len() >= MAX_REPR {
                break;
            }
        }
        ctx.path.pop();
        let more = len > items.len() as u64;
        if more {
            ctx.out
                .push_str(if items.is_empty() { "..." } else { ", ..." });
            ctx.truncated = true;
        }
        if kind == Kind::Tuple && len == 1 {
            ctx.out.push(',');
        }
        ctx.out.push_str(close);
        if more {
            let _ = write!(ctx.out, " ({len} items)");
        }
        Ok(())
    }

    /// `ma_used` and the first `max` live `(key, value)` pairs of a dict, in its order.
    fn dict_items(&self, dict: u64, max: usize) -> Result<(u64, Vec<(u64, u64)>), WalkError> {
        let l = self.layout;
        let used = self.read_len(dict, l.dict_ma_used, "dict size")?;
        if used == 0 {
            return Ok((0, Vec::new()));
        }
        let keys = self.mem.read_u64(field(dict, l.dict_ma_keys))?;
        let values = self.mem.read_u64(field(dict, l.dict_ma_values))?;
        if keys == 0 {
            return Err(corrupt("dict without keys", dict));
        }
        let want = max.min(used as usize);
        let items = match l.dict_model {
            strobe_python_abi::DictModel::Table27 => {
                // 2.7 (`Include/dictobject.h`): `ma_table` (in `dict_ma_keys`) of `ma_mask + 1`
                // (in `dict_ma_values`) `{hash, key, value}`; deleted slots have a NULL value.
                let slots = table_slots(values, "dict ma_mask", dict)?;
                scan_slots(&self.mem, keys, slots, 24, want, |c| live_pair(c, 8, 16))?
            }
            _ => {
                let reader = crate::threadnames::DictKeys::new(&self.mem, l);
                let e = reader.entries(keys)?;
                if values == 0 {
                    scan_slots(&self.mem, e.addr, e.count as u64, e.stride, want, |c| {
                        live_pair(c, e.key, e.value)
                    })?
                } else {
                    // A split table (instance dicts): keys shared, values apart.
                    let mut pairs = reader.split_items(&e, values)?;
                    pairs.truncate(want);
                    pairs
                }
            }
        };
        Ok((used, items))
    }

    /// The first `max` keys of a set, in table order (`dump --async`: a task's waiters).
    pub(crate) fn set_keys(&self, set: u64, max: usize) -> Result<Vec<u64>, WalkError> {
        Ok(self
            .set_items(set, max)?
            .1
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// `used` and the first `max` keys of a set, in table order (as Python iterates it).
    fn set_items(&self, set: u64, max: usize) -> Result<(u64, Vec<(u64, u64)>), WalkError> {
        let l = self.layout;
        let used = self.read_len(set, l.set_used, "set size")?;
        if used == 0 {
            return Ok((0, Vec::new()));
        }
        let mask = self.mem.read_u64(field(set, l.set_mask))?;
        let table = self.mem.read_u64(field(set, l.set_table))?;
        let slots = table_slots(mask, "set mask", set)?;
        let stride = l.setentry_size as usize;
        let (key_at, hash_at) = (l.setentry_key as usize, l.setentry_hash as usize);
        if stride == 0 || stride > 64 {
            return Err(missing("a plausible setentry size"));
        }
        let want = max.min(used as usize);
        // Free slots have a NULL key; deleted ones the `dummy` key with hash -1, a hash no
        // real object has (CPython turns -1 into -2).
        let items = scan_slots(&self.mem, table, slots, stride, want, |c| {
            let k = le::u64_at(c, key_at)?;
            let h = le::u64_at(c, hash_at)?;
            (k != 0 && h != u64::MAX).then_some((k, 0))
        })?;
        Ok((used, items))
    }
}

/// The slot count of a hash table whose mask (slots - 1) is `mask`: a power of two, else a
/// corrupt `what` of the object at `addr`.
fn table_slots(mask: u64, what: &'static str, addr: u64) -> Result<u64, WalkError> {
    mask.checked_add(1)
        .filter(|s| s.is_power_of_two())
        .ok_or(corrupt(what, addr))
}

/// The `(key, value)` of a dict entry `c` with the key at `key` and the value at `value`, when
/// both are set (a free or deleted slot has a NULL value).
fn live_pair(c: &[u8], key: usize, value: usize) -> Option<(u64, u64)> {
    let k = le::u64_at(c, key)?;
    let v = le::u64_at(c, value)?;
    (k != 0 && v != 0).then_some((k, v))
}

/// The first `want` live entries of a hash table of `slots` entries of `stride` bytes at
/// `addr`, read in chunks; at most [`MAX_SCAN_SLOTS`] slots are looked at.
fn scan_slots<M: RemoteMemory + ?Sized>(
    mem: &M,
    addr: u64,
    slots: u64,
    stride: usize,
    want: usize,
    live: impl Fn(&[u8]) -> Option<(u64, u64)>,
) -> Result<Vec<(u64, u64)>, WalkError> {
    const CHUNK: u64 = 256;
    let slots = slots.min(MAX_SCAN_SLOTS as u64);
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < slots && out.len() < want {
        let n = CHUNK.min(slots - at);
        let buf = mem.read_vec(
            addr.wrapping_add(at * stride as u64),
            n as usize * stride,
            CHUNK as usize * 64,
        )?;
        for c in buf.chunks_exact(stride) {
            if let Some(pair) = live(c) {
                out.push(pair);
                if out.len() == want {
                    break;
                }
            }
        }
        at += n;
    }
    Ok(out)
}
