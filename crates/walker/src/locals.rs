//! Arguments and local variables of Python frames (`strobe dump --locals`), read from each
//! frame's own slots with names from its code object; values through [`ValueReader`].
//!
//! Slots by frame model (named shapes of [`Layout`], never version numbers):
//! - frame objects (≤3.10, [`FrameModel::FrameObject`]): `f_localsplus` holds `co_nlocals`
//!   locals (named by `co_varnames`, arguments first), then one cell per `co_cellvars`, then
//!   one per `co_freevars`. An argument that is also a cell variable is shown once, at its
//!   argument position, with the cell's contents (CPython moves the argument into the cell).
//! - interpreter frames (3.11+): `localsplus` holds `co_nlocalsplus` slots named by
//!   `co_localsplusnames`, each with a `CO_FAST_*` kind in `co_localspluskinds`. Cell and free
//!   slots hold a cell once the frame has run `MAKE_CELL`/`COPY_FREE_VARS`; its contents are
//!   shown. Hidden slots (3.12+ inlined comprehensions) are shown only while bound.
//!
//! The first `co_argcount + co_kwonlyargcount` (+1 for `*args`, +1 for `**kwargs`) names are
//! arguments. Module-level and class-body frames keep their names in a dict (`f_locals`), not
//! in slots: they show no locals.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::{FrameModel, Layout};

use crate::error::WalkError;
use crate::frame::FrameDecoder;
use crate::limits::{need, struct_len, MAX_DEPTH, MAX_STRUCT};
use crate::strings::read_string;
use crate::value::{escape_controls, Kind, Value, ValueReader, MAX_TOTAL_READS};

/// Most slots (locals, cells and frees together) of one frame we read; a code object with
/// more (none that a person wrote) has its frames' locals reported as unavailable.
pub const MAX_SLOTS: usize = 1024;
/// Most code objects whose names one reader remembers.
const MAX_CODES: usize = 4096;

/// A Python frame of a thread: where it is and its code object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef {
    /// The frame (`PyFrameObject` ≤3.10, `_PyInterpreterFrame` 3.11+).
    pub addr: u64,
    /// Its code object.
    pub code: u64,
}

/// What a local is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalKind {
    /// A parameter of the function (positional, keyword-only, `*args` or `**kwargs`).
    Arg,
    /// A local variable.
    Local,
    /// A local variable that inner functions refer to (a cell variable).
    Cell,
    /// A variable of an enclosing function (a free variable).
    Free,
}

impl LocalKind {
    /// `arg`, `local`, `cell` or `free`.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalKind::Arg => "arg",
            LocalKind::Local => "local",
            LocalKind::Cell => "cell",
            LocalKind::Free => "free",
        }
    }
}

/// One argument or local variable of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// Its name (control characters escaped as `\xNN`).
    pub name: String,
    /// What it is.
    pub kind: LocalKind,
    /// Its value; `None` while unbound (not assigned yet, or deleted).
    pub value: Option<Value>,
}

/// Where one shown local comes from.
#[derive(Debug, Clone)]
struct Slot {
    name: String,
    kind: LocalKind,
    index: usize,
    /// The slot holds a cell: show its contents.
    deref: bool,
    /// A hidden slot (inlined comprehension): shown only while bound.
    hidden: bool,
}

/// What a code object says about its frames' slots, decoded once.
#[derive(Debug)]
struct CodeSlots {
    slots: usize,
    shown: Vec<Slot>,
}

/// The Python frames of the thread whose state is at `tstate`, innermost first: the frames
/// [`Walker::walk`](crate::walk::Walker::walk) reports, in the same order (frames owned by the
/// C stack or the interpreter, and frames without a code object, are left out). Bounded by
/// [`MAX_DEPTH`] and cycle-checked.
pub fn thread_frames<M: RemoteMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    tstate: u64,
) -> Result<Vec<FrameRef>, WalkError> {
    let decoder = FrameDecoder::new(layout)?;
    let mut addr = match layout.frame_model {
        FrameModel::FrameObject => {
            mem.read_u64(field(tstate, need(layout.tstate_frame, "tstate.frame")?))?
        }
        FrameModel::CFrame311 => {
            let cframe =
                mem.read_u64(field(tstate, need(layout.tstate_cframe, "tstate.cframe")?))?;
            if cframe == 0 {
                0
            } else {
                let off = need(layout.cframe_current_frame, "cframe.current_frame")?;
                mem.read_u64(field(cframe, off))?
            }
        }
        FrameModel::Direct313 => mem.read_u64(field(
            tstate,
            need(layout.tstate_current_frame, "tstate.current_frame")?,
        ))?,
    };
    let mut values = ValueReader::new(mem, layout);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while addr != 0 {
        if !seen.insert(addr) || seen.len() > MAX_DEPTH * 4 {
            return Err(WalkError::Unbounded {
                what: "frame",
                limit: MAX_DEPTH,
            });
        }
        let bytes = mem.read_vec(addr, decoder.len, MAX_STRUCT)?;
        let fields = decoder.decode(&bytes).ok_or(WalkError::Corrupt {
            what: "frame",
            addr,
        })?;
        values.allow_reads(32);
        if decoder.is_python(&fields) && values.type_of(fields.code)?.kind == Kind::Code {
            out.push(FrameRef {
                addr,
                code: fields.code,
            });
            if out.len() >= MAX_DEPTH {
                break;
            }
        }
        addr = fields.previous;
    }
    Ok(out)
}

