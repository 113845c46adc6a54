//! Decoding and validation of connector events (SPEC §2): bytes in, valid
//! [`Event`]s or counted [`Reject`]s out.
//!
//! Design: a payload is parsed once with `serde_json` into borrowed, permissive
//! field values ([`Field`]) so that a field of the wrong type never fails the
//! whole object; validation then applies SPEC §2's rejection order field by
//! field. Only syntax errors (or a value that is not an object) make an event
//! `malformed_json`. Nothing here reads a clock or panics on any input.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::engine::classify::{Cloud, Fault};
use crate::engine::timeutil::{self, Micros};

mod fast;

/// Why an event was rejected, in SPEC §2's order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    MalformedJson,
    MissingField,
    InvalidTimestamp,
    InvalidConnector,
    UnknownCloud,
    InvalidStatus,
    InvalidFault,
    InvalidLatency,
    InvalidId,
    TooOld,
    FromFuture,
    SeriesLimit,
    /// A Kafka message the client cannot hand over at all (its compressed
    /// batch does not decompress within the client's limits): counted once
    /// per message, by the daemon only, never by the decoder.
    UndecodableMessage,
}

impl Reject {
    pub const ALL: [Reject; 13] = [
        Reject::MalformedJson,
        Reject::MissingField,
        Reject::InvalidTimestamp,
        Reject::InvalidConnector,
        Reject::UnknownCloud,
        Reject::InvalidStatus,
        Reject::InvalidFault,
        Reject::InvalidLatency,
        Reject::InvalidId,
        Reject::TooOld,
        Reject::FromFuture,
        Reject::SeriesLimit,
        Reject::UndecodableMessage,
    ];

    /// The `reason` label value and report JSON key.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::MalformedJson => "malformed_json",
            Reject::MissingField => "missing_field",
            Reject::InvalidTimestamp => "invalid_timestamp",
            Reject::InvalidConnector => "invalid_connector",
            Reject::UnknownCloud => "unknown_cloud",
            Reject::InvalidStatus => "invalid_status",
            Reject::InvalidFault => "invalid_fault",
            Reject::InvalidLatency => "invalid_latency",
            Reject::InvalidId => "invalid_id",
            Reject::TooOld => "too_old",
            Reject::FromFuture => "from_future",
            Reject::SeriesLimit => "series_limit",
            Reject::UndecodableMessage => "undecodable_message",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts of rejected events, indexed by [`Reject::index`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RejectCounts(pub [u64; 13]);

impl RejectCounts {
    pub fn add(&mut self, r: Reject, n: u64) {
        self.0[r.index()] += n;
    }
    pub fn get(&self, r: Reject) -> u64 {
        self.0[r.index()]
    }
    pub fn merge(&mut self, o: &RejectCounts) {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a += b;
        }
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// One valid event, borrowing its strings from the payload where it can.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub ts: Micros,
    pub connector: Cow<'a, str>,
    pub cloud: Cloud,
    /// `None` when there was no response (status 0, null or absent).
    pub status: Option<u16>,
    pub fault: Option<Fault>,
    pub latency_ms: Option<f64>,
    pub user: Option<Cow<'a, str>>,
    pub connection: Option<Cow<'a, str>>,
}

/// A JSON value as read from one field, kept permissive so that a wrong type
/// becomes the field's own rejection reason rather than a parse failure.
#[derive(Debug, Clone, PartialEq)]
enum Field<'a> {
    Bool,
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'a, str>),
    /// An array or an object.
    Nested,
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Field<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Field::Bool)
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Field::I64(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Field::U64(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Field::F64(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Nested)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Nested)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The fields of SPEC §2; unknown fields are skipped, `null` is `None`.
#[derive(Debug, Default)]
struct RawEvent<'a> {
    ts: Option<Field<'a>>,
    connector: Option<Field<'a>>,
    cloud: Option<Field<'a>>,
    status: Option<Field<'a>>,
    fault: Option<Field<'a>>,
    latency_ms: Option<Field<'a>>,
    user: Option<Field<'a>>,
    connection: Option<Field<'a>>,
}

impl<'a> RawEvent<'a> {
    /// The slot of a known key, by its index in SPEC §2's table.
    fn slot(&mut self, key: &str) -> Option<(usize, &mut Option<Field<'a>>)> {
        Some(match key {
            "ts" => (0, &mut self.ts),
            "connector" => (1, &mut self.connector),
            "cloud" => (2, &mut self.cloud),
            "status" => (3, &mut self.status),
            "fault" => (4, &mut self.fault),
            "latency_ms" => (5, &mut self.latency_ms),
            "user" => (6, &mut self.user),
            "connection" => (7, &mut self.connection),
            _ => return None,
        })
    }
}

/// An object key, borrowed from the payload unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// The unknown keys of one object, to find a duplicate among them: the
/// first one inline (the common event has one, `operation`: no allocation),
/// then a short list, then a hash set, so an object of a million keys stays
/// linear.
#[derive(Default)]
struct OtherKeys<'a> {
    first: Option<Cow<'a, str>>,
    few: Vec<Cow<'a, str>>,
    many: HashSet<Cow<'a, str>>,
}

