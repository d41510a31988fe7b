//! The run second by second: per operation, how many finished, how many failed and how
//! long they took, so a stall shows where a whole-run percentile blurs it.
//!
//! Each client records into its own [`SecondRecorder`]: one small histogram per operation
//! for the current second, nothing shared. When an operation finishes in a later second,
//! the client sends the finished second over a channel (once a second, not once an
//! operation) to whoever owns the [`Series`], which merges the clients' seconds. Seconds
//! count from the run's start, warm-up included, and an operation belongs to the second
//! in which it finished.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use crate::latency::{histogram, micros};
use crate::workload::Op;

/// Two significant digits: a per-second histogram is about 10 KiB, and a per-second
/// percentile needs no more precision than that.
const SIGFIG: u8 = 2;

/// A per-second latency histogram (microseconds).
pub type SecondHistogram = Histogram<u32>;

/// What one client recorded in one second, per operation (indexed like [`Op::ALL`]).
#[derive(Debug, Clone, Default)]
pub struct Second {
    /// Latencies of the operations that succeeded; `None` if there were none.
    pub latencies: [Option<SecondHistogram>; Op::COUNT],
    /// Operations that failed.
    pub errors: [u64; Op::COUNT],
}

impl Second {
    fn is_empty(&self) -> bool {
        self.latencies.iter().all(Option::is_none) && self.errors.iter().all(|&e| e == 0)
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Second) {
        for (ours, theirs) in self.latencies.iter_mut().zip(&other.latencies) {
            let Some(theirs) = theirs else { continue };
            match ours {
                Some(ours) => {
                    // Same bounds on both sides: adding cannot fail; saturate if it did.
                    if ours.add(theirs).is_err() {
                        for v in theirs.iter_recorded() {
                            ours.saturating_record_n(v.value_iterated_to(), v.count_at_value());
                        }
                    }
                }
                None => *ours = Some(theirs.clone()),
            }
        }
        for (ours, theirs) in self.errors.iter_mut().zip(other.errors) {
            *ours += theirs;
        }
    }

    /// Successful operations of `op`.
    pub fn count(&self, op: Op) -> u64 {
        self.latencies[op.index()].as_ref().map_or(0, Histogram::len)
    }

    /// The figures of `op` in this second.
    pub fn figures(&self, op: Op) -> OpSecond {
        let errors = self.errors[op.index()];
        match &self.latencies[op.index()] {
            Some(h) if !h.is_empty() => OpSecond {
                count: h.len(),
                errors,
                p50_us: h.value_at_quantile(0.5),
                p99_us: h.value_at_quantile(0.99),
                max_us: h.max(),
            },
            _ => OpSecond { count: 0, errors, p50_us: 0, p99_us: 0, max_us: 0 },
        }
    }

    /// The figures of every operation together.
    pub fn total(&self) -> OpSecond {
        let mut all = Second::default();
        for h in self.latencies.iter().flatten() {
            let mut one = Second::default();
            one.latencies[0] = Some(h.clone());
            all.merge(&one);
        }
        OpSecond { errors: self.errors.iter().sum(), ..all.figures(Op::ALL[0]) }
    }
}

/// What one client sends when one of its seconds is over.
#[derive(Debug)]
pub struct Flush {
    /// Seconds since the run's start.
    pub second: u64,
    /// What the client recorded in it.
    pub data: Second,
}

/// One client's recording of the current second. Dropping it sends what it holds.
#[derive(Debug)]
pub struct SecondRecorder {
    start: Instant,
    second: u64,
    current: Second,
    sink: UnboundedSender<Flush>,
}

impl SecondRecorder {
    /// A recorder counting seconds from `start`, sending each finished second to `sink`.
    pub fn new(start: Instant, sink: UnboundedSender<Flush>) -> SecondRecorder {
        SecondRecorder { start, second: 0, current: Second::default(), sink }
    }

    /// Records an operation `op` that finished at `at` after `latency`; `ok` is whether it
    /// succeeded. Allocates only the first time an operation occurs in a second.
    pub fn record(&mut self, op: Op, at: Instant, latency: Duration, ok: bool) {
        let second = at.saturating_duration_since(self.start).as_secs();
        if second != self.second {
            self.flush();
            self.second = second;
        }
        if ok {
            self.current.latencies[op.index()]
                .get_or_insert_with(|| histogram(SIGFIG))
                .saturating_record(micros(latency));
        } else {
            self.current.errors[op.index()] += 1;
        }
    }

    /// Sends the current second, if anything was recorded in it.
    pub fn flush(&mut self) {
        if !self.current.is_empty() {
            let data = std::mem::take(&mut self.current);
            // The receiver goes away only once the run is over.
            let _ = self.sink.send(Flush { second: self.second, data });
        }
    }
}

impl Drop for SecondRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Every client's seconds, merged: the run's timeline.
#[derive(Debug, Clone, Default)]
pub struct Series {
    seconds: Vec<Second>,
}

impl Series {
    /// Merges one client's second.
    pub fn add(&mut self, flush: Flush) {
        let i = flush.second as usize;
        if self.seconds.len() <= i {
            self.seconds.resize_with(i + 1, Second::default);
        }
        self.seconds[i].merge(&flush.data);
    }

    /// Second `i` since the start, if anything happened in it or later.
    pub fn second(&self, i: u64) -> Option<&Second> {
        self.seconds.get(i as usize)
    }

