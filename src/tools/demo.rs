//! `demo`: the whole daemon on a laptop with no Kafka installed.
//!
//! Starts librdkafka's in-process mock cluster, loads four weeks of
//! synthetic history (so weekly users, MAC and verdicts mean something from
//! the first second), keeps live traffic flowing, and runs the daemon on it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::mocking::MockCluster;

use crate::app::{self, wall_clock, RunOptions};
use crate::config::{Config, Overrides};
use crate::tools::loadgen::{self, Generator, Sender};

pub const TOPIC: &str = "connector-events";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("mock cluster: {0}")]
    Mock(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Loadgen(#[from] loadgen::LoadgenError),
    #[error(transparent)]
    Daemon(#[from] app::DaemonError),
    #[error("cannot create the demo's state directory: {0}")]
    StateDir(std::io::Error),
}

pub struct DemoOptions {
    pub listen: String,
    /// Days of history loaded before live traffic starts.
    pub history_days: u32,
    /// Live events per second.
    pub rate: u32,
    pub state_dir: Option<PathBuf>,
}

pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    let mock = MockCluster::new(1)?;
    mock.create_topic(TOPIC, 8, 1)?;
    let brokers = mock.bootstrap_servers();
    // Without a directory given, one of its own, removed when the demo
    // ends (each run used to leave one behind in the temp directory).
    let own_dir = match opts.state_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("connector-ga-demo-")
                .tempdir()
                .map_err(DemoError::StateDir)?,
        ),
    };
    let state_dir = match (&opts.state_dir, &own_dir) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => unreachable!("made above"),
    };
    let mut cfg = Config::from_toml(include_str!("../../config/demo.toml"))?;
    let ov = Overrides {
        brokers: Some(brokers.clone()),
        topics: vec![TOPIC.into()],
        group: Some("connector-ga-demo".into()),
        listen: Some(opts.listen.clone()),
        state_dir: Some(state_dir.clone()),
    };
    cfg.kafka.brokers = ov.brokers.clone().expect("set");
    cfg.kafka.topics = ov.topics.clone();
    cfg.kafka.group_id = ov.group.clone().expect("set");
    cfg.http.listen = ov.listen.clone().expect("set");
    cfg.state.dir = state_dir;
    cfg.source = Some("config/demo.toml (built into the binary)".into());
    // The demo's events are not keyed by connector: the re-key stage needs
    // its topic, which the mock cluster cannot create on request.
    mock.create_topic(&crate::kafka::rekey::topic(&cfg), 8, 1)?;

    let mut gen = Generator::new(loadgen::demo_profiles(), 42);
    let mut sender = Sender::new(&brokers, TOPIC, 200)?;
    let n = loadgen::produce_history(&mut sender, &mut gen, wall_clock(), opts.history_days, 1.0)?;
    tracing::info!(
        events = n,
        days = opts.history_days,
        "history loaded into the mock cluster"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let live_stop = Arc::clone(&stop);
    let rate = opts.rate;
    let live = std::thread::spawn(move || {
        loadgen::produce_live(&mut sender, &mut gen, rate, None, wall_clock, &live_stop)
    });
    let url = match opts.listen.strip_prefix("0.0.0.0:") {
        Some(port) => format!("http://127.0.0.1:{port}/"),
        None => format!("http://{}/", opts.listen),
    };
    println!("connector-ga-exporter demo: open {url}  (metrics: {url}metrics, JSON: {url}api/v1/criteria); Ctrl-C stops");
    // A directory given may hold an earlier demo's checkpoints, whose
    // offsets this new mock cluster does not have: start it over.
    let fresh = own_dir.is_none();
    let r = app::run(cfg, RunOptions { fresh }, app::shutdown_signal()).await;
    stop.store(true, Ordering::Relaxed);
    let _ = live.join();
    drop(mock);
    drop(own_dir);
    Ok(r?)
}
