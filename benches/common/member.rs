//! One daemon member run in-process for `benches/daemon.rs`: the consumer
//! (its tasks and ingest pool) and `run`'s background renderer, measured by
//! the views it publishes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_ga_exporter::checkpoint::store::DirStore;
use connector_ga_exporter::config::Config;
use connector_ga_exporter::kafka;
use connector_ga_exporter::serve::live::Serving;
use connector_ga_exporter::task::TaskSet;
use connector_ga_exporter::telemetry::SelfMetrics;

use crate::baselines::Run;
use crate::env;
use crate::feed::{process_cpu, MockKafka, SEED_CLOUDS, SEED_CONNECTORS};

/// What a daemon run saw besides its rate.
pub struct DaemonRun {
    pub run: Run,
    /// From assignment to the view showing every event.
    pub total_secs: f64,
    /// CPU seconds of this process over `total_secs`.
    pub total_cpu: f64,
    /// From assignment to the view showing every input event read (with
    /// the re-key stage: by the read tasks, before the round trip).
    pub input_secs: f64,
    pub rejected: u64,
    pub scopes: usize,
    /// Renderings the reader finished, and their mean time.
    pub renders: u64,
    pub render_ms: f64,
    /// Size of the reader's last `/metrics` text.
    pub render_bytes: u64,
}

