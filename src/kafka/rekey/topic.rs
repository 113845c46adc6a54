//! The re-keyed topic `<group_id>-by-connector`: made sure of at start-up,
//! and the partition count its connectors are routed by, pinned in the
//! state store.
//!
//! Why pinned: a connector's partition is its id's CRC-32 modulo the
//! partition count. Were the count read from the topic, adding partitions
//! to it would move connectors: members started before and after the
//! change would send one connector's events to two partitions, and a
//! connector's restored state and its new events would sit in two tasks
//! (two scopes for one connector in the union of the members, each
//! partial). So the first member to see the topic records its count under
//! [`pin_key`], and every member routes by that count. Partitions added
//! later stay empty (a warning says so); a topic with fewer partitions
//! than recorded (deleted and created again) stops start-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::topic as topic_name;
use crate::checkpoint::store::{StateStore, StoreError};
use crate::config::Config;
use crate::kafka::repeats::Quiet;
use crate::kafka::{client_config, KafkaSetupError};

/// Makes sure the re-keyed topic exists (created when absent), then returns
/// the partition count connectors are routed by: the one pinned in
/// `store`, pinned now when absent. Run by the consumer thread before it
/// subscribes. A store that does not answer is waited for, like a broker;
/// a pin that cannot hold is an error naming its key. `None` early when
/// `stop` is set.
pub fn ensure_topic(
    cfg: &Config,
    store: &dyn StateStore,
    stop: &AtomicBool,
) -> Result<Option<u32>, KafkaSetupError> {
    let Some(actual) = make_sure(cfg, stop)? else {
        return Ok(None);
    };
    let name = topic_name(cfg);
    let mut waited = None::<Instant>;
    loop {
        match routing_count(store, &name, actual) {
            Ok(n) => {
                if n < actual {
                    tracing::warn!(
                        topic = %name,
                        partitions = actual,
                        routed_over = n,
                        key = %pin_key(&name),
                        "the re-keyed topic has partitions added after its routing count was \
                         pinned: connectors are routed over the first {n} only, the others stay empty"
                    );
                } else {
                    tracing::info!(topic = %name, partitions = n, "re-keyed topic ready");
                }
                return Ok(Some(n));
            }
            Err(PinError::Store(e)) => {
                let why = format!("the state store does not answer ({e})");
                if !pause(stop, &mut waited, &name, &why) {
                    return Ok(None);
                }
            }
            Err(e) => {
                return Err(KafkaSetupError::RekeyPin {
                    store: store.describe(),
                    why: e.to_string(),
                })
            }
        }
    }
}

/// The state store key holding the partition count `topic`'s connectors
/// are routed by: `rekey/<topic>.partitions`, the count in decimal.
pub fn pin_key(topic: &str) -> String {
    format!("rekey/{topic}.partitions")
}

/// Why a routing count could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The store did not answer: waited for.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key `{key}` holds {text:?}, not a partition count: write the count the re-keyed topic was created with, or delete the key to pin its current count")]
    Unreadable { key: String, text: String },
    #[error("key `{key}` routes connectors over {pinned} partitions, but `{topic}` has {actual}: it was deleted and created again. Create it again with {pinned} partitions, or start counting from scratch: delete `{key}` and the checkpoints under `tasks/{topic}/`")]
    Shrunk {
        key: String,
        topic: String,
        pinned: u32,
        actual: u32,
    },
}

/// Waits about a second before the caller tries again, logging `why` once
/// a minute (`last_log`), not at every retry; `false` when `stop` is set.
fn pause(stop: &AtomicBool, last_log: &mut Option<Instant>, topic: &str, why: &str) -> bool {
    if last_log.is_none_or(|w| w.elapsed() >= Duration::from_secs(60)) {
        tracing::warn!(topic = %topic, "re-key stage waits: {why}");
        *last_log = Some(Instant::now());
    }
    for _ in 0..10 {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    !stop.load(Ordering::Acquire)
}

/// The routing count of `topic`, which has `actual` partitions now: the
/// pinned one, or `actual`, pinned now. The pin is written create-only
/// ([`StateStore::put_new`]): two members pinning at once, each having
/// read a different partition count (partitions added between their
/// reads), both route by the one count the store kept.
fn routing_count(store: &dyn StateStore, topic: &str, actual: u32) -> Result<u32, PinError> {
    let key = pin_key(topic);
    let stored = loop {
        if let Some(b) = store.get(&key)? {
            break b;
        }
        let mine = Bytes::from(format!("{actual}\n"));
        if store.put_new(&key, mine.clone())? {
            break mine;
        }
        // Another member pinned first: the next turn reads its count.
    };
    let pinned = std::str::from_utf8(&stored)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| PinError::Unreadable {
            key: key.clone(),
            text: String::from_utf8_lossy(&stored).chars().take(40).collect(),
        })?;
    if pinned > actual {
        return Err(PinError::Shrunk {
            key,
            topic: topic.into(),
            pinned,
            actual,
        });
    }
    Ok(pinned)
}

