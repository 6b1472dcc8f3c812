//! A structured account of an envelope, shared by `manifest inspect` (human and JSON) and the
//! other commands that show what a manifest says.

use serde_json::{Map, Value, json};
use suitcase_manifest::{
    Command, CommandSequence, ComponentId, DigestAlgorithm, Envelope, IndexArg, Manifest,
    Parameter, Severable, SuitDigest, TextEntry, codepoints,
};

/// Describes everything in an envelope. The manifest is parsed without authentication and the
/// description says so.
pub(crate) fn envelope(bytes: &[u8]) -> Value {
    let mut out = Map::new();
    out.insert("envelope_bytes".into(), json!(bytes.len()));
    let env = match Envelope::decode(bytes) {
        Ok(env) => env,
        Err(e) => {
            out.insert(
                "error".into(),
                json!({"reason": e.reason().code(), "detail": e.to_string()}),
            );
            return Value::Object(out);
        }
    };
    let mut digest_ok = None;
    match env.authentication() {
        Ok(auth) => {
            let computed = env.manifest_digest(auth.digest.algorithm);
            digest_ok = Some(auth.digest.matches_value(&computed));
            out.insert("manifest_digest".into(), digest(&auth.digest));
            out.insert("digest_matches_manifest".into(), json!(digest_ok));
            let blocks: Vec<Value> = auth
                .blocks()
                .map(|b| {
                    let signers: Vec<Value> = b
                        .signers()
                        .map(|s| {
                            json!({
                                "algorithm": s.headers.alg,
                                "algorithm_name": s.headers.alg.map(algorithm_name),
                                "kid": s.headers.kid.map(printable),
                                "x5chain": s.headers.x5chain.is_some(),
                                "signature_bytes": s.signature.len(),
                            })
                        })
                        .collect();
                    json!({"structure": block_name(b.kind), "signers": signers})
                })
                .collect();
            out.insert("authentication".into(), json!(blocks));
        }
        Err(e) => {
            out.insert("authentication_error".into(), json!(e.to_string()));
        }
    }
    let _ = digest_ok;
    out.insert("verified".into(), json!(false));
    match Manifest::decode_unauthenticated(env.manifest_bytes()) {
        Ok(m) => {
            out.insert("manifest".into(), manifest(&m, &env));
        }
        Err(e) => {
            out.insert(
                "manifest_error".into(),
                json!({"reason": e.reason().code(), "detail": e.to_string()}),
            );
        }
    }
    let payloads: Vec<Value> = env
        .integrated_payloads()
        .map(|(k, v)| {
            json!({"key": k, "bytes": v.len(), "sha256": hex::encode(DigestAlgorithm::Sha256.digest(v).as_bytes())})
        })
        .collect();
    out.insert("integrated_payloads".into(), json!(payloads));
    Value::Object(out)
}

fn manifest(m: &Manifest<'_>, env: &Envelope<'_>) -> Value {
    let mut out = Map::new();
    out.insert("version".into(), json!(1));
    out.insert("sequence_number".into(), json!(m.sequence_number));
    out.insert("reference_uri".into(), json!(m.reference_uri));
    out.insert(
        "components".into(),
        json!(
            m.components
                .iter()
                .map(|c| component(&c))
                .collect::<Vec<_>>()
        ),
    );
    let deps: Vec<Value> = m
        .dependencies
        .iter()
        .map(|(i, p)| json!({"index": i, "prefix": p.map(|p| component(&p))}))
        .collect();
    out.insert("dependencies".into(), json!(deps));
    out.insert(
        "manifest_component_id".into(),
        json!(m.manifest_component_id.map(|c| component(&c))),
    );
    let mut sections = Map::new();
    let mut plain = |name: &str, s: Option<CommandSequence<'_>>| {
        if let Some(seq) = s {
            sections.insert(name.into(), json!({"commands": commands(&seq)}));
        }
    };
    plain("shared-sequence", m.shared_sequence);
    plain("validate", m.validate);
    plain("load", m.load);
    plain("invoke", m.invoke);
    plain("uninstall", m.uninstall);
    let severable = |key: u64, s: &Option<Severable<'_, CommandSequence<'_>>>| -> Option<Value> {
        Some(match s.as_ref()? {
            Severable::Inline(seq) => json!({"commands": commands(seq)}),
            Severable::Severed(d) => {
                let found = env.member(key);
                let matches = found.map(|(wrapped, _)| d.matches(wrapped));
                let cmds = found
                    .and_then(|(_, content)| CommandSequence::decode(content).ok())
                    .map(|seq| commands(&seq));
                json!({"severed": digest(d), "in_envelope": found.is_some(), "digest_matches": matches, "commands": cmds})
            }
        })
    };
    use codepoints::manifest as k;
    for (name, key, s) in [
        (
            "dependency-resolution",
            k::DEPENDENCY_RESOLUTION,
            &m.dependency_resolution,
        ),
        ("payload-fetch", k::PAYLOAD_FETCH, &m.payload_fetch),
        (
            "candidate-verification",
            k::CANDIDATE_VERIFICATION,
            &m.candidate_verification,
        ),
        ("install", k::INSTALL, &m.install),
    ] {
        if let Some(v) = severable(key, s) {
            sections.insert(name.into(), v);
        }
    }
    out.insert("sections".into(), Value::Object(sections));
    let text = match m.text {
        Some(Severable::Inline(t)) => Some(t),
        Some(Severable::Severed(_)) => env
            .member(k::TEXT)
            .and_then(|(_, content)| suitcase_manifest::Text::decode(content).ok()),
        None => None,
    };
    if let Some(t) = text {
        let entries: Vec<Value> = t
            .entries()
            .map(|e| match e {
                TextEntry::Manifest { language, key, text } => {
                    json!({"language": language, "field": text_field(key, false), "text": text})
                }
                TextEntry::Component { language, component: c, key, text } => {
                    json!({"language": language, "component": component(&c), "field": text_field(key, true), "text": text})
                }
            })
            .collect();
        out.insert("text".into(), json!(entries));
    } else if let Some(Severable::Severed(d)) = m.text {
        out.insert(
            "text".into(),
            json!({"severed": digest(&d), "in_envelope": false}),
        );
    }
    Value::Object(out)
}

