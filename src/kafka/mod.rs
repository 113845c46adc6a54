//! Kafka in: the consumer group whose partitions are the daemon's tasks
//! (SPEC §12), dead letters, and the skip of messages librdkafka cannot
//! hand over.
//!
//! - [`consumer`]: the poll loop, the rebalance callbacks (restore on
//!   assignment, checkpoint on revocation) and the batch pipeline.
//! - [`rekey`]: the re-key stage, for input not keyed by connector.
//! - [`dead_letter`]: copies of rejected events with their reason.
//! - [`undecodable`]: a message that stalls its partition is found, counted
//!   and skipped.

pub mod consumer;
pub mod dead_letter;
pub mod rekey;
mod undecodable;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use crate::checkpoint::store::StateStore;
use crate::config::Config;
use crate::task::TaskSet;
use crate::telemetry::SelfMetrics;

pub use consumer::{Consumer, ConsumerError};

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("config key `kafka.properties`: {0}")]
    Client(KafkaError),
    #[error("config key `kafka.topics`: cannot subscribe: {0}")]
    Subscribe(KafkaError),
    #[error("config key `kafka.workers`: cannot start the worker pool: {0}")]
    Pool(String),
    #[error(
        "config key `kafka.input_keyed_by_connector`: the re-keyed topic `{topic}` does not exist \
         and cannot be created ({why}); create it with {partitions} partitions, or set \
         input_keyed_by_connector = true when producers key every record by its connector"
    )]
    RekeyTopic {
        topic: String,
        partitions: usize,
        why: String,
    },
}

/// What the Kafka side is handed: the config, the tasks' readers' handle
/// (it publishes there), the daemon's metrics, the state store, and the
/// stop flag.
#[derive(Clone)]
pub struct KafkaHandle {
    pub cfg: Arc<Config>,
    pub tasks: Arc<TaskSet>,
    pub metrics: Arc<SelfMetrics>,
    pub store: Arc<dyn StateStore>,
    pub stop: Arc<AtomicBool>,
}

/// The librdkafka settings of the consumer (and of the dead-letter
/// producer, minus the consumer-only keys).
pub fn client_config(cfg: &Config, consumer: bool) -> ClientConfig {
    let k = &cfg.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    if consumer {
        c.set("statistics.interval.ms", "5000");
        // librdkafka pauses a partition's fetching for `fetch.queue.backoff.ms`
        // (default 1 s) once its prefetch queue is full: a consumer that does
        // real work per message then idles most of the time. 10 ms keeps the
        // queue topped up.
        c.set("fetch.queue.backoff.ms", "10");
        c.set("group.id", &k.group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Incremental rebalancing (SPEC §12): a member joining or
            // leaving moves only the partitions that change owner; the
            // others keep counting without a checkpoint-and-restore.
            .set("partition.assignment.strategy", "cooperative-sticky");
        if let Some(id) = &k.group_instance_id {
            c.set("group.instance.id", id);
        }
    } else {
        c.set("linger.ms", "5").set("compression.type", "lz4");
    }
    for (key, v) in &k.properties {
        c.set(key, v);
    }
    c
}
