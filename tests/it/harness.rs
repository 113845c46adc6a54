//! The daemon and the broker as child processes: one builder that starts
//! `connector-ga-exporter run` for every test (daemon, abuse, scale), the
//! probes and scrapes of a running member, and a `mock-kafka` process.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

const BUILT: &str = env!("CARGO_BIN_EXE_connector-ga-exporter");
const KEYED: &str = "CONNECTOR_GA__KAFKA__INPUT_KEYED_BY_CONNECTOR";

/// The binary under test: this build, or `CGA_BIN` (to run a regression
/// test against an older build and see it fail).
pub(crate) fn bin() -> String {
    std::env::var("CGA_BIN").unwrap_or_else(|_| BUILT.to_string())
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn iso(minutes_ago: i64) -> String {
    let t = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How `run` is started. Every option left unset is left off the command
/// line, so a test of start-up errors passes only what it means to.
pub(crate) struct DaemonCmd {
    program: Command,
    brokers: String,
    topic: Option<String>,
    group: Option<String>,
    config: Option<PathBuf>,
    state: Option<PathBuf>,
    /// `Some(filter)`: `RUST_LOG=filter`; `None`: `RUST_LOG` removed.
    rust_log: Option<String>,
    stderr_piped: bool,
    cwd: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl DaemonCmd {
    /// `run --brokers BROKERS --listen 127.0.0.1:<free port>`, `RUST_LOG=warn`,
    /// stdout discarded, stderr inherited, and
    /// `input_keyed_by_connector = true` (a test of one member then counts
    /// an event as soon as it is read; the re-key stage's tests set it to
    /// `false` with [`DaemonCmd::rekeyed`]).
    pub(crate) fn new(brokers: &str) -> DaemonCmd {
        DaemonCmd {
            program: Command::new(bin()),
            brokers: brokers.to_string(),
            topic: None,
            group: None,
            config: None,
            state: None,
            rust_log: Some("warn".into()),
            stderr_piped: false,
            cwd: None,
            env: vec![(KEYED.into(), "true".into())],
        }
    }

    /// Input not keyed by connector: every event goes through the re-key
    /// stage (SPEC §12).
    pub(crate) fn rekeyed(self) -> Self {
        self.env(KEYED, "false")
    }

    /// Runs the binary through `wrapper`, a program that execs it with the
    /// arguments appended (such as `bash -c 'ulimit -n 256; exec "$0" "$@"' BIN`).
    pub(crate) fn via(mut self, wrapper: Command) -> Self {
        self.program = wrapper;
        self
    }

    pub(crate) fn topic(mut self, topic: &str) -> Self {
        self.topic = Some(topic.into());
        self
    }

    pub(crate) fn group(mut self, group: &str) -> Self {
        self.group = Some(group.into());
        self
    }

    pub(crate) fn config(mut self, config: &Path) -> Self {
        self.config = Some(config.into());
        self
    }

    pub(crate) fn state_dir(mut self, state: &Path) -> Self {
        self.state = Some(state.into());
        self
    }

    /// `Some(filter)` sets `RUST_LOG`; `None` removes it from the environment.
    pub(crate) fn rust_log(mut self, filter: Option<&str>) -> Self {
        self.rust_log = filter.map(str::to_string);
        self
    }

    pub(crate) fn stderr_piped(mut self) -> Self {
        self.stderr_piped = true;
        self
    }

    /// The working directory of the process (default: the test's).
    pub(crate) fn cwd(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub(crate) fn envs(self, env: &[(&str, &str)]) -> Self {
        env.iter().fold(self, |c, (k, v)| c.env(k, v))
    }

    /// The command, not started, and the port it will listen on.
    pub(crate) fn command(self) -> (Command, u16) {
        let port = free_port();
        let mut cmd = self.program;
        cmd.args(["run", "--brokers", &self.brokers]);
        if let Some(t) = &self.topic {
            cmd.args(["--topic", t]);
        }
        if let Some(g) = &self.group {
            cmd.args(["--group", g]);
        }
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        if let Some(s) = &self.state {
            cmd.arg("--state-dir").arg(s);
        }
        cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
        match &self.rust_log {
            Some(f) => cmd.env("RUST_LOG", f),
            None => cmd.env_remove("RUST_LOG"),
        };
        cmd.stdout(Stdio::null()).stderr(if self.stderr_piped {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
        if let Some(d) = &self.cwd {
            cmd.current_dir(d);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        (cmd, port)
    }

    /// Started, without waiting for anything.
    pub(crate) fn spawn(self) -> Daemon {
        let (mut cmd, port) = self.command();
        Daemon {
            child: cmd.spawn().expect("daemon starts"),
            port,
            // A fresh connection per request, as a kubelet probe or a
            // scrape after a pause gets: a pooled keep-alive connection can
            // be closed by the daemon's header-read timeout at the instant
            // it is reused, which failed the flood test once in CI (the
            // last /healthz raced the 2 s timeout of its idle connection).
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        }
    }

    /// Started, once `/readyz` answers 200.
    pub(crate) fn start(self) -> Daemon {
        let mut d = self.spawn();
        d.wait_ready();
        d
    }
}

pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) http: reqwest::blocking::Client,
}

impl Daemon {
    pub(crate) fn start(
        brokers: &str,
        topic: &str,
        group: &str,
        config: &Path,
        state: &Path,
        env: &[(&str, &str)],
    ) -> Daemon {
        DaemonCmd::new(brokers)
            .topic(topic)
            .group(group)
            .config(config)
            .state_dir(state)
            .envs(env)
            .start()
    }

    /// Waits (60 s at most) for `/readyz` 200; fails at once if the
    /// process exits first.
    pub(crate) fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("the daemon exited before it was ready: {st}");
            }
            if self.status("/readyz") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for readyz 200");
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub(crate) fn status(&self, path: &str) -> Option<u16> {
        self.http
            .get(self.url(path))
            .send()
            .ok()
            .map(|r| r.status().as_u16())
    }

    pub(crate) fn criteria(&self) -> Value {
        self.http
            .get(self.url("/api/v1/criteria"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    pub(crate) fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// The value of one sample, labels given in any order.
    pub(crate) fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_in(&self.metrics(), name, labels)
    }

    pub(crate) fn wait_for(&self, mut ok: impl FnMut(&Daemon) -> bool, what: &str) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if ok(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}");
    }

    /// `connector_requests_total` of `connector` in the public cloud, one
    /// status class.
    pub(crate) fn requests(&self, connector: &str, class: &str) -> Option<f64> {
        self.metric(
            "connector_requests_total",
            &[
                ("connector", connector),
                ("cloud", "public"),
                ("class", class),
            ],
        )
    }

    pub(crate) fn events_total(&self, topic: &str) -> f64 {
        self.metric("connector_ga_events_total", &[("topic", topic)])
            .unwrap_or(0.0)
    }

    /// SIGKILL, and the process reaped.
    pub(crate) fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit status within 10 s.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no exit within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn metric_in(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text, name)
        .into_iter()
        .find(|(have, _)| {
            let want: BTreeMap<&str, &str> = labels.iter().copied().collect();
            have.iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<BTreeMap<_, _>>()
                == want
        })
        .map(|(_, v)| v)
}

/// Every sample of metric `name`: its labels and its value.
pub(crate) fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let labels = rest
                .trim_end_matches('}')
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect();
            let v = value
                .parse()
                .unwrap_or_else(|_| panic!("not a sample value: {l}"));
            Some((labels, v))
        })
        .collect()
}

pub(crate) fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .create()
        .unwrap()
}

pub(crate) fn produce(p: &BaseProducer, topic: &str, payloads: &[String]) {
    for (i, pl) in payloads.iter().enumerate() {
        let key = i.to_string();
        p.send(BaseRecord::to(topic).payload(pl.as_str()).key(key.as_str()))
            .unwrap();
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).expect("producer flush");
}

pub(crate) fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(
        &p,
        format!(
            "[criteria]\nmin_eligible_requests = 5\n\n[connectors.it_alpha]\nbackend_in_production = true\nsupport_model_attested = true\npreview_since = 2026-01-01\n{extra}"
        ),
    )
    .unwrap();
    p
}

