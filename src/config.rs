//! Configuration (SPEC §9): one TOML file, overridden by `CONNECTOR_GA__*`
//! environment variables, overridden in turn by command-line flags.
//!
//! Every struct denies unknown keys and every error names the key it is
//! about, so a typo stops start-up instead of silently using a default.
//! `config/default.toml` documents every key with its default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Deserialize;

use crate::engine::classify::Fault;
pub use crate::engine::params::{Attestation as ConnectorConfig, SuccessRateFormula, Window};
use crate::engine::params::{CriteriaParams, Settings};

/// The environment variable prefix: `CONNECTOR_GA__CRITERIA__WINDOW_DAYS=7`.
pub const ENV_PREFIX: &str = "CONNECTOR_GA";

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
    #[serde(deserialize_with = "connectors")]
    pub connectors: BTreeMap<String, ConnectorConfig>,
    pub kafka: KafkaConfig,
    pub http: HttpConfig,
    pub state: StateConfig,
    pub log: LogConfig,
    /// The file it was read from, for the evidence pack's "made from".
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[criteria]`: thresholds and windows of SPEC §1, §4 and §6.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CriteriaConfig {
    /// Days in the criteria window. Default 30.
    pub window_days: u32,
    /// Below this many eligible requests a measured criterion is undecided. Default 1000.
    pub min_eligible_requests: u64,
    /// Availability threshold (>=). Default 0.9995.
    pub availability: f64,
    /// SLO threshold: share of connections meeting the SLA bar (>=). Default 0.995.
    pub slo: f64,
    /// The SLA bar one connection's availability must reach (>=). Default 0.9995.
    pub sla_availability: f64,
    /// Success rate threshold (strictly >). Default 0.80.
    pub success_rate: f64,
    /// Success rate the exception path needs (>=). Default 0.50.
    pub exception_success_rate: f64,
    /// Calendar months in preview before the exception applies. Default 6.
    pub exception_preview_months: u32,
    /// Distinct users needed in each of the last 3 weeks (>=). Default 500.
    pub weekly_active_users: u64,
    /// Distinct connections needed in the last 30 days (>=). Default 50.
    pub monthly_active_connections: u64,
    /// `ga` or `isv`. Default `ga`.
    #[serde(deserialize_with = "choice")]
    pub success_rate_formula: SuccessRateFormula,
    /// Origin of a 5xx / no-response failure without `fault`. Default `connector`.
    #[serde(deserialize_with = "choice")]
    pub unattributed_failure_origin: Fault,
    /// Days of state kept; older events are rejected `too_old`. Default 35.
    pub retention_days: u32,
    /// How far ahead of the wall clock an event may be. Default 300.
    pub max_future_skew_seconds: u64,
    /// Extra ratio windows for dashboards. Default ["1h", "1d", "7d", "30d"].
    pub windows: Vec<String>,
}

impl Default for CriteriaConfig {
    fn default() -> Self {
        CriteriaConfig {
            window_days: 30,
            min_eligible_requests: 1000,
            availability: 0.9995,
            slo: 0.995,
            sla_availability: 0.9995,
            success_rate: 0.80,
            exception_success_rate: 0.50,
            exception_preview_months: 6,
            weekly_active_users: 500,
            monthly_active_connections: 50,
            success_rate_formula: SuccessRateFormula::Ga,
            unattributed_failure_origin: Fault::Connector,
            retention_days: 35,
            max_future_skew_seconds: 300,
            windows: vec!["1h".into(), "1d".into(), "7d".into(), "30d".into()],
        }
    }
}

/// `[connectors.<id>]`: what the connector owner attests, read into the
/// engine's [`ConnectorConfig`].
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ConnectorToml {
    backend_in_production: bool,
    support_model_attested: bool,
    #[serde(deserialize_with = "date")]
    preview_since: Option<NaiveDate>,
}

fn connectors<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, ConnectorConfig>, D::Error> {
    let m = BTreeMap::<String, ConnectorToml>::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(id, t)| {
            let a = ConnectorConfig {
                backend_in_production: t.backend_in_production,
                support_model_attested: t.support_model_attested,
                preview_since: t.preview_since,
            };
            (id, a)
        })
        .collect())
}

/// `[kafka]`: where events come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port]`. Default `localhost:9092`.
    pub brokers: String,
    /// Topics to consume. Default `["connector-events"]`.
    pub topics: Vec<String>,
    /// Consumer group id. Default `connector-ga-exporter`.
    pub group_id: String,
    /// Static membership id (`group.instance.id`): a restarted daemon takes
    /// its partitions back at once instead of after the session timeout.
    pub group_instance_id: Option<String>,
    /// Where rejected events are copied, with a `reason` header. Default: none.
    pub dead_letter_topic: Option<String>,
    /// Decode threads; 0 means one per CPU core. Default 0.
    pub workers: usize,
    /// SPEC §12: producers key every record by its connector id, so a
    /// connector's events are in one partition and the members aggregate
    /// the input partitions directly. Default false.
    pub input_keyed_by_connector: bool,
    /// Any librdkafka property, passed through (TLS, SASL, timeouts).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "localhost:9092".into(),
            topics: vec!["connector-events".into()],
            group_id: "connector-ga-exporter".into(),
            group_instance_id: None,
            dead_letter_topic: None,
            workers: 0,
            input_keyed_by_connector: false,
            properties: BTreeMap::new(),
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address of /metrics, /api/v1/criteria, /healthz, /readyz and /.
    /// Default `0.0.0.0:9795`.
    pub listen: String,
    /// Most open client connections. Past it, a new connection closes the
    /// oldest one not serving a request. Default 256.
    pub max_connections: usize,
    /// Seconds a connection may take to send a complete request head, from
    /// its opening or from the end of its previous response (so it is also
    /// the keep-alive idle limit). Default 10.
    pub header_read_timeout_seconds: u64,
    /// Seconds without a byte read or written, in any state (e.g. a client
    /// that stops reading its response), before a connection is closed.
    /// Default 60.
    pub idle_timeout_seconds: u64,
    /// Most requests rendered on demand at once (`/` and anything not
    /// served from the background rendering); more get 503. Default 2.
    pub max_concurrent_renders: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:9795".into(),
            max_connections: 256,
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            max_concurrent_renders: 2,
        }
    }
}

