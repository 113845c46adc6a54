//! The document visitor shared by both parsers (`serde_json` and the
//! sonic-rs fast path): permissive field values, duplicate-key detection,
//! and one payload read as one object or an array of them.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A JSON value as read from one field, kept permissive so that a wrong type
/// becomes the field's own rejection reason rather than a parse failure.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Field<'a> {
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
pub(super) struct RawEvent<'a> {
    pub(super) ts: Option<Field<'a>>,
    pub(super) connector: Option<Field<'a>>,
    pub(super) cloud: Option<Field<'a>>,
    pub(super) status: Option<Field<'a>>,
    pub(super) fault: Option<Field<'a>>,
    pub(super) latency_ms: Option<Field<'a>>,
    pub(super) user: Option<Field<'a>>,
    pub(super) connection: Option<Field<'a>>,
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

/// One object's fields as either parser reads them (the visitor here and
/// [`super::scan`]): SPEC §2's duplicate-key rule, in this one place.
#[derive(Default)]
pub(super) struct ObjectFields<'a> {
    raw: RawEvent<'a>,
    /// The known keys seen, a bit per index of [`RawEvent::slot`].
    known: u8,
    others: OtherKeys<'a>,
    duplicate: bool,
}

impl<'a> ObjectFields<'a> {
    /// Where the value of `key` goes: the slot of a known key met for the
    /// first time, or `None` when the value is only to be read past (an
    /// unknown key, a duplicate, or any key once the object is rejected).
    pub(super) fn slot(&mut self, key: Cow<'a, str>) -> Option<&mut Option<Field<'a>>> {
        if self.duplicate {
            return None;
        }
        match self.raw.slot(&key) {
            Some((i, slot)) if self.known & (1 << i) == 0 => {
                self.known |= 1 << i;
                Some(slot)
            }
            Some(_) => {
                self.duplicate = true;
                None
            }
            None => {
                self.duplicate = !self.others.insert(key);
                None
            }
        }
    }

    /// The object, or [`Item::Malformed`] when a key came twice: SPEC §2
    /// rejects that object, and only that object, as `malformed_json`.
    pub(super) fn finish(self) -> Item<'a> {
        if self.duplicate {
            Item::Malformed
        } else {
            Item::Object(self.raw)
        }
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
pub(super) enum Item<'a> {
    Object(RawEvent<'a>),
    NotObject,
    /// An object with a duplicate key, or holding invalid UTF-8 (SPEC §2).
    Malformed,
}

/// A whole payload (or NDJSON line): one item or an array of items.
pub(super) enum Doc<'a> {
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
        let mut fields = ObjectFields::default();
        while let Some(Key(k)) = a.next_key::<Key<'de>>()? {
            match fields.slot(k) {
                Some(slot) if self.lenient => {
                    *slot = lenient_field(a.next_value::<&'de serde_json::value::RawValue>()?);
                }
                Some(slot) => *slot = a.next_value::<Option<Field<'de>>>()?,
                None => {
                    a.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields.finish())
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
pub(super) struct DocSeed {
    pub(super) lenient: bool,
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
