//! The daemon binary under abuse and misconfiguration (issue 10, items 2, 3,
//! 4, 5 and 9): each test failed against the build before its fix (run one
//! against another build with `CGA_BIN=path/to/connector-ga-exporter`).
//! No assertion is on speed: waits are generous upper bounds only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::harness::{
    bin, iso, produce, producer, rekeyed_topic, write_config, Daemon, DaemonCmd, DeadLetterCluster,
};

/// Runs `run` with `config` (and `env`) and returns (exit code, stderr),
/// or an error if it is still running after 20 s (it started despite the
/// configuration).
fn run_expecting_exit(
    config: &str,
    env: &[(&str, &str)],
    state: &Path,
) -> Result<(i32, String), String> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, config).unwrap();
    let (mut cmd, _) = DaemonCmd::new("127.0.0.1:9")
        .config(&cfg)
        .state_dir(state)
        .rust_log(None)
        .stderr_piped()
        .envs(env)
        .command();
    let mut child = cmd.spawn().unwrap();
    wait_until_exit(&mut child, 20)
        .map(|(st, err)| (st.code().unwrap_or(-1), err))
        .ok_or_else(|| format!("config {config:?} env {env:?}: still running 20 s after start"))
}

/// Waits for `child` (stderr piped) to exit, at most `secs` seconds: its
/// exit status and stderr, or None after killing it at the deadline.
fn wait_until_exit(child: &mut Child, secs: u64) -> Option<(ExitStatus, String)> {
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    Some((status, err))
}

/// Runs `cmd` (stderr piped) until it exits, at most `secs` seconds, else
/// kills it and panics with `stuck`; its exit status and stderr.
fn exit_and_stderr(mut cmd: Command, secs: u64, stuck: &str) -> (ExitStatus, String) {
    let mut child = cmd.spawn().unwrap();
    wait_until_exit(&mut child, secs).unwrap_or_else(|| panic!("{stuck}"))
}

/// Asserts that a start-up stopped (`status` a failure) with exactly one
/// stderr line, which starts with `prefix` and contains each of `want`.
fn assert_stopped_with_one_line(status: ExitStatus, err: &str, prefix: &str, want: &[&str]) {
    assert!(!status.success(), "exit {status}, stderr:\n{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got:\n{err}");
    assert!(
        lines[0].starts_with(prefix) && want.iter().all(|w| lines[0].contains(w)),
        "want one line starting with {prefix:?} containing {want:?}, got:\n{err}"
    );
}

