//! What a scope is worth at `now`: its measures, verdict and SPEC §11
//! evidence, built from the state of one connector.

use chrono::NaiveDate;

use crate::config::Config;
use crate::engine::budget::{self, Budget, DailyRow};
use crate::engine::classify::Cloud;
use crate::engine::criteria::{self, ScopeMeasures, Verdict};
use crate::engine::state::{self, ConnectorState, ScopeState};
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
        cfg: &Config,
        daily: bool,
    ) -> ScopeReport {
        let attested = cfg.connector(connector);
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
    cfg: &Config,
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
