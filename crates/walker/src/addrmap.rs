//! Hash maps keyed by target addresses, with a hasher suited to them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hasher for maps keyed by target addresses: a multiply-xorshift mix (addresses are aligned,
/// so their low bits alone would make poor bucket indices). Not DoS-resistant, which is fine:
/// the keys are a few thousand pointers, and hashing sits on the sampling hot path.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        let h = (self.0 ^ (self.0 >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^ (h >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(17) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_i32(&mut self, v: i32) {
        self.write_u64(v as u32 as u64);
    }
}

/// A hash map keyed by target addresses (or tuples starting with one).
pub(crate) type AddrMap<K, V> = HashMap<K, V, BuildHasherDefault<AddrHasher>>;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn aligned_addresses_spread_over_buckets() {
        // 4096 16-byte-aligned addresses must not pile into a few of 4096 buckets.
        let b = BuildHasherDefault::<AddrHasher>::default();
        let mut used = HashSet::new();
        for i in 0..4096u64 {
            used.insert(b.hash_one(0x7f00_0000_0000 + i * 16) & 4095);
        }
        assert!(used.len() > 2000, "{} buckets used", used.len());
    }

    #[test]
    fn tuple_keys_differ_by_their_second_part() {
        let b = BuildHasherDefault::<AddrHasher>::default();
        let a = b.hash_one((0x7f00_0000_1000u64, 1i32));
        let c = b.hash_one((0x7f00_0000_1000u64, 2i32));
        assert_ne!(a, c);
        let mut map: AddrMap<(u64, i32), u64> = AddrMap::default();
        map.insert((0x1000, 1), 10);
        map.insert((0x1000, 2), 20);
        assert_eq!(map.get(&(0x1000, 1)), Some(&10));
        assert_eq!(map.get(&(0x1000, 2)), Some(&20));
    }
}
