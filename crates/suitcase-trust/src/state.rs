//! The trust state: root keys, release signers, thresholds, revocations.

use core::fmt;
use core::num::NonZeroUsize;

use sha2::Digest as _;
use suitcase_manifest::{Actions, ComponentId, Error, Reason};

use crate::{
    KEY_ID_LEN, MAX_FRESHNESS_SIGNERS, MAX_KEY_LEN, MAX_PREFIX_LEN, MAX_REVOKED, MAX_ROOTS,
    MAX_RULES, MAX_SIGNERS,
};

/// A key id: the first 8 bytes of SHA-256 over the public key bytes.
pub type KeyId = [u8; KEY_ID_LEN];

/// The algorithm of a key in the trust state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// P-256, SEC1 uncompressed (65 bytes): ESP256 (-9) and ES256 (-7).
    P256,
    /// Ed25519 (32 bytes): Ed25519 (-19) and EdDSA (-8).
    Ed25519,
}

impl KeyKind {
    pub(crate) fn code(self) -> u64 {
        match self {
            Self::P256 => 1,
            Self::Ed25519 => 2,
        }
    }

    pub(crate) fn from_code(code: u64) -> Option<Self> {
        match code {
            1 => Some(Self::P256),
            2 => Some(Self::Ed25519),
            _ => None,
        }
    }

    /// The key type's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "p256",
            Self::Ed25519 => "ed25519",
        }
    }
}

/// A public key held in the trust state.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key {
    kind: KeyKind,
    len: u8,
    bytes: [u8; MAX_KEY_LEN],
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} ", self.kind.name())?;
        for b in self.id() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

impl Key {
    pub(crate) const EMPTY: Self = Self {
        kind: KeyKind::Ed25519,
        len: 0,
        bytes: [0; MAX_KEY_LEN],
    };

    /// A key of `kind` from its bytes, checked to be a valid public key.
    ///
    /// # Errors
    /// [`TrustError::Document`] for a wrong length or a point that is not on the curve.
    pub fn new(kind: KeyKind, bytes: &[u8]) -> Result<Self, TrustError> {
        let valid = match kind {
            KeyKind::P256 => {
                bytes.len() == 65 && p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).is_ok()
            }
            KeyKind::Ed25519 => <[u8; 32]>::try_from(bytes)
                .is_ok_and(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).is_ok()),
        };
        if !valid {
            return Err(TrustError::Document {
                what: "a key is not a valid P-256 (65-byte SEC1) or Ed25519 (32-byte) public key",
            });
        }
        let mut out = Self::EMPTY;
        out.kind = kind;
        out.len = u8::try_from(bytes.len()).unwrap_or(0);
        if let Some(dst) = out.bytes.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        Ok(out)
    }

    /// The key's algorithm.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The public key bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The key id: SHA-256 of the key bytes, first 8 bytes (the COSE kid suitcase writes).
    pub fn id(&self) -> KeyId {
        let digest = sha2::Sha256::digest(self.bytes());
        let mut id = [0; KEY_ID_LEN];
        for (d, s) in id.iter_mut().zip(digest.iter()) {
            *d = *s;
        }
        id
    }

    /// The key as a `suitcase-manifest` verification key.
    pub(crate) fn public_key(&self) -> Option<suitcase_manifest::PublicKey<'static>> {
        match self.kind {
            KeyKind::P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(self.bytes())
                .ok()
                .map(suitcase_manifest::PublicKey::P256),
            KeyKind::Ed25519 => <[u8; 32]>::try_from(self.bytes())
                .ok()
                .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
                .map(suitcase_manifest::PublicKey::Ed25519),
        }
    }
}

/// A component-identifier prefix (an encoded SUIT_Component_Identifier), or every component.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    len: u8,
    bytes: [u8; MAX_PREFIX_LEN],
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.component() {
            None => f.write_str("Prefix(*)"),
            Some(id) => {
                f.write_str("Prefix(")?;
                for (i, s) in id.segments().enumerate() {
                    if i > 0 {
                        f.write_str("/")?;
                    }
                    for b in s {
                        write!(f, "{b:02x}")?;
                    }
                }
                f.write_str(")")
            }
        }
    }
}

