//! `quorumkv list`: a bucket's keys, one per line, streamed page by page.

use std::io::Write;

use clap::Args;
use serde_json::json;

use super::{CliError, pretty};
use crate::{Client, Quorum};

#[derive(Args, Debug)]
pub(super) struct ListArgs {
    /// Bucket: 1 to 255 characters of A-Z a-z 0-9 . _ -
    bucket: String,
    /// Only keys that start with this text.
    #[arg(long, value_name = "TEXT")]
    prefix: Option<String>,
    /// Start after this key.
    #[arg(long, value_name = "KEY", conflicts_with = "resume")]
    after: Option<String>,
    /// Continue an earlier listing from the cursor it printed.
    #[arg(long, value_name = "CURSOR")]
    resume: Option<String>,
    /// Stop after this many keys (and print the cursor to resume from).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Keys per request, 1 to 10000 [default: the node's, 1000].
    #[arg(long, value_name = "N")]
    page_size: Option<usize>,
    /// Replicas of every partition that must answer: 1..N, one, quorum or all
    /// [default: the node's r].
    #[arg(short = 'r', long, value_name = "R")]
    r: Option<Quorum>,
}

/// How a key is printed: its text when that is safe on one line (UTF-8, no `%`, no
/// control characters), else percent-encoded, as the API shows it.
fn shown(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if !text.contains('%') && !text.chars().any(char::is_control) => text.to_owned(),
        _ => crate::addr::key_query(key),
    }
}

/// Prints keys as they arrive (text), or all at once (`--json`). The `--timeout` deadline
/// applies to each page.
pub(super) async fn list(client: &Client, args: ListArgs, as_json: bool) -> Result<Vec<u8>, CliError> {
    let mut listing = client.list(&args.bucket);
    if let Some(p) = &args.prefix {
        listing = listing.prefix(p);
    }
    if let Some(a) = &args.after {
        listing = listing.after(a);
    }
    if let Some(c) = &args.resume {
        listing = listing.resume(c.clone());
    }
    if let Some(n) = args.page_size {
        listing = listing.page_size(n);
    }
    if let Some(r) = args.r {
        listing = listing.r(r);
    }
    let limit = args.limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut stdout = std::io::stdout().lock();
    let mut printed = Vec::new();
    let mut count = 0usize;
    let mut stopped_at = None;
    'pages: loop {
        let before = listing.cursor().map(str::to_owned);
        let page = match listing.next_page().await {
            Ok(Some(page)) => page,
            Ok(None) => break,
            Err(e) => {
                let mut err = CliError::from_error(e, &format!("list {}", args.bucket));
                if let Some(cursor) = &before {
                    err.message.push_str(&format!(" ({count} keys listed; continue with --resume {cursor})"));
                    err.error["resume"] = json!(cursor);
                }
                let _ = stdout.flush();
                return Err(err);
            }
        };
        for (i, key) in page.iter().enumerate() {
            if count == limit {
                // The cursor for the rest: the last key printed.
                stopped_at = Some(if i == 0 {
                    before.unwrap_or_default()
                } else {
                    crate::addr::key_query(&page[i - 1])
                });
                break 'pages;
            }
            count += 1;
            if as_json {
                printed.push(shown(key));
            } else if writeln!(stdout, "{}", shown(key)).is_err() {
                // A closed pipe (`| head`): the reader has what it wanted.
                return Ok(Vec::new());
            }
        }
    }
    if as_json {
        return Ok(pretty(&json!({"keys": printed, "next": stopped_at})));
    }
    if let Some(cursor) = stopped_at {
        eprintln!("quorumkv: stopped after {count} keys; continue with --resume {cursor}");
    }
    let _ = stdout.flush();
    Ok(Vec::new())
}