/// Item 9: each bad setting stops start-up with exactly one line that names
/// the key and its allowed values or range.
#[test]
fn bad_config_stops_startup_with_one_line_naming_the_key() {
    let state = tempfile::tempdir().unwrap();
    // (config file, environment, what the one line must contain)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (
            "[log]\nlevel = \"warnn\"\n",
            &[],
            &[
                "`log.level`",
                "\"warnn\"",
                "off, error, warn, info, debug, trace",
            ],
        ),
        (
            "",
            &[("RUST_LOG", "%%garbage==")],
            &["RUST_LOG", "off, error, warn, info, debug, trace"],
        ),
        (
            "[state]\nmax_connections_per_scope = 0\n",
            &[],
            &[
                "`state.max_connections_per_scope`",
                "0 is outside 1..=10000000",
            ],
        ),
        (
            "[kafka]\nworkers = 5000\n",
            &[],
            &[
                "`kafka.workers`",
                "5000 is outside 0..=256",
                "0 = one per CPU core",
            ],
        ),
        (
            "",
            &[("CONNECTOR_GA__KAFKA__WORKERS", "5000")],
            &["`kafka.workers`", "5000 is outside 0..=256"],
        ),
        (
            "[state]\ncheckpoint_interval_seconds = 1000000000000\n",
            &[],
            &[
                "`state.checkpoint_interval_seconds`",
                "1000000000000 is outside 1..=3600",
            ],
        ),
        // The bracket is missing at column 10 of line 1.
        (
            "[criteria\nwindow_days = 30\n",
            &[],
            &["c.toml", "line 1, column 10", "unclosed table"],
        ),
        (
            "[connectors.a]\npreview_since = 2026-03-01T00:00:00Z\n",
            &[],
            &["`connectors.a.preview_since`", "YYYY-MM-DD"],
        ),
        (
            "[criteria]\nsuccess_rate_formula = \"gaa\"\n",
            &[],
            &[
                "`criteria.success_rate_formula`",
                "\"gaa\"",
                "\"ga\", \"isv\"",
            ],
        ),
        (
            "[criteria]\nunattributed_failure_origin = \"nobody\"\n",
            &[],
            &[
                "`criteria.unattributed_failure_origin`",
                "\"connector\", \"backend\", \"client\"",
            ],
        ),
        (
            "[log]\nformat = \"yaml\"\n",
            &[],
            &["`log.format`", "\"text\", \"json\""],
        ),
        (
            "[http]\nmax_connections = 0\n",
            &[],
            &["`http.max_connections`", "0 is outside 1..=65536"],
        ),
        (
            "[http]\nheader_read_timeout_seconds = 0\n",
            &[],
            &[
                "`http.header_read_timeout_seconds`",
                "0 is outside 1..=3600",
            ],
        ),
        (
            "[http]\nmax_concurrent_renders = 0\n",
            &[],
            &["`http.max_concurrent_renders`", "0 is outside 1..=64"],
        ),
        (
            "[state]\nurl = \"https://bucket/prefix\"\n",
            &[],
            &[
                "`state.url`",
                "\"https\"",
                "az://, azure://, abfs://, abfss://, s3://, s3a://, gs://, file://",
            ],
        ),
        (
            "",
            &[("CONNECTOR_GA__STATE__URL", "s3:///no-bucket")],
            &["`state.url`", "names no bucket"],
        ),
    ];
    let mut failures = Vec::new();
    for (config, env, want) in cases {
        let (code, err) = match run_expecting_exit(config, env, state.path()) {
            Ok(x) => x,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let lines: Vec<&str> = err.lines().collect();
        let ok = code != 0
            && lines.len() == 1
            && lines[0].starts_with("connector-ga-exporter: ")
            && want.iter().all(|w| lines[0].contains(w));
        if !ok {
            failures.push(format!(
                "config {config:?} env {env:?}: exit {code}, want one line containing {want:?}, got:\n{err}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Makes `dir` (a directory the daemon writes into) a regular file, so
/// nothing can be created under it (tests run as root: permissions would
/// not stop a write).
fn block_dir(dir: &Path) {
    if dir.is_dir() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    std::fs::write(dir, b"blocker").unwrap();
}

/// Item 2: a state directory where the first snapshot cannot be written
/// stops start-up with one line (before: the daemon stayed up, consuming
/// nothing, silent).
#[test]
fn unwritable_state_dir_stops_startup_with_one_line() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("ev", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // The start-up probe goes to `members/`.
    block_dir(&state.join("members"));
    let cfg = write_config(dir.path(), "");
    let (cmd, _) = DaemonCmd::new(&mock.bootstrap_servers())
        .topic("ev")
        .config(&cfg)
        .state_dir(&state)
        .rust_log(Some("error"))
        .stderr_piped()
        .command();
    let (status, err) = exit_and_stderr(
        cmd,
        30,
        "the daemon kept running without a writable state directory",
    );
    assert_stopped_with_one_line(
        status,
        &err,
        "connector-ga-exporter: config key `state.dir`",
        &["members"],
    );
}

/// SPEC §12: input not keyed by connector needs `<group_id>-by-connector`.
/// Where the broker cannot create it (librdkafka's mock cluster has no
/// CreateTopics), start-up stops with one line that names the topic and
/// the partition count to create: the input's 3.
#[test]
fn rekeyed_topic_that_cannot_be_created_stops_startup_with_one_line() {
    let (status, err) = rekeyed_startup("g-norekey", 3, None, None);
    assert_stopped_with_one_line(
        status,
        &err,
        "connector-ga-exporter: config key `kafka.input_keyed_by_connector`",
        &["`g-norekey-by-connector`", "create it with 3 partitions"],
    );
}

/// Starts a member with the re-key stage on a mock whose input `ev` has
/// `input` partitions and whose re-keyed topic has `rekeyed` (None: absent;
/// the mock cannot create it), the state store pinning `pin` as its routing
/// count, and waits for it to stop: its status and stderr.
fn rekeyed_startup(
    group: &str,
    input: i32,
    rekeyed: Option<i32>,
    pin: Option<&str>,
) -> (ExitStatus, String) {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("ev", input, 1).unwrap();
    if let Some(n) = rekeyed {
        rekeyed_topic(&mock, group, n);
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let state = dir.path().join("s");
    if let Some(pin) = pin {
        std::fs::create_dir_all(state.join("rekey")).unwrap();
        std::fs::write(
            state.join(format!("rekey/{group}-by-connector.partitions")),
            pin,
        )
        .unwrap();
    }
    let (cmd, _) = DaemonCmd::new(&mock.bootstrap_servers())
        .rekeyed()
        .topic("ev")
        .group(group)
        .config(&cfg)
        .state_dir(&state)
        .rust_log(Some("error"))
        .stderr_piped()
        .command();
    exit_and_stderr(
        cmd,
        60,
        &format!("the daemon of group {group} kept running"),
    )
}

/// The re-keyed topic has fewer partitions than the count its connectors
/// are routed by (pinned in the state store: here 4, the topic 2, as after
/// deleting and creating it again). Routing by 4 would send events to
/// partitions that do not exist; routing by 2 would move connectors away
/// from their restored state. Start-up stops with one line naming the key.
#[test]
fn a_rekeyed_topic_smaller_than_its_pinned_count_stops_startup_with_one_line() {
    let (status, err) = rekeyed_startup("g-shrunk", 2, Some(2), Some("4\n"));
    assert_stopped_with_one_line(
        status,
        &err,
        "connector-ga-exporter: state store",
        &[
            "`rekey/g-shrunk-by-connector.partitions`",
            "over 4 partitions",
            "`g-shrunk-by-connector` has 2",
        ],
    );
}

/// Item 2: snapshots failing after start are counted, logged and retried
/// every interval; once the directory is writable again they succeed.
#[test]
fn failed_checkpoints_are_counted_and_retried() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("ev", 1, 1).unwrap();
    rekeyed_topic(&mock, "g-ck", 1);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cfg = write_config(dir.path(), "\n[state]\ncheckpoint_interval_seconds = 1\n");
    let d = Daemon::start(&mock.bootstrap_servers(), "ev", "g-ck", &cfg, &state, &[]);
    let failures = |d: &Daemon| {
        d.metric("connector_ga_checkpoint_failures_total", &[])
            .expect("connector_ga_checkpoint_failures_total is exported")
    };
    assert_eq!(failures(&d), 0.0);
    // The task of partition 0 is written under tasks/ev/0/, once it has
    // read something (a task that read nothing holds no offset to resume
    // at, so it is never written).
    let task_dir = state.join("tasks").join("ev").join("0");
    let has_ckpt = |d: &Path| d.join("a.ckpt").is_file() || d.join("b.ckpt").is_file();
    let p = producer(&mock.bootstrap_servers());
    let one = || {
        produce(
            &p,
            "ev",
            &[format!(
                r#"{{"ts":"{}","connector":"it_ck","status":200}}"#,
                iso(1)
            )],
        )
    };
    one();
    d.wait_for(|_| has_ckpt(&task_dir), "the task's first checkpoint");
    block_dir(&task_dir);
    // Only a task that changed is written: keep events coming. Counted on
    // every interval: at least two means it is retried.
    d.wait_for(
        |d| {
            one();
            failures(d) >= 2.0
        },
        "two failed checkpoints counted",
    );
    std::fs::remove_file(&task_dir).unwrap();
    let healed = chrono::Utc::now().timestamp() as f64;
    d.wait_for(
        |d| {
            d.metric("connector_ga_last_checkpoint_timestamp_seconds", &[])
                .unwrap_or(0.0)
                >= healed
                && has_ckpt(&task_dir)
        },
        "a checkpoint after the directory is writable again",
    );
    let leftovers: Vec<_> = std::fs::read_dir(&task_dir)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".ckpt"))
        .map(|e| e.file_name())
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );
    assert_eq!(d.status("/healthz"), Some(200));
}

/// Item 3: more idle connections than `http.max_connections` (and than the
/// process may open files) neither lock out `/healthz` nor starve the
/// snapshots of file descriptors, and a slowloris connection is closed
/// after the header timeout. Before: about 300 idle connections exhausted
/// the descriptors.
#[test]
fn connection_flood_keeps_healthz_and_checkpoints_working() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("ev", 1, 1).unwrap();
    rekeyed_topic(&mock, "g-flood", 1);
    let dir = tempfile::tempdir().unwrap();
    // CGA_TEST_OLD_CONFIG=1 leaves the [http] keys out, for a build that
    // does not know them.
    let http = if std::env::var_os("CGA_TEST_OLD_CONFIG").is_some() {
        ""
    } else {
        "\n[http]\nmax_connections = 64\nheader_read_timeout_seconds = 2\nidle_timeout_seconds = 30\n"
    };
    let cfg = write_config(
        dir.path(),
        &format!("{http}\n[state]\ncheckpoint_interval_seconds = 1\n"),
    );
    // 256 descriptors in all: 64 connections + 128 kept for the rest fit.
    let mut wrapper = Command::new("bash");
    wrapper.args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\"", &bin()]);
    let d = DaemonCmd::new(&mock.bootstrap_servers())
        .via(wrapper)
        .topic("ev")
        .group("g-flood")
        .config(&cfg)
        .state_dir(&dir.path().join("state"))
        .start();
    let addr = format!("127.0.0.1:{}", d.port);
    // 300 idle connections, held open by this side.
    let idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    assert!(idle.len() > 64, "{} connections opened", idle.len());
    let t0 = chrono::Utc::now().timestamp() as f64;
    assert_eq!(d.status("/healthz"), Some(200), "/healthz under the flood");
    d.wait_for(
        |d| {
            d.metric("connector_ga_last_checkpoint_timestamp_seconds", &[])
                .unwrap_or(0.0)
                >= t0
        },
        "a checkpoint during the flood",
    );
    assert_eq!(
        d.metric("connector_ga_checkpoint_failures_total", &[]),
        Some(0.0)
    );

    // Slowloris: a header line every 200 ms, never the blank line.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let start = Instant::now();
    let closed = loop {
        if start.elapsed() > Duration::from_secs(60) {
            break false;
        }
        if slow.write_all(b"X-Slow: 1\r\n").is_err() {
            break true;
        }
        let mut buf = [0u8; 1024];
        match slow.read(&mut buf) {
            // Closed, possibly after a 408.
            Ok(0) => break true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break true,
        }
    };
    assert!(closed, "a slowloris connection stayed open for 60 s");
    assert_eq!(d.status("/healthz"), Some(200));
    drop(idle);
}

