//! The consumer: one thread polls the group; every assigned partition is a
//! task (SPEC §12), restored from its checkpoint on assignment and
//! checkpointed on revocation, every `checkpoint_interval_seconds` and on
//! shutdown.
//!
//! Exactly once, the way it works: a task's checkpoint holds its state and
//! the offset that state stops at, written as one object. On assignment the
//! partition resumes at that offset (set in the assignment itself, no seek
//! after assign): events after the checkpoint are read again and counted
//! once, events before it never again. Kafka's committed offsets are stored
//! only after the checkpoint holding them is durable, for the tools that
//! watch the group and for a partition without a checkpoint.
//!
//! The batch pipeline: the consumer thread owns every task (the `owned`
//! map is touched only on this thread: in the poll loop and in librdkafka's
//! callbacks, which run inside `poll`). A batch is decoded in parallel
//! chunks, then each worker of the pool ingests the events of the tasks it
//! is lent for that batch: one writer per task, no lock between workers.
//! Readers see the views published through [`TaskSet`], never a task.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use super::dead_letter::DeadLetters;
use super::rekey::{self, Rekeyer, Source};
use super::undecodable::{is_undecodable, undecodable_code};
use super::{client_config, KafkaHandle, KafkaSetupError};
use crate::checkpoint;
use crate::engine::event::{self, Event, Reject};
use crate::engine::state::Admission;
use crate::task::{Stage, Task, TaskId, PUBLISH_EVERY};
use crate::telemetry::wall_clock;

/// Most messages handled in one batch.
const MAX_BATCH: usize = 4096;
/// Payload bytes per decoding worker: a batch holding less is decoded on
/// the consumer thread alone (a hand-off costs more than it saves). Bytes,
/// not messages: one message may carry one event or a hundred.
const PARALLEL_MIN_BYTES: usize = 32 * 1024;
/// A batch smaller than this waits up to `BATCH_WAIT` for more messages.
const MIN_BATCH: usize = 512;
const BATCH_WAIT: Duration = Duration::from_millis(5);

/// The tasks this member owns, by partition.
type Owned = BTreeMap<TaskId, Task>;

pub(super) struct Inner {
    pub(super) h: KafkaHandle,
    /// Touched only on the consumer thread (see the module docs): the mutex
    /// is never contended, it only makes the callbacks' access sound.
    owned: Mutex<Owned>,
    pub(super) dlq: Option<DeadLetters>,
    /// The re-key stage's producer, when the input is not keyed by connector.
    rekey: Option<Rekeyer>,
    /// `<group_id>-by-connector`.
    rekey_topic: String,
    /// Bumped on every revocation: a batch polled across one is filtered.
    generation: AtomicU64,
    workers: usize,
    /// Decode and ingest threads, kept for the daemon's life.
    pool: rayon::ThreadPool,
    /// Set when a task cannot be restored: the poll loop stops on it.
    fatal: Mutex<Option<String>>,
}

impl Inner {
    /// What the task of a partition of `topic` does.
    fn stage(&self, topic: &str) -> Stage {
        if self.rekey.is_none() {
            Stage::Aggregate
        } else if topic == self.rekey_topic {
            Stage::Rekeyed
        } else {
            Stage::Read
        }
    }

