//! How a fuzz call ended, the rules a call can break, and the per-RPC tallies of a run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::CALL_TIMEOUT;

/// How one call ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A response without any error.
    Ok,
    /// A response carrying an error: `"region"` (errorpb), `"other"` (a key error, an error
    /// string, a PD error header).
    Error(&'static str),
    /// A gRPC status (code name).
    Status(tonic::Code, String),
    /// No answer within [`CALL_TIMEOUT`].
    Timeout,
}

/// Per-RPC tallies of a run, and the calls that broke the rules.
#[derive(Default)]
pub struct Stats {
    /// rpc -> (ok, region error, other error in the response, gRPC status)
    pub per_rpc: BTreeMap<&'static str, [u64; 4]>,
    pub codes: BTreeMap<String, u64>,
    /// One message per (rpc, unusual status code), for the report.
    pub samples: BTreeMap<(&'static str, String), String>,
    /// (index, rpc, what happened, request excerpt)
    pub failures: Vec<(u64, &'static str, String, String)>,
}

pub type SharedStats = Arc<Mutex<Stats>>;

/// Whether a status breaks the rules: the call never reached a healthy server (connection
/// refused or reset, stream reset by a dying handler), or a handler panicked (the node and PD
/// catch panics at the service boundary and answer `Internal` "... failed handling ...").
pub fn transport_failure(code: tonic::Code, msg: &str) -> bool {
    let msg = msg.to_ascii_lowercase();
    let panicked = msg.contains("failed handling") || msg.contains("panic");
    let broken = [
        "transport error",
        "connection refused",
        "connection reset",
        "connection closed",
        "connection error",
        "h2 protocol error",
        "stream no longer needed",
        "broken pipe",
    ]
    .iter()
    .any(|m| msg.contains(m));
    let unhealthy = matches!(
        code,
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal
    );
    panicked || (unhealthy && broken)
}

impl Stats {
    pub fn record(&mut self, i: u64, rpc: &'static str, outcome: &Outcome, request: &dyn Fn() -> String) {
        let slot = self.per_rpc.entry(rpc).or_default();
        match outcome {
            Outcome::Ok => slot[0] += 1,
            Outcome::Error("region") => slot[1] += 1,
            Outcome::Error(_) => slot[2] += 1,
            Outcome::Status(code, msg) => {
                slot[3] += 1;
                *self.codes.entry(format!("{code:?}")).or_default() += 1;
                if matches!(
                    code,
                    tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::Unavailable
                ) {
                    self.samples
                        .entry((rpc, format!("{code:?}")))
                        .or_insert_with(|| excerpt(msg.clone(), 300));
                }
                if transport_failure(*code, msg) {
                    self.failures
                        .push((i, rpc, format!("status {code:?}: {msg}"), request()));
                }
            }
            Outcome::Timeout => {
                slot[3] += 1;
                *self.codes.entry("Timeout".into()).or_default() += 1;
                self.failures
                    .push((i, rpc, format!("no answer within {CALL_TIMEOUT:?}"), request()));
            }
        }
    }
}

/// The first `max` characters of a request's debug form (huge keys are long).
pub fn excerpt(s: String, max: usize) -> String {
    if s.len() <= max {
        s
    } else {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}... ({} bytes)", &s[..cut], s.len())
    }
}

/// Maps a call's result to an [`Outcome`]; `has_error` tells which error a response carries.
pub async fn finish<T, F>(fut: F, has_error: impl FnOnce(&T) -> Option<&'static str>) -> Outcome
where
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Err(_) => Outcome::Timeout,
        Ok(Err(s)) => Outcome::Status(s.code(), s.message().to_owned()),
        Ok(Ok(resp)) => match has_error(resp.get_ref()) {
            Some(kind) => Outcome::Error(kind),
            None => Outcome::Ok,
        },
    }
}
