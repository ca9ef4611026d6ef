//! Thread names kept from one lookup to the next ([`ThreadNameCache`]).
//!
//! A lookup is a pure function of the bytes it reads. So each part of it (the walk from the
//! interpreter to `_active`'s pairs, and each pair's ident and name) keeps the ranges it read
//! and the bytes it found there (a [`Trace`]); the next lookup reads every kept range again in
//! one batched read and walks again only the parts whose bytes changed. A thread renamed
//! (`t.name = ...` stores a new `str` in the instance's attributes), a thread started or ended
//! (`_active` changes), a module imported (`sys.modules` changes): each changes bytes its part
//! read, so that part is walked again; everything else costs nothing but the shared read.
//!
//! A read that failed is kept too (the walk took another path because of it, e.g. a type's
//! name read byte by byte at the end of a mapping), and checked to fail still, alone. A part
//! whose batched read failed (which range of it is not known), or that read more than
//! [`MAX_TRACE_BYTES`], is not kept: it is walked again every time, as without a cache.
//! Each part has a reader of its own, so no part relies on a type's kind learnt by another.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use strobe_memory::{MemError, RemoteMemory};
use strobe_python_abi::Layout;

use super::Reader;
use crate::error::WalkError;

/// Most bytes one part of a lookup may read and still be kept; a `sys.modules` of thousands
/// of modules stays below it.
const MAX_TRACE_BYTES: usize = 1 << 20;

/// Most reads one part may make and still be kept.
const MAX_TRACE_RANGES: usize = 1 << 16;

/// Longest failed read kept (a failed read is checked by reading it again).
const MAX_FAILED_READ: usize = 4096;

/// Most failed reads one part may make and still be kept.
const MAX_FAILED_READS: usize = 64;

/// A `(key, Thread)` pair of `_active` (object addresses).
type Pair = (u64, u64);

/// The ident and name of one pair (`None`: not a thread with a name).
type Entry = Option<(u64, String)>;

/// The names of one interpreter's threads, kept between lookups (see the module
/// documentation). One per interpreter: a lookup of another interpreter starts afresh.
#[derive(Debug, Default)]
pub struct ThreadNameCache {
    /// The interpreter looked up last.
    interp: u64,
    /// The walk to `_active`'s `(key, Thread)` pairs (`None`: no `_active` dict).
    active: Option<Part<Option<Vec<Pair>>>>,
    /// Per pair of `_active`: its ident and name.
    pairs: HashMap<Pair, Part<Entry>>,
}

impl ThreadNameCache {
    /// An empty cache: the first lookup reads everything.
    pub fn new() -> ThreadNameCache {
        ThreadNameCache::default()
    }

    /// Map thread ident → `Thread.name` for the interpreter at `interp_addr`, as
    /// [`super::thread_names`] gives it, walking again only what changed since the last
    /// lookup. Errors are those of [`super::thread_names`]; a part that failed is not kept.
    pub fn lookup<M: RemoteMemory + ?Sized>(
        &mut self,
        mem: &M,
        layout: &Layout,
        interp_addr: u64,
    ) -> Result<HashMap<u64, String>, WalkError> {
        if self.interp != interp_addr {
            *self = ThreadNameCache {
                interp: interp_addr,
                ..ThreadNameCache::default()
            };
        }
        let same = self.unchanged(mem);
        let active = match self.active.take() {
            Some(part) if same.contains(&Key::Active) => part,
            _ => Part::walk(mem, layout, |r| r.active_items(interp_addr))?,
        };
        let pairs = active.value.clone().unwrap_or_default();
        self.active = Some(active);
        let mut kept = HashMap::with_capacity(pairs.len());
        let mut names = HashMap::with_capacity(pairs.len());
        for pair in pairs {
            let part = match self.pairs.remove(&pair) {
                Some(part) if same.contains(&Key::Pair(pair)) => part,
                _ => match Part::walk(mem, layout, |r| r.active_entry(pair.0, pair.1)) {
                    Ok(part) => part,
                    Err(e) => {
                        // Keep what was checked, for the next lookup.
                        self.pairs.extend(kept);
                        return Err(e);
                    }
                },
            };
            if let Some((ident, name)) = &part.value {
                names.insert(*ident, name.clone());
            }
            kept.insert(pair, part);
        }
        self.pairs = kept;
        Ok(names)
    }

