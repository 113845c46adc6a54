//! Repeated errors (client, poll, dead-letter) logged once per interval, with how many were
//! left out: during a broker outage librdkafka reports the same error
//! every ~100 ms, and the poll loop sees it as often (~315 WARN lines a
//! minute, seen in an outage test).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;

/// How often the same error is logged again while it repeats.
pub(super) const EVERY: Duration = Duration::from_secs(30);

/// Each error's last log time and the repeats left out since, per error
/// text (errors of an outage alternate: all brokers down, then a failed
/// connection to each).
#[derive(Default)]
pub(super) struct Repeats {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

/// Distinct errors remembered; past it the memory starts over (each then
/// logs once more), so error texts with addresses or ids in them cannot
/// grow it without bound.
const KEYS: usize = 64;

impl Repeats {
    /// Whether to log `key` at `now`: `Some(n)` with the `n` repeats of it
    /// left out since it was last logged, `None` to leave this one out.
    pub(super) fn admit(&self, key: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, left_out)) = seen.get_mut(key) {
            if now.duration_since(*at) < EVERY {
                *left_out += 1;
                return None;
            }
            *at = now;
            return Some(std::mem::take(left_out));
        }
        if seen.len() >= KEYS {
            seen.clear();
        }
        seen.insert(key.to_string(), (now, 0));
        Some(0)
    }
}

/// The context of the clients beside the consumer (the re-key producer
/// and its admin client, the dead-letter producer): their client errors go
/// through [`Repeats`] at WARN. rdkafka's default context logs each one at
/// ERROR, and during an outage in re-key mode that was ~190 lines in 30 s.
pub(crate) struct Quiet {
    client: &'static str,
    errors: Repeats,
}

impl Quiet {
    pub(crate) fn new(client: &'static str) -> Quiet {
        Quiet {
            client,
            errors: Repeats::default(),
        }
    }

    /// Logs a client error through the throttle.
    pub(crate) fn log(&self, error: &KafkaError, reason: &str) {
        match self.errors.admit(&error.to_string(), Instant::now()) {
            Some(repeats) => {
                tracing::warn!(client = self.client, %error, reason, repeats, "kafka client error")
            }
            None => {
                tracing::debug!(client = self.client, %error, reason, "kafka client error (repeated)")
            }
        }
    }
}

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        self.log(&error, reason);
    }
}

impl ProducerContext for Quiet {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_error_is_logged_once_per_interval_with_its_repeats() {
        let r = Repeats::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert_eq!(r.admit("down", ms(0)), Some(0));
        assert_eq!(r.admit("down", ms(100)), None);
        assert_eq!(r.admit("down", ms(200)), None);
        // 30 s after the last one logged: logged, with the 2 left out.
        assert_eq!(r.admit("down", ms(30_000)), Some(2));
        assert_eq!(r.admit("down", ms(30_100)), None);
        // Another error is logged at once, with its own count; the two
        // alternating keep theirs.
        assert_eq!(r.admit("refused", ms(30_200)), Some(0));
        assert_eq!(r.admit("down", ms(30_300)), None);
        assert_eq!(r.admit("refused", ms(30_400)), None);
        assert_eq!(r.admit("down", ms(60_000)), Some(2));
        assert_eq!(r.admit("refused", ms(60_200)), Some(1));
    }
}
