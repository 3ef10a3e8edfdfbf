//! Node configuration: TOML in TiKV's kebab-case sections, overridable by command-line flags.
//! Unknown keys are reported (so typos are visible) but do not stop the node.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A byte size written with a unit, like TiKV's: `"96MB"`, `"1GiB"`, `"512KB"` or a plain number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadableSize(pub u64);

impl ReadableSize {
    pub fn parse(s: &str) -> Result<ReadableSize, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let num: f64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
        let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "K" | "KB" | "KIB" => 1 << 10,
            "M" | "MB" | "MIB" => 1 << 20,
            "G" | "GB" | "GIB" => 1 << 30,
            "T" | "TB" | "TIB" => 1 << 40,
            "P" | "PB" | "PIB" => 1 << 50,
            other => return Err(format!("invalid size unit {other:?} in {s:?}")),
        };
        Ok(ReadableSize((num * mult as f64) as u64))
    }
}

impl<'de> Deserialize<'de> for ReadableSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ReadableSize(n)),
            Raw::S(s) => ReadableSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written with units, like TiKV's: `"10s"`, `"100ms"`, `"1m30s"`, `"2h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadableDuration(pub Duration);

impl ReadableDuration {
    pub fn parse(s: &str) -> Result<ReadableDuration, String> {
        let mut total = Duration::ZERO;
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err("empty duration".into());
        }
        while !rest.is_empty() {
            let split = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let (num, tail) = rest.split_at(split);
            let num: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
            let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let secs = match unit {
                "ms" => num / 1000.0,
                "s" => num,
                "m" => num * 60.0,
                "h" => num * 3600.0,
                "d" => num * 86400.0,
                other => return Err(format!("invalid duration unit {other:?} in {s:?}")),
            };
            total += Duration::from_secs_f64(secs);
            rest = tail;
        }
        Ok(ReadableDuration(total))
    }
}

