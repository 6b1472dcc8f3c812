//! `fleet key add` and `fleet release upload`: what they read from files before anything goes
//! to the server, and an upload that carries on where an earlier one stopped.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use suitcase_client::{Error as ClientError, Reply};
use suitcase_protocol::ReleaseInfo;

use super::conn::Fleet;

/// The key file `fleet key add` sends, as text. A private key is refused here, before
/// anything goes over the network (the server refuses it too, but the secret must never
/// leave the signer's machine); the error names the file and never shows its contents.
pub(super) fn read_key(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if suitcase_host::keys::holds_private_key(&bytes) {
        bail!(
            "{f} is a private key: the server needs only the public key, and the private key \
             must stay with its signer (nothing was sent). Register the public key instead: \
             the .pub file `suitcase key generate --public FILE.pub` wrote, or make one with \
             `suitcase key public {f} -o {f}.pub`",
            f = path.display()
        );
    }
    Ok(match String::from_utf8(bytes.clone()) {
        Ok(text) if text.contains("-----BEGIN") => text,
        // COSE_Key files are binary CBOR (or already hex text).
        Ok(text) if text.trim().chars().all(|c| c.is_ascii_hexdigit()) => text.trim().to_owned(),
        _ => hex::encode(bytes),
    })
}

/// Uploads an envelope and the payload files; returns the release as the last answer had it.
pub(super) fn upload(
    f: &Fleet,
    envelope: &Path,
    payloads: &[PathBuf],
    name: Option<&str>,
    remediation: bool,
) -> Result<Reply<ReleaseInfo>> {
    let env = crate::input::read_binary(envelope)?;
    let rel = match f.block_on(f.client.upload_envelope_marked(env, name, remediation)) {
        Ok(r) => r,
        Err(ClientError::Api(ref r))
            if r.status == reqwest::StatusCode::CONFLICT
                && r.code() == Some("duplicate-release")
                && let Some(existing) = r.error.as_ref().and_then(|e| e.id.as_deref()) =>
        {
            // Uploaded before (perhaps without its payloads): carry on with that release,
            // so the same command finishes what an interrupted or envelope-only upload
            // started.
            let rel = f.call(f.client.release(existing))?;
            if remediation {
                // The mark the upload would have set, on the release it already is.
                f.call(f.client.set_remediation(
                    existing,
                    suitcase_protocol::mgmt::RemediationRequest { remediation: true },
                ))?;
                errln!("note: marked release {existing} remediation");
            }
            if rel.value.complete {
                errln!("note: this envelope is release {existing} already, with every payload");
            } else {
                errln!(
                    "note: this envelope is release {existing} already; uploading what it lacks"
                );
            }
            rel
        }
        Err(e) => return Err(f.error(e)),
    };
    let id = rel.value.id.clone();
    // Payloads already uploaded are skipped; files are matched to the rest.
    let slots: Vec<(u32, &str)> = rel
        .value
        .payloads
        .iter()
        .filter(|p| !p.uploaded)
        .map(|p| (p.index, p.uri.as_str()))
        .collect();
    if slots.is_empty() && !payloads.is_empty() {
        errln!("note: release {id} has every payload already; nothing to upload");
        return Ok(rel);
    }
    let mut used = vec![false; slots.len()];
    let mut last = None;
    for file in payloads {
        let fname = file.file_name().and_then(|f| f.to_str()).unwrap_or("");
        let pos = slots
            .iter()
            .position(|(_, uri)| !fname.is_empty() && uri.ends_with(fname))
            .filter(|&i| !used[i])
            .or_else(|| used.iter().position(|u| !u))
            .ok_or_else(|| {
                anyhow!(
                    "{}: the release has no payload left for it ({} payload(s))",
                    file.display(),
                    slots.len()
                )
            })?;
        used[pos] = true;
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let pb = indicatif::ProgressBar::new_spinner().with_message(format!(
            "uploading {} ({} bytes)",
            file.display(),
            bytes.len()
        ));
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        let (index, _) = slots[pos];
        last = Some(f.call(f.client.put_payload(&id, index, bytes))?);
        pb.finish_and_clear();
    }
    let last = last.unwrap_or(rel);
    if !last.value.complete {
        errln!(
            "note: release {id} still lacks payloads; run the same `suitcase fleet release upload ENVELOPE --payload FILE` to add them"
        );
    }
    Ok(last)
}