    pub(super) fn owned(&self) -> MutexGuard<'_, Owned> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The librdkafka callbacks: rebalances, statistics, errors.
pub struct Ctx {
    inner: Arc<Inner>,
}

impl ClientContext for Ctx {
    fn stats(&self, s: Statistics) {
        let m = &self.inner.h.metrics;
        let up = s.brokers.values().any(|b| b.nodeid >= 0 && b.state == "UP");
        m.kafka_connected.set(up as i64);
        let owned = self.inner.owned();
        for (topic, t) in &s.topics {
            for (p, ps) in &t.partitions {
                if *p < 0 || ps.hi_offset < 0 {
                    continue;
                }
                let Some(task) = owned.get(&TaskId::new(topic, *p)) else {
                    continue;
                };
                let lag = match task.next_offset() {
                    Some(next) => (ps.hi_offset - next).max(0),
                    None if ps.consumer_lag >= 0 => ps.consumer_lag,
                    None => continue,
                };
                m.consumer_lag
                    .with_label_values(&[topic.as_str(), &p.to_string()])
                    .set(lag);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.inner.h.metrics.kafka_connected.set(0);
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
                self.assign(c, tpl);
                let r = if cooperative {
                    c.incremental_assign(tpl)
                } else {
                    c.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.inner.generation.fetch_add(1, Ordering::AcqRel);
                self.revoke(c, tpl, c.assignment_lost());
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

impl Ctx {
    /// Restores each newly assigned task from its latest checkpoint and sets
    /// its partition's start offset to the checkpoint's.
    fn assign(&self, c: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let inner = &*self.inner;
        let h = &inner.h;
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        h.tasks.restoring(parts.len());
        let started = Instant::now();
        let mut views = Vec::new();
        let mut restored = 0;
        for (topic, partition) in &parts {
            let id = TaskId::new(topic, *partition);
            let stage = inner.stage(topic);
            let task = match checkpoint::load(&*h.store, topic, *partition) {
                Ok(Some(ckpt)) => {
                    let t = Task::restore(ckpt, stage, h.tasks.budget());
                    if let Some(o) = t.next_offset() {
                        // Resume exactly after the checkpoint's events.
                        let _ = tpl.set_partition_offset(topic, *partition, Offset::Offset(o));
                    }
                    restored += 1;
                    t
                }
                Ok(None) => Task::new(id.clone(), stage),
                Err(e) => {
                    // Never count a partition again from empty over counted
                    // events: stop the daemon, saying what is wrong.
                    tracing::error!(task = %id, error = %e, "cannot restore a task");
                    *inner.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                    h.stop.store(true, Ordering::Release);
                    Task::new(id.clone(), stage)
                }
            };
            let mut owned = inner.owned();
            let mut task = task;
            views.push(task.view());
            owned.insert(id, task);
        }
        h.tasks.publish(views);
        h.tasks.set_total(group_tasks(c, &subscribed(inner)));
        let n = inner.owned().len();
        set_owned_gauges(inner);
        h.tasks.restored(parts.len());
        tracing::info!(
            assigned = parts.len(),
            restored,
            owned = n,
            ms = started.elapsed().as_millis() as u64,
            "partitions assigned: tasks restored from their checkpoints"
        );
    }

    /// Checkpoints each revoked task, then lets it go; a lost assignment
    /// (the member was fenced out) drops its tasks without writing them:
    /// another member may already own them.
    fn revoke(&self, c: &BaseConsumer<Self>, tpl: &TopicPartitionList, lost: bool) {
        let inner = &*self.inner;
        let h = &inner.h;
        let ids: Vec<TaskId> = tpl
            .elements()
            .iter()
            .map(|e| TaskId::new(e.topic(), e.partition()))
            .collect();
        let mut leaving: Vec<Task> = {
            let mut owned = inner.owned();
            ids.iter().filter_map(|id| owned.remove(id)).collect()
        };
        if lost {
            tracing::warn!(
                partitions = ids.len(),
                "assignment lost: dropping its tasks without a checkpoint"
            );
        } else {
            tracing::info!(
                partitions = ids.len(),
                "partitions revoked: checkpointing their tasks"
            );
            let mut refs: Vec<&mut Task> = leaving.iter_mut().collect();
            match checkpoint_tasks(inner, &mut refs, true) {
                Ok(()) => {
                    store_offsets(c, &leaving);
                    // Commit now: the partitions' next owner may look.
                    if let Err(e) = c.commit_consumer_state(CommitMode::Sync) {
                        tracing::debug!(error = %e, "commit on revocation");
                    }
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "checkpoint on revocation failed: the next owner resumes at the previous checkpoint"
                ),
            }
        }
        h.tasks.remove(&ids);
        for t in leaving {
            let _ = h
                .metrics
                .consumer_lag
                .remove_label_values(&[t.id.topic.as_ref(), &t.id.partition.to_string()]);
            t.release(h.tasks.budget());
        }
        set_owned_gauges(inner);
    }
}

/// `connector_ga_tasks_owned` counts the tasks that aggregate (SPEC §12: a
/// task is an aggregated partition); the re-key stage's read tasks have
/// their own gauge.
fn set_owned_gauges(inner: &Inner) {
    let owned = inner.owned();
    let read = owned.values().filter(|t| t.stage == Stage::Read).count();
    let m = &inner.h.metrics;
    m.tasks_owned.set((owned.len() - read) as i64);
    m.read_tasks_owned.set(read as i64);
}

/// The topics of the group: the input, and the re-keyed topic when there
/// is a re-key stage.
fn subscribed(inner: &Inner) -> Vec<String> {
    let mut t = inner.h.cfg.kafka.topics.clone();
    if inner.rekey.is_some() {
        t.push(inner.rekey_topic.clone());
    }
    t
}

/// Subscribes to the group's topics.
fn subscribe(c: &BaseConsumer<Ctx>, inner: &Inner) -> Result<(), KafkaSetupError> {
    let names = subscribed(inner);
    let topics: Vec<&str> = names.iter().map(String::as_str).collect();
    c.subscribe(&topics).map_err(KafkaSetupError::Subscribe)
}

/// The group's tasks: partitions of its topics.
fn group_tasks(c: &BaseConsumer<Ctx>, topics: &[String]) -> usize {
    topics
        .iter()
        .filter_map(|t| {
            c.fetch_metadata(Some(t), Duration::from_secs(5))
                .ok()
                .map(|m| {
                    m.topics()
                        .iter()
                        .map(|t| t.partitions().len())
                        .sum::<usize>()
                })
        })
        .sum()
}

/// Writes the checkpoints of `tasks` that changed since their last one
/// (every one of them when `all`), in parallel on the pool, after the dead
/// letters of their events are durable. A failure is counted
/// (`connector_ga_checkpoint_failures_total`) and the task stays unsaved.
fn checkpoint_tasks(inner: &Inner, tasks: &mut [&mut Task], all: bool) -> Result<(), String> {
    let h = &inner.h;
    let r = (|| {
        if let Some(d) = &inner.dlq {
            d.flush()?;
        }
        // A read task's offset may move only past records the re-keyed
        // topic holds.
        if let Some(r) = &inner.rekey {
            r.flush()?;
        }
        let now = wall_clock();
        let mut todo: Vec<&mut &mut Task> =
            tasks.iter_mut().filter(|t| all || t.unsaved()).collect();
        let ckpts: Vec<_> = todo.iter_mut().map(|t| t.checkpoint(now)).collect();
        let store = &*h.store;
        let results: Vec<Result<u64, String>> = inner.pool.install(|| {
            use rayon::prelude::*;
            ckpts
                .par_iter()
                .map(|c| checkpoint::save(store, c).map_err(|e| e.to_string()))
                .collect()
        });
        let mut first_err = None;
        for (t, r) in todo.iter_mut().zip(results) {
            match r {
                Ok(_) => t.saved(),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    })();
    match &r {
        Ok(()) => h.metrics.last_checkpoint.set(wall_clock() as f64 / 1e6),
        Err(_) => h.metrics.checkpoint_failures.inc(),
    }
    r
}

/// Stores the saved tasks' offsets for Kafka's commit.
fn store_offsets<'a>(c: &BaseConsumer<Ctx>, tasks: impl IntoIterator<Item = &'a Task>) {
    let mut tpl = TopicPartitionList::new();
    for t in tasks {
        if let (false, Some(o)) = (t.unsaved(), t.next_offset()) {
            let _ = tpl.add_partition_offset(&t.id.topic, t.id.partition, Offset::Offset(o));
        }
    }
    if tpl.count() > 0 {
        if let Err(e) = c.store_offsets(&tpl) {
            tracing::debug!(error = %e, "store offsets");
        }
    }
}

pub struct Consumer {
    pub(super) consumer: BaseConsumer<Ctx>,
    pub(super) inner: Arc<Inner>,
    /// Each assigned partition's position at the last undecodable-message
    /// error (see `undecodable`).
    pub(super) positions_at_error: BTreeMap<(String, i32), i64>,
}

/// Why the poll loop ended on its own.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("{0}")]
    Restore(String),
    #[error("{0}")]
    Other(String),
}

impl Consumer {
    pub fn new(h: KafkaHandle) -> Result<Consumer, KafkaSetupError> {
        let dlq = DeadLetters::new(&h.cfg)?;
        let workers = match h.cfg.kafka.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let rekey = if h.cfg.kafka.input_keyed_by_connector {
            None
        } else {
            Some(Rekeyer::new(&h.cfg)?)
        };
        let inner = Arc::new(Inner {
            owned: Mutex::new(Owned::new()),
            dlq,
            rekey,
            rekey_topic: rekey::topic(&h.cfg),
            generation: AtomicU64::new(0),
            workers,
            pool: rayon::ThreadPoolBuilder::new()
                .num_threads(workers)
                .thread_name(|i| format!("ingest-{i}"))
                .build()
                .map_err(|e| KafkaSetupError::Pool(e.to_string()))?,
            fatal: Mutex::new(None),
            h: h.clone(),
        });
        let consumer: BaseConsumer<Ctx> = client_config(&h.cfg, true)
            .create_with_context(Ctx {
                inner: Arc::clone(&inner),
            })
            .map_err(KafkaSetupError::Client)?;
        if inner.rekey.is_none() {
            subscribe(&consumer, &inner)?;
        }
        Ok(Consumer {
            consumer,
            inner,
            positions_at_error: BTreeMap::new(),
        })
    }

    /// The poll loop; returns after the stop flag is set and every owned
    /// task is checkpointed and its offset committed.
    pub fn run(mut self) -> Result<(), ConsumerError> {
        let h = self.inner.h.clone();
        if self.inner.rekey.is_some() {
            // The re-keyed topic is made sure of here, not before `run`
            // returns to the caller: without a broker the daemon must still
            // start and serve `/healthz`.
            rekey::ensure_topic(&h.cfg, &h.stop)?;
            if h.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            subscribe(&self.consumer, &self.inner)?;
        }
        let interval = Duration::from_secs(h.cfg.state.checkpoint_interval_seconds);
        let mut last_checkpoint = Instant::now();
        let mut last_publish = Instant::now();
        while !h.stop.load(Ordering::Acquire) {
            let generation = self.inner.generation.load(Ordering::Acquire);
            let (mut batch, undecodable) = self.poll_batch();
            if self.inner.generation.load(Ordering::Acquire) != generation && !batch.is_empty() {
                // A revocation happened mid-batch: keep only what we still own.
                let owned = self.inner.owned();
                batch.retain(|m| owned.contains_key(&TaskId::new(m.topic(), m.partition())));
            }
            if !batch.is_empty() {
                let mut owned = self.inner.owned();
                process(&self.inner, &batch, &mut owned);
            }
            drop(batch);
            if undecodable {
                self.skip_undecodable();
            }
            if last_publish.elapsed() >= PUBLISH_EVERY {
                self.publish();
                last_publish = Instant::now();
            }
            if last_checkpoint.elapsed() >= interval {
                self.periodic_checkpoint();
                last_checkpoint = Instant::now();
            }
        }
        if let Some(e) = self
            .inner
            .fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(ConsumerError::Restore(e));
        }
        // Shutdown: every owned task is written, then its offset committed.
        {
            let mut owned = self.inner.owned();
            let mut refs: Vec<&mut Task> = owned.values_mut().collect();
            checkpoint_tasks(&self.inner, &mut refs, false).map_err(ConsumerError::Other)?;
            store_offsets(&self.consumer, owned.values());
        }
        self.publish();
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored yet (KafkaError NoOffset) is not a failure.
            tracing::debug!(error = %e, "final commit");
        }
        tracing::info!("consumer drained");
        Ok(())
    }

    /// Polls up to [`MAX_BATCH`] messages; says whether an undecodable
    /// message stopped the batch.
    fn poll_batch(&self) -> (Vec<OwnedMessage>, bool) {
        let mut batch: Vec<OwnedMessage> = Vec::new();
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
                    return (batch, true);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "poll error");
                    break;
                }
                // A small batch waits a few ms for more: per-batch costs
                // (thread hand-offs) then stay small.
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
            if self.inner.h.stop.load(Ordering::Acquire) {
                break;
            }
        }
        (batch, false)
    }

