//! The recording rules: request rates, the error ratio of each objective
//! over each burn-rate window, and the remaining error budget.

use bigdecimal::Zero;

use super::numbers::{plain, Numbers};
use super::{Group, Rule};

pub(super) fn rate_sum(metric: &str, w: &str, by: &str) -> String {
    format!("sum by ({by}) (rate({metric}[{w}]))")
}

/// `x`, or 0 for each (connector, cloud) with traffic but no `x` series.
pub(super) fn or_zero(x: &str, w: &str) -> String {
    format!(
        "(\n  {x}\n  or on (connector, cloud)\n  0 * {}\n)",
        rate_sum("connector_requests_total", w, "connector, cloud")
    )
}

/// Indents every line after the first by `n` spaces.
pub(super) fn indent(s: &str, n: usize) -> String {
    s.replace('\n', &format!("\n{}", " ".repeat(n)))
}

pub(super) fn rates_group() -> Group {
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
pub(super) fn error_ratio_expr(bad: &str, valid: &str, w: &str, times: &str, max: &str) -> String {
    format!(
        "clamp(\n    {times}connector_cloud:{bad}:rate{w}\n  / on (connector, cloud)\n    (connector_cloud:{valid}:rate{w} > 0)\n  or\n    label_replace(\n        {times}connector:{bad}:rate{w}\n      / on (connector)\n        (connector:{valid}:rate{w} > 0),\n      \"cloud\", \"all\", \"\", \"\"\n    ),\n  0, {max}\n)"
    )
}

pub(super) fn window_group(w: &str, n: &Numbers) -> Group {
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

pub(super) fn budget_group(n: &Numbers) -> Group {
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