/// Reads the locals of frames; keep one per snapshot (it remembers code objects' names and
/// type objects).
#[derive(Debug)]
pub struct LocalsReader<'a, M: RemoteMemory + ?Sized> {
    values: ValueReader<'a, M>,
    codes: HashMap<u64, Arc<CodeSlots>>,
}

impl<'a, M: RemoteMemory + ?Sized> LocalsReader<'a, M> {
    /// A reader of frames in `mem` laid out as `layout` says.
    pub fn new(mem: &'a M, layout: &'a Layout) -> Self {
        LocalsReader {
            values: ValueReader::new(mem, layout),
            codes: HashMap::new(),
        }
    }

    /// The arguments and locals of `frame`, in the code object's order (arguments, locals,
    /// cell variables, free variables). Fails only when the frame or its code object cannot be
    /// read; a value that cannot be read is `<unreadable>` in its [`Value`].
    pub fn frame_locals(&mut self, frame: FrameRef) -> Result<Vec<Local>, WalkError> {
        if self.values.memory().total_spent() {
            return Err(WalkError::Unsupported(format!(
                "strobe's budget of {MAX_TOTAL_READS} reads for the locals of one dump is spent"
            )));
        }
        let code = self.code_slots(frame.code)?;
        let layout = self.values.layout();
        let base = match layout.frame_model {
            FrameModel::FrameObject => need(layout.frame_localsplus, "frame.f_localsplus")?,
            _ => need(layout.iframe_localsplus, "frame.localsplus")?,
        };
        self.values.allow_reads(1);
        let raw = self.values.memory().read_vec(
            field(frame.addr, base),
            code.slots * 8,
            MAX_SLOTS * 8,
        )?;
        let mask = layout.stackref_mask;
        let slot = |i: usize| le::u64_at(&raw, i * 8).map_or(0, |v| v & mask);
        let mut out = Vec::with_capacity(code.shown.len());
        for s in &code.shown {
            let mut obj = slot(s.index);
            if s.deref && obj != 0 {
                // Before MAKE_CELL (3.11+) the slot may still hold the plain value.
                self.values.allow_reads(32);
                match self.values.type_of(obj) {
                    Ok(t) if t.kind == Kind::Cell => {
                        obj = self.values.cell_contents(obj).unwrap_or(u64::MAX);
                    }
                    _ => {}
                }
            }
            if obj == 0 && s.hidden {
                continue;
            }
            let value = match obj {
                0 => None,
                u64::MAX => Some(Value::unreadable()),
                _ => Some(self.values.repr(obj)),
            };
            out.push(Local {
                name: s.name.clone(),
                kind: s.kind,
                value,
            });
        }
        Ok(out)
    }

    /// The slots of frames running the code object at `code`, decoded once.
    fn code_slots(&mut self, code: u64) -> Result<Arc<CodeSlots>, WalkError> {
        if let Some(c) = self.codes.get(&code) {
            return Ok(c.clone());
        }
        let decoded = Arc::new(self.decode_code(code)?);
        if self.codes.len() >= MAX_CODES {
            self.codes.clear();
        }
        self.codes.insert(code, decoded.clone());
        Ok(decoded)
    }

