//! Engines fed the way the daemon and `report` feed them, for the tests
//! that compare layouts: `n` engines keyed by connector (tasks of
//! connector-keyed partitions), or `n` engines each fed whole batches in
//! turn (`report`'s workers, and tasks of unkeyed partitions), where one
//! connector lands in several engines and is merged when measured.

use connector_ga_exporter::config::Config;
use connector_ga_exporter::engine::event::{Event, Reject, RejectCounts};
use connector_ga_exporter::engine::state::{self, Admission, Engine, Params, SeriesBudget};
use connector_ga_exporter::engine::timeutil::Micros;
use connector_ga_exporter::report::Report;

/// How events are spread over the engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// By connector id: each connector in one engine.
    ByConnector,
    /// Batch `i` (or, one at a time, event `i`) into engine `i % n`.
    ByBatch,
}

pub struct Shards {
    engines: Vec<Engine>,
    layout: Layout,
    next: usize,
    params: Params,
    budget: SeriesBudget,
}

impl Shards {
    /// `n` engines keyed by connector, with the config's series limit.
    pub fn from_config(cfg: &Config, n: usize) -> Shards {
        Shards::with_layout(cfg, n, Layout::ByConnector)
    }

    pub fn with_layout(cfg: &Config, n: usize, layout: Layout) -> Shards {
        Shards {
            engines: (0..n.max(1)).map(|_| Engine::default()).collect(),
            layout,
            next: 0,
            params: Params::from_config(cfg),
            budget: SeriesBudget::new(cfg.state.max_series),
        }
    }

    fn target(&mut self, ev: &Event<'_>) -> usize {
        let n = self.engines.len();
        match self.layout {
            Layout::ByConnector => state::shard_of(&ev.connector, n),
            Layout::ByBatch => {
                self.next += 1;
                (self.next - 1) % n
            }
        }
    }

    /// Ingests a batch; rejections are added to `rejected`. Returns the
    /// events admitted.
    pub fn ingest_batch(
        &mut self,
        events: Vec<Event<'_>>,
        adm: &Admission,
        rejected: &mut RejectCounts,
    ) -> u64 {
        let n = self.engines.len();
        let batch_target = match self.layout {
            Layout::ByBatch => {
                self.next += 1;
                Some((self.next - 1) % n)
            }
            Layout::ByConnector => None,
        };
        let mut accepted = 0;
        for ev in &events {
            let i = batch_target.unwrap_or_else(|| state::shard_of(&ev.connector, n));
            match self.engines[i].ingest(ev, adm, &self.params, &self.budget) {
                Ok(()) => accepted += 1,
                Err(r) => rejected.add(r, 1),
            }
        }
        accepted
    }

    /// Ingests one event (`ByBatch`: each event a batch of its own).
    pub fn ingest_one(&mut self, ev: &Event<'_>, adm: &Admission) -> Result<(), Reject> {
        let i = self.target(ev);
        self.engines[i].ingest(ev, adm, &self.params, &self.budget)
    }

    /// Merges restored engines in (a checkpoint loaded into another shape).
    pub fn restore(&mut self, engines: Vec<Engine>) {
        let n = self.engines.len();
        for e in engines {
            for (id, c) in e.connectors {
                let one = Engine {
                    connectors: [(id.clone(), c)].into_iter().collect(),
                    max_day: e.max_day,
                    aged_out: 0,
                };
                self.engines[state::shard_of(&id, n)].merge(&one, &self.params, &self.budget);
            }
        }
    }

    /// A copy of the engines (what checkpoints hold).
    pub fn engines(&self) -> Vec<Engine> {
        self.engines.clone()
    }

    pub fn report(&self, cfg: &Config, now: Micros, rejected: RejectCounts) -> Report {
        self.report_with(cfg, now, rejected, false)
    }

    pub fn report_with(
        &self,
        cfg: &Config,
        now: Micros,
        rejected: RejectCounts,
        daily: bool,
    ) -> Report {
        let engines: Vec<&Engine> = self.engines.iter().collect();
        Report::build_with(&engines, cfg, now, rejected, daily)
    }
}
