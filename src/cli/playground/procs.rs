//! The playground's child processes: start them (each in its own process group so that a
//! terminal's Ctrl-C reaches only us and we decide the order of shutdown), notice when one
//! exits, and stop them: SIGTERM, a grace period, then SIGKILL. Nodes are stopped before PD.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a child gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// One started server.
pub struct Proc {
    /// `pd-1`, `kv-2`, …
    pub name: String,
    /// Stop order: higher tiers stop first (nodes before PD).
    tier: u8,
    pub pid: Option<u32>,
    pub log_file: PathBuf,
    pub console_file: PathBuf,
    /// Size of the console file when this run started (earlier runs' output comes before).
    console_start: u64,
    /// Size of the log file when this run started.
    log_start: u64,
    child: Child,
    exited: Option<ExitStatus>,
}

/// A child that exited while it should have been running.
#[derive(Debug, Clone)]
pub struct Exited {
    pub name: String,
    pub pid: Option<u32>,
    pub status: ExitStatus,
    pub log_file: PathBuf,
    pub console_file: PathBuf,
    /// Where this run's output starts in `console_file`.
    pub console_start: u64,
    /// Where this run's log starts in `log_file`.
    pub log_start: u64,
}

/// What to start.
pub struct Spec<'a> {
    pub name: &'a str,
    pub tier: u8,
    pub program: &'a Path,
    pub args: Vec<OsString>,
    pub log_file: &'a Path,
    pub console_file: &'a Path,
}

#[derive(Default)]
pub struct Procs {
    procs: Vec<Proc>,
}

fn open_console(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

impl Procs {
    pub fn new() -> Procs {
        Procs::default()
    }

    /// Starts `spec.program` with stdout/stderr appended to `spec.console_file`.
    pub fn spawn(&mut self, spec: Spec<'_>) -> Result<()> {
        let mut console = open_console(spec.console_file)?;
        let console_start = console
            .metadata()
            .with_context(|| format!("reading {}", spec.console_file.display()))?
            .len();
        let log_start = std::fs::metadata(spec.log_file).map(|m| m.len()).unwrap_or(0);
        let shown: Vec<String> = spec
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        writeln!(
            console,
            "=== atoll playground: {} {}",
            spec.program.display(),
            shown.join(" ")
        )
        .with_context(|| format!("writing {}", spec.console_file.display()))?;
        let stderr = console.try_clone().context("duplicating console file handle")?;
        let child = Command::new(spec.program)
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(console))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
        let pid = child.id();
        tracing::debug!(name = spec.name, ?pid, "started");
        self.procs.push(Proc {
            name: spec.name.to_string(),
            tier: spec.tier,
            pid,
            log_file: spec.log_file.to_path_buf(),
            console_file: spec.console_file.to_path_buf(),
            console_start,
            log_start,
            child,
            exited: None,
        });
        Ok(())
    }

    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &Proc> {
        self.procs.iter()
    }

    /// The first child found to have exited since the last call, if any.
    pub fn check_exited(&mut self) -> Result<Option<Exited>> {
        for p in &mut self.procs {
            if p.exited.is_some() {
                continue;
            }
            if let Some(status) = p
                .child
                .try_wait()
                .with_context(|| format!("checking whether {} is running", p.name))?
            {
                p.exited = Some(status);
                return Ok(Some(Exited {
                    name: p.name.clone(),
                    pid: p.pid,
                    status,
                    log_file: p.log_file.clone(),
                    console_file: p.console_file.clone(),
                    console_start: p.console_start,
                    log_start: p.log_start,
                }));
            }
        }
        Ok(None)
    }

    /// Stops every child still running: tier by tier from the highest, SIGTERM to each, up to
    /// [`STOP_GRACE`] for them to exit, then SIGKILL.
    pub async fn stop_all(&mut self) {
        let mut tiers: Vec<u8> = self.procs.iter().map(|p| p.tier).collect();
        tiers.sort_unstable();
        tiers.dedup();
        for tier in tiers.into_iter().rev() {
            for p in self.procs.iter_mut().filter(|p| p.tier == tier) {
                if p.exited.is_none() {
                    if let Ok(Some(status)) = p.child.try_wait() {
                        p.exited = Some(status);
                    } else if let Some(pid) = p.pid {
                        eprintln!("stopping {} (pid {pid})", p.name);
                        send_sigterm(pid).await;
                    }
                }
            }
            let deadline = Instant::now() + STOP_GRACE;
            for p in self
                .procs
                .iter_mut()
                .filter(|p| p.tier == tier && p.exited.is_none())
            {
                match tokio::time::timeout_at(deadline, p.child.wait()).await {
                    Ok(Ok(status)) => p.exited = Some(status),
                    Ok(Err(e)) => eprintln!("waiting for {}: {e}", p.name),
                    Err(_) => {
                        eprintln!("{} did not stop within {STOP_GRACE:?}; killing it", p.name);
                        if let Err(e) = p.child.start_kill() {
                            eprintln!("killing {}: {e}", p.name);
                        }
                        match p.child.wait().await {
                            Ok(status) => p.exited = Some(status),
                            Err(e) => eprintln!("waiting for {}: {e}", p.name),
                        }
                    }
                }
            }
        }
    }
}

