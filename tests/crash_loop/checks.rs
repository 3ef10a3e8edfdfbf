//! Part of the crash-loop test (`tests/crash_loop_e2e.rs`): the end checks.

use super::*;

// ---------------------------------------------------------------------------------------------
// The end checks
// ---------------------------------------------------------------------------------------------

/// The attempt that wrote a key and the value it wrote; `None`: the key was never written.
type Written<'a> = Option<(&'a Record, &'a Vec<u8>)>;

/// Every raw attempt against what the store holds now.
pub(super) async fn verify_raw(client: &RawClient, w: &RawWriter, records: &[Record], seed: u64) {
    // Each key with the attempt that wrote it (and the value), or none: never written.
    let mut keys: Vec<(String, Written)> = Vec::new();
    for r in records {
        for (k, v) in &r.pairs {
            keys.push((k.clone(), Some((r, v))));
        }
    }
    // The attempt after the last one was never made.
    for j in 0..w.batch {
        keys.push((raw_key(w, records.len() as u64, j), None));
    }
    for chunk in keys.chunks(256) {
        let names: Vec<String> = chunk.iter().map(|(k, _)| k.clone()).collect();
        let got: HashMap<String, Vec<u8>> = wait_ok(
            RECOVER_TIMEOUT,
            &format!("{}: batch_get of {} keys", w.name, names.len()),
            || client.batch_get(names.clone()),
        )
        .await
        .into_iter()
        .map(|p| (key_string(p.0), p.1))
        .collect();
        for (k, written) in chunk {
            let have = got.get(k);
            let Some((record, want)) = *written else {
                assert!(
                    have.is_none(),
                    "seed {seed}: {}: key {k} was never written but reads {have:?}",
                    w.name
                );
                continue;
            };
            let ok = match record.outcome {
                Outcome::Acked => have == Some(want),
                _ => have.is_none() || have == Some(want),
            };
            assert!(
                ok,
                "seed {seed}: {} raw write of {k} (cycle {}) {}: expected {:?}, read {:?}",
                w.name,
                record.cycle,
                match record.outcome {
                    Outcome::Acked => "was acknowledged but is lost or wrong",
                    _ => "failed, yet reads a value never written",
                },
                String::from_utf8_lossy(want),
                have.map(|v| String::from_utf8_lossy(v).into_owned()),
            );
        }
    }
}

/// Reads `keys` in one snapshot, in chunks.
pub(super) async fn snapshot_get(
    snap: &mut Snapshot,
    keys: &[String],
) -> Result<HashMap<String, Vec<u8>>, tikv_client::Error> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(512) {
        out.extend(
            snap.batch_get(chunk.to_vec())
                .await?
                .map(|p| (key_string(p.0), p.1)),
        );
    }
    Ok(out)
}

