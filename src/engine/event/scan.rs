//! The first try of the fast path: a scanner for the shape nearly every
//! event has, a flat object (or an array of flat objects) whose values are
//! plain strings, unsigned numbers without exponent, `true`, `false` or
//! `null`.
//!
//! Why hand-written, when sonic-rs is there: on 1,000,000 realistic events
//! (`benches/engine.rs`, `decode_line`) sonic-rs through serde and the
//! shared visitor cost about twice what this scan does, and more than a
//! `serde_json` parse into a borrowed struct; sonic-rs's lazy object
//! iterator cost more still. Decoding is two thirds of the daemon's CPU
//! per event (docs/benchmark-history.md, "Overlapping the poll with the
//! batch").
//!
//! Why it gives the same verdicts: it answers only for documents inside
//! that shape and returns `None` on anything else (a nested value, a
//! negative number, an exponent, a leading zero, 20 digits or more, any
//! syntax it does not expect), which then takes the sonic-rs and
//! `serde_json` paths as before. It declines a string holding a backslash
//! or a control byte too, so a string is the bytes between two quotes, and
//! any whitespace but the space, so no control byte is read anywhere.
//! Keys and duplicates go through the visitor's own [`ObjectFields`]; a
//! float is read by the standard library's correctly rounded parser, as
//! sonic-rs rounds. The property test `props::fast_path` compares the result with the `serde_json`
//! reference on generated documents.

use std::borrow::Cow;

use super::visitor::{Doc, Field, Item, ObjectFields};

/// Reads `text` when it is one flat object or an array of them (see the
/// module docs); `None` otherwise.
pub(super) fn scan_doc(text: &str) -> Option<Doc<'_>> {
    let mut c = Cursor {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    let doc = match c.skip_space()? {
        b'{' => Doc::One(c.object()?),
        b'[' => {
            c.i += 1;
            let mut items = Vec::new();
            if c.skip_space()? == b']' {
                c.i += 1;
            } else {
                loop {
                    if c.skip_space()? != b'{' {
                        return None;
                    }
                    items.push(c.object()?);
                    match c.skip_space()? {
                        b',' => c.i += 1,
                        b']' => {
                            c.i += 1;
                            break;
                        }
                        _ => return None,
                    }
                }
            }
            Doc::Many(items)
        }
        _ => return None,
    };
    // Nothing but spaces may follow the value.
    match c.skip_space() {
        None => Some(doc),
        Some(_) => None,
    }
}

struct Cursor<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// The next byte that is not a space, `None` at the end.
    #[inline]
    fn skip_space(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.i) {
            if c != b' ' {
                return Some(c);
            }
            self.i += 1;
        }
        None
    }

    /// A string, the cursor at its opening quote; `None` when it holds a
    /// backslash or a control byte (an escape, or not JSON: not ours).
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        let start = self.i + 1;
        let end = start + plain_string_end(self.b.get(start..)?)?;
        self.i = end + 1;
        // Quotes are ASCII: both ends are character boundaries.
        self.text.get(start..end)
    }

    /// An unsigned number without exponent, the cursor at its first digit:
    /// an integer of up to 19 digits (`U64`, as both parsers visit it) or a
    /// decimal fraction (`F64`).
    #[inline]
    fn number(&mut self) -> Option<Field<'a>> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - from
        };
        let int = digits(&mut i);
        // JSON has no leading zeros ("01"): not ours to judge.
        if int == 0 || (b[start] == b'0' && int > 1) {
            return None;
        }
        let fraction = b.get(i) == Some(&b'.');
        if fraction {
            i += 1;
            if digits(&mut i) == 0 {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            return None;
        }
        self.i = i;
        let t = self.text.get(start..i)?;
        if fraction {
            // Finite: at most a few hundred digits before the point.
            t.parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .map(Field::F64)
        } else if int <= 19 {
            t.parse().ok().map(Field::U64)
        } else {
            None
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b.get(self.i..)?.starts_with(word).then(|| {
            self.i += word.len();
        })
    }

    /// A value: `Some(None)` for `null`; `None` when it is not in the shape.
    fn value(&mut self) -> Option<Option<Field<'a>>> {
        Some(match *self.b.get(self.i)? {
            b'"' => Some(Field::Str(Cow::Borrowed(self.string()?))),
            b'0'..=b'9' => Some(self.number()?),
            b'n' => {
                self.literal(b"null")?;
                None
            }
            b't' => {
                self.literal(b"true")?;
                Some(Field::Bool)
            }
            b'f' => {
                self.literal(b"false")?;
                Some(Field::Bool)
            }
            _ => return None,
        })
    }

    /// An object, the cursor at its `{`. A duplicate key makes it
    /// [`Item::Malformed`] (SPEC §2), read to its end like any other.
    fn object(&mut self) -> Option<Item<'a>> {
        self.i += 1;
        let mut fields = ObjectFields::default();
        let mut c = self.skip_space()?;
        if c == b'}' {
            self.i += 1;
            return Some(fields.finish());
        }
        loop {
            if c != b'"' {
                return None;
            }
            let key = self.string()?;
            if self.skip_space()? != b':' {
                return None;
            }
            self.i += 1;
            self.skip_space()?;
            let value = self.value()?;
            if let Some(slot) = fields.slot(Cow::Borrowed(key)) {
                *slot = value;
            }
            match self.skip_space()? {
                b',' => {
                    self.i += 1;
                    c = self.skip_space()?;
                }
                b'}' => {
                    self.i += 1;
                    break;
                }
                _ => return None,
            }
        }
        Some(fields.finish())
    }
}

