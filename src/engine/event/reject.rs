//! The rejection reasons of SPEC §2 ([`Reject`], in their order of
//! precedence) and their per-reason tally ([`RejectCounts`]).

use std::fmt;

/// Why an event was rejected, in SPEC §2's order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    MalformedJson,
    MissingField,
    InvalidTimestamp,
    InvalidConnector,
    UnknownCloud,
    InvalidStatus,
    InvalidFault,
    InvalidLatency,
    InvalidId,
    TooOld,
    FromFuture,
    SeriesLimit,
    /// A Kafka message the client cannot hand over at all (its compressed
    /// batch does not decompress within the client's limits): counted once
    /// per message, by the daemon only, never by the decoder.
    UndecodableMessage,
}

impl Reject {
    pub const ALL: [Reject; 13] = [
        Reject::MalformedJson,
        Reject::MissingField,
        Reject::InvalidTimestamp,
        Reject::InvalidConnector,
        Reject::UnknownCloud,
        Reject::InvalidStatus,
        Reject::InvalidFault,
        Reject::InvalidLatency,
        Reject::InvalidId,
        Reject::TooOld,
        Reject::FromFuture,
        Reject::SeriesLimit,
        Reject::UndecodableMessage,
    ];

    /// The `reason` label value and report JSON key.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::MalformedJson => "malformed_json",
            Reject::MissingField => "missing_field",
            Reject::InvalidTimestamp => "invalid_timestamp",
            Reject::InvalidConnector => "invalid_connector",
            Reject::UnknownCloud => "unknown_cloud",
            Reject::InvalidStatus => "invalid_status",
            Reject::InvalidFault => "invalid_fault",
            Reject::InvalidLatency => "invalid_latency",
            Reject::InvalidId => "invalid_id",
            Reject::TooOld => "too_old",
            Reject::FromFuture => "from_future",
            Reject::SeriesLimit => "series_limit",
            Reject::UndecodableMessage => "undecodable_message",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts of rejected events, indexed by [`Reject::index`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RejectCounts(pub [u64; 13]);

impl RejectCounts {
    pub fn add(&mut self, r: Reject, n: u64) {
        self.0[r.index()] += n;
    }
    pub fn get(&self, r: Reject) -> u64 {
        self.0[r.index()]
    }
    pub fn merge(&mut self, o: &RejectCounts) {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a += b;
        }
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}
