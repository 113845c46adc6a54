//! Kafka in: the consumer group whose partitions are the daemon's tasks
//! (SPEC §12), dead letters, and the skip of messages librdkafka cannot
//! hand over.
//!
//! - [`consumer`]: the poll loop and the batch pipeline (`batch`), over
//!   what the consumer thread owns (`member`); `rebalance`: the callbacks
//!   that restore a task on assignment and checkpoint it on revocation.
//! - [`rekey`]: the re-key stage, for input not keyed by connector.
//! - [`dead_letter`]: copies of rejected events with their reason.
//! - `undecodable`: a message that stalls its partition is found, counted
//!   and skipped.

mod batch;
pub mod consumer;
pub mod dead_letter;
mod member;
mod rebalance;
pub mod rekey;
mod repeats;
mod undecodable;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, ThreadedProducer};

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
    /// The pinned routing count of the re-keyed topic cannot hold
    /// (`rekey::topic`).
    #[error("state store {store}: {why}")]
    RekeyPin { store: String, why: String },
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

/// The librdkafka settings of the consumer (and of the producers: dead
/// letters, the re-key stage), `[kafka.properties]` last, each to the
/// clients it applies to.
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
    // `[kafka.properties]` go to every client but those that would only
    // warn about them: librdkafka logs a CONFWARN for each consumer-only
    // property a producer is given, on every start (and the reverse).
    let other_side = if consumer {
        PRODUCER_ONLY
    } else {
        CONSUMER_ONLY
    };
    for (key, v) in &k.properties {
        if !other_side.contains(&key.as_str()) {
            c.set(key, v);
        }
    }
    c
}

/// librdkafka's global and topic properties of scope `C` (consumer only),
/// from its `CONFIGURATION.md` (2.12), callbacks left out.
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
    "group.protocol",
    "group.remote.assignor",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "auto.offset.reset",
    "consume.callback.max.messages",
];

/// librdkafka's global and topic properties of scope `P` (producer only),
/// from the same table.
const PRODUCER_ONLY: &[&str] = &[
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "linger.ms",
    "message.send.max.retries",
    "retries",
    "queue.buffering.backpressure.threshold",
    "compression.codec",
    "compression.type",
    "compression.level",
    "batch.num.messages",
    "batch.size",
    "delivery.report.only.error",
    "sticky.partitioning.linger.ms",
    "request.required.acks",
    "acks",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queuing.strategy",
    "produce.offset.report",
    "partitioner",
];

/// Sends one record, waiting out a full producer queue (the producer's
/// thread drains it) with `pause` between tries: forever when `tries` is
/// `None`, else at most `tries` times, after which the record is dropped
/// and the `QueueFull` error returned. The policy is the caller's: the
/// re-key stage must not lose an event, a dead-letter copy may be dropped.
pub(crate) fn send_retrying<K, P, C>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, K, P>,
    tries: Option<u32>,
    pause: Duration,
) -> Result<(), KafkaError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
    C: rdkafka::producer::ProducerContext<DeliveryOpaque = ()> + 'static,
{
    let mut tried = 0u32;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e @ KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                tried += 1;
                if tries.is_some_and(|n| tried >= n) {
                    return Err(e);
                }
                record = r;
                std::thread::sleep(pause);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{DefaultProducerContext, Producer};

    /// Regression: the example config's `session.timeout.ms` reached the
    /// dead-letter producer, and librdkafka warned about it on every
    /// start. Each side gets the properties of its scope and the shared
    /// ones.
    #[test]
    fn properties_go_to_the_clients_they_apply_to() {
        let mut cfg = Config::default();
        for (k, v) in [
            ("session.timeout.ms", "45000"),
            ("linger.ms", "50"),
            ("sasl.password", "x"),
        ] {
            cfg.kafka.properties.insert(k.into(), v.into());
        }
        let consumer = client_config(&cfg, true);
        let producer = client_config(&cfg, false);
        assert_eq!(consumer.get("session.timeout.ms"), Some("45000"));
        assert_eq!(consumer.get("linger.ms"), None);
        assert_eq!(consumer.get("sasl.password"), Some("x"));
        assert_eq!(producer.get("session.timeout.ms"), None);
        assert_eq!(producer.get("linger.ms"), Some("50"));
        assert_eq!(producer.get("sasl.password"), Some("x"));
    }

    /// A producer whose queue holds one record.
    fn producer(brokers: &str) -> ThreadedProducer<DefaultProducerContext> {
        ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("queue.buffering.max.messages", "1")
            .set("linger.ms", "0")
            .create()
            .expect("producer")
    }

    #[test]
    fn a_bounded_send_gives_up_on_a_queue_that_stays_full() {
        // Nothing listens on port 1: the first record stays queued (the
        // default message timeout is 5 minutes), so the queue of one is
        // full for every later try.
        let p = producer("127.0.0.1:1");
        let rec = || BaseRecord::<[u8], [u8]>::to("t").payload(b"x".as_slice());
        send_retrying(&p, rec(), Some(3), Duration::from_millis(1)).expect("the first fits");
        match send_retrying(&p, rec(), Some(3), Duration::from_millis(1)) {
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {}
            other => panic!("expected QueueFull after 3 tries, got {other:?}"),
        }
        // Dropped, not queued: only the first record is in flight. The
        // count also holds librdkafka's events not yet served (connection
        // errors to port 1, served by the producer's polling thread), so
        // under load it can read higher for a moment: wait for it to fall
        // to 1. Had a refused record been queued, it never would.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while p.in_flight_count() != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} in flight after 20 s: a refused record was queued",
                p.in_flight_count()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn an_unbounded_send_waits_out_a_full_queue_and_loses_nothing() {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic("t", 1, 1).expect("topic");
        let brokers = mock.bootstrap_servers();
        let p = producer(&brokers);
        // 200 records through a queue of one: every send after the first
        // meets a full queue unless the previous record is already gone.
        for i in 0..200u32 {
            let payload = i.to_string();
            let rec = BaseRecord::<[u8], [u8]>::to("t").payload(payload.as_bytes());
            send_retrying(&p, rec, None, Duration::from_millis(1)).expect("never gives up");
        }
        p.flush(Duration::from_secs(30)).expect("flush");
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("consumer");
        let (low, high) = c
            .fetch_watermarks("t", 0, Duration::from_secs(10))
            .expect("watermarks");
        // 200 records sent, 200 on the partition (0..200).
        assert_eq!((low, high), (0, 200));
    }
}
