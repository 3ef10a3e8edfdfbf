//! PD's configuration, loaded from a TOML file with PD's kebab-case keys.
//!
//! Unknown keys are reported (and logged as warnings by [`PdConfig::from_file`]), never fatal,
//! so a real PD config file can be fed to Atoll's PD.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::duration::ReadableDuration;
use crate::error::{Error, Result};

/// The `[schedule]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ScheduleConfig {
    pub max_snapshot_count: u64,
    pub max_pending_peer_count: u64,
    /// MiB.
    pub max_merge_region_size: u64,
    pub max_merge_region_keys: u64,
    pub split_merge_interval: ReadableDuration,
    pub patrol_region_interval: ReadableDuration,
    /// An `Up` store without heartbeat for this long is `Down`.
    pub max_store_down_time: ReadableDuration,
    pub leader_schedule_limit: u64,
    pub leader_schedule_policy: String,
    pub region_schedule_limit: u64,
    pub replica_schedule_limit: u64,
    pub merge_schedule_limit: u64,
    pub hot_region_schedule_limit: u64,
    pub tolerant_size_ratio: f64,
    pub low_space_ratio: f64,
    pub high_space_ratio: f64,
    pub enable_remove_down_replica: bool,
    pub enable_replace_offline_replica: bool,
    pub enable_make_up_replica: bool,
    pub enable_remove_extra_replica: bool,
    pub enable_location_replacement: bool,
    pub enable_tikv_split_region: bool,
    /// Merge a region only into the one after it.
    pub enable_one_way_merge: bool,
    pub enable_cross_table_merge: bool,
    /// Heartbeats a region must stay above the hot threshold to count as hot.
    pub hot_region_cache_hits_threshold: u64,
    /// Per-store limits (regions per minute) by store id; stores not listed get 15.
    pub store_limit: BTreeMap<String, StoreLimitConfig>,
}

/// One store's `store limit`: regions per minute it may receive / lose (0 = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct StoreLimitConfig {
    pub add_peer: f64,
    pub remove_peer: f64,
}

impl Default for StoreLimitConfig {
    fn default() -> Self {
        StoreLimitConfig {
            add_peer: crate::schedule::store_limit::DEFAULT_STORE_LIMIT,
            remove_peer: crate::schedule::store_limit::DEFAULT_STORE_LIMIT,
        }
    }
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            max_snapshot_count: 64,
            max_pending_peer_count: 64,
            max_merge_region_size: 20,
            max_merge_region_keys: 200_000,
            split_merge_interval: ReadableDuration::secs(3600),
            patrol_region_interval: ReadableDuration::millis(10),
            max_store_down_time: ReadableDuration::secs(30 * 60),
            leader_schedule_limit: 4,
            leader_schedule_policy: "count".into(),
            region_schedule_limit: 2048,
            replica_schedule_limit: 64,
            merge_schedule_limit: 8,
            hot_region_schedule_limit: 4,
            tolerant_size_ratio: 0.0,
            low_space_ratio: 0.8,
            high_space_ratio: 0.7,
            enable_remove_down_replica: true,
            enable_replace_offline_replica: true,
            enable_make_up_replica: true,
            enable_remove_extra_replica: true,
            enable_location_replacement: true,
            enable_tikv_split_region: true,
            enable_one_way_merge: false,
            enable_cross_table_merge: true,
            hot_region_cache_hits_threshold: 3,
            store_limit: BTreeMap::new(),
        }
    }
}

/// The `[replication]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ReplicationConfig {
    /// Replicas PD keeps per region; also the bootstrapped cluster's `max_peer_count`.
    pub max_replicas: u64,
    pub location_labels: Vec<String>,
    pub strictly_match_label: bool,
    pub enable_placement_rules: bool,
    pub isolation_level: String,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            max_replicas: 3,
            location_labels: Vec::new(),
            strictly_match_label: false,
            enable_placement_rules: true,
            isolation_level: String::new(),
        }
    }
}

/// The `[pd-server]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct PdServerConfig {
    pub use_region_storage: bool,
    pub max_gap_reset_ts: ReadableDuration,
    pub key_type: String,
    pub metric_storage: String,
    pub dashboard_address: String,
    pub flow_round_by_digit: i64,
    pub min_resolved_ts_persistence_interval: ReadableDuration,
}

impl Default for PdServerConfig {
    fn default() -> Self {
        PdServerConfig {
            use_region_storage: true,
            max_gap_reset_ts: ReadableDuration::secs(24 * 3600),
            key_type: "table".into(),
            metric_storage: String::new(),
            dashboard_address: "auto".into(),
            flow_round_by_digit: 3,
            min_resolved_ts_persistence_interval: ReadableDuration::secs(1),
        }
    }
}

