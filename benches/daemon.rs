//! The daemon against a tuned bare rdkafka consume loop, both reading the
//! same topic of one `mock-kafka` process in the same run (issue 8), and the
//! daemon's ingest rate while a reader renders every scope in a loop.
//! Run: `cargo bench --bench daemon` (knobs: see `Knobs`).
//!
//! - Input: the `realistic` corpus profile (1,000 connectors × 6 clouds,
//!   200,000 users, 50,000 connections, power-law traffic), keyed by
//!   connector: each message holds up to 100 NDJSON events of one
//!   connector, and every connector's messages go to one partition
//!   (`[kafka] input_keyed_by_connector = true`). Partitions are assigned
//!   to connectors greedily by their share of traffic, so the busiest
//!   partition holds as little as the skew allows.
//! - librdkafka's mock cluster keeps only 5 MiB (and 100,000 messages) per
//!   partition and silently drops older data: the producer counts bytes per
//!   partition and refuses to run past 4.5 MiB, and both consumers must read
//!   every event produced (asserted), or the run is invalid.
//! - The bare loop: one `BaseConsumer`, `fetch.queue.backoff.ms=1`, a 1 GiB
//!   fetch queue, counts the events of each payload (its newlines).
//! - The daemon: `kafka::Consumer::run` (the consumer thread, its tasks and
//!   its ingest pool, exactly as `run` starts them) with the background
//!   `/metrics` renderer of `run` beside it; only HTTP is left out. It is
//!   run in-process rather than as the binary so that its progress can be
//!   read from the views it publishes (every 500 ms) instead of a scrape,
//!   and its CPU time is the bench process's.
//! - Its rate is measured between the first and the last view published
//!   while it consumes (both steady), so the 500 ms publishing interval does
//!   not blur it; the wall time from assignment to the view that shows every
//!   event is printed too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_ga_exporter::checkpoint::store::DirStore;
use connector_ga_exporter::config::Config;
use connector_ga_exporter::kafka;
use connector_ga_exporter::serve::live::Serving;
use connector_ga_exporter::task::TaskSet;
use connector_ga_exporter::telemetry::SelfMetrics;

#[path = "common/baselines.rs"]
mod baselines;
#[path = "common/corpus.rs"]
mod corpus;
#[path = "common/feed.rs"]
mod feed;

use baselines::{bare_loop, engine_only, print_run, Run};

use feed::{
    process_cpu, produce_realistic, produce_seed, MockKafka, Produced, SEED_CLOUDS,
    SEED_CONNECTORS, SEED_TOPIC, TOPIC,
};

/// Environment knobs, with their defaults.
pub struct Knobs {
    /// `CGA_BENCH_EVENTS`: events of the `realistic` topic.
    pub events: usize,
    /// `CGA_BENCH_PARTITIONS`.
    pub partitions: i32,
    /// `CGA_BENCH_PER_MESSAGE`: events per message (most; a connector's
    /// last message holds the rest).
    pub per_message: usize,
    /// `CGA_BENCH_ROUNDS`: bare loop then daemon, this many times.
    pub rounds: usize,
    /// `CGA_BENCH_COMPRESSION`: the producer's `compression.type`.
    pub compression: String,
    /// `CGA_BENCH_ONLY`: `compare`, `reader` or `daemon` (one daemon run,
    /// for `perf`); both of the first two when unset.
    pub only: Option<String>,
}

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

impl Knobs {
    fn read() -> Knobs {
        Knobs {
            events: env("CGA_BENCH_EVENTS", 800_000),
            partitions: env("CGA_BENCH_PARTITIONS", 128),
            per_message: env("CGA_BENCH_PER_MESSAGE", 100),
            rounds: env("CGA_BENCH_ROUNDS", 3),
            compression: env("CGA_BENCH_COMPRESSION", "none".to_string()),
            only: std::env::var("CGA_BENCH_ONLY").ok(),
        }
    }
}

/// What a daemon run saw besides its rate.
struct DaemonRun {
    run: Run,
    /// From assignment to the view showing every event.
    total_secs: f64,
    /// CPU seconds of this process over `total_secs`.
    total_cpu: f64,
    rejected: u64,
    scopes: usize,
    /// Renderings the reader finished, and their mean time.
    renders: u64,
    render_ms: f64,
    /// Size of the reader's last `/metrics` text.
    render_bytes: u64,
}