/// Peak resident memory of a process (VmHWM), in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb / 1024.0
}

/// `connectors` connectors with one event each (two scopes each: the
/// cloud and `all`), then `readers` concurrent readers of `/metrics` and
/// `/api/v1/criteria` (two rounds each) while `/healthz` is polled.
/// Returns (body MB of /metrics, baseline RSS MB, peak RSS MB, healthz
/// probes, readers' wall seconds).
fn concurrent_readers(connectors: usize, readers: usize) -> (f64, f64, f64, usize, f64) {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("ev", 4, 1).unwrap();
    rekeyed_topic(&mock, "g-read", 4);
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let events: Vec<String> = (0..connectors)
        .map(|i| {
            format!(
                r#"{{"ts":"{}","connector":"c{i}","status":200,"user":"u","connection":"k","latency_ms":5}}"#,
                iso(1)
            )
        })
        .collect();
    produce(&producer(&brokers), "ev", &events);
    let d = Daemon::start(&brokers, "ev", "g-read", &cfg, &dir.path().join("s"), &[]);
    d.wait_for(
        |d| d.events_total("ev") == connectors as f64,
        "every event read",
    );
    // The rendering that holds them all.
    d.wait_for(
        |d| d.criteria()["scopes"].as_array().map_or(0, |a| a.len()) == 2 * connectors,
        "every scope rendered",
    );
    let body_mb = d.metrics().len() as f64 / 1e6;
    let pid = d.child.id();
    let before = peak_rss_mb(pid);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..readers)
        .map(|i| {
            let url = d.url(if i % 2 == 0 {
                "/metrics"
            } else {
                "/api/v1/criteria"
            });
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(300))
                    .build()
                    .unwrap();
                for _ in 0..2 {
                    let r = c.get(&url).send().unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                    let n = r.bytes().unwrap().len();
                    assert!(n > 0);
                }
            })
        })
        .collect();
    let mut probes = 0;
    let probe = {
        let stop = stop.clone();
        let url = d.url("/healthz");
        std::thread::spawn(move || {
            // A probe with the kubelet's patience would be 3 s; 10 s
            // here only says "answers", it times nothing.
            let c = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let st = c.get(&url).send().map(|r| r.status().as_u16());
                assert_eq!(st.ok(), Some(200), "/healthz while readers run");
                n += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            n
        })
    };
    for h in handles {
        h.join().expect("reader");
    }
    let wall = started.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    probes += probe.join().expect("/healthz answered throughout");
    let peak = peak_rss_mb(pid);
    (body_mb, before, peak, probes, wall)
}

