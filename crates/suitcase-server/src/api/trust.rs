//! The fleet's trust state in force (docs/trust.md, "The server and trust updates"): an admin
//! registers the state the devices were provisioned with (`suitcase trust init`), the server
//! checks every trust update uploaded against it as a device would
//! (`suitcase_trust::TrustState::apply_update`) and advances it when one is stored, and refuses
//! releases signed only by keys it revoked.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use suitcase_manifest::Envelope;
use suitcase_trust::{Key, TrustError, TrustState};

use crate::AppState;
use crate::api::audit;
use crate::auth::{Cap, Manager};
use crate::error::{ApiErr, ApiResult};
use crate::store::TrustRow;

/// The largest trust document a state may be (`suitcase_trust::MAX_DOCUMENT_LEN`), as hex.
const DOCUMENT_HEX_MAX: usize = 2 * suitcase_trust::MAX_DOCUMENT_LEN;

/// A trust state to register: the file `suitcase trust init` (or `--state-out`) wrote.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct TrustStateSet {
    /// The trust document (deterministic CBOR, docs/trust.md "The trust state record"), in
    /// hex.
    #[schema(max_length = 3046)]
    document: String,
}

/// A key of the trust state.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct TrustKey {
    /// The key id: the first 8 bytes of SHA-256 over the public key, in hex.
    kid: String,
    /// `p256` or `ed25519`.
    kind: String,
}

/// A release signer of the trust state.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct TrustSigner {
    /// The key id, in hex.
    kid: String,
    /// `p256` or `ed25519`.
    kind: String,
    /// The encoded component identifier prefix it is limited to, in hex; absent: every
    /// component.
    component: Option<String>,
    /// `install`, `invoke` or `all`.
    actions: String,
}

/// A per-component release threshold.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct TrustRule {
    /// The encoded component identifier prefix, in hex.
    component: String,
    /// Distinct release signers needed.
    threshold: u8,
}

/// The fleet's trust state in force.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct TrustStateInfo {
    /// The trust sequence number.
    sequence: u64,
    /// Distinct root keys a trust update needs.
    root_threshold: u8,
    /// The root keys.
    roots: Vec<TrustKey>,
    /// Distinct release signers a release needs.
    release_threshold: u8,
    /// The release signers.
    signers: Vec<TrustSigner>,
    /// Per-component release thresholds.
    rules: Vec<TrustRule>,
    /// Revoked key ids, in hex.
    revoked: Vec<String>,
    /// Keys whose freshness statements the devices accept.
    freshness_signers: Vec<TrustKey>,
    /// The trust update (a release of kind `trust-update`) that set this state; absent for
    /// the state an admin registered.
    release_id: Option<String>,
    /// The token that registered the first state.
    set_by: String,
    /// When the state was registered or last advanced (seconds since the epoch).
    updated_at: i64,
    /// The trust document, in hex: what `suitcase trust show` reads.
    document: String,
}

fn key(k: &Key) -> TrustKey {
    TrustKey {
        kid: hex::encode(k.id()),
        kind: k.kind().name().to_owned(),
    }
}

fn actions(a: suitcase_manifest::Actions) -> &'static str {
    if a == suitcase_manifest::Actions::ALL {
        "all"
    } else if a == suitcase_manifest::Actions::INVOKE {
        "invoke"
    } else {
        "install"
    }
}

fn info(row: &TrustRow, s: &TrustState) -> TrustStateInfo {
    TrustStateInfo {
        sequence: s.sequence(),
        root_threshold: s.root_threshold(),
        roots: s.roots().iter().map(key).collect(),
        release_threshold: s.release_threshold(),
        signers: s
            .signers()
            .iter()
            .map(|r| TrustSigner {
                kid: hex::encode(r.key.id()),
                kind: r.key.kind().name().to_owned(),
                component: r
                    .component
                    .component()
                    .map(|_| hex::encode(r.component.encoded())),
                actions: actions(r.actions).to_owned(),
            })
            .collect(),
        rules: s
            .rules()
            .iter()
            .map(|r| TrustRule {
                component: hex::encode(r.component.encoded()),
                threshold: r.threshold,
            })
            .collect(),
        revoked: s.revoked().iter().map(hex::encode).collect(),
        freshness_signers: s.freshness_signers().iter().map(key).collect(),
        release_id: row.release_id.clone(),
        set_by: row.set_by.clone(),
        updated_at: row.updated_at,
        document: hex::encode(&row.document),
    }
}