impl Prefix {
    /// Every component.
    pub const ALL: Self = Self {
        len: 0,
        bytes: [0; MAX_PREFIX_LEN],
    };

    /// A prefix from an encoded SUIT_Component_Identifier (`[+ bstr]`).
    ///
    /// # Errors
    /// [`TrustError::Document`] if it is not one, or longer than [`MAX_PREFIX_LEN`] bytes.
    pub fn new(encoded: &[u8]) -> Result<Self, TrustError> {
        let too_long = TrustError::Document {
            what: "a component prefix is longer than 32 encoded bytes",
        };
        if encoded.len() > MAX_PREFIX_LEN {
            return Err(too_long);
        }
        ComponentId::decode(encoded).map_err(|_| TrustError::Document {
            what: "a component prefix is not a SUIT_Component_Identifier",
        })?;
        let mut out = Self::ALL;
        out.len = u8::try_from(encoded.len()).map_err(|_| too_long)?;
        if let Some(dst) = out.bytes.get_mut(..encoded.len()) {
            dst.copy_from_slice(encoded);
        }
        Ok(out)
    }

    /// The encoded identifier; empty for every component.
    pub fn encoded(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The identifier, or `None` for every component.
    pub fn component(&self) -> Option<ComponentId<'_>> {
        if self.len == 0 {
            None
        } else {
            ComponentId::decode(self.encoded()).ok()
        }
    }
}

/// A key allowed to sign releases, for the components under `component` and `actions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleaseSigner {
    /// The key.
    pub key: Key,
    /// What it may authorise (install, invoke or both).
    pub actions: Actions,
    /// The components it covers.
    pub component: Prefix,
}

/// At least `threshold` distinct release signers must sign manifests naming components under
/// `component` (RFC 9019 §6: policies with several signers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThresholdRule {
    /// The components.
    pub component: Prefix,
    /// Distinct signers required.
    pub threshold: u8,
}

/// Why a trust document, a trust update or a release was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustError {
    /// The trust document (or record) is malformed or inconsistent.
    Document {
        /// What is wrong.
        what: &'static str,
    },
    /// A list would exceed its bound.
    Capacity {
        /// Which list.
        what: &'static str,
    },
    /// The envelope failed decoding or authentication (for a trust update: not signed by
    /// enough root keys in force).
    Manifest(Error),
    /// The envelope is authentic but not a trust update.
    NotTrustUpdate {
        /// What is missing.
        what: &'static str,
    },
    /// The integrated trust document does not match the digest or size the manifest signs.
    PayloadMismatch,
    /// The trust update's sequence number is not above the state in force.
    Rollback {
        /// The state in force.
        current: u64,
        /// The update's.
        offered: u64,
    },
    /// The update replaces the root keys but is not also signed by the threshold of the new
    /// root (TUF §5.3.4).
    NewRootNotSigned(Error),
    /// A release's only signatures are by revoked keys.
    Revoked {
        /// The revoked key id found in the release.
        kid: KeyId,
        /// The sequence number of the trust state that lists it.
        by: u64,
    },
    /// A release names the trust-store component: only root-signed trust updates may.
    ReleaseTouchesTrust,
    /// A trust update's new state drops a key id the state in force revoked: revocation is
    /// permanent ([`TrustState::check_successor`]).
    Unrevoked {
        /// The revoked key id the new state no longer lists.
        kid: KeyId,
    },
    /// Revoking one more key would exceed [`MAX_REVOKED`]: revocation is permanent, so the
    /// list never shrinks. Remove the key as a release signer instead (it is no longer trusted,
    /// only not named as revoked), or re-provision the device (a new genesis state).
    RevocationFull,
    /// A freshness statement was refused (docs/trust.md, "Freshness").
    Freshness(crate::FreshnessError),
}