/// Item 4: 40 concurrent readers of big responses share one rendering: the
/// peak memory grows by about one body, not 40, and `/healthz` answers
/// throughout. Before: each reader copied the body (and each criteria
/// request measured every scope again).
#[test]
fn concurrent_readers_share_one_rendering() {
    // 2,500 connectors → 5,000 scopes, /metrics ~30 MB.
    let (body, before, peak, probes, _) = concurrent_readers(2500, 40);
    eprintln!(
        "5,000 scopes, /metrics {body:.1} MB, 40 readers: RSS {before:.0} MB before, peak {peak:.0} MB, {probes} /healthz probes answered"
    );
    // Generous: 40 private copies of the body would add ~40 x body; shared
    // bytes add at most a few renderings (old and new, both formats, JSON).
    let bound = before + 12.0 * body;
    assert!(
        peak < bound,
        "peak RSS {peak:.0} MB >= {bound:.0} MB (before {before:.0} MB, body {body:.1} MB)"
    );
    assert!(probes > 0);
}

/// The README's measurement at 10,000 scopes (prints, asserts nothing
/// about the numbers): `cargo test --release --test it -- --ignored
/// readers_at_10k_scopes --nocapture`.
#[test]
#[ignore]
fn readers_at_10k_scopes() {
    let (body, before, peak, probes, wall) = concurrent_readers(5000, 40);
    println!(
        "10,000 scopes, /metrics {body:.1} MB, 40 readers x 2 requests: RSS {before:.0} MB before, \
         peak {peak:.0} MB, readers done in {wall:.1} s, {probes} /healthz probes all answered"
    );
}

