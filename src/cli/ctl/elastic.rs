//! `atoll ctl` commands that change scheduling and store states through PD's HTTP API:
//!
//! * `scheduler show | add NAME | remove NAME` — `GET`/`POST /pd/api/v1/schedulers`,
//!   `DELETE /pd/api/v1/schedulers/{name}`;
//! * `store-delete ID` — start removing a store (`DELETE /pd/api/v1/store/{id}`);
//! * `store-state ID up|offline` — cancel / start a removal;
//! * `store-label ID KEY=VALUE… [--force]` — merge (or with `--force` replace) labels;
//! * `store-weight ID LEADER REGION` — leader and region weights;
//! * `store-limit [ID [RATE]] [--type add-peer|remove-peer]` — show or set store limits
//!   (regions per minute; no id: every store);
//! * `remove-tombstone` — forget removed stores;
//! * `regions-on-store ID` — the regions with a peer on a store;
//! * `hot write|read` — hot regions (`/pd/api/v1/hotspot/regions/{write,read}`);
//! * `region-split KEY… [--hex]` — split at keys (`POST /pd/api/v1/regions/split`; keys are
//!   range keys, given as text or, with `--hex`, as hex);
//! * `config-set KEY VALUE` — one `[schedule]`/`[replication]` item (`POST /pd/api/v1/config`).
//!
//! Each answer is printed as PD's text (a JSON string) or pretty JSON.

use clap::{Subcommand, ValueEnum};

