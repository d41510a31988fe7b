//! Reading the nodes' Prometheus `/metrics`: fetch, parse, sum a metric over nodes.

use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Fetches `/metrics` from a fixed set of nodes.
#[derive(Debug, Clone)]
pub struct Scraper {
    nodes: Vec<String>,
    http: HyperClient<HttpConnector, Empty<Bytes>>,
}

impl Scraper {
    /// A scraper of these client API addresses (`host:port`).
    pub fn new(nodes: &[String]) -> Scraper {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new()).build(connector);
        Scraper { nodes: nodes.to_vec(), http }
    }

    /// Each metric of `names`, summed over every node and label set. A metric a node does
    /// not export counts as zero there.
    ///
    /// # Errors
    /// When a node does not answer `/metrics` with a 200 within five seconds.
    pub async fn sums(&self, names: &[String]) -> anyhow::Result<Vec<f64>> {
        let mut totals = vec![0.0; names.len()];
        for node in &self.nodes {
            let text = self.fetch(node).await?;
            for (total, name) in totals.iter_mut().zip(names) {
                *total += sum(&text, name);
            }
        }
        Ok(totals)
    }

    /// Like [`Scraper::sums`], but a node that does not answer is skipped and named in the
    /// second value instead of failing the whole poll (for nodes that restart meanwhile).
    pub async fn sums_of_reachable(&self, names: &[String]) -> (Vec<f64>, Vec<String>) {
        let mut totals = vec![0.0; names.len()];
        let mut unreachable = Vec::new();
        for node in &self.nodes {
            match self.fetch(node).await {
                Ok(text) => {
                    for (total, name) in totals.iter_mut().zip(names) {
                        *total += sum(&text, name);
                    }
                }
                Err(_) => unreachable.push(node.clone()),
            }
        }
        (totals, unreachable)
    }

    async fn fetch(&self, node: &str) -> anyhow::Result<String> {
        let uri = format!("http://{}/metrics", node.trim_start_matches("http://").trim_end_matches('/'));
        let req = Request::get(&uri).body(Empty::new())?;
        let exchange = async {
            let resp = self.http.request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .with_context(|| format!("{uri} did not answer within 5 s"))?
            .with_context(|| format!("GET {uri}"))?;
        if status != StatusCode::OK {
            bail!("GET {uri} answered {status}");
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

/// The sum of every sample of metric `name` (exact name, any labels) in a Prometheus text
/// exposition; zero if there is none. Values that do not parse are skipped.
pub fn sum(exposition: &str, name: &str) -> f64 {
    exposition.lines().filter_map(|line| sample(line)).filter(|(n, _)| *n == name).map(|(_, v)| v).sum()
}

/// `(name, value)` of one sample line; `None` for comments, blank and malformed lines.
fn sample(line: &str) -> Option<(&str, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ', '\t'])?;
    let name = &line[..name_end];
    let rest = if line[name_end..].starts_with('{') {
        // Label values may hold spaces; the value comes after the last closing brace.
        &line[line.rfind('}')? + 1..]
    } else {
        &line[name_end..]
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = r#"# HELP quorumkv_hints_pending Hints waiting.
# TYPE quorumkv_hints_pending gauge
quorumkv_hints_pending{peer="node-1"} 120
quorumkv_hints_pending{peer="node 2"} 30
quorumkv_hints_delivered_total 4500
quorumkv_storage_syncs 17
quorumkv_request_seconds_sum{op="get",status="200"} 1.5
quorumkv_request_seconds_count{op="get",status="200"} 3
garbage line
"#;

    #[test]
    fn sums_one_metric_over_label_sets() {
        assert_eq!(sum(EXPOSITION, "quorumkv_hints_pending"), 150.0);
        assert_eq!(sum(EXPOSITION, "quorumkv_hints_delivered_total"), 4500.0);
        assert_eq!(sum(EXPOSITION, "quorumkv_storage_syncs"), 17.0);
        assert_eq!(sum(EXPOSITION, "quorumkv_request_seconds_count"), 3.0);
        assert_eq!(sum(EXPOSITION, "quorumkv_request_seconds"), 0.0, "exact names only");
        assert_eq!(sum(EXPOSITION, "absent"), 0.0);
    }
}
