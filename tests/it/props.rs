//! Property tests: the decoder never panics; the report does not depend on
//! how events are batched, ordered or sharded; distinct counts are exact up
//! to 10,000 values.

use connector_ga_exporter::config::Config;
use connector_ga_exporter::event::{self, Event, RejectCounts};
use connector_ga_exporter::report::Report;
use connector_ga_exporter::state::Admission;
use connector_ga_exporter::store::Store;
use connector_ga_exporter::timeutil::{self, Micros, MICROS_PER_DAY};
use proptest::prelude::*;
use proptest::test_runner::Config as PtConfig;
use serde_json::{json, Value};

const NOW: &str = "2026-11-20T12:00:00Z";

fn now() -> Micros {
    timeutil::parse_rfc3339(NOW).unwrap()
}

/// Cases of the decoder fuzz properties: 512 by default, `FUZZ_CASES=1000000`
/// for the long run `.ci/run` does.
fn fuzz_cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(PtConfig { cases: fuzz_cases(), ..PtConfig::default() })]

    /// Arbitrary bytes never panic the decoder, and every event read is
    /// reported once.
    #[test]
    fn decode_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut calls = 0u64;
        let n = event::decode_payload(&bytes, |_| calls += 1);
        prop_assert_eq!(n, calls);
    }

    /// Nor on JSON-looking text: fragments of valid events glued together.
    #[test]
    fn decode_never_panics_on_jsonish(parts in proptest::collection::vec(prop_oneof![
        Just("{".to_string()), Just("}".to_string()), Just("[".to_string()), Just("]".to_string()),
        Just(",".to_string()), Just(":".to_string()), Just("\n".to_string()), Just("null".to_string()),
        Just("\"ts\"".to_string()), Just("\"connector\"".to_string()), Just("\"status\"".to_string()),
        Just("\"latency_ms\"".to_string()), Just("\"2026-11-20T10:00:00Z\"".to_string()),
        Just("1e999".to_string()), Just("-0".to_string()), Just("18446744073709551616".to_string()),
        Just("\"\\ud800\"".to_string()), Just("9223372036854775807".to_string()),
        "[a-z0-9_\\-]{0,8}".prop_map(|s| format!("\"{s}\"")),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
    ], 0..40)) {
        let text = parts.concat();
        let mut calls = 0u64;
        let n = event::decode_payload(text.as_bytes(), |_| calls += 1);
        prop_assert_eq!(n, calls);
    }
}

/// One generated event, as JSON. Times span 40 days before `now` and a day
/// after it, so some are too old and some after `now`.
fn arb_event() -> impl Strategy<Value = String> {
    (
        0usize..3,
        0usize..3,
        prop_oneof![
            Just(0u16),
            Just(200),
            Just(204),
            Just(302),
            Just(404),
            Just(429),
            Just(500),
            Just(503)
        ],
        0usize..4,
        proptest::option::of(0.0f64..5000.0),
        proptest::option::of(0u32..30),
        proptest::option::of(0u32..12),
        -40 * 24i64..24,
        0i64..3_600_000_000,
    )
        .prop_map(|(c, cloud, status, fault, lat, user, conn, hours, us)| {
            let ts = now() + hours * 3_600_000_000 + us % 3_600_000_000;
            let connector = ["shared_a", "shared_b", "x.y:z-1"][c];
            let cloud = ["public", "gcc", "mooncake"][cloud];
            let mut v = json!({
                "ts": timeutil::format_micros(ts),
                "connector": connector,
                "cloud": cloud,
                "status": status,
            });
            let o = v.as_object_mut().unwrap();
            if fault > 0 {
                o.insert(
                    "fault".into(),
                    json!(["connector", "backend", "client"][fault - 1]),
                );
            }
            if let Some(l) = lat {
                // Round to what JSON carries exactly.
                o.insert("latency_ms".into(), json!((l * 1000.0).round() / 1000.0));
            }
            if let Some(u) = user {
                o.insert("user".into(), json!(format!("u{u}")));
            }
            if let Some(k) = conn {
                o.insert("connection".into(), json!(format!("k{k}")));
            }
            v.to_string()
        })
}

fn config() -> Config {
    Config::from_toml(
        "[criteria]\nmin_eligible_requests = 5\nwindows = [\"1h\", \"6h\", \"1d\", \"7d\", \"30d\"]\n\
         [connectors.shared_a]\nbackend_in_production = true\nsupport_model_attested = true\npreview_since = 2026-01-31\n",
    )
    .unwrap()
}

