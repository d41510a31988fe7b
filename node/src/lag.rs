//! How far behind the replicas are right now: the replication lag of the writes this node
//! coordinated and the share of its quorum reads that found a stale replica, over a
//! sliding window and since start, as `/v1/status` reports them.
//!
//! The lag of a write is the time from the coordinator's answer to the client until the
//! last primary of its preference list acknowledged its own copy; zero when every copy
//! landed before the answer. A write some primary of which never took its copy (it became
//! a hint, or failed) has no lag: it is counted as *not landed*. Lags are counted in
//! fixed buckets whose upper bounds are [`LAG_BOUNDS`], so the share of writes within
//! 10 ms, 100 ms and 1 s is exact and percentiles are upper bounds.
//!
//! The window is [`SLOTS`] slots of [`SLOT`] each; a slot is cleared when the clock
//! enters it again, so "the last 60 s" covers the 50 to 60 seconds ending now. Each
//! record takes one short critical section and allocates nothing. The totals since start
//! are the Prometheus metrics too (`quorumkv_replication_lag_seconds`, a histogram with
//! the same buckets, and three counters; see [`Export`]), read from here at each scrape,
//! so a write or read is counted in one place.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use serde_json::{Value, json};

/// Upper bounds of the lag buckets, in nanoseconds: 0 (every copy landed before the
/// answer), then 100 µs .. 10 s in 1-2.5-5 steps; one more bucket takes every lag above.
const BOUNDS_NANOS: [u64; 17] = [
    0,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// How many buckets a lag falls into: one per bound, and one above them all.
const BUCKETS: usize = BOUNDS_NANOS.len() + 1;

/// The lag buckets' upper bounds in seconds; they include 0.001, 0.01, 0.1 and 1 exactly.
pub const LAG_BOUNDS: [f64; BOUNDS_NANOS.len()] = {
    let mut s = [0.0; BOUNDS_NANOS.len()];
    let mut i = 0;
    while i < s.len() {
        s[i] = BOUNDS_NANOS[i] as f64 / 1e9;
        i += 1;
    }
    s
};

/// The shares `/v1/status` reports: the key and the lag a write must not exceed.
const SHARES: [(&str, u64); 3] =
    [("within_10ms", 10_000_000), ("within_100ms", 100_000_000), ("within_1s", 1_000_000_000)];

/// The length of one slot of the window.
pub const SLOT: Duration = Duration::from_secs(10);
/// How many slots the window has.
pub const SLOTS: usize = 6;
/// The window `/v1/status` reports, in seconds.
pub const WINDOW_SECONDS: u64 = SLOT.as_secs() * SLOTS as u64;

/// The figures of one slot of the window, or of the whole time since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    /// Writes whose copies all landed, by lag bucket.
    landed: [u64; BUCKETS],
    /// The largest lag among them, in nanoseconds.
    max_nanos: u64,
    /// The sum of their lags, in nanoseconds.
    sum_nanos: u64,
    /// Writes some copy of which never landed on its primary.
    not_landed: u64,
    /// Quorum reads whose answers all came in (or timed out).
    reads: u64,
    /// Of those, the reads that found a primary holding less than the merge.
    stale_reads: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        for (mine, theirs) in self.landed.iter_mut().zip(&other.landed) {
            *mine += theirs;
        }
        self.max_nanos = self.max_nanos.max(other.max_nanos);
        self.sum_nanos = self.sum_nanos.saturating_add(other.sum_nanos);
        self.not_landed += other.not_landed;
        self.reads += other.reads;
        self.stale_reads += other.stale_reads;
    }

    fn write(&mut self, lag: Option<Duration>) {
        match lag {
            Some(lag) => {
                let nanos = u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX);
                let bucket = BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
                self.landed[bucket] += 1;
                self.max_nanos = self.max_nanos.max(nanos);
                self.sum_nanos = self.sum_nanos.saturating_add(nanos);
            }
            None => self.not_landed += 1,
        }
    }

    fn read(&mut self, found_stale: bool) {
        self.reads += 1;
        self.stale_reads += u64::from(found_stale);
    }

    fn landed(&self) -> u64 {
        self.landed.iter().sum()
    }

    /// Every write counted, landed or not.
    fn writes(&self) -> u64 {
        self.landed() + self.not_landed
    }

    /// The share of all writes whose copies all landed within `nanos`; `None` without writes.
    fn share_within(&self, nanos: u64) -> Option<f64> {
        let writes = self.writes();
        let within: u64 =
            BOUNDS_NANOS.iter().zip(&self.landed).filter(|(bound, _)| **bound <= nanos).map(|(_, n)| n).sum();
        (writes > 0).then(|| within as f64 / writes as f64)
    }

    /// The `q` quantile (0 < q ≤ 1) of the lag of the writes that landed, in nanoseconds:
    /// the upper bound of the bucket it falls in, or the largest lag if that is less.
    fn quantile_nanos(&self, q: f64) -> Option<u64> {
        let landed = self.landed();
        if landed == 0 {
            return None;
        }
        let rank = ((q * landed as f64).ceil() as u64).clamp(1, landed);
        let mut seen = 0;
        for (bucket, n) in self.landed.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let bound = BOUNDS_NANOS.get(bucket).copied().unwrap_or(u64::MAX);
                return Some(bound.min(self.max_nanos));
            }
        }
        Some(self.max_nanos)
    }

    fn lag_ms(&self) -> Value {
        let ms = |q: f64| self.quantile_nanos(q).map(|n| n as f64 / 1e6);
        match (ms(0.5), ms(0.9), ms(0.99)) {
            (Some(p50), Some(p90), Some(p99)) => {
                json!({"p50": p50, "p90": p90, "p99": p99, "max": self.max_nanos as f64 / 1e6})
            }
            _ => Value::Null,
        }
    }

    fn writes_json(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("writes".into(), self.writes().into());
        for (key, nanos) in SHARES {
            m.insert(key.into(), self.share_within(nanos).into());
        }
        m.insert("not_landed".into(), self.not_landed.into());
        m
    }

    fn reads_json(&self) -> serde_json::Map<String, Value> {
        let ratio = (self.reads > 0).then(|| self.stale_reads as f64 / self.reads as f64);
        let mut m = serde_json::Map::new();
        m.insert("quorum_reads".into(), self.reads.into());
        m.insert("found_stale".into(), self.stale_reads.into());
        m.insert("repair_ratio".into(), ratio.into());
        m
    }
}

