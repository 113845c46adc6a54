//! The readers' side of the tasks: the views a member's consumer
//! publishes, and the handle everyone else reads them through (see the
//! parent module for how each structure is shared).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::{Stage, TaskId};
use crate::config::Config;
use crate::engine::event::RejectCounts;
use crate::engine::measure::{self, ScopeReport};
use crate::engine::state::{Engine, Params, SeriesBudget};
use crate::engine::timeutil::Micros;
use crate::report::{Membership, Report};

/// What readers see of a task: its counters as of the last publication
/// (at most [`PUBLISH_EVERY`](super::PUBLISH_EVERY) old), and its state as of the last one a
/// reader asked for.
#[derive(Debug)]
pub struct TaskView {
    pub id: TaskId,
    pub stage: Stage,
    pub events_read: u64,
    /// Events handed to the engine since the task was created or restored.
    pub ingested: u64,
    pub rejected: RejectCounts,
    pub next_offset: Option<i64>,
    /// Scopes held.
    pub scopes: usize,
    pub state: Arc<TaskState>,
}

/// A task's scopes and the counters that go with them, as of one moment:
/// what `/metrics`, `/api/v1/criteria` and the pages measure.
#[derive(Debug)]
pub struct TaskState {
    pub engine: Engine,
    pub events_read: u64,
    pub rejected: RejectCounts,
}

/// Longest a reader waits for the state it asked for ([`TaskSet::fresh`]):
/// beyond it (the consumer busy restoring, say) it measures the state last
/// published.
pub const FRESH_WAIT: Duration = Duration::from_secs(2);

