//! Administration: management tokens, release-signing keys, the audit log.

use std::path::Path as FsPath;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use suitcase_protocol::{AuditEntry, KeyCreate, KeyInfo, TokenCreate, TokenInfo};

use crate::AppState;
use crate::api::{audit as write_audit, valid_name};
use crate::auth::{Cap, Manager, new_id, new_secret};
use crate::error::{ApiErr, ApiResult};
use crate::store::{KeyRow, Revoke};

/// Create a management token; the answer holds the secret, shown only this once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "admin",
    request_body = TokenCreate,
    responses((status = 201, body = TokenInfo)),
    security(("management_token" = [])))]
pub(crate) async fn token_create(
    State(state): State<AppState>,
    who: Manager,
    crate::wire::Wire(_, t): crate::wire::Wire<TokenCreate>,
) -> ApiResult<(StatusCode, axum::Json<TokenInfo>)> {
    who.require(Cap::Administer)?;
    valid_name("token name", &t.name)?;
    let (token, hash) = new_secret("sct_a_");
    let id = new_id("tok_");
    state
        .db
        .token_create(&id, &t.name, t.role, &hash, state.now())
        .await?;
    write_audit(
        &state,
        &who,
        "token.create",
        &id,
        serde_json::json!({"name": t.name, "role": t.role.name()}),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(TokenInfo {
            id,
            name: t.name,
            role: t.role,
            token: Some(token),
            revoked: false,
        }),
    ))
}

/// List management tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "admin",
    responses((status = 200, body = Vec<TokenInfo>)),
    security(("management_token" = [])))]
pub(crate) async fn token_list(
    State(state): State<AppState>,
    who: Manager,
) -> ApiResult<axum::Json<Vec<TokenInfo>>> {
    who.require(Cap::Administer)?;
    Ok(axum::Json(
        state
            .db
            .token_list()
            .await?
            .into_iter()
            .map(|t| TokenInfo {
                id: t.id,
                name: t.name,
                role: t.role,
                token: None,
                revoked: t.revoked,
            })
            .collect(),
    ))
}

/// Revoke a management token.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "admin",
    params(("id" = String, Path)),
    responses((status = 204, description = "revoked"),
              (status = 409, body = suitcase_protocol::ApiError, description = "the last admin token")),
    security(("management_token" = [])))]
pub(crate) async fn token_revoke(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Cap::Administer)?;
    let all = state.db.token_list().await?;
    let Some(target) = all.iter().find(|t| t.id == id) else {
        return Err(ApiErr::not_found("token", &id));
    };
    // The guard and the revocation are one database step: two admins revoking each other at
    // once cannot leave zero working admin tokens.
    match state.db.token_revoke_guarded(&id).await? {
        Revoke::Revoked | Revoke::AlreadyRevoked => {}
        Revoke::NoSuchToken => return Err(ApiErr::not_found("token", &id)),
        Revoke::LastAdmin => {
            return Err(ApiErr::conflict(
                "last-admin",
                "this is the last admin token; revoking it would lock everyone out",
            )
            .hint(
                "create another admin token first (suitcase fleet token create NAME --role admin)",
            ));
        }
    }
    state.managers.forget(&id);
    write_audit(
        &state,
        &who,
        "token.revoke",
        &id,
        serde_json::json!({"name": target.name}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Register a release-signing key: uploads must be signed by registered keys.
#[utoipa::path(post, path = "/api/v1/keys", tag = "admin",
    request_body = KeyCreate,
    responses((status = 201, body = KeyInfo), (status = 422, body = suitcase_protocol::ApiError)),
    security(("management_token" = [])))]
