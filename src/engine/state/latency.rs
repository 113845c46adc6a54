//! Latencies of one bucket and their nearest-rank quantiles (SPEC §5, §8):
//! exact values while few, then an HDR histogram with two significant
//! digits (< 1% relative error).

use hdrhistogram::Histogram;

/// Exact latencies kept per bucket before switching to an HDR histogram.
pub const EXACT_LATENCY_CAP: usize = 256;
/// Most exact latencies sorted for one window quantile before using HDR.
const EXACT_QUERY_CAP: usize = 8192;
/// HDR range in microseconds: 1 µs .. 24 h (SPEC §5: within 1% from
/// 0.001 ms to 24 h); longer latencies saturate at 24 h.
const HDR_MAX_US: u64 = 86_400_000_000;

/// Latencies of one bucket: exact while few, then an HDR histogram (µs).
#[derive(Debug, Clone, Default)]
pub struct Latency {
    exact: Vec<f64>,
    hist: Option<Box<Histogram<u64>>>,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HDR_MAX_US, 2).expect("static HDR bounds are valid")
}

fn to_us(ms: f64) -> u64 {
    // Saturating float → int conversion; NaN cannot reach here (validated).
    (ms * 1000.0).round() as u64
}

impl Latency {
    pub(super) fn record(&mut self, ms: f64) {
        if let Some(h) = &mut self.hist {
            h.saturating_record(to_us(ms));
        } else {
            if self.exact.capacity() == 0 {
                // Most buckets hold a handful of values: one allocation for
                // the first 8 instead of growing through 4 then 8.
                self.exact.reserve_exact(8);
            }
            self.exact.push(ms);
            if self.exact.len() > EXACT_LATENCY_CAP {
                let mut h = new_hist();
                for v in self.exact.drain(..) {
                    h.saturating_record(to_us(v));
                }
                self.exact = Vec::new();
                self.hist = Some(Box::new(h));
            }
        }
    }
    pub(super) fn merge(&mut self, o: &Latency) {
        for &v in &o.exact {
            self.record(v);
        }
        if let Some(oh) = &o.hist {
            let h = self.hist.get_or_insert_with(|| {
                let mut h = new_hist();
                for v in self.exact.drain(..) {
                    h.saturating_record(to_us(v));
                }
                Box::new(h)
            });
            h.add(oh.as_ref()).expect("same HDR bounds");
        }
        if let Some(h) = self.hist.as_mut() {
            for v in self.exact.drain(..) {
                h.saturating_record(to_us(v));
            }
        }
    }
    fn len(&self) -> u64 {
        self.exact.len() as u64 + self.hist.as_ref().map_or(0, |h| h.len())
    }
}

/// Nearest-rank quantiles (SPEC §8) of a set of latency buckets, in ms:
/// the smallest recorded v with at least ⌈p·n/100⌉ values ≤ v.
pub fn quantiles<'a>(
    parts: impl Iterator<Item = &'a Latency> + Clone,
    pcts: &[u32],
) -> Vec<Option<f64>> {
    let n: u64 = parts.clone().map(Latency::len).sum();
    if n == 0 {
        return vec![None; pcts.len()];
    }
    let any_hist = parts.clone().any(|l| l.hist.is_some());
    let rank = |p: u32| ((p as u64 * n).div_ceil(100)).max(1);
    if !any_hist && n as usize <= EXACT_QUERY_CAP {
        let mut v: Vec<f64> = parts.flat_map(|l| l.exact.iter().copied()).collect();
        v.sort_by(f64::total_cmp);
        return pcts
            .iter()
            .map(|&p| Some(v[(rank(p) - 1) as usize]))
            .collect();
    }
    let mut h = new_hist();
    for l in parts {
        for &v in &l.exact {
            h.saturating_record(to_us(v));
        }
        if let Some(oh) = &l.hist {
            h.add(oh.as_ref()).expect("same HDR bounds");
        }
    }
    pcts.iter()
        .map(|&p| Some(h.value_at_quantile(p as f64 / 100.0) as f64 / 1000.0))
        .collect()
}

pub(super) mod serde_repr {
    //! HDR histograms serialize in their own V2 format inside the snapshot.
    use super::Latency;
    use hdrhistogram::serialization::{Deserializer as HDe, Serializer as _, V2Serializer};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Repr {
        exact: Vec<f64>,
        hist: Option<Vec<u8>>,
    }

    pub fn serialize<S: Serializer>(l: &Latency, s: S) -> Result<S::Ok, S::Error> {
        let hist = match &l.hist {
            Some(h) => {
                let mut buf = Vec::new();
                V2Serializer::new()
                    .serialize(h.as_ref(), &mut buf)
                    .map_err(serde::ser::Error::custom)?;
                Some(buf)
            }
            None => None,
        };
        Repr {
            exact: l.exact.clone(),
            hist,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Latency, D::Error> {
        let r = Repr::deserialize(d)?;
        let hist = match r.hist {
            Some(b) => Some(Box::new(
                HDe::new()
                    .deserialize(&mut &b[..])
                    .map_err(serde::de::Error::custom)?,
            )),
            None => None,
        };
        Ok(Latency {
            exact: r.exact,
            hist,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_exact() {
        let mut l = Latency::default();
        for v in [20.0, 3000.0, 100.0] {
            l.record(v);
        }
        let q = quantiles([&l].into_iter(), &[50, 95, 99]);
        assert_eq!(q, vec![Some(100.0), Some(3000.0), Some(3000.0)]);
        let mut l = Latency::default();
        for v in 1..=100 {
            l.record(v as f64);
        }
        let q = quantiles([&l].into_iter(), &[50, 95, 99]);
        assert_eq!(q, vec![Some(50.0), Some(95.0), Some(99.0)]);
    }

    #[test]
    fn hdr_quantiles_within_one_percent() {
        let mut l = Latency::default();
        for v in 1..=10_000 {
            l.record(v as f64 / 10.0);
        }
        assert!(l.hist.is_some());
        let q = quantiles([&l].into_iter(), &[50, 95, 99]);
        for (got, want) in q.iter().zip([500.0, 950.0, 990.0]) {
            let g = got.unwrap();
            assert!((g - want).abs() / want <= 0.01, "{g} vs {want}");
        }
    }
}
