//! Instance attributes: where an object's `__dict__` or inline values are, per version
//! ([`ObjectDictModel`]), and the name of a `threading.Thread`.

use strobe_memory::RemoteMemory;
use strobe_python_abi::{DictModel, Layout};

use super::{field, offset, Kind, Reader};
use crate::error::WalkError;
use crate::strings::read_string;

/// `Py_TPFLAGS_INLINE_VALUES` (3.13+, `Include/object.h`): instance attributes live in a
/// `PyDictValues` right after the object (`_PyObject_InlineValues`, `pycore_object.h`).
const TPFLAGS_INLINE_VALUES: u64 = 1 << 2;

/// `Py_TPFLAGS_MANAGED_DICT` (3.11+, `Include/object.h`): the instance dict (or values) sits
/// in the pre-header before the object instead of at `tp_dictoffset`.
const TPFLAGS_MANAGED_DICT: u64 = 1 << 4;

/// How an instance finds its attribute dict. This is a per-version shape that `Layout` does not
/// carry yet (see [`object_dict_model`]); the offsets are from `Include/internal/pycore_object.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ObjectDictModel {
    /// ≤3.10: `*(obj + tp_dictoffset)` is the dict.
    DictOffset,
    /// 3.11: `_PyObject_ValuesPointer` (word -4 before the object) holds a `PyDictValues *`
    /// while attributes are unmaterialised, else `_PyObject_ManagedDictPointer` (word -3) the
    /// dict.
    Managed311,
    /// 3.12: one `PyDictOrValues` at word -3; values pointers are stored minus one, so a set low
    /// bit means values (`_PyDictOrValues_IsValues`, `_PyDictOrValues_GetValues`).
    DictOrValues312,
    /// 3.13+: the managed dict pointer at `MANAGED_DICT_OFFSET` (word -3, or -1 free-threaded);
    /// when it is NULL and the type has `Py_TPFLAGS_INLINE_VALUES`, the values sit at
    /// `obj + tp_basicsize`.
    Inline313,
}

/// The one place that maps a layout to its [`ObjectDictModel`].
///
/// `Layout` has no field for this shape; until python-abi grows one, the dict model narrows it
/// to 3.11+ and the minor version picks among the three 3.11+ shapes.
pub(super) fn object_dict_model(layout: &Layout) -> ObjectDictModel {
    match layout.dict_model {
        DictModel::Table27 | DictModel::Compact36 => ObjectDictModel::DictOffset,
        DictModel::Compact311 => match layout.version.minor {
            11 => ObjectDictModel::Managed311,
            12 => ObjectDictModel::DictOrValues312,
            _ => ObjectDictModel::Inline313,
        },
    }
}

/// Byte offset of `values[]` inside `struct _dictvalues` (`pycore_dict.h`): 3.13 put
/// `capacity`, `size`, `embedded`, `valid` bytes before the array (padded to a pointer);
/// earlier versions have the bare array (3.6–3.10 `ma_values` is a `PyObject **`).
pub(super) fn dictvalues_array_offset(model: ObjectDictModel) -> u64 {
    match model {
        ObjectDictModel::Inline313 => 8,
        _ => 0,
    }
}

/// Offset (from the object) of the managed dict pointer: `MANAGED_DICT_OFFSET` in
/// `pycore_object.h`: three words back on default builds (the GC header sits in between),
/// one word back on free-threaded builds (no pre-header GC links).
fn managed_dict_offset(layout: &Layout) -> i64 {
    if layout.flavour.free_threaded {
        -8
    } else {
        -24
    }
}

/// `_PyObject_ValuesPointer` (3.11 `pycore_object.h`): four words before the object.
const VALUES_POINTER_OFFSET_311: i64 = -32;

impl<'a, M: RemoteMemory + ?Sized> Reader<'a, M> {
    /// The `str` name of a `Thread` instance, if it has one.
    pub(super) fn thread_name(&mut self, thread: u64) -> Result<Option<String>, WalkError> {
        let items = self.instance_items(thread)?;
        // 3.x spells it `self._name`; 2.7's `self.__name` is mangled to `_Thread__name`.
        for attr in ["_name", "_Thread__name"] {
            if let Some(value) = self.find_str(&items, attr)? {
                if self.kind_of(value)? != Kind::Str {
                    return Ok(None);
                }
                return Ok(Some(read_string(self.mem, self.layout, value)?));
            }
        }
        Ok(None)
    }

    /// The attributes of an instance as `(key, value)` pairs, wherever its version keeps them.
    pub(super) fn instance_items(&mut self, obj: u64) -> Result<Vec<(u64, u64)>, WalkError> {
        let l = self.layout;
        let ty = self.ob_type(obj)?;
        let flags = self.mem.read_u64(field(ty, u64::from(l.type_flags)))?;
        let managed = flags & TPFLAGS_MANAGED_DICT != 0;
        let dict = match self.obj_model {
            ObjectDictModel::Managed311 if managed => {
                let values = self.mem.read_u64(offset(obj, VALUES_POINTER_OFFSET_311))?;
                if values != 0 {
                    return self.shared_items(ty, values);
                }
                self.mem.read_u64(offset(obj, managed_dict_offset(l)))?
            }
            ObjectDictModel::DictOrValues312 if managed => {
                let dorv = self.mem.read_u64(offset(obj, managed_dict_offset(l)))?;
                if dorv & 1 != 0 {
                    return self.shared_items(ty, dorv.wrapping_add(1));
                }
                dorv
            }
            ObjectDictModel::Inline313 if managed => {
                let dict = self.mem.read_u64(offset(obj, managed_dict_offset(l)))?;
                if dict == 0 && flags & TPFLAGS_INLINE_VALUES != 0 {
                    let basicsize = self.mem.read_u64(field(ty, u64::from(l.type_basicsize)))?;
                    if basicsize == 0 || basicsize > 1 << 20 || basicsize % 8 != 0 {
                        return Err(Self::corrupt("tp_basicsize", ty));
                    }
                    let values = field(obj, basicsize);
                    // `valid` (4th byte of `struct _dictvalues`) is cleared when the values
                    // were handed over to a materialised dict.
                    if self.mem.read_u8(field(values, 3))? == 0 {
                        return Ok(Vec::new());
                    }
                    return self.shared_items(ty, values);
                }
                dict
            }
            _ => {
                let dictoffset = self.mem.read_u64(field(ty, u64::from(l.type_dictoffset)))? as i64;
                // A negative offset counts from the end of a variable-size object; `Thread`
                // instances are fixed-size, so anything but a positive offset has no dict for us.
                if dictoffset <= 0 || dictoffset > 1 << 20 {
                    return Ok(Vec::new());
                }
                self.mem.read_u64(offset(obj, dictoffset))?
            }
        };
        if dict == 0 {
            return Ok(Vec::new());
        }
        if self.kind_of(dict)? != Kind::Dict {
            return Err(Self::corrupt("instance __dict__ (not a dict)", dict));
        }
        self.dict_items(dict)
    }

    /// Attributes kept as values against the type's shared keys (`ht_cached_keys`).
    fn shared_items(&self, ty: u64, values: u64) -> Result<Vec<(u64, u64)>, WalkError> {
        let cached = self.layout.heaptype_cached_keys.ok_or_else(|| {
            WalkError::Unsupported("layout lacks PyHeapTypeObject.ht_cached_keys".into())
        })?;
        let keys = self.mem.read_u64(field(ty, u64::from(cached)))?;
        if keys == 0 {
            return Err(Self::corrupt("shared keys of a managed dict", ty));
        }
        let entries = self.dict_entries(keys)?;
        self.split_items(&entries, values)
    }
}
