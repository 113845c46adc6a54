//! The JSON document of SPEC §8 and §11, as typed records serialized
//! straight to text.
//!
//! Why records and not a `serde_json::Value` tree: the tree was built for
//! every scope (a map per object, a string per key) only to be written out
//! and dropped, ~10% of `report --format json` on 6,000 scopes. Each record
//! declares its keys in sorted order, the order a `Value` object (a
//! `BTreeMap`) writes them in, so the text is the same byte for byte.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{json, Value};

use super::Report;
use crate::engine::budget::{Allowance, Budget, DailyRow};
use crate::engine::criteria::Criteria;
use crate::engine::event::Reject;
use crate::engine::measure::ScopeReport;
use crate::engine::timeutil;

/// The whole document. Keys in sorted order (see the module doc).
#[derive(Serialize)]
pub struct Doc<'a> {
    criteria_window_days: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    members_partial: Option<bool>,
    now: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_tasks: Option<Vec<Value>>,
    rejected: BTreeMap<&'static str, u64>,
    scopes: Vec<ScopeDoc<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks: Option<Vec<Value>>,
}

impl<'a> Doc<'a> {
    pub(super) fn of(r: &'a Report) -> Doc<'a> {
        let rejected = Reject::ALL
            .iter()
            .map(|&k| (k.as_str(), r.rejected.get(k)))
            .filter(|(_, n)| *n > 0)
            .collect();
        // SPEC §12: the partitions owned; `topic/partition` strings only
        // when several topics are aggregated (partition numbers alone would
        // then be ambiguous).
        let list = |tasks: &[(String, i32)]| -> Vec<Value> {
            let one_topic = tasks.windows(2).all(|w| w[0].0 == w[1].0);
            tasks
                .iter()
                .map(|(t, p)| {
                    if one_topic {
                        json!(p)
                    } else {
                        json!(format!("{t}/{p}"))
                    }
                })
                .collect()
        };
        let m = r.membership.as_ref();
        Doc {
            criteria_window_days: r.criteria_window_days,
            members_partial: m.map(|m| m.partial),
            now: timeutil::format_micros(r.now),
            read_tasks: m.and_then(|m| m.read_tasks.as_deref()).map(list),
            rejected,
            scopes: r.scopes.iter().map(ScopeDoc::of).collect(),
            tasks: m.map(|m| list(&m.tasks)),
        }
    }
}

/// One scope: the criteria window's measures, the verdict and the §11
/// evidence. Keys in sorted order.
#[derive(Serialize)]
struct ScopeDoc<'a> {
    active_connections: u64,
    availability: Option<f64>,
    backend_failures: u64,
    budget: BudgetDoc,
    client_failures: u64,
    cloud: &'static str,
    connections_meeting_sla: u64,
    connector: &'a str,
    connector_failures: u64,
    criteria: CriteriaDoc,
    #[serde(skip_serializing_if = "Option::is_none")]
    daily: Option<Vec<DailyDoc>>,
    eligible: u64,
    exception_opens_on: Option<String>,
    failing: &'a [&'static str],
    latency_ms: LatencyDoc,
    monthly_active_connections: u64,
    recommended_met: bool,
    requests: u64,
    slo: Option<f64>,
    status: &'static str,
    success: u64,
    success_rate: Option<f64>,
    throttled: u64,
    weekly_active_users: [u64; 3],
}

