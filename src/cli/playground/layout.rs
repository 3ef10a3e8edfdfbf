//! The playground's layout: which process listens where, keeps its data where and logs where,
//! and the exact command lines of `atoll-pd` and `atoll-kv`. Pure functions of the options so
//! that they are tested without starting anything.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Result};

/// The options the layout depends on (a subset of the `playground` command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutOptions {
    pub host: String,
    pub pd_port: u16,
    pub kv_count: usize,
    pub kv_base_port: u16,
    pub status_base_port: u16,
    pub data_dir: PathBuf,
}

/// The placement driver of the playground.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdLayout {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// `http://HOST:PORT`, both listened on and advertised.
    pub client_url: String,
    pub peer_url: String,
    /// `HOST:PORT`, what nodes and clients are given as the PD endpoint.
    pub endpoint: String,
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    /// Where the process's own stdout/stderr go (panics, messages before logging starts).
    pub console_file: PathBuf,
    /// The config file the playground writes for PD ([`pd_config_toml`]).
    pub config_file: PathBuf,
    /// `[replication] max-replicas`: min(3, node count), so every region can be fully
    /// replicated on this many nodes.
    pub max_replicas: usize,
}

/// One storage node of the playground.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvLayout {
    /// `kv-<i>`, i from 1.
    pub name: String,
    pub port: u16,
    pub status_port: u16,
    /// `HOST:PORT` of the gRPC service, listened on and advertised.
    pub addr: String,
    /// `HOST:SPORT` of the status HTTP server.
    pub status_addr: String,
    pub labels: String,
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    pub console_file: PathBuf,
}

impl KvLayout {
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.status_addr)
    }
}

/// Every process of the playground.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub data_dir: PathBuf,
    pub pd: PdLayout,
    pub kvs: Vec<KvLayout>,
}

/// `host:port`, with brackets around an IPv6 literal.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn offset_port(what: &str, base: u16, offset: usize) -> Result<u16> {
    let port = usize::from(base) + offset;
    match u16::try_from(port) {
        Ok(p) => Ok(p),
        Err(_) => bail!("{what} port {base}+{offset} is beyond 65535; lower the base port or the node count"),
    }
}

impl Layout {
    /// Lays out PD on `pd_port` (peer port `pd_port + 1`) and node `i` (1-based) on
    /// `kv_base_port + i - 1` with status on `status_base_port + i - 1`, data in
    /// `DATA/pd`, `DATA/kv-<i>`, logs in `DATA/pd.log`, `DATA/kv-<i>.log`. Refuses a port
    /// used twice.
    pub fn compute(opts: &LayoutOptions) -> Result<Layout> {
        ensure!(opts.kv_count >= 1, "--kv-count must be at least 1");
        ensure!(opts.kv_count <= 64, "--kv-count above 64 is not a playground");
        ensure!(!opts.host.trim().is_empty(), "--host must not be empty");
        ensure!(opts.pd_port != 0, "--pd-port must not be 0");
        ensure!(opts.kv_base_port != 0, "--kv-base-port must not be 0");
        ensure!(opts.status_base_port != 0, "--status-base-port must not be 0");
        let host = opts.host.trim();
        let dir = &opts.data_dir;

        let peer_port = offset_port("PD peer", opts.pd_port, 1)?;
        let pd = PdLayout {
            name: "pd-1".to_string(),
            client_port: opts.pd_port,
            peer_port,
            client_url: format!("http://{}", host_port(host, opts.pd_port)),
            peer_url: format!("http://{}", host_port(host, peer_port)),
            endpoint: host_port(host, opts.pd_port),
            data_dir: dir.join("pd"),
            log_file: dir.join("pd.log"),
            console_file: dir.join("pd.console"),
            config_file: dir.join("pd.toml"),
            max_replicas: opts.kv_count.min(3),
        };

        let mut kvs = Vec::with_capacity(opts.kv_count);
        for index in 1..=opts.kv_count {
            let port = offset_port("KV", opts.kv_base_port, index - 1)?;
            let status_port = offset_port("KV status", opts.status_base_port, index - 1)?;
            let name = format!("kv-{index}");
            kvs.push(KvLayout {
                port,
                status_port,
                addr: host_port(host, port),
                status_addr: host_port(host, status_port),
                labels: format!("zone=z{index},host=h{index}"),
                data_dir: dir.join(&name),
                log_file: dir.join(format!("{name}.log")),
                console_file: dir.join(format!("{name}.console")),
                name,
            });
        }

        let layout = Layout {
            data_dir: dir.clone(),
            pd,
            kvs,
        };
        layout.check_ports_distinct()?;
        Ok(layout)
    }