    /// Publishes fresh views of the tasks written since the last ones.
    fn publish(&self) {
        let mut owned = self.inner.owned();
        let views: Vec<_> = owned
            .values_mut()
            .filter(|t| t.unpublished())
            .map(|t| t.view())
            .collect();
        self.inner.h.tasks.publish(views);
    }

    /// Every `checkpoint_interval_seconds`: prunes scopes past retention,
    /// writes the tasks that changed, then stores their offsets for Kafka.
    fn periodic_checkpoint(&self) {
        let h = &self.inner.h;
        let mut owned = self.inner.owned();
        let now = wall_clock();
        for t in owned.values_mut() {
            t.prune(now, h.tasks.params(), h.tasks.budget());
        }
        let mut refs: Vec<&mut Task> = owned.values_mut().collect();
        match checkpoint_tasks(&self.inner, &mut refs, false) {
            Ok(()) => {
                store_offsets(&self.consumer, owned.values());
                if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Async) {
                    tracing::debug!(error = %e, "commit after checkpoint");
                }
            }
            Err(e) => tracing::error!(
                error = %e,
                failures = h.metrics.checkpoint_failures.get(),
                "checkpoint failed; offsets not advanced; retrying every checkpoint_interval_seconds"
            ),
        }
    }
}

/// One chunk of a batch, decoded: valid events with their task, the
/// messages read (task, offset, events), and rejections by task.
struct Decoded<'a> {
    events: Vec<Event<'a>>,
    /// Index of each event's task in the batch's task list.
    task_of: Vec<u32>,
    /// (message index in the batch, source bytes, index inside an array)
    sources: Vec<(usize, &'a [u8], Option<usize>)>,
    /// Each event's position among its record's events (read stage), or
    /// its source position (re-keyed records).
    origin: Vec<Origin<'a>>,
    /// (task, offset, events read) per message.
    read: Vec<(u32, i64, u64)>,
    rejected: Vec<(u32, Reject)>,
}

