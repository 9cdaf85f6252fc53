//! A mergeable latency sketch (DDSketch-style log-bucketed histogram).
//!
//! Values are whole microseconds. Bucket `i` holds values in `(γ^(i-1), γ^i]` with
//! `γ = (1 + α) / (1 - α)` and `α = 1 %`; a value is estimated as `2γ^i / (γ + 1)`, which is
//! within `α` relative error of every value in the bucket. Zero has its own bucket. Two
//! sketches merge by adding bucket counts, so 10 s buckets roll up into minutes, hours and days
//! without losing accuracy, and a query can merge any set of rows.
//!
//! Buckets are kept dense (one `u64` per index between the lowest and highest seen): latencies
//! of one group span a few hundred indexes at most (1 µs .. 71 min is ~1,100), and a dense
//! array makes `add` an index computation and an increment on the ingest hot path.

use thiserror::Error;

/// Relative accuracy of quantile estimates.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Format tag of [`LatencySketch::to_bytes`]; bumped if the encoding ever changes.
const FORMAT_V1: u8 = 1;

/// `γ` for [`RELATIVE_ACCURACY`].
fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// A stored sketch could not be decoded.
#[derive(Debug, Error)]
#[error("corrupt latency sketch: {0}")]
pub struct SketchDecodeError(&'static str);

/// A mergeable histogram of latencies in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencySketch {
    zero: u64,
    /// Index of `counts[0]`.
    offset: i32,
    counts: Vec<u64>,
}

