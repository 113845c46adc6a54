//! SPEC §11 through the library: the budget boundary (n further failures
//! keep a criterion true, n + 1 make it false), exact thresholds at the
//! boundary, and `recovers_on` on small corpora. Every expected value is
//! worked out in integers in the comments or by a checker that shares no
//! code with `budget.rs`.

use crate::shards::Shards;
use connector_ga_exporter::config::Config;
use connector_ga_exporter::engine::event::{self, RejectCounts};
use connector_ga_exporter::engine::measure::ScopeReport;
use connector_ga_exporter::engine::state::Admission;
use connector_ga_exporter::engine::timeutil::{self, Micros};
use connector_ga_exporter::report::Report;

fn t(s: &str) -> Micros {
    timeutil::parse_rfc3339(s).unwrap_or_else(|| panic!("bad time {s}"))
}

const NOW: &str = "2026-11-20T12:00:00Z";

/// `n` events on `day` (YYYY-MM-DD) at noon minus a second, with `status`,
/// optional `fault` and connection.
fn events(n: u64, day: &str, status: u16, fault: Option<&str>, conn: &str) -> Vec<String> {
    (0..n)
        .map(|_| {
            let f = fault.map_or(String::new(), |f| format!(",\"fault\":\"{f}\""));
            format!(
                "{{\"ts\":\"{day}T11:59:59Z\",\"connector\":\"c\",\"status\":{status}{f},\"connection\":\"{conn}\"}}"
            )
        })
        .collect()
}

fn report(cfg: &Config, lines: &[String], now: &str) -> Report {
    let now = t(now);
    let mut store = Shards::from_config(cfg, 1);
    let adm = Admission::report_at(now, cfg.criteria.retention_days);
    let payload: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let mut rejected = RejectCounts::default();
    let mut evs = Vec::new();
    event::decode_payload(payload.as_bytes(), |r| match r {
        Ok(ev) => evs.push(ev),
        Err(r) => rejected.add(r, 1),
    });
    assert_eq!(rejected.total(), 0, "test corpus has no rejection");
    store.ingest_batch(evs, &adm, &mut rejected);
    store.report_with(cfg, now, rejected, true)
}

fn all(r: &Report) -> &ScopeReport {
    r.scopes
        .iter()
        .find(|s| s.measures.cloud.is_none())
        .expect("scope c/all")
}

fn cfg(toml: &str) -> Config {
    Config::from_toml(toml).expect("test config")
}

// ------------------------------------------------- exact threshold verdict

/// availability = 0.2 with 4 connector failures in 5: 1 - 4/5 = 1/5 = 0.2
/// exactly, so the criterion passes (>=). In floats 1 - 4.0/5.0 is
/// 0.19999999999999996 < 0.2, which failed it before the verdict became
/// exact. The one connection's own availability is the same 1/5 against
/// sla_availability = 0.2, so it meets the bar and slo = 1/1.
#[test]
fn threshold_exactly_reached_passes_in_exact_arithmetic() {
    let c = cfg("[criteria]\nmin_eligible_requests = 5\navailability = 0.2\nsla_availability = 0.2\nsuccess_rate = 0.1\n");
    let mut lines = events(4, "2026-11-20", 500, Some("connector"), "k");
    lines.extend(events(1, "2026-11-20", 200, None, "k"));
    let r = report(&c, &lines, NOW);
    let s = all(&r);
    assert_eq!(s.verdict.criteria.availability, Some(true));
    assert_eq!(s.measures.criteria().connections_meeting_sla, 1);
    assert_eq!(s.verdict.criteria.slo, Some(true));
    // Budget: q (d - cf) >= p (d + n) with p/q = 2/10, d = 5, cf = 4:
    // 10 * 1 >= 2 (5 + n)  <=>  n <= 0. No further failure fits.
    assert_eq!(s.budget.availability.left, Some(0));
}

// ------------------------------------------------------- budget boundary

/// Exact check, independent of `budget.rs`: with the threshold as p/q,
/// does availability hold after n more connector failures?
fn avail_holds(cf: u64, d: u64, n: u64, p: u128, q: u128) -> bool {
    // 1 - (cf + n)/(d + n) >= p/q  <=>  q (d - cf) >= p (d + n)
    q * (d - cf) as u128 >= p * (d + n) as u128
}

