//! Thread names from the `threading` module of a remote interpreter.
//!
//! CPython itself does not know thread names: they live in Python objects. `threading` keeps
//! `_active`, a dict mapping `get_ident()` (the `pthread_t`, equal to `PyThreadState.thread_id`)
//! to the `Thread` object, whose instance attribute `_name` holds the name (`_Thread__name` in
//! 2.7, where `threading.py` spells it `self.__name`). We follow
//! `interp->modules` (`sys.modules`) → `"threading"` → `md_dict` → `"_active"` → each
//! `(int, Thread)` entry → the instance's attributes → the name.
//!
//! Everything is read through [`RemoteMemory`]: dict tables are copied in one read each and
//! decoded with the `le` helpers; every size and count read from the target is bounded, and
//! dicts are scanned (never probed), so a corrupt table cannot loop.
//!
//! Costs: a lookup scans every entry of the dict, reading the type and length of every key
//! in one batched read (key by key if that read fails) and the text only where the length
//! matches; each thread's ident, attributes and name are read one by one, so resolving names
//! costs some tens of small reads per thread (~200 for 8 threads of a small program). A
//! [`ThreadNameCache`] (`cache.rs`) keeps what each part of a lookup read, and its next lookup
//! reads all of it again in one batched read and walks only the parts that changed: one read
//! when no thread started, ended or was renamed.
//!
//! Only `_active` is read: it holds every running thread (main, started, and `_DummyThread`s
//! for threads `threading` did not start). Threads still in `_limbo` have no ident yet.
//!
//! The reading is split by what is read: `dicts` walks dict tables (every layout from 2.7's
//! open table to 3.11+'s compact keys kinds) and matches `str` keys, `ints` decodes the `int`
//! keys of `_active` into idents, and `instances` finds an instance's attributes wherever its
//! version keeps them. This module holds the entry points ([`thread_names`], and
//! [`ThreadNameCache`] in `cache`), the reader they share and the crate-internal views of it
//! used elsewhere in the walker.

use std::collections::HashMap;

use crate::error::WalkError;
use strobe_memory::RemoteMemory;
use strobe_python_abi::{Layout, StringModel};

mod cache;
mod dicts;
mod instances;
mod ints;

pub use cache::ThreadNameCache;

pub(crate) use dicts::DictKeys;
use instances::{object_dict_model, ObjectDictModel};

/// Most entries we accept in one dict (`sys.modules`, a module's namespace, `_active`,
/// an instance dict). A larger count means we read garbage.
pub const MAX_DICT_ENTRIES: usize = 1 << 16;

/// Map thread ident (`threading.get_ident()`, == `PyThreadState.thread_id`) → `Thread.name`,
/// for one interpreter. Empty map if `threading` was never imported (or was blocked with
/// `sys.modules["threading"] = None`).
///
/// Entries whose key is not an int or whose thread has no `str` name are left out. Failed
/// reads and implausible sizes are errors; they are transient when the target was changing
/// under us (see [`WalkError::is_transient`]).
pub fn thread_names<M: RemoteMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    interp_addr: u64,
) -> Result<HashMap<u64, String>, WalkError> {
    let mut reader = Reader::new(mem, layout);
    let mut names = HashMap::new();
    for (key, thread) in reader.active_items(interp_addr)?.unwrap_or_default() {
        if let Some((ident, name)) = reader.active_entry(key, thread)? {
            names.insert(ident, name);
        }
    }
    Ok(names)
}

