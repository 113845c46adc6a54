//! A valid [`Event`] and the field-by-field validation (SPEC §2's rejection
//! order) that makes one from a parsed object, or names its [`Reject`].

use std::borrow::Cow;

use super::reject::Reject;
use super::visitor::{Field, RawEvent};
use crate::engine::classify::{Cloud, Fault};
use crate::engine::timeutil::{self, Micros};

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

/// The last millisecond of year 9999: 253402300799999 (SPEC §2).
pub const MAX_EPOCH_MILLIS: i64 = 253_402_300_799_999;

pub(super) fn validate(raw: RawEvent<'_>) -> Result<Event<'_>, Reject> {
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
