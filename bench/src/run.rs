//! `quorumkv-bench run`: preload, warm up, drive the workload, record, report.
//!
//! Closed loop (the default): each of `--concurrency` clients sends its next operation as
//! soon as the previous one answered, so the figures are the maximum throughput and the
//! latency at it. Open loop (`--rate`): client i of c starts operation k at
//! `start + (i + k·c) / rate` whatever happened before, and its latency counts from that
//! intended start, so a stall shows in the percentiles instead of silently lowering the
//! load (no coordinated omission). tokio's timer has millisecond resolution, so an
//! operation may start up to about a millisecond after its intended time; that lag counts
//! in the operation's latency, not in the per-request rows of the report.
//!
//! An operation counts when its (intended) start falls inside the measured window, after
//! the warm-up; operations in flight at the end are awaited, so each client may add one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio::time::sleep_until;

use crate::cli::{RunArgs, Workload};
use crate::latency::Latencies;
use crate::metrics::Scraper;
use crate::report::Report;
use crate::session::{ErrorKind, Read, Session, Target};
use crate::workload::{Op, Picker, key_name};

/// What one client measured, merged over clients at the end.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    /// Successful operations, from their (intended) start to their end.
    pub ops: Latencies,
    /// Successful GET requests, from send to answer.
    pub gets: Latencies,
    /// Successful PUT requests, from send to answer.
    pub puts: Latencies,
    /// Failed operations by kind.
    pub errors: BTreeMap<String, u64>,
}

impl Recorder {
    fn error(&mut self, kind: ErrorKind) {
        *self.errors.entry(kind.into_owned()).or_default() += 1;
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Recorder) {
        self.ops.merge(&other.ops);
        self.gets.merge(&other.gets);
        self.puts.merge(&other.puts);
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
    }
}

/// What `--progress` prints each second, shared by the clients.
#[derive(Debug, Default)]
struct Progress {
    ops: AtomicU64,
    errors: AtomicU64,
    slowest_us: AtomicU64,
}