/// The registered trust state, decoded; `None` when none is registered.
pub(crate) async fn in_force(state: &AppState) -> ApiResult<Option<(TrustRow, TrustState)>> {
    let Some(row) = state.db.trust_state().await? else {
        return Ok(None);
    };
    // Only documents that decoded are stored (registered, or made by apply_update).
    let s = TrustState::decode(&row.document)
        .map_err(|e| ApiErr::internal(format!("the stored trust state does not decode: {e}")))?;
    Ok(Some((row, s)))
}

fn none_registered() -> ApiErr {
    ApiErr::new(
        StatusCode::NOT_FOUND,
        "no-trust-state",
        "no trust state is registered: trust updates are checked against the registered keys only",
    )
    .hint("an admin registers the state the devices were provisioned with: suitcase fleet trust set trust.cbor (POST /api/v1/trust-state)")
}

/// The fleet's trust state in force: the state an admin registered, advanced by every trust
/// update uploaded since. Any role.
#[utoipa::path(get, path = "/api/v1/trust-state", tag = "admin",
    responses((status = 200, body = TrustStateInfo),
              (status = 404, body = suitcase_protocol::ApiError, description = "no trust state is registered")),
    security(("management_token" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    who: Manager,
) -> ApiResult<axum::Json<TrustStateInfo>> {
    who.require(Cap::Read)?;
    let (row, s) = in_force(&state).await?.ok_or_else(none_registered)?;
    Ok(axum::Json(info(&row, &s)))
}

/// Register the fleet's trust state: the genesis state the devices were provisioned with
/// (`suitcase trust init`), or the state they are in now (`suitcase trust apply`). From then
/// on a trust update is stored only if the devices would apply it, and advances this state;
/// a release signed only by revoked keys is refused. Admin. A registered state is replaced
/// only by removing it first (`DELETE`), both audited.
#[utoipa::path(post, path = "/api/v1/trust-state", tag = "admin",
    request_body = TrustStateSet,
    responses((status = 201, body = TrustStateInfo),
              (status = 400, body = suitcase_protocol::ApiError, description = "the document is not hex"),
              (status = 409, body = suitcase_protocol::ApiError, description = "a trust state is registered"),
              (status = 422, body = suitcase_protocol::ApiError, description = "not a valid trust document")),
    security(("management_token" = [])))]
pub(crate) async fn set(
    State(state): State<AppState>,
    who: Manager,
    crate::wire::Wire(_, req): crate::wire::Wire<TrustStateSet>,
) -> ApiResult<(StatusCode, axum::Json<TrustStateInfo>)> {
    who.require(Cap::Administer)?;
    let text = req.document.trim();
    if text.len() > DOCUMENT_HEX_MAX {
        return Err(ApiErr::unprocessable(
            "bad-trust-state",
            format!(
                "the document is {} hex characters; a trust document is at most {} bytes",
                text.len(),
                suitcase_trust::MAX_DOCUMENT_LEN
            ),
        ));
    }
    let document = hex::decode(text).map_err(|e| {
        ApiErr::bad_request("bad-hex", format!("the document is not hex: {e}"))
            .hint("send the bytes of the file `suitcase trust init --out` wrote, hex-encoded (suitcase fleet trust set FILE does)")
    })?;
    // The same strict decoding a device applies (deterministic CBOR, bounded lists,
    // TrustState::check: role separation, thresholds, no revoked key in use).
    let s = TrustState::decode(&document).map_err(|e| {
        ApiErr::unprocessable("bad-trust-state", format!("not a trust state: {e}"))
            .hint("register the file `suitcase trust init` (or `suitcase trust apply --out`) wrote, not a trust update envelope")
    })?;
    let row = TrustRow {
        sequence: s.sequence(),
        document,
        release_id: None,
        set_by: who.0.name.clone(),
        updated_at: state.now(),
    };
    if !state.db.trust_state_register(&row).await? {
        let current = state.db.trust_state().await?.map(|r| r.sequence);
        return Err(ApiErr::conflict(
            "trust-state-exists",
            format!(
                "a trust state is registered (sequence {}); it is advanced by uploading trust updates",
                current.map_or_else(|| "?".to_owned(), |n| n.to_string())
            ),
        )
        .hint("upload the trust update (suitcase fleet release upload update.suit); to replace the state, remove it first: suitcase fleet trust remove (DELETE /api/v1/trust-state)"));
    }
    audit(
        &state,
        &who,
        "trust.register",
        "trust-state",
        serde_json::json!({"sequence": s.sequence(), "root_threshold": s.root_threshold(), "roots": s.roots().iter().map(|k| hex::encode(k.id())).collect::<Vec<_>>()}),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(info(&row, &s))))
}

