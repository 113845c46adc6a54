//! connector-ga-exporter: decides continuously, from per-request connector
//! events read from Kafka, whether a connector meets the criteria to leave
//! preview and become generally available, and exports every criterion and
//! the verdict to Prometheus.
//!
//! The data flows one way (`../SPEC.md` is the contract):
//!
//! `event` (decode, validate) → `classify` → `state` (bucket rings,
//! distinct sets and sketches, per-connection counters) held in a sharded
//! `store` → `criteria` (measures, verdict) → `budget` (SPEC §11: budgets,
//! recovery dates, daily rows) → `report` (JSON, table) and
//! `metrics` / `http` (Prometheus, API, page), with `evidence` (the
//! evidence pack, Markdown and HTML), `page` (the page `/`), `svg` (charts)
//! and `numfmt` (how numbers print).
//!
//! Around the engine: `config`, `kafka` (consumer, offsets, dead letters),
//! `checkpoint` (snapshots), `daemon` (the `run` command), `loadgen` and
//! `demo`. Nothing in the engine imports Kafka or HTTP, and nothing in it
//! reads a clock: every function takes `now`.

pub mod budget;
pub mod checkpoint;
pub mod classify;
pub mod config;
pub mod criteria;
pub mod daemon;
pub mod demo;
pub mod event;
pub mod evidence;
pub mod http;
pub mod kafka;
pub mod loadgen;
pub mod metrics;
pub mod numfmt;
pub mod page;
pub mod report;
pub mod rules;
pub mod state;
pub mod store;
pub mod svg;
pub mod timeutil;
