//! The stacks a recording of format version 4 or older forgot, found by reading it twice.
//!
//! Such a file has no FORGET records, so a [`RawStream`](super::RawStream) reading it once
//! would hold every stack it defines. When the recording can be read again (a regular file, or
//! bytes in memory), a first pass ([`ForgetPlan::scan`]) notes, for each chunk, the least stack
//! id any sample or count of that chunk or a later one names; the second pass forgets, as each
//! chunk begins, the stacks below it ([`ForgetPlan::enter_chunk`]). Stacks are forgotten by id
//! prefix, as FORGET does, so the second pass holds what a FORGET-writing recorder's reader
//! would: the recorder redefines a stack it forgot and met again, so old ids fall out of use
//! in order. The plan costs 4 bytes a chunk (a chunk is at most 1 MiB and a second of
//! recording), whatever the number of stacks.

use std::io::Read;

use strobe_aggregate::{StackId, Tables};

use super::records::{RawError, Record, Records};

/// When to forget which stacks, per chunk of the first pass. See the module documentation.
#[derive(Debug)]
pub(super) struct ForgetPlan {
    /// For chunk `k`: the least stack id named from chunk `k` on (`u32::MAX`: none is).
    below: Vec<u32>,
    /// The bytes the first pass ignored at the end (a torn or damaged chunk).
    ignored: usize,
}

impl ForgetPlan {
    /// Reads `records` (the recording's first pass) to the end.
    pub(super) fn scan<R: Read>(mut records: Records<R>) -> Result<ForgetPlan, RawError> {
        let mut below: Vec<u32> = Vec::new();
        loop {
            let stack = match records.next()? {
                None => break,
                Some(Record::Sample(s)) => s.stack,
                Some(Record::Aggregate(k, _)) => k.stack,
                Some(_) => continue,
            };
            // The record is in the chunk read last.
            below.resize(records.chunks(), u32::MAX);
            if let Some(least) = below.last_mut() {
                *least = (*least).min(stack.0);
            }
        }
        below.resize(records.chunks(), u32::MAX);
        let mut least = u32::MAX;
        for b in below.iter_mut().rev() {
            least = least.min(*b);
            *b = least;
        }
        Ok(ForgetPlan {
            below,
            ignored: records.ignored_bytes(),
        })
    }

    /// Chunk `k` (from 0) of the second pass begins: forgets from `tables` the stacks no
    /// record from it on names. False if the first pass had no chunk `k` (the file grew in
    /// between): the second pass ends where the first did.
    pub(super) fn enter_chunk(&self, k: usize, tables: &mut Tables) -> bool {
        match self.below.get(k) {
            Some(&below) => {
                // Clamped by the tables to the stacks defined so far.
                tables.forget_stacks_below(StackId(below));
                true
            }
            None => false,
        }
    }

    /// Chunks of the first pass.
    pub(super) fn chunks(&self) -> usize {
        self.below.len()
    }

    /// Bytes the first pass ignored at the end.
    pub(super) fn ignored_bytes(&self) -> usize {
        self.ignored
    }
}
