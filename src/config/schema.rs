//! The TOML schema of SPEC §9: one struct per table, each denying unknown
//! keys, with the defaults `config/default.toml` documents, and the
//! deserializers of its fixed-choice and date values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::NaiveDate;
use serde::Deserialize;

use super::{ConnectorConfig, SuccessRateFormula};
use crate::engine::classify::Fault;

/// `[criteria]`: thresholds and windows of SPEC §1, §4 and §6.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CriteriaConfig {
    /// Days in the criteria window. Default 30.
    #[serde(deserialize_with = "whole")]
    pub window_days: u32,
    /// Below this many eligible requests a measured criterion is undecided. Default 1000.
    #[serde(deserialize_with = "whole")]
    pub min_eligible_requests: u64,
    /// Availability threshold (>=). Default 0.9995.
    #[serde(deserialize_with = "number")]
    pub availability: f64,
    /// SLO threshold: share of connections meeting the SLA bar (>=). Default 0.995.
    #[serde(deserialize_with = "number")]
    pub slo: f64,
    /// The SLA bar one connection's availability must reach (>=). Default 0.9995.
    #[serde(deserialize_with = "number")]
    pub sla_availability: f64,
    /// Success rate threshold (strictly >). Default 0.80.
    #[serde(deserialize_with = "number")]
    pub success_rate: f64,
    /// Success rate the exception path needs (>=). Default 0.50.
    #[serde(deserialize_with = "number")]
    pub exception_success_rate: f64,
    /// Calendar months in preview before the exception applies. Default 6.
    #[serde(deserialize_with = "whole")]
    pub exception_preview_months: u32,
    /// Distinct users needed in each of the last 3 weeks (>=). Default 500.
    #[serde(deserialize_with = "whole")]
    pub weekly_active_users: u64,
    /// Distinct connections needed in the last 30 days (>=). Default 50.
    #[serde(deserialize_with = "whole")]
    pub monthly_active_connections: u64,
    /// `ga` or `isv`. Default `ga`.
    #[serde(deserialize_with = "choice")]
    pub success_rate_formula: SuccessRateFormula,
    /// Origin of a 5xx / no-response failure without `fault`. Default `connector`.
    #[serde(deserialize_with = "choice")]
    pub unattributed_failure_origin: Fault,
    /// Days of state kept; older events are rejected `too_old`. Default 35.
    #[serde(deserialize_with = "whole")]
    pub retention_days: u32,
    /// How far ahead of the wall clock an event may be. Default 300.
    #[serde(deserialize_with = "whole")]
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
    #[serde(deserialize_with = "flag")]
    backend_in_production: bool,
    #[serde(deserialize_with = "flag")]
    support_model_attested: bool,
    #[serde(deserialize_with = "date")]
    preview_since: Option<NaiveDate>,
}

pub(super) fn connectors<'de, D: serde::Deserializer<'de>>(
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
    #[serde(deserialize_with = "whole")]
    pub workers: usize,
    /// SPEC §12: producers key every record by its connector id, so a
    /// connector's events are in one partition and the members aggregate
    /// the input partitions directly. Default false.
    #[serde(deserialize_with = "flag")]
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
    #[serde(deserialize_with = "whole")]
    pub max_connections: usize,
    /// Seconds a connection may take to send a complete request head, from
    /// its opening or from the end of its previous response (so it is also
    /// the keep-alive idle limit). Default 10.
    #[serde(deserialize_with = "whole")]
    pub header_read_timeout_seconds: u64,
    /// Seconds without a byte read or written, in any state (e.g. a client
    /// that stops reading its response), before a connection is closed.
    /// Default 60.
    #[serde(deserialize_with = "whole")]
    pub idle_timeout_seconds: u64,
    /// Most requests rendered on demand at once (`/` and anything not
    /// served from the background rendering); more get 503. Default 2.
    #[serde(deserialize_with = "whole")]
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
    /// Directory of the task checkpoints when `url` is unset. Default `./state`.
    pub dir: PathBuf,
    /// The state store as an object store (or `file://` directory) URL:
    /// `az://container/prefix`, `s3://bucket/prefix`, `gs://bucket/prefix`.
    /// When set, `dir` is not the state store. Default: none.
    pub url: Option<String>,
    /// Seconds between task checkpoints. Default 10.
    #[serde(deserialize_with = "whole")]
    pub checkpoint_interval_seconds: u64,
    /// Most (connector, cloud) scopes kept; events of further scopes are
    /// rejected `series_limit`. Default 10000.
    #[serde(deserialize_with = "whole")]
    pub max_series: usize,
    /// Most connections tracked per scope for the SLO. Default 100000.
    #[serde(deserialize_with = "whole")]
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

/// A whole number, refusing a fractional one (the `config` crate would
/// round `1.5` to 2 without a word) and a negative one. A quoted number
/// (every environment variable is a string) is read as the number.
fn whole<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::{Error, Visitor};
    struct Whole;
    impl Visitor<'_> for Whole {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a whole number")
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v)
                .map_err(|_| E::custom(format!("{v} is negative: a whole number is expected")))
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<u64, E> {
            // 2^64 as an f64: every whole f64 below it fits a u64.
            if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                Ok(v as u64)
            } else {
                Err(E::custom(format!("{v} is not a whole number")))
            }
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<u64, E> {
            match v.trim().parse::<u64>() {
                Ok(n) => Ok(n),
                Err(_) => match v.trim().parse::<f64>() {
                    Ok(f) => self.visit_f64(f),
                    Err(_) => Err(E::custom(format!("{v:?} is not a whole number"))),
                },
            }
        }
    }
    let v = d.deserialize_any(Whole)?;
    T::try_from(v).map_err(|_| D::Error::custom(format!("{v} is too large")))
}

/// `true` or `false` (also quoted, as an environment variable is), nothing
/// else: the `config` crate would read `2`, `"yes"` or `"on"` as true,
/// and an attested fact must not be set by a typo.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    use serde::de::{Error, Unexpected, Visitor};
    struct Flag;
    impl Visitor<'_> for Flag {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E: Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<bool, E> {
            match v.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
            }
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<bool, E> {
            Err(E::invalid_type(Unexpected::Signed(v), &self))
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<bool, E> {
            Err(E::invalid_type(Unexpected::Unsigned(v), &self))
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<bool, E> {
            Err(E::invalid_type(Unexpected::Float(v), &self))
        }
    }
    d.deserialize_any(Flag)
}

/// A number (also quoted, as an environment variable is), never a boolean:
/// the `config` crate would read `true` as 1.0.
fn number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    use serde::de::{Error, Unexpected, Visitor};
    struct Number;
    impl Visitor<'_> for Number {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number")
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<f64, E> {
            v.trim()
                .parse()
                .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
        }
        fn visit_bool<E: Error>(self, v: bool) -> Result<f64, E> {
            Err(E::invalid_type(Unexpected::Bool(v), &self))
        }
    }
    d.deserialize_any(Number)
}
