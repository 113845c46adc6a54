//! The public entry points: a payload (or line) split into documents
//! (whole payload, else NDJSON lines; one object or an array), each element
//! validated and handed to the caller with its source bytes.

use super::fast;
use super::parse::parse_value;
use super::reject::Reject;
use super::validate::{validate, Event};
use super::visitor::{Doc, Item};

/// Decodes one payload (a Kafka message or a file's contents) and calls `f`
/// once per event read: a valid [`Event`] or the [`Reject`] reason of one
/// that is not. An unparsable NDJSON line is one `malformed_json` call.
///
/// Returns the number of events read (calls made to `f`).
pub fn decode_payload<'a, F>(payload: &'a [u8], mut f: F) -> u64
where
    F: FnMut(Result<Event<'a>, Reject>),
{
    decode_payload_raw(payload, |r, _, _| f(r))
}

/// As [`decode_payload`], also giving each event's source bytes: its NDJSON
/// line, or the whole document, with the event's index when the document is
/// an array (what a dead-letter copy of a rejected event carries).
pub fn decode_payload_raw<'a, F>(payload: &'a [u8], f: F) -> u64
where
    F: FnMut(Result<Event<'a>, Reject>, &'a [u8], Option<usize>),
{
    decode_payload_with(payload, true, f)
}

/// [`decode_payload`] through the `serde_json` path only, never the
/// sonic-rs fast path: the reference the tests compare the fast path to.
#[doc(hidden)]
pub fn decode_payload_reference<'a, F>(payload: &'a [u8], mut f: F) -> u64
where
    F: FnMut(Result<Event<'a>, Reject>),
{
    decode_payload_with(payload, false, |r, _, _| f(r))
}

/// `fast`: each document (the payload, else each line) is tried first on
/// the sonic-rs path ([`fast`]), which reads every valid one; on any
/// refusal [`parse_value`] gives the exact verdict.
fn decode_payload_with<'a, F>(payload: &'a [u8], fast: bool, mut f: F) -> u64
where
    F: FnMut(Result<Event<'a>, Reject>, &'a [u8], Option<usize>),
{
    let mut n = 0u64;
    // SPEC §2: a byte-order mark at the start of a message is ignored.
    let payload = payload.strip_prefix(BOM).unwrap_or(payload);
    // Whether the whole payload is UTF-8: asked only on the serde_json path.
    let mut utf8 = None;
    if fast {
        if let Some(doc) = fast::parse_doc(payload) {
            emit_doc(doc, payload, &mut f, &mut n);
            return n;
        }
        // NDJSON, the common multi-event message: when the first non-blank
        // line is a whole JSON value and a non-blank line follows, the
        // payload is not one JSON value (a value followed by anything but
        // whitespace never is), so the whole-payload parse below would
        // only fail after reading the first line; go to the lines at once.
        // This skips that parse and a UTF-8 pass over the whole payload.
        if let Some(first) = first_of_several(payload) {
            emit_lines(payload, fast, &mut utf8, Some(first), &mut f, &mut n);
            return n;
        }
    }
    // Fast path: the whole payload is one JSON value (object or array).
    // It fails at the second value of an NDJSON payload, which is then read
    // line by line: a pretty-printed single object still decodes as one.
    let whole_utf8 = *utf8.get_or_insert_with(|| std::str::from_utf8(payload).is_ok());
    match parse_value(payload, whole_utf8) {
        Some(doc) => emit_doc(doc, payload, &mut f, &mut n),
        None => emit_lines(payload, fast, &mut utf8, None, &mut f, &mut n),
    }
    n
}

/// The lines of `payload`, as `payload.split(|&b| b == b'\n')` gives them
/// (the empty one after a final newline included), found with `memchr`.
/// Why: the byte-by-byte split was most of what a 100-line NDJSON message
/// cost beyond decoding its lines one by one (`benches/engine.rs`,
/// `decode_payload` against `decode_line`). `report` splits its file
/// chunks with it too.
pub fn lines(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut ends = memchr::memchr_iter(b'\n', payload);
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        match ends.next() {
            Some(end) => {
                start = Some(end + 1);
                Some(&payload[from..end])
            }
            None => {
                start = None;
                Some(&payload[from..])
            }
        }
    })
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The first non-blank line, parsed on the fast path, when it is a whole
/// JSON value and another non-blank line follows it.
fn first_of_several(payload: &[u8]) -> Option<Doc<'_>> {
    let mut lines = lines(payload).filter(|l| !is_blank(l));
    let first = lines.next()?;
    lines.next()?;
    fast::parse_doc(first)
}

