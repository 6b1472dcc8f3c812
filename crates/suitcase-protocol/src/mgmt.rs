//! Management API types that the server's quarantine handlers (RFC 8240 §9,
//! docs/server.md §8) answer with: a device's quarantine, a release's remediation flag, the
//! fleet's posture, and their requests.
//!
//! The other management answers (`ReleaseInfo`, `DeviceInfo`, `CampaignInfo`, ...) are in
//! the crate root. The server's handlers answer with these types themselves (and store
//! [`QuarantineRecord`] as they are), so the wire cannot drift from them; the requests here
//! are what clients send, while the server reads its own stricter copies that refuse unknown
//! fields. `suitcase-sim`'s `mgmt_types` test reads every answer strictly against these
//! types. As everywhere in this crate, unknown fields are ignored when reading and optional
//! fields are `Option`.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// Quarantine a device (`POST /api/v1/devices/{id}/quarantine`, admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuarantineRequest {
    /// Why, in words (1 to 200 characters, no control characters).
    pub reason: String,
}

/// Mark a release remediation or not (`POST /api/v1/releases/{id}/remediation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemediationRequest {
    /// Whether quarantined devices are offered this release.
    pub remediation: bool,
}

/// Why and since when a device is quarantined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuarantineRecord {
    /// Since when, in seconds since 1970.
    pub since: i64,
    /// `operator` or `rule`.
    pub by: String,
    /// The management token's name for `operator`; the server for `rule`.
    pub actor: String,
    /// The rule that tripped (`signature-failures`, `rollback-attempt`, `never-offered`),
    /// absent for an operator's quarantine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// The ids of the step reports that tripped the rule.
    #[serde(default)]
    pub evidence: Vec<i64>,
}

/// A step report stored flagged `quarantined`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlaggedReport {
    /// The report's id (a quarantine's `evidence` names these).
    pub id: i64,
    /// The release it names.
    pub release_id: String,
    /// The step's wire name.
    pub step: String,
    /// The outcome's wire name.
    pub outcome: String,
    /// The reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The detail text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When the server received it, in seconds since 1970.
    pub at: i64,
}

/// A device's quarantine (`GET`, `POST` and `DELETE /api/v1/devices/{id}/quarantine`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceQuarantine {
    /// The device id.
    pub device_id: String,
    /// The device name.
    pub name: String,
    /// Whether it is quarantined: offered only releases marked remediation, its reports
    /// flagged.
    pub quarantined: bool,
    /// Why, since when and by whom (absent when not quarantined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<QuarantineRecord>,
    /// Its newest flagged reports (at most 50), newest first.
    #[serde(default)]
    pub flagged_reports: Vec<FlaggedReport>,
}

/// A release's remediation flag (`GET` and `POST /api/v1/releases/{id}/remediation`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseRemediation {
    /// The release id.
    pub id: String,
    /// Whether quarantined devices are offered this release.
    pub remediation: bool,
}

/// The fleet's posture (`GET /api/v1/fleet/posture`; RFC 8240 §9).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetPosture {
    /// Devices that are not revoked.
    pub devices: u64,
    /// Devices whose installed sequence number is at least the newest release's for their
    /// class (or for whose class there is no release).
    pub up_to_date: u64,
    /// Devices behind the newest release for their class.
    pub out_of_date: u64,
    /// Devices that never reported a class or a sequence number.
    pub unknown: u64,
    /// Quarantined devices.
    pub quarantined: u64,
    /// Devices that checked in before but not within `unreachable_after_seconds`.
    pub unreachable: u64,
    /// Devices that never checked in.
    pub never_seen: u64,
    /// The window of `unreachable`, in seconds.
    pub unreachable_after_seconds: u64,
    /// When this was counted, in seconds since 1970.
    pub at: i64,
}