/// Where the string that starts at `b[0]` ends: the index of the first
/// `"`, or `None` when a backslash, a byte below 0x20 or the end of `b`
/// comes first.
///
/// Eight bytes at a time (SWAR): a string of an event is short, and
/// `memchr`'s call and setup cost more than this search (the scan took
/// ~30% longer with it). In each word, `(x - 0x01..) & !x & 0x80..` flags
/// the zero bytes of `x`, the lowest one exactly (a borrow can only flag
/// a byte above a true zero); `x` is the word xor `"` or `\\`, or the
/// word itself against 0x20 for the control bytes.
#[inline]
fn plain_string_end(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut at = 0;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes(w.try_into().ok()?);
        let quote = zero(x ^ (ONES * u64::from(b'"')));
        let special =
            zero(x ^ (ONES * u64::from(b'\\'))) | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
        let hit = quote | special;
        if hit != 0 {
            let first = at + (hit.trailing_zeros() / 8) as usize;
            return (b[first] == b'"').then_some(first);
        }
        at += 8;
    }
    for (i, &c) in words.remainder().iter().enumerate() {
        match c {
            b'"' => return Some(at + i),
            b'\\' | 0..=0x1f => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(doc: Option<Doc<'_>>) -> Option<Vec<String>> {
        let item = |it: Item<'_>| match it {
            Item::Object(r) => format!("{r:?}"),
            Item::NotObject => "not an object".into(),
            Item::Malformed => "malformed".into(),
        };
        Some(match doc? {
            Doc::One(it) => vec![item(it)],
            Doc::Many(its) => its.into_iter().map(item).collect(),
        })
    }

    /// The events the daemon sees are read here, not handed on: were the
    /// scan to decline them all, every other test would still pass.
    #[test]
    fn a_usual_event_is_read_by_the_scan() {
        let line = r#"{"ts":"2026-11-20T10:00:00.123Z","connector":"shared_contoso","cloud":"public","status":200,"fault":null,"latency_ms":182.5,"user":"u-81f2","connection":"c-77a0","operation":"ListItems"}"#;
        let Some(Doc::One(Item::Object(r))) = scan_doc(line) else {
            panic!("declined");
        };
        assert_eq!(r.ts, Some(Field::Str("2026-11-20T10:00:00.123Z".into())));
        assert_eq!(r.connector, Some(Field::Str("shared_contoso".into())));
        assert_eq!(r.cloud, Some(Field::Str("public".into())));
        assert_eq!(r.status, Some(Field::U64(200)));
        assert_eq!(r.fault, None);
        assert_eq!(r.latency_ms, Some(Field::F64(182.5)));
        assert_eq!(r.user, Some(Field::Str("u-81f2".into())));
        assert_eq!(r.connection, Some(Field::Str("c-77a0".into())));
        // Epoch milliseconds, spaces, an array of two, `true` in an unknown field.
        let arr =
            r#" [ {"ts" : 1795176000000 , "connector":"a","x":true} ,{"ts":1,"connector":"b"} ] "#;
        let got = fields(scan_doc(arr)).expect("read");
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("U64(1795176000000)"), "{}", got[0]);
        assert!(fields(scan_doc("{}")).is_some());
        assert_eq!(fields(scan_doc("[]")), Some(vec![]));
    }

    #[test]
    fn duplicate_keys_make_that_object_malformed() {
        for doc in [
            r#"{"ts":1,"connector":"a","ts":2}"#,
            r#"{"ts":1,"op":1,"connector":"a","op":2}"#,
        ] {
            assert_eq!(
                fields(scan_doc(doc)),
                Some(vec!["malformed".into()]),
                "{doc}"
            );
        }
        let got = fields(scan_doc(r#"[{"ts":1,"ts":1},{"ts":1}]"#)).unwrap();
        assert_eq!(got[0], "malformed");
        assert_ne!(got[1], "malformed");
    }

    /// Outside the shape the scan declines, and the other paths decide.
    #[test]
    fn anything_outside_the_shape_is_declined() {
        for doc in [
            r#"{"ts":-1}"#,
            r#"{"ts":01}"#,
            r#"{"ts":1e3}"#,
            r#"{"ts":1E3}"#,
            r#"{"ts":1.}"#,
            r#"{"ts":.5}"#,
            r#"{"ts":12345678901234567890}"#,
            r#"{"ts":{"a":1}}"#,
            r#"{"ts":[1]}"#,
            r#"{"ts":nul}"#,
            r#"{"ts":tru}"#,
            r#"{"ts":"unterminated}"#,
            r#"{"ts":1"#,
            r#"{"ts":1,}"#,
            r#"{,"ts":1}"#,
            r#"{"ts" 1}"#,
            r#"{"ts":1}x"#,
            r#"{"ts":1}{"ts":2}"#,
            r#"[{"ts":1},]"#,
            r#"[1]"#,
            r#"[{"ts":1}"#,
            r#""a""#,
            r#"{"ts":"a\u0062"}"#,
            r#"{"t\u0073":1}"#,
            "{\"ts\":\"a\tb\"}",
            "{\"ts\":1,\n\"connector\":\"a\"}",
            "{\"ts\":1}\t",
            "\u{1}{}",
            "1",
            "",
            "   ",
        ] {
            assert!(scan_doc(doc).is_none(), "{doc}");
        }
    }

    #[test]
    fn multi_byte_characters_are_read() {
        let Some(Doc::One(Item::Object(r))) = scan_doc("{\"ts\":\"é\"}") else {
            panic!("declined");
        };
        assert_eq!(r.ts, Some(Field::Str(Cow::Borrowed("é"))));
    }

    /// The SWAR search against a byte-by-byte one, at every position and
    /// length around the 8-byte words.
    #[test]
    fn string_end_is_the_first_quote_before_any_special_byte() {
        let naive = |b: &[u8]| {
            for (i, &c) in b.iter().enumerate() {
                match c {
                    b'"' => return Some(i),
                    b'\\' | 0..=0x1f => return None,
                    _ => {}
                }
            }
            None
        };
        for len in 0..40usize {
            let plain = vec![b'a'; len];
            assert_eq!(plain_string_end(&plain), None, "len {len}");
            for at in 0..len {
                for c in [b'"', b'\\', 0x00, 0x1f, b'\n', 0x20, 0x7f, 0x80, 0xff] {
                    let mut v = plain.clone();
                    v[at] = c;
                    assert_eq!(
                        plain_string_end(&v),
                        naive(&v),
                        "len {len} at {at} byte {c:#x}"
                    );
                    // A quote after it, and a special byte after a quote.
                    for after in at + 1..len {
                        let mut w = v.clone();
                        w[after] = if c == b'"' { b'\\' } else { b'"' };
                        assert_eq!(plain_string_end(&w), naive(&w), "{w:?}");
                    }
                }
            }
        }
    }
}
