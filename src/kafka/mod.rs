//! Kafka in: the consumer group, batched decoding on every core, offsets
//! stored only once their events are in a snapshot, dead letters, lag.
//!
//! Exactly-once, the way it works: the consumer thread alone changes state.
//! It polls a batch, decodes it (on `workers` threads), ingests it, and
//! notes each partition's next offset in memory. Every
//! `checkpoint_interval_seconds`, on partition revocation and on shutdown it
//! writes a snapshot holding the state *and* those offsets, and only then
//! lets Kafka commit offsets: those of the previous snapshot after a
//! periodic one (so a fall-back to `snapshot.prev` loses nothing), its own
//! after a revocation or shutdown (see [`Checkpoint`]). On start and on every
//! assignment, partitions found in the snapshot resume at the snapshot's
//! offset, set in the assignment itself (no seek after assign): events after
//! the snapshot are read again and counted once, events before it never
//! again. Partitions not in the snapshot start at the committed offset.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use crate::app::{wall_clock, Shared};
use crate::checkpoint::{self, SnapshotRef};
use crate::engine::event::{self, Event, Reject, RejectCounts};
use crate::engine::state::Admission;

/// Most messages handled in one batch.
const MAX_BATCH: usize = 4096;
/// Below this many messages a batch is decoded on the consumer thread alone.
const PARALLEL_MIN: usize = 32;
/// A batch smaller than this waits up to `BATCH_WAIT` for more messages.
const MIN_BATCH: usize = 512;
const BATCH_WAIT: Duration = Duration::from_millis(5);

pub type Offsets = BTreeMap<String, BTreeMap<i32, i64>>;

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("config key `kafka.properties`: {0}")]
    Client(KafkaError),
    #[error("config key `kafka.topics`: cannot subscribe: {0}")]
    Subscribe(KafkaError),
    #[error("config key `kafka.workers`: cannot start the worker pool: {0}")]
    Pool(String),
}