/// Remove the registered trust state: trust updates are then checked against the registered
/// keys only, as before one was registered. Admin.
#[utoipa::path(delete, path = "/api/v1/trust-state", tag = "admin",
    responses((status = 204, description = "removed"),
              (status = 404, body = suitcase_protocol::ApiError, description = "no trust state is registered")),
    security(("management_token" = [])))]
pub(crate) async fn remove(State(state): State<AppState>, who: Manager) -> ApiResult<StatusCode> {
    who.require(Cap::Administer)?;
    let before = state.db.trust_state().await?.map(|r| r.sequence);
    if !state.db.trust_state_remove().await? {
        return Err(none_registered());
    }
    audit(
        &state,
        &who,
        "trust.remove",
        "trust-state",
        serde_json::json!({"sequence": before}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Why a trust update was refused at upload, naming the rule of docs/trust.md ("A trust
/// update is a SUIT envelope", checks 1 to 6) and its clause: the same check a device makes
/// with `TrustState::apply_update`, so the server refuses what the devices would.
pub(crate) fn refusal(s: &TrustState, envelope: &Envelope<'_>, e: TrustError) -> ApiErr {
    let n = s.sequence();
    let hint = "build it with `suitcase trust update --state STATE` from the state in force (GET /api/v1/trust-state, suitcase fleet trust show) and sign it with its root keys";
    match e {
        TrustError::Rollback { current, offered } => ApiErr::conflict(
            "trust-update-rollback",
            format!(
                "trust update refused by rule 4 (anti-rollback, SUIT manifest §8.4.2, TUF §5.3.5): its sequence {offered} is not above the trust state in force ({current}): an older or replayed trust update"
            ),
        )
        .hint("a trust update already applied cannot be uploaded again; build the next one from the state in force (suitcase fleet trust show)"),
        TrustError::Manifest(m) if m.reason() == suitcase_manifest::Reason::Signature => {
            match s.release_signer_in(envelope) {
                Some(kid) => ApiErr::unprocessable(
                    "trust-update-release-signer",
                    format!(
                        "trust update refused by rule 1 (role separation, TUF §2.1.1): it is signed by {}, a release signer of trust state {n}; a release signer's signature never counts toward a trust update, which needs {} distinct root key(s) of the state in force",
                        hex::encode(kid),
                        s.root_threshold()
                    ),
                )
                .hint("sign the trust update with the root keys (suitcase trust sign UPDATE --key ROOT.key)"),
                None => ApiErr::unprocessable(
                    "trust-update-unauthorized",
                    format!(
                        "trust update refused by rule 1 (root threshold, TUF §5.3.4): it is not signed by {} distinct root key(s) of trust state {n}: {m}",
                        s.root_threshold()
                    ),
                )
                .hint("have more root key holders sign it: suitcase trust sign UPDATE --key ROOT.key"),
            }
        }
        TrustError::NotTrustUpdate { .. } | TrustError::Manifest(_) => ApiErr::unprocessable(
            "trust-update-refused",
            format!("trust update refused by rule 2 (one component [\"suitcase-trust\"], the document integrated, SUIT manifest §7.5): {e}"),
        )
        .hint(hint),
        TrustError::PayloadMismatch => ApiErr::unprocessable(
            "trust-update-refused",
            format!("trust update refused by rule 3 (image digest and size, SUIT manifest §8.4.8.6): {e}"),
        )
        .hint(hint),
        TrustError::NewRootNotSigned(_) => ApiErr::unprocessable(
            "trust-update-refused",
            format!("trust update refused by rule 6 (a new root signs its own installation, TUF §5.3.4): {e}"),
        )
        .hint("have the new root's key holders countersign it: suitcase trust sign UPDATE --key NEWROOT.key"),
        other => ApiErr::unprocessable(
            "trust-update-refused",
            format!("trust update refused by rule 5 (a consistent document that keeps every revocation, RFC 8240 §3): {other}"),
        )
        .hint(hint),
    }
}
