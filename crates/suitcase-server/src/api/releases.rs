//! Releases: upload (verified against the registered keys), payloads, listing.

use std::num::NonZeroUsize;
use std::path::Path as FsPath;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Deserialize;
use suitcase_author::summary::summarize;
use suitcase_manifest::{Envelope, TrustAnchor, TrustPolicy};
use suitcase_protocol::{ReleaseComponent, ReleaseInfo, ReleasePayload};

use crate::AppState;
use crate::api::audit;
use crate::auth::{Cap, Manager};
use crate::error::{ApiErr, ApiResult};
use crate::store::ReleaseRow;

pub(crate) fn info(state: &AppState, r: &ReleaseRow) -> ReleaseInfo {
    ReleaseInfo {
        id: r.id.clone(),
        name: r.name.clone(),
        sequence_number: r.sequence_number,
        manifest_digest: r.manifest_digest.clone(),
        vendor_ids: r.summary.vendor_ids(),
        class_ids: r.summary.class_ids(),
        components: r
            .summary
            .components
            .iter()
            .map(|c| ReleaseComponent {
                id: c.id.clone(),
                image_digest: c.image_digest.as_ref().map(|d| d.1.clone()),
                digest_algorithm: c.image_digest.as_ref().map(|d| d.0.clone()),
                image_size: c.image_size,
                uri: c.uri.clone(),
                encrypted: c.encrypted,
            })
            .collect(),
        payloads: r
            .payloads
            .iter()
            .map(|p| ReleasePayload {
                index: p.idx,
                uri: p.uri.clone(),
                uploaded: p.object_key.is_some(),
                size: p.size,
                sha256: p.sha256.clone(),
            })
            .collect(),
        signed_by: r.signed_by.clone(),
        complete: r.complete(),
        envelope_bytes: r.envelope_bytes,
        created_by: r.created_by.clone(),
        created_at: r.created_at,
        deltas: state.deltas.of_release(&r.id),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct UploadQuery {
    /// A name for the release (default: "sequence N").
    name: Option<String>,
}

/// Upload a signed SUIT envelope. The server refuses it unless enough registered keys signed
/// it (manifest §6.2: authenticate before anything else); then payloads are uploaded with
/// `PUT /api/v1/releases/{id}/payloads/{index}`.
#[utoipa::path(post, path = "/api/v1/releases", tag = "releases",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/suit-envelope+cose"),
    responses((status = 201, body = ReleaseInfo),
              (status = 409, body = suitcase_protocol::ApiError, description = "already uploaded, or no keys registered"),
              (status = 422, body = suitcase_protocol::ApiError, description = "not an envelope, or not signed by a registered key")),
    security(("management_token" = [])))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    who: Manager,
    Query(q): Query<UploadQuery>,
    body: Bytes,
) -> ApiResult<(StatusCode, axum::Json<ReleaseInfo>)> {
    who.require(Cap::Upload)?;
    let keys = state.db.key_list().await?;
    if keys.is_empty() {
        return Err(ApiErr::conflict(
            "no-keys",
            "no release-signing keys are registered, so no release can be trusted",
        )
        .hint("an admin registers the author's public key: suitcase server key add NAME KEY.pub (POST /api/v1/keys)"));
    }
    let parsed: Vec<(String, suitcase_author::keys::PublicKey)> = keys
        .iter()
        .filter_map(|k| {
            suitcase_author::keys::parse_public(FsPath::new(&k.name), &k.key_bytes)
                .ok()
                .map(|p| (k.name.clone(), p))
        })
        .collect();
    let anchors: Vec<TrustAnchor<'_>> = parsed
        .iter()
        .filter_map(|(n, k)| k.as_trust_key().map(|t| TrustAnchor::new(n, t)))
        .collect();
    let envelope = Envelope::decode(&body).map_err(|e| {
        ApiErr::unprocessable(
            "not-an-envelope",
            format!(
                "the body is not a SUIT envelope ({}): {e}",
                e.reason().code()
            ),
        )
        .hint("upload the signed envelope file (suitcase release build -o FILE) as the raw body")
    })?;
    let threshold =
        NonZeroUsize::new(state.config.release_signatures.max(1)).unwrap_or(NonZeroUsize::MIN);
    let policy = TrustPolicy {
        threshold,
        time: u64::try_from(state.now()).ok(),
        ..TrustPolicy::default()
    };
    let verified = envelope.verify(&anchors, &policy).map_err(|e| {
        ApiErr::unprocessable(
            "untrusted-release",
            format!("the envelope is not signed by {threshold} registered key(s): {e}"),
        )
        .hint("sign it with a registered key (suitcase release sign), or have an admin register the signer's public key")
    })?;
    let summary = summarize(&verified);
    let digest = summary.manifest_digest.1.clone();
    if let Some(existing) = state.db.release_by_digest(&digest).await? {
        return Err(ApiErr::conflict(
            "duplicate-release",
            format!("this manifest was already uploaded as release {existing}"),
        ));
    }
    let signed_by: Vec<String> = verified
        .signers()
        .iter()
        .filter_map(|i| anchors.get(i).map(|a| a.name.to_owned()))
        .collect();
    let mut uris: Vec<String> = Vec::new();
    for (u, _) in summary.fetched() {
        if !uris.iter().any(|x| x == u) {
            uris.push(u.to_owned());
        }
    }
    let row = ReleaseRow {
        id: crate::auth::new_id("rel_"),
        name: q
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| format!("sequence {}", summary.sequence_number)),
        sequence_number: summary.sequence_number,
        manifest_digest: digest,
        signed_by,
        envelope_bytes: body.len() as u64,
        created_by: who.0.name.clone(),
        created_at: state.now(),
        payloads: Vec::new(),
        summary,
    };
    state.db.release_create(&row, &body, &uris).await?;
    audit(
        &state,
        &who,
        "release.upload",
        &row.id,
        serde_json::json!({"name": row.name, "sequence_number": row.sequence_number, "manifest_digest": row.manifest_digest, "signed_by": row.signed_by}),
    )
    .await?;
    let stored = state
        .db
        .release_get(&row.id)
        .await?
        .ok_or_else(|| ApiErr::internal("release vanished after insert"))?;
    Ok((StatusCode::CREATED, axum::Json(info(&state, &stored))))
}

