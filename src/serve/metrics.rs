//! Prometheus exposition (SPEC §7): the per-scope families, written straight
//! from a [`Report`], and the daemon's own metrics from a `prometheus`
//! registry, in the text format or OpenMetrics.
//!
//! Why the per-scope families are written by hand: with `max_series` = 10,000
//! scopes they are ~50 series per scope, half a million samples computed at
//! scrape time. The `prometheus` crate would build a protobuf `MetricFamily`
//! per sample first and has no OpenMetrics encoder; `prometheus-client`
//! speaks only OpenMetrics. A ~100-line writer that streams both formats
//! straight from the report is faster and simpler. The daemon's own
//! counters (events, rejections, lag, process metrics) live in a
//! `prometheus::Registry` and go through the same writer.

use std::fmt::Write as _;

use prometheus::proto::MetricType;

use crate::engine::classify::{Class, Fault};
use crate::engine::criteria::{Status, PERCENTILES};
use crate::report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    /// The format the scraper's `Accept` header prefers (RFC 9110 §12.5.1):
    /// OpenMetrics when a range naming it (version 1.0.0, or no version)
    /// has a higher quality than every range the text format matches
    /// (`text/plain` of version 0.0.4 or none, `text/*`, `*/*`), or the same
    /// quality; the text format otherwise, also when nothing is acceptable.
    /// Media types are case-insensitive; `q=0` means "not acceptable".
    pub fn from_accept(accept: Option<&str>) -> Format {
        let (mut om, mut text) = (0.0f32, 0.0f32);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let (mut q, mut version) = (1.0f32, None);
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.parse().unwrap_or(0.0),
                    "version" => version = Some(v.to_string()),
                    _ => {}
                }
            }
            let offered = |v: &str| version.as_deref().is_none_or(|x| x == v);
            match media.as_str() {
                "application/openmetrics-text" if offered("1.0.0") => om = om.max(q),
                "text/plain" if offered("0.0.4") => text = text.max(q),
                "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// Streams metric families into a string.
pub struct Writer {
    out: String,
    fmt: Format,
}

impl Writer {
    pub fn new(fmt: Format) -> Writer {
        Writer {
            out: String::with_capacity(1 << 16),
            fmt,
        }
    }

    fn family(&mut self, name: &str, help: &str, kind: Kind) {
        // OpenMetrics names a counter family without its `_total` suffix.
        let fam = match (self.fmt, kind) {
            (Format::OpenMetrics, Kind::Counter) => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let k = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {fam} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {fam} {k}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label_into(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        write_value(&mut self.out, value);
        self.out.push('\n');
    }

    pub fn finish(mut self) -> String {
        if self.fmt == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }

    /// Writes the families of a `prometheus` registry (counters and gauges).
    pub fn registry(&mut self, families: &[prometheus::proto::MetricFamily]) {
        for f in families {
            let kind = match f.get_field_type() {
                MetricType::COUNTER => Kind::Counter,
                MetricType::GAUGE => Kind::Gauge,
                _ => continue,
            };
            self.family(f.name(), f.help(), kind);
            for m in f.get_metric() {
                let labels: Vec<(&str, &str)> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                let v = match kind {
                    Kind::Counter => m.counter.value(),
                    Kind::Gauge => m.gauge.value(),
                };
                self.sample(f.name(), &labels, v);
            }
        }
    }

    /// Writes the counters that belong to tasks (SPEC §12: counted where
    /// decided, restored with the task): events read per topic and
    /// rejections per reason, summed over the tasks this member owns. A
    /// task that moves away takes its counts along; `sum` over members is
    /// the stream's.
    pub fn task_counters(
        &mut self,
        topics: &[String],
        events: &std::collections::BTreeMap<String, u64>,
        rejected: &crate::engine::event::RejectCounts,
    ) {
        use crate::engine::event::Reject;
        self.family(
            "connector_ga_events_total",
            "Events read from Kafka by the tasks this member owns, accepted or rejected (an unparsable line counts once).",
            Kind::Counter,
        );
        let mut names: Vec<&str> = topics.iter().map(String::as_str).collect();
        names.extend(events.keys().map(String::as_str));
        names.sort_unstable();
        names.dedup();
        for t in names {
            let n = events.get(t).copied().unwrap_or(0);
            self.sample("connector_ga_events_total", &[("topic", t)], n as f64);
        }
        self.family(
            "connector_ga_events_rejected_total",
            "Rejected events by reason, in the tasks this member owns.",
            Kind::Counter,
        );
        for r in Reject::ALL {
            self.sample(
                "connector_ga_events_rejected_total",
                &[("reason", r.as_str())],
                rejected.get(r) as f64,
            );
        }
    }

    /// Writes every per-scope family of SPEC §7 from a report.
    pub fn report(&mut self, r: &Report) {
        let real = || r.scopes.iter().filter(|s| s.total.is_some());

        self.family(
            "connector_requests_total",
            "Connector requests by status class (every valid event, throttled included).",
            Kind::Counter,
        );
        for s in real() {
            let t = s.total.as_ref().expect("filtered");
            let (c, cl) = (s.measures.connector.as_str(), s.measures.cloud_label());
            for class in Class::ALL {
                self.sample(
                    "connector_requests_total",
                    &[("connector", c), ("cloud", cl), ("class", class.as_str())],
                    t.class[class.index()] as f64,
                );
            }
        }
        self.family(
            "connector_throttled_total",
            "Throttled (429) connector requests; excluded from every ratio.",
            Kind::Counter,
        );
        for s in real() {
            let t = s.total.as_ref().expect("filtered");
            let (c, cl) = (s.measures.connector.as_str(), s.measures.cloud_label());
            self.sample(
                "connector_throttled_total",
                &[("connector", c), ("cloud", cl)],
                t.throttled as f64,
            );
        }
        self.family(
            "connector_failures_total",
            "Failed connector requests by who caused them.",
            Kind::Counter,
        );
        for s in real() {
            let t = s.total.as_ref().expect("filtered");
            let (c, cl) = (s.measures.connector.as_str(), s.measures.cloud_label());
            for f in Fault::ALL {
                let v = match f {
                    Fault::Connector => t.connector_failures,
                    Fault::Backend => t.backend_failures,
                    Fault::Client => t.client_failures,
                };
                self.sample(
                    "connector_failures_total",
                    &[("connector", c), ("cloud", cl), ("origin", f.as_str())],
                    v as f64,
                );
            }
        }

        type Pick = fn(&crate::engine::criteria::WindowMeasures) -> Option<f64>;
        let ratios: [(&str, &str, Pick); 3] = [
            (
                "connector_availability_ratio",
                "1 - connector failures / (eligible - backend failures) over the window.",
                |w| w.availability,
            ),
            (
                "connector_success_ratio",
                "Success rate over the window (throttled requests excluded).",
                |w| w.success_rate,
            ),
            (
                "connector_slo_ratio",
                "Share of active connections whose own availability meets the SLA bar.",
                |w| w.slo,
            ),
        ];
        for (name, help, pick) in ratios {
            self.family(name, help, Kind::Gauge);
            for s in &r.scopes {
                let (c, cl) = (s.measures.connector.as_str(), s.measures.cloud_label());
                for w in &s.measures.windows {
                    if let Some(v) = pick(w) {
                        let label = w.window.label();
                        self.sample(
                            name,
                            &[("connector", c), ("cloud", cl), ("window", &label)],
                            v,
                        );
                    }
                }
            }
        }
        self.family(
            "connector_latency_seconds",
            "Latency percentiles (nearest rank) over the window.",
            Kind::Gauge,
        );
        for s in &r.scopes {
            let (c, cl) = (s.measures.connector.as_str(), s.measures.cloud_label());
            for w in &s.measures.windows {
                let label = w.window.label();
                for (p, v) in PERCENTILES.iter().zip(w.latency_ms) {
                    if let Some(ms) = v {
                        let pct = p.to_string();
                        self.sample(
                            "connector_latency_seconds",
                            &[
                                ("connector", c),
                                ("cloud", cl),
                                ("window", &label),
                                ("percentile", &pct),
                            ],
                            seconds_of_ms(ms),
                        );
                    }
                }
            }
        }
        self.family(
            "connector_weekly_active_users",
            "Distinct users in week k (k = 0 is the last 7 UTC days).",
            Kind::Gauge,
        );
        for s in &r.scopes {
            let (c, cl) = (s.measures.connector.as_str(), s.measures.cloud_label());
            for (k, v) in s.measures.weekly_active_users.iter().enumerate() {
                let wk = k.to_string();
                self.sample(
                    "connector_weekly_active_users",
                    &[("connector", c), ("cloud", cl), ("week", &wk)],
                    *v as f64,
                );
            }
        }
        self.family(
            "connector_monthly_active_connections",
            "Distinct connections in the last 30 UTC days.",
            Kind::Gauge,
        );
        for s in &r.scopes {
            let (c, cl) = (s.measures.connector.as_str(), s.measures.cloud_label());
            self.sample(
                "connector_monthly_active_connections",
                &[("connector", c), ("cloud", cl)],
                s.measures.monthly_active_connections as f64,
            );
        }
        self.family(
            "connector_ga_criterion_met",
            "1 when the GA criterion passes, 0 when it fails; absent while undecided.",
            Kind::Gauge,
        );
        for s in &r.scopes {
            let (c, cl) = (s.measures.connector.as_str(), s.measures.cloud_label());
            for (name, v) in s.verdict.criteria.named() {
                if let Some(b) = v {
                    self.sample(
                        "connector_ga_criterion_met",
                        &[("connector", c), ("cloud", cl), ("criterion", name)],
                        b as u8 as f64,
                    );
                }
            }
        }
        self.budget_families(r);
        self.family(
            "connector_ga_status",
            "1 on the scope's current GA status, 0 on the others.",
            Kind::Gauge,
        );
        for s in &r.scopes {
            let (c, cl) = (s.measures.connector.as_str(), s.measures.cloud_label());
            for st in Status::ALL {
                self.sample(
                    "connector_ga_status",
                    &[("connector", c), ("cloud", cl), ("status", st.as_str())],
                    (st == s.verdict.status) as u8 as f64,
                );
            }
        }
    }
}

impl Writer {
    /// The gauges of SPEC §11, each absent while its value is null.
    fn budget_families(&mut self, r: &Report) {
        self.family(
            "connector_ga_budget_remaining",
            "Failures (availability, success_rate) or connections (slo) that can still go wrong with the criterion met; 0 while failing, absent while undecided.",
            Kind::Gauge,
        );
        for s in &r.scopes {
            let (c, cl) = (s.measures.connector.as_str(), s.measures.cloud_label());
            for (name, a) in s.budget.named() {
                if let Some(v) = a.left {
                    self.sample(
                        "connector_ga_budget_remaining",
                        &[("connector", c), ("cloud", cl), ("criterion", name)],
                        v as f64,
                    );
                }
            }
        }
        self.family(
            "connector_ga_recovers_timestamp_seconds",
            "UTC midnight of the first day a failing criterion is met again if no further event arrives; absent when none.",
            Kind::Gauge,
        );
        for s in &r.scopes {
            let (c, cl) = (s.measures.connector.as_str(), s.measures.cloud_label());
            for (name, a) in s.budget.named() {
                if let Some(d) = a.recovers_on {
                    self.sample(
                        "connector_ga_recovers_timestamp_seconds",
                        &[("connector", c), ("cloud", cl), ("criterion", name)],
                        midnight(d),
                    );
                }
            }
        }
        self.family(
            "connector_ga_exception_opens_timestamp_seconds",
            "UTC midnight of preview_since plus exception_preview_months; absent without preview_since.",
            Kind::Gauge,
        );
        for s in &r.scopes {
            let (c, cl) = (s.measures.connector.as_str(), s.measures.cloud_label());
            if let Some(d) = s.exception_opens_on {
                self.sample(
                    "connector_ga_exception_opens_timestamp_seconds",
                    &[("connector", c), ("cloud", cl)],
                    midnight(d),
                );
            }
        }
    }
}

fn midnight(d: chrono::NaiveDate) -> f64 {
    d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp() as f64
}

fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

fn escape_label_into(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Milliseconds as seconds, spelled as the milliseconds were: the decimal
/// point moved three places. `180.223 / 1000.0` is
/// `0.18022300000000002` in binary floating point, because 180.223 itself
/// is not exact; the nearest double to `180.223e-3` prints `0.180223`.
///
/// A whole number of microseconds (every HDR value, most event values) is
/// found without formatting: each render writes this for every percentile
/// of every window of every scope.
fn seconds_of_ms(ms: f64) -> f64 {
    let us = (ms * 1000.0).round();
    if us / 1000.0 == ms {
        // Both exact or correctly rounded: the double nearest us × 10^-6.
        return us / 1e6;
    }
    format!("{ms}e-3").parse().unwrap_or(ms / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accept headers (an outside audit found q-values and case ignored).
    #[test]
    fn the_accept_header_is_negotiated_by_quality() {
        use Format::{OpenMetrics as Om, Text};
        let cases: &[(Option<&str>, Format)] = &[
            (None, Text),
            (Some(""), Text),
            (Some("*/*"), Text),
            // Prometheus 2.x's default.
            (Some("application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.1"), Om),
            (Some("application/openmetrics-text"), Om),
            (Some("APPLICATION/OpenMetrics-Text; Version=1.0.0"), Om),
            // Not acceptable, or less wanted than the text format.
            (Some("application/openmetrics-text;q=0"), Text),
            (Some("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5"), Text),
            (Some("text/plain;q=0, application/openmetrics-text;q=0"), Text),
            // A version not offered.
            (Some("application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5"), Text),
            // Equal quality: the one asked for by name.
            (Some("text/plain, application/openmetrics-text"), Om),
            (Some("application/openmetrics-text;q=0.2, */*;q=0.1"), Om),
            (Some("application/openmetrics-text;q=abc"), Text),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::from_accept(*accept), *want, "{accept:?}");
        }
    }

    #[test]
    fn values_and_labels() {
        let mut w = Writer::new(Format::Text);
        w.family("x_total", "h", Kind::Counter);
        w.sample("x_total", &[("a", "q\"\\\n")], 3.0);
        w.sample("x_total", &[], 0.25);
        let s = w.finish();
        assert_eq!(
            s,
            "# HELP x_total h\n# TYPE x_total counter\nx_total{a=\"q\\\"\\\\\\n\"} 3\nx_total 0.25\n"
        );
        let mut w = Writer::new(Format::OpenMetrics);
        w.family("x_total", "h", Kind::Counter);
        let s = w.finish();
        assert!(s.starts_with("# HELP x h\n# TYPE x counter\n") && s.ends_with("# EOF\n"));
    }

    /// Regression: latencies printed with binary noise
    /// (`0.18022300000000002` for 180.223 ms).
    #[test]
    fn latency_seconds_print_as_the_milliseconds_were_written() {
        for (ms, want) in [
            (180.223, "0.180223"),
            (1.0, "0.001"),
            (0.5, "0.0005"),
            (0.001, "0.000001"),
            (120000.0, "120"),
            (0.3, "0.0003"),
            // Below a microsecond: the formatting path.
            (0.1234567, "0.0001234567"),
            (2.0000001, "0.0020000001"),
        ] {
            assert_eq!(seconds_of_ms(ms).to_string(), want, "{ms}");
        }
    }
}
