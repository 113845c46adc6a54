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
//! Readers see the views published through [`TaskSet`](crate::task::TaskSet), never a task. The
//! batch's two phases are in `batch`.

use std::collections::BTreeMap;
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
use super::rekey::{self, Rekeyer};
use super::undecodable::{is_undecodable, undecodable_code};
use super::{client_config, KafkaHandle, KafkaSetupError};
use crate::checkpoint;
use crate::task::{Stage, Task, TaskId, PUBLISH_EVERY};
use crate::telemetry::wall_clock;

/// Most messages handled in one batch.
const MAX_BATCH: usize = 4096;
/// A batch smaller than this waits up to `BATCH_WAIT` for more messages.
const MIN_BATCH: usize = 512;
const BATCH_WAIT: Duration = Duration::from_millis(5);

/// The tasks this member owns, by partition.
pub(super) type Owned = BTreeMap<TaskId, Task>;

pub(super) struct Inner {
    pub(super) h: KafkaHandle,
    /// Touched only on the consumer thread (see the module docs): the mutex
    /// is never contended, it only makes the callbacks' access sound.
    owned: Mutex<Owned>,
    pub(super) dlq: Option<DeadLetters>,
    /// The re-key stage's producer, when the input is not keyed by connector.
    pub(super) rekey: Option<Rekeyer>,
    /// `<group_id>-by-connector`.
    rekey_topic: String,
    /// Bumped on every revocation: a batch polled across one is filtered.
    generation: AtomicU64,
    pub(super) workers: usize,
    /// Decode and ingest threads, kept for the daemon's life.
    pub(super) pool: rayon::ThreadPool,
    /// Set when a task cannot be restored: the poll loop stops on it.
    fatal: Mutex<Option<String>>,
}

impl Inner {
    /// What the task of a partition of `topic` does.
    pub(super) fn stage(&self, topic: &str) -> Stage {
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
            // With its state: readers must see the restored scopes.
            views.push(task.view(true));
            owned.insert(id, task);
        }
        h.tasks.publish(views, None);
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
/// (every one of them when `all`; never one that has read nothing, see
/// [`Task::checkpointable`]), in parallel on the pool, after the dead
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
        let mut todo: Vec<&mut &mut Task> = tasks
            .iter_mut()
            .filter(|t| t.checkpointable() && (all || t.unsaved()))
            .collect();
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
            let Some(n) = rekey::ensure_topic(&h.cfg, &*h.store, &h.stop)? else {
                return Ok(());
            };
            if let Some(r) = &self.inner.rekey {
                r.set_partitions(n);
            }
            subscribe(&self.consumer, &self.inner)?;
        }
        let interval = Duration::from_secs(h.cfg.state.checkpoint_interval_seconds);
        let mut last_checkpoint = Instant::now();
        let mut last_publish = Instant::now();
        // Readers asking for fresh state wait for this loop only while it
        // runs (not while the re-keyed topic is made sure of above: there
        // is no task yet), however it ends.
        h.tasks.set_publishing(true);
        struct Published<'a>(&'a crate::task::TaskSet);
        impl Drop for Published<'_> {
            fn drop(&mut self) {
                self.0.set_publishing(false);
            }
        }
        let _published = Published(&h.tasks);
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
                super::batch::process(&self.inner, &batch, &mut owned);
            }
            drop(batch);
            if undecodable {
                self.skip_undecodable();
            }
            // Counters every PUBLISH_EVERY; the state only when a reader
            // asked (see `crate::task`).
            let asked = h.tasks.state_asked();
            if asked.is_some() || last_publish.elapsed() >= PUBLISH_EVERY {
                self.publish(asked);
                last_publish = Instant::now();
            }
            if last_checkpoint.elapsed() >= interval {
                self.periodic_checkpoint();
                // The state too, read or not: a reader whose request goes
                // unanswered (this thread busy restoring or writing
                // checkpoints) then measures a state at most about one
                // interval old. One copy of each scope written per
                // interval, against two a second before states went on
                // demand.
                self.publish_state();
                last_checkpoint = Instant::now();
                last_publish = Instant::now();
            }
        }
        // The final state, for readers until the process exits, whatever
        // follows.
        self.publish_state();
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

    /// Publishes every task's state as of now, asked for or not (after a
    /// checkpoint, at shutdown): it answers any request made so far.
    fn publish_state(&self) {
        let asked = self.inner.h.tasks.state_asked().unwrap_or(0);
        self.publish(Some(asked));
    }

    /// Publishes fresh views of the tasks written since the last ones;
    /// with `state` (the generation of state readers asked for), with
    /// their state as of now.
    fn publish(&self, state: Option<u64>) {
        let mut owned = self.inner.owned();
        let with_state = state.is_some();
        let views: Vec<_> = owned
            .values_mut()
            .filter(|t| t.unpublished() || (with_state && t.state_stale()))
            .map(|t| t.view(with_state))
            .collect();
        self.inner.h.tasks.publish(views, state);
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
