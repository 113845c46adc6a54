//! Rings of day or hour buckets, each tagged with its absolute index: a
//! slot is reused by a newer bucket, and what it held has aged out.

use serde::{Deserialize, Serialize};

use super::counts::Counts;
use super::latency::{self, Latency};
use super::EMPTY;

/// One day's or one hour's aggregates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bucket {
    /// Absolute day or hour index; `EMPTY` when unused.
    pub tag: i32,
    pub counts: Counts,
    #[serde(with = "latency::serde_repr")]
    pub latency: Latency,
}

impl Bucket {
    fn empty() -> Bucket {
        Bucket {
            tag: EMPTY,
            counts: Counts::default(),
            latency: Latency::default(),
        }
    }
}

/// A ring of buckets indexed by tag modulo its length.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ring {
    slots: Vec<Bucket>,
}

impl Ring {
    pub(super) fn new(n: u32) -> Ring {
        Ring {
            slots: (0..n.max(1)).map(|_| Bucket::empty()).collect(),
        }
    }
    /// The bucket for `tag`, reusing an older slot. `None` when the slot
    /// already holds a newer tag (the event is too old for this ring).
    /// `aged` receives the request count of a reused slot.
    pub(super) fn slot(&mut self, tag: i32, aged: &mut u64) -> Option<&mut Bucket> {
        // 32-bit remainder: a 64-bit division costs several times more,
        // and every event takes two of these (day and hour rings).
        let n = self.slots.len() as i32;
        let b = &mut self.slots[tag.rem_euclid(n) as usize];
        if b.tag == tag {
            return Some(b);
        }
        if b.tag != EMPTY && b.tag > tag {
            return None;
        }
        *aged += b.counts.requests;
        *b = Bucket::empty();
        b.tag = tag;
        Some(b)
    }
    /// Buckets whose tag lies in `lo..=hi`.
    pub fn range(&self, lo: i32, hi: i32) -> impl Iterator<Item = &Bucket> + Clone {
        self.slots
            .iter()
            .filter(move |b| b.tag != EMPTY && b.tag >= lo && b.tag <= hi)
    }
    pub(super) fn merge(&mut self, o: &Ring, aged: &mut u64) {
        for ob in o.slots.iter().filter(|b| b.tag != EMPTY) {
            match self.slot(ob.tag, aged) {
                Some(b) => {
                    b.counts.add(&ob.counts);
                    b.latency.merge(&ob.latency);
                }
                None => *aged += ob.counts.requests,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_rejects_older_than_its_slot() {
        let mut r = Ring::new(3);
        let mut aged = 0;
        r.slot(10, &mut aged).unwrap().counts.requests = 5;
        assert!(r.slot(7, &mut aged).is_none());
        r.slot(13, &mut aged).unwrap();
        assert_eq!(aged, 5);
    }
}
