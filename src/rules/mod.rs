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
use std::fmt::Write as _;
use std::str::FromStr;

use bigdecimal::{BigDecimal, RoundingMode, Zero};
use serde::{Deserialize, Serialize};

use crate::config::{Config, SuccessRateFormula};

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

/// The exact decimal of a threshold: the shortest decimal that round-trips
/// to the same `f64` (Rust's `Display` never uses an exponent).
fn exact(key: &'static str, value: f64) -> Result<BigDecimal, RulesError> {
    if !value.is_finite() {
        return Err(RulesError::NotADecimal { key, value });
    }
    BigDecimal::from_str(&value.to_string()).map_err(|_| RulesError::NotADecimal { key, value })
}

/// A decimal as PromQL and people read it: no exponent, no trailing zeros.
fn plain(d: &BigDecimal) -> String {
    if d.is_zero() {
        return "0".into();
    }
    d.normalized().to_plain_string()
}

/// `d` as a percentage, exactly ("99.95").
fn percent(d: &BigDecimal) -> String {
    plain(&(d * BigDecimal::from(100)))
}

fn dec(s: &str) -> BigDecimal {
    // Only called on the literals of BURN_ALERTS; a test parses each of them.
    BigDecimal::from_str(s).unwrap_or_default()
}

/// One SLO objective, as the rules see it.
struct Objective {
    /// `availability` or `success_rate`: the recording-rule infix and the
    /// `slo` label.
    key: &'static str,
    /// `Availability` or `SuccessRate`: the alert-name infix.
    camel: &'static str,
    /// What a bad event is, for people.
    bad_what: &'static str,
    /// The criterion, for people ("availability >= 0.9995").
    criterion: String,
    /// The error budget, 1 - threshold, exact.
    budget: BigDecimal,
}

/// Everything derived from the config that the rules print.
struct Numbers {
    availability: BigDecimal,
    success_rate: BigDecimal,
    exception_success_rate: BigDecimal,
    isv: bool,
    window_days: u32,
    objectives: [Objective; 2],
}