impl TrustError {
    /// The stable reason code, as `suitcase manifest check` and the agent report it.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Manifest(e) | Self::NewRootNotSigned(e) => e.reason(),
            Self::Rollback { .. } => Reason::SequenceRollback,
            Self::PayloadMismatch => Reason::Digest,
            Self::Revoked { .. } | Self::ReleaseTouchesTrust => Reason::Signature,
            Self::Freshness(e) => e.reason(),
            Self::Document { .. }
            | Self::Capacity { .. }
            | Self::NotTrustUpdate { .. }
            | Self::Unrevoked { .. }
            | Self::RevocationFull => Reason::Malformed,
        }
    }
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Document { what } => write!(f, "trust document: {what}"),
            Self::Capacity { what } => write!(f, "trust document: too many {what}"),
            Self::Manifest(e) => write!(f, "{e}"),
            Self::NotTrustUpdate { what } => write!(f, "not a trust update: {what}"),
            Self::PayloadMismatch => f.write_str(
                "the integrated trust document does not match the digest the root signed",
            ),
            Self::Rollback { current, offered } => write!(
                f,
                "trust update rollback: sequence {offered} is not above the trust state in force ({current})"
            ),
            Self::NewRootNotSigned(e) => write!(
                f,
                "the update installs new root keys but is not signed by the new root's threshold: {e}"
            ),
            Self::Revoked { kid, by } => {
                f.write_str("signed by revoked key ")?;
                for b in kid {
                    write!(f, "{b:02x}")?;
                }
                write!(f, " (revoked by trust state {by}); no valid release signer signed")
            }
            Self::ReleaseTouchesTrust => f.write_str(
                "a release may not name the trust-store component; only a root-signed trust update may",
            ),
            Self::Unrevoked { kid } => {
                f.write_str("the update drops revoked key ")?;
                for b in kid {
                    write!(f, "{b:02x}")?;
                }
                f.write_str(" from the revocation list: revocation is permanent")
            }
            Self::RevocationFull => write!(
                f,
                "the revocation list is full ({MAX_REVOKED} key ids) and revocation is permanent: \
                 remove the key as a release signer instead (--remove-signer; it is then no longer \
                 trusted, only not named as revoked), or re-provision the device with a new genesis state"
            ),
            Self::Freshness(e) => write!(f, "freshness statement refused: {e}"),
        }
    }
}

impl core::error::Error for TrustError {}

/// What a device trusts: see the crate documentation. Two states are equal when their
/// contents are (unused slots do not count).
#[derive(Clone, Copy, Debug)]
pub struct TrustState {
    pub(crate) sequence: u64,
    pub(crate) root_threshold: u8,
    pub(crate) roots: [Key; MAX_ROOTS],
    pub(crate) root_count: u8,
    pub(crate) release_threshold: u8,
    pub(crate) signers: [ReleaseSigner; MAX_SIGNERS],
    pub(crate) signer_count: u8,
    pub(crate) rules: [ThresholdRule; MAX_RULES],
    pub(crate) rule_count: u8,
    pub(crate) revoked: [KeyId; MAX_REVOKED],
    pub(crate) revoked_count: u8,
    pub(crate) freshness: [Key; MAX_FRESHNESS_SIGNERS],
    pub(crate) freshness_count: u8,
}

impl PartialEq for TrustState {
    fn eq(&self, other: &Self) -> bool {
        self.sequence == other.sequence
            && self.root_threshold == other.root_threshold
            && self.roots() == other.roots()
            && self.release_threshold == other.release_threshold
            && self.signers() == other.signers()
            && self.rules() == other.rules()
            && self.revoked() == other.revoked()
            && self.freshness_signers() == other.freshness_signers()
    }
}

impl Eq for TrustState {}

const EMPTY_SIGNER: ReleaseSigner = ReleaseSigner {
    key: Key::EMPTY,
    actions: Actions::ALL,
    component: Prefix::ALL,
};
const EMPTY_RULE: ThresholdRule = ThresholdRule {
    component: Prefix::ALL,
    threshold: 1,
};

fn count(n: u8) -> usize {
    usize::from(n)
}

