//! The CBOR bodies of `/d/checkin` and `/d/reports` (docs/gateway.md §3), written and read by
//! hand with minicbor: `suitcase-protocol`'s types need `std` (serde, `String`, `Vec`). The
//! field names and value forms are those of `suitcase_protocol::{CheckIn, CheckInAnswer,
//! UpdateOffer, PayloadOffer, StepReport}` as serde writes them (maps with text keys, enums as
//! their snake_case or kebab-case names, absent options left out).

use minicbor::encode::write::Cursor;
use minicbor::{Decoder, Encoder};

/// A bounded text field copied out of an answer.
#[derive(Clone, Copy)]
pub struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Text<N> {
    const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    fn set(&mut self, s: &str) -> Result<(), WireError> {
        let dst = self.buf.get_mut(..s.len()).ok_or(WireError::TooLong)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = s.len();
        Ok(())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

/// Why a body could not be written or read.
#[derive(Clone, Copy, Debug)]
pub enum WireError {
    /// The output buffer is too small.
    NoRoom,
    /// The answer is not the CBOR `CheckInAnswer` this client reads.
    Malformed,
    /// A text field is longer than this client keeps.
    TooLong,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NoRoom => "body larger than a link message",
            Self::Malformed => "check-in answer is not the CBOR CheckInAnswer (docs/gateway.md §3)",
            Self::TooLong => "a text field of the check-in answer is longer than this device keeps",
        })
    }
}

impl<E> From<minicbor::encode::Error<E>> for WireError {
    fn from(_: minicbor::encode::Error<E>) -> Self {
        Self::NoRoom
    }
}

impl From<minicbor::decode::Error> for WireError {
    fn from(_: minicbor::decode::Error) -> Self {
        Self::Malformed
    }
}

/// A UUID's text form (RFC 9562 §4), as `CheckIn.vendor_id` and `class_id` carry it.
fn uuid(bytes: &[u8; 16]) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        if let Some([hi, lo]) = out
            .get_mut(at..at + 2)
            .and_then(|p| <&mut [u8; 2]>::try_from(p).ok())
        {
            *hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            *lo = HEX.get(usize::from(b & 0xF)).copied().unwrap_or(b'0');
        }
        at += 2;
    }
    out
}

/// What the check-in says about this device.
pub struct CheckIn<'a> {
    /// Vendor id.
    pub vendor: &'a [u8; 16],
    /// Class id.
    pub class: &'a [u8; 16],
    /// The component id's one segment, hex (`InstalledComponent.id`).
    pub component: &'a str,
    /// The running image's manifest sequence number.
    pub sequence: u64,
    /// On trial (`BootStatus.trial`).
    pub trial: bool,
    /// `CheckIn.agent`.
    pub agent: &'a str,
}

/// Encodes a `CheckIn` into `buf`; returns its length.
pub fn check_in(c: &CheckIn<'_>, buf: &mut [u8]) -> Result<usize, WireError> {
    let vendor = uuid(c.vendor);
    let class = uuid(c.class);
    let mut e = Encoder::new(Cursor::new(buf));
    e.map(5)?;
    e.str("vendor_id")?
        .str(core::str::from_utf8(&vendor).map_err(|_| WireError::Malformed)?)?;
    e.str("class_id")?
        .str(core::str::from_utf8(&class).map_err(|_| WireError::Malformed)?)?;
    e.str("components")?.array(1)?.map(2)?;
    e.str("id")?.array(1)?.str(c.component)?;
    e.str("sequence_number")?.u64(c.sequence)?;
    e.str("boot")?.map(2)?;
    e.str("slot")?.str("a")?;
    e.str("trial")?.bool(c.trial)?;
    e.str("agent")?.str(c.agent)?;
    Ok(e.writer().position())
}

/// The offer in a check-in answer, as far as this device uses it.
pub struct Offer {
    /// `UpdateOffer.release_id`.
    pub release_id: Text<80>,
    /// `UpdateOffer.sequence_number`.
    pub sequence: u64,
    /// `UpdateOffer.manifest_url` (a CoAP path at the gateway).
    pub manifest_url: Text<160>,
    /// `UpdateOffer.manifest_size`.
    pub manifest_size: u64,
    /// `PayloadOffer.uri` of the first payload: what the manifest fetches.
    pub payload_uri: Text<128>,
    /// `PayloadOffer.url` of the first payload (a CoAP path).
    pub payload_url: Text<160>,
}

/// Reads a `CheckInAnswer`: the offer if its action is `update`.
pub fn answer(body: &[u8]) -> Result<Option<Offer>, WireError> {
    let mut d = Decoder::new(body);
    let n = d.map()?.ok_or(WireError::Malformed)?;
    let mut update = false;
    let mut offer = None;
    for _ in 0..n {
        match d.str()? {
            "action" => update = d.str()? == "update",
            "update" if d.datatype()? == minicbor::data::Type::Map => {
                offer = Some(offer_of(&mut d)?)
            }
            _ => d.skip()?,
        }
    }
    Ok(offer.filter(|_| update))
}

fn offer_of(d: &mut Decoder<'_>) -> Result<Offer, WireError> {
    let mut o = Offer {
        release_id: Text::new(),
        sequence: 0,
        manifest_url: Text::new(),
        manifest_size: 0,
        payload_uri: Text::new(),
        payload_url: Text::new(),
    };
    let n = d.map()?.ok_or(WireError::Malformed)?;
    for _ in 0..n {
        match d.str()? {
            "release_id" => o.release_id.set(d.str()?)?,
            "sequence_number" => o.sequence = d.u64()?,
            "manifest_url" => o.manifest_url.set(d.str()?)?,
            "manifest_size" => o.manifest_size = d.u64()?,
            "payloads" => {
                let count = d.array()?.ok_or(WireError::Malformed)?;
                for i in 0..count {
                    let fields = d.map()?.ok_or(WireError::Malformed)?;
                    for _ in 0..fields {
                        match (i, d.str()?) {
                            (0, "uri") => o.payload_uri.set(d.str()?)?,
                            (0, "url") => o.payload_url.set(d.str()?)?,
                            _ => d.skip()?,
                        }
                    }
                }
            }
            _ => d.skip()?,
        }
    }
    Ok(o)
}

/// A `StepReport`.
pub struct Report<'a> {
    /// `release_id`.
    pub release_id: &'a str,
    /// `step`: receive, check, apply, reverify, stage, activate, clean-up.
    pub step: &'a str,
    /// `outcome`: success, failure, in-progress.
    pub outcome: &'a str,
    /// `reason` (failures).
    pub reason: Option<&'a str>,
    /// `detail`.
    pub detail: Option<&'a str>,
    /// `progress`, bytes.
    pub progress: Option<u64>,
}

/// Encodes a `StepReport` into `buf`; returns its length.
pub fn report(r: &Report<'_>, buf: &mut [u8]) -> Result<usize, WireError> {
    let n = 3
        + u64::from(r.reason.is_some())
        + u64::from(r.detail.is_some())
        + u64::from(r.progress.is_some());
    let mut e = Encoder::new(Cursor::new(buf));
    e.map(n)?;
    e.str("release_id")?.str(r.release_id)?;
    e.str("step")?.str(r.step)?;
    e.str("outcome")?.str(r.outcome)?;
    if let Some(reason) = r.reason {
        e.str("reason")?.str(reason)?;
    }
    if let Some(detail) = r.detail {
        e.str("detail")?.str(detail)?;
    }
    if let Some(p) = r.progress {
        e.str("progress")?.u64(p)?;
    }
    Ok(e.writer().position())
}
