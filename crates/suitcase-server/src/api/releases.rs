//! Releases: upload (verified against the registered keys), payloads, listing.

use std::num::NonZeroUsize;
use std::path::Path as FsPath;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Deserialize;
use suitcase_host::summary::summarize;
use suitcase_manifest::{Envelope, TrustAnchor, TrustPolicy};
use suitcase_protocol::{CampaignState, ReleaseComponent, ReleaseInfo, ReleasePayload};

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
        archived: r.archived,
        kind: r.kind.clone(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadQuery {
    /// A name for the release (default: "sequence N"); 1 to 200 characters, no control
    /// characters.
    #[param(max_length = 200)]
    name: Option<String>,
    /// Mark the release remediation: the only kind a quarantined device is offered
    /// (docs/server.md §8; `POST /api/v1/releases/{id}/remediation` changes it later).
    /// Needs the admin role (403 forbidden otherwise, before the body is read); without
    /// it an author's upload is never remediation.
    remediation: Option<bool>,
}

/// The answer to an envelope uploaded before: `409` with the release's id, and, when it
/// still lacks payloads, how to finish it (the same `suitcase fleet release upload` with
/// `--payload` carries on where it stopped).
async fn duplicate(state: &AppState, existing: &str) -> ApiErr {
    let e = ApiErr::conflict(
        "duplicate-release",
        format!("this manifest was already uploaded as release {existing}"),
    )
    .id(existing);
    match state.db.release_get(existing).await {
        Ok(Some(r)) if !r.complete() => {
            let missing: Vec<String> = r
                .payloads
                .iter()
                .filter(|p| p.object_key.is_none())
                .map(|p| format!("{} ({})", p.idx, p.uri))
                .collect();
            e.hint(format!(
                "it still lacks payload(s) {}: run `suitcase fleet release upload ENVELOPE --payload FILE` again, or PUT /api/v1/releases/{existing}/payloads/INDEX",
                missing.join(", ")
            ))
        }
        _ => e.hint("it is complete; use its id"),
    }
}

/// Upload a signed SUIT envelope. The server refuses it unless enough registered keys signed
/// it (manifest §6.2: authenticate before anything else); a trust update, when a trust state
/// is registered (`/api/v1/trust-state`), unless it applies to the state in force as on a
/// device (docs/trust.md), which it then advances; then payloads are uploaded with
/// `PUT /api/v1/releases/{id}/payloads/{index}`. Author or admin; with `remediation=true`
/// admin only (403 otherwise), the mark stored with the release in one write.
#[utoipa::path(post, path = "/api/v1/releases", tag = "releases",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/suit-envelope+cose"),
    responses((status = 201, body = ReleaseInfo),
              (status = 403, body = suitcase_protocol::ApiError, description = "the token's role may not upload, or `remediation=true` from a token without the admin role"),
              (status = 409, body = suitcase_protocol::ApiError, description = "already uploaded, or no keys registered; under a registered trust state: a trust update whose sequence is not above the state in force (trust-update-rollback), or the state changed during the upload (trust-state-changed)"),
              (status = 422, body = suitcase_protocol::ApiError, description = "not an envelope, or not signed by a registered key; under a registered trust state: a trust update the devices would refuse (trust-update-unauthorized, trust-update-release-signer, trust-update-refused), or a release signed only by a revoked key (revoked-key)")),
    security(("management_token" = [])))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    who: Manager,
    Query(q): Query<UploadQuery>,
    body: Bytes,
) -> ApiResult<(StatusCode, axum::Json<ReleaseInfo>)> {
    who.require(Cap::Upload)?;
    let remediation = q.remediation.unwrap_or(false);
    if remediation {
        // Remediation is the only kind of release a quarantined device is offered (RFC 8240
        // §9, docs/server.md §8), so marking one is the admin's, as changing the mark later is
        // (POST /api/v1/releases/{id}/remediation): an author token cannot reach quarantined
        // devices by uploading with the mark set.
        who.require(Cap::Administer).map_err(|_| {
            ApiErr::forbidden(format!(
                "token {:?} has the {} role; uploading with remediation=true needs the admin role",
                who.0.name,
                who.0.role.name()
            ))
            .hint("upload without remediation=true (an author may), then have an admin mark it: suitcase fleet release remediation ID --on (POST /api/v1/releases/{id}/remediation)")
        })?;
    }
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
    // The fleet's trust state in force, if an admin registered one (docs/trust.md, "The
    // server and trust updates"): trust updates are then checked as a device checks them,
    // and releases signed only by revoked keys are refused.
    let trust = crate::api::trust::in_force(&state).await?;
    let parsed: Vec<(String, suitcase_host::keys::PublicKey)>;
    let anchors: Vec<TrustAnchor<'_>>;
    let verified;
    let signed_by: Vec<String>;
    let guard;
    match &trust {
        // A trust update (it carries the integrated trust document, as the agent recognises
        // one) under a registered state: the device's own check, `apply_update` (docs/trust.md
        // checks 1 to 6: root threshold, the trust-store component, digest, anti-rollback,
        // the new document, a new root's countersignature). The registered release keys play
        // no part: a trust update is the root's.
        Some((row, ts)) if envelope.integrated(suitcase_trust::TRUST_PAYLOAD).is_some() => {
            let next = ts
                .apply_update(&body)
                .map_err(|e| crate::api::trust::refusal(ts, &envelope, e))?;
            verified = ts
                .with_root_policy(|a, p| envelope.verify(a, p))
                .map_err(|e| {
                    ApiErr::internal(format!("a trust update applied but does not verify: {e}"))
                })?;
            signed_by = verified
                .signers()
                .iter()
                .filter_map(|i| ts.roots().get(i))
                .map(|k| format!("root {}", hex::encode(k.id())))
                .collect();
            let mut document = vec![0; suitcase_trust::MAX_DOCUMENT_LEN];
            let n = next
                .encode(&mut document)
                .map_err(|e| ApiErr::internal(format!("cannot encode the new trust state: {e}")))?;
            document.truncate(n);
            guard = Some(crate::store::TrustGuard {
                expected: ts.sequence(),
                expected_document: row.document.clone(),
                next: Some((next.sequence(), document)),
            });
        }
        _ => {
            let keys = state.db.key_list().await?;
            if keys.is_empty() {
                return Err(ApiErr::conflict(
                    "no-keys",
                    "no release-signing keys are registered, so no release can be trusted",
                )
                .hint("an admin registers the author's public key: suitcase fleet key add NAME KEY.pub (POST /api/v1/keys)"));
            }
            // A key the trust state in force revoked is no anchor, as on the devices
            // (RFC 8240 §3: a revoked key is never trusted again), even while registered.
            let revoked = |kid: &[u8]| {
                trust
                    .as_ref()
                    .is_some_and(|(_, ts)| ts.revoked().iter().any(|r| r.as_slice() == kid))
            };
            parsed = keys
                .iter()
                .filter_map(|k| {
                    suitcase_host::keys::parse_public(FsPath::new(&k.name), &k.key_bytes)
                        .ok()
                        .map(|p| (k.name.clone(), p))
                })
                .filter(|(_, p)| !revoked(&p.kid()))
                .collect();
            anchors = parsed
                .iter()
                .filter_map(|(n, k)| k.as_trust_key().map(|t| TrustAnchor::new(n, t)))
                .collect();
            let threshold = NonZeroUsize::new(state.config.release_signatures.max(1))
                .unwrap_or(NonZeroUsize::MIN);
            let policy = TrustPolicy {
                threshold,
                time: u64::try_from(state.now()).ok(),
                ..TrustPolicy::default()
            };
            verified = envelope.verify(&anchors, &policy).map_err(|e| {
                if let Some((_, ts)) = &trust
                    && let Some(kid) = ts.revoked_signer(&envelope)
                {
                    return ApiErr::unprocessable(
                        "revoked-key",
                        format!(
                            "the envelope is signed by key {}, which the trust state in force (sequence {}) revoked, and not by {threshold} other registered key(s): the devices refuse it (RFC 8240 §3, docs/trust.md): {e}",
                            hex::encode(kid),
                            ts.sequence()
                        ),
                    )
                    .hint("sign the release with a key the trust state lists as a release signer (suitcase fleet trust show), and remove the revoked key: suitcase fleet key list, DELETE /api/v1/keys/{id}");
                }
                ApiErr::unprocessable(
                    "untrusted-release",
                    format!("the envelope is not signed by {threshold} registered key(s): {e}"),
                )
                .hint("sign it with a registered key (suitcase release sign), or have an admin register the signer's public key")
            })?;
            if let Some((_, ts)) = &trust
                && suitcase_trust::names_trust_store(&verified)
            {
                // Devices with a trust state refuse it: only a root-signed trust update,
                // its document integrated, may name the trust store (docs/trust.md, rule 2).
                return Err(ApiErr::unprocessable(
                    "trust-update-refused",
                    format!(
                        "trust update refused by rule 2 (the document integrated as \"#suitcase-trust\", SUIT manifest §7.5): the envelope names the trust store but carries no trust document; devices under trust state {} refuse it",
                        ts.sequence()
                    ),
                )
                .hint("build trust updates with suitcase trust update (it integrates the document) and sign them with the root keys"));
            }
            signed_by = verified
                .signers()
                .iter()
                .filter_map(|i| anchors.get(i).map(|a| a.name.to_owned()))
                .collect();
            guard = trust.as_ref().map(|(row, ts)| crate::store::TrustGuard {
                expected: ts.sequence(),
                expected_document: row.document.clone(),
                next: None,
            });
        }
    }
    let summary = summarize(&verified);
    let digest = summary.manifest_digest.1.clone();
    if let Some(existing) = state.db.release_by_digest(&digest).await? {
        return Err(duplicate(&state, &existing).await);
    }
    let mut uris: Vec<String> = Vec::new();
    for (u, _) in summary.fetched() {
        if !uris.iter().any(|x| x == u) {
            uris.push(u.to_owned());
        }
    }
    let row = ReleaseRow {
        id: crate::auth::new_id("rel_"),
        name: match q.name.filter(|n| !n.trim().is_empty()) {
            Some(n) => {
                crate::api::valid_name("release name", &n)?;
                n
            }
            None => format!("sequence {}", summary.sequence_number),
        },
        sequence_number: summary.sequence_number,
        manifest_digest: digest,
        signed_by,
        envelope_bytes: body.len() as u64,
        created_by: who.0.name.clone(),
        created_at: state.now(),
        payloads: Vec::new(),
        summary,
        archived: false,
        remediation,
        // The same rule the agent and the bootloader apply (suitcase_trust::names_trust_store):
        // an envelope naming the trust store component is a trust update, whatever else it
        // names, so the server never counts it as firmware (docs/server.md §4).
        kind: if suitcase_trust::names_trust_store(&verified) {
            suitcase_protocol::RELEASE_KIND_TRUST_UPDATE
        } else {
            suitcase_protocol::RELEASE_KIND_RELEASE
        }
        .to_owned(),
    };
    if let Err(e) = state
        .db
        .release_create(&row, &body, &uris, guard.as_ref())
        .await
    {
        if e.downcast_ref::<crate::store::TrustStateMoved>().is_some() {
            return Err(ApiErr::conflict(
                "trust-state-changed",
                "the trust state in force changed while this upload was checked (another trust update was stored, or the state was replaced, removed or registered); nothing was stored",
            )
            .hint("upload it again: it is checked against the state in force now (suitcase fleet trust show)"));
        }
        // The same manifest uploaded by a concurrent request: its digest is unique.
        if crate::error::is_unique_violation(&e)
            && let Some(existing) = state.db.release_by_digest(&row.manifest_digest).await?
        {
            return Err(duplicate(&state, &existing).await);
        }
        return Err(e.into());
    }
    audit(
        &state,
        &who,
        "release.upload",
        &row.id,
        serde_json::json!({"name": row.name, "sequence_number": row.sequence_number, "manifest_digest": row.manifest_digest, "signed_by": row.signed_by, "remediation": remediation, "kind": row.kind,
            // The trust state in force it was checked against, and, for a trust update, the
            // one it advanced to (docs/trust.md, "The server and trust updates").
            "trust_state": guard.as_ref().map(|g| g.expected), "trust_state_now": guard.as_ref().and_then(|g| g.next.as_ref().map(|n| n.0))}),
    )
    .await?;
    let stored = state
        .db
        .release_get(&row.id)
        .await?
        .ok_or_else(|| ApiErr::internal("release vanished after insert"))?;
    Ok((StatusCode::CREATED, axum::Json(info(&state, &stored))))
}