/// `[state]`: durability and bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory of snapshots. Default `./state`.
    pub dir: PathBuf,
    /// The state store as an object store (or `file://` directory) URL:
    /// `az://container/prefix`, `s3://bucket/prefix`, `gs://bucket/prefix`.
    /// When set, `dir` is not the state store. Default: none.
    pub url: Option<String>,
    /// Seconds between snapshots. Default 10.
    pub checkpoint_interval_seconds: u64,
    /// Most (connector, cloud) scopes kept; events of further scopes are
    /// rejected `series_limit`. Default 10000.
    pub max_series: usize,
    /// Most connections tracked per scope for the SLO. Default 100000.
    pub max_connections_per_scope: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from("state"),
            url: None,
            checkpoint_interval_seconds: 10,
            max_series: 10_000,
            max_connections_per_scope: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`. Default `text`.
    #[serde(deserialize_with = "choice")]
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `connector_ga_exporter=debug`;
    /// `RUST_LOG` wins when set. Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// A config value with a fixed set of names: an unknown one is refused with
/// the list of the allowed ones (serde's enum support through the `config`
/// crate names neither).
pub trait Choice: Sized + Copy + 'static {
    const CHOICES: &'static [(&'static str, Self)];
}

impl Choice for SuccessRateFormula {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("ga", SuccessRateFormula::Ga),
        ("isv", SuccessRateFormula::Isv),
    ];
}

impl Choice for LogFormat {
    const CHOICES: &'static [(&'static str, Self)] =
        &[("text", LogFormat::Text), ("json", LogFormat::Json)];
}

impl Choice for Fault {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("connector", Fault::Connector),
        ("backend", Fault::Backend),
        ("client", Fault::Client),
    ];
}

fn choice<'de, D: serde::Deserializer<'de>, T: Choice>(d: D) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    T::CHOICES
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<String> = T::CHOICES.iter().map(|(n, _)| format!("{n:?}")).collect();
            serde::de::Error::custom(format!("{s:?} is not one of {}", names.join(", ")))
        })
}

/// A calendar date `YYYY-MM-DD` (a TOML date; a date-time is refused, since
/// the exception counts calendar months from a day, not an instant).
fn date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    NaiveDate::parse_from_str(&s, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| {
            serde::de::Error::custom(format!(
            "{s} is not a date: write a TOML date YYYY-MM-DD such as 2026-03-01, without a time"
        ))
        })
}

/// Checks a tracing filter strictly: comma-separated directives, each a
/// level or `TARGET=LEVEL`. `EnvFilter` itself accepts any bare word as a
/// target, so `warnn` would silently turn every log line off.
pub fn check_log_filter(f: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let allowed =
        "a level (off, error, warn, info, debug, trace) or comma-separated TARGET=LEVEL directives";
    let is_level = |s: &str| LEVELS.contains(&s.trim().to_ascii_lowercase().as_str());
    let ok = !f.trim().is_empty()
        && f.split(',').all(|d| match d.rsplit_once('=') {
            Some((target, level)) => !target.trim().is_empty() && is_level(level),
            None => is_level(d),
        })
        && tracing_subscriber::EnvFilter::try_new(f).is_ok();
    if ok {
        Ok(())
    } else {
        Err(format!("{f:?} is not {allowed}"))
    }
}

/// The schemes `[state] url` may use (object_store's names for Azure Blob,
/// S3 and GCS, and `file` for a directory).
pub const STATE_URL_SCHEMES: &[&str] = &["az", "azure", "abfs", "abfss", "s3", "s3a", "gs", "file"];

/// Checks `[state] url`: a URL of an allowed scheme naming its bucket
/// (container), or `file:///absolute/dir`.
pub fn check_state_url(u: &str) -> Result<url::Url, String> {
    let allowed = format!("one of {}", STATE_URL_SCHEMES.join("://, ") + "://");
    let parsed =
        url::Url::parse(u).map_err(|e| format!("{u:?} is not a URL ({e}): use {allowed}"))?;
    if !STATE_URL_SCHEMES.contains(&parsed.scheme()) {
        return Err(format!(
            "{u:?}: scheme {:?} is not {allowed}",
            parsed.scheme()
        ));
    }
    let has_host = parsed.host_str().is_some_and(|h| !h.is_empty());
    if parsed.scheme() == "file" {
        if has_host || parsed.path().len() <= 1 {
            return Err(format!("{u:?}: write a directory as file:///absolute/path"));
        }
    } else if !has_host {
        return Err(format!(
            "{u:?} names no bucket or container ({}://NAME/prefix)",
            parsed.scheme()
        ));
    }
    Ok(parsed)
}

