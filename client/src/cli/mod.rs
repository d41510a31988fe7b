//! The `quorumkv` command-line tool: read, write and delete keys, and look at a cluster.
//!
//! The binary only calls [`main`]; everything it does is here, on top of the
//! [`Client`].

mod list;
mod table;

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value as Json, json};

use crate::ring::Ring;
use crate::status::{NodeStatus, Reads, Replication};
use crate::{Change, Client, Context, Error, Object, Options, Quorum, Value};
use table::Table;

/// Exit statuses, distinct per kind of failure so that scripts can tell them apart.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A failure with no code of its own (for example an unexpected answer or a 500).
    pub const OTHER: u8 = 1;
    /// Bad input: wrong arguments, or the node refused the request (400, 413).
    pub const BAD_INPUT: u8 = 2;
    /// The key has no live version.
    pub const NOT_FOUND: u8 = 3;
    /// Too few replicas answered (503): retry later or lower r / w.
    pub const QUORUM_FAILED: u8 = 4;
    /// The deadline passed before any node answered.
    pub const TIMEOUT: u8 = 5;
    /// No node could be reached.
    pub const UNREACHABLE: u8 = 6;
    /// Siblings where one value was needed (`get --raw`), or too many siblings (409).
    pub const CONFLICT: u8 = 7;
}

const AFTER_HELP: &str = "\
Examples:
  quorumkv put users alice 'hello'                  store a text value
  quorumkv put users avatar --file me.png -t image/png
  echo '{\"age\": 31}' | quorumkv put users bob - -t application/json
  quorumkv get users alice                          show the value and its context
  quorumkv get users avatar --raw > me.png          the bytes only
  quorumkv delete users alice
  quorumkv list users --prefix a                    keys of a bucket, one per line
  quorumkv --node 10.0.0.2:7070 status              one node's view of the cluster
  quorumkv ring --partitions                        which nodes hold which partition

How writes work: a key can hold several concurrent versions (siblings) when writers race.
`get` shows all of them with one causal context. `put` and `delete` first read the key
and then write with its context, so they replace every version they saw; `--context TOKEN`
uses a context you read earlier instead (safe against writes you have not seen), and
`--blind` writes without one (a blind put adds a sibling; a blind delete removes nothing).

Exit status:
  0 success                          4 quorum failed: too few replicas answered
  1 other error                      5 timed out
  2 bad input (arguments, 400, 401, 403, 413)  6 no node reachable
  3 not found                        7 siblings where one value was needed
                                       (get --raw), or too many siblings";

/// Talk to a quorumkv cluster: read, write and delete keys, look at nodes and the ring.
#[derive(Parser, Debug)]
#[command(name = "quorumkv", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

#[derive(Args, Debug)]
struct Global {
    /// Node to talk to, host:port. Repeat it (or separate with commas in the environment)
    /// to fail over to the next one.
    #[arg(
        long = "node",
        short = 'n',
        global = true,
        env = "QUORUMKV_NODE",
        value_delimiter = ',',
        default_value = "127.0.0.1:7070",
        value_name = "ADDR"
    )]
    nodes: Vec<String>,
    /// Print JSON for scripts instead of text for people (errors go to stderr as JSON too).
    #[arg(long, global = true)]
    json: bool,
    /// Bearer token, for nodes started with client tokens.
    #[arg(long, global = true, env = "QUORUMKV_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,
    /// Deadline of the whole command, in milliseconds.
    #[arg(long, global = true, value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    timeout: u64,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read a key: its value, or every sibling if concurrent writes left several.
    Get(GetArgs),
    /// Write a value, given as an argument, read from a file, or from stdin (`-`).
    Put(PutArgs),
    /// Delete a key (deleting a key that does not exist succeeds).
    Delete(DeleteArgs),
    /// List a bucket's keys in byte order, one per line (deleted keys are not listed).
    List(list::ListArgs),
    /// Show a node's status: identity, uptime, storage, and the members it sees.
    Status,
    /// Exit 0 if the node answers /v1/health with 200 (it has the layout and serves), else 1.
    Health,
    /// Show the ring: version, N, members and how many partitions each holds.
    Ring(RingArgs),
    /// Operator commands.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand, Debug)]
enum LayoutCommand {
    /// The layout in force, the staged changes and the plan (the default).
    Show,
    /// Stage: a running node (started with --seed of a member) becomes a member.
    Join { node: String },
    /// Stage: a member hands everything off and leaves (stop it once status says it may).
    Leave { node: String },
    /// Stage: a dead member is dropped; its partitions are rebuilt from the others.
    Remove { node: String },
    /// Stage: a new node takes a dead member's place (exactly its partitions move).
    Replace { old: String, new: String },
    /// Show every partition the staged changes would move.
    Plan,
    /// Make the staged changes the next layout version.
    Commit,
    /// Drop the staged changes.
    Cancel,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// The cluster layout: show it, stage join/leave/remove/replace, plan, commit, cancel.
    /// Staged changes live on the node they were sent to (the first --node).
    Layout {
        #[command(subcommand)]
        command: Option<LayoutCommand>,
    },
    /// Run an anti-entropy exchange on the node now, for one partition or all it holds
    /// (normally it runs by itself every aae_interval_ms).
    AntiEntropy {
        /// Only this partition.
        #[arg(long)]
        partition: Option<u32>,
    },
}

