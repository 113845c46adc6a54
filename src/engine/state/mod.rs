//! Aggregated state per scope (SPEC §4–5): bucket rings of counters and
//! latencies, distinct users and connections, and per-connection counters
//! for the SLO. No per-event storage: memory is bounded by scopes × buckets ×
//! (distinct entries up to a cap, then fixed-size sketches).
//!
//! One module per structure: `counts` (SPEC §5 counters), `latency`
//! (exact values, then HDR), `ring` (day and hour buckets), `distinct`
//! (users and connections), `connections` (per-connection SLO counters),
//! `scope` (everything of one connector × cloud), `admission` (which
//! valid events are admitted), `batch` (a batch arranged for recording:
//! by scope, each event reduced to what is recorded) and `engine` (all the
//! scopes of a shard).
//!
//! Design choices:
//! - Buckets are tagged with their absolute UTC day (or hour) index and kept
//!   in rings of `retention_days` days and `MAX(hour windows)` hours. A slot
//!   whose tag is older than a new event's day is reused; the events it held
//!   are counted as aged out. Windows are evaluated at query time against any
//!   `now`, so `report` can use "the latest event" as `now` without reading
//!   its input twice.
//! - Distinct values are stored as 64-bit xxh3 hashes (stable across
//!   versions, so snapshots stay valid) with a bitmask of the days each was
//!   seen on: one pass answers every window, exactly. Past
//!   `EXACT_DISTINCT_CAP` hashes in a scope the map turns into one set per
//!   day, exact up to 10,000 values, then a HyperLogLog
//!   (`cardinality-estimator`, 2^14 registers, ~0.8% standard error).
//! - Latencies are kept exactly (for nearest-rank quantiles) up to
//!   `EXACT_LATENCY_CAP` per bucket, then in an HDR histogram with two
//!   significant digits (< 1% relative error).
//! - Every structure merges, so shards and "cloud = all" combine exactly.
//!
//! Nothing here reads a clock: every call takes the time it needs.

mod admission;
mod batch;
mod connections;
mod counts;
mod distinct;
mod engine;
mod latency;
mod ring;
mod scope;

pub use admission::{retention_start, Admission};
pub use batch::{Digest, Recorded};
pub use connections::{
    connection_totals, in_sample, ConnCounts, ConnectionSample, MAX_SAMPLE_SHIFT,
};
pub use counts::Counts;
pub use distinct::{distinct_count, DaySet, Distinct, DAY_EXACT_CAP, EXACT_DISTINCT_CAP};
pub use engine::{ConnectorState, Engine, SeriesBudget};
pub use latency::{quantiles, Latency, EXACT_LATENCY_CAP};
pub use ring::{Bucket, Ring};
pub use scope::{window_buckets, ScopeState};

use xxhash_rust::xxh3::xxh3_64;

use crate::engine::classify::Fault;
use crate::engine::params::{Settings, Window};

/// Distinct counts keep one bit per day in a `u64`.
pub const MAX_RETENTION_DAYS: u32 = 60;
/// Longest hour window (one week): the hour ring's size.
pub const MAX_HOUR_WINDOW: u32 = 168;

/// Maps keyed by xxh3 hashes use the key itself as the hash: the keys are
/// already uniformly distributed 64-bit values, so SipHash would only cost.
pub type IdHash = std::hash::BuildHasherDefault<nohash_hasher::NoHashHasher<u64>>;

/// Connector ids are looked up once per event: xxh3 is several times
/// faster than the default SipHash, and ids are not attacker-chosen keys
/// that could flood one bucket (`max_series` caps them anyway).
pub type ConnectorHash = std::hash::BuildHasherDefault<OneShotXxh3>;

/// A hasher for one string key: `xxh3_64` of its bytes in one call.
///
/// The streaming `Xxh3Default` hasher buffers its input and runs the full
/// streaming digest on `finish`; for a 12-byte connector id that was most
/// of the engine's per-event lookup (issue 8 profile). `str` hashes as its
/// bytes then a `0xff` terminator: the bytes take the one-shot hash, the
/// terminator is folded in without a second pass. The map lives in memory
/// only, so the hash need not match any earlier version.
#[derive(Debug, Default, Clone, Copy)]
pub struct OneShotXxh3(u64);

impl std::hash::Hasher for OneShotXxh3 {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u8(&mut self, b: u8) {
        self.0 ^= u64::from(b);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Parameters the state needs, derived from the config.
#[derive(Debug, Clone)]
pub struct Params {
    pub retention_days: u32,
    pub hour_ring: u32,
    pub unattributed: Fault,
    pub max_connections_per_scope: usize,
}

impl Params {
    pub fn from_config(c: &dyn Settings) -> Params {
        let hour_ring = c
            .windows()
            .iter()
            .filter_map(|w| match w {
                Window::Hours(n) => Some(*n),
                _ => None,
            })
            .max()
            .unwrap_or(1);
        let k = c.criteria();
        Params {
            retention_days: k.retention_days,
            hour_ring,
            unattributed: k.unattributed_failure_origin,
            max_connections_per_scope: c.max_connections_per_scope(),
        }
    }
}

/// The tag of an unused bucket, and the `max_day` of an empty structure.
pub(crate) const EMPTY: i32 = i32::MIN;

/// The shard of a connector id among `n` shards.
pub fn shard_of(connector: &str, n: usize) -> usize {
    shard_of_hash(xxh3_64(connector.as_bytes()), n)
}

/// The shard among `n` of a connector id whose `xxh3_64` is `hash`.
pub fn shard_of_hash(hash: u64, n: usize) -> usize {
    (hash % n as u64) as usize
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Shared fixtures for the state modules' unit tests.
    use super::*;
    use crate::engine::classify::Cloud;
    use crate::engine::event::Event;
    use crate::engine::timeutil::parse_rfc3339;
    use std::borrow::Cow;

    pub fn params() -> Params {
        Params {
            retention_days: 35,
            hour_ring: 1,
            unattributed: Fault::Connector,
            max_connections_per_scope: 1000,
        }
    }

    pub fn ev(ts: &str, user: Option<&str>) -> Event<'static> {
        Event {
            ts: parse_rfc3339(ts).unwrap(),
            connector: Cow::Borrowed("c"),
            cloud: Cloud::Public,
            status: Some(200),
            fault: None,
            latency_ms: None,
            user: user.map(|u| Cow::Owned(u.to_string())),
            connection: None,
        }
    }
}