impl<'a> ScopeDoc<'a> {
    fn of(s: &'a ScopeReport) -> ScopeDoc<'a> {
        let m = &s.measures;
        let w = m.criteria();
        let c = &w.counts;
        ScopeDoc {
            active_connections: w.active_connections,
            availability: w.availability,
            backend_failures: c.backend_failures,
            budget: BudgetDoc::of(&s.budget),
            client_failures: c.client_failures,
            cloud: m.cloud_label(),
            connections_meeting_sla: w.connections_meeting_sla,
            connector: &m.connector,
            connector_failures: c.connector_failures,
            criteria: CriteriaDoc::of(&s.verdict.criteria),
            daily: s
                .daily
                .as_ref()
                .map(|rows| rows.iter().map(DailyDoc::of).collect()),
            eligible: c.eligible(),
            exception_opens_on: s.exception_opens_on.map(date),
            failing: &s.failing,
            latency_ms: LatencyDoc {
                p50: w.latency_ms[0],
                p95: w.latency_ms[1],
                p99: w.latency_ms[2],
            },
            monthly_active_connections: m.monthly_active_connections,
            recommended_met: s.verdict.recommended_met,
            requests: c.requests,
            slo: w.slo,
            status: s.verdict.status.as_str(),
            success: c.success,
            success_rate: w.success_rate,
            throttled: c.throttled,
            weekly_active_users: m.weekly_active_users,
        }
    }
}

#[derive(Serialize)]
struct LatencyDoc {
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

/// Each criterion, keys in sorted order.
#[derive(Serialize)]
struct CriteriaDoc {
    availability: Option<bool>,
    backend_in_production: bool,
    exception: Option<bool>,
    monthly_active_connections: bool,
    slo: Option<bool>,
    success_rate: Option<bool>,
    support_model: bool,
    weekly_active_users: bool,
}

impl CriteriaDoc {
    fn of(c: &Criteria) -> CriteriaDoc {
        CriteriaDoc {
            availability: c.availability,
            backend_in_production: c.backend_in_production,
            exception: c.exception,
            monthly_active_connections: c.monthly_active_connections,
            slo: c.slo,
            success_rate: c.success_rate,
            support_model: c.support_model,
            weekly_active_users: c.weekly_active_users,
        }
    }
}

/// `budget` of SPEC §11: `failures_left` for availability and success
/// rate, `connections_left` for the SLO.
#[derive(Serialize)]
struct BudgetDoc {
    availability: FailuresLeft,
    slo: ConnectionsLeft,
    success_rate: FailuresLeft,
}

#[derive(Serialize)]
struct FailuresLeft {
    failures_left: Option<u64>,
    recovers_on: Option<String>,
}

#[derive(Serialize)]
struct ConnectionsLeft {
    connections_left: Option<u64>,
    recovers_on: Option<String>,
}

impl BudgetDoc {
    fn of(b: &Budget) -> BudgetDoc {
        let failures = |a: &Allowance| FailuresLeft {
            failures_left: a.left,
            recovers_on: a.recovers_on.map(date),
        };
        BudgetDoc {
            availability: failures(&b.availability),
            slo: ConnectionsLeft {
                connections_left: b.slo.left,
                recovers_on: b.slo.recovers_on.map(date),
            },
            success_rate: failures(&b.success_rate),
        }
    }
}

/// One day of the criteria window, keys in sorted order.
#[derive(Serialize)]
struct DailyDoc {
    availability: Option<f64>,
    backend_failures: u64,
    client_failures: u64,
    connector_failures: u64,
    date: String,
    eligible: u64,
    requests: u64,
    success: u64,
    success_rate: Option<f64>,
    throttled: u64,
}

impl DailyDoc {
    fn of(r: &DailyRow) -> DailyDoc {
        let c = &r.counts;
        DailyDoc {
            availability: r.availability,
            backend_failures: c.backend_failures,
            client_failures: c.client_failures,
            connector_failures: c.connector_failures,
            date: date(r.date),
            eligible: c.eligible(),
            requests: c.requests,
            success: c.success,
            success_rate: r.success_rate,
            throttled: c.throttled,
        }
    }
}

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::event::{self, RejectCounts};
    use crate::engine::state::{Admission, Digest, Engine, Params, SeriesBudget};
    use crate::engine::timeutil::parse_rfc3339;
    use crate::report::Membership;

    /// The records write their keys in the order they declare them, and a
    /// `Value` object in sorted order: the same text from both proves every
    /// record (with every optional key present: `daily`, `tasks`,
    /// `read_tasks`, `members_partial`) declares its keys sorted, so the
    /// document is what the `Value` tree wrote before.
    #[test]
    fn keys_are_declared_in_sorted_order() {
        let lines = [
            r#"{"ts":"2026-11-20T10:00:00Z","connector":"c","status":200,"latency_ms":12.5,"user":"u1","connection":"k1"}"#,
            r#"{"ts":"2026-11-20T10:01:00Z","connector":"c","cloud":"gcc","status":500,"user":"u2","connection":"k2"}"#,
            r#"{"ts":"2026-11-19T09:00:00Z","connector":"d","status":429}"#,
        ]
        .join("\n");
        let mut events = Vec::new();
        event::decode_payload(lines.as_bytes(), |r| events.push(r.unwrap()));
        let digests: Vec<Digest> = events.iter().map(Digest::of).collect();
        let refs: Vec<&Digest> = digests.iter().collect();
        let cfg = Config::from_toml("").unwrap();
        let p = Params::from_config(&cfg);
        let mut e = Engine::default();
        let now = parse_rfc3339("2026-11-20T12:00:00Z").unwrap();
        let adm = Admission::report_at(now, cfg.criteria.retention_days);
        e.ingest_batch(&refs, &adm, &p, &SeriesBudget::new(100), |_, r| {
            panic!("{r:?}")
        });
        let mut rejected = RejectCounts::default();
        rejected.add(Reject::MalformedJson, 2);
        let mut r = Report::build_with(&[&e], &cfg, now, rejected, true);
        r.membership = Some(Membership {
            tasks: vec![("a".into(), 0), ("b".into(), 1)],
            read_tasks: Some(vec![("in".into(), 3)]),
            partial: true,
        });
        let direct = serde_json::to_string(&r.doc()).unwrap();
        let tree = r.to_json();
        assert_eq!(direct, serde_json::to_string(&tree).unwrap());
        // By hand: scopes c/all, c/gcc, c/public, d/all, d/public; c/all
        // holds the 200 and the 500 (no fault: the connector's), d the 429.
        let scopes = tree["scopes"].as_array().unwrap();
        assert_eq!(scopes.len(), 5);
        assert_eq!(scopes[0]["cloud"], "all");
        assert_eq!(scopes[0]["requests"], 2);
        assert_eq!(scopes[0]["connector_failures"], 1);
        assert_eq!(scopes[3]["throttled"], 1);
        assert_eq!(scopes[0]["daily"].as_array().unwrap().len(), 30);
        assert_eq!(tree["tasks"], json!(["a/0", "b/1"]));
        assert_eq!(tree["read_tasks"], json!([3]));
        assert_eq!(tree["members_partial"], true);
        assert_eq!(tree["rejected"], json!({"malformed_json": 2}));
    }
}