#[derive(Args, Debug)]
struct KeyArgs {
    /// Bucket: 1 to 255 characters of A-Z a-z 0-9 . _ -
    bucket: String,
    /// Key: any text, 1 to 1024 bytes (see --key-hex for binary keys).
    key: String,
    /// The key is hexadecimal, for keys that are not text (e.g. 00ff10).
    #[arg(long)]
    key_hex: bool,
}

impl KeyArgs {
    fn key_bytes(&self) -> Result<Vec<u8>, CliError> {
        if !self.key_hex {
            return Ok(self.key.as_bytes().to_vec());
        }
        let hex = self.key.as_bytes();
        if !hex.len().is_multiple_of(2) {
            return Err(CliError::usage("--key-hex needs an even number of hex digits"));
        }
        hex.chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .ok_or_else(|| CliError::usage(format!("`{}` is not hexadecimal", self.key)))
            })
            .collect()
    }

    fn display(&self) -> String {
        format!("{}/{}", self.bucket, self.key)
    }
}

#[derive(Args, Debug)]
struct WriteArgs {
    /// Supersede exactly the versions this context covers (a token from an earlier get),
    /// instead of reading the key first.
    #[arg(long, value_name = "TOKEN", conflicts_with = "blind")]
    context: Option<String>,
    /// Write without any context: a put becomes a sibling of what is stored, a delete
    /// removes nothing already stored.
    #[arg(long)]
    blind: bool,
    /// Replicas that must acknowledge: 1..N, one, quorum or all [default: the node's].
    #[arg(short = 'w', long, value_name = "W")]
    w: Option<Quorum>,
    /// Replicas the read before the write waits for (without --context or --blind)
    /// [default: the node's]. A lower r is safe: what it misses survives as a sibling.
    #[arg(short = 'r', long, value_name = "R", conflicts_with_all = ["context", "blind"])]
    r: Option<Quorum>,
    /// Of those, how many must fsync first (0..w) [default: the node's].
    #[arg(long, value_name = "DW")]
    dw: Option<usize>,
    /// Refuse fallback nodes: only the key's own replicas count toward w (and, for the
    /// read before a write, toward r).
    #[arg(long)]
    no_sloppy: bool,
}

#[derive(Args, Debug)]
struct GetArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// Replicas that must answer: 1..N, one, quorum or all [default: the node's].
    #[arg(short = 'r', long, value_name = "R")]
    r: Option<Quorum>,
    /// A strict read: only the key's own replicas are asked and count toward r, never a
    /// copy a fallback keeps for one that is down.
    #[arg(long)]
    strict: bool,
    /// Write only the value's bytes to stdout, nothing else (fails with siblings).
    #[arg(long, conflicts_with = "json")]
    raw: bool,
}

#[derive(Args, Debug)]
struct PutArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// The value; `-` reads it from stdin.
    #[arg(value_name = "VALUE", required_unless_present = "file")]
    value: Option<String>,
    /// Read the value from this file.
    #[arg(short = 'f', long, value_name = "PATH", conflicts_with = "value")]
    file: Option<PathBuf>,
    /// Content type stored with the value [default: text/plain; charset=utf-8 for a VALUE
    /// argument, application/octet-stream for a file or stdin].
    #[arg(short = 't', long, value_name = "MIME")]
    content_type: Option<String>,
    #[command(flatten)]
    write: WriteArgs,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    #[command(flatten)]
    key: KeyArgs,
    #[command(flatten)]
    write: WriteArgs,
}

#[derive(Args, Debug)]
struct RingArgs {
    /// Also list every partition with its replicas and fallbacks.
    #[arg(long)]
    partitions: bool,
}

/// A failure with the exit status it maps to.
#[derive(Debug)]
struct CliError {
    code: u8,
    error: Json,
    message: String,
}

impl CliError {
    fn usage(message: impl Into<String>) -> CliError {
        let message = message.into();
        CliError { code: exit::BAD_INPUT, error: json!({"error": "bad_input", "message": message}), message }
    }

    fn from_error(e: Error, what: &str) -> CliError {
        let (code, name) = match &e {
            Error::NotFound { .. } => (exit::NOT_FOUND, "not_found"),
            Error::InvalidInput { .. } => (exit::BAD_INPUT, "invalid_input"),
            Error::QuorumFailed { .. } => (exit::QUORUM_FAILED, "quorum_failed"),
            Error::Unavailable { .. } => (exit::QUORUM_FAILED, "unavailable"),
            Error::Timeout { .. } => (exit::TIMEOUT, "timeout"),
            Error::Transport { .. } => (exit::UNREACHABLE, "unreachable"),
            Error::TooManySiblings { .. } | Error::Unresolved { .. } => (exit::CONFLICT, "too_many_siblings"),
            Error::Server { status: 401 | 403, .. } => (exit::BAD_INPUT, "denied"),
            _ => (exit::OTHER, "error"),
        };
        let mut body = json!({"error": name, "message": e.to_string()});
        let message = match &e {
            Error::NotFound { context: Some(ctx) } => {
                body["context"] = json!(ctx.as_str());
                format!("{what}: not found (deleted; its context is {ctx})")
            }
            Error::NotFound { context: None } => format!("{what}: not found"),
            Error::InvalidInput { code, message } => {
                body["code"] = json!(code);
                format!("{what}: {message} ({code})")
            }
            Error::QuorumFailed { required, succeeded, replicas, node } => {
                body["required"] = json!(required);
                body["succeeded"] = json!(succeeded);
                body["replicas"] = json!(replicas);
                let mut m = format!(
                    "{what}: quorum failed: {succeeded} of {required} required replicas answered in time (coordinated by {node})"
                );
                for r in replicas {
                    m.push_str(&format!("\n  {}: {}", r.node, r.error));
                }
                m.push_str("\nretry, lower -r/-w, or check the replicas above");
                m
            }
            Error::Timeout { timeout } => format!(
                "{what}: no answer within {} ms (raise --timeout, or check the node)",
                timeout.as_millis()
            ),
            Error::Transport { .. } => format!("{what}: {e} (is a node running there? see --node)"),
            _ => format!("{what}: {e}"),
        };
        CliError { code, error: body, message }
    }
}

