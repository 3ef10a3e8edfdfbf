//! CRC-64/XZ (ECMA-182 polynomial, reflected), the digest behind TiKV's `Crc64_Xor` checksum:
//! each pair's digest is `crc64(key ++ value)`, and a range's checksum is their XOR.

const POLY: u64 = 0xC96C_5795_D787_0F42;

const fn table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut j = 0;
        while j < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ POLY } else { crc >> 1 };
            j += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
}

static TABLE: [u64; 256] = table();

/// An incremental CRC-64/XZ.
pub struct Crc64(u64);

impl Default for Crc64 {
    fn default() -> Self {
        Crc64::new()
    }
}

impl Crc64 {
    pub fn new() -> Crc64 {
        Crc64(!0)
    }
    pub fn update(&mut self, data: &[u8]) {
        let mut crc = self.0;
        for b in data {
            crc = TABLE[((crc ^ *b as u64) & 0xff) as usize] ^ (crc >> 8);
        }
        self.0 = crc;
    }
    pub fn finish(&self) -> u64 {
        !self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Crc64;

    #[test]
    fn check_value() {
        let mut c = Crc64::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), 0x995D_C9BB_DF19_39FA);
        assert_eq!(Crc64::new().finish(), 0);
    }
}
