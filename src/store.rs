//! The state of the `report` command (and of the library tests): engines
//! sharded by connector id, each behind its own mutex, so a file is
//! ingested by one thread per core. The daemon does not use it: it keeps
//! one task per partition with a single writer (see `crate::task`).

use std::sync::{Mutex, MutexGuard};

use crate::config::Config;
use crate::engine::event::{Event, Reject, RejectCounts};
use crate::engine::measure::{measure_scopes, ScopeReport};
use crate::engine::state::{self, Admission, Engine, Params, SeriesBudget};
use crate::engine::timeutil::Micros;

pub struct Store {
    shards: Vec<Mutex<Engine>>,
    pub params: Params,
    pub budget: SeriesBudget,
}

impl Store {
    pub fn new(n_shards: usize, params: Params, max_series: usize) -> Store {
        Store {
            shards: (0..n_shards.max(1))
                .map(|_| Mutex::new(Engine::default()))
                .collect(),
            params,
            budget: SeriesBudget::new(max_series),
        }
    }

    pub fn from_config(cfg: &Config, n_shards: usize) -> Store {
        Store::new(n_shards, Params::from_config(cfg), cfg.state.max_series)
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn lock(&self, i: usize) -> MutexGuard<'_, Engine> {
        // A panic while holding a shard cannot leave it half-updated in a
        // way worse than losing the process; keep serving what is there.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ingests a batch of decoded events: grouped by shard so each shard is
    /// locked once per batch. Rejections are added to `rejected`.
    pub fn ingest_batch<'a>(
        &self,
        events: Vec<Event<'a>>,
        adm: &Admission,
        rejected: &mut RejectCounts,
    ) -> u64 {
        let n = self.shards.len();
        let mut accepted = 0;
        if n == 1 {
            let mut e = self.lock(0);
            for ev in &events {
                match e.ingest(ev, adm, &self.params, &self.budget) {
                    Ok(()) => accepted += 1,
                    Err(r) => rejected.add(r, 1),
                }
            }
            return accepted;
        }
        let mut by_shard: Vec<Vec<&Event<'a>>> = vec![Vec::new(); n];
        for ev in &events {
            by_shard[state::shard_of(&ev.connector, n)].push(ev);
        }
        for (i, evs) in by_shard.into_iter().enumerate() {
            if evs.is_empty() {
                continue;
            }
            let mut e = self.lock(i);
            for ev in evs {
                match e.ingest(ev, adm, &self.params, &self.budget) {
                    Ok(()) => accepted += 1,
                    Err(r) => rejected.add(r, 1),
                }
            }
        }
        accepted
    }

    /// Loads the engines of a snapshot, re-sharding them if the shard count
    /// changed.
    pub fn restore(&self, engines: Vec<Engine>) {
        let n = self.shards.len();
        for e in engines {
            for (id, c) in e.connectors {
                let mut one = Engine {
                    connectors: [(id.clone(), c)].into_iter().collect(),
                    max_day: e.max_day,
                    aged_out: 0,
                };
                one.aged_out = 0;
                self.lock(state::shard_of(&id, n))
                    .merge(&one, &self.params, &self.budget);
            }
        }
    }

    /// Ingests one event (tests, small callers).
    pub fn ingest_one(&self, ev: &Event<'_>, adm: &Admission) -> Result<(), Reject> {
        let i = state::shard_of(&ev.connector, self.shards.len());
        self.lock(i).ingest(ev, adm, &self.params, &self.budget)
    }

    /// Measures every scope at `now`, sorted by connector then cloud with
    /// `all` first (SPEC §8), without the `daily` series.
    pub fn measure_all(&self, cfg: &Config, now: Micros) -> Vec<ScopeReport> {
        self.measure_all_with(cfg, now, false)
    }

    /// [`Store::measure_all`], with each scope's `daily` series when `daily`.
    pub fn measure_all_with(&self, cfg: &Config, now: Micros, daily: bool) -> Vec<ScopeReport> {
        let mut out = Vec::new();
        for i in 0..self.shards.len() {
            let e = self.lock(i);
            for (id, c) in &e.connectors {
                out.extend(measure_scopes(id, c, cfg, now, daily));
            }
        }
        // By connector, then cloud name, `all` first.
        let key = |r: &ScopeReport| {
            let m = &r.measures;
            (m.connector.clone(), m.cloud.is_some(), m.cloud_label())
        };
        out.sort_by_key(key);
        out
    }

    /// Events held that `now` puts outside retention (`too_old` in
    /// hindsight, for `report` without `--now`), and drops their scopes
    /// when nothing else is left in them.
    pub fn settle_retention(&self, now: Micros) -> u64 {
        let min_day = state::retention_start(now, self.params.retention_days);
        let mut n = 0;
        for i in 0..self.shards.len() {
            let mut e = self.lock(i);
            n += e.aged_out;
            e.aged_out = 0;
            for c in e.connectors.values() {
                for (_, s) in c.scopes() {
                    n += s.requests_in_days(i32::MIN + 1, min_day - 1);
                }
            }
            e.prune(min_day, &self.budget);
        }
        n
    }

    /// Drops scopes whose events all left retention (daemon housekeeping).
    pub fn prune(&self, now: Micros) -> usize {
        let min_day = state::retention_start(now, self.params.retention_days);
        (0..self.shards.len())
            .map(|i| self.lock(i).prune(min_day, &self.budget))
            .sum()
    }

    pub fn scope_count(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).scope_count())
            .sum()
    }

    /// The scopes of one connector (`all` first, then clouds by name) with
    /// their `daily` series: what `/connectors/<id>` shows. It locks and
    /// measures one shard's connector only, not every scope.
    pub fn measure_connector(&self, cfg: &Config, now: Micros, id: &str) -> Vec<ScopeReport> {
        let e = self.lock(state::shard_of(id, self.shards.len()));
        let Some(c) = e.connectors.get(id) else {
            return Vec::new();
        };
        let mut out = measure_scopes(id, c, cfg, now, true);
        if out.is_empty() {
            return out;
        }
        out[1..].sort_by_key(|r| r.measures.cloud_label());
        out
    }
}
