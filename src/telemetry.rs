//! The daemon's own metrics (Kafka, checkpoints, HTTP, tasks), kept in
//! `prometheus` atomics, and the wall clock read at the daemon's edges.
//!
//! `connector_ga_events_total` and `connector_ga_events_rejected_total` are
//! not here: they belong to tasks (SPEC §12: counted where decided, moving
//! with the task), and are written from the tasks' views at render time.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::engine::timeutil::Micros;

/// The wall clock, read only at the daemon's edges.
pub fn wall_clock() -> Micros {
    chrono::Utc::now().timestamp_micros()
}

/// The `reason` labels of `connector_ga_dead_letters_dropped_total`, each
/// exported from the start (at 0) so that a rate over it is defined.
pub const DEAD_LETTER_DROPS: [&str; 4] = ["too_large", "queue_full", "refused", "undelivered"];

/// The daemon's own metrics.
pub struct SelfMetrics {
    pub registry: Registry,
    pub tasks_owned: IntGauge,
    pub read_tasks_owned: IntGauge,
    pub consumer_lag: IntGaugeVec,
    pub kafka_connected: IntGauge,
    pub last_checkpoint: Gauge,
    pub checkpoint_failures: IntCounter,
    pub dead_letters_dropped: IntCounterVec,
    pub http_connections: IntGauge,
    pub http_evicted: IntCounter,
    pub http_shed: IntCounter,
}

impl SelfMetrics {
    pub fn new() -> SelfMetrics {
        let registry = Registry::new();
        let tasks_owned = IntGauge::new(
            "connector_ga_tasks_owned",
            "Tasks (aggregated partitions) this member owns now (SPEC §12).",
        )
        .expect("valid metric");
        let read_tasks_owned = IntGauge::new(
            "connector_ga_read_tasks_owned",
            "Input partitions this member reads and re-keys by connector (SPEC §12; 0 with input_keyed_by_connector).",
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
            "Unix time of the last task checkpoint written (or restored); the process start time until then.",
        )
        .expect("valid metric");
        // Never 0: `time() - this` then grows from the start even when no
        // checkpoint ever succeeds, and a staleness alert needs no `> 0` guard.
        last_checkpoint.set(wall_clock() as f64 / 1e6);
        let checkpoint_failures = IntCounter::new(
            "connector_ga_checkpoint_failures_total",
            "Task checkpoints that could not be written (each is retried at the next interval).",
        )
        .expect("valid metric");
        let dead_letters_dropped = IntCounterVec::new(
            Opts::new(
                "connector_ga_dead_letters_dropped_total",
                "Rejected events whose copy never reached kafka.dead_letter_topic, by why: too_large (over the producer's message.max.bytes), queue_full, refused (any other send error), undelivered (the broker did not take it: no such topic, timeout).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for r in DEAD_LETTER_DROPS {
            dead_letters_dropped.with_label_values(&[r]).reset();
        }
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
        for c in [
            Box::new(tasks_owned.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(read_tasks_owned.clone()),
            Box::new(consumer_lag.clone()),
            Box::new(kafka_connected.clone()),
            Box::new(last_checkpoint.clone()),
            Box::new(checkpoint_failures.clone()),
            Box::new(dead_letters_dropped.clone()),
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
            tasks_owned,
            read_tasks_owned,
            consumer_lag,
            kafka_connected,
            last_checkpoint,
            checkpoint_failures,
            dead_letters_dropped,
            http_connections,
            http_evicted,
            http_shed,
        }
    }
}

impl Default for SelfMetrics {
    fn default() -> Self {
        SelfMetrics::new()
    }
}