/// Every transaction attempt against one snapshot: committed ones fully visible, unknown ones
/// all or nothing, aborted ones invisible; the bank balanced and matching its receipts.
pub(super) async fn verify_txns(client: &TransactionClient, bank: &[Record], groups: &[Record], seed: u64) {
    let group_keys: Vec<String> = groups
        .iter()
        .flat_map(|r| r.pairs.iter().map(|(k, _)| k.clone()))
        .collect();
    let (view, group_view) = wait_ok(RECOVER_TIMEOUT, "a snapshot of every transaction", || {
        let group_keys = group_keys.clone();
        async move {
            let ts = client.current_timestamp().await?;
            let mut snap = client.snapshot(ts, TransactionOptions::new_optimistic());
            let view = read_bank(&mut snap).await?;
            let groups = snapshot_get(&mut snap, &group_keys).await?;
            Ok::<_, tikv_client::Error>((view, groups))
        }
    })
    .await;
    let view = view.unwrap_or_else(|e| panic!("seed {seed}: final snapshot: {e}"));

    // Receipts: one per transfer attempt, so each says whether that transfer is visible.
    let mut attempted: HashMap<&str, &Record> = HashMap::new();
    for r in bank {
        attempted.insert(r.pairs[0].0.as_str(), r);
    }
    for (k, v) in &view.receipts {
        let r = attempted
            .get(k.as_str())
            .unwrap_or_else(|| panic!("seed {seed}: receipt {k} is visible but no transfer wrote it"));
        assert!(
            matches!(r.outcome, Outcome::Acked | Outcome::Unknown(_)) && v == &r.pairs[0].1,
            "seed {seed}: {} transfer {k} (cycle {}) was {} yet its receipt reads {:?}",
            r.writer,
            r.cycle,
            r.outcome.name(),
            String::from_utf8_lossy(v)
        );
    }
    for r in bank.iter().filter(|r| r.outcome == Outcome::Acked) {
        let k = &r.pairs[0].0;
        assert!(
            view.receipts.contains_key(k),
            "seed {seed}: {} committed transfer {k} (cycle {}) is not visible",
            r.writer,
            r.cycle
        );
    }
    if let Err(e) = check_bank(&view) {
        panic!("seed {seed}: final bank state: {e}");
    }

    for r in groups {
        let present: Vec<&(String, Vec<u8>)> = r
            .pairs
            .iter()
            .filter(|(k, _)| group_view.contains_key(k))
            .collect();
        let wrong: Vec<&String> = r
            .pairs
            .iter()
            .filter(|(k, v)| group_view.get(k).is_some_and(|have| have != v))
            .map(|(k, _)| k)
            .collect();
        let all = present.len() == r.pairs.len();
        let ok = wrong.is_empty()
            && match r.outcome {
                Outcome::Acked => all,
                Outcome::Unknown(_) => all || present.is_empty(),
                Outcome::Aborted => present.is_empty(),
            };
        assert!(
            ok,
            "seed {seed}: {} transaction {:?} (cycle {}, {}{}) is {} of {} keys visible{}",
            r.writer,
            r.pairs.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            r.cycle,
            r.outcome.name(),
            match &r.outcome {
                Outcome::Unknown(e) => format!(": {e}"),
                _ => String::new(),
            },
            present.len(),
            r.pairs.len(),
            if wrong.is_empty() {
                String::new()
            } else {
                format!(", wrong values at {wrong:?}")
            }
        );
    }
}

pub(super) fn summary(records: &[Record]) -> String {
    let acked = records.iter().filter(|r| r.outcome == Outcome::Acked).count();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for r in records {
        if let Outcome::Unknown(e) = &r.outcome {
            *kinds.entry(error_kind(e)).or_default() += 1;
        }
    }
    let unknown: usize = kinds.values().sum();
    let aborted = records.len() - acked - unknown;
    format!("{acked} acknowledged, {unknown} unknown {kinds:?}, {aborted} aborted")
}

/// A short name for an error's kind: its variant and, for key errors, the field that is set.
pub(super) fn error_kind(e: &str) -> String {
    let variant: String = e.chars().take_while(|c| c.is_alphanumeric()).collect();
    let field = [
        "locked: Some",
        "conflict: Some",
        "txn_not_found: Some",
        "commit_ts_expired: Some",
        "already_exist: Some",
        "deadlock: Some",
        "not_leader: Some",
        "epoch_not_match: Some",
        "region_not_found: Some",
        "server_is_busy: Some",
        "stale_command: Some",
        "retryable: \"",
        "abort: \"",
    ]
    .iter()
    .find(|f| {
        e.find(**f).is_some_and(|i| {
            // `retryable: ""` / `abort: ""` are empty, not set.
            !f.ends_with('"') || !e[i + f.len()..].starts_with('"')
        })
    })
    .map(|f| f.split(':').next().unwrap_or_default().to_owned());
    match field {
        Some(f) => format!("{variant}/{f}"),
        None => variant,
    }
}

pub(super) async fn join_writer<T>(h: JoinHandle<T>, what: &str, seed: u64) -> T {
    tokio::time::timeout(WRITER_STOP_TIMEOUT, h)
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: {what} did not stop within {WRITER_STOP_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("seed {seed}: {what} panicked: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------