    /// The parts whose ranges hold the bytes they held when they were walked: all of them
    /// checked in one batched read, or, if that read fails (some range is gone), part by part.
    fn unchanged<M: RemoteMemory + ?Sized>(&self, mem: &M) -> HashSet<Key> {
        let parts: Vec<(Key, &Trace)> = self
            .active
            .iter()
            .map(|p| (Key::Active, &p.trace))
            .chain(self.pairs.iter().map(|(&k, p)| (Key::Pair(k), &p.trace)))
            .filter(|(_, t)| t.kept)
            .collect();
        let reqs: Vec<(u64, usize)> = parts
            .iter()
            .flat_map(|(_, t)| t.ranges.iter().copied())
            .collect();
        if reqs.is_empty() {
            return HashSet::new();
        }
        let mut buf = vec![0u8; reqs.iter().map(|r| r.1).sum()];
        if mem.read_batch(&reqs, &mut buf).is_ok() {
            let mut rest = &buf[..];
            let mut same = HashSet::with_capacity(parts.len());
            for (key, trace) in parts {
                let (now, tail) = rest.split_at(trace.bytes.len().min(rest.len()));
                rest = tail;
                if now == trace.bytes && trace.still_failing(mem) {
                    same.insert(key);
                }
            }
            return same;
        }
        parts
            .into_iter()
            .filter(|(_, t)| t.unchanged(mem))
            .map(|(k, _)| k)
            .collect()
    }
}

/// Which part of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Active,
    Pair(Pair),
}

/// What one part of a lookup found, and what it read to find it.
#[derive(Debug)]
struct Part<T> {
    value: T,
    trace: Trace,
}

impl<T> Part<T> {
    /// Walk one part with a reader of its own, keeping what it read.
    fn walk<M: RemoteMemory + ?Sized>(
        mem: &M,
        layout: &Layout,
        f: impl FnOnce(&mut Reader<'_, Recorder<'_, M>>) -> Result<T, WalkError>,
    ) -> Result<Part<T>, WalkError> {
        let recorder = Recorder {
            mem,
            trace: RefCell::new(Trace {
                kept: true,
                ..Trace::default()
            }),
        };
        let value = f(&mut Reader::new(&recorder, layout))?;
        Ok(Part {
            value,
            trace: recorder.trace.into_inner(),
        })
    }
}

/// The reads of one part: each range and the bytes found there, in order.
#[derive(Debug, Default)]
struct Trace {
    ranges: Vec<(u64, usize)>,
    bytes: Vec<u8>,
    /// The single reads that failed.
    failed: Vec<(u64, usize)>,
    /// Whether the part can be checked by reading the ranges again: no read failed, and the
    /// bounds held.
    kept: bool,
}

impl Trace {
    fn record(&mut self, addr: u64, bytes: &[u8]) {
        if !self.kept {
            return;
        }
        if self.ranges.len() >= MAX_TRACE_RANGES || self.bytes.len() + bytes.len() > MAX_TRACE_BYTES
        {
            self.drop_all();
            return;
        }
        self.ranges.push((addr, bytes.len()));
        self.bytes.extend_from_slice(bytes);
    }

    fn record_failure(&mut self, addr: u64, len: usize) {
        if len > MAX_FAILED_READ || self.failed.len() >= MAX_FAILED_READS {
            self.drop_all();
        } else if self.kept {
            self.failed.push((addr, len));
        }
    }

    fn drop_all(&mut self) {
        *self = Trace::default();
    }

    /// Whether the ranges hold the same bytes now (one batched read of this part alone) and
    /// the reads that failed fail still.
    fn unchanged<M: RemoteMemory + ?Sized>(&self, mem: &M) -> bool {
        let mut buf = vec![0u8; self.bytes.len()];
        mem.read_batch(&self.ranges, &mut buf).is_ok()
            && buf == self.bytes
            && self.still_failing(mem)
    }

    /// Whether every read that failed fails again (each read alone).
    fn still_failing<M: RemoteMemory + ?Sized>(&self, mem: &M) -> bool {
        self.failed
            .iter()
            .all(|&(addr, len)| mem.read_into(addr, &mut vec![0u8; len]).is_err())
    }
}

/// Memory that keeps a [`Trace`] of the reads made through it.
struct Recorder<'a, M: RemoteMemory + ?Sized> {
    mem: &'a M,
    trace: RefCell<Trace>,
}

impl<M: RemoteMemory + ?Sized> Recorder<'_, M> {
    /// Keep a batched read (or a single one: a batch of one range).
    fn note(&self, result: &Result<(), MemError>, ranges: &[(u64, usize)], buf: &[u8]) {
        let mut trace = self.trace.borrow_mut();
        if result.is_err() {
            match ranges {
                [(addr, len)] => trace.record_failure(*addr, *len),
                _ => trace.drop_all(),
            }
            return;
        }
        let mut rest = buf;
        for &(addr, len) in ranges {
            let Some((bytes, tail)) = rest.split_at_checked(len) else {
                trace.drop_all();
                return;
            };
            trace.record(addr, bytes);
            rest = tail;
        }
    }
}

impl<M: RemoteMemory + ?Sized> RemoteMemory for Recorder<'_, M> {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let result = self.mem.read_into(addr, buf);
        self.note(&result, &[(addr, buf.len())], buf);
        result
    }

    fn read_batch(&self, reqs: &[(u64, usize)], buf: &mut [u8]) -> Result<(), MemError> {
        let result = self.mem.read_batch(reqs, buf);
        self.note(&result, reqs, buf);
        result
    }
}