/// success / (eligible + n) > p/q  <=>  q s > p (e + n)
fn ga_holds(s: u64, e: u64, n: u64, p: u128, q: u128) -> bool {
    q * s as u128 > p * (e + n) as u128
}

/// (s - f - n) / (e + n) > p/q  <=>  q (s - f - n) > p (e + n)
fn isv_holds(s: u64, f: u64, e: u64, n: u64, p: i128, q: i128) -> bool {
    q * (s as i128 - f as i128 - n as i128) > p * (e + n) as i128
}

/// For each case the corpus is built, the budget n read through the
/// library, and then n and n + 1 further failures are actually added to
/// the corpus and the report recomputed: n keeps the criterion true,
/// n + 1 makes it false. The exact checker above agrees on both.
#[test]
fn availability_budget_boundary_n_and_n_plus_one() {
    // (successes, connector failures, threshold as text, p, q)
    // 2000 ok, 0 failed, 0.9995: q(d-cf) - p d = 10000*2000 - 9995*2000
    //   = 10000, n = 10000 / 9995 = 1.
    // 4000 ok, 1 failed, 0.9995: d = 4001; 10000*4000 - 9995*4001 =
    //   40,000,000 - 39,989,995 = 10,005; n = 10005 / 9995 = 1.
    // 1990 ok, 10 failed, 0.99: d = 2000; 100*1990 - 99*2000 = 199,000 -
    //   198,000 = 1000; n = 1000 / 99 = 10.
    // 1000 ok, 0 failed, 0.5: 10*1000 - 5*1000 = 5000; n = 5000/5 = 1000.
    for (ok, bad, th, p, q, want) in [
        (2000u64, 0u64, "0.9995", 9995u128, 10000u128, 1u64),
        (4000, 1, "0.9995", 9995, 10000, 1),
        (1990, 10, "0.99", 99, 100, 10),
        (1000, 0, "0.5", 5, 10, 1000),
    ] {
        let c = cfg(&format!(
            "[criteria]\nmin_eligible_requests = 1000\navailability = {th}\nsla_availability = 0\nslo = 0\nsuccess_rate = 0\n"
        ));
        let mut lines = events(ok, "2026-11-19", 200, None, "k");
        lines.extend(events(bad, "2026-11-19", 500, Some("connector"), "k"));
        let s0 = all(&report(&c, &lines, NOW)).clone();
        assert_eq!(
            s0.verdict.criteria.availability,
            Some(true),
            "{ok}/{bad}/{th}"
        );
        let n = s0.budget.availability.left.expect("decided, bounded");
        assert_eq!(n, want, "{ok}/{bad}/{th}");
        let d = ok + bad;
        assert!(avail_holds(bad, d, n, p, q) && !avail_holds(bad, d, n + 1, p, q));
        for (extra, holds) in [(n, true), (n + 1, false)] {
            let mut more = lines.clone();
            more.extend(events(extra, "2026-11-20", 500, Some("connector"), "k"));
            let s = all(&report(&c, &more, NOW)).clone();
            assert_eq!(
                s.verdict.criteria.availability,
                Some(holds),
                "{ok}/{bad}/{th} + {extra}"
            );
            // On the far side the budget is 0 and recovery is computed.
            if !holds {
                assert_eq!(s.budget.availability.left, Some(0));
            }
        }
    }
}

