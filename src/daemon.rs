//! The `run` command: restores state, consumes Kafka, serves HTTP, and on
//! shutdown drains (finishes the batch in flight, writes a snapshot, stores
//! and commits offsets) before returning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::checkpoint::{self, CheckpointError};
use crate::config::Config;
use crate::event::{Reject, RejectCounts};
use crate::kafka;
use crate::metrics::{Format, Writer};
use crate::report::Report;
use crate::store::Store;
use crate::timeutil::Micros;

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
            "Unix time of the last snapshot written to the state directory.",
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

/// `/metrics` rendered in both formats from one report.
pub struct Rendered {
    pub text: Arc<str>,
    pub openmetrics: Arc<str>,
    /// How long measuring and rendering took.
    pub took: Duration,
}

impl Rendered {
    pub fn text(&self, fmt: Format) -> Arc<str> {
        match fmt {
            Format::Text => Arc::clone(&self.text),
            Format::OpenMetrics => Arc::clone(&self.openmetrics),
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
    /// The latest background rendering of `/metrics`.
    rendered: Mutex<Option<Arc<Rendered>>>,
}

impl Shared {
    pub fn new(cfg: Config) -> Shared {
        let metrics = SelfMetrics::new(&cfg.kafka.topics);
        Shared {
            store: Store::from_config(&cfg, SHARDS),
            cfg,
            metrics,
            assigned: AtomicBool::new(false),
            restored: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            rendered: Mutex::new(None),
        }
    }

    /// Measures every scope and renders `/metrics` in both formats.
    pub fn render_metrics(&self) -> Rendered {
        let started = Instant::now();
        let r = self.report_now();
        let registry = self.metrics.registry.gather();
        let render = |fmt| {
            let mut w = Writer::new(fmt);
            w.report(&r);
            w.registry(&registry);
            Arc::<str>::from(w.finish())
        };
        Rendered {
            text: render(Format::Text),
            openmetrics: render(Format::OpenMetrics),
            took: started.elapsed(),
        }
    }

    /// The latest background rendering, if any.
    pub fn cached_metrics(&self, fmt: Format) -> Option<Arc<str>> {
        let g = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().map(|r| r.text(fmt))
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
            *self.rendered.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(r));
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
    let consumer_thread = std::thread::Builder::new()
        .name("kafka-consumer".into())
        .spawn(move || consumer.run())
        .map_err(|e| DaemonError::Consumer(e.to_string()))?;

    let renderer = {
        let s = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("metrics-render".into())
            .spawn(move || s.render_loop())
            .map_err(|e| DaemonError::Consumer(e.to_string()))?
    };

    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, crate::http::router(Arc::clone(&shared)))
        .with_graceful_shutdown(async {
            let _ = http_stop_rx.await;
        });
    let server = tokio::spawn(async move { server.await });

    shutdown.await;
    tracing::info!("shutting down: draining the batch in flight and writing a snapshot");
    shared.stop.store(true, Ordering::Release);
    let joined = tokio::task::spawn_blocking(move || consumer_thread.join());
    let result = match tokio::time::timeout(Duration::from_secs(9), joined).await {
        Ok(Ok(Ok(r))) => r.map_err(DaemonError::Consumer),
        Ok(Ok(Err(_))) => Err(DaemonError::Consumer("panicked".into())),
        Ok(Err(e)) => Err(DaemonError::Consumer(e.to_string())),
        Err(_) => Err(DaemonError::Consumer("did not stop within 9 s".into())),
    };
    let _ = http_stop_tx.send(());
    let _ = renderer.join();
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    result
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