/// A background task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Seconds after which an upload claim that was not refreshed is free again.
pub(crate) const UPLOAD_CLAIM_STALE: i64 = 120;
/// How often a running upload refreshes its claim, in seconds.
const UPLOAD_CLAIM_TOUCH: u64 = 30;

/// Upload one payload. Unencrypted payloads must match the manifest's image size and digest.
#[utoipa::path(put, path = "/api/v1/releases/{id}/payloads/{index}", tag = "releases",
    params(("id" = String, Path), ("index" = u32, Path, description = "the payload index from the release's `payloads`")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = ReleaseInfo),
              (status = 404, body = suitcase_protocol::ApiError, description = "no such release or payload index"),
              (status = 409, body = suitcase_protocol::ApiError, description = "already uploaded, or another upload of it is in progress"),
              (status = 413, body = suitcase_protocol::ApiError, description = "larger than the server's upload limit"),
              (status = 422, body = suitcase_protocol::ApiError, description = "does not match the manifest")),
    security(("management_token" = [])))]
pub(crate) async fn put_payload(
    State(state): State<AppState>,
    who: Manager,
    Path((id, index)): Path<(String, u32)>,
    body: Body,
) -> ApiResult<axum::Json<ReleaseInfo>> {
    who.require(Cap::Upload)?;
    let release = crate::api::release_found(&state, &id).await?;
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
        )
        .id(id.clone()));
    }
    let component = release
        .summary
        .components
        .iter()
        .find(|c| c.uri.as_deref() == Some(p.uri.as_str()));
    // The image itself (not ciphertext or a patch): the manifest says how large it is, so a
    // larger body is refused as it streams in, not after it filled the disk.
    let plain = component.filter(|c| !c.encrypted && c.source_component.is_none());
    let declared = plain.and_then(|c| c.image_size);
    let limit = declared.map_or(state.config.max_upload, |d| d.min(state.config.max_upload));
    let key = format!("releases/{id}/{index}-{}", crate::auth::new_id(""));
    // One upload per payload at a time: the claim is one conditional update, so of
    // concurrent uploads exactly one streams and the others are told at once.
    let now = state.now();
    if !state
        .db
        .payload_claim(&id, index, &key, now, now - UPLOAD_CLAIM_STALE)
        .await?
    {
        let again = state.db.release_get(&id).await?;
        let uploaded = again
            .as_ref()
            .and_then(|r| r.payloads.iter().find(|x| x.idx == index))
            .is_some_and(|x| x.object_key.is_some());
        return Err(if uploaded {
            ApiErr::conflict(
                "payload-exists",
                format!("payload {index} ({}) is already uploaded", p.uri),
            )
        } else {
            ApiErr::conflict(
                "upload-in-progress",
                format!("another upload of payload {index} ({}) is in progress", p.uri),
            )
            .hint("wait for it to finish (GET /api/v1/releases/{id} shows `uploaded`); an upload that stopped is forgotten after two minutes")
        }
        .id(id.clone()));
    }
    // Aborted when dropped: also when axum drops this handler (the client went away, the
    // server stops), so a dead upload's claim goes stale instead of being kept for ever.
    let toucher = AbortOnDrop({
        let state = state.clone();
        let (id, key) = (id.clone(), key.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(UPLOAD_CLAIM_TOUCH)).await;
                if let Err(e) = state.db.payload_touch(&id, index, &key, state.now()).await {
                    tracing::warn!(error = %e, "cannot refresh an upload claim");
                }
            }
        })
    });
    let stream = body.into_data_stream().map_err(|e| e.to_string()).boxed();
    let streamed = state.blobs.put_stream(&key, stream, limit).await;
    drop(toucher);
    let give_up = |e: ApiErr| async {
        state.blobs.delete(&key).await;
        if let Err(u) = state.db.payload_unclaim(&id, index, &key).await {
            tracing::warn!(error = %u, "cannot release an upload claim");
        }
        Err(e)
    };
    let (size, sha) = match streamed {
        Ok(x) => x,
        Err(crate::blobs::UploadError::TooLarge(_)) if declared.is_some() => {
            return give_up(
                ApiErr::unprocessable(
                    "payload-mismatch",
                    format!(
                        "payload {index} ({}) is larger than the {limit} bytes the manifest says; the upload was stopped there",
                        p.uri
                    ),
                )
                .hint("upload the image the release was built from"),
            )
            .await;
        }
        Err(e) => return give_up(e.into()).await,
    };
    // The bytes of another component's image: for an encrypted release, the plaintext (its
    // digest is in the manifest, for devices to check after decryption); serving it would
    // fail at every device's decryption, and leak the image. Said before any size or digest
    // mismatch, which would only mislead.
    let other = release.summary.components.iter().find(|c| {
        component.is_none_or(|me| !core::ptr::eq(*c, me))
            && c.image_digest
                .as_ref()
                .is_some_and(|(alg, d)| alg == "sha-256" && *d == sha)
    });
    if other.is_some() {
        let encrypted = release.summary.components.iter().any(|c| c.encrypted);
        let e = if encrypted {
            ApiErr::unprocessable(
                "plaintext-of-encrypted",
                format!(
                    "payload {index} ({}) is the encrypted image, but this is the plaintext",
                    p.uri
                ),
            )
            .hint("upload the ciphertext that `suitcase release build --encrypt-for` wrote (its --payload-out file, or ENVELOPE.0.payload next to the envelope)")
        } else {
            ApiErr::unprocessable(
                "payload-mismatch",
                format!(
                    "payload {index} ({}) is not the image the release installs; this upload is that image",
                    p.uri
                ),
            )
            .hint("upload the file `suitcase release build` wrote for this URI (its --payload-out file, or ENVELOPE.0.payload: a delta patch)")
        };
        return give_up(e).await;
    }
    if let Some(c) = plain {
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
            return give_up(
                ApiErr::unprocessable(
                    "payload-mismatch",
                    format!(
                        "payload {index} ({}) does not match the manifest: {problem}",
                        p.uri
                    ),
                )
                .hint("upload the image the release was built from"),
            )
            .await;
        }
    }
    if !state
        .db
        .payload_stored(&id, index, &key, size, &sha)
        .await?
    {
        return give_up(ApiErr::conflict(
            "upload-in-progress",
            format!(
                "payload {index} ({}) was taken over by another upload while this one stalled",
                p.uri
            ),
        ))
        .await;
    }
    crate::deltas::schedule(&state, &id, index);
    audit(
        &state,
        &who,
        "release.payload",
        &id,
        serde_json::json!({"index": index, "uri": p.uri, "bytes": size, "sha256": sha}),
    )
    .await?;
    let stored = crate::api::release_found(&state, &id).await?;
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
    let r = crate::api::release_found(&state, &id).await?;
    Ok(axum::Json(info(&state, &r)))
}

