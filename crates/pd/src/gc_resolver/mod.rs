//! Resolving every lock at or below a GC safe point before PD publishes it, as TiDB's GC
//! worker (and tikv-client's `gc()`: `cleanup_locks`, then `UpdateGCSafePoint`) does. Without
//! it, a node's GC could remove the commit record of a crashed transaction's primary, and a
//! later resolver would roll back the secondaries of a committed transaction.
//!
//! One round ([`resolve_locks`]), for a candidate safe point `sp`:
//! 1. every region in PD's region tree, at its leader (the leader store's address from PD's
//!    store info), is scanned with `KvScanLock` (`max_version = sp`, 1024 locks a page, the
//!    next page from the last key + `\0`);
//! 2. each page's locks are grouped by transaction; a transaction not settled earlier in the
//!    round gets `KvCheckTxnStatus` on its primary (`current_ts = u64::MAX`: rolled back unless
//!    committed), an async-commit primary still locked gets `KvCheckSecondaryLocks` for its
//!    secondaries (by region), and when some key fell back to 2PC, `KvCheckTxnStatus` again
//!    with `force_sync_commit` ([`decide`] holds these decisions);
//! 3. the page's region gets one `KvResolveLock` naming every transaction of the page with
//!    its commit ts (0: roll back).
//!
//! Any region error, key error or unreachable store fails the round: the caller must not
//! publish the safe point (the next round starts over). Requests use API V1 contexts: the node
//! then scans all the region's transactional locks (whatever their keyspace) and answers keys as
//! the client wrote them (an API V2 key keeps its `x` + keyspace prefix), which is exactly what
//! V1 requests take back; transactional keys are stored memcomparable-encoded in both versions,
//! so a key's region is the one holding its encoding.

pub mod client;
pub mod decide;
#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use atoll_proto::{errorpb, kvrpcpb};

use crate::cluster::Cluster;
use crate::region_info::RegionInfo;
use client::{KvRpc, StoreClients};
use decide::{AsyncCommitVerdict, PrimaryStatus, SecondaryCheck, TxnLocks};

/// Locks asked for per `KvScanLock` page.
pub const SCAN_LOCK_LIMIT: u32 = 1024;

/// What lock resolution needs to know of the cluster: regions (range keys) and store addresses.
pub trait Topology: Sync {
    /// Every region, in key order.
    fn regions(&self) -> Vec<RegionInfo>;
    /// The region holding range key `key`.
    fn region_by_key(&self, key: &[u8]) -> Option<RegionInfo>;
    /// The address of a store's `tikvpb.Tikv` service.
    fn store_address(&self, store_id: u64) -> Option<String>;
}

impl Topology for Cluster {
    fn regions(&self) -> Vec<RegionInfo> {
        Cluster::regions(self)
    }

    fn region_by_key(&self, key: &[u8]) -> Option<RegionInfo> {
        Cluster::region_by_key(self, key).ok().flatten()
    }

    fn store_address(&self, store_id: u64) -> Option<String> {
        self.get_store(store_id)
            .ok()
            .map(|s| s.meta.address)
            .filter(|a| !a.is_empty())
    }
}

/// Why the locks below a safe point could not all be resolved (all retryable next round).
#[derive(Debug, thiserror::Error)]
pub enum ResolveLocksError {
    #[error("region {region_id} has no known leader")]
    NoLeader { region_id: u64 },
    #[error("store {store_id} (leader of region {region_id}) has no known address")]
    NoStoreAddress { store_id: u64, region_id: u64 },
    #[error("no region holds key {key}")]
    NoRegion { key: String },
    #[error("{rpc} to region {region_id} at {addr}: region error: {message}")]
    Region {
        rpc: &'static str,
        region_id: u64,
        addr: String,
        message: String,
    },
    #[error("{rpc} to region {region_id} at {addr}: key error: {message}")]
    Key {
        rpc: &'static str,
        region_id: u64,
        addr: String,
        message: String,
    },
    #[error("{rpc} to region {region_id} at {addr} failed: {message}")]
    Rpc {
        rpc: &'static str,
        region_id: u64,
        addr: String,
        message: String,
    },
    #[error("transaction {start_ts} is still locked after forcing a sync commit check")]
    StillLocked { start_ts: u64 },
}

