//! The wire types of the suitcase APIs, shared by the server, the device agent and the CLI.
//!
//! Two APIs, both versioned under `/api/v1`:
//!
//! * the **device API** (`/api/v1/device/...`): check-in with inventory, manifest and payload
//!   download, step reports. A device authenticates with its bearer token or TLS client
//!   certificate; no device identifier ever appears in a URL (RFC 8240 §3 privacy). Bodies are
//!   JSON, or CBOR (`application/cbor`) for constrained devices: the same structures, with
//!   byte strings as CBOR byte strings instead of base64 text.
//! * the **management API** (`/api/v1/...`): keys, releases, devices, groups, campaigns,
//!   tokens and the audit log, for operators and their tools.
//!
//! Field names are stable within a version; new optional fields may be added, so clients must
//! ignore unknown fields (the serde default here).

extern crate alloc;

use alloc::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[cfg(feature = "ddi")]
pub mod ddi;
pub mod mgmt;
pub mod time;

/// The API version these types describe.
pub const API_VERSION: &str = "v1";

/// The media type of a SUIT envelope (draft-ietf-suit-manifest §13.3).
pub const SUIT_MEDIA_TYPE: &str = "application/suit-envelope+cose";

/// The limits the server enforces on what clients send, in one place (the server checks them,
/// the OpenAPI description states them, the CLI can check early).
pub mod limits {
    /// The most characters in any human-facing name: device, tag, group, campaign, token, key
    /// and release names.
    pub const NAME_MAX_CHARS: usize = 200;
    /// The JSON Schema pattern of a name: no control characters (C0, DEL, C1).
    pub const NAME_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$";
    /// The most tags a device is registered with, or one request adds or removes.
    pub const DEVICE_TAGS_MAX: usize = 64;
    /// The most tags in one device filter (`tags_all` and `tags_any` each).
    pub const FILTER_TAGS_MAX: usize = 64;
    /// The most device ids or names in one campaign filter.
    pub const FILTER_DEVICES_MAX: usize = 100_000;
    /// The most characters of a step report's `detail`.
    pub const REPORT_DETAIL_MAX: usize = 4096;
    /// The most bytes of a step report's `log` the server keeps (its end).
    pub const REPORT_LOG_MAX: usize = 16 * 1024;
    /// The oldest a step report's `started_at` may be, in seconds before the server receives
    /// it (30 days: a step deferred for consent may wait long); an older start is ignored.
    pub const STEP_AGE_MAX: u64 = 30 * 24 * 3600;
    /// The most characters of a step report's `reason` code.
    pub const REPORT_REASON_MAX: usize = 64;
    /// The most bytes of a SUIT report attached to a step report.
    pub const SUIT_REPORT_MAX: usize = 64 * 1024;
    /// The fewest bytes of a check-in nonce (64 bits: a recorded answer matches a later
    /// check-in only by a 2^-64 chance; docs/trust.md, "Freshness").
    pub const NONCE_MIN: usize = 8;
    /// The most bytes of a check-in nonce.
    pub const NONCE_MAX: usize = 32;
    /// The most bytes of a freshness statement in a check-in answer.
    pub const FRESHNESS_MAX: usize = 1100;