/// Bounds of the numeric keys whose extremes are mistakes.
pub const MAX_WORKERS: usize = 256;
pub const MAX_CHECKPOINT_INTERVAL_SECONDS: u64 = 3600;
pub const MAX_CONNECTIONS_PER_SCOPE: usize = 10_000_000;
pub const MAX_HTTP_CONNECTIONS: usize = 65_536;
pub const MAX_HTTP_TIMEOUT_SECONDS: u64 = 3600;
pub const MAX_CONCURRENT_RENDERS: usize = 64;

/// Makes a message one line: the `config` crate's TOML errors draw the
/// offending line with a caret over several lines and end in " in FILE";
/// keep the position and the reason.
fn one_line(msg: &str) -> String {
    let is_snippet = |l: &str| {
        let t = l.trim_start();
        t.starts_with('|')
            || t.split_once(" |")
                .is_some_and(|(n, _)| n.trim().parse::<u32>().is_ok())
    };
    let parts: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_snippet(l) && !l.starts_with("in "))
        .collect();
    let line = parts.join(": ");
    // The `config` crate appends the key it already names.
    match line.find(" for key `") {
        Some(i) if line.ends_with('`') => line[..i].to_string(),
        _ => line,
    }
}

/// Command-line overrides (SPEC §9 flags); `None` leaves the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub brokers: Option<String>,
    pub topics: Vec<String>,
    pub group: Option<String>,
    pub listen: Option<String>,
    pub state_dir: Option<PathBuf>,
}

