//! Every rule of SPEC.md §3–§6 through the library API, case by case.
//! Expected values are worked out by hand in the comments; none is copied
//! from the program's output.

use std::io::Write;

use crate::shards::Shards;
use chrono::NaiveDate;
use connector_ga_exporter::config::{Config, ConnectorConfig, Window};
use connector_ga_exporter::engine::classify::Cloud;
use connector_ga_exporter::engine::criteria::{self, ScopeMeasures, Status, WindowMeasures};
use connector_ga_exporter::engine::event::{self, Reject, RejectCounts};
use connector_ga_exporter::engine::measure::ScopeReport;
use connector_ga_exporter::engine::state::{Admission, Counts};
use connector_ga_exporter::engine::timeutil::{self, Micros};
use connector_ga_exporter::report::{self, Report};
use serde_json::{json, Value};

// ---------------------------------------------------------------- helpers

fn t(s: &str) -> Micros {
    timeutil::parse_rfc3339(s).unwrap_or_else(|| panic!("bad time {s}"))
}

/// One event, built field by field; `line()` is its JSON.
#[derive(Clone)]
struct E {
    v: serde_json::Map<String, Value>,
}

/// An event of connector `c` at `ts` with `status` (0 = no response).
fn e(ts: &str, status: u16) -> E {
    let mut v = serde_json::Map::new();
    v.insert("ts".into(), json!(ts));
    v.insert("connector".into(), json!("c"));
    if status != 0 {
        v.insert("status".into(), json!(status));
    }
    E { v }
}

impl E {
    fn set(mut self, k: &str, val: Value) -> E {
        self.v.insert(k.into(), val);
        self
    }
    fn connector(self, c: &str) -> E {
        self.set("connector", json!(c))
    }
    fn cloud(self, c: &str) -> E {
        self.set("cloud", json!(c))
    }
    fn fault(self, f: &str) -> E {
        self.set("fault", json!(f))
    }
    fn user(self, u: &str) -> E {
        self.set("user", json!(u))
    }
    fn conn(self, c: &str) -> E {
        self.set("connection", json!(c))
    }
    fn latency(self, ms: f64) -> E {
        self.set("latency_ms", json!(ms))
    }
    fn line(&self) -> String {
        Value::Object(self.v.clone()).to_string()
    }
}

/// `n` copies of an event.
fn times(n: usize, ev: E) -> Vec<E> {
    vec![ev; n]
}

/// What `report --now NOW` does, through the library: decode, admit (too_old
/// from `now`, events after `now` outside every window), measure.
fn run(cfg: &str, events: &[E], now: &str) -> Report {
    let cfg = Config::from_toml(cfg).expect("config");
    run_cfg(&cfg, events, now)
}

fn run_cfg(cfg: &Config, events: &[E], now: &str) -> Report {
    let now = t(now);
    let mut store = Shards::from_config(cfg, 4);
    let adm = Admission::report_at(now, cfg.criteria.retention_days);
    let payload: String = events.iter().map(|e| e.line() + "\n").collect();
    let mut rejected = RejectCounts::default();
    let mut evs = Vec::new();
    event::decode_payload(payload.as_bytes(), |r| match r {
        Ok(ev) => evs.push(ev),
        Err(r) => rejected.add(r, 1),
    });
    store.ingest_batch(evs, &adm, &mut rejected);
    store.report(cfg, now, rejected)
}

fn scope<'r>(r: &'r Report, connector: &str, cloud: &str) -> &'r ScopeReport {
    r.scopes
        .iter()
        .find(|s| s.measures.connector == connector && s.measures.cloud_label() == cloud)
        .unwrap_or_else(|| panic!("no scope {connector}/{cloud}"))
}

/// The criteria-window counts of connector `c`, cloud `all`.
fn counts(r: &Report) -> Counts {
    scope(r, "c", "all").measures.criteria().counts.clone()
}

fn window(s: &ScopeReport, w: Window) -> &WindowMeasures {
    s.measures
        .windows
        .iter()
        .find(|m| m.window == w)
        .expect("window exported")
}

fn close(got: Option<f64>, want: f64) -> bool {
    got.is_some_and(|g| (g - want).abs() < 1e-12)
}

const NOW: &str = "2026-11-20T12:00:00Z";
const TODAY: &str = "2026-11-20T10:00:00Z";
/// Attested connector `c`, a week-long criteria floor, defaults otherwise.
const ATTESTED: &str =
    "[connectors.c]\nbackend_in_production = true\nsupport_model_attested = true\n";

// ------------------------------------------------------ §3 classification