/// Runs the tool with the process's arguments and answers its exit status.
pub fn main() -> ExitCode {
    run(std::env::args_os())
}

/// Runs the tool with these arguments (the first is the program name).
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::BAD_INPUT } else { exit::OK });
        }
    };
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quorumkv: cannot start the async runtime: {e}");
            return ExitCode::from(exit::OTHER);
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = stdout.write_all(&out).and_then(|()| stdout.flush());
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            if json {
                eprintln!("{}", e.error);
            } else {
                eprintln!("quorumkv: {}", e.message);
            }
            ExitCode::from(e.code)
        }
    }
}

async fn execute(cli: Cli) -> Result<Vec<u8>, CliError> {
    let g = &cli.global;
    // The CLI talks to the node it is told to (failing over to the next --node), not to
    // whichever replica the ring names: an operator pointing at a node wants that node.
    let mut builder = Client::builder()
        .nodes(g.nodes.iter().cloned())
        .routing(false)
        .timeout(Duration::from_millis(g.timeout));
    if let Some(token) = &g.token {
        builder = builder.token(token.clone());
    }
    let client = builder.build().map_err(|e| CliError::from_error(e, "--node"))?;
    match cli.command {
        Command::Get(args) => get(&client, args, g.json).await,
        Command::Put(args) => put(&client, args, g.json).await,
        Command::Delete(args) => delete(&client, args, g.json).await,
        Command::List(args) => list::list(&client, args, g.json).await,
        Command::Status => status(&client, g.json).await,
        Command::Health => match client.health().await {
            Ok(()) => Ok(b"healthy\n".to_vec()),
            Err(e) => Err(CliError { code: 1, ..CliError::from_error(e, "health") }),
        },
        Command::Ring(args) => ring(&client, args, g.json).await,
        Command::Admin(AdminCommand::Layout { command }) => layout(&client, command, g.json).await,
        Command::Admin(AdminCommand::AntiEntropy { partition }) => {
            let queued = client
                .trigger_anti_entropy(partition)
                .await
                .map_err(|e| CliError::from_error(e, "anti-entropy"))?;
            Ok(if g.json {
                pretty(&serde_json::json!({ "queued": queued }))
            } else {
                format!("anti-entropy queued for {} partition(s)\n", queued.len()).into_bytes()
            })
        }
    }
}

