//! Signing with keys that never leave a PKCS#11 token (an HSM, a smart card, SoftHSM2).
//!
//! Keys are named by RFC 7512 URIs:
//!
//! ```text
//! pkcs11:token=suitcase;object=author?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/run/secrets/pin
//! ```
//!
//! | attribute | where | meaning |
//! |---|---|---|
//! | `token` | path | the token label (CKA_LABEL of the token, `softhsm2-util --init-token --label`) |
//! | `object` | path | the key's CKA_LABEL |
//! | `id` | path | the key's CKA_ID, percent-encoded bytes (`id=%01%a2`) |
//! | `serial`, `manufacturer`, `model` | path | narrow the token down when labels repeat |
//! | `type` | path | `private` (or absent): suitcase signs with the private key of the pair |
//! | `module-path` | query | the PKCS#11 module (shared library) to load; required |
//! | `pin-source` | query | a file holding the user PIN (`file:` URI or a path; one trailing newline is dropped) |
//! | `pin-value` | query | the PIN itself (it then shows in `ps` and shell history: prefer `pin-source`) |
//!
//! Values are percent-decoded (RFC 7512 §2.3). An attribute suitcase does not know, or one that
//! appears twice, is an error rather than something silently ignored: a typo in `objcet=` must not
//! pick another key.
//!
//! What happens at signing time:
//!
//! 1. load the module with `cryptoki` (through `libloading`: no C toolchain, any vendor's
//!    module) and initialise it once per process (PKCS#11 v2.40 base, "General-purpose functions", C_Initialize);
//! 2. find the one token whose label (and serial, …) match, log in as the user with the PIN;
//! 3. find exactly one private key and the public key with the same label/id; read the public
//!    key (CKA_EC_PARAMS, CKA_EC_POINT) and check the curve;
//! 4. check that the token offers the mechanism (CKM_ECDSA for ES256, CKM_EDDSA for Ed25519);
//! 5. sign: ES256 is CKM_ECDSA over SHA-256 of the COSE Sig_structure, computed here (the token
//!    returns `r‖s`, PKCS#11 v2.40 Current Mechanisms "EC Signatures", which is COSE's form, RFC 9053
//!    §2.1); Ed25519 is CKM_EDDSA without parameters, i.e. pure Ed25519 (PKCS#11 v3.0 Current
//!    Mechanisms, "Elliptic Curve", "EdDSA": no parameter selects Ed25519), over the Sig_structure itself;
//! 6. verify the signature with the public key before returning it
//!    ([`crate::signer::verify_raw`]): a token that signed with another key, or garbled the
//!    output, fails here rather than on every device.
//!
//! `suitcase key generate --pkcs11` makes the pair on the token with the private key
//! CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE true and CKA_EXTRACTABLE false (PKCS#11 v2.40 base, "Private key objects":
//! a sensitive key's value cannot be revealed, an unextractable one cannot be wrapped out; a
//! token never lets either be turned back on), and the public key's CKA_ID set to the kid
//! unless the URI gives one.

use std::path::PathBuf;
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use sha2::Digest as _;
use zeroize::Zeroizing;

use crate::error::{AuthorError, Result};
use crate::keys::PublicKey;
use crate::signer::Signer;

/// DER of the P-256 curve's OID (1.2.840.10045.3.1.7, RFC 5480 §2.1.1.1): CKA_EC_PARAMS.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the Ed25519 OID (1.3.101.112, RFC 8410 §3): CKA_EC_PARAMS of an Edwards key.
const ED25519_OID_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER PrintableString "edwards25519", the other CKA_EC_PARAMS PKCS#11 v3.0 allows for it.
const ED25519_NAME_PARAMS: &[u8] = b"\x13\x0cedwards25519";

/// The algorithms suitcase signs with on a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAlg {
    /// ECDSA P-256 with SHA-256 (COSE ESP256), through CKM_ECDSA.
    Es256,
    /// Ed25519 (COSE Ed25519), through CKM_EDDSA.
    Ed25519,
}

impl TokenAlg {
    /// Parses `es256` or `ed25519`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "es256" => Some(Self::Es256),
            "ed25519" => Some(Self::Ed25519),
            _ => None,
        }
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "es256",
            Self::Ed25519 => "ed25519",
        }
    }

    fn mechanism(self) -> MechanismType {
        match self {
            Self::Es256 => MechanismType::ECDSA,
            Self::Ed25519 => MechanismType::EDDSA,
        }
    }

    fn mechanism_name(self) -> &'static str {
        match self {
            Self::Es256 => "CKM_ECDSA",
            Self::Ed25519 => "CKM_EDDSA",
        }
    }
}

