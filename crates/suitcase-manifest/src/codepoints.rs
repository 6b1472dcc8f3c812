//! Every numeric identifier this crate reads or writes, in one place.
//!
//! Sources: draft-ietf-suit-manifest-34..37 (identical codepoints), draft-ietf-suit-trust-domains-12,
//! draft-ietf-suit-update-management-13, draft-ietf-suit-firmware-encryption-26, RFC 9052/9053,
//! RFC 9054, RFC 9864 and the COSE registries. `suit-install` is 20 (it was 17 before -29).

/// CBOR tags.
pub mod tag {
    /// SUIT_Envelope_Tagged.
    pub const ENVELOPE: u64 = 107;
    /// SUIT_Manifest_Tagged.
    pub const MANIFEST: u64 = 1070;
    /// COSE_Sign_Tagged.
    pub const COSE_SIGN: u64 = 98;
    /// COSE_Sign1_Tagged.
    pub const COSE_SIGN1: u64 = 18;
    /// COSE_Mac_Tagged.
    pub const COSE_MAC: u64 = 97;
    /// COSE_Mac0_Tagged.
    pub const COSE_MAC0: u64 = 17;
    /// COSE_Encrypt_Tagged.
    pub const COSE_ENCRYPT: u64 = 96;
    /// COSE_Encrypt0_Tagged.
    pub const COSE_ENCRYPT0: u64 = 16;
    /// CBOR-PEN (RFC 9090), an alternative vendor identifier.
    pub const CBOR_PEN: u64 = 112;
}

/// SUIT_Envelope keys.
pub mod envelope {
    /// Reserved (delegation); refused.
    pub const DELEGATION: u64 = 1;
    /// suit-authentication-wrapper.
    pub const AUTHENTICATION_WRAPPER: u64 = 2;
    /// suit-manifest.
    pub const MANIFEST: u64 = 3;
}

/// SUIT_Manifest keys (severable members use the same key in the envelope).
pub mod manifest {
    /// suit-manifest-version.
    pub const VERSION: u64 = 1;
    /// suit-manifest-sequence-number.
    pub const SEQUENCE_NUMBER: u64 = 2;
    /// suit-common.
    pub const COMMON: u64 = 3;
    /// suit-reference-uri.
    pub const REFERENCE_URI: u64 = 4;
    /// suit-manifest-component-id (trust-domains).
    pub const MANIFEST_COMPONENT_ID: u64 = 5;
    /// suit-set-version (update-management).
    pub const SET_VERSION: u64 = 6;
    /// suit-validate.
    pub const VALIDATE: u64 = 7;
    /// suit-load.
    pub const LOAD: u64 = 8;
    /// suit-invoke.
    pub const INVOKE: u64 = 9;
    /// suit-coswid (update-management; severable).
    pub const COSWID: u64 = 14;
    /// suit-dependency-resolution (trust-domains; severable).
    pub const DEPENDENCY_RESOLUTION: u64 = 15;
    /// suit-payload-fetch (severable).
    pub const PAYLOAD_FETCH: u64 = 16;
    /// suit-candidate-verification (trust-domains; severable).
    pub const CANDIDATE_VERIFICATION: u64 = 18;
    /// suit-install (severable).
    pub const INSTALL: u64 = 20;
    /// suit-text (severable).
    pub const TEXT: u64 = 23;
    /// suit-uninstall (trust-domains).
    pub const UNINSTALL: u64 = 24;
}

/// SUIT_Common keys.
pub mod common {
    /// suit-dependencies (trust-domains).
    pub const DEPENDENCIES: u64 = 1;
    /// suit-components.
    pub const COMPONENTS: u64 = 2;
    /// suit-shared-sequence.
    pub const SHARED_SEQUENCE: u64 = 4;
}

/// SUIT_Dependency_Metadata keys (trust-domains).
pub mod dependency {
    /// suit-dependency-prefix.
    pub const PREFIX: u64 = 1;
}

