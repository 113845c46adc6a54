//! Configuration (SPEC §9): one TOML file, overridden by `CONNECTOR_GA__*`
//! environment variables, overridden in turn by command-line flags.
//!
//! Every struct denies unknown keys and every error names the key it is
//! about, so a typo stops start-up instead of silently using a default.
//! `config/default.toml` documents every key with its default.
//!
//! `schema` (the keys and their defaults) → `load` (file, environment and
//! flags merged) → `validate` (one-line errors naming the key); this module
//! holds [`Config`] itself and the engine's view of it ([`Settings`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

pub use crate::engine::params::{Attestation as ConnectorConfig, SuccessRateFormula, Window};
use crate::engine::params::{CriteriaParams, Settings};

mod load;
mod schema;
mod validate;

#[cfg(test)]
mod tests;

pub use load::{Overrides, ENV_PREFIX};
pub use schema::{
    Choice, CriteriaConfig, HttpConfig, KafkaConfig, LogConfig, LogFormat, StateConfig,
};
pub use validate::{
    check_log_filter, check_state_url, MAX_CHECKPOINT_INTERVAL_SECONDS, MAX_CONCURRENT_RENDERS,
    MAX_CONNECTIONS_PER_SCOPE, MAX_HTTP_CONNECTIONS, MAX_HTTP_TIMEOUT_SECONDS, MAX_WORKERS,
    STATE_URL_SCHEMES,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("config key `{key}`: {msg}")]
    Key { key: String, msg: String },
    #[error("environment variable `{var}`: {msg}")]
    Env { var: String, msg: String },
    #[error("config: {0}")]
    Other(String),
}

fn key_err(key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_string(),
        msg: msg.into(),
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub criteria: CriteriaConfig,
    /// Attested facts per connector id: `[connectors.<id>]`.
    #[serde(deserialize_with = "schema::connectors")]
    pub connectors: BTreeMap<String, ConnectorConfig>,
    pub kafka: KafkaConfig,
    pub http: HttpConfig,
    pub state: StateConfig,
    pub log: LogConfig,
    /// The file it was read from, for the evidence pack's "made from".
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Config {
    /// The ratio windows to export: `[criteria] windows` plus the criteria
    /// window itself, deduplicated, in a stable order.
    pub fn windows(&self) -> Vec<Window> {
        let mut w: Vec<Window> = self
            .criteria
            .windows
            .iter()
            .filter_map(|s| Window::parse(s))
            .collect();
        w.push(Window::Days(self.criteria.window_days));
        w.sort();
        w.dedup();
        w
    }

    pub fn connector(&self, id: &str) -> Option<&ConnectorConfig> {
        self.connectors.get(id)
    }
}

/// The engine's view of the configuration: `[criteria]` as plain
/// parameters, the attested facts, and the bounds of its state.
impl Settings for Config {
    fn criteria(&self) -> CriteriaParams {
        let k = &self.criteria;
        CriteriaParams {
            window_days: k.window_days,
            min_eligible_requests: k.min_eligible_requests,
            availability: k.availability,
            slo: k.slo,
            sla_availability: k.sla_availability,
            success_rate: k.success_rate,
            exception_success_rate: k.exception_success_rate,
            exception_preview_months: k.exception_preview_months,
            weekly_active_users: k.weekly_active_users,
            monthly_active_connections: k.monthly_active_connections,
            success_rate_formula: k.success_rate_formula,
            unattributed_failure_origin: k.unattributed_failure_origin,
            retention_days: k.retention_days,
        }
    }
    fn windows(&self) -> Vec<Window> {
        Config::windows(self)
    }
    fn attestation(&self, connector: &str) -> Option<&ConnectorConfig> {
        self.connector(connector)
    }
    fn max_connections_per_scope(&self) -> usize {
        self.state.max_connections_per_scope
    }
}

/// The threads a thread-count setting asks for: `0` (`kafka.workers`,
/// `report --threads`) is one per CPU this process may run on.
pub fn threads_for(setting: usize) -> usize {
    match setting {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}
