//! [`Symbolizer`]: names, files and lines for unwound addresses, each address resolved once.

use crate::binary::Binary;
use crate::frame::{NativeFrame, SymbolSource};
use crate::modules::ModuleMap;
use crate::symtab::demangle;
use crate::unwind::{Unwound, UnwoundFrame};
use std::collections::HashMap;
use std::sync::Arc;

/// What an address of a binary resolves to, independent of where the binary is loaded.
#[derive(Debug, Clone)]
struct Resolved {
    function: Option<Arc<str>>,
    function_offset: Option<u64>,
    file: Option<Arc<str>>,
    line: Option<u32>,
    inlined: bool,
    source: SymbolSource,
}

/// Turns unwound addresses into [`NativeFrame`]s.
///
/// Results are cached per (binary, stated address), so a long recording resolves each
/// address once; the binaries (and their parsed DWARF) are shared through
/// [`crate::Binaries`], keyed by (device, inode, build-id).
#[derive(Debug, Default)]
pub struct Symbolizer {
    cache: HashMap<(u64, u64), Arc<[Resolved]>>,
    /// File names, interned: thousands of addresses share a few hundred files.
    files: HashMap<String, Arc<str>>,
    misses: u64,
}

impl Symbolizer {
    /// An empty symbolizer.
    pub fn new() -> Symbolizer {
        Symbolizer::default()
    }

    /// Addresses resolved so far (cache misses).
    pub fn resolved(&self) -> u64 {
        self.misses
    }

    /// Append the frames of `unwound` to `out`, innermost first; an address with inlined
    /// functions gives one frame per function, the innermost inlined one first.
    pub fn symbolize(
        &mut self,
        modules: &ModuleMap,
        unwound: &Unwound,
        out: &mut Vec<NativeFrame>,
    ) {
        for frame in &unwound.frames {
            self.symbolize_frame(modules, frame, out);
        }
    }

    /// Append the frames of one unwound address to `out`.
    pub fn symbolize_frame(
        &mut self,
        modules: &ModuleMap,
        frame: &UnwoundFrame,
        out: &mut Vec<NativeFrame>,
    ) {
        let module = modules.find(frame.lookup);
        let plain = |function_offset| NativeFrame {
            address: frame.address,
            module: module.map(|m| Arc::clone(&m.id)),
            module_offset: module.map_or(frame.address, |m| m.svma(frame.address)),
            function: None,
            function_offset,
            file: None,
            line: None,
            inlined: false,
            unwound_by: frame.method,
            source: SymbolSource::None,
        };
        let (Some(module), Some(binary)) = (module, module.and_then(|m| m.binary.as_ref())) else {
            out.push(plain(None));
            return;
        };
        let svma = module.svma(frame.lookup);
        let resolved = match self.cache.get(&(binary.id, svma)) {
            Some(r) => Arc::clone(r),
            None => {
                self.misses += 1;
                let r: Arc<[Resolved]> = resolve(binary, svma, &mut self.files).into();
                self.cache.insert((binary.id, svma), Arc::clone(&r));
                r
            }
        };
        for r in resolved.iter() {
            let mut f = plain(r.function_offset);
            f.function = r.function.clone();
            f.file = r.file.clone();
            f.line = r.line;
            f.inlined = r.inlined;
            f.source = r.source;
            out.push(f);
        }
    }
}

/// Resolve stated address `svma` of `binary`: DWARF frames (inlined first) where it has
/// DWARF for the address, else the symbol table's function and offset, else nothing.
fn resolve(binary: &Binary, svma: u64, files: &mut HashMap<String, Arc<str>>) -> Vec<Resolved> {
    let symbol = binary.symbols.lookup(svma);
    let mut out = Vec::new();
    if let Some(ctx) = binary.dwarf() {
        let ctx = ctx.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(mut frames) = ctx.find_frames(svma).skip_all_loads() {
            while let Ok(Some(frame)) = frames.next() {
                let raw = frame
                    .function
                    .as_ref()
                    .and_then(|n| n.raw_name().ok())
                    .map(|n| n.into_owned());
                let (file, line) = match &frame.location {
                    Some(loc) => (loc.file.map(|f| intern(files, f)), loc.line),
                    None => (None, None),
                };
                out.push((raw, file, line));
            }
        }
    }
    if out.iter().any(|(raw, _, _)| raw.is_some()) {
        let last = out.len() - 1;
        return out
            .into_iter()
            .enumerate()
            .map(|(i, (raw, file, line))| {
                let outer = i == last;
                let mut function = raw.as_deref().map(demangle);
                let mut function_offset = None;
                if outer {
                    if let Some((sym, off)) = symbol {
                        match raw.as_deref() {
                            // The ELF symbol of a split part (`f.cold`, `f.part.0`) names it.
                            Some(r)
                                if sym.name.strip_prefix(r).is_some_and(|s| s.starts_with('.')) =>
                            {
                                function = Some(demangle(&sym.name));
                                function_offset = Some(off);
                            }
                            Some(r) if *sym.name == *r => function_offset = Some(off),
                            None => {
                                function = Some(demangle(&sym.name));
                                function_offset = Some(off);
                            }
                            Some(_) => {}
                        }
                    }
                }
                Resolved {
                    function,
                    function_offset,
                    file,
                    line,
                    inlined: !outer,
                    source: SymbolSource::Dwarf,
                }
            })
            .collect();
    }
    match symbol {
        Some((sym, off)) => vec![Resolved {
            function: Some(demangle(&sym.name)),
            function_offset: Some(off),
            // Line information without a function name (assembly) is still worth keeping.
            file: out.first().and_then(|(_, f, _)| f.clone()),
            line: out.first().and_then(|(_, _, l)| *l),
            inlined: false,
            source: SymbolSource::SymbolTable,
        }],
        None => vec![Resolved {
            function: None,
            function_offset: None,
            file: None,
            line: None,
            inlined: false,
            source: SymbolSource::None,
        }],
    }
}

fn intern(files: &mut HashMap<String, Arc<str>>, name: &str) -> Arc<str> {
    if let Some(f) = files.get(name) {
        return Arc::clone(f);
    }
    let f: Arc<str> = name.into();
    files.insert(name.to_string(), Arc::clone(&f));
    f
}
