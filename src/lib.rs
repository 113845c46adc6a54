//! connector-ga-exporter: decides continuously, from per-request connector
//! events read from Kafka, whether a connector meets the criteria to leave
//! preview and become generally available, and exports every criterion and
//! the verdict to Prometheus.
//!
//! The folders show the design; data flows one way (`../SPEC.md` is the
//! contract):
//!
//! - [`engine`]: decode and validate events, classify them, aggregate them
//!   into bucket rings and distinct sets, measure the criteria, decide the
//!   verdict and its budgets. Pure: no tokio, rdkafka or HTTP, and no clock
//!   (every function takes `now`).
//! - [`config`]: the configuration and its validation.
//! - [`task`]: the daemon's state, one task per aggregated partition, and
//!   the readers' lock-free handle on it; `report` ingests through it too.
//! - [`telemetry`]: the daemon's own metrics.
//! - [`checkpoint`]: snapshots of that state with their offsets.
//! - [`kafka`]: the consumer group, offsets, dead letters.
//! - [`report`]: the `report` command and the report every reader shows.
//! - [`render`]: numbers, charts and the evidence pack (Markdown, HTML).
//! - [`serve`]: HTTP (`/metrics`, `/api/v1/criteria`, the pages).
//! - [`app`]: the `run` command; owns the shared handles and hands each
//!   part the narrow one it needs.
//! - [`rules`]: the Prometheus rule file.
//! - [`tools`]: `loadgen`, `demo` and `mock-kafka`, outside the production path.

pub mod app;
pub mod checkpoint;
pub mod config;
pub mod engine;
pub mod kafka;
pub mod render;
pub mod report;
pub mod rules;
pub mod serve;
pub mod task;
pub mod telemetry;
pub mod tools;
