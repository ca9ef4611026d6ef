//! `threadnames::ThreadNameCache` against the synthetic process images of every layout
//! (`support::build`): a lookup that finds nothing changed costs one read; a renamed thread,
//! and any other change, gives what a fresh `thread_names` gives. Against real interpreters
//! (renames, new and ended threads) in `threadnames_live.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::cell::Cell;

use strobe_memory::{MemError, RemoteMemory};
use strobe_python_abi::{debug_offsets_for, Layout, ALL};
use strobe_testkit::Rng;
use strobe_walker::threadnames::{thread_names, ThreadNameCache};

use support::build::{build, Built};
use support::FuzzMemory;

/// Mutated cases per layout in the agreement test.
const CASES: u64 = 400;

fn image(l: &Layout) -> (Built, FuzzMemory) {
    let b = build(
        l,
        debug_offsets_for(l.version.major, l.version.minor, l.flavour),
    );
    let mem = FuzzMemory::new(b.regions.clone());
    (b, mem)
}

fn name(l: &Layout) -> String {
    format!("{}.{} {:?}", l.version.major, l.version.minor, l.flavour)
}

/// Counts the reads made through it: a batched read counts once; single reads that fail
/// (the image's type names end right after their NUL, so reading 8 bytes of a short one
/// fails, and the walk reads it byte by byte) are counted apart.
struct Counting<'a> {
    mem: &'a FuzzMemory,
    calls: Cell<usize>,
    failed: Cell<usize>,
}

impl Counting<'_> {
    /// The reads that succeeded and the single reads that failed since the last call.
    fn take(&self) -> (usize, usize) {
        (self.calls.replace(0), self.failed.replace(0))
    }
}

impl RemoteMemory for Counting<'_> {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let r = self.mem.read_into(addr, buf);
        let n = if r.is_ok() { &self.calls } else { &self.failed };
        n.set(n.get() + 1);
        r
    }

    fn read_batch(&self, reqs: &[(u64, usize)], buf: &mut [u8]) -> Result<(), MemError> {
        self.calls.set(self.calls.get() + 1);
        self.mem.read_batch(reqs, buf)
    }
}

/// The address of the `str` object whose text is `text`.
fn str_at(b: &Built, text: &str) -> u64 {
    b.slots
        .strings
        .iter()
        .find(|(_, t)| t == text)
        .unwrap_or_else(|| panic!("no str {text:?} in the image"))
        .0
}

/// Unchanged, a second lookup is one read; a thread renamed (its name attribute now holds
/// another `str`) is seen by the next lookup, in every layout's attribute storage.
#[test]
fn a_lookup_reads_once_and_sees_a_rename() {
    for l in ALL {
        let (b, mem) = image(l);
        let counting = Counting {
            mem: &mem,
            calls: Cell::new(0),
            failed: Cell::new(0),
        };
        let mut cache = ThreadNameCache::new();
        let first = cache.lookup(&counting, l, b.interp).unwrap();
        assert_eq!(first, b.names, "{}", name(l));
        let (walked, failed) = counting.take();
        assert_eq!(cache.lookup(&counting, l, b.interp), Ok(b.names.clone()));
        let (calls, failing) = counting.take();
        assert_eq!(calls, 1, "{}: {walked} reads at first", name(l));
        // Each read that failed is checked to fail still, and nothing else is read alone.
        assert!(failing <= failed, "{}: {failing} of {failed}", name(l));

        // Rename "wörker-1" to "sys": the slot holding its name now points at another str.
        let old = str_at(&b, "wörker-1");
        let new = str_at(&b, "sys");
        let slots: Vec<u64> = b
            .slots
            .ptrs
            .iter()
            .map(|&(s, _)| s)
            .filter(|&s| mem.peek_u64(s) == Some(old))
            .collect();
        assert_eq!(slots.len(), 1, "{}: slots naming wörker-1", name(l));
        mem.poke_u64(slots[0], new);
        let mut renamed = b.names.clone();
        for n in renamed.values_mut() {
            if n == "wörker-1" {
                *n = "sys".to_string();
            }
        }
        assert_eq!(
            cache.lookup(&counting, l, b.interp),
            Ok(renamed),
            "{}",
            name(l)
        );
        let (calls, _) = counting.take();
        assert!(
            calls < walked / 2,
            "{}: {calls} reads after a rename, {walked} at first",
            name(l)
        );
        mem.restore();
        assert_eq!(cache.lookup(&mem, l, b.interp), Ok(b.names.clone()));
    }
}

/// Whatever words of the image change (pointers, lengths, the dicts of `sys.modules`,
/// `threading` and `_active`, attributes, names), a lookup through the cache gives exactly
/// what a fresh `thread_names` gives, errors included, and after the change is undone the
/// original names again.
#[test]
fn cached_lookups_agree_with_fresh_ones_whatever_changes() {
    let mut rng = Rng::new(0x7a3e_5111_0c9d_2f41);
    for l in ALL {
        let (b, mem) = image(l);
        let ours = mem.regions_from(0);
        let near: Vec<u64> = b.slots.objects.clone();
        let mut cache = ThreadNameCache::new();
        assert_eq!(cache.lookup(&mem, l, b.interp), Ok(b.names.clone()));
        for case in 0..CASES {
            let applied = mem.poke_words(&mut rng, &ours, &near);
            let fresh = thread_names(&mem, l, b.interp);
            let cached = cache.lookup(&mem, l, b.interp);
            assert_eq!(cached, fresh, "{} case {case}: {applied:x?}", name(l));
            mem.restore();
            assert_eq!(
                cache.lookup(&mem, l, b.interp),
                Ok(b.names.clone()),
                "{} case {case} undone: {applied:x?}",
                name(l)
            );
        }
    }
}