    /// Every port the playground listens on, with who uses it.
    pub fn ports(&self) -> Vec<(u16, String)> {
        let mut ports = vec![
            (self.pd.client_port, format!("{} client", self.pd.name)),
            (self.pd.peer_port, format!("{} peer", self.pd.name)),
        ];
        for kv in &self.kvs {
            ports.push((kv.port, format!("{} gRPC", kv.name)));
            ports.push((kv.status_port, format!("{} status", kv.name)));
        }
        ports
    }

    fn check_ports_distinct(&self) -> Result<()> {
        let mut seen: BTreeMap<u16, String> = BTreeMap::new();
        for (port, who) in self.ports() {
            if let Some(first) = seen.insert(port, who.clone()) {
                bail!("port {port} would be used by both {first} and {who}; choose other base ports");
            }
        }
        Ok(())
    }
}

fn os(s: impl AsRef<std::ffi::OsStr>) -> OsString {
    s.as_ref().to_os_string()
}

fn path_arg(p: &Path) -> OsString {
    p.as_os_str().to_os_string()
}

/// The PD config file of the playground (PD's TOML keys).
pub fn pd_config_toml(pd: &PdLayout) -> String {
    format!(
        "# Written by `atoll playground`: one replica per node, at most three.\n\
         [replication]\nmax-replicas = {}\n",
        pd.max_replicas
    )
}

/// The arguments of `atoll-pd` for this layout.
pub fn pd_args(pd: &PdLayout) -> Vec<OsString> {
    vec![
        os("--config"),
        path_arg(&pd.config_file),
        os("--name"),
        os(&pd.name),
        os("--client-urls"),
        os(&pd.client_url),
        os("--advertise-client-urls"),
        os(&pd.client_url),
        os("--peer-urls"),
        os(&pd.peer_url),
        os("--data-dir"),
        path_arg(&pd.data_dir),
        os("--log-file"),
        path_arg(&pd.log_file),
    ]
}

/// The capacity each playground node reports: its nodes share one disk, whose free space says
/// nothing about one node, so each is given a capacity of its own and PD's region scores weigh
/// the nodes' data (see README, "Adding and removing a node").
pub const KV_CAPACITY: &str = "100GiB";

