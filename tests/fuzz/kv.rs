//! Generated requests for every `tikvpb.Tikv` RPC the node serves.

use atoll_proto::coprocessor;
use atoll_proto::kvrpcpb::{self, prewrite_request, KvPair, Mutation};
use atoll_proto::tikvpb::tikv_client::TikvClient;
use tonic::transport::Channel;

use super::{excerpt, finish, raw_boundary, safe_range, Outcome, G};

/// `(name, weight)` of every RPC of `tikvpb.Tikv`, in the order [`call`] numbers them.
pub const RPCS: &[(&str, u32)] = &[
    ("KvGet", 4),
    ("KvScan", 4),
    ("KvPrewrite", 6),
    ("KvPessimisticLock", 4),
    ("KVPessimisticRollback", 4),
    ("KvTxnHeartBeat", 4),
    ("KvCheckTxnStatus", 4),
    ("KvCheckSecondaryLocks", 4),
    ("KvCommit", 5),
    ("KvCleanup", 4),
    ("KvBatchGet", 4),
    ("KvBatchRollback", 4),
    ("KvScanLock", 4),
    ("KvResolveLock", 4),
    ("KvGC", 2),
    ("KvDeleteRange", 3),
    ("RawGet", 4),
    ("RawBatchGet", 4),
    ("RawPut", 5),
    ("RawBatchPut", 5),
    ("RawDelete", 4),
    ("RawBatchDelete", 4),
    ("RawScan", 4),
    ("RawDeleteRange", 3),
    ("RawBatchScan", 4),
    ("RawGetKeyTTL", 4),
    ("RawCompareAndSwap", 4),
    ("RawChecksum", 4),
    ("UnsafeDestroyRange", 2),
    ("SplitRegion", 1),
    ("Coprocessor", 4),
];

fn mutation(g: &mut G<'_>, pessimistic: bool) -> Mutation {
    let op = if pessimistic && !g.chance(1, 5) {
        kvrpcpb::Op::PessimisticLock as i32
    } else {
        g.enum_i32(7)
    };
    Mutation {
        op,
        key: g.key(),
        value: g.value(),
        assertion: g.enum_i32(3),
    }
}

fn mutations(g: &mut G<'_>, pessimistic: bool) -> Vec<Mutation> {
    let keys = g.keys();
    keys.into_iter()
        .map(|k| {
            let mut m = mutation(g, pessimistic);
            m.key = k;
            m
        })
        .collect()
}

fn pairs(g: &mut G<'_>) -> Vec<KvPair> {
    g.keys()
        .into_iter()
        .map(|key| KvPair {
            error: if g.chance(1, 20) {
                Some(kvrpcpb::KeyError {
                    abort: g.string(),
                    ..Default::default()
                })
            } else {
                None
            },
            key,
            value: g.value(),
        })
        .collect()
}

fn key_ranges(g: &mut G<'_>) -> Vec<kvrpcpb::KeyRange> {
    (0..g.below(5))
        .map(|_| {
            let (start_key, end_key) = g.range();
            kvrpcpb::KeyRange { start_key, end_key }
        })
        .collect()
}

fn limit(g: &mut G<'_>) -> u32 {
    match g.below(5) {
        0 => 0,
        1 => u32::MAX,
        _ => g.below(300) as u32,
    }
}

fn first_key(keys: &[Vec<u8>]) -> Vec<u8> {
    keys.first().cloned().unwrap_or_default()
}