/// Ingests `batches` (each one payload of NDJSON lines) into a store of
/// `shards` shards, as `report --now` admits them, and renders the report.
fn report_json(cfg: &Config, batches: &[Vec<&String>], shards: usize) -> Value {
    let now = now();
    let store = Store::from_config(cfg, shards);
    let adm = Admission::report_at(now, cfg.criteria.retention_days);
    let mut rejected = RejectCounts::default();
    for b in batches {
        let payload: String = b.iter().map(|l| format!("{l}\n")).collect();
        let mut evs: Vec<Event<'_>> = Vec::new();
        event::decode_payload(payload.as_bytes(), |r| match r {
            Ok(e) => evs.push(e),
            Err(r) => rejected.add(r, 1),
        });
        store.ingest_batch(evs, &adm, &mut rejected);
    }
    Report::build(&store, cfg, now, rejected).to_json()
}

/// A JSON value with every window's ratios too (the report shows only the
/// criteria window): compares all measures, not just what JSON shows.
fn full(cfg: &Config, batches: &[Vec<&String>], shards: usize) -> (Value, String) {
    let now = now();
    let store = Store::from_config(cfg, shards);
    let adm = Admission::report_at(now, cfg.criteria.retention_days);
    let mut rejected = RejectCounts::default();
    for b in batches {
        let payload: String = b.iter().map(|l| format!("{l}\n")).collect();
        let mut evs: Vec<Event<'_>> = Vec::new();
        event::decode_payload(payload.as_bytes(), |r| match r {
            Ok(e) => evs.push(e),
            Err(r) => rejected.add(r, 1),
        });
        for e in evs {
            // One at a time too: ingest_one and ingest_batch must agree.
            if let Err(r) = store.ingest_one(&e, &adm) {
                rejected.add(r, 1);
            }
        }
    }
    let r = Report::build(&store, cfg, now, rejected);
    let windows = r
        .scopes
        .iter()
        .map(|s| format!("{:?}", s.measures.windows))
        .collect::<Vec<_>>()
        .join("\n");
    (r.to_json(), windows)
}

/// Cut points into `n` items: sorted, deduplicated, within 0..=n.
fn split<'a>(lines: &'a [String], order: &[usize], cuts: &[usize]) -> Vec<Vec<&'a String>> {
    let n = lines.len();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (n + 1)).collect();
    cuts.push(0);
    cuts.push(n);
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| order[w[0]..w[1]].iter().map(|&i| &lines[i]).collect())
        .collect()
}