/// Where the PIN comes from.
#[derive(Clone)]
enum Pin {
    /// `pin-source`: a file.
    Source(PathBuf),
    /// `pin-value`: the PIN itself.
    Value(Zeroizing<String>),
}

/// A parsed `pkcs11:` URI (RFC 7512).
#[derive(Clone)]
pub struct Pkcs11Uri {
    /// The URI as given, with any PIN value hidden (for messages).
    pub shown: String,
    /// `token`: the token label.
    pub token: Option<String>,
    /// `object`: the key label (CKA_LABEL).
    pub object: Option<String>,
    /// `id`: the key id (CKA_ID).
    pub id: Option<Vec<u8>>,
    /// `serial`: the token serial number.
    pub serial: Option<String>,
    /// `manufacturer`: the token manufacturer.
    pub manufacturer: Option<String>,
    /// `model`: the token model.
    pub model: Option<String>,
    /// `module-path`: the PKCS#11 module to load.
    pub module_path: Option<PathBuf>,
    pin: Option<Pin>,
}

impl core::fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// The URI with any `pin-value` replaced, for messages and logs. A `pin-value` misplaced in
/// the path (which [`Pkcs11Uri::parse`] refuses, quoting the URI) is hidden too.
pub fn redact(uri: &str) -> String {
    let hide = |attributes: &str, separator: &str| -> String {
        attributes
            .split(separator)
            .map(|a| {
                if a.starts_with("pin-value=") {
                    "pin-value=(hidden)"
                } else {
                    a
                }
            })
            .collect::<Vec<_>>()
            .join(separator)
    };
    match uri.split_once('?') {
        Some((path, query)) => format!("{}?{}", hide(path, ";"), hide(query, "&")),
        None => hide(uri, ";"),
    }
}

fn uri_err(uri: &str, what: impl Into<String>) -> AuthorError {
    AuthorError::Pkcs11 {
        uri: redact(uri),
        what: what.into(),
    }
}

/// Percent-decodes an attribute value (RFC 7512 §2.3: values are `pk11-pchar`s or
/// `pct-encoded`, RFC 3986 §2.1).
fn percent_decode(value: &str) -> Option<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