/// Decodes and ingests a batch in two parallel phases on the worker pool:
/// decode (messages split evenly), then ingest, each worker writing only
/// the tasks it is lent (`task index % workers`).
fn process(inner: &Inner, batch: &[OwnedMessage], owned: &mut Owned) {
    let cfg = &inner.h.cfg;
    let now = wall_clock();
    let adm = Admission::daemon_at(
        now,
        cfg.criteria.retention_days,
        cfg.criteria.max_future_skew_seconds,
    );
    // The batch's tasks, each lent to one worker.
    let mut index: HashMap<(&str, i32), u32> = HashMap::new();
    for m in batch {
        let n = index.len() as u32;
        index.entry((m.topic(), m.partition())).or_insert(n);
    }
    let mut slots: Vec<Option<&mut Task>> = (0..index.len()).map(|_| None).collect();
    for (id, t) in owned.iter_mut() {
        if let Some(i) = index.get(&(&*id.topic, id.partition)) {
            slots[*i as usize] = Some(t);
        }
    }
    let task_index: Vec<Option<u32>> = batch
        .iter()
        .map(|m| {
            let i = index[&(m.topic(), m.partition())];
            slots[i as usize].is_some().then_some(i)
        })
        .collect();

    let chunks = split_by_bytes(batch, inner.workers);
    let task_index = &task_index;
    let decoded: Vec<Decoded<'_>> = if chunks.len() == 1 {
        vec![decode_chunk(inner, chunks[0].1, chunks[0].0, task_index)]
    } else {
        let mut out: Vec<Option<Decoded<'_>>> = (0..chunks.len()).map(|_| None).collect();
        inner.pool.scope(|s| {
            for (slot, &(first, msgs)) in out.iter_mut().zip(&chunks) {
                s.spawn(move |_| *slot = Some(decode_chunk(inner, msgs, first, task_index)));
            }
        });
        out.into_iter()
            .map(|d| d.expect("every chunk decoded"))
            .collect()
    };

    let owners = inner.workers.min(slots.len()).max(1);
    let mut lent: Vec<Vec<Option<&mut Task>>> = (0..owners).map(|_| Vec::new()).collect();
    for (i, t) in slots.into_iter().enumerate() {
        lent[i % owners].push(t);
    }
    let params = inner.h.tasks.params();
    let budget = inner.h.tasks.budget();
    let ingest = |w: usize, mine: &mut Vec<Option<&mut Task>>| {
        for d in &decoded {
            for &(i, reason) in &d.rejected {
                if let Some(t) = lent_task(mine, i, w, owners) {
                    t.reject(reason, 1);
                }
            }
            for (k, ev) in d.events.iter().enumerate() {
                let Some(t) = lent_task(mine, d.task_of[k], w, owners) else {
                    continue;
                };
                let (mi, raw, idx) = d.sources[k];
                let m = &batch[mi];
                let mut at = (m.topic(), m.partition(), m.offset());
                let r = match (t.stage, d.origin[k]) {
                    (Stage::Read, Origin::Index(i)) => {
                        // Rejections up to `from_future` are decided here;
                        // the rest leaves for its connector's partition.
                        let r = adm.admit(ev.ts);
                        match r {
                            Ok(()) => inner.rekey.as_ref().expect("read stage").send(
                                &ev.connector,
                                raw,
                                Source {
                                    topic: m.topic(),
                                    partition: m.partition(),
                                    offset: m.offset(),
                                    index: i,
                                },
                            ),
                            Err(reason) => t.reject(reason, 1),
                        }
                        r
                    }
                    (Stage::Rekeyed, Origin::Source(s)) => {
                        if t.replayed((s.topic, s.partition), s.offset, s.index) {
                            continue;
                        }
                        at = (s.topic, s.partition, s.offset);
                        t.ingest(ev, &adm, params, budget)
                    }
                    _ => t.ingest(ev, &adm, params, budget),
                };
                if let (Err(reason), Some(dlq)) = (r, &inner.dlq) {
                    dlq.send(at, Some(raw), idx, reason);
                }
            }
            for &(i, offset, n) in &d.read {
                if let Some(t) = lent_task(mine, i, w, owners) {
                    t.advance(offset + 1, n);
                }
            }
        }
    };
    if owners == 1 {
        ingest(0, &mut lent[0]);
    } else {
        inner.pool.scope(|s| {
            for (w, mine) in lent.iter_mut().enumerate() {
                let ingest = &ingest;
                s.spawn(move |_| ingest(w, mine));
            }
        });
    }
}

