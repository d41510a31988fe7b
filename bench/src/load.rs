//! The load phase: write the records a workload reads before measuring it.
//!
//! `--load auto` (the default) loads when the workload reads (read, read-modify-write or
//! scan) and any of about 100 records sampled evenly over the key space does not read
//! back, so a first run is not all 404s and a second run against the same cluster does
//! not load again. Loading writes every record once, blind, with all clients; a record already
//! there gets identical bytes, which the node keeps as one sibling.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::cli::Load;
use crate::progress::Display;
use crate::session::{Read, Target};
use crate::workload::{Mix, Values, key_name};

/// How many records `--load auto` reads to decide.
const SAMPLE: u64 = 100;

/// What the load phase did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// `--load` as given.
    pub mode: Load,
    /// Whether the records were written.
    pub loaded: bool,
    /// Why (or why not), in words.
    pub reason: String,
    /// Records written.
    pub records: u64,
    /// How long writing them took.
    pub seconds: f64,
    /// Records written per second.
    pub records_per_sec: f64,
    /// Failed writes by kind.
    pub errors: BTreeMap<String, u64>,
}

impl LoadReport {
    fn skipped(mode: Load, reason: String) -> LoadReport {
        LoadReport {
            mode,
            loaded: false,
            reason,
            records: 0,
            seconds: 0.0,
            records_per_sec: 0.0,
            errors: BTreeMap::new(),
        }
    }
}

/// What a run's load phase needs.
#[derive(Debug, Clone, Copy)]
pub struct LoadPlan<'a> {
    /// `--load`.
    pub mode: Load,
    /// The run's operations.
    pub mix: &'a Mix,
    /// Keys `0..records`.
    pub records: u64,
    /// Clients writing at once.
    pub clients: u64,
    /// The values to write.
    pub values: &'a Values,
    /// How to show progress.
    pub display: Display,
}

/// Loads the records if `plan` says so (see the module docs) and says what it did on
/// stderr, with its rate.
pub async fn run(target: &Target, plan: LoadPlan<'_>) -> LoadReport {
    let report = match plan.mode {
        Load::Never => LoadReport::skipped(plan.mode, "--load never".into()),
        Load::Always => write_all(target, plan, "--load always".into()).await,
        Load::Auto if !plan.mix.reads() => {
            LoadReport::skipped(plan.mode, "the workload reads no existing record".into())
        }
        Load::Auto => {
            let (found, asked) = sample(target, plan.records).await;
            if found == asked {
                LoadReport::skipped(plan.mode, format!("all {asked} sampled records read back"))
            } else {
                write_all(
                    target,
                    plan,
                    format!("{} of {asked} sampled records did not read back", asked - found),
                )
                .await
            }
        }
    };
    if report.loaded {
        let errors =
            if report.errors.is_empty() { String::new() } else { format!("; errors: {:?}", report.errors) };
        eprintln!(
            "load: wrote {} records in {:.1} s ({:.0} records/s; {}){errors}",
            report.records, report.seconds, report.records_per_sec, report.reason
        );
    } else {
        eprintln!("load: skipped ({})", report.reason);
    }
    report
}

/// How many of about [`SAMPLE`] records spread over `0..records` read back.
async fn sample(target: &Target, records: u64) -> (u64, u64) {
    let asked = records.min(SAMPLE);
    let mut session = target.session(0);
    let mut found = 0;
    for i in 0..asked {
        let key = i * records / asked;
        if let Ok(Read::Found(_)) = session.get(&key_name(key)).await {
            found += 1;
        }
    }
    (found, asked)
}

/// Writes every record once, blind, with all clients.
async fn write_all(target: &Target, plan: LoadPlan<'_>, reason: String) -> LoadReport {
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = JoinSet::new();
    for i in 0..plan.clients.min(plan.records) {
        let mut session = target.session(i as usize);
        let (records, step) = (plan.records, plan.clients);
        let (values, done) = (plan.values.clone(), Arc::clone(&done));
        clients.spawn(async move {
            let mut errors = BTreeMap::<String, u64>::new();
            let mut key = i;
            while key < records {
                if let Err(kind) = session.put(&key_name(key), None, values.of(key)).await {
                    *errors.entry(kind.into_owned()).or_default() += 1;
                }
                done.fetch_add(1, Ordering::Relaxed);
                key += step;
            }
            errors
        });
    }
    let mut errors = BTreeMap::<String, u64>::new();
    let mut tick =
        tokio::time::interval_at((started + Duration::from_secs(1)).into(), Duration::from_secs(1));
    loop {
        tokio::select! {
            joined = clients.join_next() => match joined {
                Some(joined) => {
                    for (kind, n) in joined.unwrap_or_default() {
                        *errors.entry(kind).or_default() += n;
                    }
                }
                None => break,
            },
            _ = tick.tick(), if plan.display == Display::Bar => {
                let n = done.load(Ordering::Relaxed);
                let rate = n as f64 / started.elapsed().as_secs_f64();
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2Kload: {n} / {} records ({rate:.0}/s)", plan.records);
                let _ = err.flush();
            }
        }
    }
    if plan.display == Display::Bar {
        eprint!("\r\x1b[2K");
    }
    let seconds = started.elapsed().as_secs_f64();
    LoadReport {
        mode: plan.mode,
        loaded: true,
        reason,
        records: plan.records,
        seconds,
        records_per_sec: plan.records as f64 / seconds.max(f64::MIN_POSITIVE),
        errors,
    }
}
