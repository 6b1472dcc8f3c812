//! The checks made on an authenticated manifest before a payload byte is requested (RFC 9124
//! REQ.USE.MFST.PRE_CHECK: the checks a manifest allows are made before downloading).
//!
//! The SUIT processor checks the same things again when it runs the install section; this pass
//! only moves the refusals forward, so that a release the device would refuse costs its
//! envelope and nothing more (the TUF "endless data" attack).
//!
//! What is decided here, from the shared sequence and the install section:
//! - every component is one the device has: its image, or the helpers `<image>/staging`
//!   (fetched bytes, streamed from the transport) and `<image>/installed` (a delta's base);
//! - the vendor, class and device identifier conditions that run unconditionally (outside
//!   try-each and run-sequence) hold for this device;
//! - the image declares its size, and the slot image fits the slot;
//! - the device holds a key for every encryption info anywhere in those sequences.

use suitcase_manifest::codepoints::helper;
use suitcase_manifest::encryption::{DecryptionKey, EncryptionInfo};
use suitcase_manifest::{
    Command, CommandSequence, ComponentId, Condition, IndexArg, MAX_COMPONENTS, MAX_NESTING,
    Parameter, ParameterMap, Section, SectionState, VerifiedManifest,
};

use super::{Device, Refusal};

/// What a manifest component is to this device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The image, staged into the slot not in use.
    Image,
    /// `<image>/staging`: bytes read from the transport as they are needed.
    Remote,
    /// `<image>/installed`: the image in the running slot.
    Installed,
}

/// The role of a component identifier for a device whose image is `image`.
pub(crate) fn role(image: &ComponentId<'_>, id: &ComponentId<'_>) -> Option<Role> {
    let mut ours = image.segments();
    let mut theirs = id.segments();
    for segment in ours.by_ref() {
        if theirs.next() != Some(segment) {
            return None;
        }
    }
    match (theirs.next(), theirs.next()) {
        (None, _) => Some(Role::Image),
        (Some(s), None) if s == helper::STAGING => Some(Role::Remote),
        (Some(s), None) if s == helper::INSTALLED => Some(Role::Installed),
        _ => None,
    }
}

/// The component roles of a manifest, and where its image is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Roles {
    pub(crate) roles: [Option<Role>; MAX_COMPONENTS],
    pub(crate) image: usize,
}

impl Roles {
    pub(crate) fn of(
        verified: &VerifiedManifest<'_>,
        image: &ComponentId<'_>,
    ) -> Result<Self, Refusal> {
        let mut roles = [None; MAX_COMPONENTS];
        let mut found = None;
        for (index, id) in verified.manifest().components.iter().enumerate() {
            let r = role(image, &id).ok_or(Refusal::UnsupportedComponent { index })?;
            if r == Role::Image {
                if found.is_some() {
                    return Err(Refusal::UnsupportedComponent { index });
                }
                found = Some(index);
            }
            *roles
                .get_mut(index)
                .ok_or(Refusal::UnsupportedComponent { index })? = Some(r);
        }
        let image = found.ok_or(Refusal::NoImage)?;
        Ok(Self { roles, image })
    }

    pub(crate) fn get(&self, index: usize) -> Option<Role> {
        self.roles.get(index).copied().flatten()
    }
}

/// The identity and size parameters one component has so far.
#[derive(Clone, Copy, Debug, Default)]
struct Tracked<'a> {
    vendor: Option<&'a [u8]>,
    class: Option<&'a [u8]>,
    device: Option<&'a [u8]>,
    image_size: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
enum Selection<'a> {
    One(usize),
    All,
    List(suitcase_manifest::IndexList<'a>),
}