impl Config {
    /// Loads `path` (if any), then the environment, then `ov`; validates.
    pub fn load(path: Option<&Path>, ov: &Overrides) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, ov, env)
    }

    /// As [`Config::load`], with the environment given (tests).
    pub fn load_with_env(
        path: Option<&Path>,
        ov: &Overrides,
        env: Vec<(String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut b = config::Config::builder();
        if let Some(p) = path {
            if !p.is_file() {
                return Err(ConfigError::File {
                    path: p.to_path_buf(),
                    msg: "no such file".into(),
                });
            }
            b = b.add_source(config::File::from(p).format(config::FileFormat::Toml));
        }
        let env_map: config::Map<String, String> = env
            .iter()
            .filter(|&(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .cloned()
            .collect();
        b = b.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("kafka.topics")
                .with_list_parse_key("criteria.windows")
                .source(Some(env_map)),
        );
        let set = |b: config::ConfigBuilder<_>, k: &str, v: config::Value| {
            b.set_override(k, v)
                .map_err(|e| ConfigError::Other(e.to_string()))
        };
        if let Some(v) = &ov.brokers {
            b = set(b, "kafka.brokers", v.clone().into())?;
        }
        if !ov.topics.is_empty() {
            b = set(b, "kafka.topics", ov.topics.clone().into())?;
        }
        if let Some(v) = &ov.group {
            b = set(b, "kafka.group_id", v.clone().into())?;
        }
        if let Some(v) = &ov.listen {
            b = set(b, "http.listen", v.clone().into())?;
        }
        if let Some(v) = &ov.state_dir {
            b = set(b, "state.dir", v.to_string_lossy().to_string().into())?;
        }
        let raw = b.build().map_err(|e| match path {
            Some(p) => ConfigError::File {
                path: p.to_path_buf(),
                msg: one_line(&e.to_string()),
            },
            None => ConfigError::Other(one_line(&e.to_string())),
        })?;
        // `RUST_LOG` replaces `log.level` (see main.rs): a garbage value
        // would turn logging off without a word.
        if let Some((_, v)) = env.iter().find(|(k, _)| k == "RUST_LOG") {
            check_log_filter(v).map_err(|msg| ConfigError::Env {
                var: "RUST_LOG".into(),
                msg,
            })?;
        }
        let mut cfg = Self::from_raw(raw)?;
        cfg.source = path.map(Path::to_path_buf);
        Ok(cfg)
    }

    /// Deserializes merged sources, naming the key of any error, and validates.
    fn from_raw(raw: config::Config) -> Result<Config, ConfigError> {
        let cfg: Config = serde_path_to_error::deserialize(raw).map_err(|e| {
            let key = e.path().to_string();
            key_err(&key, one_line(&e.into_inner().to_string()))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML string with no environment (tests, examples).
    pub fn from_toml(s: &str) -> Result<Config, ConfigError> {
        let raw = config::Config::builder()
            .add_source(config::File::from_str(s, config::FileFormat::Toml))
            .build()
            .map_err(|e| ConfigError::Other(one_line(&e.to_string())))?;
        Self::from_raw(raw)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.criteria;
        for (k, v) in [
            ("criteria.availability", c.availability),
            ("criteria.slo", c.slo),
            ("criteria.sla_availability", c.sla_availability),
            ("criteria.success_rate", c.success_rate),
            ("criteria.exception_success_rate", c.exception_success_rate),
        ] {
            // Budgets solve the threshold inequalities in exact integers
            // (`budget`), which needs a ratio of at most 18 decimals.
            if let Err(e) = crate::engine::budget::Threshold::from_f64(v) {
                return Err(key_err(k, e.to_string()));
            }
        }
        if c.retention_days == 0 || c.retention_days > crate::engine::state::MAX_RETENTION_DAYS {
            return Err(key_err(
                "criteria.retention_days",
                format!(
                    "{} is outside 1..={} (distinct counts keep one bit per retained day)",
                    c.retention_days,
                    crate::engine::state::MAX_RETENTION_DAYS
                ),
            ));
        }
        // Week 2 and the 30-day MAC window must fit in retention.
        let needed = c.window_days.max(30).max(21);
        if c.window_days == 0 || needed > c.retention_days {
            return Err(key_err(
                "criteria.window_days",
                format!(
                    "{} needs retention_days >= {} (criteria window, 30-day MAC window, 3 weeks)",
                    c.window_days, needed
                ),
            ));
        }
        for w in &c.windows {
            match Window::parse(w) {
                Some(Window::Days(n)) if n > c.retention_days => {
                    return Err(key_err(
                        "criteria.windows",
                        format!("{w} is longer than retention_days = {}", c.retention_days),
                    ))
                }
                Some(Window::Hours(n)) if n > crate::engine::state::MAX_HOUR_WINDOW => {
                    return Err(key_err(
                        "criteria.windows",
                        format!(
                            "{w}: hour windows go up to {}h; use days",
                            crate::engine::state::MAX_HOUR_WINDOW
                        ),
                    ))
                }
                Some(_) => {}
                None => {
                    return Err(key_err(
                        "criteria.windows",
                        format!("{w:?} is not a window like \"1h\" or \"7d\""),
                    ))
                }
            }
        }
        for id in self.connectors.keys() {
            if !crate::engine::event::valid_connector(id) {
                return Err(key_err(
                    &format!("connectors.{id}"),
                    "not a valid connector id",
                ));
            }
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            return Err(key_err(
                "http.listen",
                format!("{:?} is not an ADDR:PORT socket address", self.http.listen),
            ));
        }
        if self.kafka.topics.is_empty() || self.kafka.topics.iter().any(|t| t.is_empty()) {
            return Err(key_err(
                "kafka.topics",
                "needs at least one non-empty topic",
            ));
        }
        if self.kafka.brokers.trim().is_empty() {
            return Err(key_err("kafka.brokers", "is empty"));
        }
        if self.kafka.group_id.is_empty() {
            return Err(key_err("kafka.group_id", "is empty"));
        }
        if let Some(u) = &self.state.url {
            check_state_url(u).map_err(|m| key_err("state.url", m))?;
        }
        if self.state.max_series == 0 {
            return Err(key_err("state.max_series", "must be > 0"));
        }
        let h = &self.http;
        for (key, v, lo, hi, why) in [
            (
                "kafka.workers",
                self.kafka.workers as u64,
                0,
                MAX_WORKERS as u64,
                " (0 = one per CPU core)",
            ),
            (
                "state.checkpoint_interval_seconds",
                self.state.checkpoint_interval_seconds,
                1,
                MAX_CHECKPOINT_INTERVAL_SECONDS,
                " (a restart replays up to one interval of events)",
            ),
            (
                "state.max_connections_per_scope",
                self.state.max_connections_per_scope as u64,
                1,
                MAX_CONNECTIONS_PER_SCOPE as u64,
                "",
            ),
            (
                "http.max_connections",
                h.max_connections as u64,
                1,
                MAX_HTTP_CONNECTIONS as u64,
                "",
            ),
            (
                "http.header_read_timeout_seconds",
                h.header_read_timeout_seconds,
                1,
                MAX_HTTP_TIMEOUT_SECONDS,
                "",
            ),
            (
                "http.idle_timeout_seconds",
                h.idle_timeout_seconds,
                1,
                MAX_HTTP_TIMEOUT_SECONDS,
                "",
            ),
            (
                "http.max_concurrent_renders",
                h.max_concurrent_renders as u64,
                1,
                MAX_CONCURRENT_RENDERS as u64,
                "",
            ),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(key_err(key, format!("{v} is outside {lo}..={hi}{why}")));
            }
        }
        check_log_filter(&self.log.level).map_err(|m| key_err("log.level", m))?;
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn err(toml: &str) -> String {
        Config::from_toml(toml).unwrap_err().to_string()
    }

    #[test]
    fn defaults_match_spec() {
        let c = Config::from_toml("").unwrap();
        let k = &c.criteria;
        assert_eq!(k.window_days, 30);
        assert_eq!(k.min_eligible_requests, 1000);
        assert_eq!(k.availability, 0.9995);
        assert_eq!(k.slo, 0.995);
        assert_eq!(k.success_rate, 0.80);
        assert_eq!(k.retention_days, 35);
        assert_eq!(
            c.windows(),
            vec![
                Window::Hours(1),
                Window::Days(1),
                Window::Days(7),
                Window::Days(30)
            ]
        );
    }

    #[test]
    fn spec_example_parses() {
        let c = Config::from_toml(
            r#"
[criteria]
window_days = 30
success_rate_formula = "isv"
unattributed_failure_origin = "backend"
[connectors.shared_contoso]
backend_in_production = true
support_model_attested = true
preview_since = 2026-03-01
"#,
        )
        .unwrap();
        assert_eq!(c.criteria.success_rate_formula, SuccessRateFormula::Isv);
        assert_eq!(c.criteria.unattributed_failure_origin, Fault::Backend);
        let k = c.connector("shared_contoso").unwrap();
        assert_eq!(k.preview_since, NaiveDate::from_ymd_opt(2026, 3, 1));
    }

    #[test]
    fn bad_keys_are_named() {
        assert!(err("[criteria]\nwindow_dayz = 3").contains("window_dayz"));
        assert!(err("[criteria]\nwindow_days = \"x\"").contains("criteria.window_days"));
        assert!(err("[criteria]\navailability = 1.5").contains("criteria.availability"));
        // More decimals than the exact budget arithmetic takes.
        let e = err("[criteria]\nslo = 0.1234567890123456789e-3");
        assert!(
            e.contains("criteria.slo") && e.contains("decimal places"),
            "{e}"
        );
        assert!(err("[criteria]\nwindows = [\"5m\"]").contains("criteria.windows"));
        assert!(err("[criteria]\nsuccess_rate_formula = \"x\"").contains("success_rate_formula"));
        assert!(err("[http]\nlisten = \"nope\"").contains("http.listen"));
        assert!(err("[kafka]\nbrokerz = \"a\"").contains("brokerz"));
        assert!(err("[connectors.a]\nbackend = true").contains("backend"));
        assert!(err("[criteria]\nretention_days = 20").contains("criteria.window_days"));
        for bad in [
            "http://h/p",
            "ftp://b/p",
            "s3:///p",
            "not a url",
            "",
            "file://host/x",
            "file:///",
        ] {
            let e = err(&format!("[state]\nurl = {bad:?}"));
            assert!(e.contains("state.url"), "{bad:?}: {e}");
        }
        let e = err("[state]\nurl = \"http://h/p\"");
        assert!(
            e.contains("az://, azure://, abfs://, abfss://, s3://, s3a://, gs://, file://"),
            "{e}"
        );
        for good in [
            "az://c/p",
            "azure://c",
            "abfss://fs@acct.dfs.core.windows.net/p",
            "s3://b/p/q",
            "s3a://b",
            "gs://b/p",
            "file:///var/lib/x",
        ] {
            let c = Config::from_toml(&format!("[state]\nurl = {good:?}")).unwrap();
            assert_eq!(c.state.url.as_deref(), Some(good));
        }
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[kafka]\nbrokers = \"file:1\"\ngroup_id = \"g\"\n[criteria]\nwindow_days = 30\n",
        )
        .unwrap();
        let env = vec![
            (
                "CONNECTOR_GA__KAFKA__BROKERS".to_string(),
                "env:2".to_string(),
            ),
            (
                "CONNECTOR_GA__CRITERIA__MIN_ELIGIBLE_REQUESTS".to_string(),
                "5".to_string(),
            ),
            ("CONNECTOR_GA__KAFKA__TOPICS".to_string(), "a,b".to_string()),
            (
                "CONNECTOR_GA__STATE__URL".to_string(),
                "s3://bucket/prefix".to_string(),
            ),
        ];
        let c = Config::load_with_env(Some(&p), &Overrides::default(), env.clone()).unwrap();
        assert_eq!(c.kafka.brokers, "env:2");
        assert_eq!(c.kafka.group_id, "g");
        assert_eq!(c.criteria.min_eligible_requests, 5);
        assert_eq!(c.kafka.topics, vec!["a", "b"]);
        assert_eq!(c.state.url.as_deref(), Some("s3://bucket/prefix"));
        let ov = Overrides {
            brokers: Some("flag:3".into()),
            topics: vec!["t".into()],
            ..Default::default()
        };
        let c = Config::load_with_env(Some(&p), &ov, env).unwrap();
        assert_eq!(c.kafka.brokers, "flag:3");
        assert_eq!(c.kafka.topics, vec!["t"]);
        let bad = vec![("CONNECTOR_GA__CRITERIA__SLO".to_string(), "2".to_string())];
        let e = Config::load_with_env(Some(&p), &Overrides::default(), bad).unwrap_err();
        assert!(e.to_string().contains("criteria.slo"), "{e}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = Config::load_with_env(
            Some(Path::new("/nonexistent/x.toml")),
            &Overrides::default(),
            vec![],
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.toml"));
    }
}