/// The campaigns that name a release (to deploy or to roll back to), with their states.
async fn campaigns_using(state: &AppState, id: &str) -> ApiResult<Vec<(String, CampaignState)>> {
    Ok(state
        .db
        .campaigns_naming_release(id)
        .await?
        .into_iter()
        .map(|c| (c.id, c.state))
        .collect())
}

fn in_use(id: &str, verb: &str, list: &[(String, CampaignState)]) -> ApiErr {
    let names: Vec<String> = list
        .iter()
        .take(10)
        .map(|(c, s)| format!("{c} ({})", s.name()))
        .collect();
    ApiErr::conflict(
        "release-in-use",
        format!(
            "release {id} cannot be {verb}: campaign(s) {} use it",
            names.join(", ")
        ),
    )
}

/// Archive a release: it stays, with its campaigns' history, but no new campaign may use it.
/// Refused while a campaign that is not over (draft, running, paused, rolled back) uses it.
#[utoipa::path(post, path = "/api/v1/releases/{id}/archive", tag = "releases",
    params(("id" = String, Path)),
    responses((status = 200, body = ReleaseInfo),
              (status = 409, body = suitcase_protocol::ApiError, description = "a live campaign uses it")),
    security(("management_token" = [])))]
pub(crate) async fn archive(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ReleaseInfo>> {
    who.require(Cap::Upload)?;
    let _ops = crate::engine::lock_ops(&state).await?;
    let mut r = crate::api::release_found(&state, &id).await?;
    let live: Vec<_> = campaigns_using(&state, &id)
        .await?
        .into_iter()
        .filter(|(_, s)| !matches!(s, CampaignState::Completed | CampaignState::Cancelled))
        .collect();
    if !live.is_empty() {
        return Err(in_use(&id, "archived", &live)
            .hint("wait for the campaign to finish, or cancel it first"));
    }
    state.db.release_set_archived(&id, true).await?;
    audit(
        &state,
        &who,
        "release.archive",
        &id,
        serde_json::json!({"name": r.name}),
    )
    .await?;
    r.archived = true;
    Ok(axum::Json(info(&state, &r)))
}

/// Delete a release that no campaign ever used (an upload mistake): its envelope, payload
/// records and deltas go; the payload files are removed by the store's sweeper. A release any
/// campaign used, even a finished one, is archived instead (the campaign's history refers to
/// it), and so is one another release's delta was made from.
#[utoipa::path(delete, path = "/api/v1/releases/{id}", tag = "releases",
    params(("id" = String, Path)),
    responses((status = 204, description = "deleted"),
              (status = 409, body = suitcase_protocol::ApiError, description = "a campaign used it, another release's delta is made from it, or it is a trust update the trust state in force was advanced through (trust-update-in-force)")),
    security(("management_token" = [])))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Cap::Upload)?;
    let _ops = crate::engine::lock_ops(&state).await?;
    let r = crate::api::release_found(&state, &id).await?;
    let used = campaigns_using(&state, &id).await?;
    if !used.is_empty() {
        return Err(in_use(&id, "deleted", &used)
            .hint("a release a campaign used stays for the campaign's history: archive it (POST /api/v1/releases/{id}/archive)"));
    }
    if state.db.release_is_delta_base(&id).await? {
        return Err(ApiErr::conflict(
            "release-is-delta-base",
            format!("release {id} cannot be deleted: another release's delta patch is made from its image"),
        )
        .hint("archive it instead"));
    }
    if let Err(e) = state.db.release_delete(&id).await {
        if e.downcast_ref::<crate::store::TrustUpdateInForce>()
            .is_some()
        {
            // The devices still below it could never receive it again, and uploading it again
            // is a rollback (docs/trust.md rule 4; SUIT manifest §8.4.2).
            return Err(ApiErr::conflict(
                "trust-update-in-force",
                format!("release {id} cannot be deleted: it is a trust update the registered trust state in force (suitcase fleet trust show) was advanced through; devices not yet updated still need it, and it could not be uploaded again (a rollback, docs/trust.md rule 4)"),
            )
            .hint("archive it instead (POST /api/v1/releases/{id}/archive); to really delete it, an admin first removes the trust state (suitcase fleet trust remove) and registers the right one again afterwards"));
        }
        return Err(e.into());
    }
    state.deltas.forget_release(&id);
    audit(
        &state,
        &who,
        "release.delete",
        &id,
        serde_json::json!({"name": r.name, "sequence_number": r.sequence_number}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
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
