//! The `quorumkv` command-line tool against real node processes: every command, its
//! human and JSON output, where values come from, and its exit statuses.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use quorumkv_tests::{Cluster, NodeProcess};

/// Where the CLI binary is: `$QUORUMKV_CLI_BIN`, else beside the node binary
/// (`cargo build --workspace --bins` puts both there).
fn cli_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("QUORUMKV_CLI_BIN") {
        return PathBuf::from(path);
    }
    let node = quorumkv_tests::process::node_binary();
    let bin = node.with_file_name("quorumkv");
    assert!(bin.exists(), "{} not found: build it with `cargo build --workspace --bins`", bin.display());
    bin
}

/// What one run of the CLI did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        self
    }
}

/// Runs `quorumkv args...` against `node` (through QUORUMKV_NODE), with `stdin` piped in.
fn cli_with(node: Option<&NodeProcess>, args: &[&str], stdin: &[u8]) -> Run {
    let mut cmd = Command::new(cli_binary());
    cmd.args(args).env_remove("QUORUMKV_NODE");
    if let Some(node) = node {
        cmd.env("QUORUMKV_NODE", node.api.to_string());
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn quorumkv");
    child.stdin.take().expect("stdin").write_all(stdin).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    Run {
        code: out.status.code().expect("exited"),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn cli(node: &NodeProcess, args: &[&str]) -> Run {
    cli_with(Some(node), args, b"")
}

/// The context a `put`/`delete`/`get --json` printed.
fn context_of(run: &Run) -> String {
    run.json()["context"].as_str().expect("context").to_string()
}

#[tokio::test]
async fn get_put_delete_with_values_from_arguments_files_and_stdin() {
    let c = Cluster::single(&[]).await;
    let n = &c.nodes[0];

    // put from an argument; get shows the value, its content type and its context.
    let put = cli(n, &["put", "users", "alice", "hello"]).ok();
    assert!(put.out().starts_with("stored users/alice\n"), "{put:?}");
    let get = cli(n, &["get", "users", "alice"]).ok();
    let text = get.out();
    assert!(text.contains("text/plain; charset=utf-8"), "{text}");
    assert!(text.ends_with("\nhello\n"), "{text}");
    let ctx = context_of(&cli(n, &["get", "users", "alice", "--json"]).ok());
    assert!(text.contains(&format!("context       {ctx}")), "{text}");
    assert_eq!(cli(n, &["get", "users", "alice", "--raw"]).ok().stdout, b"hello");
    assert_eq!(
        cli(n, &["get", "users", "alice", "--raw", "--strict"]).ok().stdout,
        b"hello",
        "a strict read"
    );

    // A second put replaces the value (it reads the context first): no sibling.
    cli(n, &["put", "users", "alice", "hello again"]).ok();
    assert_eq!(cli(n, &["get", "users", "alice", "--raw"]).ok().stdout, b"hello again");

    // put from a file (binary, with a content type) and from stdin.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let file = c.dir().join("value.bin");
    std::fs::write(&file, &bytes).expect("write file");
    let path = file.to_str().expect("utf8 path");
    cli(n, &["put", "files", "blob", "--file", path, "-t", "image/png"]).ok();
    assert_eq!(cli(n, &["get", "files", "blob", "--raw"]).ok().stdout, bytes);
    let get = cli(n, &["get", "files", "blob"]).ok();
    assert!(get.out().contains("image/png") && get.out().contains("binary data"), "{get:?}");
    let json = cli(n, &["--json", "get", "files", "blob"]).ok().json();
    assert_eq!(json["siblings"][0]["content_type"], "image/png");
    assert_eq!(json["siblings"][0]["value"], serde_json::Value::Null, "binary has no text form");

    let run = cli_with(Some(n), &["put", "docs", "d1", "-", "-t", "application/json"], br#"{"a":1}"#).ok();
    assert!(run.out().contains("stored docs/d1"), "{run:?}");
    let json = cli(n, &["get", "docs", "d1", "--json"]).ok().json();
    assert_eq!(json["siblings"][0]["value"], r#"{"a":1}"#);
    assert_eq!(json["siblings"][0]["content_type"], "application/json");

    // Binary keys with --key-hex; the same key through the client library.
    cli(n, &["put", "bin", "00ff2f", "--key-hex", "k"]).ok();
    let client = quorumkv_client::Client::new([n.api.to_string()]).expect("client");
    let obj = client.get("bin", [0x00, 0xff, b'/']).await.expect("get");
    assert_eq!(obj.value().and_then(|v| v.as_str()), Some("k"));

    // delete, then get: not found, exit 3, with the tombstone's context on stderr (JSON).
    let del = cli(n, &["delete", "users", "alice", "--json"]).ok();
    assert!(!context_of(&del).is_empty());
    let gone = cli(n, &["get", "users", "alice"]);
    assert_eq!(gone.code, 3, "{gone:?}");
    assert!(gone.stderr.contains("not found"), "{gone:?}");
    let gone = cli(n, &["get", "users", "alice", "--json"]);
    assert_eq!(gone.code, 3);
    let err: serde_json::Value = serde_json::from_str(gone.stderr.trim()).expect("JSON error");
    assert_eq!(err["error"], "not_found");
    assert!(err["context"].is_string(), "{err}");
    // Deleting what does not exist succeeds.
    cli(n, &["delete", "users", "nobody"]).ok();
}

#[tokio::test]
async fn siblings_are_shown_apart_and_resolved_with_a_context() {
    let c = Cluster::single(&[]).await;
    let n = &c.nodes[0];
    cli(n, &["put", "--blind", "b", "k", "one"]).ok();
    cli(n, &["put", "--blind", "b", "k", "two", "-t", "text/x-two"]).ok();

    let get = cli(n, &["get", "b", "k"]).ok();
    let text = get.out();
    assert!(text.contains("2 concurrent versions"), "{text}");
    assert!(text.contains("--- sibling 1 of 2"), "{text}");
    assert!(text.contains("--- sibling 2 of 2"), "{text}");
    assert!(text.contains("\none\n") && text.contains("\ntwo\n"), "{text}");
    assert!(text.contains("text/x-two"), "{text}");

    let raw = cli(n, &["get", "b", "k", "--raw"]);
    assert_eq!(raw.code, 7, "one value asked, siblings found: {raw:?}");
    assert!(raw.stdout.is_empty());

    let json = cli(n, &["get", "b", "k", "--json"]).ok().json();
    assert_eq!(json["siblings"].as_array().expect("siblings").len(), 2);
    let ctx = json["context"].as_str().expect("context").to_string();

    cli(n, &["put", "b", "k", "merged", "--context", &ctx, "-w", "1", "--dw", "1"]).ok();
    assert_eq!(cli(n, &["get", "b", "k", "--raw", "-r", "all"]).ok().stdout, b"merged");

    // A delete removes only what its context saw: with the old context, the value
    // written since survives.
    cli(n, &["delete", "b", "k", "--context", &ctx]).ok();
    assert_eq!(cli(n, &["get", "b", "k", "--raw"]).ok().stdout, b"merged");
}

#[tokio::test]
async fn status_and_ring_as_tables_and_json() {
    let c = Cluster::single(&[]).await;
    let n = &c.nodes[0];
    let status = cli(n, &["status"]).ok().out();
    assert!(status.starts_with("node "), "{status}");
    assert!(status.contains("node-1"), "{status}");
    assert!(status.contains(&n.api.to_string()), "{status}");
    assert!(status.contains("MEMBER") && status.contains("STATE"), "{status}");
    let json = cli(n, &["status", "--json"]).ok().json();
    assert_eq!(json["node_id"], "node-1");

    let ring = cli(n, &["ring"]).ok().out();
    assert!(ring.starts_with("ring version "), "{ring}");
    assert!(ring.contains("N=1 · 64 partitions · 1 members"), "{ring}");
    assert!(ring.contains("node-1") && ring.contains("REPLICA OF"), "{ring}");
    let ring = cli(n, &["ring", "--partitions"]).ok().out();
    assert!(ring.contains("PARTITION") && ring.lines().count() > 64, "{ring}");
    let json = cli(n, &["--json", "ring"]).ok().json();
    assert_eq!(json["partition_count"], 64);
    assert_eq!(json["members"][0]["node_id"], "node-1");
    assert!(status.contains("anti-entropy") && status.contains("hinted handoff"), "{status}");

    let queued = cli(n, &["admin", "anti-entropy"]).ok().out();
    assert_eq!(queued, "anti-entropy queued for 64 partition(s)\n");
    let json = cli(n, &["--json", "admin", "anti-entropy", "--partition", "5"]).ok().json();
    assert_eq!(json["queued"], serde_json::json!([5]));
    let bad = cli(n, &["admin", "anti-entropy", "--partition", "500"]);
    assert_eq!(bad.code, 2, "{bad:?}");
}

#[tokio::test]
async fn exit_statuses_tell_failures_apart() {
    let c = Cluster::single(&[]).await;
    let n = &c.nodes[0];
    let expect = |run: Run, code: i32, needle: &str| {
        assert_eq!(run.code, code, "{run:?}");
        assert!(run.stderr.contains(needle), "stderr lacks {needle:?}: {run:?}");
    };
    // Bad input: arguments, names and parameters the node refuses.
    expect(cli(n, &["put", "b", "k"]), 2, "VALUE");
    expect(cli(n, &["get", "bad bucket", "k"]), 2, "bucket");
    expect(cli(n, &["get", "b", "k", "-r", "2"]), 2, "invalid_parameter");
    expect(cli(n, &["get", "b", "k", "-r", "most"]), 2, "most");
    expect(cli(n, &["put", "b", "k", "v", "--context", "not a token"]), 2, "context");
    expect(cli(n, &["frobnicate"]), 2, "frobnicate");
    // Not found.
    expect(cli(n, &["get", "b", "never"]), 3, "not found");
    // Nothing listening: unreachable; --node wins over the environment.
    let dead = format!("127.0.0.1:{}", quorumkv_tests::process::free_port());
    expect(cli(n, &["--node", &dead, "status"]), 6, "could not reach");
    expect(cli_with(None, &["--node", &dead, "get", "b", "k"], b""), 6, &dead);
    // A paused node: the deadline holds.
    n.pause();
    let run = cli(n, &["get", "b", "k", "--timeout", "300"]);
    n.resume();
    expect(run, 5, "no answer within 300 ms");
    // Failing over to the next --node.
    let run = cli_with(None, &["--node", &dead, "--node", &n.api.to_string(), "put", "b", "k", "v"], b"");
    assert_eq!(run.code, 0, "{run:?}");

    // Help teaches: commands, examples, exit statuses.
    let help = cli_with(None, &["--help"], b"").ok().out();
    for needle in ["get", "put", "delete", "status", "ring", "QUORUMKV_NODE", "Examples:", "Exit status:"] {
        assert!(help.contains(needle), "--help lacks {needle}: {help}");
    }
}

#[tokio::test]
async fn a_quorum_failure_exits_4_with_the_failed_replicas() {
    let mut c = Cluster::start(3, 3, &[]).await;
    c.node(1).kill9();
    c.node(2).kill9();
    let n = &c.nodes[0];
    let run = cli(n, &["put", "b", "k", "v", "--blind", "-w", "all", "--timeout", "2000"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("quorum failed") && run.stderr.contains("node-2"), "{run:?}");
    let run = cli(n, &["--json", "get", "b", "k", "-r", "all", "--timeout", "2000"]);
    assert_eq!(run.code, 4, "{run:?}");
    let err: serde_json::Value = serde_json::from_str(run.stderr.trim()).expect("JSON error");
    assert_eq!((err["error"].as_str(), err["required"].as_u64()), (Some("quorum_failed"), Some(3)));
    // With one replica enough, the same node serves.
    cli(n, &["put", "b", "k", "v", "-r", "one", "-w", "one", "--timeout", "2000"]).ok();
    assert_eq!(cli(n, &["get", "b", "k", "-r", "one", "--raw"]).ok().stdout, b"v");
}

#[tokio::test]
async fn an_operator_grows_the_cluster_with_the_layout_commands() {
    let mut c = Cluster::start(3, 3, &[]).await;
    let http = quorumkv_tests::Http::new();
    let first = &c.nodes[0];
    cli(first, &["put", "grow", "before", "kept"]).ok();
    let shown = cli(first, &["admin", "layout"]).ok().out();
    assert!(shown.contains("layout version 1") && shown.contains("nothing staged"), "{shown}");

    // The newcomer has twice the others' capacity: 2/5 of the 192 slots would be 76.8,
    // more than one copy of every partition, so it holds all 64 and the others share the
    // remaining 128.
    let new = c.add_node(3, &["--capacity", "2"]).await;
    let first = &c.nodes[0];
    // A member that is up cannot be removed; an unknown node cannot join.
    let refused = cli(first, &["admin", "layout", "remove", "node-2"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("use leave"), "{refused:?}");
    let refused = cli(first, &["admin", "layout", "join", "node-9"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("--seed"), "{refused:?}");

    let staged = cli(first, &["admin", "layout", "join", "node-4"]).ok().out();
    assert!(staged.contains("join node-4") && staged.contains("partition(s) move"), "{staged}");
    let table = cli(first, &["admin", "layout", "plan"]).ok().out();
    let row = table.lines().find(|l| l.trim_start().starts_with("node-4")).unwrap_or_default().to_string();
    assert!(
        row.contains(" 2 ") && row.ends_with("- -> 64"),
        "node-4: capacity 2, then every partition: {table}"
    );
    let plan = cli(first, &["--json", "admin", "layout", "plan"]).ok().json();
    let placed = plan["plan"]["placement"].as_array().expect("placement");
    let newcomer = placed.iter().find(|m| m["node_id"] == "node-4").expect("node-4 placed");
    assert_eq!(newcomer["capacity"], 2);
    assert_eq!(newcomer["partitions"], 64, "{newcomer}");
    assert!(
        placed
            .iter()
            .filter(|m| m["node_id"] != "node-4")
            .all(|m| m["partitions"] == 42 || m["partitions"] == 43)
    );
    let moving = plan["plan"]["partitions_moving"].as_u64().expect("moving");
    assert_eq!(moving, 64, "node-4 gains a copy of every partition: {plan}");
    assert!(
        plan["plan"]["moves"]
            .as_array()
            .expect("moves")
            .iter()
            .all(|m| m["to"] == serde_json::json!(["node-4"]))
    );
    let committed = cli(first, &["admin", "layout", "commit"]).ok().out();
    assert!(committed.contains("layout version 2"), "{committed}");

    // Every node takes version 2, and node-4 syncs what it gained.
    for n in &c.nodes {
        quorumkv_tests::eventually(
            &format!("{} is on version 2, synced", n.name),
            std::time::Duration::from_secs(30),
            || async {
                let status = http.get(&n.url("/v1/status")).await.json();
                let layout = &status["layout"];
                (layout["version"] == 2 && layout["syncing"].as_array().is_some_and(Vec::is_empty))
                    .then_some(())
            },
        )
        .await;
    }
    let ring = http.get(&c.nodes[new].url("/v1/ring")).await.json();
    assert_eq!(ring["members"].as_array().expect("members").len(), 4);
    assert!(cli(&c.nodes[new], &["get", "grow", "before"]).ok().out().trim_end().ends_with("\nkept"));
    cli(&c.nodes[new], &["put", "grow", "after", "also"]).ok();
    assert!(cli(&c.nodes[1], &["get", "grow", "after"]).ok().out().trim_end().ends_with("\nalso"));
}

#[tokio::test]
async fn bearer_tokens_gate_the_api_and_the_cli_sends_them() {
    let rw = "rw:read-write-token-0123456789";
    let ro = "ro:read-only-token-01234567890";
    let c = Cluster::single(&["--client-token", rw, "--client-token", ro]).await;
    let n = &c.nodes[0];
    let (rw, ro) = (&rw[3..], &ro[3..]);
    // No token, a wrong one: 401, exit 2, nothing stored.
    let run = cli(n, &["put", "t", "k", "v"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("bearer token"), "{run:?}");
    let run = cli(n, &["--token", "not-a-token-of-this-node", "get", "t", "k"]);
    assert_eq!(run.code, 2, "{run:?}");
    // Read-write writes; read-only reads, and is refused a write (403) and a layout change.
    cli(n, &["--token", rw, "put", "t", "k", "v"]).ok();
    assert_eq!(cli(n, &["--token", ro, "get", "t", "k", "--raw"]).ok().stdout, b"v");
    let run = cli(n, &["--token", ro, "put", "t", "k", "w"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("read-only"), "{run:?}");
    assert_eq!(cli(n, &["--token", ro, "admin", "layout", "cancel"]).code, 2);
    assert_eq!(cli(n, &["--token", rw, "get", "t", "k", "--raw"]).ok().stdout, b"v");
    // The raw API: JSON errors, WWW-Authenticate; health needs no token.
    let http = quorumkv_tests::Http::new();
    let r = http.get(&n.kv("t", "k", "")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = http.put(&n.kv("t", "k", ""), &[("authorization", &format!("Bearer {ro}"))], "x").await;
    assert_eq!((r.status.as_u16(), r.json()["error"].clone()), (403, "forbidden".into()));
    assert_eq!(http.get(&n.url("/v1/health")).await.status, 200);
    assert_eq!(http.get(&n.url("/metrics")).await.status, 401, "metrics need a token too");
}

#[tokio::test]
async fn a_value_over_the_limit_is_a_413_the_cli_reports_as_bad_input() {
    let c = Cluster::single(&["--max-value-bytes", "1000"]).await;
    let n = &c.nodes[0];
    let big = vec![b'x'; 3 * 1024 * 1024];
    let run = cli_with(Some(n), &["put", "t", "big", "-"], &big);
    assert_eq!(run.code, 2, "the node's 413 is read, not a reset connection: {run:?}");
    assert!(run.stderr.contains("value_too_large"), "{run:?}");
    cli(n, &["put", "t", "small", "fits"]).ok();
}

#[tokio::test]
async fn health_exits_0_on_a_serving_node_and_1_otherwise() {
    let c = Cluster::single(&[]).await;
    assert_eq!(cli(&c.nodes[0], &["health"]).ok().out(), "healthy\n");
    let run = cli_with(None, &["--node", "127.0.0.1:1", "--timeout", "500", "health"], b"");
    assert_eq!(run.code, 1, "{run:?}");
    // The node binary makes a cluster secret once and keeps it.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s/cluster.secret");
    let make = || {
        std::process::Command::new(quorumkv_tests::process::node_binary())
            .args(["secret", "--out"])
            .arg(&path)
            .output()
            .expect("run")
    };
    assert!(make().status.success());
    let first = std::fs::read_to_string(&path).expect("written");
    assert_eq!(first.trim().len(), 32, "{first}");
    assert!(make().status.success());
    assert_eq!(std::fs::read_to_string(&path).expect("kept"), first, "an existing secret is kept");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn list_prints_a_buckets_keys_page_by_page_and_resumes_from_its_cursor() {
    let mut c = Cluster::start(3, 3, &[]).await;
    let http = quorumkv_tests::Http::new();
    let mut expected: Vec<String> = (0..40).map(|k| format!("user{k:02}")).collect();
    for k in &expected {
        http.put(&c.nodes[(k.len() + k.as_bytes()[5] as usize) % 3].kv("people", k, "w=2"), &[], "v").await;
    }
    // A key that is not UTF-8 and one with a `%` are shown percent-encoded.
    assert_eq!(http.put(&c.nodes[0].kv("people", "%FF%00", "w=2"), &[], "v").await.status, 204);
    assert_eq!(http.put(&c.nodes[0].kv("people", "100%25", "w=2"), &[], "v").await.status, 204);
    http.put(&c.nodes[0].kv("things", "user99", "w=2"), &[], "v").await;
    let n = &c.nodes[1];

    let all = cli(n, &["list", "people", "--page-size", "7"]).ok().out();
    let mut want = vec!["100%25".to_string()];
    want.extend(expected.iter().cloned());
    want.push("%FF%00".into());
    assert_eq!(all.lines().collect::<Vec<_>>(), want);

    // Over HTTP: a page, its cursor, the next page.
    let page = http.get(&n.url("/v1/kv/people?prefix=user&limit=5")).await.json();
    assert_eq!(page["keys"], serde_json::json!(expected[..5]));
    let next = page["next"].as_str().expect("a cursor").to_string();
    let page = http.get(&n.url(&format!("/v1/kv/people?prefix=user&limit=5&after={next}"))).await.json();
    assert_eq!(page["keys"], serde_json::json!(expected[5..10]));

    // --limit stops with the cursor; --resume goes on from it.
    let run = cli(n, &["list", "people", "--prefix", "user", "--limit", "15", "--page-size", "4"]).ok();
    assert_eq!(run.out().lines().collect::<Vec<_>>(), expected[..15]);
    let cursor = run.stderr.rsplit("--resume ").next().expect("a cursor").trim().to_string();
    let rest = cli(n, &["--json", "list", "people", "--prefix", "user", "--resume", &cursor]).ok().json();
    assert_eq!(rest["keys"], serde_json::json!(expected[15..]));
    assert_eq!(rest["next"], serde_json::Value::Null);

    // A deleted key is not listed; with one node killed, r=2 still lists everything.
    let ctx = http.get(&n.kv("people", "user07", "")).await.context().expect("context").to_string();
    assert_eq!(
        http.delete(&n.kv("people", "user07", "w=2"), &[("x-causal-context", &ctx)]).await.status,
        204
    );
    expected.retain(|k| k != "user07");
    c.node(2).kill9();
    let run = cli(&c.nodes[0], &["list", "people", "--prefix", "user", "--page-size", "9"]).ok();
    assert_eq!(run.out().lines().collect::<Vec<_>>(), expected);
    // r=3 cannot be met: exit 4, naming a partition, with no partial page printed as whole.
    let run = cli(&c.nodes[0], &["list", "people", "-r", "all", "--timeout", "3000"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("partition"), "{run:?}");
    assert_eq!(cli(&c.nodes[0], &["list", "bad/bucket"]).code, 2);
    assert_eq!(cli(&c.nodes[0], &["list", "people", "--limit", "0"]).code, 2);
}
