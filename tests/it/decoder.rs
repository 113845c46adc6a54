//! SPEC §2's pinned decoder edges (issue 10 item 7), table-driven: each
//! payload's expected sequence of events (the connector of a valid one, or
//! the rejection reason), worked out by hand from SPEC §2.

use connector_ga_exporter::config::Config;
use connector_ga_exporter::engine::event::{self, Reject};
use connector_ga_exporter::engine::timeutil;
use connector_ga_exporter::report;

use Reject::*;

/// What one event decodes to: `Ok(connector)` or the reason.
type Got = Result<String, Reject>;

fn ok(c: &str) -> Got {
    Ok(c.to_string())
}

fn decode(payload: &[u8]) -> Vec<Got> {
    let mut out = Vec::new();
    let n = event::decode_payload(payload, |r| out.push(r.map(|e| e.connector.into_owned())));
    assert_eq!(n as usize, out.len());
    out
}

/// Also each line alone through `decode_line` (the report's streaming
/// reader) must agree with the whole payload when it is NDJSON.
fn decode_lines(payload: &[u8]) -> Vec<Got> {
    let mut out = Vec::new();
    for line in payload.split(|&b| b == b'\n') {
        event::decode_line(line, &mut |r: Result<event::Event<'_>, Reject>| {
            out.push(r.map(|e| e.connector.into_owned()))
        });
    }
    out
}

/// `report` over `path` with `threads` threads (default config, `now` the
/// latest event) counts `malformed` rejections, all `malformed_json`, and
/// `requests` in its scope `all`.
fn report_has(path: &std::path::Path, threads: usize, malformed: u64, requests: u64) {
    let cfg = Config::from_toml("").unwrap();
    let r = report::report_file(path, &cfg, None, 0, threads).unwrap();
    assert_eq!(r.rejected.total(), malformed, "{threads} threads");
    assert_eq!(
        r.rejected.get(Reject::MalformedJson),
        malformed,
        "{threads} threads"
    );
    let all = r
        .scopes
        .iter()
        .find(|s| s.measures.cloud_label() == "all")
        .unwrap();
    assert_eq!(
        all.measures.criteria().counts.requests,
        requests,
        "{threads} threads"
    );
}

const A: &str = r#"{"ts":1,"connector":"a"}"#;
const C: &str = r#"{"ts":1,"connector":"c"}"#;