impl<'de> Deserialize<'de> for ReadableDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ReadableDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ReadableDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0.as_millis())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ServerConfig {
    pub addr: String,
    pub advertise_addr: String,
    pub status_addr: String,
    pub advertise_status_addr: String,
    pub labels: BTreeMap<String, String>,
    /// Largest gRPC response sent (TiKV's `server.max-grpc-send-msg-len`, 10 MiB); a larger
    /// response fails with gRPC `OutOfRange` (TiKV's gRPC library says `ResourceExhausted`).
    pub max_grpc_send_msg_len: ReadableSize,
    /// Largest gRPC request accepted (64 MiB; TiKV does not bound it, its Raft entry limit
    /// refuses large writes); a larger request fails with `OutOfRange`.
    pub max_grpc_recv_msg_len: ReadableSize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: "127.0.0.1:20160".into(),
            advertise_addr: String::new(),
            status_addr: "127.0.0.1:20180".into(),
            advertise_status_addr: String::new(),
            labels: BTreeMap::new(),
            max_grpc_send_msg_len: ReadableSize(10 << 20),
            max_grpc_recv_msg_len: ReadableSize(64 << 20),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct PdSection {
    pub endpoints: Vec<String>,
}

impl Default for PdSection {
    fn default() -> Self {
        PdSection {
            endpoints: vec!["127.0.0.1:2379".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct StorageSection {
    pub data_dir: String,
    /// Space kept free on the data disk (TiKV's `storage.reserve-space`): below it the node
    /// refuses writes with `DiskFull` until space is back. At most 5% of the disk is kept
    /// (so small disks stay usable); 0 disables the check.
    pub reserve_space: ReadableSize,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            data_dir: "./data".into(),
            reserve_space: ReadableSize(5 << 30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct RaftstoreSection {
    pub capacity: ReadableSize,
    pub raft_base_tick_interval: ReadableDuration,
    pub raft_heartbeat_ticks: usize,
    pub raft_election_timeout_ticks: usize,
    pub raft_entry_max_size: ReadableSize,
    pub raft_log_gc_threshold: u64,
    /// Past this many entries behind, a follower no longer holds log compaction back (it
    /// catches up by snapshot).
    pub raft_log_gc_count_limit: u64,
    /// A peer not heard from for this long is reported to PD as down.
    pub max_peer_down_duration: ReadableDuration,
    /// Raft log writer threads (0: the store loop writes the log itself).
    pub store_io_pool_size: usize,
    /// Apply writer threads (0: the store loop writes applied entries itself).
    pub apply_pool_size: usize,
    pub pd_heartbeat_tick_interval: ReadableDuration,
    pub pd_store_heartbeat_tick_interval: ReadableDuration,
    /// How often leaders are looked at by the split checker.
    pub split_region_check_tick_interval: ReadableDuration,
    /// Bytes written to a region since its last split check that make it worth checking again
    /// (TiKV's default: a sixteenth of `region-split-size`).
    pub region_split_check_diff: Option<ReadableSize>,
}

impl Default for RaftstoreSection {
    fn default() -> Self {
        RaftstoreSection {
            capacity: ReadableSize(0),
            raft_base_tick_interval: ReadableDuration(Duration::from_millis(100)),
            raft_heartbeat_ticks: 2,
            raft_election_timeout_ticks: 10,
            raft_entry_max_size: ReadableSize(8 << 20),
            raft_log_gc_threshold: 2048,
            raft_log_gc_count_limit: 20_000,
            max_peer_down_duration: ReadableDuration(Duration::from_secs(600)),
            // Measured on 2 cores: handing writes to other threads costs more than it overlaps.
            store_io_pool_size: 0,
            apply_pool_size: 0,
            pd_heartbeat_tick_interval: ReadableDuration(Duration::from_secs(10)),
            pd_store_heartbeat_tick_interval: ReadableDuration(Duration::from_secs(10)),
            split_region_check_tick_interval: ReadableDuration(Duration::from_secs(10)),
            region_split_check_diff: None,
        }
    }
}

/// `[coprocessor]`: region split thresholds, as TiKV names them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct CoprocessorSection {
    pub region_max_size: Option<ReadableSize>,
    pub region_split_size: ReadableSize,
    pub region_max_keys: Option<u64>,
    pub region_split_keys: Option<u64>,
    pub batch_split_limit: u64,
}

impl Default for CoprocessorSection {
    fn default() -> Self {
        CoprocessorSection {
            region_max_size: None,
            region_split_size: ReadableSize(96 << 20),
            region_max_keys: None,
            region_split_keys: None,
            batch_split_limit: 10,
        }
    }
}

impl Config {
    /// The split thresholds. Unset ones follow TiKV: max size = split size × 3/2, split keys
    /// = 960 000 per 96 MiB of split size, max keys = split keys × 3/2, check diff = split
    /// size / 16.
    pub fn split_config(&self) -> raftstore::SplitConfig {
        let c = &self.coprocessor;
        let split_size = c.region_split_size.0.max(1);
        let by_size = (u128::from(split_size) * 960_000 / (96 << 20)) as u64;
        let split_keys = c.region_split_keys.unwrap_or(by_size).max(1);
        raftstore::SplitConfig {
            region_max_size: c.region_max_size.map_or(split_size / 2 * 3, |s| s.0),
            region_split_size: split_size,
            region_max_keys: c.region_max_keys.unwrap_or(split_keys / 2 * 3),
            region_split_keys: split_keys,
            batch_split_limit: c.batch_split_limit.max(1),
            check_interval: self.raftstore.split_region_check_tick_interval.0,
            check_diff: self
                .raftstore
                .region_split_check_diff
                .map_or(split_size / 16, |s| s.0),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct LogSection {
    pub level: String,
    pub file: LogFileSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct LogFileSection {
    pub filename: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct GcSection {
    /// How often the GC worker reads PD's GC safe point.
    pub poll_interval: ReadableDuration,
}

impl Default for GcSection {
    fn default() -> Self {
        GcSection {
            poll_interval: ReadableDuration(Duration::from_secs(10)),
        }
    }
}

/// `[split]`: load-based split (TiKV's names and defaults; see `load_split`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct SplitSection {
    /// Read requests per second above which a region is hot (0: never by requests).
    pub qps_threshold: u64,
    /// Bytes read per second above which a region is hot (0: never by bytes).
    pub byte_threshold: ReadableSize,
    /// One-second windows in a row a region must be hot before it is split.
    pub detect_times: u64,
    /// Largest `|left - right| / (left + right)` of sampled requests a split key may leave.
    pub split_balance_score: f64,
    /// Largest share of sampled requests a split key may cut in two.
    pub split_contained_score: f64,
}

impl Default for SplitSection {
    fn default() -> Self {
        SplitSection {
            qps_threshold: 3000,
            byte_threshold: ReadableSize(30 << 20),
            detect_times: 10,
            split_balance_score: 0.25,
            split_contained_score: 0.5,
        }
    }
}

/// The whole node configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Config {
    pub server: ServerConfig,
    pub pd: PdSection,
    pub storage: StorageSection,
    pub raftstore: RaftstoreSection,
    pub coprocessor: CoprocessorSection,
    pub gc: GcSection,
    pub split: SplitSection,
    pub log: LogSection,
}

impl Config {
    /// Parses TOML; returns the config and the dotted paths of keys it did not know.
    pub fn from_toml(text: &str) -> Result<(Config, Vec<String>), String> {
        let de = toml::Deserializer::new(text);
        let mut unknown = Vec::new();
        let cfg = serde_ignored::deserialize(de, |path| unknown.push(path.to_string()))
            .map_err(|e| format!("invalid config: {e}"))?;
        Ok((cfg, unknown))
    }

    pub fn advertise_addr(&self) -> &str {
        if self.server.advertise_addr.is_empty() {
            &self.server.addr
        } else {
            &self.server.advertise_addr
        }
    }

    pub fn advertise_status_addr(&self) -> &str {
        if self.server.advertise_status_addr.is_empty() {
            &self.server.status_addr
        } else {
            &self.server.advertise_status_addr
        }
    }

    /// Parses `zone=z1,host=h1` into labels.
    pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("invalid label {part:?}, want key=value"))?;
            if k.trim().is_empty() || v.trim().is_empty() {
                return Err(format!("invalid label {part:?}, want key=value"));
            }
            out.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(ReadableSize::parse("96MB"), Ok(ReadableSize(96 << 20)));
        assert_eq!(ReadableSize::parse("1GiB"), Ok(ReadableSize(1 << 30)));
        assert_eq!(ReadableSize::parse("1.5KB"), Ok(ReadableSize(1536)));
        assert_eq!(ReadableSize::parse("42"), Ok(ReadableSize(42)));
        assert!(ReadableSize::parse("12XB").is_err());
        assert_eq!(
            ReadableDuration::parse("100ms"),
            Ok(ReadableDuration(Duration::from_millis(100)))
        );
        assert_eq!(
            ReadableDuration::parse("1m30s"),
            Ok(ReadableDuration(Duration::from_secs(90)))
        );
        assert!(ReadableDuration::parse("5 parsecs").is_err());
    }

    #[test]
    fn toml_with_unknown_keys_warns() {
        let text = r#"
            [server]
            addr = "0.0.0.0:1"
            labels = { zone = "z1" }
            bogus = 1
            [raftstore]
            raft-base-tick-interval = "50ms"
            capacity = "10GB"
            [rocksdb]
            max-open-files = 4096
        "#;
        let (cfg, unknown) = Config::from_toml(text).expect("parse");
        assert_eq!(cfg.server.addr, "0.0.0.0:1");
        assert_eq!(cfg.server.labels.get("zone").map(String::as_str), Some("z1"));
        assert_eq!(cfg.raftstore.raft_base_tick_interval.0, Duration::from_millis(50));
        assert_eq!(cfg.raftstore.capacity, ReadableSize(10 << 30));
        assert_eq!(cfg.raftstore.raft_election_timeout_ticks, 10);
        assert_eq!(unknown, vec!["server.bogus".to_string(), "rocksdb".to_string()]);
        assert!(Config::from_toml("[server]\naddr = 5").is_err());
    }

    #[test]
    fn split_thresholds_follow_tikv() {
        let (cfg, unknown) = Config::from_toml("").expect("parse");
        assert!(unknown.is_empty());
        let s = cfg.split_config();
        assert_eq!(
            (
                s.region_max_size,
                s.region_split_size,
                s.region_max_keys,
                s.region_split_keys
            ),
            (144 << 20, 96 << 20, 1_440_000, 960_000)
        );
        assert_eq!(s.check_diff, 6 << 20);
        let text = r#"
            [raftstore]
            split-region-check-tick-interval = "1s"
            region-split-check-diff = "1B"
            [coprocessor]
            region-split-keys = 7
            region-max-keys = 10
            batch-split-limit = 3
        "#;
        let (cfg, unknown) = Config::from_toml(text).expect("parse");
        assert!(unknown.is_empty(), "{unknown:?}");
        let s = cfg.split_config();
        assert_eq!(
            (s.region_split_keys, s.region_max_keys, s.batch_split_limit),
            (7, 10, 3)
        );
        assert_eq!((s.check_diff, s.check_interval), (1, Duration::from_secs(1)));
    }

    #[test]
    fn split_section_follows_tikv() {
        let (cfg, _) = Config::from_toml("").expect("parse");
        assert_eq!(cfg.split.qps_threshold, 3000);
        assert_eq!(cfg.split.byte_threshold, ReadableSize(30 << 20));
        assert_eq!(cfg.split.detect_times, 10);
        let text = "[split]\nqps-threshold = 50\nbyte-threshold = \"1MB\"\ndetect-times = 2\n";
        let (cfg, unknown) = Config::from_toml(text).expect("parse");
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(
            (
                cfg.split.qps_threshold,
                cfg.split.byte_threshold,
                cfg.split.detect_times
            ),
            (50, ReadableSize(1 << 20), 2)
        );
    }

    #[test]
    fn labels() {
        let l = Config::parse_labels("zone=z1, host=h1").expect("labels");
        assert_eq!(l.len(), 2);
        assert!(Config::parse_labels("zone").is_err());
        assert!(Config::parse_labels("").expect("empty").is_empty());
    }
}