/// A component id as a list of hex segments, as the device profile writes them.
pub(crate) fn component(c: &ComponentId<'_>) -> Value {
    json!(c.segments().map(hex::encode).collect::<Vec<_>>())
}

fn digest(d: &SuitDigest<'_>) -> Value {
    json!({"algorithm": d.algorithm.name(), "hex": hex::encode(d.bytes)})
}

fn printable(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if s.chars().all(|c| c.is_ascii_graphic() || c == ' ') => s.to_owned(),
        _ => format!("h'{}'", hex::encode(b)),
    }
}

pub(crate) fn commands(seq: &CommandSequence<'_>) -> Vec<Value> {
    seq.iter().map(|(offset, c)| command(offset, &c)).collect()
}

fn command(offset: usize, c: &Command<'_>) -> Value {
    let mut obj = Map::new();
    obj.insert("offset".into(), json!(offset));
    obj.insert("id".into(), json!(c.id()));
    obj.insert("command".into(), json!(c.name()));
    match c {
        Command::Condition(_, policy) => {
            obj.insert("kind".into(), json!("condition"));
            obj.insert("reporting_policy".into(), json!(policy.0));
        }
        Command::Directive(_, policy) => {
            obj.insert("kind".into(), json!("directive"));
            obj.insert("reporting_policy".into(), json!(policy.0));
        }
        Command::SetComponentIndex(arg) => {
            let idx = match arg {
                IndexArg::One(i) => json!(i),
                IndexArg::All => json!(true),
                IndexArg::List(l) => json!(l.iter().collect::<Vec<_>>()),
            };
            obj.insert("index".into(), idx);
        }
        Command::TryEach(t) => {
            let branches: Vec<Value> = t.branches().map(|b| json!(commands(&b))).collect();
            obj.insert("branches".into(), json!(branches));
            obj.insert("allow_all_fail".into(), json!(t.allow_all_fail));
        }
        Command::RunSequence(s) => {
            obj.insert("sequence".into(), json!(commands(s)));
        }
        Command::OverrideParameters(p) | Command::SetParameters(p) => {
            let params: Map<String, Value> = p
                .iter()
                .map(|p| {
                    (
                        suitcase_manifest::parameter_name(p.key()).to_owned(),
                        parameter(&p),
                    )
                })
                .collect();
            obj.insert("parameters".into(), Value::Object(params));
        }
        Command::OverrideMultiple(mp) => {
            let per: Map<String, Value> = mp
                .iter()
                .map(|(i, p)| {
                    let params: Map<String, Value> = p
                        .iter()
                        .map(|p| {
                            (
                                suitcase_manifest::parameter_name(p.key()).to_owned(),
                                parameter(&p),
                            )
                        })
                        .collect();
                    (i.to_string(), Value::Object(params))
                })
                .collect();
            obj.insert("parameters".into(), Value::Object(per));
        }
        Command::CopyParams(cp) => {
            let pairs: Vec<Value> = cp.iter().map(|(src, key)| json!({"from": src, "parameter": suitcase_manifest::parameter_name(key)})).collect();
            obj.insert("copy".into(), json!(pairs));
        }
        Command::Custom(_, arg) => {
            let a = match arg {
                suitcase_manifest::CustomArg::Bytes(b) => json!(hex::encode(b)),
                suitcase_manifest::CustomArg::Text(t) => json!(t),
                suitcase_manifest::CustomArg::Int(i) => json!(i),
                suitcase_manifest::CustomArg::Nil => Value::Null,
            };
            obj.insert("argument".into(), a);
        }
    }
    Value::Object(obj)
}