#[test]
fn duplicate_keys_reject_that_object_only() {
    let cases: Vec<(String, Vec<Got>)> = vec![
        // Known key twice, in an array: only the middle element.
        (
            format!(r#"[{A},{{"ts":1,"connector":"b","ts":2}},{C}]"#),
            vec![ok("a"), Err(MalformedJson), ok("c")],
        ),
        // Same in NDJSON: only the middle line.
        (
            format!("{A}\n{{\"ts\":1,\"connector\":\"b\",\"connector\":\"b\"}}\n{C}"),
            vec![ok("a"), Err(MalformedJson), ok("c")],
        ),
        // An unknown key twice.
        (
            r#"{"ts":1,"connector":"a","op":1,"op":2}"#.into(),
            vec![Err(MalformedJson)],
        ),
        // A key written with an escape is the same key: "t\u0073" is "ts".
        (
            r#"{"ts":1,"connector":"a","t\u0073":2}"#.into(),
            vec![Err(MalformedJson)],
        ),
        // null then a value is still the key twice.
        (
            r#"{"ts":1,"connector":"a","user":null,"user":"u"}"#.into(),
            vec![Err(MalformedJson)],
        ),
        // 20 distinct unknown keys (past the short list), then one again.
        (
            format!(
                r#"{{"ts":1,"connector":"a",{}"k7":0}}"#,
                (0..20).map(|i| format!(r#""k{i}":0,"#)).collect::<String>()
            ),
            vec![Err(MalformedJson)],
        ),
        (
            format!(
                r#"{{"ts":1,"connector":"a",{}"k20":0}}"#,
                (0..20).map(|i| format!(r#""k{i}":0,"#)).collect::<String>()
            ),
            vec![ok("a")],
        ),
        // The event's own keys only: a nested object is an ignored value.
        (
            r#"{"ts":1,"connector":"a","extra":{"ts":1,"ts":2}}"#.into(),
            vec![ok("a")],
        ),
        // A pretty-printed (multi-line) array: one value, one bad element.
        (
            format!(
                "[\n  {A},\n  {{\"ts\":1,\n   \"connector\":\"b\",\n   \"ts\":1}},\n  {C}\n]\n"
            ),
            vec![ok("a"), Err(MalformedJson), ok("c")],
        ),
    ];
    for (input, want) in &cases {
        assert_eq!(&decode(input.as_bytes()), want, "{input}");
    }
}

/// Regression: sonic-rs skips a nested value by recursion with no limit,
/// and a line of 100,000 `[` overflowed the stack (`report` aborted).
/// Depth alone decides nothing: a deep line that is not JSON (unclosed) or
/// not an event is one `malformed_json`, the line alone; a deep value in
/// an ignored field of a valid event is valid JSON, skipped.
#[test]
fn deep_nesting_is_malformed_not_a_crash() {
    let deep = |n: usize| "[".repeat(n);
    let balanced = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let with_extra = |v: &str| format!(r#"{{"ts":1,"connector":"b","extra":{v}}}"#);
    let cases: Vec<(String, Vec<Got>)> = vec![
        (deep(100_000), vec![Err(MalformedJson)]),
        (
            format!("{A}\n{}\n{C}", deep(100_000)),
            vec![ok("a"), Err(MalformedJson), ok("c")],
        ),
        (
            format!("{A}\n{}\n{C}", balanced(100_000)),
            vec![ok("a"), Err(MalformedJson), ok("c")],
        ),
        (
            format!("{A}\n{}\n{C}", with_extra(&deep(100_000))),
            vec![ok("a"), Err(MalformedJson), ok("c")],
        ),
        // Objects nest too.
        (
            format!("{A}\n{}\n{C}", with_extra(&r#"{"k":"#.repeat(100_000))),
            vec![ok("a"), Err(MalformedJson), ok("c")],
        ),
        // Closed, in an ignored field: valid JSON, a valid event.
        (
            format!("{A}\n{}\n{C}", with_extra(&balanced(100))),
            vec![ok("a"), ok("b"), ok("c")],
        ),
        // Brackets inside a string are text, not nesting.
        (
            format!("{A}\n{}\n{C}", with_extra(&format!("\"{}\"", deep(1_000)))),
            vec![ok("a"), ok("b"), ok("c")],
        ),
        (
            format!("{A}\n{}\n{C}", with_extra(&balanced(100_000))),
            vec![ok("a"), ok("b"), ok("c")],
        ),
    ];
    for (input, want) in &cases {
        let shown = &input[..input.len().min(80)];
        assert_eq!(&decode(input.as_bytes()), want, "{shown}");
        assert_eq!(&decode_lines(input.as_bytes()), want, "{shown}");
    }
    // And through `report`, which reads a small file whole on the calling
    // thread, the one that overflowed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.ndjson");
    let text = format!(
        "{}\n{}\n{}\n",
        r#"{"ts":"2026-11-20T10:00:00Z","connector":"c","status":200}"#,
        balanced(100_000),
        r#"{"ts":"2026-11-20T10:00:01Z","connector":"c","status":200}"#
    );
    std::fs::write(&path, text).unwrap();
    for threads in [1, 2] {
        report_has(&path, threads, 1, 2);
    }
}

#[test]
fn byte_order_mark_at_the_start_is_ignored() {
    let bom = "\u{feff}";
    let cases: Vec<(String, Vec<Got>)> = vec![
        (format!("{bom}{A}"), vec![ok("a")]),
        (format!("{bom}{A}\n{C}\n"), vec![ok("a"), ok("c")]),
        (format!("{bom}[{A},{C}]"), vec![ok("a"), ok("c")]),
        // Only at the start of the message: elsewhere it is not JSON.
        (format!("{A}\n{bom}{C}"), vec![ok("a"), Err(MalformedJson)]),
    ];
    for (input, want) in &cases {
        assert_eq!(&decode(input.as_bytes()), want, "{input:?}");
    }
}

#[test]
fn integer_timestamp_range() {
    // 253402300799999 ms = 9999-12-31T23:59:59.999Z: the last valid one.
    let cases: &[(&str, Result<i64, Reject>)] = &[
        ("0", Ok(0)),
        ("253402300799999", Ok(253_402_300_799_999_000)),
        ("253402300800000", Err(InvalidTimestamp)),
        ("-1", Err(InvalidTimestamp)),
        ("9223372036854775807", Err(InvalidTimestamp)),
        ("18446744073709551615", Err(InvalidTimestamp)),
        ("1e400", Err(InvalidTimestamp)),
    ];
    for (ts, want) in cases {
        let input = format!(r#"{{"ts":{ts},"connector":"a"}}"#);
        let mut got = Vec::new();
        event::decode_payload(input.as_bytes(), |r| got.push(r.map(|e| e.ts)));
        assert_eq!(got, vec![*want], "{input}");
    }
    assert_eq!(
        timeutil::parse_rfc3339("9999-12-31T23:59:59.999Z"),
        Some(253_402_300_799_999_000)
    );
}

#[test]
fn numbers_out_of_range_are_the_fields_reason() {
    let cases: Vec<(String, Vec<Got>)> = vec![
        (
            r#"{"ts":1,"connector":"a","latency_ms":1e400}"#.into(),
            vec![Err(InvalidLatency)],
        ),
        (
            r#"{"ts":1,"connector":"a","latency_ms":-1e400}"#.into(),
            vec![Err(InvalidLatency)],
        ),
        (
            r#"{"ts":1,"connector":"a","status":1e400}"#.into(),
            vec![Err(InvalidStatus)],
        ),
        // Rejection order still holds: the timestamp comes first.
        (
            r#"{"ts":1e400,"connector":"_","latency_ms":1e400}"#.into(),
            vec![Err(InvalidTimestamp)],
        ),
        // An unknown field may hold any number.
        (
            r#"{"ts":1,"connector":"a","x":1e400}"#.into(),
            vec![ok("a")],
        ),
        // Only that element of its array.
        (
            format!(r#"[{A},{{"ts":1,"connector":"b","latency_ms":1e400}},{C}]"#),
            vec![ok("a"), Err(InvalidLatency), ok("c")],
        ),
    ];
    for (input, want) in &cases {
        assert_eq!(&decode(input.as_bytes()), want, "{input}");
    }
}

#[test]
fn invalid_utf8_makes_its_event_malformed() {
    // `~` marks where a byte 0xFF (never valid in UTF-8) is put.
    let bad = |s: &str| -> Vec<u8> {
        s.bytes()
            .map(|c| if c == b'~' { 0xFF } else { c })
            .collect()
    };
    let cases: Vec<(Vec<u8>, Vec<Got>)> = vec![
        // In a known field, in an unknown field, in a key: all the same.
        (bad(r#"{"ts":1,"connector":"a~"}"#), vec![Err(MalformedJson)]),
        (bad(r#"{"ts":1,"connector":"a","user":"~"}"#), vec![Err(MalformedJson)]),
        (bad(r#"{"ts":1,"connector":"a","op":"~"}"#), vec![Err(MalformedJson)]),
        (bad(r#"{"ts":1,"connector":"a","~":1}"#), vec![Err(MalformedJson)]),
        // A truncated two-byte character (0xC3 alone) is invalid too.
        (
            br#"{"ts":1,"connector":"a","op":""#
                .iter()
                .copied()
                .chain([0xC3, b'"', b'}'])
                .collect(),
            vec![Err(MalformedJson)],
        ),
        // Only that element, only that line, also in a multi-line array.
        (
            bad(&format!(r#"[{A},{{"ts":1,"connector":"b","op":"~"}},{C}]"#)),
            vec![ok("a"), Err(MalformedJson), ok("c")],
        ),
        (
            bad(&format!("{A}\n{{\"ts\":1,\"connector\":\"b\",\"op\":\"~\"}}\n{C}")),
            vec![ok("a"), Err(MalformedJson), ok("c")],
        ),
        (
            bad(&format!("[\n {A},\n {{\"ts\":1,\n  \"connector\":\"b~\"}},\n {C}\n]")),
            vec![ok("a"), Err(MalformedJson), ok("c")],
        ),
        // Valid multi-byte UTF-8 is fine.
        (
            r#"{"ts":1,"connector":"a","user":"é✓"}"#.as_bytes().to_vec(),
            vec![ok("a")],
        ),
    ];
    for (input, want) in &cases {
        assert_eq!(&decode(input), want, "{}", String::from_utf8_lossy(input));
        if !input.starts_with(b"[\n") {
            assert_eq!(
                &decode_lines(input),
                want,
                "lines: {}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

/// A pretty-printed array file through `report` (read whole: it cannot be
/// cut at line ends), with a BOM, seven objects:
/// 1. valid                         → counted
/// 2. duplicate "status"            → malformed_json
/// 3. valid                         → counted
/// 4. latency_ms 1e400              → invalid_latency
/// 5. invalid UTF-8 in "operation"  → malformed_json
/// 6. duplicate unknown key "op"    → malformed_json
/// 7. valid                         → counted
///
/// So requests 3, malformed_json 3, invalid_latency 1: 7 in all. Before the
/// fix the BOM and each bad object failed the whole file.
#[test]
fn report_reads_a_multiline_array_file_object_by_object() {
    let ev = |extra: &str| {
        format!(r#"  {{"ts":"2026-11-20T10:00:00Z","connector":"c","status":200{extra}}}"#)
    };
    let mut bytes: Vec<u8> = b"\xEF\xBB\xBF[\n".to_vec();
    let objects = [
        ev(""),
        ev(r#","status":500"#),
        ev(""),
        ev(r#","latency_ms":1e400"#),
        ev(r#","operation":"~""#),
        ev(r#","op":1,"op":1"#),
        ev(""),
    ];
    let body = objects.join(",\n");
    bytes.extend(body.bytes().map(|c| if c == b'~' { 0xFE } else { c }));
    bytes.extend_from_slice(b"\n]\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("array.json");
    std::fs::write(&path, &bytes).unwrap();

    let cfg = Config::from_toml("").unwrap();
    let r = report::report_file(&path, &cfg, None, 0, 2).unwrap();
    assert_eq!(r.rejected.get(MalformedJson), 3);
    assert_eq!(r.rejected.get(InvalidLatency), 1);
    assert_eq!(r.rejected.total(), 4);
    let all = r
        .scopes
        .iter()
        .find(|s| s.measures.cloud_label() == "all")
        .expect("scope c/all");
    assert_eq!(all.measures.criteria().counts.requests, 3);
}

/// A streamed file whose lines do not fit the 1 MiB chunks: one event of
/// 1.5 MiB (a long unknown field) in the middle, a line of 3 MiB that is
/// not JSON, and a last line with no newline. The chunks are cut at line
/// ends only, so by hand: 12,000 short events + the long one + the last
/// = 12,002 requests, and 1 `malformed_json`, with any number of threads.
#[test]
fn report_streams_lines_longer_than_a_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.ndjson");
    let short = |i: usize| {
        format!(
            r#"{{"ts":"2026-11-20T10:00:00Z","connector":"c","status":200,"operation":"op-{i:08}-padding-padding"}}"#
        )
    };
    let mut text = String::new();
    for i in 0..6_000 {
        text += &short(i);
        text.push('\n');
    }
    text += &format!(
        r#"{{"ts":"2026-11-20T10:00:00Z","connector":"c","status":200,"pad":"{}"}}"#,
        "x".repeat(3 << 19)
    );
    text.push('\n');
    text += &"y".repeat(3 << 20);
    text.push('\n');
    for i in 6_000..12_000 {
        text += &short(i);
        text.push('\n');
    }
    text += &short(12_000);
    assert!(text.len() > 5 << 20);
    std::fs::write(&path, &text).unwrap();
    for threads in [1, 2, 3] {
        report_has(&path, threads, 1, 12_002);
    }
}

/// A streamed NDJSON file (over 1 MiB) that starts with a BOM: every line
/// counts, the first one too. 20,000 lines of one event each.
#[test]
fn report_streams_a_file_with_a_bom() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bom.ndjson");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    for i in 0..20_000 {
        bytes.extend_from_slice(
            format!(
                r#"{{"ts":"2026-11-20T10:00:00Z","connector":"c","status":200,"operation":"op-{i:08}-padding-padding"}}"#
            )
            .as_bytes(),
        );
        bytes.push(b'\n');
    }
    // Past one 1 MiB chunk: the file is streamed.
    assert!(bytes.len() > 1 << 20);
    std::fs::write(&path, &bytes).unwrap();
    let cfg = Config::from_toml("").unwrap();
    for threads in [1, 3] {
        let r = report::report_file(&path, &cfg, None, 0, threads).unwrap();
        assert_eq!(r.rejected.total(), 0, "{threads} threads");
        let all = r
            .scopes
            .iter()
            .find(|s| s.measures.cloud_label() == "all")
            .unwrap();
        assert_eq!(all.measures.criteria().counts.requests, 20_000);
    }
}