/// Each status class, and what each status counts as.
#[test]
fn status_classes_and_outcomes() {
    // (status, class index [1xx,2xx,3xx,4xx,5xx,none], outcome)
    let cases: &[(u16, usize, &str)] = &[
        (100, 0, "success"),
        (199, 0, "success"),
        (200, 1, "success"),
        (204, 1, "success"),
        (299, 1, "success"),
        (301, 2, "success"),
        (399, 2, "success"),
        (400, 3, "client"),
        (404, 3, "client"),
        (429, 3, "throttled"),
        (499, 3, "client"),
        (500, 4, "connector"),
        (599, 4, "connector"),
        (0, 5, "connector"), // no response
    ];
    for &(status, class, outcome) in cases {
        let r = run("", &[e(TODAY, status)], NOW);
        let c = counts(&r);
        let mut want_class = [0u64; 6];
        want_class[class] = 1;
        assert_eq!(c.class, want_class, "class of {status}");
        let got = (
            c.success,
            c.throttled,
            c.client_failures,
            c.connector_failures,
            c.backend_failures,
        );
        let want = match outcome {
            "success" => (1, 0, 0, 0, 0),
            "throttled" => (0, 1, 0, 0, 0),
            "client" => (0, 0, 1, 0, 0),
            "connector" => (0, 0, 0, 1, 0),
            _ => unreachable!(),
        };
        assert_eq!(got, want, "outcome of {status}");
        assert_eq!(c.requests, 1);
    }
    // Absent and null status are "no response" too.
    let r = run("", &[e(TODAY, 200).set("status", Value::Null)], NOW);
    assert_eq!(counts(&r).class, [0, 0, 0, 0, 0, 1]);
}

/// Status 429 is counted, and out of every ratio, numerator and denominator.
#[test]
fn throttled_out_of_every_ratio() {
    let mut evs = times(10, e(TODAY, 200).conn("k").user("u1"));
    evs.push(e(TODAY, 500).conn("k")); // connector failure
    evs.extend(times(40, e(TODAY, 429).conn("k")));
    evs.extend(times(
        40,
        e(TODAY, 429).fault("connector").conn("t").user("thr"),
    ));
    evs.extend(times(9, e(TODAY, 429).fault("backend")));
    let r = run("", &evs, NOW);
    let s = scope(&r, "c", "all");
    let w = s.measures.criteria();
    // requests 10 + 1 + 89 = 100; throttled 89; eligible 11.
    assert_eq!(
        (w.counts.requests, w.counts.throttled, w.counts.eligible()),
        (100, 89, 11)
    );
    assert_eq!(
        w.counts.failures(),
        1,
        "a 429 with a fault is not a failure"
    );
    // availability = 1 - 1/11; success rate = 10/11.
    assert!(
        close(w.availability, 1.0 - 1.0 / 11.0),
        "{:?}",
        w.availability
    );
    assert!(close(w.success_rate, 10.0 / 11.0), "{:?}", w.success_rate);
    // SLO: k (11 eligible, 1 failure: 0.909 < bar) is active; t has only 429s
    // and is not: 0 of 1.
    assert_eq!((w.active_connections, w.connections_meeting_sla), (1, 0));
    assert_eq!(w.slo, Some(0.0));
    // Weekly users and MAC count throttled events: users u1, thr; k and t.
    assert_eq!(s.measures.weekly_active_users, [2, 0, 0]);
    assert_eq!(s.measures.monthly_active_connections, 2);

    // Nothing but 429s: every ratio undefined.
    let r = run("", &times(5, e(TODAY, 429).conn("k")), NOW);
    let w = scope(&r, "c", "all").measures.criteria().clone();
    assert_eq!((w.availability, w.success_rate, w.slo), (None, None, None));
}

/// Origin of a failure: `fault` when present, else client for 4xx, else the
/// configured unattributed origin; `fault` ignored on success and 429.
#[test]
fn origin_rules() {
    // (status, fault, unattributed_failure_origin, outcome)
    let cases: &[(u16, Option<&str>, &str, &str)] = &[
        (404, None, "connector", "client"),
        (404, None, "backend", "client"), // the configured origin never applies to 4xx
        (400, None, "client", "client"),
        (404, Some("connector"), "connector", "connector"),
        (404, Some("backend"), "connector", "backend"),
        (500, None, "connector", "connector"),
        (500, None, "backend", "backend"),
        (599, None, "client", "client"),
        (503, Some("client"), "connector", "client"),
        (503, Some("backend"), "connector", "backend"),
        (502, Some("connector"), "backend", "connector"),
        (0, None, "connector", "connector"),
        (0, None, "backend", "backend"),
        (0, Some("client"), "connector", "client"),
        (200, Some("backend"), "connector", "success"),
        (302, Some("connector"), "connector", "success"),
        (429, Some("connector"), "connector", "throttled"),
    ];
    for &(status, fault, origin, want) in cases {
        let cfg = format!("[criteria]\nunattributed_failure_origin = \"{origin}\"\n");
        let mut ev = e(TODAY, status);
        if let Some(f) = fault {
            ev = ev.fault(f);
        }
        let c = counts(&run(&cfg, &[ev], NOW));
        let got = match (
            c.success,
            c.throttled,
            c.connector_failures,
            c.backend_failures,
            c.client_failures,
        ) {
            (1, 0, 0, 0, 0) => "success",
            (0, 1, 0, 0, 0) => "throttled",
            (0, 0, 1, 0, 0) => "connector",
            (0, 0, 0, 1, 0) => "backend",
            (0, 0, 0, 0, 1) => "client",
            other => panic!("{other:?}"),
        };
        assert_eq!(
            got, want,
            "status {status} fault {fault:?} unattributed {origin}"
        );
    }
}