impl<M: RemoteMemory + ?Sized> Reader<'_, M> {
    /// The `(ident, Thread)` pairs of `threading._active` of the interpreter at `interp_addr`;
    /// `None` when there is no such dict (`threading` not imported, or blocked).
    fn active_items(&mut self, interp_addr: u64) -> Result<Option<Vec<(u64, u64)>>, WalkError> {
        let (mem, layout) = (self.mem, self.layout);
        let modules = mem.read_u64(field(interp_addr, u64::from(layout.interp_modules)))?;
        if modules == 0 {
            // Interpreter still starting or already finalising.
            return Ok(None);
        }
        if self.kind_of(modules)? != Kind::Dict {
            return Err(WalkError::Corrupt {
                what: "sys.modules (not a dict)",
                addr: modules,
            });
        }
        let Some(module) = self.dict_get_str(modules, "threading")? else {
            return Ok(None);
        };
        if self.kind_of(module)? != Kind::Module {
            return Ok(None);
        }
        let namespace = mem.read_u64(field(module, u64::from(layout.module_dict)))?;
        if namespace == 0 || self.kind_of(namespace)? != Kind::Dict {
            return Ok(None);
        }
        let Some(active) = self.dict_get_str(namespace, "_active")? else {
            return Ok(None);
        };
        if self.kind_of(active)? != Kind::Dict {
            return Ok(None);
        }
        self.dict_items(active).map(Some)
    }

    /// The ident and name of one `(key, Thread)` pair of `_active`; `None` when the key is
    /// not an int or the thread has no `str` name.
    fn active_entry(&mut self, key: u64, thread: u64) -> Result<Option<(u64, String)>, WalkError> {
        let Some(ident) = self.read_ident(key)? else {
            return Ok(None);
        };
        Ok(self.thread_name(thread)?.map(|name| (ident, name)))
    }
}

/// The few object types we need to tell apart, by `tp_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    /// 2.7's arbitrary-precision `long` (3.x calls that type `int`).
    Long27,
    Dict,
    Module,
    Other,
}

/// Objects reached by name, for `dump --async` before 3.14 ([`crate::asyncio_legacy`]): a
/// module's namespace, a dict's `str` keys, an instance's attributes, with this module's bounds.
pub(crate) struct Names<'a, M: RemoteMemory + ?Sized>(Reader<'a, M>);

impl<'a, M: RemoteMemory + ?Sized> Names<'a, M> {
    pub(crate) fn new(mem: &'a M, layout: &'a Layout) -> Self {
        Names(Reader::new(mem, layout))
    }

    /// The memory read.
    pub(crate) fn memory(&self) -> &'a M {
        self.0.mem
    }

    /// The namespace dict of module `name` in `sys.modules` of the interpreter at `interp`;
    /// `None` when it is not imported.
    pub(crate) fn module_dict(
        &mut self,
        interp: u64,
        name: &str,
    ) -> Result<Option<u64>, WalkError> {
        let r = &mut self.0;
        let modules = r
            .mem
            .read_u64(field(interp, u64::from(r.layout.interp_modules)))?;
        if modules == 0 || r.kind_of(modules)? != Kind::Dict {
            return Ok(None);
        }
        let Some(module) = r.dict_get_str(modules, name)? else {
            return Ok(None);
        };
        if r.kind_of(module)? != Kind::Module {
            return Ok(None);
        }
        let namespace = r
            .mem
            .read_u64(field(module, u64::from(r.layout.module_dict)))?;
        if namespace == 0 || r.kind_of(namespace)? != Kind::Dict {
            return Ok(None);
        }
        Ok(Some(namespace))
    }

    /// The value under the `str` key `key` of a dict (`None` if `dict` is no dict).
    pub(crate) fn get(&mut self, dict: u64, key: &str) -> Result<Option<u64>, WalkError> {
        if dict == 0 || self.0.kind_of(dict)? != Kind::Dict {
            return Ok(None);
        }
        self.0.dict_get_str(dict, key)
    }

    /// The instance attribute `name` of `obj` (from its `__dict__` or managed values).
    pub(crate) fn attr(&mut self, obj: u64, name: &str) -> Result<Option<u64>, WalkError> {
        let items = self.0.instance_items(obj)?;
        self.0.find_str(&items, name)
    }

    /// Every `(key, value)` pair of a dict (`None` if `dict` is no dict).
    pub(crate) fn items(&mut self, dict: u64) -> Result<Option<Vec<(u64, u64)>>, WalkError> {
        if dict == 0 || self.0.kind_of(dict)? != Kind::Dict {
            return Ok(None);
        }
        self.0.dict_items(dict).map(Some)
    }
}