/// Sends one generated request. Returns the RPC's name, the outcome, and (only if the outcome
/// breaks the rules) the request's debug form.
pub async fn call(g: &mut G<'_>, rpc: usize, clients: &[TikvClient<Channel>]) -> (Outcome, Option<String>) {
    macro_rules! send {
        ($node:expr, $method:ident, $req:expr, |$r:ident| $has_err:expr) => {{
            let req = $req;
            let shown = req.clone();
            let mut client = clients[$node].clone();
            let outcome = finish(client.$method(req), |$r| {
                if $r.region_error.is_some() {
                    Some("region")
                } else if $has_err {
                    Some("other")
                } else {
                    None
                }
            })
            .await;
            let detail = match &outcome {
                Outcome::Ok | Outcome::Error(_) => None,
                Outcome::Status(code, msg) if !super::transport_failure(*code, msg) => None,
                _ => Some(excerpt(format!("node {}: {:?}", $node, shown), 2000)),
            };
            (outcome, detail)
        }};
    }
    match RPCS[rpc].0 {
        "KvGet" => {
            let key = g.key();
            let (context, node) = g.context(&key, false);
            let req = kvrpcpb::GetRequest {
                context,
                key,
                version: g.ts(),
            };
            send!(node, kv_get, req, |r| r.region_error.is_some()
                || r.error.is_some())
        }
        "KvScan" => {
            let (start_key, end_key) = g.range();
            let (context, node) = g.context(&start_key, false);
            let req = kvrpcpb::ScanRequest {
                context,
                start_key,
                limit: limit(g),
                version: g.ts(),
                key_only: g.bool(),
                reverse: g.chance(1, 3),
                end_key,
                sample_step: if g.chance(1, 5) { g.u32() } else { 0 },
            };
            send!(node, kv_scan, req, |r| r.region_error.is_some()
                || r.error.is_some())
        }
        "KvPrewrite" => {
            let muts = mutations(g, false);
            let primary = match g.below(4) {
                0 => g.key(),
                _ => muts.first().map(|m| m.key.clone()).unwrap_or_default(),
            };
            let (context, node) = g.context(&primary, false);
            let n = muts.len();
            let actions_len = match g.below(3) {
                0 => 0,
                1 => n,
                _ => g.below(n + 3),
            };
            let req = kvrpcpb::PrewriteRequest {
                context,
                mutations: muts,
                primary_lock: primary,
                start_version: g.ts(),
                lock_ttl: *g.pick(&[0, 1, 3000, 20_000, u64::MAX]),
                skip_constraint_check: g.bool(),
                pessimistic_actions: (0..actions_len).map(|_| g.enum_i32(3)).collect(),
                txn_size: g.u64(),
                for_update_ts: if g.bool() { 0 } else { g.ts() },
                min_commit_ts: if g.bool() { 0 } else { g.ts() },
                use_async_commit: g.chance(1, 4),
                secondaries: if g.bool() { Vec::new() } else { g.keys() },
                try_one_pc: g.chance(1, 4),
                max_commit_ts: if g.bool() { 0 } else { g.ts() },
                assertion_level: g.enum_i32(3),
                for_update_ts_constraints: (0..g.below(3))
                    .map(|_| prewrite_request::ForUpdateTsConstraint {
                        index: if g.bool() { g.below(n + 2) as u32 } else { g.u32() },
                        expected_for_update_ts: g.ts(),
                    })
                    .collect(),
                txn_file_chunks: if g.chance(1, 10) {
                    vec![g.u64()]
                } else {
                    Vec::new()
                },
            };
            send!(node, kv_prewrite, req, |r| r.region_error.is_some()
                || !r.errors.is_empty())
        }
        "KvPessimisticLock" => {
            let muts = mutations(g, true);
            let primary = if g.chance(1, 4) {
                g.key()
            } else {
                muts.first().map(|m| m.key.clone()).unwrap_or_default()
            };
            let (context, node) = g.context(&primary, false);
            let start_version = g.ts();
            let req = kvrpcpb::PessimisticLockRequest {
                context,
                mutations: muts,
                primary_lock: primary,
                start_version,
                lock_ttl: *g.pick(&[0, 3000, u64::MAX]),
                for_update_ts: if g.bool() { start_version } else { g.ts() },
                is_first_lock: g.bool(),
                wait_timeout: *g.pick(&[-1, -1, 0, 1, 50, i64::MIN, i64::MAX]),
                force: g.chance(1, 5),
                return_values: g.bool(),
                min_commit_ts: g.ts(),
                check_existence: g.bool(),
                lock_only_if_exists: g.chance(1, 4),
                wake_up_mode: g.enum_i32(2),
            };
            send!(node, kv_pessimistic_lock, req, |r| r.region_error.is_some()
                || !r.errors.is_empty())
        }
        "KVPessimisticRollback" => {
            let keys = g.keys();
            let (context, node) = g.context(&first_key(&keys), false);
            let req = kvrpcpb::PessimisticRollbackRequest {
                context,
                start_version: g.ts(),
                for_update_ts: g.ts(),
                keys,
            };
            send!(node, kv_pessimistic_rollback, req, |r| r.region_error.is_some()
                || !r.errors.is_empty())
        }
        "KvTxnHeartBeat" => {
            let primary_lock = g.key();
            let (context, node) = g.context(&primary_lock, false);
            let req = kvrpcpb::TxnHeartBeatRequest {
                context,
                primary_lock,
                start_version: g.ts(),
                advise_lock_ttl: g.u64(),
                is_txn_file: g.chance(1, 10),
            };
            send!(node, kv_txn_heart_beat, req, |r| r.region_error.is_some()
                || r.error.is_some())
        }
        "KvCheckTxnStatus" => {
            let primary_key = g.key();
            let (context, node) = g.context(&primary_key, false);
            let req = kvrpcpb::CheckTxnStatusRequest {
                context,
                primary_key,
                lock_ts: g.ts(),
                caller_start_ts: g.ts(),
                current_ts: g.ts(),
                rollback_if_not_exist: g.bool(),
                force_sync_commit: g.bool(),
                resolving_pessimistic_lock: g.bool(),
                verify_is_primary: g.bool(),
                is_txn_file: g.chance(1, 10),
            };
            send!(node, kv_check_txn_status, req, |r| r.region_error.is_some()
                || r.error.is_some())
        }
        "KvCheckSecondaryLocks" => {
            let keys = g.keys();
            let (context, node) = g.context(&first_key(&keys), false);
            let req = kvrpcpb::CheckSecondaryLocksRequest {
                context,
                keys,
                start_version: g.ts(),
            };
            send!(node, kv_check_secondary_locks, req, |r| r.region_error.is_some()
                || r.error.is_some())
        }
        "KvCommit" => {
            let keys = g.keys();
            let (context, node) = g.context(&first_key(&keys), false);
            let req = kvrpcpb::CommitRequest {
                context,
                start_version: g.ts(),
                keys,
                commit_version: g.ts(),
                is_txn_file: g.chance(1, 10),
            };
            send!(node, kv_commit, req, |r| r.region_error.is_some()
                || r.error.is_some())
        }
        "KvCleanup" => {
            let key = g.key();
            let (context, node) = g.context(&key, false);
            let req = kvrpcpb::CleanupRequest {
                context,
                key,
                start_version: g.ts(),
                current_ts: g.ts(),
            };
            send!(node, kv_cleanup, req, |r| r.region_error.is_some()
                || r.error.is_some())
        }
        "KvBatchGet" => {
            let keys = g.keys();
            let (context, node) = g.context(&first_key(&keys), false);
            let req = kvrpcpb::BatchGetRequest {
                context,
                keys,
                version: g.ts(),
            };
            send!(node, kv_batch_get, req, |r| r.region_error.is_some()
                || r.error.is_some())
        }
        "KvBatchRollback" => {
            let keys = g.keys();
            let (context, node) = g.context(&first_key(&keys), false);
            let req = kvrpcpb::BatchRollbackRequest {
                context,
                start_version: g.ts(),
                keys,
                is_txn_file: g.chance(1, 10),
            };
            send!(node, kv_batch_rollback, req, |r| r.region_error.is_some()
                || r.error.is_some())
        }
        "KvScanLock" => {
            let (start_key, end_key) = g.range();
            let (context, node) = g.context(&start_key, false);
            let req = kvrpcpb::ScanLockRequest {
                context,
                max_version: g.ts(),
                start_key,
                limit: limit(g),
                end_key,
            };
            send!(node, kv_scan_lock, req, |r| r.region_error.is_some()
                || r.error.is_some())
        }
        "KvResolveLock" => {
            let keys = if g.bool() { Vec::new() } else { g.keys() };
            let hint = if keys.is_empty() {
                g.key()
            } else {
                first_key(&keys)
            };
            let (context, node) = g.context(&hint, false);
            let req = kvrpcpb::ResolveLockRequest {
                context,
                start_version: g.ts(),
                commit_version: if g.bool() { 0 } else { g.ts() },
                txn_infos: (0..g.below(3))
                    .map(|_| kvrpcpb::TxnInfo {
                        txn: g.ts(),
                        status: g.ts(),
                        is_txn_file: g.chance(1, 10),
                    })
                    .collect(),
                keys,
                is_txn_file: g.chance(1, 10),
            };
            send!(node, kv_resolve_lock, req, |r| r.region_error.is_some()
                || r.error.is_some())
        }
        "KvGC" => {
            let hint = g.key();
            let (context, node) = g.context(&hint, false);
            let req = kvrpcpb::GcRequest {
                context,
                safe_point: g.ts(),
            };
            send!(node, kv_gc, req, |r| r.region_error.is_some()
                || r.error.is_some())
        }
        "KvDeleteRange" => {
            let (s, e) = g.range();
            let (start_key, end_key) = safe_range(s, e);
            let (context, node) = g.context(&start_key, false);
            let req = kvrpcpb::DeleteRangeRequest {
                context,
                start_key,
                end_key,
                notify_only: g.chance(1, 4),
            };
            send!(node, kv_delete_range, req, |r| r.region_error.is_some()
                || !r.error.is_empty())
        }
        "RawGet" => {
            let key = g.key();
            let (context, node) = g.context(&key, true);
            let req = kvrpcpb::RawGetRequest {
                context,
                key,
                cf: g.cf(),
            };
            send!(node, raw_get, req, |r| r.region_error.is_some()
                || !r.error.is_empty())
        }
        "RawBatchGet" => {
            let keys = g.keys();
            let (context, node) = g.context(&first_key(&keys), true);
            let req = kvrpcpb::RawBatchGetRequest {
                context,
                keys,
                cf: g.cf(),
            };
            send!(node, raw_batch_get, req, |r| r.region_error.is_some())
        }
        "RawPut" => {
            let key = g.key();
            let (context, node) = g.context(&key, true);
            let req = kvrpcpb::RawPutRequest {
                context,
                key,
                value: g.value(),
                cf: g.cf(),
                ttl: if g.bool() { 0 } else { g.u64() },
                for_cas: g.chance(1, 5),
            };
            send!(node, raw_put, req, |r| r.region_error.is_some()
                || !r.error.is_empty())
        }
        "RawBatchPut" => {
            let pairs = pairs(g);
            let hint = pairs.first().map(|p| p.key.clone()).unwrap_or_default();
            let (context, node) = g.context(&hint, true);
            let n = pairs.len();
            let ttls_len = match g.below(4) {
                0 => 1,
                1 => n,
                2 => g.below(n + 3),
                _ => 0,
            };
            let req = kvrpcpb::RawBatchPutRequest {
                context,
                pairs,
                cf: g.cf(),
                ttl: if g.bool() { 0 } else { g.u64() },
                for_cas: g.chance(1, 5),
                ttls: (0..ttls_len)
                    .map(|_| if g.bool() { 0 } else { g.u64() })
                    .collect(),
            };
            send!(node, raw_batch_put, req, |r| r.region_error.is_some()
                || !r.error.is_empty())
        }
        "RawDelete" => {
            let key = g.key();
            let (context, node) = g.context(&key, true);
            let req = kvrpcpb::RawDeleteRequest {
                context,
                key,
                cf: g.cf(),
                for_cas: g.chance(1, 5),
            };
            send!(node, raw_delete, req, |r| r.region_error.is_some()
                || !r.error.is_empty())
        }
        "RawBatchDelete" => {
            let keys = g.keys();
            let (context, node) = g.context(&first_key(&keys), true);
            let req = kvrpcpb::RawBatchDeleteRequest {
                context,
                keys,
                cf: g.cf(),
                for_cas: g.chance(1, 5),
            };
            send!(node, raw_batch_delete, req, |r| r.region_error.is_some()
                || !r.error.is_empty())
        }
        "RawScan" => {
            let (start_key, end_key) = g.range();
            let (context, node) = g.context(&start_key, true);
            let req = kvrpcpb::RawScanRequest {
                context,
                start_key,
                limit: limit(g),
                key_only: g.bool(),
                cf: g.cf(),
                reverse: g.chance(1, 3),
                end_key,
            };
            send!(node, raw_scan, req, |r| r.region_error.is_some())
        }
        "RawDeleteRange" => {
            let (s, e) = g.range();
            let (start_key, end_key) = safe_range(s, e);
            let (context, node) = g.context(&start_key, true);
            let req = kvrpcpb::RawDeleteRangeRequest {
                context,
                start_key,
                end_key,
                cf: g.cf(),
            };
            send!(node, raw_delete_range, req, |r| r.region_error.is_some()
                || !r.error.is_empty())
        }
        "RawBatchScan" => {
            let ranges = key_ranges(g);
            let hint = ranges.first().map(|r| r.start_key.clone()).unwrap_or_default();
            let (context, node) = g.context(&hint, true);
            let req = kvrpcpb::RawBatchScanRequest {
                context,
                ranges,
                each_limit: limit(g),
                key_only: g.bool(),
                cf: g.cf(),
                reverse: g.chance(1, 3),
            };
            send!(node, raw_batch_scan, req, |r| r.region_error.is_some())
        }
        "RawGetKeyTTL" => {
            let key = g.key();
            let (context, node) = g.context(&key, true);
            let req = kvrpcpb::RawGetKeyTtlRequest {
                context,
                key,
                cf: g.cf(),
            };
            send!(node, raw_get_key_ttl, req, |r| r.region_error.is_some()
                || !r.error.is_empty())
        }
        "RawCompareAndSwap" => {
            let key = g.key();
            let (context, node) = g.context(&key, true);
            let req = kvrpcpb::RawCasRequest {
                context,
                key,
                value: g.value(),
                previous_not_exist: g.bool(),
                previous_value: g.value(),
                cf: g.cf(),
                ttl: if g.bool() { 0 } else { g.u64() },
            };
            send!(node, raw_compare_and_swap, req, |r| r.region_error.is_some()
                || !r.error.is_empty())
        }
        "RawChecksum" => {
            let ranges = key_ranges(g);
            let hint = ranges.first().map(|r| r.start_key.clone()).unwrap_or_default();
            let (context, node) = g.context(&hint, true);
            let req = kvrpcpb::RawChecksumRequest {
                context,
                algorithm: g.enum_i32(1),
                ranges,
            };
            send!(node, raw_checksum, req, |r| r.region_error.is_some()
                || !r.error.is_empty())
        }
        "UnsafeDestroyRange" => {
            let (s, e) = g.range();
            let (start_key, end_key) = safe_range(s, e);
            let (context, node) = g.context(&start_key, false);
            let req = kvrpcpb::UnsafeDestroyRangeRequest {
                context,
                start_key,
                end_key,
            };
            send!(node, unsafe_destroy_range, req, |r| r.region_error.is_some()
                || !r.error.is_empty())
        }
        "SplitRegion" => {
            let raw = g.bool();
            let split_keys: Vec<Vec<u8>> = (0..g.below(3))
                .map(|_| {
                    if raw {
                        raw_boundary(g.split_key())
                    } else {
                        g.split_key()
                    }
                })
                .collect();
            let (context, node) = g.context(&first_key(&split_keys), raw);
            #[allow(deprecated)]
            let req = kvrpcpb::SplitRegionRequest {
                context,
                split_key: if g.chance(1, 4) {
                    raw_boundary(g.split_key())
                } else {
                    Vec::new()
                },
                split_keys,
                is_raw_kv: raw,
            };
            send!(node, split_region, req, |r| r.region_error.is_some())
        }
        "Coprocessor" => {
            let ranges: Vec<coprocessor::KeyRange> = (0..g.below(4))
                .map(|_| {
                    let (start, end) = g.range();
                    coprocessor::KeyRange { start, end }
                })
                .collect();
            let hint = ranges.first().map(|r| r.start.clone()).unwrap_or_default();
            let (context, node) = g.context(&hint, false);
            let tasks = (0..g.below(3))
                .map(|_| {
                    let region = g.region_meta();
                    coprocessor::StoreBatchTask {
                        region_id: region.id,
                        region_epoch: region.region_epoch,
                        peer: region.peers.first().copied(),
                        ranges: ranges.clone(),
                        task_id: g.u64(),
                    }
                })
                .collect();
            let req = coprocessor::Request {
                context,
                tp: *g.pick(&[103, 104, 105, 0, -1, i64::MAX]),
                data: g.small_bytes(64),
                ranges,
                is_cache_enabled: g.bool(),
                cache_if_match_version: g.u64(),
                start_ts: g.ts(),
                schema_ver: g.i64(),
                is_trace_enabled: g.bool(),
                paging_size: g.u64(),
                tasks,
                connection_id: g.u64(),
                connection_alias: g.string(),
            };
            send!(node, coprocessor, req, |r| r.region_error.is_some()
                || !r.other_error.is_empty())
        }
        other => unreachable!("unknown kv rpc {other}"),
    }
}
