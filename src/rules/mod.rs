//! The Prometheus rule file of SPEC §11 ("Alert rules from the config"):
//! recording rules, multiwindow multi-burn-rate alerts for the availability
//! and success-rate objectives, the GA-status alert and the exporter-health
//! alerts, built from the thresholds in force. Pure: a `Config` in, the YAML
//! text out; `connector-ga-exporter rules` only prints it.
//!
//! The rules are built as data and serialized with `serde_norway`, so quoting
//! and escaping are the serializer's business; only the leading comment block
//! (the derivation of every number) is written as text. Thresholds come in as
//! `f64` and are turned into exact decimals through their shortest round-trip
//! form (`0.9995` is "0.9995"), so `1 - 0.9995` prints as `0.0005`, never as
//! `0.0004999999999999449`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Config;

mod alerts;
mod header;
mod numbers;
mod recording;

use alerts::{burn_alerts, health_alerts, status_alert, success_rate_low_alert};
use header::header;
use numbers::{numbers, Numbers};
use recording::{budget_group, rates_group, window_group};

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("config key `{key}`: {value} is not a finite decimal")]
    NotADecimal { key: &'static str, value: f64 },
    #[error("serializing the rule file: {0}")]
    Yaml(#[from] serde_norway::Error),
}

/// A Prometheus rule file (`groups:`), as promtool reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    pub rules: Vec<Rule>,
}

/// One recording rule (`record`) or alerting rule (`alert`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    pub expr: String,
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Rule {
    fn record(name: &str, expr: String) -> Rule {
        Rule {
            record: Some(name.to_string()),
            alert: None,
            expr,
            for_: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    fn alert(name: &str, expr: String, for_: &str, labels: &[(&str, &str)]) -> Rule {
        Rule {
            record: None,
            alert: Some(name.to_string()),
            expr,
            for_: Some(for_.to_string()).filter(|f| !f.is_empty()),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
        }
    }

    fn annotate(mut self, summary: String, description: String) -> Rule {
        self.annotations.insert("summary".into(), summary);
        self.annotations.insert("description".into(), description);
        self
    }
}

/// The windows over which error ratios are recorded: the long and short
/// windows of the three burn-rate alerts, shortest first.
pub const WINDOWS: [&str; 5] = ["5m", "30m", "1h", "6h", "3d"];

/// One multiwindow burn-rate alert: fires when the burn rate exceeds `factor`
/// over both `long` and `short` (SRE workbook, "Alerting on SLOs", ch. 5).
pub struct BurnAlert {
    pub suffix: &'static str,
    pub long: &'static str,
    pub short: &'static str,
    /// Hours of the long window (for the share of the budget it spends).
    pub long_hours: u32,
    pub factor: &'static str,
    pub for_: &'static str,
    pub severity: &'static str,
}

/// SPEC §11: 14.4x over 1h and 5m and 6x over 6h and 30m page; 1x over 3d
/// and 6h opens a ticket.
pub const BURN_ALERTS: [BurnAlert; 3] = [
    BurnAlert {
        suffix: "Fast",
        long: "1h",
        short: "5m",
        long_hours: 1,
        factor: "14.4",
        for_: "2m",
        severity: "critical",
    },
    BurnAlert {
        suffix: "Medium",
        long: "6h",
        short: "30m",
        long_hours: 6,
        factor: "6",
        for_: "5m",
        severity: "critical",
    },
    BurnAlert {
        suffix: "Slow",
        long: "3d",
        short: "6h",
        long_hours: 72,
        factor: "1",
        for_: "1h",
        severity: "warning",
    },
];

/// How old the last checkpoint may get before an alert, in seconds: 15
/// minutes, or three checkpoint intervals when those are longer (a slow
/// interval is not a failure).
pub fn checkpoint_stale_seconds(cfg: &Config) -> u64 {
    cfg.state
        .checkpoint_interval_seconds
        .saturating_mul(3)
        .max(900)
}

/// The rule file for `cfg`, as YAML text with its derivation in comments.
pub fn render(cfg: &Config) -> Result<String, RulesError> {
    let n = numbers(cfg)?;
    let file = build_with(cfg, &n);
    let mut out = header(cfg, &n);
    out.push_str(&serde_norway::to_string(&file)?);
    Ok(out)
}

/// The rule file for `cfg`, as data.
pub fn build(cfg: &Config) -> Result<RuleFile, RulesError> {
    Ok(build_with(cfg, &numbers(cfg)?))
}

fn build_with(cfg: &Config, n: &Numbers) -> RuleFile {
    let mut groups = vec![rates_group()];
    for w in WINDOWS {
        groups.push(window_group(w, n));
    }
    groups.push(budget_group(n));
    groups.push(Group {
        name: "connector-ga-exporter.burn-rate-alerts".into(),
        interval: Some("1m".into()),
        rules: n.objectives.iter().flat_map(burn_alerts).collect(),
    });
    groups.push(Group {
        name: "connector-ga-exporter.status-alerts".into(),
        interval: Some("1m".into()),
        rules: vec![status_alert(), success_rate_low_alert(n)],
    });
    groups.push(Group {
        name: "connector-ga-exporter.health-alerts".into(),
        interval: Some("1m".into()),
        rules: health_alerts(cfg),
    });
    RuleFile { groups }
}

#[cfg(test)]
mod tests;