async fn layout(client: &Client, command: Option<LayoutCommand>, as_json: bool) -> Result<Vec<u8>, CliError> {
    let enc =
        |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let change = match &command {
        None | Some(LayoutCommand::Show | LayoutCommand::Plan) => None,
        Some(LayoutCommand::Join { node }) => Some(format!("join?node={}", enc(node))),
        Some(LayoutCommand::Leave { node }) => Some(format!("leave?node={}", enc(node))),
        Some(LayoutCommand::Remove { node }) => Some(format!("remove?node={}", enc(node))),
        Some(LayoutCommand::Replace { old, new }) => {
            Some(format!("replace?old={}&new={}", enc(old), enc(new)))
        }
        Some(LayoutCommand::Commit) => Some("commit".to_string()),
        Some(LayoutCommand::Cancel) => Some("cancel".to_string()),
    };
    let v = client.layout(change.as_deref()).await.map_err(|e| CliError::from_error(e, "layout"))?;
    if as_json {
        return Ok(pretty(&v));
    }
    if let Some(version) = v["committed"].as_u64() {
        return Ok(format!("committed: layout version {version}\n").into_bytes());
    }
    let names = |a: &Json| -> String {
        a.as_array()
            .map(|a| a.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let mut out = format!(
        "layout version {} · N={} · members: {}\n",
        v["version"],
        v["replicas"],
        names(&v["members"])
    );
    out.push_str(&placement_table(&v["placement"], &v["plan"]["placement"]));
    let staged = v["staged"].as_array().cloned().unwrap_or_default();
    if staged.is_empty() {
        out.push_str("nothing staged\n");
    } else {
        out.push_str("staged:\n");
        for c in &staged {
            let who = match c["op"].as_str() {
                Some("replace") => format!(
                    "{} -> {}",
                    c["old"].as_str().unwrap_or(""),
                    c["new"]["node_id"].as_str().unwrap_or("")
                ),
                Some("join") => c["node"]["node_id"].as_str().unwrap_or("").to_string(),
                _ => c["node"].as_str().unwrap_or("").to_string(),
            };
            out.push_str(&format!("  {} {who}\n", c["op"].as_str().unwrap_or("?")));
        }
    }
    let plan = &v["plan"];
    if !plan.is_null() {
        out.push_str(&format!(
            "plan: version {} · members: {} · {} partition(s) move\n",
            plan["version"],
            names(&plan["members"]),
            plan["partitions_moving"]
        ));
        if matches!(command, Some(LayoutCommand::Plan)) {
            out.push_str("PARTITION  FROM        TO          KEYS  BYTES\n");
            for m in plan["moves"].as_array().cloned().unwrap_or_default() {
                let num = |x: &Json| x.as_u64().map_or("?".to_string(), |n| n.to_string());
                out.push_str(&format!(
                    "{:<9}  {:<10}  {:<10}  {:>4}  {:>5}\n",
                    m["partition"],
                    names(&m["from"]),
                    names(&m["to"]),
                    num(&m["keys"]),
                    num(&m["bytes"])
                ));
            }
            out.push_str(
                "(keys and bytes as the node asked holds them; ? where it holds none of the partition)\n",
            );
        } else {
            out.push_str(
                "`quorumkv admin layout plan` lists them; `quorumkv admin layout commit` applies them\n",
            );
        }
    }
    Ok(out.into_bytes())
}

/// Each member's capacity, zone and primary partitions, now and (with a plan) after it.
fn placement_table(now: &Json, planned: &Json) -> String {
    let row = |m: &Json| -> (String, String, String) {
        (
            m["node_id"].as_str().unwrap_or("?").to_string(),
            m["capacity"].to_string(),
            m["zone"].as_str().unwrap_or("-").to_string(),
        )
    };
    let count = |list: &Json, id: &str| -> String {
        list.as_array()
            .and_then(|l| l.iter().find(|m| m["node_id"] == id))
            .map_or("-".to_string(), |m| m["partitions"].to_string())
    };
    let mut members: Vec<(String, String, String)> = Vec::new();
    for m in now.as_array().into_iter().chain(planned.as_array()).flatten() {
        let r = row(m);
        if !members.iter().any(|x| x.0 == r.0) {
            members.push(r);
        }
    }
    members.sort();
    let width = members.iter().map(|m| m.0.len()).max().unwrap_or(4).max(4);
    let mut out = format!("  {:<width$}  CAPACITY  ZONE        PARTITIONS\n", "NODE");
    for (id, capacity, zone) in &members {
        let mut partitions = count(now, id);
        if !planned.is_null() {
            partitions = format!("{partitions} -> {}", count(planned, id));
        }
        out.push_str(&format!("  {id:<width$}  {capacity:<8}  {zone:<10}  {partitions}\n"));
    }
    out
}

fn pretty(v: &Json) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

fn sibling_json(v: &Value) -> Json {
    let mut s = json!({
        "content_type": v.content_type,
        "value_base64": base64::engine::general_purpose::STANDARD.encode(&v.bytes),
    });
    if let Some(text) = v.as_str() {
        s["value"] = json!(text);
    }
    s
}

async fn get(client: &Client, args: GetArgs, json: bool) -> Result<Vec<u8>, CliError> {
    let key = args.key.key_bytes()?;
    let what = args.key.display();
    let mut request = client.get(&args.key.bucket, &key);
    if let Some(r) = args.r {
        request = request.r(r);
    }
    if args.strict {
        request = request.strict();
    }
    let obj = request.await.map_err(|e| CliError::from_error(e, &what))?;
    if json {
        return Ok(pretty(&json!({
            "bucket": args.key.bucket,
            "key": args.key.key,
            "context": obj.context.as_str(),
            "siblings": obj.siblings.iter().map(sibling_json).collect::<Vec<_>>(),
        })));
    }
    if args.raw {
        return match obj.into_value() {
            Ok(v) => Ok(v.bytes.to_vec()),
            Err(obj) => Err(CliError {
                code: exit::CONFLICT,
                error: json!({"error": "siblings", "message": "the key has siblings"}),
                message: format!(
                    "{what} has {} siblings; --raw writes one value. Use --json, or resolve them with `put --context {}`",
                    obj.siblings.len(),
                    obj.context
                ),
            }),
        };
    }
    Ok(human_object(&what, &obj).into_bytes())
}

/// The text shown for a value: itself if it is text, else a note.
fn shown(v: &Value) -> String {
    match v.as_str() {
        Some(text) if !text.ends_with('\n') && !text.is_empty() => format!("{text}\n"),
        Some(text) => text.to_string(),
        None => format!(
            "({} of binary data: use --raw to write them out, or --json)\n",
            table::bytes(v.len() as u64)
        ),
    }
}

fn human_object(what: &str, obj: &Object) -> String {
    let mut out = String::new();
    if let Some(v) = obj.value() {
        out.push_str(&table::pairs(&[
            ("key".into(), what.to_string()),
            ("content-type".into(), v.content_type.clone()),
            ("size".into(), table::bytes(v.len() as u64)),
            ("context".into(), obj.context.to_string()),
        ]));
        out.push('\n');
        out.push_str(&shown(v));
        return out;
    }
    let n = obj.siblings.len();
    out.push_str(&table::pairs(&[
        ("key".into(), what.to_string()),
        ("siblings".into(), format!("{n} concurrent versions")),
        ("context".into(), obj.context.to_string()),
    ]));
    out.push_str(
        "\nResolve them by writing one value back with this context: quorumkv put --context <context> ...\n",
    );
    for (i, v) in obj.siblings.iter().enumerate() {
        out.push_str(&format!(
            "\n--- sibling {} of {n} · {} · {}\n",
            i + 1,
            v.content_type,
            table::bytes(v.len() as u64)
        ));
        out.push_str(&shown(v));
    }
    out
}

fn write_result(verb: &str, what: &str, ctx: &Context, json: bool) -> Vec<u8> {
    if json {
        pretty(&json!({"context": ctx.as_str()}))
    } else {
        format!("{verb} {what}\ncontext  {ctx}\n").into_bytes()
    }
}

fn read_value(args: &PutArgs) -> Result<Value, CliError> {
    let (bytes, default_type) = match (&args.file, args.value.as_deref()) {
        (Some(path), _) => (
            std::fs::read(path)
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?,
            crate::value::DEFAULT_CONTENT_TYPE,
        ),
        (None, Some("-")) => {
            let mut buf = Vec::new();
            if std::io::stdin().is_terminal() {
                eprintln!("quorumkv: reading the value from stdin; end it with Ctrl-D");
            }
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| CliError::usage(format!("cannot read stdin: {e}")))?;
            (buf, crate::value::DEFAULT_CONTENT_TYPE)
        }
        (None, Some(text)) => (text.as_bytes().to_vec(), crate::value::TEXT_CONTENT_TYPE),
        (None, None) => {
            return Err(CliError::usage(
                "give the value as an argument, with --file PATH, or `-` to read stdin",
            ));
        }
    };
    let content_type = args.content_type.as_deref().unwrap_or(default_type);
    Ok(Value::with_content_type(content_type, bytes))
}

impl WriteArgs {
    fn options(&self) -> Options {
        Options { r: self.r, w: self.w, dw: self.dw, sloppy: self.no_sloppy.then_some(false), timeout: None }
    }

    fn context(&self) -> Result<Option<Context>, CliError> {
        self.context
            .as_deref()
            .map(|t| {
                Context::from_token(t)
                    .map_err(|_| CliError::usage(format!("--context `{t}` is not a context token")))
            })
            .transpose()
    }

    /// Whether to write with the context given (or none), rather than read one first.
    fn direct(&self) -> bool {
        self.blind || self.context.is_some()
    }
}

/// Any one sibling: a put or delete that read the key replaces them all anyway.
fn any_sibling(mut siblings: Vec<Value>) -> Value {
    siblings.pop().unwrap_or_else(|| Value::new(Vec::new()))
}

async fn put(client: &Client, args: PutArgs, json: bool) -> Result<Vec<u8>, CliError> {
    let key = args.key.key_bytes()?;
    let what = args.key.display();
    let value = read_value(&args)?;
    let (bucket, w) = (&args.key.bucket, &args.write);
    let ctx = if w.direct() {
        client.put(bucket, &key, value).context(w.context()?.as_ref()).options(w.options()).await
    } else {
        client.update(bucket, &key, move |_| value).resolve(any_sibling).options(w.options()).await
    }
    .map_err(|e| CliError::from_error(e, &what))?;
    Ok(write_result("stored", &what, &ctx, json))
}

async fn delete(client: &Client, args: DeleteArgs, json: bool) -> Result<Vec<u8>, CliError> {
    let key = args.key.key_bytes()?;
    let what = args.key.display();
    let (bucket, w) = (&args.key.bucket, &args.write);
    let ctx = if w.direct() {
        client.delete(bucket, &key).context(w.context()?.as_ref()).options(w.options()).await
    } else {
        client.update(bucket, &key, |_| Change::Delete).resolve(any_sibling).options(w.options()).await
    }
    .map_err(|e| CliError::from_error(e, &what))?;
    Ok(write_result("deleted", &what, &ctx, json))
}

async fn status(client: &Client, json: bool) -> Result<Vec<u8>, CliError> {
    let status = client.status().await.map_err(|e| CliError::from_error(e, "status"))?;
    if json {
        return Ok(pretty(&status.raw));
    }
    // Each member measures the writes and reads it coordinated: ask the others too, so
    // the answer covers the cluster. One that does not answer is shown as such.
    let others = status.members.iter().filter(|m| m.node_id != status.node_id && m.state.as_str() == "up");
    let asked = others
        .filter_map(|m| Some((m.node_id.clone(), m.api_addr.clone()?)))
        .map(|(id, addr)| async move { (id, client.node_status(&addr).await.ok()) });
    let mut views: Vec<(String, Option<NodeStatus>)> = futures_util::future::join_all(asked).await;
    views.push((status.node_id.clone(), Some(status.clone())));
    Ok(human_status(&status, &views).into_bytes())
}

/// The replication and read figures of every member that answered, a row each, and the
/// cluster's: writes and not-landed summed, shares weighted by writes, the worst p99.
fn replication_table(views: &[(String, Option<NodeStatus>)]) -> String {
    let mut t = Table::new([
        "member (last 60 s)",
        "writes",
        "within 10 ms",
        "100 ms",
        "1 s",
        "lag p99",
        "not landed",
        "reads stale",
    ]);
    let share = |s: Option<f64>| s.map_or_else(|| "-".into(), table::percent);
    let (mut writes, mut landed10, mut landed100, mut landed1s, mut missed, mut reads, mut stale) =
        (0u64, 0.0, 0.0, 0.0, 0u64, 0u64, 0u64);
    let mut worst: Option<f64> = None;
    let mut sorted: Vec<&(String, Option<NodeStatus>)> = views.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, view) in sorted {
        let Some(s) = view else {
            t.row(vec![id.clone(), "no answer".into()]);
            continue;
        };
        let (Some(r), Some(rd)) = (&s.replication, &s.reads) else {
            t.row(vec![id.clone(), "not reported".into()]);
            continue;
        };
        let w = &r.recent;
        writes += w.writes;
        let weigh = |s: Option<f64>| s.unwrap_or(0.0) * w.writes as f64;
        landed10 += weigh(w.within_10ms);
        landed100 += weigh(w.within_100ms);
        landed1s += weigh(w.within_1s);
        missed += w.not_landed;
        reads += rd.recent.quorum_reads;
        stale += rd.recent.found_stale;
        let p99 = r.lag_ms.map(|l| l.p99);
        if let Some(p) = p99 {
            worst = Some(worst.map_or(p, |m: f64| m.max(p)));
        }
        t.row(vec![
            id.clone(),
            table::count(w.writes),
            share(w.within_10ms),
            share(w.within_100ms),
            share(w.within_1s),
            p99.map_or_else(|| "-".into(), table::millis),
            table::count(w.not_landed),
            share(rd.recent.repair_ratio),
        ]);
    }
    let of = |n: f64| (writes > 0).then(|| n / writes as f64);
    t.row(vec![
        "cluster".into(),
        table::count(writes),
        share(of(landed10)),
        share(of(landed100)),
        share(of(landed1s)),
        worst.map_or_else(|| "-".into(), table::millis),
        table::count(missed),
        share((reads > 0).then(|| stale as f64 / reads as f64)),
    ]);
    t.render()
}

