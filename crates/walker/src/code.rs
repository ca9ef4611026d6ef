//! Code objects: decoding them (names, file, line table) and the caches that make it happen
//! once per code object, as one type, [`CodeCache`].

use std::collections::HashSet;
use std::sync::Arc;

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::LineTable;

use crate::addrmap::AddrMap;
use crate::error::WalkError;
use crate::exception::ExceptionTypes;
use crate::frame::FrameFields;
use crate::limits::{need, struct_len, MAX_LINETABLE_BYTES, MAX_STRUCT};
use crate::linetable::LineMap;
use crate::process::Process;
use crate::strings::read_string;

/// Past this many cached code objects the cache is dropped and refilled.
const MAX_CODE_CACHE: usize = 1 << 16;
/// Largest `_PyCodeArray.size` (one entry per thread that specialised the code) we accept.
const MAX_TLBC_ENTRIES: u64 = 1 << 16;
/// Most type objects whose "is it `code`" answer is remembered.
const MAX_CODE_TYPES: usize = 1024;

/// `_PyCodeArray` (Include/cpython/code.h, 3.14 free-threaded): `Py_ssize_t size` then
/// `char *entries[]`. Entry 0 is the code object's own `co_code_adaptive`.
const CODE_ARRAY_SIZE: u64 = 0;
const CODE_ARRAY_ENTRIES: u64 = 8;

/// A decoded code object.
#[derive(Debug)]
pub(crate) struct CodeInfo {
    /// `co_qualname` where the version has it (3.11+), else `co_name`.
    pub(crate) function: Arc<str>,
    /// `co_filename`.
    pub(crate) filename: Arc<str>,
    /// Instruction to line.
    lines: LineMap,
    /// Bytecode length in code units (3.11+, `Py_SIZE(code)`), to catch a recycled address.
    code_units: Option<i64>,
    /// `(co_name or co_qualname, co_filename, co_firstlineno)` as decoded: what
    /// [`CodeCache::check_identities`] compares to catch a recycled address.
    identity: (u64, u64, i32),
    /// Which decoding this is (see [`CodeCache::serial`]).
    serial: u64,
}

/// Decoded code objects by address, and what decoding them and finding a frame's line needs
/// remembered: which type objects are `code`, where thread-local bytecode copies start, which
/// code addresses were decoded afresh this sample.
#[derive(Debug, Default)]
pub(crate) struct CodeCache {
    decoded: AddrMap<u64, Arc<CodeInfo>>,
    /// Code objects decoded so far: the next one's serial.
    serials: u64,
    /// Type object address → whether its `tp_name` is "code".
    code_types: AddrMap<u64, bool>,
    /// (code address, tlbc index) → start of that thread-local bytecode copy (3.14t).
    tlbc_bases: AddrMap<(u64, i32), u64>,
    /// Code addresses decoded afresh during the current sample.
    refreshed: HashSet<u64>,
    /// Samples started so far.
    samples: u64,
    /// Code address → the frame address last seen running it, and the sample that was in
    /// (see [`CodeCache::check_identities`]).
    checked: AddrMap<u64, (u64, u64)>,
    /// Code objects whose identity this sample's thread checks, and their copies (kept between
    /// calls for their capacity; see [`CodeCache::check_identities`]).
    due_reqs: Vec<(u64, usize)>,
    due_ids: Vec<(u64, u64, i32)>,
    due_buf: Vec<u8>,
    /// Exception types met in thread states, and where `None` is.
    pub(crate) exceptions: ExceptionTypes,
}

/// A frame met again at the same address with the same code within this many samples is not
/// checked again (a function called in a loop reuses its frame object).
const RECHECK_AFTER_SAMPLES: u64 = 16;

impl CodeInfo {
    /// `co_firstlineno`.
    pub(crate) fn first_line(&self) -> i32 {
        self.lines.firstlineno()
    }
}

impl CodeCache {
    /// Forget every decoded code object and what was learnt decoding them.
    pub(crate) fn clear(&mut self) {
        self.decoded.clear();
        self.code_types.clear();
        self.tlbc_bases.clear();
        self.checked.clear();
    }