    /// Why a name was refused.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum NameError {
        /// Empty, or only white space.
        Blank,
        /// Longer than [`NAME_MAX_CHARS`] characters (how many it has).
        TooLong(usize),
        /// Holds a control character (newline, escape, ...) at this character position.
        Control(usize),
    }

    impl core::fmt::Display for NameError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                Self::Blank => write!(f, "it is empty"),
                Self::TooLong(n) => {
                    write!(f, "it has {n} characters, more than {NAME_MAX_CHARS}")
                }
                Self::Control(i) => write!(
                    f,
                    "it holds a control character (newline, tab, escape, ...) at position {i}"
                ),
            }
        }
    }

    /// The one rule for every human-facing name: 1 to [`NAME_MAX_CHARS`] characters, not
    /// only white space, no control characters (they would forge lines in logs and move the
    /// cursor in terminals that show the name).
    ///
    /// # Errors
    /// Says which part of the rule the name breaks.
    pub fn check_name(s: &str) -> Result<(), NameError> {
        if s.trim().is_empty() {
            return Err(NameError::Blank);
        }
        if let Some(i) = s.chars().position(char::is_control) {
            return Err(NameError::Control(i));
        }
        let n = s.chars().count();
        if n > NAME_MAX_CHARS {
            return Err(NameError::TooLong(n));
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn names_with_control_characters_blanks_or_100_kb_are_refused() {
            assert_eq!(check_name("sn-0001"), Ok(()));
            assert_eq!(check_name("Größe 7 · beta"), Ok(()));
            assert_eq!(check_name(""), Err(NameError::Blank));
            assert_eq!(check_name("  "), Err(NameError::Blank));
            assert_eq!(check_name("a\nb"), Err(NameError::Control(1)));
            assert_eq!(check_name("\u{1b}[2J"), Err(NameError::Control(0)));
            assert_eq!(check_name("x\u{85}"), Err(NameError::Control(1)));
            let long = "x".repeat(100_000);
            assert_eq!(check_name(&long), Err(NameError::TooLong(100_000)));
            assert_eq!(check_name(&"é".repeat(NAME_MAX_CHARS)), Ok(()));
        }
    }
}

/// Byte strings: base64 text in JSON, a byte string in CBOR.
pub mod bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    /// Serialises bytes (see the module documentation).
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(b) if s.is_human_readable() => s.serialize_some(&STANDARD.encode(b)),
            Some(b) => s.serialize_some(&Bytes(b)),
        }
    }

    struct Bytes<'a>(&'a [u8]);
    impl serde::Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    /// Deserialises bytes from base64 text or a byte string.
    ///
    /// # Errors
    /// If the value is neither, or the text is not base64.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Vec<u8>>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("base64 text or a byte string")
            }
            fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
                STANDARD
                    .decode(v)
                    .map(Some)
                    .map_err(|e| E::custom(format!("not base64: {e}")))
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Some(v.to_vec()))
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
        }
        d.deserialize_option(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Device API
// ---------------------------------------------------------------------------------------------

/// One installed component, as the device reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstalledComponent {
    /// The SUIT component identifier's segments, hex.
    pub id: Vec<String>,
    /// The sequence number of the manifest that installed it.
    pub sequence_number: u64,
    /// The SHA-256 of the installed image, hex, if the device knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The image size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// A human-readable version, if the vendor has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The update-module handler that installs it (`file`, `archive`, `script` or `deb`,
    /// docs/agent.md §5.4); absent for slot images and MCUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Whether the device can put the running content back after an update of this component
    /// fails its health check: true for slot images and MCUs (the other slot), per handler
    /// for update modules (a `script` without a rollback entry point, or a `deb` the agent did
    /// not install itself, cannot). Absent from agents that do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<bool>,
}

/// A component identifier for people: each hex segment as its text when that is printable
/// ASCII (an agent's `id = "617070"` is `app`), else as hex; segments joined with `/`.
#[must_use]
pub fn component_label(id: &[String]) -> String {
    let text = |seg: &str| -> Option<String> {
        if seg.is_empty() || !seg.len().is_multiple_of(2) {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..seg.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(seg.get(i..i + 2)?, 16).ok())
            .collect();
        let bytes = bytes?;
        bytes
            .iter()
            .all(|b| (0x21..0x7f).contains(b) && *b != b'/')
            .then(|| bytes.iter().map(|b| char::from(*b)).collect())
    };
    id.iter()
        .map(|seg| text(seg).unwrap_or_else(|| seg.clone()))
        .collect::<Vec<_>>()
        .join("/")
}

/// The boot state the bootloader left.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BootStatus {
    /// The slot that booted (e.g. "a" or "b").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The running image is on trial: not yet confirmed.
    #[serde(default)]
    pub trial: bool,
    /// The bootloader reverted a failed trial since the last check-in.
    #[serde(default)]
    pub reverted: bool,
}

