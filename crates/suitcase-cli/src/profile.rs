//! The simulated-device profile for `suitcase manifest check --device PROFILE.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use suitcase_manifest::memory::{MemoryComponent, MemoryDevice};

/// The JSON profile. Paths are relative to the profile file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    /// Vendor identifier, 16 bytes hex (a UUID).
    vendor_id: Option<String>,
    /// Class identifier, 16 bytes hex.
    class_id: Option<String>,
    /// Device identifier, 16 bytes hex, or null.
    device_id: Option<String>,
    /// Sequence number of the installed manifest; absent for a device with nothing installed.
    pub(crate) installed_sequence: Option<u64>,
    components: Vec<ComponentProfile>,
    /// URI → payload file, for fetches.
    #[serde(default)]
    fetch: BTreeMap<String, String>,
    #[serde(default)]
    keys: KeysProfile,
    /// Seconds since 1970, for use-before.
    now: Option<u64>,
    /// Battery energy in mWh, for minimum-battery.
    battery_mwh: Option<u64>,
    /// The application's answer to update-authorized.
    authorized: Option<bool>,
    /// The device's signer policy.
    #[serde(default)]
    pub(crate) policy: PolicyProfile,
}

/// `"policy": {"threshold": 2, "hybrid": true, "rules": [{"components": [["00"]], "threshold": 2}]}`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyProfile {
    /// Distinct trusted signers required for every manifest.
    pub(crate) threshold: Option<usize>,
    /// Require a classical and a post-quantum signature.
    #[serde(default)]
    pub(crate) hybrid: bool,
    /// Extra thresholds for components (by identifier prefix).
    #[serde(default)]
    pub(crate) rules: Vec<RuleProfile>,
}

/// One per-component rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleProfile {
    /// The component identifier prefix, as hex segments.
    pub(crate) components: Vec<String>,
    /// Distinct signers required for those components.
    pub(crate) threshold: usize,
}

impl PolicyProfile {
    /// The encoded component-id prefix of each rule.
    pub(crate) fn rule_components(&self) -> Result<Vec<Vec<u8>>> {
        self.rules
            .iter()
            .map(|r| {
                let segments = r
                    .components
                    .iter()
                    .map(|s| {
                        hex::decode(s).with_context(|| {
                            format!("policy rule component segment {s:?} is not hex")
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(suitcase_manifest::build::encode_component_id(&segments))
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentProfile {
    /// Identifier segments as hex strings: `["00"]`.
    id: Vec<String>,
    max_size: u64,
    /// A file with the component's current content.
    content: Option<String>,
    slot: Option<u64>,
    version: Option<Vec<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysProfile {
    /// Decryption keys: `.hex` raw AES-KW keys, PEM P-256 private keys or COSE_Key files.
    #[serde(default)]
    decrypt: Vec<String>,
}

impl Profile {
    pub(crate) fn load(path: &Path) -> Result<(Self, MemoryDevice)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read device profile {}", path.display()))?;
        let profile: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid device profile", path.display()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let device = profile
            .device(&base)
            .with_context(|| format!("in {}", path.display()))?;
        Ok((profile, device))
    }

    fn device(&self, base: &Path) -> Result<MemoryDevice> {
        let rel = |p: &str| -> PathBuf { base.join(p) };
        let id16 = |v: &Option<String>, what| -> Result<Option<Vec<u8>>> {
            v.as_deref()
                .map(|s| crate::input::fixed_hex(s, 16, what))
                .transpose()
        };
        let mut device = MemoryDevice {
            vendor_id: id16(&self.vendor_id, "vendor_id")?.map(|b| (false, b)),
            class_id: id16(&self.class_id, "class_id")?,
            device_id: id16(&self.device_id, "device_id")?,
            now: self.now,
            battery_mwh: self.battery_mwh,
            authorized: self.authorized,
            ..MemoryDevice::default()
        };
        if self.components.is_empty() {
            bail!("the profile lists no components");
        }
        for c in &self.components {
            let id = c
                .id
                .iter()
                .map(|s| {
                    hex::decode(s).with_context(|| format!("component id segment {s:?} is not hex"))
                })
                .collect::<Result<Vec<_>>>()?;
            let content = match &c.content {
                Some(file) => std::fs::read(rel(file))
                    .with_context(|| format!("cannot read component content {file}"))?,
                None => Vec::new(),
            };
            if content.len() as u64 > c.max_size {
                bail!("component {:?}: content is larger than max_size", c.id);
            }
            device.components.push(MemoryComponent {
                id,
                capacity: c.max_size,
                content,
                slot: c.slot,
                version: c.version.clone(),
                staged: None,
            });
        }
        for (uri, file) in &self.fetch {
            let bytes = std::fs::read(rel(file))
                .with_context(|| format!("cannot read payload {file} for {uri}"))?;
            device.payloads.push((uri.clone(), bytes));
        }
        for file in &self.keys.decrypt {
            device
                .keys
                .keys
                .push(crate::keys::load_decryption_key(&rel(file))?);
        }
        Ok(device)
    }
}
