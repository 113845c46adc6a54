//! Dead letters: a rejected event's source bytes, copied to
//! `kafka.dead_letter_topic` with its reason and source position as
//! headers. They are flushed before a checkpoint lets offsets move.

use std::time::{Duration, Instant};

use prometheus::IntCounterVec;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::config::Config;
use crate::engine::event::Reject;

use super::repeats::{Quiet, Repeats};
use super::{client_config, send_retrying, KafkaSetupError};

/// Counts the copies the broker did not take: without it a dead-letter
/// topic that does not exist, or a copy over the broker's size limit, lost
/// copies with at most a log line.
struct Delivery {
    /// Client errors, logged through the throttle.
    quiet: Quiet,
    dropped: IntCounterVec,
    /// A missing topic fails every copy: logged once per interval.
    warned: Repeats,
}

impl ClientContext for Delivery {
    fn error(&self, error: KafkaError, reason: &str) {
        self.quiet.log(&error, reason);
    }
}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = r {
            self.dropped.with_label_values(&["undelivered"]).inc();
            if let Some(repeats) = self.warned.admit(&e.to_string(), Instant::now()) {
                tracing::warn!(error = %e, repeats, "dead-letter copy not delivered; dropped");
            }
        }
    }
}

/// The dead-letter producer, when a topic is configured.
pub struct DeadLetters {
    producer: ThreadedProducer<Delivery>,
    topic: String,
    dropped: IntCounterVec,
    warned: Repeats,
}

impl DeadLetters {
    pub fn new(
        cfg: &Config,
        dropped: &IntCounterVec,
    ) -> Result<Option<DeadLetters>, KafkaSetupError> {
        match &cfg.kafka.dead_letter_topic {
            Some(t) if !t.is_empty() => Ok(Some(DeadLetters {
                producer: client_config(cfg, false)
                    .create_with_context(Delivery {
                        quiet: Quiet::new("dead-letter producer"),
                        dropped: dropped.clone(),
                        warned: Repeats::default(),
                    })
                    .map_err(KafkaSetupError::Client)?,
                topic: t.clone(),
                dropped: dropped.clone(),
                warned: Repeats::default(),
            })),
            _ => Ok(None),
        }
    }

    /// Waits until every copy sent is acknowledged.
    pub fn flush(&self) -> Result<(), String> {
        self.producer
            .flush(Duration::from_secs(5))
            .map_err(|e| format!("dead-letter flush: {e}"))
    }

    /// Sends one copy; `raw` is `None` when the source bytes cannot be had
    /// (librdkafka never hands out an undecodable record's payload).
    ///
    /// A full producer queue is retried for up to 500 ms. The caller is a
    /// worker ingesting its own tasks and holds no lock (before tasks, this
    /// wait held a store shard's lock and stalled every other writer and
    /// reader of that shard).
    pub fn send(
        &self,
        (source_topic, source_partition, source_offset): (&str, i32, i64),
        raw: Option<&[u8]>,
        idx: Option<usize>,
        reason: Reject,
    ) {
        let offset = source_offset.to_string();
        let partition = source_partition.to_string();
        let index = idx.map(|i| i.to_string());
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "reason",
                value: Some(reason.as_str()),
            })
            .insert(Header {
                key: "source_topic",
                value: Some(source_topic),
            })
            .insert(Header {
                key: "source_partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "source_offset",
                value: Some(offset.as_str()),
            });
        if let Some(i) = &index {
            headers = headers.insert(Header {
                key: "index",
                value: Some(i.as_str()),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic).headers(headers);
        if let Some(raw) = raw {
            record = record.payload(raw);
        }
        // 50 tries 10 ms apart: at most ~500 ms, then the copy is dropped.
        let why = match send_retrying(&self.producer, record, Some(50), Duration::from_millis(10)) {
            Ok(()) => return,
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => "queue_full",
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {
                "too_large"
            }
            Err(_) => "refused",
        };
        self.dropped.with_label_values(&[why]).inc();
        if let Some(repeats) = self.warned.admit(why, Instant::now()) {
            tracing::warn!(
                why,
                bytes = raw.map_or(0, <[u8]>::len),
                repeats,
                "dead-letter copy dropped"
            );
        }
    }
}
