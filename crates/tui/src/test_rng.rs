//! A reproducible random stream for the unit tests (xorshift64), without a dependency.

/// xorshift64 from a nonzero seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next number, below `below` (which must not be 0).
    pub(crate) fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}