/// The commands of this file (flattened into `atoll ctl`).
#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum ElasticCommand {
    /// Schedulers: show the running ones, start or stop one.
    Scheduler {
        #[command(subcommand)]
        command: SchedulerCommand,
    },
    /// Start removing a store: its replicas move away, then it becomes Tombstone.
    StoreDelete { id: u64 },
    /// Set a store's state: `up` cancels a removal, `offline` starts one.
    StoreState { id: u64, state: StoreState },
    /// Set store labels (KEY=VALUE…), merged into the existing ones unless --force.
    StoreLabel {
        id: u64,
        #[arg(required = true, value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Replace all labels instead of merging.
        #[arg(long)]
        force: bool,
    },
    /// Set a store's leader and region weights.
    StoreWeight { id: u64, leader: f64, region: f64 },
    /// Show store limits, or set one store's (with ID and RATE) or every store's (RATE only
    /// with --all).
    StoreLimit {
        id: Option<u64>,
        /// Regions per minute (0: unlimited).
        rate: Option<f64>,
        /// Which limit (default: both).
        #[arg(long = "type")]
        limit_type: Option<LimitType>,
        /// Set RATE on every store (ID is then the rate).
        #[arg(long)]
        all: bool,
    },
    /// Forget the removed (Tombstone) stores.
    RemoveTombstone,
    /// Regions with a peer on a store.
    RegionsOnStore { id: u64 },
    /// Hot regions by write or read load.
    Hot { kind: HotKind },
    /// Split regions at keys.
    RegionSplit {
        #[arg(required = true)]
        keys: Vec<String>,
        /// The keys are hex.
        #[arg(long)]
        hex: bool,
    },
    /// Change one configuration item, e.g. `leader-schedule-limit 8`.
    ConfigSet { key: String, value: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum SchedulerCommand {
    Show,
    Add { name: String },
    Remove { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreState {
    Up,
    Offline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HotKind {
    Write,
    Read,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LimitType {
    AddPeer,
    RemovePeer,
}

impl LimitType {
    fn name(self) -> &'static str {
        match self {
            LimitType::AddPeer => "add-peer",
            LimitType::RemovePeer => "remove-peer",
        }
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("invalid label {s:?} (use KEY=VALUE)")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An HTTP request to PD.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub body: Option<String>,
}

fn get(path: String) -> Request {
    Request {
        method: "GET",
        path,
        body: None,
    }
}

fn post(path: String, body: serde_json::Value) -> Request {
    Request {
        method: "POST",
        path,
        body: Some(body.to_string()),
    }
}

fn delete(path: String) -> Request {
    Request {
        method: "DELETE",
        path,
        body: None,
    }
}

const API: &str = "/pd/api/v1";

/// The request a command makes.
pub fn request(cmd: &ElasticCommand) -> Result<Request, String> {
    Ok(match cmd {
        ElasticCommand::Scheduler { command } => match command {
            SchedulerCommand::Show => get(format!("{API}/schedulers")),
            SchedulerCommand::Add { name } => {
                post(format!("{API}/schedulers"), serde_json::json!({ "name": name }))
            }
            SchedulerCommand::Remove { name } => delete(format!("{API}/schedulers/{name}")),
        },
        ElasticCommand::StoreDelete { id } => delete(format!("{API}/store/{id}")),
        ElasticCommand::StoreState { id, state } => {
            let s = match state {
                StoreState::Up => "Up",
                StoreState::Offline => "Offline",
            };
            Request {
                method: "POST",
                path: format!("{API}/store/{id}/state?state={s}"),
                body: Some(String::new()),
            }
        }
        ElasticCommand::StoreLabel { id, labels, force } => {
            let map: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let q = if *force { "?force=true" } else { "" };
            post(
                format!("{API}/store/{id}/label{q}"),
                serde_json::Value::Object(map),
            )
        }
        ElasticCommand::StoreWeight { id, leader, region } => post(
            format!("{API}/store/{id}/weight"),
            serde_json::json!({ "leader": leader, "region": region }),
        ),
        ElasticCommand::StoreLimit {
            id,
            rate,
            limit_type,
            all,
        } => {
            let body = |rate: f64| {
                let mut b = serde_json::json!({ "rate": rate });
                if let Some(t) = limit_type {
                    b["type"] = serde_json::json!(t.name());
                }
                b
            };
            match (all, id, rate) {
                (true, Some(r), None) => post(format!("{API}/stores/limit"), body(*r as f64)),
                (true, _, _) => return Err("--all takes only a RATE".into()),
                (false, None, _) => get(format!("{API}/stores/limit")),
                (false, Some(id), None) => get(format!("{API}/store/{id}/limit")),
                (false, Some(id), Some(r)) => post(format!("{API}/store/{id}/limit"), body(*r)),
            }
        }
        ElasticCommand::RemoveTombstone => delete(format!("{API}/stores/remove-tombstone")),
        ElasticCommand::RegionsOnStore { id } => get(format!("{API}/regions/store/{id}")),
        ElasticCommand::Hot { kind } => {
            let k = match kind {
                HotKind::Write => "write",
                HotKind::Read => "read",
            };
            get(format!("{API}/hotspot/regions/{k}"))
        }
        ElasticCommand::RegionSplit { keys, hex: is_hex } => {
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                if *is_hex {
                    let valid = k.len() % 2 == 0 && k.chars().all(|c| c.is_ascii_hexdigit());
                    if !valid {
                        return Err(format!("{k:?} is not hex"));
                    }
                    out.push(k.to_ascii_lowercase());
                } else {
                    out.push(hex(k.as_bytes()));
                }
            }
            post(
                format!("{API}/regions/split"),
                serde_json::json!({ "split_keys": out }),
            )
        }
        ElasticCommand::ConfigSet { key, value } => {
            let mut m = serde_json::Map::new();
            m.insert(key.clone(), serde_json::Value::String(value.clone()));
            post(format!("{API}/config"), serde_json::Value::Object(m))
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: ElasticCommand,
    }

    fn req(args: &[&str]) -> Request {
        let cli = Cli::try_parse_from(std::iter::once("ctl").chain(args.iter().copied())).unwrap();
        request(&cli.cmd).unwrap()
    }

    fn body(r: &Request) -> serde_json::Value {
        serde_json::from_str(r.body.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn requests() {
        assert_eq!(req(&["scheduler", "show"]), get("/pd/api/v1/schedulers".into()));
        let r = req(&["scheduler", "add", "balance-leader-scheduler"]);
        assert_eq!(body(&r), serde_json::json!({"name": "balance-leader-scheduler"}));
        assert_eq!(
            req(&["scheduler", "remove", "balance-leader-scheduler"]),
            delete("/pd/api/v1/schedulers/balance-leader-scheduler".into())
        );
        assert_eq!(req(&["store-delete", "4"]), delete("/pd/api/v1/store/4".into()));
        assert_eq!(
            req(&["store-state", "4", "up"]).path,
            "/pd/api/v1/store/4/state?state=Up"
        );
        let r = req(&["store-label", "4", "zone=z1", "host=h1", "--force"]);
        assert_eq!(r.path, "/pd/api/v1/store/4/label?force=true");
        assert_eq!(body(&r), serde_json::json!({"zone": "z1", "host": "h1"}));
        let r = req(&["store-weight", "4", "2", "0.5"]);
        assert_eq!(body(&r), serde_json::json!({"leader": 2.0, "region": 0.5}));
        assert_eq!(req(&["store-limit"]), get("/pd/api/v1/stores/limit".into()));
        assert_eq!(req(&["store-limit", "4"]), get("/pd/api/v1/store/4/limit".into()));
        let r = req(&["store-limit", "4", "30", "--type", "add-peer"]);
        assert_eq!((r.method, r.path.as_str()), ("POST", "/pd/api/v1/store/4/limit"));
        assert_eq!(body(&r), serde_json::json!({"rate": 30.0, "type": "add-peer"}));
        let r = req(&["store-limit", "--all", "20"]);
        assert_eq!(r.path, "/pd/api/v1/stores/limit");
        assert_eq!(body(&r), serde_json::json!({"rate": 20.0}));
        assert_eq!(
            req(&["remove-tombstone"]),
            delete("/pd/api/v1/stores/remove-tombstone".into())
        );
        assert_eq!(req(&["regions-on-store", "4"]).path, "/pd/api/v1/regions/store/4");
        assert_eq!(req(&["hot", "write"]).path, "/pd/api/v1/hotspot/regions/write");
        let r = req(&["region-split", "ab", "k"]);
        assert_eq!(body(&r), serde_json::json!({"split_keys": ["6162", "6b"]}));
        let r = req(&["region-split", "--hex", "6B00"]);
        assert_eq!(body(&r), serde_json::json!({"split_keys": ["6b00"]}));
        let r = req(&["config-set", "leader-schedule-limit", "8"]);
        assert_eq!(body(&r), serde_json::json!({"leader-schedule-limit": "8"}));
        let bad = Cli::try_parse_from(["ctl", "region-split", "--hex", "6"]).unwrap();
        assert!(request(&bad.cmd).is_err());
        for bad in [
            &["store-label", "4"][..],
            &["store-label", "4", "zone"],
            &["store-state", "4", "gone"],
            &["hot", "cold"],
        ] {
            assert!(
                Cli::try_parse_from(std::iter::once("ctl").chain(bad.iter().copied())).is_err(),
                "{bad:?}"
            );
        }
    }
}