impl Pkcs11Uri {
    /// Parses a URI.
    ///
    /// # Errors
    /// [`AuthorError::Pkcs11`] naming the attribute that is unknown, repeated, badly encoded or
    /// missing, with the fix.
    pub fn parse(uri: &str) -> Result<Self> {
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| uri_err(uri, "a PKCS#11 URI starts with `pkcs11:`"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut parsed = Self {
            shown: redact(uri),
            token: None,
            object: None,
            id: None,
            serial: None,
            manufacturer: None,
            model: None,
            module_path: None,
            pin: None,
        };
        // RFC 7512 §2.3: path attributes are separated by `;`, query attributes by `&`.
        let attributes = path
            .split(';')
            .map(|a| (a, true))
            .chain(query.split('&').map(|a| (a, false)))
            .filter(|(a, _)| !a.is_empty());
        let mut seen: Vec<String> = Vec::new();
        for (attribute, in_path) in attributes {
            let (name, raw) = attribute
                .split_once('=')
                .ok_or_else(|| uri_err(uri, format!("attribute {attribute:?} has no `=value`")))?;
            // RFC 7512 §2.3: an attribute may appear at most once in a URI.
            if seen.iter().any(|s| s == name) {
                return Err(uri_err(
                    uri,
                    format!("attribute `{name}` appears twice; give it once"),
                ));
            }
            seen.push(name.to_owned());
            let bytes = percent_decode(raw).ok_or_else(|| {
                uri_err(
                    uri,
                    format!(
                        "attribute `{name}`: a `%` must be followed by two hex digits \
                         (RFC 7512 §2.3 percent-encoding, e.g. %20 for a space)"
                    ),
                )
            })?;
            let text = || {
                String::from_utf8(bytes.clone()).map_err(|_| {
                    uri_err(uri, format!("attribute `{name}` is not UTF-8 once decoded"))
                })
            };
            match (name, in_path) {
                ("token", true) => parsed.token = Some(text()?),
                ("object", true) => parsed.object = Some(text()?),
                ("id", true) => parsed.id = Some(bytes.clone()),
                ("serial", true) => parsed.serial = Some(text()?),
                ("manufacturer", true) => parsed.manufacturer = Some(text()?),
                ("model", true) => parsed.model = Some(text()?),
                ("type", true) => {
                    let t = text()?;
                    if t != "private" {
                        return Err(uri_err(
                            uri,
                            format!(
                                "type={t}: suitcase signs with the private key of a pair; \
                                 use type=private or leave type out"
                            ),
                        ));
                    }
                }
                ("module-path", false) => parsed.module_path = Some(PathBuf::from(text()?)),
                ("pin-source", false) => {
                    let t = text()?;
                    let path = match t.strip_prefix("file://") {
                        Some(p) => p.to_owned(),
                        None if t.contains("://") || t.starts_with('|') => {
                            return Err(uri_err(
                                uri,
                                format!(
                                    "pin-source={t}: give a file (a path or a file:/// URI) \
                                     holding the PIN"
                                ),
                            ));
                        }
                        None => t,
                    };
                    parsed.pin = Some(Pin::Source(PathBuf::from(path)));
                }
                ("pin-value", false) => parsed.pin = Some(Pin::Value(Zeroizing::new(text()?))),
                (
                    "token" | "object" | "id" | "serial" | "manufacturer" | "model" | "type",
                    false,
                ) => {
                    return Err(uri_err(
                        uri,
                        format!("`{name}` belongs in the path (before `?`, separated by `;`)"),
                    ));
                }
                ("module-path" | "pin-source" | "pin-value", true) => {
                    return Err(uri_err(
                        uri,
                        format!("`{name}` belongs in the query (after `?`, separated by `&`)"),
                    ));
                }
                _ => {
                    return Err(uri_err(
                        uri,
                        format!(
                            "unknown attribute `{name}`: suitcase reads token, object, id, \
                             serial, manufacturer, model, type (path) and module-path, \
                             pin-source, pin-value (query)"
                        ),
                    ));
                }
            }
        }
        if parsed.token.is_none() {
            return Err(uri_err(
                uri,
                "missing `token=LABEL`: name the token (`softhsm2-util --show-slots` or \
                 `pkcs11-tool --list-slots` lists the labels)",
            ));
        }
        if parsed.object.is_none() && parsed.id.is_none() {
            return Err(uri_err(
                uri,
                "missing `object=LABEL` (or `id=%..`): name the key on the token",
            ));
        }
        if parsed.module_path.is_none() {
            return Err(uri_err(
                uri,
                "missing `?module-path=`: give the PKCS#11 module to load, e.g. \
                 module-path=/usr/lib/softhsm/libsofthsm2.so for SoftHSM2",
            ));
        }
        Ok(parsed)
    }

    fn pin(&self) -> Result<Zeroizing<String>> {
        let pin = match &self.pin {
            Some(Pin::Value(v)) => v.clone(),
            Some(Pin::Source(path)) => {
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    uri_err(
                        &self.shown,
                        format!(
                            "cannot read the PIN from pin-source {}: {e}",
                            path.display()
                        ),
                    )
                })?);
                let trimmed = text.strip_suffix('\n').unwrap_or(&text);
                Zeroizing::new(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
            }
            None => {
                return Err(uri_err(
                    &self.shown,
                    "the token needs the user PIN: add `&pin-source=/path/to/pin-file` \
                     (or `&pin-value=...`) to the URI",
                ));
            }
        };
        Ok(pin)
    }

    /// The template that finds the key objects of class `class`.
    fn template(&self, class: ObjectClass) -> Vec<Attribute> {
        let mut t = vec![Attribute::Class(class)];
        if let Some(label) = &self.object {
            t.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &self.id {
            t.push(Attribute::Id(id.clone()));
        }
        t
    }

    fn key_name(&self) -> String {
        match (&self.object, &self.id) {
            (Some(o), Some(id)) => format!("object={o};id={}", hex::encode(id)),
            (Some(o), None) => format!("object={o}"),
            (None, Some(id)) => format!("id={}", hex::encode(id)),
            (None, None) => "(no object)".into(),
        }
    }
}

/// Loaded modules, one per path: C_Initialize once per process (PKCS#11 v2.40 base, C_Initialize: a second
/// call returns CKR_CRYPTOKI_ALREADY_INITIALIZED), and never C_Finalize while a signer may
/// still use a session.
static MODULES: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());

fn module(uri: &Pkcs11Uri) -> Result<Pkcs11> {
    let path = uri.module_path.clone().unwrap_or_default();
    let mut modules = MODULES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, m)) = modules.iter().find(|(p, _)| *p == path) {
        return Ok(m.clone());
    }
    if !path.exists() {
        return Err(uri_err(
            &uri.shown,
            format!(
                "module-path {} does not exist: fix module-path (Debian's SoftHSM2 module is \
                 /usr/lib/softhsm/libsofthsm2.so, from the softhsm2 package)",
                path.display()
            ),
        ));
    }
    let ctx = Pkcs11::new(&path).map_err(|e| {
        uri_err(
            &uri.shown,
            format!(
                "cannot load {} as a PKCS#11 module ({e}): module-path must name the vendor's \
                 PKCS#11 shared library",
                path.display()
            ),
        )
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(uri_err(
                &uri.shown,
                format!(
                    "the module would not initialise (C_Initialize: {e}); check its configuration (SoftHSM2: SOFTHSM2_CONF)"
                ),
            ));
        }
    }
    modules.push((path, ctx.clone()));
    Ok(ctx)
}

