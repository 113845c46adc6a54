//! Daemon throughput against a bare rdkafka consume loop, and `/metrics`
//! render time with 10,000 scopes while ingesting. Run: `cargo bench --bench consume`.
//!
//! Both consumers read the same messages from librdkafka's mock cluster
//! (64 partitions: it keeps only ~5 MiB per partition) in the same run, so
//! the ratio is what the daemon's decode + classify + aggregate costs on
//! top of fetching. Numbers are printed, not asserted.

/// The allocator the binary ships with (`src/main.rs`): the bench measures
/// what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_ga_exporter::app::wall_clock;
use connector_ga_exporter::checkpoint::store::DirStore;
use connector_ga_exporter::config::Config;
use connector_ga_exporter::engine::classify::Cloud;
use connector_ga_exporter::engine::event::{Event, RejectCounts};
use connector_ga_exporter::engine::state::Admission;
use connector_ga_exporter::kafka;
use connector_ga_exporter::serve::live::Serving;
use connector_ga_exporter::serve::metrics::Format;
use connector_ga_exporter::task::{Stage, Task, TaskId, TaskSet};
use connector_ga_exporter::telemetry::SelfMetrics;
use connector_ga_exporter::tools::loadgen::{demo_profiles, Generator};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TOPIC: &str = "bench";

fn produce(brokers: &str, n: usize, per_message: usize) -> usize {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "50")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let mut g = Generator::new(demo_profiles(), 9);
    let now = wall_clock();
    let mut line = String::new();
    let mut messages = 0;
    let mut i = 0;
    while i < n {
        line.clear();
        for _ in 0..per_message {
            // Spread over the last 20 days.
            g.event(
                now - ((i as i64 * 1_727_999) % (20 * 86_400_000_000)),
                &mut line,
            );
            i += 1;
        }
        let key = messages.to_string();
        let mut rec = BaseRecord::to(TOPIC)
            .payload(line.as_bytes())
            .key(key.as_bytes());
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
        messages += 1;
    }
    p.flush(Duration::from_secs(120)).unwrap();
    messages
}

fn bare_loop(brokers: &str, messages: usize, group: &str) -> Duration {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.offset.store", "false")
        .set("statistics.interval.ms", "5000")
        // The daemon's own fetch setting (see kafka.rs), for a fair baseline.
        .set("fetch.queue.backoff.ms", "10")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[TOPIC]).unwrap();
    let mut seen = 0;
    let mut bytes = 0usize;
    // Start the clock at the first message: both sides exclude group join.
    let mut start = None;
    let hold = std::env::var_os("CGA_BENCH_HOLD").is_some();
    let mut held = Vec::new();
    while seen < messages {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            start.get_or_insert_with(Instant::now);
            bytes += m.payload().map_or(0, |p| p.len());
            seen += 1;
            if hold {
                held.push(m);
                if held.len() == 4096 {
                    held.clear();
                }
            }
        }
    }
    std::hint::black_box(bytes);
    start.unwrap().elapsed()
}