/// Item 5: a message whose zstd batch decompresses past librdkafka's
/// `receive.message.max.bytes` (a 120 MiB NDJSON line, a few KB
/// compressed) is counted `undecodable_message`, and the events after it on
/// the same partition are counted. Before: the partition stalled forever.
#[test]
fn oversized_compressed_message_is_counted_and_skipped() {
    let k = DeadLetterCluster::start("g-big");
    let brokers = &k.brokers;
    let ok = |m: i64| {
        format!(
            r#"{{"ts":"{}","connector":"it_alpha","status":200}}"#,
            iso(m)
        )
    };
    let p = producer(brokers);
    produce(&p, "ev", &[ok(1), ok(2)]);
    {
        let big: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("compression.type", "zstd")
            .set("message.max.bytes", "200000000")
            .set("linger.ms", "0")
            .create()
            .unwrap();
        let pad = "a".repeat(120 << 20);
        let line = format!(
            r#"{{"ts":"{}","connector":"it_alpha","status":200,"pad":"{pad}"}}"#,
            iso(1)
        );
        drop(pad);
        big.send(BaseRecord::<str, str>::to("ev").payload(line.as_str()))
            .map_err(|(e, _)| e)
            .unwrap();
        big.flush(Duration::from_secs(120)).unwrap();
    }
    produce(&p, "ev", &[ok(3), ok(4), ok(5)]);

    let d = Daemon::start(brokers, "ev", "g-big", &k.cfg, &k.dir.path().join("s"), &[]);
    // 2 + 1 + 3 messages of one event each.
    d.wait_for(
        |d| d.events_total("ev") == 6.0,
        "the events after the undecodable one",
    );
    assert_eq!(
        d.metric(
            "connector_ga_events_rejected_total",
            &[("reason", "undecodable_message")]
        ),
        Some(1.0)
    );
    assert_eq!(d.requests("it_alpha", "2xx"), Some(5.0));
    // Its place is dead-lettered: offset 2 of partition 0 (offsets 0 and 1
    // hold the first two events).
    let got = k.dead_letters("dlq-reader-big", 1);
    let (h, _) = got
        .first()
        .expect("a dead letter for the undecodable message");
    assert_eq!(h["reason"], "undecodable_message");
    assert_eq!(h["source_offset"], "2");
    assert_eq!(h["source_partition"], "0");
}

