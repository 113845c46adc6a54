//! Property tests: the decoder never panics and reads generated events
//! exactly (fields, or the first rejection reason); the report does not depend on
//! how events are batched, ordered or sharded (by connector, or by batch with
//! each connector merged across engines); distinct counts are exact up
//! to 10,000 values.

use crate::shards::{Layout, Shards};
use connector_ga_exporter::config::Config;
use connector_ga_exporter::engine::event::{self, Event, Reject, RejectCounts};
use connector_ga_exporter::engine::state::Admission;
use connector_ga_exporter::engine::timeutil::{self, Micros, MICROS_PER_DAY};
use proptest::prelude::*;
use proptest::test_runner::Config as PtConfig;
use proptest::test_runner::TestCaseError;
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

/// What SPEC §2 promises of every valid event, whatever the input: the
/// decoder could get each of these wrong.
fn check_valid(e: &Event<'_>) -> Result<(), TestCaseError> {
    let c = e.connector.as_bytes();
    prop_assert!(!c.is_empty() && c.len() <= 128 && c[0].is_ascii_alphanumeric());
    prop_assert!(c
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(b)));
    prop_assert!((0..=event::MAX_EPOCH_MILLIS * 1000 + 999).contains(&e.ts));
    prop_assert!(e.status.is_none_or(|s| (100..=599).contains(&s)));
    prop_assert!(e.latency_ms.is_none_or(|l| l.is_finite() && l >= 0.0));
    for id in [&e.user, &e.connection].into_iter().flatten() {
        prop_assert!(!id.is_empty() && id.len() <= 256);
    }
    Ok(())
}

proptest! {
    #![proptest_config(PtConfig { cases: fuzz_cases(), ..PtConfig::default() })]

    /// Arbitrary bytes never panic the decoder, every event read is
    /// reported once, and whatever it accepts is a valid event.
    #[test]
    fn decode_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut calls = 0u64;
        let mut checked = Ok(());
        let n = event::decode_payload(&bytes, |r| {
            calls += 1;
            if let (Ok(e), true) = (r, checked.is_ok()) {
                checked = check_valid(&e);
            }
        });
        prop_assert_eq!(n, calls);
        checked?;
    }

    /// Generated events with a known verdict: each field valid (with its
    /// value), null, absent, or invalid in a known way; keys in random
    /// order, random whitespace, unknown fields, sometimes a duplicate key,
    /// a BOM, or a neighbour in an array or NDJSON. The decoder must return
    /// exactly the fields, or the first reason of SPEC §2's order, and the
    /// neighbour must still count.
    #[test]
    fn decode_never_misreads_generated_events(g in gen::arb_case()) {
        let mut got = Vec::new();
        let n = event::decode_payload(g.payload.as_bytes(), |r| got.push(r.map(gen::Decoded::of)));
        prop_assert_eq!(n as usize, got.len());
        prop_assert_eq!(&got, &g.want, "payload {:?}", g.payload);
    }
}

/// The generator of `decode_never_misreads_generated_events`: expected
/// values follow from SPEC §2 alone, never from the decoder.
mod gen {
    use super::*;
    use connector_ga_exporter::engine::classify::{Cloud, Fault};
    use connector_ga_exporter::engine::event::Reject;

    /// The fields of a decoded event (latency compared within 1e-12
    /// relative, as JSON text need not round-trip to the last bit).
    #[derive(Debug, Clone)]
    pub struct Decoded {
        ts: Micros,
        connector: String,
        cloud: Cloud,
        status: Option<u16>,
        fault: Option<Fault>,
        latency_ms: Option<f64>,
        user: Option<String>,
        connection: Option<String>,
    }

