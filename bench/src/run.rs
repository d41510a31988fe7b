//! `quorumkv-bench run`: load, warm up, drive the workload, record, report.
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
//! With `--operations N` the window closes once N operations have started in it (each
//! client takes a ticket from one shared counter before starting one) and lasts until
//! the last of them answered.
//!
//! Each client keeps everything it records to itself: its own histograms, its own
//! per-second histograms (sent off once a second), its own map of causal contexts. The
//! only state clients share is the insert counter (on inserts) and, with
//! `--operations`, the ticket counter.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use crate::cli::RunArgs;
use crate::distribution::{Distribution, Latest};
use crate::latency::Latencies;
use crate::load::{self, LoadPlan};
use crate::metrics::Scraper;
use crate::progress::{self, Clock, Display};
use crate::report::{Outcome, Report};
use crate::series::SecondRecorder;
use crate::session::{ErrorKind, Read, Session, Target, Token};
use crate::workload::{InsertSequence, Mix, Op, Pick, Picker, Values, key_name};

/// How many keys' causal contexts each client remembers for its updates.
pub const CONTEXTS_PER_CLIENT: usize = 10_000;

/// What the clients measured in the window, merged over clients at the end.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    /// Successful operations per operation (indexed like [`Op::ALL`]), from their
    /// (intended) start to their end.
    pub ops: [Latencies; Op::COUNT],
    /// Successful GET requests, from send to answer.
    pub gets: Latencies,
    /// Successful PUT requests, from send to answer.
    pub puts: Latencies,
    /// Successful listing requests (scans), from send to answer.
    pub lists: Latencies,
    /// Keys the successful scans returned, together.
    pub scanned: u64,
    /// Failed operations by operation and kind.
    pub errors: BTreeMap<(Op, String), u64>,
}

impl Recorder {
    /// Counts a failed `op`.
    pub fn error(&mut self, op: Op, kind: ErrorKind) {
        *self.errors.entry((op, kind.into_owned())).or_default() += 1;
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Recorder) {
        for (ours, theirs) in self.ops.iter_mut().zip(&other.ops) {
            ours.merge(theirs);
        }
        self.gets.merge(&other.gets);
        self.puts.merge(&other.puts);
        self.lists.merge(&other.lists);
        self.scanned += other.scanned;
        for (key, n) in &other.errors {
            *self.errors.entry(key.clone()).or_default() += n;
        }
    }
}

/// The requests one operation made that answered, with their own latencies.
#[derive(Debug, Default, Clone, Copy)]
struct Requests {
    get: Option<Duration>,
    put: Option<Duration>,
    /// A listing's latency and how many keys it returned.
    list: Option<(Duration, u64)>,
}