proptest! {
    #![proptest_config(PtConfig { cases: 48, ..PtConfig::default() })]

    /// The same events, in any order, in any batches, over any number of
    /// shards, give the same report (and the same measures in every window).
    #[test]
    fn report_independent_of_batching_order_and_shards(
        (lines, order) in proptest::collection::vec(arb_event(), 1..400)
            .prop_flat_map(|lines| {
                let n = lines.len();
                (Just(lines), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
            }),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        shards in 1usize..9,
    ) {
        let cfg = config();
        let identity: Vec<usize> = (0..lines.len()).collect();
        let reference = report_json(&cfg, &split(&lines, &identity, &[]), 1);
        let shuffled = report_json(&cfg, &split(&lines, &order, &cuts), shards);
        prop_assert_eq!(&reference, &shuffled);
        let (a, wa) = full(&cfg, &split(&lines, &identity, &[]), 1);
        let (b, wb) = full(&cfg, &split(&lines, &order, &cuts), shards);
        prop_assert_eq!(&reference, &a);
        prop_assert_eq!(a, b);
        prop_assert_eq!(wa, wb);
    }
}

proptest! {
    #![proptest_config(PtConfig { cases: 12, ..PtConfig::default() })]

    /// Up to 10,000 distinct users and connections across the days of week 0
    /// are counted exactly (SPEC §5: exact while a window holds <= 10,000).
    #[test]
    fn distinct_counts_exact_to_10000(
        n in prop_oneof![1usize..100, 9_000usize..=10_000, Just(10_000usize)],
        salt in any::<u64>(),
        shards in 1usize..5,
    ) {
        let cfg = Config::from_toml("").unwrap();
        let now = now();
        let store = Store::from_config(&cfg, shards);
        let adm = Admission::default();
        let mut lines = String::new();
        for i in 0..n {
            // Each value appears on 1..=3 of the 7 days of week 0; different
            // clouds, so "all" merges distinct sets too.
            for rep in 0..(1 + (i % 3)) {
                let day = ((i as u64 ^ salt) as usize + rep * 2) % 7;
                let ts = now - day as i64 * MICROS_PER_DAY - (i as i64 % 1000) * 1000;
                let cloud = ["public", "gcc"][(i + rep) % 2];
                lines.push_str(&format!(
                    "{{\"ts\":{},\"connector\":\"c\",\"cloud\":\"{cloud}\",\"status\":429,\"user\":\"user-{salt:x}-{i}\",\"connection\":\"conn-{i}-{salt:x}\"}}\n",
                    ts / 1000
                ));
            }
        }
        let mut rejected = RejectCounts::default();
        let mut evs = Vec::new();
        event::decode_payload(lines.as_bytes(), |r| evs.push(r.expect("valid")));
        store.ingest_batch(evs, &adm, &mut rejected);
        prop_assert_eq!(rejected.total(), 0);
        let r = Report::build(&store, &cfg, now, rejected);
        let all = r.scopes.iter().find(|s| s.measures.cloud.is_none()).unwrap();
        prop_assert_eq!(all.measures.weekly_active_users, [n as u64, 0, 0]);
        prop_assert_eq!(all.measures.monthly_active_connections, n as u64);
    }
}

/// SPEC §5: exact while a *window* holds at most 10,000 distinct values,
/// even when the scope saw far more over its whole retention.
/// Regression: past 65,536 values over its retention a scope used to turn
/// every window into a HyperLogLog estimate (10,011 read for 10,000 here).
#[test]
fn distinct_exact_per_window_despite_large_retention() {
    let cfg = Config::from_toml("").unwrap();
    let now = now();
    let store = Store::from_config(&cfg, 1);
    let adm = Admission::default();
    let mut lines = String::new();
    // 70,000 users and connections on day D-32: in retention, in no window.
    for i in 0..70_000 {
        let ts = (now - 32 * MICROS_PER_DAY) / 1000;
        lines.push_str(&format!(
            "{{\"ts\":{ts},\"connector\":\"c\",\"status\":200,\"user\":\"old-{i}\",\"connection\":\"oldc-{i}\"}}\n"
        ));
    }
    // 10,000 users in week 0 and 10,000 connections in the MAC window.
    for i in 0..10_000 {
        let ts = (now - (i % 7) as i64 * MICROS_PER_DAY) / 1000;
        lines.push_str(&format!(
            "{{\"ts\":{ts},\"connector\":\"c\",\"status\":200,\"user\":\"new-{i}\",\"connection\":\"newc-{i}\"}}\n"
        ));
    }
    let mut rejected = RejectCounts::default();
    let mut evs = Vec::new();
    event::decode_payload(lines.as_bytes(), |r| evs.push(r.expect("valid")));
    store.ingest_batch(evs, &adm, &mut rejected);
    let r = Report::build(&store, &cfg, now, rejected);
    let s = &r.scopes[0];
    assert_eq!(s.measures.weekly_active_users, [10_000, 0, 0]);
    assert_eq!(s.measures.monthly_active_connections, 10_000);
}

proptest! {
    #![proptest_config(PtConfig { cases: 24, ..PtConfig::default() })]

    /// SPEC §5: latency quantiles within 1% of the nearest-rank value, also
    /// past the exact-sample cap (HDR histograms), across days and clouds.
    #[test]
    fn latency_quantiles_within_one_percent(
        lats in proptest::collection::vec(1.0f64..600_000.0, 1..3000),
        shards in 1usize..4,
    ) {
        let cfg = Config::from_toml("").unwrap();
        let now = now();
        let store = Store::from_config(&cfg, shards);
        let mut lines = String::new();
        for (i, l) in lats.iter().enumerate() {
            let ts = (now - (i % 3) as i64 * MICROS_PER_DAY) / 1000;
            let cloud = ["public", "gcc"][i % 2];
            lines.push_str(&format!(
                "{{\"ts\":{ts},\"connector\":\"c\",\"cloud\":\"{cloud}\",\"status\":200,\"latency_ms\":{l}}}\n"
            ));
        }
        let mut rejected = RejectCounts::default();
        let mut evs = Vec::new();
        event::decode_payload(lines.as_bytes(), |r| evs.push(r.expect("valid")));
        store.ingest_batch(evs, &Admission::default(), &mut rejected);
        let r = Report::build(&store, &cfg, now, rejected);
        let all = r.scopes.iter().find(|s| s.measures.cloud.is_none()).unwrap();
        let mut sorted = lats.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        for (i, p) in [50usize, 95, 99].into_iter().enumerate() {
            // Nearest rank: the ceil(p * n / 100)-th smallest value.
            let want = sorted[(p * n).div_ceil(100).max(1) - 1];
            let got = all.measures.criteria().latency_ms[i].unwrap();
            prop_assert!((got - want).abs() <= want * 0.01, "p{} of {}: {} vs {}", p, n, got, want);
        }
    }
}