/// The views of the owned tasks.
pub type Views = BTreeMap<TaskId, Arc<TaskView>>;

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
    /// Requests for fresh state: the last generation asked for, and the
    /// last published (see [`TaskSet::fresh`]).
    asked: AtomicU64,
    served: AtomicU64,
    served_lock: Mutex<()>,
    served_cv: Condvar,
    /// Whether a writer publishes (a consumer runs): only then do readers
    /// wait for the state they ask for.
    publishing: AtomicBool,
    /// [`FRESH_WAIT`]; shorter in tests.
    fresh_wait: Duration,
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
            asked: AtomicU64::new(0),
            served: AtomicU64::new(0),
            served_lock: Mutex::new(()),
            served_cv: Condvar::new(),
            publishing: AtomicBool::new(false),
            fresh_wait: FRESH_WAIT,
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn budget(&self) -> &SeriesBudget {
        &self.budget
    }

    /// Publishes (or replaces) the views of some tasks. `served`: these
    /// views answer the readers' requests for state up to that generation
    /// ([`TaskSet::state_asked`]).
    pub fn publish(&self, views: Vec<Arc<TaskView>>, served: Option<u64>) {
        if !views.is_empty() {
            self.views.rcu(|old| {
                let mut m = Views::clone(old);
                for v in &views {
                    m.insert(v.id.clone(), Arc::clone(v));
                }
                m
            });
        }
        if let Some(g) = served {
            self.served.fetch_max(g, Ordering::AcqRel);
            // Under the lock: a reader between its check and its wait
            // cannot miss this.
            let _g = self.served_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.served_cv.notify_all();
        }
    }

    /// The writer's side of [`TaskSet::fresh`]: the generation of state
    /// readers are waiting for, if any. Checked after every batch.
    pub fn state_asked(&self) -> Option<u64> {
        let asked = self.asked.load(Ordering::Acquire);
        (asked > self.served.load(Ordering::Acquire)).then_some(asked)
    }

    /// Whether a writer publishes: set while a consumer runs. When it stops
    /// (its last views hold every task's final state), waiting readers
    /// are released.
    pub fn set_publishing(&self, on: bool) {
        self.publishing.store(on, Ordering::Release);
        if !on {
            let _g = self.served_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.served_cv.notify_all();
        }
    }

    /// The views with every task's state as of now: asks the writer to
    /// publish it and waits until it has (after the batch it is ingesting),
    /// for at most [`FRESH_WAIT`]; with no writer running, the views as
    /// they are. Blocks: call it where blocking is allowed.
    pub fn fresh(&self) -> Arc<Views> {
        if self.publishing.load(Ordering::Acquire) {
            let want = self.asked.fetch_add(1, Ordering::AcqRel) + 1;
            let deadline = Instant::now() + self.fresh_wait;
            let mut g = self.served_lock.lock().unwrap_or_else(|e| e.into_inner());
            while self.served.load(Ordering::Acquire) < want
                && self.publishing.load(Ordering::Acquire)
            {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    tracing::debug!(
                        wait = ?self.fresh_wait,
                        "no fresh state in time: measuring the last one published"
                    );
                    break;
                }
                g = self
                    .served_cv
                    .wait_timeout(g, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        self.views.load_full()
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

    /// The whole assignment was lost (the group session timed out: no
    /// broker answered): not ready until the next assignment, since the
    /// member now exports nothing of the stream.
    pub fn assignment_lost(&self) {
        self.assigned.store(false, Ordering::Release);
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
        self.views.load().values().map(|v| v.scopes).sum()
    }

    /// The report over the owned tasks at `now`, of their state as of now
    /// ([`TaskSet::fresh`]), with the events read per topic that go with it.
    pub fn report(
        &self,
        cfg: &Config,
        now: Micros,
        daily: bool,
    ) -> (Report, BTreeMap<String, u64>) {
        let views = self.fresh();
        let engines: Vec<&Engine> = views.values().map(|v| &v.state.engine).collect();
        let mut rejected = RejectCounts::default();
        let mut events: BTreeMap<String, u64> = BTreeMap::new();
        for v in views.values() {
            rejected.merge(&v.state.rejected);
            if v.stage != Stage::Rekeyed {
                *events.entry(v.id.topic.to_string()).or_default() += v.state.events_read;
            }
        }
        let total = self.total.load(Ordering::Acquire);
        let r = Report {
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
                // Listed with a re-key stage even when empty: a member
                // whose read tasks moved away owns none, which the merge
                // of members' documents must see as `[]`, not as absent.
                read_tasks: (!cfg.kafka.input_keyed_by_connector).then(|| {
                    views
                        .values()
                        .filter(|v| v.stage == Stage::Read)
                        .map(|v| (v.id.topic.to_string(), v.id.partition))
                        .collect()
                }),
                partial: views.len() < total || total == 0,
            }),
        };
        (r, events)
    }

    /// One connector's scopes with their daily series (`/connectors/<id>`)
    /// as of now, and the rejections of the owned tasks that go with them.
    pub fn connector(
        &self,
        cfg: &Config,
        now: Micros,
        id: &str,
    ) -> (Vec<ScopeReport>, RejectCounts) {
        let views = self.fresh();
        let engines: Vec<&Engine> = views.values().map(|v| &v.state.engine).collect();
        let mut rejected = RejectCounts::default();
        for v in views.values() {
            rejected.merge(&v.state.rejected);
        }
        (
            measure::measure_connector(&engines, cfg, now, id, &self.params),
            rejected,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::Event;
    use crate::engine::state::Admission;
    use crate::engine::timeutil::parse_rfc3339;
    use crate::task::Task;

    fn event(connector: &str) -> Event<'_> {
        Event {
            ts: parse_rfc3339("2026-11-20T10:00:00Z").unwrap(),
            connector: connector.into(),
            cloud: crate::engine::classify::Cloud::Public,
            status: Some(200),
            fault: None,
            latency_ms: Some(5.0),
            user: None,
            connection: None,
        }
    }

    fn ingest(t: &mut Task, set: &TaskSet, connector: &str) {
        let adm = Admission::default();
        t.ingest(&event(connector), &adm, set.params(), set.budget())
            .unwrap();
    }

    /// Requests in the scopes of the views' states.
    fn requests(views: &Views) -> u64 {
        views
            .values()
            .flat_map(|v| v.state.engine.connectors.values())
            .flat_map(|c| c.scopes())
            .map(|(_, s)| s.total.requests)
            .sum()
    }

    /// Regression: after a lost assignment (a session timeout while the
    /// broker hung) `/readyz` stayed 200 with nothing exported.
    #[test]
    fn a_lost_assignment_is_not_ready_until_the_next() {
        let set = TaskSet::new(&Config::default());
        assert!(!set.is_ready());
        set.restoring(0);
        set.restored(0);
        assert!(set.is_ready(), "an empty assignment is ready");
        set.assignment_lost();
        assert!(!set.is_ready());
        set.restoring(2);
        assert!(!set.is_ready());
        set.restored(2);
        assert!(set.is_ready());
    }

    /// Regression (an outside audit): with the re-key stage, a member that
    /// owned no read task listed no `read_tasks` at all, which a merge of
    /// the members' documents read as `null`. Listed as `[]` now; absent
    /// without a re-key stage.
    #[test]
    fn read_tasks_are_listed_with_a_rekey_stage_even_when_none() {
        let now = parse_rfc3339("2026-11-20T12:00:00Z").unwrap();
        let mut cfg = Config::default();
        cfg.kafka.input_keyed_by_connector = false;
        let set = TaskSet::new(&cfg);
        let doc = set.report(&cfg, now, false).0.to_json();
        assert_eq!(doc["read_tasks"], serde_json::json!([]));
        assert_eq!(doc["tasks"], serde_json::json!([]));
        cfg.kafka.input_keyed_by_connector = true;
        let doc = set.report(&cfg, now, false).0.to_json();
        assert!(doc.get("read_tasks").is_none(), "{doc}");
    }

    /// A view without state keeps the state last published, so the writer
    /// copies no scope for it; a view with state takes the task as it is.
    #[test]
    fn only_a_view_with_state_takes_the_state() {
        let set = TaskSet::new(&Config::default());
        let mut t = Task::new(TaskId::new("ev", 0), Stage::Aggregate);
        ingest(&mut t, &set, "a");
        let first = t.view(true);
        ingest(&mut t, &set, "a");
        ingest(&mut t, &set, "b");
        let light = t.view(false);
        assert!(Arc::ptr_eq(&first.state, &light.state));
        // By hand: the counters say 3 events, the state still 1 request
        // and 1 scope; the light view counts the 2 scopes the task holds.
        assert_eq!((light.ingested, light.scopes), (3, 2));
        set.publish(vec![light], None);
        assert_eq!(
            requests(&set.fresh()),
            1,
            "no writer: the views as they are"
        );
        assert!(t.state_stale());
        let full = t.view(true);
        assert!(!Arc::ptr_eq(&first.state, &full.state));
        set.publish(vec![full], None);
        assert_eq!(requests(&set.fresh()), 3);
        // Nothing written since: the same state again.
        assert!(Arc::ptr_eq(&t.view(true).state, &set.fresh()[&t.id].state));
    }

    /// A reader asking for state while a writer runs gets the state as of
    /// its request: the writer publishes it after its current batch.
    #[test]
    fn a_reader_gets_the_state_as_of_its_request() {
        let set = Arc::new(TaskSet::new(&Config::default()));
        set.set_publishing(true);
        let mut t = Task::new(TaskId::new("ev", 0), Stage::Aggregate);
        ingest(&mut t, &set, "a");
        set.publish(vec![t.view(true)], None);
        for _ in 0..4 {
            ingest(&mut t, &set, "a");
        }
        set.publish(vec![t.view(false)], None);
        let reader = {
            let set = Arc::clone(&set);
            std::thread::spawn(move || requests(&set.fresh()))
        };
        // The writer's loop: publish the state once asked.
        let asked = loop {
            if let Some(g) = set.state_asked() {
                break g;
            }
            std::thread::yield_now();
        };
        set.publish(vec![t.view(true)], Some(asked));
        // By hand: 1 + 4 events, all before the request.
        assert_eq!(reader.join().unwrap(), 5);
        assert_eq!(set.state_asked(), None);
        set.set_publishing(false);
    }

    /// A writer that does not answer (busy restoring, say) holds a reader
    /// back at most `fresh_wait`: it then measures the last state; a
    /// writer that stops releases it at once.
    #[test]
    fn an_unanswered_reader_measures_the_last_state() {
        let mut set = TaskSet::new(&Config::default());
        set.fresh_wait = Duration::from_millis(50);
        let mut t = Task::new(TaskId::new("ev", 0), Stage::Aggregate);
        ingest(&mut t, &set, "a");
        set.publish(vec![t.view(true)], None);
        ingest(&mut t, &set, "a");
        set.publish(vec![t.view(false)], None);
        set.set_publishing(true);
        assert_eq!(requests(&set.fresh()), 1);
        // Now a writer that never answers, then stops.
        set.fresh_wait = Duration::from_secs(3600);
        let set = Arc::new(set);
        let before = set.state_asked().expect("the first request is unanswered");
        let reader = {
            let set = Arc::clone(&set);
            std::thread::spawn(move || requests(&set.fresh()))
        };
        // Until the reader has asked (and so waits, or is about to).
        while set.state_asked() == Some(before) {
            std::thread::yield_now();
        }
        set.set_publishing(false);
        assert_eq!(reader.join().unwrap(), 1);
    }
}