/// The batch in up to `workers` runs of consecutive messages holding about
/// the same payload bytes, each with the index of its first message; one
/// run when the batch is under [`PARALLEL_MIN_BYTES`] per worker.
fn split_by_bytes(batch: &[OwnedMessage], workers: usize) -> Vec<(usize, &[OwnedMessage])> {
    let size = |m: &OwnedMessage| m.payload().map_or(0, <[u8]>::len);
    let total: usize = batch.iter().map(size).sum();
    let workers = workers.min(total / PARALLEL_MIN_BYTES).max(1);
    let share = total.div_ceil(workers);
    let mut chunks = Vec::with_capacity(workers);
    let (mut start, mut acc) = (0, 0);
    for (i, m) in batch.iter().enumerate() {
        acc += size(m);
        if acc >= share && chunks.len() + 1 < workers {
            chunks.push((start, &batch[start..=i]));
            start = i + 1;
            acc = 0;
        }
    }
    if start < batch.len() {
        chunks.push((start, &batch[start..]));
    }
    chunks
}

/// Task `i` of the batch when worker `w` of `owners` is lent it.
fn lent_task<'x>(
    mine: &'x mut [Option<&mut Task>],
    i: u32,
    w: usize,
    owners: usize,
) -> Option<&'x mut Task> {
    let i = i as usize;
    if i % owners != w {
        return None;
    }
    mine[i / owners].as_deref_mut()
}

