//! Dict tables: every live `(key, value)` pair of a dict, whatever its layout (2.7's open
//! table, 3.6–3.10's compact keys, 3.11+'s keys kinds and split tables), and lookups by `str`
//! key.

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::{DictModel, Layout, StringModel};

use super::instances::dictvalues_array_offset;
use super::{field, Kind, Reader, MAX_DICT_ENTRIES};
use crate::error::WalkError;
use crate::strings::read_string;

/// Most slots we accept in a 2.7 dict table (it keeps up to a third of them free, and more
/// after deletions).
const MAX_TABLE27_SLOTS: usize = 1 << 18;

/// Largest `log2(dk_size)` we accept (3.11+); `1 << 24` slots is far beyond any real dict.
const MAX_LOG2_SIZE: u8 = 24;

/// `DICT_KEYS_GENERAL` (3.11+, `Include/internal/pycore_dict.h`): entries carry their hash
/// (`PyDictKeyEntry {me_hash, me_key, me_value}`); the other kinds (`DICT_KEYS_UNICODE`,
/// `DICT_KEYS_SPLIT`) use `PyDictUnicodeEntry {me_key, me_value}`.
const DICT_KEYS_GENERAL: u8 = 0;
/// `DICT_KEYS_SPLIT` (3.11+, `pycore_dict.h`): the highest valid `dk_kind`.
const DICT_KEYS_SPLIT: u8 = 2;

/// The parts of a dict-keys object we need to walk its entries.
pub(crate) struct Entries {
    /// Address of entry 0.
    pub(crate) addr: u64,
    /// Number of entries to look at.
    pub(crate) count: usize,
    /// Entries the object has room for (`USABLE_FRACTION` of its slots; every slot of a 2.7
    /// table): past `count` they are zeroed until used.
    pub(crate) capacity: usize,
    /// Bytes per entry.
    pub(crate) stride: usize,
    /// Offset of `me_key` in an entry.
    pub(crate) key: usize,
    /// Offset of `me_value` in an entry.
    pub(crate) value: usize,
}

/// The dict-keys decoding of this module, for the value reader (`crate::value`): where the
/// entries of a `PyDictKeysObject` are (3.6+), and the pairs of a split table.
pub(crate) struct DictKeys<'a, M: RemoteMemory + ?Sized>(Reader<'a, M>);

impl<'a, M: RemoteMemory + ?Sized> DictKeys<'a, M> {
    pub(crate) fn new(mem: &'a M, layout: &'a Layout) -> Self {
        DictKeys(Reader::new(mem, layout))
    }

    /// Where the entries of the keys object at `keys` are (3.6+ dict models).
    pub(crate) fn entries(&self, keys: u64) -> Result<Entries, WalkError> {
        self.0.dict_entries(keys)
    }

    /// The live pairs of a split table whose values are at `values`.
    pub(crate) fn split_items(
        &self,
        e: &Entries,
        values: u64,
    ) -> Result<Vec<(u64, u64)>, WalkError> {
        self.0.split_items(e, values)
    }
}

impl<'a, M: RemoteMemory + ?Sized> Reader<'a, M> {
    /// Every live `(key, value)` pair of the dict at `dict`.
    pub(super) fn dict_items(&self, dict: u64) -> Result<Vec<(u64, u64)>, WalkError> {
        let l = self.layout;
        let keys = self.mem.read_u64(field(dict, u64::from(l.dict_ma_keys)))?;
        let values = self
            .mem
            .read_u64(field(dict, u64::from(l.dict_ma_values)))?;
        if keys == 0 {
            return Err(Self::corrupt("dict without keys", dict));
        }
        match l.dict_model {
            DictModel::Table27 => self.table27_items(dict, keys, values),
            DictModel::Compact36 | DictModel::Compact311 => {
                let entries = self.dict_entries(keys)?;
                if values == 0 {
                    self.combined_items(&entries)
                } else {
                    self.split_items(&entries, values)
                }
            }
        }
    }

