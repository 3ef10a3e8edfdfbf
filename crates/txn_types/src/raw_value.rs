//! Stored form of a raw value: `user value ++ [expire_ts: u64 big-endian, if EXPIRE flag] ++ meta`.
//!
//! `meta` is one byte of flags. `expire_ts` is in seconds since the Unix epoch; a value whose
//! `expire_ts <= now` is expired and invisible to every read. The same form is used for API V1
//! and V2 requests (V1 simply never sets a TTL unless asked to).

use crate::CodecError;

const FLAG_EXPIRE: u8 = 0x01;
const KNOWN_FLAGS: u8 = FLAG_EXPIRE;

/// A decoded raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawValue {
    pub value: Vec<u8>,
    /// Expiry in seconds since the Unix epoch, if the value has a TTL.
    pub expire_ts: Option<u64>,
}

impl RawValue {
    /// A value living `ttl` seconds from `now` (no expiry when `ttl` is 0).
    pub fn with_ttl(value: Vec<u8>, ttl: u64, now: u64) -> RawValue {
        let expire_ts = (ttl > 0).then(|| now.saturating_add(ttl));
        RawValue { value, expire_ts }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.value.len() + 9);
        out.extend_from_slice(&self.value);
        let mut meta = 0;
        if let Some(ts) = self.expire_ts {
            out.extend_from_slice(&ts.to_be_bytes());
            meta |= FLAG_EXPIRE;
        }
        out.push(meta);
        out
    }

    pub fn decode(mut stored: Vec<u8>) -> Result<RawValue, CodecError> {
        let meta = stored.pop().ok_or(CodecError::Eof)?;
        if meta & !KNOWN_FLAGS != 0 {
            return Err(CodecError::BadMeta(meta));
        }
        let expire_ts = if meta & FLAG_EXPIRE != 0 {
            let at = stored.len().checked_sub(8).ok_or(CodecError::Eof)?;
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&stored[at..]);
            stored.truncate(at);
            Some(u64::from_be_bytes(ts))
        } else {
            None
        };
        Ok(RawValue {
            value: stored,
            expire_ts,
        })
    }

    pub fn is_expired(&self, now: u64) -> bool {
        self.expire_ts.is_some_and(|ts| ts <= now)
    }

    /// Seconds left to live (0 if expired), or `None` without a TTL.
    pub fn ttl_left(&self, now: u64) -> Option<u64> {
        self.expire_ts.map(|ts| ts.saturating_sub(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for v in [
            RawValue {
                value: vec![],
                expire_ts: None,
            },
            RawValue {
                value: b"hello".to_vec(),
                expire_ts: None,
            },
            RawValue {
                value: b"hello".to_vec(),
                expire_ts: Some(1_700_000_000),
            },
            RawValue {
                value: vec![1; 1000],
                expire_ts: Some(0),
            },
        ] {
            assert_eq!(RawValue::decode(v.encode()).expect("decode"), v);
        }
        assert_eq!(
            RawValue {
                value: b"v".to_vec(),
                expire_ts: None
            }
            .encode(),
            b"v\0".to_vec()
        );
    }

    #[test]
    fn ttl_and_expiry() {
        let v = RawValue::with_ttl(b"v".to_vec(), 10, 100);
        assert_eq!(v.expire_ts, Some(110));
        assert!(!v.is_expired(109));
        assert!(v.is_expired(110));
        assert_eq!(v.ttl_left(105), Some(5));
        assert_eq!(v.ttl_left(200), Some(0));
        let forever = RawValue::with_ttl(b"v".to_vec(), 0, 100);
        assert_eq!(forever.expire_ts, None);
        assert!(!forever.is_expired(u64::MAX));
        assert_eq!(forever.ttl_left(5), None);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(RawValue::decode(vec![]), Err(CodecError::Eof));
        assert_eq!(RawValue::decode(vec![1, 2, 0x80]), Err(CodecError::BadMeta(0x80)));
        assert_eq!(RawValue::decode(vec![1, 2, FLAG_EXPIRE]), Err(CodecError::Eof));
    }
}
