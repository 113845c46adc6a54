//! The `run` command: restores state, consumes Kafka, serves HTTP, and on
//! shutdown drains (finishes the batch in flight, writes a snapshot, stores
//! and commits offsets) before returning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::checkpoint::{self, CheckpointError};
use crate::config::Config;
use crate::engine::event::{Reject, RejectCounts};
use crate::engine::timeutil::Micros;
use crate::kafka;
use crate::render::evidence;
use crate::report::Report;
use crate::serve::metrics::{Format, Writer};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("config key `http.listen`: cannot listen on {addr}: {error}")]
    Listen { addr: String, error: std::io::Error },
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaSetupError),
    #[error("the Kafka consumer thread failed: {0}")]
    Consumer(String),
    #[error(transparent)]
    Run(kafka::ConsumerError),
    #[error("config key `http.max_connections`: {0}")]
    FileLimit(String),
}

/// Store shards: enough that a scrape holding one rarely meets a writer.
pub const SHARDS: usize = 64;

/// The daemon's own metrics.
pub struct SelfMetrics {
    pub registry: Registry,
    pub events_total: IntCounterVec,
    pub rejected_total: IntCounterVec,
    pub consumer_lag: IntGaugeVec,
    pub kafka_connected: IntGauge,
    pub last_checkpoint: Gauge,
    pub checkpoint_failures: IntCounter,
    pub http_connections: IntGauge,
    pub http_evicted: IntCounter,
    pub http_shed: IntCounter,
}

