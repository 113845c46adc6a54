//! Unit tests of the rule file: structure, exact thresholds, the isv and
//! zero-budget variants. Expected numbers are worked out by hand beside each
//! assertion. promtool itself runs in tests/it/alert_rules.rs.

use std::str::FromStr;

use bigdecimal::BigDecimal;

use super::numbers::plain;
use super::*;

fn cfg(toml: &str) -> Config {
    Config::from_toml(toml).expect("valid config")
}

fn rules_of(file: &RuleFile) -> impl Iterator<Item = &Rule> {
    file.groups.iter().flat_map(|g| g.rules.iter())
}

fn expr_of<'a>(file: &'a RuleFile, name: &str) -> &'a str {
    rules_of(file)
        .find(|r| r.record.as_deref() == Some(name) || r.alert.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no rule {name}"))
        .expr
        .as_str()
}

fn has(file: &RuleFile, name: &str) -> bool {
    rules_of(file).any(|r| r.record.as_deref() == Some(name) || r.alert.as_deref() == Some(name))
}

#[test]
fn output_parses_back_to_the_same_rules() {
    for toml in [
        "",
        "[criteria]\nsuccess_rate_formula = \"isv\"",
        "[criteria]\navailability = 1.0\nsuccess_rate = 0.0",
    ] {
        let c = cfg(toml);
        let text = render(&c).unwrap();
        let back: RuleFile = serde_norway::from_str(&text).expect("the output is YAML");
        assert_eq!(back, build(&c).unwrap(), "config {toml:?}");
        // Every line before `groups:` is a comment.
        let body = text.find("\ngroups:\n").expect("groups key");
        assert!(text[..body].lines().all(|l| l.starts_with('#')));
    }
}

#[test]
fn every_alert_of_spec_section_11_is_there() {
    let f = build(&cfg("")).unwrap();
    let alerts: Vec<&str> = rules_of(&f).filter_map(|r| r.alert.as_deref()).collect();
    assert_eq!(
        alerts,
        [
            "ConnectorAvailabilityBurnRateFast",
            "ConnectorAvailabilityBurnRateMedium",
            "ConnectorAvailabilityBurnRateSlow",
            "ConnectorSuccessRateBurnRateFast",
            "ConnectorSuccessRateBurnRateMedium",
            "ConnectorSuccessRateBurnRateSlow",
            "ConnectorGAStatusLeftEligible",
            "ConnectorSuccessRateLow",
            "ConnectorGAExporterDown",
            "ConnectorGAExporterMetricsAbsent",
            "ConnectorGAKafkaDisconnected",
            "ConnectorGAConsumerLagGrowing",
            "ConnectorGACheckpointStale",
            "ConnectorGANoTasksOwned",
            "ConnectorGACheckpointFailing",
            "ConnectorGAEventsRejectedRising",
            "ConnectorGAUndecodableMessages",
        ]
    );
    // Every alert has a severity, a summary, a description with a runbook.
    for r in rules_of(&f).filter(|r| r.alert.is_some()) {
        assert!(r.labels.contains_key("severity"), "{:?}", r.alert);
        assert!(r.annotations["description"].contains("Runbook: deploy/README.md#"));
        assert!(r.annotations.contains_key("summary"));
    }
}

#[test]
fn burn_rate_windows_and_factors_follow_spec() {
    let f = build(&cfg("")).unwrap();
    // 14.4x over 1h and 5m, 6x over 6h and 30m page; 1x over 3d and 6h tickets.
    for (obj, camel) in [
        ("availability", "Availability"),
        ("success_rate", "SuccessRate"),
    ] {
        for (suffix, long, short, factor, severity) in [
            ("Fast", "1h", "5m", "14.4", "critical"),
            ("Medium", "6h", "30m", "6", "critical"),
            ("Slow", "3d", "6h", "1", "warning"),
        ] {
            let name = format!("Connector{camel}BurnRate{suffix}");
            let rule = rules_of(&f)
                .find(|r| r.alert.as_deref() == Some(name.as_str()))
                .unwrap();
            assert_eq!(
                rule.expr,
                format!(
                    "connector_cloud:{obj}_burn_rate:rate{long}{{cloud!=\"all\"}} > {factor}\n\
                     and on (connector, cloud)\n\
                     connector_cloud:{obj}_burn_rate:rate{short}{{cloud!=\"all\"}} > {factor}"
                )
            );
            assert_eq!(rule.labels["severity"], severity);
            assert_eq!(rule.labels["slo"], obj);
            assert_eq!(rule.labels["window"], long);
        }
    }
    for factor in BURN_ALERTS.iter().map(|a| a.factor) {
        assert!(BigDecimal::from_str(factor).is_ok(), "{factor}");
    }
}

