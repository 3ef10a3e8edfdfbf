//! The dashboard in a real browser: a 3-node cluster gets writes to one key range through
//! `tikv-client` (raw API V2, keyspace 0); once PD's heatmap API reports non-empty cells,
//! headless Chromium (Debian's `chromium`, installed by `scripts/setup.sh`) loads
//! `http://<pd>/dashboard`, and the DOM it dumps must show every store `Up`, the regions, a
//! heatmap with non-empty cells, at least one finished refresh and no visible error box (the
//! page writes what it drew into `data-*` attributes: docs/dashboard.md). Then a second run
//! takes a screenshot, saved under `$CARGO_TARGET_TMPDIR/dashboard_e2e/` (the path is printed).
//! With `ATOLL_DASHBOARD_SCREENSHOT=<path>` (relative to the repository root) the screenshot is
//! also copied there — how the README's `docs/img/dashboard.png` is made.
//!
//! Chromium runs in its own process group, with its own temporary profile directory, stdout and
//! stderr in files; it gets [`CHROMIUM_TIMEOUT`] per run, after which the whole group is
//! SIGKILLed and the test fails. The group is also killed (and the browser reaped) when the test
//! panics while it runs. A missing `chromium` is a failure, never a skip.

mod common;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use common::{wait_until, Cluster, ClusterConfig, POLL_INTERVAL};
use serde_json::Value as Json;
use std::os::unix::process::CommandExt;
use tokio::time::Instant;

/// Short heartbeat intervals: region load reaches PD's heatmap within a second or two.
const KV_CONFIG: &str = "[raftstore]
pd-heartbeat-tick-interval = \"1s\"
pd-store-heartbeat-tick-interval = \"1s\"
";

const NODES: usize = 3;
/// Longest a single Chromium run may take before it is killed and the test fails.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);
/// How long written data get to show up in PD's heatmap.
const HEAT_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Chromium
// ---------------------------------------------------------------------------------------------

/// `chromium` on `PATH`; panics (telling how to install it) when there is none.
fn find_chromium() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`chromium` is not on PATH: the dashboard browser test needs Debian's chromium \
             package; run scripts/setup.sh (it installs it), then run the test again"
        )
    })
}

/// A running Chromium, leader of its own process group. Dropping it before it was reaped
/// SIGKILLs the whole group (browser, zygote, renderers) and reaps the browser.
struct Browser {
    child: Option<Child>,
}

