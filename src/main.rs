//! The `connector-ga-exporter` binary: parses the command line, sets up
//! logging and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use connector_ga_exporter::config::{Config, Overrides};
use connector_ga_exporter::{report, timeutil};

#[derive(Parser)]
#[command(version, about = "Decides from Kafka connector events whether a connector may become GA")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
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

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Report {
            input,
            config,
            now,
            format,
        } => {
            let cfg = Config::load(config.as_deref(), &Overrides::default())?;
            let now = match now {
                Some(s) => Some(
                    timeutil::parse_rfc3339(&s)
                        .with_context(|| format!("--now {s:?} is not an RFC 3339 time"))?,
                ),
                None => None,
            };
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let wall = chrono::Utc::now().timestamp_micros();
            let r = report::report_file(&input, &cfg, now, wall, threads)?;
            let text = match format {
                Format::Json => serde_json::to_string_pretty(&r.to_json())? + "\n",
                Format::Table => r.to_table(&cfg),
            };
            write_stdout(&text)
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