/// The librdkafka settings of the consumer (and of the dead-letter
/// producer, minus the consumer-only keys).
pub fn client_config(shared: &Shared, consumer: bool) -> ClientConfig {
    let k = &shared.cfg.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    c.set("statistics.interval.ms", "5000");
    // librdkafka pauses a partition's fetching for `fetch.queue.backoff.ms`
    // (default 1 s) once its prefetch queue is full: a consumer that does
    // real work per message then idles most of the time. 10 ms keeps the
    // queue topped up.
    c.set("fetch.queue.backoff.ms", "10");
    if consumer {
        c.set("group.id", &k.group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
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

struct Inner {
    shared: Arc<Shared>,
    /// topic → partition → next offset whose events are not in state.
    offsets: Mutex<Offsets>,
    dlq: Option<(ThreadedProducer<DefaultProducerContext>, String)>,
    /// Bumped on every revocation: a batch polled across one is filtered.
    generation: AtomicU64,
    /// The offsets of the last snapshot written (or restored).
    last_saved: Mutex<Option<Offsets>>,
    workers: usize,
    /// Decode and ingest threads, kept for the daemon's life: spawning
    /// threads per batch would cost more than small batches themselves.
    pool: rayon::ThreadPool,
}

/// The librdkafka callbacks: rebalances, statistics, errors.
pub struct Ctx {
    inner: Arc<Inner>,
}

impl ClientContext for Ctx {
    fn stats(&self, s: Statistics) {
        let m = &self.inner.shared.metrics;
        let up = s.brokers.values().any(|b| b.nodeid >= 0 && b.state == "UP");
        m.kafka_connected.set(up as i64);
        let offsets = self.inner.offsets.lock().unwrap_or_else(|e| e.into_inner());
        for (topic, t) in &s.topics {
            for (p, ps) in &t.partitions {
                if *p < 0 || ps.hi_offset < 0 {
                    continue;
                }
                if let Some(next) = offsets.get(topic).and_then(|o| o.get(p)) {
                    m.consumer_lag
                        .with_label_values(&[topic.as_str(), &p.to_string()])
                        .set((ps.hi_offset - next).max(0));
                } else if ps.consumer_lag >= 0 {
                    m.consumer_lag
                        .with_label_values(&[topic.as_str(), &p.to_string()])
                        .set(ps.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.inner.shared.metrics.kafka_connected.set(0);
        }
        if undecodable_code(&error) {
            // Repeats every `fetch.error.backoff.ms` until the poll loop
            // skips the message, which logs it once.
            tracing::debug!(%error, reason, "undecodable message");
            return;
        }
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(c.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                {
                    let offsets = self.inner.offsets.lock().unwrap_or_else(|e| e.into_inner());
                    let parts: Vec<(String, i32)> = tpl
                        .elements()
                        .iter()
                        .map(|e| (e.topic().to_string(), e.partition()))
                        .collect();
                    for (t, p) in parts {
                        if let Some(o) = offsets.get(&t).and_then(|m| m.get(&p)) {
                            // Resume exactly after the snapshot's events.
                            let _ = tpl.set_partition_offset(&t, p, Offset::Offset(*o));
                        }
                    }
                }
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                let r = if cooperative {
                    c.incremental_assign(tpl)
                } else {
                    c.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "assign failed");
                }
                self.inner.shared.assigned.store(true, Ordering::Release);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(
                    partitions = tpl.count(),
                    "partitions revoked: writing a snapshot"
                );
                self.inner.generation.fetch_add(1, Ordering::AcqRel);
                match checkpoint_now(&self.inner, c, Checkpoint::Handoff) {
                    // Commit now, not at the next auto-commit: the partitions'
                    // next owner starts from the committed offsets.
                    Ok(()) => {
                        if let Err(e) = c.commit_consumer_state(CommitMode::Sync) {
                            // Some brokers (librdkafka's mock cluster) refuse
                            // commits once a rebalance is under way: the next
                            // owner then resumes from the last periodic commit.
                            tracing::warn!(error = %e, "commit on revocation refused; next owner resumes at the last committed snapshot");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "snapshot on revocation failed"),
                }
                for e in tpl.elements() {
                    let _ = self
                        .inner
                        .shared
                        .metrics
                        .consumer_lag
                        .remove_label_values(&[e.topic(), &e.partition().to_string()]);
                }
                let r = if cooperative {
                    c.incremental_unassign(tpl)
                } else {
                    c.unassign()
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                let _ = c.unassign();
            }
        }
    }
}

/// When a snapshot is written, and so which offsets Kafka may commit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Checkpoint {
    /// Every `checkpoint_interval_seconds`: the offsets of the *previous*
    /// snapshot are committed, so the committed offsets never run ahead of
    /// `snapshot.prev` (the fallback when `snapshot.bin` is damaged).
    Periodic,
    /// Revocation and shutdown: the snapshot is written twice (it becomes
    /// `snapshot.prev` too) and its own offsets are committed, so the next
    /// owner of a partition resumes exactly after it.
    Handoff,
}

/// Writes a snapshot (state + offsets), then stores offsets (see
/// [`Checkpoint`]) of the partitions still assigned for Kafka's commit. A
/// failure is counted (`connector_ga_checkpoint_failures_total`).
fn checkpoint_now(inner: &Inner, c: &BaseConsumer<Ctx>, kind: Checkpoint) -> Result<(), String> {
    let r = write_checkpoint(inner, c, kind);
    if r.is_err() {
        inner.shared.metrics.checkpoint_failures.inc();
    }
    r
}

fn write_checkpoint(inner: &Inner, c: &BaseConsumer<Ctx>, kind: Checkpoint) -> Result<(), String> {
    let shared = &inner.shared;
    if let Some((p, _)) = &inner.dlq {
        // Dead letters are durable before the offsets of their events move.
        p.flush(Duration::from_secs(5))
            .map_err(|e| format!("dead-letter flush: {e}"))?;
    }
    let offsets = inner
        .offsets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let events_total: BTreeMap<String, u64> = shared
        .cfg
        .kafka
        .topics
        .iter()
        .map(|t| {
            (
                t.clone(),
                shared
                    .metrics
                    .events_total
                    .with_label_values(&[t.as_str()])
                    .get(),
            )
        })
        .collect();
    let rejected = shared.metrics.rejected();
    let now = wall_clock();
    let started = Instant::now();
    let bytes = {
        let guards: Vec<_> = (0..shared.store.shard_count())
            .map(|i| shared.store.lock(i))
            .collect();
        let snap = SnapshotRef {
            created_at: now,
            offsets: &offsets,
            engines: guards.iter().map(|g| &**g).collect(),
            events_total: &events_total,
            rejected: &rejected,
        };
        checkpoint::encode(&snap).map_err(|e| e.to_string())?
    };
    let dir = &shared.cfg.state.dir;
    checkpoint::save_bytes(dir, &bytes).map_err(|e| e.to_string())?;
    if kind == Checkpoint::Handoff {
        checkpoint::save_bytes(dir, &bytes).map_err(|e| e.to_string())?;
    }
    shared.metrics.last_checkpoint.set(now as f64 / 1e6);
    tracing::debug!(
        bytes = bytes.len(),
        ms = started.elapsed().as_millis() as u64,
        "snapshot written"
    );
    let previous = inner
        .last_saved
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .replace(offsets.clone());
    let commit = match kind {
        Checkpoint::Handoff => Some(offsets),
        Checkpoint::Periodic => previous,
    };
    let Some(commit) = commit else { return Ok(()) };
    let assigned = c.assignment().map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for e in assigned.elements() {
        if let Some(o) = commit.get(e.topic()).and_then(|m| m.get(&e.partition())) {
            let _ = tpl.add_partition_offset(e.topic(), e.partition(), Offset::Offset(*o));
        }
    }
    if tpl.count() > 0 {
        c.store_offsets(&tpl)
            .map_err(|e| format!("store offsets: {e}"))?;
    }
    Ok(())
}

pub struct Consumer {
    consumer: BaseConsumer<Ctx>,
    inner: Arc<Inner>,
    /// Each assigned partition's position at the last undecodable-message
    /// error (see [`Consumer::skip_undecodable`]).
    positions_at_error: BTreeMap<(String, i32), i64>,
}

/// Why the poll loop ended on its own.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(
        "config key `state.dir`: cannot write the first snapshot ({0}); \
         the daemon needs a writable state directory"
    )]
    FirstSnapshot(String),
    #[error("{0}")]
    Other(String),
}

/// Errors of librdkafka for a message it cannot hand over: it retries the
/// same offset forever (`fetch.error.backoff.ms`), so the partition stalls.
fn is_undecodable(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageConsumption(_)) && undecodable_code(e)
}

fn undecodable_code(e: &KafkaError) -> bool {
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
    pub fn new(shared: Arc<Shared>, offsets: Offsets) -> Result<Consumer, KafkaSetupError> {
        let dlq = match &shared.cfg.kafka.dead_letter_topic {
            Some(t) if !t.is_empty() => {
                let p: ThreadedProducer<DefaultProducerContext> = client_config(&shared, false)
                    .create()
                    .map_err(KafkaSetupError::Client)?;
                Some((p, t.clone()))
            }
            _ => None,
        };
        let workers = match shared.cfg.kafka.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let inner = Arc::new(Inner {
            shared: Arc::clone(&shared),
            last_saved: Mutex::new((!offsets.is_empty()).then(|| offsets.clone())),
            offsets: Mutex::new(offsets),
            dlq,
            generation: AtomicU64::new(0),
            workers,
            pool: rayon::ThreadPoolBuilder::new()
                .num_threads(workers)
                .thread_name(|i| format!("ingest-{i}"))
                .build()
                .map_err(|e| KafkaSetupError::Pool(e.to_string()))?,
        });
        let consumer: BaseConsumer<Ctx> = client_config(&shared, true)
            .create_with_context(Ctx {
                inner: Arc::clone(&inner),
            })
            .map_err(KafkaSetupError::Client)?;
        let topics: Vec<&str> = shared.cfg.kafka.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(KafkaSetupError::Subscribe)?;
        Ok(Consumer {
            consumer,
            inner,
            positions_at_error: BTreeMap::new(),
        })
    }

    /// The poll loop; returns after `shared.stop` is set and the final
    /// snapshot is written and committed.
    pub fn run(mut self) -> Result<(), ConsumerError> {
        let shared = Arc::clone(&self.inner.shared);
        let interval = Duration::from_secs(shared.cfg.state.checkpoint_interval_seconds);
        // A snapshot at once: the checkpoint metric is real from the start,
        // and a fallen-back-to `snapshot.prev` becomes the current one.
        // It fails fast: nothing is consumed yet, and a daemon that can
        // never snapshot would consume without ever committing.
        if let Err(e) = checkpoint_now(&self.inner, &self.consumer, Checkpoint::Periodic) {
            return Err(ConsumerError::FirstSnapshot(e));
        }
        let mut last = Instant::now();
        while !shared.stop.load(Ordering::Acquire) {
            let generation = self.inner.generation.load(Ordering::Acquire);
            let mut batch: Vec<OwnedMessage> = Vec::new();
            let mut undecodable = false;
            let mut timeout = Duration::from_millis(100);
            let started = Instant::now();
            while batch.len() < MAX_BATCH {
                match self.consumer.poll(timeout) {
                    // Copied out at once: a message held borrowed keeps
                    // librdkafka's fetch buffer, which slows its fetcher.
                    Some(Ok(m)) => batch.push(m.detach()),
                    Some(Err(e)) if is_undecodable(&e) => {
                        // Repeats every `fetch.error.backoff.ms` until skipped.
                        tracing::debug!(error = %e, "undecodable message");
                        undecodable = true;
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "poll error");
                        break;
                    }
                    // A small batch waits a few ms for more: per-batch
                    // costs (thread hand-offs, locks) then stay small.
                    None if !batch.is_empty()
                        && batch.len() < MIN_BATCH
                        && started.elapsed() < BATCH_WAIT => {}
                    None => break,
                }
                timeout = if batch.is_empty() {
                    Duration::from_millis(100)
                } else {
                    Duration::from_millis(1)
                };
            }
            if self.inner.generation.load(Ordering::Acquire) != generation && !batch.is_empty() {
                // A revocation happened mid-batch: keep only what we still own.
                if let Ok(a) = self.consumer.assignment() {
                    let owned = a.to_topic_map();
                    batch.retain(|m| owned.contains_key(&(m.topic().to_string(), m.partition())));
                }
            }
            if !batch.is_empty() {
                self.process(&batch);
                let mut offsets = self.inner.offsets.lock().unwrap_or_else(|e| e.into_inner());
                for m in &batch {
                    let e = offsets
                        .entry(m.topic().to_string())
                        .or_default()
                        .entry(m.partition())
                        .or_insert(0);
                    *e = (*e).max(m.offset() + 1);
                }
            }
            drop(batch);
            if undecodable {
                self.skip_undecodable();
            }
            if last.elapsed() >= interval {
                shared.store.prune(wall_clock());
                match checkpoint_now(&self.inner, &self.consumer, Checkpoint::Periodic) {
                    // Commit what the snapshot holds now rather than at the
                    // next auto-commit tick: a partition's next owner (after
                    // a rebalance) starts from the committed offset.
                    Ok(()) => {
                        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Async) {
                            tracing::debug!(error = %e, "commit after snapshot");
                        }
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        failures = shared.metrics.checkpoint_failures.get(),
                        "snapshot failed; offsets not advanced; retrying every checkpoint_interval_seconds"
                    ),
                }
                last = Instant::now();
            }
        }
        checkpoint_now(&self.inner, &self.consumer, Checkpoint::Handoff)
            .map_err(ConsumerError::Other)?;
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored yet (KafkaError NoOffset) is not a failure.
            tracing::debug!(error = %e, "final commit");
        }
        tracing::info!("consumer drained");
        Ok(())
    }

    /// After an undecodable-message error (which names no partition in
    /// rdkafka's API): the partitions whose position has not moved since
    /// the previous such error, and that have messages left, are suspects;
    /// a probe consumer reads each suspect's next offset alone, and where it
    /// meets the same error that message is counted `undecodable_message`,
    /// dead-lettered (headers only: librdkafka never hands out the
    /// compressed bytes) and skipped. A partition is never skipped on
    /// suspicion alone.
    fn skip_undecodable(&mut self) {
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
                    .offsets
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&topic)
                    .and_then(|m| m.get(&partition))
                    .copied();
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
        let mut cfg = client_config(&self.inner.shared, true);
        cfg.remove("group.instance.id");
        cfg.remove("statistics.interval.ms");
        cfg.set(
            "group.id",
            format!("{}.undecodable-probe", self.inner.shared.cfg.kafka.group_id),
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
        while Instant::now() < until && !self.inner.shared.stop.load(Ordering::Acquire) {
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
        {
            let mut offsets = inner.offsets.lock().unwrap_or_else(|e| e.into_inner());
            let e = offsets
                .entry(topic.to_string())
                .or_default()
                .entry(partition)
                .or_insert(0);
            *e = (*e).max(offset + 1);
        }
        let mut rejected = RejectCounts::default();
        rejected.add(Reject::UndecodableMessage, 1);
        count_rejected(inner, &rejected);
        inner
            .shared
            .metrics
            .events_total
            .with_label_values(&[topic])
            .inc();
        dead_letter_at(
            inner,
            (topic, partition, offset),
            None,
            None,
            Reject::UndecodableMessage,
        );
        tracing::warn!(
            topic,
            partition,
            offset,
            "skipped a message that cannot be decompressed within receive.message.max.bytes \
             (or is corrupt): counted as undecodable_message"
        );
    }

    /// Decodes and ingests a batch in two parallel phases on the worker
    /// pool: decode (messages split evenly), then ingest (each worker owns
    /// the store shards `shard % workers == w`, so workers never wait on
    /// each other's locks however few connectors the traffic has).
    fn process(&self, batch: &[OwnedMessage]) {
        let inner = &*self.inner;
        let cfg = &inner.shared.cfg;
        let now = wall_clock();
        let adm = Admission::daemon_at(
            now,
            cfg.criteria.retention_days,
            cfg.criteria.max_future_skew_seconds,
        );
        let workers = inner.workers.min(batch.len().div_ceil(PARALLEL_MIN)).max(1);
        let shards = inner.shared.store.shard_count();
        let per = batch.len().div_ceil(workers);
        let chunks: Vec<&[OwnedMessage]> = batch.chunks(per).collect();
        let decoded: Vec<Decoded<'_>> = if chunks.len() == 1 {
            vec![decode_chunk(inner, chunks[0], 0, shards)]
        } else {
            let mut out: Vec<Option<Decoded<'_>>> = (0..chunks.len()).map(|_| None).collect();
            inner.pool.scope(|s| {
                for (k, (slot, chunk)) in out.iter_mut().zip(&chunks).enumerate() {
                    s.spawn(move |_| *slot = Some(decode_chunk(inner, chunk, k * per, shards)));
                }
            });
            out.into_iter()
                .map(|d| d.expect("every chunk decoded"))
                .collect()
        };
        let ingest = |w: usize, owners: usize| {
            let mut rejected = RejectCounts::default();
            let mut current: Option<(
                usize,
                std::sync::MutexGuard<'_, crate::engine::state::Engine>,
            )> = None;
            for d in &decoded {
                for (i, ev) in d.events.iter().enumerate() {
                    let shard = d.shards[i] as usize;
                    if shard % owners != w {
                        continue;
                    }
                    if current.as_ref().map(|c| c.0) != Some(shard) {
                        drop(current.take());
                        current = Some((shard, inner.shared.store.lock(shard)));
                    }
                    let engine = &mut current.as_mut().expect("just set").1;
                    if let Err(reason) = engine.ingest(
                        ev,
                        &adm,
                        &inner.shared.store.params,
                        &inner.shared.store.budget,
                    ) {
                        rejected.add(reason, 1);
                        let (mi, raw, idx) = d.sources[i];
                        dead_letter(inner, &batch[mi], raw, idx, reason);
                    }
                }
            }
            count_rejected(inner, &rejected);
        };
        if workers == 1 {
            ingest(0, 1);
        } else {
            inner.pool.scope(|s| {
                for w in 0..workers {
                    let ingest = &ingest;
                    s.spawn(move |_| ingest(w, workers));
                }
            });
        }
        let mut per_topic: BTreeMap<&str, u64> = BTreeMap::new();
        for d in &decoded {
            for (t, n) in &d.read {
                *per_topic.entry(t).or_default() += n;
            }
            count_rejected(inner, &d.rejected);
        }
        for (t, n) in per_topic {
            inner
                .shared
                .metrics
                .events_total
                .with_label_values(&[t])
                .inc_by(n);
        }
    }
}

