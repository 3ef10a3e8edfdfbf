//! `POST /pd/api/v1/regions/split` (PD's body `{"split_keys": ["<hex>", …], "retry_limit": 5}`):
//! splits the regions at the keys and waits for the splits (see
//! [`crate::schedule::splitter`]); answers `{"processed-percentage": N, "regions-id": [...]}`.
//!
//! Keys are hex as PD's HTTP client sends them; a string that is not hex is taken as the raw
//! key bytes. The wait is 10 s per try (`retry_limit + 1` tries, at most 60 s).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::{error, ok};
use crate::context::PdContext;
use crate::schedule::splitter;

type Ctx = State<Arc<PdContext>>;

#[derive(Debug, Serialize)]
struct SplitJson {
    #[serde(rename = "processed-percentage")]
    processed_percentage: u64,
    #[serde(rename = "regions-id")]
    regions_id: Vec<u64>,
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn parse(body: &[u8]) -> Result<(Vec<Vec<u8>>, u64), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))?;
    let keys = v.get("split_keys").ok_or("split_keys should be provided.")?;
    let keys = keys.as_array().ok_or("split_keys should be an array.")?;
    if keys.is_empty() {
        return Err("empty split keys.".into());
    }
    let keys = keys
        .iter()
        .map(|k| {
            let s = k.as_str().ok_or("split_keys should contain only strings.")?;
            Ok(decode_hex(s).unwrap_or_else(|| s.as_bytes().to_vec()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let retry = v
        .get("retry_limit")
        .and_then(|r| r.as_f64())
        .unwrap_or(5.0)
        .clamp(0.0, 5.0) as u64;
    Ok((keys, retry))
}

pub async fn split(State(ctx): Ctx, body: Bytes) -> Response {
    let (keys, retry) = match parse(&body) {
        Ok(x) => x,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    if !ctx.cluster.is_bootstrapped() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "cluster is not bootstrapped");
    }
    let wait = Duration::from_secs(10 * (retry + 1));
    let out = splitter::split_regions(&ctx, keys, wait).await;
    ok(&SplitJson {
        processed_percentage: out.processed_percentage,
        regions_id: out.region_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hex_or_raw() {
        let (keys, retry) = parse(br#"{"split_keys": ["6162", "xyz"], "retry_limit": 1}"#).unwrap();
        assert_eq!(keys, vec![b"ab".to_vec(), b"xyz".to_vec()]);
        assert_eq!(retry, 1);
        for bad in [
            r#"{}"#,
            r#"{"split_keys": []}"#,
            r#"{"split_keys": "61"}"#,
            r#"{"split_keys": [1]}"#,
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
