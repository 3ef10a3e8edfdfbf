//! Harness for Atoll's end-to-end tests: starts the real `atoll-pd` and `atoll-kv` binaries on
//! loopback, each cluster in its own temporary directory, and waits (predicate polls with a
//! deadline, never bare sleeps) until PD reports every node and a leader for every region.
//!
//! Every child process is killed and reaped when the [`Cluster`] is dropped, also when a test
//! panics; a panicking test additionally gets the tail of every log file on stderr.
//!
//! Set `ATOLL_E2E_KEEP=1` to keep the cluster directories (logs, data) after the test.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::collections::HashSet;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

mod http;
mod regions;

pub use http::*;
use serde_json::Value as Json;
use tikv_client::{Config, RawClient, TransactionClient};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a cluster (or a restarted process) gets to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often predicates are polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Per-request timeout of the `tikv-client` clients built here.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Regions a fresh cluster has: PD pre-splits at the API V2 keyspace-0 boundaries
/// (`r\0\0\0`, `r\0\0\x01`, `x\0\0\0`, `x\0\0\x01`).
pub const PRESPLIT_REGIONS: usize = 5;

/// Node config for TiKV's tiny split thresholds (its client tests run this way to get dozens of
/// regions from a few hundred keys), with fast heartbeats and checks.
pub const TINY_SPLIT_CONFIG: &str = "[raftstore]
pd-heartbeat-tick-interval = \"1s\"
pd-store-heartbeat-tick-interval = \"1s\"
split-region-check-tick-interval = \"200ms\"
region-split-check-diff = \"1B\"
[coprocessor]
region-split-keys = 7
region-max-keys = 10
batch-split-limit = 10
";
/// Lines of each log file shown when something goes wrong.
const TAIL_LINES: usize = 60;

// ---------------------------------------------------------------------------------------------
// Binaries and ports
// ---------------------------------------------------------------------------------------------

/// The path of one of the package's binaries. Cargo tells integration tests where it built them
/// (`CARGO_BIN_EXE_<name>`); while a binary target does not exist yet that variable is missing,
/// so fall back to the target directory the test executable itself lives in.
fn binary(compiled: Option<&'static str>, name: &str) -> PathBuf {
    let path = match compiled {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().expect("path of the test executable");
            // target/<profile>/deps/<test> -> target/<profile>/<name>
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("test executable lives in target/<profile>/deps");
            profile_dir.join(name)
        }
    };
    assert!(
        path.exists(),
        "binary {name} not found at {} (build it with `cargo build --bins`)",
        path.display()
    );
    path
}

pub fn pd_binary() -> PathBuf {
    binary(option_env!("CARGO_BIN_EXE_atoll-pd"), "atoll-pd")
}

pub fn kv_binary() -> PathBuf {
    binary(option_env!("CARGO_BIN_EXE_atoll-kv"), "atoll-kv")
}

/// Ports handed out by this process, so that two clusters of one test binary never get the
/// same port even when the kernel offers a recently released one again.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// `n` distinct free loopback ports, all picked while every one of them is held, then released.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed = handed.get_or_insert_with(HashSet::new);
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        if handed.insert(port) {
            ports.push(port);
        }
        held.push(listener);
    }
    drop(held);
    ports
}

// ---------------------------------------------------------------------------------------------
// Predicate waits
// ---------------------------------------------------------------------------------------------