/// One chunk of a batch, decoded: valid events (with their store shard and
/// source, for dead letters), rejections, and events read per topic.
struct Decoded<'a> {
    events: Vec<Event<'a>>,
    shards: Vec<u16>,
    /// (message index in the batch, source bytes, index inside an array)
    sources: Vec<(usize, &'a [u8], Option<usize>)>,
    rejected: RejectCounts,
    read: BTreeMap<&'a str, u64>,
}

fn decode_chunk<'a>(
    inner: &Inner,
    msgs: &'a [OwnedMessage],
    first: usize,
    shards: usize,
) -> Decoded<'a> {
    let mut d = Decoded {
        events: Vec::with_capacity(msgs.len()),
        shards: Vec::with_capacity(msgs.len()),
        sources: Vec::with_capacity(msgs.len()),
        rejected: RejectCounts::default(),
        read: BTreeMap::new(),
    };
    for (k, m) in msgs.iter().enumerate() {
        let payload = m.payload().unwrap_or(&[]);
        let n = event::decode_payload_raw(payload, |r, raw, idx| match r {
            Ok(ev) => {
                d.shards
                    .push(crate::engine::state::shard_of(&ev.connector, shards) as u16);
                d.events.push(ev);
                d.sources.push((first + k, raw, idx));
            }
            Err(reason) => {
                d.rejected.add(reason, 1);
                dead_letter(inner, m, raw, idx, reason);
            }
        });
        *d.read.entry(m.topic()).or_default() += n;
    }
    d
}