impl<'a> OtherKeys<'a> {
    /// Adds a key; `false` when it was already there.
    fn insert(&mut self, k: Cow<'a, str>) -> bool {
        if !self.many.is_empty() {
            return self.many.insert(k);
        }
        let Some(first) = &self.first else {
            self.first = Some(k);
            return true;
        };
        if *first == k || self.few.contains(&k) {
            return false;
        }
        self.few.push(k);
        if self.few.len() > 16 {
            self.many.extend(self.first.take());
            self.many.extend(self.few.drain(..));
        }
        true
    }
}

/// A known field's value read as raw JSON text, then parsed on its own: a
/// number out of `f64`'s range (`1e400`) becomes an infinite float, which
/// every field rejects with its own reason (SPEC §2: `invalid_latency` for
/// a latency), instead of failing the whole payload.
fn lenient_field(raw: &serde_json::value::RawValue) -> Option<Field<'_>> {
    match serde_json::from_str::<Option<Field<'_>>>(raw.get()) {
        Ok(f) => f,
        Err(_) if raw.get().starts_with('-') => Some(Field::F64(f64::NEG_INFINITY)),
        Err(_) => Some(Field::F64(f64::INFINITY)),
    }
}

/// One element of a payload: an object, or anything else (a rejection).
#[allow(clippy::large_enum_variant)] // boxing it costs an allocation per event
enum Item<'a> {
    Object(RawEvent<'a>),
    NotObject,
    /// An object with a duplicate key, or holding invalid UTF-8 (SPEC §2).
    Malformed,
}

/// A whole payload (or NDJSON line): one item or an array of items.
enum Doc<'a> {
    One(Item<'a>),
    Many(Vec<Item<'a>>),
}

/// Reads one element. `lenient`: known fields are read as raw text first,
/// so a number out of range is that field's rejection, not a parse error
/// (a second pass, taken only when the first met such a number).
#[derive(Clone, Copy)]
struct ItemVisitor {
    lenient: bool,
}

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawEvent::default();
        let mut known = 0u8;
        let mut others = OtherKeys::default();
        let mut duplicate = false;
        while let Some(Key(k)) = a.next_key::<Key<'de>>()? {
            if duplicate {
                // The object is rejected already: only read past it.
                a.next_value::<IgnoredAny>()?;
                continue;
            }
            match raw.slot(&k) {
                Some((i, slot)) => {
                    if known & (1 << i) != 0 {
                        duplicate = true;
                        a.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    known |= 1 << i;
                    *slot = if self.lenient {
                        lenient_field(a.next_value::<&'de serde_json::value::RawValue>()?)
                    } else {
                        a.next_value::<Option<Field<'de>>>()?
                    };
                }
                None => {
                    duplicate = !others.insert(k);
                    a.next_value::<IgnoredAny>()?;
                }
            }
        }
        // SPEC §2: an object with a duplicate key is `malformed_json`, and
        // only that object.
        Ok(if duplicate {
            Item::Malformed
        } else {
            Item::Object(raw)
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Item::NotObject)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Item::NotObject)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Item::NotObject)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Item::NotObject)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Item::NotObject)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Item::NotObject)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Item::NotObject)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Item::NotObject)
    }
}

/// Reads a whole document (one value, or an array of values).
#[derive(Clone, Copy)]
struct DocSeed {
    lenient: bool,
}

