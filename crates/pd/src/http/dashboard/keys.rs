//! Keys shown readably: region boundaries are memcomparable-encoded; under API V2 the decoded
//! key starts with a mode byte (`r` raw, `x` transactional) and a 3-byte keyspace id.
//!
//! A key is shown as text when every byte is printable ASCII, else as `0x` and lowercase hex.
//! Filters take keys in the same form ([`parse_key`]).

use serde::Serialize;

use super::super::format::hex_upper;

/// Largest keyspace id (3 bytes).
pub const MAX_KEYSPACE_ID: u32 = 0x00ff_ffff;

/// Which end of a range a key bounds (an empty key is -∞ as a start, +∞ as an end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Start,
    End,
}

/// API V2 key mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Raw,
    Txn,
}

impl Mode {
    pub fn prefix(self) -> u8 {
        match self {
            Mode::Raw => b'r',
            Mode::Txn => b'x',
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Raw => "raw",
            Mode::Txn => "txn",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "raw" | "r" => Some(Mode::Raw),
            "txn" | "x" => Some(Mode::Txn),
            _ => None,
        }
    }

    fn from_prefix(b: u8) -> Option<Mode> {
        match b {
            b'r' => Some(Mode::Raw),
            b'x' => Some(Mode::Txn),
            _ => None,
        }
    }
}

/// The 4-byte V2 prefix of `mode` and keyspace `id`.
pub fn keyspace_prefix(mode: Mode, id: u32) -> Vec<u8> {
    let b = id.to_be_bytes();
    vec![mode.prefix(), b[1], b[2], b[3]]
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyspaceJson {
    pub mode: &'static str,
    pub id: u32,
}

/// One key as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyJson {
    /// The key as PD stores it, uppercase hex (PD's form).
    pub hex: String,
    /// Empty: -∞ as a start, +∞ as an end.
    pub infinite: bool,
    /// Whether it is a memcomparable encoding (then `decoded` is what it encodes).
    pub encoded: bool,
    /// The decoded key, readable (text or `0x` hex).
    pub decoded: String,
    /// The timestamp suffix of an encoded MVCC key, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
    /// The API V2 keyspace and mode, if the decoded key has a V2 prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<KeyspaceJson>,
    /// The user key after the V2 prefix (or the decoded key), readable.
    pub key: String,
    /// One line for tables: `-∞`, `+∞`, `raw ks 1: user`, or the readable key.
    pub display: String,
}