impl SelfMetrics {
    fn new(topics: &[String]) -> SelfMetrics {
        let registry = Registry::new();
        let events_total = IntCounterVec::new(
            Opts::new(
                "connector_ga_events_total",
                "Events read from Kafka, accepted or rejected (an unparsable line counts once).",
            ),
            &["topic"],
        )
        .expect("valid metric");
        let rejected_total = IntCounterVec::new(
            Opts::new(
                "connector_ga_events_rejected_total",
                "Rejected events by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "connector_ga_consumer_lag",
                "Messages between the consumer's position and the partition's end.",
            ),
            &["topic", "partition"],
        )
        .expect("valid metric");
        let kafka_connected = IntGauge::new(
            "connector_ga_kafka_connected",
            "1 while at least one Kafka broker connection is up.",
        )
        .expect("valid metric");
        let last_checkpoint = Gauge::new(
            "connector_ga_last_checkpoint_timestamp_seconds",
            "Unix time of the last snapshot written (or restored); the process start time until then.",
        )
        .expect("valid metric");
        // Never 0: `time() - this` then grows from the start even when no
        // snapshot ever succeeds, and a staleness alert needs no `> 0` guard.
        last_checkpoint.set(wall_clock() as f64 / 1e6);
        let checkpoint_failures = IntCounter::new(
            "connector_ga_checkpoint_failures_total",
            "Snapshots that could not be written (each is retried at the next interval).",
        )
        .expect("valid metric");
        let http_connections = IntGauge::new(
            "connector_ga_http_connections",
            "Open HTTP client connections.",
        )
        .expect("valid metric");
        let http_evicted = IntCounter::new(
            "connector_ga_http_connections_evicted_total",
            "Connections closed to make room under http.max_connections.",
        )
        .expect("valid metric");
        let http_shed = IntCounter::new(
            "connector_ga_http_requests_shed_total",
            "Requests answered 503 because http.max_concurrent_renders were in progress.",
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new("connector_ga_build_info", "Build information; always 1."),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for t in topics {
            events_total.with_label_values(&[t.as_str()]);
        }
        for r in Reject::ALL {
            rejected_total.with_label_values(&[r.as_str()]);
        }
        for c in [
            Box::new(events_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rejected_total.clone()),
            Box::new(consumer_lag.clone()),
            Box::new(kafka_connected.clone()),
            Box::new(last_checkpoint.clone()),
            Box::new(checkpoint_failures.clone()),
            Box::new(http_connections.clone()),
            Box::new(http_evicted.clone()),
            Box::new(http_shed.clone()),
            Box::new(build_info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        SelfMetrics {
            registry,
            events_total,
            rejected_total,
            consumer_lag,
            kafka_connected,
            last_checkpoint,
            checkpoint_failures,
            http_connections,
            http_evicted,
            http_shed,
        }
    }

    pub fn rejected(&self) -> RejectCounts {
        let mut r = RejectCounts::default();
        for reason in Reject::ALL {
            r.add(
                reason,
                self.rejected_total
                    .with_label_values(&[reason.as_str()])
                    .get(),
            );
        }
        r
    }
}

/// One background rendering, shared by every reader: `/metrics` in both
/// formats and `/api/v1/criteria` as immutable bytes (a response clones a
/// reference, never the body), and the report they came from (for pages
/// rendered on demand).
pub struct Rendered {
    pub text: Bytes,
    pub openmetrics: Bytes,
    pub criteria: Bytes,
    pub report: Arc<Report>,
    /// How long measuring and rendering took.
    pub took: Duration,
}

impl Rendered {
    pub fn text(&self, fmt: Format) -> Bytes {
        match fmt {
            Format::Text => self.text.clone(),
            Format::OpenMetrics => self.openmetrics.clone(),
        }
    }
}

/// What the consumer thread and the HTTP handlers share.
pub struct Shared {
    pub cfg: Config,
    pub store: Store,
    pub metrics: SelfMetrics,
    pub assigned: AtomicBool,
    pub restored: AtomicBool,
    pub stop: AtomicBool,
    /// Permits for responses rendered per request (`http.max_concurrent_renders`).
    pub render_permits: Arc<tokio::sync::Semaphore>,
    /// The latest background rendering; `None` until the first.
    rendered: tokio::sync::watch::Sender<Option<Arc<Rendered>>>,
}

impl Shared {
    pub fn new(cfg: Config) -> Shared {
        let metrics = SelfMetrics::new(&cfg.kafka.topics);
        let render_permits = Arc::new(tokio::sync::Semaphore::new(cfg.http.max_concurrent_renders));
        Shared {
            store: Store::from_config(&cfg, SHARDS),
            cfg,
            metrics,
            assigned: AtomicBool::new(false),
            restored: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            render_permits,
            rendered: tokio::sync::watch::channel(None).0,
        }
    }

    /// Measures every scope and renders `/metrics` in both formats and the
    /// criteria JSON.
    pub fn render_metrics(&self) -> Rendered {
        let started = Instant::now();
        // The counters first, the store after: ingestion counts an event
        // only once it is in the store, so a rendering never shows a count
        // of events read that its own report does not hold yet.
        let registry = self.metrics.registry.gather();
        let r = self.report_now();
        let render = |fmt| {
            let mut w = Writer::new(fmt);
            w.report(&r);
            w.registry(&registry);
            Bytes::from(w.finish())
        };
        let mut criteria = serde_json::to_vec(&r.to_json()).unwrap_or_default();
        criteria.push(b'\n');
        Rendered {
            text: render(Format::Text),
            openmetrics: render(Format::OpenMetrics),
            criteria: Bytes::from(criteria),
            report: Arc::new(r),
            took: started.elapsed(),
        }
    }

    /// The latest background rendering, waiting for the first one.
    pub async fn rendered(&self) -> Arc<Rendered> {
        let mut rx = self.rendered.subscribe();
        let r = rx.wait_for(Option::is_some).await;
        match r {
            Ok(g) => Arc::clone(g.as_ref().expect("waited for Some")),
            // The sender lives in `self`: it cannot be dropped while we run.
            Err(_) => unreachable!("rendering channel closed"),
        }
    }

    /// Renders `/metrics` in the background until `stop`: a scrape then
    /// serves the latest rendering at once, whatever the number of scopes,
    /// and never waits on the store. The pause between renderings is 1 s, or
    /// 4× the last rendering's time when that is longer (rendering 10,000
    /// scopes takes ~0.5 s on 2 cores), so it never takes over 20% of a core.
    pub fn render_loop(&self) {
        while !self.stop.load(Ordering::Acquire) {
            let r = self.render_metrics();
            let pause = (r.took * 4).max(Duration::from_secs(1));
            // Readers still holding the previous rendering keep it alive
            // until their responses are written; it is freed after.
            self.rendered.send_replace(Some(Arc::new(r)));
            let until = Instant::now() + pause;
            while Instant::now() < until && !self.stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn is_ready(&self) -> bool {
        self.restored.load(Ordering::Acquire) && self.assigned.load(Ordering::Acquire)
    }

    /// The report at the wall clock.
    pub fn report_now(&self) -> Report {
        Report::build(
            &self.store,
            &self.cfg,
            wall_clock(),
            self.metrics.rejected(),
        )
    }

    /// The report at the wall clock with every scope's `daily` series
    /// (`/api/v1/criteria?daily=true`).
    pub fn report_now_daily(&self) -> Report {
        Report::build_with(
            &self.store,
            &self.cfg,
            wall_clock(),
            self.metrics.rejected(),
            true,
        )
    }
}

impl Shared {
    /// One connector's scopes at the wall clock, with their `daily` series.
    fn report_connector_daily(&self, connector: &str) -> Report {
        let now = wall_clock();
        Report {
            now,
            criteria_window_days: self.cfg.criteria.window_days,
            rejected: self.metrics.rejected(),
            scopes: self.store.measure_connector(&self.cfg, now, connector),
        }
    }

    /// The evidence pack of one connector at the wall clock (SPEC §11),
    /// `None` when the daemon holds no scope of it.
    pub fn evidence_html(&self, connector: &str) -> Option<String> {
        let r = self.report_connector_daily(connector);
        let k = &self.cfg.kafka;
        let prov = evidence::Provenance {
            input: format!(
                "Kafka topic {} at {}, consumer group {}",
                k.topics.join(", "),
                k.brokers,
                k.group_id
            ),
            config: self.cfg.source.as_ref().map(|p| p.display().to_string()),
            made_at: r.now,
        };
        evidence::html(&r, &self.cfg, &prov, Some(connector)).ok()
    }
}

/// The wall clock, read only at the daemon's edges.
pub fn wall_clock() -> Micros {
    chrono::Utc::now().timestamp_micros()
}

/// Options of `run` that are not configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Discard existing snapshots and start empty.
    pub fresh: bool,
}

/// Runs the daemon until `shutdown` resolves, then drains and returns.
pub async fn run(
    cfg: Config,
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    check_fd_limit(cfg.http.max_connections)?;
    let dir = cfg.state.dir.clone();
    std::fs::create_dir_all(&dir).map_err(|error| CheckpointError::Io {
        path: dir.clone(),
        error,
    })?;
    if opts.fresh {
        tracing::warn!(dir = %dir.display(), "--fresh: discarding existing snapshots");
        checkpoint::discard(&dir)?;
    }
    let shared = Arc::new(Shared::new(cfg));
    let snapshot = checkpoint::load(&dir)?;
    let offsets = match snapshot {
        Some((snap, path)) => {
            let offsets = snap.offsets.clone();
            restore(&shared, snap);
            tracing::info!(path = %path.display(), scopes = shared.store.scope_count(), "state restored");
            offsets
        }
        None => {
            tracing::info!(dir = %dir.display(), "no snapshot: starting with empty state");
            Default::default()
        }
    };
    shared.restored.store(true, Ordering::Release);

    let addr: SocketAddr = shared.cfg.http.listen.parse().expect("validated by Config");
    let listener =
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| DaemonError::Listen {
                addr: addr.to_string(),
                error,
            })?;
    tracing::info!(%addr, "serving /metrics, /api/v1/criteria, /healthz, /readyz and /");

    let consumer = kafka::Consumer::new(Arc::clone(&shared), offsets)?;
    // Tells the runtime when the consumer thread ends on its own (its first
    // snapshot failed): the daemon then exits instead of serving a frozen
    // state while consuming nothing.
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
    let consumer_thread = std::thread::Builder::new()
        .name("kafka-consumer".into())
        .spawn(move || {
            let r = consumer.run();
            let _ = ended_tx.send(());
            r
        })
        .map_err(|e| DaemonError::Consumer(e.to_string()))?;

    let renderer = {
        let s = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("metrics-render".into())
            .spawn(move || s.render_loop())
            .map_err(|e| DaemonError::Consumer(e.to_string()))?
    };

    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::serve::http::serve(
        listener,
        crate::serve::http::router(Arc::clone(&shared)),
        Arc::clone(&shared),
        async {
            let _ = http_stop_rx.await;
        },
    ));

    let ended_early = tokio::select! {
        _ = shutdown => false,
        _ = ended_rx => true,
    };
    if ended_early {
        shared.stop.store(true, Ordering::Release);
        let _ = http_stop_tx.send(());
        let _ = renderer.join();
        let r = match consumer_thread.join() {
            Ok(Ok(())) => Err(DaemonError::Consumer("stopped on its own".into())),
            Ok(Err(e)) => Err(DaemonError::Run(e)),
            Err(_) => Err(DaemonError::Consumer("panicked".into())),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
        return r;
    }
    tracing::info!("shutting down: draining the batch in flight and writing a snapshot");
    shared.stop.store(true, Ordering::Release);
    let joined = tokio::task::spawn_blocking(move || consumer_thread.join());
    let result = match tokio::time::timeout(Duration::from_secs(9), joined).await {
        Ok(Ok(Ok(r))) => r.map_err(DaemonError::Run),
        Ok(Ok(Err(_))) => Err(DaemonError::Consumer("panicked".into())),
        Ok(Err(e)) => Err(DaemonError::Consumer(e.to_string())),
        Err(_) => Err(DaemonError::Consumer("did not stop within 9 s".into())),
    };
    let _ = http_stop_tx.send(());
    let _ = renderer.join();
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    result
}

/// File descriptors kept for everything but HTTP clients: snapshots, the
/// state directory, librdkafka's broker sockets and pipes, the listener,
/// stdio, epoll.
pub const FD_RESERVE: u64 = 128;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, then checks that
/// `max_connections` client sockets leave [`FD_RESERVE`] descriptors free, so
/// a connection flood can never starve a snapshot of its file.
fn check_fd_limit(max_connections: usize) -> Result<(), DaemonError> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Ok(());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim = raised;
            }
        }
        // rlim_t is u64 on Linux, not on every unix.
        #[allow(clippy::unnecessary_cast)]
        let soft = lim.rlim_cur as u64;
        let need = max_connections as u64 + FD_RESERVE;
        if soft < need {
            return Err(DaemonError::FileLimit(format!(
                "{max_connections} connections need a file-descriptor limit of at least {need} \
                 ({FD_RESERVE} kept for snapshots and Kafka), but RLIMIT_NOFILE is {soft}: \
                 lower it to at most {} or raise the limit",
                soft.saturating_sub(FD_RESERVE)
            )));
        }
    }
    Ok(())
}

/// Loads a snapshot's state and counters into a fresh `Shared`.
fn restore(shared: &Shared, snap: checkpoint::Snapshot) {
    shared.store.restore(snap.engines);
    for (topic, n) in &snap.events_total {
        shared
            .metrics
            .events_total
            .with_label_values(&[topic.as_str()])
            .inc_by(*n);
    }
    for r in Reject::ALL {
        let n = snap.rejected.get(r);
        if n > 0 {
            shared
                .metrics
                .rejected_total
                .with_label_values(&[r.as_str()])
                .inc_by(n);
        }
    }
    shared
        .metrics
        .last_checkpoint
        .set(snap.created_at as f64 / 1e6);
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