struct Walk<'d, 'a> {
    device: &'d Device<'d>,
    params: [Tracked<'a>; MAX_COMPONENTS],
    components: usize,
    selection: Selection<'a>,
}

/// Runs the checks; returns the image's declared size.
pub(crate) fn check(
    device: &Device<'_>,
    verified: &VerifiedManifest<'_>,
    roles: &Roles,
) -> Result<u64, Refusal> {
    let manifest = verified.manifest();
    let mut walk = Walk {
        device,
        params: [Tracked::default(); MAX_COMPONENTS],
        components: manifest.components.len(),
        selection: Selection::One(0),
    };
    if let Some(shared) = manifest.shared_sequence {
        walk.run(&shared, true, 0)?;
    }
    match verified.section(Section::Install) {
        SectionState::Present(install) => {
            walk.selection = Selection::One(0);
            walk.run(&install, true, 0)?;
        }
        // A manifest that installs nothing updates nothing; a severed install section must
        // come with the envelope.
        SectionState::Absent | SectionState::Severed => return Err(Refusal::NoInstall),
    }
    walk.params
        .get(roles.image)
        .and_then(|t| t.image_size)
        .ok_or(Refusal::NoImageSize)
}

impl<'a> Walk<'_, 'a> {
    fn selected(&self) -> impl Iterator<Item = usize> + use<'a> {
        let (one, all, list) = match self.selection {
            Selection::One(i) => (Some(i), 0, None),
            Selection::All => (None, self.components, None),
            Selection::List(l) => (None, 0, Some(l)),
        };
        one.into_iter().chain(0..all).chain(
            list.into_iter()
                .flat_map(|l| l.iter().map(|i| usize::try_from(i).unwrap_or(usize::MAX))),
        )
    }

    /// `decisive`: conditions here always run (not inside try-each or run-sequence, where a
    /// soft failure is the manifest's business).
    fn run(
        &mut self,
        seq: &CommandSequence<'a>,
        decisive: bool,
        depth: usize,
    ) -> Result<(), Refusal> {
        if depth > MAX_NESTING {
            return Err(Refusal::Malformed);
        }
        for (_, command) in seq.iter() {
            match command {
                Command::SetComponentIndex(arg) => {
                    self.selection = match arg {
                        IndexArg::One(i) => {
                            Selection::One(usize::try_from(i).unwrap_or(usize::MAX))
                        }
                        IndexArg::All => Selection::All,
                        IndexArg::List(l) => Selection::List(l),
                    };
                }
                Command::OverrideParameters(map) => self.params(map, true, decisive)?,
                Command::SetParameters(map) => self.params(map, false, decisive)?,
                Command::OverrideMultiple(multiple) => {
                    for (index, map) in multiple.iter() {
                        self.selection =
                            Selection::One(usize::try_from(index).unwrap_or(usize::MAX));
                        self.params(map, true, decisive)?;
                    }
                }
                Command::Condition(condition, _) if decisive => self.condition(condition)?,
                Command::TryEach(each) => {
                    let selection = self.selection;
                    for branch in each.branches() {
                        self.selection = selection;
                        self.run(&branch, false, depth + 1)?;
                    }
                    self.selection = selection;
                }
                Command::RunSequence(inner) => self.run(&inner, false, depth + 1)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn params(
        &mut self,
        map: ParameterMap<'a>,
        replace: bool,
        decisive: bool,
    ) -> Result<(), Refusal> {
        for parameter in map.iter() {
            // Firmware-encryption draft: the device must hold a key for the payload; decided
            // here for every encryption info, in whatever branch it sits.
            if let Parameter::EncryptionInfo(raw) = parameter {
                has_key(self.device.keys, raw)?;
            }
            if !decisive {
                continue;
            }
            for index in self.selected() {
                let Some(t) = self.params.get_mut(index) else {
                    return Err(Refusal::Malformed);
                };
                fn put<V>(slot: &mut Option<V>, v: V, replace: bool) {
                    if replace || slot.is_none() {
                        *slot = Some(v);
                    }
                }
                match parameter {
                    Parameter::VendorIdentifier(v) => put(&mut t.vendor, v.bytes(), replace),
                    Parameter::ClassIdentifier(v) => put(&mut t.class, v, replace),
                    Parameter::DeviceIdentifier(v) => put(&mut t.device, v, replace),
                    Parameter::ImageSize(v) => put(&mut t.image_size, v, replace),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn condition(&self, condition: Condition) -> Result<(), Refusal> {
        let identity = &self.device.identity;
        for index in self.selected() {
            let t = self.params.get(index).ok_or(Refusal::Malformed)?;
            // Manifest §8.4.9.1: the identifiers must match the device's.
            let ok = match condition {
                Condition::VendorIdentifier => t.vendor == Some(identity.vendor),
                Condition::ClassIdentifier => t.class == Some(identity.class),
                Condition::DeviceIdentifier => t.device.is_some() && t.device == identity.device,
                _ => true,
            };
            if !ok {
                return Err(match condition {
                    Condition::VendorIdentifier => Refusal::WrongVendor,
                    Condition::ClassIdentifier => Refusal::WrongClass,
                    _ => Refusal::WrongDevice,
                });
            }
        }
        Ok(())
    }
}

/// Whether one of the device's keys opens a recipient of the encryption info.
fn has_key(keys: &[DecryptionKey<'_>], raw: &[u8]) -> Result<(), Refusal> {
    let info = EncryptionInfo::decode(raw).map_err(|_| Refusal::Malformed)?;
    let mut cek = [0u8; 32];
    let found = keys.iter().any(|k| k.unwrap_cek(&info, &mut cek).is_ok());
    cek.fill(0);
    core::hint::black_box(&mut cek);
    // An Encrypt0 has no recipients: the device must hold the CEK itself, which a
    // `DecryptionKey` cannot express yet, so it is refused as undecryptable.
    if found {
        Ok(())
    } else {
        Err(Refusal::NoDecryptionKey)
    }
}
