//! Whether a thread is raising or handling an exception, and of which type.
//!
//! The thread state says both, per [`ExcModel`]: the exception being raised (propagating
//! through the thread's frames) is `curexc_type` (a type, ≤3.11) or `current_exception` (an
//! instance, 3.12+); the one being handled (inside an `except` or `finally` block) is
//! `exc_type` (≤3.6) or the first item of the `_PyErr_StackItem` stack that `exc_info` points
//! to whose exception is set (3.7+; a type until 3.10, an instance from 3.11). The stack has
//! one item per running generator or coroutine above the thread's own `exc_state`, and
//! CPython itself skips items that hold NULL or `None` (`_PyErr_GetTopmostException`).
//!
//! The thread state's fields come with the sample's batched read; outside generators
//! `exc_info` points at the thread's own item, which that read holds too, so a thread that is
//! not in an exception costs nothing more. A thread that is costs one read of the instance's
//! type (3.11+), and one per generator item above its own; type names are read once per type.

use std::sync::Arc;

use strobe_memory::RemoteMemory;
use strobe_python_abi::ExcModel;

use crate::addrmap::AddrMap;
use crate::process::Process;
use crate::value::{escape_controls, read_c_string};

/// Items of the `_PyErr_StackItem` stack followed before giving up (a chain of generators
/// resumed inside each other; CPython's recursion limit bounds real ones, a cycle in corrupt
/// memory must not loop).
const MAX_ITEMS: usize = 64;

/// Type names held at most; past it the cache starts again.
const MAX_TYPES: usize = 4096;

/// Longest type name read.
const MAX_NAME: usize = 200;

/// The exception a thread is raising or handling when sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawException {
    /// Address of the exception's type object;
    /// [`Walker::exception_name`](crate::walk::Walker::exception_name) names it.
    pub type_addr: u64,
    /// `true`: being raised (propagating through the frames); `false`: being handled.
    pub raised: bool,
}

/// The thread-state words a sample already read (0 where absent).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExcFields {
    /// `curexc_type` / `current_exception`.
    pub(crate) raised: u64,
    /// `exc_type` (≤3.6) / `exc_info` (3.7+).
    pub(crate) handled: u64,
    /// `exc_state`'s exception (3.7+).
    pub(crate) bottom: u64,
}

/// What was learnt about exception objects: where `None` is, and type names by address.
#[derive(Debug, Default)]
pub(crate) struct ExceptionTypes {
    /// Address of the `None` object, once seen (CPython leaves `None` in cleared items).
    none: Option<u64>,
    /// Type object address → `tp_name`.
    names: AddrMap<u64, Arc<str>>,
}

impl ExceptionTypes {
    /// The name of the type at `type_addr`, if a sample found an exception of that type.
    pub(crate) fn name(&self, type_addr: u64) -> Option<Arc<str>> {
        self.names.get(&type_addr).cloned()
    }

    /// The exception thread state `tstate` (with `fields` from the sample's read) is raising
    /// or handling; `None` when there is none, or when what the fields point at cannot be read
    /// (an exception that is being cleared as we look: the sample goes on without it).
    pub(crate) fn of_thread<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        tstate: u64,
        fields: ExcFields,
    ) -> Option<RawException> {
        let layout = &process.layout;
        let instances = matches!(layout.exc_model, ExcModel::StackValues);
        if fields.raised != 0 {
            if let Some(type_addr) = self.type_of(process, fields.raised, instances) {
                return Some(RawException {
                    type_addr,
                    raised: true,
                });
            }
        }
        let (handled, instances) = match layout.exc_model {
            ExcModel::ThreadTypes => (fields.handled, false),
            ExcModel::StackTypes => return self.top_of_stack(process, tstate, fields, false),
            ExcModel::StackValues311 | ExcModel::StackValues => {
                return self.top_of_stack(process, tstate, fields, true)
            }
        };
        if handled == 0 {
            return None;
        }
        let type_addr = self.type_of(process, handled, instances)?;
        Some(RawException {
            type_addr,
            raised: false,
        })
    }

    /// 3.7+: the first item from `exc_info` down whose exception is set.
    fn top_of_stack<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        tstate: u64,
        fields: ExcFields,
        instances: bool,
    ) -> Option<RawException> {
        let layout = &process.layout;
        let exc_off = u64::from(layout.stackitem_exc?);
        let prev_off = u64::from(layout.stackitem_previous?);
        let own = tstate.wrapping_add(u64::from(layout.tstate_exc_state?));
        let mut item = fields.handled;
        for _ in 0..MAX_ITEMS {
            if item == 0 {
                return None;
            }
            let (exc, previous) = if item == own {
                // The thread's own item is the bottom of the stack.
                (fields.bottom, 0)
            } else {
                let exc = process.mem.read_u64(item.wrapping_add(exc_off)).ok()?;
                let previous = process.mem.read_u64(item.wrapping_add(prev_off)).ok()?;
                (exc, previous)
            };
            if exc != 0 {
                if let Some(type_addr) = self.type_of(process, exc, instances) {
                    return Some(RawException {
                        type_addr,
                        raised: false,
                    });
                }
            }
            item = previous;
        }
        None
    }

    /// The exception type `obj` stands for: `obj` itself when the model holds types, else its
    /// `ob_type`; `None` when `obj` is the `None` object or cannot be read.
    fn type_of<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        obj: u64,
        instance: bool,
    ) -> Option<u64> {
        if self.none == Some(obj) {
            return None;
        }
        if !instance && self.names.contains_key(&obj) {
            return Some(obj);
        }
        let layout = &process.layout;
        let ob_type = process
            .mem
            .read_u64(obj.wrapping_add(u64::from(layout.pyobject_ob_type)))
            .ok()?;
        if instance && self.names.contains_key(&ob_type) {
            return Some(ob_type);
        }
        // Not met before: is it `None`? (`None` is immortal and never moves, so one look is
        // enough.)
        let of_type = self.read_name(process, ob_type)?;
        if &*of_type == "NoneType" {
            self.none = Some(obj);
            return None;
        }
        let (type_addr, name) = if instance {
            (ob_type, of_type)
        } else {
            (obj, self.read_name(process, obj)?)
        };
        if self.names.len() >= MAX_TYPES {
            self.names.clear();
        }
        self.names.insert(type_addr, name);
        Some(type_addr)
    }

    /// The name of the type object at `ty`: its `tp_name` after the last dot (static types
    /// carry their module there, `exceptions.ValueError` in 2.7), as `type.__name__` is.
    fn read_name<M: RemoteMemory>(&self, process: &Process<M>, ty: u64) -> Option<Arc<str>> {
        if ty == 0 {
            return None;
        }
        let at = ty.wrapping_add(u64::from(process.layout.type_name));
        let ptr = process.mem.read_u64(at).ok()?;
        let name = read_c_string(&process.mem, ptr, MAX_NAME).ok()?;
        let short = name.rsplit('.').next().unwrap_or(&name);
        (!short.is_empty()).then(|| Arc::from(escape_controls(short).as_str()))
    }
}