#[derive(Debug, Default)]
struct Slots {
    /// Slot `p % SLOTS` holds period `p` (the `p`-th [`SLOT`] since start).
    slots: [(u64, Tally); SLOTS],
    since_start: Tally,
}

impl Slots {
    fn record(&mut self, now: Duration, change: impl Fn(&mut Tally)) {
        change(&mut self.since_start);
        let period = period(now);
        let (held, tally) = &mut self.slots[(period % SLOTS as u64) as usize];
        if *held < period {
            *held = period;
            *tally = Tally::default();
        }
        change(tally);
    }

    fn recent(&self, now: Duration) -> Tally {
        let period = period(now);
        let mut sum = Tally::default();
        for (held, tally) in &self.slots {
            if *held <= period && period - held < SLOTS as u64 {
                sum.add(tally);
            }
        }
        sum
    }
}

fn period(since_start: Duration) -> u64 {
    since_start.as_secs() / SLOT.as_secs()
}

/// The sliding window of replication lag and read staleness, and the totals since start.
#[derive(Debug)]
pub struct Window {
    started: Instant,
    slots: Mutex<Slots>,
}

impl Default for Window {
    fn default() -> Window {
        Window::new()
    }
}

impl Window {
    pub fn new() -> Window {
        Window { started: Instant::now(), slots: Mutex::new(Slots::default()) }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a write whose copies have all settled: `Some(lag)` when every primary
    /// took its copy, `None` when one never did.
    pub fn write(&self, lag: Option<Duration>) {
        self.write_at(self.now(), lag);
    }

    fn write_at(&self, now: Duration, lag: Option<Duration>) {
        self.slots().record(now, |t| t.write(lag));
    }

    /// Records a quorum read whose answers have all come in, and whether one of its
    /// primaries held less than the merge.
    pub fn read(&self, found_stale: bool) {
        self.read_at(self.now(), found_stale);
    }

    fn read_at(&self, now: Duration, found_stale: bool) {
        self.slots().record(now, |t| t.read(found_stale));
    }

    /// `replication` in `/v1/status`: the writes of the window and since start.
    pub fn replication_json(&self) -> Value {
        self.replication_json_at(self.now())
    }

    /// `reads` in `/v1/status`: the quorum reads of the window and since start.
    pub fn reads_json(&self) -> Value {
        self.reads_json_at(self.now())
    }

    /// The figures of the window ending at `now`, and since start.
    fn snapshot(&self, now: Duration) -> (Tally, Tally) {
        let slots = self.slots();
        (slots.recent(now), slots.since_start)
    }

    fn replication_json_at(&self, now: Duration) -> Value {
        let (recent, since_start) = self.snapshot(now);
        let mut m = serde_json::Map::new();
        m.insert("window_seconds".into(), WINDOW_SECONDS.into());
        m.extend(recent.writes_json());
        m.insert("lag_ms".into(), recent.lag_ms());
        m.insert("since_start".into(), since_start.writes_json().into());
        m.into()
    }

    fn reads_json_at(&self, now: Duration) -> Value {
        let (recent, since_start) = self.snapshot(now);
        let mut m = serde_json::Map::new();
        m.insert("window_seconds".into(), WINDOW_SECONDS.into());
        m.extend(recent.reads_json());
        m.insert("since_start".into(), since_start.reads_json().into());
        m.into()
    }
}

/// Which total since start an [`Export`] shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// The lag histogram of the writes that landed, in seconds.
    Lag,
    /// Writes not landed (a counter).
    NotLanded,
    /// Quorum reads (a counter).
    QuorumReads,
    /// Quorum reads that found a stale primary (a counter).
    StaleReads,
}