    /// A new sample starts: any code object may be decoded afresh once more.
    #[inline]
    pub(crate) fn start_sample(&mut self) {
        self.samples += 1;
        if !self.refreshed.is_empty() {
            self.refreshed.clear();
        }
    }

    /// Which decoding of the code object at `code_addr` is held, if any (see
    /// [`Walker::code_serial`](crate::walk::Walker::code_serial)).
    pub(crate) fn serial(&self, code_addr: u64) -> Option<u64> {
        self.decoded.get(&code_addr).map(|info| info.serial)
    }

    /// Line of a frame: `Ok(None)` when its code slot does not hold a code object, else the
    /// `lasti` [`LineMap::line`] takes and the line.
    pub(crate) fn resolve_frame<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        raw: &FrameFields,
    ) -> Result<Option<(i64, Option<i32>)>, WalkError> {
        let Some(mut info) = self.code_info(process, raw.code)? else {
            return Ok(None);
        };
        let mut lasti = self.lasti(process, raw, &info)?;
        if !plausible_lasti(&info, lasti) && self.refreshed.insert(raw.code) {
            // 3.11+: the address was probably freed and reused by another code object since we
            // cached it. Decode it afresh, at most once per code address and sample (a frame
            // that has not started has no meaningful position either).
            self.decoded.remove(&raw.code);
            self.tlbc_bases.retain(|&(c, _), _| c != raw.code);
            match self.code_info(process, raw.code)? {
                Some(fresh) => info = fresh,
                None => return Ok(None),
            }
            lasti = self.lasti(process, raw, &info)?;
        }
        let line = if plausible_lasti(&info, lasti) {
            info.lines.line(lasti)
        } else {
            None
        };
        Ok(Some((lasti, line)))
    }

    /// The `lasti` units [`LineMap::line`] expects for this layout's line table.
    fn lasti<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        raw: &FrameFields,
        info: &CodeInfo,
    ) -> Result<i64, WalkError> {
        match process.layout.line_table {
            // ≤3.10: `f_lasti` as stored (bytes ≤3.9, code units in 3.10).
            LineTable::Lnotab27 | LineTable::Lnotab36 | LineTable::Linetable310 => Ok(raw.position),
            // 3.11+: index of the instruction in code units, relative to the bytecode copy the
            // frame executes (Include/internal/pycore_frame.h `_PyInterpreterFrame_LASTI`;
            // 3.14t `_PyFrame_GetBytecode` in pycore_interpframe.h).
            LineTable::Location311 => {
                let base = self.bytecode_base(process, raw, info)?;
                Ok(((raw.position as u64).wrapping_sub(base) as i64) >> 1)
            }
        }
    }

    /// Start of the bytecode `instr_ptr` points into: `co_code_adaptive`, or on free-threaded
    /// 3.14+ the thread-local copy `co_tlbc->entries[tlbc_index]`.
    fn bytecode_base<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        raw: &FrameFields,
        info: &CodeInfo,
    ) -> Result<u64, WalkError> {
        let adaptive = need(process.layout.code_code_adaptive, "code.co_code_adaptive")?;
        let main = raw.code.wrapping_add(u64::from(adaptive));
        let (Some(tlbc_off), true) = (process.layout.code_tlbc, raw.tlbc_index != 0) else {
            return Ok(main);
        };
        let key = (raw.code, raw.tlbc_index);
        if let Some(&base) = self.tlbc_bases.get(&key) {
            if in_bytecode(info, raw.position, base) {
                return Ok(base);
            }
        }
        let corrupt = WalkError::Corrupt {
            what: "thread-local bytecode index",
            addr: raw.code,
        };
        let index = u64::try_from(raw.tlbc_index).map_err(|_| corrupt.clone())?;
        let array = process
            .mem
            .read_u64(raw.code.wrapping_add(u64::from(tlbc_off)))?;
        if array == 0 {
            return Err(corrupt);
        }
        let count = process.mem.read_u64(array.wrapping_add(CODE_ARRAY_SIZE))?;
        if count > MAX_TLBC_ENTRIES || index >= count {
            return Err(corrupt);
        }
        let base = process
            .mem
            .read_u64(array.wrapping_add(CODE_ARRAY_ENTRIES + index * 8))?;
        if base == 0 {
            return Err(corrupt);
        }
        self.tlbc_bases.insert(key, base);
        Ok(base)
    }

    /// The decoded code object at `addr`, from the cache or read now; `None` when the object
    /// is not a code object (3.13+ entry frames may hold `None` in `f_executable`).
    pub(crate) fn code_info<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        addr: u64,
    ) -> Result<Option<Arc<CodeInfo>>, WalkError> {
        if let Some(info) = self.decoded.get(&addr) {
            return Ok(Some(info.clone()));
        }
        let l = process.layout;
        // The object header first: reading a whole PyCodeObject's worth from a small object
        // such as None could run off its mapping.
        let head_len = struct_len(l.pyobject_size, "object header")?;
        let head = process.mem.read_vec(addr, head_len, MAX_STRUCT)?;
        let ob_type = le::u64_at(&head, l.pyobject_ob_type as usize).ok_or(WalkError::Corrupt {
            what: "object header",
            addr,
        })?;
        if !self.is_code_type(process, ob_type)? {
            return Ok(None);
        }
        let code =
            process
                .mem
                .read_vec(addr, struct_len(l.code_size, "code object")?, MAX_STRUCT)?;
        let corrupt = WalkError::Corrupt {
            what: "code object",
            addr,
        };
        let ptr = |off: u32| le::u64_at(&code, off as usize).ok_or(corrupt.clone());
        let name_ptr = match l.code_qualname {
            Some(off) => ptr(off)?,
            None => ptr(l.code_name)?,
        };
        let filename_ptr = ptr(l.code_filename)?;
        let firstlineno = le::i32_at(&code, l.code_firstlineno as usize).ok_or(corrupt.clone())?;
        let table_ptr = match (l.code_linetable, l.code_lnotab) {
            (Some(off), _) | (None, Some(off)) => ptr(off)?,
            (None, None) => 0,
        };
        // 3.11+ PyCodeObject is a PyVarObject whose size is the bytecode length in code units
        // (Include/cpython/code.h, `_PyCode_NBYTES`).
        let code_units = match l.line_table {
            LineTable::Location311 => Some(ptr(l.pyvarobject_ob_size)? as i64),
            _ => None,
        };
        let function: Arc<str> = read_string(&process.mem, &l, name_ptr)?.into();
        let filename: Arc<str> = read_string(&process.mem, &l, filename_ptr)?.into();
        let table = if table_ptr == 0 {
            Vec::new()
        } else {
            Self::read_bytes(process, table_ptr)?
        };
        self.serials += 1;
        let info = Arc::new(CodeInfo {
            function,
            filename,
            lines: LineMap::new(l.line_table, &table, firstlineno),
            code_units,
            identity: (name_ptr, filename_ptr, firstlineno),
            serial: self.serials,
        });
        if self.decoded.len() >= MAX_CODE_CACHE {
            self.decoded.clear();
            self.tlbc_bases.clear();
        }
        self.decoded.insert(addr, info.clone());
        Ok(Some(info))
    }

    /// Nothing in a frame tells a code object from another one later allocated at the same
    /// address: before 3.11 at all, and from 3.11 only when the new code's instruction falls
    /// past the old one's bytecode (`resolve_frame`), which a short code object reusing a
    /// longer one's address does not (a launched script's `<module>` reusing a start-up
    /// module's was named `<module> (<frozen site>:73)` for the whole run). Code objects are
    /// freed all the time while a program starts (a module's body runs once), so a cached
    /// decoding can name a function that no longer exists. Call this with the `(code, frame)`
    /// pairs of the frames of a thread that the previous sample did not have: every code
    /// object that no longer has the name, file and first line it was decoded with has its
    /// decoding dropped, and the next lookup decodes it afresh. A code address is read at most
    /// once per sample, and not for the same frame met again with the same code within
    /// [`RECHECK_AFTER_SAMPLES`] samples (a function called in a loop); the code objects due
    /// are read together, in one batched read (each on its own if that read fails, so that
    /// one freed code object does not count against the others). Code objects the sample's
    /// own batch copied (`copied`: (code object, offset in `batch`), each the whole object)
    /// are compared there instead, with no read.
    pub(crate) fn check_identities<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        frames: impl Iterator<Item = (u64, u64)>,
        (copied, batch): (&[(u64, usize)], &[u8]),
    ) {
        let l = &process.layout;
        let Ok(len) = struct_len(l.code_size, "code object") else {
            // Nothing can be compared: every decoding due is dropped, as a failed read does.
            for (addr, frame) in frames {
                if self.identity_due(addr, frame).is_some() {
                    self.decoded.remove(&addr);
                }
            }
            return;
        };
        let (mut reqs, mut ids) = (
            std::mem::take(&mut self.due_reqs),
            std::mem::take(&mut self.due_ids),
        );
        reqs.clear();
        ids.clear();
        let name_off = l.code_qualname.unwrap_or(l.code_name) as usize;
        let identity_of = |code: &[u8]| {
            Some((
                le::u64_at(code, name_off)?,
                le::u64_at(code, l.code_filename as usize)?,
                le::i32_at(code, l.code_firstlineno as usize)?,
            ))
        };
        for (addr, frame) in frames {
            let Some(identity) = self.identity_due(addr, frame) else {
                continue;
            };
            match copied.iter().find(|&&(code, _)| code == addr) {
                Some(&(_, off)) => {
                    let now = off
                        .checked_add(len)
                        .and_then(|end| batch.get(off..end))
                        .and_then(identity_of);
                    if now != Some(identity) {
                        self.decoded.remove(&addr);
                    }
                }
                None => {
                    reqs.push((addr, len));
                    ids.push(identity);
                }
            }
        }
        let mut buf = std::mem::take(&mut self.due_buf);
        buf.clear();
        buf.resize(len * reqs.len(), 0);
        let batched = reqs.len() > 1 && process.mem.read_batch(&reqs, &mut buf).is_ok();
        for (i, (&(addr, _), &identity)) in reqs.iter().zip(&ids).enumerate() {
            let same = if batched {
                buf.get(i * len..(i + 1) * len).and_then(identity_of)
            } else {
                process
                    .mem
                    .read_vec(addr, len, MAX_STRUCT)
                    .ok()
                    .and_then(|code| identity_of(&code))
            }
            .is_some_and(|now| now == identity);
            if !same {
                self.decoded.remove(&addr);
            }
        }
        self.due_reqs = reqs;
        self.due_ids = ids;
        self.due_buf = buf;
    }

    /// Whether code `addr`, met running frame `frame`, is to be checked now (see
    /// [`CodeCache::check_identities`]), and the identity it was decoded with if so.
    fn identity_due(&mut self, addr: u64, frame: u64) -> Option<(u64, u64, i32)> {
        let now = self.samples;
        let recent = self
            .checked
            .get(&addr)
            .is_some_and(|&(f, at)| f == frame && now.saturating_sub(at) <= RECHECK_AFTER_SAMPLES);
        if self.checked.len() >= MAX_CODE_CACHE {
            self.checked.clear();
        }
        self.checked.insert(addr, (frame, now));
        let identity = self.decoded.get(&addr)?.identity;
        if recent || !self.refreshed.insert(addr) {
            return None;
        }
        Some(identity)
    }

    /// The payload of a `bytes` object (`str` on 2.7), bounded by [`MAX_LINETABLE_BYTES`].
    fn read_bytes<M: RemoteMemory>(process: &Process<M>, addr: u64) -> Result<Vec<u8>, WalkError> {
        let l = &process.layout;
        let len = process
            .mem
            .read_u64(addr.wrapping_add(u64::from(l.pyvarobject_ob_size)))?
            as i64;
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= MAX_LINETABLE_BYTES)
            .ok_or(WalkError::Corrupt {
                what: "line table length",
                addr,
            })?;
        Ok(process.mem.read_vec(
            addr.wrapping_add(u64::from(l.bytes_ob_sval)),
            len,
            MAX_LINETABLE_BYTES,
        )?)
    }

    /// Whether the type object at `ty` is `code` (its `tp_name`), asked once per type.
    fn is_code_type<M: RemoteMemory>(
        &mut self,
        process: &Process<M>,
        ty: u64,
    ) -> Result<bool, WalkError> {
        if let Some(&known) = self.code_types.get(&ty) {
            return Ok(known);
        }
        if ty == 0 {
            return Ok(false);
        }
        // Include/cpython/object.h: `struct _typeobject { PyObject_VAR_HEAD; const char
        // *tp_name; ...}`: tp_name directly follows ob_size.
        let tp_name_at = ty
            .wrapping_add(u64::from(process.layout.pyvarobject_ob_size))
            .wrapping_add(8);
        let name = process.mem.read_u64(tp_name_at)?;
        let mut text = [0u8; 5];
        let is_code = name != 0 && {
            process.mem.read_into(name, &mut text)?;
            &text == b"code\0"
        };
        if self.code_types.len() < MAX_CODE_TYPES {
            self.code_types.insert(ty, is_code);
        }
        Ok(is_code)
    }
}

