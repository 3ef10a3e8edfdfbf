//! Two-phase commit and transaction status: KvPrewrite, KvCommit, KvBatchRollback, KvCleanup,
//! KvTxnHeartBeat, KvCheckTxnStatus, KvCheckSecondaryLocks.

use atoll_proto::kvrpcpb::{self, Op};
use txn_types::TimeStamp;

use super::{check_keys_in_region, stored_keys, TxnStorage};
use crate::api_keys::{self, KeyMode};
use crate::kv::Engine;
use crate::mvcc::{MvccReader, MvccTxn};
use crate::txn::actions::{
    self, Mutation, MutationOp, PrewriteOutcome, SecondaryStatus, TxnProps, TxnStatus,
};
use crate::{Error, Result};

/// A KvPrewrite request, decoded.
#[derive(Debug, Clone, Default)]
pub struct PrewriteRequest {
    pub mutations: Vec<kvrpcpb::Mutation>,
    /// Per mutation: the key must hold the transaction's pessimistic lock.
    pub pessimistic_checks: Vec<bool>,
    /// Per mutation: check `Insert`/`CheckNotExists` even when pessimistically locked.
    pub constraint_checks: Vec<bool>,
    pub props: TxnProps,
}

#[derive(Debug, Default)]
pub struct PrewriteResponse {
    /// Lock errors, one per locked key (nothing is written when any key is locked).
    pub errors: Vec<Error>,
    pub min_commit_ts: TimeStamp,
    pub one_pc_commit_ts: TimeStamp,
}

/// What KvCheckSecondaryLocks found.
#[derive(Debug, Clone, PartialEq)]
pub enum SecondaryLocksStatus {
    /// Every key still holds a prewritten lock of the transaction.
    Locked(Vec<kvrpcpb::LockInfo>),
    Committed(TimeStamp),
    RolledBack,
}

fn mutation_op(m: &kvrpcpb::Mutation) -> Result<MutationOp> {
    let op = Op::try_from(m.op).map_err(|_| Error::InvalidInput(format!("unknown mutation op {}", m.op)))?;
    Ok(match op {
        Op::Put => MutationOp::Put(m.value.clone()),
        Op::Del => MutationOp::Delete,
        Op::Lock => MutationOp::Lock,
        Op::Insert => MutationOp::Insert(m.value.clone()),
        Op::CheckNotExists => MutationOp::CheckNotExists,
        Op::Rollback | Op::PessimisticLock => {
            return Err(Error::InvalidInput(format!(
                "mutation op {op:?} cannot be prewritten"
            )))
        }
    })
}