/// One of a [`Window`]'s totals since start as a Prometheus metric, read at each scrape:
/// the window is the one place writes and reads are counted.
#[derive(Debug)]
pub struct Export {
    window: Arc<Window>,
    figure: Figure,
}

impl Export {
    pub fn new(window: Arc<Window>, figure: Figure) -> Export {
        Export { window, figure }
    }
}

impl EncodeMetric for Export {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let t = self.window.slots().since_start;
        let counter = match self.figure {
            Figure::Lag => {
                let mut buckets = [(f64::INFINITY, 0); BUCKETS];
                for ((bucket, bound), n) in buckets.iter_mut().zip(LAG_BOUNDS).zip(t.landed) {
                    *bucket = (bound, n);
                }
                buckets[BUCKETS - 1].1 = t.landed[BUCKETS - 1];
                let sum = t.sum_nanos as f64 / 1e9;
                return encoder.encode_histogram::<NoLabelSet>(sum, t.landed(), &buckets, None);
            }
            Figure::NotLanded => t.not_landed,
            Figure::QuorumReads => t.reads,
            Figure::StaleReads => t.stale_reads,
        };
        encoder.encode_counter::<NoLabelSet, _, u64>(&counter, None)
    }

    fn metric_type(&self) -> MetricType {
        match self.figure {
            Figure::Lag => MetricType::Histogram,
            _ => MetricType::Counter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    /// `replication` and `reads` as `/v1/status` would show them at `now`.
    fn status(w: &Window, now: Duration) -> (Value, Value) {
        (w.replication_json_at(now), w.reads_json_at(now))
    }

    #[test]
    fn the_bounds_include_the_share_limits_exactly() {
        for limit in [0.001, 0.01, 0.1, 1.0] {
            assert!(LAG_BOUNDS.contains(&limit), "{limit} is a bound: {LAG_BOUNDS:?}");
        }
        for (_, nanos) in SHARES {
            assert!(BOUNDS_NANOS.contains(&nanos));
        }
        assert!(BOUNDS_NANOS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_lag_on_a_bound_counts_within_it() {
        let mut t = Tally::default();
        t.write(Some(10 * MS));
        t.write(Some(10 * MS + Duration::from_nanos(1)));
        assert_eq!(t.share_within(10_000_000), Some(0.5));
        assert_eq!(t.share_within(100_000_000), Some(1.0));
    }

    #[test]
    fn shares_count_every_write_and_percentiles_only_those_that_landed() {
        let w = Window::new();
        for _ in 0..90 {
            w.write_at(at(1), Some(Duration::ZERO));
        }
        for _ in 0..5 {
            w.write_at(at(1), Some(50 * MS));
        }
        for _ in 0..3 {
            w.write_at(at(1), Some(Duration::from_secs(2)));
        }
        for _ in 0..2 {
            w.write_at(at(1), None);
        }
        let (r, _) = status(&w, at(2));
        assert_eq!(r["window_seconds"], 60);
        assert_eq!(r["writes"], 100);
        assert_eq!(r["not_landed"], 2);
        assert_eq!(r["within_10ms"], 0.9);
        assert_eq!(r["within_100ms"], 0.95);
        assert_eq!(r["within_1s"], 0.95);
        // 98 landed: the 49th and the 89th with no lag, the 98th in the 2.5 s bucket.
        assert_eq!(r["lag_ms"]["p50"], 0.0);
        assert_eq!(r["lag_ms"]["p90"], 0.0);
        assert_eq!(r["lag_ms"]["p99"], 2000.0, "capped at the largest lag");
        assert_eq!(r["lag_ms"]["max"], 2000.0);
        assert_eq!(r["since_start"]["writes"], 100);
        assert_eq!(r["since_start"]["within_10ms"], 0.9);
    }

    #[test]
    fn percentiles_are_the_bucket_upper_bounds() {
        let mut t = Tally::default();
        for lag in [MS / 5, 3 * MS, 3 * MS, 30 * MS] {
            t.write(Some(lag));
        }
        assert_eq!(t.quantile_nanos(0.25), Some(250_000));
        assert_eq!(t.quantile_nanos(0.5), Some(5_000_000));
        assert_eq!(t.quantile_nanos(0.75), Some(5_000_000));
        assert_eq!(t.quantile_nanos(0.99), Some(30_000_000), "the max, below the 50 ms bound");
        let mut only_zero = Tally::default();
        only_zero.write(Some(Duration::ZERO));
        assert_eq!(only_zero.quantile_nanos(0.5), Some(0));
        let beyond = {
            let mut t = Tally::default();
            t.write(Some(Duration::from_secs(30)));
            t
        };
        assert_eq!(beyond.quantile_nanos(0.5), Some(30_000_000_000), "above every bound: the max");
    }

    #[test]
    fn without_writes_or_reads_the_figures_are_null() {
        let w = Window::new();
        let (r, reads) = status(&w, at(0));
        assert_eq!(r["writes"], 0);
        assert!(r["lag_ms"].is_null());
        assert!(r["within_10ms"].is_null());
        assert!(r["since_start"]["within_1s"].is_null());
        assert_eq!(reads["quorum_reads"], 0);
        assert!(reads["repair_ratio"].is_null());
        // Only writes that never landed: shares are 0, there is no lag to report.
        w.write_at(at(0), None);
        let (r, _) = status(&w, at(0));
        assert_eq!(r["within_1s"], 0.0);
        assert!(r["lag_ms"].is_null());
    }

    #[test]
    fn old_slots_leave_the_window_and_stay_in_the_totals() {
        let w = Window::new();
        w.write_at(at(5), None);
        w.read_at(at(5), true);
        w.write_at(at(25), Some(MS));
        w.read_at(at(25), false);
        let (r, reads) = status(&w, at(59));
        assert_eq!((r["writes"].as_u64(), r["not_landed"].as_u64()), (Some(2), Some(1)));
        assert_eq!(reads["repair_ratio"], 0.5);
        // At 60 s the slot of 0..10 s is the oldest no more.
        let (r, reads) = status(&w, at(60));
        assert_eq!((r["writes"].as_u64(), r["not_landed"].as_u64()), (Some(1), Some(0)));
        assert_eq!(r["within_10ms"], 1.0);
        assert_eq!((reads["quorum_reads"].as_u64(), reads["found_stale"].as_u64()), (Some(1), Some(0)));
        assert_eq!(reads["since_start"]["found_stale"], 1);
        assert_eq!(reads["since_start"]["repair_ratio"], 0.5);
        assert_eq!(r["since_start"]["not_landed"], 1);
        // Recording at 65 s reuses that slot, cleared; 25 s is still in the window.
        w.write_at(at(65), Some(Duration::from_millis(200)));
        let (r, _) = status(&w, at(65));
        assert_eq!(r["writes"], 2);
        assert_eq!(r["within_100ms"], 0.5);
        assert_eq!(r["lag_ms"]["max"], 200.0);
        let (r, _) = status(&w, at(200));
        assert_eq!(r["writes"], 0, "nothing recorded in the last minute");
        assert_eq!(r["since_start"]["writes"], 3);
    }

    #[test]
    fn the_totals_are_exported_as_a_histogram_and_counters() {
        let w = Arc::new(Window::new());
        let mut registry = prometheus_client::registry::Registry::with_prefix("quorumkv");
        for (name, figure) in [
            ("replication_lag_seconds", Figure::Lag),
            ("writes_not_landed", Figure::NotLanded),
            ("quorum_reads", Figure::QuorumReads),
            ("stale_reads", Figure::StaleReads),
        ] {
            registry.register(name, "help", Export::new(w.clone(), figure));
        }
        w.write_at(at(1), Some(Duration::ZERO));
        w.write_at(at(1), Some(10 * MS));
        w.write_at(at(1), Some(Duration::from_secs(30)));
        w.write_at(at(1), None);
        w.read_at(at(1), true);
        w.read_at(at(1), false);
        // Out of the window, still in the totals.
        let mut text = String::new();
        w.write_at(at(500), Some(MS));
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "quorumkv_replication_lag_seconds_sum 30.011\n",
            "quorumkv_replication_lag_seconds_count 4\n",
            "quorumkv_replication_lag_seconds_bucket{le=\"0.0\"} 1\n",
            "quorumkv_replication_lag_seconds_bucket{le=\"0.001\"} 2\n",
            "quorumkv_replication_lag_seconds_bucket{le=\"0.01\"} 3\n",
            "quorumkv_replication_lag_seconds_bucket{le=\"10.0\"} 3\n",
            "quorumkv_replication_lag_seconds_bucket{le=\"+Inf\"} 4\n",
            "# TYPE quorumkv_writes_not_landed counter\n",
            "quorumkv_writes_not_landed_total 1\n",
            "quorumkv_quorum_reads_total 2\n",
            "quorumkv_stale_reads_total 1\n",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
    }

    #[test]
    fn a_write_recorded_late_with_an_earlier_clock_is_not_lost() {
        let w = Window::new();
        w.write_at(at(70), Some(MS));
        // A thread that read the clock at 10 s takes the lock after one at 70 s.
        w.write_at(at(10), Some(MS));
        let (r, _) = status(&w, at(70));
        assert_eq!(r["writes"], 2);
    }
}
