//! Synthetic connector traffic with realistic shapes, for `demo`, `loadgen`,
//! tests and benchmarks: several connectors and clouds, power-law (Zipf)
//! users and connections, throttling bursts, connector- vs backend-caused
//! failures, log-normal latency.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::engine::timeutil::{self, Micros, MICROS_PER_DAY};

/// How one synthetic connector behaves.
#[derive(Debug, Clone)]
pub struct Profile {
    pub id: &'static str,
    /// (cloud, share of traffic)
    pub clouds: &'static [(&'static str, f64)],
    /// Events per day, at full scale.
    pub per_day: u32,
    pub users: u64,
    pub connections: u64,
    pub p_connector_fail: f64,
    pub p_backend_fail: f64,
    pub p_client_fail: f64,
    pub p_throttle: f64,
    /// Median latency, ms.
    pub latency_ms: f64,
}

/// The demo's connectors: one per verdict.
pub fn demo_profiles() -> Vec<Profile> {
    vec![
        Profile {
            id: "shared_contoso",
            clouds: &[("public", 0.8), ("gcc", 0.2)],
            per_day: 4000,
            users: 4000,
            connections: 150,
            p_connector_fail: 0.000002,
            p_backend_fail: 0.002,
            p_client_fail: 0.03,
            p_throttle: 0.01,
            latency_ms: 180.0,
        },
        Profile {
            id: "shared_fabrikam",
            clouds: &[("public", 1.0)],
            per_day: 1500,
            users: 800,
            connections: 60,
            p_connector_fail: 0.01,
            p_backend_fail: 0.01,
            p_client_fail: 0.05,
            p_throttle: 0.03,
            latency_ms: 450.0,
        },
        Profile {
            id: "shared_tailspin",
            clouds: &[("public", 0.7), ("mooncake", 0.3)],
            per_day: 1500,
            users: 600,
            connections: 40,
            p_connector_fail: 0.0,
            p_backend_fail: 0.005,
            p_client_fail: 0.35,
            p_throttle: 0.02,
            latency_ms: 250.0,
        },
        Profile {
            id: "shared_newbie",
            clouds: &[("public", 1.0)],
            per_day: 6,
            users: 10,
            connections: 3,
            p_connector_fail: 0.0,
            p_backend_fail: 0.0,
            p_client_fail: 0.1,
            p_throttle: 0.0,
            latency_ms: 90.0,
        },
    ]
}

/// Generates NDJSON event lines.
pub struct Generator {
    rng: StdRng,
    profiles: Vec<Profile>,
    weights: Vec<f64>,
    user_zipf: Vec<Zipf<f64>>,
    conn_zipf: Vec<Zipf<f64>>,
    latency: Vec<LogNormal<f64>>,
    /// Remaining events of a throttling burst, per connector.
    burst: Vec<u32>,
}

impl Generator {
    pub fn new(profiles: Vec<Profile>, seed: u64) -> Generator {
        let total: f64 = profiles.iter().map(|p| p.per_day as f64).sum();
        Generator {
            rng: StdRng::seed_from_u64(seed),
            weights: profiles.iter().map(|p| p.per_day as f64 / total).collect(),
            user_zipf: profiles
                .iter()
                .map(|p| Zipf::new(p.users as f64, 1.05).expect("valid zipf"))
                .collect(),
            conn_zipf: profiles
                .iter()
                .map(|p| Zipf::new(p.connections as f64, 0.8).expect("valid zipf"))
                .collect(),
            latency: profiles
                .iter()
                .map(|p| LogNormal::new(p.latency_ms.ln(), 0.6).expect("valid lognormal"))
                .collect(),
            burst: vec![0; profiles.len()],
            profiles,
        }
    }

    /// Events per day of all profiles together.
    pub fn per_day(&self) -> u64 {
        self.profiles.iter().map(|p| p.per_day as u64).sum()
    }

    fn pick(&mut self, weights: &[f64]) -> usize {
        let mut x: f64 = self.rng.random();
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }

