//! The daemon binary against librdkafka's in-process mock cluster: produce
//! events with rdkafka, scrape the real `/metrics` and `/api/v1/criteria`,
//! compare with values computed by hand from SPEC.md.

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use serde_json::Value;

use crate::harness::{
    bin, iso, metric_in, produce, producer, rekeyed_topic, samples, write_config, Daemon,
    DaemonCmd, DeadLetterCluster, MockKafka,
};
use std::process::Command;

/// The scenario of `daemon_serves_hand_computed_values`, one JSON line each.
fn alpha_events() -> Vec<String> {
    let e = |m: i64, rest: &str| format!(r#"{{"ts":"{}","connector":"it_alpha",{rest}}}"#, iso(m));
    vec![
        e(
            1,
            r#""status":200,"user":"u1","connection":"k1","latency_ms":10"#,
        ),
        e(
            2,
            r#""status":200,"user":"u2","connection":"k1","latency_ms":20"#,
        ),
        e(
            3,
            r#""status":200,"user":"u3","connection":"k1","latency_ms":30"#,
        ),
        e(
            4,
            r#""status":200,"user":"u1","connection":"k2","latency_ms":40"#,
        ),
        e(5, r#""status":200,"user":"u1","connection":"k2""#),
        e(6, r#""status":200,"user":"u2","connection":"k2""#),
        e(7, r#""status":429,"user":"u5","connection":"k1""#),
        e(8, r#""status":429,"user":"u5","connection":"k1""#),
        e(9, r#""status":500,"connection":"k1""#),
        e(10, r#""status":503,"fault":"backend","connection":"k2""#),
        e(11, r#""status":404,"connection":"k2""#),
        e(
            12,
            r#""cloud":"gcc","status":200,"user":"u4","connection":"k3""#,
        ),
        e(
            13,
            r#""cloud":"gcc","status":204,"user":"u4","connection":"k3""#,
        ),
        "{not json".to_string(),
        e(14, r#""status":"200""#),
    ]
}

fn scope<'a>(doc: &'a Value, connector: &str, cloud: &str) -> &'a Value {
    doc["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["connector"] == connector && s["cloud"] == cloud)
        .unwrap_or_else(|| panic!("no scope {connector}/{cloud} in {doc}"))
}

fn close(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"));
    assert!((got - want).abs() < 1e-9, "{got} != {want}");
}

#[test]
fn daemon_serves_hand_computed_values_and_drains_on_sigterm() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("ev", 3, 1).unwrap();
    rekeyed_topic(&mock, "g1", 3);
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let state = dir.path().join("state");
    produce(&producer(&brokers), "ev", &alpha_events());

    let d = Daemon::start(&brokers, "ev", "g1", &cfg, &state, &[]);
    d.wait_for(|d| d.events_total("ev") == 15.0, "15 events read");
    let doc = d.criteria();

    // all: 13 valid events, 2 throttled → eligible 11; successes: six 200s
    // on public + 200 and 204 on gcc = 8; failures: 500 (no fault →
    // connector), 503 backend, 404 client.
    let all = scope(&doc, "it_alpha", "all");
    assert_eq!(all["requests"], 13);
    assert_eq!(all["throttled"], 2);
    assert_eq!(all["eligible"], 11);
    assert_eq!(all["success"], 8);
    assert_eq!(all["connector_failures"], 1);
    assert_eq!(all["backend_failures"], 1);
    assert_eq!(all["client_failures"], 1);
    // 1 - 1 / (11 - 1)
    close(&all["availability"], 0.9);
    close(&all["success_rate"], 8.0 / 11.0);
    // k1: 3 OK + the 500 → 0.75 misses the bar; k2: 3 OK + 404 (503 is
    // backend, out) → 1.0; k3: 2 OK → 1.0. 2 of 3.
    close(&all["slo"], 2.0 / 3.0);
    assert_eq!(all["active_connections"], 3);
    // Users u1 u2 u3 u5 on public, u4 on gcc, all within week 0.
    assert_eq!(all["weekly_active_users"], serde_json::json!([5, 0, 0]));
    assert_eq!(all["monthly_active_connections"], 3);
    // Latencies 10, 20, 30, 40: nearest rank p50 = 2nd = 20, p95 = p99 = 40.
    close(&all["latency_ms"]["p50"], 20.0);
    close(&all["latency_ms"]["p99"], 40.0);
    assert_eq!(all["status"], "not_eligible");
    assert_eq!(all["criteria"]["availability"], false);
    assert_eq!(all["criteria"]["success_rate"], false);
    assert_eq!(
        doc["rejected"],
        serde_json::json!({"malformed_json": 1, "invalid_status": 1})
    );

    let public = scope(&doc, "it_alpha", "public");
    assert_eq!(public["eligible"], 9);
    close(&public["slo"], 0.5);
    let gcc = scope(&doc, "it_alpha", "gcc");
    close(&gcc["availability"], 1.0);
    // gcc has 2 eligible < min 5 → every measured criterion undecided.
    assert_eq!(gcc["status"], "insufficient_data");
    assert_eq!(gcc["criteria"]["availability"], Value::Null);

    let m = d.metrics();
    let v = |name: &str, labels: &[(&str, &str)]| metric_in(&m, name, labels);
    let pc = [("connector", "it_alpha"), ("cloud", "public")];
    let with = |extra: (&'static str, &'static str)| {
        let mut l = pc.to_vec();
        l.push(extra);
        l
    };
    assert_eq!(
        v("connector_requests_total", &with(("class", "2xx"))),
        Some(6.0)
    );
    assert_eq!(
        v("connector_requests_total", &with(("class", "4xx"))),
        Some(3.0)
    );
    assert_eq!(
        v("connector_requests_total", &with(("class", "5xx"))),
        Some(2.0)
    );
    assert_eq!(v("connector_throttled_total", &pc), Some(2.0));
    assert_eq!(
        v("connector_failures_total", &with(("origin", "connector"))),
        Some(1.0)
    );
    assert_eq!(
        v("connector_failures_total", &with(("origin", "backend"))),
        Some(1.0)
    );
    // Counters carry real clouds only.
    assert_eq!(
        v(
            "connector_throttled_total",
            &[("connector", "it_alpha"), ("cloud", "all")]
        ),
        None
    );
    let ac = [("connector", "it_alpha"), ("cloud", "all")];
    let with_all = |extra: (&'static str, &'static str)| {
        let mut l = ac.to_vec();
        l.push(extra);
        l
    };
    assert_eq!(
        v("connector_availability_ratio", &with_all(("window", "30d"))),
        Some(0.9)
    );
    assert_eq!(
        v(
            "connector_latency_seconds",
            &[
                ("connector", "it_alpha"),
                ("cloud", "all"),
                ("window", "30d"),
                ("percentile", "50")
            ]
        ),
        Some(0.02)
    );
    assert_eq!(
        v("connector_ga_status", &with_all(("status", "not_eligible"))),
        Some(1.0)
    );
    assert_eq!(
        v("connector_ga_status", &with_all(("status", "ga_eligible"))),
        Some(0.0)
    );
    assert_eq!(
        v(
            "connector_ga_criterion_met",
            &with_all(("criterion", "backend_in_production"))
        ),
        Some(1.0)
    );
    // Undecided criteria are absent (gcc: eligible 2 < 5).
    assert_eq!(
        v(
            "connector_ga_criterion_met",
            &[
                ("connector", "it_alpha"),
                ("cloud", "gcc"),
                ("criterion", "availability")
            ]
        ),
        None
    );
    assert_eq!(
        v(
            "connector_ga_events_rejected_total",
            &[("reason", "malformed_json")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v("connector_weekly_active_users", &with_all(("week", "0"))),
        Some(5.0)
    );

    let st = d.terminate();
    assert!(st.success(), "exit status {st:?}");

    // Restart on the same state: everything restored, nothing read twice.
    let d = Daemon::start(&brokers, "ev", "g1", &cfg, &state, &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.events_total("ev"), 15.0);
    let again = d.criteria();
    let all2 = scope(&again, "it_alpha", "all");
    for k in [
        "requests",
        "throttled",
        "eligible",
        "success",
        "connector_failures",
        "backend_failures",
        "client_failures",
        "active_connections",
        "weekly_active_users",
        "monthly_active_connections",
    ] {
        assert_eq!(all2[k], all[k], "{k} after restart");
    }
    assert_eq!(again["rejected"], doc["rejected"]);
}

#[test]
fn rejected_events_go_to_the_dead_letter_topic_with_their_reason() {
    let k = DeadLetterCluster::start("g2");
    let ok = format!(
        r#"{{"ts":"{}","connector":"it_alpha","status":200}}"#,
        iso(1)
    );
    let old = r#"{"ts":1000,"connector":"it_alpha","status":200}"#;
    let payloads = vec![
        "{broken".to_string(),
        format!(
            "{ok}\n{{\"ts\":\"{}\",\"connector\":\"it_alpha\",\"status\":\"x\"}}",
            iso(1)
        ),
        format!("[{ok},{old}]"),
    ];
    produce(&producer(&k.brokers), "ev", &payloads);
    let d = Daemon::start(&k.brokers, "ev", "g2", &k.cfg, &k.dir.path().join("s"), &[]);
    d.wait_for(|d| d.events_total("ev") == 5.0, "5 events read");
    assert_eq!(
        d.metric(
            "connector_ga_events_rejected_total",
            &[("reason", "too_old")]
        ),
        Some(1.0)
    );

    let got = k.dead_letters("dlq-reader", 3);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].0["reason"], "malformed_json");
    assert_eq!(got[0].1, "{broken");
    assert_eq!(got[1].0["reason"], "invalid_status");
    assert!(
        got[1].1.contains("\"status\":\"x\""),
        "the rejected line itself: {}",
        got[1].1
    );
    assert!(!got[1].1.contains('\n'));
    assert_eq!(got[2].0["reason"], "too_old");
    assert_eq!(got[2].0["index"], "1");
    assert_eq!(got[2].0["source_topic"], "ev");
    // Every copy delivered: each drop reason is exported, at 0.
    for why in ["too_large", "queue_full", "refused", "undelivered"] {
        assert_eq!(
            d.metric(
                "connector_ga_dead_letters_dropped_total",
                &[("reason", why)]
            ),
            Some(0.0),
            "{why}"
        );
    }
}

/// Regression: a dead-letter copy over the producer's size limit
/// (`message.max.bytes`, 1 MB by default; 1,000 bytes here) was lost
/// with a log line and no count. The short copy still arrives.
#[test]
fn dead_letters_too_large_are_counted() {
    let k = DeadLetterCluster::start("g-dlq-big");
    std::fs::write(
        &k.cfg,
        std::fs::read_to_string(&k.cfg).unwrap()
            + "\n[kafka.properties]\n\"message.max.bytes\" = \"1000\"\n",
    )
    .unwrap();
    let ok = format!(
        r#"{{"ts":"{}","connector":"it_alpha","status":200}}"#,
        iso(1)
    );
    let big = format!("{{broken {}", "x".repeat(1500));
    produce(
        &producer(&k.brokers),
        "ev",
        &[format!("{ok}\n{big}\n{ok}"), "{short".to_string()],
    );
    let d = Daemon::start(
        &k.brokers,
        "ev",
        "g-dlq-big",
        &k.cfg,
        &k.dir.path().join("s"),
        &[],
    );
    d.wait_for(|d| d.events_total("ev") == 4.0, "4 events read");
    let dropped = |why: &str| {
        d.metric(
            "connector_ga_dead_letters_dropped_total",
            &[("reason", why)],
        )
    };
    assert_eq!(dropped("too_large"), Some(1.0));
    assert_eq!(dropped("refused"), Some(0.0));
    assert_eq!(
        d.metric(
            "connector_ga_events_rejected_total",
            &[("reason", "malformed_json")]
        ),
        Some(2.0)
    );
    let got = k.dead_letters("dlq-big-reader", 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, "{short");
}

#[test]
fn two_members_of_one_group_count_every_event_once() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("ev", 4, 1).unwrap();
    rekeyed_topic(&mock, "g3", 4);
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    // The mock cluster completes a rebalance only after a session timeout
    // when a member joins: keep it short.
    let cfg = write_config(
        dir.path(),
        "\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n",
    );
    let batch = |from: i64| -> Vec<String> {
        (0..200)
            .map(|i| {
                format!(
                    r#"{{"ts":"{}","connector":"it_alpha","status":200,"user":"u{i}"}}"#,
                    iso(from + i % 50)
                )
            })
            .collect()
    };
    let p = producer(&brokers);
    produce(&p, "ev", &batch(0));
    let fast = [("CONNECTOR_GA__STATE__CHECKPOINT_INTERVAL_SECONDS", "1")];
    // SPEC §12: the members share one state store; a partition that moves
    // is restored from the checkpoint its previous owner wrote.
    let shared = dir.path().join("shared-state");
    let a = Daemon::start(&brokers, "ev", "g3", &cfg, &shared, &fast);
    a.wait_for(|d| d.events_total("ev") == 200.0, "a reads the first 200");
    // Let a snapshot (and its commit) cover them: the mock cluster refuses
    // commits during the rebalance itself (see kafka.rs).
    std::thread::sleep(Duration::from_secs(3));
    let b = Daemon::start(&brokers, "ev", "g3", &cfg, &shared, &fast);
    produce(&p, "ev", &batch(60));
    let total = |d: &Daemon| d.requests("it_alpha", "2xx").unwrap_or(0.0);
    // Read (where they are counted) and aggregated (after the re-key stage).
    let start = Instant::now();
    while (a.events_total("ev") + b.events_total("ev") < 400.0 || total(&a) + total(&b) < 400.0)
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(a.events_total("ev") + b.events_total("ev"), 400.0);
    assert_eq!(total(&a) + total(&b), 400.0);
    let owns = |d: &Daemon| {
        d.metric("connector_ga_tasks_owned", &[]).unwrap_or(0.0)
            + d.metric("connector_ga_read_tasks_owned", &[])
                .unwrap_or(0.0)
    };
    assert!(owns(&b) > 0.0, "the second member got partitions");
    // Each partition is one member's task, and each says it is partial.
    let (ca, cb) = (a.criteria(), b.criteria());
    let mut tasks: Vec<i64> = [&ca, &cb]
        .iter()
        .flat_map(|c| {
            c["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_i64().unwrap())
        })
        .collect();
    tasks.sort();
    assert_eq!(tasks, vec![0, 1, 2, 3]);
    assert_eq!(ca["members_partial"], true);
    assert_eq!(cb["members_partial"], true);
}

/// The broker in its own process (`mock-kafka`), frozen with SIGSTOP while
/// the daemon runs and thawed with SIGCONT: an unresponsive broker, with no
/// data lost on its side. (`MockCluster::broker_down`/`broker_up` in-process
/// was seen aborting the whole test binary when the mock could not re-bind
/// its listener.)
#[test]
fn broker_outage_loses_nothing() {
    let mock = MockKafka::start(&["ev:2", "g4-by-connector:2"]);
    let brokers = mock.brokers.clone();
    let signal = |sig: &str| mock.signal(sig);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let events: Vec<String> = (0..3000)
        .map(|i| {
            format!(
                r#"{{"ts":"{}","connector":"it_alpha","status":200}}"#,
                iso(i % 600)
            )
        })
        .collect();
    produce(&producer(&brokers), "ev", &events[..1500]);
    let d = Daemon::start(&brokers, "ev", "g4", &cfg, &dir.path().join("s"), &[]);
    d.wait_for(|d| d.events_total("ev") == 1500.0, "first half read");
    signal("-STOP");
    std::thread::sleep(Duration::from_secs(3));
    // Still alive and still serving its last numbers.
    assert_eq!(d.status("/healthz"), Some(200));
    assert_eq!(d.events_total("ev"), 1500.0);
    signal("-CONT");
    produce(&producer(&brokers), "ev", &events[1500..]);
    d.wait_for(
        |d| d.events_total("ev") == 3000.0,
        "all read after the outage",
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(d.events_total("ev"), 3000.0);
    assert_eq!(d.requests("it_alpha", "2xx"), Some(3000.0));
}

/// Regression: SIGTERM while the broker does not answer took ~90 s and
/// exited 1: the final synchronous commit, then the consumer's close, each
/// waited out the group session. Now the commit is given a few seconds,
/// the daemon exits 0 within the 10 s the README promises, and nothing is
/// lost: a restart resumes at the checkpoints written at the signal.
/// (A 15 s session: without the bound the commit alone outlasts 10 s.)
#[test]
fn sigterm_while_the_broker_hangs_exits_promptly_and_loses_nothing() {
    let mock = MockKafka::start(&["ev:2", "g-hang-by-connector:2"]);
    let brokers = mock.brokers.clone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "\n[kafka.properties]\n\"session.timeout.ms\" = \"15000\"\n",
    );
    let events: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"ts":"{}","connector":"it_alpha","status":200}}"#,
                iso(i % 600)
            )
        })
        .collect();
    produce(&producer(&brokers), "ev", &events[..600]);
    let state = dir.path().join("s");
    let d = Daemon::start(&brokers, "ev", "g-hang", &cfg, &state, &[]);
    d.wait_for(|d| d.events_total("ev") == 600.0, "600 read");
    mock.signal("-STOP");
    std::thread::sleep(Duration::from_secs(1));
    let st = d.terminate(); // asserts an exit within 10 s
    assert!(st.success(), "exit status {st}");
    mock.signal("-CONT");
    produce(&producer(&brokers), "ev", &events[600..]);
    let d = Daemon::start(&brokers, "ev", "g-hang", &cfg, &state, &[]);
    d.wait_for(|d| d.events_total("ev") == 1000.0, "all 1000 after restart");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(d.events_total("ev"), 1000.0);
    assert_eq!(d.requests("it_alpha", "2xx"), Some(1000.0));
}

/// Regression (an outside audit): the broker gone for a few seconds before
/// SIGTERM, after a periodic commit. The final commit answered at once
/// (nothing new to commit), and the consumer's close then waited out the
/// session (45 s, exit 1) on the synchronous commit of the revocation it
/// runs. Both are bounded now: exit 0 within 10 s.
#[test]
fn sigterm_after_the_broker_died_exits_promptly() {
    let mock = MockKafka::start(&["ev:2", "g-dead-by-connector:2"]);
    let brokers = mock.brokers.clone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "\n[state]\ncheckpoint_interval_seconds = 1\n");
    let events: Vec<String> = (0..50)
        .map(|i| {
            format!(
                r#"{{"ts":"{}","connector":"it_alpha","status":200}}"#,
                iso(i)
            )
        })
        .collect();
    produce(&producer(&brokers), "ev", &events);
    let d = Daemon::start(&brokers, "ev", "g-dead", &cfg, &dir.path().join("s"), &[]);
    d.wait_for(|d| d.events_total("ev") == 50.0, "50 read");
    d.wait_for(
        |d| d.requests("it_alpha", "2xx") == Some(50.0),
        "50 counted",
    );
    // Periodic checkpoints, and their commits, with nothing left to read.
    std::thread::sleep(Duration::from_millis(2500));
    mock.signal("-KILL");
    std::thread::sleep(Duration::from_secs(3));
    let st = d.terminate(); // asserts an exit within 10 s
    assert!(st.success(), "exit status {st}");
}

/// Regression (an outside audit): the topics deleted and created again (a
/// rebuilt cluster: here a new `mock-kafka` process) while the state store
/// is kept. Keyed input read the new partition again at every restart
/// (counted twice); through the re-key stage every new valid event was
/// taken for a replay and dropped. Now the counts of the old topic stay
/// and the new one is counted once, across restarts. By hand: 40 events
/// before, 10 after: 50.
#[test]
fn recreated_topics_keep_the_counts_and_count_the_new_events_once() {
    for rekeyed in [false, true] {
        let group = if rekeyed {
            "g-recreate-r"
        } else {
            "g-recreate-k"
        };
        let rekeyed_topic = format!("{group}-by-connector:1");
        let topics = ["ev:1", rekeyed_topic.as_str()];
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(
            dir.path(),
            "\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n",
        );
        let state = dir.path().join("s");
        let start = |brokers: &str| {
            let mut c = DaemonCmd::new(brokers)
                .topic("ev")
                .group(group)
                .config(&cfg)
                .state_dir(&state);
            if rekeyed {
                c = c.rekeyed();
            }
            c.start()
        };
        let events = |n: i64| -> Vec<String> {
            (0..n)
                .map(|i| {
                    format!(
                        r#"{{"ts":"{}","connector":"it_alpha","status":200}}"#,
                        iso(i)
                    )
                })
                .collect()
        };
        let mock = MockKafka::start(&topics);
        produce(&producer(&mock.brokers), "ev", &events(40));
        let d = start(&mock.brokers);
        d.wait_for(
            |d| d.requests("it_alpha", "2xx") == Some(40.0),
            "40 counted",
        );
        assert!(d.terminate().success());
        drop(mock);

        let mock = MockKafka::start(&topics);
        produce(&producer(&mock.brokers), "ev", &events(10));
        let d = start(&mock.brokers);
        d.wait_for(
            |d| d.requests("it_alpha", "2xx") == Some(50.0),
            &format!("50 counted after the topics were recreated (re-key {rekeyed})"),
        );
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            d.requests("it_alpha", "2xx"),
            Some(50.0),
            "re-key {rekeyed}"
        );
        assert!(d.terminate().success());
        // Restarted on the new topics: nothing read twice.
        let d = start(&mock.brokers);
        d.wait_for(|d| d.status("/readyz") == Some(200), "ready again");
        d.wait_for(|d| d.requests("it_alpha", "2xx").is_some(), "restored");
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(
            d.requests("it_alpha", "2xx"),
            Some(50.0),
            "after a restart (re-key {rekeyed})"
        );
        assert!(d.terminate().success());
    }
}