    /// Seconds recorded (up to the last one with anything in it).
    pub fn len(&self) -> usize {
        self.seconds.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.seconds.is_empty()
    }

    /// Successful operations of `op` in every second from `from` on.
    pub fn count_since(&self, from: u64) -> u64 {
        self.seconds
            .iter()
            .skip(from as usize)
            .map(|s| Op::ALL.iter().map(|&op| s.count(op)).sum::<u64>())
            .sum()
    }

    /// The per-second figures of operations `ops`. Seconds before `measure_from` seconds
    /// are marked warm-up; seconds that end after `ended_at` (since the start) are marked
    /// partial, since they were not a whole second of load.
    pub fn summary(&self, ops: &[Op], measure_from: Duration, ended_at: Duration) -> Vec<SecondSummary> {
        self.seconds
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let t = i as u64;
                SecondSummary {
                    t,
                    warmup: Duration::from_secs(t) < measure_from,
                    partial: Duration::from_secs(t + 1) > ended_at,
                    ops: ops.iter().map(|&op| (op.name(), s.figures(op))).collect(),
                }
            })
            .collect()
    }
}

/// One second of the run, as the report gives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecondSummary {
    /// Seconds since the run's start (warm-up included): the second `[t, t + 1)`.
    pub t: u64,
    /// Whether the second is (partly) warm-up, before the measured window.
    pub warmup: bool,
    /// Whether the second was cut short by the end of the run (its throughput is low for
    /// that reason alone).
    pub partial: bool,
    /// Figures per operation, by name.
    pub ops: BTreeMap<&'static str, OpSecond>,
}

/// One operation's figures in one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct OpSecond {
    /// Operations that succeeded and finished in this second.
    pub count: u64,
    /// Operations that failed and finished in this second.
    pub errors: u64,
    /// Median latency of the successful ones (0 if none).
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest.
    pub max_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(rec: &mut SecondRecorder, start: Instant, op: Op, at_ms: u64, latency_us: u64, ok: bool) {
        rec.record(op, start + Duration::from_millis(at_ms), Duration::from_micros(latency_us), ok);
    }

    #[test]
    fn clients_merge_into_one_timeline() {
        let start = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut a = SecondRecorder::new(start, tx.clone());
        let mut b = SecondRecorder::new(start, tx);
        for i in 0..100 {
            record(&mut a, start, Op::Read, i, 1_000, true);
            record(&mut b, start, Op::Read, 500 + i, 3_000, true);
        }
        record(&mut a, start, Op::Update, 999, 50_000, true);
        record(&mut b, start, Op::Update, 999, 7, false);
        // Second 1 is empty for both; second 2 has one slow read from a.
        record(&mut a, start, Op::Read, 2_500, 900_000, true);
        drop(a);
        drop(b);
        let mut series = Series::default();
        while let Ok(flush) = rx.try_recv() {
            series.add(flush);
        }
        assert_eq!(series.len(), 3);
        let first = series.second(0).unwrap();
        let read = first.figures(Op::Read);
        assert_eq!((read.count, read.errors), (200, 0));
        assert!(read.p50_us.abs_diff(1_000) <= 10 && read.p99_us.abs_diff(3_000) <= 30, "{read:?}");
        let update = first.figures(Op::Update);
        assert_eq!((update.count, update.errors), (1, 1));
        assert!(update.max_us.abs_diff(50_000) <= 500, "{update:?}");
        assert_eq!(series.second(1).unwrap().figures(Op::Read).count, 0);
        assert!(series.second(2).unwrap().figures(Op::Read).max_us >= 890_000);
        assert_eq!(series.count_since(0), 202);
        assert_eq!(series.count_since(1), 1);
        let total = first.total();
        assert_eq!((total.count, total.errors), (201, 1));
        assert!(total.max_us >= 49_500);

        let summary =
            series.summary(&[Op::Read, Op::Update], Duration::from_secs(1), Duration::from_millis(2_500));
        assert_eq!(summary.len(), 3);
        assert!(summary[0].warmup && !summary[1].warmup);
        assert!(!summary[1].partial && summary[2].partial);
        assert_eq!(summary[0].ops["read"].count, 200);
        assert_eq!(summary[1].ops["update"].count, 0);
        let json = serde_json::to_value(&summary[2]).unwrap();
        assert_eq!(json["t"], 2);
        assert_eq!(json["ops"]["read"]["count"], 1);
    }

    #[test]
    fn merging_seconds_is_the_same_as_recording_together() {
        let start = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut both = SecondRecorder::new(start, tx.clone());
        let mut one = SecondRecorder::new(start, tx.clone());
        let mut other = SecondRecorder::new(start, tx);
        for (i, us) in [10u64, 200, 3_000, 40_000, 500_000].into_iter().enumerate() {
            let part = if i % 2 == 0 { &mut one } else { &mut other };
            record(part, start, Op::Rmw, 100, us, true);
            record(&mut both, start, Op::Rmw, 100, us, true);
        }
        drop(both);
        let mut together = Series::default();
        together.add(rx.try_recv().unwrap());
        drop(one);
        drop(other);
        let mut merged = Series::default();
        while let Ok(flush) = rx.try_recv() {
            merged.add(flush);
        }
        let (a, b) = (together.second(0).unwrap(), merged.second(0).unwrap());
        assert_eq!(a.figures(Op::Rmw), b.figures(Op::Rmw));
        assert_eq!(b.figures(Op::Rmw).count, 5);
    }
}