impl Progress {
    fn record(&self, ok: bool, latency: Duration) {
        let counter = if ok { &self.ops } else { &self.errors };
        counter.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.slowest_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Prints one line per second on stderr until `end`.
    async fn report(&self, start: Instant, measure: Instant, end: Instant) {
        let mut tick =
            tokio::time::interval_at((start + Duration::from_secs(1)).into(), Duration::from_secs(1));
        loop {
            let at = tick.tick().await.into_std();
            let ops = self.ops.swap(0, Ordering::Relaxed);
            let errors = self.errors.swap(0, Ordering::Relaxed);
            let slowest = self.slowest_us.swap(0, Ordering::Relaxed);
            let phase = if at <= measure { " (warm-up)" } else { "" };
            eprintln!(
                "t={:>4.0}s ops={ops} errors={errors} slowest={:.1}ms{phase}",
                at.duration_since(start).as_secs_f64(),
                slowest as f64 / 1000.0
            );
            if at >= end {
                return;
            }
        }
    }
}

/// When a run starts, measures and stops, and how it paces its clients.
#[derive(Debug, Clone, Copy)]
struct Plan {
    start: Instant,
    measure: Instant,
    end: Instant,
    workload: Workload,
    read_ratio: f64,
    keys: u64,
    clients: u64,
    /// Open loop: total operations per second.
    rate: Option<f64>,
}

impl Plan {
    /// The intended start of client `client`'s `k`-th operation in open loop.
    fn scheduled(&self, client: u64, k: u64, rate: f64) -> Instant {
        let slot = client as f64 + k as f64 * self.clients as f64;
        self.start + Duration::from_nanos((slot * 1e9 / rate).round() as u64)
    }
}

/// Runs the workload `args` describe and reports what it measured.
///
/// # Errors
/// When the target cannot be reached to start with (the ring cannot be fetched, a
/// metric cannot be read). Failed requests during the run are counted, not errors.
pub async fn run(args: &RunArgs) -> anyhow::Result<Report> {
    let target = Target::connect(args).await?;
    if args.preload {
        preload(&target, args).await;
    }
    let scraper = (!args.metrics.is_empty()).then(|| Scraper::new(&args.nodes));
    let start = Instant::now() + Duration::from_millis(20);
    let plan = Plan {
        start,
        measure: start + args.warmup,
        end: start + args.warmup + args.duration,
        workload: args.workload,
        read_ratio: args.read_ratio,
        keys: args.keys,
        clients: args.concurrency,
        rate: args.rate,
    };
    let progress = args.progress.then(|| Arc::new(Progress::default()));
    let mut clients = JoinSet::new();
    for i in 0..args.concurrency {
        clients.spawn(client(target.session(i as usize), plan, i, progress.clone()));
    }
    let mut reporter = JoinSet::new();
    if let Some(p) = progress {
        reporter.spawn(async move { p.report(plan.start, plan.measure, plan.end).await });
    }
    sleep_until(plan.measure.into()).await;
    let before = match &scraper {
        Some(s) => Some(s.sums(&args.metrics).await?),
        None => None,
    };
    sleep_until(plan.end.into()).await;
    let after = match &scraper {
        Some(s) => Some(s.sums(&args.metrics).await?),
        None => None,
    };
    let mut total = Recorder::default();
    while let Some(joined) = clients.join_next().await {
        total.merge(&joined?);
    }
    reporter.abort_all();
    let metrics = match (before, after) {
        (Some(b), Some(a)) => args.metrics.iter().cloned().zip(a.iter().zip(b).map(|(a, b)| a - b)).collect(),
        _ => BTreeMap::new(),
    };
    Ok(Report::new(args, target.mode(), &total, metrics))
}

/// One simulated client: operations until the plan's end, recorded once in the window.
async fn client(mut session: Session, plan: Plan, index: u64, progress: Option<Arc<Progress>>) -> Recorder {
    let mut picker = Picker::new(plan.workload, plan.read_ratio, plan.keys, 0x5eed ^ index.wrapping_mul(31));
    let mut recorder = Recorder::default();
    // Warm-up operations are recorded here and thrown away (a histogram is too big to make
    // per operation).
    let mut warmup = Recorder::default();
    sleep_until(plan.start.into()).await;
    for k in 0u64.. {
        let intended = match plan.rate {
            Some(rate) => plan.scheduled(index, k, rate),
            None => Instant::now(),
        };
        if intended >= plan.end {
            break;
        }
        // Only an open loop waits; a late operation starts at once and its latency still
        // counts from when it should have started.
        if intended > Instant::now() {
            sleep_until(intended.into()).await;
        }
        let (op, key) = picker.pick();
        let key = key_name(key);
        let measured = intended >= plan.measure;
        let rec = if measured { &mut recorder } else { &mut warmup };
        let outcome = execute(&mut session, op, &key, plan.workload, rec).await;
        let latency = intended.elapsed();
        if let Some(p) = &progress {
            p.record(outcome.is_ok(), latency);
        }
        match outcome {
            Ok(()) => rec.ops.record(latency),
            Err(kind) => rec.error(kind),
        }
    }
    recorder
}

/// Sends one operation, recording each successful request's own latency.
async fn execute(
    session: &mut Session,
    op: Op,
    key: &str,
    workload: Workload,
    rec: &mut Recorder,
) -> Result<(), ErrorKind> {
    let sent = Instant::now();
    match op {
        Op::Get => {
            let read = session.get(key).await?;
            rec.gets.record(sent.elapsed());
            match read {
                Read::Found(_) => Ok(()),
                // Reads of keys never written are the run's mistake, not the node's.
                Read::Missing(_) if workload == Workload::Update => Ok(()),
                Read::Missing(_) => Err(ErrorKind::Borrowed("not_found")),
            }
        }
        Op::Put => {
            session.put(key, None).await?;
            rec.puts.record(sent.elapsed());
            Ok(())
        }
        Op::Update => {
            let context = match session.get(key).await? {
                Read::Found(token) | Read::Missing(token) => token,
            };
            rec.gets.record(sent.elapsed());
            let written = Instant::now();
            session.put(key, context.as_ref()).await?;
            rec.puts.record(written.elapsed());
            Ok(())
        }
    }
}

/// Writes every key once, blind, with all clients; prints how it went on stderr.
async fn preload(target: &Target, args: &RunArgs) {
    let started = Instant::now();
    let mut clients = JoinSet::new();
    for i in 0..args.concurrency {
        let mut session = target.session(i as usize);
        let (keys, step) = (args.keys, args.concurrency);
        clients.spawn(async move {
            let mut errors = BTreeMap::<String, u64>::new();
            let mut key = i;
            while key < keys {
                if let Err(kind) = session.put(&key_name(key), None).await {
                    *errors.entry(kind.into_owned()).or_default() += 1;
                }
                key += step;
            }
            errors
        });
    }
    let mut errors = BTreeMap::<String, u64>::new();
    while let Some(joined) = clients.join_next().await {
        for (kind, n) in joined.unwrap_or_default() {
            *errors.entry(kind).or_default() += n;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "preloaded {} keys in {secs:.1} s ({:.0}/s){}",
        args.keys,
        args.keys as f64 / secs,
        if errors.is_empty() { String::new() } else { format!("; errors: {errors:?}") }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_interleaves_clients_evenly() {
        let start = Instant::now();
        let plan = Plan {
            start,
            measure: start,
            end: start + Duration::from_secs(1),
            workload: Workload::Get,
            read_ratio: 0.5,
            keys: 1,
            clients: 4,
            rate: Some(1000.0),
        };
        let at = |client, k| plan.scheduled(client, k, 1000.0) - start;
        assert_eq!(at(0, 0), Duration::ZERO);
        assert_eq!(at(1, 0), Duration::from_millis(1));
        assert_eq!(at(3, 0), Duration::from_millis(3));
        assert_eq!(at(0, 1), Duration::from_millis(4));
        assert_eq!(at(2, 10), Duration::from_millis(42));
    }
}
