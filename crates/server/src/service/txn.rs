//! The transactional handlers of `tikvpb.Tikv`: each decodes its request into a storage call
//! and encodes the outcome. Region errors go in `region_error`; transaction errors become
//! `KeyError`s (see `crate::errors::split_txn_error`).

use std::collections::HashMap;

use atoll_proto::kvrpcpb::*;
use storage::txn::actions::{PessimisticLockOptions, TxnProps, TxnStatus};
use storage::txn::{self, SecondaryLocksStatus, TxnStorage};
use txn_types::TimeStamp;

use crate::errors::split_txn_error;
use crate::raftkv::RaftKv;

/// Fills `region_error` and `errors` (a list of `KeyError`s) of a response.
macro_rules! fill_key_errs {
    ($resp:ident, $e:expr) => {{
        let (region_error, error) = split_txn_error($e);
        $resp.region_error = region_error;
        $resp.errors = error.into_iter().collect();
    }};
}

/// Fills `region_error` and `error` of a read response that also carries per-pair errors:
/// tikv-client reads key errors of scans and batch gets only from `pairs`, so a key error is
/// put in both places, as TiKV does.
macro_rules! fill_pairs_err {
    ($resp:ident, $e:expr) => {{
        let (region_error, error) = split_txn_error($e);
        $resp.region_error = region_error;
        if let Some(error) = &error {
            $resp.pairs = vec![KvPair {
                error: Some(error.clone()),
                ..Default::default()
            }];
        }
        $resp.error = error;
    }};
}

/// Fills `region_error` and `error` (a `KeyError`) of a response from a storage error.
macro_rules! fill_key_err {
    ($resp:ident, $e:expr) => {{
        let (region_error, error) = split_txn_error($e);
        $resp.region_error = region_error;
        $resp.error = error;
    }};
}

fn ctx(c: &Option<Context>) -> Context {
    c.clone().unwrap_or_default()
}