/// Regression (the re-key stage once made sure of its topic before serving):
/// with input not keyed by connector and no broker at all, the daemon still
/// starts, answers `/healthz` 200 and `/readyz` 503 while it waits, and
/// SIGTERM ends it with status 0.
#[test]
fn unkeyed_input_without_a_broker_still_serves_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let closed = format!("127.0.0.1:{}", crate::harness::free_port());
    let d = DaemonCmd::new(&closed)
        .rekeyed()
        .topic("ev")
        .group("g-nobroker")
        .config(&cfg)
        .state_dir(&dir.path().join("s"))
        .spawn();
    d.wait_for(|d| d.status("/healthz") == Some(200), "/healthz 200");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.status("/readyz"), Some(503));
    // An unknown path says what there is; a bad query of the JSON API is
    // answered in JSON (an outside audit: an empty 404, and the web
    // framework's own text).
    let r = d.http.get(d.url("/nope")).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.text().unwrap().contains("/api/v1/criteria"));
    let r = d
        .http
        .get(d.url("/api/v1/criteria?daily=yes"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("`daily`"),
        "{body}"
    );
    let st = d.terminate();
    assert!(st.success(), "exit status {st:?}");
}

/// Regression (an outside audit): in re-key mode with no broker, the re-key
/// producer's and admin client's errors went through rdkafka's default
/// context, one ERROR line each time librdkafka repeated them: 186 lines in
/// 30 s. Each client's errors now go through the same once-per-30-s
/// throttle as the consumer's, at WARN.
#[test]
fn an_unreachable_broker_logs_each_client_error_once_per_interval() {
    let state = tempfile::tempdir().unwrap();
    let (mut cmd, _) = DaemonCmd::new("127.0.0.1:9")
        .topic("ev")
        .group("g-quiet")
        .rekeyed()
        .state_dir(state.path())
        .rust_log(Some("info"))
        .stderr_piped()
        .command();
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(8));
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let (status, err) = wait_until_exit(&mut child, 15).expect("an exit after SIGTERM");
    assert!(status.success(), "exit {status}, stderr:\n{err}");
    let global: Vec<&str> = err.lines().filter(|l| l.contains("Global error")).collect();
    // Three clients (consumer, re-key producer, admin), each with at most
    // two distinct errors (all brokers down, connection refused), each
    // logged once in 8 s.
    assert!(
        global.len() <= 6,
        "{} client-error lines in 8 s:\n{}",
        global.len(),
        global.join("\n")
    );
    assert!(
        global.iter().all(|l| !l.contains("ERROR")),
        "client errors at ERROR:\n{}",
        global.join("\n")
    );
}
