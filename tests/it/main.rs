//! The integration test binary: one binary so the suite links once.
//!
//! - `abuse`: the daemon under misconfiguration, connection floods, many
//!   readers, unwritable state and undecodable messages (issue 10).
//! - `report_cli`: the `report` command end to end, against hand-worked files
//!   in `tests/data` (see `tests/data/HAND.md`).
//! - `rules`: every rule of SPEC.md through the library API, table-driven,
//!   expected values worked out by hand in comments.
//! - `edges`: the SLO sample past `max_connections_per_scope`, `report`
//!   without a series limit, latencies up to 24 h.
//! - `decoder`: SPEC §2's pinned decoder edges, table-driven.
//! - `alert_rules`: `rules` output through promtool for several configs.
//! - `state_store`: the checkpoint state store against a directory, Azurite
//!   and moto (S3), each emulator a real process started by the test.
//! - `props`: property tests (decoder robustness, order / batching / shard
//!   independence, exact distinct counts).
//! - `harness`: the daemon and `mock-kafka` as child processes, one builder
//!   for every test that starts `run`.
//! - `scale`: SPEC §12 with several member processes on one `mock-kafka`.
//! - `shards`: engines fed by connector or by batch, for the layout tests.

mod abuse;
mod alert_rules;
mod budget;
mod daemon;
mod decoder;
mod edges;
mod evidence;
mod harness;
mod props;
mod report_cli;
mod rules;
mod scale;
mod shards;
mod state_store;

/// Shared helpers for the test modules.
pub mod common {
    use serde_json::Value;
    use std::path::PathBuf;

    /// `tests/data/<name>`.
    pub fn data(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name)
    }

    /// The binary under test.
    pub const BIN: &str = env!("CARGO_BIN_EXE_connector-ga-exporter");

    /// Runs `connector-ga-exporter report ARGS`. The test must not depend on
    /// the caller's environment overrides, so `CONNECTOR_GA__*` are removed.
    pub fn report_cmd(args: &[&str]) -> std::process::Output {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("report").args(args);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CONNECTOR_GA__")) {
            cmd.env_remove(k);
        }
        cmd.output().expect("run the binary")
    }

    /// Compares two JSON values key for key; numbers as f64 within 1e-9.
    /// Returns every difference, with its path.
    pub fn json_diff(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
        match (got, want) {
            (Value::Object(g), Value::Object(w)) => {
                for k in w.keys() {
                    match g.get(k) {
                        Some(gv) => json_diff(&format!("{path}.{k}"), gv, &w[k], out),
                        None => out.push(format!("{path}.{k}: missing")),
                    }
                }
                for k in g.keys().filter(|k| !w.contains_key(*k)) {
                    out.push(format!("{path}.{k}: unexpected key"));
                }
            }
            (Value::Array(g), Value::Array(w)) => {
                if g.len() != w.len() {
                    out.push(format!("{path}: {} items, want {}", g.len(), w.len()));
                }
                for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                    json_diff(&format!("{path}[{i}]"), gv, wv, out);
                }
            }
            (Value::Number(g), Value::Number(w)) => {
                let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
                if (g - w).abs() > 1e-9 {
                    out.push(format!("{path}: {g}, want {w}"));
                }
            }
            (g, w) if g == w => {}
            (g, w) => out.push(format!("{path}: {g}, want {w}")),
        }
    }

    pub fn assert_json_eq(got: &Value, want: &Value) {
        let mut d = Vec::new();
        json_diff("$", got, want, &mut d);
        assert!(
            d.is_empty(),
            "report differs:\n{}\n\ngot:\n{}",
            d.join("\n"),
            serde_json::to_string_pretty(got).unwrap()
        );
    }
}
