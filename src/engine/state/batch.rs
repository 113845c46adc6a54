//! A batch of events arranged for recording: each valid event digested
//! where it was decoded ([`Digest`]: its scope, and what the scope records
//! of it, [`Recorded`], with the ids hashed once), then the batch grouped
//! by scope.
//!
//! Why grouped: with thousands of scopes, each event's scope, rings and
//! distinct maps are cold in cache, and those misses were most of the
//! aggregate step. Grouped, a scope's structures are fetched once per
//! batch, and the grouped pass reads the small `Recorded` copies in order.
//!
//! Why digested at decode: the ingest phase reads a batch's events long
//! after they were decoded. In `report` on two threads, one task's events
//! are about every 30th line of a 32 MiB batch, so reading their ids again
//! there (to group by scope and to hash the user and the connection)
//! missed the cache and the TLB on every event: grouping was 14% of
//! `report`'s CPU on 2 threads, against 3% on one. A digest is made while
//! the line is in cache and carries the connector id inline, so grouping
//! and recording touch nothing else.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use compact_str::CompactString;
use xxhash_rust::xxh3::xxh3_64;

use super::IdHash;
use crate::engine::classify::{Cloud, Fault};
use crate::engine::event::Event;
use crate::engine::timeutil::Micros;

/// A valid event as a task ingests it: its scope and what it records.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    /// The connector id, inline up to 24 bytes (nearly every id).
    pub connector: CompactString,
    /// `xxh3_64` of the connector id (as [`super::shard_of`] hashes it).
    pub connector_hash: u64,
    pub cloud: Cloud,
    pub rec: Recorded,
}

impl Digest {
    pub fn of(ev: &Event<'_>) -> Digest {
        Digest {
            connector: CompactString::from(ev.connector.as_ref()),
            connector_hash: xxh3_64(ev.connector.as_bytes()),
            cloud: ev.cloud,
            rec: Recorded::of(ev),
        }
    }

    /// [`super::shard_of`] of the connector, from its digested hash.
    pub fn shard_of(&self, n: usize) -> usize {
        super::shard_of_hash(self.connector_hash, n)
    }
}

/// What a scope records of one valid event: the fields it keeps, with the
/// user and connection ids as their 64-bit xxh3 hashes (what the distinct
/// and per-connection maps are keyed by, stable across versions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recorded {
    pub ts: Micros,
    pub latency_ms: Option<f64>,
    pub user: Option<u64>,
    pub connection: Option<u64>,
    pub status: Option<u16>,
    pub fault: Option<Fault>,
}

impl Recorded {
    pub fn of(ev: &Event<'_>) -> Recorded {
        Recorded {
            ts: ev.ts,
            latency_ms: ev.latency_ms,
            user: ev.user.as_ref().map(|u| xxh3_64(u.as_bytes())),
            connection: ev.connection.as_ref().map(|c| xxh3_64(c.as_bytes())),
            status: ev.status,
            fault: ev.fault,
        }
    }
}

/// The events of a batch by scope: each scope's events in batch order
/// (with their index in the batch), scopes in the order of their first
/// event (a stable counting sort).
pub(super) struct Batch {
    events: Vec<(u32, Recorded)>,
    /// Where each scope's run of `events` ends.
    ends: Vec<u32>,
}

/// A scope of a batch, looked up by the connector's digested hash: the
/// id is compared only when the hashes match, and read from the digest.
#[derive(PartialEq, Eq)]
struct ScopeKey<'b> {
    hash: u64,
    cloud: Cloud,
    connector: &'b str,
}

impl Hash for ScopeKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // Already uniform: the cloud moves it to another uniform value.
        h.write_u64(
            self.hash ^ (self.cloud.index() as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
    }
}

impl Batch {
    pub(super) fn of(events: &[&Digest]) -> Batch {
        let mut ids: HashMap<ScopeKey<'_>, u32, IdHash> =
            HashMap::with_capacity_and_hasher(64, Default::default());
        let mut starts: Vec<u32> = Vec::new();
        let group: Vec<u32> = events
            .iter()
            .map(|d| {
                let next = starts.len() as u32;
                let key = ScopeKey {
                    hash: d.connector_hash,
                    cloud: d.cloud,
                    connector: &d.connector,
                };
                let g = *ids.entry(key).or_insert(next);
                if g == next {
                    starts.push(0);
                }
                starts[g as usize] += 1;
                g
            })
            .collect();
        // Sizes to start positions; each becomes its run's end as it fills.
        let mut at = 0u32;
        for s in starts.iter_mut() {
            let n = *s;
            *s = at;
            at += n;
        }
        let mut out = vec![(0u32, EMPTY_RECORDED); events.len()];
        for (i, (d, g)) in events.iter().zip(&group).enumerate() {
            let pos = &mut starts[*g as usize];
            out[*pos as usize] = (i as u32, d.rec);
            *pos += 1;
        }
        Batch {
            events: out,
            ends: starts,
        }
    }

