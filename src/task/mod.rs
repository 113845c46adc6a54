//! Tasks: the state of one aggregated Kafka partition (SPEC §12), and the
//! readers' handle on the tasks a member owns.
//!
//! How each structure is shared (the design choice):
//! - A [`Task`] has exactly one writer: the consumer thread owns every task
//!   and lends each, for one batch, to the one worker that ingests its
//!   events. No lock guards a task; nothing else can reach it.
//! - Readers (the renderer of `/metrics` and `/api/v1/criteria`, the pages,
//!   checkpoints) never touch a task. They read [`TaskView`]s: immutable
//!   copies the writer publishes through [`TaskSet`] (an `arc-swap`). A
//!   reader holding a view for seconds delays no one.
//! - A view's counters (events read, rejections, offset) are at most
//!   [`PUBLISH_EVERY`] old. Its state (the scopes, [`TaskState`]) is
//!   published **on demand**: a reader that measures scopes asks for it
//!   ([`TaskSet::fresh`]), and the writer publishes it after its current
//!   batch. Why: a state shares every scope with the task (`Arc`, copy on
//!   write), and the writer copies each scope it next writes while a state
//!   holds it. Published every 500 ms, as before, that copied every busy
//!   scope twice a second, read or not: most of the daemon's CPU beyond
//!   decoding and aggregating (docs/benchmark-history.md, "State on
//!   demand, and mimalloc"). Now a state costs one
//!   copy of each scope written after it, once per read that asks.
//! - The series budget (`max_series`) is one atomic counter for the member.
//! - The daemon's own counters are `prometheus` atomics.

mod set;

pub use set::{TaskSet, TaskState, TaskView, Views, FRESH_WAIT};

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::{SourceMark, TaskCheckpoint};
use crate::engine::event::{Event, Reject, RejectCounts};
use crate::engine::state::{self, Admission, Digest, Engine, Params, SeriesBudget};
use crate::engine::timeutil::Micros;

/// Longest a reader's view of a task lags its writer (besides the time to
/// render it).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// One aggregated partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TaskId {
    pub fn new(topic: &str, partition: i32) -> TaskId {
        TaskId {
            topic: Arc::from(topic),
            partition,
        }
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// What a task does with its partition's records (SPEC §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Input keyed by connector: decode, validate and aggregate.
    Aggregate,
    /// Input not keyed: decode, validate (every reason up to
    /// `from_future`), and re-key each valid event by its connector.
    Read,
    /// The re-keyed topic: aggregate, dropping records read again
    /// (replays of the read stage), by their source position.
    Rekeyed,
}

/// The state of one partition's task: its scopes, how far it has read,
/// and what it rejected. Written by one thread only.
#[derive(Debug)]
pub struct Task {
    pub id: TaskId,
    pub stage: Stage,
    engine: Engine,
    /// The next offset whose events are not in `engine`.
    next_offset: Option<i64>,
    events_read: u64,
    /// Events handed to the engine since this task was created or
    /// restored (not checkpointed: a progress gauge for benchmarks).
    ingested: u64,
    rejected: RejectCounts,
    /// Re-keyed tasks: per source partition, the highest source position
    /// (offset, index in its record) counted.
    marks: HashMap<(Arc<str>, i32), (i64, u32)>,
    /// Read tasks: added to the offset of each position its records carry
    /// (see [`Task::rebase`]).
    offset_base: i64,
    seq: u64,
    /// Written since the last view was published.
    unpublished: bool,
    /// The state last published, and whether it is older than the task.
    state: Option<Arc<TaskState>>,
    state_stale: bool,
    /// Written since the last checkpoint.
    unsaved: bool,
}

impl Task {
    pub fn new(id: TaskId, stage: Stage) -> Task {
        Task {
            id,
            stage,
            engine: Engine::default(),
            next_offset: None,
            events_read: 0,
            ingested: 0,
            rejected: RejectCounts::default(),
            marks: HashMap::new(),
            offset_base: 0,
            seq: 0,
            unpublished: true,
            state: None,
            state_stale: true,
            unsaved: true,
        }
    }

    /// A task restored from its checkpoint; its scopes count against the
    /// member's series budget whatever the limit (they hold counted events).
    pub fn restore(c: TaskCheckpoint, stage: Stage, budget: &SeriesBudget) -> Task {
        budget.force_claim(c.engine.scope_count());
        Task {
            id: TaskId::new(&c.topic, c.partition),
            stage,
            engine: c.engine,
            next_offset: c.next_offset,
            events_read: c.events_read,
            ingested: 0,
            rejected: c.rejected,
            marks: c
                .sources
                .into_iter()
                .map(|m| {
                    (
                        (Arc::from(m.topic.as_str()), m.partition),
                        (m.offset, m.index),
                    )
                })
                .collect(),
            offset_base: c.offset_base,
            seq: c.seq,
            unpublished: true,
            state: None,
            state_stale: true,
            unsaved: false,
        }
    }