fn ck(uri: &Pkcs11Uri, what: &str) -> impl Fn(CkError) -> AuthorError {
    let shown = uri.shown.clone();
    let what = what.to_owned();
    move |e| uri_err(&shown, format!("{what}: {e}"))
}

/// The one slot whose token matches the URI.
fn find_slot(ctx: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(ck(uri, "listing the slots (C_GetSlotList)"))?;
    let mut labels = Vec::new();
    let mut found = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        let label = info.label().trim_end().to_owned();
        let matches = uri.token.as_deref() == Some(label.as_str())
            && uri
                .serial
                .as_deref()
                .is_none_or(|s| s == info.serial_number().trim_end())
            && uri
                .manufacturer
                .as_deref()
                .is_none_or(|m| m == info.manufacturer_id().trim_end())
            && uri
                .model
                .as_deref()
                .is_none_or(|m| m == info.model().trim_end());
        if matches {
            found.push(slot);
        }
        // SoftHSM2 always shows one free, uninitialised token with an empty label.
        if !label.is_empty() {
            labels.push(label);
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(uri_err(
            &uri.shown,
            format!(
                "no token labelled {:?} in this module (tokens: {}): fix token=, or create it \
                 (SoftHSM2: softhsm2-util --init-token --free --label ...)",
                uri.token.as_deref().unwrap_or_default(),
                if labels.is_empty() {
                    "none".to_owned()
                } else {
                    labels.join(", ")
                }
            ),
        )),
        _ => Err(uri_err(
            &uri.shown,
            "several tokens match: add serial= to the URI to pick one",
        )),
    }
}

/// Opens a session on the URI's token and logs the user in.
fn session(uri: &Pkcs11Uri, read_write: bool) -> Result<(Pkcs11, Slot, Session)> {
    let ctx = module(uri)?;
    let slot = find_slot(&ctx, uri)?;
    let session = if read_write {
        ctx.open_rw_session(slot)
    } else {
        ctx.open_ro_session(slot)
    }
    .map_err(ck(uri, "opening a session (C_OpenSession)"))?;
    let pin = AuthPin::from(uri.pin()?.as_str());
    match session.login(UserType::User, Some(&pin)) {
        // Login state is shared by every session of the application (PKCS#11 v2.40 base, "Session management functions", C_Login).
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
            return Err(uri_err(
                &uri.shown,
                "wrong PIN (C_Login: CKR_PIN_INCORRECT): fix the PIN in pin-source/pin-value; \
                 tokens lock the PIN after a few failures",
            ));
        }
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
            return Err(uri_err(
                &uri.shown,
                "the user PIN is locked (CKR_PIN_LOCKED): the security officer must reset it",
            ));
        }
        Err(CkError::Pkcs11(RvError::PinLenRange, _)) => {
            return Err(uri_err(
                &uri.shown,
                "wrong PIN: the token refuses a PIN of this length (CKR_PIN_LEN_RANGE); fix \
                 pin-source/pin-value",
            ));
        }
        Err(e) => return Err(ck(uri, "logging in (C_Login)")(e)),
    }
    Ok((ctx, slot, session))
}

/// Exactly one object of `class` matching the URI.
fn find_one(
    session: &Session,
    uri: &Pkcs11Uri,
    class: ObjectClass,
) -> Result<Option<ObjectHandle>> {
    let found = session
        .find_objects(&uri.template(class))
        .map_err(ck(uri, "searching the token (C_FindObjects)"))?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(uri_err(
            &uri.shown,
            format!(
                "{} objects match {}: add id= to the URI to pick one",
                found.len(),
                uri.key_name()
            ),
        )),
    }
}

/// Strips the DER OCTET STRING that PKCS#11 puts around CKA_EC_POINT (v2.40 Current Mechanisms, "ECDSA public key objects":
/// "DER-encoding of ANSI X9.62 ECPoint value Q"); also accepts a bare point, which some
/// modules return.
fn ec_point(raw: &[u8], len: usize) -> Option<&[u8]> {
    match raw {
        [0x04, n, rest @ ..] if usize::from(*n) == len && rest.len() == len => Some(rest),
        bare if bare.len() == len => Some(bare),
        _ => None,
    }
}