impl<'de> de::DeserializeSeed<'de> for ItemVisitor {
    type Value = Item<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Item<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> de::DeserializeSeed<'de> for DocSeed {
    type Value = Doc<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Doc<'de>, D::Error> {
        struct V {
            lenient: bool,
        }
        impl<'de> Visitor<'de> for V {
            type Value = Doc<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object or array of objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(a.size_hint().unwrap_or(16).min(4096));
                let seed = ItemVisitor {
                    lenient: self.lenient,
                };
                while let Some(it) = a.next_element_seed(seed)? {
                    items.push(it);
                }
                Ok(Doc::Many(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
                ItemVisitor {
                    lenient: self.lenient,
                }
                .visit_map(a)
                .map(Doc::One)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Doc::One(Item::NotObject))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Doc::One(Item::NotObject))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Doc::One(Item::NotObject))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Doc::One(Item::NotObject))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Doc::One(Item::NotObject))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Doc::One(Item::NotObject))
            }
        }
        d.deserialize_any(V {
            lenient: self.lenient,
        })
    }
}

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
    if let Some(doc) = fast.then(|| fast::parse_doc(payload)).flatten() {
        emit_doc(doc, payload, &mut f, &mut n);
        return n;
    }
    // Lines of valid UTF-8 need no second check: a line end never falls
    // inside a multi-byte character.
    let utf8 = std::str::from_utf8(payload).is_ok();
    // Fast path: the whole payload is one JSON value (object or array).
    // It fails at the second value of an NDJSON payload, which is then read
    // line by line: a pretty-printed single object still decodes as one.
    match parse_value(payload, utf8) {
        Some(doc) => emit_doc(doc, payload, &mut f, &mut n),
        None => {
            for line in payload.split(|&b| b == b'\n') {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let doc = fast.then(|| fast::parse_doc(line)).flatten();
                match doc.or_else(|| parse_value(line, utf8)) {
                    Some(doc) => emit_doc(doc, line, &mut f, &mut n),
                    None => {
                        n += 1;
                        f(Err(Reject::MalformedJson), line, None);
                    }
                }
            }
        }
    }
    n
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
    if line.iter().all(u8::is_ascii_whitespace) {
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

/// Parses one JSON value (a payload or a line) into its elements; `None`
/// when it is not one JSON value. `utf8`: the bytes are known valid UTF-8.
///
/// Three passes, each taken only when the one before cannot answer:
/// 1. one streaming parse (every valid payload);
/// 2. when that met a number out of `f64`'s range: again, with known
///    fields read as raw text ([`lenient_field`]);
/// 3. when the bytes are not UTF-8: the document's structure is read from
///    a copy with each invalid byte replaced by `?`, and each element is
///    then decoded from the original bytes, or is `malformed_json` when it
///    holds an invalid byte (SPEC §2: only that event).
fn parse_value(bytes: &[u8], utf8: bool) -> Option<Doc<'_>> {
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

/// The last millisecond of year 9999: 253402300799999 (SPEC §2).
pub const MAX_EPOCH_MILLIS: i64 = 253_402_300_799_999;

fn validate(raw: RawEvent<'_>) -> Result<Event<'_>, Reject> {
    let (ts, connector) = match (raw.ts, raw.connector) {
        (Some(ts), Some(c)) => (ts, c),
        _ => return Err(Reject::MissingField),
    };
    let ts = match ts {
        Field::Str(s) => timeutil::parse_rfc3339(&s).ok_or(Reject::InvalidTimestamp)?,
        // SPEC §2: epoch milliseconds in 0 ..= 9999-12-31T23:59:59.999Z.
        Field::I64(ms) if (0..=MAX_EPOCH_MILLIS).contains(&ms) => {
            timeutil::from_epoch_millis(ms).ok_or(Reject::InvalidTimestamp)?
        }
        Field::U64(ms) if ms <= MAX_EPOCH_MILLIS as u64 => {
            timeutil::from_epoch_millis(ms as i64).ok_or(Reject::InvalidTimestamp)?
        }
        _ => return Err(Reject::InvalidTimestamp),
    };
    let connector = match connector {
        Field::Str(s) if valid_connector(&s) => s,
        _ => return Err(Reject::InvalidConnector),
    };
    let cloud = match raw.cloud {
        None => Cloud::Public,
        Some(Field::Str(s)) => Cloud::parse(&s).ok_or(Reject::UnknownCloud)?,
        Some(_) => return Err(Reject::UnknownCloud),
    };
    let status = match raw.status {
        None | Some(Field::I64(0)) | Some(Field::U64(0)) => None,
        Some(Field::I64(v)) if (100..=599).contains(&v) => Some(v as u16),
        Some(Field::U64(v)) if (100..=599).contains(&v) => Some(v as u16),
        Some(_) => return Err(Reject::InvalidStatus),
    };
    let fault = match raw.fault {
        None => None,
        Some(Field::Str(s)) => Some(Fault::parse(&s).ok_or(Reject::InvalidFault)?),
        Some(_) => return Err(Reject::InvalidFault),
    };
    let latency_ms = match raw.latency_ms {
        None => None,
        Some(Field::I64(v)) if v >= 0 => Some(v as f64),
        Some(Field::U64(v)) => Some(v as f64),
        Some(Field::F64(v)) if v.is_finite() && v >= 0.0 => Some(v),
        Some(_) => return Err(Reject::InvalidLatency),
    };
    let user = valid_id(raw.user)?;
    let connection = valid_id(raw.connection)?;
    Ok(Event {
        ts,
        connector,
        cloud,
        status,
        fault,
        latency_ms,
        user,
        connection,
    })
}

fn valid_id(f: Option<Field<'_>>) -> Result<Option<Cow<'_, str>>, Reject> {
    match f {
        None => Ok(None),
        Some(Field::Str(s)) if !s.is_empty() && s.len() <= 256 => Ok(Some(s)),
        Some(_) => Err(Reject::InvalidId),
    }
}

/// `^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`, checked byte by byte: a regex engine
/// would cost more than the whole rest of validation for this one pattern.
pub fn valid_connector(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 128 || !b[0].is_ascii_alphanumeric() {
        return false;
    }
    b[1..]
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
