//! The engine: everything that turns events into a verdict, and nothing
//! else. It imports no tokio, rdkafka or HTTP crate and never reads a clock.
//!
//! `event` (decode, validate) → `classify` → `state` (bucket rings,
//! distinct sets, per-connection counters) → `criteria` (measures,
//! verdict) → `budget` (SPEC §11) → `measure` (one scope's report);
//! `params` is what the engine is told (built by `config`).

pub mod budget;
pub mod classify;
pub mod criteria;
pub mod event;
pub mod measure;
pub mod params;
pub mod state;
pub mod timeutil;