/// SPEC §11 live: `?daily=true` is `report --daily` over the same events at
/// the daemon's `now`, key for key; without it there is no `daily`; the
/// §11 gauges are there when their value is, absent while null.
#[test]
fn daily_api_equals_report_daily_and_budget_metrics() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("ev", 1, 1).unwrap();
    rekeyed_topic(&mock, "g-daily", 1);
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let events = alpha_events();
    let input = dir.path().join("events.ndjson");
    std::fs::write(&input, events.join("\n") + "\n").unwrap();
    produce(&producer(&brokers), "ev", &events);

    let d = Daemon::start(
        &brokers,
        "ev",
        "g-daily",
        &cfg,
        &dir.path().join("state"),
        // Through the re-key stage (SPEC §12).
        &[("CONNECTOR_GA__KAFKA__INPUT_KEYED_BY_CONNECTOR", "false")],
    );
    d.wait_for(|d| d.events_total("ev") == 15.0, "15 events read");
    // 15 - 2 rejected (invalid_status, malformed_json) = 13 valid, counted
    // once the re-keyed records are aggregated.
    d.wait_for(
        |d| {
            d.criteria()["scopes"].as_array().is_some_and(|s| {
                s.iter().any(|s| {
                    s["connector"] == "it_alpha" && s["cloud"] == "all" && s["requests"] == 13
                })
            })
        },
        "13 valid events aggregated",
    );
    let mut live: Value = d
        .http
        .get(d.url("/api/v1/criteria?daily=true"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    // SPEC §12: the one member owns the topic's one partition, so its
    // report is the whole one; `report` has no membership keys.
    // Input not keyed by connector: the member reads and re-keys the
    // input's partition 0 and aggregates partition 0 of the re-keyed topic
    // (created with the input's one partition).
    assert_eq!(live["tasks"], serde_json::json!([0]));
    assert_eq!(live["read_tasks"], serde_json::json!([0]));
    assert_eq!(live["members_partial"], serde_json::json!(false));
    let m = live.as_object_mut().unwrap();
    m.remove("tasks");
    m.remove("read_tasks");
    m.remove("members_partial");
    let now = live["now"].as_str().unwrap().to_string();
    let out = Command::new(bin())
        .args(["report", "--format", "json", "--daily", "--now", &now])
        .arg("--input")
        .arg(&input)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file: Value = serde_json::from_slice(&out.stdout).unwrap();
    crate::common::assert_json_eq(&live, &file);
    // 30 rows per scope (the default criteria window), oldest first.
    let all = scope(&live, "it_alpha", "all");
    assert_eq!(all["daily"].as_array().unwrap().len(), 30);
    assert_eq!(all["daily"][29]["date"], &now[..10]);

    let plain = d.criteria();
    assert!(scope(&plain, "it_alpha", "all").get("daily").is_none());

    let l = |cloud, crit| {
        [
            ("connector", "it_alpha"),
            ("cloud", cloud),
            ("criterion", crit),
        ]
    };
    // /metrics is rendered in the background: wait for a rendering that
    // has seen the events.
    d.wait_for(
        |d| {
            d.metric("connector_ga_budget_remaining", &l("all", "availability"))
                .is_some()
        },
        "budget gauge",
    );
    let m = d.metrics();
    // all: availability 0.9 < 0.9995, decided (eligible 11 >= 5): false,
    // budget 0; every event is from today, so no slid window is true
    // before it is empty: no recovery date, no sample.
    assert_eq!(
        metric_in(
            &m,
            "connector_ga_budget_remaining",
            &l("all", "availability")
        ),
        Some(0.0)
    );
    assert_eq!(
        metric_in(
            &m,
            "connector_ga_recovers_timestamp_seconds",
            &l("all", "availability")
        ),
        None
    );
    // gcc: eligible 2 < 5, undecided: no budget sample.
    assert_eq!(
        metric_in(
            &m,
            "connector_ga_budget_remaining",
            &l("gcc", "availability")
        ),
        None
    );
    // preview_since 2026-01-01 + 6 months = 2026-07-01T00:00:00Z.
    assert_eq!(
        metric_in(
            &m,
            "connector_ga_exception_opens_timestamp_seconds",
            &[("connector", "it_alpha"), ("cloud", "all")]
        ),
        Some(1_782_864_000.0)
    );
    assert_eq!(d.terminate().code(), Some(0));
}

/// README "Metrics": an event is counted in `connector_ga_events_total`
/// where it is first read. With the re-key stage the re-keyed topic's tasks
/// read nothing new, so `<group>-by-connector` has no series at all (it was
/// exported, always 0, reading like a stalled topic).
/// `connector_requests_total{class="2xx"}` summed over every scope.
fn ok_2xx(d: &Daemon) -> f64 {
    samples(&d.metrics(), "connector_requests_total")
        .into_iter()
        .filter(|(l, _)| l["class"] == "2xx")
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn rekeyed_run_counts_events_only_under_the_input_topic() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("ev", 2, 1).unwrap();
    rekeyed_topic(&mock, "g-evtopic", 2);
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    // 12 valid events, 4 for each of 3 connectors, all 200 on the public cloud.
    let events: Vec<String> = (0..12)
        .map(|i| {
            format!(
                r#"{{"ts":"{}","connector":"it_c{}","status":200,"user":"u{i}"}}"#,
                iso(1 + i),
                i % 3
            )
        })
        .collect();
    produce(&producer(&brokers), "ev", &events);
    let d = DaemonCmd::new(&brokers)
        .rekeyed()
        .topic("ev")
        .group("g-evtopic")
        .config(&cfg)
        .state_dir(&dir.path().join("s"))
        .start();
    // Aggregated after the re-key stage: 2xx summed over the 3 connectors
    // is 4 + 4 + 4 = 12, so the re-keyed topic's tasks exist by now.
    d.wait_for(|d| ok_2xx(d) == 12.0, "the 12 events aggregated");
    let m = d.metrics();
    let got: Vec<(String, f64)> = samples(&m, "connector_ga_events_total")
        .into_iter()
        .map(|(l, v)| (l["topic"].clone(), v))
        .collect();
    // 12 lines read from `ev`; nothing under `g-evtopic-by-connector`.
    assert_eq!(got, vec![("ev".to_string(), 12.0)], "{m}");
}

/// Regression (CI failure of `tests/crash/fallback.sh`): a task that had
/// read nothing was checkpointed at the first interval, without an offset.
/// When its next checkpoint, the first with events, was damaged, the
/// member fell back to that empty one and resumed at Kafka's committed
/// offset: every event of the damaged checkpoint was lost. A task is now
/// written only once it has read something, so each slot is a restart point.
#[test]
fn an_idle_partition_writes_no_checkpoint_and_a_fallback_counts_every_event() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("ev", 2, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    // A short session: the restarted member need not wait out the killed one.
    let cfg = write_config(
        dir.path(),
        "\n[kafka.properties]\n\"session.timeout.ms\" = \"3000\"\n\"heartbeat.interval.ms\" = \"300\"\n",
    );
    let state = dir.path().join("s");
    let ckpt = |p: i32, slot: &str| state.join(format!("tasks/ev/{p}/{slot}.ckpt"));
    let events = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"ts":"{}","connector":"it_alpha","status":200}}"#,
                    iso(i as i64)
                )
            })
            .collect()
    };
    let p = producer(&brokers);
    let to = |part: i32, payloads: &[String]| {
        for pl in payloads {
            p.send(
                rdkafka::producer::BaseRecord::<(), _>::to("ev")
                    .payload(pl.as_str())
                    .partition(part),
            )
            .unwrap();
        }
        rdkafka::producer::Producer::flush(&p, Duration::from_secs(30)).unwrap();
    };
    let wait_file = |path: &std::path::Path| {
        let start = Instant::now();
        while !path.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no {}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let start = || {
        Daemon::start(
            &brokers,
            "ev",
            "g-idle",
            &cfg,
            &state,
            &[("CONNECTOR_GA__STATE__CHECKPOINT_INTERVAL_SECONDS", "1")],
        )
    };

    // Partition 0 only: partition 1's task reads nothing for three intervals.
    to(0, &events(5));
    let d = start();
    d.wait_for(|d| d.events_total("ev") == 5.0, "partition 0 read");
    wait_file(&ckpt(0, "b"));
    std::thread::sleep(Duration::from_secs(3));
    for slot in ["a", "b"] {
        assert!(
            !ckpt(1, slot).exists(),
            "partition 1 read nothing, yet has {slot}.ckpt"
        );
    }

    // Partition 1: 3 events (its first checkpoint, sequence 1, in slot b),
    // then 4 more (sequence 2, slot a), whose offsets are then committed.
    to(1, &events(3));
    d.wait_for(
        |d| d.events_total("ev") == 8.0,
        "first 3 of partition 1 read",
    );
    wait_file(&ckpt(1, "b"));
    to(1, &events(4));
    d.wait_for(
        |d| d.events_total("ev") == 12.0,
        "next 4 of partition 1 read",
    );
    wait_file(&ckpt(1, "a"));
    std::thread::sleep(Duration::from_secs(2));
    d.sigkill();

    // Bit rot in the newest (by time: a checkpoint taken between two of the
    // first 3 events would shift the slots): the member resumes from the
    // previous one, at its offset, and reads the events after it again:
    // 5 + 3 + 4.
    let modified = |slot| {
        std::fs::metadata(ckpt(1, slot))
            .unwrap()
            .modified()
            .unwrap()
    };
    let newest = ckpt(
        1,
        if modified("a") >= modified("b") {
            "a"
        } else {
            "b"
        },
    );
    let mut b = std::fs::read(&newest).unwrap();
    let at = b.len() - 10;
    b[at] ^= 0xff;
    std::fs::write(&newest, &b).unwrap();
    let d = start();
    d.wait_for(
        |d| d.events_total("ev") == 12.0,
        "every event counted after the fallback",
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.events_total("ev"), 12.0);
    assert_eq!(d.requests("it_alpha", "2xx"), Some(12.0));
}

