//! Part of the crash-loop test (`tests/crash_loop_e2e.rs`): the bank — transfers that write a receipt in the same transaction — and the checker of its snapshots.

use super::*;

// ---------------------------------------------------------------------------------------------
// The bank: transfers that write a receipt in the same transaction
// ---------------------------------------------------------------------------------------------

pub(super) fn account(i: usize) -> String {
    format!("{}/cl/acct/{i:02}", PREFIXES[i % 3])
}

pub(super) fn receipt(w: usize, i: u64) -> String {
    format!("{}/cl/rcpt/{w}/{i:07}", PREFIXES[(i % 3) as usize])
}

pub(super) fn receipt_value(from: usize, to: usize, amount: i64) -> Vec<u8> {
    format!("{from}:{to}:{amount}").into_bytes()
}

/// `(from, to, amount)` of a receipt's value.
pub(super) fn parse_receipt(key: &str, v: &[u8]) -> Result<(usize, usize, i64), String> {
    let s = String::from_utf8_lossy(v);
    let parts: Vec<&str> = s.split(':').collect();
    let parsed = match parts.as_slice() {
        [f, t, a] => f
            .parse()
            .ok()
            .zip(t.parse().ok())
            .zip(a.parse().ok())
            .map(|((f, t), a)| (f, t, a)),
        _ => None,
    };
    match parsed {
        Some((f, t, a)) if f < ACCOUNTS && t < ACCOUNTS => Ok((f, t, a)),
        _ => Err(format!("receipt {key} has a malformed value {s:?}")),
    }
}

pub(super) fn parse_balance(key: &str, v: &[u8]) -> Result<i64, String> {
    String::from_utf8_lossy(v)
        .parse()
        .map_err(|_| format!("account {key} holds {:?}", String::from_utf8_lossy(v)))
}

pub(super) fn txn_options(pessimistic: bool) -> TransactionOptions {
    let opts = if pessimistic {
        TransactionOptions::new_pessimistic()
    } else {
        TransactionOptions::new_optimistic()
    };
    // A transaction whose commit failed is left as it is (see `transfer`); never panic on drop.
    opts.drop_check(CheckLevel::None)
}

/// One transfer of `amount` from `from` to `to` plus its receipt, in one transaction.
///
/// A transaction whose commit returned an error is not rolled back: its primary may already be
/// committed, and rolling back the other keys would make it half-visible through no fault of
/// the server. Its locks are left to the lock sweeper (and to the readers that meet them).
pub(super) async fn transfer(
    client: &TransactionClient,
    pessimistic: bool,
    (from, to, amount): (usize, usize, i64),
    receipt: (String, Vec<u8>),
) -> Outcome {
    let mut txn = match client.begin_with_options(txn_options(pessimistic)).await {
        Ok(t) => t,
        Err(_) => return Outcome::Aborted,
    };
    let body = async {
        let (a, b) = if pessimistic {
            (
                txn.get_for_update(account(from)).await?,
                txn.get_for_update(account(to)).await?,
            )
        } else {
            (txn.get(account(from)).await?, txn.get(account(to)).await?)
        };
        let (Some(a), Some(b)) = (a, b) else {
            // Reported by the checker; here just do not transfer.
            return Ok(false);
        };
        let (Ok(a), Ok(b)) = (parse_balance(&account(from), &a), parse_balance(&account(to), &b)) else {
            return Ok(false);
        };
        if a < amount {
            return Ok(false);
        }
        txn.put(account(from), (a - amount).to_string()).await?;
        txn.put(account(to), (b + amount).to_string()).await?;
        txn.put(receipt.0.clone(), receipt.1.clone()).await?;
        Ok::<bool, tikv_client::Error>(true)
    }
    .await;
    match body {
        Ok(true) => match txn.commit().await {
            Ok(_) => Outcome::Acked,
            Err(e) => Outcome::Unknown(format!("{e:?}")),
        },
        Ok(false) | Err(_) => {
            // Nothing was prewritten: a failed rollback only leaves (pessimistic) locks behind.
            let _ = txn.rollback().await;
            Outcome::Aborted
        }
    }
}

/// How long one transaction may take before the writer gives up on it (its outcome is then
/// unknown, as for any client that times out; the all-or-nothing checks cover it). Without this,
/// a client stuck on an orphaned lock (tikv-client 0.4 cannot always resolve one) kept a writer
/// from ever stopping.
pub(super) const TXN_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn within_txn_timeout(txn: impl std::future::Future<Output = Outcome>) -> Outcome {
    tokio::time::timeout(TXN_TIMEOUT, txn)
        .await
        .unwrap_or_else(|_| Outcome::Unknown(format!("no answer within {TXN_TIMEOUT:?}")))
}

