//! Decoding and validation of connector events (SPEC §2): bytes in, valid
//! [`Event`]s or counted [`Reject`]s out.
//!
//! Design: a payload is parsed once (sonic-rs, else `serde_json`) into
//! borrowed, permissive field values (`visitor::Field`) so that a
//! field of the wrong type never fails the whole object; validation then applies SPEC §2's rejection order field by
//! field. Only syntax errors (or a value that is not an object) make an event
//! `malformed_json`. Nothing here reads a clock or panics on any input.
//!
//! `payload` (the entry points: payload → documents → events) → `fast`
//! (`scan` of a flat event, else sonic-rs) or `parse` (`serde_json`, the exact verdict) → `visitor` (the
//! shared document visitor) → `validate` ([`Event`]); `reject` holds the
//! reasons and their counts.

mod fast;
mod parse;
mod payload;
mod reject;
mod scan;
mod validate;
mod visitor;

#[cfg(test)]
mod tests;

pub use payload::{
    decode_line, decode_payload, decode_payload_raw, decode_payload_reference, is_complete_doc,
    lines, BOM,
};
pub use reject::{Reject, RejectCounts};
pub use validate::{valid_connector, Event, MAX_EPOCH_MILLIS};