// ------------------------------------------------------------ §5 measures

/// Backend failures are out of availability, above and below the line.
#[test]
fn backend_failures_out_of_availability() {
    let mut evs = times(80, e(TODAY, 200).conn("a"));
    evs.extend(times(9, e(TODAY, 500).conn("a"))); // connector (default origin)
    evs.extend(times(10, e(TODAY, 503).fault("backend").conn("a")));
    evs.push(e(TODAY, 404).conn("a")); // client
    evs.extend(times(
        3,
        e(TODAY, 503).fault("backend").conn("only_backend"),
    ));
    let r = run("", &evs, NOW);
    let w = scope(&r, "c", "all").measures.criteria().clone();
    // eligible = 80 + 9 + 10 + 1 + 3 = 103, backend = 13, connector = 9.
    assert_eq!(
        (
            w.counts.eligible(),
            w.counts.backend_failures,
            w.counts.connector_failures
        ),
        (103, 13, 9)
    );
    // availability = 1 - 9 / (103 - 13) = 1 - 9/90 = 0.9 exactly
    // (not 1 - 9/103, nor 1 - 22/103).
    assert!(close(w.availability, 0.9), "{:?}", w.availability);
    // success rate keeps backend failures in its denominator: 80/103.
    assert!(close(w.success_rate, 80.0 / 103.0));
    // Connection a: 90 counted events, 9 failures; only_backend: not active.
    assert_eq!(w.active_connections, 1);

    // With only backend failures availability is undefined, never 1.0,
    // while the success rate is defined (0 / 3).
    let r = run("", &times(3, e(TODAY, 503).fault("backend").conn("x")), NOW);
    let w = scope(&r, "c", "all").measures.criteria().clone();
    assert_eq!(w.availability, None);
    assert_eq!(w.success_rate, Some(0.0));
    assert_eq!(w.slo, None, "no active connection");
}

/// success_rate_formula = "isv": (success - failures) / eligible.
#[test]
fn isv_success_rate_formula() {
    let mut evs = times(70, e(TODAY, 200));
    evs.extend(times(10, e(TODAY, 500))); // connector
    evs.extend(times(10, e(TODAY, 503).fault("backend")));
    evs.extend(times(10, e(TODAY, 404))); // client
    evs.extend(times(5, e(TODAY, 429)));
    // eligible = 100, success = 70, failures = 30.
    let ga = run("", &evs, NOW);
    assert!(close(
        scope(&ga, "c", "all").measures.criteria().success_rate,
        0.70
    ));
    let isv = run("[criteria]\nsuccess_rate_formula = \"isv\"\n", &evs, NOW);
    // (70 - 30) / 100 = 0.40
    assert!(close(
        scope(&isv, "c", "all").measures.criteria().success_rate,
        0.40
    ));
}

/// Ratios with a zero denominator are undefined: null in JSON, undecided.
#[test]
fn undefined_ratios_are_null_and_undecided() {
    // min_eligible_requests = 0 so only the undefined ratio keeps them undecided.
    let cfg = format!("[criteria]\nmin_eligible_requests = 0\n{ATTESTED}");
    let r = run(&cfg, &times(4, e(TODAY, 429).user("u")), NOW);
    let j = r.to_json();
    let s = &j["scopes"][0];
    assert_eq!(s["cloud"], "all");
    for k in ["availability", "success_rate", "slo"] {
        assert!(s[k].is_null(), "{k}: {}", s[k]);
        assert!(s["criteria"][k].is_null(), "criteria.{k}");
    }
    for p in ["p50", "p95", "p99"] {
        assert!(s["latency_ms"][p].is_null());
    }
    assert!(s["criteria"]["exception"].is_null());
    assert_eq!(s["status"], "insufficient_data");

    // Only backend failures: availability and slo null, success rate 0.
    let r = run(
        &cfg,
        &times(4, e(TODAY, 503).fault("backend").conn("k")),
        NOW,
    );
    let j = r.to_json();
    let s = &j["scopes"][0];
    assert!(s["availability"].is_null());
    assert!(s["slo"].is_null());
    assert_eq!(s["success_rate"].as_f64(), Some(0.0));
    assert_eq!(s["criteria"]["success_rate"], json!(false));
    assert_eq!(s["status"], "insufficient_data");
}