/// When a run starts, measures and stops, and how it paces its clients.
#[derive(Debug, Clone, Copy)]
struct Plan {
    start: Instant,
    measure: Instant,
    /// No operation starts from here on; `None` with `--operations`.
    end: Option<Instant>,
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

/// What every client of a run shares (read-only but for the two counters).
#[derive(Debug)]
struct Shared {
    plan: Plan,
    mix: Mix,
    distribution: Distribution,
    records: u64,
    /// Built once per run: its zeta costs one `powf` per record.
    latest: Option<Latest>,
    inserts: InsertSequence,
    /// `--operations`: tickets taken, and how many there are.
    tickets: Option<(AtomicU64, u64)>,
    values: Values,
    /// Scans ask for 1 to this many keys.
    max_scan_length: u64,
    /// Whether clients keep causal contexts (only updates use them).
    remember: bool,
}

/// Runs the workload `args` describe and reports what it measured.
///
/// # Errors
/// When the flags do not go together, or the target cannot be reached to start with
/// (the ring cannot be fetched, a metric cannot be read). Failed requests during the run
/// are counted, not errors.
pub async fn run(args: &RunArgs) -> anyhow::Result<Report> {
    args.check().map_err(anyhow::Error::msg)?;
    let mix = args.op_mix();
    let distribution = args.key_distribution();
    let values = Values::new(args.value_size);
    let display = Display::choose(args.progress);
    let target = Target::connect(args, &values).await?;
    let load = load::run(
        &target,
        LoadPlan {
            mode: args.load_mode(),
            mix: &mix,
            records: args.records,
            clients: args.concurrency,
            values: &values,
            display,
        },
    )
    .await;
    let scraper = (!args.metrics.is_empty()).then(|| Scraper::new(&args.nodes));
    let inserts = if mix.has(Op::Insert) {
        InsertSequence::new(args.records, args.concurrency)
    } else {
        InsertSequence::fixed(args.records)
    };
    let latest = (distribution == Distribution::Latest).then(|| Latest::new(args.records));
    let start = Instant::now() + Duration::from_millis(20);
    let plan = Plan {
        start,
        measure: start + args.warmup,
        end: args.operations.is_none().then_some(start + args.warmup + args.duration),
        clients: args.concurrency,
        rate: args.rate,
    };
    let shared = Arc::new(Shared {
        plan,
        mix,
        distribution,
        records: args.records,
        latest,
        inserts,
        tickets: args.operations.map(|n| (AtomicU64::new(0), n)),
        values,
        max_scan_length: args.max_scan_length,
        remember: mix.has(Op::Update),
    });
    let (sink, flushes) = mpsc::unbounded_channel();
    let clock = Clock { start, measure: plan.measure, end: plan.end, operations: args.operations };
    let collector = tokio::spawn(progress::collect(flushes, display, clock));
    let mut clients = JoinSet::new();
    for i in 0..args.concurrency {
        let recorder = SecondRecorder::new(start, sink.clone());
        clients.spawn(client(target.session(i as usize), Arc::clone(&shared), i, recorder));
    }
    // The clients hold the only senders now: the collector ends when they do.
    drop(sink);
    sleep_until(plan.measure.into()).await;
    let before = match &scraper {
        Some(s) => Some(s.sums(&args.metrics).await?),
        None => None,
    };
    if let Some(end) = plan.end {
        sleep_until(end.into()).await;
    }
    let mut total = Recorder::default();
    let mut last_done = plan.measure;
    let after = match (&scraper, plan.end) {
        // A timed window ends on time; operations still in flight are awaited after.
        (Some(s), Some(_)) => Some(s.sums(&args.metrics).await?),
        _ => None,
    };
    while let Some(joined) = clients.join_next().await {
        let (recorder, done) = joined?;
        total.merge(&recorder);
        last_done = last_done.max(done);
    }
    let after = match (&scraper, after) {
        (Some(s), None) => Some(s.sums(&args.metrics).await?),
        (_, after) => after,
    };
    let series = collector.await?;
    let metrics = match (before, after) {
        (Some(b), Some(a)) => args.metrics.iter().cloned().zip(a.iter().zip(b).map(|(a, b)| a - b)).collect(),
        _ => BTreeMap::new(),
    };
    let window = match plan.end {
        Some(_) => args.duration,
        None => last_done.saturating_duration_since(plan.measure),
    };
    let ended_at = plan.end.unwrap_or(last_done).saturating_duration_since(start);
    Ok(Report::new(
        args,
        Outcome {
            mode: target.mode(),
            recorder: &total,
            series: series.summary(&mix.ops().collect::<Vec<_>>(), args.warmup, ended_at),
            window,
            load,
            inserted: shared.inserts.claimed(args.records),
            metrics,
        },
    ))
}

/// A client's bounded memory of the causal context it last saw per key.
#[derive(Debug)]
struct Contexts {
    map: HashMap<u64, Token>,
    capacity: usize,
}

impl Contexts {
    fn new(capacity: usize) -> Contexts {
        Contexts { map: HashMap::new(), capacity }
    }

    /// Keeps `token` as the latest context of `key` (if contexts are kept at all).
    fn remember(&mut self, key: u64, token: Option<Token>) {
        let Some(token) = token else { return };
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity
            && !self.map.contains_key(&key)
            && let Some(&old) = self.map.keys().next()
        {
            // Whichever entry the map yields first: cheap, and as good as any.
            self.map.remove(&old);
        }
        self.map.insert(key, token.detached());
    }

