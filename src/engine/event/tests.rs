//! Unit tests of decoding and validation (SPEC §2).

use super::*;
use crate::engine::classify::Cloud;

fn one(s: &str) -> Result<Event<'_>, Reject> {
    let mut out = Vec::new();
    let n = decode_payload(s.as_bytes(), |r| out.push(r));
    assert_eq!(n, 1, "{s}");
    out.pop().unwrap()
}

fn reason(s: &str) -> Reject {
    one(s).unwrap_err()
}

#[test]
fn valid_minimal_event_defaults() {
    let e = one(r#"{"ts":"2026-11-20T10:00:00Z","connector":"shared_a"}"#).unwrap();
    assert_eq!(e.cloud, Cloud::Public);
    assert_eq!(e.status, None);
    assert_eq!(e.ts, 1_795_168_800_000_000);
    assert_eq!(e.connector, "shared_a");
}

#[test]
fn epoch_millis_and_offsets() {
    // 2026-11-13T23:59:59Z = 1794614399 s (as in the worked example).
    let e = one(r#"{"ts":1794614399000,"connector":"x"}"#).unwrap();
    assert_eq!(e.ts, 1_794_614_399_000_000);
    let e = one(r#"{"ts":"2026-11-17T01:00:00+02:00","connector":"x"}"#).unwrap();
    let z = one(r#"{"ts":"2026-11-16T23:00:00Z","connector":"x"}"#).unwrap();
    assert_eq!(e.ts, z.ts);
}

#[test]
fn rejection_reasons_table() {
    let cases: &[(&str, Reject)] = &[
        ("not json", Reject::MalformedJson),
        ("42", Reject::MalformedJson),
        ("\"str\"", Reject::MalformedJson),
        (r#"{"connector":"x"}"#, Reject::MissingField),
        (r#"{"ts":null,"connector":"x"}"#, Reject::MissingField),
        (r#"{"ts":"2026-11-20T10:00:00Z"}"#, Reject::MissingField),
        (r#"{"ts":1.5,"connector":"x"}"#, Reject::InvalidTimestamp),
        (r#"{"ts":true,"connector":"x"}"#, Reject::InvalidTimestamp),
        (
            r#"{"ts":"2026-11-20","connector":"x"}"#,
            Reject::InvalidTimestamp,
        ),
        (
            r#"{"ts":"2026-02-30T10:00:00Z","connector":"x"}"#,
            Reject::InvalidTimestamp,
        ),
        (
            r#"{"ts":"yesterday","connector":"x"}"#,
            Reject::InvalidTimestamp,
        ),
        (r#"{"ts":1,"connector":"_x"}"#, Reject::InvalidConnector),
        (r#"{"ts":1,"connector":""}"#, Reject::InvalidConnector),
        (r#"{"ts":1,"connector":"a b"}"#, Reject::InvalidConnector),
        (r#"{"ts":1,"connector":7}"#, Reject::InvalidConnector),
        (
            r#"{"ts":1,"connector":"x","cloud":"atlantis"}"#,
            Reject::UnknownCloud,
        ),
        (
            r#"{"ts":1,"connector":"x","cloud":"PUBLIC"}"#,
            Reject::UnknownCloud,
        ),
        (
            r#"{"ts":1,"connector":"x","status":"200"}"#,
            Reject::InvalidStatus,
        ),
        (
            r#"{"ts":1,"connector":"x","status":200.0}"#,
            Reject::InvalidStatus,
        ),
        (
            r#"{"ts":1,"connector":"x","status":600}"#,
            Reject::InvalidStatus,
        ),
        (
            r#"{"ts":1,"connector":"x","status":99}"#,
            Reject::InvalidStatus,
        ),
        (
            r#"{"ts":1,"connector":"x","status":-1}"#,
            Reject::InvalidStatus,
        ),
        (
            r#"{"ts":1,"connector":"x","fault":"user"}"#,
            Reject::InvalidFault,
        ),
        (
            r#"{"ts":1,"connector":"x","fault":1}"#,
            Reject::InvalidFault,
        ),
        (
            r#"{"ts":1,"connector":"x","latency_ms":-1}"#,
            Reject::InvalidLatency,
        ),
        (
            r#"{"ts":1,"connector":"x","latency_ms":"5"}"#,
            Reject::InvalidLatency,
        ),
        (r#"{"ts":1,"connector":"x","user":""}"#, Reject::InvalidId),
        (
            r#"{"ts":1,"connector":"x","connection":5}"#,
            Reject::InvalidId,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(reason(input), *want, "{input}");
    }
    let long = "u".repeat(257);
    assert_eq!(
        reason(&format!(r#"{{"ts":1,"connector":"x","user":"{long}"}}"#)),
        Reject::InvalidId
    );
    let ok = "u".repeat(256);
    assert!(one(&format!(r#"{{"ts":1,"connector":"x","user":"{ok}"}}"#)).is_ok());
}

#[test]
fn first_reason_in_order_wins() {
    // Both cloud and status are bad: unknown_cloud comes first.
    assert_eq!(
        reason(r#"{"ts":1,"connector":"x","cloud":"?","status":"x"}"#),
        Reject::UnknownCloud
    );
    // A bad timestamp beats a bad connector.
    assert_eq!(
        reason(r#"{"ts":"no","connector":"_"}"#),
        Reject::InvalidTimestamp
    );
}

#[test]
fn null_is_absent_and_unknown_fields_ignored() {
    let e = one(
        r#"{"ts":1,"connector":"x","cloud":null,"status":null,"fault":null,"latency_ms":null,"user":null,"connection":null,"extra":{"a":[1,2]}}"#,
    )
    .unwrap();
    assert_eq!(e.cloud, Cloud::Public);
    assert_eq!(e.status, None);
    assert_eq!(e.user, None);
    assert_eq!(
        one(r#"{"ts":1,"connector":"x","status":0}"#)
            .unwrap()
            .status,
        None
    );
}

#[test]
fn batches_array_and_ndjson() {
    let mut got = Vec::new();
    let payload = b"[{\"ts\":1,\"connector\":\"a\"}, 5, {\"ts\":1}]\n";
    let n = decode_payload(payload, |r| got.push(r.map(|e| e.connector.to_string())));
    assert_eq!(n, 3);
    assert_eq!(
        got,
        vec![
            Ok("a".into()),
            Err(Reject::MalformedJson),
            Err(Reject::MissingField)
        ]
    );

    got.clear();
    let payload = b"{\"ts\":1,\"connector\":\"a\"}\n{broken\n\n[{\"ts\":1,\"connector\":\"b\"},{\"ts\":1,\"connector\":\"c\"}]\n{\"ts\":1,\"connector\":\"d\"}";
    let n = decode_payload(payload, |r| got.push(r.map(|e| e.connector.to_string())));
    assert_eq!(n, 5);
    assert_eq!(
        got,
        vec![
            Ok("a".into()),
            Err(Reject::MalformedJson),
            Ok("b".into()),
            Ok("c".into()),
            Ok("d".into())
        ]
    );
}

#[test]
fn pretty_printed_object_is_one_event() {
    let mut got = 0;
    let n = decode_payload(b"{\n \"ts\": 1,\n \"connector\": \"a\"\n}\n", |r| {
        assert!(r.is_ok());
        got += 1
    });
    assert_eq!((n, got), (1, 1));
}

#[test]
fn escaped_strings_are_owned_and_equal() {
    let e = one(r#"{"ts":1,"connector":"a\u0062","user":"x\"y"}"#).unwrap();
    assert_eq!(e.connector, "ab");
    assert_eq!(e.user.as_deref(), Some("x\"y"));
}