/// A device's check-in: who it is (by its credentials), what it runs, what it can take.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckIn {
    /// The vendor identifier (UUID text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    /// The class identifier (UUID text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_id: Option<String>,
    /// The installed components.
    #[serde(default)]
    pub components: Vec<InstalledComponent>,
    /// Free space for a download, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_storage: Option<u64>,
    /// The boot state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootStatus>,
    /// The agent's name and version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// A fresh random nonce, 8 to 32 bytes (`limits::NONCE_MIN`..`NONCE_MAX`; base64 in
    /// JSON): the server answers with a freshness statement binding it (`CheckInAnswer::
    /// freshness`; docs/trust.md, "Freshness"; NTIA step 3 +1: challenge/response).
    #[serde(default, with = "bytes", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Byte))]
    pub nonce: Option<Vec<u8>>,
}

/// What the server wants the device to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing to do; check in again after `next_poll_seconds`.
    None,
    /// An update is offered (see `update`).
    Update,
}

/// A payload the device downloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PayloadOffer {
    /// The URI the manifest names (what the SUIT processor fetches).
    pub uri: String,
    /// Where to download it from this server (a path on the server, relative to its base URL).
    pub url: String,
    /// Bytes to download.
    pub size: u64,
    /// SHA-256 of the bytes served (ciphertext if encrypted), hex. The manifest's image digest
    /// is what the device must trust; this only lets a download resume and be checked early.
    pub sha256: String,
    /// A smaller alternative: a `suitcase-delta` patch from the image the device reported
    /// installed (its `digest`) to this payload. Applying it must give exactly the image the
    /// signed manifest names (its image digest), so it needs no signature of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaOffer>,
}

/// A delta patch the device may download instead of a full payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeltaOffer {
    /// Where to download it (a path on the server).
    pub url: String,
    /// Patch bytes.
    pub size: u64,
    /// SHA-256 of the patch, hex.
    pub sha256: String,
    /// SHA-256 of the image the patch applies to, hex (what the device reported installed).
    pub source_sha256: String,
    /// Applier RAM the patch needs, bytes (from its header).
    pub ram_bound: u32,
}

/// An update offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateOffer {
    /// The release, an opaque identifier to quote in reports.
    pub release_id: String,
    /// The manifest sequence number.
    pub sequence_number: u64,
    /// Where to download the envelope (a path on the server).
    pub manifest_url: String,
    /// The envelope size in bytes.
    pub manifest_size: u64,
    /// The payloads the manifest fetches.
    pub payloads: Vec<PayloadOffer>,
    /// The operator asked for the user's consent before installing (NTIA step 7, Announce).
    pub requires_consent: bool,
    /// This offer rolls a failed update back to the previous software.
    pub rollback: bool,
}

/// The answer to a check-in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckInAnswer {
    /// What to do.
    pub action: Action,
    /// Seconds until the next check-in: the fleet's interval with random jitter, so that a
    /// fleet does not poll in lock step (NTIA: server-side random back-off).
    pub next_poll_seconds: u32,
    /// The offer, when `action` is `update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateOffer>,
    /// Where to listen for push notifications, if the server pushes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushInfo>,
    /// The freshness statement answering the check-in's `nonce` (absent without one): a
    /// COSE_Sign1 by the server's freshness key binding the nonce, the device, this answer's
    /// offer (manifest digest and sequence number, or none) and the server's time, as
    /// `[claims, COSE_Sign1]` (`suitcase_trust::freshness`; base64 in JSON).
    #[serde(default, with = "bytes", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Byte))]
    pub freshness: Option<Vec<u8>>,
}

/// MQTT push settings for hybrid (push + poll) devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushInfo {
    /// The broker, e.g. `mqtt://broker.example:1883`.
    pub broker: String,
    /// Topics to subscribe to: this device's (an opaque name, not its identifier) and its
    /// groups'. A message on any of them means "check in now".
    pub topics: Vec<String>,
}