/// Polls `check` every [`POLL_INTERVAL`] until it returns true; panics naming `what` once
/// `timeout` has passed.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `attempt` until it returns `Ok`, and returns that value; panics with the last error
/// once `timeout` has passed.
pub async fn wait_ok<T, E, F, Fut>(timeout: Duration, what: &str, mut attempt: F) -> T
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let err = match attempt().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}; last error: {err:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Decodes PD's hex rendering of a key (`"7200000000000000FB"`); empty string = empty key.
pub fn unhex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd-length hex key {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex key {s:?}")))
        .collect()
}

/// The memcomparable encoding of `key` (ascending): 8-byte groups, each padded with zeros and
/// followed by a marker `0xFF - padding`.
pub fn memcomparable(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((key.len() / 8 + 1) * 9);
    // A key whose length is a multiple of 8 (also the empty key) ends with an all-padding group.
    let last_group_full = matches!(key.len() % 8, 0);
    for chunk in key.chunks(8).chain(last_group_full.then_some(&[][..])) {
        let pad = 8 - chunk.len();
        out.extend_from_slice(chunk);
        out.extend(std::iter::repeat_n(0u8, pad));
        out.push(0xFF - pad as u8);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Log tails
// ---------------------------------------------------------------------------------------------

/// The last `max_lines` lines of a file (only its last 64 KiB are read).
pub fn tail(path: &Path, max_lines: usize) -> io::Result<String> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    Ok(lines[lines.len().saturating_sub(max_lines)..].join("\n"))
}

// ---------------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------------

struct KvNode {
    port: u16,
    status_port: u16,
    child: Option<Child>,
    /// `--labels` (empty: none).
    labels: String,
    /// Removed from the cluster on purpose: not expected up, nor running.
    removed: bool,
}

/// One PD and `N` storage nodes, real processes on loopback.
pub struct Cluster {
    /// `None` only after it was deliberately kept (see `ATOLL_E2E_KEEP`).
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    pd_port: u16,
    pd_peer_port: u16,
    pd: Option<Child>,
    kvs: Vec<KvNode>,
    /// Extra TOML for PD's and every node's config file.
    pd_config: String,
    kv_config: String,
    /// Set once a panic message already carried the log tails.
    tails_shown: std::cell::Cell<bool>,
}

/// Config TOML for [`Cluster::start_with`].
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    pub pd: String,
    pub kv: String,
    /// `--labels` of node `i` (missing: none).
    pub kv_labels: Vec<String>,
}

impl Cluster {
    /// Starts PD, waits for its health endpoint, starts `kv_count` nodes and waits until PD
    /// lists all of them and every one of its (at least five) regions has a leader.
    pub async fn start(kv_count: usize) -> Cluster {
        Cluster::start_with(kv_count, ClusterConfig::default()).await
    }

    /// [`Cluster::start`] with extra config for PD and the nodes.
    pub async fn start_with(kv_count: usize, config: ClusterConfig) -> Cluster {
        assert!(kv_count >= 1);
        let dir = tempfile::Builder::new()
            .prefix("atoll-e2e-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().to_path_buf();
        let ports = free_ports(2 + 2 * kv_count);
        let kvs = (0..kv_count)
            .map(|i| KvNode {
                port: ports[2 + 2 * i],
                status_port: ports[3 + 2 * i],
                child: None,
                labels: config.kv_labels.get(i).cloned().unwrap_or_default(),
                removed: false,
            })
            .collect();
        let mut cluster = Cluster {
            dir: Some(dir),
            root,
            pd_port: ports[0],
            pd_peer_port: ports[1],
            pd: None,
            kvs,
            pd_config: config.pd,
            kv_config: config.kv,
            tails_shown: std::cell::Cell::new(false),
        };
        cluster.spawn_pd();
        cluster.wait_pd_healthy().await;
        for i in 0..kv_count {
            cluster.spawn_kv(i);
        }
        cluster.wait_ready().await;
        cluster
    }

    /// The directory holding data and logs.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// `127.0.0.1:P`, PD's client address (gRPC and HTTP).
    pub fn pd_endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.pd_port)
    }

    pub fn pd_url(&self) -> String {
        format!("http://{}", self.pd_endpoint())
    }

    pub fn kv_count(&self) -> usize {
        self.kvs.len()
    }

    /// `127.0.0.1:K`, node `i`'s gRPC address.
    pub fn kv_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.kvs[i].port)
    }

    /// `http://127.0.0.1:S`, node `i`'s status server.
    pub fn kv_status_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.kvs[i].status_port)
    }

    fn kv_status_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.kvs[i].status_port)
    }

    /// Addresses of the nodes that should be up (not removed on purpose).
    fn kv_addrs(&self) -> Vec<String> {
        (0..self.kvs.len())
            .filter(|i| !self.kvs[*i].removed)
            .map(|i| self.kv_addr(i))
            .collect()
    }

    fn spawn(&self, program: &Path, name: &str, args: Vec<String>) -> Child {
        let console = self.root.join(format!("{name}.console"));
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&console)
            .expect("console file");
        let err = out.try_clone().expect("dup console file");
        Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()))
    }

    fn spawn_pd(&mut self) {
        assert!(self.pd.is_none(), "PD is already running");
        let client = format!("http://127.0.0.1:{}", self.pd_port);
        let peer = format!("http://127.0.0.1:{}", self.pd_peer_port);
        let config = self.root.join("pd.toml");
        std::fs::write(&config, &self.pd_config).expect("pd config");
        let args = vec![
            "--config".into(),
            config.display().to_string(),
            "--name".into(),
            "pd-1".into(),
            "--client-urls".into(),
            client.clone(),
            "--advertise-client-urls".into(),
            client,
            "--peer-urls".into(),
            peer,
            "--data-dir".into(),
            self.root.join("pd").display().to_string(),
            "--log-file".into(),
            self.root.join("pd.log").display().to_string(),
        ];
        self.pd = Some(self.spawn(&pd_binary(), "pd", args));
    }

    fn spawn_kv(&mut self, i: usize) {
        assert!(self.kvs[i].child.is_none(), "kv-{i} is already running");
        let addr = self.kv_addr(i);
        // Test-friendly intervals; everything else is the default.
        let config = self.root.join(format!("kv-{i}.toml"));
        let toml = format!("[gc]\npoll-interval = \"500ms\"\n{}", self.kv_config);
        std::fs::write(&config, toml).expect("kv config");
        let mut args = vec![
            "--config".into(),
            config.display().to_string(),
            "--addr".into(),
            addr.clone(),
            "--advertise-addr".into(),
            addr,
            "--status-addr".into(),
            self.kv_status_addr(i),
            "--pd-endpoints".into(),
            self.pd_endpoint(),
            "--data-dir".into(),
            self.root.join(format!("kv-{i}")).display().to_string(),
            "--log-file".into(),
            self.root.join(format!("kv-{i}.log")).display().to_string(),
        ];
        if !self.kvs[i].labels.is_empty() {
            args.push("--labels".into());
            args.push(self.kvs[i].labels.clone());
        }
        let child = self.spawn(&kv_binary(), &format!("kv-{i}"), args);
        self.kvs[i].child = Some(child);
    }

    /// Panics (with log tails) if a process that should be running has exited.
    fn check_alive(&mut self) {
        let mut dead = Vec::new();
        if let Some(pd) = self.pd.as_mut() {
            if let Ok(Some(status)) = pd.try_wait() {
                dead.push(format!("pd exited: {status}"));
            }
        }
        for (i, kv) in self.kvs.iter_mut().enumerate() {
            if kv.removed {
                continue;
            }
            if let Some(child) = kv.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    dead.push(format!("kv-{i} exited: {status}"));
                }
            }
        }
        if !dead.is_empty() {
            panic!("{}\n{}", dead.join("; "), self.log_tails());
        }
    }

    /// Whether node `i`'s process is running.
    pub fn kv_running(&mut self, i: usize) -> bool {
        match self.kvs[i].child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Whether PD's process is running.
    pub fn pd_running(&mut self) -> bool {
        match self.pd.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    async fn poll_ready<F, Fut>(&mut self, what: &str, mut check: F)
    where
        F: FnMut(String, Vec<String>) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_alive();
            let last = match check(self.pd_endpoint(), self.kv_addrs()).await {
                Ok(()) => return,
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                panic!(
                    "cluster not ready ({what}) within {READY_TIMEOUT:?}: {last}\n{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn wait_pd_healthy(&mut self) {
        self.poll_ready("PD health", |pd, _| async move { pd_healthy(&pd).await })
            .await;
    }

    /// Waits until PD is healthy, lists every node as a store and every region has a leader.
    pub async fn wait_ready(&mut self) {
        self.poll_ready("PD health, stores, region leaders", |pd, kvs| async move {
            pd_healthy(&pd).await?;
            stores_up(&pd, &kvs).await?;
            regions_led(&pd).await.map(|_| ())
        })
        .await;
    }

    /// Starts one more node (index `kv_count()` before the call) and waits until PD lists it.
    pub async fn add_kv(&mut self) -> usize {
        self.add_kv_with_labels("").await
    }

    /// [`Cluster::add_kv`] with `--labels`.
    pub async fn add_kv_with_labels(&mut self, labels: &str) -> usize {
        let ports = free_ports(2);
        self.kvs.push(KvNode {
            port: ports[0],
            status_port: ports[1],
            child: None,
            labels: labels.to_owned(),
            removed: false,
        });
        let i = self.kvs.len() - 1;
        self.spawn_kv(i);
        self.wait_ready().await;
        i
    }

    /// Marks node `i` as being removed from the cluster: it is no longer expected up, and its
    /// process may exit (see [`Cluster::wait_kv_exit`]).
    pub fn expect_removed(&mut self, i: usize) {
        self.kvs[i].removed = true;
    }

    /// Waits until node `i`'s process exits by itself; returns its exit status.
    pub async fn wait_kv_exit(&mut self, i: usize, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.kvs[i]
                .child
                .as_mut()
                .unwrap_or_else(|| panic!("kv-{i} is not running"));
            if let Ok(Some(status)) = child.try_wait() {
                self.kvs[i].child = None;
                return status;
            }
            if Instant::now() >= deadline {
                panic!("kv-{i} did not exit within {timeout:?}\n{}", self.log_tails());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// SIGKILLs node `i` and reaps it.
    pub fn kill_kv(&mut self, i: usize) {
        let mut child = self.kvs[i]
            .child
            .take()
            .unwrap_or_else(|| panic!("kv-{i} is not running"));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts node `i` again with the same arguments and data directory; waits until it accepts
    /// gRPC connections and PD shows the cluster ready again.
    pub async fn restart_kv(&mut self, i: usize) {
        self.spawn_kv(i);
        let addr = self.kv_addr(i);
        self.poll_ready("restarted node accepts connections", |_, _| {
            let addr = addr.clone();
            async move {
                TcpStream::connect(&addr)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{addr}: {e}"))
            }
        })
        .await;
        self.wait_ready().await;
    }

    /// SIGKILLs PD and reaps it.
    pub fn stop_pd(&mut self) {
        let mut child = self.pd.take().expect("PD is not running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts PD again with the same arguments and data directory and waits for readiness.
    pub async fn restart_pd(&mut self) {
        self.spawn_pd();
        self.wait_ready().await;
    }

    /// `GET` on PD's HTTP API, answer parsed as JSON.
    pub async fn pd_get(&self, path: &str) -> Result<Json, String> {
        http_get_json(&self.pd_endpoint(), path).await
    }

    /// PD's `/pd/api/v1/regions` list.
    pub async fn pd_regions(&self) -> Vec<Json> {
        let v = self.pd_get("/pd/api/v1/regions").await.expect("PD regions");
        v.get("regions")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// `GET` on node `i`'s status server: status code and body.
    pub async fn kv_status_get(&self, i: usize, path: &str) -> io::Result<(u16, Vec<u8>)> {
        http_get(&self.kv_status_addr(i), path).await
    }

    /// A raw client in API V1 (no keyspace).
    pub async fn raw_v1(&self) -> RawClient {
        self.raw_client(Config::default().with_timeout(CLIENT_TIMEOUT))
            .await
    }

    /// A raw client in API V2, keyspace `DEFAULT` (id 0).
    pub async fn raw_v2(&self) -> RawClient {
        self.raw_client(
            Config::default()
                .with_timeout(CLIENT_TIMEOUT)
                .with_default_keyspace(),
        )
        .await
    }

    /// A transactional client in API V1 (no keyspace): keys spread over every region.
    pub async fn txn_v1(&self) -> TransactionClient {
        self.txn_client(Config::default().with_timeout(CLIENT_TIMEOUT))
            .await
    }

    /// A transactional client in API V2, keyspace `DEFAULT` (id 0).
    pub async fn txn_v2(&self) -> TransactionClient {
        self.txn_client(
            Config::default()
                .with_timeout(CLIENT_TIMEOUT)
                .with_default_keyspace(),
        )
        .await
    }

    async fn txn_client(&self, config: Config) -> TransactionClient {
        let pd = self.pd_endpoint();
        wait_ok(READY_TIMEOUT, "a TransactionClient connects", || {
            TransactionClient::new_with_config(vec![pd.clone()], config.clone())
        })
        .await
    }

    /// The value of metric `name` (first sample whose labels contain `labels`) on node `i`.
    pub async fn kv_metric(&self, i: usize, name: &str, labels: &str) -> Option<f64> {
        let (_, body) = self.kv_status_get(i, "/metrics").await.ok()?;
        let text = String::from_utf8_lossy(&body);
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .find(|l| l.contains(labels))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    async fn raw_client(&self, config: Config) -> RawClient {
        let pd = self.pd_endpoint();
        wait_ok(READY_TIMEOUT, "a RawClient connects", || {
            RawClient::new_with_config(vec![pd.clone()], config.clone())
        })
        .await
    }

    /// The tail of every log and console file of the cluster.
    pub fn log_tails(&self) -> String {
        self.tails_shown.set(true);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let mut out = format!("cluster directory: {}\n", self.root.display());
        for f in files {
            let text = tail(&f, TAIL_LINES).unwrap_or_else(|e| format!("<unreadable: {e}>"));
            out.push_str(&format!("----- tail of {} -----\n{text}\n", f.display()));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut children: Vec<Child> = self.kvs.iter_mut().filter_map(|k| k.child.take()).collect();
        children.extend(self.pd.take());
        for child in &mut children {
            let _ = child.kill();
        }
        for child in &mut children {
            let _ = child.wait();
        }
        if std::thread::panicking() && !self.tails_shown.get() {
            eprintln!("{}", self.log_tails());
        }
        if std::env::var_os("ATOLL_E2E_KEEP").is_some_and(|v| v != "0") {
            if let Some(dir) = self.dir.take() {
                eprintln!("keeping cluster directory {}", dir.keep().display());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Readiness predicates over PD's HTTP API
// ---------------------------------------------------------------------------------------------

async fn pd_healthy(pd: &str) -> Result<(), String> {
    let (status, body) = http_get(pd, "/pd/api/v1/health")
        .await
        .map_err(|e| format!("PD health: {e}"))?;
    if status == 200 {
        Ok(())
    } else {
        Err(format!(
            "PD health: status {status}: {}",
            String::from_utf8_lossy(&body)
        ))
    }
}

/// Every address in `kvs` is a store PD lists (and, where PD says, in state `Up`).
async fn stores_up(pd: &str, kvs: &[String]) -> Result<(), String> {
    let v = http_get_json(pd, "/pd/api/v1/stores").await?;
    let stores = v
        .get("stores")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let up: Vec<String> = stores
        .iter()
        .map(|s| s.get("store").unwrap_or(s))
        .filter(|s| {
            s.get("state_name")
                .and_then(Json::as_str)
                .is_none_or(|st| st == "Up")
        })
        .filter_map(|s| s.get("address").and_then(Json::as_str).map(str::to_owned))
        .collect();
    let missing: Vec<&String> = kvs.iter().filter(|a| !up.contains(a)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("stores not up in PD: {missing:?}; PD lists {stores:?}"))
    }
}

/// PD lists at least [`PRESPLIT_REGIONS`] regions, each with a leader of non-zero id.
/// Returns the number of regions.
async fn regions_led(pd: &str) -> Result<usize, String> {
    let v = http_get_json(pd, "/pd/api/v1/regions").await?;
    let regions = v
        .get("regions")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    if regions.len() < PRESPLIT_REGIONS {
        return Err(format!(
            "PD lists {} regions, want >= {PRESPLIT_REGIONS}",
            regions.len()
        ));
    }
    let leaderless: Vec<&Json> = regions
        .iter()
        .filter(|r| {
            r.get("leader")
                .and_then(|l| l.get("id"))
                .and_then(Json::as_u64)
                .unwrap_or(0)
                == 0
        })
        .collect();
    if leaderless.is_empty() {
        Ok(regions.len())
    } else {
        Err(format!(
            "{} of {} regions without leader, e.g. {}",
            leaderless.len(),
            regions.len(),
            leaderless[0]
        ))
    }
}

#[test]
fn harness_http_parsing_and_codec() {
    let raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    assert_eq!(parse_http_response(raw).unwrap(), (200, b"{}".to_vec()));
    let raw = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
    assert_eq!(parse_http_response(raw).unwrap(), (503, b"abcde".to_vec()));
    let raw = b"HTTP/1.1 200 OK\r\n\r\nto eof";
    assert_eq!(parse_http_response(raw).unwrap(), (200, b"to eof".to_vec()));
    assert!(parse_http_response(b"garbage").is_err());

    assert_eq!(memcomparable(b"r\0\0\0"), b"r\0\0\0\0\0\0\0\xfb".to_vec());
    assert_eq!(memcomparable(b""), b"\0\0\0\0\0\0\0\0\xf7".to_vec());
    assert_eq!(
        memcomparable(b"12345678"),
        b"12345678\xff\0\0\0\0\0\0\0\0\xf7".to_vec()
    );
    assert_eq!(unhex("7200000000000000FB"), b"r\0\0\0\0\0\0\0\xfb".to_vec());
    assert_eq!(unhex(""), Vec::<u8>::new());

    let ports = free_ports(6);
    let distinct: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), 6);
}