    /// Appends one event at time `ts` as an NDJSON line.
    pub fn event(&mut self, ts: Micros, out: &mut String) {
        let weights = self.weights.clone();
        let i = self.pick(&weights);
        let p = self.profiles[i].clone();
        let cw: Vec<f64> = p.clouds.iter().map(|c| c.1).collect();
        let cloud = p.clouds[self.pick(&cw)].0;
        let user = self.user_zipf[i].sample(&mut self.rng) as u64;
        let conn = self.conn_zipf[i].sample(&mut self.rng) as u64;
        if self.burst[i] == 0 && self.rng.random::<f64>() < p.p_throttle / 20.0 {
            self.burst[i] = 20;
        }
        let x: f64 = self.rng.random();
        let (status, fault): (u16, Option<&str>) = if self.burst[i] > 0 {
            self.burst[i] -= 1;
            (429, None)
        } else if x < p.p_connector_fail {
            if self.rng.random::<bool>() {
                (500, None)
            } else {
                (0, Some("connector"))
            }
        } else if x < p.p_connector_fail + p.p_backend_fail {
            (503, Some("backend"))
        } else if x < p.p_connector_fail + p.p_backend_fail + p.p_client_fail {
            (if self.rng.random::<bool>() { 404 } else { 400 }, None)
        } else {
            (
                if self.rng.random::<f64>() < 0.9 {
                    200
                } else {
                    201
                },
                None,
            )
        };
        let lat = self.latency[i].sample(&mut self.rng);
        let _ = write!(
            out,
            r#"{{"ts":"{}","connector":"{}","cloud":"{}","status":{},"#,
            timeutil::format_micros(ts),
            p.id,
            cloud,
            status
        );
        if let Some(f) = fault {
            let _ = write!(out, r#""fault":"{f}","#);
        }
        let _ = writeln!(
            out,
            r#""latency_ms":{:.1},"user":"u-{:05x}","connection":"c-{:04x}","operation":"ListItems"}}"#,
            lat,
            user,
            conn + (i as u64) * 0x1000
        );
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("kafka producer: {0}")]
    Kafka(#[from] KafkaError),
}

/// Produces NDJSON messages of up to `per_message` events.
pub struct Sender {
    producer: BaseProducer,
    topic: String,
    per_message: usize,
    buf: String,
    in_buf: usize,
    pub sent_events: u64,
}

impl Sender {
    pub fn new(brokers: &str, topic: &str, per_message: usize) -> Result<Sender, LoadgenError> {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("compression.type", "lz4")
            .set("linger.ms", "20")
            .set("queue.buffering.max.messages", "200000")
            .create()?;
        Ok(Sender {
            producer,
            topic: topic.to_string(),
            per_message: per_message.max(1),
            buf: String::new(),
            in_buf: 0,
            sent_events: 0,
        })
    }

    pub fn push(&mut self, gen: &mut Generator, ts: Micros) -> Result<(), LoadgenError> {
        gen.event(ts, &mut self.buf);
        self.in_buf += 1;
        if self.in_buf >= self.per_message {
            self.send()?;
        }
        Ok(())
    }

    pub fn send(&mut self) -> Result<(), LoadgenError> {
        if self.in_buf == 0 {
            return Ok(());
        }
        let payload = std::mem::take(&mut self.buf);
        let mut rec: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&self.topic).payload(payload.as_bytes());
        loop {
            match self.producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        self.producer.poll(Duration::ZERO);
        self.sent_events += self.in_buf as u64;
        self.in_buf = 0;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), LoadgenError> {
        self.send()?;
        self.producer.flush(Duration::from_secs(30))?;
        Ok(())
    }
}

/// Produces `days` days of history ending at `now`, at `scale` × each
/// profile's daily volume, spread evenly over each day.
pub fn produce_history(
    sender: &mut Sender,
    gen: &mut Generator,
    now: Micros,
    days: u32,
    scale: f64,
) -> Result<u64, LoadgenError> {
    let per_day = ((gen.per_day() as f64) * scale).max(1.0) as i64;
    let start = now - days as i64 * MICROS_PER_DAY;
    let total = per_day * days as i64;
    let step = (now - start) / total.max(1);
    for k in 0..total {
        sender.push(gen, start + k * step)?;
    }
    sender.flush()?;
    Ok(total as u64)
}

/// Produces live events at `rate` per second for `duration` (forever when
/// `None`), stamped with the wall clock `clock()`.
pub fn produce_live(
    sender: &mut Sender,
    gen: &mut Generator,
    rate: u32,
    duration: Option<Duration>,
    clock: impl Fn() -> Micros,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<u64, LoadgenError> {
    let started = Instant::now();
    let mut sent = 0u64;
    let tick = Duration::from_millis(100);
    while duration.is_none_or(|d| started.elapsed() < d)
        && !stop.load(std::sync::atomic::Ordering::Relaxed)
    {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            sender.push(gen, clock())?;
            sent += 1;
        }
        sender.send()?;
        std::thread::sleep(tick);
    }
    sender.flush()?;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::decode_payload;

    #[test]
    fn generated_events_are_valid() {
        let mut g = Generator::new(demo_profiles(), 7);
        let mut s = String::new();
        for k in 0..2000 {
            g.event(1_795_000_000_000_000 + k, &mut s);
        }
        let mut ok = 0;
        let n = decode_payload(s.as_bytes(), |r| {
            assert!(r.is_ok(), "{r:?}");
            ok += 1;
        });
        assert_eq!((n, ok), (2000, 2000));
    }
}