#[test]
fn default_budgets_are_exact() {
    let c = cfg("");
    let f = build(&c).unwrap();
    // 1 - 0.9995 = 0.0005; in f64 it is 0.0004999999999999449.
    assert_eq!(
        expr_of(&f, "connector_cloud:availability_burn_rate:rate1h"),
        "connector_cloud:availability_error_ratio:rate1h / 0.0005"
    );
    // 1 - 0.8 = 0.2; in f64 it is 0.19999999999999996.
    assert_eq!(
        expr_of(&f, "connector_cloud:success_rate_burn_rate:rate3d"),
        "connector_cloud:success_rate_error_ratio:rate3d / 0.2"
    );
    assert_eq!(
        expr_of(
            &f,
            "connector_cloud:availability_error_budget_remaining:ratio30d"
        ),
        "1 - (1 - connector_availability_ratio{window=\"30d\"}) / 0.0005"
    );
    assert_eq!(
        expr_of(&f, "ConnectorSuccessRateLow"),
        "connector_success_ratio{window=\"30d\"} <= 0.8\nand on (connector, cloud)\n\
         connector_ga_criterion_met{criterion=\"success_rate\"} == 0"
    );
    let text = render(&c).unwrap();
    assert!(text.contains("#   error budget = 1 - 0.9995 = 0.0005\n"));
    assert!(text.contains("#   error budget = 1 - 0.8 = 0.2 "));
    // 0.05 % = 0.0005 x 100; 80 % = 0.8 x 100.
    assert!(text.contains("(0.05 % of eligible requests: availability >= 0.9995)"));
    // 0.5 x 100 = 50 % for the exception path.
    assert!(text.contains("needs more than 80 % (50 % on the exception path)."));
}

#[test]
fn odd_thresholds_print_exactly() {
    // (threshold, 1 - threshold by hand, threshold x 100 by hand)
    for (t, budget, pct) in [
        ("0.9", "0.1", "90"),                         // f64: 0.09999999999999998
        ("0.999", "0.001", "99.9"),                   // f64: 0.0010000000000000009
        ("0.99999", "0.00001", "99.999"),             // f64: 1.0000000000065512e-5
        ("0.123456789", "0.876543211", "12.3456789"), // f64: 0.876543211
        ("0.7", "0.3", "70"),                         // f64: 0.30000000000000004
        ("0.95", "0.05", "95"),                       // f64: 0.050000000000000044
    ] {
        let f = build(&cfg(&format!(
            "[criteria]\navailability = {t}\nsuccess_rate = {t}"
        )))
        .unwrap();
        assert_eq!(
            expr_of(&f, "connector_cloud:availability_burn_rate:rate5m"),
            format!("connector_cloud:availability_error_ratio:rate5m / {budget}")
        );
        assert_eq!(
            expr_of(&f, "connector_cloud:success_rate_burn_rate:rate30m"),
            format!("connector_cloud:success_rate_error_ratio:rate30m / {budget}")
        );
        let text = render(&cfg(&format!("[criteria]\navailability = {t}"))).unwrap();
        assert!(
            text.contains(&format!("#   error budget = 1 - {t} = {budget}\n")),
            "{t}"
        );
        assert!(text.contains(&format!("availability >= {t})")), "{t}");
        assert!(text.contains(&format!("error budget ({} % of", {
            // the budget as a percentage: 100 - pct
            let b = BigDecimal::from(100) - BigDecimal::from_str(pct).unwrap();
            plain(&b)
        })));
    }
}

#[test]
fn isv_doubles_the_failures() {
    let f = build(&cfg("[criteria]\nsuccess_rate_formula = \"isv\"")).unwrap();
    // (E - 2F) / E > s  <=>  2F / E < 1 - s: error ratio 2F / E, at most 2.
    let e = expr_of(&f, "connector_cloud:success_rate_error_ratio:rate1h");
    assert!(
        e.contains("2 * connector_cloud:success_rate_bad_requests:rate1h\n"),
        "{e}"
    );
    assert!(
        e.contains("2 * connector:success_rate_bad_requests:rate1h\n"),
        "{e}"
    );
    assert!(e.ends_with("  0, 2\n)"), "{e}");
    // Availability is untouched by the success-rate formula.
    let a = expr_of(&f, "connector_cloud:availability_error_ratio:rate1h");
    assert!(!a.contains("2 *") && a.ends_with("  0, 1\n)"), "{a}");
    let text = render(&cfg("[criteria]\nsuccess_rate_formula = \"isv\"")).unwrap();
    assert!(text.contains("error ratio  = 1 - success rate = 2F / E"));
    // With isv the ratio reaches 2: 6 x 0.2 = 1.2 is reachable, 14.4 x 0.2 =
    // 2.88 is not.
    assert!(text.contains("#   Fast: 14.4x needs an error ratio above 2.88\n"));
    assert!(!text.contains("#   Medium: 6x"));
}