    /// 2.7 (`Include/dictobject.h`): `ma_table` points at `ma_mask + 1` slots of
    /// `PyDictEntry {me_hash, me_key, me_value}`; free slots have a NULL key, deleted ones the
    /// dummy key and a NULL value. (`Layout` stores `ma_table` in `dict_ma_keys` and `ma_mask`
    /// in `dict_ma_values`.)
    fn table27_items(
        &self,
        dict: u64,
        table: u64,
        mask: u64,
    ) -> Result<Vec<(u64, u64)>, WalkError> {
        let slots = usize::try_from(mask)
            .ok()
            .and_then(|m| m.checked_add(1))
            .filter(|s| s.is_power_of_two() && *s <= MAX_TABLE27_SLOTS)
            .ok_or(Self::corrupt("dict ma_mask", dict))?;
        let entries = Entries {
            addr: table,
            count: slots,
            capacity: slots,
            stride: 24,
            key: 8,
            value: 16,
        };
        self.combined_items(&entries)
    }

    /// Decode a `PyDictKeysObject` header (3.6+) into where its entries are.
    pub(super) fn dict_entries(&self, keys: u64) -> Result<Entries, WalkError> {
        let l = self.layout;
        let missing = || WalkError::Unsupported("layout lacks dict-keys offsets".into());
        let indices = l.dictkeys_indices.ok_or_else(missing)? as usize;
        let size_off = l.dictkeys_size.ok_or_else(missing)? as usize;
        let nentries_off = l.dictkeys_nentries.ok_or_else(missing)? as usize;
        // The whole fixed header in one read.
        let head = self.mem.read_vec(keys, indices, 256)?;
        let bad = |what| Self::corrupt(what, keys);
        let nentries = le::u64_at(&head, nentries_off).ok_or(bad("dict keys header"))?;
        let (slots, index_bytes, stride, key, value) = match l.dict_model {
            DictModel::Compact311 => {
                let log2_size = le::u8_at(&head, size_off).ok_or(bad("dict keys header"))?;
                let log2_index = l
                    .dictkeys_log2_index_bytes
                    .and_then(|o| le::u8_at(&head, o as usize))
                    .ok_or_else(missing)?;
                let kind = l
                    .dictkeys_kind
                    .and_then(|o| le::u8_at(&head, o as usize))
                    .ok_or_else(missing)?;
                if !(3..=MAX_LOG2_SIZE).contains(&log2_size) {
                    return Err(bad("dict dk_log2_size"));
                }
                // Indices are 1, 2, 4 or 8 bytes each (`DK_IXSIZE`), so their total is
                // between `size` and `8 * size` bytes.
                if log2_index < log2_size || log2_index > log2_size + 3 {
                    return Err(bad("dict dk_log2_index_bytes"));
                }
                if kind > DICT_KEYS_SPLIT {
                    return Err(bad("dict dk_kind"));
                }
                let slots = 1u64 << log2_size;
                let index_bytes = 1u64 << log2_index;
                if kind == DICT_KEYS_GENERAL {
                    (slots, index_bytes, 24, 8, 16)
                } else {
                    (slots, index_bytes, 16, 0, 8)
                }
            }
            // 3.6–3.10 (`Objects/dict-common.h`): `dk_size` slots, index width by `DK_IXSIZE`,
            // then `PyDictKeyEntry {me_hash, me_key, me_value}`.
            _ => {
                let size = le::u64_at(&head, size_off).ok_or(bad("dict keys header"))?;
                if !size.is_power_of_two() || !(8..=1 << MAX_LOG2_SIZE).contains(&size) {
                    return Err(bad("dict dk_size"));
                }
                let width = if size <= 0xff {
                    1
                } else if size <= 0xffff {
                    2
                } else {
                    4
                };
                (size, size * width, 24, 8, 16)
            }
        };
        let count = usize::try_from(nentries)
            .ok()
            .filter(|&n| n as u64 <= slots && n <= MAX_DICT_ENTRIES)
            .ok_or(bad("dict dk_nentries"))?;
        Ok(Entries {
            addr: field(keys, indices as u64 + index_bytes),
            count,
            // `USABLE_FRACTION` (Objects/dictobject.c): entries are allocated for 2/3 of the slots.
            capacity: (slots as usize * 2 / 3).max(count),
            stride,
            key,
            value,
        })
    }

    /// Pairs whose key and value both live in the entries.
    fn combined_items(&self, e: &Entries) -> Result<Vec<(u64, u64)>, WalkError> {
        let buf = self.mem.read_vec(
            e.addr,
            e.count * e.stride,
            MAX_TABLE27_SLOTS.max(MAX_DICT_ENTRIES) * 24,
        )?;
        Ok(buf
            .chunks_exact(e.stride)
            .filter_map(|c| {
                let k = le::u64_at(c, e.key)?;
                let v = le::u64_at(c, e.value)?;
                (k != 0 && v != 0).then_some((k, v))
            })
            .collect())
    }