/// SLO: the share of active connections whose own availability >= 0.9995.
#[test]
fn slo_per_connection_bar() {
    let mut evs = Vec::new();
    // a: 1999 ok + 1 connector failure: 1 - 1/2000 = 0.9995 → meets (>=).
    evs.extend(times(1999, e(TODAY, 200).conn("a")));
    evs.push(e(TODAY, 500).conn("a"));
    // b: 1998 ok + 1 failure: 1 - 1/1999 = 0.99949975 → misses.
    evs.extend(times(1998, e(TODAY, 200).conn("b")));
    evs.push(e(TODAY, 0).fault("connector").conn("b"));
    // c: as a, plus 7 backend failures and 5 throttled, which take no part:
    // 1 - 1/2000 → meets.
    evs.extend(times(1999, e(TODAY, 200).conn("c")));
    evs.push(e(TODAY, 500).conn("c"));
    evs.extend(times(7, e(TODAY, 503).fault("backend").conn("c")));
    evs.extend(times(5, e(TODAY, 429).conn("c")));
    // d: only backend failures, e: only 429s → not active.
    evs.extend(times(3, e(TODAY, 503).fault("backend").conn("d")));
    evs.extend(times(3, e(TODAY, 429).conn("e")));
    // f: client failures count in the denominator, not as failures: 1.0.
    evs.extend(times(2, e(TODAY, 404).conn("f")));
    let r = run("", &evs, NOW);
    let w = scope(&r, "c", "all").measures.criteria().clone();
    // active: a, b, c, f = 4; meeting: a, c, f = 3.
    assert_eq!((w.active_connections, w.connections_meeting_sla), (4, 3));
    assert!(close(w.slo, 0.75));
    // The scope's own availability: connector failures 3 over eligible
    // (2000 + 1999 + 2007 + 3 + 2 = 6011) - backend (7 + 3 = 10) = 6001.
    assert!(
        close(w.availability, 1.0 - 3.0 / 6001.0),
        "{:?}",
        w.availability
    );

    // cloud = all sees one connection once, its events summed over clouds.
    let evs = vec![
        e(TODAY, 200).conn("x").cloud("public"),
        e(TODAY, 500).conn("x").cloud("gcc"),
    ];
    let r = run("", &evs, NOW);
    let slo = |cloud| {
        let w = scope(&r, "c", cloud).measures.criteria();
        (w.active_connections, w.connections_meeting_sla, w.slo)
    };
    assert_eq!(slo("public"), (1, 1, Some(1.0)));
    assert_eq!(slo("gcc"), (1, 0, Some(0.0)));
    // x over all clouds: 2 counted, 1 failure → 0.5 < bar.
    assert_eq!(slo("all"), (1, 0, Some(0.0)));
}

// ----------------------------------------------------------- §4 time

/// Week k covers D-7k-6 ..= D-7k, cut at UTC midnight.
#[test]
fn week_boundaries_at_utc_midnight() {
    // now: Sunday 2026-11-22 → week 0 Mon Nov 16..Sun Nov 22, week 1
    // Nov 9..15, week 2 Nov 2..8.
    let now = "2026-11-22T12:00:00Z";
    let evs = vec![
        e("2026-11-22T12:00:00Z", 200).user("now"), // w0 (ts == now is in)
        e("2026-11-22T12:00:00.001Z", 200).user("after"), // after now: none
        e("2026-11-16T00:00:00Z", 200).user("w0_first"), // w0
        e("2026-11-15T23:59:59.999Z", 200).user("w1_last"), // w1
        e("2026-11-09T00:00:00Z", 200).user("w1_first"), // w1
        e("2026-11-08T23:59:59.999Z", 200).user("w2_last"), // w2
        e("2026-11-02T00:00:00Z", 429).user("w2_first"), // w2 (throttled counts)
        e("2026-11-01T23:59:59.999Z", 200).user("none"), // before week 2
        e("2026-11-16T08:00:00+09:00", 200).user("tz"), // = Nov 15 23:00Z: w1
        e("2026-11-17T00:00:00Z", 200).user("both"), // w0
        e("2026-11-14T00:00:00Z", 200).user("both"), // w1
    ];
    let r = run("", &evs, now);
    // w0 = {now, w0_first, both} = 3; w1 = {w1_last, w1_first, tz, both} = 4;
    // w2 = {w2_last, w2_first} = 2.
    assert_eq!(
        scope(&r, "c", "all").measures.weekly_active_users,
        [3, 4, 2]
    );
}

