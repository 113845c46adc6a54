//! The request counters of SPEC §5 (requests, throttled, successes,
//! failures by fault, requests by status class), added per event and merged.

use serde::{Deserialize, Serialize};

use crate::engine::classify::{Class, Fault, Outcome};

/// The counters of SPEC §5 over some span of events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub requests: u64,
    pub throttled: u64,
    pub success: u64,
    pub connector_failures: u64,
    pub backend_failures: u64,
    pub client_failures: u64,
    /// Requests by [`Class::index`].
    pub class: [u64; 6],
}

impl Counts {
    pub fn record(&mut self, class: Class, outcome: Outcome) {
        self.requests += 1;
        self.class[class.index()] += 1;
        match outcome {
            Outcome::Throttled => self.throttled += 1,
            Outcome::Success => self.success += 1,
            Outcome::Failure(Fault::Connector) => self.connector_failures += 1,
            Outcome::Failure(Fault::Backend) => self.backend_failures += 1,
            Outcome::Failure(Fault::Client) => self.client_failures += 1,
        }
    }
    pub fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.throttled += o.throttled;
        self.success += o.success;
        self.connector_failures += o.connector_failures;
        self.backend_failures += o.backend_failures;
        self.client_failures += o.client_failures;
        for (a, b) in self.class.iter_mut().zip(o.class) {
            *a += b;
        }
    }
    /// Every event that is not throttled.
    pub fn eligible(&self) -> u64 {
        self.requests - self.throttled
    }
    pub fn failures(&self) -> u64 {
        self.connector_failures + self.backend_failures + self.client_failures
    }
}