impl TrustState {
    /// A genesis state (sequence 0): `roots` with `root_threshold`, no release signers yet.
    /// This is what a device is provisioned with, trusted out of band (TUF §5.2: the client
    /// ships with a trusted root).
    ///
    /// # Errors
    /// As [`TrustState::check`].
    pub fn genesis(roots: &[Key], root_threshold: u8) -> Result<Self, TrustError> {
        let mut s = Self {
            sequence: 0,
            root_threshold,
            roots: [Key::EMPTY; MAX_ROOTS],
            root_count: 0,
            release_threshold: 1,
            signers: [EMPTY_SIGNER; MAX_SIGNERS],
            signer_count: 0,
            rules: [EMPTY_RULE; MAX_RULES],
            rule_count: 0,
            revoked: [[0; KEY_ID_LEN]; MAX_REVOKED],
            revoked_count: 0,
            freshness: [Key::EMPTY; MAX_FRESHNESS_SIGNERS],
            freshness_count: 0,
        };
        s.set_roots(roots, root_threshold)?;
        s.check()?;
        Ok(s)
    }

    /// The trust sequence number (anti-rollback, independent of release sequence numbers).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Sets the sequence number (authors: the next trust update's).
    pub fn set_sequence(&mut self, sequence: u64) {
        self.sequence = sequence;
    }

    /// Distinct root keys needed to sign a trust update.
    pub fn root_threshold(&self) -> u8 {
        self.root_threshold
    }

    /// The root keys.
    pub fn roots(&self) -> &[Key] {
        self.roots.get(..count(self.root_count)).unwrap_or(&[])
    }

    /// Distinct release signers needed for every release.
    pub fn release_threshold(&self) -> u8 {
        self.release_threshold
    }

    /// The release signers.
    pub fn signers(&self) -> &[ReleaseSigner] {
        self.signers.get(..count(self.signer_count)).unwrap_or(&[])
    }

    /// The per-component threshold rules.
    pub fn rules(&self) -> &[ThresholdRule] {
        self.rules.get(..count(self.rule_count)).unwrap_or(&[])
    }

    /// The revoked key ids.
    pub fn revoked(&self) -> &[KeyId] {
        self.revoked.get(..count(self.revoked_count)).unwrap_or(&[])
    }

    /// The freshness signers: the update servers' keys whose freshness statements this device
    /// accepts (docs/trust.md, "Freshness"; RFC 9019 §4 freshness).
    pub fn freshness_signers(&self) -> &[Key] {
        self.freshness
            .get(..count(self.freshness_count))
            .unwrap_or(&[])
    }

    /// Adds a freshness signer (an Ed25519 key; a key already listed is left as is).
    ///
    /// # Errors
    /// [`TrustError::Capacity`] for more than [`MAX_FRESHNESS_SIGNERS`];
    /// [`TrustError::Document`] for a key that is not Ed25519 (statements are signed on every
    /// check-in, and 32-byte keys keep the largest state within [`crate::RECORD_SIZE`]).
    pub fn add_freshness_signer(&mut self, key: Key) -> Result<(), TrustError> {
        if key.kind() != KeyKind::Ed25519 {
            return Err(TrustError::Document {
                what: "a freshness signer must be an Ed25519 key",
            });
        }
        if self.freshness_signers().contains(&key) {
            return Ok(());
        }
        let slot =
            self.freshness
                .get_mut(count(self.freshness_count))
                .ok_or(TrustError::Capacity {
                    what: "freshness signers",
                })?;
        *slot = key;
        self.freshness_count = self.freshness_count.saturating_add(1);
        Ok(())
    }

    /// Removes the freshness signer with key id `kid`; whether there was one.
    pub fn remove_freshness_signer(&mut self, kid: &KeyId) -> bool {
        let n = count(self.freshness_count);
        let Some(at) = self.freshness_signers().iter().position(|k| k.id() == *kid) else {
            return false;
        };
        if let Some(tail) = self.freshness.get_mut(at..n) {
            tail.rotate_left(1);
            if let Some(last) = tail.last_mut() {
                *last = Key::EMPTY;
            }
        }
        self.freshness_count = self.freshness_count.saturating_sub(1);
        true
    }