/// Whether `lasti` (code units) can belong to this code object: from -1 (3.11–3.12
/// `prev_instr` before the first instruction) to its length. Always true before 3.11.
fn plausible_lasti(info: &CodeInfo, lasti: i64) -> bool {
    info.code_units.is_none_or(|n| (-1..=n).contains(&lasti))
}

fn in_bytecode(info: &CodeInfo, instr_ptr: i64, base: u64) -> bool {
    plausible_lasti(info, ((instr_ptr as u64).wrapping_sub(base) as i64) >> 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use strobe_python_abi::{layout_for, Flavour, Layout};
    use strobe_testkit::ImageMemory;

    use crate::process::Roots;

    fn layout() -> Layout {
        *layout_for(3, 12, Flavour::DEFAULT).unwrap()
    }

    /// A compact ASCII `str`.
    fn put_str(mem: &mut ImageMemory, l: &Layout, s: &str) -> u64 {
        let header = l.unicode_ascii_size.unwrap() as usize;
        let at = mem.alloc(header + s.len() + 1);
        mem.write_u64(at + u64::from(l.unicode_length.unwrap()), s.len() as u64);
        let kind_mask = l.unicode_kind_mask.unwrap();
        let state = ((1 << kind_mask.trailing_zeros()) & kind_mask)
            | l.unicode_compact_mask.unwrap()
            | l.unicode_ascii_mask.unwrap();
        mem.write_u32(at + u64::from(l.unicode_state.unwrap()), state);
        mem.write(at + header as u64, s.as_bytes());
        at
    }

    fn put_type(mem: &mut ImageMemory, l: &Layout, name: &str) -> u64 {
        let cname = mem.alloc(name.len() + 1);
        mem.write(cname, name.as_bytes());
        let ty = mem.alloc(512);
        mem.write_u64(ty + u64::from(l.pyvarobject_ob_size) + 8, cname);
        ty
    }

    /// Write at `at` a code object `name` of `units` code units whose instruction k is on
    /// line `first + k` (3.11 location table, one entry per code unit, no columns).
    fn write_code(
        mem: &mut ImageMemory,
        l: &Layout,
        code_type: u64,
        at: u64,
        (name, first, units): (&str, i32, u64),
    ) {
        let table: Vec<u8> = (0..units)
            .flat_map(|k| [0x80 | (13 << 3), if k == 0 { 0 } else { 2 }])
            .collect();
        let bytes = mem.alloc(l.bytes_ob_sval as usize + table.len() + 1);
        mem.write_u64(bytes + u64::from(l.pyvarobject_ob_size), table.len() as u64);
        mem.write(bytes + u64::from(l.bytes_ob_sval), &table);
        let name = put_str(mem, l, name);
        let file = put_str(mem, l, "mod.py");
        mem.write_u64(at + u64::from(l.pyobject_ob_type), code_type);
        mem.write_u64(at + u64::from(l.pyvarobject_ob_size), units);
        mem.write_u64(at + u64::from(l.code_name), name);
        mem.write_u64(at + u64::from(l.code_qualname.unwrap()), name);
        mem.write_u64(at + u64::from(l.code_filename), file);
        mem.write_i32(at + u64::from(l.code_firstlineno), first);
        mem.write_u64(at + u64::from(l.code_linetable.unwrap()), bytes);
    }

    /// An image with one code object (`f`, 8 units, first line 10) and one `None`-like object.
    fn image() -> (Process<ImageMemory>, u64, u64) {
        let l = layout();
        let mut mem = ImageMemory::new();
        let code_type = put_type(&mut mem, &l, "code");
        let none_type = put_type(&mut mem, &l, "NoneType");
        let code = mem.alloc(l.code_code_adaptive.unwrap() as usize + 2 * 64);
        write_code(&mut mem, &l, code_type, code, ("f", 10, 8));
        let none = mem.alloc(l.pyobject_size as usize);
        mem.write_u64(none + u64::from(l.pyobject_ob_type), none_type);
        let process = Process {
            mem,
            layout: l,
            roots: Roots::default(),
        };
        (process, code, none)
    }

    /// A frame of `code` at instruction `k`.
    fn frame(process: &Process<ImageMemory>, code: u64, k: u64) -> FrameFields {
        let adaptive = code + u64::from(process.layout.code_code_adaptive.unwrap());
        FrameFields {
            previous: 0,
            code,
            position: (adaptive + 2 * k) as i64,
            owner: None,
            tlbc_index: 0,
            is_entry: false,
        }
    }

    #[test]
    fn a_code_object_is_decoded_once() {
        let (process, code, _) = image();
        let mut cache = CodeCache::default();
        assert_eq!(cache.serial(code), None);
        let info = cache.code_info(&process, code).unwrap().unwrap();
        assert_eq!((&*info.function, &*info.filename), ("f", "mod.py"));
        let serial = cache.serial(code).unwrap();
        let again = cache.code_info(&process, code).unwrap().unwrap();
        assert!(Arc::ptr_eq(&info, &again));
        assert_eq!(cache.serial(code), Some(serial));
        cache.clear();
        assert_eq!(cache.serial(code), None);
        let fresh = cache.code_info(&process, code).unwrap().unwrap();
        assert_ne!(fresh.serial, serial);
    }

    #[test]
    fn an_object_that_is_not_code_has_no_info_and_no_line() {
        let (process, _, none) = image();
        let mut cache = CodeCache::default();
        assert!(cache.code_info(&process, none).unwrap().is_none());
        assert_eq!(cache.serial(none), None);
        let raw = frame(&process, none, 0);
        assert_eq!(cache.resolve_frame(&process, &raw).unwrap(), None);
    }

    #[test]
    fn a_frame_resolves_to_its_instruction_and_line() {
        let (process, code, _) = image();
        let mut cache = CodeCache::default();
        for k in 0..8 {
            let raw = frame(&process, code, k);
            let got = cache.resolve_frame(&process, &raw).unwrap();
            assert_eq!(got, Some((k as i64, Some(10 + k as i32))));
        }
    }

    #[test]
    fn a_recycled_code_address_is_decoded_afresh_once_per_sample() {
        let (mut process, code, _) = image();
        let mut cache = CodeCache::default();
        cache.start_sample();
        let before = cache.code_info(&process, code).unwrap().unwrap().serial;
        // The code object is freed and another, longer one takes its address.
        let l = process.layout;
        let code_type = process
            .mem
            .read_u64(code + u64::from(l.pyobject_ob_type))
            .unwrap();
        write_code(&mut process.mem, &l, code_type, code, ("g", 100, 64));
        // Instruction 30 cannot be in the cached 8-unit code object: decoded again.
        let raw = frame(&process, code, 30);
        assert_eq!(
            cache.resolve_frame(&process, &raw).unwrap(),
            Some((30, Some(130)))
        );
        let after = cache.serial(code).unwrap();
        assert_ne!(after, before);
        assert_eq!(
            &*cache.code_info(&process, code).unwrap().unwrap().function,
            "g"
        );
        // Past the end of even the new one: no line, and no second decoding this sample.
        let raw = frame(&process, code, 1000);
        assert_eq!(
            cache.resolve_frame(&process, &raw).unwrap(),
            Some((1000, None))
        );
        assert_eq!(cache.serial(code), Some(after));
        // Next sample it may be decoded again (it is still implausible, so it is).
        cache.start_sample();
        assert_eq!(
            cache.resolve_frame(&process, &raw).unwrap(),
            Some((1000, None))
        );
        assert_ne!(cache.serial(code), Some(after));
    }
}
