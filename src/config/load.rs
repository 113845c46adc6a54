//! Loading: the TOML file, then `CONNECTOR_GA__*` environment variables,
//! then command-line flags, merged by the `config` crate and deserialized
//! with the path of any bad key; every error made one line.

use std::path::{Path, PathBuf};

use super::validate::check_log_filter;
use super::{key_err, Config, ConfigError};

/// The environment variable prefix: `CONNECTOR_GA__CRITERIA__WINDOW_DAYS=7`.
pub const ENV_PREFIX: &str = "CONNECTOR_GA";

/// The prefix of a `[kafka.properties]` entry set from the environment:
/// `CONNECTOR_GA__KAFKA__PROPERTIES__SASL_PASSWORD` sets `sasl.password`.
pub const ENV_PROPERTY_PREFIX: &str = "CONNECTOR_GA__KAFKA__PROPERTIES__";

/// The librdkafka property an environment variable after
/// [`ENV_PROPERTY_PREFIX`] names: lower case, each `_` a `.`
/// (`SASL_PASSWORD` → `sasl.password`; a `.` written as such also works,
/// where the shell allows it).
///
/// Why not through the `config` crate like every other key: it splits a
/// key at each `.`, so `sasl.password` would become a table `sasl` with a
/// key `password`; and a shell or systemd variable name cannot hold a `.`
/// at all. librdkafka's property names are dotted words, and the few with
/// an `_` (`ssl_key`, …) are pointers set through its C API, not strings,
/// so `_` → `.` loses nothing.
pub fn property_of_env(rest: &str) -> String {
    rest.to_ascii_lowercase().replace('_', ".")
}
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
            .filter(|&(k, _)| {
                k.starts_with(&format!("{ENV_PREFIX}__")) && !k.starts_with(ENV_PROPERTY_PREFIX)
            })
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
        // After the file, before nothing else: no flag sets a property.
        for (k, v) in &env {
            if let Some(rest) = k.strip_prefix(ENV_PROPERTY_PREFIX) {
                if rest.is_empty() || rest.starts_with('_') || rest.ends_with('_') {
                    return Err(ConfigError::Env {
                        var: k.clone(),
                        msg: format!(
                            "names no librdkafka property: write it after `{ENV_PROPERTY_PREFIX}` \
                             with `_` for each `.`, e.g. {ENV_PROPERTY_PREFIX}SASL_PASSWORD"
                        ),
                    });
                }
                cfg.kafka
                    .properties
                    .insert(property_of_env(rest), v.clone());
            }
        }
        cfg.check_properties()?;
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
}