/// The `[gc]` section (Atoll's own; PD has no such section): PD advances the GC safe point by
/// itself, acting as the `gc_worker` service, so no outside GC driver (TiDB) is needed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct GcConfig {
    /// How much MVCC history is kept: the GC safe point follows `now - retention`, held back by
    /// every unexpired service safe point. `"0s"` disables the automatic advance.
    pub retention: ReadableDuration,
    /// How often the automatic advance runs.
    pub advance_interval: ReadableDuration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            retention: ReadableDuration::secs(10 * 60),
            advance_interval: ReadableDuration::secs(600),
        }
    }
}

/// The whole PD configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct PdConfig {
    /// This member's name.
    pub name: String,
    /// Where metadata (RocksDB) lives; empty means `default.<name>`.
    pub data_dir: PathBuf,
    /// Comma-separated URLs to listen on (only the first is used), e.g. `http://127.0.0.1:2379`.
    pub client_urls: String,
    /// Comma-separated URLs clients should use; empty means `client_urls`.
    pub advertise_client_urls: String,
    /// Comma-separated peer URLs (reported in members; Atoll's PD has no peers yet).
    pub peer_urls: String,
    /// Empty means `peer_urls`.
    pub advertise_peer_urls: String,
    pub schedule: ScheduleConfig,
    pub replication: ReplicationConfig,
    pub pd_server: PdServerConfig,
    pub gc: GcConfig,
}

impl Default for PdConfig {
    fn default() -> Self {
        PdConfig {
            name: "pd".into(),
            data_dir: PathBuf::new(),
            client_urls: "http://127.0.0.1:2379".into(),
            advertise_client_urls: String::new(),
            peer_urls: "http://127.0.0.1:2380".into(),
            advertise_peer_urls: String::new(),
            schedule: ScheduleConfig::default(),
            replication: ReplicationConfig::default(),
            pd_server: PdServerConfig::default(),
            gc: GcConfig::default(),
        }
    }
}

/// Dotted paths of keys in `user` that `known` does not have.
fn unknown_keys(user: &toml::Table, known: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in user {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (known.get(k), v) {
            (None, _) => out.push(path),
            (Some(toml::Value::Table(kt)), toml::Value::Table(ut)) => unknown_keys(ut, kt, &path, out),
            _ => {}
        }
    }
}

