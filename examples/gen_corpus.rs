//! Writes a deterministic, realistic NDJSON corpus of connector events to
//! stdout (for `scripts/bench-report-rss.sh` and manual load tests).
//!
//!     cargo run --release --example gen_corpus -- --count 1500000 [--seed 42] > events.ndjson
//!
//! The events span the 30 days before 2026-11-20T12:00:00Z: run `report`
//! with `--now 2026-11-20T12:00:00Z`.

#[path = "../benches/common/corpus.rs"]
mod corpus;

use std::io::BufWriter;

fn main() {
    let mut count: usize = 1_000_000;
    let mut seed: u64 = 42;
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
            "-h" | "--help" => {
                println!(
                    "gen_corpus [--count N] [--seed S]  (NDJSON on stdout; --now {})",
                    corpus::NOW
                );
                return;
            }
            other => die(&format!("unknown argument {other:?}")),
        }
    }
    let stdout = std::io::stdout();
    let mut w = BufWriter::new(stdout.lock());
    if let Err(e) = corpus::write_corpus(&mut w, count, seed) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            die(&format!("writing stdout: {e}"));
        }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("gen_corpus: {msg}");
    std::process::exit(2)
}