/// SUIT commands: conditions and directives share one registry.
pub mod command {
    /// suit-condition-vendor-identifier.
    pub const VENDOR_IDENTIFIER: i64 = 1;
    /// suit-condition-class-identifier.
    pub const CLASS_IDENTIFIER: i64 = 2;
    /// suit-condition-image-match.
    pub const IMAGE_MATCH: i64 = 3;
    /// suit-condition-use-before (update-management).
    pub const USE_BEFORE: i64 = 4;
    /// suit-condition-component-slot.
    pub const COMPONENT_SLOT: i64 = 5;
    /// suit-condition-check-content.
    pub const CHECK_CONTENT: i64 = 6;
    /// suit-condition-dependency-integrity (trust-domains).
    pub const DEPENDENCY_INTEGRITY: i64 = 7;
    /// suit-condition-is-dependency (trust-domains).
    pub const IS_DEPENDENCY: i64 = 8;
    /// suit-directive-process-dependency (trust-domains).
    pub const PROCESS_DEPENDENCY: i64 = 11;
    /// suit-directive-set-component-index.
    pub const SET_COMPONENT_INDEX: i64 = 12;
    /// suit-condition-abort.
    pub const ABORT: i64 = 14;
    /// suit-directive-try-each.
    pub const TRY_EACH: i64 = 15;
    /// suit-directive-write.
    pub const WRITE: i64 = 18;
    /// suit-directive-set-parameters (trust-domains).
    pub const SET_PARAMETERS: i64 = 19;
    /// suit-directive-override-parameters.
    pub const OVERRIDE_PARAMETERS: i64 = 20;
    /// suit-directive-fetch.
    pub const FETCH: i64 = 21;
    /// suit-directive-copy.
    pub const COPY: i64 = 22;
    /// suit-directive-invoke.
    pub const INVOKE: i64 = 23;
    /// suit-condition-device-identifier.
    pub const DEVICE_IDENTIFIER: i64 = 24;
    /// suit-condition-image-not-match (update-management).
    pub const IMAGE_NOT_MATCH: i64 = 25;
    /// suit-condition-minimum-battery (update-management).
    pub const MINIMUM_BATTERY: i64 = 26;
    /// suit-condition-update-authorized (update-management).
    pub const UPDATE_AUTHORIZED: i64 = 27;
    /// suit-condition-version (update-management).
    pub const VERSION: i64 = 28;
    /// suit-directive-wait (update-management).
    pub const WAIT: i64 = 29;
    /// suit-directive-swap.
    pub const SWAP: i64 = 31;
    /// suit-directive-run-sequence.
    pub const RUN_SEQUENCE: i64 = 32;
    /// suit-directive-unlink (trust-domains).
    pub const UNLINK: i64 = 33;
    /// suit-directive-override-multiple (update-management).
    pub const OVERRIDE_MULTIPLE: i64 = 34;
    /// suit-directive-copy-params (update-management).
    pub const COPY_PARAMS: i64 = 35;
    /// Custom commands are private use: -256 and below.
    pub const CUSTOM_MAX: i64 = -256;
}

