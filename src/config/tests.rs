//! Unit tests of loading and validation: defaults, the SPEC example, a
//! named key in every error, and the override order.

use std::path::Path;

use chrono::NaiveDate;

use super::*;
use crate::engine::classify::Fault;

fn err(toml: &str) -> String {
    Config::from_toml(toml).unwrap_err().to_string()
}

#[test]
fn defaults_match_spec() {
    let c = Config::from_toml("").unwrap();
    let k = &c.criteria;
    assert_eq!(k.window_days, 30);
    assert_eq!(k.min_eligible_requests, 1000);
    assert_eq!(k.availability, 0.9995);
    assert_eq!(k.slo, 0.995);
    assert_eq!(k.success_rate, 0.80);
    assert_eq!(k.retention_days, 35);
    assert_eq!(
        c.windows(),
        vec![
            Window::Hours(1),
            Window::Days(1),
            Window::Days(7),
            Window::Days(30)
        ]
    );
}

#[test]
fn spec_example_parses() {
    let c = Config::from_toml(
        r#"
[criteria]
window_days = 30
success_rate_formula = "isv"
unattributed_failure_origin = "backend"
[connectors.shared_contoso]
backend_in_production = true
support_model_attested = true
preview_since = 2026-03-01
"#,
    )
    .unwrap();
    assert_eq!(c.criteria.success_rate_formula, SuccessRateFormula::Isv);
    assert_eq!(c.criteria.unattributed_failure_origin, Fault::Backend);
    let k = c.connector("shared_contoso").unwrap();
    assert_eq!(k.preview_since, NaiveDate::from_ymd_opt(2026, 3, 1));
}

#[test]
fn bad_keys_are_named() {
    assert!(err("[criteria]\nwindow_dayz = 3").contains("window_dayz"));
    assert!(err("[criteria]\nwindow_days = \"x\"").contains("criteria.window_days"));
    assert!(err("[criteria]\navailability = 1.5").contains("criteria.availability"));
    // More decimals than the exact budget arithmetic takes.
    let e = err("[criteria]\nslo = 0.1234567890123456789e-3");
    assert!(
        e.contains("criteria.slo") && e.contains("decimal places"),
        "{e}"
    );
    assert!(err("[criteria]\nwindows = [\"5m\"]").contains("criteria.windows"));
    assert!(err("[criteria]\nsuccess_rate_formula = \"x\"").contains("success_rate_formula"));
    assert!(err("[http]\nlisten = \"nope\"").contains("http.listen"));
    assert!(err("[kafka]\nbrokerz = \"a\"").contains("brokerz"));
    assert!(err("[connectors.a]\nbackend = true").contains("backend"));
    assert!(err("[criteria]\nretention_days = 20").contains("criteria.window_days"));
    for bad in [
        "http://h/p",
        "ftp://b/p",
        "s3:///p",
        "not a url",
        "",
        "file://host/x",
        "file:///",
    ] {
        let e = err(&format!("[state]\nurl = {bad:?}"));
        assert!(e.contains("state.url"), "{bad:?}: {e}");
    }
    let e = err("[state]\nurl = \"http://h/p\"");
    assert!(
        e.contains("az://, azure://, abfs://, abfss://, s3://, s3a://, gs://, file://"),
        "{e}"
    );
    for good in [
        "az://c/p",
        "azure://c",
        "abfss://fs@acct.dfs.core.windows.net/p",
        "s3://b/p/q",
        "s3a://b",
        "gs://b/p",
        "file:///var/lib/x",
    ] {
        let c = Config::from_toml(&format!("[state]\nurl = {good:?}")).unwrap();
        assert_eq!(c.state.url.as_deref(), Some(good));
    }
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "[kafka]\nbrokers = \"file:1\"\ngroup_id = \"g\"\n[criteria]\nwindow_days = 30\n",
    )
    .unwrap();
    let env = vec![
        (
            "CONNECTOR_GA__KAFKA__BROKERS".to_string(),
            "env:2".to_string(),
        ),
        (
            "CONNECTOR_GA__CRITERIA__MIN_ELIGIBLE_REQUESTS".to_string(),
            "5".to_string(),
        ),
        ("CONNECTOR_GA__KAFKA__TOPICS".to_string(), "a,b".to_string()),
        (
            "CONNECTOR_GA__STATE__URL".to_string(),
            "s3://bucket/prefix".to_string(),
        ),
    ];
    let c = Config::load_with_env(Some(&p), &Overrides::default(), env.clone()).unwrap();
    assert_eq!(c.kafka.brokers, "env:2");
    assert_eq!(c.kafka.group_id, "g");
    assert_eq!(c.criteria.min_eligible_requests, 5);
    assert_eq!(c.kafka.topics, vec!["a", "b"]);
    assert_eq!(c.state.url.as_deref(), Some("s3://bucket/prefix"));
    let ov = Overrides {
        brokers: Some("flag:3".into()),
        topics: vec!["t".into()],
        ..Default::default()
    };
    let c = Config::load_with_env(Some(&p), &ov, env).unwrap();
    assert_eq!(c.kafka.brokers, "flag:3");
    assert_eq!(c.kafka.topics, vec!["t"]);
    let bad = vec![("CONNECTOR_GA__CRITERIA__SLO".to_string(), "2".to_string())];
    let e = Config::load_with_env(Some(&p), &Overrides::default(), bad).unwrap_err();
    assert!(e.to_string().contains("criteria.slo"), "{e}");
}