/// The NTIA update steps a device reports (seed "NTIA update steps", 4-13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// 4: the manifest is downloaded and authenticated (Check runs on it), then the payloads.
    Receive,
    /// 5: the manifest is authenticated and checked for applicability.
    Check,
    /// 6: the update is announced; consent is asked for.
    Announce,
    /// 7: components go to local slots or secondary processors.
    Distribute,
    /// 8: decryption and decompression.
    Process,
    /// 9: the pre-update state and the new image are stored.
    Stage,
    /// 10: the image is written to its slot.
    Apply,
    /// 11: the written image's digest is checked again.
    Reverify,
    /// 12: the new image runs (on trial).
    Activate,
    /// 13: confirmed, reported, temporary data removed.
    CleanUp,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Self; 10] = [
        Self::Receive,
        Self::Check,
        Self::Announce,
        Self::Distribute,
        Self::Process,
        Self::Stage,
        Self::Apply,
        Self::Reverify,
        Self::Activate,
        Self::CleanUp,
    ];

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Receive => "receive",
            Self::Check => "check",
            Self::Announce => "announce",
            Self::Distribute => "distribute",
            Self::Process => "process",
            Self::Stage => "stage",
            Self::Apply => "apply",
            Self::Reverify => "reverify",
            Self::Activate => "activate",
            Self::CleanUp => "clean-up",
        }
    }

    /// Parses a wire name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// How a step went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Started (with progress, for long steps).
    InProgress,
    /// Done.
    Success,
    /// Failed; `reason` says why. For the last steps this ends the update on this device.
    Failure,
    /// Put off: consent withheld, outside the maintenance window, or not enough battery.
    Deferred,
}

impl Outcome {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::InProgress => "in-progress",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Deferred => "deferred",
        }
    }

    /// Parses a wire name.
    pub fn from_name(s: &str) -> Option<Self> {
        [
            Self::InProgress,
            Self::Success,
            Self::Failure,
            Self::Deferred,
        ]
        .into_iter()
        .find(|x| x.name() == s)
    }
}

/// A step report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepReport {
    /// The release the report is about, as the offer named it.
    pub release_id: String,
    /// The step.
    pub step: Step,
    /// How it went.
    pub outcome: Outcome,
    /// A reason code on failure (the SUIT processor's codes, e.g. `unauthenticated`,
    /// `condition`, `rollback`, or the agent's, e.g. `no-space`, `health-check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub reason: Option<String>,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 4096))]
    pub detail: Option<String>,
    /// Bytes done, for progress on long steps. During Receive the agent sends `in-progress`
    /// reports with the bytes of the envelope, payloads and delta patches it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u64>,
    /// When the device began the step, in seconds since 1970, so that its duration is exact.
    /// Absent from older agents (the server then takes the previous report's time). The
    /// server clamps a time in the future to the time it received the report and ignores one
    /// more than [`limits::STEP_AGE_MAX`] seconds old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// On a failure, the end of what the device knows about it (e.g. the output of the
    /// failing health check), at most 8 KiB from the agent with tokens redacted. The server
    /// keeps at most [`limits::REPORT_LOG_MAX`] bytes: a longer log is clipped to its end, not
    /// refused, so that the failure itself is never lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// A SUIT report (draft-ietf-suit-report), if the device produces one.
    #[serde(default, with = "bytes", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Byte))]
    pub suit_report: Option<Vec<u8>>,
    /// The step ran **offline**: the device installed the release from an offline bundle
    /// (`suitcase bundle create`, docs/bundles.md), not from an offer of this server, and
    /// sends the report it queued when it next reaches the server. Its `release_id` may be
    /// the server's release id or the manifest digest's first 64 hex characters. Such a
    /// report is accepted for any release the server knows even though it never offered it,
    /// is recorded in the device's timeline marked offline, and moves no campaign's counters.
    /// An offline report on a release the server does not know is refused with 404
    /// `unknown-release`, and one on a release whose manifest is for another vendor or class
    /// than the device's with 409 `not-for-device`; an online report on a release never
    /// offered to the device is refused with 409 `not-offered`. Default `false`.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub offline: bool,
}

/// What the server holds about the device itself (`GET /api/v1/device/state`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceSelf {
    /// The device's name.
    pub name: String,
    /// The last inventory the server stored.
    pub inventory: Option<CheckIn>,
    /// The current or last update.
    pub update: Option<UpdateStatus>,
}