fn daemon_loop(brokers: &str, events: u64) -> Duration {
    let mut cfg = Config::from_toml("[state]\ncheckpoint_interval_seconds = 3600").unwrap();
    cfg.kafka.brokers = brokers.to_string();
    cfg.kafka.topics = vec![TOPIC.to_string()];
    cfg.kafka.group_id = "daemon".into();
    for kv in std::env::var("CGA_BENCH_PROPS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv.split_once('=').unwrap();
        cfg.kafka.properties.insert(k.into(), v.into());
    }
    if let Some(w) = std::env::var("CGA_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.kafka.workers = w;
    }
    cfg.state.dir = std::env::temp_dir().join(format!("cga-bench-{}", std::process::id()));
    let dir = cfg.state.dir.clone();
    let cfg = Arc::new(cfg);
    let tasks = Arc::new(TaskSet::new(&cfg));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = kafka::Consumer::new(kafka::KafkaHandle {
        cfg: Arc::clone(&cfg),
        tasks: Arc::clone(&tasks),
        metrics: Arc::new(SelfMetrics::new()),
        store: Arc::new(DirStore::new(&dir).unwrap()),
        stop: Arc::clone(&stop),
    })
    .unwrap();
    let t = std::thread::spawn(move || consumer.run());
    // Views are published every 500 ms: the clock stops within that.
    let read = || tasks.events_read().get(TOPIC).copied().unwrap_or(0);
    while read() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    while read() < events {
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = start.elapsed();
    stop.store(true, Ordering::Release);
    let _ = t.join();
    let _ = std::fs::remove_dir_all(&dir);
    took
}

fn scrape_under_load() {
    let cfg = Arc::new(Config::from_toml("").unwrap());
    let tasks = Arc::new(TaskSet::new(&cfg));
    let shared = Serving::new(
        Arc::clone(&cfg),
        Arc::clone(&tasks),
        Arc::new(SelfMetrics::new()),
        Arc::new(AtomicBool::new(false)),
    );
    // 10,000 scopes: 2,000 connectors × 5 clouds, a few events each.
    let now = wall_clock();
    let mut rej = RejectCounts::default();
    let ids: Vec<String> = (0..2000).map(|i| format!("shared_c{i:05}")).collect();
    let users: Vec<String> = (0..50).map(|u| format!("u{u}")).collect();
    let mut evs = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for cloud in &Cloud::ALL[..5] {
            for k in 0..20 {
                evs.push(Event {
                    ts: now - (k as i64 * 3_600_000_000 * 7),
                    connector: id.as_str().into(),
                    cloud: *cloud,
                    status: Some(if k % 10 == 0 { 500 } else { 200 }),
                    fault: None,
                    latency_ms: Some(10.0 + (k + i) as f64),
                    user: Some(users[(k + i) % 50].as_str().into()),
                    connection: Some(users[k % 7].as_str().into()),
                });
            }
        }
    }
    // One task, its one writer on the side thread; the renderer reads the
    // views it publishes, each with its state, every PUBLISH_EVERY: the
    // daemon before states went on demand, and its worst case now (a
    // reader asking twice a second).
    let mut task = Task::new(TaskId::new(TOPIC, 0), Stage::Aggregate);
    for e in &evs {
        let _ = task.ingest(e, &Admission::default(), tasks.params(), tasks.budget());
    }
    rej.add(connector_ga_exporter::engine::event::Reject::TooOld, 0);
    tasks.publish(vec![task.view(true)], None);
    assert_eq!(tasks.scope_count(), 10_000);

    // Full-speed ingestion on the side, into the same scopes.
    let stop = Arc::new(AtomicBool::new(false));
    let (t2, st2, ids2) = (Arc::clone(&tasks), Arc::clone(&stop), ids.clone());
    let ingester = std::thread::spawn(move || {
        let mut n = 0u64;
        let mut last = Instant::now();
        while !st2.load(Ordering::Relaxed) {
            let batch: Vec<Event> = (0..1000)
                .map(|k| Event {
                    ts: wall_clock(),
                    connector: ids2[(n as usize + k) % ids2.len()].as_str().into(),
                    cloud: Cloud::Public,
                    status: Some(200),
                    fault: None,
                    latency_ms: Some(5.0),
                    user: None,
                    connection: None,
                })
                .collect();
            for e in &batch {
                let _ = task.ingest(e, &Admission::default(), t2.params(), t2.budget());
            }
            if last.elapsed() >= connector_ga_exporter::task::PUBLISH_EVERY {
                t2.publish(vec![task.view(true)], None);
                last = Instant::now();
            }
            n += 1000;
        }
        n
    });
    let mut render = Vec::new();
    let mut serve = Vec::new();
    let mut size = 0;
    for _ in 0..20 {
        // What the daemon's background renderer does...
        let r = shared.render_metrics();
        size = r.text.len();
        render.push(r.took);
        // ...and what a scrape then costs: a reference to the latest rendering.
        let t = Instant::now();
        let body = r.text(Format::OpenMetrics).clone();
        std::hint::black_box(body);
        serve.push(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let ingested = ingester.join().unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let q = |v: &mut Vec<Duration>, p: usize| {
        v.sort();
        ms(v[(v.len() * p).div_ceil(100) - 1])
    };
    println!(
        "metrics, 10,000 scopes ({:.1} MB text), ingesting {ingested} events meanwhile: \
         background render p50 {:.0} ms p99 {:.0} ms; scrape served from it p50 {:.1} ms p99 {:.1} ms",
        size as f64 / 1e6,
        q(&mut render, 50),
        q(&mut render, 99),
        q(&mut serve, 50),
        q(&mut serve, 99)
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run only under bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("CGA_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let per: usize = std::env::var("CGA_BENCH_PER_MESSAGE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 64, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let t = Instant::now();
    let messages = produce(&brokers, n, per);
    println!(
        "produced {n} events in {messages} messages ({per}/message) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let bare = bare_loop(&brokers, messages, "bare");
    if std::env::var_os("CGA_BENCH_TWICE").is_some() {
        let b2 = bare_loop(&brokers, messages, "bare2");
        println!("second bare loop: {:.2} s", b2.as_secs_f64());
    }
    let daemon = daemon_loop(&brokers, n as u64);
    let eps = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "bare rdkafka loop : {:>10.0} events/s ({:.2} s)",
        eps(bare),
        bare.as_secs_f64()
    );
    println!(
        "daemon consume+agg: {:>10.0} events/s ({:.2} s)  = {:.2}x the bare loop",
        eps(daemon),
        daemon.as_secs_f64(),
        bare.as_secs_f64() / daemon.as_secs_f64()
    );
    if std::env::var_os("CGA_BENCH_SKIP_SCRAPE").is_none() {
        scrape_under_load();
    }
}