    impl PartialEq for Decoded {
        fn eq(&self, o: &Decoded) -> bool {
            let lat = match (self.latency_ms, o.latency_ms) {
                (None, None) => true,
                (Some(a), Some(b)) => a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs()),
                _ => false,
            };
            lat && self.ts == o.ts
                && self.connector == o.connector
                && self.cloud == o.cloud
                && self.status == o.status
                && self.fault == o.fault
                && self.user == o.user
                && self.connection == o.connection
        }
    }

    impl Decoded {
        pub fn of(e: Event<'_>) -> Decoded {
            Decoded {
                ts: e.ts,
                connector: e.connector.into_owned(),
                cloud: e.cloud,
                status: e.status,
                fault: e.fault,
                latency_ms: e.latency_ms,
                user: e.user.map(|u| u.into_owned()),
                connection: e.connection.map(|u| u.into_owned()),
            }
        }
    }

    /// One field: its JSON text (`None`: absent) and what it means.
    #[derive(Debug, Clone)]
    pub enum F<T> {
        /// Absent or null: the default.
        Default(Option<&'static str>),
        Valid(String, T),
        Invalid(String),
    }

    impl<T: Clone> F<T> {
        fn text(&self) -> Option<String> {
            match self {
                F::Default(t) => t.map(str::to_string),
                F::Valid(t, _) | F::Invalid(t) => Some(t.clone()),
            }
        }
    }

    fn absent_or_null<T: std::fmt::Debug + Clone + 'static>() -> impl Strategy<Value = F<T>> {
        prop_oneof![Just(F::Default(None)), Just(F::Default(Some("null")))]
    }

    fn bad<T: std::fmt::Debug + Clone + 'static>(
        texts: &'static [&'static str],
    ) -> impl Strategy<Value = F<T>> {
        proptest::sample::select(texts).prop_map(|t| F::Invalid(t.to_string()))
    }

    fn quote(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    const MAX_MS: i64 = 253_402_300_799_999;

    fn ts() -> impl Strategy<Value = F<Micros>> {
        prop_oneof![
            absent_or_null(),
            (0..=MAX_MS).prop_map(|ms| F::Valid(ms.to_string(), ms * 1000)),
            (0..=MAX_MS * 1000 + 999)
                .prop_map(|us| F::Valid(quote(&timeutil::format_micros(us)), us)),
            // Just past each end (chrono would take these), and far past.
            (MAX_MS + 1..=4 * MAX_MS).prop_map(|ms| F::Invalid(ms.to_string())),
            (-4 * MAX_MS..0).prop_map(|ms| F::Invalid(ms.to_string())),
            prop_oneof![MAX_MS + 1..=i64::MAX, i64::MIN..0]
                .prop_map(|ms| F::Invalid(ms.to_string())),
            bad(&[
                "1.5",
                "true",
                "\"2026-11-20\"",
                "\"2026-02-30T10:00:00Z\"",
                "\"yesterday\"",
                "1e400",
                "18446744073709551616",
                "{}",
                "[1]"
            ]),
        ]
    }

    fn connector() -> impl Strategy<Value = F<String>> {
        prop_oneof![
            absent_or_null(),
            "[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}".prop_map(|c| F::Valid(quote(&c), c)),
            Just(F::Valid(
                format!("\"{}\"", "c".repeat(128)),
                "c".repeat(128)
            )),
            Just(F::Valid("\"a\\u0062\"".into(), "ab".into())),
            Just(F::Invalid(format!("\"{}\"", "c".repeat(129)))),
            bad(&["\"\"", "\"_x\"", "\"a b\"", "\"é\"", "7", "true", "[\"a\"]"]),
        ]
    }

    fn cloud() -> impl Strategy<Value = F<Cloud>> {
        prop_oneof![
            absent_or_null(),
            proptest::sample::select(&Cloud::ALL[..]).prop_map(|c| F::Valid(quote(c.as_str()), c)),
            bad(&["\"PUBLIC\"", "\"atlantis\"", "1", "\"\""]),
        ]
    }

    fn status() -> impl Strategy<Value = F<Option<u16>>> {
        prop_oneof![
            absent_or_null(),
            Just(F::Valid("0".into(), None)),
            (100u16..=599).prop_map(|s| F::Valid(s.to_string(), Some(s))),
            bad(&["600", "99", "-1", "\"200\"", "200.5", "200.0", "1e400", "true"]),
        ]
    }

    fn fault() -> impl Strategy<Value = F<Option<Fault>>> {
        prop_oneof![
            absent_or_null(),
            Just(F::Valid("\"connector\"".into(), Some(Fault::Connector))),
            Just(F::Valid("\"backend\"".into(), Some(Fault::Backend))),
            Just(F::Valid("\"client\"".into(), Some(Fault::Client))),
            bad(&["\"user\"", "\"Connector\"", "1", "[]"]),
        ]
    }

    fn latency() -> impl Strategy<Value = F<Option<f64>>> {
        prop_oneof![
            absent_or_null(),
            (0u64..100_000_000).prop_map(|v| F::Valid(v.to_string(), Some(v as f64))),
            (0.0f64..1e8).prop_map(|v| F::Valid(serde_json::to_string(&v).unwrap(), Some(v))),
            bad(&["-1", "-0.5", "\"5\"", "1e400", "-1e400", "true", "[1]"]),
        ]
    }

    fn id() -> impl Strategy<Value = F<Option<String>>> {
        prop_oneof![
            absent_or_null(),
            "[a-z0-9é✓ \"\\\\]{1,20}".prop_map(|u| F::Valid(quote(&u), Some(u))),
            Just(F::Valid(
                format!("\"{}\"", "u".repeat(256)),
                Some("u".repeat(256))
            )),
            Just(F::Invalid(format!("\"{}\"", "u".repeat(257)))),
            bad(&["\"\"", "5", "true", "{}"]),
        ]
    }

    /// One generated payload and the events it must decode to.
    #[derive(Debug, Clone)]
    pub struct Case {
        pub payload: String,
        pub want: Vec<Result<Decoded, Reject>>,
    }

    const EXTRA: [(&str, &str); 4] = [
        ("operation", "\"ListItems\""),
        ("x", "1e400"),
        ("nested", "{\"ts\":1,\"a\":[1,{\"b\":null,\"b\":2}]}"),
        ("y", "\"\\ud83d\\ude00\""),
    ];

    const NEIGHBOUR: &str = r#"{"ts":0,"connector":"n"}"#;

    fn neighbour() -> Decoded {
        Decoded {
            ts: 0,
            connector: "n".into(),
            cloud: Cloud::Public,
            status: None,
            fault: None,
            latency_ms: None,
            user: None,
            connection: None,
        }
    }

    #[allow(clippy::type_complexity)]
    pub fn arb_case() -> impl Strategy<Value = Case> {
        (
            (
                ts(),
                connector(),
                cloud(),
                status(),
                fault(),
                latency(),
                id(),
                id(),
            ),
            proptest::sample::subsequence(EXTRA.to_vec(), 0..=EXTRA.len()),
            proptest::collection::vec(any::<u16>(), 16),
            proptest::collection::vec(0usize..4, 40),
            0usize..12,
            0usize..4,
            any::<bool>(),
        )
            .prop_map(
                |(
                    (ts, conn, cloud, status, fault, lat, user, connection),
                    extra,
                    order,
                    ws,
                    dup,
                    frame,
                    bom,
                )| {
                    // (key, JSON text) of every present field.
                    let mut fields: Vec<(String, String)> = Vec::new();
                    let mut put = |k: &str, t: Option<String>| {
                        if let Some(t) = t {
                            fields.push((k.to_string(), t));
                        }
                    };
                    put("ts", ts.text());
                    put("connector", conn.text());
                    put("cloud", cloud.text());
                    put("status", status.text());
                    put("fault", fault.text());
                    put("latency_ms", lat.text());
                    put("user", user.text());
                    put("connection", connection.text());
                    for (k, v) in &extra {
                        put(k, Some(v.to_string()));
                    }
                    let mut idx: Vec<usize> = (0..fields.len()).collect();
                    idx.sort_by_key(|&i| order[i]);
                    let mut fields: Vec<(String, String)> =
                        idx.into_iter().map(|i| fields[i].clone()).collect();
                    // One time in four (dup < 3), a key written twice.
                    let duplicate = dup < 3 && !fields.is_empty();
                    if duplicate {
                        let f = fields[dup % fields.len()].clone();
                        fields.push(f);
                    }

                    // NDJSON (frame 2) keeps the event on one line.
                    let space = if frame == 2 {
                        [" ", "\t", "", "\r"]
                    } else {
                        [" ", "\n", "", "\t"]
                    };
                    let mut w = ws.iter().map(|&i| space[i]).cycle();
                    let mut obj = format!("{}{{", w.next().unwrap());
                    for (i, (k, v)) in fields.iter().enumerate() {
                        if i > 0 {
                            obj.push(',');
                        }
                        obj.push_str(&format!(
                            "{}{}{}:{}{}{}",
                            w.next().unwrap(),
                            quote(k),
                            w.next().unwrap(),
                            w.next().unwrap(),
                            v,
                            w.next().unwrap()
                        ));
                    }
                    obj.push('}');

                    let want = if duplicate {
                        Err(Reject::MalformedJson)
                    } else {
                        expected(
                            &ts,
                            &conn,
                            &cloud,
                            &status,
                            &fault,
                            &lat,
                            &user,
                            &connection,
                        )
                    };
                    let (body, want) = match frame {
                        0 => (obj, vec![want]),
                        1 => (format!("[{NEIGHBOUR},{obj}]"), vec![Ok(neighbour()), want]),
                        2 => (
                            format!("{NEIGHBOUR}\n{obj}\n{NEIGHBOUR}"),
                            vec![Ok(neighbour()), want, Ok(neighbour())],
                        ),
                        _ => (
                            format!("[{obj} ,\n{NEIGHBOUR}]"),
                            vec![want, Ok(neighbour())],
                        ),
                    };
                    let payload = if bom { format!("\u{feff}{body}") } else { body };
                    Case { payload, want }
                },
            )
    }

    /// SPEC §2: the first reason in order, or the event.
    #[allow(clippy::too_many_arguments)]
    fn expected(
        ts: &F<Micros>,
        conn: &F<String>,
        cloud: &F<Cloud>,
        status: &F<Option<u16>>,
        fault: &F<Option<Fault>>,
        lat: &F<Option<f64>>,
        user: &F<Option<String>>,
        connection: &F<Option<String>>,
    ) -> Result<Decoded, Reject> {
        let (ts, connector) = match (ts, conn) {
            (F::Default(_), _) | (_, F::Default(_)) => return Err(Reject::MissingField),
            (F::Invalid(_), _) => return Err(Reject::InvalidTimestamp),
            (_, F::Invalid(_)) => return Err(Reject::InvalidConnector),
            (F::Valid(_, t), F::Valid(_, c)) => (*t, c.clone()),
        };
        fn get<T: Clone>(f: &F<T>, default: T, r: Reject) -> Result<T, Reject> {
            match f {
                F::Default(_) => Ok(default),
                F::Valid(_, v) => Ok(v.clone()),
                F::Invalid(_) => Err(r),
            }
        }
        Ok(Decoded {
            ts,
            connector,
            cloud: get(cloud, Cloud::Public, Reject::UnknownCloud)?,
            status: get(status, None, Reject::InvalidStatus)?,
            fault: get(fault, None, Reject::InvalidFault)?,
            latency_ms: get(lat, None, Reject::InvalidLatency)?,
            user: get(user, None, Reject::InvalidId)?,
            connection: get(connection, None, Reject::InvalidId)?,
        })
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
fn report_json(cfg: &Config, batches: &[Vec<&String>], shards: usize, layout: Layout) -> Value {
    let now = now();
    let mut store = Shards::with_layout(cfg, shards, layout);
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
    store.report(cfg, now, rejected).to_json()
}

/// A JSON value with every window's ratios too (the report shows only the
/// criteria window): compares all measures, not just what JSON shows.
fn full(cfg: &Config, batches: &[Vec<&String>], shards: usize, layout: Layout) -> (Value, String) {
    let now = now();
    let mut store = Shards::with_layout(cfg, shards, layout);
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
    let r = store.report(cfg, now, rejected);
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
        by_batch in any::<bool>(),
    ) {
        let cfg = config();
        // By batch: a connector lands in several engines (report's workers,
        // tasks of unkeyed partitions) and is merged when measured.
        let layout = if by_batch { Layout::ByBatch } else { Layout::ByConnector };
        let identity: Vec<usize> = (0..lines.len()).collect();
        let one = Layout::ByConnector;
        let reference = report_json(&cfg, &split(&lines, &identity, &[]), 1, one);
        let shuffled = report_json(&cfg, &split(&lines, &order, &cuts), shards, layout);
        prop_assert_eq!(&reference, &shuffled);
        let (a, wa) = full(&cfg, &split(&lines, &identity, &[]), 1, one);
        let (b, wb) = full(&cfg, &split(&lines, &order, &cuts), shards, layout);
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
        let mut store = Shards::from_config(&cfg, shards);
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
        let r = store.report(&cfg, now, rejected);
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
    let mut store = Shards::from_config(&cfg, 1);
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
    let r = store.report(&cfg, now, rejected);
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
        let mut store = Shards::from_config(&cfg, shards);
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
        let r = store.report(&cfg, now, rejected);
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

/// The sonic-rs fast path of the decoder against its `serde_json`
/// reference path (`event::decode_payload_reference`): the same events,
/// in the same order, with the same values or reasons. Values only may
/// differ in a float's last bit (the fast path rounds correctly,
/// `serde_json` without `float_roundtrip` can be one unit off past 15
/// significant digits).
mod fast_path {
    use super::*;

    fn decoded(bytes: &[u8], fast: bool) -> Vec<Result<Event<'_>, Reject>> {
        let mut out = Vec::new();
        let mut push = |r| out.push(r);
        if fast {
            event::decode_payload(bytes, &mut push);
        } else {
            event::decode_payload_reference(bytes, &mut push);
        }
        out
    }

    fn same_event(a: &Event<'_>, b: &Event<'_>) -> bool {
        let lat = match (a.latency_ms, b.latency_ms) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= x.abs() * f64::EPSILON,
            (x, y) => x == y,
        };
        lat && Event {
            latency_ms: None,
            ..a.clone()
        } == Event {
            latency_ms: None,
            ..b.clone()
        }
    }

    pub fn agree(bytes: &[u8]) -> Result<(), TestCaseError> {
        let (f, r) = (decoded(bytes, true), decoded(bytes, false));
        let same = f.len() == r.len()
            && f.iter().zip(&r).all(|p| match p {
                (Ok(a), Ok(b)) => same_event(a, b),
                (a, b) => a == b,
            });
        prop_assert!(
            same,
            "payload {:?}\n fast      {:?}\n reference {:?}",
            String::from_utf8_lossy(bytes),
            f,
            r
        );
        Ok(())
    }

    /// Keys: the known ones, an unknown one, and known ones spelled with
    /// an escape (the same key to JSON, so a duplicate).
    pub const KEYS: [&str; 12] = [
        "ts",
        "connector",
        "cloud",
        "status",
        "fault",
        "latency_ms",
        "user",
        "connection",
        "operation",
        "x",
        "t\\u0073",
        "connecto\\u0072",
    ];

    /// Values where two JSON parsers might part: number edges, escapes,
    /// surrogates, nesting, control characters, and the valid values.
    pub fn values() -> Vec<String> {
        let mut v: Vec<String> = [
            "1",
            "0",
            "-0",
            "-1",
            "1.5",
            "-0.0",
            "1e2",
            "1E+2",
            "1e400",
            "-1e400",
            "1e-400",
            "[1e400]",
            "{\"a\":1e400}",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "253402300799999",
            "253402300800000",
            "9007199254740993.0",
            "0.30000000000000004",
            "182.5",
            "200",
            "429",
            "599",
            "600",
            "200.0",
            "\"200\"",
            "null",
            "true",
            "false",
            "[]",
            "{}",
            "[1,[2,{\"a\":[]}]]",
            "\"2026-11-20T10:00:00Z\"",
            "\"2026-11-20T10:00:00.123+02:00\"",
            "\"2026-02-30T10:00:00Z\"",
            "\"2026-11-20\"",
            "\"a\"",
            "\"shared_contoso\"",
            "\"a\\u0062\"",
            "\"\\ud800\"",
            "\"\\udc00x\"",
            "\"\\ud83d\\ude00\"",
            "\"\\u0000\"",
            "\"x\\\"y\"",
            "\"\\/\"",
            "\"\\x\"",
            "\"x\u{7f}\"",
            "\"é\"",
            "\"\"",
            "\"public\"",
            "\"gcc-high\"",
            "\"backend\"",
            "\"client\"",
            "01",
            "1.",
            ".5",
            "+1",
            "NaN",
            "tru",
            "nul",
            "\"unterminated",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(format!("\"{}\"", "u".repeat(256)));
        v.push(format!("\"{}\"", "u".repeat(257)));
        v.push(format!("{}1{}", "[".repeat(200), "]".repeat(200)));
        v.push(format!(
            "{}{}",
            "{\"a\":".repeat(140),
            "1".to_string() + &"}".repeat(140)
        ));
        v.push("\"x\ty\"".to_string());
        v.push("\"x\u{1}y\"".to_string());
        v
    }

    pub fn object() -> impl Strategy<Value = String> {
        let vals = values();
        proptest::collection::vec(
            (
                proptest::sample::select(KEYS.to_vec()),
                proptest::sample::select(vals),
                proptest::sample::select(vec!["", " ", "\n", "\t", "\r\n"]),
            ),
            0..10,
        )
        .prop_map(|kv| {
            let body: Vec<String> = kv
                .iter()
                .map(|(k, v, ws)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
                .collect();
            format!("{{{}}}", body.join(","))
        })
    }

    /// A payload: one object, an array or NDJSON of objects (with a valid
    /// event among them), maybe a BOM, maybe one byte changed, inserted or
    /// removed (to reach every syntax error).
    pub fn payload() -> impl Strategy<Value = Vec<u8>> {
        let valid = r#"{"ts":"2026-11-20T10:00:00Z","connector":"a","latency_ms":1.5,"user":"u","connection":"c"}"#;
        (
            proptest::collection::vec(
                prop_oneof![3 => object(), 1 => Just(valid.to_string())],
                1..4,
            ),
            0usize..3,
            any::<bool>(),
            proptest::option::of((any::<prop::sample::Index>(), any::<u8>(), 0usize..3)),
        )
            .prop_map(|(objs, shape, bom, edit)| {
                let mut p: Vec<u8> = if bom { event::BOM.to_vec() } else { Vec::new() };
                p.extend_from_slice(
                    match shape {
                        0 => objs[0].clone(),
                        1 => format!("[{}]", objs.join(",")),
                        _ => objs.join("\n"),
                    }
                    .as_bytes(),
                );
                if let Some((at, byte, how)) = edit {
                    let i = at.index(p.len());
                    match how {
                        0 => p[i] = byte,
                        1 => p.insert(i, byte),
                        _ => {
                            p.remove(i);
                        }
                    }
                }
                p
            })
    }
}

/// Every edge value in every key, alone and beside a valid field: the
/// fast path and the reference agree (deterministic, all combinations).
#[test]
fn fast_path_agrees_on_every_edge_value_in_every_key() {
    let mut n = 0;
    for k in fast_path::KEYS {
        for v in fast_path::values() {
            for doc in [
                format!("{{\"{k}\":{v}}}"),
                format!("{{\"ts\":1,\"connector\":\"a\",\"{k}\":{v}}}"),
                format!("[{{\"ts\":1,\"connector\":\"a\",\"{k}\":{v}}},{{\"ts\":1,\"connector\":\"b\"}}]"),
                format!("{{\"ts\":1,\"connector\":\"a\",\"{k}\":{v}}}\n{{\"ts\":1,\"connector\":\"b\"}}"),
            ] {
                fast_path::agree(doc.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
    }
    assert_eq!(n, fast_path::KEYS.len() * fast_path::values().len() * 4);
}

/// Invalid UTF-8 where the fast path's parser would not look (a skipped
/// unknown field, a nested value, between an array's events): the event
/// holding it is `malformed_json` on both paths (SPEC §2), its neighbours
/// still count.
#[test]
fn fast_path_agrees_on_invalid_utf8_in_skipped_values() {
    let docs: [&[u8]; 5] = [
        b"{\"ts\":1,\"connector\":\"a\",\"operation\":\"\xff\"}",
        b"{\"ts\":1,\"connector\":\"a\",\"x\":{\"k\":[\"\xe2\x82\"]}}",
        b"{\"ts\":1,\"connector\":\"a\",\"latency_ms\":[\"\xc3\"]}",
        b"[{\"ts\":1,\"connector\":\"a\",\"x\":\"\xff\"},{\"ts\":1,\"connector\":\"b\"}]",
        b"{\"ts\":1,\"connector\":\"a\",\"x\":\"\xff\"}\n{\"ts\":1,\"connector\":\"b\"}",
    ];
    for d in docs {
        fast_path::agree(d).unwrap_or_else(|e| panic!("{e}"));
        // By hand from SPEC §2: the event with the invalid byte is
        // malformed_json, the one after it (when there is one) is valid.
        let mut got = Vec::new();
        event::decode_payload(d, |r| got.push(r.map(|e| e.connector.into_owned())));
        assert_eq!(got[0], Err(Reject::MalformedJson), "{d:?}");
        assert!(got[1..].iter().all(|r| r.as_deref() == Ok("b")), "{d:?}");
    }
}

proptest! {
    #![proptest_config(PtConfig { cases: fuzz_cases(), ..PtConfig::default() })]

    /// Arbitrary bytes: the fast path and the reference agree.
    #[test]
    fn fast_path_agrees_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        fast_path::agree(&bytes)?;
    }

    /// Objects of edge values, in batches, with a byte edited.
    #[test]
    fn fast_path_agrees_on_edge_documents(p in fast_path::payload()) {
        fast_path::agree(&p)?;
    }

    /// The generated events of `decode_never_misreads_generated_events`.
    #[test]
    fn fast_path_agrees_on_generated_events(g in gen::arb_case()) {
        fast_path::agree(g.payload.as_bytes())?;
    }
}
