//! Entry points for fuzzers (`fuzz/`) and for the property tests that stand in for them on
//! stable CI. Each takes arbitrary bytes and must never panic.

use crate::{Envelope, PublicKey, TrustAnchor, TrustPolicy};

/// Decodes an envelope and, if that works, verifies it against an HMAC key (the cheapest
/// authenticator), then parses the manifest without authentication as `inspect` would.
pub fn decode_envelope(data: &[u8]) -> bool {
    let Ok(envelope) = Envelope::decode(data) else {
        return false;
    };
    let _ = envelope.authentication();
    let _ = crate::Manifest::decode_unauthenticated(envelope.manifest_bytes());
    let anchors = [TrustAnchor::new("fuzz", PublicKey::Hmac256(b"fuzz"))];
    envelope.verify(&anchors, &TrustPolicy::default()).is_ok()
}

/// Parses arbitrary bytes as a manifest map and walks every command sequence.
pub fn decode_manifest(data: &[u8]) {
    if let Ok(m) = crate::Manifest::decode_unauthenticated(data) {
        for seq in [m.shared_sequence, m.validate, m.load, m.invoke]
            .into_iter()
            .flatten()
        {
            for (_, c) in seq.iter() {
                let _ = c.name();
            }
        }
        if let Some(crate::Severable::Inline(t)) = m.text {
            for _ in t.entries() {}
        }
    }
}

/// Parses arbitrary bytes as a command sequence.
pub fn decode_command_sequence(data: &[u8]) {
    if let Ok(seq) = crate::CommandSequence::decode(data) {
        for (_, c) in seq.iter() {
            if let crate::Command::TryEach(t) = c {
                for _ in t.branches() {}
            }
        }
    }
}