/// MAC: distinct connections over days D-29 ..= D, whatever the criteria
/// window; the criteria window (30 d by default) has the same edge.
#[test]
fn mac_window_edge() {
    let evs = vec![
        e("2026-10-22T00:00:00Z", 200).conn("d29"),     // D-29: in
        e("2026-10-21T23:59:59.999Z", 200).conn("d30"), // D-30: out
        e("2026-11-20T00:00:00Z", 200).conn("today"),
        e("2026-11-20T23:00:00Z", 200).conn("after_now"), // after now: out
    ];
    let r = run("", &evs, NOW);
    let s = scope(&r, "c", "all");
    assert_eq!(s.measures.monthly_active_connections, 2); // d29, today
    assert_eq!(s.measures.criteria().counts.requests, 2);

    // A 7-day criteria window does not shrink the MAC window.
    let r = run("[criteria]\nwindow_days = 7\n", &evs, NOW);
    let s = scope(&r, "c", "all");
    assert_eq!(s.measures.monthly_active_connections, 2);
    assert_eq!(s.measures.criteria().counts.requests, 1); // today only
    assert_eq!(r.to_json()["criteria_window_days"], 7);
}

/// Events on a day before D - retention_days + 1 are too_old; that day is in.
#[test]
fn too_old_at_retention_edge() {
    // D = Nov 20, retention 35 → first kept day Oct 17.
    let evs = vec![
        e("2026-10-17T00:00:00Z", 200),
        e("2026-10-16T23:59:59.999Z", 200),
        e("2026-10-16T00:00:00Z", 200),
        e(TODAY, 200),
    ];
    let r = run("", &evs, NOW);
    assert_eq!(r.rejected.get(Reject::TooOld), 2);
    assert_eq!(r.rejected.total(), 2);
    // retention 40 → first kept day Oct 12: nothing too old.
    let r = run("[criteria]\nretention_days = 40\n", &evs, NOW);
    assert_eq!(r.rejected.get(Reject::TooOld), 0);
    // A scope whose only events are too old does not exist.
    let r = run("", &[e("2026-10-01T00:00:00Z", 200).connector("gone")], NOW);
    assert!(r.scopes.is_empty());
    assert_eq!(r.rejected.get(Reject::TooOld), 1);
}

/// Without --now, `now` is the latest valid event; retention and windows
/// follow it. Through `report::report_file`, as the command runs.
#[test]
fn now_defaults_to_latest_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ev.ndjson");
    let mut f = std::fs::File::create(&path).unwrap();
    for ev in [
        e("2026-11-20T07:59:59Z", 500),   // not in the 1h window
        e("2026-11-20T08:15:00.5Z", 200), // latest valid → now
        e("2026-11-20T08:00:00Z", 200),
        e("2026-10-17T00:00:00Z", 200), // first retained day
        e("2026-10-16T23:59:59Z", 200), // too_old
    ] {
        writeln!(f, "{}", ev.line()).unwrap();
    }
    // A later but invalid event does not move `now`.
    writeln!(
        f,
        r#"{{"ts":"2026-11-21T00:00:00Z","connector":"c","status":"200"}}"#
    )
    .unwrap();
    drop(f);
    let cfg = Config::from_toml("").unwrap();
    let fallback = t("2030-01-01T00:00:00Z");
    let r = report::report_file(&path, &cfg, None, fallback, 2).unwrap();
    assert_eq!(r.now, t("2026-11-20T08:15:00.5Z"));
    assert_eq!(r.rejected.get(Reject::TooOld), 1);
    assert_eq!(r.rejected.get(Reject::InvalidStatus), 1);
    let s = scope(&r, "c", "all");
    // 1h window at 08:15:00.5: hour 08 → the 08:00 and 08:15 events.
    assert_eq!(window(s, Window::Hours(1)).counts.requests, 2);
    // 30d window: Oct 22..Nov 20 → 3 events (the Oct 17 one is outside).
    assert_eq!(s.measures.criteria().counts.requests, 3);
    assert_eq!(r.to_json()["now"], "2026-11-20T08:15:00.500000Z");

    // No valid event at all: the fallback (wall clock) is `now`.
    std::fs::write(&path, "not json\n").unwrap();
    let r = report::report_file(&path, &cfg, None, fallback, 1).unwrap();
    assert_eq!(r.now, fallback);
    assert!(r.scopes.is_empty());
    assert_eq!(r.rejected.get(Reject::MalformedJson), 1);
}

/// Hour windows of N hours cover the N UTC hours ending with now's hour.
#[test]
fn hour_windows() {
    let cfg = "[criteria]\nwindows = [\"1h\", \"6h\", \"1d\", \"30d\"]\n";
    let now = "2026-11-20T12:30:00Z";
    let evs = vec![
        e("2026-11-20T11:59:59.999Z", 500).conn("old"), // hour 11: 6h, 1d
        e("2026-11-20T12:00:00Z", 200).conn("k"),       // hour 12: 1h
        e("2026-11-20T12:30:00Z", 200).conn("k"),       // == now: 1h
        e("2026-11-20T12:30:00.001Z", 500),             // after now: nowhere
        e("2026-11-20T07:00:00Z", 200),                 // hour 7: 6h (hours 7..12)
        e("2026-11-20T06:59:59.999Z", 200),             // hour 6: 1d only
        e("2026-11-20T00:00:00Z", 200),                 // 1d
        e("2026-11-19T23:59:59.999Z", 200),             // 30d only
    ];
    let r = run(cfg, &evs, now);
    let s = scope(&r, "c", "all");
    let req = |w| window(s, w).counts.requests;
    assert_eq!(req(Window::Hours(1)), 2);
    assert_eq!(req(Window::Hours(6)), 4);
    assert_eq!(req(Window::Days(1)), 6);
    assert_eq!(req(Window::Days(30)), 7);
    // The 11:59:59.999 failure is outside 1h: 1h availability 1.0; in 1d:
    // 1 - 1/6.
    assert_eq!(window(s, Window::Hours(1)).availability, Some(1.0));
    assert!(close(
        window(s, Window::Days(1)).availability,
        1.0 - 1.0 / 6.0
    ));
    // SLO in 1h: only k is active there.
    assert_eq!(window(s, Window::Hours(1)).active_connections, 1);
    assert_eq!(window(s, Window::Days(1)).active_connections, 2);
}