/// SIGTERM through the `kill` utility: the workspace denies `unsafe`, so no `libc::kill`.
async fn send_sigterm(pid: u32) {
    let result = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    match result {
        Ok(s) if s.success() => {}
        // The process may have exited between our check and the signal.
        Ok(s) => tracing::debug!(pid, %s, "kill -TERM failed"),
        Err(e) => eprintln!("running `kill -TERM {pid}`: {e}"),
    }
}

/// The last `max_lines` lines of a text file after byte `from` (at most the last 64 KiB).
pub fn tail(path: &Path, from: u64, max_lines: usize) -> std::io::Result<Vec<String>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(64 * 1024).max(from.min(len));
    f.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(last_lines(&String::from_utf8_lossy(&bytes), max_lines))
}

/// The last `max_lines` non-empty-trailing lines of `text`.
pub fn last_lines(text: &str, max_lines: usize) -> Vec<String> {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let from = lines.len().saturating_sub(max_lines);
    lines[from..].iter().map(|l| l.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_of_text() {
        assert_eq!(last_lines("a\nb\nc\n\n", 2), ["b", "c"]);
        assert_eq!(last_lines("a\nb", 5), ["a", "b"]);
        assert!(last_lines("", 3).is_empty());
    }

    #[tokio::test]
    async fn children_are_stopped_and_exits_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let console = dir.path().join("sleep.console");
        let log = dir.path().join("sleep.log");
        let mut procs = Procs::new();
        for (name, tier, secs) in [("long", 0, "60"), ("short", 1, "0")] {
            procs
                .spawn(Spec {
                    name,
                    tier,
                    program: Path::new("sleep"),
                    args: vec![secs.into()],
                    log_file: &log,
                    console_file: &console,
                })
                .unwrap();
        }
        // Poll (with a deadline) until the short one is noticed.
        let deadline = Instant::now() + Duration::from_secs(10);
        let exited = loop {
            if let Some(e) = procs.check_exited().unwrap() {
                break e;
            }
            assert!(Instant::now() < deadline, "short child not noticed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(exited.name, "short");
        assert!(exited.status.success());
        // SIGTERM ends `sleep 60` well within the grace period.
        let started = Instant::now();
        procs.stop_all().await;
        assert!(started.elapsed() < STOP_GRACE);
        assert!(procs.iter().all(|p| p.exited.is_some()));
        let text = std::fs::read_to_string(&console).unwrap();
        assert!(text.contains("=== atoll playground: sleep 60"), "{text}");
        // The tail of a run starts at that run's output.
        assert_eq!(
            tail(&console, exited.console_start, 10).unwrap(),
            ["=== atoll playground: sleep 0"]
        );
        assert_eq!(tail(&console, 0, 10).unwrap().len(), 2);
    }
}