fn numbers(cfg: &Config) -> Result<Numbers, RulesError> {
    let c = &cfg.criteria;
    let availability = exact("criteria.availability", c.availability)?;
    let success_rate = exact("criteria.success_rate", c.success_rate)?;
    let exception_success_rate =
        exact("criteria.exception_success_rate", c.exception_success_rate)?;
    let isv = c.success_rate_formula == SuccessRateFormula::Isv;
    let one = BigDecimal::from(1);
    let objectives = [
        Objective {
            key: "availability",
            camel: "Availability",
            bad_what: "Connector-caused failures",
            criterion: format!("availability >= {}", plain(&availability)),
            budget: &one - &availability,
        },
        Objective {
            key: "success_rate",
            camel: "SuccessRate",
            bad_what: if isv {
                "Failures (every origin, counted twice by the isv formula)"
            } else {
                "Failures (every origin)"
            },
            criterion: format!("success rate > {}", plain(&success_rate)),
            budget: &one - &success_rate,
        },
    ];
    Ok(Numbers {
        availability,
        success_rate,
        exception_success_rate,
        isv,
        window_days: c.window_days,
        objectives,
    })
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

/// The comment block at the top of the file: where every number comes from.
fn header(cfg: &Config, n: &Numbers) -> String {
    let formula = if n.isv { "isv" } else { "ga" };
    let [avail, success] = &n.objectives;
    let w = n.window_days;
    let mut h = String::new();
    let mut line = |s: &str| {
        if s.is_empty() {
            h.push_str("#\n");
        } else {
            let _ = writeln!(h, "# {s}");
        }
    };
    line("Prometheus rules for connector-ga-exporter (SPEC.md sections 3, 5, 7, 11).");
    line("Generated by `connector-ga-exporter rules [--config FILE]` from the thresholds");
    line("in force: do not edit by hand, change [criteria] and regenerate.");
    line("deploy/check.sh fails when deploy/prometheus/connector-ga-rules.yml differs");
    line("from the output for the default config.");
    line("");
    line("Thresholds in force ([criteria]):");
    line(&format!("  availability = {}", plain(&n.availability)));
    line(&format!(
        "  success_rate = {} (strictly greater), success_rate_formula = \"{formula}\"",
        plain(&n.success_rate)
    ));
    line(&format!("  window_days = {w}"));
    line("");
    line("Counters (per connector and real cloud), over a window, as rates:");
    line("  R  = sum of connector_requests_total (every class)");
    line("  T  = connector_throttled_total (the 429s; part of R)");
    line("  Fc, Fb, Fl = connector_failures_total{origin=\"connector\"|\"backend\"|\"client\"}");
    line("  E  = R - T, the eligible requests (throttled ones take no part in any ratio)");
    line("  F  = Fc + Fb + Fl, every failure (failures are eligible), so success = E - F");
    line("A missing throttled or failure series counts as 0.");
    line("");
    line(&format!("Availability objective: {}.", avail.criterion));
    line("  availability = 1 - Fc / (E - Fb)   (backend failures are on neither side)");
    line("  error ratio  = 1 - availability = Fc / (E - Fb)");
    line(&format!(
        "  error budget = 1 - {} = {}",
        plain(&n.availability),
        plain(&avail.budget)
    ));
    line(&format!("Success-rate objective: {}.", success.criterion));
    if n.isv {
        line("  success rate (isv) = (success - F) / E = (E - 2F) / E");
        line("  error ratio  = 1 - success rate = 2F / E   (can reach 2)");
    } else {
        line("  success rate = success / E = (E - F) / E");
        line("  error ratio  = 1 - success rate = F / E");
    }
    line(&format!(
        "  error budget = 1 - {} = {}   (the criterion is strict: an error ratio",
        plain(&n.success_rate),
        plain(&success.budget)
    ));
    line("  of exactly the budget, a burn rate of exactly 1, already fails it)");
    line("");
    line("Burn rate = error ratio / error budget. At a burn rate of 1 the budget is");
    line(&format!(
        "spent exactly over the {w}-day criteria window. Alerts (multiwindow,"
    ));
    line("multi-burn-rate, SRE workbook ch. 5), for each objective, per real cloud");
    line("(cloud=\"all\" is recorded for dashboards but never alerts, so one incident");
    line("does not page twice):");
    for a in &BURN_ALERTS {
        let share = budget_share(a, w);
        line(&format!(
            "  {:<6} burn rate > {:<4} over {:<2} and over {:<3} ({}): {share} of the budget in {}",
            a.suffix,
            a.factor,
            a.long,
            a.short,
            if a.severity == "critical" {
                "page"
            } else {
                "ticket"
            },
            a.long
        ));
    }
    line("  (share = factor x hours of the long window / hours of the criteria window)");
    for o in [avail, success] {
        // The error ratio is at most 1 (2 for the isv success rate): with a
        // large budget, a factor x budget at or above that is unreachable.
        let max = BigDecimal::from(if o.key == "success_rate" && n.isv {
            2
        } else {
            1
        });
        let dead: Vec<String> = BURN_ALERTS
            .iter()
            .filter(|a| !o.budget.is_zero() && dec(a.factor) * &o.budget >= max)
            .map(|a| {
                format!(
                    "  {}: {}x needs an error ratio above {}",
                    a.suffix,
                    a.factor,
                    plain(&(dec(a.factor) * &o.budget))
                )
            })
            .collect();
        if !dead.is_empty() {
            line(&format!(
                "With a {} budget of {}, the error ratio (at most {}) never reaches:",
                o.key,
                plain(&o.budget),
                plain(&max)
            ));
            for d in &dead {
                line(d);
            }
            line("  (kept, as SPEC section 11 asks, for configs with a tighter threshold)");
        }
    }
    line("The short window makes an alert stop soon after the problem stops. No");
    line("eligible traffic means no ratio: never NaN, never an alert.");
    line("");
    line("Naming: <aggregation level>:<metric>:<operation>. Runbook of every alert:");
    line("deploy/README.md, section \"Alerts\".");
    line(&format!(
        "Exporter health: checkpoint stale after {} s (15 minutes, or three",
        checkpoint_stale_seconds(cfg)
    ));
    line("[state] checkpoint_interval_seconds when longer).");
    line("");
    line("Check:  promtool check rules connector-ga-rules.yml");
    line("Tests:  promtool test rules deploy/prometheus/connector-ga-test.yml");
    h
}

/// The share of the budget a burn alert's long window spends at its factor,
/// as a percentage: exact when it terminates within two decimals, else
/// rounded and marked "about".
fn budget_share(a: &BurnAlert, window_days: u32) -> String {
    let num = dec(a.factor) * BigDecimal::from(a.long_hours) * BigDecimal::from(100);
    let den = BigDecimal::from(u64::from(window_days) * 24);
    let share = num / den;
    let rounded = share.with_scale_round(2, RoundingMode::HalfEven);
    if rounded == share {
        format!("{} %", plain(&share))
    } else {
        format!("about {} %", plain(&rounded))
    }
}

fn rate_sum(metric: &str, w: &str, by: &str) -> String {
    format!("sum by ({by}) (rate({metric}[{w}]))")
}

/// `x`, or 0 for each (connector, cloud) with traffic but no `x` series.
fn or_zero(x: &str, w: &str) -> String {
    format!(
        "(\n  {x}\n  or on (connector, cloud)\n  0 * {}\n)",
        rate_sum("connector_requests_total", w, "connector, cloud")
    )
}

/// Indents every line after the first by `n` spaces.
fn indent(s: &str, n: usize) -> String {
    s.replace('\n', &format!("\n{}", " ".repeat(n)))
}

fn rates_group() -> Group {
    let with_all = |metric: &str, extra: &str| {
        format!(
            "{}\nor\nlabel_replace(\n  {},\n  \"cloud\", \"all\", \"\", \"\"\n)",
            rate_sum(metric, "5m", &format!("connector, cloud{extra}")),
            rate_sum(metric, "5m", &format!("connector{extra}")),
        )
    };
    Group {
        name: "connector-ga-exporter.rates".into(),
        interval: Some("30s".into()),
        rules: vec![
            Rule::record(
                "connector_cloud:connector_requests:rate5m",
                with_all("connector_requests_total", ", class"),
            ),
            Rule::record(
                "connector_cloud:connector_throttled:rate5m",
                with_all("connector_throttled_total", ""),
            ),
            Rule::record(
                "connector_cloud:connector_failures:rate5m",
                with_all("connector_failures_total", ", origin"),
            ),
        ],
    }
}

/// The error ratio of one objective per real cloud, and for cloud="all" from
/// the per-connector sums; no sample where the denominator is 0.
fn error_ratio_expr(bad: &str, valid: &str, w: &str, times: &str, max: &str) -> String {
    format!(
        "clamp(\n    {times}connector_cloud:{bad}:rate{w}\n  / on (connector, cloud)\n    (connector_cloud:{valid}:rate{w} > 0)\n  or\n    label_replace(\n        {times}connector:{bad}:rate{w}\n      / on (connector)\n        (connector:{valid}:rate{w} > 0),\n      \"cloud\", \"all\", \"\", \"\"\n    ),\n  0, {max}\n)"
    )
}

fn window_group(w: &str, n: &Numbers) -> Group {
    let requests = rate_sum("connector_requests_total", w, "connector, cloud");
    let throttled = or_zero(
        &rate_sum("connector_throttled_total", w, "connector, cloud"),
        w,
    );
    let backend = or_zero(
        &rate_sum(
            "connector_failures_total{origin=\"backend\"}",
            w,
            "connector, cloud",
        ),
        w,
    );
    let mut rules = vec![
        // E = R - T, never negative (a counter reset can make it so briefly).
        Rule::record(
            &format!("connector_cloud:eligible_requests:rate{w}"),
            format!(
                "clamp_min(\n    {requests}\n  - on (connector, cloud)\n    {},\n  0\n)",
                indent(&throttled, 4)
            ),
        ),
        // Fc, 0 where the connector has traffic but no such failure (yet).
        Rule::record(
            &format!("connector_cloud:availability_bad_requests:rate{w}"),
            or_zero(
                &rate_sum(
                    "connector_failures_total{origin=\"connector\"}",
                    w,
                    "connector, cloud",
                ),
                w,
            ),
        ),
        // E - Fb: what counts for availability.
        Rule::record(
            &format!("connector_cloud:availability_valid_requests:rate{w}"),
            format!(
                "clamp_min(\n    connector_cloud:eligible_requests:rate{w}\n  - on (connector, cloud)\n    {},\n  0\n)",
                indent(&backend, 4)
            ),
        ),
        // F, every origin.
        Rule::record(
            &format!("connector_cloud:success_rate_bad_requests:rate{w}"),
            or_zero(&rate_sum("connector_failures_total", w, "connector, cloud"), w),
        ),
    ];
    for name in [
        "eligible_requests",
        "availability_bad_requests",
        "availability_valid_requests",
        "success_rate_bad_requests",
    ] {
        rules.push(Rule::record(
            &format!("connector:{name}:rate{w}"),
            format!("sum by (connector) (connector_cloud:{name}:rate{w})"),
        ));
    }
    rules.push(Rule::record(
        &format!("connector_cloud:availability_error_ratio:rate{w}"),
        error_ratio_expr(
            "availability_bad_requests",
            "availability_valid_requests",
            w,
            "",
            "1",
        ),
    ));
    let (times, max) = if n.isv { ("2 * ", "2") } else { ("", "1") };
    rules.push(Rule::record(
        &format!("connector_cloud:success_rate_error_ratio:rate{w}"),
        error_ratio_expr(
            "success_rate_bad_requests",
            "eligible_requests",
            w,
            times,
            max,
        ),
    ));
    for o in &n.objectives {
        if !o.budget.is_zero() {
            rules.push(Rule::record(
                &format!("connector_cloud:{}_burn_rate:rate{w}", o.key),
                format!(
                    "connector_cloud:{}_error_ratio:rate{w} / {}",
                    o.key,
                    plain(&o.budget)
                ),
            ));
        }
    }
    Group {
        name: format!("connector-ga-exporter.sli-{w}"),
        interval: Some(
            if w.ends_with('m') || w == "1h" {
                "30s"
            } else {
                "1m"
            }
            .into(),
        ),
        rules,
    }
}

fn budget_group(n: &Numbers) -> Group {
    let [avail, _] = &n.objectives;
    let w = n.window_days;
    let mut rules = Vec::new();
    if !avail.budget.is_zero() {
        // The share of the availability budget left over the criteria window
        // (1 = untouched, 0 = spent, negative = overspent), from the daemon's
        // own gauge; absent while availability is undefined.
        rules.push(Rule::record(
            &format!("connector_cloud:availability_error_budget_remaining:ratio{w}d"),
            format!(
                "1 - (1 - connector_availability_ratio{{window=\"{w}d\"}}) / {}",
                plain(&avail.budget)
            ),
        ));
    }
    rules.push(Rule::record(
        "reason:connector_ga_events_rejected:ratio_rate15m",
        "sum by (reason) (rate(connector_ga_events_rejected_total[15m]))\n/ on () group_left ()\n(sum(rate(connector_ga_events_total[15m])) > 0)".into(),
    ));
    Group {
        name: "connector-ga-exporter.budget".into(),
        interval: Some("1m".into()),
        rules,
    }
}

fn burn_alerts(o: &Objective) -> Vec<Rule> {
    let budget_pct = percent(&o.budget);
    BURN_ALERTS
        .iter()
        .map(|a| {
            let (series, bound) = if o.budget.is_zero() {
                ("error_ratio", "0".to_string())
            } else {
                ("burn_rate", a.factor.to_string())
            };
            let expr = format!(
                "connector_cloud:{k}_{series}:rate{l}{{cloud!=\"all\"}} > {bound}\nand on (connector, cloud)\nconnector_cloud:{k}_{series}:rate{s}{{cloud!=\"all\"}} > {bound}",
                k = o.key,
                l = a.long,
                s = a.short,
            );
            let name = format!("Connector{}BurnRate{}", o.camel, a.suffix);
            let rule = Rule::alert(
                &name,
                expr,
                a.for_,
                &[("severity", a.severity), ("slo", o.key), ("window", a.long)],
            );
            let who = "{{ $labels.connector }} ({{ $labels.cloud }})";
            let whom = "{{ $labels.connector }} in cloud {{ $labels.cloud }}";
            let runbook = format!(
                "Runbook: deploy/README.md#connector{}burnrate",
                o.camel.to_lowercase()
            );
            let objective = o.key.replace('_', " ");
            if o.budget.is_zero() {
                return rule.annotate(
                    format!("{who} misses its {objective} objective of 1 ({{{{ $value | humanizePercentage }}}} errors)"),
                    format!(
                        "{} of {whom} make {{{{ $value | humanizePercentage }}}} of requests over {} (and still over the last {}); the objective {} allows none. {runbook}",
                        o.bad_what, a.long, a.short, o.criterion
                    ),
                );
            }
            rule.annotate(
                format!(
                    "{who} burns its {objective} budget at {{{{ $value | printf \"%.1f\" }}}}x over {}",
                    a.long
                ),
                format!(
                    "{} of {whom} burn the {objective} error budget ({budget_pct} % of eligible requests: {}) at {{{{ $value | printf \"%.1f\" }}}}x over {} and still over the last {}, above the {}x of this alert. {runbook}",
                    o.bad_what, o.criterion, a.long, a.short, a.factor
                ),
            )
        })
        .collect()
}

fn status_alert() -> Rule {
    // The series of the scope's current status (value 1), for every scope
    // that is not ga_eligible now and was at some point in the last day: the
    // alert carries the new status as its `status` label.
    Rule::alert(
        "ConnectorGAStatusLeftEligible",
        "(\n    connector_ga_status == 1\n  unless on (connector, cloud)\n    connector_ga_status{status=\"ga_eligible\"} == 1\n)\nand on (connector, cloud)\nmax_over_time(connector_ga_status{status=\"ga_eligible\"}[1d]) == 1".into(),
        "15m",
        &[("severity", "warning")],
    )
    .annotate(
        "{{ $labels.connector }} ({{ $labels.cloud }}) left ga_eligible: now {{ $labels.status }}".into(),
        "{{ $labels.connector }} in cloud {{ $labels.cloud }} was ga_eligible within the last 24h and is {{ $labels.status }} now. Runbook: deploy/README.md#connectorgastatuslefteligible - see which connector_ga_criterion_met is 0, or GET /api/v1/criteria.".into(),
    )
}

fn success_rate_low_alert(n: &Numbers) -> Rule {
    let w = n.window_days;
    let t = plain(&n.success_rate);
    Rule::alert(
        "ConnectorSuccessRateLow",
        format!(
            "connector_success_ratio{{window=\"{w}d\"}} <= {t}\nand on (connector, cloud)\nconnector_ga_criterion_met{{criterion=\"success_rate\"}} == 0"
        ),
        "30m",
        &[("severity", "warning")],
    )
    .annotate(
        format!("{{{{ $labels.connector }}}} ({{{{ $labels.cloud }}}}) {w}-day success rate is {{{{ $value | humanizePercentage }}}}"),
        format!(
            "The {w}-day success rate of {{{{ $labels.connector }}}} in cloud {{{{ $labels.cloud }}}} is {{{{ $value | humanizePercentage }}}}; the GA criterion needs more than {} % ({} % on the exception path). Runbook: deploy/README.md#connectorsuccessratelow - look at connector_failures_total by origin: client 4xx count against the success rate too.",
            percent(&n.success_rate),
            percent(&n.exception_success_rate)
        ),
    )
}

fn health_alerts(cfg: &Config) -> Vec<Rule> {
    let stale = checkpoint_stale_seconds(cfg);
    vec![
        Rule::alert(
            "ConnectorGAExporterDown",
            "up{job=\"connector-ga-exporter\"} == 0".into(),
            "5m",
            &[("severity", "critical")],
        )
        .annotate(
            "connector-ga-exporter {{ $labels.instance }} is down".into(),
            "Prometheus cannot scrape {{ $labels.instance }} (job connector-ga-exporter) for 5 minutes: burn-rate alerts and GA status are blind. Runbook: deploy/README.md#connectorgaexporterdown - systemctl status / kubectl describe pod, logs, /healthz.".into(),
        ),
        Rule::alert(
            "ConnectorGAExporterMetricsAbsent",
            "absent(connector_ga_kafka_connected{job=\"connector-ga-exporter\"})".into(),
            "15m",
            &[("severity", "warning")],
        )
        .annotate(
            "No connector-ga-exporter metrics in Prometheus".into(),
            "connector_ga_kafka_connected{job=\"connector-ga-exporter\"} has been absent for 15 minutes. Runbook: deploy/README.md#connectorgaexportermetricsabsent - check the scrape config / ServiceMonitor and the Prometheus targets page.".into(),
        ),
        Rule::alert(
            "ConnectorGAKafkaDisconnected",
            "connector_ga_kafka_connected == 0".into(),
            "5m",
            &[("severity", "warning")],
        )
        .annotate(
            "connector-ga-exporter {{ $labels.instance }} is not connected to Kafka".into(),
            "{{ $labels.instance }} has reported connector_ga_kafka_connected == 0 for 5 minutes: no new events, so every measure is frozen. Runbook: deploy/README.md#connectorgakafkadisconnected - check brokers, credentials ([kafka.properties]), network policy, and the daemon logs.".into(),
        ),
        // Above 10k messages and still growing over 15 minutes.
        Rule::alert(
            "ConnectorGAConsumerLagGrowing",
            "connector_ga_consumer_lag > 10000\nand\nderiv(connector_ga_consumer_lag[15m]) > 0".into(),
            "15m",
            &[("severity", "warning")],
        )
        .annotate(
            "connector-ga-exporter lags {{ $value | humanize }} messages on {{ $labels.topic }}/{{ $labels.partition }}".into(),
            "The consumer lag of {{ $labels.topic }} partition {{ $labels.partition }} is {{ $value | humanize }} messages and has grown for 15 minutes; metrics and the GA verdict trail reality. Runbook: deploy/README.md#connectorgaconsumerlaggrowing - check CPU / memory of the exporter, rejected events, Kafka broker health.".into(),
        ),
        Rule::alert(
            "ConnectorGACheckpointStale",
            format!(
                "time() - connector_ga_last_checkpoint_timestamp_seconds > {stale}\nand\nconnector_ga_last_checkpoint_timestamp_seconds > 0"
            ),
            "10m",
            &[("severity", "warning")],
        )
        .annotate(
            "connector-ga-exporter {{ $labels.instance }} has not checkpointed for {{ $value | humanizeDuration }}".into(),
            "The last state checkpoint of {{ $labels.instance }} is {{ $value | humanizeDuration }} old. Runbook: deploy/README.md#connectorgacheckpointstale - check the state directory or object store (disk full, read-only, permissions, credentials) and the daemon logs.".into(),
        ),
        // One failed write is retried at the next interval; failures that
        // keep coming for 15 minutes mean nothing is being saved.
        Rule::alert(
            "ConnectorGACheckpointFailing",
            "rate(connector_ga_checkpoint_failures_total[5m]) > 0".into(),
            "15m",
            &[("severity", "warning")],
        )
        .annotate(
            "connector-ga-exporter {{ $labels.instance }} fails to write checkpoints".into(),
            "{{ $labels.instance }} has failed to write a state checkpoint at least every 5 minutes for 15 minutes: a restart would replay from an old offset, and state written since is at risk. Runbook: deploy/README.md#connectorgacheckpointfailing - check the state directory or object store and the daemon logs.".into(),
        ),
        // More than 1 % of the events read in the last 15m, and at least 1.5x
        // the reason's rate over the last day (i.e. rising).
        Rule::alert(
            "ConnectorGAEventsRejectedRising",
            "reason:connector_ga_events_rejected:ratio_rate15m > 0.01\nand on (reason)\n  sum by (reason) (rate(connector_ga_events_rejected_total[15m]))\n  > 1.5 * sum by (reason) (rate(connector_ga_events_rejected_total[1d]))".into(),
            "15m",
            &[("severity", "warning")],
        )
        .annotate(
            "{{ $value | humanizePercentage }} of events rejected as {{ $labels.reason }}".into(),
            "{{ $value | humanizePercentage }} of the events read in the last 15m were rejected with reason {{ $labels.reason }}, and that rate is rising. Rejected events are missing from every measure. Runbook: deploy/README.md#connectorgaeventsrejectedrising - inspect the dead-letter topic (reason header) and recent producer changes.".into(),
        ),
        // A message that cannot be decoded at all is never normal traffic:
        // alert at any rate, at once.
        Rule::alert(
            "ConnectorGAUndecodableMessages",
            "sum without (reason) (increase(connector_ga_events_rejected_total{reason=\"undecodable_message\"}[10m])) > 0".into(),
            "",
            &[("severity", "warning")],
        )
        .annotate(
            "connector-ga-exporter {{ $labels.instance }} reads undecodable messages".into(),
            "{{ $labels.instance }} rejected Kafka messages as undecodable_message in the last 10 minutes: a producer writes something that is not an event encoding at all. Runbook: deploy/README.md#connectorgaundecodablemessages - inspect the dead-letter topic and the producers of the topic.".into(),
        ),
    ]
}

#[cfg(test)]
mod tests;
