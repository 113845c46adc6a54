//! A deterministic, realistic corpus of connector events as NDJSON, shared by
//! `benches/engine.rs` and `examples/gen_corpus.rs` (included with `#[path]`).
//!
//! About 170 bytes an event: 8 connectors and 6 clouds with skewed traffic,
//! power-law users (200k) and connections (50k), ~2.5% 429s, ~2% 5xx (half
//! with a `fault`), some no-responses, log-normal latencies, 30 days of
//! timestamps ending at [`NOW`], 1% of them as epoch milliseconds.
//!
//! Two profiles ([`Profile`]): `demo` (the 8 connectors above) and
//! `realistic` (issue 8: 1,000 connectors, so with the 6 clouds up to
//! 6,000 scopes, the same 200k users and 50k connections).

#![allow(dead_code)]

use std::io::{self, Write};

/// The `--now` the corpus is meant for.
pub const NOW: &str = "2026-11-20T12:00:00Z";
/// [`NOW`] in epoch milliseconds.
pub const NOW_MS: i64 = 1_795_176_000_000;

const CONNECTORS: [&str; 8] = [
    "shared_contoso",
    "shared_fabrikam",
    "shared_northwind",
    "shared_adventureworks",
    "shared_tailspin",
    "shared_wingtip",
    "shared_litware",
    "shared_proseware",
];
const OPERATIONS: [&str; 8] = [
    "ListItems",
    "GetItem",
    "CreateItem",
    "UpdateItem",
    "DeleteItem",
    "ListFolders",
    "GetAttachment",
    "SendMessage",
];
/// Which connectors the corpus spreads its events over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The 8 named connectors of `CONNECTORS`.
    Demo,
    /// 1,000 connectors `shared_c0000` .. `shared_c0999`, power-law traffic.
    Realistic,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Demo => "demo",
            Profile::Realistic => "realistic",
        }
    }
}

/// Connectors of the realistic profile.
pub const REALISTIC_CONNECTORS: u64 = 1_000;

const USERS: f64 = 200_000.0;
const CONNECTIONS: f64 = 50_000.0;

/// SplitMix64: small, fast, and the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// A power-law index in 0..n: low indices are far more frequent.
    pub fn skewed(&mut self, n: f64, power: i32) -> u64 {
        (n * self.f64().powi(power)) as u64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-300);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn write_ts(out: &mut Vec<u8>, ms: i64) {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil(days);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    let _ = write!(
        out,
        "\"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z\""
    );
}

/// Appends one event line (with its `\n`) to `out`.
pub fn event_line(rng: &mut Rng, out: &mut Vec<u8>) {
    event_line_of(Profile::Demo, rng, out)
}

/// Appends one event line of `profile` (with its `\n`) to `out`.
pub fn event_line_of(profile: Profile, rng: &mut Rng, out: &mut Vec<u8>) {
    event_line_at(profile, NOW_MS, rng, out);
}

/// Appends one event line of `profile` whose timestamp falls in the 30 days
/// before `now_ms` (benchmarks against a daemon that reads the wall clock).
/// Returns the connector's index in its profile.
pub fn event_line_at(profile: Profile, now_ms: i64, rng: &mut Rng, out: &mut Vec<u8>) -> u64 {
    let mut name = [0u8; 12];
    let (index, connector) = match profile {
        Profile::Demo => {
            let i = rng.skewed(CONNECTORS.len() as f64, 2);
            (i, CONNECTORS[i as usize])
        }
        Profile::Realistic => {
            let i = rng.skewed(REALISTIC_CONNECTORS as f64, 2);
            let mut w = &mut name[..];
            let _ = write!(w, "shared_c{i:04}");
            (i, std::str::from_utf8(&name).expect("ASCII"))
        }
    };
    let r = rng.f64();
    let cloud = if r < 0.85 {
        "public"
    } else if r < 0.91 {
        "gcc"
    } else if r < 0.94 {
        "gcc-high"
    } else if r < 0.95 {
        "dod"
    } else if r < 0.97 {
        "azure-government"
    } else {
        "mooncake"
    };
    let r = rng.f64();
    let status: u16 = if r < 0.90 {
        200
    } else if r < 0.93 {
        [201, 204][rng.below(2) as usize]
    } else if r < 0.945 {
        [302, 304][rng.below(2) as usize]
    } else if r < 0.965 {
        [400, 401, 403, 404][rng.below(4) as usize]
    } else if r < 0.99 {
        429
    } else if r < 0.997 {
        [500, 502, 503, 504][rng.below(4) as usize]
    } else {
        0
    };
    let fault = match status {
        500..=599 | 0 if rng.f64() < 0.5 => {
            if rng.f64() < 0.6 {
                "\"backend\""
            } else {
                "\"connector\""
            }
        }
        400..=499 if status != 429 && rng.f64() < 0.1 => "\"client\"",
        _ => "null",
    };
    let ms = now_ms - rng.below(30 * 86_400_000) as i64;
    out.extend_from_slice(b"{\"ts\":");
    if rng.below(100) == 0 {
        let _ = write!(out, "{ms}");
    } else {
        write_ts(out, ms);
    }
    let _ = write!(
        out,
        ",\"connector\":\"{connector}\",\"cloud\":\"{cloud}\",\"status\":"
    );
    if status == 0 {
        out.extend_from_slice(b"null");
    } else {
        let _ = write!(out, "{status}");
    }
    // Producers differ: some send `"fault":null`, most leave it out.
    if fault != "null" || rng.below(4) == 0 {
        let _ = write!(out, ",\"fault\":{fault}");
    }
    if rng.below(20) != 0 {
        // Log-normal around 150 ms, a tenth of a millisecond resolution.
        let lat = (150.0 * (0.8 * rng.normal()).exp() * 10.0).round() / 10.0;
        let _ = write!(out, ",\"latency_ms\":{lat}");
    }
    let user = rng.skewed(USERS, 3);
    let conn = rng.skewed(CONNECTIONS, 3);
    let op = OPERATIONS[rng.skewed(OPERATIONS.len() as f64, 2) as usize];
    let _ = writeln!(
        out,
        ",\"user\":\"u-{user:x}\",\"connection\":\"c-{conn:x}\",\"operation\":\"{op}\"}}"
    );
    index
}

/// `count` events as one NDJSON buffer.
pub fn generate(count: usize, seed: u64) -> Vec<u8> {
    generate_of(Profile::Demo, count, seed)
}

/// `count` events of `profile` as one NDJSON buffer.
pub fn generate_of(profile: Profile, count: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(count * 180);
    for _ in 0..count {
        event_line_of(profile, &mut rng, &mut out);
    }
    out
}

/// `count` events written to `w` in blocks, without holding them all.
pub fn write_corpus(w: &mut impl Write, count: usize, seed: u64) -> io::Result<u64> {
    let mut rng = Rng::new(seed);
    let mut buf = Vec::with_capacity(1 << 20);
    let mut bytes = 0u64;
    for i in 0..count {
        event_line(&mut rng, &mut buf);
        if buf.len() >= (1 << 20) - 512 || i + 1 == count {
            w.write_all(&buf)?;
            bytes += buf.len() as u64;
            buf.clear();
        }
    }
    w.flush()?;
    Ok(bytes)
}
