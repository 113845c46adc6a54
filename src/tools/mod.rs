//! Tools around the daemon, not on its production path: the load
//! generator, the all-in-one demo and the mock Kafka cluster.

pub mod demo;
pub mod loadgen;
pub mod mock;
