//! Function symbols (`.symtab`, `.dynsym`) sorted by address, for `symbol+offset` where a
//! binary has no DWARF, and for the ELF names of split parts (`.cold`) where it has.

use std::sync::Arc;

/// A function symbol as the file states it.
#[derive(Debug, Clone)]
pub(crate) struct TableSymbol {
    pub start: u64,
    pub size: u64,
    pub name: Arc<str>,
}

/// Function symbols by address.
#[derive(Debug, Default)]
pub(crate) struct SymbolTable {
    /// Sorted by `start`, one per address.
    symbols: Vec<TableSymbol>,
}

impl SymbolTable {
    /// A table of `symbols` (duplicates and aliases allowed: one name per address is kept,
    /// preferring a sized one, then the one that does not start with an underscore, as
    /// `.symtab` and `.dynsym` name the same function and libc has `__foo`/`foo` aliases).
    pub fn new(mut symbols: Vec<TableSymbol>) -> SymbolTable {
        symbols.sort_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then((b.size != 0).cmp(&(a.size != 0)))
                .then(a.name.starts_with('_').cmp(&b.name.starts_with('_')))
                .then(a.name.cmp(&b.name))
        });
        symbols.dedup_by_key(|s| s.start);
        SymbolTable { symbols }
    }

    /// Merge another file's symbols into this table (a separate debug file's `.symtab`).
    pub fn merged(self, more: &[TableSymbol]) -> SymbolTable {
        let mut all = self.symbols;
        all.extend_from_slice(more);
        SymbolTable::new(all)
    }

    /// The symbol named `name` (a linear search, for the few names looked up once per
    /// module map).
    pub fn by_name(&self, name: &str) -> Option<&TableSymbol> {
        self.symbols.iter().find(|s| &*s.name == name)
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// The symbol covering stated address `svma`, and the offset into it. A symbol without a
    /// size covers up to the next symbol.
    pub fn lookup(&self, svma: u64) -> Option<(&TableSymbol, u64)> {
        let i = self.symbols.partition_point(|s| s.start <= svma);
        let sym = self.symbols.get(i.checked_sub(1)?)?;
        let offset = svma - sym.start;
        let covered = if sym.size != 0 {
            offset < sym.size
        } else {
            self.symbols.get(i).is_some_and(|next| svma < next.start)
        };
        covered.then_some((sym, offset))
    }
}

/// A symbol name as people read it: Rust and C++ names demangled, C names as they are.
pub(crate) fn demangle(name: &str) -> Arc<str> {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}").into();
    }
    if name.starts_with("_Z") {
        if let Ok(sym) = cpp_demangle::Symbol::new(name) {
            if let Ok(text) = sym.demangle(&cpp_demangle::DemangleOptions::default()) {
                return text.into();
            }
        }
    }
    name.into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sym(start: u64, size: u64, name: &str) -> TableSymbol {
        TableSymbol {
            start,
            size,
            name: name.into(),
        }
    }

    #[test]
    fn lookup_prefers_sized_plain_names_and_respects_sizes() {
        let t = SymbolTable::new(vec![
            sym(0x100, 0x10, "__nanosleep"),
            sym(0x100, 0x10, "nanosleep"),
            sym(0x200, 0, "asm_stub"),
            sym(0x300, 0x20, "f.cold"),
        ]);
        assert_eq!(t.len(), 3);
        let (s, off) = t.lookup(0x105).unwrap();
        assert_eq!((&*s.name, off), ("nanosleep", 5));
        assert!(t.lookup(0x110).is_none(), "past the size");
        assert_eq!(&*t.lookup(0x2ff).unwrap().0.name, "asm_stub");
        assert_eq!(&*t.lookup(0x31f).unwrap().0.name, "f.cold");
        assert!(t.lookup(0x320).is_none());
        assert!(t.lookup(0xff).is_none());
    }

    #[test]
    fn demangles_rust_and_cpp() {
        assert_eq!(
            &*demangle("_PyEval_EvalFrameDefault"),
            "_PyEval_EvalFrameDefault"
        );
        assert_eq!(
            &*demangle("_ZN4core3fmt5write17h0123456789abcdefE"),
            "core::fmt::write"
        );
        assert_eq!(&*demangle("_ZN3foo3barEv"), "foo::bar()");
    }
}