/// The public key and algorithm of the public key object `handle`.
fn read_public(
    session: &Session,
    uri: &Pkcs11Uri,
    handle: ObjectHandle,
) -> Result<(TokenAlg, PublicKey)> {
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::EcPoint,
            ],
        )
        .map_err(ck(uri, "reading the public key (C_GetAttributeValue)"))?;
    let (mut key_type, mut params, mut point) = (None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(k) => key_type = Some(k),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let bad = |what: &str| {
        uri_err(
            &uri.shown,
            format!(
                "{}: {what}; suitcase signs with P-256 (es256) or Ed25519 keys",
                uri.key_name()
            ),
        )
    };
    let (params, point) = params
        .zip(point)
        .ok_or_else(|| bad("not an elliptic-curve key"))?;
    match key_type {
        Some(KeyType::EC) if params == P256_PARAMS => {
            let sec1 = ec_point(&point, 65).ok_or_else(|| bad("bad CKA_EC_POINT"))?;
            let key = p256::PublicKey::from_sec1_bytes(sec1)
                .map_err(|_| bad("CKA_EC_POINT is not a P-256 point"))?;
            Ok((TokenAlg::Es256, PublicKey::P256(key)))
        }
        Some(KeyType::EC_EDWARDS)
            if params == ED25519_OID_PARAMS || params == ED25519_NAME_PARAMS =>
        {
            let raw: [u8; 32] = ec_point(&point, 32)
                .and_then(|p| p.try_into().ok())
                .ok_or_else(|| bad("bad CKA_EC_POINT"))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&raw)
                .map_err(|_| bad("CKA_EC_POINT is not an Ed25519 key"))?;
            Ok((TokenAlg::Ed25519, PublicKey::Ed25519(key)))
        }
        Some(KeyType::EC | KeyType::EC_EDWARDS) => Err(bad("the key is on another curve")),
        _ => Err(bad("not an elliptic-curve key")),
    }
}

fn mechanisms(ctx: &Pkcs11, slot: Slot, uri: &Pkcs11Uri) -> Result<Vec<MechanismType>> {
    ctx.get_mechanism_list(slot)
        .map_err(ck(uri, "listing the mechanisms (C_GetMechanismList)"))
}

/// Checks that `list` (the token's [`mechanisms`]) holds the signing mechanism of `alg`.
fn require_mechanism(
    list: &[MechanismType],
    uri: &Pkcs11Uri,
    alg: TokenAlg,
    for_what: &str,
) -> Result<()> {
    if list.contains(&alg.mechanism()) {
        return Ok(());
    }
    let instead = match alg {
        TokenAlg::Es256 => "use a token that has it",
        TokenAlg::Ed25519 => {
            "use --alg es256 (CKM_ECDSA) keys on this token, or a token that has it"
        }
    };
    Err(uri_err(
        &uri.shown,
        format!(
            "the token does not offer {} (needed to {for_what} {} keys): {instead}",
            alg.mechanism_name(),
            alg.name(),
        ),
    ))
}

/// A key on a PKCS#11 token, ready to sign.
pub struct Pkcs11Signer {
    // Dropped first: the session closes while the module is still loaded.
    session: Session,
    key: ObjectHandle,
    alg: TokenAlg,
    public: PublicKey,
    uri: String,
}

impl core::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("uri", &self.uri)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    /// Opens the key a `pkcs11:` URI names: loads the module, logs in, finds the key pair and
    /// checks the mechanism.
    ///
    /// # Errors
    /// [`AuthorError::Pkcs11`] naming what to fix: the URI, the module path, the token label, the
    /// PIN, the object, the key type or the mechanism.
    pub fn open(uri: &str) -> Result<Self> {
        let uri = Pkcs11Uri::parse(uri)?;
        let (ctx, slot, session) = session(&uri, false)?;
        let key = find_one(&session, &uri, ObjectClass::PRIVATE_KEY)?.ok_or_else(|| {
            uri_err(
                &uri.shown,
                format!(
                    "no private key {} on token {:?}: fix object=/id=, or create it with \
                     `suitcase key generate --pkcs11 URI --alg es256 --public KEY.pub`",
                    uri.key_name(),
                    uri.token.as_deref().unwrap_or_default()
                ),
            )
        })?;
        let public = find_one(&session, &uri, ObjectClass::PUBLIC_KEY)?.ok_or_else(|| {
            uri_err(
                &uri.shown,
                format!(
                    "no public key {} next to the private key: suitcase checks every signature \
                     with it before using it; import the public key with the same label and id",
                    uri.key_name()
                ),
            )
        })?;
        let (alg, public) = read_public(&session, &uri, public)?;
        require_mechanism(&mechanisms(&ctx, slot, &uri)?, &uri, alg, "sign with")?;
        Ok(Self {
            session,
            key,
            alg,
            public,
            uri: uri.shown,
        })
    }
}

