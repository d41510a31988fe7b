//! One `quorumkv-node` process and the faults a test can inflict on it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::http::Http;

/// Where the node binary is: `$QUORUMKV_NODE_BIN`, else next to the test executable's
/// target directory (`cargo build --workspace --bins` puts it there).
pub fn node_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("QUORUMKV_NODE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("quorumkv-node");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build --workspace --bins` (the README's test command does)",
        bin.display()
    );
    bin
}

/// A free loopback port (bound and released; the node binds it right after), chosen
/// below Linux's ephemeral range (32768 and up): a port the kernel hands out for port 0
/// is also what it hands the many outgoing connections of the tests running alongside,
/// and one of those could take it before the node binds it. Ports are drawn at random,
/// and never the same twice in one test process.
pub fn free_port() -> u16 {
    use std::hash::BuildHasher;
    use std::sync::Mutex;
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let seed = std::collections::hash_map::RandomState::new();
    for attempt in 0u64.. {
        let port = 20_000 + (seed.hash_one((std::process::id(), attempt)) % 12_000) as u16;
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.push(port);
            return port;
        }
        assert!(attempt < 10_000, "no free port in 20000..32000");
    }
    unreachable!("the loop returns or panics")
}

/// A node process: its addresses, its data directory and its log file.
#[derive(Debug)]
pub struct NodeProcess {
    pub name: String,
    pub api: SocketAddr,
    pub peer: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl NodeProcess {
    /// Prepares (does not start) a node named `name` under `dir`, with extra flags `args`.
    pub fn new(name: &str, dir: &Path, args: Vec<String>) -> NodeProcess {
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let peer = SocketAddr::from(([127, 0, 0, 1], free_port()));
        NodeProcess {
            name: name.to_string(),
            api,
            peer,
            data_dir: dir.join(name).join("data"),
            log: dir.join(name).join("node.log"),
            args,
            child: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.api, path)
    }

    /// The URL of an object on this node, with an optional query string.
    pub fn kv(&self, bucket: &str, key: &str, query: &str) -> String {
        let q = if query.is_empty() { String::new() } else { format!("?{query}") };
        format!("http://{}/v1/kv/{bucket}/{key}{q}", self.api)
    }

    pub fn set_args(&mut self, args: Vec<String>) {
        self.args = args;
    }

    /// Starts the process (does not wait for it to serve).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        std::fs::create_dir_all(self.log.parent().expect("log dir")).expect("create node dir");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open log");
        let child = Command::new(node_binary())
            .arg("--node-id")
            .arg(&self.name)
            .arg("--listen")
            .arg(self.api.to_string())
            .arg("--peer-listen")
            .arg(self.peer.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("QUORUMKV_CLUSTER_SECRET", crate::TEST_SECRET)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn quorumkv-node");
        self.child = Some(child);
    }

    /// Starts the process and waits until `/v1/health` answers.
    pub async fn start(&mut self) {
        self.spawn();
        self.wait_healthy().await;
    }

    pub async fn wait_healthy(&mut self) {
        let http = Http::new();
        let url = self.url("/v1/health");
        let mut child = self.child.as_mut();
        let mut exited = None;
        let healthy = crate::poll_until(Duration::from_secs(20), || {
            if let Some(c) = child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                exited = Some(status);
            }
            let (http, url, done) = (http.clone(), url.clone(), exited.is_some());
            async move {
                if done {
                    return Some(false);
                }
                let r = http.send(hyper::Method::GET, &url, &[], bytes::Bytes::new()).await.ok()?;
                (r.status == 200).then_some(true)
            }
        })
        .await;
        if let Some(status) = exited {
            panic!("{} exited during start-up ({status}); log:\n{}", self.name, self.log_tail());
        }
        assert_eq!(
            healthy,
            Some(true),
            "{} did not become healthy in 20 s; log:\n{}",
            self.name,
            self.log_tail()
        );
    }

    /// Panics with the log if the process has exited (it was not killed by the test).
    pub fn assert_alive(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("{} exited ({status}); log:\n{}", self.name, self.log_tail());
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("node not running")
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on a pid we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// `kill -9`: no shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("running");
        child.wait().expect("wait")
    }

    /// SIGSTOP: the process stays, answers nothing. Returns once every thread of it has
    /// stopped: the stop reaches each thread only when the kernel next schedules it, and
    /// on a loaded machine one could otherwise still answer a request sent after this.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
        let tasks = format!("/proc/{}/task", self.pid());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !all_threads_stopped(&tasks) {
            assert!(std::time::Instant::now() < deadline, "{} did not stop within 10 s", self.name);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kill -9 and start again on the same data directory and ports.
    pub async fn restart(&mut self) {
        self.kill9();
        self.start().await;
    }

    /// The last lines of the node's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            // A paused process must be resumed before it can die cleanly.
            // SAFETY: as in `signal`.
            unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
        }
        self.kill9();
    }
}

/// Whether every thread listed under `/proc/PID/task` is stopped (state `T` or `t`).
fn all_threads_stopped(tasks: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(tasks) else { return false };
    entries.flatten().all(|task| {
        // The state follows the parenthesised command name, which may contain spaces.
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['T', 't'])))
            .unwrap_or(true)
    })
}