    /// Replaces the root keys and threshold.
    ///
    /// # Errors
    /// [`TrustError::Capacity`] for more than [`MAX_ROOTS`] keys.
    pub fn set_roots(&mut self, roots: &[Key], threshold: u8) -> Result<(), TrustError> {
        if roots.len() > MAX_ROOTS {
            return Err(TrustError::Capacity { what: "root keys" });
        }
        for (d, s) in self.roots.iter_mut().zip(roots) {
            *d = *s;
        }
        self.root_count = u8::try_from(roots.len()).unwrap_or(0);
        self.root_threshold = threshold;
        Ok(())
    }

    /// Sets the release threshold.
    pub fn set_release_threshold(&mut self, threshold: u8) {
        self.release_threshold = threshold;
    }

    /// Adds (or replaces, by key) a release signer.
    ///
    /// # Errors
    /// [`TrustError::Capacity`] for more than [`MAX_SIGNERS`].
    pub fn add_signer(&mut self, signer: ReleaseSigner) -> Result<(), TrustError> {
        let n = count(self.signer_count);
        if let Some(existing) = self
            .signers
            .iter_mut()
            .take(n)
            .find(|s| s.key == signer.key)
        {
            *existing = signer;
            return Ok(());
        }
        let slot = self.signers.get_mut(n).ok_or(TrustError::Capacity {
            what: "release signers",
        })?;
        *slot = signer;
        self.signer_count = self.signer_count.saturating_add(1);
        Ok(())
    }

    /// Removes the release signer with key id `kid`; whether there was one.
    pub fn remove_signer(&mut self, kid: &KeyId) -> bool {
        let n = count(self.signer_count);
        let Some(at) = self.signers().iter().position(|s| s.key.id() == *kid) else {
            return false;
        };
        if let Some(tail) = self.signers.get_mut(at..n) {
            tail.rotate_left(1);
            if let Some(last) = tail.last_mut() {
                *last = EMPTY_SIGNER;
            }
        }
        self.signer_count = self.signer_count.saturating_sub(1);
        true
    }

    /// Revokes `kid`: removes it as a release signer and remembers it for good (a release it
    /// signed is refused with [`TrustError::Revoked`]; no later state may list it again, see
    /// [`TrustState::check_successor`]).
    ///
    /// # Errors
    /// [`TrustError::RevocationFull`] when [`MAX_REVOKED`] keys are revoked already; the state
    /// is unchanged then.
    pub fn revoke(&mut self, kid: KeyId) -> Result<(), TrustError> {
        if self.revoked().contains(&kid) {
            self.remove_signer(&kid);
            return Ok(());
        }
        let slot = self
            .revoked
            .get_mut(count(self.revoked_count))
            .ok_or(TrustError::RevocationFull)?;
        *slot = kid;
        self.remove_signer(&kid);
        self.remove_freshness_signer(&kid);
        self.revoked_count = self.revoked_count.saturating_add(1);
        Ok(())
    }

    /// Adds a per-component threshold rule.
    ///
    /// # Errors
    /// [`TrustError::Capacity`] for more than [`MAX_RULES`].
    pub fn add_rule(&mut self, rule: ThresholdRule) -> Result<(), TrustError> {
        let slot = self
            .rules
            .get_mut(count(self.rule_count))
            .ok_or(TrustError::Capacity {
                what: "threshold rules",
            })?;
        *slot = rule;
        self.rule_count = self.rule_count.saturating_add(1);
        Ok(())
    }