pub(super) fn spawn_bank_worker(
    w: usize,
    client: TransactionClient,
    shared: Arc<Shared>,
) -> JoinHandle<Vec<Record>> {
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(shared.seed ^ (0xBA4C << 8) ^ w as u64);
        let pessimistic = w % 2 == 1;
        let name = format!(
            "bank-{w}-{}",
            if pessimistic { "pessimistic" } else { "optimistic" }
        );
        let mut records = Vec::new();
        let mut i = 0u64;
        while !shared.stopped() {
            let cycle = shared.cycle();
            shared.txn_attempts[w].fetch_add(1, Ordering::SeqCst);
            let from = rng.gen_range(0..ACCOUNTS);
            let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
            let amount = rng.gen_range(1..200);
            let r = (receipt(w, i), receipt_value(from, to, amount));
            let outcome =
                within_txn_timeout(transfer(&client, pessimistic, (from, to, amount), r.clone())).await;
            if outcome == Outcome::Acked {
                shared.txn_acks.fetch_add(1, Ordering::SeqCst);
            }
            let failed = outcome != Outcome::Acked;
            records.push(Record {
                writer: name.clone(),
                cycle,
                pairs: vec![r],
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

/// Balances and visible receipts at one snapshot.
pub(super) struct BankView {
    pub(super) balances: Vec<i64>,
    pub(super) receipts: BTreeMap<String, Vec<u8>>,
}

pub(super) async fn read_bank(snap: &mut Snapshot) -> Result<Result<BankView, String>, tikv_client::Error> {
    let keys: Vec<String> = (0..ACCOUNTS).map(account).collect();
    let got: HashMap<String, Vec<u8>> = snap
        .batch_get(keys.clone())
        .await?
        .map(|p| (key_string(p.0), p.1))
        .collect();
    let mut receipts = BTreeMap::new();
    for p in PREFIXES {
        let pairs = snap
            .scan(format!("{p}/cl/rcpt/")..format!("{p}/cl/rcpt0"), u32::MAX)
            .await?;
        receipts.extend(pairs.map(|p| (key_string(p.0), p.1)));
    }
    let mut balances = Vec::new();
    for k in &keys {
        match got.get(k) {
            Some(v) => match parse_balance(k, v) {
                Ok(b) => balances.push(b),
                Err(e) => return Ok(Err(e)),
            },
            None => return Ok(Err(format!("account {k} is missing"))),
        }
    }
    Ok(Ok(BankView { balances, receipts }))
}

/// The bank's invariants on one snapshot: each balance is the initial one plus the visible
/// receipts' transfers (so no transfer is half-visible), the total is constant, none negative.
pub(super) fn check_bank(view: &BankView) -> Result<(), String> {
    let mut expected = vec![INITIAL; ACCOUNTS];
    for (k, v) in &view.receipts {
        let (from, to, amount) = parse_receipt(k, v)?;
        expected[from] -= amount;
        expected[to] += amount;
    }
    let total: i64 = view.balances.iter().sum();
    if total != INITIAL * ACCOUNTS as i64 {
        return Err(format!(
            "the total changed to {total}: balances {:?}",
            view.balances
        ));
    }
    if view.balances.iter().any(|b| *b < 0) {
        return Err(format!("a negative balance: {:?}", view.balances));
    }
    if view.balances != expected {
        let wrong: Vec<String> = (0..ACCOUNTS)
            .filter(|&i| view.balances[i] != expected[i])
            .map(|i| {
                format!(
                    "{} = {} but its {} visible receipts say {}",
                    account(i),
                    view.balances[i],
                    view.receipts.len(),
                    expected[i]
                )
            })
            .collect();
        return Err(format!(
            "balances disagree with the visible transfer receipts (a half-visible transfer): {}",
            wrong.join("; ")
        ));
    }
    Ok(())
}

/// Takes a snapshot every half second and checks the bank on it; reads that fail (a node or PD
/// is down, a lock cannot be resolved yet) are skipped. Returns the number of checked snapshots.
pub(super) fn spawn_checker(client: TransactionClient, shared: Arc<Shared>) -> JoinHandle<u64> {
    tokio::spawn(async move {
        let mut checked = 0u64;
        while !shared.stopped() {
            let cycle = shared.cycle();
            let read = async {
                let ts = client.current_timestamp().await?;
                let mut snap = client.snapshot(ts.clone(), TransactionOptions::new_optimistic());
                read_bank(&mut snap).await.map(|v| (ts, v))
            };
            if let Ok(Ok((ts, view))) = tokio::time::timeout(Duration::from_secs(20), read).await {
                let result = view.and_then(|v| check_bank(&v));
                if let Err(e) = result {
                    shared.report(format!(
                        "seed {}, cycle {cycle}: snapshot at ts {ts:?}: {e}",
                        shared.seed
                    ));
                    return checked;
                }
                checked += 1;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        checked
    })
}