/// A child process killed when the test ends, passed or not.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// librdkafka's mock cluster in its own process (`mock-kafka`), killed
/// when dropped.
pub(crate) struct MockKafka {
    pub(crate) process: KillOnDrop,
    /// The bootstrap address it printed.
    pub(crate) brokers: String,
}

impl MockKafka {
    /// `topics` as `NAME:PARTITIONS`.
    pub(crate) fn start(topics: &[&str]) -> MockKafka {
        let mut cmd = Command::new(bin());
        cmd.arg("mock-kafka");
        for t in topics {
            cmd.args(["--topic", t]);
        }
        let mut process = KillOnDrop(cmd.stdout(Stdio::piped()).spawn().unwrap());
        let mut line = String::new();
        std::io::BufReader::new(process.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let brokers = line.trim().to_string();
        assert!(!brokers.is_empty(), "mock-kafka printed no address");
        MockKafka { process, brokers }
    }

    /// `kill SIG` (such as `-STOP`) to the broker process.
    pub(crate) fn signal(&self, sig: &str) {
        assert!(Command::new("kill")
            .args([sig, &self.process.0.id().to_string()])
            .status()
            .unwrap()
            .success())
    }
}

/// The setup of the dead-letter tests: a one-broker mock cluster with the
/// one-partition topics `ev` (input) and `dead`, and a config that names
/// `dead` as the dead-letter topic. Keep it alive for the whole test.
pub(crate) struct DeadLetterCluster {
    pub(crate) _mock: MockCluster<'static, DefaultProducerContext>,
    pub(crate) brokers: String,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) cfg: PathBuf,
}