    /// Checks the state's consistency; every decoded or applied state passes it.
    ///
    /// # Errors
    /// [`TrustError::Document`] naming the first rule broken.
    pub fn check(&self) -> Result<(), TrustError> {
        let doc = |what| Err(TrustError::Document { what });
        let roots = self.roots();
        // TUF §2.1.1: "a threshold of keys" of the root role; 1 <= k <= n, else no update
        // could ever be signed (or one key would suffice where several were meant).
        if roots.is_empty() {
            return doc("at least one root key is needed");
        }
        if self.root_threshold == 0 || count(self.root_threshold) > roots.len() {
            return doc("the root threshold must be between 1 and the number of root keys");
        }
        // TUF §4.3 (root.json): a threshold counts distinct keys; a key listed twice would
        // count twice towards k-of-n.
        if has_duplicates(roots.iter().map(Key::id)) {
            return doc("a root key is listed twice");
        }
        if has_duplicates(self.signers().iter().map(|s| s.key.id())) {
            return doc("a release signer is listed twice");
        }
        // Role separation (TUF §2.1.1: the root role only signs root metadata): a root key is
        // never a release signer, so no release signature can ever count as a root signature
        // and the other way round.
        if self
            .signers()
            .iter()
            .any(|s| roots.iter().any(|r| r.id() == s.key.id()))
        {
            return doc("a root key may not also be a release signer");
        }
        // RFC 8240 §3 (revocation): a revoked key may not be trusted again in the same state.
        if self
            .roots()
            .iter()
            .map(Key::id)
            .chain(self.signers().iter().map(|s| s.key.id()))
            .any(|id| self.revoked().contains(&id))
        {
            return doc("a revoked key is still listed as a root or a release signer");
        }
        // Role separation (TUF §2.1.1), as for roots and release signers: a freshness key signs
        // only statements about time and offers, never a release or a trust update.
        let fresh = self.freshness_signers();
        if has_duplicates(fresh.iter().map(Key::id)) {
            return doc("a freshness signer is listed twice");
        }
        if fresh.iter().any(|k| k.kind() != KeyKind::Ed25519) {
            return doc("a freshness signer must be an Ed25519 key");
        }
        if fresh.iter().map(Key::id).any(|id| {
            roots.iter().any(|r| r.id() == id)
                || self.signers().iter().any(|s| s.key.id() == id)
                || self.revoked().contains(&id)
        }) {
            return doc(
                "a freshness signer may not be a root key, a release signer or a revoked key",
            );
        }
        if self.release_threshold == 0 {
            return doc("the release threshold must be at least 1");
        }
        if self.rules().iter().any(|r| r.threshold == 0) {
            return doc("a rule threshold must be at least 1");
        }
        if self
            .rules()
            .iter()
            .any(|r| r.component.component().is_none())
        {
            return doc(
                "a threshold rule needs a component prefix (the release threshold covers every component)",
            );
        }
        Ok(())
    }

    /// Checks that `next` may follow this state (the one in force): every key id this state
    /// revoked is still revoked in `next`. With [`TrustState::check`] on `next` (a revoked key
    /// is neither root nor release signer), a revoked key can never be trusted again, whatever
    /// later updates the root signs.
    ///
    /// RFC 8240 §3 asks that a compromised key can be revoked for the device's life; TUF §5.3
    /// keeps revocation in force by never trusting a key the current root no longer lists. A
    /// root-signed update that shrank the revocation list would silently re-admit the key, so
    /// the list only grows (and is bounded: [`TrustError::RevocationFull`]).
    ///
    /// # Errors
    /// [`TrustError::Unrevoked`] naming the first revoked key id `next` drops.
    pub fn check_successor(&self, next: &Self) -> Result<(), TrustError> {
        match self.revoked().iter().find(|k| !next.revoked().contains(k)) {
            Some(kid) => Err(TrustError::Unrevoked { kid: *kid }),
            None => Ok(()),
        }
    }

