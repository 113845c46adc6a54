//! The `serde_json` path: one JSON value parsed in up to three passes
//! (plain, lenient numbers, invalid UTF-8), the exact verdict whenever the
//! fast path refuses a document.

use serde::de;

use super::visitor::{Doc, DocSeed, Item};

/// Parses one JSON value (a payload or a line) into its elements; `None`
/// when it is not one JSON value. `utf8`: the bytes are known valid UTF-8.
///
/// Three passes, each taken only when the one before cannot answer:
/// 1. one streaming parse (every valid payload);
/// 2. when that met a number out of `f64`'s range: again, with known
///    fields read as raw text ([`lenient_field`](super::visitor::lenient_field));
/// 3. when the bytes are not UTF-8: the document's structure is read from
///    a copy with each invalid byte replaced by `?`, and each element is
///    then decoded from the original bytes, or is `malformed_json` when it
///    holds an invalid byte (SPEC §2: only that event).
pub(super) fn parse_value(bytes: &[u8], utf8: bool) -> Option<Doc<'_>> {
    if !utf8 {
        return parse_invalid_utf8(bytes);
    }
    match parse_doc(bytes, false) {
        Ok(doc) => Some(doc),
        Err(e) if e.to_string().starts_with("number out of range") => parse_doc(bytes, true).ok(),
        Err(_) => None,
    }
}

fn parse_doc(bytes: &[u8], lenient: bool) -> Result<Doc<'_>, serde_json::Error> {
    use de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let doc = DocSeed { lenient }.deserialize(&mut de)?;
    de.end()?;
    Ok(doc)
}

/// Pass 3 of [`parse_value`]: a value holding invalid UTF-8.
fn parse_invalid_utf8(bytes: &[u8]) -> Option<Doc<'_>> {
    use serde_json::value::RawValue;
    // Same length, so spans in the copy are spans in the original.
    let mut clean = Vec::with_capacity(bytes.len());
    let mut bad: Vec<std::ops::Range<usize>> = Vec::new();
    let mut rest = bytes;
    while let Err(e) = std::str::from_utf8(rest) {
        let ok = e.valid_up_to();
        let len = e.error_len().unwrap_or(rest.len() - ok);
        clean.extend_from_slice(&rest[..ok]);
        clean.extend(std::iter::repeat_n(b'?', len));
        let at = clean.len() - len;
        bad.push(at..at + len);
        rest = &rest[ok + len..];
    }
    clean.extend_from_slice(rest);
    let clean = String::from_utf8(clean).ok()?;
    let whole: &RawValue = serde_json::from_str(&clean).ok()?;
    let span = |r: &RawValue| {
        let at = r.get().as_ptr() as usize - clean.as_ptr() as usize;
        at..at + r.get().len()
    };
    let item = |r: &RawValue| {
        let sp = span(r);
        if bad.iter().any(|b| b.start < sp.end && sp.start < b.end) {
            return Item::Malformed;
        }
        // Valid UTF-8 in the original too: decode it from there, so the
        // event borrows the payload.
        match parse_value(&bytes[sp], true) {
            Some(Doc::One(it)) => it,
            // An array element that is itself an array is not an object.
            _ => Item::NotObject,
        }
    };
    if whole.get().starts_with('[') {
        let elems: Vec<&RawValue> = serde_json::from_str(whole.get()).ok()?;
        Some(Doc::Many(elems.into_iter().map(item).collect()))
    } else {
        Some(Doc::One(item(whole)))
    }
}