/// Text if every byte is printable ASCII (and it does not look like hex), else `0x` + hex.
pub fn readable(key: &[u8]) -> String {
    let printable = key.iter().all(|b| (0x20..=0x7e).contains(b));
    if printable && !key.starts_with(b"0x") {
        String::from_utf8_lossy(key).into_owned()
    } else {
        let mut s = String::with_capacity(2 + key.len() * 2);
        s.push_str("0x");
        for b in key {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

/// A key typed into a filter: `0x` + hex digits, or text taken as its bytes.
pub fn parse_key(s: &str) -> Result<Vec<u8>, String> {
    let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) else {
        return Ok(s.as_bytes().to_vec());
    };
    if hex.len() % 2 != 0 {
        return Err(format!("malformed key {s:?}: hex needs an even number of digits"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| {
                    format!(
                        "malformed key {s:?}: {:?} is not hex",
                        hex.get(i..i + 2).unwrap_or("")
                    )
                })
        })
        .collect()
}

/// The decoded form of a stored key: the memcomparable decoding (without a timestamp
/// suffix) if it is one, else the key itself. Order-preserving among encoded keys.
pub fn decoded(key: &[u8]) -> (Vec<u8>, bool, Option<u64>) {
    match txn_types::memcomparable::decode_bytes(key) {
        Ok((k, [])) => (k, true, None),
        Ok((k, rest)) if rest.len() == 8 => {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(rest);
            // MVCC keys carry the timestamp inverted (descending).
            (k, true, Some(!u64::from_be_bytes(ts)))
        }
        _ => (key.to_vec(), false, None),
    }
}

/// Splits a decoded key into its V2 keyspace and the rest, if it has a V2 prefix.
pub fn split_keyspace(decoded: &[u8]) -> Option<(Mode, u32, &[u8])> {
    if decoded.len() < 4 {
        return None;
    }
    let mode = Mode::from_prefix(decoded[0])?;
    let id = u32::from_be_bytes([0, decoded[1], decoded[2], decoded[3]]);
    Some((mode, id, &decoded[4..]))
}

/// Describes a stored key.
pub fn describe(key: &[u8], side: Side) -> KeyJson {
    if key.is_empty() {
        let display = match side {
            Side::Start => "-∞",
            Side::End => "+∞",
        };
        return KeyJson {
            hex: String::new(),
            infinite: true,
            encoded: false,
            decoded: String::new(),
            ts: None,
            keyspace: None,
            key: String::new(),
            display: display.into(),
        };
    }
    let (dec, encoded, ts) = decoded(key);
    // Only encoded keys are taken as V2 (V2 region boundaries are always encoded).
    let ks = encoded.then(|| split_keyspace(&dec)).flatten();
    let (keyspace, user) = match ks {
        Some((mode, id, rest)) => (
            Some(KeyspaceJson {
                mode: mode.name(),
                id,
            }),
            rest,
        ),
        None => (None, &dec[..]),
    };
    let key_text = readable(user);
    let mut display = match &keyspace {
        Some(k) if user.is_empty() => format!("{} ks {}", k.mode, k.id),
        Some(k) => format!("{} ks {}: {key_text}", k.mode, k.id),
        None => key_text.clone(),
    };
    if let Some(ts) = ts {
        display.push_str(&format!(" @{ts}"));
    }
    KeyJson {
        hex: hex_upper(key),
        infinite: false,
        encoded,
        decoded: readable(&dec),
        ts,
        keyspace,
        key: key_text,
        display,
    }
}

#[cfg(test)]
mod tests {
    use txn_types::memcomparable::encode_bytes;

    use super::*;

    #[test]
    fn readable_text_or_hex() {
        assert_eq!(readable(b"user_42"), "user_42");
        assert_eq!(readable(b"a\x00b"), "0x610062");
        assert_eq!(
            readable(b"0x12"),
            "0x30783132",
            "text that looks like hex is shown as hex"
        );
        assert_eq!(readable(b""), "");
        for k in [&b"abc"[..], b"a\x00\xff", b"0x1", b""] {
            assert_eq!(parse_key(&readable(k)).unwrap(), k);
        }
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(parse_key("0x1").unwrap_err().contains("even number"));
        assert!(parse_key("0xzz").unwrap_err().contains("not hex"));
        assert!(parse_key("0xé1").is_err());
        assert_eq!(parse_key("0X0aFF").unwrap(), vec![0x0a, 0xff]);
    }

    #[test]
    fn v2_boundaries_decode_to_keyspace_and_mode() {
        let k = describe(&encode_bytes(b"r\0\0\x01"), Side::Start);
        assert!(k.encoded);
        assert_eq!(k.keyspace, Some(KeyspaceJson { mode: "raw", id: 1 }));
        assert_eq!(k.display, "raw ks 1");
        assert_eq!(k.hex, "7200000100000000FB");
        let k = describe(&encode_bytes(b"x\x00\x01\x00user1"), Side::End);
        assert_eq!(k.keyspace.as_ref().unwrap().id, 256);
        assert_eq!(k.display, "txn ks 256: user1");
        assert_eq!(k.key, "user1");
        assert_eq!(k.decoded, "0x780001007573657231");
    }

    #[test]
    fn other_keys() {
        assert_eq!(describe(b"", Side::Start).display, "-∞");
        assert_eq!(describe(b"", Side::End).display, "+∞");
        assert!(describe(b"", Side::End).infinite);
        // Not an encoding: shown as it is, no keyspace even if it starts with r.
        let k = describe(b"rabbit", Side::Start);
        assert!(!k.encoded);
        assert_eq!(k.keyspace, None);
        assert_eq!(k.display, "rabbit");
        // An encoded V1 key.
        let k = describe(&encode_bytes(b"t\x80\0\0"), Side::Start);
        assert!(k.encoded);
        assert_eq!(k.display, "0x74800000");
        // An encoded MVCC key with a timestamp suffix.
        let mut mvcc = encode_bytes(b"x\0\0\0k");
        mvcc.extend_from_slice(&(!42u64).to_be_bytes());
        let k = describe(&mvcc, Side::Start);
        assert_eq!(k.ts, Some(42));
        assert_eq!(k.display, "txn ks 0: k @42");
    }

    #[test]
    fn keyspace_prefixes() {
        assert_eq!(keyspace_prefix(Mode::Raw, 1), b"r\0\0\x01");
        assert_eq!(keyspace_prefix(Mode::Txn, MAX_KEYSPACE_ID), b"x\xff\xff\xff");
        assert_eq!(split_keyspace(b"x\0\0\x02ab"), Some((Mode::Txn, 2, &b"ab"[..])));
        assert_eq!(split_keyspace(b"x\0\0"), None);
        assert_eq!(Mode::parse("txn"), Some(Mode::Txn));
        assert_eq!(Mode::parse("v"), None);
    }
}