    /// Where the partition resumes: after the last event in the state.
    pub fn next_offset(&self) -> Option<i64> {
        self.next_offset
    }

    /// What a read task adds to the offset of each source position it
    /// writes into its re-keyed records.
    pub fn offset_base(&self) -> i64 {
        self.offset_base
    }

    /// The partition ends before [`Task::next_offset`]: it was deleted and
    /// created again (or truncated) since the state was checkpointed. The
    /// state stays (its events were counted); reading starts again at
    /// `low`, the partition's first offset now.
    ///
    /// A read task's positions must keep growing past those it wrote
    /// before, or the aggregating tasks would take its new records for
    /// replays and drop them (an outside audit: every valid event after
    /// the topics were recreated was lost). So the old end is added to
    /// `offset_base`: the same after every restart that rebases from the
    /// same checkpoint, larger than any position written before.
    pub fn rebase(&mut self, low: i64) {
        if let Some(end) = self.next_offset {
            if self.stage == Stage::Read {
                self.offset_base += end;
            }
        }
        self.next_offset = Some(low);
        self.touch();
    }

    /// Admits one valid event into the task's state, or counts why it is
    /// rejected (tests and tools; the hot paths use [`Task::ingest_batch`]).
    pub fn ingest(
        &mut self,
        ev: &Event<'_>,
        adm: &Admission,
        p: &Params,
        budget: &SeriesBudget,
    ) -> Result<(), Reject> {
        self.touch();
        self.ingested += 1;
        let r = self.engine.ingest(ev, adm, p, budget);
        if let Err(reason) = r {
            self.rejected.add(reason, 1);
        }
        r
    }

    /// The ingest entry point of the daemon and `report`: [`Task::ingest`]
    /// for a batch, visited scope by scope (see
    /// [`Engine::ingest_batch`]): each rejection is counted in the task and
    /// told to `rejected(i, reason)` for `events[i]`.
    pub fn ingest_batch(
        &mut self,
        events: &[&Digest],
        adm: &Admission,
        p: &Params,
        budget: &SeriesBudget,
        mut rejected: impl FnMut(usize, Reject),
    ) {
        self.touch();
        self.ingested += events.len() as u64;
        let counts = &mut self.rejected;
        self.engine
            .ingest_batch(events, adm, p, budget, |i, reason| {
                counts.add(reason, 1);
                rejected(i, reason);
            });
    }

    /// Counts a rejection decided before aggregation (decoding).
    pub fn reject(&mut self, reason: Reject, n: u64) {
        self.touch();
        self.rejected.add(reason, n);
    }

    /// Records that the partition was read up to `offset` (exclusive) and
    /// that `events` events were read on the way.
    pub fn advance(&mut self, offset: i64, events: u64) {
        self.touch();
        self.events_read += events;
        self.next_offset = Some(self.next_offset.map_or(offset, |o| o.max(offset)));
    }

    /// Drops scopes past retention, returning their series budget.
    pub fn prune(&mut self, now: Micros, p: &Params, budget: &SeriesBudget) -> usize {
        let n = self
            .engine
            .prune(state::retention_start(now, p.retention_days), budget);
        if n > 0 {
            self.touch();
        }
        n
    }

    fn touch(&mut self) {
        self.unpublished = true;
        self.state_stale = true;
        self.unsaved = true;
    }

    pub fn unsaved(&self) -> bool {
        self.unsaved
    }

    /// Whether a checkpoint of this task would be a restart point: only
    /// once it has read something does it know the offset its state stops
    /// at. A task that has read nothing is never written: such a
    /// checkpoint holds no offset, so a member falling back to it (the
    /// newer one damaged) resumed at Kafka's committed offset, past the
    /// events of the damaged checkpoint, and lost them (the CI failure of
    /// `tests/crash/fallback.sh`, see `checkpoint::load`).
    pub fn checkpointable(&self) -> bool {
        self.next_offset.is_some()
    }

    /// The next checkpoint of this task: its state (shared with the task,
    /// copy on write) and offsets as one unit.
    pub fn checkpoint(&mut self, now: Micros) -> TaskCheckpoint {
        self.seq += 1;
        TaskCheckpoint {
            topic: self.id.topic.to_string(),
            partition: self.id.partition,
            seq: self.seq,
            created_at: now,
            next_offset: self.next_offset,
            events_read: self.events_read,
            rejected: self.rejected.clone(),
            sources: self
                .marks
                .iter()
                .map(|((t, p), (o, i))| SourceMark {
                    topic: t.to_string(),
                    partition: *p,
                    offset: *o,
                    index: *i,
                })
                .collect(),
            engine: self.engine.view(),
            offset_base: self.offset_base,
        }
    }