/// A JSON value on one line, strings without quotes.
fn flat(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => "-".into(),
        Json::Object(map) if map.values().all(|v| !v.is_object() && !v.is_array()) => {
            map.iter().map(|(k, v)| format!("{k}={}", flat(v))).collect::<Vec<_>>().join("  ")
        }
        other => other.to_string(),
    }
}

/// One line per background worker: what an operator looks at first.
fn worker_rows(workers: &Json) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let n = |v: &Json| v.as_u64().unwrap_or(0);
    let handoff = &workers["hinted_handoff"];
    if handoff.is_object() {
        let pending: u64 = handoff["pending"].as_object().map(|m| m.values().map(n).sum()).unwrap_or(0);
        let targets = handoff["pending"].as_object().map(|m| m.len()).unwrap_or(0);
        let mut line =
            format!("{pending} pending for {targets} node(s) · {} delivered", n(&handoff["delivered"]));
        if let Some(e) = handoff["last_error"].as_str() {
            line.push_str(&format!(" · last error: {e}"));
        }
        rows.push(("hinted handoff".into(), line));
    }
    let ae = &workers["anti_entropy"];
    if ae.is_object() {
        let parts = ae["partitions"].as_object();
        let exchanged = parts.map(|m| m.len()).unwrap_or(0);
        let repaired: u64 = parts.map(|m| m.values().map(|p| n(&p["keys_repaired"])).sum()).unwrap_or(0);
        let bytes: u64 = parts.map(|m| m.values().map(|p| n(&p["bytes"])).sum()).unwrap_or(0);
        let mut line = format!(
            "trees {} · {exchanged} partitions exchanged · {repaired} keys repaired · {} · {} tombstones reaped",
            flat(&ae["trees"]),
            table::bytes(bytes),
            n(&ae["tombstones_reaped"])
        );
        if let Some(e) = ae["last_error"].as_str() {
            line.push_str(&format!(" · last error: {e}"));
        }
        rows.push(("anti-entropy".into(), line));
    }
    rows
}

