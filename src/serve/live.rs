//! The live view served over HTTP: [`Serving`], the narrow handle the
//! HTTP handlers get (the config, the tasks' views, the daemon's own
//! metrics, the render permits), and the background rendering of
//! `/metrics` and `/api/v1/criteria` that every scrape shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::Config;
use crate::render::evidence;
use crate::report::Report;
use crate::serve::metrics::{Format, Writer};
use crate::task::TaskSet;
use crate::telemetry::{wall_clock, SelfMetrics};

/// One background rendering, shared by every reader: `/metrics` in both
/// formats and `/api/v1/criteria` as immutable bytes (a response clones a
/// reference, never the body), and the report they came from (for pages
/// rendered on demand).
pub struct Rendered {
    pub text: Bytes,
    pub openmetrics: Bytes,
    pub criteria: Bytes,
    pub report: Arc<Report>,
    /// How long measuring and rendering took.
    pub took: Duration,
}

impl Rendered {
    pub fn text(&self, fmt: Format) -> Bytes {
        match fmt {
            Format::Text => self.text.clone(),
            Format::OpenMetrics => self.openmetrics.clone(),
        }
    }
}

/// What the HTTP side reads. It never reaches a task, only the views the
/// consumer publishes.
pub struct Serving {
    cfg: Arc<Config>,
    tasks: Arc<TaskSet>,
    metrics: Arc<SelfMetrics>,
    stop: Arc<AtomicBool>,
    /// Permits for responses rendered per request (`http.max_concurrent_renders`).
    render_permits: Arc<tokio::sync::Semaphore>,
    /// The latest background rendering; `None` until the first.
    rendered: tokio::sync::watch::Sender<Option<Arc<Rendered>>>,
}

impl Serving {
    pub fn new(
        cfg: Arc<Config>,
        tasks: Arc<TaskSet>,
        metrics: Arc<SelfMetrics>,
        stop: Arc<AtomicBool>,
    ) -> Serving {
        let render_permits = Arc::new(tokio::sync::Semaphore::new(cfg.http.max_concurrent_renders));
        Serving {
            cfg,
            tasks,
            metrics,
            stop,
            render_permits,
            rendered: tokio::sync::watch::channel(None).0,
        }
    }

    pub fn cfg(&self) -> &Config {
        &self.cfg
    }

    pub fn metrics(&self) -> &SelfMetrics {
        &self.metrics
    }

    pub fn render_permits(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.render_permits
    }

    pub fn is_ready(&self) -> bool {
        self.tasks.is_ready()
    }

    /// Measures every scope of the owned tasks and renders `/metrics` in
    /// both formats and the criteria JSON.
    pub fn render_metrics(&self) -> Rendered {
        let started = Instant::now();
        let registry = self.metrics.registry.gather();
        // One load of the views for the report and the task counters, so
        // a rendering's events and rejections are those of its scopes.
        let r = self.tasks.report(&self.cfg, wall_clock(), false);
        let events = self.tasks.events_read();
        let render = |fmt| {
            let mut w = Writer::new(fmt);
            w.report(&r);
            w.task_counters(&self.cfg.kafka.topics, &events, &r.rejected);
            w.registry(&registry);
            Bytes::from(w.finish())
        };
        let mut criteria = serde_json::to_vec(&r.to_json()).unwrap_or_default();
        criteria.push(b'\n');
        Rendered {
            text: render(Format::Text),
            openmetrics: render(Format::OpenMetrics),
            criteria: Bytes::from(criteria),
            report: Arc::new(r),
            took: started.elapsed(),
        }
    }

    /// The latest background rendering, waiting for the first one.
    pub async fn rendered(&self) -> Arc<Rendered> {
        let mut rx = self.rendered.subscribe();
        let r = rx.wait_for(Option::is_some).await;
        match r {
            Ok(g) => Arc::clone(g.as_ref().expect("waited for Some")),
            // The sender lives in `self`: it cannot be dropped while we run.
            Err(_) => unreachable!("rendering channel closed"),
        }
    }

    /// Renders `/metrics` in the background until `stop`: a scrape then
    /// serves the latest rendering at once, whatever the number of scopes.
    /// The pause between renderings is 1 s, or 4× the last rendering's time
    /// when that is longer (rendering 10,000 scopes takes ~0.5 s on 2
    /// cores), so it never takes over 20% of a core.
    pub fn render_loop(&self) {
        while !self.stop.load(Ordering::Acquire) {
            let r = self.render_metrics();
            let pause = (r.took * 4).max(Duration::from_secs(1));
            // Readers still holding the previous rendering keep it alive
            // until their responses are written; it is freed after.
            self.rendered.send_replace(Some(Arc::new(r)));
            let until = Instant::now() + pause;
            while Instant::now() < until && !self.stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The report at the wall clock with every scope's `daily` series
    /// (`/api/v1/criteria?daily=true`, the page).
    pub fn report_now_daily(&self) -> Report {
        self.tasks.report(&self.cfg, wall_clock(), true)
    }

    /// The evidence pack of one connector at the wall clock (SPEC §11),
    /// `None` when the member holds no scope of it.
    pub fn evidence_html(&self, connector: &str) -> Option<String> {
        let now = wall_clock();
        let scopes = self.tasks.connector(&self.cfg, now, connector);
        let r = Report {
            now,
            criteria_window_days: self.cfg.criteria.window_days,
            rejected: self.tasks.rejected(),
            scopes,
            membership: None,
        };
        let k = &self.cfg.kafka;
        let prov = evidence::Provenance {
            input: format!(
                "Kafka topic {} at {}, consumer group {}",
                k.topics.join(", "),
                k.brokers,
                k.group_id
            ),
            config: self.cfg.source.as_ref().map(|p| p.display().to_string()),
            made_at: r.now,
        };
        evidence::html(&r, &self.cfg, &prov, Some(connector)).ok()
    }
}