    /// Re-keyed tasks: whether the record from `source` at (`offset`,
    /// `index`) was counted already (a replay of the read stage after it
    /// resumed from its checkpoint). Records of one source partition reach
    /// a task in source order (one producer per source partition, idempotent),
    /// so a position at or below the mark is a replay.
    pub fn replayed(&mut self, source: (&str, i32), offset: i64, index: u32) -> bool {
        if let Some(m) = self.marks.get_mut(&source as &dyn MarkKey) {
            if (offset, index) <= *m {
                return true;
            }
            *m = (offset, index);
        } else {
            self.marks
                .insert((Arc::from(source.0), source.1), (offset, index));
        }
        self.touch();
        false
    }

    /// Marks the last [`Task::checkpoint`] durable.
    pub fn saved(&mut self) {
        self.unsaved = false;
    }

    /// An immutable copy for readers: the counters now, and the state now
    /// when `with_state` (else the one last published, if any). Cheap:
    /// scopes are shared, but the task copies each scope it next writes
    /// while the state is held (see the module docs).
    pub fn view(&mut self, with_state: bool) -> Arc<TaskView> {
        self.unpublished = false;
        let state = match &self.state {
            Some(s) if !(with_state && self.state_stale) => Arc::clone(s),
            _ => {
                let s = Arc::new(TaskState {
                    engine: self.engine.view(),
                    events_read: self.events_read,
                    rejected: self.rejected.clone(),
                });
                self.state = Some(Arc::clone(&s));
                self.state_stale = false;
                s
            }
        };
        Arc::new(TaskView {
            id: self.id.clone(),
            stage: self.stage,
            events_read: self.events_read,
            ingested: self.ingested,
            rejected: self.rejected.clone(),
            next_offset: self.next_offset,
            scopes: self.engine.scope_count(),
            state,
        })
    }

    pub fn unpublished(&self) -> bool {
        self.unpublished
    }

    /// Whether the state last published is older than the task.
    pub fn state_stale(&self) -> bool {
        self.state_stale
    }

    /// The task's scopes and rejections, the task gone (`report`).
    pub fn into_state(self) -> (Engine, RejectCounts) {
        (self.engine, self.rejected)
    }

    /// Gives the task's scopes back to the series budget (the task leaves).
    pub fn release(self, budget: &SeriesBudget) {
        budget.release(self.engine.scope_count());
    }
}

/// Looks up a mark by borrowed (topic, partition), without allocating.
trait MarkKey {
    fn key(&self) -> (&str, i32);
}

impl MarkKey for (&str, i32) {
    fn key(&self) -> (&str, i32) {
        (self.0, self.1)
    }
}

impl MarkKey for (Arc<str>, i32) {
    fn key(&self) -> (&str, i32) {
        (&self.0, self.1)
    }
}

impl<'a> Borrow<dyn MarkKey + 'a> for (Arc<str>, i32) {
    fn borrow(&self) -> &(dyn MarkKey + 'a) {
        self
    }
}

impl Hash for dyn MarkKey + '_ {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.key().hash(h)
    }
}

impl PartialEq for dyn MarkKey + '_ {
    fn eq(&self, o: &Self) -> bool {
        self.key() == o.key()
    }
}

impl Eq for dyn MarkKey + '_ {}

#[cfg(test)]
mod tests {
    use super::*;

    /// By hand: a read task checkpointed at offset 40 finds its partition
    /// recreated: it resumes at the new start (0) and its positions start
    /// at 40, past the 0..=39 it wrote; a second recreation after reading
    /// to 25 adds 25 more (base 65). An aggregating task's offset resumes
    /// at the start too, its state and base untouched.
    #[test]
    fn rebase_resumes_at_the_start_and_read_positions_keep_growing() {
        let mut r = Task::new(TaskId::new("ev", 0), Stage::Read);
        r.advance(40, 40);
        r.rebase(0);
        assert_eq!((r.next_offset(), r.offset_base()), (Some(0), 40));
        r.advance(25, 25);
        r.rebase(0);
        assert_eq!((r.next_offset(), r.offset_base()), (Some(0), 65));
        // Through a checkpoint.
        let back = Task::restore(r.checkpoint(1), Stage::Read, &SeriesBudget::new(10));
        assert_eq!((back.next_offset(), back.offset_base()), (Some(0), 65));

        let mut a = Task::new(TaskId::new("ev", 0), Stage::Aggregate);
        a.advance(40, 40);
        a.rebase(3);
        assert_eq!((a.next_offset(), a.offset_base()), (Some(3), 0));
        assert_eq!(a.events_read, 40);
    }
}
