//! [`Order`]: the filtered rows, put in order only as far as they are looked at.
//!
//! A program can have thousands of functions and the table shows about fifty: sorting them
//! all at every refresh cost more than drawing the screen. An `Order` keeps one range of
//! ranks in place (`idx[lo..hi]` are the rows of ranks `lo..hi`, in order; every row before
//! `lo` ranks lower, every row after `hi` higher) and widens it on demand with a selection
//! (`select_nth_unstable_by`, O(n)) and a sort of only the rows added. The comparison must be
//! a total order (no two rows equal), so that an unstable selection gives the one order a full
//! sort would.

use std::cmp::Ordering;

/// Rows (indexes, or sort keys with their index), in order within `lo..hi`. See the module
/// documentation.
#[derive(Debug, Clone)]
pub(crate) struct Order<T> {
    idx: Vec<T>,
    lo: usize,
    hi: usize,
    /// Whether `lo..hi` was placed yet (before that, nothing is known of the order).
    placed: bool,
}

impl<T> Order<T> {
    /// The rows `idx`, in no known order.
    pub(crate) fn new(idx: Vec<T>) -> Order<T> {
        Order {
            idx,
            lo: 0,
            hi: 0,
            placed: false,
        }
    }

    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.idx.len()
    }

    /// The rows of ranks `from..to` (clamped to the rows there are), in order, under `cmp`
    /// (a total order, the same at every call until the next [`Order::new`]).
    pub(crate) fn ranks(
        &mut self,
        from: usize,
        to: usize,
        mut cmp: impl FnMut(&T, &T) -> Ordering,
    ) -> &[T] {
        let to = to.min(self.idx.len());
        let from = from.min(to);
        if from == to {
            return &[];
        }
        if !self.placed {
            // Everything before `from` ranks lower: an empty range there keeps the invariant.
            if from > 0 {
                self.idx.select_nth_unstable_by(from, &mut cmp);
            }
            (self.lo, self.hi, self.placed) = (from, from, true);
        }
        if from < self.lo {
            // Ranks `from..lo` are the highest of the rows before `lo`.
            let head = self.idx.get_mut(..self.lo).unwrap_or_default();
            head.select_nth_unstable_by(from, &mut cmp);
            if let Some(added) = head.get_mut(from..) {
                added.sort_unstable_by(&mut cmp);
            }
            self.lo = from;
        }
        if to > self.hi {
            // Ranks `hi..to` are the lowest of the rows after `hi`.
            let tail = self.idx.get_mut(self.hi..).unwrap_or_default();
            let k = to - self.hi;
            if k < tail.len() {
                tail.select_nth_unstable_by(k, &mut cmp);
            }
            if let Some(added) = tail.get_mut(..k) {
                added.sort_unstable_by(&mut cmp);
            }
            self.hi = to;
        }
        self.idx.get(from..to).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use crate::test_rng::Rng;

    /// Keys with many ties, ordered by key then index (a total order).
    fn check(keys: &[u64], windows: &[(usize, usize)]) {
        let cmp = |a: &usize, b: &usize| keys[*a].cmp(&keys[*b]).then(a.cmp(b));
        let mut full: Vec<usize> = (0..keys.len()).collect();
        full.sort_by(cmp);
        let mut order = Order::new((0..keys.len()).collect());
        for &(from, to) in windows {
            let got = order.ranks(from, to, cmp).to_vec();
            let (f, t) = (from.min(keys.len()), to.min(keys.len()));
            assert_eq!(
                got,
                full[f.min(t)..t],
                "ranks {from}..{to} of {}",
                keys.len()
            );
        }
        assert_eq!(order.ranks(0, usize::MAX, cmp), full, "then every row");
    }

    #[test]
    fn windows_in_any_sequence_match_a_full_sort() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let n = rng.next(300) as usize;
            // Few distinct keys in some rounds: ties everywhere.
            let spread = if round % 3 == 0 { 4 } else { 1_000 };
            let keys: Vec<u64> = (0..n).map(|_| rng.next(spread)).collect();
            let windows: Vec<(usize, usize)> = (0..6)
                .map(|_| {
                    let a = rng.next(n as u64 + 20) as usize;
                    let len = rng.next(60) as usize;
                    (a, a + len)
                })
                .collect();
            check(&keys, &windows);
        }
    }

    #[test]
    fn growing_down_up_and_past_the_end() {
        let keys: Vec<u64> = (0..500).map(|i| (i * 7919) % 97).collect();
        check(
            &keys,
            &[
                (0, 45),
                (10, 55),
                (200, 245),
                (150, 250),
                (0, 10),
                (480, 600),
                (0, 500),
                (600, 700),
                (3, 3),
            ],
        );
        check(&keys, &[(499, 500), (0, 1)]);
        check(&[], &[(0, 45)]);
        check(&[5], &[(0, 45), (0, 1)]);
    }
}
