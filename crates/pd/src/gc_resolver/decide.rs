//! The pure decisions of lock resolution: grouping scanned locks by transaction, reading a
//! `CheckTxnStatus` answer, settling an async-commit transaction from its secondaries'
//! `CheckSecondaryLocks` answers, and grouping keys by region.

use std::collections::BTreeMap;

use atoll_proto::kvrpcpb::{self, Action, LockInfo, Op};
use txn_types::memcomparable;

/// The locks of one transaction found in one batch of a region's scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLocks {
    pub start_ts: u64,
    /// The primary key (as the client named it; the first lock's, all locks share it).
    pub primary: Vec<u8>,
    /// Whether every one of these locks is a pessimistic lock (then the status check runs
    /// with `resolving_pessimistic_lock`, like tikv-client's `cleanup_locks`).
    pub all_pessimistic: bool,
    /// How many locks of the transaction the batch holds.
    pub keys: usize,
}

/// Groups `locks` by transaction (start ts), in start ts order.
pub fn group_by_txn(locks: &[LockInfo]) -> Vec<TxnLocks> {
    let mut txns: BTreeMap<u64, TxnLocks> = BTreeMap::new();
    for l in locks {
        let pessimistic = l.lock_type == Op::PessimisticLock as i32;
        let t = txns.entry(l.lock_version).or_insert_with(|| TxnLocks {
            start_ts: l.lock_version,
            primary: l.primary_lock.clone(),
            all_pessimistic: true,
            keys: 0,
        });
        t.all_pessimistic &= pessimistic;
        t.keys += 1;
    }
    txns.into_values().collect()
}

/// What `CheckTxnStatus` said about a transaction (its error fields already checked).
#[derive(Debug, Clone, PartialEq)]
pub enum PrimaryStatus {
    Committed(u64),
    RolledBack(Action),
    /// The primary is still locked (an async-commit primary when not forced to sync commit).
    Locked(LockInfo),
}

/// Reads a `CheckTxnStatus` answer: committed (`commit_version > 0`), locked (`lock_ttl > 0`),
/// else rolled back.
pub fn primary_status(resp: &kvrpcpb::CheckTxnStatusResponse) -> PrimaryStatus {
    if resp.commit_version > 0 {
        PrimaryStatus::Committed(resp.commit_version)
    } else if resp.lock_ttl > 0 {
        PrimaryStatus::Locked(resp.lock_info.clone().unwrap_or_default())
    } else {
        PrimaryStatus::RolledBack(Action::try_from(resp.action).unwrap_or(Action::NoAction))
    }
}

/// Whether a rolled-back status may settle the transaction's locks in other regions too.
/// Resolving a pessimistic primary only unlocks it or does nothing (no rollback record), so
/// that answer is only good for the pessimistic locks it was asked about (tikv-client does not
/// cache it either); other regions ask again.
pub fn rollback_is_final(action: Action) -> bool {
    !matches!(
        action,
        Action::LockNotExistDoNothing | Action::TtlExpirePessimisticRollback
    )
}

/// One region's `CheckSecondaryLocks` answer (error fields already checked).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecondaryCheck {
    /// How many keys the request named.
    pub asked: usize,
    pub locks: Vec<LockInfo>,
    pub commit_ts: u64,
}

impl SecondaryCheck {
    pub fn new(asked: usize, resp: kvrpcpb::CheckSecondaryLocksResponse) -> SecondaryCheck {
        SecondaryCheck {
            asked,
            locks: resp.locks,
            commit_ts: resp.commit_ts,
        }
    }
}

/// The fate of an async-commit transaction whose primary is still locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsyncCommitVerdict {
    /// Committed at this timestamp (a secondary was committed, or every key is locked and the
    /// transaction commits at the largest `min_commit_ts`).
    Committed(u64),
    /// A secondary was not locked (now rolled back by the check): it can never commit.
    RolledBack,
    /// Some key fell back to 2PC: the primary decides (`CheckTxnStatus` with
    /// `force_sync_commit`).
    Fallback2pc,
}

/// Settles an async-commit transaction from its locked `primary` and the answers for all its
/// secondaries (client-go's `checkSecondaries` / tikv-client's `cleanup_locks`): a committed
/// key decides; else a lock that is not async commit means fallback to 2PC; else a key without
/// its lock means rolled back; else every key is locked and the commit ts is the largest
/// `min_commit_ts` of the primary and all secondaries. A commit ts not after the start ts
/// (malformed locks) is left to the primary as well.
pub fn async_commit_verdict(primary: &LockInfo, checks: &[SecondaryCheck]) -> AsyncCommitVerdict {
    if let Some(ts) = checks.iter().map(|c| c.commit_ts).find(|ts| *ts > 0) {
        return AsyncCommitVerdict::Committed(ts);
    }
    let locks = || checks.iter().flat_map(|c| c.locks.iter());
    if !primary.use_async_commit || locks().any(|l| !l.use_async_commit) {
        return AsyncCommitVerdict::Fallback2pc;
    }
    if checks.iter().any(|c| c.locks.len() < c.asked) {
        return AsyncCommitVerdict::RolledBack;
    }
    let commit_ts = locks()
        .map(|l| l.min_commit_ts)
        .fold(primary.min_commit_ts, u64::max);
    if commit_ts <= primary.lock_version {
        return AsyncCommitVerdict::Fallback2pc;
    }
    AsyncCommitVerdict::Committed(commit_ts)
}