impl Signer for Pkcs11Signer {
    fn name(&self) -> String {
        self.uri.clone()
    }

    fn cose_alg(&self) -> i64 {
        use suitcase_manifest::codepoints::alg;
        match self.alg {
            TokenAlg::Es256 => alg::ESP256,
            TokenAlg::Ed25519 => alg::ED25519,
        }
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, to_be_signed: &[u8]) -> Result<Vec<u8>> {
        let err = |e: CkError| AuthorError::Pkcs11 {
            uri: self.uri.clone(),
            what: format!("the token would not sign (C_Sign: {e})"),
        };
        let signature = match self.alg {
            TokenAlg::Es256 => {
                // RFC 9053 §2.1: ES256 signs SHA-256 of the Sig_structure. CKM_ECDSA signs the
                // hash it is given (PKCS#11 v2.40 Current Mechanisms, "ECDSA without hashing"), so hash here.
                let digest = sha2::Sha256::digest(to_be_signed);
                let raw = self
                    .session
                    .sign(&Mechanism::Ecdsa, self.key, &digest)
                    .map_err(err)?;
                fixed_r_s(&raw).ok_or_else(|| AuthorError::Pkcs11 {
                    uri: self.uri.clone(),
                    what: format!(
                        "the token returned a {}-byte ECDSA signature; PKCS#11 (v2.40 Current \
                         Mechanisms, \"EC Signatures\") gives r||s, 64 bytes for P-256",
                        raw.len()
                    ),
                })?
            }
            TokenAlg::Ed25519 => self
                .session
                .sign(
                    &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                    self.key,
                    to_be_signed,
                )
                .map_err(err)?,
        };
        // Check before release: a signature that does not verify must never reach a device.
        crate::signer::verify_raw(&self.public, to_be_signed, &signature).map_err(|_| {
            AuthorError::Pkcs11 {
                uri: self.uri.clone(),
                what: "the token's signature does not verify with the key's public key object \
                       (are the private and public objects from the same pair?); nothing was \
                       signed"
                    .into(),
            }
        })?;
        Ok(signature)
    }
}

/// PKCS#11 v2.40 Current Mechanisms, "EC Signatures": an ECDSA signature is `r‖s`, "an octet string of
/// even length which is at most two times nLen octets", its halves r and s. COSE (RFC 9053
/// §2.1) wants each padded to 32 bytes for P-256.
fn fixed_r_s(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || raw.len() > 64 || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut out = vec![0u8; 64];
    out.get_mut(32 - r.len()..32)?.copy_from_slice(r);
    out.get_mut(64 - s.len()..)?.copy_from_slice(s);
    Some(out)
}

/// How well a token protects a private key, read back from the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protection {
    /// CKA_SENSITIVE: the value is never revealed.
    pub sensitive: bool,
    /// CKA_EXTRACTABLE: the key can be wrapped out of the token.
    pub extractable: bool,
    /// CKA_ALWAYS_SENSITIVE: the key was sensitive since it was made.
    pub always_sensitive: bool,
    /// CKA_NEVER_EXTRACTABLE: the key was never extractable.
    pub never_extractable: bool,
    /// Whether asking the token for CKA_VALUE gave the private key (it must not).
    pub value_readable: bool,
}

/// Reads the public key a URI names, and how the token protects its private key.
///
/// # Errors
/// [`AuthorError::Pkcs11`] naming what to fix.
pub fn public_key(uri: &str) -> Result<(TokenAlg, PublicKey, Protection)> {
    let uri = Pkcs11Uri::parse(uri)?;
    let (_ctx, _slot, session) = session(&uri, false)?;
    let public = find_one(&session, &uri, ObjectClass::PUBLIC_KEY)?.ok_or_else(|| {
        uri_err(
            &uri.shown,
            format!(
                "no public key {} on token {:?}: fix object=/id=",
                uri.key_name(),
                uri.token.as_deref().unwrap_or_default()
            ),
        )
    })?;
    let (alg, key) = read_public(&session, &uri, public)?;
    let private = find_one(&session, &uri, ObjectClass::PRIVATE_KEY)?.ok_or_else(|| {
        uri_err(
            &uri.shown,
            format!("no private key {} next to the public key", uri.key_name()),
        )
    })?;
    Ok((alg, key, protection(&session, &uri, private)?))
}

