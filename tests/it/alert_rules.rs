//! `connector-ga-exporter rules` (SPEC §11) against the real promtool:
//! `promtool check rules` passes on the output for several configs, and the
//! committed `deploy/prometheus` file is the output for the default config
//! (deploy/check.sh runs the hand-worked `promtool test rules` on it).
//! Without promtool the tests skip, except under CI (`CI` set), where they
//! fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use connector_ga_exporter::config::Config;
use connector_ga_exporter::rules;

/// `promtool`, or None (skip) when it is missing outside CI.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if found {
        return Some("promtool");
    }
    if std::env::var_os("CI").is_some() {
        panic!("promtool not found, and CI is set: install it (apt-get install prometheus)");
    }
    eprintln!("SKIP: promtool not found (set CI to make this a failure)");
    None
}

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn check_rules(promtool: &str, file: &Path) -> Result<(), String> {
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(file)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Configs at the edges of what validates: budgets of 0 and 1, isv, a short
/// and a long criteria window, thresholds with many digits, a slow
/// checkpoint interval.
const CONFIGS: &[&str] = &[
    "",
    "[criteria]\nsuccess_rate_formula = \"isv\"",
    "[criteria]\navailability = 1.0\nsuccess_rate = 1.0\nslo = 1.0",
    "[criteria]\navailability = 0.0\nsuccess_rate = 0.0\nexception_success_rate = 0.0",
    "[criteria]\nwindow_days = 7\navailability = 0.999\nsuccess_rate = 0.95",
    "[criteria]\nwindow_days = 55\nretention_days = 60\navailability = 0.123456789012345\nsuccess_rate = 0.987654321",
    "[criteria]\navailability = 0.99999\nsuccess_rate = 0.5\nsuccess_rate_formula = \"isv\"\n[state]\ncheckpoint_interval_seconds = 3600",
];

#[test]
fn promtool_accepts_the_rules_of_every_config() {
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, toml) in CONFIGS.iter().enumerate() {
        let cfg = Config::from_toml(toml).unwrap_or_else(|e| panic!("config {toml:?}: {e}"));
        let text = rules::render(&cfg).unwrap();
        let path = dir.path().join(format!("rules-{i}.yml"));
        std::fs::write(&path, &text).unwrap();
        if let Err(e) = check_rules(promtool, &path) {
            failures.push(format!("config {toml:?}:\n{e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn promtool_rejects_a_broken_rule_file() {
    // The check above can fail: promtool does reject a bad expression.
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let text = rules::render(&Config::from_toml("").unwrap())
        .unwrap()
        .replacen("{cloud!=\"all\"} > 14.4", "{cloud!=\"all\"} > > 14.4", 1);
    let path = dir.path().join("broken.yml");
    std::fs::write(&path, text).unwrap();
    assert!(check_rules(promtool, &path).is_err());
}

#[test]
fn committed_rules_are_the_output_for_the_default_config() {
    let committed =
        std::fs::read_to_string(repo("deploy/prometheus/connector-ga-rules.yml")).unwrap();
    let generated = rules::render(&Config::from_toml("").unwrap()).unwrap();
    assert!(
        committed == generated,
        "deploy/prometheus/connector-ga-rules.yml is stale: regenerate it with \
         `target/release/connector-ga-exporter rules > deploy/prometheus/connector-ga-rules.yml`"
    );
}
