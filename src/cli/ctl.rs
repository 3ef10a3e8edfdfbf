//! `atoll ctl`: read the cluster's state through PD's HTTP JSON API and print it pretty.
//! A non-2xx answer prints the body on stderr and exits with status 1.
//!
//! `atoll ctl gc status` shows the GC safe point and the service safe points with their wall
//! times; `atoll ctl gc advance [--retention 10m | --safe-point TS]` moves the GC safe point
//! forward through Atoll PD's `POST /pd/api/v1/gc/safepoint` (without a flag, PD's configured
//! `gc.retention` is used).
//!
//! `atoll ctl operator list|show REGION|remove REGION|add add-peer|remove-peer|transfer-leader
//! REGION STORE` lists, shows, cancels and creates operators through PD's
//! `/pd/api/v1/operators` with pd-ctl's request bodies, printing PD's operator texts one a line.
//!
//! Schedulers, store removal, labels, weights and limits, hot regions, region splits and
//! configuration changes are in [`elastic`].

mod elastic;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::cli::http::{self, Endpoint};

#[derive(Debug, Clone, PartialEq, Args)]
pub struct CtlArgs {
    /// PD endpoint, `HOST:PORT` or `http://HOST:PORT`.
    #[arg(long, global = true, env = "ATOLL_PD", default_value = "127.0.0.1:2379")]
    pub pd: String,
    /// Seconds to wait for PD's answer.
    #[arg(long, global = true, default_value_t = 10)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum CtlCommand {
    /// All stores with their state and statistics.
    Stores,
    /// One store.
    Store {
        /// Store id.
        id: u64,
    },
    /// All regions with their peers and leaders.
    Regions,
    /// One region.
    Region {
        /// Region id.
        id: u64,
    },
    /// PD members and the current leader.
    Members,
    /// Health of each PD member.
    Health,
    /// PD's configuration (replication, schedule, …).
    Config,
    /// Cluster id and bootstrap state.
    Cluster,
    /// The GC safe point: show it, or move it forward.
    Gc {
        #[command(subcommand)]
        command: GcCommand,
    },
    /// Scheduling operators: list, show, create, cancel.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    #[command(flatten)]
    Elastic(elastic::ElasticCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum OperatorCommand {
    /// Every running operator.
    List,
    /// A region's operator: running, or how it ended if that was recent.
    Show {
        /// Region id.
        region: u64,
    },
    /// Create an operator (refused if the region already has one).
    Add {
        #[command(subcommand)]
        op: AddOperator,
    },
    /// Cancel a region's running operator.
    Remove {
        /// Region id.
        region: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum AddOperator {
    /// Add a voter of REGION on STORE (as a learner first, then promoted).
    AddPeer { region: u64, store: u64 },
    /// Remove REGION's peer on STORE (leadership is handed over first if it leads).
    RemovePeer { region: u64, store: u64 },
    /// Move REGION's leadership to its voter on STORE.
    TransferLeader { region: u64, store: u64 },
}

/// The method, path and JSON body of an `operator` command (pd-ctl's bodies).
pub fn operator_request(cmd: OperatorCommand) -> (&'static str, String, Option<String>) {
    const OPS: &str = "/pd/api/v1/operators";
    match cmd {
        OperatorCommand::List => ("GET", OPS.to_string(), None),
        OperatorCommand::Show { region } => ("GET", format!("{OPS}/{region}"), None),
        OperatorCommand::Remove { region } => ("DELETE", format!("{OPS}/{region}"), None),
        OperatorCommand::Add { op } => {
            let body = match op {
                AddOperator::AddPeer { region, store } => {
                    serde_json::json!({"name": "add-peer", "region_id": region, "store_id": store})
                }
                AddOperator::RemovePeer { region, store } => {
                    serde_json::json!({"name": "remove-peer", "region_id": region, "store_id": store})
                }
                AddOperator::TransferLeader { region, store } => {
                    serde_json::json!({"name": "transfer-leader", "region_id": region, "to_store_id": store})
                }
            };
            ("POST", OPS.to_string(), Some(body.to_string()))
        }
    }
}

/// An operator answer: PD's texts one a line (a JSON string or a list of them).
pub fn format_operator_answer(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Array(items)) if items.is_empty() => "no operators".to_string(),
        Ok(serde_json::Value::Array(items)) if items.iter().all(|i| i.is_string()) => items
            .iter()
            .filter_map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => pretty(body),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum GcCommand {
    /// The GC safe point (as a timestamp and as wall time) and the service safe points.
    Status,
    /// Move the GC safe point forward: never back, never past a service safe point.
    Advance(GcAdvanceArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct GcAdvanceArgs {
    /// Keep this much history: advance to now minus this (e.g. 10m, 1h30m, 90s). Without
    /// --retention or --safe-point, PD's configured gc.retention is used.
    #[arg(long, value_parser = parse_duration, conflicts_with = "safe_point")]
    pub retention: Option<Duration>,
    /// Advance to exactly this timestamp (TSO); refused if behind the current GC safe point or
    /// ahead of PD's current timestamp.
    #[arg(long)]
    pub safe_point: Option<u64>,
}

/// Parses `10m`, `1h30m`, `90s`, `500ms`, `2d`: whole numbers with units ms, s, m, h, d.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (use e.g. 10m, 1h30m, 90s)");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let part = u32::try_from(n)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

/// The JSON body of `gc advance`.
pub fn gc_advance_body(args: &GcAdvanceArgs) -> String {
    match (args.retention, args.safe_point) {
        (_, Some(ts)) => serde_json::json!({ "safe_point": ts }).to_string(),
        (Some(r), None) => serde_json::json!({ "retention": format!("{}ms", r.as_millis()) }).to_string(),
        (None, None) => "{}".to_string(),
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn date_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Unix milliseconds as `2024-05-01T12:00:00.000Z`.
pub fn utc_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = date_from_days(secs.div_euclid(86_400));
    let in_day = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60,
        ms.rem_euclid(1000)
    )
}

/// A span of milliseconds like `1h2m3s`, `4m0s`, `12s`, `250ms`.
pub fn span(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// A TSO timestamp with its wall time and age, e.g. `4500… (2024-05-01T12:00:00.000Z, 10m0s ago)`.
pub fn describe_ts(ts: u64, now_ms: i64) -> String {
    if ts == 0 {
        return "0 (none)".to_string();
    }
    let physical = i64::try_from(ts >> 18).unwrap_or(i64::MAX);
    let when = utc_millis(physical);
    match now_ms.checked_sub(physical) {
        Some(age) if age >= 0 => format!("{ts} ({when}, {} ago)", span(age as u64)),
        _ => format!("{ts} ({when}, in the future)"),
    }
}

fn json_u64(v: &serde_json::Value, field: &str) -> Result<u64> {
    v.get(field).map_or(Ok(0), |f| {
        f.as_u64()
            .with_context(|| format!("{field} is not a number: {f}"))
    })
}

/// `gc status` output from the body of `GET /pd/api/v1/gc/safepoint`.
pub fn format_gc_status(body: &[u8], now_ms: i64) -> Result<String> {
    let v: serde_json::Value = serde_json::from_slice(body).context("gc safe point answer")?;
    let mut out = String::new();
    writeln!(
        out,
        "GC safe point:              {}",
        describe_ts(json_u64(&v, "gc_safe_point")?, now_ms)
    )?;
    let min = json_u64(&v, "min_service_gc_safe_point")?;
    writeln!(out, "Minimum service safe point: {}", describe_ts(min, now_ms))?;
    let services = v
        .get("service_gc_safe_points")
        .and_then(|s| s.as_array())
        .cloned()
        .unwrap_or_default();
    if services.is_empty() {
        write!(out, "Service safe points:        none")?;
        return Ok(out);
    }
    writeln!(out, "Service safe points:")?;
    let width = services
        .iter()
        .filter_map(|s| s.get("service_id").and_then(|id| id.as_str()))
        .map(str::len)
        .max()
        .unwrap_or(0);
    let now_secs = now_ms.div_euclid(1000);
    for s in &services {
        let id = s.get("service_id").and_then(|id| id.as_str()).unwrap_or("?");
        let expired_at = s.get("expired_at").and_then(|e| e.as_i64()).unwrap_or(0);
        let expiry = if expired_at == i64::MAX {
            "never expires".to_string()
        } else if expired_at <= now_secs {
            format!("expired at {}", utc_millis(expired_at.saturating_mul(1000)))
        } else {
            let left = (expired_at - now_secs) as u64;
            format!(
                "expires {} (in {})",
                utc_millis(expired_at.saturating_mul(1000)),
                span(left.saturating_mul(1000))
            )
        };
        writeln!(
            out,
            "  {id:<width$}  {}  {expiry}",
            describe_ts(json_u64(s, "safe_point")?, now_ms)
        )?;
    }
    Ok(out.trim_end().to_string())
}

/// `gc advance` output from the body of `POST /pd/api/v1/gc/safepoint`.
pub fn format_gc_advance(body: &[u8], now_ms: i64) -> Result<String> {
    let v: serde_json::Value = serde_json::from_slice(body).context("gc advance answer")?;
    let previous = json_u64(&v, "previous_gc_safe_point")?;
    let current = json_u64(&v, "gc_safe_point")?;
    let mut out = String::new();
    if v.get("advanced")
        .and_then(|a| a.as_bool())
        .unwrap_or(current > previous)
    {
        writeln!(
            out,
            "GC safe point advanced from {}",
            describe_ts(previous, now_ms)
        )?;
        writeln!(
            out,
            "                         to {}",
            describe_ts(current, now_ms)
        )?;
    } else {
        writeln!(out, "GC safe point unchanged at {}", describe_ts(current, now_ms))?;
    }
    let requested = json_u64(&v, "requested_safe_point")?;
    writeln!(
        out,
        "requested:                  {}",
        describe_ts(requested, now_ms)
    )?;
    if let Some(b) = v.get("blocked_by").filter(|b| b.is_object()) {
        let id = b.get("service_id").and_then(|id| id.as_str()).unwrap_or("?");
        writeln!(
            out,
            "held back by service {id:?} at {}",
            describe_ts(json_u64(b, "safe_point")?, now_ms)
        )?;
    }
    Ok(out.trim_end().to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The PD API path answering `cmd`.
pub fn api_path(cmd: CtlCommand) -> String {
    match cmd {
        CtlCommand::Stores => "/pd/api/v1/stores".to_string(),
        CtlCommand::Store { id } => format!("/pd/api/v1/store/{id}"),
        CtlCommand::Regions => "/pd/api/v1/regions".to_string(),
        CtlCommand::Region { id } => format!("/pd/api/v1/region/id/{id}"),
        CtlCommand::Members => "/pd/api/v1/members".to_string(),
        CtlCommand::Health => "/pd/api/v1/health".to_string(),
        CtlCommand::Config => "/pd/api/v1/config".to_string(),
        CtlCommand::Cluster => "/pd/api/v1/cluster".to_string(),
        CtlCommand::Gc { .. } => "/pd/api/v1/gc/safepoint".to_string(),
        CtlCommand::Operator { command } => operator_request(command).1,
        CtlCommand::Elastic(cmd) => elastic::request(&cmd).map(|r| r.path).unwrap_or_default(),
    }
}

/// The body pretty-printed if it is JSON, else as text.
pub fn pretty(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string()),
        Err(_) => String::from_utf8_lossy(body).trim_end().to_string(),
    }
}

pub async fn run(args: CtlArgs) -> Result<ExitCode> {
    let endpoint = Endpoint::parse(&args.pd).context("--pd")?;
    let path = api_path(args.command.clone());
    let timeout = Duration::from_secs(args.timeout);
    let (method, response) = match args.command.clone() {
        CtlCommand::Elastic(cmd) => {
            let req = elastic::request(&cmd).map_err(anyhow::Error::msg)?;
            let response = match (req.method, req.body) {
                ("POST", body) => {
                    let body = body.unwrap_or_default();
                    http::post_json(&endpoint, &path, body.as_bytes(), timeout).await
                }
                ("DELETE", _) => http::delete(&endpoint, &path, timeout).await,
                _ => http::get(&endpoint, &path, timeout).await,
            };
            (req.method, response)
        }
        CtlCommand::Gc {
            command: GcCommand::Advance(a),
        } => {
            let body = gc_advance_body(&a);
            (
                "POST",
                http::post_json(&endpoint, &path, body.as_bytes(), timeout).await,
            )
        }
        CtlCommand::Operator { command } => match operator_request(command) {
            ("POST", _, body) => {
                let body = body.unwrap_or_default();
                (
                    "POST",
                    http::post_json(&endpoint, &path, body.as_bytes(), timeout).await,
                )
            }
            ("DELETE", _, _) => ("DELETE", http::delete(&endpoint, &path, timeout).await),
            _ => ("GET", http::get(&endpoint, &path, timeout).await),
        },
        _ => ("GET", http::get(&endpoint, &path, timeout).await),
    };
    let response = response.with_context(|| format!("{method} http://{endpoint}{path}"))?;
    if response.is_success() {
        let out = match args.command {
            CtlCommand::Gc {
                command: GcCommand::Status,
            } => format_gc_status(&response.body, now_ms())?,
            CtlCommand::Gc {
                command: GcCommand::Advance(_),
            } => format_gc_advance(&response.body, now_ms())?,
            CtlCommand::Operator { .. } | CtlCommand::Elastic(_) => format_operator_answer(&response.body),
            _ => pretty(&response.body),
        };
        println!("{out}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{method} http://{endpoint}{path}: {} {}",
            response.status, response.reason
        );
        if let Some(location) = response.header("location") {
            eprintln!("(redirected to {location}; point --pd there)");
        }
        let body = pretty(&response.body);
        if !body.is_empty() {
            eprintln!("{body}");
        }
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(api_path(CtlCommand::Stores), "/pd/api/v1/stores");
        assert_eq!(api_path(CtlCommand::Store { id: 4 }), "/pd/api/v1/store/4");
        assert_eq!(api_path(CtlCommand::Regions), "/pd/api/v1/regions");
        assert_eq!(api_path(CtlCommand::Region { id: 2 }), "/pd/api/v1/region/id/2");
        assert_eq!(api_path(CtlCommand::Members), "/pd/api/v1/members");
        assert_eq!(api_path(CtlCommand::Health), "/pd/api/v1/health");
        assert_eq!(api_path(CtlCommand::Config), "/pd/api/v1/config");
        assert_eq!(api_path(CtlCommand::Cluster), "/pd/api/v1/cluster");
        assert_eq!(
            api_path(CtlCommand::Gc {
                command: GcCommand::Status
            }),
            "/pd/api/v1/gc/safepoint"
        );
    }

    #[derive(Debug, clap::Parser)]
    struct TestCli {
        #[command(flatten)]
        ctl: CtlArgs,
    }

    fn parse(args: &[&str]) -> Result<CtlArgs, clap::Error> {
        use clap::Parser;
        TestCli::try_parse_from(std::iter::once("ctl").chain(args.iter().copied())).map(|c| c.ctl)
    }

    fn advance(args: &[&str]) -> GcAdvanceArgs {
        match parse(args).unwrap().command {
            CtlCommand::Gc {
                command: GcCommand::Advance(a),
            } => a,
            other => panic!("not gc advance: {other:?}"),
        }
    }

    #[test]
    fn gc_subcommands() {
        assert_eq!(
            parse(&["gc", "status", "--pd", "h:1"]).unwrap(),
            CtlArgs {
                pd: "h:1".into(),
                timeout: 10,
                command: CtlCommand::Gc {
                    command: GcCommand::Status
                },
            }
        );
        let a = advance(&["gc", "advance", "--retention", "1h30m"]);
        assert_eq!(
            (a.retention, a.safe_point),
            (Some(Duration::from_secs(5400)), None)
        );
        assert_eq!(gc_advance_body(&a), r#"{"retention":"5400000ms"}"#);
        let a = advance(&["gc", "advance", "--safe-point", "449000000000000000"]);
        assert_eq!((a.retention, a.safe_point), (None, Some(449_000_000_000_000_000)));
        assert_eq!(gc_advance_body(&a), r#"{"safe_point":449000000000000000}"#);
        let a = advance(&["gc", "advance"]);
        assert_eq!((a.retention, a.safe_point), (None, None));
        assert_eq!(gc_advance_body(&a), "{}");
        for bad in [
            &["gc"][..],
            &["gc", "advance", "--retention", "10m", "--safe-point", "1"],
            &["gc", "advance", "--retention", "ten"],
            &["gc", "advance", "--safe-point", "-1"],
            &["gc", "collect"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    fn operator(args: &[&str]) -> OperatorCommand {
        let mut all = vec!["operator"];
        all.extend_from_slice(args);
        match parse(&all).unwrap().command {
            CtlCommand::Operator { command } => command,
            other => panic!("not operator: {other:?}"),
        }
    }

    #[test]
    fn operator_subcommands() {
        assert_eq!(
            operator_request(operator(&["list"])),
            ("GET", "/pd/api/v1/operators".to_string(), None)
        );
        assert_eq!(
            operator_request(operator(&["show", "2"])),
            ("GET", "/pd/api/v1/operators/2".to_string(), None)
        );
        assert_eq!(
            operator_request(operator(&["remove", "2"])),
            ("DELETE", "/pd/api/v1/operators/2".to_string(), None)
        );
        let body = |args: &[&str]| {
            let (method, path, body) = operator_request(operator(args));
            assert_eq!((method, path.as_str()), ("POST", "/pd/api/v1/operators"));
            serde_json::from_str::<serde_json::Value>(&body.unwrap()).unwrap()
        };
        assert_eq!(
            body(&["add", "add-peer", "2", "4"]),
            serde_json::json!({"name": "add-peer", "region_id": 2, "store_id": 4})
        );
        assert_eq!(
            body(&["add", "remove-peer", "2", "1"]),
            serde_json::json!({"name": "remove-peer", "region_id": 2, "store_id": 1})
        );
        assert_eq!(
            body(&["add", "transfer-leader", "6", "4"]),
            serde_json::json!({"name": "transfer-leader", "region_id": 6, "to_store_id": 4})
        );
        assert_eq!(
            api_path(CtlCommand::Operator {
                command: operator(&["show", "9"])
            }),
            "/pd/api/v1/operators/9"
        );
        for bad in [
            &["operator"][..],
            &["operator", "show"],
            &["operator", "add", "add-peer", "2"],
            &["operator", "add", "merge-region", "2", "3"],
            &["operator", "remove", "x"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            format_operator_answer(br#""The operator is created.""#),
            "The operator is created."
        );
        assert_eq!(format_operator_answer(b"[]"), "no operators");
        assert_eq!(format_operator_answer(br#"["a {x}", "b {y}"]"#), "a {x}\nb {y}");
        assert_eq!(format_operator_answer(br#"{"k":1}"#), "{\n  \"k\": 1\n}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "10", "m", "10x", "1.5h", "-1m", "99999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn times() {
        assert_eq!(utc_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_millis(1_700_000_000_120), "2023-11-14T22:13:20.120Z");
        assert_eq!(utc_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            (span(250), span(12_000), span(240_000), span(3_723_000)),
            (
                "250ms".to_string(),
                "12s".to_string(),
                "4m0s".to_string(),
                "1h2m3s".to_string()
            )
        );
        let ts = (1_700_000_000_000u64 << 18) | 5;
        assert_eq!(
            describe_ts(ts, 1_700_000_600_000),
            format!("{ts} (2023-11-14T22:13:20.000Z, 10m0s ago)")
        );
        assert!(describe_ts(ts, 1_600_000_000_000).ends_with("in the future)"));
        assert_eq!(describe_ts(0, 1), "0 (none)");
    }

    #[test]
    fn gc_status_and_advance_output() {
        let now = 1_700_000_600_000i64;
        let sp = 1_700_000_000_000u64 << 18;
        let br = 1_700_000_300_000u64 << 18;
        let body = format!(
            r#"{{"service_gc_safe_points":[
                {{"service_id":"br","expired_at":1700000660,"safe_point":{br}}},
                {{"service_id":"gc_worker","expired_at":{},"safe_point":{sp}}}],
              "min_service_gc_safe_point":{sp},"gc_safe_point":{sp}}}"#,
            i64::MAX
        );
        let out = format_gc_status(body.as_bytes(), now).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            format!("GC safe point:              {sp} (2023-11-14T22:13:20.000Z, 10m0s ago)")
        );
        assert!(lines[1].starts_with(&format!("Minimum service safe point: {sp} ")));
        assert_eq!(lines[2], "Service safe points:");
        assert_eq!(
            lines[3],
            format!("  br         {br} (2023-11-14T22:18:20.000Z, 5m0s ago)  expires 2023-11-14T22:24:20.000Z (in 1m0s)")
        );
        assert!(lines[4].starts_with(&format!("  gc_worker  {sp} ")) && lines[4].ends_with("never expires"));
        let empty = format_gc_status(br#"{"service_gc_safe_points":[],"gc_safe_point":0}"#, now).unwrap();
        assert!(empty.starts_with("GC safe point:              0 (none)"));
        assert!(empty.ends_with("Service safe points:        none"));
        assert!(format_gc_status(b"not json", now).is_err());

        let body = format!(
            r#"{{"advanced":true,"requested_safe_point":{br},"previous_gc_safe_point":{sp},"gc_safe_point":{br}}}"#
        );
        let out = format_gc_advance(body.as_bytes(), now).unwrap();
        assert!(
            out.starts_with(&format!("GC safe point advanced from {sp} ")),
            "{out}"
        );
        assert!(out.contains(&format!("to {br} ")), "{out}");
        let body = format!(
            r#"{{"advanced":false,"requested_safe_point":{br},"previous_gc_safe_point":{sp},"gc_safe_point":{sp},
               "blocked_by":{{"service_id":"cdc","expired_at":1,"safe_point":{sp}}}}}"#
        );
        let out = format_gc_advance(body.as_bytes(), now).unwrap();
        assert!(
            out.starts_with(&format!("GC safe point unchanged at {sp} ")),
            "{out}"
        );
        assert!(
            out.ends_with(&format!(
                "held back by service \"cdc\" at {sp} (2023-11-14T22:13:20.000Z, 10m0s ago)"
            )),
            "{out}"
        );
    }

    #[test]
    fn pretty_json_and_text() {
        assert_eq!(pretty(br#"{"count":1}"#), "{\n  \"count\": 1\n}");
        assert_eq!(pretty(b"region not found\n"), "region not found");
        assert_eq!(pretty(b""), "");
    }
}