/// SUIT parameters.
pub mod param {
    /// suit-parameter-vendor-identifier.
    pub const VENDOR_IDENTIFIER: i64 = 1;
    /// suit-parameter-class-identifier.
    pub const CLASS_IDENTIFIER: i64 = 2;
    /// suit-parameter-image-digest.
    pub const IMAGE_DIGEST: i64 = 3;
    /// suit-parameter-use-before (update-management).
    pub const USE_BEFORE: i64 = 4;
    /// suit-parameter-component-slot.
    pub const COMPONENT_SLOT: i64 = 5;
    /// suit-parameter-strict-order.
    pub const STRICT_ORDER: i64 = 12;
    /// suit-parameter-soft-failure.
    pub const SOFT_FAILURE: i64 = 13;
    /// suit-parameter-image-size.
    pub const IMAGE_SIZE: i64 = 14;
    /// suit-parameter-content.
    pub const CONTENT: i64 = 18;
    /// suit-parameter-encryption-info (firmware-encryption).
    pub const ENCRYPTION_INFO: i64 = 19;
    /// suit-parameter-uri.
    pub const URI: i64 = 21;
    /// suit-parameter-source-component.
    pub const SOURCE_COMPONENT: i64 = 22;
    /// suit-parameter-invoke-args.
    pub const INVOKE_ARGS: i64 = 23;
    /// suit-parameter-device-identifier.
    pub const DEVICE_IDENTIFIER: i64 = 24;
    /// suit-parameter-fetch-arguments.
    pub const FETCH_ARGUMENTS: i64 = 25;
    /// suit-parameter-minimum-battery (update-management).
    pub const MINIMUM_BATTERY: i64 = 26;
    /// suit-parameter-update-priority (update-management).
    pub const UPDATE_PRIORITY: i64 = 27;
    /// suit-parameter-version (update-management).
    pub const VERSION: i64 = 28;
    /// suit-parameter-wait-info (update-management).
    pub const WAIT_INFO: i64 = 29;
    /// suit-parameter-component-metadata (update-management).
    pub const COMPONENT_METADATA: i64 = 30;
    /// suitcase-parameter-delta-base (private use, a custom parameter per manifest §8.4.8):
    /// the index of the component holding the installed image a `suitcase-delta` patch was
    /// made from. With it, `suit-directive-copy` applies the patch in `source-component` to that
    /// image instead of copying the patch bytes (docs/delta.md, "SUIT integration").
    pub const SUITCASE_DELTA_BASE: i64 = -70002;
}

/// SUIT_Text_Map keys.
pub mod text {
    /// suit-text-manifest-description.
    pub const MANIFEST_DESCRIPTION: i64 = 1;
    /// suit-text-update-description.
    pub const UPDATE_DESCRIPTION: i64 = 2;
    /// suit-text-manifest-json-source.
    pub const MANIFEST_JSON_SOURCE: i64 = 3;
    /// suit-text-manifest-yaml-source.
    pub const MANIFEST_YAML_SOURCE: i64 = 4;
    /// suit-text-vendor-name (component map).
    pub const VENDOR_NAME: i64 = 1;
    /// suit-text-model-name.
    pub const MODEL_NAME: i64 = 2;
    /// suit-text-vendor-domain.
    pub const VENDOR_DOMAIN: i64 = 3;
    /// suit-text-model-info.
    pub const MODEL_INFO: i64 = 4;
    /// suit-text-component-description.
    pub const COMPONENT_DESCRIPTION: i64 = 5;
    /// suit-text-component-version.
    pub const COMPONENT_VERSION: i64 = 6;
    /// suit-text-version-required (update-management).
    pub const VERSION_REQUIRED: i64 = 7;
    /// suit-text-current-version (update-management).
    pub const CURRENT_VERSION: i64 = 8;
}

/// COSE header labels (RFC 9052 §3.1, RFC 9360).
pub mod header {
    /// alg.
    pub const ALG: i64 = 1;
    /// crit.
    pub const CRIT: i64 = 2;
    /// content type.
    pub const CONTENT_TYPE: i64 = 3;
    /// kid.
    pub const KID: i64 = 4;
    /// IV.
    pub const IV: i64 = 5;
    /// Partial IV.
    pub const PARTIAL_IV: i64 = 6;
    /// x5chain (RFC 9360).
    pub const X5CHAIN: i64 = 33;
    /// ephemeral key (ECDH, RFC 9053 §6.4.1).
    pub const EPHEMERAL_KEY: i64 = -1;
    /// salt (ECDH/HKDF, RFC 9053 §5.1).
    pub const SALT: i64 = -20;
    /// suitcase private use: the ML-KEM ciphertext in a COSE_recipient's unprotected header
    /// (labels below -65536 are private).
    pub const SUITCASE_KEM_CIPHERTEXT: i64 = -70001;
}