// ---------------------------------------------------------------------------------------------
// Management API
// ---------------------------------------------------------------------------------------------

/// Roles of management tokens. RFC 9019 §3: the author must not be able to deploy by itself,
/// so an author can upload releases but not start campaigns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Uploads releases.
    Author,
    /// Manages devices, groups and campaigns.
    Operator,
    /// Everything, including keys and tokens.
    Admin,
}

impl Role {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Author => "author",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// Parses a wire name.
    pub fn from_name(s: &str) -> Option<Self> {
        [Self::Viewer, Self::Author, Self::Operator, Self::Admin]
            .into_iter()
            .find(|r| r.name() == s)
    }
}

/// Create a management token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenCreate {
    /// Who or what uses it.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
        )
    )]
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// A management token; `token` is shown once, at creation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    /// The token's id (for revocation).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The secret, only in the answer to its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Revoked tokens no longer work.
    pub revoked: bool,
}

/// Register a release-signing key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyCreate {
    /// A name for the key (e.g. the author).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
        )
    )]
    pub name: String,
    /// The public key: PEM (SPKI or certificate) text, or a COSE_Key as hex, as
    /// `suitcase key public` writes.
    pub key: String,
}

/// A registered release-signing key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyInfo {
    /// The key's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// What kind of key it is (e.g. `P-256`, `ML-DSA-65`).
    pub kind: String,
    /// Its COSE key id, hex.
    pub kid: String,
    /// Whether it is post-quantum.
    pub post_quantum: bool,
}

/// A component a release installs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseComponent {
    /// The component identifier's segments, hex.
    pub id: Vec<String>,
    /// The image digest, hex (SHA-256 unless `digest_algorithm` says otherwise).
    pub image_digest: Option<String>,
    /// The digest algorithm.
    pub digest_algorithm: Option<String>,
    /// The image size.
    pub image_size: Option<u64>,
    /// The payload URI, when fetched.
    pub uri: Option<String>,
    /// The payload is encrypted.
    pub encrypted: bool,
}

/// A payload of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleasePayload {
    /// Its index: upload it with `PUT /api/v1/releases/{id}/payloads/{index}`.
    pub index: u32,
    /// The URI the manifest names.
    pub uri: String,
    /// Whether it has been uploaded.
    pub uploaded: bool,
    /// Bytes stored.
    pub size: Option<u64>,
    /// SHA-256 of the bytes stored, hex.
    pub sha256: Option<String>,
}

/// A release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseInfo {
    /// The release id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The manifest sequence number.
    pub sequence_number: u64,
    /// The manifest digest, hex.
    pub manifest_digest: String,
    /// Vendor identifiers the manifest checks.
    pub vendor_ids: Vec<String>,
    /// Class identifiers the manifest checks.
    pub class_ids: Vec<String>,
    /// The components.
    pub components: Vec<ReleaseComponent>,
    /// The payloads devices fetch.
    pub payloads: Vec<ReleasePayload>,
    /// Names of the registered keys whose signatures verified.
    pub signed_by: Vec<String>,
    /// Every payload is uploaded: the release can be deployed.
    pub complete: bool,
    /// The envelope size.
    pub envelope_bytes: u64,
    /// Who uploaded it.
    pub created_by: String,
    /// When, in seconds since 1970.
    pub created_at: i64,
    /// Delta patches the server made from earlier releases' images to this one's.
    #[serde(default)]
    pub deltas: Vec<ReleaseDelta>,
    /// Archived: kept (with its campaigns' history) but offered to no new campaign.
    #[serde(default)]
    pub archived: bool,
    /// What the envelope is, decided by the server at upload: [`RELEASE_KIND_TRUST_UPDATE`]
    /// when it names the trust store component (docs/trust.md), else [`RELEASE_KIND_RELEASE`]
    /// (also what an answer from an older server, without the field, means).
    #[serde(default = "release_kind_default")]
    pub kind: String,
}

/// [`ReleaseInfo::kind`] of firmware (and any envelope not naming the trust store).
pub const RELEASE_KIND_RELEASE: &str = "release";
/// [`ReleaseInfo::kind`] of a trust update: an envelope for the `suitcase-trust` component.
pub const RELEASE_KIND_TRUST_UPDATE: &str = "trust-update";

