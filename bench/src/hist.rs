//! A fixed-size, log-bucketed latency histogram (HDR-like), so memory stays bounded however long
//! a run lasts.
//!
//! Values below 128 µs have a bucket each. Above that, every power of two is split into 64 equal
//! buckets, so a reported percentile is within 1/64 (≈ 1.6 %) of the true value. 32-bit values
//! (over an hour in microseconds) need 1,728 buckets: 14 KiB per histogram.

/// Values below this are recorded exactly.
const LINEAR: u64 = 128;
/// Buckets per power of two above [`LINEAR`].
const SUB: u64 = 64;
/// Largest value recorded as itself; larger values are clamped to it.
const MAX_VALUE: u64 = u32::MAX as u64;
const BUCKETS: usize = index_of(MAX_VALUE) + 1;

/// Bucket index of `v` (which must be at most [`MAX_VALUE`]).
const fn index_of(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros() as u64; // ≥ 7
    let shift = exp - 6;
    let mantissa = v >> shift; // in [64, 128)
    (LINEAR + (exp - 7) * SUB + (mantissa - SUB)) as usize
}

/// Smallest value that falls in bucket `i`, and the bucket's width.
fn bounds_of(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, 1);
    }
    let exp = 7 + (i - LINEAR) / SUB;
    let mantissa = SUB + (i - LINEAR) % SUB;
    let shift = exp - 6;
    (mantissa << shift, 1 << shift)
}

/// Counts of recorded values (microseconds) in log-spaced buckets.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("min", &self.min())
            .field("max", &self.max)
            .finish()
    }
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, value: u64) {
        let v = value.min(MAX_VALUE);
        self.counts[index_of(v)] += 1;
        self.total += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Smallest value recorded (0 when empty).
    pub fn min(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.min
        }
    }

    /// Largest value recorded (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Mean of the recorded values (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value below which `q` (0.0–1.0) of the recorded values lie: the middle of the bucket
    /// holding the value of that rank, clamped to the exact minimum and maximum; the exact maximum
    /// for the top rank (0 when empty).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        if rank >= self.total {
            return self.max;
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bounds_of(i);
                return (low + width / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_the_range() {
        let mut expected_low = 0;
        for i in 0..BUCKETS {
            let (low, width) = bounds_of(i);
            assert_eq!(low, expected_low, "bucket {i}");
            assert_eq!(index_of(low), i);
            assert_eq!(index_of(low + width - 1), i);
            expected_low = low + width;
        }
        assert_eq!(expected_low, MAX_VALUE + 1);
        assert_eq!(BUCKETS, 1728);
    }

    #[test]
    fn quantiles_are_within_the_bucket_precision() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        assert_eq!(h.total, 100_000);
        assert_eq!(h.min(), 1);
        assert_eq!(h.max(), 100_000);
        for (q, exact) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.001, 100.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - exact).abs() / exact < 1.0 / 64.0, "q{q}: {got}");
        }
        assert_eq!(h.quantile(1.0), 100_000);
        assert!((h.mean() - 50_000.5).abs() < 1e-6);
    }

    #[test]
    fn small_values_are_exact_and_huge_ones_clamped() {
        let mut h = Histogram::default();
        h.record(7);
        assert_eq!(h.quantile(0.5), 7);
        h.record(u64::MAX);
        assert_eq!(h.max(), MAX_VALUE);
        assert_eq!(h.quantile(1.0), MAX_VALUE);
    }

    #[test]
    fn merging_adds_counts() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(10);
        b.record(1000);
        b.record(2000);
        a.merge(&b);
        assert_eq!(a.total, 3);
        assert_eq!(a.min(), 10);
        assert_eq!(a.max(), 2000);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }
}
