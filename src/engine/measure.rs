//! What a scope is worth at `now`: its measures, verdict and SPEC §11
//! evidence, built from the state of one connector.

use std::collections::HashMap;

use chrono::NaiveDate;

use crate::engine::budget::{self, Budget, DailyRow};
use crate::engine::classify::Cloud;
use crate::engine::criteria::{self, ScopeMeasures, Verdict};
use crate::engine::params::Settings;
use crate::engine::state::{self, ConnectorState, Engine, Params, ScopeState, SeriesBudget};
use crate::engine::timeutil::Micros;

/// One scope's measures and verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeReport {
    pub measures: ScopeMeasures,
    pub verdict: Verdict,
    /// Lifetime counters (real clouds only), for the `_total` metrics.
    pub total: Option<state::Counts>,
    /// SPEC §11: the required criteria that are false, in order.
    pub failing: Vec<&'static str>,
    /// SPEC §11: `preview_since` + `exception_preview_months`.
    pub exception_opens_on: Option<NaiveDate>,
    /// SPEC §11: room left and recovery dates of the measured criteria.
    pub budget: Budget,
    /// SPEC §11: one row per day of the criteria window, when asked for.
    pub daily: Option<Vec<DailyRow>>,
}

impl ScopeReport {
    /// Measures one scope (one cloud, or `all` with `cloud = None`) and
    /// derives its verdict and the §11 evidence from the same state.
    pub fn build(
        connector: &str,
        cloud: Option<Cloud>,
        states: &[&ScopeState],
        total: Option<state::Counts>,
        now: Micros,
        cfg: &dyn Settings,
        daily: bool,
    ) -> ScopeReport {
        let attested = cfg.attestation(connector);
        let m = criteria::measure_scope(connector, cloud, states, now, cfg);
        let v = criteria::verdict(&m, attested, now, cfg);
        ScopeReport {
            failing: budget::failing(&v.criteria),
            exception_opens_on: budget::exception_opens_on(attested, cfg),
            budget: budget::budget(&m, &v.criteria, states, now, cfg),
            daily: daily.then(|| budget::daily(states, now, cfg)),
            measures: m,
            verdict: v,
            total,
        }
    }
}

/// A connector's scopes: `all` first, then each cloud it has events in.
pub fn measure_scopes(
    id: &str,
    c: &ConnectorState,
    cfg: &dyn Settings,
    now: Micros,
    daily: bool,
) -> Vec<ScopeReport> {
    let scopes: Vec<(Cloud, &ScopeState)> = c.scopes().collect();
    if scopes.is_empty() {
        return Vec::new();
    }
    let all: Vec<&ScopeState> = scopes.iter().map(|(_, s)| *s).collect();
    let mut out = vec![ScopeReport::build(id, None, &all, None, now, cfg, daily)];
    for (cloud, s) in scopes {
        let total = Some(s.total.clone());
        out.push(ScopeReport::build(
            id,
            Some(cloud),
            &[s],
            total,
            now,
            cfg,
            daily,
        ));
    }
    out
}

/// Every scope of `engines` at `now`, sorted by connector then cloud with
/// `all` first (SPEC §8). A connector held by several engines (shards of
/// `report`, or tasks of input partitions not keyed by connector) is merged
/// first, so each scope appears once.
pub fn measure_engines(
    engines: &[&Engine],
    cfg: &dyn Settings,
    now: Micros,
    daily: bool,
    params: &Params,
) -> Vec<ScopeReport> {
    let mut out = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for e in engines {
        for id in e.connectors.keys() {
            *seen.entry(id.as_str()).or_default() += 1;
        }
    }
    let mut merged: HashMap<&str, ConnectorState> = HashMap::new();
    for e in engines {
        for (id, c) in &e.connectors {
            if seen[id.as_str()] == 1 {
                out.extend(measure_scopes(id, c, cfg, now, daily));
            } else {
                merged.entry(id.as_str()).or_default().merge(
                    c,
                    params,
                    &SeriesBudget::new(usize::MAX),
                );
            }
        }
    }
    for (id, c) in &merged {
        out.extend(measure_scopes(id, c, cfg, now, daily));
    }
    sort_scopes(&mut out);
    out
}

/// The scopes of one connector whose states were held by several engines
/// (`report`'s workers), handed over by value: merged into the first (its
/// scopes are copied only where still shared), then measured; unsorted.
/// As in [`measure_engines`], the merge is exact for every window at `now`:
/// each structure merges to what one engine fed all the events would hold
/// (SPEC §5 and §12).
pub fn measure_held(
    id: &str,
    held: Vec<ConnectorState>,
    cfg: &dyn Settings,
    now: Micros,
    daily: bool,
    params: &Params,
) -> Vec<ScopeReport> {
    let mut held = held.into_iter();
    let Some(mut c) = held.next() else {
        return Vec::new();
    };
    let budget = SeriesBudget::new(usize::MAX);
    for o in held {
        c.merge(&o, params, &budget);
    }
    measure_scopes(id, &c, cfg, now, daily)
}

/// SPEC §8 order: by connector, then cloud name, `all` first.
pub fn sort_scopes(out: &mut [ScopeReport]) {
    fn key(r: &ScopeReport) -> (&str, bool, &'static str) {
        let m = &r.measures;
        (&m.connector, m.cloud.is_some(), m.cloud_label())
    }
    out.sort_by(|a, b| key(a).cmp(&key(b)));
}

/// One connector's scopes (`all` first, then clouds by name) with their
/// `daily` series, merged over the engines holding it: what
/// `/connectors/<id>` shows. Empty when no engine holds it.
pub fn measure_connector(
    engines: &[&Engine],
    cfg: &dyn Settings,
    now: Micros,
    id: &str,
    params: &Params,
) -> Vec<ScopeReport> {
    let mut c = ConnectorState::default();
    let mut found = 0;
    for e in engines {
        if let Some(one) = e.connectors.get(id) {
            c.merge(one, params, &SeriesBudget::new(usize::MAX));
            found += 1;
        }
    }
    if found == 0 {
        return Vec::new();
    }
    let mut out = measure_scopes(id, &c, cfg, now, true);
    if out.len() > 1 {
        out[1..].sort_by_key(|r| r.measures.cloud_label());
    }
    out
}