// ------------------------------------------------------------ §6 verdict

/// min_eligible_requests: 999 eligible is undecided, 1000 is decided.
#[test]
fn min_eligible_requests_boundary() {
    for (n, want) in [(999, Status::InsufficientData), (1000, Status::GaEligible)] {
        let mut evs: Vec<E> = (0..n)
            .map(|i| e(TODAY, 200).conn(&format!("k{}", i % 20)))
            .collect();
        // Throttled events are not eligible: they never tip the balance.
        evs.extend(times(50, e(TODAY, 429).conn("k0")));
        let r = run(ATTESTED, &evs, NOW);
        let s = scope(&r, "c", "all");
        assert_eq!(s.measures.criteria().counts.eligible(), n as u64);
        assert_eq!(s.verdict.status, want, "{n} eligible");
        let c = s.verdict.criteria;
        if n == 999 {
            assert_eq!(
                (c.availability, c.slo, c.success_rate, c.exception),
                (None, None, None, None)
            );
        } else {
            assert_eq!(
                (c.availability, c.slo, c.success_rate),
                (Some(true), Some(true), Some(true))
            );
        }
    }
}

/// success rate must be strictly above 0.80: exactly 0.80 fails.
#[test]
fn success_rate_strictly_above_threshold() {
    // (successes, client failures) out of 1000 eligible → (rate, pass, status)
    for (ok, status) in [(800, Status::NotEligible), (801, Status::GaEligible)] {
        let mut evs = times(ok, e(TODAY, 200).conn("k"));
        evs.extend(times(1000 - ok, e(TODAY, 404).conn("k")));
        let r = run(ATTESTED, &evs, NOW);
        let s = scope(&r, "c", "all");
        let w = s.measures.criteria();
        assert!(close(w.success_rate, ok as f64 / 1000.0));
        // client failures do not touch availability: 1 - 0/1000.
        assert_eq!(w.availability, Some(1.0));
        assert_eq!(s.verdict.criteria.success_rate, Some(ok > 800), "{ok}/1000");
        assert_eq!(s.verdict.status, status);
        // No preview_since: the exception cannot pass.
        assert_eq!(s.verdict.criteria.exception, Some(false));
    }
}

/// Measures of a scope whose criteria-window counts give exactly the given
/// ratios, for verdict tests (the verdict decides from the counts, in exact
/// rationals). `eligible` below `min_eligible_requests` (1000) is used as
/// is; from 1000 up it is scaled by 10,000 so that ratios such as 0.9995
/// and 0.4999 are whole counts: e.g. availability 0.9995 over 10,000,000
/// eligible is 5,000 connector failures. An undefined availability makes
/// every eligible event a backend failure (denominator 0); an undefined slo
/// has no active connection.
fn measures(
    availability: Option<f64>,
    slo: Option<f64>,
    success_rate: Option<f64>,
    eligible: u64,
) -> ScopeMeasures {
    let e = if eligible >= 1000 {
        eligible * 10_000
    } else {
        eligible
    };
    let whole = |ratio: f64| (ratio * e as f64).round() as u64;
    let (success, connector_failures, backend_failures) = match availability {
        Some(a) => (whole(success_rate.unwrap_or(0.0)), whole(1.0 - a), 0),
        None => (0, 0, e),
    };
    let client_failures = e - success - connector_failures - backend_failures;
    let (active, meeting) = match slo {
        Some(s) => (10_000, (s * 10_000.0).round() as u64),
        None => (0, 0),
    };
    let w = WindowMeasures {
        window: Window::Days(30),
        counts: Counts {
            requests: e,
            success,
            connector_failures,
            backend_failures,
            client_failures,
            ..Counts::default()
        },
        availability,
        success_rate,
        slo,
        active_connections: active,
        connections_meeting_sla: meeting,
        latency_ms: [None; 3],
    };
    ScopeMeasures {
        connector: "c".into(),
        cloud: Some(Cloud::Public),
        windows: vec![w],
        criteria_window: 0,
        weekly_active_users: [0; 3],
        monthly_active_connections: 0,
    }
}

