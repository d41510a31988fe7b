//! Latency histograms (HdrHistogram, microseconds) and their summary.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency recorded exactly; anything slower is recorded as this.
pub const MAX_MICROS: u64 = 120_000_000;

/// A latency histogram with microsecond resolution and three significant digits, from
/// 1 µs to two minutes. Histograms from several clients merge without loss. The histogram
/// (about 150 KiB) is allocated by the first sample, so an operation a run never does costs
/// nothing.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    histogram: Option<Histogram<u64>>,
}

/// The figures a report quotes from a [`Latencies`], in microseconds. Percentiles are
/// HdrHistogram's: the smallest recorded value at or above that fraction of samples, to
/// three significant digits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Samples recorded.
    pub count: u64,
    /// Arithmetic mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest sample.
    pub max_us: u64,
}

/// `latency` in whole microseconds, within what the histograms hold (1 µs to two minutes).
pub fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS)
}

/// An empty histogram over 1 µs to two minutes with `sigfig` significant digits.
pub fn histogram<T: hdrhistogram::Counter>(sigfig: u8) -> Histogram<T> {
    // The bounds are constants that hdrhistogram accepts (low ≥ 1, high ≥ 2·low,
    // sigfig ≤ 5); a failure here is a bug in this line, not a runtime condition.
    Histogram::new_with_bounds(1, MAX_MICROS, sigfig).expect("valid histogram bounds")
}

impl Latencies {
    /// An empty histogram.
    pub fn new() -> Latencies {
        Latencies { histogram: None }
    }

    /// Records one latency; below 1 µs counts as 1 µs, above two minutes as two minutes.
    pub fn record(&mut self, latency: Duration) {
        self.histogram.get_or_insert_with(|| histogram(3)).saturating_record(micros(latency));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        let Some(theirs) = &other.histogram else { return };
        let ours = self.histogram.get_or_insert_with(|| histogram(3));
        // Same bounds on both sides, so adding cannot fail; saturate rather than panic.
        if ours.add(theirs).is_err() {
            for v in theirs.iter_recorded() {
                ours.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.histogram.as_ref().map_or(0, Histogram::len)
    }

    /// The figures of the distribution; all zero when nothing was recorded.
    pub fn summary(&self) -> Summary {
        let Some(h) = self.histogram.as_ref().filter(|h| !h.is_empty()) else {
            return Summary {
                count: 0,
                mean_us: 0.0,
                p50_us: 0,
                p90_us: 0,
                p95_us: 0,
                p99_us: 0,
                p999_us: 0,
                max_us: 0,
            };
        };
        Summary {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `actual` is within HdrHistogram's three significant digits of `expected`.
    fn close(actual: u64, expected: u64) -> bool {
        actual.abs_diff(expected) * 1000 <= expected
    }

    #[test]
    fn summary_of_a_known_distribution() {
        let mut l = Latencies::new();
        for us in 1..=10_000u64 {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary();
        assert_eq!(s.count, 10_000);
        assert!(close(s.p50_us, 5_000), "{s:?}");
        assert!(close(s.p90_us, 9_000), "{s:?}");
        assert!(close(s.p95_us, 9_500), "{s:?}");
        assert!(close(s.p99_us, 9_900), "{s:?}");
        assert!(close(s.p999_us, 9_990), "{s:?}");
        assert!(close(s.max_us, 10_000), "{s:?}");
        assert!((s.mean_us - 5_000.5).abs() < 10.0, "{s:?}");
    }

    #[test]
    fn merging_is_the_same_as_recording_together() {
        let (mut a, mut b, mut both) = (Latencies::new(), Latencies::new(), Latencies::new());
        for us in [10, 20, 30_000] {
            a.record(Duration::from_micros(us));
            both.record(Duration::from_micros(us));
        }
        for us in [15, 700, 1_000_000] {
            b.record(Duration::from_micros(us));
            both.record(Duration::from_micros(us));
        }
        a.merge(&b);
        assert_eq!(a.summary(), both.summary());
        assert_eq!(a.count(), 6);
    }

    #[test]
    fn extremes_are_clamped_and_empty_is_zero() {
        assert_eq!(Latencies::new().summary().count, 0);
        assert_eq!(Latencies::new().summary().p99_us, 0);
        let mut l = Latencies::new();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(3600));
        let s = l.summary();
        assert_eq!(s.count, 2);
        assert_eq!(s.p50_us, 1);
        assert!(close(s.max_us, MAX_MICROS), "{s:?}");
    }
}