    /// Pairs of a split table: key `i` from the shared keys, value `i` from the values array
    /// (at `values`, the `PyDictValues` / 3.6–3.10 `PyObject **`).
    pub(super) fn split_items(
        &self,
        e: &Entries,
        values: u64,
    ) -> Result<Vec<(u64, u64)>, WalkError> {
        let mut count = e.count;
        let array_off = dictvalues_array_offset(self.obj_model);
        if array_off > 0 {
            // 3.13+: the array holds `capacity` slots (`struct _dictvalues`, `pycore_dict.h`);
            // keys added to the shared table later have no slot here.
            let capacity = self.mem.read_u8(values)?;
            count = count.min(usize::from(capacity));
        }
        let keys = self
            .mem
            .read_vec(e.addr, count * e.stride, MAX_DICT_ENTRIES * 24)?;
        let vals = self
            .mem
            .read_vec(field(values, array_off), count * 8, MAX_DICT_ENTRIES * 8)?;
        Ok(keys
            .chunks_exact(e.stride)
            .zip(vals.chunks_exact(8))
            .filter_map(|(kc, vc)| {
                let k = le::u64_at(kc, e.key)?;
                let v = le::u64_at(vc, 0)?;
                (k != 0 && v != 0).then_some((k, v))
            })
            .collect())
    }

    /// The value stored under the `str` key `needle`, if any.
    pub(super) fn dict_get_str(
        &mut self,
        dict: u64,
        needle: &str,
    ) -> Result<Option<u64>, WalkError> {
        let items = self.dict_items(dict)?;
        self.find_str(&items, needle)
    }

    /// The value of the first of `items` whose key is the `str` `needle`. The keys' headers
    /// (type and length) are read together, in one batched read, so that a dict of `n` keys
    /// costs one read and the text of the candidates of the right length instead of `2n`
    /// reads; where that read fails (a key freed meanwhile), key by key as before.
    pub(super) fn find_str(
        &mut self,
        items: &[(u64, u64)],
        needle: &str,
    ) -> Result<Option<u64>, WalkError> {
        let (len_off, want) = self.str_length(needle)?;
        let type_off = self.layout.pyobject_ob_type as usize;
        let header = type_off.max(len_off) + 8;
        let reqs: Vec<(u64, usize)> = items.iter().map(|&(key, _)| (key, header)).collect();
        let mut buf = vec![0u8; header * items.len()];
        if items.len() > 1 && self.mem.read_batch(&reqs, &mut buf).is_ok() {
            for (&(key, value), head) in items.iter().zip(buf.chunks_exact(header)) {
                let (Some(ty), Some(len)) = (le::u64_at(head, type_off), le::u64_at(head, len_off))
                else {
                    continue;
                };
                if self.kind_of_type(ty)? == Kind::Str
                    && len == want as u64
                    && read_string(self.mem, self.layout, key)? == needle
                {
                    return Ok(Some(value));
                }
            }
            return Ok(None);
        }
        for &(key, value) in items {
            if self.str_equals(key, needle)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Where a `str`'s length is, and the length `needle` has there.
    fn str_length(&self, needle: &str) -> Result<(usize, usize), WalkError> {
        let (len_off, want) = match self.layout.string_model {
            // 2.7 `PyStringObject.ob_size` counts bytes.
            StringModel::Bytes27 => (self.layout.pyvarobject_ob_size, needle.len()),
            // `PyASCIIObject.length` counts code points.
            StringModel::Compact33 => match self.layout.unicode_length {
                Some(o) => (o, needle.chars().count()),
                None => {
                    return Err(WalkError::Unsupported(
                        "layout lacks unicode offsets".into(),
                    ))
                }
            },
        };
        Ok((len_off as usize, want))
    }

    /// Whether `obj` is a `str` whose text is `needle`. Reads the length first so that only
    /// candidates of the right length are decoded.
    fn str_equals(&mut self, obj: u64, needle: &str) -> Result<bool, WalkError> {
        if self.kind_of(obj)? != Kind::Str {
            return Ok(false);
        }
        let (len_off, want) = self.str_length(needle)?;
        let len = self.mem.read_u64(field(obj, len_off as u64))?;
        if len != want as u64 {
            return Ok(false);
        }
        Ok(read_string(self.mem, self.layout, obj)? == needle)
    }
}
