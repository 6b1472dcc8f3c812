//! Name-based UUIDs (RFC 9562 §5.5, version 5) as the SUIT manifest derives vendor and class
//! identifiers (manifest §8.4.8.2): vendor = UUID5(NAMESPACE_DNS, domain), class =
//! UUID5(vendor, class name).

use sha1::Digest;

/// The DNS namespace (RFC 9562 §6.6).
pub const NAMESPACE_DNS: [u8; 16] = [
    0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
];

/// UUID version 5 of `name` in `namespace`.
pub fn v5(namespace: &[u8; 16], name: &[u8]) -> [u8; 16] {
    let mut h = sha1::Sha1::new();
    h.update(namespace);
    h.update(name);
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out[6] = (out[6] & 0x0f) | 0x50;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}

/// Parses a UUID in its text form (with or without dashes) or as 32 hex digits.
pub fn parse(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    hex::decode(hex).ok()?.try_into().ok()
}

/// A vendor id from a UUID or a domain name.
pub fn vendor(name_or_uuid: &str) -> [u8; 16] {
    parse(name_or_uuid).unwrap_or_else(|| v5(&NAMESPACE_DNS, name_or_uuid.as_bytes()))
}

/// A class id from a UUID or a class name under `vendor`.
pub fn class(vendor: &[u8; 16], name_or_uuid: &str) -> [u8; 16] {
    parse(name_or_uuid).unwrap_or_else(|| v5(vendor, name_or_uuid.as_bytes()))
}

/// The canonical text form.
pub fn to_string(uuid: &[u8; 16]) -> String {
    let h = hex::encode(uuid);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_suit_examples() {
        // manifest draft Appendix B: UUID5(DNS, "arm.com") and UUID5(that, "suit").
        let vendor = vendor("arm.com");
        assert_eq!(to_string(&vendor), "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe");
        assert_eq!(
            to_string(&class(&vendor, "suit")),
            "1492af14-2569-5e48-bf42-9b2d51f2ab45"
        );
        assert_eq!(
            super::vendor("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"),
            vendor
        );
    }
}