impl LatencySketch {
    /// An empty sketch.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bucket index of a value > 0.
    fn index_of(value: f64) -> i32 {
        // ln(γ) computed once per process would save a division; the compiler folds gamma()
        // into a constant, and ln() dominates anyway.
        (value.ln() / gamma().ln()).ceil() as i32
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.zero + self.counts.iter().sum::<u64>()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Records one value (microseconds).
    pub fn add(&mut self, micros: u32) {
        if micros == 0 {
            self.zero += 1;
        } else {
            self.add_at(Self::index_of(f64::from(micros)), 1);
        }
    }

    fn add_at(&mut self, index: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(n);
            return;
        }
        if index < self.offset {
            let grow = (self.offset - index) as usize;
            let mut counts = vec![0; grow + self.counts.len()];
            counts[grow..].copy_from_slice(&self.counts);
            self.counts = counts;
            self.offset = index;
        }
        let at = (index - self.offset) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] += n;
    }

    /// Adds every value of `other` into this sketch.
    pub fn merge(&mut self, other: &LatencySketch) {
        self.zero += other.zero;
        if other.counts.is_empty() {
            return;
        }
        // Grow once to cover both ranges, then add element-wise.
        let last = other.offset + other.counts.len() as i32 - 1;
        self.add_at(other.offset, 0);
        self.add_at(last, 0);
        let start = (other.offset - self.offset) as usize;
        for (mine, theirs) in self.counts[start..].iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
    }

    /// The estimated `q`-quantile (0 ≤ q ≤ 1) in microseconds, `None` when empty. Within
    /// [`RELATIVE_ACCURACY`] of the value at rank `⌊q·(n−1)⌋` of the sorted inputs.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (n - 1) as f64).floor() as u64;
        if rank < self.zero {
            return Some(0.0);
        }
        let mut seen = self.zero;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                let index = self.offset + i as i32;
                let g = gamma();
                return Some(2.0 * g.powi(index) / (g + 1.0));
            }
        }
        None
    }

    /// The estimated mean in microseconds, `None` when empty: every value is replaced by its
    /// bucket's estimate, so the mean is within [`RELATIVE_ACCURACY`] of the true mean too.
    pub fn mean(&self) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let g = gamma();
        let sum: f64 = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| *c as f64 * 2.0 * g.powi(self.offset + i as i32) / (g + 1.0))
            .sum();
        Some(sum / n as f64)
    }

    /// Compact encoding: format byte, zero count, then `(index delta, count)` pairs of the
    /// non-empty buckets, all as LEB128 varints (indexes zigzag-encoded).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.counts.len() * 3);
        out.push(FORMAT_V1);
        put_varint(&mut out, self.zero);
        let mut previous = 0i64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let index = i64::from(self.offset) + i as i64;
            put_varint(&mut out, zigzag(index - previous));
            put_varint(&mut out, c);
            previous = index;
        }
        out
    }

    /// Decodes [`LatencySketch::to_bytes`]; an empty slice is an empty sketch.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SketchDecodeError> {
        let Some((&format, mut rest)) = bytes.split_first() else {
            return Ok(Self::new());
        };
        if format != FORMAT_V1 {
            return Err(SketchDecodeError("unknown format"));
        }
        let mut sketch = Self {
            zero: take_varint(&mut rest)?,
            ..Self::default()
        };
        let mut index = 0i64;
        while !rest.is_empty() {
            index += unzigzag(take_varint(&mut rest)?);
            let count = take_varint(&mut rest)?;
            let index =
                i32::try_from(index).map_err(|_| SketchDecodeError("bucket index out of range"))?;
            if !(-4096..=4096).contains(&index) {
                // Latencies are u32 microseconds: real indexes stay within ~±1,200. A wild
                // index would make the dense array huge.
                return Err(SketchDecodeError("bucket index out of range"));
            }
            sketch.add_at(index, count);
        }
        Ok(sketch)
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(input: &mut &[u8]) -> Result<u64, SketchDecodeError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input
            .split_first()
            .ok_or(SketchDecodeError("truncated varint"))?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(SketchDecodeError("varint too long"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn exact(sorted: &[u32], q: f64) -> f64 {
        let rank = (q * (sorted.len() - 1) as f64).floor() as usize;
        f64::from(sorted[rank])
    }

    fn assert_close(estimate: f64, truth: f64, what: &str) {
        if truth == 0.0 {
            assert_eq!(estimate, 0.0, "{what}");
        } else {
            let err = (estimate - truth).abs() / truth;
            assert!(
                err <= RELATIVE_ACCURACY + 1e-9,
                "{what}: estimate {estimate} vs exact {truth} ({:.4} % off)",
                err * 100.0
            );
        }
    }

    #[test]
    fn quantiles_of_random_data_are_within_one_percent() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for trial in 0..20 {
            let n = rng.gen_range(1..20_000);
            // Log-uniform over 1 µs .. 10 s, plus some zeros, like real latencies.
            let mut values: Vec<u32> = (0..n)
                .map(|_| {
                    if rng.gen_ratio(1, 50) {
                        0
                    } else {
                        10f64.powf(rng.gen_range(0.0..7.0)) as u32
                    }
                })
                .collect();
            let mut sketch = LatencySketch::new();
            for &v in &values {
                sketch.add(v);
            }
            values.sort_unstable();
            assert_eq!(sketch.count(), n as u64);
            for q in [0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
                let estimate = sketch.quantile(q).expect("non-empty");
                assert_close(estimate, exact(&values, q), &format!("trial {trial} q {q}"));
            }
        }
    }

    #[test]
    fn merged_sketches_answer_like_one_sketch_of_all_values() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut all = Vec::new();
        let mut merged = LatencySketch::new();
        let mut single = LatencySketch::new();
        for part in 0..8 {
            let mut sketch = LatencySketch::new();
            // Each part has a different range so merging has to grow both ends.
            let base = 10u32.pow(part % 5);
            for _ in 0..2_000 {
                let v = base * rng.gen_range(1..1_000);
                sketch.add(v);
                single.add(v);
                all.push(v);
            }
            merged.merge(&sketch);
        }
        assert_eq!(merged, single);
        all.sort_unstable();
        for q in [0.5, 0.95, 0.99] {
            assert_close(
                merged.quantile(q).expect("values"),
                exact(&all, q),
                "merged",
            );
        }
    }

    #[test]
    fn encoding_round_trips_and_is_compact() {
        let mut sketch = LatencySketch::new();
        for v in [0, 0, 1, 2, 1_000, 1_001, 50_000, 4_000_000_000] {
            sketch.add(v);
        }
        let bytes = sketch.to_bytes();
        assert!(bytes.len() < 40, "{} bytes", bytes.len());
        assert_eq!(LatencySketch::from_bytes(&bytes).expect("decode"), sketch);
        assert_eq!(
            LatencySketch::from_bytes(&[]).expect("empty"),
            LatencySketch::new()
        );
        assert!(LatencySketch::from_bytes(&[9, 1]).is_err());
        assert!(LatencySketch::from_bytes(&[FORMAT_V1, 0x80]).is_err());
        assert_eq!(LatencySketch::new().quantile(0.5), None);
    }
}