fn parameter(p: &Parameter<'_>) -> Value {
    match p {
        Parameter::VendorIdentifier(id) => match id {
            suitcase_manifest::Identifier::Uuid(b) => json!(uuid_text(b)),
            suitcase_manifest::Identifier::Pen(b) => json!({"cbor-pen": hex::encode(b)}),
        },
        Parameter::ClassIdentifier(b) | Parameter::DeviceIdentifier(b) => json!(uuid_text(b)),
        Parameter::ImageDigest(d) => digest(d),
        Parameter::UseBefore(v)
        | Parameter::ComponentSlot(v)
        | Parameter::ImageSize(v)
        | Parameter::SourceComponent(v)
        | Parameter::DeltaBase(v)
        | Parameter::MinimumBattery(v) => json!(v),
        Parameter::StrictOrder(b) | Parameter::SoftFailure(b) => json!(b),
        Parameter::Content(b) | Parameter::InvokeArgs(b) | Parameter::FetchArguments(b) => {
            json!(printable(b))
        }
        Parameter::EncryptionInfo(b) => {
            match suitcase_manifest::encryption::EncryptionInfo::decode(b) {
                Ok(info) => {
                    let recipients: Vec<Value> = info
                        .recipients()
                        .map(|r| json!({"algorithm": r.headers.alg, "algorithm_name": r.headers.alg.map(algorithm_name), "kid": r.headers.kid.map(printable)}))
                        .collect();
                    json!({"algorithm": info.algorithm(), "algorithm_name": info.algorithm().map(algorithm_name), "recipients": recipients})
                }
                Err(e) => json!({"error": e.to_string()}),
            }
        }
        Parameter::Uri(u) => json!(u),
        Parameter::UpdatePriority(v) => json!(v),
        Parameter::Version(v) => {
            let cmp = ["", ">", ">=", "==", "<=", "<"]
                .get(usize::try_from(v.comparison).unwrap_or(0))
                .copied()
                .unwrap_or("?");
            json!({"comparison": cmp, "version": v.version().collect::<Vec<_>>()})
        }
        Parameter::WaitInfo(b) | Parameter::ComponentMetadata(b) => json!(crate::diag::render(b)),
    }
}

fn uuid_text(b: &[u8]) -> String {
    <[u8; 16]>::try_from(b).map_or_else(|_| hex::encode(b), |u| suitcase_host::uuid::to_string(&u))
}

fn block_name(kind: suitcase_manifest::BlockKind) -> &'static str {
    match kind {
        suitcase_manifest::BlockKind::Sign1 => "COSE_Sign1",
        suitcase_manifest::BlockKind::Sign => "COSE_Sign",
        suitcase_manifest::BlockKind::Mac0 => "COSE_Mac0",
        suitcase_manifest::BlockKind::Mac => "COSE_Mac",
    }
}

/// A readable name for a COSE algorithm id.
pub(crate) fn algorithm_name(id: i64) -> &'static str {
    use codepoints::alg;
    match id {
        alg::ES256 => "ES256",
        alg::ESP256 => "ESP256",
        alg::EDDSA => "EdDSA",
        alg::ED25519 => "Ed25519",
        alg::HSS_LMS => "HSS-LMS",
        alg::ML_DSA_44 => "ML-DSA-44",
        alg::ML_DSA_65 => "ML-DSA-65",
        alg::ML_DSA_87 => "ML-DSA-87",
        alg::HMAC_256 => "HMAC-256",
        alg::A128KW => "A128KW",
        alg::A192KW => "A192KW",
        alg::A256KW => "A256KW",
        alg::ECDH_ES_A128KW => "ECDH-ES+A128KW",
        alg::ECDH_ES_A192KW => "ECDH-ES+A192KW",
        alg::ECDH_ES_A256KW => "ECDH-ES+A256KW",
        alg::A128GCM => "A128GCM",
        alg::A192GCM => "A192GCM",
        alg::A256GCM => "A256GCM",
        alg::CHACHA20_POLY1305 => "ChaCha20/Poly1305",
        alg::A128CTR => "A128CTR",
        alg::A192CTR => "A192CTR",
        alg::A256CTR => "A256CTR",
        _ => "unknown",
    }
}

fn text_field(key: i64, component: bool) -> String {
    use codepoints::text as t;
    let name = if component {
        match key {
            t::VENDOR_NAME => "vendor-name",
            t::MODEL_NAME => "model-name",
            t::VENDOR_DOMAIN => "vendor-domain",
            t::MODEL_INFO => "model-info",
            t::COMPONENT_DESCRIPTION => "component-description",
            t::COMPONENT_VERSION => "component-version",
            t::VERSION_REQUIRED => "version-required",
            t::CURRENT_VERSION => "current-version",
            _ => "",
        }
    } else {
        match key {
            t::MANIFEST_DESCRIPTION => "manifest-description",
            t::UPDATE_DESCRIPTION => "update-description",
            t::MANIFEST_JSON_SOURCE => "manifest-json-source",
            t::MANIFEST_YAML_SOURCE => "manifest-yaml-source",
            _ => "",
        }
    };
    if name.is_empty() {
        key.to_string()
    } else {
        name.to_owned()
    }
}
