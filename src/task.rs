//! Tasks: the state of one aggregated Kafka partition (SPEC §12), and the
//! readers' handle on the tasks a member owns.
//!
//! How each structure is shared (the design choice):
//! - A [`Task`] has exactly one writer: the consumer thread owns every task
//!   and lends each, for one batch, to the one worker that ingests its
//!   events. No lock guards a task; nothing else can reach it.
//! - Readers (the renderer of `/metrics` and `/api/v1/criteria`, the pages,
//!   checkpoints) never touch a task. They read [`TaskView`]s: immutable
//!   copies the writer publishes through [`TaskSet`] (an `arc-swap`), at
//!   most [`PUBLISH_EVERY`] apart. A view shares every scope with the task
//!   (`Arc`, copy on write), so publishing costs the scopes written since the
//!   last view, and a reader holding a view for seconds delays no one.
//! - The series budget (`max_series`) is one atomic counter for the member.
//! - The daemon's own counters are `prometheus` atomics.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::checkpoint::{SourceMark, TaskCheckpoint};
use crate::config::Config;
use crate::engine::event::{Event, Reject, RejectCounts};
use crate::engine::measure::{self, ScopeReport};
use crate::engine::state::{self, Admission, Engine, Params, SeriesBudget};
use crate::engine::timeutil::Micros;
use crate::report::{Membership, Report};

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
    seq: u64,
    /// Written since the last view was published.
    unpublished: bool,
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
            seq: 0,
            unpublished: true,
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
            seq: c.seq,
            unpublished: true,
            unsaved: false,
        }
    }

    /// Where the partition resumes: after the last event in the state.
    pub fn next_offset(&self) -> Option<i64> {
        self.next_offset
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
        events: &[&Event<'_>],
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

    /// An immutable copy for readers (cheap: scopes are shared).
    pub fn view(&mut self) -> Arc<TaskView> {
        self.unpublished = false;
        Arc::new(TaskView {
            id: self.id.clone(),
            stage: self.stage,
            engine: self.engine.view(),
            events_read: self.events_read,
            ingested: self.ingested,
            rejected: self.rejected.clone(),
            next_offset: self.next_offset,
        })
    }

    pub fn unpublished(&self) -> bool {
        self.unpublished
    }

    /// Gives the task's scopes back to the series budget (the task leaves).
    pub fn release(self, budget: &SeriesBudget) {
        budget.release(self.engine.scope_count());
    }
}

/// What readers see of a task.
#[derive(Debug)]
pub struct TaskView {
    pub id: TaskId,
    pub stage: Stage,
    pub engine: Engine,
    pub events_read: u64,
    /// Events handed to the engine since the task was created or restored.
    pub ingested: u64,
    pub rejected: RejectCounts,
    pub next_offset: Option<i64>,
}

type Views = BTreeMap<TaskId, Arc<TaskView>>;

/// The tasks a member owns, as readers see them, and the member's series
/// budget. The consumer thread publishes; anyone reads, without a lock.
#[derive(Debug)]
pub struct TaskSet {
    views: ArcSwap<Views>,
    params: Params,
    budget: SeriesBudget,
    /// Partitions of the group's topics: all the tasks of the group.
    total: AtomicUsize,
    /// Tasks assigned but not restored yet.
    restoring: AtomicUsize,
    /// Set once the first assignment is restored.
    assigned: AtomicBool,
}

impl TaskSet {
    pub fn new(cfg: &Config) -> TaskSet {
        TaskSet {
            views: ArcSwap::from_pointee(Views::new()),
            params: Params::from_config(cfg),
            budget: SeriesBudget::new(cfg.state.max_series),
            total: AtomicUsize::new(0),
            restoring: AtomicUsize::new(0),
            assigned: AtomicBool::new(false),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn budget(&self) -> &SeriesBudget {
        &self.budget
    }

    /// Publishes (or replaces) the views of some tasks.
    pub fn publish(&self, views: Vec<Arc<TaskView>>) {
        if views.is_empty() {
            return;
        }
        self.views.rcu(|old| {
            let mut m = Views::clone(old);
            for v in &views {
                m.insert(v.id.clone(), Arc::clone(v));
            }
            m
        });
    }

    /// Stops showing tasks that moved away: their series disappear.
    pub fn remove(&self, ids: &[TaskId]) {
        self.views.rcu(|old| {
            let mut m = Views::clone(old);
            for id in ids {
                m.remove(id);
            }
            m
        });
    }

    /// Assignment bookkeeping for `/readyz`: `n` tasks start restoring.
    pub fn restoring(&self, n: usize) {
        self.restoring.fetch_add(n, Ordering::AcqRel);
    }

    /// `n` tasks finished restoring.
    pub fn restored(&self, n: usize) {
        self.restoring.fetch_sub(n, Ordering::AcqRel);
        self.assigned.store(true, Ordering::Release);
    }

    /// Sets how many tasks the group has (partitions of the aggregated topics).
    pub fn set_total(&self, n: usize) {
        self.total.store(n, Ordering::Release);
    }

    /// Ready once an assignment came and every owned task is restored.
    pub fn is_ready(&self) -> bool {
        self.assigned.load(Ordering::Acquire) && self.restoring.load(Ordering::Acquire) == 0
    }

    pub fn owned(&self) -> Vec<TaskId> {
        self.views.load().keys().cloned().collect()
    }

    /// Rejections decided in the owned tasks.
    pub fn rejected(&self) -> RejectCounts {
        let mut r = RejectCounts::default();
        for v in self.views.load().values() {
            r.merge(&v.rejected);
        }
        r
    }

    /// Events read per topic by the owned tasks. An event is counted once,
    /// where it is first read: the re-keyed topic's tasks are left out
    /// (their count would always be 0, and exported as a per-topic series
    /// it would read as a stalled topic).
    pub fn events_read(&self) -> BTreeMap<String, u64> {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        for v in self
            .views
            .load()
            .values()
            .filter(|v| v.stage != Stage::Rekeyed)
        {
            *m.entry(v.id.topic.to_string()).or_default() += v.events_read;
        }
        m
    }

    /// The views' next offsets, for the lag gauges.
    /// Events the aggregating tasks handed to their engines since each was
    /// created or restored (benchmarks' progress with the re-key stage).
    pub fn events_ingested(&self) -> u64 {
        self.views
            .load()
            .values()
            .filter(|v| v.stage != Stage::Read)
            .map(|v| v.ingested)
            .sum()
    }

    pub fn next_offsets(&self) -> BTreeMap<TaskId, i64> {
        self.views
            .load()
            .values()
            .filter_map(|v| v.next_offset.map(|o| (v.id.clone(), o)))
            .collect()
    }

    pub fn scope_count(&self) -> usize {
        self.views
            .load()
            .values()
            .map(|v| v.engine.scope_count())
            .sum()
    }

    /// The report over the owned tasks at `now`.
    pub fn report(&self, cfg: &Config, now: Micros, daily: bool) -> Report {
        let views = self.views.load_full();
        let engines: Vec<&Engine> = views.values().map(|v| &v.engine).collect();
        let mut rejected = RejectCounts::default();
        for v in views.values() {
            rejected.merge(&v.rejected);
        }
        let total = self.total.load(Ordering::Acquire);
        Report {
            now,
            criteria_window_days: cfg.criteria.window_days,
            rejected,
            scopes: measure::measure_engines(&engines, cfg, now, daily, &self.params),
            membership: Some(Membership {
                tasks: views
                    .values()
                    .filter(|v| v.stage != Stage::Read)
                    .map(|v| (v.id.topic.to_string(), v.id.partition))
                    .collect(),
                read_tasks: views
                    .values()
                    .filter(|v| v.stage == Stage::Read)
                    .map(|v| (v.id.topic.to_string(), v.id.partition))
                    .collect(),
                partial: views.len() < total || total == 0,
            }),
        }
    }

    /// One connector's scopes with their daily series (`/connectors/<id>`).
    pub fn connector(&self, cfg: &Config, now: Micros, id: &str) -> Vec<ScopeReport> {
        let views = self.views.load_full();
        let engines: Vec<&Engine> = views.values().map(|v| &v.engine).collect();
        measure::measure_connector(&engines, cfg, now, id, &self.params)
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