impl DeadLetterCluster {
    /// For a member of `group` (its re-keyed topic is created too).
    pub(crate) fn start(group: &str) -> DeadLetterCluster {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("ev", 1, 1).unwrap();
        mock.create_topic("dead", 1, 1).unwrap();
        rekeyed_topic(&mock, group, 1);
        let brokers = mock.bootstrap_servers();
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), "\n[kafka]\ndead_letter_topic = \"dead\"\n");
        DeadLetterCluster {
            _mock: mock,
            brokers,
            dir,
            cfg,
        }
    }

    /// Up to `n` dead letters from `dead`, in order, read by a new consumer
    /// group `group` (30 s at most): each one's headers and payload.
    pub(crate) fn dead_letters(
        &self,
        group: &str,
        n: usize,
    ) -> Vec<(BTreeMap<String, String>, String)> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        c.subscribe(&["dead"]).unwrap();
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < n && start.elapsed() < Duration::from_secs(30) {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                let mut h = BTreeMap::new();
                for x in m.headers().iter().flat_map(|hs| hs.iter()) {
                    h.insert(
                        x.key.to_string(),
                        String::from_utf8_lossy(x.value.unwrap_or_default()).to_string(),
                    );
                }
                let payload = String::from_utf8_lossy(m.payload().unwrap_or_default());
                got.push((h, payload.to_string()));
            }
        }
        got
    }
}

/// Creates on `mock` the re-keyed topic of `group` (`<group>-by-connector`,
/// SPEC §12) with the input's `partitions`: a member reading input not
/// keyed by connector needs it, and the mock cluster cannot create a topic
/// on request (it has no CreateTopics).
pub(crate) fn rekeyed_topic<C: rdkafka::producer::ProducerContext>(
    mock: &rdkafka::mocking::MockCluster<'_, C>,
    group: &str,
    partitions: i32,
) {
    mock.create_topic(&format!("{group}-by-connector"), partitions, 1)
        .unwrap();
}
