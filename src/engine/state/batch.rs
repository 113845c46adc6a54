//! A batch of events arranged for recording: grouped by scope, and each
//! event reduced to what a scope records of it ([`Recorded`]), its user and
//! connection ids hashed once.
//!
//! Why: with thousands of scopes, each event's scope, rings and distinct
//! maps are cold in cache, and those misses were most of the aggregate
//! step. Grouped, a scope's structures are fetched once per batch. The
//! events themselves are read once, in batch order (where the decoder left
//! them, so the hardware prefetches them), and the grouped pass then reads
//! the small `Recorded` copies in order instead of each event and its id
//! strings at random.

use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_64;

use super::ConnectorHash;
use crate::engine::classify::Fault;
use crate::engine::event::Event;
use crate::engine::timeutil::Micros;

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

impl Batch {
    pub(super) fn of(events: &[&Event<'_>]) -> Batch {
        let mut ids: HashMap<(&str, u8), u32, ConnectorHash> =
            HashMap::with_capacity_and_hasher(64, Default::default());
        let mut starts: Vec<u32> = Vec::new();
        let group: Vec<u32> = events
            .iter()
            .map(|ev| {
                let next = starts.len() as u32;
                let g = *ids
                    .entry((ev.connector.as_ref(), ev.cloud.index() as u8))
                    .or_insert(next);
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
        for (i, (ev, g)) in events.iter().zip(&group).enumerate() {
            let pos = &mut starts[*g as usize];
            out[*pos as usize] = (i as u32, Recorded::of(ev));
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
        let refs: Vec<&Event<'_>> = evs.iter().collect();
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
}