fn protection(session: &Session, uri: &Pkcs11Uri, private: ObjectHandle) -> Result<Protection> {
    let attrs = session
        .get_attributes(
            private,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
            ],
        )
        .map_err(ck(
            uri,
            "reading the private key's attributes (C_GetAttributeValue)",
        ))?;
    // Unknown is reported as the unsafe value.
    let mut p = Protection {
        sensitive: false,
        extractable: true,
        always_sensitive: false,
        never_extractable: false,
        value_readable: true,
    };
    for a in attrs {
        match a {
            Attribute::Sensitive(v) => p.sensitive = v,
            Attribute::Extractable(v) => p.extractable = v,
            Attribute::AlwaysSensitive(v) => p.always_sensitive = v,
            Attribute::NeverExtractable(v) => p.never_extractable = v,
            _ => {}
        }
    }
    // PKCS#11 v2.40 base, C_GetAttributeValue: the value of a sensitive or unextractable key
    // "cannot be revealed", CKR_ATTRIBUTE_SENSITIVE.
    let info = session
        .get_attribute_info(private, &[AttributeType::Value])
        .map_err(ck(uri, "asking for CKA_VALUE (C_GetAttributeValue)"))?;
    p.value_readable = matches!(info.first(), Some(AttributeInfo::Available(_)));
    Ok(p)
}

/// Generates a key pair on the token a URI names (the URI's `object`/`id` label the pair)
/// and returns its public key. The private key never leaves the token: CKA_TOKEN,
/// CKA_PRIVATE and CKA_SENSITIVE true, CKA_EXTRACTABLE false (PKCS#11 v2.40 base, "Private key objects").
///
/// # Errors
/// [`AuthorError::Pkcs11`]: a key with that label already exists, the token lacks the
/// mechanism, or any URI/token error.
pub fn generate(uri: &str, alg: TokenAlg) -> Result<(PublicKey, Protection)> {
    let uri = Pkcs11Uri::parse(uri)?;
    let (ctx, slot, session) = session(&uri, true)?;
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        if !session
            .find_objects(&uri.template(class))
            .map_err(ck(&uri, "searching the token (C_FindObjects)"))?
            .is_empty()
        {
            return Err(uri_err(
                &uri.shown,
                format!(
                    "a key {} already exists on the token: choose another object= label \
                     (suitcase never replaces a key on a token)",
                    uri.key_name()
                ),
            ));
        }
    }
    let (mechanism, mech_type, params) = match alg {
        TokenAlg::Es256 => (
            Mechanism::EccKeyPairGen,
            MechanismType::ECC_KEY_PAIR_GEN,
            P256_PARAMS,
        ),
        TokenAlg::Ed25519 => (
            Mechanism::EccEdwardsKeyPairGen,
            MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
            ED25519_OID_PARAMS,
        ),
    };
    let mechanisms = mechanisms(&ctx, slot, &uri)?;
    require_mechanism(&mechanisms, &uri, alg, "sign with")?;
    if !mechanisms.contains(&mech_type) {
        return Err(uri_err(
            &uri.shown,
            format!(
                "the token cannot generate {} keys ({mech_type} missing)",
                alg.name()
            ),
        ));
    }
    let mut label = Vec::new();
    if let Some(o) = &uri.object {
        label.push(Attribute::Label(o.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        label.push(Attribute::Id(id.clone()));
    }
    let mut public_template = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::EcParams(params.to_vec()),
    ];
    public_template.extend(label.iter().cloned());
    let mut private_template = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ];
    private_template.extend(label);
    let (public, private) = session
        .generate_key_pair(&mechanism, &public_template, &private_template)
        .map_err(ck(&uri, "generating the key pair (C_GenerateKeyPair)"))?;
    let (_, key) = read_public(&session, &uri, public)?;
    if uri.id.is_none() {
        // CKA_ID ties the pair together for other tools (pkcs11-tool, OpenSSL's engines); the
        // kid is the natural value.
        let id = Attribute::Id(key.kid());
        for object in [public, private] {
            session
                .update_attributes(object, std::slice::from_ref(&id))
                .map_err(ck(&uri, "setting CKA_ID (C_SetAttributeValue)"))?;
        }
    }
    let protection = protection(&session, &uri, private)?;
    Ok((key, protection))
}

#[cfg(test)]
mod tests {

    use std::path::Path;

    use super::*;

    const MODULE: &str = "module-path=/usr/lib/softhsm/libsofthsm2.so";

