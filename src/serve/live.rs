//! The live view served over HTTP: [`Serving`], the narrow handle the
//! HTTP handlers get (the config, the tasks' views, the daemon's own
//! metrics, the render permits), and the background rendering of
//! `/metrics` and `/api/v1/criteria` that every scrape shares.
//!
//! The rendering runs while someone reads: from a read until
//! [`IDLE_AFTER`] without one. A member nobody scrapes spends no CPU on
//! it (measuring 6,000 scopes every ~1.2 s took a seventh of the daemon's
//! CPU in `benches/daemon.rs`). A read never gets a rendering older than
//! the loop's own period: the first read after a quiet spell wakes the
//! loop and waits for a rendering begun after it arrived.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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
    /// When measuring began.
    pub started: Instant,
    /// How long measuring and rendering took.
    pub took: Duration,
}

/// The rendering loop stops this long after the last read (and starts
/// again at the next): longer than any usual scrape interval, so a
/// scraped member always answers from a rendering at hand.
pub const IDLE_AFTER: Duration = Duration::from_secs(120);

/// The longest pause between renderings, however rare the reads.
pub const MAX_PAUSE: Duration = Duration::from_secs(10);

/// When reads came: the last one, and the gap before it.
#[derive(Default)]
struct Reads {
    last: Option<Instant>,
    gap: Option<Duration>,
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
    /// When reads came; the loop waits on `read_came` while idle.
    reads: Mutex<Reads>,
    read_came: Condvar,
    /// Whether the loop has published a rendering since it last woke from
    /// idle: the latest rendering is then at most one pause old.
    looping: AtomicBool,
    /// [`IDLE_AFTER`] (shorter in tests).
    idle_after: Duration,
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
            reads: Mutex::new(Reads::default()),
            read_came: Condvar::new(),
            looping: AtomicBool::new(false),
            idle_after: IDLE_AFTER,
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
        // The events and rejections that go with the measured scopes.
        let (r, events) = self.tasks.report(&self.cfg, wall_clock(), false);
        let render = |fmt| {
            let mut w = Writer::new(fmt);
            w.report(&r);
            w.task_counters(&self.cfg.kafka.topics, &events, &r.rejected);
            w.registry(&registry);
            Bytes::from(w.finish())
        };
        let mut criteria = serde_json::to_vec(&r.doc()).unwrap_or_default();
        criteria.push(b'\n');
        Rendered {
            text: render(Format::Text),
            openmetrics: render(Format::OpenMetrics),
            criteria: Bytes::from(criteria),
            report: Arc::new(r),
            started,
            took: started.elapsed(),
        }
    }

    /// The latest rendering when the loop is running; else wakes it and
    /// waits for a rendering begun after this read arrived. At shutdown
    /// (the loop has ended) the latest one, whatever its age.
    pub async fn rendered(&self) -> Arc<Rendered> {
        let at = Instant::now();
        {
            let mut reads = self.reads.lock().unwrap_or_else(|e| e.into_inner());
            reads.gap = reads.last.map(|l| at.saturating_duration_since(l));
            reads.last = Some(at);
        }
        self.read_came.notify_one();
        let mut rx = self.rendered.subscribe();
        // `looping` is read with each rendering seen, under the channel's
        // lock: the loop sets it with the rendering (see `render_loop`).
        // Read once up front, a read arriving between the first rendering
        // after a quiet spell and the flag waited a whole pause for the
        // next one (the CI failure of this module's test, 2026-11-27).
        let r = rx
            .wait_for(|r| {
                r.as_ref().is_some_and(|r| {
                    self.looping.load(Ordering::Acquire)
                        || r.started >= at
                        || self.stop.load(Ordering::Acquire)
                })
            })
            .await;
        match r {
            Ok(g) => Arc::clone(g.as_ref().expect("waited for Some")),
            // The sender lives in `self`: it cannot be dropped while we run.
            Err(_) => unreachable!("rendering channel closed"),
        }
    }

    /// Renders `/metrics` in the background until `stop`, while reads
    /// come (see the module docs): a scrape then serves the latest
    /// rendering at once, whatever the number of scopes.
    pub fn render_loop(&self) {
        while !self.stop.load(Ordering::Acquire) {
            if !self.wait_for_readers() {
                break;
            }
            let r = self.render_metrics();
            let took = r.took;
            // The rendering and `looping` change together, under the
            // channel's lock: a read sees either the old rendering with
            // the loop not yet running (it waits: a read during the first
            // rendering after a quiet spell must not be served the one
            // from before it) or the new one with the loop running.
            let mut old = None;
            self.rendered.send_modify(|slot| {
                old = slot.replace(Arc::new(r));
                self.looping.store(true, Ordering::Release);
            });
            // Readers still holding the previous rendering keep it alive
            // until their responses are written; it is freed after.
            drop(old);
            // The pause is asked again as it runs: reads coming faster
            // shorten it.
            let done = Instant::now();
            while done.elapsed() < self.pause_after(took) && !self.stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.looping.store(false, Ordering::Release);
        // Readers waiting for a fresh rendering take the latest one now.
        self.rendered.send_modify(|_| {});
    }

    /// The pause after a rendering that took `took`: 1 s, or 4× its time
    /// when that is longer (rendering 10,000 scopes takes ~0.5 s on 2
    /// cores), so the loop never takes over 20% of a core; or half the
    /// gap between the last two reads, up to [`MAX_PAUSE`], when that is
    /// longer: a Prometheus scraping every 15 s gets a rendering at most
    /// ~8 s old, at about half the cost of one every 4× its time. While
    /// the loop runs a read is served at once, whatever the pause.
    fn pause_after(&self, took: Duration) -> Duration {
        let gap = self.reads.lock().unwrap_or_else(|e| e.into_inner()).gap;
        let by_reads = gap.map_or(Duration::ZERO, |g| (g / 2).min(MAX_PAUSE));
        (took * 4).max(Duration::from_secs(1)).max(by_reads)
    }

    /// Returns once a read came within [`IDLE_AFTER`] (true), or at `stop`
    /// (false).
    fn wait_for_readers(&self) -> bool {
        let mut reads = self.reads.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.stop.load(Ordering::Acquire) {
                return false;
            }
            if reads.last.is_some_and(|t| t.elapsed() < self.idle_after) {
                return true;
            }
            // Idle: a read now waits for a rendering begun after it.
            self.looping.store(false, Ordering::Release);
            // Woken by a read; the timeout only checks `stop`.
            reads = self
                .read_came
                .wait_timeout(reads, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The report at the wall clock with every scope's `daily` series
    /// (`/api/v1/criteria?daily=true`, the page).
    pub fn report_now_daily(&self) -> Report {
        self.tasks.report(&self.cfg, wall_clock(), true).0
    }

    /// The evidence pack of one connector at the wall clock (SPEC §11),
    /// `None` when the member holds no scope of it.
    pub fn evidence_html(&self, connector: &str) -> Option<String> {
        let now = wall_clock();
        let (scopes, rejected) = self.tasks.connector(&self.cfg, now, connector);
        let r = Report {
            now,
            criteria_window_days: self.cfg.criteria.window_days,
            rejected,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(idle_after: Duration) -> Arc<Serving> {
        let cfg = Arc::new(Config::default());
        let tasks = Arc::new(TaskSet::new(&cfg));
        let mut s = Serving::new(
            cfg,
            tasks,
            Arc::new(SelfMetrics::new()),
            Arc::new(AtomicBool::new(false)),
        );
        s.idle_after = idle_after;
        Arc::new(s)
    }

    fn read(s: &Serving) -> Arc<Rendered> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(s.rendered())
    }

    /// The pause: 1 s; 4× a rendering's time when longer; half the gap
    /// between the last two reads when longer still, at most 10 s.
    #[test]
    fn the_pause_follows_the_rendering_time_and_the_reads() {
        let s = serving(IDLE_AFTER);
        let ms = Duration::from_millis;
        let with_gap = |gap: Option<u64>, took: u64| {
            s.reads.lock().unwrap().gap = gap.map(ms);
            s.pause_after(ms(took))
        };
        assert_eq!(with_gap(None, 10), ms(1000));
        assert_eq!(with_gap(None, 500), ms(2000));
        assert_eq!(with_gap(Some(100), 10), ms(1000));
        assert_eq!(with_gap(Some(15_000), 10), ms(7500));
        assert_eq!(with_gap(Some(15_000), 2500), ms(10_000));
        assert_eq!(with_gap(Some(60_000), 10), ms(10_000));
        assert_eq!(with_gap(Some(60_000), 3000), ms(12_000));
    }

    fn renderings(s: &Serving) -> Option<Instant> {
        s.rendered.borrow().as_ref().map(|r| r.started)
    }

    /// Nobody reads: nothing is rendered. The first read wakes the loop
    /// and gets a rendering begun after it; reads keep it running; after
    /// `idle_after` without one it stops, and the next read again gets a
    /// rendering begun after it, never the old one.
    #[test]
    fn renders_only_while_read_and_a_read_after_a_quiet_spell_is_fresh() {
        let s = serving(Duration::from_secs(4));
        let looping = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || s.render_loop())
        };
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(renderings(&s), None, "rendered with no reader");

        let at = Instant::now();
        let first = read(&s);
        assert!(first.started >= at, "the first read got an older rendering");
        // Running: the latest rendering, not one begun after the read
        // (the first, or the next if the loop already rendered again: a
        // loaded machine can hold this thread back past the pause).
        let again = Instant::now();
        let second = read(&s);
        assert!(second.started >= first.started);
        assert!(second.started < again, "a read waited while the loop ran");

        // Running: the next rendering ~1 s later (the pause), before the
        // loop goes idle (4 s after the last read).
        let start = Instant::now();
        while renderings(&s) == Some(second.started) {
            assert!(
                start.elapsed() < Duration::from_millis(3500),
                "the loop stopped while read"
            );
            std::thread::sleep(Duration::from_millis(20));
        }

        // Idle: 4 s after the last read the loop stops rendering.
        std::thread::sleep(Duration::from_millis(5500));
        let last = renderings(&s).unwrap();
        std::thread::sleep(Duration::from_millis(2000));
        assert_eq!(renderings(&s).unwrap(), last, "rendered while idle");

        let at = Instant::now();
        let fresh = read(&s);
        assert!(
            fresh.started >= at,
            "a read after a quiet spell got a stale rendering"
        );

        s.stop.store(true, Ordering::Release);
        looping.join().unwrap();
    }
}
