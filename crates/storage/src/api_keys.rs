//! How request keys map to stored keys, per API version and key mode, and the region check.
//!
//! Raw keys: API V1 stores them as is; API V2 requires the raw key-space prefix (`r` + 3-byte
//! keyspace id) and stores them memcomparable-encoded. Transactional keys are always stored
//! memcomparable-encoded (versions append a timestamp); under API V2 they must carry the
//! transactional prefix (`x` + keyspace id). Stored keys are in the space of region boundaries.

use atoll_proto::kvrpcpb::{self, ApiVersion};
use atoll_proto::{errorpb, metapb};
use txn_types::memcomparable;

use crate::{Error, Result};

/// Largest key a request may write or delete (TiKV's `storage.max-key-size`, 8 KiB). As in
/// TiKV, only keys that are written or deleted (and both bounds of a delete-range) are checked:
/// keys that are only read, and scan bounds, may be longer (a client's "+infinity" upper bound
/// is often 8 KiB + 1 bytes of `0xff`).
pub const MAX_KEY_SIZE: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    Raw,
    Txn,
}

impl KeyMode {
    fn prefix(self) -> u8 {
        match self {
            KeyMode::Raw => b'r',
            KeyMode::Txn => b'x',
        }
    }

    /// Whether stored keys are encoded under `ctx`'s API version.
    fn encodes(self, ctx: &kvrpcpb::Context) -> bool {
        self == KeyMode::Txn || is_v2(ctx)
    }
}

pub fn is_v2(ctx: &kvrpcpb::Context) -> bool {
    ctx.api_version == ApiVersion::V2 as i32
}

/// Refuses a key to write or delete that is longer than [`MAX_KEY_SIZE`].
pub fn check_size(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_SIZE {
        return Err(Error::KeyTooLarge {
            size: key.len(),
            limit: MAX_KEY_SIZE,
        });
    }
    Ok(())
}

fn check_mode(ctx: &kvrpcpb::Context, mode: KeyMode, key: &[u8]) -> Result<()> {
    if is_v2(ctx) && (key.len() < 4 || key[0] != mode.prefix()) {
        return Err(Error::InvalidKeyMode(key.to_vec()));
    }
    Ok(())
}

/// The stored key of request key `key` (to read: no size limit).
pub fn stored_key(ctx: &kvrpcpb::Context, mode: KeyMode, key: &[u8]) -> Result<Vec<u8>> {
    check_mode(ctx, mode, key)?;
    if mode.encodes(ctx) {
        Ok(memcomparable::encode_bytes(key))
    } else {
        Ok(key.to_vec())
    }
}

/// The stored key of a key the request writes or deletes: at most [`MAX_KEY_SIZE`].
pub fn stored_written_key(ctx: &kvrpcpb::Context, mode: KeyMode, key: &[u8]) -> Result<Vec<u8>> {
    check_size(key)?;
    stored_key(ctx, mode, key)
}

/// The request key of stored key `stored`.
pub fn user_key(ctx: &kvrpcpb::Context, mode: KeyMode, stored: &[u8]) -> Result<Vec<u8>> {
    if mode.encodes(ctx) {
        Ok(memcomparable::decode_bytes_exact(stored)?)
    } else {
        Ok(stored.to_vec())
    }
}

/// Lower (inclusive) and upper (exclusive) stored-key bounds; `None` is unbounded.
pub type Bounds = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The stored-key bounds of a request range (lower inclusive, upper exclusive); an empty
/// request bound means "unbounded". Under API V2 a range never leaves one keyspace: non-empty
/// bounds must carry the mode's prefix, the keyspace is the lower bound's (else the upper's),
/// and both bounds are clamped to it; a range with neither bound is refused.
pub fn stored_bounds(ctx: &kvrpcpb::Context, mode: KeyMode, lower: &[u8], upper: &[u8]) -> Result<Bounds> {
    let encode = |k: &[u8]| {
        if mode.encodes(ctx) {
            memcomparable::encode_bytes(k)
        } else {
            k.to_vec()
        }
    };
    if !is_v2(ctx) {
        let bound = |k: &[u8]| (!k.is_empty()).then(|| encode(k));
        return Ok((bound(lower), bound(upper)));
    }
    for k in [lower, upper] {
        if !k.is_empty() {
            check_mode(ctx, mode, k)?;
        }
    }
    let anchor = if !lower.is_empty() { lower } else { upper };
    if anchor.is_empty() {
        return Err(Error::InvalidInput(
            "an API V2 range must name its keyspace".into(),
        ));
    }
    let first = anchor[..4].to_vec();
    let id = u32::from_be_bytes([0, anchor[1], anchor[2], anchor[3]]);
    let next = if id < 0x00ff_ffff {
        let b = (id + 1).to_be_bytes();
        vec![mode.prefix(), b[1], b[2], b[3]]
    } else {
        vec![mode.prefix() + 1]
    };
    let lower = if lower.is_empty() { first } else { lower.to_vec() };
    let upper = if upper.is_empty() || upper > next.as_slice() {
        next
    } else {
        upper.to_vec()
    };
    Ok((Some(encode(&lower)), Some(encode(&upper))))
}

/// Intersects stored bounds with a region; `None` when the intersection is empty. The upper
/// bound of the result is empty for "to the end of the key space".
pub fn clamp_to_region(bounds: Bounds, region: &metapb::Region) -> Option<(Vec<u8>, Vec<u8>)> {
    let (lower, upper) = bounds;
    let lower = match lower {
        Some(l) if l > region.start_key => l,
        _ => region.start_key.clone(),
    };
    let upper = match upper {
        Some(u) if region.end_key.is_empty() || u < region.end_key => u,
        _ => region.end_key.clone(),
    };
    if !upper.is_empty() && upper <= lower {
        return None;
    }
    Some((lower, upper))
}

/// Fails with the KeyNotInRegion region error unless stored `key` is in `region`.
pub fn check_in_region(region: &metapb::Region, key: &[u8]) -> Result<()> {
    if txn_types::keys::in_range(key, &region.start_key, &region.end_key) {
        return Ok(());
    }
    Err(Error::from(errorpb::Error {
        message: format!("key is not in region {}", region.id),
        key_not_in_region: Some(errorpb::KeyNotInRegion {
            key: key.to_vec(),
            region_id: region.id,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
        }),
        ..Default::default()
    }))
}