/// Each non-blank line of `payload` as a document of its own; `first`, when
/// given, is the first non-blank line already parsed.
fn emit_lines<'a, F>(
    payload: &'a [u8],
    fast: bool,
    utf8: &mut Option<bool>,
    mut first: Option<Doc<'a>>,
    f: &mut F,
    n: &mut u64,
) where
    F: FnMut(Result<Event<'a>, Reject>, &'a [u8], Option<usize>),
{
    for line in lines(payload) {
        if is_blank(line) {
            continue;
        }
        let doc = first
            .take()
            .or_else(|| fast.then(|| fast::parse_doc(line)).flatten())
            .or_else(|| {
                // Lines of valid UTF-8 need no second check: a line end
                // never falls inside a multi-byte character.
                let whole = *utf8.get_or_insert_with(|| std::str::from_utf8(payload).is_ok());
                parse_value(line, whole)
            });
        match doc {
            Some(doc) => emit_doc(doc, line, f, n),
            None => {
                *n += 1;
                f(Err(Reject::MalformedJson), line, None);
            }
        }
    }
}

/// The UTF-8 byte-order mark, ignored at the start of a message or file.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Decodes one NDJSON line (or any single payload): used by `report`'s
/// line-oriented reader, which has already split the file into lines (and
/// dropped the file's byte-order mark).
pub fn decode_line<'a, F>(line: &'a [u8], f: &mut F) -> u64
where
    F: FnMut(Result<Event<'a>, Reject>),
{
    let mut n = 0;
    if is_blank(line) {
        return 0;
    }
    let mut g = |r, _: &'a [u8], _| f(r);
    let doc = fast::parse_doc(line);
    match doc.or_else(|| parse_value(line, std::str::from_utf8(line).is_ok())) {
        Some(doc) => emit_doc(doc, line, &mut g, &mut n),
        None => {
            n += 1;
            f(Err(Reject::MalformedJson));
        }
    }
    n
}

/// Whether `bytes` hold exactly one JSON value (one NDJSON line).
pub fn is_complete_doc(bytes: &[u8]) -> bool {
    fast::parse_doc(bytes).is_some()
        || parse_value(bytes, std::str::from_utf8(bytes).is_ok()).is_some()
}

fn emit_doc<'a, F>(doc: Doc<'a>, raw: &'a [u8], f: &mut F, n: &mut u64)
where
    F: FnMut(Result<Event<'a>, Reject>, &'a [u8], Option<usize>),
{
    match doc {
        Doc::One(item) => {
            *n += 1;
            f(validate_item(item), raw, None);
        }
        Doc::Many(items) => {
            for (i, item) in items.into_iter().enumerate() {
                *n += 1;
                f(validate_item(item), raw, Some(i));
            }
        }
    }
}

fn validate_item(item: Item<'_>) -> Result<Event<'_>, Reject> {
    match item {
        Item::Object(raw) => validate(raw),
        Item::NotObject | Item::Malformed => Err(Reject::MalformedJson),
    }
}

#[cfg(test)]
mod tests {
    use super::lines;

    #[test]
    fn lines_are_what_split_at_newline_gives() {
        let cases: [&[u8]; 9] = [
            b"",
            b"\n",
            b"\n\n",
            b"a",
            b"a\n",
            b"a\nb",
            b"\na\n\nbc\n",
            b"{\"x\":1}\r\n{\"y\":2}\r\n",
            b"no newline at all, but long enough to pass one SIMD block of memchr's",
        ];
        for c in cases {
            let want: Vec<&[u8]> = c.split(|&b| b == b'\n').collect();
            assert_eq!(
                lines(c).collect::<Vec<_>>(),
                want,
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        // Hand-worked: three lines and the empty one after the last newline.
        let got: Vec<&[u8]> = lines(b"ab\n\ncd\n").collect();
        assert_eq!(got, [&b"ab"[..], b"", b"cd", b""]);
    }
}
