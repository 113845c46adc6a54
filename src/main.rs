//! The `connector-ga-exporter` binary: parses the command line, sets up
//! logging and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use connector_ga_exporter::config::{self, Config, LogFormat, Overrides};
use connector_ga_exporter::engine::timeutil;
use connector_ga_exporter::render::evidence;
use connector_ga_exporter::tools::{demo, loadgen, mock};
use connector_ga_exporter::{app as daemon, report, rules};

/// mimalloc instead of the system allocator: `report` spends ~20% of its
/// CPU in glibc's malloc and free (latency vectors, per-connection lists,
/// per-window vectors while measuring), and mimalloc's thread-local free
/// lists cut its CPU by ~12% on 1M realistic events (docs/benchmark-history.md,
/// "State on demand, and mimalloc").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Decides from Kafka connector events whether a connector may become GA"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    /// The evidence pack of SPEC §11, per connector.
    Markdown,
    /// The evidence pack as one self-contained HTML5 file.
    Html,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon: consume Kafka, serve /metrics, /api/v1/criteria and /.
    Run {
        /// Config file (TOML); CONNECTOR_GA__* environment variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Bootstrap brokers HOST:PORT[,HOST:PORT] (overrides kafka.brokers).
        #[arg(long)]
        brokers: Option<String>,
        /// Topic to consume; repeat for several (overrides kafka.topics).
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Consumer group id (overrides kafka.group_id).
        #[arg(long)]
        group: Option<String>,
        /// HTTP listen address ADDR:PORT (overrides http.listen).
        #[arg(long)]
        listen: Option<String>,
        /// Directory of the task checkpoints when state.url is not set
        /// (overrides state.dir).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Discard every task checkpoint in the state store and start with
        /// empty state.
        #[arg(long)]
        fresh: bool,
    },
    /// Compute the report over a file of events (JSON, JSON array or NDJSON).
    Report {
        /// The events file.
        #[arg(long)]
        input: PathBuf,
        /// Config file (TOML); environment variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Evaluate at this time (RFC 3339); default: the latest valid event.
        #[arg(long)]
        now: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Add each scope's `daily` series (one row per day of the criteria
        /// window) to the JSON (`--format json` only).
        #[arg(long)]
        daily: bool,
        /// With markdown or html: only this connector's evidence pack.
        #[arg(long)]
        connector: Option<String>,
        /// Threads that decode, aggregate and measure, 0..=256; 0 = one per
        /// CPU this process may run on. The result is the same with any number.
        #[arg(long, value_name = "N", default_value_t = 0,
              value_parser = clap::value_parser!(u16).range(0..=256))]
        threads: u16,
    },
    /// Print the Prometheus rule file (recording rules, burn-rate, status and
    /// exporter-health alerts) built from the thresholds in force.
    Rules {
        /// Config file (TOML); CONNECTOR_GA__* environment variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Produce synthetic connector events to Kafka.
    Loadgen {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        /// Live events per second.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        /// Seconds of live traffic.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Days of history produced first (at the profiles' daily volume).
        #[arg(long, default_value_t = 0)]
        history_days: u32,
        /// Events per Kafka message (NDJSON).
        #[arg(long, default_value_t = 100)]
        per_message: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Serve librdkafka's mock Kafka cluster over loopback to other processes
    /// (tests and benchmarks without a broker); prints its bootstrap address.
    MockKafka {
        /// Topics to create, NAME:PARTITIONS (repeatable).
        #[arg(long = "topic", default_value = "connector-events:8")]
        topics: Vec<String>,
        #[arg(long, default_value_t = 1)]
        brokers: i32,
    },
    /// Everything in one process: a mock Kafka cluster, synthetic history and
    /// live traffic, and the daemon on it.
    Demo {
        #[arg(long, default_value = "127.0.0.1:9795")]
        listen: String,
        #[arg(long, default_value_t = 28)]
        history_days: u32,
        #[arg(long, default_value_t = 50)]
        rate: u32,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("connector-ga-exporter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run {
            config,
            brokers,
            topics,
            group,
            listen,
            state_dir,
            fresh,
        } => {
            let ov = Overrides {
                brokers,
                topics,
                group,
                listen,
                state_dir,
            };
            let cfg = Config::load(config.as_deref(), &ov)?;
            init_tracing(cfg.log.format, &cfg.log.level);
            let rt = runtime()?;
            let r = rt.block_on(daemon::run(
                cfg,
                daemon::RunOptions { fresh },
                daemon::shutdown_signal(),
            ));
            // Dropping a runtime waits for every blocking task, without
            // limit: a consumer thread that overran the drain's 9 s (the
            // error `r` then holds) would hold the exit with it.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            r?;
            Ok(())
        }
        Cmd::Report {
            input,
            config,
            now,
            format,
            daily,
            connector,
            threads,
        } => {
            let cfg = Config::load(config.as_deref(), &Overrides::default())?;
            let now = match now {
                Some(s) => Some(
                    timeutil::parse_rfc3339(&s)
                        .with_context(|| format!("--now {s:?} is not an RFC 3339 time"))?,
                ),
                None => None,
            };
            let threads = config::threads_for(threads.into());
            let pack = matches!(format, Format::Markdown | Format::Html);
            if connector.is_some() && !pack {
                anyhow::bail!("--connector goes with --format markdown or html");
            }
            // The table has no place for it, and the evidence packs always
            // show it: only JSON changes, so say so rather than ignore it.
            if daily && format != Format::Json {
                anyhow::bail!(
                    "--daily goes with --format json (markdown and html always show the daily series)"
                );
            }
            let made_at = daemon::wall_clock();
            let r = report::report_file_with(&input, &cfg, now, made_at, threads, pack || daily)?;
            let prov = evidence::Provenance {
                input: input.display().to_string(),
                config: config.as_ref().map(|p| p.display().to_string()),
                made_at,
            };
            let text = match format {
                Format::Json => serde_json::to_string_pretty(&r.doc())? + "\n",
                Format::Table => r.to_table(&cfg),
                Format::Markdown => evidence::markdown(&r, &cfg, &prov, connector.as_deref())?,
                Format::Html => evidence::html(&r, &cfg, &prov, connector.as_deref())?,
            };
            write_stdout(&text)
        }
        Cmd::Rules { config } => {
            let cfg = Config::load(config.as_deref(), &Overrides::default())?;
            write_stdout(&rules::render(&cfg)?)
        }
        Cmd::Loadgen {
            brokers,
            topic,
            rate,
            duration,
            history_days,
            per_message,
            seed,
        } => {
            init_tracing(LogFormat::Text, "info");
            let mut gen = loadgen::Generator::new(loadgen::demo_profiles(), seed);
            let mut sender = loadgen::Sender::new(&brokers, &topic, per_message)?;
            if history_days > 0 {
                let n = loadgen::produce_history(
                    &mut sender,
                    &mut gen,
                    daemon::wall_clock(),
                    history_days,
                    1.0,
                )?;
                eprintln!("history: {n} events over {history_days} days");
            }
            let stop = std::sync::atomic::AtomicBool::new(false);
            let n = loadgen::produce_live(
                &mut sender,
                &mut gen,
                rate,
                Some(Duration::from_secs(duration)),
                daemon::wall_clock,
                &stop,
            )?;
            eprintln!("live: {n} events in {duration} s");
            Ok(())
        }
        Cmd::MockKafka { topics, brokers } => {
            let mock = mock::start(brokers, &topics)?;
            println!("{}", mock.bootstrap_servers());
            use std::io::Write;
            std::io::stdout().flush()?;
            runtime()?.block_on(daemon::shutdown_signal());
            Ok(())
        }
        Cmd::Demo {
            listen,
            history_days,
            rate,
        } => {
            init_tracing(LogFormat::Text, "info,rdkafka=warn");
            runtime()?.block_on(demo::run(demo::DemoOptions {
                listen,
                history_days,
                rate,
                state_dir: None,
            }))?;
            Ok(())
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}