    /// The release anchors and policy of this state, handed to `f` (they borrow the state):
    /// what an agent or a bootloader passes to `Envelope::verify` for a release. Every release
    /// signer becomes an anchor covering its component prefix and actions (manifest §9,
    /// access control lists); the release threshold and the rules become the policy.
    pub fn with_release_policy<R>(
        &self,
        time: Option<u64>,
        f: impl FnOnce(&[suitcase_manifest::TrustAnchor<'_>], &suitcase_manifest::TrustPolicy<'_>) -> R,
    ) -> R {
        use suitcase_manifest::{Permissions, Rule};
        let signers = self.signers();
        let mut prefixes: [Option<ComponentId<'_>>; MAX_SIGNERS] = [None; MAX_SIGNERS];
        for (p, s) in prefixes.iter_mut().zip(signers) {
            *p = s.component.component();
        }
        let keys = signers.iter().zip(&prefixes).map(|(s, p)| {
            let permissions = Permissions {
                components: p.as_ref().map(core::slice::from_ref),
                actions: s.actions,
            };
            (&s.key, permissions)
        });
        let mut rules = [None; MAX_RULES];
        for (r, rule) in rules.iter_mut().zip(self.rules()) {
            // `check` refuses a rule without a prefix: the release threshold covers that.
            *r = rule
                .component
                .component()
                .zip(NonZeroUsize::new(usize::from(rule.threshold)))
                .map(|(components, threshold)| Rule {
                    components,
                    threshold,
                    signers: None,
                });
        }
        let policy = Policy {
            threshold: self.release_threshold,
            rules: &[],
            time,
        };
        match rules.iter().flatten().next().copied() {
            None => with_anchors::<MAX_SIGNERS, _>("release signer", keys, &policy, f),
            Some(first) => {
                let mut list = [first; MAX_RULES];
                let mut m = 0;
                for (d, s) in list.iter_mut().zip(rules.iter().flatten()) {
                    *d = *s;
                    m += 1;
                }
                let policy = Policy {
                    rules: list.get(..m).unwrap_or(&[]),
                    ..policy
                };
                with_anchors::<MAX_SIGNERS, _>("release signer", keys, &policy, f)
            }
        }
    }
}

/// What [`with_anchors`] turns into a `TrustPolicy`.
pub(crate) struct Policy<'p> {
    /// Distinct anchors needed (a state's root or release threshold; `check` keeps it >= 1).
    pub(crate) threshold: u8,
    /// Per-component rules.
    pub(crate) rules: &'p [suitcase_manifest::Rule<'p>],
    /// The current time, if known.
    pub(crate) time: Option<u64>,
}

/// The one place a state's keys become verification anchors: `keys` (at most `N`, each with
/// what it may authorise) as `name` anchors, and `policy` as a threshold policy, handed to `f`
/// (they borrow locals). Used for the root (trust updates) and the release signers (releases).
///
/// A key that does not decode (never: `Key::new` checked it) stays a placeholder, an HMAC
/// anchor with an empty key that no COSE_Sign1 block can verify against, so anchor indices
/// keep matching the key list. A threshold of 0 (refused by `check`) counts as 1, never as
/// "no signature needed".
pub(crate) fn with_anchors<'p, const N: usize, R>(
    name: &'static str,
    keys: impl Iterator<Item = (&'p Key, suitcase_manifest::Permissions<'p>)>,
    policy: &Policy<'p>,
    f: impl FnOnce(&[suitcase_manifest::TrustAnchor<'_>], &suitcase_manifest::TrustPolicy<'_>) -> R,
) -> R {
    use suitcase_manifest::{PublicKey, TrustAnchor, TrustPolicy};
    let mut anchors = [TrustAnchor::new(name, PublicKey::Hmac256(&[])); N];
    let mut n = 0;
    for (a, (k, permissions)) in anchors.iter_mut().zip(keys) {
        if let Some(key) = k.public_key() {
            *a = TrustAnchor {
                name,
                key,
                kid: None,
                permissions,
            };
        }
        n += 1;
    }
    let policy = TrustPolicy {
        threshold: NonZeroUsize::new(usize::from(policy.threshold)).unwrap_or(NonZeroUsize::MIN),
        rules: policy.rules,
        hybrid: false,
        time: policy.time,
    };
    f(anchors.get(..n).unwrap_or(&[]), &policy)
}

fn has_duplicates(ids: impl Iterator<Item = KeyId> + Clone) -> bool {
    ids.clone()
        .enumerate()
        .any(|(i, a)| ids.clone().skip(i + 1).any(|b| b == a))
}