fn count_rejected(inner: &Inner, rejected: &RejectCounts) {
    for r in Reject::ALL {
        let n = rejected.get(r);
        if n > 0 {
            inner
                .shared
                .metrics
                .rejected_total
                .with_label_values(&[r.as_str()])
                .inc_by(n);
        }
    }
}

/// Copies a rejected event's source bytes to the dead-letter topic, with
/// `reason`, the source topic/partition/offset and (inside an array) the
/// event's index as headers.
fn dead_letter(inner: &Inner, m: &OwnedMessage, raw: &[u8], idx: Option<usize>, reason: Reject) {
    dead_letter_at(
        inner,
        (m.topic(), m.partition(), m.offset()),
        Some(raw),
        idx,
        reason,
    );
}

/// As [`dead_letter`], for a source known only by its position; `raw` is
/// `None` when the source bytes cannot be had (the record has no payload).
fn dead_letter_at(
    inner: &Inner,
    (source_topic, source_partition, source_offset): (&str, i32, i64),
    raw: Option<&[u8]>,
    idx: Option<usize>,
    reason: Reject,
) {
    let Some((p, topic)) = &inner.dlq else { return };
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
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).headers(headers);
    if let Some(raw) = raw {
        record = record.payload(raw);
    }
    for _ in 0..50 {
        match p.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((e, _)) => {
                tracing::warn!(error = %e, "dead-letter send failed");
                return;
            }
        }
    }
    tracing::warn!("dead-letter queue full; copy dropped");
}