fn release_kind_default() -> String {
    RELEASE_KIND_RELEASE.to_owned()
}

/// A delta patch the server generated for a release's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseDelta {
    /// The payload index it produces.
    pub index: u32,
    /// The release whose image it starts from.
    pub source_release_id: String,
    /// SHA-256 of that image, hex.
    pub source_sha256: String,
    /// Patch bytes.
    pub size: u64,
    /// The full payload's bytes, for comparison.
    pub full_size: u64,
    /// Applier RAM the patch needs.
    pub ram_bound: u32,
}

/// Register a device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceCreate {
    /// A unique name (e.g. a serial number).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
        )
    )]
    pub name: String,
    /// Tags for targeting.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 64))]
    pub tags: Vec<String>,
    /// The SHA-256 of the device's TLS client certificate (DER), hex, for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-fA-F]{64}$"))]
    pub certificate_sha256: Option<String>,
}

/// A registered device; `token` only in the answer to its creation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceCreated {
    /// The device id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its bearer token for the device API; shown once.
    pub token: String,
}

/// One step's latest outcome in an update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepStatus {
    /// The step.
    pub step: Step,
    /// Its latest outcome.
    pub outcome: Outcome,
    /// The reason code on failure.
    pub reason: Option<String>,
    /// The detail text.
    pub detail: Option<String>,
    /// When the server received it, in seconds since 1970.
    pub at: i64,
    /// When the device began the step, in seconds since 1970 (as the device reported it,
    /// clamped by the server); absent when the device did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// Bytes done, from the latest `in-progress` report of a running step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u64>,
    /// The end of the device's log sent with the step's latest report (a failure's), at most
    /// [`limits::REPORT_LOG_MAX`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// A device's current or last update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateStatus {
    /// The release.
    pub release_id: String,
    /// The campaign that offered it, if any.
    pub campaign_id: Option<String>,
    /// `pending`, `notified`, `in-progress`, `succeeded`, `failed`, `cancelled`.
    pub state: String,
    /// Every step reported so far, in step order, with its latest outcome.
    pub steps: Vec<StepStatus>,
    /// The device installed this release offline, from a bundle (docs/bundles.md): the
    /// steps are the reports it queued and sent when it reached the server again, and no
    /// campaign counted them (`campaign_id` is absent).
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub offline: bool,
}

/// A device as operators see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceInfo {
    /// The device id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Vendor id from its last check-in.
    pub vendor_id: Option<String>,
    /// Class id from its last check-in.
    pub class_id: Option<String>,
    /// The highest installed sequence number.
    pub sequence_number: Option<u64>,
    /// Its last inventory.
    pub inventory: Option<CheckIn>,
    /// When it last checked in, in seconds since 1970.
    pub last_seen: Option<i64>,
    /// When it was registered.
    pub created_at: i64,
    /// Its current or last update.
    pub update: Option<UpdateStatus>,
    /// Decommissioned devices cannot authenticate.
    pub revoked: bool,
    /// Controller attributes a hawkBit DDI device sent with configData (docs/ddi.md).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// Change a device's tags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DevicePatch {
    /// Tags to add.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 64))]
    pub add_tags: Vec<String>,
    /// Tags to remove.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 64))]
    pub remove_tags: Vec<String>,
}

/// Which devices: every field given must match (an empty filter matches every device).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Filter {
    /// The device has every one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 64))]
    pub tags_all: Vec<String>,
    /// The device has at least one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 64))]
    pub tags_any: Vec<String>,
    /// The device is in this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The device reported this vendor id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    /// The device reported this class id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_id: Option<String>,
    /// The device's installed sequence number is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_below: Option<u64>,
    /// Exactly these device ids (or names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 100000))]
    pub devices: Vec<String>,
}

/// A group: a named set of devices, with its own push topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupCreate {
    /// The group's name.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
        )
    )]
    pub name: String,
    /// Device ids or names to put in it.
    #[serde(default)]
    pub devices: Vec<String>,
}