#[test]
fn success_rate_budget_boundary_ga_and_isv() {
    // ga, 0.80, 1000 ok + 100 client failures: e = 1100,
    //   q s - p e = 100*1000 - 80*1100 = 12,000; n = (12000 - 1) / 80 = 149.
    //   Check: 1000/1249 = 0.80064 > 0.8; 1000/1250 = 0.8 not > 0.8.
    // ga, 0.80, 800 ok + 200 failures: 800/1000 = 0.8 exactly: false
    //   (strict), budget 0 (the far side of the threshold).
    // isv, 0.5, 1000 ok + 100 client failures: s - f = 900, e = 1100;
    //   X = 10*900 - 5*1100 = 3500; n = (3500 - 1) / (5 + 10) = 233.
    //   Check: (900-233)/(1333) = 667/1333 = 0.50038 > 0.5;
    //          (900-234)/1334 = 666/1334 = 0.49925.
    for (formula, th, ok, bad, p, q, want) in [
        ("ga", "0.8", 1000u64, 100u64, 8i128, 10i128, Some(149u64)),
        ("ga", "0.8", 800, 200, 8, 10, None),
        ("isv", "0.5", 1000, 100, 5, 10, Some(233)),
    ] {
        let c = cfg(&format!(
            "[criteria]\nmin_eligible_requests = 1000\nsuccess_rate = {th}\nsuccess_rate_formula = \"{formula}\"\navailability = 0\nsla_availability = 0\nslo = 0\n"
        ));
        let mut lines = events(ok, "2026-11-19", 200, None, "k");
        lines.extend(events(bad, "2026-11-19", 404, None, "k"));
        let s0 = all(&report(&c, &lines, NOW)).clone();
        let holds = |s: u64, f: u64, e: u64, n: u64| match formula {
            "ga" => ga_holds(s, e, n, p as u128, q as u128),
            _ => isv_holds(s, f, e, n, p, q),
        };
        let Some(want) = want else {
            // Exactly at the threshold: false, budget 0.
            assert_eq!(s0.verdict.criteria.success_rate, Some(false));
            assert!(!holds(ok, bad, ok + bad, 0));
            assert_eq!(s0.budget.success_rate.left, Some(0));
            continue;
        };
        let n = s0.budget.success_rate.left.expect("decided");
        assert_eq!(n, want, "{formula} {th}");
        assert!(holds(ok, bad, ok + bad, n) && !holds(ok, bad, ok + bad, n + 1));
        for (extra, ok_after) in [(n, true), (n + 1, false)] {
            let mut more = lines.clone();
            more.extend(events(extra, "2026-11-20", 404, None, "k"));
            let s = all(&report(&c, &more, NOW)).clone();
            assert_eq!(
                s.verdict.criteria.success_rate,
                Some(ok_after),
                "{formula} +{extra}"
            );
        }
    }
}

#[test]
fn slo_budget_boundary() {
    // 200 connections, each 5 successes (1000 eligible); c-0 .. c-(bad-1)
    // also get one connector failure, so they miss the 0.9995 bar.
    // slo = 0.99: q M - p A = 100 M - 99 * 200; m = that / 100.
    //   bad = 0: M = 200, 20000 - 19800 = 200, m = 2.
    //   bad = 1: M = 199, 19900 - 19800 = 100, m = 1.
    //   bad = 2: M = 198, 19800 - 19800 = 0,   m = 0 (exactly reached).
    for (bad, want) in [(0u64, 2u64), (1, 1), (2, 0)] {
        let c = cfg("[criteria]\nmin_eligible_requests = 1000\nslo = 0.99\navailability = 0\nsuccess_rate = 0\n");
        let mut lines = Vec::new();
        for k in 0..200 {
            lines.extend(events(5, "2026-11-19", 200, None, &format!("c-{k}")));
        }
        let fail = |from: u64, to: u64| -> Vec<String> {
            (from..to)
                .flat_map(|k| events(1, "2026-11-19", 500, Some("connector"), &format!("c-{k}")))
                .collect()
        };
        lines.extend(fail(0, bad));
        let s0 = all(&report(&c, &lines, NOW)).clone();
        assert_eq!(s0.verdict.criteria.slo, Some(true), "bad = {bad}");
        let m = s0.budget.slo.left.expect("decided");
        assert_eq!(m, want, "bad = {bad}");
        // m more connections missing the bar: still true; m + 1: false.
        for (extra, ok) in [(m, true), (m + 1, false)] {
            let mut more = lines.clone();
            more.extend(fail(bad, bad + extra));
            let s = all(&report(&c, &more, NOW)).clone();
            assert_eq!(s.verdict.criteria.slo, Some(ok), "bad = {bad} + {extra}");
        }
    }
}
