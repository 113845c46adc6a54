//! The alerts: multiwindow burn-rate alerts per objective, the GA-status
//! and low-success-rate alerts, and the exporter-health alerts.

use bigdecimal::Zero;

use super::numbers::{percent, plain, Numbers, Objective};
use super::{checkpoint_stale_seconds, Rule, BURN_ALERTS};
use crate::config::Config;

pub(super) fn burn_alerts(o: &Objective) -> Vec<Rule> {
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

pub(super) fn status_alert() -> Rule {
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

pub(super) fn success_rate_low_alert(n: &Numbers) -> Rule {
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

pub(super) fn health_alerts(cfg: &Config) -> Vec<Rule> {
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
        // A member owns no task while its group is rebalancing, and a spare
        // member (more members than partitions) never does: only the whole
        // job owning none for 10 minutes means nothing is measured. Gone
        // after a lost assignment that never came back, for instance.
        Rule::alert(
            "ConnectorGANoTasksOwned",
            "sum without (instance, pod) (connector_ga_tasks_owned{job=\"connector-ga-exporter\"}) == 0".into(),
            "10m",
            &[("severity", "critical")],
        )
        .annotate(
            "No connector-ga-exporter member owns a partition".into(),
            "connector_ga_tasks_owned summed over the members of job {{ $labels.job }} has been 0 for 10 minutes: no partition is aggregated, so no measure moves and /readyz is 503 on every member. Runbook: deploy/README.md#connectorganotasksowned - check the daemon logs (lost assignment, group errors), that the input topic exists, and the brokers.".into(),
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
