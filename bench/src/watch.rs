//! `quorumkv-bench watch`: poll metrics until a backlog drains, and say how fast it did.

use std::time::Instant;

use crate::cli::WatchArgs;
use crate::metrics::Scraper;

/// Prints the chosen metrics (summed over nodes) every interval. With `--until-zero`, stops
/// once that metric has been above zero and is back to zero in a poll that reached every
/// node, then prints how long it took and, with `--rate-of`, how fast that counter grew
/// meanwhile. A node that does not answer (it may be restarting) is named on its line.
///
/// # Errors
/// When the metric does not drain within `--timeout`.
pub async fn watch(args: &WatchArgs) -> anyhow::Result<()> {
    let scraper = Scraper::new(&args.nodes);
    let mut names = args.metrics.clone();
    for extra in [&args.until_zero, &args.rate_of].into_iter().flatten() {
        if !names.contains(extra) {
            names.push(extra.clone());
        }
    }
    let position = |name: &Option<String>| name.as_ref().and_then(|n| names.iter().position(|m| m == n));
    let (zero_at, rate_at) = (position(&args.until_zero), position(&args.rate_of));
    let started = Instant::now();
    let mut first: Option<Vec<f64>> = None;
    let mut seen_backlog = false;
    // The last poll before the counter first moved: when the work started, at the latest.
    let mut work_began: Option<(Instant, f64)> = None;
    let mut previous: Option<(Instant, f64)> = None;
    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let (sums, unreachable) = scraper.sums_of_reachable(&names).await;
        let mut line: Vec<String> = names.iter().zip(&sums).map(|(n, v)| format!("{n}={v}")).collect();
        if !unreachable.is_empty() {
            line.push(format!("(no answer from {})", unreachable.join(", ")));
        }
        println!("t={:>7.2}s {}", started.elapsed().as_secs_f64(), line.join(" "));
        let first = first.get_or_insert_with(|| sums.clone());
        if let Some(i) = rate_at {
            if work_began.is_none()
                && let Some((at, before)) = previous
                && sums[i] > before
            {
                work_began = Some((at, before));
            }
            previous = Some((now, sums[i]));
        }
        if let Some(i) = zero_at {
            seen_backlog |= sums[i] > 0.0;
            if seen_backlog && sums[i] == 0.0 && unreachable.is_empty() {
                let total = started.elapsed().as_secs_f64();
                println!("{} reached 0 after {total:.2} s", names[i]);
                if let Some(r) = rate_at {
                    let done = sums[r] - first[r];
                    let (since, base) = work_began.unwrap_or((started, first[r]));
                    let busy = now.duration_since(since).as_secs_f64();
                    println!(
                        "{}: +{done} in all; +{} in the {busy:.2} s from its first increase: {:.0}/s",
                        names[r],
                        sums[r] - base,
                        (sums[r] - base) / busy.max(f64::MIN_POSITIVE)
                    );
                }
                return Ok(());
            }
        }
        if started.elapsed() >= args.timeout {
            anyhow::bail!("gave up after {:?}", args.timeout);
        }
    }
}