/// What a round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolveStats {
    /// Regions scanned.
    pub regions: usize,
    /// Locks found (and resolved).
    pub locks: usize,
    /// Transactions whose status was checked.
    pub txns: usize,
    /// Of those, committed ones.
    pub committed: usize,
}

/// PD's lock resolver: cached store clients, and one round at a time (the automatic advance
/// and `POST /pd/api/v1/gc/safepoint` share it).
#[derive(Default)]
pub struct GcLockResolver {
    clients: StoreClients,
    round: tokio::sync::Mutex<()>,
}

impl GcLockResolver {
    pub fn new() -> GcLockResolver {
        GcLockResolver::default()
    }

    /// Resolves every lock with start ts ≤ `safe_point` in every region of `cluster`.
    pub async fn resolve(
        &self,
        cluster: &Cluster,
        safe_point: u64,
    ) -> Result<ResolveStats, ResolveLocksError> {
        let _round = self.round.lock().await;
        resolve_locks(cluster, &self.clients, safe_point).await
    }
}

/// One round: resolves every lock with start ts ≤ `safe_point` in every region of `topo`.
pub async fn resolve_locks<T: Topology, K: KvRpc>(
    topo: &T,
    kv: &K,
    safe_point: u64,
) -> Result<ResolveStats, ResolveLocksError> {
    let mut round = Round {
        topo,
        kv,
        safe_point,
        settled: HashMap::new(),
        stats: ResolveStats::default(),
    };
    for region in topo.regions() {
        round.region(&region).await?;
        round.stats.regions += 1;
    }
    if round.stats.locks > 0 {
        tracing::info!(
            safe_point,
            regions = round.stats.regions,
            locks = round.stats.locks,
            txns = round.stats.txns,
            committed = round.stats.committed,
            "resolved locks below the new gc safe point"
        );
    }
    Ok(round.stats)
}

/// Lower-case hex of a key, for messages.
fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn describe_region_error(e: &errorpb::Error) -> String {
    if e.message.is_empty() {
        format!("{e:?}")
    } else {
        e.message.clone()
    }
}

/// Where a request for one region goes.
struct Route {
    region_id: u64,
    addr: String,
    ctx: kvrpcpb::Context,
}

impl Route {
    fn of(topo: &impl Topology, region: &RegionInfo) -> Result<Route, ResolveLocksError> {
        let region_id = region.id();
        let leader = region
            .leader
            .filter(|l| l.store_id != 0)
            .ok_or(ResolveLocksError::NoLeader { region_id })?;
        let addr = topo
            .store_address(leader.store_id)
            .ok_or(ResolveLocksError::NoStoreAddress {
                store_id: leader.store_id,
                region_id,
            })?;
        let ctx = kvrpcpb::Context {
            region_id,
            region_epoch: region.meta.region_epoch,
            peer: Some(leader),
            ..Default::default()
        };
        Ok(Route { region_id, addr, ctx })
    }

    fn context(&self) -> Option<kvrpcpb::Context> {
        Some(self.ctx.clone())
    }

    fn rpc_failed(&self, rpc: &'static str, status: tonic::Status) -> ResolveLocksError {
        ResolveLocksError::Rpc {
            rpc,
            region_id: self.region_id,
            addr: self.addr.clone(),
            message: format!("{}: {}", status.code(), status.message()),
        }
    }

    /// Fails on a region error or a key error in an answer.
    fn check(
        &self,
        rpc: &'static str,
        region_error: Option<&errorpb::Error>,
        key_error: Option<&kvrpcpb::KeyError>,
    ) -> Result<(), ResolveLocksError> {
        if let Some(e) = region_error {
            return Err(ResolveLocksError::Region {
                rpc,
                region_id: self.region_id,
                addr: self.addr.clone(),
                message: describe_region_error(e),
            });
        }
        if let Some(e) = key_error {
            return Err(ResolveLocksError::Key {
                rpc,
                region_id: self.region_id,
                addr: self.addr.clone(),
                message: format!("{e:?}"),
            });
        }
        Ok(())
    }
}

