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
//! batch's two phases are in `batch`; what the thread owns, in `member`;
//! the rebalance callbacks, in `rebalance`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Message, OwnedMessage};

use super::member::{checkpoint_tasks, store_offsets, subscribe, Inner};
use super::rebalance::Ctx;
use super::rekey;
use super::repeats::Repeats;
use super::undecodable::is_undecodable;
use super::{client_config, KafkaHandle, KafkaSetupError};
use crate::task::{Task, TaskId, PUBLISH_EVERY};
use crate::telemetry::wall_clock;

/// Most messages handled in one batch.
const MAX_BATCH: usize = 4096;
/// A batch smaller than this waits up to `BATCH_WAIT` for more messages.
const MIN_BATCH: usize = 512;
const BATCH_WAIT: Duration = Duration::from_millis(5);

pub struct Consumer {
    pub(super) consumer: BaseConsumer<Ctx>,
    pub(super) inner: Arc<Inner>,
    /// Each assigned partition's position at the last undecodable-message
    /// error (see `undecodable`).
    pub(super) positions_at_error: BTreeMap<(String, i32), i64>,
    /// Poll errors repeat every few ms while a broker is down.
    poll_errors: Repeats,
}

/// How long shutdown waits for the final commit (see
/// [`Consumer::final_commit_and_close`]): the service managers' stop
/// timeouts are 10 s or more, and the checkpoints come first.
const FINAL_COMMIT_WAIT: Duration = Duration::from_secs(4);

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
        let inner = Arc::new(Inner::new(h.clone())?);
        let consumer: BaseConsumer<Ctx> = client_config(&h.cfg, true)
            .create_with_context(Ctx::new(Arc::clone(&inner)))
            .map_err(KafkaSetupError::Client)?;
        if inner.rekey.is_none() {
            subscribe(&consumer, &inner)?;
        }
        Ok(Consumer {
            consumer,
            inner,
            positions_at_error: BTreeMap::new(),
            poll_errors: Repeats::default(),
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
            let generation = self.inner.generation();
            let (mut batch, undecodable) = self.poll_batch();
            if self.inner.generation() != generation && !batch.is_empty() {
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
        if let Some(e) = self.inner.take_failure() {
            return Err(ConsumerError::Restore(e));
        }
        // Shutdown: every owned task is written, then its offset committed.
        {
            let mut owned = self.inner.owned();
            let mut refs: Vec<&mut Task> = owned.values_mut().collect();
            checkpoint_tasks(&self.inner, &mut refs, false).map_err(ConsumerError::Other)?;
            store_offsets(&self.consumer, owned.values());
        }
        self.final_commit_and_close();
        tracing::info!("consumer drained");
        Ok(())
    }

    /// Commits the stored offsets, then closes the consumer (leaving the
    /// group), both on a thread of their own and bounded together by
    /// [`FINAL_COMMIT_WAIT`].
    ///
    /// Why bounded: with every broker down (or a coordinator that stopped
    /// answering), librdkafka's synchronous commit, and then its close,
    /// each wait until the group session times out (`session.timeout.ms`,
    /// 45 s by default): SIGTERM took 90 s and ended in an error, past the
    /// 10 s a service manager is told to wait. Why the close too: a broker
    /// that dies between the commit and the close (both killed by one
    /// `kill`) left the close waiting 45 s in the revocation it runs. Nothing
    /// is lost by giving up: every task's offset is in its checkpoint,
    /// written just before, which a restore resumes at whatever the group
    /// has committed; and a group member that cannot reach its coordinator
    /// is timed out by it.
    fn final_commit_and_close(self) {
        enum Step {
            Committed(KafkaResult<()>),
            Closed,
        }
        let consumer = self.consumer;
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("final-commit".into())
            .spawn(move || {
                let r = consumer.commit_consumer_state(CommitMode::Sync);
                let _ = tx.send(Step::Committed(r));
                drop(consumer);
                let _ = tx.send(Step::Closed);
            });
        let Ok(handle) = spawned else {
            tracing::warn!("no thread for the final commit: exiting without it");
            return;
        };
        let deadline = Instant::now() + FINAL_COMMIT_WAIT;
        let mut committed = false;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Step::Committed(r)) => {
                    committed = true;
                    if let Err(e) = r {
                        // Nothing stored yet (KafkaError NoOffset) is not a failure.
                        tracing::debug!(error = %e, "final commit");
                    }
                }
                Ok(Step::Closed) => {
                    let _ = handle.join();
                    return;
                }
                Err(_) => break,
            }
        }
        // The thread is left to the process's exit: joining it would wait
        // out the session.
        if committed {
            tracing::warn!(
                wait = ?FINAL_COMMIT_WAIT,
                "the group did not answer the consumer's close: exiting without leaving it \
                 (offsets committed; every task's offset is in its checkpoint too)"
            );
        } else {
            tracing::warn!(
                wait = ?FINAL_COMMIT_WAIT,
                "no broker answered the final commit: exiting without leaving the group \
                 (every task's offset is in its checkpoint)"
            );
        }
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
                    match self.poll_errors.admit(&e.to_string(), Instant::now()) {
                        Some(repeats) => tracing::warn!(error = %e, repeats, "poll error"),
                        None => tracing::debug!(error = %e, "poll error (repeated)"),
                    }
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
