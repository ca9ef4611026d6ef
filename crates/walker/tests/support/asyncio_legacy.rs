//! The synthetic 3.8–3.13 asyncio image of `fuzz_asyncio_legacy.rs`: the fuzz walker's image
//! of a layout (`super::build`) plus `sys.modules["_asyncio"]`, its task containers,
//! `_current_tasks`, a thread's running loop and three tasks (see that file).

use strobe_python_abi::{
    asyncio_legacy_for, debug_offsets_for, AsyncioLegacy, CoroFrameModel, DictModel, Layout,
    RunningLoopModel,
};

use strobe_walker::Walker;

use super::build::{build, Built};
use super::FuzzMemory;

/// Most reads one call may make.
pub const READ_BUDGET: u64 = 200_000;

/// Where our regions start (the builder's start at 0x5555_0000_0000).
pub const BASE: u64 = 0x6666_0000_0000;

/// Regions we add, by address, and objects laid out as `l` says.
struct Extra {
    l: &'static Layout,
    regions: Vec<(u64, Vec<u8>)>,
    next: u64,
    types: Vec<(&'static str, u64)>,
}

impl Extra {
    fn alloc(&mut self, len: usize) -> u64 {
        let at = self.next;
        self.regions.push((at, vec![0; len]));
        self.next += (len as u64 + 0xfff) & !0xfff;
        at
    }
    fn put(&mut self, addr: u64, bytes: &[u8]) {
        put(&mut self.regions, addr, bytes);
    }
    fn u64(&mut self, addr: u64, v: u64) {
        self.put(addr, &v.to_le_bytes());
    }
    /// A static type object named `name` of `basicsize` bytes, attributes at `dictoffset`.
    fn new_type(&mut self, name: &str, basicsize: u64, dictoffset: u64) -> u64 {
        let l = self.l;
        let t = self.alloc(1024);
        let s = self.alloc(name.len() + 1);
        self.put(s, name.as_bytes());
        self.u64(t + u64::from(l.type_name), s);
        self.u64(t + u64::from(l.type_flags), 0);
        self.u64(t + u64::from(l.type_basicsize), basicsize);
        self.u64(t + u64::from(l.type_dictoffset), dictoffset);
        t
    }
    fn ty(&mut self, name: &'static str) -> u64 {
        if let Some(&(_, t)) = self.types.iter().find(|(n, _)| *n == name) {
            return t;
        }
        let t = self.new_type(name, 0, 0);
        self.types.push((name, t));
        t
    }
    /// An object of type `ty`, `len` bytes, with room for a pre-header before it.
    fn object(&mut self, ty: u64, len: usize) -> u64 {
        let o = self.alloc(len + 32) + 32;
        self.u64(o + u64::from(self.l.pyobject_ob_type), ty);
        o
    }
    /// An ASCII `str`.
    fn s(&mut self, text: &str) -> u64 {
        let l = self.l;
        let ty = self.ty("str");
        let ascii = l.unicode_ascii_size.unwrap();
        let size = (ascii as usize + text.len() + 1).max(l.unicode_compact_size.unwrap() as usize);
        let o = self.object(ty, size);
        let kind = l.unicode_kind_mask.unwrap();
        let state = (1 << kind.trailing_zeros())
            | l.unicode_compact_mask.unwrap()
            | l.unicode_ascii_mask.unwrap();
        self.u64(o + u64::from(l.unicode_length.unwrap()), text.len() as u64);
        self.put(
            o + u64::from(l.unicode_state.unwrap()),
            &state.to_le_bytes(),
        );
        self.put(o + u64::from(ascii), text.as_bytes());
        o
    }
    /// A combined dict of `entries` (unicode keys from 3.11: `dk_kind` 1).
    fn dict(&mut self, entries: &[(u64, u64)]) -> u64 {
        let l = self.l;
        let ty = self.ty("dict");
        let d = self.object(ty, 64);
        self.u64(d + u64::from(l.dict_ma_used), entries.len() as u64);
        let indices = l.dictkeys_indices.unwrap() as usize;
        let size = (entries.len() * 3 / 2).next_power_of_two().max(8);
        let wide = l.dict_model == DictModel::Compact36;
        let stride = if wide { 24 } else { 16 };
        let k = self.alloc(indices + size + size * stride);
        let size_off = u64::from(l.dictkeys_size.unwrap());
        if l.dict_model == DictModel::Compact311 {
            let log2 = size.trailing_zeros() as u8;
            self.put(k + size_off, &[log2]);
            self.put(k + u64::from(l.dictkeys_log2_index_bytes.unwrap()), &[log2]);
            self.put(k + u64::from(l.dictkeys_kind.unwrap()), &[1]);
        } else {
            self.u64(k + size_off, size as u64);
        }
        self.u64(
            k + u64::from(l.dictkeys_nentries.unwrap()),
            entries.len() as u64,
        );
        let first = k + indices as u64 + size as u64;
        for (i, &(key, value)) in entries.iter().enumerate() {
            let e = first + (i * stride) as u64;
            let key_at = if wide { 8 } else { 0 };
            self.u64(e + key_at, key);
            self.u64(e + key_at + 8, value);
        }
        self.u64(d + u64::from(l.dict_ma_keys), k);
        d
    }
    /// A `set` of `keys` (hashes all 1: never the dummy's -1).
    fn set(&mut self, keys: &[u64]) -> u64 {
        let l = self.l;
        let ty = self.ty("set");
        let s = self.object(ty, 256);
        let slots = (keys.len() * 2).next_power_of_two().max(8);
        let stride = u64::from(l.setentry_size);
        let table = self.alloc(slots * stride as usize);
        for (i, &k) in keys.iter().enumerate() {
            // Every other slot, as a hash table leaves gaps.
            let e = table + 2 * i as u64 * stride;
            self.u64(e + u64::from(l.setentry_key), k);
            self.u64(e + u64::from(l.setentry_hash), 1);
        }
        self.u64(s + u64::from(l.set_used), keys.len() as u64);
        self.u64(s + u64::from(l.set_mask), slots as u64 - 1);
        self.u64(s + u64::from(l.set_table), table);
        s
    }
    /// An instance of a class keeping its attributes in a dict at `tp_dictoffset` 16.
    fn instance(&mut self, class: &'static str, attrs: &[(&str, u64)]) -> u64 {
        let ty = match self.types.iter().find(|(n, _)| *n == class) {
            Some(&(_, t)) => t,
            None => {
                let t = self.new_type(class, 32, 16);
                self.types.push((class, t));
                t
            }
        };
        let o = self.object(ty, 32);
        let entries: Vec<(u64, u64)> = attrs.iter().map(|&(k, v)| (self.s(k), v)).collect();
        let d = self.dict(&entries);
        self.u64(o + 16, d);
        o
    }
}

pub fn put(regions: &mut [(u64, Vec<u8>)], addr: u64, bytes: &[u8]) {
    let (base, r) = regions
        .iter_mut()
        .find(|(b, r)| addr >= *b && addr + bytes.len() as u64 <= *b + r.len() as u64)
        .unwrap_or_else(|| panic!("{addr:#x} is in no region"));
    let off = (addr - *base) as usize;
    r[off..off + bytes.len()].copy_from_slice(bytes);
}

pub fn get(regions: &[(u64, Vec<u8>)], addr: u64, len: usize) -> Vec<u8> {
    let (base, r) = regions
        .iter()
        .find(|(b, r)| addr >= *b && addr < *b + r.len() as u64)
        .unwrap();
    let off = (addr - base) as usize;
    r[off..(off + len).min(r.len())].to_vec()
}

pub struct Image {
    pub built: Built,
    pub table: &'static AsyncioLegacy,
    pub regions: Vec<(u64, Vec<u8>)>,
    pub tstate: u64,
    pub interp: u64,
    /// outer, mid, leaf.
    pub tasks: [u64; 3],
    pub gathering: u64,
    /// The gather's `_children` list.
    pub children: u64,
    pub future: u64,
    /// The task `WeakSet`'s `data` set.
    pub data: u64,
    /// A weak reference (to a `Future`) in no set, for a test to add while the set is read.
    pub spare_ref: u64,
    pub the_loop: u64,
    pub task_type: u64,
    pub frame: (String, String, Option<i32>),
}

pub fn image(l: &'static Layout) -> Image {
    let table = asyncio_legacy_for(l.version.major, l.version.minor, false).unwrap();
    let built = build(
        l,
        debug_offsets_for(l.version.major, l.version.minor, l.flavour),
    );
    let mut regions = built.regions.clone();
    // The leaf frame of the image: what each coroutine's frame is a copy of.
    let frame_info = {
        let mem = FuzzMemory::new(built.regions.clone());
        mem.reset_reads(READ_BUDGET);
        let mut w = Walker::new(&mem, *l, built.roots);
        let stacks = w.walk().unwrap();
        let leaf = stacks
            .iter()
            .find(|t| t.tstate_addr == built.leaf_tstate)
            .unwrap();
        let f = &leaf.frames[0];
        (f.function.to_string(), f.filename.to_string(), f.line)
    };
    let frame_len = match table.coro {
        CoroFrameModel::Embedded311 { .. } => l.iframe_size.unwrap() as usize,
        _ => 512,
    };
    let frame_bytes = get(&regions, built.leaf_frame, frame_len);
    let lasti_or_ip = match table.coro {
        CoroFrameModel::Embedded311 { .. } => {
            let b = get(
                &regions,
                built.leaf_frame + u64::from(l.iframe_instr_ptr.unwrap()),
                8,
            );
            u64::from_le_bytes(b.try_into().unwrap())
        }
        _ => {
            let b = get(
                &regions,
                built.leaf_frame + u64::from(l.frame_lasti.unwrap()),
                4,
            );
            u64::from(u32::from_le_bytes(b.try_into().unwrap()))
        }
    };

    let mut x = Extra {
        l,
        regions: Vec::new(),
        next: BASE,
        types: Vec::new(),
    };
    // The next instruction is an await's: YIELD_FROM (≤3.10, in a `co_code` bytes object we
    // give the leaf code) or RESUME with argument 3 (3.11, 3.12, in the code's own bytecode).
    match table.coro {
        CoroFrameModel::StackTop38 {
            co_code,
            yield_from,
            ..
        }
        | CoroFrameModel::StackDepth310 {
            co_code,
            yield_from,
            ..
        } => {
            let at = match table.coro {
                CoroFrameModel::StackTop38 { .. } => lasti_or_ip + 2,
                _ => (lasti_or_ip + 1) * 2,
            };
            let bytes_t = x.ty("bytes");
            let n = at as usize + 2;
            let b = x.object(bytes_t, l.bytes_ob_sval as usize + n + 1);
            x.u64(b + u64::from(l.pyvarobject_ob_size), n as u64);
            x.put(b + u64::from(l.bytes_ob_sval) + at, &[yield_from]);
            put(
                &mut regions,
                built.leaf_code + u64::from(co_code),
                &b.to_le_bytes(),
            );
        }
        CoroFrameModel::Embedded311 { resume_ops, .. } => {
            if let Some(&op) = resume_ops.first() {
                put(&mut regions, lasti_or_ip + 2, &[op, 3]);
            }
        }
    }
    let coro_t = x.ty("coroutine");
    let iter_t = x.ty("_asyncio.FutureIter");
    let fut_t = x.ty("_asyncio.Future");
    let none_t = x.ty("NoneType");
    let list_t = x.ty("list");
    let weakref_t = x.ty("weakref");
    let task_t = x.new_type("_asyncio.Task", u64::from(table.task_size), 0);
    let loop_t = x.ty("_UnixSelectorEventLoop");
    let the_loop = x.object(loop_t, 64);
    let none = x.object(none_t, 16);
    let future = x.object(fut_t, 256);
    let fut_iter = |x: &mut Extra, fut: u64| {
        let it = x.object(iter_t, 64);
        x.u64(it + u64::from(table.future_iter_future), fut);
        it
    };
    let coroutine = |x: &mut Extra, awaits: u64| -> u64 {
        let c = x.object(coro_t, 1024);
        match table.coro {
            CoroFrameModel::StackTop38 {
                gi_frame,
                f_stacktop,
                ..
            } => {
                let f = x.alloc(frame_len + 512);
                x.put(f, &frame_bytes);
                x.u64(c + u64::from(gi_frame), f);
                // The awaited object on top of a stack of 2 slots.
                let stack = f + 256;
                x.u64(stack + 8, awaits);
                x.u64(f + u64::from(f_stacktop), stack + 16);
            }
            CoroFrameModel::StackDepth310 {
                gi_frame,
                f_valuestack,
                f_stackdepth,
                f_state,
                suspended,
                ..
            } => {
                let f = x.alloc(frame_len + 512);
                x.put(f, &frame_bytes);
                x.u64(c + u64::from(gi_frame), f);
                let stack = f + 256;
                x.u64(stack + 8, awaits);
                x.u64(f + u64::from(f_valuestack), stack);
                x.put(f + u64::from(f_stackdepth), &2i32.to_le_bytes());
                x.put(f + u64::from(f_state), &[suspended as u8]);
            }
            CoroFrameModel::Embedded311 {
                gi_iframe,
                gi_frame_state,
                stacktop,
                suspended_yield_from,
                ..
            } => {
                let f = c + u64::from(gi_iframe);
                x.put(f, &frame_bytes);
                let base = f + u64::from(l.iframe_localsplus.unwrap());
                x.u64(base + 3 * 8, awaits);
                x.put(f + u64::from(stacktop), &4i32.to_le_bytes());
                x.put(c + u64::from(gi_frame_state), &[suspended_yield_from as u8]);
            }
        }
        c
    };
    let mut tasks = [0u64; 3];
    for t in &mut tasks {
        *t = x.object(task_t, table.task_size as usize);
    }
    let [outer, mid, leaf] = tasks;
    // gather(mid, leaf): a _GatheringFuture with `_children`.
    let children = x.object(list_t, 64);
    let items = x.alloc(16);
    x.u64(items, mid);
    x.u64(items + 8, leaf);
    x.u64(children + u64::from(l.pyvarobject_ob_size), 2);
    x.u64(children + u64::from(l.list_ob_item), items);
    let gathering = x.instance("_GatheringFuture", &[("_children", children)]);
    let it_g = fut_iter(&mut x, gathering);
    let it_leaf = fut_iter(&mut x, leaf);
    let it_fut = fut_iter(&mut x, future);
    let deep = coroutine(&mut x, it_fut);
    let coros = [
        coroutine(&mut x, it_g),
        coroutine(&mut x, it_leaf),
        coroutine(&mut x, deep),
    ];
    let waiters = [gathering, leaf, future];
    let names = ["outer", "mid", "leaf"];
    for (i, &t) in tasks.iter().enumerate() {
        let name = x.s(names[i]);
        x.u64(t + u64::from(table.fut_loop), the_loop);
        x.put(t + u64::from(table.fut_state), &0i32.to_le_bytes());
        x.u64(t + u64::from(table.task_name), name);
        x.u64(t + u64::from(table.task_coro), coros[i]);
        x.u64(t + u64::from(table.task_fut_waiter), waiters[i]);
    }
    // The weak set: references to the tasks, a dead one, one to an object of another class.
    let other = x.object(fut_t, 256);
    let mut refs = Vec::new();
    for obj in [outer, mid, none, leaf, other] {
        let r = x.object(weakref_t, 64);
        x.u64(r + u64::from(table.weakref_object), obj);
        refs.push(r);
    }
    let data = x.set(&refs);
    let spare_ref = x.object(weakref_t, 64);
    let spare = x.object(fut_t, 256);
    x.u64(spare_ref + u64::from(table.weakref_object), spare);
    let weak = x.instance("WeakSet", &[("_pending_removals", none), ("data", data)]);
    let current = x.dict(&[(the_loop, mid)]);
    let mut ns = vec![(x.s("Task"), task_t), (x.s(table.current_tasks), current)];
    for &w in table.weak_sets {
        ns.push((x.s(w), weak));
    }
    for &s in table.sets {
        let eager = x.set(&[]);
        ns.push((x.s(s), eager));
    }
    let namespace = x.dict(&ns);
    let module_t = x.ty("module");
    let module = x.object(module_t, 64);
    x.u64(module + u64::from(l.module_dict), namespace);
    let k_asyncio = x.s("_asyncio");
    let modules = x.dict(&[(k_asyncio, module)]);
    let interp = x.alloc(l.interp_modules as usize + 8);
    x.u64(interp + u64::from(l.interp_modules), modules);
    let tstate = x.alloc(0x1000);
    match table.running_loop {
        RunningLoopModel::ThreadDict {
            tstate_dict,
            holder_loop,
        } => {
            let held = match holder_loop {
                Some(off) => {
                    let holder_t = x.ty("_RunningLoopHolder");
                    let h = x.object(holder_t, 64);
                    x.u64(h + u64::from(off), the_loop);
                    h
                }
                None => the_loop,
            };
            let key = x.s("__asyncio_running_event_loop__");
            let d = x.dict(&[(key, held)]);
            x.u64(tstate + u64::from(tstate_dict), d);
        }
        RunningLoopModel::AfterThreadState => {
            x.u64(tstate + u64::from(l.tstate_size), the_loop);
        }
    }
    regions.extend(x.regions);
    Image {
        built,
        table,
        regions,
        tstate,
        interp,
        tasks,
        gathering,
        children,
        future,
        data,
        spare_ref,
        the_loop,
        task_type: task_t,
        frame: frame_info,
    }
}
