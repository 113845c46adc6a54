//! librdkafka's callbacks, run on the consumer thread inside `poll`: a
//! rebalance restores each assigned task from its latest checkpoint and
//! resumes its partition there, and checkpoints each revoked task before
//! letting it go (SPEC §12); statistics set the lag and connection
//! gauges; client errors are logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use super::member::{
    checkpoint_tasks, group_tasks, set_owned_gauges, store_offsets, subscribed, Inner,
};
use super::repeats::Quiet;
use super::undecodable::undecodable_code;
use crate::checkpoint;
use crate::task::{Task, TaskId};

/// The librdkafka callbacks: rebalances, statistics, errors.
pub struct Ctx {
    inner: Arc<Inner>,
    /// Client errors repeat every ~100 ms while a broker is down.
    errors: Quiet,
}

impl Ctx {
    pub(super) fn new(inner: Arc<Inner>) -> Ctx {
        Ctx {
            inner,
            errors: Quiet::new("consumer"),
        }
    }
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
        self.errors.log(&error, reason);
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
                self.inner.revoking();
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
        // One bound for the whole assignment's range checks: a broker slow
        // to answer must not hold the rebalance for 5 s per partition.
        let checks_until = Instant::now() + RANGE_CHECK_WAIT;
        for (topic, partition) in &parts {
            let id = TaskId::new(topic, *partition);
            let stage = inner.stage(topic);
            let task = match checkpoint::load(&*h.store, topic, *partition) {
                Ok(Some(ckpt)) => {
                    let mut t = Task::restore(ckpt, stage, h.tasks.budget());
                    check_range(c, &mut t, checks_until);
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
                    inner.fail(e.to_string());
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
                    // Commit now, for the tools that watch the group (the
                    // next owner resumes at the checkpoint), and before the
                    // rebalance goes on: an asynchronous commit would reach
                    // the broker after the generation changed, and fail.
                    // Not while shutting down: the final commit, bounded,
                    // has just stored these offsets, and this revocation
                    // runs in the consumer's close, where a synchronous
                    // commit to a coordinator gone since waited out the
                    // session (45 s; an outside audit).
                    if !h.stop.load(std::sync::atomic::Ordering::Acquire) {
                        if let Err(e) = c.commit_consumer_state(CommitMode::Sync) {
                            tracing::debug!(error = %e, "commit on revocation");
                        }
                    }
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "checkpoint on revocation failed: the next owner resumes at the previous checkpoint"
                ),
            }
        }
        h.tasks.remove(&ids);
        if lost {
            h.tasks.assignment_lost();
        }
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

/// How long one assignment spends checking restored offsets
/// ([`check_range`]), all partitions together.
const RANGE_CHECK_WAIT: Duration = Duration::from_secs(5);

/// Checks a restored task's offset against its partition's range now.
///
/// - Past the end: the topic was deleted and created again (a rebuilt
///   cluster) or lost data, since the checkpoint. Resumed there, librdkafka
///   jumps to the start on its own, but the task would keep the old end as
///   its offset, so every restart read the new partition again and counted
///   it twice; and in re-key mode the aggregating tasks took the new records
///   for replays and dropped them all. [`Task::rebase`] keeps the counts and
///   reads the partition from its start, once.
/// - Before the start: retention deleted events the task never read; they
///   are not in any count, and the log says how many offsets that is.
///
/// A partition recreated and filled past the checkpoint's offset before the
/// member restarts cannot be told from the old one (Kafka offsets carry no
/// topic identity here): the README says to start such a group afresh.
fn check_range(c: &BaseConsumer<Ctx>, t: &mut Task, until: Instant) {
    let Some(o) = t.next_offset() else { return };
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        tracing::debug!(task = %t.id, "no time left to check the checkpoint's offset");
        return;
    }
    let (low, high) = match c.fetch_watermarks(&t.id.topic, t.id.partition, left) {
        Ok(w) => w,
        Err(e) => {
            tracing::debug!(task = %t.id, error = %e, "no watermarks to check the checkpoint's offset against");
            return;
        }
    };
    if o > high {
        tracing::warn!(
            task = %t.id,
            checkpoint_offset = o,
            partition_end = high,
            "the partition ends before its checkpoint's offset: the topic was recreated (or lost data) \
             since; keeping the counts and reading the partition from its start"
        );
        t.rebase(low);
    } else if o < low {
        tracing::warn!(
            task = %t.id,
            checkpoint_offset = o,
            partition_start = low,
            lost_offsets = low - o,
            "retention deleted messages of this partition before they were read: they are in no count"
        );
    }
}