    fn decode_code(&mut self, addr: u64) -> Result<CodeSlots, WalkError> {
        let l = *self.values.layout();
        // The object, its type, three name tuples, the kinds and two reads per name.
        self.values.allow_reads(16 + 2 * MAX_SLOTS as u32);
        if self.values.type_of(addr)?.kind != Kind::Code {
            return Err(WalkError::Corrupt {
                what: "code object",
                addr,
            });
        }
        let code = self.values.memory().read_vec(
            addr,
            struct_len(l.code_size, "code object")?,
            MAX_STRUCT,
        )?;
        let bad = || WalkError::Corrupt {
            what: "code object",
            addr,
        };
        let int = |off: u32| le::i32_at(&code, off as usize).ok_or_else(bad);
        let ptr = |off: u32| le::u64_at(&code, off as usize).ok_or_else(bad);
        let count = |v: i32| {
            usize::try_from(v)
                .ok()
                .filter(|&n| n <= MAX_SLOTS)
                .ok_or_else(bad)
        };
        let flags = int(l.code_flags)? as u32;
        let nargs = count(int(l.code_argcount)?)?
            + match l.code_kwonlyargcount {
                Some(off) => count(int(off)?)?,
                None => 0,
            }
            + usize::from(flags & l.code_flag_varargs != 0)
            + usize::from(flags & l.code_flag_varkeywords != 0);
        let names_of = |values: &mut ValueReader<'a, M>,
                        tuple: u64|
         -> Result<Vec<String>, WalkError> {
            values
                .tuple_items(tuple, MAX_SLOTS)?
                .into_iter()
                .map(|n| {
                    read_string(values.memory(), values.layout(), n).map(|s| escape_controls(&s))
                })
                .collect()
        };
        let mut shown = Vec::new();
        let slots;
        match (l.code_localsplusnames, l.code_localspluskinds) {
            (Some(names_off), Some(kinds_off)) => {
                // 3.11+ (Include/internal/pycore_code.h, `_PyLocals_Kind`).
                let names = names_of(&mut self.values, ptr(names_off)?)?;
                let kinds = self.values.bytes_of(ptr(kinds_off)?, MAX_SLOTS)?;
                if kinds.len() != names.len() {
                    return Err(bad());
                }
                if let Some(off) = l.code_nlocalsplus {
                    if count(int(off)?)? != names.len() {
                        return Err(bad());
                    }
                }
                let bit = |v: Option<u8>| v.unwrap_or(0);
                let (cell, free, hidden) = (
                    bit(l.co_fast_cell),
                    bit(l.co_fast_free),
                    bit(l.co_fast_hidden),
                );
                slots = names.len();
                for (index, (name, k)) in names.into_iter().zip(kinds).enumerate() {
                    let kind = if index < nargs {
                        LocalKind::Arg
                    } else if k & free != 0 {
                        LocalKind::Free
                    } else if k & cell != 0 {
                        LocalKind::Cell
                    } else {
                        LocalKind::Local
                    };
                    shown.push(Slot {
                        name,
                        kind,
                        index,
                        deref: k & (cell | free) != 0,
                        hidden: k & hidden != 0,
                    });
                }
            }
            _ => {
                // ≤3.10 (Include/code.h): varnames, then cellvars, then freevars.
                let need_off = |v: Option<u32>, what| need(v, what);
                let varnames = names_of(
                    &mut self.values,
                    ptr(need_off(l.code_varnames, "code.co_varnames")?)?,
                )?;
                let cellvars = names_of(
                    &mut self.values,
                    ptr(need_off(l.code_cellvars, "code.co_cellvars")?)?,
                )?;
                let freevars = names_of(
                    &mut self.values,
                    ptr(need_off(l.code_freevars, "code.co_freevars")?)?,
                )?;
                let nlocals = count(int(l.code_nlocals)?)?;
                if nlocals != varnames.len() {
                    return Err(bad());
                }
                slots = nlocals + cellvars.len() + freevars.len();
                if slots > MAX_SLOTS {
                    return Err(bad());
                }
                let mut taken = vec![false; cellvars.len()];
                for (index, name) in varnames.into_iter().enumerate() {
                    let arg = index < nargs;
                    // An argument that inner functions use lives in its cell.
                    let cell = if arg {
                        cellvars.iter().position(|c| *c == name)
                    } else {
                        None
                    };
                    if let Some(j) = cell {
                        taken[j] = true;
                    }
                    shown.push(Slot {
                        name,
                        kind: if arg {
                            LocalKind::Arg
                        } else {
                            LocalKind::Local
                        },
                        index: cell.map_or(index, |j| nlocals + j),
                        deref: cell.is_some(),
                        hidden: false,
                    });
                }
                for (j, name) in cellvars.into_iter().enumerate() {
                    if !taken[j] {
                        shown.push(Slot {
                            name,
                            kind: LocalKind::Cell,
                            index: nlocals + j,
                            deref: true,
                            hidden: false,
                        });
                    }
                }
                let first_free = slots - freevars.len();
                for (j, name) in freevars.into_iter().enumerate() {
                    shown.push(Slot {
                        name,
                        kind: LocalKind::Free,
                        index: first_free + j,
                        deref: true,
                        hidden: false,
                    });
                }
            }
        }
        Ok(CodeSlots { slots, shown })
    }
}

fn field(addr: u64, off: u32) -> u64 {
    addr.wrapping_add(u64::from(off))
}
