//! The fast path of [`super::parse::parse_value`]: first the scan of a flat
//! event ([`super::scan`]), else the same document visitor
//! ([`super::visitor::DocSeed`]) driven by `sonic-rs`, a SIMD JSON parser,
//! instead of `serde_json`.
//!
//! Why it gives the same verdicts: the duplicate-key, type and order rules
//! all live in the shared visitor and in `validate`, which see the same
//! values from either parser. The parsers differ only in what they refuse,
//! and any refusal here falls back to the `serde_json` path, which then
//! gives the exact reason (or reads the document leniently: sonic-rs
//! refuses a number out of `f64`'s range such as `1e400`). Nesting cannot
//! part them either: the visitor descends at most three levels (array,
//! object, field value) and skips anything deeper, which neither parser
//! limits. Rejections are rare and valid events are the hot path, so a
//! fallback costs one extra parse of a rejected document only.
//! `tests/it/decoder.rs` compares both paths on pinned edges and on
//! generated documents.
//!
//! One known difference, in a value and never a verdict: `serde_json`
//! (without its `float_roundtrip` feature) may round a float of more than
//! 15 significant digits one unit in the last place off; sonic-rs rounds
//! correctly (`9007199254740993.0` is ...992 here, ...994 there).

use serde::de::DeserializeSeed;

use super::scan;
use super::visitor::{Doc, DocSeed};

/// Parses one JSON value with sonic-rs; `None` on any refusal, or when
/// `bytes` are not UTF-8 (the caller then takes the `serde_json` path,
/// which finds the events that hold the invalid bytes).
///
/// UTF-8 is checked here, not left to sonic-rs: its `Deserializer` checks
/// only the strings it hands over, so invalid bytes inside a skipped
/// unknown field would pass (SPEC §2 makes that object `malformed_json`).
/// With SIMD (`simdutf8`, the same answer as `std::str::from_utf8`): the
/// check of each line was ~2.5% of `report`'s time.
pub(super) fn parse_doc(bytes: &[u8]) -> Option<Doc<'_>> {
    let text = simdutf8::basic::from_utf8(bytes).ok()?;
    // The shape of nearly every event: read without a parser at all.
    if let Some(doc) = scan::scan_doc(text) {
        return Some(doc);
    }
    // Nor does it check the escapes or control characters of a string it
    // skips: `{"x":"a\u\0062"}` passed as an empty object, where serde_json
    // (and SPEC §2) says `malformed_json`. A document with a backslash or a
    // control byte (rare in events) takes the serde_json path.
    if has_escape_or_control(bytes) {
        return None;
    }
    if deeper_than(bytes, MAX_FAST_DEPTH) {
        return None;
    }
    let mut de = sonic_rs::Deserializer::from_str(text);
    let doc = DocSeed { lenient: false }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(doc)
}

/// Nesting deeper than this goes to the `serde_json` path, whose recursion
/// limit (128 levels) makes a deeper document `malformed_json`. sonic-rs
/// skips a nested value by recursion with no limit: a line of ~80,000 `[`
/// overflowed the stack (`report` aborted; the daemon would have crashed
/// on the message at every restart).
const MAX_FAST_DEPTH: usize = 64;

/// Whether arrays and objects nest more than `limit` deep in `bytes`,
/// which hold no backslash (checked first), so every `"` opens or closes
/// a string. Only documents the scan refused come here.
fn deeper_than(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    for &b in bytes {
        match b {
            b'"' => in_string = !in_string,
            b'[' | b'{' if !in_string => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' if !in_string => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether `bytes` hold a backslash or a byte below 0x20.
///
/// Every event line passes through here, so this is written to vectorize:
/// a fold without an early exit over 32-byte blocks compiles to SIMD
/// compares, where `iter().any` compared byte by byte (13% of the decode
/// profile of `benches/daemon.rs`). Events are ~175 bytes, and a hit is
/// rare, so stopping early saves nothing.
fn has_escape_or_control(bytes: &[u8]) -> bool {
    let flag = |acc: bool, &b: &u8| acc | (b == b'\\') | (b < 0x20);
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        if block.iter().fold(false, flag) {
            return true;
        }
    }
    blocks.remainder().iter().fold(false, flag)
}

#[cfg(test)]
mod tests {
    use super::{has_escape_or_control, parse_doc};

    /// The scan reads text; invalid UTF-8 is declined before it, and left
    /// to the `serde_json` path, which rejects only the event holding it.
    #[test]
    fn invalid_utf8_is_declined() {
        assert!(parse_doc(b"{\"ts\":\"\xff\"}").is_none());
        assert!(parse_doc(b"{\"ts\":1,\"x\":\"\xff\"}").is_none());
        assert!(parse_doc(b"{\"ts\":1}").is_some());
    }

    #[test]
    fn escape_or_control_found_at_any_position() {
        for len in [0usize, 1, 31, 32, 33, 64, 100, 175] {
            let clean = vec![b'a'; len];
            assert!(!has_escape_or_control(&clean), "len {len}");
            for at in 0..len {
                for bad in [b'\\', b'\n', 0x00, 0x1f] {
                    let mut v = clean.clone();
                    v[at] = bad;
                    assert!(has_escape_or_control(&v), "len {len} at {at} byte {bad:#x}");
                }
                // 0x20 (space) and above, except the backslash, are clean.
                let mut v = clean.clone();
                v[at] = 0x20;
                assert!(!has_escape_or_control(&v));
            }
        }
    }
}