/// How far behind the replicas of the writes the node coordinated are, in one line.
fn replication_line(r: &Replication) -> String {
    let w = &r.recent;
    let window = format!("last {} s", r.window_seconds);
    if w.writes == 0 {
        let total = &r.since_start;
        return match total.within_1s {
            Some(share) => format!(
                "{window}: no writes coordinated here (since start: {} writes, all copies within 1 s {}, {} not landed)",
                table::count(total.writes),
                table::percent(share),
                table::count(total.not_landed)
            ),
            None => format!("{window}: no writes coordinated here"),
        };
    }
    let share = |s: Option<f64>| s.map_or_else(|| "-".into(), table::percent);
    let mut line = format!(
        "{window}, {} writes: all copies within 10 ms {}, 100 ms {}, 1 s {}",
        table::count(w.writes),
        share(w.within_10ms),
        share(w.within_100ms),
        share(w.within_1s)
    );
    if let Some(lag) = &r.lag_ms {
        line.push_str(&format!(
            "; lag p50 {}, p99 {}, max {}",
            table::millis(lag.p50),
            table::millis(lag.p99),
            table::millis(lag.max)
        ));
    }
    line.push_str(&format!("; {} not landed", table::count(w.not_landed)));
    line
}

/// How often the node's quorum reads found a replica to repair, in one line.
fn reads_line(r: &Reads) -> String {
    let window = format!("last {} s", r.window_seconds);
    match r.recent.repair_ratio {
        Some(ratio) => format!(
            "{window}: {} found a stale or missing replica ({} of {})",
            table::percent(ratio),
            table::count(r.recent.found_stale),
            table::count(r.recent.quorum_reads)
        ),
        None => format!("{window}: no quorum reads coordinated here"),
    }
}