/// README "Configuration": connectors are routed over the partition count
/// pinned in the state store when the re-keyed topic was first seen, not
/// the topic's count now. Here the pin says 2 and the topic has 4 (as if 2
/// were added while members ran). Routed over 4, `it_pin0` and `it_pin2`
/// (CRC-32 mod 4 = 3) and `it_pin4` (2) would leave their partitions for
/// 2 and 3, splitting each connector between two tasks. Worked by hand
/// (Python `zlib.crc32`): mod 2, `it_pin0`..`it_pin3` are 1 and
/// `it_pin4`, `it_pin5` are 0.
#[test]
fn rekeyed_routing_keeps_the_pinned_partition_count_when_partitions_are_added() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use std::collections::{BTreeMap, BTreeSet};

    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("ev", 2, 1).unwrap();
    rekeyed_topic(&mock, "g-pin", 4);
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let state = dir.path().join("s");
    std::fs::create_dir_all(state.join("rekey")).unwrap();
    std::fs::write(state.join("rekey/g-pin-by-connector.partitions"), "2\n").unwrap();
    // 12 valid events, 2 for each of 6 connectors.
    let events: Vec<String> = (0..12)
        .map(|i| {
            format!(
                r#"{{"ts":"{}","connector":"it_pin{}","status":200}}"#,
                iso(1 + i),
                i % 6
            )
        })
        .collect();
    produce(&producer(&brokers), "ev", &events);
    let d = DaemonCmd::new(&brokers)
        .rekeyed()
        .topic("ev")
        .group("g-pin")
        .config(&cfg)
        .state_dir(&state)
        .start();
    d.wait_for(|d| ok_2xx(d) == 12.0, "the 12 events aggregated");

    // Which connectors each partition of the re-keyed topic holds.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "g-pin-reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut high = BTreeMap::new();
    for p in 0..4 {
        let (_, h) = c
            .fetch_watermarks("g-pin-by-connector", p, Duration::from_secs(10))
            .unwrap();
        high.insert(p, h);
        tpl.add_partition_offset("g-pin-by-connector", p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut held: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
    let mut read: BTreeMap<i32, i64> = BTreeMap::new();
    let until = Instant::now() + Duration::from_secs(30);
    while (0..4).any(|p| read.get(&p).copied().unwrap_or(0) < high[&p]) {
        assert!(Instant::now() < until, "read {read:?} of {high:?}");
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        read.insert(m.partition(), m.offset() + 1);
        let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let evs = match v {
            Value::Array(a) => a,
            one => vec![one],
        };
        for e in evs {
            held.entry(m.partition())
                .or_default()
                .insert(e["connector"].as_str().unwrap().to_string());
        }
    }
    let want: BTreeMap<i32, BTreeSet<String>> = [
        (0, vec!["it_pin4", "it_pin5"]),
        (1, vec!["it_pin0", "it_pin1", "it_pin2", "it_pin3"]),
    ]
    .into_iter()
    .map(|(p, cs)| (p, cs.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(held, want, "partitions 2 and 3 must stay empty");
    assert_eq!((high[&2], high[&3]), (0, 0));
    // The pin is left as it was.
    assert_eq!(
        std::fs::read_to_string(state.join("rekey/g-pin-by-connector.partitions")).unwrap(),
        "2\n"
    );
}