#[test]
fn missing_file_is_an_error() {
    let e = Config::load_with_env(
        Some(Path::new("/nonexistent/x.toml")),
        &Overrides::default(),
        vec![],
    )
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/x.toml"));
}

/// Regression: a librdkafka property could not be set from the
/// environment. The `config` crate splits keys at `.`, so
/// `…__PROPERTIES__SASL.PASSWORD` became a table, and `SASL_PASSWORD` an
/// unknown property `sasl_password`.
#[test]
fn kafka_properties_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "[kafka.properties]\n\"sasl.username\" = \"file-user\"\n\"sasl.password\" = \"file\"\n",
    )
    .unwrap();
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let c = Config::load_with_env(
        Some(&p),
        &Overrides::default(),
        env(&[
            ("CONNECTOR_GA__KAFKA__PROPERTIES__SASL_PASSWORD", "s3cret"),
            (
                "CONNECTOR_GA__KAFKA__PROPERTIES__SSL.CA.LOCATION",
                "/ca.pem",
            ),
            ("CONNECTOR_GA__KAFKA__BROKERS", "k:9092"),
        ]),
    )
    .unwrap();
    let props: Vec<(&str, &str)> = c
        .kafka
        .properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // The environment overrides the file; the file's other entry stays.
    assert_eq!(
        props,
        [
            ("sasl.password", "s3cret"),
            ("sasl.username", "file-user"),
            ("ssl.ca.location", "/ca.pem"),
        ]
    );
    assert_eq!(c.kafka.brokers, "k:9092");
    for bad in [
        "CONNECTOR_GA__KAFKA__PROPERTIES__",
        "CONNECTOR_GA__KAFKA__PROPERTIES___X",
    ] {
        let e = Config::load_with_env(Some(&p), &Overrides::default(), env(&[(bad, "v")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(bad) && e.contains("SASL_PASSWORD") && !e.contains('\n'),
            "{e}"
        );
    }
}

/// Regression: the `config` crate rounds a fractional value of an
/// integer key (`min_eligible_requests = 1.5` became 2) without a word.
#[test]
fn integer_keys_refuse_fractions() {
    for (toml, key) in [
        (
            "[criteria]\nmin_eligible_requests = 1.5\n",
            "criteria.min_eligible_requests",
        ),
        (
            "[criteria]\nweekly_active_users = 0.5\n",
            "criteria.weekly_active_users",
        ),
        ("[criteria]\nwindow_days = -30\n", "criteria.window_days"),
        ("[kafka]\nworkers = \"two\"\n", "kafka.workers"),
    ] {
        let e = err(toml);
        assert!(e.contains(key) && !e.contains('\n'), "{toml}: {e}");
    }
    // Whole numbers, also written as floats or quoted, are read as such.
    let c = Config::from_toml(
        "[criteria]\nmin_eligible_requests = 20.0\nweekly_active_users = \"7\"\n",
    )
    .unwrap();
    assert_eq!(c.criteria.min_eligible_requests, 20);
    assert_eq!(c.criteria.weekly_active_users, 7);
    let e = err("[criteria]\nwindow_days = 5000000000\n");
    assert!(
        e.contains("criteria.window_days") && e.contains("too large"),
        "{e}"
    );
}

/// Regression: `window_days = 0` was refused as if retention were short.
#[test]
fn window_days_zero_is_named_as_such() {
    let e = err("[criteria]\nwindow_days = 0\nretention_days = 60\n");
    assert!(
        e.contains("criteria.window_days") && e.contains("at least 1"),
        "{e}"
    );
}

/// Properties the daemon sets itself are refused, from the file and from
/// the environment, naming the property and what to use instead.
#[test]
fn owned_kafka_properties_are_refused() {
    let e = err("[kafka.properties]\n\"enable.auto.offset.store\" = \"true\"\n");
    assert!(
        e.contains("kafka.properties.\"enable.auto.offset.store\"")
            && e.contains("checkpoint")
            && !e.contains('\n'),
        "{e}"
    );
    let e = err("[kafka.properties]\n\"group.id\" = \"x\"\n");
    assert!(e.contains("kafka.group_id"), "{e}");
    let e = Config::load_with_env(
        None,
        &Overrides::default(),
        vec![(
            "CONNECTOR_GA__KAFKA__PROPERTIES__PARTITION_ASSIGNMENT_STRATEGY".to_string(),
            "range".to_string(),
        )],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("partition.assignment.strategy") && e.contains("cooperative-sticky"),
        "{e}"
    );
    // A property the daemon also sets but an operator may tune stays.
    let c = Config::from_toml("[kafka.properties]\n\"auto.offset.reset\" = \"latest\"\n").unwrap();
    assert_eq!(c.kafka.properties["auto.offset.reset"], "latest");
}

/// Regression: the `config` crate read `backend_in_production = 2` (or
/// `"yes"`, `"on"`) as true and `availability = true` as 1.0.
#[test]
fn flags_and_thresholds_refuse_other_types() {
    for (toml, key) in [
        (
            "[connectors.p1]\nbackend_in_production = 2\n",
            "backend_in_production",
        ),
        (
            "[connectors.p1]\nsupport_model_attested = \"yes\"\n",
            "support_model_attested",
        ),
        (
            "[kafka]\ninput_keyed_by_connector = \"on\"\n",
            "kafka.input_keyed_by_connector",
        ),
        ("[criteria]\navailability = true\n", "criteria.availability"),
        ("[criteria]\nslo = \"high\"\n", "criteria.slo"),
    ] {
        let e = err(toml);
        assert!(e.contains(key) && !e.contains('\n'), "{toml}: {e}");
    }
    let c = Config::from_toml(
        "[criteria]\navailability = 1\nslo = \"0.99\"\n[kafka]\ninput_keyed_by_connector = \"true\"\n\
         [connectors.p1]\nbackend_in_production = true\n",
    )
    .unwrap();
    assert_eq!(c.criteria.availability, 1.0);
    assert_eq!(c.criteria.slo, 0.99);
    assert!(c.kafka.input_keyed_by_connector);
    assert!(c.connector("p1").unwrap().backend_in_production);
}