/// A transaction's fate: commit ts (0: rolled back), and whether that settles its locks in
/// every region (see [`decide::rollback_is_final`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settled {
    commit_ts: u64,
    is_final: bool,
}

impl Settled {
    fn committed(commit_ts: u64) -> Settled {
        Settled {
            commit_ts,
            is_final: true,
        }
    }

    fn rolled_back() -> Settled {
        Settled {
            commit_ts: 0,
            is_final: true,
        }
    }

    fn from_primary(status: &PrimaryStatus) -> Option<Settled> {
        match status {
            PrimaryStatus::Committed(ts) => Some(Settled::committed(*ts)),
            PrimaryStatus::RolledBack(action) => Some(Settled {
                commit_ts: 0,
                is_final: decide::rollback_is_final(*action),
            }),
            PrimaryStatus::Locked(_) => None,
        }
    }
}

struct Round<'a, T, K> {
    topo: &'a T,
    kv: &'a K,
    safe_point: u64,
    /// Transactions settled for good this round: start ts → commit ts (0: rolled back).
    settled: HashMap<u64, u64>,
    stats: ResolveStats,
}

impl<T: Topology, K: KvRpc> Round<'_, T, K> {
    fn route_of_key(&self, key: &[u8]) -> Result<Route, ResolveLocksError> {
        let region = self
            .topo
            .region_by_key(&decide::range_key(key))
            .ok_or_else(|| ResolveLocksError::NoRegion { key: hex(key) })?;
        Route::of(self.topo, &region)
    }

    /// Scans `region` page by page, resolving each page's locks.
    async fn region(&mut self, region: &RegionInfo) -> Result<(), ResolveLocksError> {
        let route = Route::of(self.topo, region)?;
        let mut start = Vec::new();
        loop {
            let req = kvrpcpb::ScanLockRequest {
                context: route.context(),
                max_version: self.safe_point,
                start_key: std::mem::take(&mut start),
                limit: SCAN_LOCK_LIMIT,
                end_key: Vec::new(),
            };
            const RPC: &str = "KvScanLock";
            let resp = self
                .kv
                .scan_lock(&route.addr, req)
                .await
                .map_err(|s| route.rpc_failed(RPC, s))?;
            route.check(RPC, resp.region_error.as_ref(), resp.error.as_ref())?;
            let Some(last) = resp.locks.last() else {
                return Ok(());
            };
            start = last.key.clone();
            start.push(0);
            self.resolve_page(&route, &resp.locks).await?;
            if resp.locks.len() < SCAN_LOCK_LIMIT as usize {
                return Ok(());
            }
        }
    }

    /// Settles the transactions of one page of `route`'s locks and resolves them there.
    async fn resolve_page(
        &mut self,
        route: &Route,
        locks: &[kvrpcpb::LockInfo],
    ) -> Result<(), ResolveLocksError> {
        let mut statuses = BTreeMap::new();
        for txn in decide::group_by_txn(locks) {
            let commit_ts = match self.settled.get(&txn.start_ts) {
                Some(ts) => *ts,
                None => {
                    let s = self.settle(&txn).await?;
                    self.stats.txns += 1;
                    if s.commit_ts > 0 {
                        self.stats.committed += 1;
                    }
                    if s.is_final {
                        self.settled.insert(txn.start_ts, s.commit_ts);
                    }
                    tracing::debug!(
                        start_ts = txn.start_ts,
                        commit_ts = s.commit_ts,
                        region_id = route.region_id,
                        "settled a transaction with locks below the gc safe point"
                    );
                    s.commit_ts
                }
            };
            statuses.insert(txn.start_ts, commit_ts);
        }
        let req = kvrpcpb::ResolveLockRequest {
            context: route.context(),
            txn_infos: decide::txn_infos(&statuses),
            ..Default::default()
        };
        const RPC: &str = "KvResolveLock";
        let resp = self
            .kv
            .resolve_lock(&route.addr, req)
            .await
            .map_err(|s| route.rpc_failed(RPC, s))?;
        route.check(RPC, resp.region_error.as_ref(), resp.error.as_ref())?;
        self.stats.locks += locks.len();
        Ok(())
    }

    /// Decides whether `txn` committed (and at what ts) or is rolled back.
    async fn settle(&self, txn: &TxnLocks) -> Result<Settled, ResolveLocksError> {
        let status = self.check_txn_status(txn, false).await?;
        if let Some(s) = Settled::from_primary(&status) {
            return Ok(s);
        }
        if let PrimaryStatus::Locked(lock) = &status {
            if lock.use_async_commit {
                match self.check_secondaries(txn.start_ts, lock).await? {
                    AsyncCommitVerdict::Committed(ts) => return Ok(Settled::committed(ts)),
                    AsyncCommitVerdict::RolledBack => return Ok(Settled::rolled_back()),
                    AsyncCommitVerdict::Fallback2pc => {}
                }
            }
        }
        let status = self.check_txn_status(txn, true).await?;
        Settled::from_primary(&status).ok_or(ResolveLocksError::StillLocked {
            start_ts: txn.start_ts,
        })
    }

    /// `KvCheckTxnStatus` on `txn`'s primary, rolling it back unless committed (or an
    /// async-commit primary, unless `force_sync_commit`).
    async fn check_txn_status(
        &self,
        txn: &TxnLocks,
        force_sync_commit: bool,
    ) -> Result<PrimaryStatus, ResolveLocksError> {
        let route = self.route_of_key(&txn.primary)?;
        let req = kvrpcpb::CheckTxnStatusRequest {
            context: route.context(),
            primary_key: txn.primary.clone(),
            lock_ts: txn.start_ts,
            caller_start_ts: 0,
            current_ts: u64::MAX,
            rollback_if_not_exist: true,
            force_sync_commit,
            resolving_pessimistic_lock: txn.all_pessimistic,
            ..Default::default()
        };
        const RPC: &str = "KvCheckTxnStatus";
        let resp = self
            .kv
            .check_txn_status(&route.addr, req)
            .await
            .map_err(|s| route.rpc_failed(RPC, s))?;
        route.check(RPC, resp.region_error.as_ref(), resp.error.as_ref())?;
        Ok(decide::primary_status(&resp))
    }

    /// `KvCheckSecondaryLocks` for the secondaries of a locked async-commit `primary`, by
    /// region, and the verdict on them.
    async fn check_secondaries(
        &self,
        start_ts: u64,
        primary: &kvrpcpb::LockInfo,
    ) -> Result<AsyncCommitVerdict, ResolveLocksError> {
        let mut regions = HashMap::new();
        let groups = decide::group_keys_by_region(&primary.secondaries, |k| {
            let r = self.topo.region_by_key(k)?;
            let id = r.id();
            regions.insert(id, r);
            Some(id)
        })
        .map_err(|k| ResolveLocksError::NoRegion { key: hex(&k) })?;
        let mut checks = Vec::with_capacity(groups.len());
        for (region_id, keys) in groups {
            let Some(region) = regions.get(&region_id) else {
                let key = keys.first().map(|k| hex(k)).unwrap_or_default();
                return Err(ResolveLocksError::NoRegion { key });
            };
            let route = Route::of(self.topo, region)?;
            let asked = keys.len();
            let req = kvrpcpb::CheckSecondaryLocksRequest {
                context: route.context(),
                keys,
                start_version: start_ts,
            };
            const RPC: &str = "KvCheckSecondaryLocks";
            let resp = self
                .kv
                .check_secondary_locks(&route.addr, req)
                .await
                .map_err(|s| route.rpc_failed(RPC, s))?;
            route.check(RPC, resp.region_error.as_ref(), resp.error.as_ref())?;
            let check = SecondaryCheck::new(asked, resp);
            let committed = check.commit_ts > 0;
            checks.push(check);
            if committed {
                break;
            }
        }
        Ok(decide::async_commit_verdict(primary, &checks))
    }
}