#[test]
fn ga_formula_notes_the_unreachable_success_rate_pages() {
    let text = render(&cfg("")).unwrap();
    // Budget 0.2: 14.4 x 0.2 = 2.88 and 6 x 0.2 = 1.2 are above the largest
    // error ratio, 1; 1 x 0.2 = 0.2 is not. Availability: 14.4 x 0.0005 =
    // 0.0072, reachable.
    assert!(text.contains(
        "# With a success_rate budget of 0.2, the error ratio (at most 1) never reaches:\n\
         #   Fast: 14.4x needs an error ratio above 2.88\n\
         #   Medium: 6x needs an error ratio above 1.2\n"
    ));
    assert!(!text.contains("With a availability budget"));
}

#[test]
fn zero_budget_alerts_on_any_error_and_never_divides_by_zero() {
    let c = cfg("[criteria]\navailability = 1.0");
    let f = build(&c).unwrap();
    assert!(!has(&f, "connector_cloud:availability_burn_rate:rate1h"));
    assert!(!has(
        &f,
        "connector_cloud:availability_error_budget_remaining:ratio30d"
    ));
    assert!(has(&f, "connector_cloud:success_rate_burn_rate:rate1h"));
    assert_eq!(
        expr_of(&f, "ConnectorAvailabilityBurnRateFast"),
        "connector_cloud:availability_error_ratio:rate1h{cloud!=\"all\"} > 0\n\
         and on (connector, cloud)\n\
         connector_cloud:availability_error_ratio:rate5m{cloud!=\"all\"} > 0"
    );
    let text = render(&c).unwrap();
    assert!(!text.contains("/ 0\n") && !text.contains("/ 0)"));
    assert!(text.contains("#   error budget = 1 - 1 = 0\n"));
}

#[test]
fn criteria_window_names_the_window_and_the_budget_share() {
    let c = cfg("[criteria]\nwindow_days = 7");
    let f = build(&c).unwrap();
    assert_eq!(
        expr_of(
            &f,
            "connector_cloud:availability_error_budget_remaining:ratio7d"
        ),
        "1 - (1 - connector_availability_ratio{window=\"7d\"}) / 0.0005"
    );
    assert!(expr_of(&f, "ConnectorSuccessRateLow")
        .starts_with("connector_success_ratio{window=\"7d\"}"));
    let text = render(&c).unwrap();
    // 7 days = 168 h. 14.4 x 1 / 168 = 8.571..%, 6 x 6 / 168 = 21.428..%,
    // 1 x 72 / 168 = 42.857..%.
    assert!(
        text.contains("(page): about 8.57 % of the budget in 1h"),
        "{text}"
    );
    assert!(text.contains("(page): about 21.43 % of the budget in 6h"));
    assert!(text.contains("(ticket): about 42.86 % of the budget in 3d"));
    // 30 days = 720 h: 14.4 / 720 = 2 %, 36 / 720 = 5 %, 72 / 720 = 10 %.
    let text = render(&cfg("")).unwrap();
    assert!(text.contains("(page): 2 % of the budget in 1h"));
    assert!(text.contains("(page): 5 % of the budget in 6h"));
    assert!(text.contains("(ticket): 10 % of the budget in 3d"));
}

#[test]
fn checkpoint_stale_follows_a_long_interval() {
    let stale = |toml: &str| {
        let f = build(&cfg(toml)).unwrap();
        expr_of(&f, "ConnectorGACheckpointStale").to_string()
    };
    // 15 minutes = 900 s unless 3 intervals are longer: 3 x 600 = 1800.
    assert!(stale("").contains("> 900\n"));
    assert!(stale("[state]\ncheckpoint_interval_seconds = 300").contains("> 900\n"));
    assert!(stale("[state]\ncheckpoint_interval_seconds = 600").contains("> 1800\n"));
}

#[test]
fn undecodable_messages_alert_at_any_rate() {
    let f = build(&cfg("")).unwrap();
    let r = rules_of(&f)
        .find(|r| r.alert.as_deref() == Some("ConnectorGAUndecodableMessages"))
        .unwrap();
    assert!(r.expr.contains("{reason=\"undecodable_message\"}"));
    assert!(r.expr.ends_with("> 0"));
    assert_eq!(r.for_, None);
}
