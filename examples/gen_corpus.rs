//! Writes a deterministic, realistic NDJSON corpus of connector events to
//! stdout (for `scripts/bench-report-rss.sh` and manual load tests).
//!
//!     cargo run --release --example gen_corpus -- --count 1500000 [--seed 42] > events.ndjson
//!     ... -- --count 1000000 --profile realistic > events.ndjson
//!
//! `--profile`: `demo` (the default: 8 connectors) or `realistic` (1,000
//! connectors × 6 clouds: the engine bench's `BENCH_PROFILE=realistic`
//! corpus, the same lines for the same count and seed).
//!
//! The events span the 30 days before 2026-11-20T12:00:00Z: run `report`
//! with `--now 2026-11-20T12:00:00Z`.

#[path = "../benches/common/corpus.rs"]
mod corpus;

use std::io::{BufWriter, Write};

fn main() {
    let mut count: usize = 1_000_000;
    let mut seed: u64 = 42;
    let mut profile = corpus::Profile::Demo;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| die(&format!("{name} needs a number")))
        };
        match a.as_str() {
            "--count" => count = value("--count") as usize,
            "--seed" => seed = value("--seed"),
            "--profile" => {
                profile = match args.next().as_deref() {
                    Some("demo") => corpus::Profile::Demo,
                    Some("realistic") => corpus::Profile::Realistic,
                    _ => die("--profile needs demo or realistic"),
                }
            }
            "-h" | "--help" => {
                println!(
                    "gen_corpus [--count N] [--seed S] [--profile demo|realistic]  (NDJSON on stdout; --now {})",
                    corpus::NOW
                );
                return;
            }
            other => die(&format!("unknown argument {other:?}")),
        }
    }
    let stdout = std::io::stdout();
    let mut w = BufWriter::new(stdout.lock());
    let written = match profile {
        corpus::Profile::Demo => corpus::write_corpus(&mut w, count, seed).map(drop),
        corpus::Profile::Realistic => write_realistic(&mut w, count, seed),
    };
    if let Err(e) = written {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            die(&format!("writing stdout: {e}"));
        }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("gen_corpus: {msg}");
    std::process::exit(2)
}

/// The realistic profile, line for line as `corpus::generate_of` makes it,
/// written in blocks.
fn write_realistic(w: &mut impl Write, count: usize, seed: u64) -> std::io::Result<()> {
    let mut rng = corpus::Rng::new(seed);
    let mut buf = Vec::with_capacity(1 << 20);
    for _ in 0..count {
        corpus::event_line_of(corpus::Profile::Realistic, &mut rng, &mut buf);
        if buf.len() >= (1 << 20) - 512 {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)?;
    w.flush()
}
