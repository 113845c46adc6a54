//! What the consumer thread owns and shares with librdkafka's callbacks,
//! which run inside its `poll`: the member's tasks, the re-key stage's
//! producer, the dead letters and the worker pool; and the steps that the
//! poll loop and a rebalance both take: writing checkpoints, storing
//! offsets, setting the owned-task gauges.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::dead_letter::DeadLetters;
use super::rekey::{self, Rekeyer};
use super::{KafkaHandle, KafkaSetupError};
use crate::checkpoint;
use crate::task::{Stage, Task, TaskId};
use crate::telemetry::wall_clock;

/// The tasks this member owns, by partition.
pub(super) type Owned = BTreeMap<TaskId, Task>;

/// The member on the consumer thread, shared with the callbacks
/// (`rebalance`) through an `Arc`.
pub(super) struct Inner {
    pub(super) h: KafkaHandle,
    /// Touched only on the consumer thread (see `consumer`'s docs): the
    /// mutex is never contended, it only makes the callbacks' access sound.
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
    pub(super) fn new(h: KafkaHandle) -> Result<Inner, KafkaSetupError> {
        let dlq = DeadLetters::new(&h.cfg, &h.metrics.dead_letters_dropped)?;
        let workers = crate::config::threads_for(h.cfg.kafka.workers);
        let rekey = if h.cfg.kafka.input_keyed_by_connector {
            None
        } else {
            Some(Rekeyer::new(&h.cfg)?)
        };
        Ok(Inner {
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
            h,
        })
    }

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

    /// Counts revocations: a batch polled across one is filtered.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(super) fn revoking(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A task that cannot be restored: the poll loop stops and says why.
    pub(super) fn fail(&self, why: String) {
        *self.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        self.h.stop.store(true, Ordering::Release);
    }

    pub(super) fn take_failure(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// `connector_ga_tasks_owned` counts the tasks that aggregate (SPEC §12: a
/// task is an aggregated partition); the re-key stage's read tasks have
/// their own gauge.
pub(super) fn set_owned_gauges(inner: &Inner) {
    let owned = inner.owned();
    let read = owned.values().filter(|t| t.stage == Stage::Read).count();
    let m = &inner.h.metrics;
    m.tasks_owned.set((owned.len() - read) as i64);
    m.read_tasks_owned.set(read as i64);
}

/// The topics of the group: the input, and the re-keyed topic when there
/// is a re-key stage.
pub(super) fn subscribed(inner: &Inner) -> Vec<String> {
    let mut t = inner.h.cfg.kafka.topics.clone();
    if inner.rekey.is_some() {
        t.push(inner.rekey_topic.clone());
    }
    t
}

/// Subscribes to the group's topics.
pub(super) fn subscribe<C: ConsumerContext>(
    c: &BaseConsumer<C>,
    inner: &Inner,
) -> Result<(), KafkaSetupError> {
    let names = subscribed(inner);
    let topics: Vec<&str> = names.iter().map(String::as_str).collect();
    c.subscribe(&topics).map_err(KafkaSetupError::Subscribe)
}

/// The group's tasks: partitions of its topics.
pub(super) fn group_tasks<C: ConsumerContext>(c: &BaseConsumer<C>, topics: &[String]) -> usize {
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
pub(super) fn checkpoint_tasks(
    inner: &Inner,
    tasks: &mut [&mut Task],
    all: bool,
) -> Result<(), String> {
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
pub(super) fn store_offsets<'a, C: ConsumerContext>(
    c: &BaseConsumer<C>,
    tasks: impl IntoIterator<Item = &'a Task>,
) {
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
