//! `RemoteMemory::read_batch` on a live process (this one): the batched read the sampling hot
//! path makes once per sample, including `ProcessMemory`'s merging of nearby requests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strobe_memory::{MemError, RemoteMemory};
use strobe_remote::ProcessMemory;

fn me() -> ProcessMemory {
    ProcessMemory::open(std::process::id() as i32).unwrap()
}

/// A page-aligned buffer of `pages` pages, filled with a pattern.
fn pattern(pages: usize) -> (Vec<u8>, u64) {
    let mut v: Vec<u8> = (0..(pages + 1) * 4096)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let base = v.as_mut_ptr() as u64;
    let aligned = (base + 4095) & !4095;
    (v, aligned)
}

fn expected(reqs: &[(u64, usize)], v: &[u8]) -> Vec<u8> {
    let base = v.as_ptr() as u64;
    reqs.iter()
        .flat_map(|&(a, l)| v[(a - base) as usize..(a - base) as usize + l].to_vec())
        .collect()
}

#[test]
fn merged_overlapping_and_unordered_requests_land_in_request_order() {
    let (v, p) = pattern(8);
    // Same page, overlapping, out of order, neighbouring pages, a far page, zero length.
    let reqs = [
        (p + 5 * 4096 + 100, 300),
        (p + 16, 8),
        (p + 8, 24),
        (p + 4000, 200),
        (p + 7 * 4096, 4096),
        (p + 100, 0),
        (p + 2 * 4096 + 1, 1),
    ];
    let total: usize = reqs.iter().map(|r| r.1).sum();
    let mut buf = vec![0u8; total];
    me().read_batch(&reqs, &mut buf).unwrap();
    assert_eq!(buf, expected(&reqs, &v));
    // The provided (one-by-one) version agrees.
    struct OneByOne(ProcessMemory);
    impl RemoteMemory for OneByOne {
        fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
            self.0.read_into(addr, buf)
        }
    }
    let mut again = vec![0u8; total];
    OneByOne(me()).read_batch(&reqs, &mut again).unwrap();
    assert_eq!(again, buf);
}

#[test]
fn merging_never_reads_a_page_no_request_touches() {
    // A thread's stack sits right above its guard page (no access): requests just below and
    // just above the guard must not be merged into one read through it.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let parked = std::thread::spawn(move || {
        ready_tx.send(()).unwrap();
        let _ = rx.recv();
    });
    ready_rx.recv().unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let ranges: Vec<(u64, u64, String)> = maps
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace();
            let (s, e) = f.next().unwrap().split_once('-').unwrap();
            (
                u64::from_str_radix(s, 16).unwrap(),
                u64::from_str_radix(e, 16).unwrap(),
                f.next().unwrap().to_string(),
            )
        })
        .collect();
    // readable | no access | readable, each adjacent to the next; the smallest such gap.
    let (below, above, gap) = ranges
        .windows(3)
        .filter(|w| {
            w[0].2.starts_with('r')
                && w[1].2.starts_with('-')
                && w[2].2.starts_with('r')
                && w[0].1 == w[1].0
                && w[1].1 == w[2].0
        })
        .map(|w| (w[1].0, w[1].1, w[1].1 - w[1].0))
        .min_by_key(|c| c.2)
        .expect("a guard mapping between two readable ones (thread stacks have them)");
    assert!(gap >= 4096);
    let mut buf = [0u8; 16];
    me().read_batch(&[(above, 8), (below - 8, 8)], &mut buf)
        .unwrap();
    let mut direct = [0u8; 16];
    me().read_into(below - 8, &mut direct[..8]).unwrap();
    me().read_into(above, &mut direct[8..]).unwrap();
    assert_eq!(buf[..8], direct[8..], "request order is kept");
    assert_eq!(buf[8..], direct[..8]);
    tx.send(()).unwrap();
    parked.join().unwrap();
}

#[test]
fn a_failed_batch_names_a_range_covering_the_failing_request() {
    let (_v, p) = pattern(2);
    let mut buf = [0u8; 24];
    let err = me()
        .read_batch(&[(p, 8), (0x40, 8), (p + 64, 8)], &mut buf)
        .unwrap_err();
    match err {
        MemError::Fault { addr, len } => assert!(addr <= 0x40 && 0x48 <= addr + len as u64),
        other => panic!("{other:?}"),
    }
    // A buffer not sized to the requests is refused before reading.
    let mut short = [0u8; 4];
    assert!(matches!(
        me().read_batch(&[(p, 8)], &mut short),
        Err(MemError::TooLarge { .. })
    ));
}