    /// Each scope's events, `(index in the batch, what is recorded)`.
    pub(super) fn groups(&self) -> impl Iterator<Item = &[(u32, Recorded)]> {
        let mut start = 0usize;
        self.ends.iter().map(move |&e| {
            let g = &self.events[start..e as usize];
            start = e as usize;
            g
        })
    }
}

/// A placeholder, every one overwritten before it is read.
const EMPTY_RECORDED: Recorded = Recorded {
    ts: 0,
    latency_ms: None,
    user: None,
    connection: None,
    status: None,
    fault: None,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::classify::Cloud;
    use crate::engine::state::testutil::ev;
    use std::borrow::Cow;

    /// By hand: the batch a/public, b/public, a/gcc, a/public, b/public
    /// groups as a/public {0, 3}, b/public {1, 4}, a/gcc {2}: scopes in
    /// the order of their first event, events in batch order.
    #[test]
    fn groups_by_scope_in_order_of_first_event() {
        let mut evs = Vec::new();
        for (c, cloud) in [
            ("a", Cloud::Public),
            ("b", Cloud::Public),
            ("a", Cloud::Gcc),
            ("a", Cloud::Public),
            ("b", Cloud::Public),
        ] {
            let mut x = ev("2026-11-20T10:00:00Z", Some(c));
            x.connector = Cow::Borrowed(c);
            x.cloud = cloud;
            evs.push(x);
        }
        let digests: Vec<Digest> = evs.iter().map(Digest::of).collect();
        let refs: Vec<&Digest> = digests.iter().collect();
        let b = Batch::of(&refs);
        let groups: Vec<Vec<u32>> = b
            .groups()
            .map(|g| g.iter().map(|(i, _)| *i).collect())
            .collect();
        assert_eq!(groups, vec![vec![0, 3], vec![1, 4], vec![2]]);
        // Each carries its own event, the user id hashed.
        for g in b.groups() {
            for (i, r) in g {
                assert_eq!(*r, Recorded::of(&evs[*i as usize]));
            }
        }
        assert_eq!(b.groups().next().unwrap()[0].1.user, Some(xxh3_64(b"a")));
    }

    /// Grouping looks scopes up by the digested hash, so two ids whose
    /// hashes collide must still be told apart by the ids themselves.
    #[test]
    fn ids_whose_hashes_collide_are_separate_scopes() {
        let mut evs = Vec::new();
        for c in ["a", "b", "a"] {
            let mut x = ev("2026-11-20T10:00:00Z", None);
            x.connector = Cow::Borrowed(c);
            evs.push(x);
        }
        let digests: Vec<Digest> = evs
            .iter()
            .map(|e| Digest {
                connector_hash: 7,
                ..Digest::of(e)
            })
            .collect();
        let refs: Vec<&Digest> = digests.iter().collect();
        let groups: Vec<Vec<u32>> = Batch::of(&refs)
            .groups()
            .map(|g| g.iter().map(|(i, _)| *i).collect())
            .collect();
        assert_eq!(groups, vec![vec![0, 2], vec![1]]);
    }

    /// `report` routes digests to its tasks by the digested hash: the
    /// same shard as the id's own.
    #[test]
    fn a_digests_shard_is_its_connectors() {
        for c in [
            "a",
            "shared_c0549",
            "a connector id longer than twenty-four bytes",
        ] {
            let mut x = ev("2026-11-20T10:00:00Z", None);
            x.connector = Cow::Borrowed(c);
            let d = Digest::of(&x);
            assert_eq!(d.connector, c);
            for n in [1, 2, 7, 32] {
                assert_eq!(
                    d.shard_of(n),
                    crate::engine::state::shard_of(c, n),
                    "{c} {n}"
                );
            }
        }
    }
}
