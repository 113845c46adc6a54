//! `connector-ga-exporter report` end to end: the binary on files of
//! `tests/data`, compared key for key with hand-worked expectations.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::common::{assert_json_eq, data};

fn report(args: &[&str]) -> Output {
    crate::common::report_cmd(args)
}

fn report_json(input: &Path, config: Option<&Path>, now: Option<&str>) -> Value {
    let mut args: Vec<String> = vec![
        "--input".into(),
        input.display().to_string(),
        "--format".into(),
        "json".into(),
    ];
    if let Some(c) = config {
        args.extend(["--config".into(), c.display().to_string()]);
    }
    if let Some(n) = now {
        args.extend(["--now".into(), n.into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = report(&args);
    assert!(
        out.status.success(),
        "report {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("report prints JSON")
}

fn expected(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(name)).unwrap()).unwrap()
}

#[test]
fn small_example_matches_contract() {
    let got = report_json(
        &data("small.ndjson"),
        Some(&data("small.toml")),
        Some("2026-11-20T12:00:00Z"),
    );
    let mut want = expected("small.expected.json");
    // The shared example predates SPEC §11: only its keys may be missing
    // there, and their hand-worked values are in small.section11.json
    // (HAND.md) and are compared too.
    let extra = expected("small.section11.json");
    for (scope, more) in want["scopes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(extra.as_array().unwrap())
    {
        assert_eq!(
            (&scope["connector"], &scope["cloud"]),
            (&more["connector"], &more["cloud"])
        );
        for k in ["failing", "exception_opens_on", "budget"] {
            scope
                .as_object_mut()
                .unwrap()
                .entry(k)
                .or_insert_with(|| more[k].clone());
        }
    }
    assert_json_eq(&got, &want);
}

/// SPEC §11 on a corpus worked out by hand in tests/data/BUDGET.md.
#[test]
fn budget_corpus_with_daily() {
    let out = report(&[
        "--input",
        &data("budget.ndjson").display().to_string(),
        "--config",
        &data("budget.toml").display().to_string(),
        "--now",
        "2026-11-20T12:00:00Z",
        "--format",
        "json",
        "--daily",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_json_eq(&got, &expected("budget.expected.json"));
    // Without --daily there is no `daily` key.
    let plain = report_json(
        &data("budget.ndjson"),
        Some(&data("budget.toml")),
        Some("2026-11-20T12:00:00Z"),
    );
    assert!(plain["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s.get("daily").is_none() && s.get("budget").is_some()));
}

#[test]
fn data_copies_match_shared_examples() {
    // tests/data holds copies so a clone without ../shared still works; when
    // ../shared is there, the copies must not have drifted from it.
    // CGA_SHARED_EXAMPLES points elsewhere (to check that a missing copy
    // fails under CI: `CI=1 CGA_SHARED_EXAMPLES=/nonexistent`).
    let shared = std::env::var_os("CGA_SHARED_EXAMPLES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/examples"));
    if !shared.is_dir() {
        // Outside CI a clone without ../shared still passes; in CI
        // (`.ci/run` exports CI=1) the comparison must happen.
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing, so tests/data cannot be checked against it (CI is set)",
            shared.display()
        );
        return;
    }
    for f in ["small.ndjson", "small.toml", "small.expected.json"] {
        let a = std::fs::read(shared.join(f)).unwrap();
        let b = std::fs::read(data(f)).unwrap();
        assert!(a == b, "tests/data/{f} differs from ../shared/examples/{f}");
    }
}

/// isv formula, unattributed origin `backend`, the exception path passing on
/// the day 6 months are reached, insufficient_data via
/// min_eligible_requests, events after --now ignored (tests/data/HAND.md).
#[test]
fn hand_corpus_ndjson() {
    let got = report_json(
        &data("hand.ndjson"),
        Some(&data("hand.toml")),
        Some("2026-11-20T12:00:00Z"),
    );
    assert_json_eq(&got, &expected("hand.expected.json"));
}

/// A JSON array file; `now` defaults to the latest valid event.
#[test]
fn hand_corpus_json_array_now_defaults_to_latest_event() {
    let got = report_json(&data("hand_array.json"), Some(&data("hand.toml")), None);
    assert_json_eq(&got, &expected("hand_array.expected.json"));
}

/// One pretty-printed object spanning many lines is one event.
#[test]
fn hand_corpus_pretty_printed_document() {
    let got = report_json(&data("hand_pretty.json"), None, None);
    assert_json_eq(&got, &expected("hand_pretty.expected.json"));
}

#[test]
fn missing_input_is_a_one_line_error_naming_the_file() {
    let missing = data("no-such-file.ndjson");
    let out = report(&[
        "--input",
        missing.to_str().unwrap(),
        "--now",
        "2026-11-20T12:00:00Z",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-file.ndjson"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[criteria]\nmin_eligible_requestz = 5\n").unwrap();
    let out = report(&[
        "--input",
        data("small.ndjson").to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("min_eligible_requestz"), "{err}");
    assert!(out.stdout.is_empty());
}

/// Regression: `--daily` with the table (or an evidence pack) was
/// silently ignored.
#[test]
fn daily_without_json_is_refused() {
    for format in ["table", "markdown", "html"] {
        let out = report(&[
            "--input",
            data("small.ndjson").to_str().unwrap(),
            "--format",
            format,
            "--daily",
        ]);
        assert!(!out.status.success(), "{format}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--daily goes with --format json"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn table_has_every_scope_and_its_status() {
    let out = report(&[
        "--input",
        data("small.ndjson").to_str().unwrap(),
        "--config",
        data("small.toml").to_str().unwrap(),
        "--now",
        "2026-11-20T12:00:00Z",
        "--format",
        "table",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // The five scopes of small.expected.json, every one not_eligible.
    for (connector, cloud) in [
        ("shared_demo", "all"),
        ("shared_demo", "gcc"),
        ("shared_demo", "public"),
        ("shared_other", "all"),
        ("shared_other", "mooncake"),
    ] {
        let row = text
            .lines()
            .find(|l| {
                let mut w = l.split_whitespace();
                w.next() == Some(connector) && w.next() == Some(cloud)
            })
            .unwrap_or_else(|| panic!("no row for {connector}/{cloud} in:\n{text}"));
        assert!(row.contains("not_eligible"), "{row}");
    }
    // And the rows come in the report's order.
    let pos = |s: &str| text.find(s).unwrap();
    assert!(pos("shared_demo") < pos("shared_other"));
}

#[test]
fn table_shows_other_statuses() {
    let out = report(&[
        "--input",
        data("hand.ndjson").to_str().unwrap(),
        "--config",
        data("hand.toml").to_str().unwrap(),
        "--now",
        "2026-11-20T12:00:00Z",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("shared_")).collect();
    assert_eq!(rows.len(), 5, "{text}");
    assert!(rows[0].contains("ga_eligible_by_exception"), "{text}");
    assert!(rows[4].contains("insufficient_data"), "{text}");
}

/// A file over 1 MiB is streamed in chunks by several threads: without
/// `--now` (now = latest event) it must give exactly the report of
/// `--now <latest event>`, whatever the thread count, including `too_old`
/// counted in hindsight for events 35+ days before the latest one.
#[test]
fn streamed_file_now_default_equals_explicit_latest() {
    use connector_ga_exporter::config::Config;
    use connector_ga_exporter::engine::timeutil;
    use connector_ga_exporter::report;
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("span.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    // Deterministic LCG; 30,000 events over 50 days before the latest one.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = |n: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 11) % n
    };
    let latest = "2026-11-20T12:00:00Z";
    let latest_ms = timeutil::parse_rfc3339(latest).unwrap() / 1000;
    for i in 0..30_000u64 {
        let ms = if i == 17_000 {
            latest_ms
        } else {
            latest_ms - next(50 * 86_400_000) as i64
        };
        let status = [200, 200, 200, 404, 429, 500, 0][next(7) as usize];
        let fault = ["", ",\"fault\":\"backend\"", ",\"fault\":\"connector\""][next(3) as usize];
        writeln!(
            f,
            "{{\"ts\":{ms},\"connector\":\"{}\",\"cloud\":\"{}\",\"status\":{status}{fault},\"user\":\"u{}\",\"connection\":\"k{}\",\"latency_ms\":{}}}",
            ["a", "b", "c", "d"][next(4) as usize],
            ["public", "gcc"][next(2) as usize],
            next(3000),
            next(500),
            next(900),
        )
        .unwrap();
    }
    drop(f);
    assert!(
        std::fs::metadata(&path).unwrap().len() > 2 << 20,
        "big enough to stream"
    );

    let cfg = Config::from_toml("").unwrap();
    let now = timeutil::parse_rfc3339(latest).unwrap();
    let explicit = report::report_file(&path, &cfg, Some(now), 0, 1)
        .unwrap()
        .to_json();
    assert!(explicit["rejected"]["too_old"].as_u64().unwrap() > 0);
    for threads in [1, 2, 3] {
        let implicit = report::report_file(&path, &cfg, None, 0, threads)
            .unwrap()
            .to_json();
        assert_eq!(implicit, explicit, "now = latest event, {threads} threads");
        let again = report::report_file(&path, &cfg, Some(now), 0, threads)
            .unwrap()
            .to_json();
        assert_eq!(again, explicit, "--now, {threads} threads");
    }
    // And the binary says the same, with any `--threads`.
    let cli = report_json(&path, None, None);
    assert_json_eq(&cli, &explicit);
    let p = path.display().to_string();
    for n in ["1", "3"] {
        let out = report(&["--input", &p, "--format", "json", "--threads", n]);
        assert!(out.status.success(), "--threads {n}: {out:?}");
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_json_eq(&doc, &explicit);
    }
    // A pipe (`--input /dev/stdin`): no size to read ahead, streamed the
    // same. The 2 MiB are written by another thread while the binary
    // reads, so the pipe's buffer never fills both ways.
    let mut cmd = std::process::Command::new(crate::common::BIN);
    cmd.args(["report", "--input", "/dev/stdin", "--format", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CONNECTOR_GA__")) {
        cmd.env_remove(k);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "/dev/stdin: {out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_json_eq(&doc, &explicit);
    for bad in ["many", "257"] {
        let out = report(&["--input", &p, "--threads", bad]);
        assert!(!out.status.success(), "--threads {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--threads") && err.contains(bad), "{err}");
    }
}