/// COSE algorithm identifiers.
pub mod alg {
    /// SHA-256.
    pub const SHA256: i64 = -16;
    /// SHAKE128 (256-bit output).
    pub const SHAKE128: i64 = -18;
    /// SHA-384.
    pub const SHA384: i64 = -43;
    /// SHA-512.
    pub const SHA512: i64 = -44;
    /// SHAKE256 (512-bit output).
    pub const SHAKE256: i64 = -45;
    /// ES256 (deprecated by RFC 9864 in favour of ESP256; still used by the manifest examples).
    pub const ES256: i64 = -7;
    /// ESP256 (RFC 9864).
    pub const ESP256: i64 = -9;
    /// EdDSA (deprecated by RFC 9864 in favour of Ed25519).
    pub const EDDSA: i64 = -8;
    /// Ed25519 (RFC 9864).
    pub const ED25519: i64 = -19;
    /// HSS-LMS (RFC 8778).
    pub const HSS_LMS: i64 = -46;
    /// ML-DSA-44 (draft-ietf-cose-dilithium).
    pub const ML_DSA_44: i64 = -48;
    /// ML-DSA-65.
    pub const ML_DSA_65: i64 = -49;
    /// ML-DSA-87.
    pub const ML_DSA_87: i64 = -50;
    /// HMAC 256/256.
    pub const HMAC_256: i64 = 5;
    /// A128KW.
    pub const A128KW: i64 = -3;
    /// A192KW.
    pub const A192KW: i64 = -4;
    /// A256KW.
    pub const A256KW: i64 = -5;
    /// ECDH-ES + HKDF-256.
    pub const ECDH_ES_HKDF_256: i64 = -25;
    /// ECDH-ES + A128KW.
    pub const ECDH_ES_A128KW: i64 = -29;
    /// ECDH-ES + A192KW.
    pub const ECDH_ES_A192KW: i64 = -30;
    /// ECDH-ES + A256KW.
    pub const ECDH_ES_A256KW: i64 = -31;
    /// A128GCM.
    pub const A128GCM: i64 = 1;
    /// A192GCM.
    pub const A192GCM: i64 = 2;
    /// A256GCM.
    pub const A256GCM: i64 = 3;
    /// ChaCha20/Poly1305.
    pub const CHACHA20_POLY1305: i64 = 24;
    /// A128CTR (RFC 9459).
    pub const A128CTR: i64 = -65534;
    /// A192CTR.
    pub const A192CTR: i64 = -65533;
    /// A256CTR.
    pub const A256CTR: i64 = -65532;
    /// suitcase private use (COSE algorithms below -65536 are private): ML-KEM-768 (FIPS 203)
    /// encapsulates a shared secret, HKDF-SHA256 over the COSE_KDF_Context derives a 256-bit KEK,
    /// and A256KW wraps the content key. COSE has no identifier for ML-KEM yet
    /// (draft-ietf-jose-pqc-kem); this one is defined here and nowhere else.
    pub const SUITCASE_ML_KEM_768_A256KW: i64 = -70000;
}

/// The last identifier segment of the helper components `suitcase release build` adds next to
/// an image component `<id>` (not SUIT codepoints: a suitcase convention that the author and
/// the agent share, docs/delta.md). A processor needs nothing from them; a device that maps
/// components to storage (the agent) routes them by these names.
pub mod helper {
    /// `<id>/staging`: where an encrypted payload or a delta patch is fetched to.
    pub const STAGING: &[u8] = b"staging";
    /// `<id>/patch`: a delta patch after decryption.
    pub const PATCH: &[u8] = b"patch";
    /// `<id>/installed`: the image the device runs now, the base of a delta patch.
    pub const INSTALLED: &[u8] = b"installed";
}
