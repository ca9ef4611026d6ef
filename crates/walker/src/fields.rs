//! The fields of one structure a sample needs, grouped into few reads.

use strobe_memory::le;

/// Fields within this many bytes of each other are read as one range.
const CLUSTER_SPAN: u64 = 512;

/// The fields of one structure a sample needs, grouped into few reads: fields close together
/// share a read, and each field's bytes are found by its position in the concatenated reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldSet {
    /// `(offset, length)` of each read, relative to the structure.
    reads: Vec<(u64, usize)>,
    /// Each field's position in the concatenated reads (`None`: the layout lacks it).
    at: Vec<Option<usize>>,
}

impl FieldSet {
    /// `fields[i]`: `(offset, width)` of field `i`, if the layout has it.
    pub(crate) fn new(fields: &[Option<(u32, u32)>]) -> FieldSet {
        let mut present: Vec<(u64, u64)> = fields
            .iter()
            .flatten()
            .map(|&(o, w)| (u64::from(o), u64::from(w)))
            .collect();
        present.sort_unstable();
        let mut clusters: Vec<(u64, u64)> = Vec::new();
        for (off, width) in present {
            match clusters.last_mut() {
                Some((lo, end)) if off + width - *lo <= CLUSTER_SPAN => {
                    *end = (*end).max(off + width);
                }
                _ => clusters.push((off, off + width)),
            }
        }
        let mut starts = Vec::with_capacity(clusters.len());
        let mut total = 0usize;
        for &(lo, end) in &clusters {
            starts.push(total);
            total += (end - lo) as usize;
        }
        let at = fields
            .iter()
            .map(|f| {
                let (off, width) = (*f)?;
                let (off, width) = (u64::from(off), u64::from(width));
                // The read that holds the whole field (overlapping fields may start in one
                // read and end in the next).
                let k = clusters
                    .iter()
                    .position(|&(lo, end)| off >= lo && off + width <= end)?;
                Some(starts[k] + (off - clusters[k].0) as usize)
            })
            .collect();
        let reads = clusters
            .iter()
            .map(|&(lo, end)| (lo, (end - lo) as usize))
            .collect();
        FieldSet { reads, at }
    }

    /// `(offset, length)` of each read, relative to the structure, in the order their bytes
    /// are concatenated.
    pub(crate) fn reads(&self) -> &[(u64, usize)] {
        &self.reads
    }

    /// Field `field` as a u64, from reads concatenated at `start` in `buf`.
    #[inline]
    pub(crate) fn u64(&self, buf: &[u8], start: usize, field: usize) -> Option<u64> {
        let at = (*self.at.get(field)?)?;
        le::u64_at(buf, start.checked_add(at)?)
    }

    /// Field `field` as an i32, from reads concatenated at `start` in `buf`.
    #[inline]
    pub(crate) fn i32(&self, buf: &[u8], start: usize, field: usize) -> Option<i32> {
        let at = (*self.at.get(field)?)?;
        le::i32_at(buf, start.checked_add(at)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The bytes a structure `image` gives for `set`'s reads, concatenated.
    fn read_all(set: &FieldSet, image: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(off, len) in set.reads() {
            out.extend_from_slice(&image[off as usize..off as usize + len]);
        }
        out
    }

    #[test]
    fn close_fields_share_a_read_and_far_ones_do_not() {
        let set = FieldSet::new(&[Some((16, 8)), Some((0, 8)), Some((4000, 8)), Some((24, 4))]);
        assert_eq!(set.reads(), &[(0, 28), (4000, 8)]);
        let mut image = vec![0u8; 4096];
        image[0..8].copy_from_slice(&11u64.to_le_bytes());
        image[16..24].copy_from_slice(&22u64.to_le_bytes());
        image[24..28].copy_from_slice(&(-3i32).to_le_bytes());
        image[4000..4008].copy_from_slice(&44u64.to_le_bytes());
        // Behind some unrelated bytes, as in a batch buffer.
        let mut buf = vec![0xaa; 5];
        buf.extend(read_all(&set, &image));
        assert_eq!(set.u64(&buf, 5, 0), Some(22));
        assert_eq!(set.u64(&buf, 5, 1), Some(11));
        assert_eq!(set.u64(&buf, 5, 2), Some(44));
        assert_eq!(set.i32(&buf, 5, 3), Some(-3));
    }

    #[test]
    fn absent_fields_and_short_buffers_give_none() {
        let set = FieldSet::new(&[Some((8, 8)), None]);
        assert_eq!(set.reads(), &[(8, 8)]);
        let buf = 7u64.to_le_bytes();
        assert_eq!(set.u64(&buf, 0, 0), Some(7));
        assert_eq!(set.u64(&buf, 0, 1), None);
        assert_eq!(set.u64(&buf, 0, 2), None);
        assert_eq!(set.u64(&buf, 1, 0), None);
        assert_eq!(set.u64(&buf, usize::MAX, 0), None);
    }

    #[test]
    fn a_cluster_is_cut_at_the_span_limit() {
        let set = FieldSet::new(&[Some((0, 8)), Some((504, 8)), Some((505, 8))]);
        // 0..512 fits in one span; the field ending at 513 starts another read, and is
        // taken whole from it.
        assert_eq!(set.reads(), &[(0, 512), (505, 8)]);
        let image: Vec<u8> = (0..=255u8).cycle().take(520).collect();
        let buf = read_all(&set, &image);
        let want = u64::from_le_bytes(image[505..513].try_into().unwrap());
        assert_eq!(set.u64(&buf, 0, 2), Some(want));
        let want = u64::from_le_bytes(image[504..512].try_into().unwrap());
        assert_eq!(set.u64(&buf, 0, 1), Some(want));
    }
}