/// A group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// How many devices are in it.
    pub devices: u64,
}

/// The size of a rollout wave.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WaveSize {
    /// A percentage of the campaign's devices (cumulative waves need not add up to 100: the
    /// last wave takes the rest).
    Percent(f64),
    /// A number of devices.
    Count(u64),
}

/// What to do when a wave's failures reach the error threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop offering the update; an operator resumes or cancels.
    #[default]
    Pause,
    /// Cancel the campaign.
    Abort,
    /// Cancel, and offer the rollback release to every device of the opened waves.
    Rollback,
}

/// A daily maintenance window in UTC. Devices are offered the update only inside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Window {
    /// Opening time, minutes after midnight UTC (0..1440).
    #[cfg_attr(feature = "openapi", schema(maximum = 1439))]
    pub start_minute: u32,
    /// Closing time, minutes after midnight UTC; before `start_minute` means it spans midnight.
    #[cfg_attr(feature = "openapi", schema(maximum = 1439))]
    pub end_minute: u32,
    /// Days of the week it applies to, 0 = Monday .. 6 = Sunday; empty = every day.
    #[serde(default)]
    pub days: Vec<u8>,
}

/// Create a campaign (it starts in the `draft` state).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CampaignCreate {
    /// A name.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
        )
    )]
    pub name: String,
    /// The release to deploy.
    pub release_id: String,
    /// Which devices.
    #[serde(default)]
    pub filter: Filter,
    /// The waves, in order (default: one wave of every device).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 100))]
    pub waves: Vec<WaveSize>,
    /// The fraction (0..=1) of a wave's devices that must succeed before the next wave opens.
    #[serde(default = "default_success")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 1.0))]
    pub success_threshold: f64,
    /// The fraction (0..=1) of a wave's devices whose failure triggers `on_error`.
    #[serde(default = "default_error")]
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0.0, maximum = 1.0))]
    pub error_threshold: f64,
    /// What happens when the error threshold is reached.
    #[serde(default)]
    pub on_error: OnError,
    /// The release to roll back to (required for `on_error = rollback`). Anti-rollback means
    /// devices refuse a lower sequence number, so this is the previous image re-signed with a
    /// sequence number above the failed release's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_release_id: Option<String>,
    /// At most this many devices start the update per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_minute: Option<u32>,
    /// Offer the update only inside this window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// Devices must ask their user before installing.
    #[serde(default)]
    pub requires_consent: bool,
}

fn default_success() -> f64 {
    0.95
}

fn default_error() -> f64 {
    0.1
}

/// Campaign states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    /// Created, not started.
    Draft,
    /// Offering the update to the opened waves.
    Running,
    /// Stopped by an operator or by the error threshold; can resume.
    Paused,
    /// Every device of every wave finished.
    Completed,
    /// Stopped for good.
    Cancelled,
    /// Failed and rolling back: the rollback release is offered to the opened waves.
    RolledBack,
}

impl CampaignState {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::RolledBack => "rolled_back",
        }
    }

    /// Parses a wire name.
    pub fn from_name(s: &str) -> Option<Self> {
        [
            Self::Draft,
            Self::Running,
            Self::Paused,
            Self::Completed,
            Self::Cancelled,
            Self::RolledBack,
        ]
        .into_iter()
        .find(|x| x.name() == s)
    }
}

/// Counts of one wave.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WaveProgress {
    /// The wave number (0-based).
    pub wave: u32,
    /// Devices in it.
    pub devices: u64,
    /// Not yet offered.
    pub pending: u64,
    /// Offered, no report yet.
    pub notified: u64,
    /// Reporting steps.
    pub in_progress: u64,
    /// Finished with success.
    pub succeeded: u64,
    /// Failed.
    pub failed: u64,
    /// Taken out (cancel, abort).
    pub cancelled: u64,
    /// Offered the rollback release.
    pub rolling_back: u64,
    /// Rolled back successfully.
    pub rolled_back: u64,
}

