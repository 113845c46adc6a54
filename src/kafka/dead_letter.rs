//! Dead letters: a rejected event's source bytes, copied to
//! `kafka.dead_letter_topic` with its reason and source position as
//! headers. They are flushed before a checkpoint lets offsets move.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::config::Config;
use crate::engine::event::Reject;

use super::{client_config, send_retrying, KafkaSetupError};

/// The dead-letter producer, when a topic is configured.
pub struct DeadLetters {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

impl DeadLetters {
    pub fn new(cfg: &Config) -> Result<Option<DeadLetters>, KafkaSetupError> {
        match &cfg.kafka.dead_letter_topic {
            Some(t) if !t.is_empty() => Ok(Some(DeadLetters {
                producer: client_config(cfg, false)
                    .create()
                    .map_err(KafkaSetupError::Client)?,
                topic: t.clone(),
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
        match send_retrying(&self.producer, record, Some(50), Duration::from_millis(10)) {
            Ok(()) => {}
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                tracing::warn!("dead-letter queue full; copy dropped")
            }
            Err(e) => tracing::warn!(error = %e, "dead-letter send failed"),
        }
    }
}
