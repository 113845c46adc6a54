//! The daemon's HTTP endpoints (SPEC §10): `/metrics`, `/api/v1/criteria`,
//! `/healthz`, `/readyz` and `/`, a page for people.
//!
//! Every handler measures the store at the wall clock on a blocking thread,
//! so a slow scrape of many scopes never stalls the async runtime.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::criteria::Status;
use crate::daemon::Shared;
use crate::metrics::Format;
use crate::report::Report;
use crate::timeutil;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/criteria", get(criteria))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(page))
        .with_state(shared)
}

async fn build_report(shared: &Arc<Shared>) -> Result<Report, Response> {
    let s = Arc::clone(shared);
    tokio::task::spawn_blocking(move || s.report_now())
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let fmt = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = match shared.cached_metrics(fmt) {
        Some(b) => Ok(b),
        None => {
            // Before the first background render: render now.
            let s = Arc::clone(&shared);
            tokio::task::spawn_blocking(move || s.render_metrics().text(fmt)).await
        }
    };
    match body {
        Ok(b) => ([(header::CONTENT_TYPE, fmt.content_type())], b.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The query of `/api/v1/criteria`: `?daily=true` adds the `daily` series.
#[derive(Debug, Default, serde::Deserialize)]
struct CriteriaQuery {
    #[serde(default)]
    daily: bool,
}

async fn criteria(State(shared): State<Arc<Shared>>, Query(q): Query<CriteriaQuery>) -> Response {
    let report = if q.daily {
        let s = Arc::clone(&shared);
        tokio::task::spawn_blocking(move || s.report_now_daily())
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
    } else {
        build_report(&shared).await
    };
    match report {
        Ok(r) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&r.to_json()).unwrap_or_default(),
        )
            .into_response(),
        Err(e) => e,
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: restoring state or waiting for partitions\n",
        )
            .into_response()
    }
}

async fn page(State(shared): State<Arc<Shared>>) -> Response {
    match build_report(&shared).await {
        Ok(r) => Html(render_page(&r, &shared)).into_response(),
        Err(e) => e,
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn ratio_cell(v: Option<f64>, pass: Option<bool>, threshold: &str) -> String {
    let class = match pass {
        Some(true) => "pass",
        Some(false) => "fail",
        None => "undecided",
    };
    let value = v.map_or("–".to_string(), |v| format!("{:.4}", v));
    format!("<td class=\"{class}\">{value}<small> {threshold}</small></td>")
}

fn bool_cell(pass: Option<bool>) -> String {
    match pass {
        Some(true) => "<td class=\"pass\">yes</td>".into(),
        Some(false) => "<td class=\"fail\">no</td>".into(),
        None => "<td class=\"undecided\">undecided</td>".into(),
    }
}

/// One self-contained page: no external assets, refreshes itself.
fn render_page(r: &Report, shared: &Shared) -> String {
    let k = &shared.cfg.criteria;
    let mut rows = String::new();
    for s in &r.scopes {
        let m = &s.measures;
        let w = m.criteria();
        let c = &s.verdict.criteria;
        let st = s.verdict.status;
        let st_class = match st {
            Status::GaEligible => "ga",
            Status::GaEligibleByException => "exc",
            Status::NotEligible => "no",
            Status::InsufficientData => "insuf",
        };
        rows.push_str(&format!(
            "<tr data-connector=\"{conn}\" data-cloud=\"{cloud}\" data-status=\"{status}\">\
             <td>{conn}</td><td>{cloud}</td><td class=\"status {st_class}\">{status}</td><td>{elig}</td>{avail}{slo}{succ}\
             <td class=\"{wau_c}\">{w0} / {w1} / {w2}<small> ≥{wau_t}</small></td>\
             <td class=\"{mac_c}\">{mac}<small> ≥{mac_t}</small></td>{bip}{sup}{exc}</tr>\n",
            conn = esc(&m.connector),
            cloud = m.cloud_label(),
            status = st.as_str(),
            elig = w.counts.eligible(),
            avail = ratio_cell(w.availability, c.availability, &format!("≥{}", k.availability)),
            slo = ratio_cell(w.slo, c.slo, &format!("≥{}", k.slo)),
            succ = ratio_cell(w.success_rate, c.success_rate, &format!("&gt;{}", k.success_rate)),
            wau_c = if c.weekly_active_users { "pass" } else { "rec" },
            w0 = m.weekly_active_users[0],
            w1 = m.weekly_active_users[1],
            w2 = m.weekly_active_users[2],
            wau_t = k.weekly_active_users,
            mac_c = if c.monthly_active_connections { "pass" } else { "rec" },
            mac = m.monthly_active_connections,
            mac_t = k.monthly_active_connections,
            bip = bool_cell(Some(c.backend_in_production)),
            sup = bool_cell(Some(c.support_model)),
            exc = bool_cell(c.exception),
        ));
    }
    let rejected: u64 = r.rejected.total();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>connector-ga-exporter</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: .35em .6em; border-bottom: 1px solid #ddd; text-align: left; white-space: nowrap; }}
th {{ background: #f4f4f4; }}
small {{ color: #777; }}
.pass {{ color: #0a7a2f; }} .fail {{ color: #b3261e; font-weight: 600; }} .undecided {{ color: #8a6d00; }} .rec {{ color: #8a6d00; }}
.status {{ font-weight: 700; }} .ga {{ background: #d9f2e0; }} .exc {{ background: #e3ecfb; }} .no {{ background: #fbe0de; }} .insuf {{ background: #fff4cc; }}
</style></head><body>
<h1>Connector GA criteria</h1>
<p>At {now} over the last {days} days. Required: availability, SLO, success rate, backend in production, support model;
recommended: weekly active users (3 weeks) and monthly active connections. {nscopes} scopes, {rejected} events rejected.
Refreshes every 10 s. <a href="/metrics">metrics</a> · <a href="/api/v1/criteria">JSON</a></p>
<table><thead><tr><th>connector</th><th>cloud</th><th>status</th><th>eligible</th><th>availability</th><th>SLO</th><th>success rate</th>
<th>weekly users (w0/w1/w2)</th><th>MAC</th><th>backend in prod.</th><th>support model</th><th>exception</th></tr></thead>
<tbody>
{rows}</tbody></table></body></html>
"#,
        now = timeutil::format_micros(r.now),
        days = r.criteria_window_days,
        nscopes = r.scopes.len(),
    )
}