/// Makes sure the re-keyed topic exists, created with the input's partition
/// count when absent. While no broker answers it waits (the daemon serves
/// `/healthz` meanwhile, as it does through any broker outage); once a
/// broker answers and the topic cannot be created, the error names the
/// topic and the partition count to create by hand. Returns its partition
/// count, or `None` early when `stop` is set.
fn make_sure(cfg: &Config, stop: &AtomicBool) -> Result<Option<u32>, KafkaSetupError> {
    let name = topic_name(cfg);
    let mut c = client_config(cfg, false);
    // A metadata request must not create the topic with the broker's
    // default partition count before we create it with the input's.
    c.set("allow.auto.create.topics", "false");
    let admin: AdminClient<Quiet> = c
        .create_with_context(Quiet::new("re-key admin"))
        .map_err(KafkaSetupError::Client)?;
    let timeout = Duration::from_secs(10);
    let partitions_of = |t: &str| -> Result<Option<usize>, KafkaError> {
        // Short: SIGTERM is noticed between two requests, and shutdown
        // waits only 9 s for this thread.
        let md = admin
            .inner()
            .fetch_metadata(Some(t), Duration::from_secs(2))?;
        Ok(md
            .topics()
            .iter()
            .find(|x| x.name() == t && x.error().is_none() && !x.partitions().is_empty())
            .map(|x| x.partitions().len()))
    };
    let mut waited = None::<Instant>;
    let mut wait = |why: String| {
        // A stop is seen at the top of the loop.
        pause(stop, &mut waited, &name, &why);
    };
    let input = loop {
        if stop.load(Ordering::Acquire) {
            return Ok(None);
        }
        match partitions_of(&name) {
            Ok(Some(n)) => return Ok(Some(n as u32)),
            Ok(None) => {}
            Err(e) => {
                wait(format!("no broker answers ({e})"));
                continue;
            }
        }
        let mut input = 0;
        let mut failed = None;
        for t in &cfg.kafka.topics {
            match partitions_of(t) {
                Ok(n) => input = input.max(n.unwrap_or(0)),
                Err(e) => failed = Some(e),
            }
        }
        match (failed, input) {
            (Some(e), _) => wait(format!("no broker answers ({e})")),
            // The re-keyed topic takes the input's partition count: wait
            // for the input to exist rather than guess.
            (None, 0) => wait(format!(
                "the input topics {:?} do not exist yet",
                cfg.kafka.topics
            )),
            (None, n) => break n,
        }
    };
    let new = NewTopic::new(&name, input as i32, TopicReplication::Fixed(-1));
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    // A broker without CreateTopics (librdkafka's mock cluster has none)
    // may never answer: the request timeout bounds the wait.
    let r = futures_executor_block_on(admin.create_topics([&new], &opts));
    let failed = match r {
        Ok(rs) => rs.into_iter().find_map(|r| match r {
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) | Ok(_) => None,
            Err((_, code)) => Some(code.to_string()),
        }),
        Err(e) => Some(e.to_string()),
    };
    match failed {
        None => {
            tracing::info!(topic = %name, partitions = input, "created the re-keyed topic");
            // Another member may have created it first, with its count.
            Ok(Some(match partitions_of(&name) {
                Ok(Some(n)) => n as u32,
                _ => input as u32,
            }))
        }
        Some(why) => Err(KafkaSetupError::RekeyTopic {
            topic: name,
            partitions: input,
            why,
        }),
    }
}

