//! Finding names in a symbol table: through its hash table (`.gnu.hash`, System V `.hash`),
//! which touches a few entries, or, where a table is missing or malformed, by reading every
//! entry and comparing names as bytes where they lie.

use super::{u16_at, u32_at, u64_at, Symbol, SHN_UNDEF, SYM_SIZE};

/// How many symbols a `.gnu.hash` table covers: one past the end of the chain that starts
/// at the highest bucket (chains are laid out in symbol order). `None` if malformed.
pub(super) fn gnu_symbol_count(table: &[u8]) -> Option<usize> {
    let nbuckets = u32_at(table, 0)? as usize;
    let symoffset = u32_at(table, 4)? as usize;
    let bloom_size = u32_at(table, 8)? as usize;
    let buckets_at = 16usize.checked_add(bloom_size.checked_mul(8)?)?;
    let chains_at = buckets_at.checked_add(nbuckets.checked_mul(4)?)?;
    let mut last = symoffset;
    for b in 0..nbuckets {
        last = last.max(u32_at(table, buckets_at + b * 4)? as usize);
    }
    if last < symoffset {
        return None;
    }
    // The chain from `last` ends at the first hash with its low bit set.
    let mut index = last;
    loop {
        let hash = u32_at(
            table,
            chains_at.checked_add((index - symoffset).checked_mul(4)?)?,
        )?;
        if hash & 1 != 0 {
            return index.checked_add(1);
        }
        index += 1;
    }
}

/// A symbol table's entries and its string table, as bytes.
pub(super) struct SymbolTable<'a> {
    pub(super) entries: &'a [u8],
    pub(super) strings: &'a [u8],
}

/// One symbol table entry: the name's offset, and the symbol if it is defined.
struct Entry {
    name: u32,
    symbol: Option<Symbol>,
}

impl SymbolTable<'_> {
    fn len(&self) -> usize {
        self.entries.len() / SYM_SIZE
    }

    fn entry(&self, index: usize) -> Option<Entry> {
        let at = index.checked_mul(SYM_SIZE)?;
        let e = self.entries.get(at..at.checked_add(SYM_SIZE)?)?;
        let value = u64_at(e, 8)?;
        // Undefined (imported) symbols name something another file defines.
        let defined = u16_at(e, 6)? != SHN_UNDEF && value != 0;
        Some(Entry {
            name: u32_at(e, 0)?,
            symbol: defined.then(|| Symbol {
                value,
                size: u64_at(e, 16).unwrap_or(0),
            }),
        })
    }

    /// Whether the name at `offset` is exactly `name`.
    fn name_is(&self, offset: u32, name: &[u8]) -> bool {
        let at = offset as usize;
        at.checked_add(name.len())
            .and_then(|end| Some((self.strings.get(at..end)?, self.strings.get(end)?)))
            .is_some_and(|(bytes, &nul)| bytes == name && nul == 0)
    }

    /// Every entry compared with the names still missing from `found`; the first defined
    /// entry of a name wins.
    pub(super) fn scan(&self, wanted: &[&str], found: &mut [Option<Symbol>]) {
        // Most names differ from all of ours in their first byte.
        let firsts: Vec<u8> = wanted.iter().filter_map(|w| w.bytes().next()).collect();
        for index in 0..self.len() {
            let Some(Entry {
                name,
                symbol: Some(symbol),
            }) = self.entry(index)
            else {
                continue;
            };
            let Some(&first) = self.strings.get(name as usize) else {
                continue;
            };
            if !firsts.contains(&first) {
                continue;
            }
            for (w, slot) in wanted.iter().zip(found.iter_mut()) {
                if slot.is_none() && self.name_is(name, w.as_bytes()) {
                    *slot = Some(symbol);
                }
            }
            if found.iter().all(Option::is_some) {
                return;
            }
        }
    }

    /// `name` through a `.gnu.hash` section: `Some(None)` when the table says the name is not
    /// there, `None` when the table is malformed (read the symbols one by one instead).
    ///
    /// The format (the GNU linker's, described in glibc's `dl-lookup.c` and the LSB): a header
    /// of `nbuckets`, `symoffset` (the first hashed symbol), `bloom_size` and `bloom_shift`;
    /// `bloom_size` 64-bit Bloom filter words; `nbuckets` bucket heads (symbol indices);
    /// then one 32-bit hash per symbol from `symoffset` on, whose low bit ends a chain.
    pub(super) fn gnu_lookup(&self, table: &[u8], name: &[u8]) -> Option<Option<Symbol>> {
        let nbuckets = u32_at(table, 0)? as usize;
        let symoffset = u32_at(table, 4)? as usize;
        let bloom_size = u32_at(table, 8)? as usize;
        let bloom_shift = u32_at(table, 12)?;
        if nbuckets == 0 || bloom_size == 0 {
            return None;
        }
        let hash = name.iter().fold(5381u32, |h, &c| {
            h.wrapping_mul(33).wrapping_add(u32::from(c))
        });
        let bloom_at = 16usize;
        let word_at = bloom_at + (hash as usize / 64 % bloom_size) * 8;
        let word = u64_at(table, word_at)?;
        let mask = (1u64 << (hash % 64)) | (1u64 << ((hash >> (bloom_shift % 32)) % 64));
        if word & mask != mask {
            return Some(None);
        }
        let buckets_at = bloom_at.checked_add(bloom_size.checked_mul(8)?)?;
        let chains_at = buckets_at.checked_add(nbuckets.checked_mul(4)?)?;
        let first = u32_at(table, buckets_at + (hash as usize % nbuckets) * 4)? as usize;
        if first == 0 {
            return Some(None);
        }
        if first < symoffset {
            return None;
        }
        // A chain ends at the table's end at the latest; one that does not is malformed.
        for index in first..self.len() {
            let chain_hash = u32_at(table, chains_at.checked_add((index - symoffset) * 4)?)?;
            if chain_hash | 1 == hash | 1 {
                let entry = self.entry(index)?;
                if entry.symbol.is_some() && self.name_is(entry.name, name) {
                    return Some(entry.symbol);
                }
            }
            if chain_hash & 1 != 0 {
                return Some(None);
            }
        }
        None
    }

    /// `name` through a System V `.hash` section (`nbucket`, `nchain`, buckets, chains, all
    /// 32-bit; elf(5)'s hash function); results as for [`Self::gnu_lookup`].
    pub(super) fn sysv_lookup(&self, table: &[u8], name: &[u8]) -> Option<Option<Symbol>> {
        let nbucket = u32_at(table, 0)? as usize;
        let nchain = u32_at(table, 4)? as usize;
        if nbucket == 0 {
            return None;
        }
        let hash = name.iter().fold(0u32, |h, &c| {
            let h = (h << 4).wrapping_add(u32::from(c));
            let g = h & 0xf000_0000;
            (h ^ (g >> 24)) & !g
        });
        let chains_at = 8usize.checked_add(nbucket.checked_mul(4)?)?;
        let mut index = u32_at(table, 8 + (hash as usize % nbucket) * 4)? as usize;
        for _ in 0..nchain.min(self.len()) {
            if index == 0 {
                return Some(None);
            }
            let entry = self.entry(index)?;
            if entry.symbol.is_some() && self.name_is(entry.name, name) {
                return Some(entry.symbol);
            }
            index = u32_at(table, chains_at.checked_add(index.checked_mul(4)?)?)? as usize;
        }
        (index == 0).then_some(None)
    }
}
