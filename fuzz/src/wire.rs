//! `wire`: the `suitcase-protocol` wire types as the server and the agent decode them, JSON
//! (serde_json) and CBOR (ciborium). The first byte picks the type and the format. A value that
//! decodes must re-encode, and its encoding must decode to a value that encodes the same
//! (decode ∘ encode is stable).
//!
//! Protocol front ends (DDI JSON, CoAP) get their own module and target the same way: decode
//! a request as the front end does, then check what it promises (docs/fuzzing.md).

use serde::Serialize;
use serde::de::DeserializeOwned;
use suitcase_protocol as p;

fn json<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    let Ok(v) = serde_json::from_slice::<T>(bytes) else {
        return;
    };
    let once = serde_json::to_vec(&v).expect("a decoded value encodes");
    let back: T = serde_json::from_slice(&once).expect("an encoded value decodes");
    let twice = serde_json::to_vec(&back).expect("a decoded value encodes");
    assert_eq!(once, twice, "JSON re-encoding is not stable");
}

fn cbor<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    let Ok(v) = ciborium::from_reader::<T, _>(bytes) else {
        return;
    };
    let mut once = Vec::new();
    ciborium::into_writer(&v, &mut once).expect("a decoded value encodes");
    let back: T = ciborium::from_reader(once.as_slice()).expect("an encoded value decodes");
    let mut twice = Vec::new();
    ciborium::into_writer(&back, &mut twice).expect("a decoded value encodes");
    assert_eq!(once, twice, "CBOR re-encoding is not stable");
}

macro_rules! types {
    ($($t:ident),* $(,)?) => {
        /// The wire types, in the order the selector byte counts them.
        pub const TYPES: &[&str] = &[$(stringify!($t)),*];
        fn decode(index: usize, cbor_format: bool, bytes: &[u8]) {
            let mut i = 0;
            $(
                if i == index {
                    if cbor_format { cbor::<p::$t>(bytes) } else { json::<p::$t>(bytes) }
                    return;
                }
                i += 1;
            )*
            let _ = i;
        }
    };
}

types!(
    CheckIn,
    CheckInAnswer,
    StepReport,
    DeviceSelf,
    InstalledComponent,
    BootStatus,
    Action,
    PayloadOffer,
    DeltaOffer,
    UpdateOffer,
    PushInfo,
    Step,
    Outcome,
    Role,
    TokenCreate,
    TokenInfo,
    KeyCreate,
    KeyInfo,
    ReleaseComponent,
    ReleasePayload,
    ReleaseInfo,
    ReleaseDelta,
    DeviceCreate,
    DeviceCreated,
    StepStatus,
    UpdateStatus,
    DeviceInfo,
    DevicePatch,
    Filter,
    GroupCreate,
    GroupInfo,
    WaveSize,
    OnError,
    Window,
    CampaignCreate,
    CampaignState,
    WaveProgress,
    CampaignInfo,
    CampaignMember,
    DeviceList,
    AuditEntry,
    ApiError,
    // Added after the first seeds: appended, so that existing seeds keep their type.
    CampaignDryRun,
    DryRunDevice,
);

/// The fuzz target: `[selector] [document]`; selector bit 7 picks CBOR, the rest the type.
pub fn run(data: &[u8]) {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    decode(
        usize::from(sel & 0x7F) % TYPES.len(),
        sel & 0x80 != 0,
        bytes,
    );
}
