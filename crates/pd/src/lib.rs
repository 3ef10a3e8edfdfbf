//! Atoll's placement driver (PD).
//!
//! Owns the cluster's metadata and serves it the way TiKV's PD does, so real TiKV clients and
//! Atoll nodes can use it unchanged:
//!
//! * identity: a stable, persisted, non-zero cluster id and member id;
//! * the timestamp oracle ([`tso`]) and the cluster-wide id allocator ([`id_alloc`]);
//! * stores, regions (the [`region_tree`]) and bootstrap state ([`cluster`]);
//! * scheduling ([`schedule`]): the replica checker and the operator controller keep every
//!   region at `max-replicas` voters, sending steps to region leaders in heartbeat responses;
//!   `[schedule]`/`[replication]` can change at runtime ([`options`]);
//! * GC safe points ([`gc`], advanced by PD itself in [`gc_driver`] after resolving the locks
//!   below them with [`gc_resolver`]) and keyspaces ([`keyspace`]);
//! * gRPC `pdpb.PD` and `keyspacepb.Keyspace`, PD's HTTP JSON API and `/metrics`, all on one
//!   port ([`server`]).
//!
//! Entry points: [`run`] (RocksDB under `data_dir`, until a shutdown future resolves) and
//! [`PdServer::start`] (any [`engine_traits::KvEngine`], e.g. the in-memory one in tests).
//!
//! It depends on no node crate (`raftstore`, `storage`, `server`, ...): only the protocol
//! (`atoll-proto`), the key codec (`txn_types`) and the engine seam (`engine_traits`,
//! `engine_rocks`). It is a gRPC client of the nodes only to resolve locks before a GC safe
//! point moves (`tikvpb.Tikv`, as TiDB's GC worker).
//!
//! Invariants:
//! * timestamps strictly increase, across restarts too (a persisted window lies ahead of every
//!   timestamp handed out);
//! * an id is never handed out twice, across restarts too;
//! * the region tree never holds overlapping regions, and a report with an older epoch never
//!   replaces a newer one;
//! * the GC safe point never moves back;
//! * every request but `GetMembers` carries our cluster id, and every response carries it.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cluster;
pub mod config;
pub mod context;
pub mod duration;
pub mod error;
pub mod gc;
pub mod gc_driver;
pub mod gc_resolver;
pub mod hb_streams;
pub mod heatmap;
mod http;
pub mod id_alloc;
pub mod keyspace;
mod keyspace_service;
pub mod metrics;
pub mod options;
mod pd_service;
mod pd_streams;
pub mod region_info;
pub mod region_tree;
pub mod schedule;
pub mod server;
pub mod storage;
pub mod store_info;
pub mod tso;

pub use config::PdConfig;
pub use error::{Error, Result};
pub use server::{run, PdServer};

#[cfg(test)]
mod grpc_schedule_tests;
#[cfg(test)]
mod grpc_tests;
