//! The `atoll` command line: `atoll playground` runs a local cluster, `atoll ctl` reads the
//! cluster's state through PD's HTTP API, `atoll bench` loads it. Nothing here depends on the
//! server crates; the tool talks to the servers only through their public interfaces
//! (processes, HTTP, the TiKV client protocol).

pub mod bench;
pub mod ctl;
pub mod http;
pub mod playground;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "atoll",
    version,
    about = "Atoll: a distributed KV database speaking TiKV's protocol"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one atoll-pd and N atoll-kv on this machine until Ctrl-C.
    Playground(playground::PlaygroundArgs),
    /// Inspect a cluster through PD's HTTP API.
    Ctl(ctl::CtlArgs),
    /// Benchmark a TiKV-compatible cluster (or etcd) through its client protocol.
    Bench(Box<bench::BenchArgs>),
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Playground(args) => playground::run(args).await,
        Command::Ctl(args) => ctl::run(args).await,
        Command::Bench(args) => bench::run(*args).await,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::CommandFactory;

    use super::ctl::CtlCommand;
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("atoll").chain(args.iter().copied()))
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn playground_defaults() {
        let Command::Playground(a) = parse(&["playground"]).unwrap().command else {
            panic!("not playground")
        };
        assert_eq!(a.pd_port, 2379);
        assert_eq!(a.kv_count, 3);
        assert_eq!(a.kv_base_port, 20160);
        assert_eq!(a.status_base_port, 20180);
        assert_eq!(a.data_dir, PathBuf::from("./data/playground"));
        assert!(!a.clean);
        assert_eq!(a.host, "127.0.0.1");
        assert_eq!(a.bin_dir, None);
        assert_eq!(a.ready_timeout, 60);
    }

    #[test]
    fn playground_flags() {
        let cli = parse(&[
            "playground",
            "--pd-port",
            "3379",
            "--kv-count",
            "1",
            "--kv-base-port",
            "30160",
            "--status-base-port",
            "30180",
            "--data-dir",
            "/tmp/pg",
            "--clean",
            "--host",
            "0.0.0.0",
            "--bin-dir",
            "/opt/atoll/bin",
            "--ready-timeout",
            "5",
        ])
        .unwrap();
        let Command::Playground(a) = cli.command else {
            panic!("not playground")
        };
        assert_eq!(
            (a.pd_port, a.kv_count, a.kv_base_port, a.status_base_port),
            (3379, 1, 30160, 30180)
        );
        assert_eq!(a.data_dir, PathBuf::from("/tmp/pg"));
        assert!(a.clean);
        assert_eq!(a.host, "0.0.0.0");
        assert_eq!(a.bin_dir, Some(PathBuf::from("/opt/atoll/bin")));
        assert_eq!(a.ready_timeout, 5);
    }

    #[test]
    fn playground_rejects_bad_values() {
        assert!(parse(&["playground", "--pd-port", "70000"]).is_err());
        assert!(parse(&["playground", "--kv-count", "-1"]).is_err());
        assert!(parse(&["playground", "--no-such-flag"]).is_err());
    }

    #[test]
    fn bench_run_defaults_and_flags() {
        use super::bench::{BenchCommand, PhaseArg, Target};
        let bench = |args: &[&str]| match parse(args).unwrap().command {
            Command::Bench(b) => b.command,
            other => panic!("not bench: {other:?}"),
        };
        let BenchCommand::Run(r) = bench(&["bench", "run"]) else {
            panic!("not run")
        };
        assert_eq!(r.target, Target::Raw);
        assert_eq!((r.workload.as_str(), r.api.as_str()), ("a", "v2"));
        assert_eq!(
            (r.records, r.threads, r.value_size, r.txn_ops),
            (100_000, 16, 256, 1)
        );
        assert_eq!(r.phase, PhaseArg::Both);
        let BenchCommand::Run(r) = bench(&[
            "bench",
            "run",
            "--target",
            "txn",
            "-w",
            "f",
            "--txn-ops",
            "4",
            "-t",
            "128",
            "-d",
            "30s",
            "--phase",
            "run",
            "--pd",
            "a:1,b:2",
            "--json",
            "/tmp/x.json",
        ]) else {
            panic!("not run")
        };
        assert_eq!(r.target, Target::Txn);
        assert_eq!(r.pd, vec!["a:1".to_owned(), "b:2".to_owned()]);
        assert_eq!((r.txn_ops, r.threads), (4, 128));
        assert_eq!(r.duration.as_deref(), Some("30s"));
        assert_eq!(r.json, Some(PathBuf::from("/tmp/x.json")));
        let BenchCommand::Compare(c) = bench(&["bench", "compare", "--etcd", "h:1,h:2"]) else {
            panic!("not compare")
        };
        assert_eq!(c.clients, vec![1, 16, 128]);
        assert_eq!(c.workloads, vec!["put", "get", "a"]);
        assert!(parse(&["bench", "compare"]).is_err());
        assert!(parse(&["bench", "run", "--target", "mysql"]).is_err());
        assert!(matches!(bench(&["bench", "limits"]), BenchCommand::Limits(_)));
    }

    #[test]
    fn ctl_subcommands() {
        let ctl = |args: &[&str]| match parse(args).unwrap().command {
            Command::Ctl(c) => c,
            other => panic!("not ctl: {other:?}"),
        };
        let c = ctl(&["ctl", "--pd", "10.0.0.1:2379", "stores"]);
        assert_eq!(c.pd, "10.0.0.1:2379");
        assert_eq!(c.command, CtlCommand::Stores);
        assert_eq!(ctl(&["ctl", "store", "7"]).command, CtlCommand::Store { id: 7 });
        assert_eq!(ctl(&["ctl", "region", "2", "--pd", "h:1"]).pd, "h:1");
        assert_eq!(ctl(&["ctl", "region", "2"]).command, CtlCommand::Region { id: 2 });
        for (word, cmd) in [
            ("regions", CtlCommand::Regions),
            ("members", CtlCommand::Members),
            ("health", CtlCommand::Health),
            ("config", CtlCommand::Config),
            ("cluster", CtlCommand::Cluster),
        ] {
            assert_eq!(ctl(&["ctl", word]).command, cmd);
        }
        // The default endpoint is the playground's (unless ATOLL_PD is set).
        if std::env::var_os("ATOLL_PD").is_none() {
            assert_eq!(ctl(&["ctl", "health"]).pd, "127.0.0.1:2379");
        }
        assert!(parse(&["ctl", "store"]).is_err());
        assert!(parse(&["ctl", "store", "x"]).is_err());
        assert!(parse(&["ctl", "nonsense"]).is_err());
        assert!(parse(&["ctl"]).is_err());
    }
}