/// Where an event sits in the stream, for the re-key stage.
#[derive(Clone, Copy)]
enum Origin<'a> {
    /// The k-th event of its input record.
    Index(u32),
    /// A re-keyed record: its source position.
    Source(Source<'a>),
}

fn decode_chunk<'a>(
    inner: &Inner,
    msgs: &'a [OwnedMessage],
    first: usize,
    task_index: &[Option<u32>],
) -> Decoded<'a> {
    // Sized for the events, not the messages: a message often carries many
    // (NDJSON), and growing these by doubling copied every `Event` several
    // times (memcpy and fresh pages were 18% of decoding in
    // `benches/daemon.rs`). Events are rarely under ~100 bytes.
    let bytes: usize = msgs
        .iter()
        .map(|m| m.payload().map_or(0, <[u8]>::len))
        .sum();
    let events = msgs.len().max(bytes / 100);
    let mut d = Decoded {
        events: Vec::with_capacity(events),
        task_of: Vec::with_capacity(events),
        sources: Vec::with_capacity(events),
        origin: Vec::with_capacity(events),
        read: Vec::with_capacity(msgs.len()),
        rejected: Vec::new(),
    };
    for (k, m) in msgs.iter().enumerate() {
        let Some(ti) = task_index[first + k] else {
            continue;
        };
        let rekeyed = inner.stage(m.topic()) == Stage::Rekeyed;
        let src = if rekeyed { rekey::source_of(m) } else { None };
        if rekeyed && src.is_none() {
            // Not written by the re-key stage: nothing says where it came
            // from, so it cannot be counted exactly once.
            tracing::warn!(
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                "record without source headers in the re-keyed topic: skipped"
            );
            d.read.push((ti, m.offset(), 0));
            continue;
        }
        let payload = m.payload().unwrap_or(&[]);
        let mut seq = 0u32;
        let n = event::decode_payload_raw(payload, |r, raw, idx| {
            let origin = match src {
                Some(s) => Origin::Source(s),
                None => Origin::Index(seq),
            };
            seq += 1;
            match r {
                Ok(ev) => {
                    d.events.push(ev);
                    d.task_of.push(ti);
                    d.sources.push((first + k, raw, idx));
                    d.origin.push(origin);
                }
                Err(reason) => {
                    d.rejected.push((ti, reason));
                    if let Some(dlq) = &inner.dlq {
                        dlq.send(
                            (m.topic(), m.partition(), m.offset()),
                            Some(raw),
                            idx,
                            reason,
                        );
                    }
                }
            }
        });
        // Events are counted where they are first read.
        d.read.push((ti, m.offset(), if rekeyed { 0 } else { n }));
    }
    d
}
