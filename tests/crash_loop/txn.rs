//! Part of the crash-loop test (`tests/crash_loop_e2e.rs`): the lock sweeper and the group transactions.

use super::*;

// ---------------------------------------------------------------------------------------------
// The lock sweeper
// ---------------------------------------------------------------------------------------------

/// Resolves every lock of this test's transactional keys at or below `safepoint` (rolling back
/// or committing each transaction as its primary says); returns how many it resolved.
pub(super) async fn sweep_locks(
    client: &TransactionClient,
    safepoint: &tikv_client::Timestamp,
) -> Result<usize, String> {
    let mut resolved = 0;
    for p in PREFIXES {
        let r = client
            .cleanup_locks(
                format!("{p}/cl/")..format!("{p}/cl0"),
                safepoint,
                ResolveLocksOptions::default(),
            )
            .await
            .map_err(|e| format!("{e:?}"))?;
        if let Some(e) = r.key_error {
            return Err(format!("{e:?}"));
        }
        if let Some(e) = r.region_error {
            return Err(format!("{e:?}"));
        }
        resolved += r.resolved_locks;
    }
    Ok(resolved)
}

/// What a GC's lock resolution does, limited to transactions their writers are done with.
///
/// A transaction whose secondaries were prewritten but whose primary never was (its node died
/// in between) leaves locks that tikv-client 0.4's readers can never resolve: `CheckTxnStatus`
/// answers `TxnNotFound`, which the client should retry with `rollback_if_not_exist` once the
/// lock expired, but the error reaches it wrapped as `MultipleKeyErrors` and the retry never
/// happens (tikv/client-rust#543). `cleanup_locks` does resolve them, but it also rolls back
/// running transactions; so each round takes a timestamp, waits until every transactional
/// writer has begun a new attempt (all attempts that began before it are over: committed,
/// aborted or given up), and only then cleans up the locks at or below that timestamp.
/// Returns the number of resolved locks.
pub(super) fn spawn_sweeper(client: TransactionClient, shared: Arc<Shared>) -> JoinHandle<usize> {
    tokio::spawn(async move {
        let mut resolved = 0;
        'rounds: while !shared.stopped() {
            let Ok(safepoint) = client.current_timestamp().await else {
                backoff().await;
                continue;
            };
            let started: Vec<u64> = shared
                .txn_attempts
                .iter()
                .map(|a| a.load(Ordering::SeqCst))
                .collect();
            loop {
                if shared.stopped() {
                    // The final sweep runs after the writers have stopped.
                    break 'rounds;
                }
                let past = shared
                    .txn_attempts
                    .iter()
                    .zip(&started)
                    .all(|(a, s)| a.load(Ordering::SeqCst) > *s);
                if past {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(30), sweep_locks(&client, &safepoint)).await
            {
                resolved += n;
            }
            // One round a second is plenty.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        resolved
    })
}

// ---------------------------------------------------------------------------------------------
// Group transactions: N keys with the same value, three commit protocols
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
pub(super) enum Protocol {
    TwoPc,
    /// All keys in one region (tikv-client 0.4 asks every region for 1PC).
    OnePc,
}

// Async commit is left out: tikv-client 0.4 cannot resolve an async-commit transaction that a
// crash interrupted. Readers treat its locks as live forever, and `cleanup_locks` commits it at
// the other locks' min_commit_ts even when one secondary was never prewritten (it does not count
// the locks `CheckSecondaryLocks` returns), which would make it half-visible through the client.
pub(super) fn protocol(i: u64) -> Protocol {
    match i % 2 {
        0 => Protocol::TwoPc,
        _ => Protocol::OnePc,
    }
}

pub(super) fn group_pairs(i: u64, cycle: u32) -> Vec<(String, Vec<u8>)> {
    let proto = protocol(i);
    let value = format!("group#{i}#{proto:?}#c{cycle}").into_bytes();
    (0..GROUP_KEYS)
        .map(|j| {
            let prefix = match proto {
                Protocol::OnePc => PREFIXES[(i / 2 % 3) as usize],
                _ => PREFIXES[j % 3],
            };
            (format!("{prefix}/cl/grp/{i:07}/{j}"), value.clone())
        })
        .collect()
}

pub(super) fn spawn_group_writer(client: TransactionClient, shared: Arc<Shared>) -> JoinHandle<Vec<Record>> {
    tokio::spawn(async move {
        let mut records = Vec::new();
        let mut i = 0u64;
        while !shared.stopped() {
            let cycle = shared.cycle();
            shared.txn_attempts[GROUP_WRITER].fetch_add(1, Ordering::SeqCst);
            let pairs = group_pairs(i, cycle);
            let opts = match protocol(i) {
                Protocol::TwoPc => txn_options(false),
                Protocol::OnePc => txn_options(false).try_one_pc(),
            };
            let outcome = within_txn_timeout(async {
                match client.begin_with_options(opts).await {
                    Err(_) => Outcome::Aborted,
                    Ok(mut txn) => {
                        let mut buffered = true;
                        for (k, v) in &pairs {
                            // Optimistic puts only fill the client's buffer.
                            buffered &= txn.put(k.clone(), v.clone()).await.is_ok();
                        }
                        if buffered {
                            match txn.commit().await {
                                Ok(_) => Outcome::Acked,
                                Err(e) => Outcome::Unknown(format!("{e:?}")),
                            }
                        } else {
                            let _ = txn.rollback().await;
                            Outcome::Aborted
                        }
                    }
                }
            })
            .await;
            if outcome == Outcome::Acked {
                shared.txn_acks.fetch_add(1, Ordering::SeqCst);
            }
            let failed = outcome != Outcome::Acked;
            records.push(Record {
                writer: format!("group-{:?}", protocol(i)),
                cycle,
                pairs,
                outcome,
            });
            i += 1;
            if failed {
                backoff().await;
            }
        }
        records
    })
}