/// Upload one payload. Unencrypted payloads must match the manifest's image size and digest.
#[utoipa::path(put, path = "/api/v1/releases/{id}/payloads/{index}", tag = "releases",
    params(("id" = String, Path), ("index" = u32, Path, description = "the payload index from the release's `payloads`")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = ReleaseInfo),
              (status = 409, body = suitcase_protocol::ApiError, description = "already uploaded"),
              (status = 422, body = suitcase_protocol::ApiError, description = "does not match the manifest")),
    security(("management_token" = [])))]
pub(crate) async fn put_payload(
    State(state): State<AppState>,
    who: Manager,
    Path((id, index)): Path<(String, u32)>,
    body: Body,
) -> ApiResult<axum::Json<ReleaseInfo>> {
    who.require(Cap::Upload)?;
    let release = state
        .db
        .release_get(&id)
        .await?
        .ok_or_else(|| ApiErr::not_found("release", &id))?;
    let p = release
        .payloads
        .iter()
        .find(|p| p.idx == index)
        .ok_or_else(|| {
            ApiErr::not_found("payload index", &index.to_string()).hint(format!(
                "release {id} has {} payload(s), numbered from 0",
                release.payloads.len()
            ))
        })?;
    if p.object_key.is_some() {
        return Err(ApiErr::conflict(
            "payload-exists",
            format!("payload {index} ({}) is already uploaded", p.uri),
        ));
    }
    let key = format!("releases/{id}/{index}-{}", crate::auth::new_id(""));
    let stream = body.into_data_stream().map_err(|e| e.to_string()).boxed();
    let (size, sha) = state
        .blobs
        .put_stream(&key, stream, state.config.max_upload)
        .await?;
    let component = release
        .summary
        .components
        .iter()
        .find(|c| c.uri.as_deref() == Some(p.uri.as_str()));
    if let Some(c) = component.filter(|c| !c.encrypted && c.source_component.is_none()) {
        let mut problem = None;
        if let Some(expected) = c.image_size
            && expected != size
        {
            problem = Some(format!(
                "it is {size} bytes but the manifest says {expected}"
            ));
        }
        if let Some((alg, expected)) = &c.image_digest
            && alg == "sha-256"
            && *expected != sha
        {
            problem = Some(format!(
                "its SHA-256 is {sha} but the manifest says {expected}"
            ));
        }
        if let Some(problem) = problem {
            state.blobs.delete(&key).await;
            return Err(ApiErr::unprocessable(
                "payload-mismatch",
                format!(
                    "payload {index} ({}) does not match the manifest: {problem}",
                    p.uri
                ),
            )
            .hint("upload the image the release was built from"));
        }
    }
    state
        .db
        .payload_stored(&id, index, &key, size, &sha)
        .await?;
    crate::deltas::schedule(&state, &id, index);
    audit(
        &state,
        &who,
        "release.payload",
        &id,
        serde_json::json!({"index": index, "uri": p.uri, "bytes": size, "sha256": sha}),
    )
    .await?;
    let stored = state
        .db
        .release_get(&id)
        .await?
        .ok_or_else(|| ApiErr::not_found("release", &id))?;
    Ok(axum::Json(info(&state, &stored)))
}

/// List releases.
#[utoipa::path(get, path = "/api/v1/releases", tag = "releases",
    responses((status = 200, body = Vec<ReleaseInfo>)),
    security(("management_token" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Manager,
) -> ApiResult<axum::Json<Vec<ReleaseInfo>>> {
    who.require(Cap::Read)?;
    Ok(axum::Json(
        state
            .db
            .release_list()
            .await?
            .iter()
            .map(|r| info(&state, r))
            .collect(),
    ))
}

/// One release.
#[utoipa::path(get, path = "/api/v1/releases/{id}", tag = "releases",
    params(("id" = String, Path)),
    responses((status = 200, body = ReleaseInfo), (status = 404, body = suitcase_protocol::ApiError)),
    security(("management_token" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ReleaseInfo>> {
    who.require(Cap::Read)?;
    let r = state
        .db
        .release_get(&id)
        .await?
        .ok_or_else(|| ApiErr::not_found("release", &id))?;
    Ok(axum::Json(info(&state, &r)))
}

/// A release's envelope, as uploaded.
#[utoipa::path(get, path = "/api/v1/releases/{id}/envelope", tag = "releases",
    params(("id" = String, Path)),
    responses((status = 200, content_type = "application/suit-envelope+cose", body = Vec<u8>)),
    security(("management_token" = [])))]
pub(crate) async fn envelope(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    who.require(Cap::Read)?;
    let bytes = state
        .db
        .release_envelope(&id)
        .await?
        .ok_or_else(|| ApiErr::not_found("release", &id))?;
    Ok(super::device::serve_bytes(bytes, &headers))
}
