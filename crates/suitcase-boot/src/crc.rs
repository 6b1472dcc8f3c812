//! CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): the torn-write check on the state
//! record. It detects a partially written record, not an attacker, and it need not be fast:
//! the record is 92 bytes, read a few times per boot.

/// The CRC-32 of `bytes` (the zlib / PNG / Ethernet variant).
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::crc32;

    #[test]
    fn check_value_matches_the_catalogue() {
        // The "check" value of CRC-32/ISO-HDLC in the CRC RevEng catalogue.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
