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
//! not in an exception costs nothing more. Inside generators and coroutines (every asyncio
//! task's stack) `exc_info` points at the innermost running generator's item, and the chain
//! goes through one item per generator down to the thread's own: the items a thread's previous
//! sample visited are copied by the next sample's batched read, so a thread whose generators
//! did not change costs nothing more either. A thread in an exception needs its instance's type
//! (3.11+): read once, then copied by the next samples' batch while the thread handles the
//! same instance; type names are read once per type.

use std::sync::Arc;

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::{ExcModel, Layout};

use crate::addrmap::AddrMap;
use crate::process::Process;
use crate::value::{escape_controls, read_c_string};

/// Items of the `_PyErr_StackItem` stack followed before giving up (a chain of generators
/// resumed inside each other; CPython's recursion limit bounds real ones, a cycle in corrupt
/// memory must not loop).
const MAX_ITEMS: usize = 64;

/// Items outside the thread state remembered per thread, to copy with the next sample's read.
pub(crate) const MAX_REMEMBERED: usize = 16;

/// Largest `_PyErr_StackItem` read (four pointers ≤3.10, two from 3.11).
const MAX_ITEM_LEN: usize = 64;

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

/// The bytes of a `_PyErr_StackItem` of `layout` that a sample reads: from its start to the
/// end of the later of its exception and `previous_item` fields.
pub(crate) fn item_len(layout: &Layout) -> Option<usize> {
    let exc = layout.stackitem_exc? as usize;
    let prev = layout.stackitem_previous? as usize;
    let len = exc.max(prev) + 8;
    (len <= MAX_ITEM_LEN).then_some(len)
}

/// The `_PyErr_StackItem`s a sample's batched read copied for one thread (those its previous
/// sample visited), and the ones this sample visits, for the next.
pub(crate) struct ItemCopies<'a> {
    /// The batch buffer.
    pub(crate) buf: &'a [u8],
    /// (item address, offset of its copy in `buf`).
    pub(crate) copies: &'a [(u64, usize)],
    /// Items visited, in order (at most [`MAX_REMEMBERED`]).
    pub(crate) visited: &'a mut Vec<u64>,
    /// The exception instance whose type the previous sample read, and where this sample's
    /// batch copied its `ob_type`.
    pub(crate) type_word: Option<(u64, usize)>,
    /// The instance whose type this sample read (0: none), for the next.
    pub(crate) instance: &'a mut u64,
}

impl ItemCopies<'_> {
    /// This sample's copy of the `len` bytes of the item at `addr`, if it has one.
    fn copied(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let &(_, off) = self.copies.iter().find(|&&(a, _)| a == addr)?;
        self.buf.get(off..off.checked_add(len)?)
    }
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
        items: &mut ItemCopies<'_>,
    ) -> Option<RawException> {
        let layout = &process.layout;
        let instances = matches!(layout.exc_model, ExcModel::StackValues);
        if fields.raised != 0 {
            if let Some(type_addr) = self.type_of(process, fields.raised, instances, items) {
                return Some(RawException {
                    type_addr,
                    raised: true,
                });
            }
        }
        let (handled, instances) = match layout.exc_model {
            ExcModel::ThreadTypes => (fields.handled, false),
            ExcModel::StackTypes => {
                return self.top_of_stack(process, tstate, fields, false, items)
            }
            ExcModel::StackValues311 | ExcModel::StackValues => {
                return self.top_of_stack(process, tstate, fields, true, items)
            }
        };
        if handled == 0 {
            return None;
        }
        let type_addr = self.type_of(process, handled, instances, items)?;
        Some(RawException {
            type_addr,
            raised: false,
        })
    }

    /// 3.7+: the first item from `exc_info` down whose exception is set. Items outside the
    /// thread state (a running generator's or coroutine's) are taken from `items`' copies
    /// when it has them, read otherwise, and listed in `items.visited` either way.
    fn top_of_stack<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        tstate: u64,
        fields: ExcFields,
        instances: bool,
        items: &mut ItemCopies<'_>,
    ) -> Option<RawException> {
        let layout = &process.layout;
        let exc_off = layout.stackitem_exc? as usize;
        let prev_off = layout.stackitem_previous? as usize;
        let len = item_len(layout)?;
        let own = tstate.wrapping_add(u64::from(layout.tstate_exc_state?));
        let mut item = fields.handled;
        let mut bytes = [0u8; MAX_ITEM_LEN];
        for _ in 0..MAX_ITEMS {
            if item == 0 {
                return None;
            }
            let (exc, previous) = if item == own {
                // The thread's own item is the bottom of the stack.
                (fields.bottom, 0)
            } else {
                let bytes = &mut bytes[..len];
                match items.copied(item, len) {
                    Some(copy) => bytes.copy_from_slice(copy),
                    None => process.mem.read_into(item, bytes).ok()?,
                }
                if items.visited.len() < MAX_REMEMBERED {
                    items.visited.push(item);
                }
                (le::u64_at(bytes, exc_off)?, le::u64_at(bytes, prev_off)?)
            };
            if exc != 0 {
                if let Some(type_addr) = self.type_of(process, exc, instances, items) {
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
        items: &mut ItemCopies<'_>,
    ) -> Option<u64> {
        if self.none == Some(obj) {
            return None;
        }
        if !instance && self.names.contains_key(&obj) {
            return Some(obj);
        }
        let layout = &process.layout;
        let ob_type = match items.type_word {
            // The same instance as the thread's previous sample: its type came with the batch.
            Some((at, off)) if at == obj => le::u64_at(items.buf, off)?,
            _ => process
                .mem
                .read_u64(obj.wrapping_add(u64::from(layout.pyobject_ob_type)))
                .ok()?,
        };
        if instance {
            *items.instance = obj;
        }
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
