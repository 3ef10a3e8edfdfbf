//! Drivers over the `tikv-client` crate: they reach the cluster through PD exactly as any TiKV
//! application does, so they work against Atoll or TiKV alike.

use std::time::{Duration, Instant};

use tikv_client::{
    BoundRange, CheckLevel, Config, Key, KvPair, RawClient, TransactionClient, TransactionOptions,
};

use super::{done, failed, found, is_insert_batch, kind_of, sample, Driver};
use crate::generator::KEY_PREFIX_END;
use crate::stats::{OpKind, Outcome, Sample};
use crate::workload::Op;
use crate::BenchError;

/// Which TiKV API version the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ApiVersion {
    V1,
    /// Keys in keyspace `DEFAULT`.
    V2,
}

impl ApiVersion {
    pub fn parse(s: &str) -> Option<ApiVersion> {
        match s.to_ascii_lowercase().as_str() {
            "v1" | "1" => Some(ApiVersion::V1),
            "v2" | "2" => Some(ApiVersion::V2),
            _ => None,
        }
    }

    fn config(self, timeout: Duration) -> Config {
        let config = Config::default().with_timeout(timeout);
        match self {
            ApiVersion::V1 => config,
            ApiVersion::V2 => config.with_default_keyspace(),
        }
    }
}

/// `[start, end of the bench keys)`.
fn scan_range(start: &[u8]) -> BoundRange {
    BoundRange::from(Key::from(start.to_vec())..Key::from(KEY_PREFIX_END.to_vec()))
}

fn connect_error(e: tikv_client::Error, pd: &[String]) -> BenchError {
    BenchError::Connect {
        target: format!("PD {}", pd.join(",")),
        message: e.to_string(),
    }
}

/// Raw KV through `RawClient`.
pub struct RawDriver {
    client: RawClient,
}

impl RawDriver {
    pub async fn connect(pd: &[String], api: ApiVersion, timeout: Duration) -> Result<RawDriver, BenchError> {
        let client = RawClient::new_with_config(pd.to_vec(), api.config(timeout))
            .await
            .map_err(|e| connect_error(e, pd))?;
        Ok(RawDriver { client })
    }

    async fn one(&self, op: &Op) -> Sample {
        let t = Instant::now();
        let outcome = match op {
            Op::Read { key } => found(self.client.get(key.clone()).await),
            Op::Update { key, value } | Op::Insert { key, value, .. } => {
                done(self.client.put(key.clone(), value.clone()).await)
            }
            Op::Scan { start, len } => done(self.client.scan(scan_range(start), *len).await),
            Op::ReadModifyWrite { key, value } => match self.client.get(key.clone()).await {
                Ok(_) => done(self.client.put(key.clone(), value.clone()).await),
                Err(e) => Outcome::Error(e.to_string()),
            },
        };
        sample(kind_of(op), t, outcome)
    }
}

impl Driver for RawDriver {
    async fn execute(&self, unit: &[Op], out: &mut Vec<Sample>) {
        if is_insert_batch(unit) {
            let pairs: Vec<KvPair> = unit
                .iter()
                .filter_map(|op| match op {
                    Op::Insert { key, value, .. } => Some(KvPair::new(key.clone(), value.clone())),
                    _ => None,
                })
                .collect();
            let t = Instant::now();
            let r = self.client.batch_put(pairs).await;
            out.push(sample(OpKind::BatchInsert, t, done(r)));
            return;
        }
        for op in unit {
            out.push(self.one(op).await);
        }
    }
}

/// Transactions through `TransactionClient`: every unit is one optimistic transaction (begin,
/// its ops, commit). Puts are buffered by the client until commit, so the commit carries the
/// write cost.
pub struct TxnDriver {
    client: TransactionClient,
}

impl TxnDriver {
    pub async fn connect(pd: &[String], api: ApiVersion, timeout: Duration) -> Result<TxnDriver, BenchError> {
        let client = TransactionClient::new_with_config(pd.to_vec(), api.config(timeout))
            .await
            .map_err(|e| connect_error(e, pd))?;
        Ok(TxnDriver { client })
    }

    fn options() -> TransactionOptions {
        // A failed transaction is rolled back explicitly; never panic on drop.
        TransactionOptions::new_optimistic().drop_check(CheckLevel::None)
    }
}

impl Driver for TxnDriver {
    async fn execute(&self, unit: &[Op], out: &mut Vec<Sample>) {
        let started = Instant::now();
        let batch = is_insert_batch(unit);
        let whole = if batch { OpKind::BatchInsert } else { OpKind::Txn };
        let begun = self.client.begin_with_options(Self::options()).await;
        let mut txn = match begun {
            Ok(txn) => {
                out.push(sample(OpKind::Begin, started, Outcome::Ok));
                txn
            }
            Err(e) => {
                out.push(sample(OpKind::Begin, started, Outcome::Error(e.to_string())));
                if !batch {
                    out.push(failed(OpKind::Txn, format!("begin: {e}")));
                }
                return;
            }
        };
        for op in unit {
            let t = Instant::now();
            let outcome = match op {
                Op::Read { key } => found(txn.get(key.clone()).await),
                Op::Update { key, value } | Op::Insert { key, value, .. } => {
                    done(txn.put(key.clone(), value.clone()).await)
                }
                Op::Scan { start, len } => done(txn.scan(scan_range(start), *len).await.map(|it| it.count())),
                Op::ReadModifyWrite { key, value } => match txn.get(key.clone()).await {
                    Ok(_) => done(txn.put(key.clone(), value.clone()).await),
                    Err(e) => Outcome::Error(e.to_string()),
                },
            };
            let error = match &outcome {
                Outcome::Error(msg) => Some(msg.clone()),
                _ => None,
            };
            if !batch {
                out.push(sample(kind_of(op), t, outcome));
            }
            if let Some(msg) = error {
                // The transaction cannot go on; its rollback error (if any) adds nothing.
                let _ = txn.rollback().await;
                out.push(sample(whole, started, Outcome::Error(msg)));
                return;
            }
        }
        let t = Instant::now();
        let committed = done(txn.commit().await);
        if !batch {
            out.push(sample(OpKind::Commit, t, committed.clone()));
        }
        if committed != Outcome::Ok {
            let _ = txn.rollback().await;
        }
        out.push(sample(whole, started, committed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_parse() {
        assert_eq!(ApiVersion::parse("V2"), Some(ApiVersion::V2));
        assert_eq!(ApiVersion::parse("1"), Some(ApiVersion::V1));
        assert_eq!(ApiVersion::parse("v3"), None);
    }
}
