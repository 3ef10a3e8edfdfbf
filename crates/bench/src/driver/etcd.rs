//! A minimal etcd v3 driver: `KV.Put` for writes, `KV.Range` for reads and scans (linearizable,
//! etcd's default), over one gRPC connection per endpoint, requests spread round-robin over the
//! endpoints as etcd's own client does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use tonic::transport::{Channel, Endpoint};

use super::{done, is_insert_batch, kind_of, sample, Driver};
use crate::generator::KEY_PREFIX_END;
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::{PutRequest, RangeRequest};
use crate::stats::{OpKind, Outcome, Sample};
use crate::workload::Op;
use crate::BenchError;

pub struct EtcdDriver {
    clients: Vec<KvClient<Channel>>,
    next: AtomicUsize,
}

/// A gRPC status as one line: code and message.
fn status_text(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

impl EtcdDriver {
    /// Connects to every endpoint (`host:port`, client URLs without scheme).
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<EtcdDriver, BenchError> {
        if endpoints.is_empty() {
            return Err(BenchError::Config("no etcd endpoint given".into()));
        }
        let mut clients = Vec::with_capacity(endpoints.len());
        for ep in endpoints {
            let url = if ep.contains("://") {
                ep.clone()
            } else {
                format!("http://{ep}")
            };
            let err = |message: String| BenchError::Connect {
                target: format!("etcd {ep}"),
                message,
            };
            let channel = Endpoint::from_shared(url)
                .map_err(|e| err(e.to_string()))?
                .connect_timeout(timeout)
                .timeout(timeout)
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| err(e.to_string()))?;
            clients.push(KvClient::new(channel));
        }
        Ok(EtcdDriver {
            clients,
            next: AtomicUsize::new(0),
        })
    }

    fn client(&self) -> KvClient<Channel> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        self.clients[i].clone()
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let req = PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ..Default::default()
        };
        self.client().put(req).await.map(|_| ()).map_err(status_text)
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let req = RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        };
        let resp = self.client().range(req).await.map_err(status_text)?;
        Ok(resp.into_inner().kvs.into_iter().next().map(|kv| kv.value))
    }

    async fn scan(&self, start: &[u8], len: u32) -> Result<usize, String> {
        let req = RangeRequest {
            key: start.to_vec(),
            range_end: KEY_PREFIX_END.to_vec(),
            limit: i64::from(len),
            ..Default::default()
        };
        let resp = self.client().range(req).await.map_err(status_text)?;
        Ok(resp.into_inner().kvs.len())
    }

    async fn one(&self, op: &Op) -> Sample {
        let t = Instant::now();
        let outcome = match op {
            Op::Read { key } => super::found(self.get(key).await),
            Op::Update { key, value } | Op::Insert { key, value, .. } => done(self.put(key, value).await),
            Op::Scan { start, len } => done(self.scan(start, *len).await),
            Op::ReadModifyWrite { key, value } => match self.get(key).await {
                Ok(_) => done(self.put(key, value).await),
                Err(e) => Outcome::Error(e),
            },
        };
        sample(kind_of(op), t, outcome)
    }
}

impl Driver for EtcdDriver {
    async fn execute(&self, unit: &[Op], out: &mut Vec<Sample>) {
        if is_insert_batch(unit) {
            // etcd has no batch put outside a Txn; the batch's puts go out concurrently.
            let t = Instant::now();
            let puts = unit.iter().filter_map(|op| match op {
                Op::Insert { key, value, .. } => Some(self.put(key, value)),
                _ => None,
            });
            let results = join_all(puts).await;
            let outcome = match results.into_iter().find_map(|r| r.err()) {
                Some(e) => Outcome::Error(e),
                None => Outcome::Ok,
            };
            out.push(sample(OpKind::BatchInsert, t, outcome));
            return;
        }
        for op in unit {
            out.push(self.one(op).await);
        }
    }
}