/// Read results as `KvPair`s, a lock error in place of a value.
fn kv_pairs(items: Vec<txn::KvItem>) -> Result<Vec<KvPair>, storage::Error> {
    let mut out = Vec::with_capacity(items.len());
    for (key, item) in items {
        match item {
            Ok(value) => out.push(KvPair {
                key,
                value,
                ..Default::default()
            }),
            Err(e @ storage::Error::Txn(_)) => {
                let (_, error) = split_txn_error(e);
                out.push(KvPair {
                    key,
                    error,
                    ..Default::default()
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

pub async fn get(s: &TxnStorage<RaftKv>, req: GetRequest) -> GetResponse {
    let mut resp = GetResponse::default();
    match s.get(&ctx(&req.context), &req.key, req.version).await {
        Ok(Some(v)) => resp.value = v,
        Ok(None) => resp.not_found = true,
        Err(e) => fill_key_err!(resp, e),
    }
    resp
}

pub async fn batch_get(s: &TxnStorage<RaftKv>, req: BatchGetRequest) -> BatchGetResponse {
    let mut resp = BatchGetResponse::default();
    match s
        .batch_get(&ctx(&req.context), &req.keys, req.version)
        .await
        .and_then(kv_pairs)
    {
        Ok(pairs) => resp.pairs = pairs,
        Err(e) => fill_pairs_err!(resp, e),
    }
    resp
}

pub async fn scan(s: &TxnStorage<RaftKv>, req: ScanRequest) -> ScanResponse {
    let mut resp = ScanResponse::default();
    let r = s
        .scan(
            &ctx(&req.context),
            &req.start_key,
            &req.end_key,
            req.limit,
            req.version,
            req.key_only,
            req.reverse,
        )
        .await
        .and_then(kv_pairs);
    match r {
        Ok(pairs) => resp.pairs = pairs,
        Err(e) => fill_pairs_err!(resp, e),
    }
    resp
}

pub async fn prewrite(s: &TxnStorage<RaftKv>, req: PrewriteRequest) -> PrewriteResponse {
    let mut resp = PrewriteResponse::default();
    let is_pessimistic = req.for_update_ts != 0;
    use prewrite_request::PessimisticAction;
    // Older clients send `is_pessimistic_lock` (repeated bool) in the same field: true is
    // DO_PESSIMISTIC_CHECK on the wire.
    let pessimistic_checks = req
        .pessimistic_actions
        .iter()
        .map(|a| is_pessimistic && *a == PessimisticAction::DoPessimisticCheck as i32)
        .collect();
    let constraint_checks = req
        .pessimistic_actions
        .iter()
        .map(|a| *a == PessimisticAction::DoConstraintCheck as i32)
        .collect();
    let props = TxnProps {
        start_ts: TimeStamp::new(req.start_version),
        primary: req.primary_lock.clone(),
        lock_ttl: req.lock_ttl,
        txn_size: req.txn_size,
        for_update_ts: TimeStamp::new(req.for_update_ts),
        min_commit_ts: TimeStamp::new(req.min_commit_ts),
        max_commit_ts: TimeStamp::new(req.max_commit_ts),
        use_async_commit: req.use_async_commit,
        secondaries: req.secondaries.clone(),
        try_one_pc: req.try_one_pc,
        skip_constraint_check: req.skip_constraint_check,
    };
    let r = s
        .prewrite(
            &ctx(&req.context),
            txn::PrewriteRequest {
                mutations: req.mutations,
                pessimistic_checks,
                constraint_checks,
                props,
            },
        )
        .await;
    match r {
        Ok(r) => {
            resp.errors = r
                .errors
                .into_iter()
                .filter_map(|e| split_txn_error(e).1)
                .collect();
            resp.min_commit_ts = r.min_commit_ts.into_inner();
            resp.one_pc_commit_ts = r.one_pc_commit_ts.into_inner();
        }
        Err(e) => {
            fill_key_errs!(resp, e);
        }
    }
    resp
}

pub async fn commit(s: &TxnStorage<RaftKv>, req: CommitRequest) -> CommitResponse {
    let mut resp = CommitResponse::default();
    match s
        .commit(
            &ctx(&req.context),
            &req.keys,
            req.start_version,
            req.commit_version,
        )
        .await
    {
        Ok(ts) => resp.commit_version = ts.into_inner(),
        Err(e) => fill_key_err!(resp, e),
    }
    resp
}

pub async fn batch_rollback(s: &TxnStorage<RaftKv>, req: BatchRollbackRequest) -> BatchRollbackResponse {
    let mut resp = BatchRollbackResponse::default();
    if let Err(e) = s
        .batch_rollback(&ctx(&req.context), &req.keys, req.start_version)
        .await
    {
        fill_key_err!(resp, e);
    }
    resp
}

pub async fn cleanup(s: &TxnStorage<RaftKv>, req: CleanupRequest) -> CleanupResponse {
    let mut resp = CleanupResponse::default();
    match s
        .cleanup(&ctx(&req.context), &req.key, req.start_version, req.current_ts)
        .await
    {
        Ok(()) => {}
        // A committed transaction is reported through commit_version, as TiKV does.
        Err(storage::Error::Txn(t)) if matches!(*t, storage::mvcc::TxnError::Committed { .. }) => {
            if let storage::mvcc::TxnError::Committed { commit_ts, .. } = *t {
                resp.commit_version = commit_ts.into_inner();
            }
        }
        Err(e) => fill_key_err!(resp, e),
    }
    resp
}

pub async fn txn_heart_beat(s: &TxnStorage<RaftKv>, req: TxnHeartBeatRequest) -> TxnHeartBeatResponse {
    let mut resp = TxnHeartBeatResponse::default();
    match s
        .txn_heart_beat(
            &ctx(&req.context),
            &req.primary_lock,
            req.start_version,
            req.advise_lock_ttl,
        )
        .await
    {
        Ok(ttl) => resp.lock_ttl = ttl,
        Err(e) => fill_key_err!(resp, e),
    }
    resp
}

pub async fn check_txn_status(s: &TxnStorage<RaftKv>, req: CheckTxnStatusRequest) -> CheckTxnStatusResponse {
    let mut resp = CheckTxnStatusResponse::default();
    match s.check_txn_status(&ctx(&req.context), &req).await {
        Ok(TxnStatus::Locked { ttl, lock, action }) => {
            resp.lock_ttl = ttl;
            resp.lock_info = Some(*lock);
            resp.action = action as i32;
        }
        Ok(TxnStatus::Committed { commit_ts }) => resp.commit_version = commit_ts.into_inner(),
        Ok(TxnStatus::RolledBack { action }) => resp.action = action as i32,
        Err(e) => fill_key_err!(resp, e),
    }
    resp
}

pub async fn check_secondary_locks(
    s: &TxnStorage<RaftKv>,
    req: CheckSecondaryLocksRequest,
) -> CheckSecondaryLocksResponse {
    let mut resp = CheckSecondaryLocksResponse::default();
    match s
        .check_secondary_locks(&ctx(&req.context), &req.keys, req.start_version)
        .await
    {
        Ok(SecondaryLocksStatus::Locked(locks)) => resp.locks = locks,
        Ok(SecondaryLocksStatus::Committed(ts)) => resp.commit_ts = ts.into_inner(),
        Ok(SecondaryLocksStatus::RolledBack) => {}
        Err(e) => fill_key_err!(resp, e),
    }
    resp
}

pub async fn pessimistic_lock(
    s: &TxnStorage<RaftKv>,
    req: PessimisticLockRequest,
) -> PessimisticLockResponse {
    let mut resp = PessimisticLockResponse::default();
    let force_lock = req.wake_up_mode == PessimisticLockWakeUpMode::WakeUpModeForceLock as i32;
    let lock_req = txn::PessimisticLockRequest {
        keys: req.mutations.iter().map(|m| m.key.clone()).collect(),
        should_not_exist: req
            .mutations
            .iter()
            .map(|m| m.assertion == Assertion::NotExist as i32)
            .collect(),
        options: PessimisticLockOptions {
            start_ts: TimeStamp::new(req.start_version),
            for_update_ts: TimeStamp::new(req.for_update_ts),
            primary: req.primary_lock.clone(),
            lock_ttl: req.lock_ttl,
            min_commit_ts: TimeStamp::new(req.min_commit_ts),
            should_not_exist: false,
            need_value: req.return_values,
            need_check_existence: req.check_existence,
            lock_only_if_exists: req.lock_only_if_exists,
        },
        wait_timeout_ms: req.wait_timeout,
    };
    match s.pessimistic_lock(&ctx(&req.context), &lock_req).await {
        Ok(results) => {
            if force_lock {
                resp.results = results
                    .into_iter()
                    .map(|r| PessimisticLockKeyResult {
                        r#type: PessimisticLockKeyResultType::LockResultNormal as i32,
                        existence: r.exists,
                        value: r.value.unwrap_or_default(),
                        ..Default::default()
                    })
                    .collect();
            } else if req.return_values {
                for r in results {
                    resp.not_founds.push(!r.exists);
                    resp.values.push(r.value.unwrap_or_default());
                }
            } else if req.check_existence {
                resp.not_founds = results.into_iter().map(|r| !r.exists).collect();
            }
        }
        Err(e) => {
            fill_key_errs!(resp, e);
        }
    }
    resp
}

pub async fn pessimistic_rollback(
    s: &TxnStorage<RaftKv>,
    req: PessimisticRollbackRequest,
) -> PessimisticRollbackResponse {
    let mut resp = PessimisticRollbackResponse::default();
    if let Err(e) = s
        .pessimistic_rollback(
            &ctx(&req.context),
            &req.keys,
            req.start_version,
            req.for_update_ts,
        )
        .await
    {
        fill_key_errs!(resp, e);
    }
    resp
}

pub async fn scan_lock(s: &TxnStorage<RaftKv>, req: ScanLockRequest) -> ScanLockResponse {
    let mut resp = ScanLockResponse::default();
    match s
        .scan_lock(
            &ctx(&req.context),
            req.max_version,
            &req.start_key,
            &req.end_key,
            req.limit,
        )
        .await
    {
        Ok(locks) => resp.locks = locks,
        Err(e) => fill_key_err!(resp, e),
    }
    resp
}

pub async fn resolve_lock(s: &TxnStorage<RaftKv>, req: ResolveLockRequest) -> ResolveLockResponse {
    let mut resp = ResolveLockResponse::default();
    let txns: HashMap<u64, u64> = if req.txn_infos.is_empty() {
        HashMap::from([(req.start_version, req.commit_version)])
    } else {
        req.txn_infos.iter().map(|t| (t.txn, t.status)).collect()
    };
    if let Err(e) = s.resolve_lock(&ctx(&req.context), &txns, &req.keys).await {
        fill_key_err!(resp, e);
    }
    resp
}

pub async fn delete_range(s: &TxnStorage<RaftKv>, req: DeleteRangeRequest) -> DeleteRangeResponse {
    let mut resp = DeleteRangeResponse::default();
    if let Err(e) = s
        .delete_range(&ctx(&req.context), &req.start_key, &req.end_key, req.notify_only)
        .await
    {
        fill_err!(resp, e);
    }
    resp
}

pub async fn unsafe_destroy_range(
    s: &TxnStorage<RaftKv>,
    req: UnsafeDestroyRangeRequest,
) -> UnsafeDestroyRangeResponse {
    let mut resp = UnsafeDestroyRangeResponse::default();
    if let Err(e) = s.unsafe_destroy_range(&req.start_key, &req.end_key).await {
        fill_err!(resp, e);
    }
    resp
}