/// Splits a comma-separated URL list.
fn split_urls(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

impl PdConfig {
    /// Parses TOML; returns the config and the dotted paths of unknown keys.
    pub fn from_toml_str(s: &str) -> Result<(PdConfig, Vec<String>)> {
        let user: toml::Table = toml::from_str(s).map_err(|e| Error::Config(e.to_string()))?;
        let known = match toml::Value::try_from(PdConfig::default()) {
            Ok(toml::Value::Table(t)) => t,
            Ok(_) => toml::Table::new(),
            Err(e) => return Err(Error::Config(e.to_string())),
        };
        let mut unknown = Vec::new();
        unknown_keys(&user, &known, "", &mut unknown);
        let cfg: PdConfig = toml::Value::Table(user)
            .try_into()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok((cfg, unknown))
    }

    /// Loads a TOML file, logging unknown keys as warnings.
    pub fn from_file(path: &Path) -> Result<PdConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("read {}: {e}", path.display())))?;
        let (cfg, unknown) = Self::from_toml_str(&text)?;
        for key in unknown {
            tracing::warn!(key = %key, file = %path.display(), "unknown configuration key, ignored");
        }
        Ok(cfg)
    }

    /// Fills derived defaults and validates.
    pub fn adjust(&mut self) -> Result<()> {
        if self.name.is_empty() {
            self.name = "pd".into();
        }
        if self.data_dir.as_os_str().is_empty() {
            self.data_dir = PathBuf::from(format!("default.{}", self.name));
        }
        if split_urls(&self.client_urls).is_empty() {
            return Err(Error::Config("client-urls is empty".into()));
        }
        if self.advertise_client_urls.trim().is_empty() {
            self.advertise_client_urls = self.client_urls.clone();
        }
        if self.advertise_peer_urls.trim().is_empty() {
            self.advertise_peer_urls = self.peer_urls.clone();
        }
        if self.replication.max_replicas == 0 {
            return Err(Error::Config(
                "replication.max-replicas must be at least 1".into(),
            ));
        }
        if !self.gc.retention.0.is_zero() && self.gc.advance_interval.0.is_zero() {
            return Err(Error::Config(
                "gc.advance-interval must be positive when gc.retention is not 0s".into(),
            ));
        }
        self.listen_addr()?;
        Ok(())
    }

    /// The address to listen on, from the first client URL.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        let url = split_urls(&self.client_urls)
            .into_iter()
            .next()
            .ok_or_else(|| Error::Config("client-urls is empty".into()))?;
        let hostport = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or(&url);
        let hostport = hostport.trim_end_matches('/');
        hostport
            .to_socket_addrs()
            .map_err(|e| Error::Config(format!("invalid client url {url:?}: {e}")))?
            .next()
            .ok_or_else(|| Error::Config(format!("client url {url:?} resolves to no address")))
    }

    pub fn client_url_list(&self) -> Vec<String> {
        split_urls(&self.client_urls)
    }

    /// URLs advertised to clients (falls back to the client URLs).
    pub fn advertise_client_url_list(&self) -> Vec<String> {
        let v = split_urls(&self.advertise_client_urls);
        if v.is_empty() {
            self.client_url_list()
        } else {
            v
        }
    }

    pub fn peer_url_list(&self) -> Vec<String> {
        split_urls(&self.peer_urls)
    }

    pub fn advertise_peer_url_list(&self) -> Vec<String> {
        let v = split_urls(&self.advertise_peer_urls);
        if v.is_empty() {
            self.peer_url_list()
        } else {
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn defaults() {
        let mut c = PdConfig::default();
        c.adjust().unwrap();
        assert_eq!(c.replication.max_replicas, 3);
        assert_eq!(c.data_dir, PathBuf::from("default.pd"));
        assert_eq!(
            c.advertise_client_url_list(),
            vec!["http://127.0.0.1:2379".to_string()]
        );
        assert_eq!(c.listen_addr().unwrap(), "127.0.0.1:2379".parse().unwrap());
        assert_eq!(c.schedule.max_store_down_time.0, Duration::from_secs(1800));
        assert_eq!(c.gc.retention.0, Duration::from_secs(600));
        assert_eq!(c.gc.advance_interval.0, Duration::from_secs(600));
    }

    #[test]
    fn gc_section() {
        let (mut c, unknown) =
            PdConfig::from_toml_str("[gc]\nretention = \"1h30m\"\nadvance-interval = \"500ms\"").unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        c.adjust().unwrap();
        assert_eq!(c.gc.retention.0, Duration::from_secs(5400));
        assert_eq!(c.gc.advance_interval.0, Duration::from_millis(500));
        // "0s" disables the advance; the interval then does not matter.
        let (mut c, _) =
            PdConfig::from_toml_str("[gc]\nretention = \"0s\"\nadvance-interval = \"0s\"").unwrap();
        c.adjust().unwrap();
        assert!(c.gc.retention.0.is_zero());
        let (mut c, _) = PdConfig::from_toml_str("[gc]\nadvance-interval = \"0s\"").unwrap();
        assert!(c.adjust().is_err());
        assert!(PdConfig::from_toml_str("[gc]\nretention = \"ten minutes\"").is_err());
        let (_, unknown) = PdConfig::from_toml_str("[gc]\nlife-time = \"10m\"").unwrap();
        assert_eq!(unknown, vec!["gc.life-time"]);
    }

    #[test]
    fn pd_style_toml_with_unknown_keys() {
        let text = r#"
            name = "pd-1"
            data-dir = "/tmp/pd-1"
            client-urls = "http://127.0.0.1:12379"
            advertise-client-urls = "http://10.0.0.1:12379"
            lease = 3
            [log]
            level = "info"
            [schedule]
            max-store-down-time = "10m"
            leader-schedule-limit = 8
            bogus = 1
            [replication]
            max-replicas = 1
            location-labels = ["zone", "host"]
        "#;
        let (mut c, mut unknown) = PdConfig::from_toml_str(text).unwrap();
        unknown.sort();
        assert_eq!(unknown, vec!["lease", "log", "schedule.bogus"]);
        c.adjust().unwrap();
        assert_eq!(c.name, "pd-1");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/pd-1"));
        assert_eq!(c.replication.max_replicas, 1);
        assert_eq!(c.replication.location_labels, vec!["zone", "host"]);
        assert_eq!(c.schedule.max_store_down_time.0, Duration::from_secs(600));
        assert_eq!(c.schedule.leader_schedule_limit, 8);
        assert_eq!(c.schedule.region_schedule_limit, 2048);
        assert_eq!(
            c.advertise_client_url_list(),
            vec!["http://10.0.0.1:12379".to_string()]
        );
        assert_eq!(c.listen_addr().unwrap().port(), 12379);
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(PdConfig::from_toml_str("[schedule]\nmax-store-down-time = \"ten\"").is_err());
        let (mut c, _) = PdConfig::from_toml_str("[replication]\nmax-replicas = 0").unwrap();
        assert!(c.adjust().is_err());
    }
}
