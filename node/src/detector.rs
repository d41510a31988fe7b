//! Phi-accrual failure detection (Hayashibara et al. 2004, as Cassandra and Akka use it).
//!
//! Each peer is pinged every heartbeat interval; the detector remembers the intervals
//! between successful answers. Suspicion `phi` is `-log10 P(no answer for this long)`
//! under an exponential model of those intervals: `phi = elapsed / (mean · ln 10)`. A
//! peer is down when phi crosses the threshold and up again at its next answer. With a
//! 200 ms interval and a threshold of 6, a silent peer is marked down after about
//! 6 · ln 10 · 0.2 s ≈ 2.8 s; a slow network stretches the mean and so the delay,
//! instead of flapping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many recent intervals the mean is taken over.
const WINDOW: usize = 100;

/// One peer's arrival history.
#[derive(Debug, Clone)]
pub struct PhiAccrual {
    last: Instant,
    intervals: VecDeque<f64>,
    /// The mean never drops below this (the heartbeat interval), so a burst of fast
    /// answers does not make the detector hair-triggered.
    min_mean: f64,
}

impl PhiAccrual {
    pub fn new(now: Instant, heartbeat: Duration) -> PhiAccrual {
        PhiAccrual {
            last: now,
            intervals: VecDeque::with_capacity(WINDOW),
            min_mean: heartbeat.as_secs_f64(),
        }
    }

    /// Records a successful heartbeat at `now`.
    pub fn heartbeat(&mut self, now: Instant) {
        let interval = now.saturating_duration_since(self.last).as_secs_f64();
        if self.intervals.len() == WINDOW {
            self.intervals.pop_front();
        }
        self.intervals.push_back(interval);
        self.last = now;
    }

    fn mean(&self) -> f64 {
        let n = self.intervals.len();
        let mean = if n == 0 { self.min_mean } else { self.intervals.iter().sum::<f64>() / n as f64 };
        mean.max(self.min_mean)
    }

    /// Suspicion that the peer has failed, at `now`.
    pub fn phi(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        elapsed / (self.mean() * std::f64::consts::LN_10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_heartbeats_keep_phi_low_and_silence_raises_it() {
        let hb = Duration::from_millis(200);
        let start = Instant::now();
        let mut d = PhiAccrual::new(start, hb);
        let mut now = start;
        for _ in 0..50 {
            now += hb;
            d.heartbeat(now);
        }
        assert!(d.phi(now + hb) < 1.0);
        // Silence of 3 s: phi = 3 / (0.2 · ln 10) ≈ 6.5.
        let phi = d.phi(now + Duration::from_secs(3));
        assert!((6.0..7.0).contains(&phi), "{phi}");
        // Suspicion grows with silence.
        assert!(d.phi(now + Duration::from_secs(6)) > phi);
        // An answer resets it.
        d.heartbeat(now + Duration::from_secs(3));
        assert!(d.phi(now + Duration::from_secs(3)) < 0.01);
    }

    #[test]
    fn a_slow_network_stretches_the_delay() {
        let start = Instant::now();
        let mut d = PhiAccrual::new(start, Duration::from_millis(200));
        let mut now = start;
        for _ in 0..50 {
            now += Duration::from_millis(800);
            d.heartbeat(now);
        }
        // 3 s of silence is unremarkable when answers come every 0.8 s.
        assert!(d.phi(now + Duration::from_secs(3)) < 2.0);
    }
}
