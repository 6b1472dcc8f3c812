//! Trust states and trust updates for tests (docs/trust.md), made with the author's tools as
//! `suitcase trust` makes them: a key file's trust-state form, a release signer allowed every
//! action on every component, a document to provision a device with, and a trust update
//! signed by root key files.

use std::path::Path;

use suitcase_author::signer::Signer;
use suitcase_manifest::Actions;
use suitcase_trust::{Key, Prefix, ReleaseSigner, TrustState};

/// The trust-state form of the public key in `public` (a `.pub` file).
pub fn key(public: &Path) -> Key {
    suitcase_author::trust::trust_key(&suitcase_author::keys::load_public(public).unwrap()).unwrap()
}

/// A release signer for the public key in `public`: every action, every component.
pub fn signer(public: &Path) -> ReleaseSigner {
    ReleaseSigner {
        key: key(public),
        actions: Actions::ALL,
        component: Prefix::ALL,
    }
}

/// The encoded trust document of `state` (what `suitcase trust init` writes).
pub fn document(state: &TrustState) -> Vec<u8> {
    suitcase_author::trust::document(state).unwrap()
}

/// The trust update carrying `state`, signed by each private key file in `with`.
pub fn update(state: &TrustState, with: &[&Path]) -> Vec<u8> {
    let signers: Vec<Box<dyn Signer>> = with
        .iter()
        .map(|p| suitcase_author::signer::open(p).unwrap())
        .collect();
    let refs: Vec<&dyn Signer> = signers.iter().map(AsRef::as_ref).collect();
    suitcase_author::trust::build_update(state, &refs).unwrap()
}