struct Reader<'a, M: RemoteMemory + ?Sized> {
    mem: &'a M,
    layout: &'a Layout,
    obj_model: ObjectDictModel,
    /// Type address → kind, so each type's name is read once per call.
    kinds: HashMap<u64, Kind>,
}

impl<'a, M: RemoteMemory + ?Sized> Reader<'a, M> {
    fn new(mem: &'a M, layout: &'a Layout) -> Self {
        Reader {
            mem,
            layout,
            obj_model: object_dict_model(layout),
            kinds: HashMap::new(),
        }
    }

    fn corrupt(what: &'static str, addr: u64) -> WalkError {
        WalkError::Corrupt { what, addr }
    }

    fn ob_type(&self, obj: u64) -> Result<u64, WalkError> {
        if obj == 0 {
            return Err(Self::corrupt("NULL object", obj));
        }
        Ok(self
            .mem
            .read_u64(field(obj, u64::from(self.layout.pyobject_ob_type)))?)
    }

    fn kind_of(&mut self, obj: u64) -> Result<Kind, WalkError> {
        let ty = self.ob_type(obj)?;
        self.kind_of_type(ty)
    }

    fn kind_of_type(&mut self, ty: u64) -> Result<Kind, WalkError> {
        if let Some(&k) = self.kinds.get(&ty) {
            return Ok(k);
        }
        if ty == 0 {
            return Err(Self::corrupt("NULL type", ty));
        }
        // `tp_name` is the first member after `PyObject_VAR_HEAD` (`Include/cpython/object.h`),
        // i.e. at `sizeof(PyVarObject)`.
        let name_ptr = self
            .mem
            .read_u64(field(ty, u64::from(self.layout.pyvarobject_ob_size) + 8))?;
        let name = self.read_c_name(name_ptr)?;
        let python2 = self.layout.string_model == StringModel::Bytes27;
        let kind = match &name[..] {
            b"str" => Kind::Str,
            b"int" => Kind::Int,
            b"long" if python2 => Kind::Long27,
            b"dict" => Kind::Dict,
            b"module" => Kind::Module,
            _ => Kind::Other,
        };
        self.kinds.insert(ty, kind);
        Ok(kind)
    }

    /// Up to 8 bytes of a C type name, stopping at NUL: enough to recognise the names above.
    fn read_c_name(&self, addr: u64) -> Result<Vec<u8>, WalkError> {
        if addr == 0 {
            return Err(Self::corrupt("NULL tp_name", addr));
        }
        let mut buf = [0u8; 8];
        let got = match self.mem.read_into(addr, &mut buf) {
            Ok(()) => buf.to_vec(),
            // A short name at the very end of a mapping: read it byte by byte.
            Err(_) => {
                let mut v = Vec::new();
                for i in 0..8 {
                    let b = self.mem.read_u8(field(addr, i))?;
                    v.push(b);
                    if b == 0 {
                        break;
                    }
                }
                v
            }
        };
        let end = got.iter().position(|&b| b == 0).unwrap_or(got.len());
        Ok(got[..end].to_vec())
    }
}

/// `base + off`: the address of a field. Pointers come from the target and may be garbage
/// near `u64::MAX`; the sum wraps to an address that is not mapped, and the read of it fails
/// like any other bad pointer instead of overflowing.
fn field(base: u64, off: u64) -> u64 {
    base.wrapping_add(off)
}

/// `base + off` for a signed offset (pre-header fields sit before the object).
fn offset(base: u64, off: i64) -> u64 {
    base.wrapping_add_signed(off)
}