fn human_status(s: &NodeStatus, views: &[(String, Option<NodeStatus>)]) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    let node = match s.incarnation {
        Some(i) => format!("{} (incarnation {i})", s.node_id),
        None => s.node_id.clone(),
    };
    rows.push(("node".into(), node));
    rows.push(("version".into(), s.version.clone()));
    rows.push(("api".into(), s.api_addr.clone()));
    if let Some(peer) = &s.peer_addr {
        rows.push(("peer".into(), peer.clone()));
    }
    if let Some(up) = s.uptime_seconds {
        rows.push(("uptime".into(), table::duration(Duration::from_secs(up))));
    }
    if let Some(n) = s.replicas {
        rows.push(("replicas (N)".into(), n.to_string()));
    }
    if let Some(q) = s.partitions {
        rows.push(("partitions".into(), q.to_string()));
    }
    // Whatever else the node reports, in its own words.
    const SHOWN: [&str; 14] = [
        "replication",
        "reads",
        "workers",
        "warnings",
        "node_id",
        "incarnation",
        "version",
        "api_addr",
        "peer_addr",
        "uptime_seconds",
        "replicas",
        "partitions",
        "members",
        "storage",
    ];
    if let Some(storage) = s.raw.get("storage").and_then(Json::as_object) {
        let mut parts = Vec::new();
        for (k, v) in storage {
            let shown = match (k.as_str(), v.as_u64()) {
                ("disk_bytes", Some(b)) => format!("disk {}", table::bytes(b)),
                ("approximate_objects", Some(n)) => format!("~{n} objects"),
                (_, _) => format!("{} {}", k.replace('_', " "), flat(v)),
            };
            parts.push(shown);
        }
        rows.push(("storage".into(), parts.join(" · ")));
    }
    if let Some(r) = &s.replication {
        rows.push(("replication".into(), replication_line(r)));
    }
    if let Some(r) = &s.reads {
        rows.push(("reads".into(), reads_line(r)));
    }
    if let Some(map) = s.raw.as_object() {
        for (k, v) in map.iter().filter(|(k, _)| !SHOWN.contains(&k.as_str())) {
            rows.push((k.replace('_', " "), flat(v)));
        }
    }
    rows.extend(worker_rows(&s.raw["workers"]));
    for w in s.raw["warnings"].as_array().into_iter().flatten() {
        rows.push(("warning".into(), flat(w)));
    }
    let mut out = table::pairs(&rows);
    if !s.members.is_empty() {
        let mut t = Table::new(["member", "state", "api", "peer"]);
        for m in &s.members {
            t.row(vec![
                m.node_id.clone(),
                m.state.as_str().into(),
                m.api_addr.clone().unwrap_or_else(|| "-".into()),
                m.peer_addr.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
    }
    if views.len() > 1 {
        out.push('\n');
        out.push_str(&replication_table(views));
    }
    out
}

async fn ring(client: &Client, args: RingArgs, json: bool) -> Result<Vec<u8>, CliError> {
    let ring = client.ring().await.map_err(|e| CliError::from_error(e, "ring"))?;
    if json {
        return Ok(pretty(&serde_json::to_value(&ring).unwrap_or_default()));
    }
    Ok(human_ring(&ring, args.partitions).into_bytes())
}

fn human_ring(ring: &Ring, partitions: bool) -> String {
    let mut out = format!(
        "ring version {} · N={} · {} partitions · {} members\n\n",
        ring.version,
        ring.replicas,
        ring.partition_count,
        ring.members.len()
    );
    let mut t = Table::new(["member", "state", "api", "replica of", "first in", "fallback of"]);
    for m in &ring.members {
        let position = |p: &crate::ring::Partition| p.preference_list.iter().position(|id| *id == m.node_id);
        let replica =
            ring.partitions.iter().filter(|p| position(p).is_some_and(|i| i < ring.replicas)).count();
        let first = ring.partitions.iter().filter(|p| position(p) == Some(0)).count();
        let fallback =
            ring.partitions.iter().filter(|p| position(p).is_some_and(|i| i >= ring.replicas)).count();
        t.row(vec![
            m.node_id.clone(),
            m.state.as_str().into(),
            m.api_addr.clone().unwrap_or_else(|| "-".into()),
            replica.to_string(),
            first.to_string(),
            fallback.to_string(),
        ]);
    }
    out.push_str(&t.render());
    if partitions {
        let mut t = Table::new(["partition", "replicas", "fallbacks"]);
        for p in &ring.partitions {
            let split = p.preference_list.len().min(ring.replicas);
            let (replicas, fallbacks) = p.preference_list.split_at(split);
            t.row(vec![
                p.partition.to_string(),
                replicas.join(", "),
                if fallbacks.is_empty() { "-".into() } else { fallbacks.join(", ") },
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn hex_keys() {
        let k = KeyArgs { bucket: "b".into(), key: "00ff7A".into(), key_hex: true };
        assert_eq!(k.key_bytes().unwrap(), vec![0x00, 0xff, 0x7a]);
        let bad = KeyArgs { key: "0g".into(), ..k };
        assert!(bad.key_bytes().is_err());
    }

    #[test]
    fn siblings_are_shown_apart() {
        let obj = Object {
            siblings: vec![Value::from("v1"), Value::with_content_type("application/json", "{}")],
            context: Context::from_token("AQE").unwrap(),
        };
        let text = human_object("b/k", &obj);
        assert!(text.contains("2 concurrent versions"), "{text}");
        assert!(text.contains("--- sibling 1 of 2 · text/plain; charset=utf-8 · 2 B\nv1\n"), "{text}");
        assert!(text.contains("--- sibling 2 of 2 · application/json · 2 B\n{}\n"), "{text}");
    }

    #[test]
    fn ring_table_counts_roles() {
        let ring: Ring = serde_json::from_value(json!({
            "version": 2, "replicas": 2, "partition_count": 2,
            "members": [{"node_id": "a", "api_addr": "h:1", "state": "up"},
                        {"node_id": "b", "api_addr": "h:2", "state": "down"},
                        {"node_id": "c", "api_addr": "h:3"}],
            "partitions": [{"partition": 0, "preference_list": ["a", "b", "c"]},
                           {"partition": 1, "preference_list": ["b", "c", "a"]}]
        }))
        .unwrap();
        let text = human_ring(&ring, true);
        assert!(text.starts_with("ring version 2 · N=2 · 2 partitions · 3 members"), "{text}");
        assert!(text.contains("a       up     h:1  1           1         1"), "{text}");
        assert!(text.contains("b       down   h:2  2           1         0"), "{text}");
        assert!(text.contains("1          b, c      a"), "{text}");
    }

    /// A status as the node answers it, typed the way `Client::status` types it.
    fn status_from(raw: Json) -> NodeStatus {
        let mut s: NodeStatus = serde_json::from_value(raw.clone()).unwrap();
        s.raw = raw;
        s
    }

    #[test]
    fn status_says_how_far_behind_the_replicas_are() {
        let s = status_from(json!({
            "node_id": "a",
            "replication": {
                "window_seconds": 60, "writes": 12345, "not_landed": 3,
                "within_10ms": 0.9923, "within_100ms": 0.9991, "within_1s": 0.9998,
                "lag_ms": {"p50": 0.25, "p90": 1.0, "p99": 2.5, "max": 812.3},
                "since_start": {"writes": 20000, "within_10ms": 0.99, "within_100ms": 0.999,
                                "within_1s": 0.9999, "not_landed": 3}
            },
            "reads": {
                "window_seconds": 60, "quorum_reads": 4000, "found_stale": 12, "repair_ratio": 0.003,
                "since_start": {"quorum_reads": 9000, "found_stale": 12, "repair_ratio": 0.0013}
            }
        }));
        let text = human_status(&s, &[]);
        assert!(
            text.contains(
                "replication  last 60 s, 12,345 writes: all copies within 10 ms 99.2%, 100 ms 99.9%, \
                 1 s 99.9%; lag p50 0.25 ms, p99 2.5 ms, max 812 ms; 3 not landed\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("reads        last 60 s: 0.3% found a stale or missing replica (12 of 4,000)\n"),
            "{text}"
        );
        assert!(!text.contains("since start"), "the JSON is not dumped as well: {text}");
    }

    #[test]
    fn status_without_writes_or_reads_says_so() {
        let s = status_from(json!({
            "node_id": "a",
            "replication": {
                "window_seconds": 60, "writes": 0, "not_landed": 0, "lag_ms": null,
                "within_10ms": null, "within_100ms": null, "within_1s": null,
                "since_start": {"writes": 10, "within_10ms": 1.0, "within_100ms": 1.0,
                                "within_1s": 1.0, "not_landed": 0}
            },
            "reads": {"window_seconds": 60, "quorum_reads": 0, "found_stale": 0, "repair_ratio": null,
                      "since_start": {"quorum_reads": 0, "found_stale": 0, "repair_ratio": null}}
        }));
        let text = human_status(&s, &[]);
        assert!(
            text.contains(
                "last 60 s: no writes coordinated here (since start: 10 writes, all copies within 1 s 100%, 0 not landed)"
            ),
            "{text}"
        );
        assert!(text.contains("last 60 s: no quorum reads coordinated here"), "{text}");
        // A node that does not report them: no line.
        let old = human_status(&status_from(json!({"node_id": "a"})), &[]);
        assert!(!old.contains("replication"), "{old}");
    }

    #[test]
    fn status_sums_every_members_figures_into_the_clusters() {
        let node = |writes: u64, within: f64, p99: f64, reads: u64, stale: u64| {
            Some(status_from(json!({
                "node_id": "x",
                "replication": {"window_seconds": 60, "writes": writes, "not_landed": 1,
                    "within_10ms": within, "within_100ms": 1.0, "within_1s": 1.0,
                    "lag_ms": {"p50": 0.1, "p90": 0.5, "p99": p99, "max": p99}},
                "reads": {"window_seconds": 60, "quorum_reads": reads, "found_stale": stale,
                    "repair_ratio": stale as f64 / reads as f64}
            })))
        };
        let views = vec![
            ("node-2".to_string(), node(300, 0.5, 25.0, 100, 10)),
            ("node-1".to_string(), node(100, 1.0, 2.5, 300, 0)),
            ("node-3".to_string(), None),
        ];
        let text = replication_table(&views);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("node-1") && lines[2].starts_with("node-2"), "{text}");
        assert!(lines[3].starts_with("node-3") && lines[3].contains("no answer"), "{text}");
        // 100% of 100 and 50% of 300: 62.5% of 400; the worst p99; 10 of 400 reads stale.
        let cluster: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(cluster, ["cluster", "400", "62.5%", "100%", "100%", "25", "ms", "2", "2.5%"], "{text}");
    }
}