fn attested(preview_since: Option<&str>) -> ConnectorConfig {
    ConnectorConfig {
        backend_in_production: true,
        support_model_attested: true,
        preview_since: preview_since.map(|d| d.parse::<NaiveDate>().unwrap()),
    }
}

/// The exception: today >= preview_since + 6 calendar months, the day
/// clamped to the month's end; the day before fails, the day itself passes.
#[test]
fn exception_six_month_boundary() {
    let cfg = Config::from_toml("").unwrap();
    // Success rate 0.6: fails the 0.80 bar, passes the exception's 0.50.
    let m = measures(Some(1.0), Some(1.0), Some(0.6), 1000);
    let cases: &[(&str, &str, bool)] = &[
        // Aug 31 + 6 months = Feb 28 (2027 is not a leap year).
        ("2026-08-31", "2027-02-27T23:59:59.999999Z", false),
        ("2026-08-31", "2027-02-28T00:00:00Z", true),
        // Aug 31 2027 + 6 months = Feb 29 2028 (leap year).
        ("2027-08-31", "2028-02-28T23:59:59Z", false),
        ("2027-08-31", "2028-02-29T00:00:00Z", true),
        ("2027-08-31", "2028-03-01T00:00:00Z", true),
        // Mar 31 + 6 = Sep 30 (30-day month).
        ("2026-03-31", "2026-09-29T12:00:00Z", false),
        ("2026-03-31", "2026-09-30T00:00:00Z", true),
        // No clamping: May 20 + 6 = Nov 20.
        ("2026-05-20", "2026-11-19T23:59:59Z", false),
        ("2026-05-20", "2026-11-20T00:00:00Z", true),
        // Across a year end: Jul 15 + 6 = Jan 15.
        ("2026-07-15", "2027-01-14T00:00:00Z", false),
        ("2026-07-15", "2027-01-15T00:00:00Z", true),
    ];
    for &(since, now, pass) in cases {
        let a = attested(Some(since));
        let v = criteria::verdict(&m, Some(&a), t(now), &cfg);
        assert_eq!(
            v.criteria.exception,
            Some(pass),
            "preview {since}, now {now}"
        );
        let want = if pass {
            Status::GaEligibleByException
        } else {
            Status::NotEligible
        };
        assert_eq!(v.status, want, "preview {since}, now {now}");
    }
    // No preview_since, or a connector absent from the config: false.
    let v = criteria::verdict(&m, Some(&attested(None)), t(NOW), &cfg);
    assert_eq!(
        (v.criteria.exception, v.status),
        (Some(false), Status::NotEligible)
    );
    let v = criteria::verdict(&m, None, t(NOW), &cfg);
    assert_eq!(
        (v.criteria.exception, v.status),
        (Some(false), Status::NotEligible)
    );
    assert!(!v.criteria.backend_in_production && !v.criteria.support_model);
}

