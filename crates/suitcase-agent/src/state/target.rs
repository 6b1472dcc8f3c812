//! A journal's targets: where each manifest component goes and how far the update got with
//! it, typed ([`Role`], [`TargetState`], [`Slot`]) in the agent and written as journal
//! version 1 wrote it ([`TargetRecord`]: four booleans and slot names), so a journal of an
//! update in flight resumes across the change.

use serde::{Deserialize, Serialize};

use crate::slot::Slot;

/// What a manifest component is to the update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An image written to a configured component (a slot, an MCU, a module's handler).
    Image,
    /// A helper component (staging, patch): held in the work area, never written to a slot.
    Helper,
    /// The `<id>/installed` helper: the running image, read where it is (a delta base).
    Running,
}

impl Role {
    /// A helper component (the running image is one too): nothing of it is installed.
    pub fn is_helper(self) -> bool {
        self != Self::Image
    }
}

/// How far the update got with a target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TargetState {
    /// Routed (Distribute) and journalled (Stage); nothing written yet, or part of it.
    #[default]
    Planned,
    /// Apply is complete for it.
    Applied,
    /// The new image runs on trial (or the module's handler installed it).
    Activated,
}

impl TargetState {
    /// Apply is complete (it may be activated since).
    pub fn applied(self) -> bool {
        self != Self::Planned
    }

    /// Activate switched to it.
    pub fn activated(self) -> bool {
        self == Self::Activated
    }
}

/// Where a manifest component goes. In `journal.json` as [`TargetRecord`] (version 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "TargetRecord", into = "TargetRecord")]
pub struct Target {
    /// Its index in the manifest.
    pub index: usize,
    /// Its index in the configuration.
    pub component: usize,
    /// Its identifier, hex segments.
    pub id: Vec<String>,
    /// The configured component's name (with `/staging`, `/patch` or `/installed` for a
    /// helper component).
    pub name: String,
    /// An image, a helper, or the running image.
    pub role: Role,
    /// The slot running before the update; slotted image components only.
    pub from_slot: Option<Slot>,
    /// The slot the update goes to.
    pub to_slot: Option<Slot>,
    /// The installed sequence number before the update (Stage).
    pub installed_sequence: Option<u64>,
    /// Bytes of the new image known to be in the slot (Apply checkpoints).
    pub written: u64,
    /// The image length in the slot.
    pub len: u64,
    /// Where the image starts in the slot (after a slot header for simulated MCUs).
    pub image_offset: u64,
    /// How far the update got with it.
    pub state: TargetState,
    /// SHA-256 of the new image, hex.
    pub digest: Option<String>,
}

/// A [`Target`] as journal version 1 writes it: the role and the state as booleans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    index: usize,
    component: usize,
    id: Vec<String>,
    name: String,
    /// A helper component. Journals call it `staging`, its first kind.
    staging: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from_slot: Option<Slot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to_slot: Option<Slot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    installed_sequence: Option<u64>,
    #[serde(default)]
    written: u64,
    #[serde(default)]
    len: u64,
    #[serde(default)]
    image_offset: u64,
    #[serde(default)]
    applied: bool,
    #[serde(default)]
    activated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
}

impl From<TargetRecord> for Target {
    fn from(r: TargetRecord) -> Self {
        Self {
            index: r.index,
            component: r.component,
            id: r.id,
            name: r.name,
            role: match (r.staging, r.running) {
                (_, true) => Role::Running,
                (true, false) => Role::Helper,
                (false, false) => Role::Image,
            },
            from_slot: r.from_slot,
            to_slot: r.to_slot,
            installed_sequence: r.installed_sequence,
            written: r.written,
            len: r.len,
            image_offset: r.image_offset,
            state: match (r.applied, r.activated) {
                (_, true) => TargetState::Activated,
                (true, false) => TargetState::Applied,
                (false, false) => TargetState::Planned,
            },
            digest: r.digest,
        }
    }
}

impl From<Target> for TargetRecord {
    fn from(t: Target) -> Self {
        Self {
            index: t.index,
            component: t.component,
            id: t.id,
            name: t.name,
            staging: t.role.is_helper(),
            running: t.role == Role::Running,
            from_slot: t.from_slot,
            to_slot: t.to_slot,
            installed_sequence: t.installed_sequence,
            written: t.written,
            len: t.len,
            image_offset: t.image_offset,
            applied: t.state.applied(),
            activated: t.state.activated(),
            digest: t.digest,
        }
    }
}