    fn take(&mut self, key: u64) -> Option<Token> {
        self.map.remove(&key)
    }
}

/// One simulated client: operations until the plan's end (or the last ticket); returns
/// what it measured in the window and when its last measured operation ended.
async fn client(
    mut session: Session,
    shared: Arc<Shared>,
    index: u64,
    mut seconds: SecondRecorder,
) -> (Recorder, Instant) {
    let plan = shared.plan;
    let seed = 0x5eed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut picker = Picker::new(&shared.mix, shared.distribution, shared.records, shared.latest, seed)
        .max_scan_length(shared.max_scan_length);
    let mut contexts = Contexts::new(if shared.remember { CONTEXTS_PER_CLIENT } else { 0 });
    let mut recorder = Recorder::default();
    let mut last_done = plan.measure;
    sleep_until(plan.start.into()).await;
    for k in 0u64.. {
        let intended = match plan.rate {
            Some(rate) => plan.scheduled(index, k, rate),
            None => Instant::now(),
        };
        if plan.end.is_some_and(|end| intended >= end) {
            break;
        }
        // Only an open loop waits; a late operation starts at once and its latency still
        // counts from when it should have started.
        if intended > Instant::now() {
            sleep_until(intended.into()).await;
        }
        let measured = intended >= plan.measure;
        if measured
            && let Some((taken, limit)) = &shared.tickets
            && taken.fetch_add(1, Ordering::Relaxed) >= *limit
        {
            break;
        }
        let pick = picker.pick(&shared.inserts);
        let mut requests = Requests::default();
        let outcome = execute(&mut session, &shared, &mut contexts, pick, &mut requests).await;
        if pick.op == Op::Insert {
            shared.inserts.acknowledge(pick.key);
        }
        let done = Instant::now();
        let latency = done.saturating_duration_since(intended);
        seconds.record(pick.op, done, latency, outcome.is_ok());
        if !measured {
            continue;
        }
        last_done = done;
        if let Some(get) = requests.get {
            recorder.gets.record(get);
        }
        if let Some(put) = requests.put {
            recorder.puts.record(put);
        }
        if let Some((list, keys)) = requests.list {
            recorder.lists.record(list);
            recorder.scanned += keys;
        }
        match outcome {
            Ok(()) => recorder.ops[pick.op.index()].record(latency),
            Err(kind) => recorder.error(pick.op, kind),
        }
    }
    (recorder, last_done)
}

/// Sends one operation; notes in `requests` each request that answered and how long it
/// took.
async fn execute(
    session: &mut Session,
    shared: &Shared,
    contexts: &mut Contexts,
    pick: Pick,
    requests: &mut Requests,
) -> Result<(), ErrorKind> {
    let key = pick.key;
    let name = key_name(key);
    match pick.op {
        Op::Read => {
            let sent = Instant::now();
            let read = session.get(&name).await?;
            requests.get = Some(sent.elapsed());
            match read {
                Read::Found(token) => {
                    contexts.remember(key, token);
                    Ok(())
                }
                // The run's records should all be there: a missing one is an error.
                Read::Missing(token) => {
                    contexts.remember(key, token);
                    Err(ErrorKind::Borrowed("not_found"))
                }
            }
        }
        Op::Update => {
            let context = contexts.take(key);
            let sent = Instant::now();
            let written = session.put(&name, context.as_ref(), shared.values.of(key)).await;
            match written {
                Ok(token) => {
                    requests.put = Some(sent.elapsed());
                    contexts.remember(key, token);
                    Ok(())
                }
                Err(kind) => {
                    // Still the latest context this client saw.
                    contexts.remember(key, context);
                    Err(kind)
                }
            }
        }
        Op::Insert | Op::Put => {
            let sent = Instant::now();
            let token = session.put(&name, None, shared.values.of(key)).await?;
            requests.put = Some(sent.elapsed());
            contexts.remember(key, token);
            Ok(())
        }
        Op::Rmw => {
            let sent = Instant::now();
            let context = match session.get(&name).await? {
                Read::Found(token) | Read::Missing(token) => token,
            };
            requests.get = Some(sent.elapsed());
            let written = Instant::now();
            let token = session.put(&name, context.as_ref(), shared.values.of(key)).await?;
            requests.put = Some(written.elapsed());
            contexts.remember(key, token);
            Ok(())
        }
        Op::Scan => {
            let sent = Instant::now();
            let keys = session.scan(key, pick.scan_length).await?;
            requests.list = Some((sent.elapsed(), keys));
            Ok(())
        }
    }
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
            end: Some(start + Duration::from_secs(1)),
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

    #[test]
    fn contexts_are_bounded_and_latest_wins() {
        let token = |s: &'static str| Some(Token::Raw(hyper::header::HeaderValue::from_static(s)));
        let mut contexts = Contexts::new(3);
        for key in 0..10 {
            contexts.remember(key, token("a"));
        }
        assert_eq!(contexts.map.len(), 3);
        contexts.remember(42, token("a"));
        contexts.remember(42, token("b"));
        let Some(Token::Raw(latest)) = contexts.take(42) else { panic!("42 was just remembered") };
        assert_eq!(latest, "b");
        assert!(contexts.take(42).is_none());
        let mut off = Contexts::new(0);
        off.remember(1, token("a"));
        assert!(off.take(1).is_none(), "a mix without updates keeps nothing");
    }
}
