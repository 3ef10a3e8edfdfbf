//! Small binary helpers shared by the lock and write record encodings: LEB128 varints,
//! big-endian u64s and length-prefixed byte strings, all read from a moving slice.

use crate::CodecError;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_varint(input: &mut &[u8]) -> Result<u64, CodecError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first().ok_or(CodecError::Eof)?;
        *input = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CodecError::VarintOverflow)
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub(crate) fn get_bytes(input: &mut &[u8]) -> Result<Vec<u8>, CodecError> {
    let len = get_varint(input)? as usize;
    if input.len() < len {
        return Err(CodecError::Eof);
    }
    let (b, rest) = input.split_at(len);
    *input = rest;
    Ok(b.to_vec())
}

pub(crate) fn get_u8(input: &mut &[u8]) -> Result<u8, CodecError> {
    let (&b, rest) = input.split_first().ok_or(CodecError::Eof)?;
    *input = rest;
    Ok(b)
}

pub(crate) fn get_u64(input: &mut &[u8]) -> Result<u64, CodecError> {
    if input.len() < 8 {
        return Err(CodecError::Eof);
    }
    let (b, rest) = input.split_at(8);
    *input = rest;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_be_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = vec![];
            put_varint(&mut out, v);
            let mut s = out.as_slice();
            assert_eq!(get_varint(&mut s).unwrap(), v);
            assert!(s.is_empty());
        }
        assert_eq!(get_varint(&mut &[0x80u8][..]), Err(CodecError::Eof));
        assert_eq!(
            get_varint(&mut &[0xffu8; 11][..]),
            Err(CodecError::VarintOverflow)
        );
    }
}
