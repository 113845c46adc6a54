//! A message librdkafka cannot hand over (a record too large to
//! decompress within `receive.message.max.bytes`, or corrupt) makes it
//! retry the same offset forever, stalling its partition. Such a message
//! is found with a probe, counted as `undecodable_message` in its task,
//! dead-lettered (headers only) and skipped.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

use super::client_config;
use super::consumer::Consumer;
use crate::engine::event::Reject;
use crate::task::TaskId;

/// Errors of librdkafka for a message it cannot hand over: it retries the
/// same offset forever (`fetch.error.backoff.ms`), so the partition stalls.
pub(super) fn is_undecodable(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageConsumption(_)) && undecodable_code(e)
}

pub(super) fn undecodable_code(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BadCompression
                | RDKafkaErrorCode::NotImplemented
                | RDKafkaErrorCode::BadMessage
        )
    )
}

/// The probe's callbacks: the error it exists to meet is no news.
struct ProbeCtx;

impl ClientContext for ProbeCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "probe");
    }
}

impl ConsumerContext for ProbeCtx {}

/// What a probe found at one offset.
enum Probe {
    Undecodable,
    Readable,
    Unknown,
}

impl Consumer {
    /// After an undecodable-message error (which names no partition in
    /// rdkafka's API): the partitions whose position has not moved since
    /// the previous such error, and that have messages left, are suspects;
    /// a probe consumer reads each suspect's next offset alone, and where it
    /// meets the same error that message is counted `undecodable_message`,
    /// dead-lettered (headers only: librdkafka never hands out the
    /// compressed bytes) and skipped. A partition is never skipped on
    /// suspicion alone.
    pub(super) fn skip_undecodable(&mut self) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let now: BTreeMap<(String, i32), i64> = positions
            .elements()
            .iter()
            .map(|e| {
                let o = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => -1,
                };
                ((e.topic().to_string(), e.partition()), o)
            })
            .collect();
        let suspects: Vec<(String, i32, i64)> = now
            .iter()
            .filter(|(k, o)| self.positions_at_error.get(*k) == Some(*o))
            .map(|((t, p), o)| (t.clone(), *p, *o))
            .collect();
        self.positions_at_error = now;
        for (topic, partition, pos) in suspects {
            let Ok((low, high)) =
                self.consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(5))
            else {
                continue;
            };
            let start = if pos >= 0 {
                pos
            } else {
                // Nothing read yet here: where the consumer started.
                let ours = self
                    .inner
                    .owned()
                    .get(&TaskId::new(&topic, partition))
                    .and_then(|t| t.next_offset());
                ours.or_else(|| self.committed(&topic, partition))
                    .unwrap_or(low)
                    .max(low)
            };
            if start >= high {
                continue;
            }
            if let Probe::Undecodable = self.probe(&topic, partition, start) {
                self.skip(&topic, partition, start);
            }
        }
    }

    fn committed(&self, topic: &str, partition: i32) -> Option<i64> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let c = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(5))
            .ok()?;
        match c.find_partition(topic, partition)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    /// Reads `offset` of one partition with a consumer of its own, outside
    /// the group, so an error can only be about that offset.
    fn probe(&self, topic: &str, partition: i32, offset: i64) -> Probe {
        let mut cfg = client_config(&self.inner.h.cfg, true);
        cfg.remove("group.instance.id");
        cfg.remove("statistics.interval.ms");
        cfg.set(
            "group.id",
            format!("{}.undecodable-probe", self.inner.h.cfg.kafka.group_id),
        )
        .set("enable.auto.commit", "false");
        let Ok(c) = cfg.create_with_context::<_, BaseConsumer<ProbeCtx>>(ProbeCtx) else {
            return Probe::Unknown;
        };
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .is_err()
            || c.assign(&tpl).is_err()
        {
            return Probe::Unknown;
        }
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && !self.inner.h.stop.load(Ordering::Acquire) {
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(_)) => return Probe::Readable,
                Some(Err(e)) if is_undecodable(&e) => return Probe::Undecodable,
                _ => {}
            }
        }
        Probe::Unknown
    }

    fn skip(&self, topic: &str, partition: i32, offset: i64) {
        let inner = &*self.inner;
        if let Err(e) = self.consumer.seek(
            topic,
            partition,
            Offset::Offset(offset + 1),
            Duration::from_secs(5),
        ) {
            tracing::warn!(topic, partition, offset, error = %e, "cannot seek past an undecodable message; retrying at its next error");
            return;
        }
        // Counted in its task, with the offset past it: the next
        // checkpoint holds both, so the skip is counted once.
        if let Some(t) = inner.owned().get_mut(&TaskId::new(topic, partition)) {
            t.reject(Reject::UndecodableMessage, 1);
            t.advance(offset + 1, 1);
        }
        if let Some(d) = &inner.dlq {
            d.send(
                (topic, partition, offset),
                None,
                None,
                Reject::UndecodableMessage,
            );
        }
        tracing::warn!(
            topic,
            partition,
            offset,
            "skipped a message that cannot be decompressed within receive.message.max.bytes \
             (or is corrupt): counted as undecodable_message"
        );
    }
}