impl Browser {
    /// Kills the process group while its leader is not reaped yet (so the group id is still
    /// ours), then reaps the leader.
    fn kill_and_reap(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            let group = format!("-{}", child.id());
            let killed = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !killed {
                // No `kill` program: at least the browser process itself.
                let _ = child.kill();
            }
        }
        let _ = child.wait();
    }

    /// Waits (polling) until the browser exits by itself; `None` once `timeout` has passed, after
    /// killing the group.
    async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("browser not reaped yet");
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) => {}
                Err(e) => panic!("waiting for chromium: {e}"),
            }
            if Instant::now() >= deadline {
                self.kill_and_reap();
                return None;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// Runs headless Chromium with `args` (after the common flags) in a fresh profile directory;
/// returns its stdout. Panics with its stderr when it fails or times out.
async fn run_chromium(chromium: &Path, what: &str, args: &[String]) -> String {
    let work = tempfile::Builder::new()
        .prefix("atoll-chromium-")
        .tempdir()
        .expect("temp dir for chromium");
    let profile = work.path().join("profile");
    let out_path = work.path().join("stdout");
    let err_path = work.path().join("stderr");
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    // Its own HOME too: nothing of the user's profile or crash reports is touched.
    .env("HOME", work.path())
    .stdin(Stdio::null())
    .stdout(File::create(&out_path).expect("chromium stdout file"))
    .stderr(File::create(&err_path).expect("chromium stderr file"))
    .process_group(0);
    let started = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", chromium.display()));
    let mut browser = Browser { child: Some(child) };
    let status = browser.wait(CHROMIUM_TIMEOUT).await;
    let stderr = || {
        let text = std::fs::read_to_string(&err_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    match status {
        None => panic!(
            "chromium ({what}) did not finish within {CHROMIUM_TIMEOUT:?}; killed it. stderr:\n{}",
            stderr()
        ),
        Some(s) if !s.success() => panic!("chromium ({what}) failed: {s}; stderr:\n{}", stderr()),
        Some(_) => {}
    }
    println!("chromium ({what}) took {:?}", started.elapsed());
    std::fs::read_to_string(&out_path).expect("chromium stdout")
}

// ---------------------------------------------------------------------------------------------
// A small scanner of serialized HTML: start tags and their attributes
// ---------------------------------------------------------------------------------------------

/// A start tag of the dumped DOM.
#[derive(Debug, Clone)]
struct Tag {
    name: String,
    attrs: Vec<(String, String)>,
    /// The text right after the tag, up to the next tag (entities left as they are).
    text: String,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_class(&self, class: &str) -> bool {
        self.attr("class")
            .is_some_and(|c| c.split_ascii_whitespace().any(|c| c == class))
    }

    fn num(&self, name: &str) -> Option<u64> {
        self.attr(name).and_then(|v| v.parse().ok())
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Every start tag of `html`, in document order. Quoted attribute values may hold `<` and `>`
/// (the page keeps rendered HTML in `data-html` attributes); comments, doctype, end tags and the
/// contents of `script` and `style` are skipped.
fn start_tags(html: &str) -> Vec<Tag> {
    let b = html.as_bytes();
    let find = |from: usize, pat: &str| html[from..].find(pat).map(|i| from + i);
    let mut tags = Vec::new();
    let mut i = 0;
    while let Some(lt) = find(i, "<") {
        i = lt + 1;
        if html[lt..].starts_with("<!--") {
            i = find(lt + 4, "-->").map_or(b.len(), |e| e + 3);
            continue;
        }
        if matches!(b.get(i), Some(b'!' | b'?' | b'/')) {
            i = find(i, ">").map_or(b.len(), |e| e + 1);
            continue;
        }
        if !b.get(i).is_some_and(u8::is_ascii_alphabetic) {
            continue; // a stray `<` in text
        }
        let name_end = html[i..]
            .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
            .map_or(b.len(), |e| i + e);
        let name = html[i..name_end].to_ascii_lowercase();
        i = name_end;
        let mut attrs = Vec::new();
        loop {
            while b.get(i).is_some_and(|c| c.is_ascii_whitespace() || *c == b'/') {
                i += 1;
            }
            match b.get(i) {
                None => break,
                Some(b'>') => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            let an_end = html[i..]
                .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '>' || c == '/')
                .map_or(b.len(), |e| i + e);
            let an = html[i..an_end].to_ascii_lowercase();
            i = an_end;
            let mut value = String::new();
            if b.get(i) == Some(&b'=') {
                i += 1;
                match b.get(i) {
                    Some(&q @ (b'"' | b'\'')) => {
                        let end = find(i + 1, if q == b'"' { "\"" } else { "'" }).unwrap_or(b.len());
                        value = unescape(&html[i + 1..end]);
                        i = (end + 1).min(b.len());
                    }
                    _ => {
                        let end = html[i..]
                            .find(|c: char| c.is_ascii_whitespace() || c == '>')
                            .map_or(b.len(), |e| i + e);
                        value = unescape(&html[i..end]);
                        i = end;
                    }
                }
            }
            attrs.push((an, value));
        }
        if matches!(name.as_str(), "script" | "style") {
            i = find(i, &format!("</{name}")).unwrap_or(b.len());
        }
        let text_end = find(i, "<").unwrap_or(b.len());
        let text = html[i..text_end].trim().to_owned();
        tags.push(Tag { name, attrs, text });
    }
    tags
}

#[test]
fn scanner_reads_tags_and_quoted_attributes() {
    let html = r#"<!DOCTYPE html><html><head><script src="/x.js">if (a < b) { x = "<tr data-id=9>"; }</script></head>
<body data-refreshes="2"><!-- <tr data-id="8"> -->
<table data-html="<tr data-id=&quot;7&quot;><td>x</td></tr>"><tbody><tr data-id="1" class="selected"><td>a &lt; b</td></tr>
<tr data-id='2'><td>b</td></tr></tbody></table>
<div class="error big" hidden="">oops</div><canvas id=heatmap data-cells=3></canvas><br/></body></html>"#;
    let tags = start_tags(html);
    let ids: Vec<&str> = tags.iter().filter_map(|t| t.attr("data-id")).collect();
    assert_eq!(ids, ["1", "2"]);
    let body = tags.iter().find(|t| t.name == "body").unwrap();
    assert_eq!(body.num("data-refreshes"), Some(2));
    let table = tags.iter().find(|t| t.name == "table").unwrap();
    assert_eq!(
        table.attr("data-html"),
        Some(r#"<tr data-id="7"><td>x</td></tr>"#)
    );
    let err = tags.iter().find(|t| t.has_class("error")).unwrap();
    assert!(err.has_class("big") && err.attr("hidden").is_some());
    assert_eq!(err.text, "oops");
    let canvas = tags.iter().find(|t| t.attr("id") == Some("heatmap")).unwrap();
    assert_eq!(canvas.num("data-cells"), Some(3));
    assert!(tags.iter().any(|t| t.name == "br"));
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

/// Non-empty cells of PD's heatmap (default metric and window) and the sum of its values, from
/// its JSON API.
async fn heatmap_stats(cluster: &Cluster) -> (usize, u64) {
    let Ok(h) = cluster.pd_get("/dashboard/api/heatmap").await else {
        return (0, 0);
    };
    let values: Vec<u64> = h["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_array)
        .flatten()
        .map(|v| v.as_u64().unwrap_or(0))
        .collect();
    let cells = values.iter().filter(|v| **v > 0).count();
    (cells, values.iter().sum())
}

/// How long [`readme_traffic`] writes.
const README_TRAFFIC: Duration = Duration::from_secs(150);

/// Writes for `length`: raw keys under `dash/` in bursts that grow and shrink, and transactions
/// under `orders/` at a steady rate (both in keyspace 0), then waits until PD's heatmap has
/// the last of it.
async fn readme_traffic(cluster: &Cluster, raw: &tikv_client::RawClient, length: Duration) {
    println!("writing for {length:?} (ATOLL_DASHBOARD_SCREENSHOT is set)");
    let txn = cluster.txn_v2().await;
    let end = Instant::now() + length;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut n: usize = 0;
    while Instant::now() < end {
        tick.tick().await;
        n += 1;
        let burst = 10 + 30 * (n % 20) / 19;
        let pairs: Vec<(String, Vec<u8>)> = (0..burst)
            .map(|i| (format!("dash/{:04}", (n * 7 + i) % 1000), vec![b'v'; 2048]))
            .collect();
        raw.batch_put(pairs).await.expect("raw batch_put");
        let mut t = txn.begin_optimistic().await.expect("begin");
        for i in 0..4 {
            t.put(format!("orders/{:05}", n * 4 + i), vec![b'o'; 256])
                .await
                .expect("txn put");
        }
        t.commit().await.expect("commit");
    }
    // One more write after a look at the heatmap: its report comes in after that look.
    let (_, before) = heatmap_stats(cluster).await;
    raw.put("dash/last".to_owned(), vec![b'v'; 2048])
        .await
        .expect("raw put");
    wait_until(HEAT_TIMEOUT, "PD's heatmap has the last writes", || async {
        heatmap_stats(cluster).await.1 > before
    })
    .await;
}

/// Where the screenshot goes: under the target directory's scratch space, never the repository.
fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard_e2e");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_in_headless_chromium_shows_stores_regions_and_heatmap() {
    let chromium = find_chromium();
    let started = Instant::now();
    let cluster = Cluster::start_with(
        NODES,
        ClusterConfig {
            kv: KV_CONFIG.into(),
            ..Default::default()
        },
    )
    .await;
    println!("cluster up after {:?}", started.elapsed());

    // Writes to one key range of keyspace 0 (raw API V2).
    let raw = cluster.raw_v2().await;
    for batch in 0..8 {
        let pairs: Vec<(String, Vec<u8>)> = (0..50)
            .map(|i| (format!("dash/{:04}", batch * 50 + i), vec![b'v'; 1024]))
            .collect();
        raw.batch_put(pairs).await.expect("raw batch_put");
    }
    wait_until(HEAT_TIMEOUT, "PD's heatmap reports non-empty cells", || async {
        heatmap_stats(&cluster).await.0 > 0
    })
    .await;
    println!("heatmap has data after {:?}", started.elapsed());

    let url = format!("{}/dashboard", cluster.pd_url());
    let dom = run_chromium(&chromium, "dump-dom", &["--dump-dom".into(), url.clone()]).await;
    let tags = start_tags(&dom);
    let context = || {
        let mut n = dom.len().min(4000);
        while !dom.is_char_boundary(n) {
            n -= 1;
        }
        format!("first {n} bytes of the DOM:\n{}", &dom[..n])
    };

    // Stores: one row per node, each Up.
    let stores: Vec<&Tag> = tags
        .iter()
        .filter(|t| t.name == "tr" && t.attr("data-store").is_some())
        .collect();
    let ids: HashSet<&str> = stores.iter().filter_map(|t| t.attr("data-store")).collect();
    assert_eq!(
        (stores.len(), ids.len()),
        (NODES, NODES),
        "want one store row per node; got {stores:?}\n{}",
        context()
    );
    for s in &stores {
        assert_eq!(s.attr("data-state"), Some("Up"), "store row {s:?}");
    }

    // Regions: at least the pre-split ones.
    let regions = tags
        .iter()
        .filter(|t| t.name == "tr" && t.attr("data-id").is_some())
        .count();
    assert!(
        regions >= common::PRESPLIT_REGIONS,
        "want >= {} region rows, got {regions}\n{}",
        common::PRESPLIT_REGIONS,
        context()
    );

    // The heatmap drew non-empty cells.
    let canvas = tags
        .iter()
        .find(|t| t.name == "canvas" && t.attr("id") == Some("heatmap"))
        .unwrap_or_else(|| panic!("no canvas#heatmap\n{}", context()));
    let cells = canvas.num("data-cells").unwrap_or(0);
    assert!(cells > 0, "heatmap drew no non-empty cell: {canvas:?}");
    assert!(canvas.num("data-rows").unwrap_or(0) > 0, "{canvas:?}");
    assert!(canvas.num("data-columns").unwrap_or(0) > 0, "{canvas:?}");

    // At least one refresh finished, and no panel shows an error.
    let body = tags
        .iter()
        .find(|t| t.name == "body")
        .unwrap_or_else(|| panic!("no body\n{}", context()));
    let refreshes = body.num("data-refreshes").unwrap_or(0);
    assert!(refreshes >= 1, "no finished refresh: {body:?}");
    let errors: Vec<&Tag> = tags
        .iter()
        .filter(|t| t.has_class("error") && t.attr("hidden").is_none())
        .collect();
    assert!(errors.is_empty(), "visible error boxes: {errors:?}");
    println!(
        "DOM: {} stores Up, {regions} region rows, heatmap {} x {} with {cells} non-empty cells, \
         {refreshes} refreshes",
        stores.len(),
        canvas.attr("data-columns").unwrap_or("?"),
        canvas.attr("data-rows").unwrap_or("?"),
    );

    // For the README's picture, a few minutes of traffic first, so that the heatmap has several
    // columns and two hot ranges (CI does not set the variable and skips this).
    let readme_copy = std::env::var_os("ATOLL_DASHBOARD_SCREENSHOT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    if readme_copy.is_some() {
        readme_traffic(&cluster, &raw, README_TRAFFIC).await;
    }

    // A screenshot of the page, heatmap zoomed to the last 10 minutes (the README's picture
    // without the empty space below the panels).
    let window_size = match readme_copy {
        Some(_) => "--window-size=1400,1760",
        None => "--window-size=1400,2400",
    };
    let shot_url = format!("{url}?window=10m");
    let shot = screenshot_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &chromium,
        "screenshot",
        &[
            window_size.into(),
            format!("--screenshot={}", shot.display()),
            shot_url,
        ],
    )
    .await;
    let png = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("chromium wrote no screenshot at {}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        shot.display()
    );
    println!("screenshot: {} ({} bytes)", shot.display(), png.len());
    if let Some(copy) = readme_copy {
        if let Some(parent) = copy.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).expect("directory of ATOLL_DASHBOARD_SCREENSHOT");
        }
        std::fs::write(&copy, &png).expect("writing ATOLL_DASHBOARD_SCREENSHOT");
        println!("screenshot also written to {}", copy.display());
    }
    println!("test took {:?}", started.elapsed());
}