/// The daemon's consumer (and background renderer) on `topics` until the
/// views show `expect` events read by its aggregating tasks; `reader`: one
/// more thread renders `/metrics` and `/api/v1/criteria` of every scope in
/// a loop meanwhile; `rekey`: input not keyed by connector.
pub fn daemon(
    mock: &MockKafka,
    topics: &[&str],
    expect: u64,
    group: &str,
    reader: bool,
    rekey: bool,
) -> DaemonRun {
    // Room for the seed topic's 10,000 scopes beside the realistic ones.
    let mut cfg = Config::from_toml(&format!(
        "[kafka]\ninput_keyed_by_connector = {}\n[state]\nmax_series = 20000",
        !rekey
    ))
    .expect("config");
    cfg.kafka.brokers = mock.brokers.clone();
    cfg.kafka.topics = topics.iter().map(|t| t.to_string()).collect();
    cfg.kafka.group_id = group.into();
    for kv in std::env::var("CGA_BENCH_PROPS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv.split_once('=').expect("CGA_BENCH_PROPS: key=value,...");
        cfg.kafka.properties.insert(k.into(), v.into());
    }
    cfg.kafka.workers = env("CGA_BENCH_WORKERS", cfg.kafka.workers);
    cfg.state.dir = std::env::temp_dir().join(format!("cga-bench-{}-{group}", std::process::id()));
    let dir = cfg.state.dir.clone();
    // With the re-key stage, events count once aggregated, by the tasks of
    // the re-keyed topic (the read tasks' count is the input's).
    let counted = rekey.then(|| kafka::rekey::topic(&cfg));
    let cfg = Arc::new(cfg);
    let tasks = Arc::new(TaskSet::new(&cfg));
    let stop = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(SelfMetrics::new());
    let serving = Arc::new(Serving::new(
        Arc::clone(&cfg),
        Arc::clone(&tasks),
        Arc::clone(&metrics),
        Arc::clone(&stop),
    ));
    let consumer = kafka::Consumer::new(kafka::KafkaHandle {
        cfg: Arc::clone(&cfg),
        tasks: Arc::clone(&tasks),
        metrics,
        store: Arc::new(DirStore::new(&dir).expect("state dir")),
        stop: Arc::clone(&stop),
    })
    .expect("consumer");
    let consumer = std::thread::spawn(move || consumer.run());
    // `CGA_BENCH_NO_RENDERER=1` leaves `run`'s background renderer out.
    // It renders only while reads come, so without `reader` it renders
    // nothing either way (it did before 7d09820).
    let renderer = std::env::var_os("CGA_BENCH_NO_RENDERER")
        .is_none()
        .then(|| {
            let s = Arc::clone(&serving);
            std::thread::spawn(move || s.render_loop())
        });
    let renders = Arc::new(AtomicU64::new(0));
    let render_ns = Arc::new(AtomicU64::new(0));
    let render_bytes = Arc::new(AtomicU64::new(0));
    let reader = reader.then(|| {
        let (s, stop, n, ns, bytes) = (
            Arc::clone(&serving),
            Arc::clone(&stop),
            Arc::clone(&renders),
            Arc::clone(&render_ns),
            Arc::clone(&render_bytes),
        );
        let ready = Arc::clone(&tasks);
        std::thread::spawn(move || {
            // Renders of a member still empty do not count: start once the
            // seed topic's 10,000 scopes are published.
            while ready.scope_count() < SEED_CONNECTORS * SEED_CLOUDS.len()
                && !stop.load(Ordering::Acquire)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            while !stop.load(Ordering::Acquire) {
                let r = s.render_metrics();
                std::hint::black_box(&r.criteria);
                bytes.store(r.text.len() as u64, Ordering::Relaxed);
                n.fetch_add(1, Ordering::Relaxed);
                ns.fetch_add(r.took.as_nanos() as u64, Ordering::Relaxed);
            }
        })
    });
    // (events aggregated, events read from the input topics). A task
    // counts events where they are first read, so the re-keyed tasks'
    // `events_read` stays 0; theirs is what they handed to their engines.
    let read = || {
        let m = tasks.events_read();
        let input: u64 = topics.iter().filter_map(|t| m.get(*t)).sum();
        let aggregated = if counted.is_some() {
            tasks.events_ingested()
        } else {
            input
        };
        (aggregated, input)
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    while !tasks.is_ready() {
        assert!(Instant::now() < deadline, "no assignment");
        std::thread::sleep(Duration::from_millis(1));
    }
    let assigned = Instant::now();
    let assigned_cpu = process_cpu();
    // Views as they are published: (when, events read, CPU, broker CPU).
    let mut seen: Vec<(Instant, u64, f64, f64)> = Vec::new();
    let (mut last, mut input_secs, mut moved) = (0, None, Instant::now());
    while last < expect {
        // Events the mock dropped never show up: say so instead of waiting.
        assert!(
            Instant::now() < deadline && moved.elapsed() < Duration::from_secs(60),
            "daemon aggregated {last} of {expect} events, no progress for 60 s: run invalid \
             (events read per topic {:?})",
            tasks.events_read()
        );
        let (v, input) = read();
        if input >= expect && input_secs.is_none() {
            input_secs = Some(assigned.elapsed().as_secs_f64());
        }
        if v != last {
            seen.push((Instant::now(), v, process_cpu(), mock.cpu()));
            (last, moved) = (v, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let total_secs = assigned.elapsed().as_secs_f64();
    let total_cpu = process_cpu() - assigned_cpu;
    // Read before stopping: a closing consumer gives its tasks up.
    assert_eq!(
        last, expect,
        "daemon read more events than produced: run invalid"
    );
    // What the scopes themselves count (their lifetime request totals, the
    // `_total` metrics), not only what the tasks read.
    let requests: u64 = tasks
        .report(&cfg, connector_ga_exporter::app::wall_clock(), false)
        .0
        .scopes
        .iter()
        .filter_map(|s| s.total.as_ref().map(|c| c.requests))
        .sum();
    assert_eq!(
        requests, expect,
        "the scopes count {requests} requests, {expect} events produced: run invalid"
    );
    let rejected = tasks.rejected().total();
    let scopes = tasks.scope_count();
    stop.store(true, Ordering::Release);
    consumer.join().expect("consumer thread").expect("consumer");
    if let Some(r) = renderer {
        let _ = r.join();
    }
    if let Some(r) = reader {
        r.join().expect("reader");
    }
    let _ = std::fs::remove_dir_all(&dir);
    // Steady span: first view with events to the last one before all were
    // read (the views between were published while it consumed).
    let first = seen.first().expect("a view");
    let end = if seen.len() >= 3 {
        &seen[seen.len() - 2]
    } else {
        seen.last().expect("a view")
    };
    let secs = end.0.duration_since(first.0).as_secs_f64();
    // Too short a run for two views: the whole span (broker CPU unknown).
    let (secs, events, cpu, broker_cpu) = if secs > 0.0 {
        (secs, end.1 - first.1, end.2 - first.2, end.3 - first.3)
    } else {
        (total_secs, expect, total_cpu, 0.0)
    };
    let n = renders.load(Ordering::Relaxed);
    DaemonRun {
        run: Run {
            events,
            rate: events as f64 / secs,
            secs,
            cpu,
            broker_cpu,
        },
        total_secs,
        total_cpu,
        input_secs: input_secs.unwrap_or(total_secs),
        rejected,
        scopes,
        renders: n,
        render_ms: render_ns.load(Ordering::Relaxed) as f64 / 1e6 / n.max(1) as f64,
        render_bytes: render_bytes.load(Ordering::Relaxed),
    }
}