/// Waits for an admin request on this (non-async) thread: librdkafka's
/// background thread completes it, so a current-thread runtime suffices.
fn futures_executor_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
        .block_on(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::store::DirStore;

    fn store() -> (tempfile::TempDir, DirStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = DirStore::new(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn the_first_count_seen_is_pinned_and_kept_when_partitions_are_added() {
        let (_d, s) = store();
        // First sight: 6 partitions, pinned as "6\n".
        assert_eq!(routing_count(&s, "g-by-connector", 6).unwrap(), 6);
        assert_eq!(
            s.get("rekey/g-by-connector.partitions").unwrap().as_deref(),
            Some(&b"6\n"[..])
        );
        // 10 partitions later: still routed over 6, and the pin unchanged.
        assert_eq!(routing_count(&s, "g-by-connector", 10).unwrap(), 6);
        assert_eq!(
            s.get("rekey/g-by-connector.partitions").unwrap().as_deref(),
            Some(&b"6\n"[..])
        );
        // Another group's topic has its own pin.
        assert_eq!(routing_count(&s, "h-by-connector", 3).unwrap(), 3);
    }

    #[test]
    fn a_topic_with_fewer_partitions_than_pinned_is_an_error_naming_the_key() {
        let (_d, s) = store();
        s.put(
            "rekey/g-by-connector.partitions",
            Bytes::from_static(b"8\n"),
        )
        .unwrap();
        let e = routing_count(&s, "g-by-connector", 4)
            .unwrap_err()
            .to_string();
        for want in [
            "`rekey/g-by-connector.partitions`",
            "over 8 partitions",
            "has 4",
            "tasks/g-by-connector/",
        ] {
            assert!(e.contains(want), "{want:?} not in {e}");
        }
    }

    #[test]
    fn a_pin_that_is_not_a_count_is_an_error_naming_the_key() {
        let (_d, s) = store();
        for bad in [&b"eight\n"[..], b"0\n", b"", b"-3", b"\xff"] {
            s.put(
                "rekey/g-by-connector.partitions",
                Bytes::copy_from_slice(bad),
            )
            .unwrap();
            let e = routing_count(&s, "g-by-connector", 4).unwrap_err();
            assert!(
                matches!(&e, PinError::Unreadable { key, .. } if key == "rekey/g-by-connector.partitions"),
                "{bad:?}: {e}"
            );
        }
        // Surrounding whitespace is fine.
        s.put(
            "rekey/g-by-connector.partitions",
            Bytes::from_static(b" 3 \n"),
        )
        .unwrap();
        assert_eq!(routing_count(&s, "g-by-connector", 4).unwrap(), 3);
    }
    /// A store whose first read of the pin answers "absent" and then lets
    /// another member pin `3` before this one writes: the race between two
    /// members that read different partition counts.
    #[derive(Debug)]
    struct PinnedMeanwhile {
        inner: DirStore,
        raced: std::sync::atomic::AtomicBool,
    }

    impl StateStore for PinnedMeanwhile {
        fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
            let got = self.inner.get(key)?;
            if got.is_none() && !self.raced.swap(true, Ordering::SeqCst) {
                self.inner.put(key, Bytes::from_static(b"3\n"))?;
            }
            Ok(got)
        }
        fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
            self.inner.put(key, value)
        }
        fn put_new(&self, key: &str, value: Bytes) -> Result<bool, StoreError> {
            self.inner.put_new(key, value)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.inner.delete(key)
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
    }

    #[test]
    fn a_member_that_pins_second_routes_by_the_first_members_count() {
        // Regression: the pin was a plain put, then a read back, so the
        // member that wrote last overwrote the other's count, and a member
        // that read back before that write routed by a count the store no
        // longer held.
        let (_d, inner) = store();
        let s = PinnedMeanwhile {
            inner,
            raced: Default::default(),
        };
        // This member saw 5 partitions; the other pinned 3 meanwhile.
        assert_eq!(routing_count(&s, "g-by-connector", 5).unwrap(), 3);
        assert_eq!(
            s.get("rekey/g-by-connector.partitions").unwrap().as_deref(),
            Some(&b"3\n"[..])
        );
    }
}