/// A campaign with its progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CampaignInfo {
    /// The campaign id.
    pub id: String,
    /// Its definition.
    #[serde(flatten)]
    pub spec: CampaignCreate,
    /// Its state.
    pub state: CampaignState,
    /// Why it is in that state, when the server changed it (e.g. the error threshold).
    pub state_reason: Option<String>,
    /// Waves opened so far.
    pub opened_waves: u32,
    /// Per-wave counts.
    pub waves_progress: Vec<WaveProgress>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: i64,
    /// Components the release updates that some of the campaign's devices (those it would
    /// target, for a draft) reported they cannot roll back (docs/server.md §4). Only
    /// `GET /api/v1/campaigns/{id}` fills it, not the list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_rollback: Vec<RollbackGap>,
    /// The `no_rollback` check stopped at its bound: its counts are lower bounds.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub no_rollback_partial: bool,
}

/// What a campaign would target if it started now (`POST /api/v1/campaigns/dry-run`): how
/// many devices and which, and why the others its filter matches would not be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CampaignDryRun {
    /// Devices the campaign would target.
    pub targeted: u64,
    /// Registered devices (not decommissioned) the filter matches.
    pub matched: u64,
    /// Of those, devices that reported another class than the release's: they would refuse
    /// its manifest (SUIT manifest §8.4.8.2), so they are left out.
    pub other_class: u64,
    /// Of the rest, devices busy in another live campaign, left out.
    pub busy: u64,
    /// Targeted devices that already run the release's sequence number or a newer one: they
    /// would be offered it and refuse it (anti-rollback).
    pub up_to_date: u64,
    /// The first targeted devices, as (id, name), at most 100.
    pub devices: Vec<DryRunDevice>,
    /// Components the release updates that some targeted devices reported they cannot roll
    /// back (docs/server.md §4): after a failed health check those devices keep the new
    /// content. Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_rollback: Vec<RollbackGap>,
    /// The `no_rollback` check stopped at its bound (docs/server.md §4): its counts are lower
    /// bounds.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub no_rollback_partial: bool,
}

/// Devices that cannot roll back one component a campaign's release updates: their last
/// inventory reported it with `rollback: false`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RollbackGap {
    /// The component identifier's segments, hex.
    pub component: Vec<String>,
    /// The handler those devices reported for it (`file`, `archive`, `script`, `deb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// How many of the campaign's devices cannot roll it back.
    pub devices: u64,
    /// Of how many devices (those the campaign targets).
    pub of: u64,
}

impl RollbackGap {
    /// `3 of 40 devices cannot roll back app (deb handler)`.
    #[must_use]
    pub fn text(&self) -> String {
        format!(
            "{} of {} device{} cannot roll back {}{}",
            self.devices,
            self.of,
            if self.of == 1 { "" } else { "s" },
            component_label(&self.component),
            self.handler
                .as_deref()
                .map(|h| format!(" ({h} handler)"))
                .unwrap_or_default()
        )
    }
}

/// A device a dry run would target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DryRunDevice {
    /// The device id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A device's place in a campaign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CampaignMember {
    /// The device id.
    pub device_id: String,
    /// Its wave.
    pub wave: u32,
    /// `pending`, `notified`, `in_progress`, `succeeded`, `failed`, `cancelled`,
    /// `rolling_back`, `rolled_back` or `rollback_failed`.
    pub state: String,
    /// The release it is offered (the rollback release while rolling back).
    pub release_id: String,
}

/// Devices to add to or remove from a group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceList {
    /// Device ids or names.
    pub devices: Vec<String>,
}

/// An audit log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// The entry number (increasing).
    pub id: i64,
    /// When, in seconds since 1970.
    pub at: i64,
    /// The token's name.
    pub actor: String,
    /// The token's role.
    pub role: String,
    /// What was done, e.g. `release.upload`.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// Details, as JSON text.
    pub detail: String,
}

/// An error answer: a stable code, a message naming what is wrong, and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// A stable, machine-readable code, e.g. `untrusted-release`.
    pub error: String,
    /// What is wrong, for people.
    pub message: String,
    /// What to do about it, when there is something to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// On a conflict with something that exists (`409`), its id, so that a client can carry
    /// on with it (e.g. finish an incomplete release's payloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}