impl<E: Engine> TxnStorage<E> {
    /// KvPrewrite (also async commit and 1PC).
    pub async fn prewrite(&self, ctx: &kvrpcpb::Context, req: PrewriteRequest) -> Result<PrewriteResponse> {
        let _timer = crate::metrics::SchedulerTimer::new("prewrite");
        let mut mutations = Vec::with_capacity(req.mutations.len());
        for m in &req.mutations {
            crate::raw::check_value_size(&m.value)?;
            mutations.push(Mutation {
                key: api_keys::stored_written_key(ctx, KeyMode::Txn, &m.key)?,
                op: mutation_op(m)?,
            });
        }
        let props = &req.props;
        let keys: Vec<Vec<u8>> = mutations.iter().map(|m| m.key.clone()).collect();
        let _guard = self.latches.acquire(keys.iter().map(|k| k.as_slice())).await;
        let snap = self.snapshot(ctx).await?;
        check_keys_in_region::<E>(&snap, &keys)?;
        let reader = MvccReader::new(&snap.snapshot);
        let mut txn = MvccTxn::new();
        let mut locks = vec![];
        let mut lock_errors = vec![];
        let mut duplicate_min_commit_ts = TimeStamp::zero();
        let mut duplicates = 0;
        let mut duplicate_fell_back = false;
        for (i, m) in mutations.iter().enumerate() {
            let pessimistic = req.pessimistic_checks.get(i).copied().unwrap_or(false);
            let constraint = req.constraint_checks.get(i).copied().unwrap_or(false);
            match actions::prewrite(&mut txn, &reader, props, m, pessimistic, constraint) {
                Ok(PrewriteOutcome::Locked(Some(lock))) => locks.push((m.key.clone(), lock)),
                Ok(PrewriteOutcome::Locked(None)) => {}
                Ok(PrewriteOutcome::Duplicate(lock)) => {
                    duplicates += 1;
                    duplicate_fell_back |= !lock.use_async_commit;
                    duplicate_min_commit_ts = duplicate_min_commit_ts.max(lock.min_commit_ts);
                }
                Err(e) if e.is_retry_after_commit() => {
                    // A retried request of a transaction that has committed meanwhile (e.g. a
                    // 1PC or async-commit prewrite whose answer was lost): report its commit.
                    if let Some(commit_ts) = reader
                        .get_txn_commit_record(&m.key, props.start_ts)?
                        .committed_ts()
                    {
                        return Ok(PrewriteResponse {
                            errors: vec![],
                            min_commit_ts: if props.use_async_commit {
                                commit_ts
                            } else {
                                TimeStamp::zero()
                            },
                            one_pc_commit_ts: if props.try_one_pc {
                                commit_ts
                            } else {
                                TimeStamp::zero()
                            },
                        });
                    }
                    if e.is_key_locked() {
                        lock_errors.push(e);
                    } else {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if !lock_errors.is_empty() {
            return Ok(PrewriteResponse {
                errors: lock_errors,
                ..Default::default()
            });
        }
        // A retry that found every key already prewritten reports what the first attempt
        // wrote (a fresh floor would not match the locks a resolver reads).
        if locks.is_empty() && duplicates > 0 && props.use_async_commit {
            self.write(&snap.write_context(ctx), txn).await?;
            return Ok(PrewriteResponse {
                errors: vec![],
                min_commit_ts: if duplicate_fell_back {
                    TimeStamp::zero()
                } else {
                    duplicate_min_commit_ts
                },
                one_pc_commit_ts: TimeStamp::zero(),
            });
        }
        let async_or_1pc = props.use_async_commit || props.try_one_pc;
        // Locks in memory first, then the max read ts: see concurrency_manager.rs.
        let mem_guard = async_or_1pc.then(|| self.cm.lock_keys(&locks));
        // A leader that synced max_ts when it took over needs no TSO round trip here.
        if async_or_1pc && !self.cm.is_max_ts_synced(ctx.region_id, snap.term) {
            self.cm.update_max_ts(self.ts_source.now().await?);
        }
        let max_ts = self.cm.max_ts();
        let result = actions::finish_prewrite(&mut txn, props, locks.clone(), max_ts);
        if let Some(g) = &mem_guard {
            let mut updated = locks;
            for (_, l) in &mut updated {
                l.min_commit_ts = result.min_commit_ts.max(l.min_commit_ts);
            }
            g.update(&updated);
        }
        self.write(&snap.write_context(ctx), txn).await?;
        drop(mem_guard);
        // Zero means "not async commit" (or fell back to 2PC); keys an earlier attempt already
        // prewrote keep their floors, and the answer covers them all.
        let min_commit_ts = if result.min_commit_ts.is_zero() || duplicate_fell_back {
            TimeStamp::zero()
        } else {
            result.min_commit_ts.max(duplicate_min_commit_ts)
        };
        Ok(PrewriteResponse {
            errors: vec![],
            min_commit_ts,
            one_pc_commit_ts: result.one_pc_commit_ts,
        })
    }

    /// KvCommit: commits every key at `commit_ts`; returns the commit ts.
    pub async fn commit(
        &self,
        ctx: &kvrpcpb::Context,
        keys: &[Vec<u8>],
        start_ts: u64,
        commit_ts: u64,
    ) -> Result<TimeStamp> {
        let _timer = crate::metrics::SchedulerTimer::new("commit");
        let (start_ts, commit_ts) = (TimeStamp::new(start_ts), TimeStamp::new(commit_ts));
        if commit_ts <= start_ts {
            return Err(Error::InvalidInput(format!(
                "commit ts {commit_ts} must be greater than start ts {start_ts}"
            )));
        }
        let keys = stored_keys(ctx, keys)?;
        self.run_actions(ctx, &keys, |txn, reader| {
            for k in &keys {
                actions::commit(txn, reader, k, start_ts, commit_ts)?;
            }
            Ok(commit_ts)
        })
        .await
    }

    /// KvBatchRollback: rolls back the transaction on every key.
    pub async fn batch_rollback(
        &self,
        ctx: &kvrpcpb::Context,
        keys: &[Vec<u8>],
        start_ts: u64,
    ) -> Result<()> {
        let _timer = crate::metrics::SchedulerTimer::new("batch_rollback");
        let start_ts = TimeStamp::new(start_ts);
        let keys = stored_keys(ctx, keys)?;
        // A later async-commit prewrite must not pick a commit ts at or below a rolled-back
        // start ts (its record would overwrite the rollback).
        self.cm.update_max_ts(start_ts);
        self.run_actions(ctx, &keys, |txn, reader| {
            for k in &keys {
                actions::rollback(txn, reader, k, start_ts)?;
            }
            Ok(())
        })
        .await
    }

    /// KvCleanup: rolls back `key` of transaction `start_ts` unless its lock is alive at
    /// `current_ts`. A committed transaction gives `TxnError::Committed`.
    pub async fn cleanup(
        &self,
        ctx: &kvrpcpb::Context,
        key: &[u8],
        start_ts: u64,
        current_ts: u64,
    ) -> Result<()> {
        let _timer = crate::metrics::SchedulerTimer::new("cleanup");
        let key = api_keys::stored_key(ctx, KeyMode::Txn, key)?;
        self.cm.update_max_ts(TimeStamp::new(start_ts));
        let keys = [key];
        self.run_actions(ctx, &keys, |txn, reader| {
            actions::cleanup(
                txn,
                reader,
                &keys[0],
                TimeStamp::new(start_ts),
                TimeStamp::new(current_ts),
            )
            .map(|_| ())
        })
        .await
    }

    /// KvTxnHeartBeat: returns the primary lock's TTL after the update.
    pub async fn txn_heart_beat(
        &self,
        ctx: &kvrpcpb::Context,
        primary: &[u8],
        start_ts: u64,
        advise_ttl: u64,
    ) -> Result<u64> {
        let _timer = crate::metrics::SchedulerTimer::new("txn_heart_beat");
        let keys = [api_keys::stored_key(ctx, KeyMode::Txn, primary)?];
        self.run_actions(ctx, &keys, |txn, reader| {
            actions::txn_heart_beat(txn, reader, &keys[0], TimeStamp::new(start_ts), advise_ttl)
        })
        .await
    }

    /// KvCheckTxnStatus on the transaction's primary key.
    pub async fn check_txn_status(
        &self,
        ctx: &kvrpcpb::Context,
        req: &kvrpcpb::CheckTxnStatusRequest,
    ) -> Result<TxnStatus> {
        let _timer = crate::metrics::SchedulerTimer::new("check_txn_status");
        let keys = [api_keys::stored_key(ctx, KeyMode::Txn, &req.primary_key)?];
        // The caller will read at caller_start_ts once the lock is resolved or pushed; a
        // rollback of lock_ts must not be overwritten by a later async commit at lock_ts.
        self.cm.update_max_ts(TimeStamp::new(req.caller_start_ts));
        self.cm.update_max_ts(TimeStamp::new(req.lock_ts));
        self.run_actions(ctx, &keys, |txn, reader| {
            actions::check_txn_status(
                txn,
                reader,
                &keys[0],
                TimeStamp::new(req.lock_ts),
                TimeStamp::new(req.caller_start_ts),
                TimeStamp::new(req.current_ts),
                req.rollback_if_not_exist,
                req.force_sync_commit,
                req.resolving_pessimistic_lock,
                req.verify_is_primary,
            )
        })
        .await
    }

    /// KvCheckSecondaryLocks (async-commit recovery).
    pub async fn check_secondary_locks(
        &self,
        ctx: &kvrpcpb::Context,
        keys: &[Vec<u8>],
        start_ts: u64,
    ) -> Result<SecondaryLocksStatus> {
        let _timer = crate::metrics::SchedulerTimer::new("check_secondary_locks");
        let start_ts = TimeStamp::new(start_ts);
        let keys = stored_keys(ctx, keys)?;
        self.cm.update_max_ts(start_ts);
        self.run_actions(ctx, &keys, |txn, reader| {
            let mut locks = vec![];
            let mut status = None;
            for k in &keys {
                match actions::check_secondary_lock(txn, reader, k, start_ts)? {
                    SecondaryStatus::Locked(l) => locks.push(*l),
                    SecondaryStatus::Committed(ts) => {
                        // One committed key decides it; roll back nothing.
                        txn.modifies.clear();
                        return Ok(SecondaryLocksStatus::Committed(ts));
                    }
                    SecondaryStatus::RolledBack => status = Some(SecondaryLocksStatus::RolledBack),
                }
            }
            Ok(status.unwrap_or(SecondaryLocksStatus::Locked(locks)))
        })
        .await
    }
}
