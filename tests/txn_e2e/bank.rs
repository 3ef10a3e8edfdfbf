//! The bank: concurrent clients move money between accounts in optimistic and pessimistic
//! transactions (accounts spread over three regions, so most transfers are cross-region 2PC);
//! every snapshot a checker takes must show the same total and no negative balance.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rand::{Rng, SeedableRng};

use super::*;

const ACCOUNTS: usize = 12;
const INITIAL: i64 = 1000;
const WORKERS: usize = 6;
const TRANSFERS_PER_WORKER: usize = 25;

fn account(i: usize) -> String {
    // a/, s/ and y/ are in regions 1, 3 and 5 under API V1.
    let prefix = ["a", "s", "y"][i % 3];
    format!("{prefix}/bank/{i:02}")
}

fn balance(v: Option<Vec<u8>>) -> i64 {
    let v = v.expect("every account exists");
    String::from_utf8(v).expect("utf8").parse().expect("a number")
}

/// One transfer of `amount` from `from` to `to`; `Ok(false)` when the source lacks the money.
async fn transfer(
    client: &TransactionClient,
    pessimistic: bool,
    from: usize,
    to: usize,
    amount: i64,
) -> tikv_client::Result<bool> {
    let mut txn = if pessimistic {
        client.begin_pessimistic().await?
    } else {
        client.begin_optimistic().await?
    };
    let result = async {
        let (a, b) = if pessimistic {
            (
                balance(txn.get_for_update(account(from)).await?),
                balance(txn.get_for_update(account(to)).await?),
            )
        } else {
            (
                balance(txn.get(account(from)).await?),
                balance(txn.get(account(to)).await?),
            )
        };
        if a < amount {
            return Ok(false);
        }
        txn.put(account(from), (a - amount).to_string()).await?;
        txn.put(account(to), (b + amount).to_string()).await?;
        Ok(true)
    }
    .await;
    match result {
        Ok(true) => match txn.commit().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let _ = txn.rollback().await;
                Err(e)
            }
        },
        Ok(false) => {
            txn.rollback().await?;
            Ok(false)
        }
        Err(e) => {
            let _ = txn.rollback().await;
            Err(e)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_transfers_keep_the_total() {
    let cluster = Cluster::start(1).await;
    let client = cluster.txn_v1().await;
    let init: Vec<(String, Vec<u8>)> = (0..ACCOUNTS)
        .map(|i| (account(i), INITIAL.to_string().into_bytes()))
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = init.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    put_txn(&client, &refs).await;
    let total = INITIAL * ACCOUNTS as i64;

    let done = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let client = cluster.txn_v1().await;
        let committed = committed.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
            let pessimistic = w % 2 == 1;
            let mut ok = 0;
            let mut attempts = 0;
            while ok < TRANSFERS_PER_WORKER {
                attempts += 1;
                assert!(
                    attempts < TRANSFERS_PER_WORKER * 40,
                    "worker {w}: too many failed attempts"
                );
                let from = rng.gen_range(0..ACCOUNTS);
                let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
                let amount = rng.gen_range(1..300);
                // Conflicts and lock errors are expected under contention: try another transfer.
                if let Ok(true) = transfer(&client, pessimistic, from, to, amount).await {
                    ok += 1;
                    committed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let checker = {
        let client = cluster.txn_v1().await;
        let done = done.clone();
        tokio::spawn(async move {
            let mut snapshots = 0;
            let mut failed_reads = 0;
            while !done.load(Ordering::SeqCst) || snapshots < 3 {
                let ts = client.current_timestamp().await.expect("tso");
                let mut snap = client.snapshot(ts, tikv_client::TransactionOptions::new_optimistic());
                let keys: Vec<String> = (0..ACCOUNTS).map(account).collect();
                // A read can give up on a lock it could not resolve in time (e.g. a transaction
                // whose primary is not prewritten yet): only completed snapshots are checked.
                let got: Vec<_> = match snap.batch_get(keys).await {
                    Ok(pairs) => pairs.collect(),
                    Err(_) => {
                        failed_reads += 1;
                        assert!(failed_reads < 1000, "the checker cannot read any snapshot");
                        continue;
                    }
                };
                assert_eq!(got.len(), ACCOUNTS, "every account is visible");
                let balances: Vec<i64> = got.into_iter().map(|p| balance(Some(p.1))).collect();
                assert!(balances.iter().all(|b| *b >= 0), "negative balance: {balances:?}");
                assert_eq!(balances.iter().sum::<i64>(), total, "total changed: {balances:?}");
                snapshots += 1;
            }
            snapshots
        })
    };
    for w in workers {
        tokio::time::timeout(Duration::from_secs(600), w)
            .await
            .expect("worker finishes")
            .expect("worker");
    }
    done.store(true, Ordering::SeqCst);
    let snapshots = checker.await.expect("checker");
    assert_eq!(committed.load(Ordering::SeqCst), WORKERS * TRANSFERS_PER_WORKER);
    assert!(snapshots >= 3);
    // And the final state, read by a scan.
    let mut txn = client.begin_optimistic().await.expect("begin");
    let mut sum = 0;
    for p in ["a", "s", "y"] {
        let pairs = txn
            .scan(format!("{p}/bank/")..format!("{p}/bank0"), 100)
            .await
            .expect("scan");
        sum += pairs.map(|p| balance(Some(p.1))).sum::<i64>();
    }
    txn.rollback().await.expect("rollback");
    assert_eq!(sum, total);
}
