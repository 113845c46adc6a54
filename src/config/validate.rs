//! Validation of a merged [`Config`]: ranges, formats and cross-key rules,
//! each failure one line naming the key and the allowed values; the bounds
//! come from the engine's own limits where the engine sets them.

use std::net::SocketAddr;

use super::{key_err, Config, ConfigError, Window};

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

/// librdkafka properties the daemon sets itself, and what to use instead:
/// given in `[kafka.properties]` (applied last) they would silently undo
/// what SPEC §12 rests on.
const OWNED_PROPERTIES: [(&str, &str); 8] = [
    ("bootstrap.servers", "set `kafka.brokers` (or --brokers)"),
    ("metadata.broker.list", "set `kafka.brokers` (or --brokers)"),
    ("group.id", "set `kafka.group_id` (or --group)"),
    ("group.instance.id", "set `kafka.group_instance_id`"),
    (
        "enable.auto.offset.store",
        "the daemon stores an offset only once its task's checkpoint is written",
    ),
    (
        "enable.auto.commit",
        "the daemon commits the offsets it stored after each checkpoint",
    ),
    (
        "partition.assignment.strategy",
        "the daemon needs cooperative-sticky (incremental) assignment",
    ),
    (
        "transactional.id",
        "the re-key stage's producer is idempotent, not transactional",
    ),
];

impl Config {
    /// Refuses a `[kafka.properties]` entry the daemon owns (see
    /// [`OWNED_PROPERTIES`]); also called after the environment's entries
    /// are added (`load`).
    pub(super) fn check_properties(&self) -> Result<(), ConfigError> {
        for k in self.kafka.properties.keys() {
            if let Some((_, instead)) = OWNED_PROPERTIES.iter().find(|(p, _)| p == k) {
                return Err(key_err(
                    &format!("kafka.properties.\"{k}\""),
                    format!("is set by the daemon: {instead}"),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
        if c.window_days == 0 {
            return Err(key_err(
                "criteria.window_days",
                "0 is no window: it must be at least 1 (UTC days)",
            ));
        }
        let needed = c.window_days.max(30).max(21);
        if needed > c.retention_days {
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
        self.check_properties()?;
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
}
