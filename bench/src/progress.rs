//! What a run shows while it runs, and the task that assembles its per-second series.
//!
//! The [`collect`] task receives each client's finished seconds ([`Flush`]) and merges
//! them into the run's [`Series`]; once a second (a quarter second after the second
//! closed, so the clients have sent theirs) it shows the last second on stderr: a
//! progress bar that rewrites itself when stderr is a terminal, or with `--progress` a
//! plain line per second for logs and scripts. A client still waiting on a slow request
//! sends its second late, so the live figures can miss a few operations; the final
//! series misses none.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;

use crate::series::{Flush, Series};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Not at all.
    Quiet,
    /// A line per second (`t=  3s ops=1234 errors=0 p99=1.2ms slowest=3.4ms`).
    Lines,
    /// A progress bar redrawn in place.
    Bar,
}

impl Display {
    /// A bar when stderr is a terminal; else lines if `lines` (`--progress`), else quiet.
    pub fn choose(lines: bool) -> Display {
        if std::io::stderr().is_terminal() {
            Display::Bar
        } else if lines {
            Display::Lines
        } else {
            Display::Quiet
        }
    }
}

/// The run's clock, as the display needs it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// When clients start (warm-up included).
    pub start: Instant,
    /// When measuring starts.
    pub measure: Instant,
    /// When the run stops starting operations, for a run of a fixed duration.
    pub end: Option<Instant>,
    /// The operations to measure, for a run of a fixed number of operations.
    pub operations: Option<u64>,
}

/// Merges every flushed second until all senders are gone, showing progress meanwhile;
/// returns the merged series.
pub async fn collect(mut flushes: UnboundedReceiver<Flush>, display: Display, clock: Clock) -> Series {
    let mut series = Series::default();
    let lag = Duration::from_millis(250);
    let mut tick =
        tokio::time::interval_at((clock.start + Duration::from_secs(1) + lag).into(), Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // The next second to show.
    let mut next = 0;
    loop {
        tokio::select! {
            flush = flushes.recv() => match flush {
                Some(flush) => series.add(flush),
                None => break,
            },
            at = tick.tick(), if display != Display::Quiet => {
                let second = at.into_std().saturating_duration_since(clock.start).as_secs().saturating_sub(1);
                for s in next..=second {
                    show(&series, s, clock, display);
                }
                next = second + 1;
            }
        }
    }
    // The run is over: the seconds not shown yet, complete now. Seconds after a timed
    // run's end hold only the operations that were still in flight: not shown.
    if display != Display::Quiet {
        let last = match clock.end {
            Some(end) => {
                (end.duration_since(clock.start).as_secs_f64().ceil() as u64).min(series.len() as u64)
            }
            None => series.len() as u64,
        };
        for s in next..last {
            show(&series, s, clock, display);
        }
    }
    if display == Display::Bar {
        eprintln!();
    }
    series
}

/// Writes second `second`'s status: a new line, or the bar redrawn in place.
fn show(series: &Series, second: u64, clock: Clock, display: Display) {
    let line = status_line(series, second, clock, display);
    let mut err = std::io::stderr().lock();
    let _ = match display {
        Display::Bar => write!(err, "\r\x1b[2K{line}"),
        _ => writeln!(err, "{line}"),
    };
    let _ = err.flush();
}

/// What is shown for second `second` (counted from the start).
fn status_line(series: &Series, second: u64, clock: Clock, display: Display) -> String {
    let figures = series.second(second).map(|s| s.total()).unwrap_or_default();
    let warmup = Duration::from_secs(second) < clock.measure.duration_since(clock.start);
    let ms = |us: u64| us as f64 / 1000.0;
    if display == Display::Lines {
        return format!(
            "t={:>4}s ops={} errors={} p99={:.1}ms slowest={:.1}ms{}",
            second + 1,
            figures.count,
            figures.errors,
            ms(figures.p99_us),
            ms(figures.max_us),
            if warmup { " (warm-up)" } else { "" }
        );
    }
    let elapsed = Duration::from_secs(second + 1);
    let (done, total, what) = match (clock.end, clock.operations) {
        (_, Some(n)) if !warmup => {
            let measured_from = clock.measure.duration_since(clock.start).as_secs();
            (
                series.count_since(measured_from) as f64,
                n as f64,
                format!("{} / {n} ops", series.count_since(measured_from)),
            )
        }
        (Some(end), _) => {
            let total = end.duration_since(clock.start);
            (
                elapsed.as_secs_f64(),
                total.as_secs_f64(),
                format!("{:.0}/{:.0} s", elapsed.as_secs_f64(), total.as_secs_f64()),
            )
        }
        _ => (0.0, 1.0, format!("{:.0} s", elapsed.as_secs_f64())),
    };
    format!(
        "{} {what}{}  {} ops/s  {} errors  p99 {:.2} ms  max {:.2} ms",
        bar(done / total.max(f64::MIN_POSITIVE), 24),
        if warmup { " (warm-up)" } else { "" },
        figures.count,
        figures.errors,
        ms(figures.p99_us),
        ms(figures.max_us),
    )
}

/// `[#######.........]`: `fraction` (clamped to 0..=1) of `width` cells filled.
fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::{SecondRecorder, Series};
    use crate::workload::Op;

    fn series_with(start: Instant, seconds: &[(u64, u64)]) -> Series {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut rec = SecondRecorder::new(start, tx);
        for &(second, ops) in seconds {
            for i in 0..ops {
                let at = start + Duration::from_secs(second) + Duration::from_micros(i);
                rec.record(Op::Read, at, Duration::from_millis(2), true);
            }
        }
        rec.record(Op::Read, start + Duration::from_secs(3), Duration::from_millis(1), false);
        drop(rec);
        let mut series = Series::default();
        while let Ok(f) = rx.try_recv() {
            series.add(f);
        }
        series
    }

    #[test]
    fn lines_keep_the_format_scripts_parse() {
        let start = Instant::now();
        let series = series_with(start, &[(0, 10), (1, 20)]);
        let clock = Clock { start, measure: start + Duration::from_secs(1), end: None, operations: None };
        let first = status_line(&series, 0, clock, Display::Lines);
        assert!(first.starts_with("t=   1s ops=10 errors=0 p99=2.0ms"), "{first}");
        assert!(first.ends_with("(warm-up)"), "{first}");
        let second = status_line(&series, 1, clock, Display::Lines);
        assert!(second.starts_with("t=   2s ops=20 errors=0"), "{second}");
        assert!(!second.contains("warm-up"));
        assert!(status_line(&series, 3, clock, Display::Lines).contains("ops=0 errors=1"));
        assert!(status_line(&series, 9, clock, Display::Lines).contains("ops=0 errors=0"));
    }

    #[test]
    fn the_bar_shows_time_or_operations() {
        let start = Instant::now();
        let series = series_with(start, &[(0, 10), (1, 20)]);
        let timed =
            Clock { start, measure: start, end: Some(start + Duration::from_secs(4)), operations: None };
        let line = status_line(&series, 1, timed, Display::Bar);
        assert!(line.starts_with("[############............] 2/4 s  20 ops/s  0 errors  p99 2.0"), "{line}");
        let counted = Clock { start, measure: start, end: None, operations: Some(60) };
        let line = status_line(&series, 1, counted, Display::Bar);
        assert!(line.starts_with("[############............] 30 / 60 ops"), "{line}");
        assert_eq!(bar(2.0, 4), "[####]");
        assert_eq!(bar(-1.0, 2), "[..]");
    }
}