/// The range key (region boundary space) of a transactional key: nodes store transactional
/// keys memcomparable-encoded, whatever the API version.
pub fn range_key(key: &[u8]) -> Vec<u8> {
    memcomparable::encode_bytes(key)
}

/// Groups transactional `keys` by the region holding them (`region_of` maps a range key to a
/// region id). Fails with the first key no region holds.
pub fn group_keys_by_region(
    keys: &[Vec<u8>],
    mut region_of: impl FnMut(&[u8]) -> Option<u64>,
) -> Result<BTreeMap<u64, Vec<Vec<u8>>>, Vec<u8>> {
    let mut out: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    for k in keys {
        let region = region_of(&range_key(k)).ok_or_else(|| k.clone())?;
        out.entry(region).or_default().push(k.clone());
    }
    Ok(out)
}

/// The `txn_infos` of a `ResolveLock` request: start ts → commit ts (0: roll back).
pub fn txn_infos(statuses: &BTreeMap<u64, u64>) -> Vec<kvrpcpb::TxnInfo> {
    statuses
        .iter()
        .map(|(txn, status)| kvrpcpb::TxnInfo {
            txn: *txn,
            status: *status,
            is_txn_file: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(key: &str, primary: &str, ts: u64, op: Op) -> LockInfo {
        LockInfo {
            key: key.as_bytes().to_vec(),
            primary_lock: primary.as_bytes().to_vec(),
            lock_version: ts,
            lock_type: op as i32,
            lock_ttl: 3000,
            ..Default::default()
        }
    }

    fn async_lock(key: &str, ts: u64, min_commit_ts: u64) -> LockInfo {
        LockInfo {
            use_async_commit: true,
            min_commit_ts,
            ..lock(key, "p", ts, Op::Put)
        }
    }

    #[test]
    fn groups_locks_by_transaction() {
        let locks = vec![
            lock("a", "p1", 20, Op::Put),
            lock("b", "p2", 10, Op::PessimisticLock),
            lock("c", "p1", 20, Op::PessimisticLock),
            lock("d", "p2", 10, Op::PessimisticLock),
            lock("e", "p3", 30, Op::Del),
        ];
        let g = group_by_txn(&locks);
        let summary: Vec<(u64, &[u8], bool, usize)> = g
            .iter()
            .map(|t| (t.start_ts, t.primary.as_slice(), t.all_pessimistic, t.keys))
            .collect();
        assert_eq!(
            summary,
            vec![
                (10, &b"p2"[..], true, 2),
                (20, &b"p1"[..], false, 2),
                (30, &b"p3"[..], false, 1),
            ]
        );
        assert!(group_by_txn(&[]).is_empty());
    }

    #[test]
    fn reads_check_txn_status_answers() {
        let committed = kvrpcpb::CheckTxnStatusResponse {
            commit_version: 150,
            ..Default::default()
        };
        assert_eq!(primary_status(&committed), PrimaryStatus::Committed(150));
        let rolled_back = kvrpcpb::CheckTxnStatusResponse {
            action: Action::TtlExpireRollback as i32,
            ..Default::default()
        };
        assert_eq!(
            primary_status(&rolled_back),
            PrimaryStatus::RolledBack(Action::TtlExpireRollback)
        );
        let l = async_lock("p", 100, 120);
        let locked = kvrpcpb::CheckTxnStatusResponse {
            lock_ttl: 3000,
            lock_info: Some(l.clone()),
            ..Default::default()
        };
        assert_eq!(primary_status(&locked), PrimaryStatus::Locked(l));
        assert!(rollback_is_final(Action::NoAction));
        assert!(rollback_is_final(Action::TtlExpireRollback));
        assert!(rollback_is_final(Action::LockNotExistRollback));
        assert!(!rollback_is_final(Action::LockNotExistDoNothing));
        assert!(!rollback_is_final(Action::TtlExpirePessimisticRollback));
    }

    fn check(asked: usize, locks: Vec<LockInfo>, commit_ts: u64) -> SecondaryCheck {
        SecondaryCheck {
            asked,
            locks,
            commit_ts,
        }
    }

    #[test]
    fn async_commit_all_locked_commits_at_max_min_commit_ts() {
        let primary = async_lock("p", 100, 130);
        let checks = vec![
            check(2, vec![async_lock("a", 100, 110), async_lock("b", 100, 125)], 0),
            check(1, vec![async_lock("c", 100, 140)], 0),
        ];
        assert_eq!(
            async_commit_verdict(&primary, &checks),
            AsyncCommitVerdict::Committed(140)
        );
        // The primary's own min_commit_ts counts.
        let primary = async_lock("p", 100, 150);
        assert_eq!(
            async_commit_verdict(&primary, &checks),
            AsyncCommitVerdict::Committed(150)
        );
        // A single-key async-commit transaction: the primary alone.
        assert_eq!(
            async_commit_verdict(&primary, &[]),
            AsyncCommitVerdict::Committed(150)
        );
    }

    #[test]
    fn async_commit_committed_secondary_decides() {
        let primary = async_lock("p", 100, 130);
        let checks = vec![
            check(1, vec![], 0),
            check(2, vec![], 135),
            check(1, vec![lock("x", "p", 100, Op::Put)], 0),
        ];
        assert_eq!(
            async_commit_verdict(&primary, &checks),
            AsyncCommitVerdict::Committed(135)
        );
    }

    #[test]
    fn async_commit_missing_lock_rolls_back() {
        let primary = async_lock("p", 100, 130);
        // A region answered neither all its locks nor a commit ts.
        let checks = vec![
            check(1, vec![async_lock("a", 100, 110)], 0),
            check(2, vec![async_lock("b", 100, 110)], 0),
        ];
        assert_eq!(
            async_commit_verdict(&primary, &checks),
            AsyncCommitVerdict::RolledBack
        );
        let checks = vec![check(3, vec![], 0)];
        assert_eq!(
            async_commit_verdict(&primary, &checks),
            AsyncCommitVerdict::RolledBack
        );
    }

    #[test]
    fn async_commit_falls_back_to_2pc() {
        let primary = async_lock("p", 100, 130);
        // A secondary prewritten without async commit.
        let checks = vec![
            check(1, vec![async_lock("a", 100, 110)], 0),
            check(1, vec![lock("b", "p", 100, Op::Put)], 0),
        ];
        assert_eq!(
            async_commit_verdict(&primary, &checks),
            AsyncCommitVerdict::Fallback2pc
        );
        // Fallback wins over a missing lock: the primary decides.
        let checks = vec![check(2, vec![lock("b", "p", 100, Op::Put)], 0)];
        assert_eq!(
            async_commit_verdict(&primary, &checks),
            AsyncCommitVerdict::Fallback2pc
        );
        // A primary that is not async commit, or a commit ts not after the start ts.
        let sync_primary = lock("p", "p", 100, Op::Put);
        assert_eq!(
            async_commit_verdict(&sync_primary, &[]),
            AsyncCommitVerdict::Fallback2pc
        );
        let zero = async_lock("p", 100, 0);
        assert_eq!(
            async_commit_verdict(&zero, &[check(1, vec![async_lock("a", 100, 0)], 0)]),
            AsyncCommitVerdict::Fallback2pc
        );
    }

    #[test]
    fn groups_keys_by_region_of_their_range_key() {
        // Regions [ "", enc("m") ) = 1 and [ enc("m"), "" ) = 2.
        let split = range_key(b"m");
        let region_of = |k: &[u8]| Some(if k < split.as_slice() { 1 } else { 2 });
        let keys: Vec<Vec<u8>> = [&b"a"[..], b"z", b"m", b"l\xff"]
            .iter()
            .map(|k| k.to_vec())
            .collect();
        let g = group_keys_by_region(&keys, region_of).unwrap();
        assert_eq!(g[&1], vec![b"a".to_vec(), b"l\xff".to_vec()]);
        assert_eq!(g[&2], vec![b"z".to_vec(), b"m".to_vec()]);
        // A hole in the region tree.
        let hole = |k: &[u8]| (k < split.as_slice()).then_some(1);
        assert_eq!(group_keys_by_region(&keys, hole), Err(b"z".to_vec()));
        assert_eq!(range_key(b"x\0\0\0"), vec![b'x', 0, 0, 0, 0, 0, 0, 0, 0xfb]);
    }

    #[test]
    fn builds_txn_infos() {
        let statuses = BTreeMap::from([(10, 0), (20, 25)]);
        let infos = txn_infos(&statuses);
        let pairs: Vec<(u64, u64)> = infos.iter().map(|t| (t.txn, t.status)).collect();
        assert_eq!(pairs, vec![(10, 0), (20, 25)]);
    }
}