/// The daemon's consumer (and background renderer) on `topics` until the
/// views show `expect` events read; `reader`: one more thread renders
/// `/metrics` and `/api/v1/criteria` of every scope in a loop meanwhile.
fn daemon(mock: &MockKafka, topics: &[&str], expect: u64, group: &str, reader: bool) -> DaemonRun {
    // Room for the seed topic's 10,000 scopes beside the realistic ones.
    let mut cfg =
        Config::from_toml("[kafka]\ninput_keyed_by_connector = true\n[state]\nmax_series = 20000")
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
    // `CGA_BENCH_NO_RENDERER=1` leaves `run`'s background renderer out (to
    // measure what it costs, in the A/B mode).
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
    let read = || tasks.events_read().values().sum::<u64>();
    let deadline = Instant::now() + Duration::from_secs(600);
    while !tasks.is_ready() {
        assert!(Instant::now() < deadline, "no assignment");
        std::thread::sleep(Duration::from_millis(1));
    }
    let assigned = Instant::now();
    let assigned_cpu = process_cpu();
    // Views as they are published: (when, events read, CPU, broker CPU).
    let mut seen: Vec<(Instant, u64, f64, f64)> = Vec::new();
    let mut last = 0;
    while last < expect {
        assert!(
            Instant::now() < deadline,
            "daemon read {last} of {expect} events in 600 s: run invalid"
        );
        let v = read();
        if v != last {
            seen.push((Instant::now(), v, process_cpu(), mock.cpu()));
            last = v;
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
        rejected,
        scopes,
        renders: n,
        render_ms: render_ns.load(Ordering::Relaxed) as f64 / 1e6 / n.max(1) as f64,
        render_bytes: render_bytes.load(Ordering::Relaxed),
    }
}

fn compare(mock: &MockKafka, k: &Knobs, realistic: &Produced) {
    let mut ratios = Vec::new();
    for round in 0..k.rounds {
        println!("round {}:", round + 1);
        let bare = bare_loop(
            mock,
            realistic.events,
            realistic.messages,
            &format!("bare-{round}"),
        );
        print_run("bare rdkafka loop", &bare);
        let d = daemon(
            mock,
            &[TOPIC],
            realistic.events,
            &format!("daemon-{round}"),
            false,
        );
        print_run("daemon (consumer + tasks + pool)", &d.run);
        let whole = realistic.events as f64 / d.total_secs;
        println!(
            "  daemon: {:.2} s from assignment to the view of all {} events ({:.0} events/s, ratio {:.2}; the view lags up to 0.6 s); {} rejected; {} scopes",
            d.total_secs,
            realistic.events,
            whole,
            whole / bare.rate,
            d.rejected,
            d.scopes
        );
        assert_eq!(d.rejected, 0, "every corpus event is valid and recent");
        let eng = engine_only(&realistic.messages_kept, k.partitions, realistic.events);
        print_run("engine only (decode+ingest, 1 thread)", &eng);
        // CPU per event: what the daemon spends beyond fetching (the bare
        // loop's) and decode + aggregate (the engine-only pass's).
        let us = |r: &Run| 1e6 / r.per_cpu();
        println!(
            "  CPU per event: daemon {:.2} µs = bare fetch {:.2} + decode+aggregate {:.2} + pipeline {:.2}",
            us(&d.run),
            us(&bare),
            us(&eng),
            us(&d.run) - us(&bare) - us(&eng)
        );
        let ratio = d.run.rate / bare.rate;
        let cpu_ratio = d.run.per_cpu() / bare.per_cpu();
        println!("  ratio daemon/bare: {ratio:.2} (per CPU-s {cpu_ratio:.2})");
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "ratio daemon/bare over {} rounds: min {:.2} median {:.2} max {:.2}",
        ratios.len(),
        ratios[0],
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1]
    );
}