/// Status precedence and the exception's own conditions, table-driven.
#[test]
fn status_precedence() {
    let cfg = Config::from_toml("").unwrap();
    let long_ago = attested(Some("2025-01-01"));
    let now = t(NOW);
    // (availability, slo, success_rate, eligible, attested?, status, exception)
    type Case = (
        Option<f64>,
        Option<f64>,
        Option<f64>,
        u64,
        bool,
        Status,
        Option<bool>,
    );
    let cases: &[Case] = &[
        // Too few requests beats everything, even failing attestations and ratios.
        (
            Some(0.5),
            Some(0.0),
            Some(0.1),
            999,
            false,
            Status::InsufficientData,
            None,
        ),
        // Enough requests but one ratio undefined (no active connection).
        (
            Some(1.0),
            None,
            Some(0.9),
            5000,
            true,
            Status::InsufficientData,
            None,
        ),
        (
            None,
            Some(1.0),
            Some(0.9),
            5000,
            false,
            Status::InsufficientData,
            None,
        ),
        // Everything passes: ga_eligible beats ga_eligible_by_exception.
        (
            Some(1.0),
            Some(1.0),
            Some(0.9),
            1000,
            true,
            Status::GaEligible,
            Some(true),
        ),
        // Thresholds are inclusive for availability (0.9995) and slo (0.995).
        (
            Some(0.9995),
            Some(0.995),
            Some(0.81),
            1000,
            true,
            Status::GaEligible,
            Some(true),
        ),
        // Success rate 0.5 passes only the exception (>= 0.50).
        (
            Some(1.0),
            Some(1.0),
            Some(0.5),
            1000,
            true,
            Status::GaEligibleByException,
            Some(true),
        ),
        (
            Some(1.0),
            Some(1.0),
            Some(0.4999),
            1000,
            true,
            Status::NotEligible,
            Some(false),
        ),
        // The exception still needs every other required criterion.
        (
            Some(0.9994),
            Some(1.0),
            Some(0.6),
            1000,
            true,
            Status::NotEligible,
            Some(false),
        ),
        (
            Some(1.0),
            Some(0.994),
            Some(0.9),
            1000,
            true,
            Status::NotEligible,
            Some(false),
        ),
        (
            Some(1.0),
            Some(1.0),
            Some(0.9),
            1000,
            false,
            Status::NotEligible,
            Some(false),
        ),
    ];
    for (i, &(a, s, sr, eligible, att, status, exception)) in cases.iter().enumerate() {
        let m = measures(a, s, sr, eligible);
        let v = criteria::verdict(&m, att.then_some(&long_ago), now, &cfg);
        assert_eq!(v.status, status, "case {i}");
        assert_eq!(v.criteria.exception, exception, "case {i}");
    }
    // The failing criteria are the ones reported false.
    let m = measures(Some(0.99), Some(1.0), Some(0.7), 1000);
    let v = criteria::verdict(&m, Some(&attested(None)), now, &cfg);
    let failing: Vec<&str> = v
        .criteria
        .named()
        .iter()
        .filter(|(_, c)| *c == Some(false))
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        failing,
        [
            "availability",
            "success_rate",
            "weekly_active_users",
            "monthly_active_connections",
            "exception"
        ]
    );
    // Recommended criteria: 500 users in each of 3 weeks and 50 connections.
    let mut m = measures(Some(1.0), Some(1.0), Some(0.9), 1000);
    for (wau, mac, met) in [
        ([500, 500, 500], 50, true),
        ([500, 499, 500], 50, false),
        ([600, 600, 600], 49, false),
    ] {
        m.weekly_active_users = wau;
        m.monthly_active_connections = mac;
        let v = criteria::verdict(&m, Some(&long_ago), now, &cfg);
        assert_eq!(v.recommended_met, met, "{wau:?} {mac}");
        // Recommended criteria never change the status.
        assert_eq!(v.status, Status::GaEligible);
    }
}

/// Latency quantiles: nearest rank over every event carrying latency_ms in
/// the window (throttled and failed ones too).
#[test]
fn latency_nearest_rank() {
    let mut evs: Vec<E> = (1..=100).map(|v| e(TODAY, 200).latency(v as f64)).collect();
    evs.push(e(TODAY, 200)); // no latency: not a sample
    let r = run("", &evs, NOW);
    // n = 100: ranks ceil(50) = 50, ceil(95) = 95, ceil(99) = 99.
    assert_eq!(
        scope(&r, "c", "all").measures.criteria().latency_ms,
        [Some(50.0), Some(95.0), Some(99.0)]
    );

    let evs = vec![
        e(TODAY, 200).latency(20.0),
        e(TODAY, 500).latency(3000.0),
        e(TODAY, 200).latency(100.0),
        e(TODAY, 429).latency(5.0),
        e("2026-10-01T00:00:00Z", 200).latency(1.0), // too old: not a sample
    ];
    let r = run("", &evs, NOW);
    // sorted 5, 20, 100, 3000 (n = 4): p50 rank 2 = 20; p95 rank ceil(3.8) =
    // 4 = 3000; p99 rank 4 = 3000.
    assert_eq!(
        scope(&r, "c", "all").measures.criteria().latency_ms,
        [Some(20.0), Some(3000.0), Some(3000.0)]
    );
}

/// A scope exists once it has a valid event inside retention (SPEC §5): at
/// `--now`, a connector whose only events come after `now` does not exist
/// yet. Regression: such scopes were listed with all-zero measures.
#[test]
fn scope_with_only_events_after_now_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ev.ndjson");
    let lines: Vec<String> = [
        e("2026-11-20T10:00:00Z", 200).connector("early"),
        e("2026-11-20T12:00:00Z", 200).connector("at_now"), // ts == now: in
        e("2026-11-20T12:00:00.000001Z", 200).connector("later"),
        e("2026-11-21T00:00:00Z", 200)
            .connector("later")
            .cloud("gcc"),
        e("2026-11-21T00:00:00Z", 200)
            .connector("early")
            .cloud("gcc"),
    ]
    .iter()
    .map(E::line)
    .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    let cfg = Config::from_toml("").unwrap();
    let r = report::report_file(&path, &cfg, Some(t(NOW)), t(NOW), 1).unwrap();
    let scopes: Vec<(String, &str)> = r
        .scopes
        .iter()
        .map(|s| (s.measures.connector.clone(), s.measures.cloud_label()))
        .collect();
    let want = [
        ("at_now", "all"),
        ("at_now", "public"),
        ("early", "all"),
        ("early", "public"),
    ];
    assert_eq!(
        scopes,
        want.iter()
            .map(|(c, k)| (c.to_string(), *k))
            .collect::<Vec<_>>()
    );
    // Events after `now` are not rejected either.
    assert_eq!(r.rejected.total(), 0);
}