    #[test]
    fn a_full_uri_parses_and_percent_decodes() {
        let uri = Pkcs11Uri::parse(&format!(
            "pkcs11:token=release%20signing;object=author;id=%01%a2?{MODULE}&pin-source=file:///run/pin"
        ))
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("release signing"));
        assert_eq!(uri.object.as_deref(), Some("author"));
        assert_eq!(uri.id.as_deref(), Some(&[0x01, 0xa2][..]));
        assert_eq!(
            uri.module_path.as_deref(),
            Some(Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert!(matches!(&uri.pin, Some(Pin::Source(p)) if p == Path::new("/run/pin")));
    }

    #[test]
    fn a_pin_value_never_shows_in_messages() {
        let text = format!("pkcs11:token=t;object=o?{MODULE}&pin-value=123456");
        let uri = Pkcs11Uri::parse(&text).unwrap();
        assert!(!format!("{uri:?}").contains("123456"));
        assert!(!redact(&text).contains("123456"));
        let err = Pkcs11Uri::parse(&format!(
            "pkcs11:token=t;objcet=o?{MODULE}&pin-value=123456"
        ))
        .unwrap_err()
        .to_string();
        assert!(!err.contains("123456"), "{err}");
        let misplaced = format!("pkcs11:token=t;object=o;pin-value=123456?{MODULE}");
        let err = Pkcs11Uri::parse(&misplaced).unwrap_err().to_string();
        assert!(err.contains("belongs in the query"), "{err}");
        assert!(!err.contains("123456"), "{err}");
        assert!(!redact("pkcs11:token=t;pin-value=123456").contains("123456"));
    }

    #[test]
    fn a_misspelt_attribute_is_refused_not_ignored() {
        let err = Pkcs11Uri::parse(&format!("pkcs11:token=t;objcet=o?{MODULE}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown attribute `objcet`"), "{err}");
    }

    #[test]
    fn a_repeated_attribute_is_refused() {
        let err = Pkcs11Uri::parse(&format!("pkcs11:token=t;object=a;object=b?{MODULE}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("appears twice"), "{err}");
    }

    #[test]
    fn missing_token_object_or_module_each_name_the_fix() {
        let no_token = Pkcs11Uri::parse(&format!("pkcs11:object=o?{MODULE}")).unwrap_err();
        assert!(no_token.to_string().contains("missing `token=LABEL`"));
        let no_object = Pkcs11Uri::parse(&format!("pkcs11:token=t?{MODULE}")).unwrap_err();
        assert!(no_object.to_string().contains("missing `object=LABEL`"));
        let no_module = Pkcs11Uri::parse("pkcs11:token=t;object=o").unwrap_err();
        assert!(
            no_module
                .to_string()
                .contains("module-path=/usr/lib/softhsm")
        );
    }

    #[test]
    fn bad_percent_encoding_is_refused() {
        for bad in ["%", "%4", "%zz", "a%g1"] {
            let err = Pkcs11Uri::parse(&format!("pkcs11:token={bad};object=o?{MODULE}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("two hex digits"), "{bad}: {err}");
        }
    }

    #[test]
    fn attributes_on_the_wrong_side_of_the_query_are_refused() {
        let err = Pkcs11Uri::parse("pkcs11:token=t;object=o;module-path=/x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("belongs in the query"), "{err}");
        let err = Pkcs11Uri::parse(&format!("pkcs11:object=o?{MODULE}&token=t"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("belongs in the path"), "{err}");
    }

    #[test]
    fn a_public_key_type_is_refused_for_signing() {
        let err = Pkcs11Uri::parse(&format!("pkcs11:token=t;object=o;type=public?{MODULE}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("type=private"), "{err}");
    }

    #[test]
    fn a_pin_file_loses_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("pin");
        std::fs::write(&pin, "12 34\n").unwrap();
        let uri = Pkcs11Uri::parse(&format!(
            "pkcs11:token=t;object=o?{MODULE}&pin-source={}",
            pin.display()
        ))
        .unwrap();
        assert_eq!(uri.pin().unwrap().as_str(), "12 34");
    }

    #[test]
    fn ec_points_with_and_without_the_der_wrapper() {
        let mut wrapped = vec![0x04, 65];
        wrapped.extend([7u8; 65]);
        assert_eq!(ec_point(&wrapped, 65), Some(&[7u8; 65][..]));
        assert_eq!(ec_point(&[7u8; 65], 65), Some(&[7u8; 65][..]));
        assert_eq!(ec_point(&wrapped[..60], 65), None);
    }

    #[test]
    fn short_r_and_s_are_padded_and_odd_lengths_refused() {
        let raw: Vec<u8> = (1..=62).collect();
        let fixed = fixed_r_s(&raw).unwrap();
        assert_eq!(fixed.len(), 64);
        assert_eq!(fixed[0], 0);
        assert_eq!(&fixed[1..32], &raw[..31]);
        assert_eq!(fixed[32], 0);
        assert!(fixed_r_s(&[1, 2, 3]).is_none());
        assert!(fixed_r_s(&[0; 66]).is_none());
    }
}