fn reader_runs(mock: &MockKafka, k: &Knobs, realistic: &Produced, seed: u64) {
    let expect = realistic.events + seed;
    for round in 0..k.rounds {
        println!("reader round {}:", round + 1);
        let mut rates = [0.0; 2];
        for (j, with) in [false, true].into_iter().enumerate() {
            let d = daemon(
                mock,
                &[TOPIC, SEED_TOPIC],
                expect,
                &format!("reader-{round}-{with}"),
                with,
            );
            let what = if with {
                "daemon, reader rendering in a loop"
            } else {
                "daemon, no reader"
            };
            print_run(what, &d.run);
            assert_eq!(
                d.rejected, 0,
                "every event is valid, recent and within max_series"
            );
            if with {
                println!(
                    "  reader: {} renderings of /metrics + /api/v1/criteria ({:.1} MB text), {:.0} ms each on average; {} scopes at the end",
                    d.renders, d.render_bytes as f64 / 1e6, d.render_ms, d.scopes
                );
            }
            rates[j] = d.run.rate;
        }
        println!(
            "  ingest rate with the reader / without: {:.2}",
            rates[1] / rates[0]
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let k = Knobs::read();
    let mock = MockKafka::start(&[
        format!("{TOPIC}:{}", k.partitions),
        format!("{SEED_TOPIC}:8"),
    ]);
    let now_ms = connector_ga_exporter::app::wall_clock() / 1000;
    let t = Instant::now();
    let realistic = produce_realistic(&mock.brokers, &k, now_ms);
    println!(
        "produced {} realistic events in {} messages ({} B, {:.0} B/event, compression {}) to {} \
         partitions, busiest {:.2} MiB, in {:.1} s; mock-kafka at {}",
        realistic.events,
        realistic.messages,
        realistic.bytes,
        realistic.bytes as f64 / realistic.events as f64,
        k.compression,
        k.partitions,
        realistic.max_partition_bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64(),
        mock.brokers
    );
    match k.only.as_deref() {
        Some("daemon") => {
            // For `perf record -p`: rounds of the daemon alone.
            println!("daemon only, pid {}", std::process::id());
            // A/B: odd rounds run with the environment of variant B
            // (`CGA_BENCH_B=KEY=VALUE;...`), even rounds without it.
            let b: Vec<(String, String)> = std::env::var("CGA_BENCH_B")
                .unwrap_or_default()
                .split(';')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let a: Vec<(String, Option<String>)> = b
                .iter()
                .map(|(k, _)| (k.clone(), std::env::var(k).ok()))
                .collect();
            let mut per = [Vec::new(), Vec::new()];
            for round in 0..k.rounds {
                let variant = round % 2;
                for (key, v) in &a {
                    match (variant, v) {
                        (0, Some(v)) => std::env::set_var(key, v),
                        (0, None) => std::env::remove_var(key),
                        _ => {}
                    }
                }
                if variant == 1 {
                    for (key, v) in &b {
                        std::env::set_var(key, v);
                    }
                }
                let d = daemon(
                    &mock,
                    &[TOPIC],
                    realistic.events,
                    &format!("daemon-only-{round}"),
                    false,
                );
                print_run(
                    if variant == 0 {
                        "daemon, A"
                    } else {
                        "daemon, B"
                    },
                    &d.run,
                );
                let whole = realistic.events as f64 / d.total_cpu;
                println!(
                    "    assignment to all-read view: {:.2} s, {:.2} CPU-s, {:.0} events per CPU-s",
                    d.total_secs, d.total_cpu, whole
                );
                per[variant].push((d.run.rate, whole));
            }
            for (name, v) in ["A", "B"].iter().zip(&mut per) {
                if v.is_empty() {
                    continue;
                }
                v.sort_by(|x, y| x.1.total_cmp(&y.1));
                let mut rates: Vec<f64> = v.iter().map(|x| x.0).collect();
                rates.sort_by(f64::total_cmp);
                println!(
                    "{name}: median {:.0} events/s (steady span), median {:.0} events per CPU-s (assignment to all read) ({} rounds)",
                    rates[rates.len() / 2],
                    v[v.len() / 2].1,
                    v.len()
                );
            }
        }
        Some("compare") => compare(&mock, &k, &realistic),
        Some("reader") => {
            let seed = produce_seed(&mock.brokers, now_ms);
            reader_runs(&mock, &k, &realistic, seed);
        }
        _ => {
            compare(&mock, &k, &realistic);
            let seed = produce_seed(&mock.brokers, now_ms);
            reader_runs(&mock, &k, &realistic, seed);
        }
    }
}