/// The arguments of the `atoll-kv` laid out as `kv`.
pub fn kv_args(kv: &KvLayout, pd_endpoint: &str) -> Vec<OsString> {
    vec![
        os("--addr"),
        os(&kv.addr),
        os("--advertise-addr"),
        os(&kv.addr),
        os("--status-addr"),
        os(&kv.status_addr),
        os("--pd-endpoints"),
        os(pd_endpoint),
        os("--data-dir"),
        path_arg(&kv.data_dir),
        os("--log-file"),
        path_arg(&kv.log_file),
        os("--labels"),
        os(&kv.labels),
        os("--capacity"),
        os(KV_CAPACITY),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> LayoutOptions {
        LayoutOptions {
            host: "127.0.0.1".into(),
            pd_port: 2379,
            kv_count: 3,
            kv_base_port: 20160,
            status_base_port: 20180,
            data_dir: PathBuf::from("./data/playground"),
        }
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn default_layout() {
        let l = Layout::compute(&opts()).unwrap();
        assert_eq!(l.pd.name, "pd-1");
        assert_eq!(l.pd.endpoint, "127.0.0.1:2379");
        assert_eq!(l.pd.client_url, "http://127.0.0.1:2379");
        assert_eq!(l.pd.peer_url, "http://127.0.0.1:2380");
        assert_eq!(l.pd.data_dir, Path::new("./data/playground/pd"));
        assert_eq!(l.pd.log_file, Path::new("./data/playground/pd.log"));
        assert_eq!(l.kvs.len(), 3);
        let names: Vec<_> = l.kvs.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["kv-1", "kv-2", "kv-3"]);
        let addrs: Vec<_> = l.kvs.iter().map(|k| k.addr.as_str()).collect();
        assert_eq!(addrs, ["127.0.0.1:20160", "127.0.0.1:20161", "127.0.0.1:20162"]);
        let status: Vec<_> = l.kvs.iter().map(|k| k.status_addr.as_str()).collect();
        assert_eq!(status, ["127.0.0.1:20180", "127.0.0.1:20181", "127.0.0.1:20182"]);
        assert_eq!(l.kvs[1].data_dir, Path::new("./data/playground/kv-2"));
        assert_eq!(l.kvs[1].log_file, Path::new("./data/playground/kv-2.log"));
        assert_eq!(l.kvs[2].labels, "zone=z3,host=h3");
        assert_eq!(l.kvs[0].metrics_url(), "http://127.0.0.1:20180/metrics");
        assert_eq!(l.ports().len(), 8);
        assert_eq!(l.pd.config_file, Path::new("./data/playground/pd.toml"));
        assert_eq!(l.pd.max_replicas, 3);
        assert_eq!(
            pd_config_toml(&l.pd),
            "# Written by `atoll playground`: one replica per node, at most three.\n[replication]\nmax-replicas = 3\n"
        );
        for (kv_count, want) in [(1, 1), (2, 2), (5, 3)] {
            let l = Layout::compute(&LayoutOptions { kv_count, ..opts() }).unwrap();
            assert_eq!(l.pd.max_replicas, want, "{kv_count} nodes");
        }
    }

    #[test]
    fn overlapping_ports_are_refused() {
        // 20 nodes from 20160 run into the status ports at 20180.
        let err = Layout::compute(&LayoutOptions {
            kv_count: 21,
            ..opts()
        })
        .unwrap_err();
        assert!(err.to_string().contains("port 20180"), "{err}");
        assert!(Layout::compute(&LayoutOptions {
            kv_count: 20,
            ..opts()
        })
        .is_ok());
        // PD's peer port collides with the first node.
        let err = Layout::compute(&LayoutOptions {
            pd_port: 20159,
            ..opts()
        })
        .unwrap_err();
        assert!(err.to_string().contains("port 20160"), "{err}");
        let err = Layout::compute(&LayoutOptions {
            status_base_port: 20160,
            ..opts()
        })
        .unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
    }

    #[test]
    fn bad_counts_and_port_overflow() {
        assert!(Layout::compute(&LayoutOptions {
            kv_count: 0,
            ..opts()
        })
        .is_err());
        assert!(Layout::compute(&LayoutOptions {
            kv_count: 65,
            ..opts()
        })
        .is_err());
        assert!(Layout::compute(&LayoutOptions {
            pd_port: 65535,
            ..opts()
        })
        .is_err());
        assert!(Layout::compute(&LayoutOptions {
            kv_base_port: 65534,
            ..opts()
        })
        .is_err());
        assert!(Layout::compute(&LayoutOptions {
            kv_base_port: 65533,
            kv_count: 3,
            ..opts()
        })
        .is_ok());
        assert!(Layout::compute(&LayoutOptions {
            host: " ".into(),
            ..opts()
        })
        .is_err());
        assert!(Layout::compute(&LayoutOptions { pd_port: 0, ..opts() }).is_err());
    }

    #[test]
    fn ipv6_host() {
        let l = Layout::compute(&LayoutOptions {
            host: "::1".into(),
            kv_count: 1,
            ..opts()
        })
        .unwrap();
        assert_eq!(l.pd.endpoint, "[::1]:2379");
        assert_eq!(l.pd.client_url, "http://[::1]:2379");
        assert_eq!(l.kvs[0].addr, "[::1]:20160");
    }

    #[test]
    fn server_command_lines() {
        let l = Layout::compute(&opts()).unwrap();
        assert_eq!(
            strings(&pd_args(&l.pd)),
            [
                "--config",
                "./data/playground/pd.toml",
                "--name",
                "pd-1",
                "--client-urls",
                "http://127.0.0.1:2379",
                "--advertise-client-urls",
                "http://127.0.0.1:2379",
                "--peer-urls",
                "http://127.0.0.1:2380",
                "--data-dir",
                "./data/playground/pd",
                "--log-file",
                "./data/playground/pd.log",
            ]
        );
        assert_eq!(
            strings(&kv_args(&l.kvs[1], &l.pd.endpoint)),
            [
                "--addr",
                "127.0.0.1:20161",
                "--advertise-addr",
                "127.0.0.1:20161",
                "--status-addr",
                "127.0.0.1:20181",
                "--pd-endpoints",
                "127.0.0.1:2379",
                "--data-dir",
                "./data/playground/kv-2",
                "--log-file",
                "./data/playground/kv-2.log",
                "--labels",
                "zone=z2,host=h2",
                "--capacity",
                "100GiB",
            ]
        );
    }
}
