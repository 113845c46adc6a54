//! The re-key stage (SPEC §12), for input not keyed by connector: every
//! valid event read from the input is written, as its own record keyed by
//! its connector id, to `<group_id>-by-connector`, whose partitions are
//! then aggregated. Each record carries its source position as headers, so
//! the aggregating task drops a record it has counted already.
//!
//! Exactly once without Kafka transactions: the producer is idempotent
//! (no duplicates or reordering from its own retries), and a read task's
//! checkpoint, which holds its input offset and the rejections it decided,
//! is written only after every record it produced is acknowledged. A read
//! task that resumes from its checkpoint produces again what came after it;
//! the aggregating tasks recognise those records by source position.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use super::{client_config, send_retrying, KafkaSetupError};
use crate::config::Config;

pub const H_TOPIC: &str = "cga-src-topic";
pub const H_PARTITION: &str = "cga-src-partition";
pub const H_OFFSET: &str = "cga-src-offset";
pub const H_INDEX: &str = "cga-src-index";

/// The re-keyed topic of a group.
pub fn topic(cfg: &Config) -> String {
    format!("{}-by-connector", cfg.kafka.group_id)
}

/// Where a re-keyed record came from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The event's position among the events of its source record.
    pub index: u32,
}

/// The source position in a re-keyed record's headers, `None` when they
/// are missing or malformed (a record not written by this stage).
pub fn source_of(m: &OwnedMessage) -> Option<Source<'_>> {
    use rdkafka::message::Message;
    let h = m.headers()?;
    let (mut t, mut p, mut o, mut i) = (None, None, None, None);
    for k in 0..h.count() {
        let x = h.get(k);
        let v = x.value.and_then(|v| std::str::from_utf8(v).ok());
        match x.key {
            H_TOPIC => t = v,
            H_PARTITION => p = v.and_then(|v| v.parse().ok()),
            H_OFFSET => o = v.and_then(|v| v.parse().ok()),
            H_INDEX => i = v.and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    Some(Source {
        topic: t?,
        partition: p?,
        offset: o?,
        index: i?,
    })
}

/// The producer of the re-keyed topic.
pub struct Rekeyer {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

impl Rekeyer {
    pub fn new(cfg: &Config) -> Result<Rekeyer, KafkaSetupError> {
        let mut c = client_config(cfg, false);
        c.set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576");
        Ok(Rekeyer {
            producer: c.create().map_err(KafkaSetupError::Client)?,
            topic: topic(cfg),
        })
    }

    /// Sends one valid event's source bytes keyed by its connector. A full
    /// queue is waited out (the producer's thread drains it): dropping the
    /// record would lose the event.
    pub fn send(&self, connector: &str, raw: &[u8], src: Source<'_>) {
        let (p, o, i) = (
            src.partition.to_string(),
            src.offset.to_string(),
            src.index.to_string(),
        );
        let headers = OwnedHeaders::new_with_capacity(4)
            .insert(Header {
                key: H_TOPIC,
                value: Some(src.topic),
            })
            .insert(Header {
                key: H_PARTITION,
                value: Some(p.as_str()),
            })
            .insert(Header {
                key: H_OFFSET,
                value: Some(o.as_str()),
            })
            .insert(Header {
                key: H_INDEX,
                value: Some(i.as_str()),
            });
        let record = BaseRecord::to(&self.topic)
            .key(connector)
            .payload(raw)
            .headers(headers);
        // Retried forever: dropping the record would lose the event.
        if let Err(e) = send_retrying(&self.producer, record, None, Duration::from_millis(1)) {
            // The read task's next checkpoint fails on the flush, so its
            // offset does not move past this event.
            tracing::error!(error = %e, "re-key send failed");
        }
    }

    /// Waits until every record sent is acknowledged; a read task's
    /// checkpoint is written only after this succeeds.
    pub fn flush(&self) -> Result<(), String> {
        self.producer
            .flush(Duration::from_secs(30))
            .map_err(|e| format!("re-key flush: {e}"))?;
        if self.producer.in_flight_count() > 0 {
            return Err("re-key flush: records still in flight".into());
        }
        Ok(())
    }
}

/// Makes sure the re-keyed topic exists, created with the input's partition
/// count when absent. Run by the consumer thread before it subscribes: while
/// no broker answers it waits (the daemon serves `/healthz` meanwhile, as it
/// does through any broker outage); once a broker answers and the topic
/// cannot be created, the error names the topic and the partition count to
/// create by hand. Returns `Ok` early when `stop` is set.
pub fn ensure_topic(cfg: &Config, stop: &AtomicBool) -> Result<(), KafkaSetupError> {
    let name = topic(cfg);
    let mut c = client_config(cfg, false);
    // A metadata request must not create the topic with the broker's
    // default partition count before we create it with the input's.
    c.set("allow.auto.create.topics", "false");
    let admin: AdminClient<DefaultClientContext> = c.create().map_err(KafkaSetupError::Client)?;
    let timeout = Duration::from_secs(10);
    let partitions_of = |t: &str| -> Result<Option<usize>, KafkaError> {
        // Short: SIGTERM is noticed between two requests, and shutdown
        // waits only 9 s for this thread.
        let md = admin
            .inner()
            .fetch_metadata(Some(t), Duration::from_secs(2))?;
        Ok(md
            .topics()
            .iter()
            .find(|x| x.name() == t && x.error().is_none() && !x.partitions().is_empty())
            .map(|x| x.partitions().len()))
    };
    let mut waited = None::<Instant>;
    let mut wait = |why: String| {
        // Logged once a minute, not at every retry.
        if waited.is_none_or(|w| w.elapsed() >= Duration::from_secs(60)) {
            tracing::warn!(topic = %name, "re-key stage waits: {why}");
            waited = Some(Instant::now());
        }
        for _ in 0..10 {
            if stop.load(Ordering::Acquire) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let input = loop {
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        match partitions_of(&name) {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(e) => {
                wait(format!("no broker answers ({e})"));
                continue;
            }
        }
        let mut input = 0;
        let mut failed = None;
        for t in &cfg.kafka.topics {
            match partitions_of(t) {
                Ok(n) => input = input.max(n.unwrap_or(0)),
                Err(e) => failed = Some(e),
            }
        }
        match (failed, input) {
            (Some(e), _) => wait(format!("no broker answers ({e})")),
            // The re-keyed topic takes the input's partition count: wait
            // for the input to exist rather than guess.
            (None, 0) => wait(format!(
                "the input topics {:?} do not exist yet",
                cfg.kafka.topics
            )),
            (None, n) => break n,
        }
    };
    let new = NewTopic::new(&name, input as i32, TopicReplication::Fixed(-1));
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    // A broker without CreateTopics (librdkafka's mock cluster has none)
    // may never answer: the request timeout bounds the wait.
    let r = futures_executor_block_on(admin.create_topics([&new], &opts));
    let failed = match r {
        Ok(rs) => rs.into_iter().find_map(|r| match r {
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) | Ok(_) => None,
            Err((_, code)) => Some(code.to_string()),
        }),
        Err(e) => Some(e.to_string()),
    };
    match failed {
        None => {
            tracing::info!(topic = %name, partitions = input, "created the re-keyed topic");
            Ok(())
        }
        Some(why) => Err(KafkaSetupError::RekeyTopic {
            topic: name,
            partitions: input,
            why,
        }),
    }
}

/// Waits for an admin request on this (non-async) thread: librdkafka's
/// background thread completes it, so a current-thread runtime suffices.
fn futures_executor_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
        .block_on(f)
}