pub(crate) async fn key_create(
    State(state): State<AppState>,
    who: Manager,
    crate::wire::Wire(_, k): crate::wire::Wire<KeyCreate>,
) -> ApiResult<(StatusCode, axum::Json<KeyInfo>)> {
    who.require(Cap::Administer)?;
    valid_name("key name", &k.name)?;
    let bytes = k.key.as_bytes().to_vec();
    // The database keeps what is registered, and viewers can list it: a private key must
    // never get there. Refused without echoing any of it.
    if suitcase_host::keys::holds_private_key(&bytes) {
        return Err(ApiErr::unprocessable(
            "private-key",
            "this is a private key; the server needs only the public key, and the private key must stay with its signer",
        )
        .hint("send the public key: `suitcase key public KEY -o KEY.pub` (or the .pub file `suitcase key generate --public` wrote)"));
    }
    let public = suitcase_host::keys::parse_public(FsPath::new(&k.name), &bytes).map_err(|e| {
        ApiErr::unprocessable("bad-key", e.to_string())
            .hint("send the public key as `suitcase key public` writes it: PEM text, or a COSE_Key in hex")
    })?;
    if !public.is_authenticator() {
        return Err(ApiErr::unprocessable(
            "bad-key",
            format!("a {} key cannot sign manifests", public.kind()),
        ));
    }
    if matches!(public, suitcase_host::keys::PublicKey::Symmetric { .. }) {
        return Err(ApiErr::unprocessable(
            "bad-key",
            "a shared HMAC secret cannot be a server trust anchor: anyone who can verify with it can also sign",
        ));
    }
    let exists = |id: Option<String>| {
        let e = ApiErr::conflict(
            "key-exists",
            format!("a key named {:?} is registered", k.name),
        );
        match id {
            Some(id) => e.id(id),
            None => e,
        }
    };
    if let Some(x) = state
        .db
        .key_list()
        .await?
        .into_iter()
        .find(|x| x.name == k.name)
    {
        return Err(exists(Some(x.id)));
    }
    let row = KeyRow {
        id: new_id("key_"),
        name: k.name.clone(),
        kind: public.kind().to_owned(),
        kid: hex::encode(public.kid()),
        key_bytes: bytes,
        post_quantum: public.is_post_quantum(),
    };
    if let Err(e) = state.db.key_create(&row, state.now()).await {
        // Registered by a concurrent request between the check and the insert.
        if crate::error::is_unique_violation(&e) {
            let id = state
                .db
                .key_list()
                .await?
                .into_iter()
                .find(|x| x.name == k.name)
                .map(|x| x.id);
            return Err(exists(id));
        }
        return Err(e.into());
    }
    write_audit(
        &state,
        &who,
        "key.register",
        &row.id,
        serde_json::json!({"name": row.name, "kind": row.kind, "kid": row.kid}),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(key_info(row))))
}

fn key_info(k: KeyRow) -> KeyInfo {
    KeyInfo {
        id: k.id,
        name: k.name,
        kind: k.kind,
        kid: k.kid,
        post_quantum: k.post_quantum,
    }
}

/// List the registered release-signing keys.
#[utoipa::path(get, path = "/api/v1/keys", tag = "admin",
    responses((status = 200, body = Vec<KeyInfo>)),
    security(("management_token" = [])))]
pub(crate) async fn key_list(
    State(state): State<AppState>,
    who: Manager,
) -> ApiResult<axum::Json<Vec<KeyInfo>>> {
    who.require(Cap::Read)?;
    Ok(axum::Json(
        state
            .db
            .key_list()
            .await?
            .into_iter()
            .map(key_info)
            .collect(),
    ))
}

/// Remove a release-signing key; releases it signed stay, new uploads need another key.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "admin",
    params(("id" = String, Path)),
    responses((status = 204, description = "removed")),
    security(("management_token" = [])))]
pub(crate) async fn key_delete(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Cap::Administer)?;
    if !state.db.key_delete(&id).await? {
        return Err(ApiErr::not_found("key", &id));
    }
    write_audit(&state, &who, "key.remove", &id, serde_json::json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query parameters of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Entries after this id.
    after: Option<i64>,
    /// At most this many (default 100, at most 10,000).
    limit: Option<i64>,
}

/// The audit log: every management action, oldest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin",
    params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>)),
    security(("management_token" = [])))]
pub(crate) async fn audit(
    State(state): State<AppState>,
    who: Manager,
    Query(q): Query<AuditQuery>,
) -> ApiResult<axum::Json<Vec<AuditEntry>>> {
    who.require(Cap::Read)?;
    Ok(axum::Json(
        state
            .db
            .audit_list(
                q.after.unwrap_or(0),
                q.limit.unwrap_or(100).clamp(1, 10_000),
            )
            .await?,
    ))
}
