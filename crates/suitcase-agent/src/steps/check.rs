//! NTIA step 5, Check: the envelope authenticated, and the update's sections run in probe
//! mode (anti-rollback, vendor, class, components, sizes against capacity), the offer's
//! payloads all fetched by the manifest, and a decryption key held for every encrypted
//! payload. Receive runs it before any payload is downloaded.

use suitcase_manifest::VerifiedManifest;
use suitcase_protocol::Step;

use super::{Done, StepResult};
use crate::ctx::Ctx;
use crate::error::{Stop, fail};
use crate::platform::Mode;
use crate::state::Journal;
use crate::verified::{
    Authentic, UPDATE_SECTIONS, authenticated, platform, preset_running, read_envelope,
    suit_failure,
};

pub(crate) fn check(ctx: &Ctx, j: &mut Journal) -> StepResult {
    let step = Step::Check;
    if ctx.cfg.trust.state.is_some() {
        let bytes = read_envelope(ctx, j)?;
        if crate::trust::is_trust_update(&bytes) {
            return trust_update(ctx, j, &bytes);
        }
    }
    let ((sequence, detail), writers) = authenticated(ctx, j, step, |a| {
        Ok((probe(ctx, j, step, a)?, crate::verified::writers_of(a)))
    })?;
    j.sequence = sequence;
    j.writers = writers;
    Ok(Done::Success(detail))
}

/// Check of a trust update (docs/trust.md): applied with `TrustState::apply_update` under the
/// state in force, which authenticates it with the **root** keys only (a release signer's
/// signature never counts, TUF §2.1.1 role separation), refuses a replay or an older update
/// (anti-rollback of the trust sequence, manifest §8.4.2, TUF §5.3.5), and keeps every
/// revocation (RFC 8240 §3). Run inside Receive (before anything else is downloaded) it only
/// decides; run as the Check step it stores the new state atomically. The steps after Check
/// then have nothing to install.
fn trust_update(ctx: &Ctx, j: &mut Journal, bytes: &[u8]) -> StepResult {
    let step = Step::Check;
    if crate::bundle::is_bundle_offer(&j.offer) {
        // A bundle's trust updates are applied before a release is picked
        // (`bundle::apply_trust_updates`, docs/bundles.md §3); one listed as a release (an
        // index nobody checked) is not applied here.
        return Err(fail(
            step,
            suitcase_manifest::Reason::Malformed.code(),
            "a trust update offered as a release of an offline bundle is refused: a bundle carries trust updates beside its releases (suitcase bundle create --trust-update FILE), and the agent applies those before it picks a release",
        ));
    }
    // A trust update fetches nothing (its document is integrated): any payload the offer
    // lists is extraneous (RFC 9019 §4, TUF "extraneous dependencies"), refused before it
    // is downloaded.
    if let Some(p) = j.offer.payloads.first() {
        return Err(fail(
            step,
            suitcase_manifest::Reason::Fetch.code(),
            format!(
                "the offer adds payload 0 {:?} (from {}, {} bytes) to a trust update, which fetches nothing: refused before any payload is downloaded",
                p.uri, p.url, p.size
            ),
        ));
    }
    let current = crate::trust::in_force(ctx)?.ok_or_else(|| {
        crate::error::AgentError::Local("trust.state is set but no trust state is in force".into())
    })?;
    // Run again after a crash between storing the state and journalling the next step: the
    // state this update carries is already in force.
    if j.step == Step::Check && j.trust_update == Some(current.sequence()) {
        j.sequence = current.sequence();
        return Ok(Done::Success(format!(
            "trust update applied (before a restart); now {}",
            crate::trust::describe(&current)
        )));
    }
    let next = current.apply_update(bytes).map_err(|e| {
        fail(
            step,
            e.reason().code(),
            format!(
                "trust update refused: {e}; the trust state in force (sequence {}) is kept",
                current.sequence()
            ),
        )
    })?;
    // docs/trust.md "Freshness": a trust update is an offer too; the statement must bind it
    // (its manifest digest and trust sequence), or a fresh answer for a release could carry
    // any root-signed update the server did not offer this device (mix-and-match, RFC 9019
    // §4). Checked in Receive's decide-only run and again before the state is stored;
    // `apply_update` changed nothing yet. Bundle offers were refused above.
    let digest = suitcase_manifest::Envelope::decode(bytes)
        .and_then(|e| e.authentication())
        .map_err(|e| fail(step, e.reason().code(), format!("trust update: {e}")))?;
    crate::freshness::check_offer(ctx, step, digest.digest.bytes, next.sequence())?;
    j.sequence = next.sequence();
    if j.step != Step::Check {
        // Receive's check before download: decide only.
        return Ok(Done::Success(String::new()));
    }
    j.trust_update = Some(next.sequence());
    ctx.state.save_journal(j)?;
    crate::trust::store(ctx, &next)?;
    Ok(Done::Success(format!(
        "trust update applied: trust state {} replaced by {} (signed by the root in force)",
        current.sequence(),
        crate::trust::describe(&next)
    )))
}

/// Check on the authenticated envelope: the bundle's release id, the update sections run
/// against a probe platform, a key for every encrypted payload. The manifest's sequence
/// number and the report's detail.
fn probe(ctx: &Ctx, j: &Journal, step: Step, a: &Authentic<'_>) -> Result<(u64, String), Stop> {
    let (v, installed) = (a.manifest(), a.installed());
    // A bundle's index is not trusted, and the release id of a bundle offer comes from it:
    // it must name the manifest that was verified (its digest, `bundle_release_id`), or the
    // reports, `SUITCASE_RELEASE_ID` and `installed` would credit another release (docs/bundles.md
    // §4: the server records an offline install under the release its reports name).
    if crate::bundle::is_bundle_offer(&j.offer) {
        let id = crate::bundle::bundle_release_id(&hex::encode(v.digest().as_bytes()));
        if j.offer.release_id != id {
            return Err(fail(
                step,
                suitcase_manifest::Reason::Digest.code(),
                format!(
                    "the bundle's index names this release {:?}, but its envelope's manifest digest is {id}: refused",
                    j.offer.release_id
                ),
            ));
        }
    }
    // docs/trust.md "Freshness": the envelope is the offer the statement bound (mix-and-match).
    if !crate::bundle::is_bundle_offer(&j.offer) {
        crate::freshness::check_offer(ctx, step, v.digest().as_bytes(), v.sequence_number())?;
    }
    let mut probe = platform(ctx, a, Mode::Probe, Vec::new());
    preset_running(ctx, a, &mut probe)?;
    // The core's processor, anti-rollback against the installed sequence number; a probe
    // that stopped at its first side effect has checked all it can. A root manifest with
    // SUIT dependencies (draft-ietf-suit-trust-domains; an operator's root wrapping an
    // author's manifest, `suitcase manifest wrap`) runs with every dependency authenticated
    // under the agent's anchors and policy before any of its commands runs (§5.1,
    // `Authentic::dependencies`): the root's dependency-resolution fetches the integrated
    // dependency, checks it against the root's digest (§5.6.4) and processes it, all before
    // the first side effect, so a tampered, substituted or untrusted dependency is refused
    // here, named, before any payload byte is downloaded. Only integrated dependencies are
    // used (no buffer for one fetched by URI: that fetch is refused).
    if let Err((e, failure)) = a.run_sections(&mut probe, &UPDATE_SECTIONS)
        && (failure.is_some() || !probe.side_effect)
    {
        let Stop::Fail(mut f) = suit_failure(step, &e, &probe) else {
            return Err(suit_failure(step, &e, &probe));
        };
        if let Some(failure) = failure {
            f.detail = format!("{}: {failure}", f.detail);
        }
        return Err(Stop::Fail(f));
    }
    // TUF "extraneous dependencies", RFC 9019 §4: the signed manifest is the only authority
    // on what the device fetches; the offer only says where. A payload it adds is refused
    // here, before any payload byte is downloaded. The manifests are the release's and its
    // authenticated dependencies' (whose payloads a wrapped release fetches).
    let manifests: Vec<&VerifiedManifest<'_>> = std::iter::once(v).chain(&a.wrapped).collect();
    extraneous(&manifests, &j.offer.payloads)
        .map_err(|detail| fail(step, suitcase_manifest::Reason::Fetch.code(), detail))?;
    let encrypted = decryptable(ctx, &manifests).map_err(|detail| {
        fail(
            step,
            suitcase_manifest::Error::Decrypt.reason().code(),
            detail,
        )
    })?;
    Ok((
        v.sequence_number(),
        format!(
            "authentic (signed by {}{}); sequence number {} {}; applicable to this device (vendor, class, components, sizes){}",
            a.signers.join(", "),
            match a.wrapped.len() {
                0 => String::new(),
                n => format!(
                    "; {n} SUIT dependenc{} authenticated under its own signer{}",
                    if n == 1 { "y" } else { "ies" },
                    if n == 1 { "" } else { "s" }
                ),
            },
            v.sequence_number(),
            installed.map_or_else(
                || "(nothing installed yet)".to_owned(),
                |s| format!("is newer than the installed {s}")
            ),
            match encrypted {
                0 => String::new(),
                n => format!("; holds the key for {n} encrypted payload(s)"),
            },
        ),
    ))
}

/// Whether the offer lists only payloads the manifest fetches, each once: every offered
/// `uri` must be the value of a uri parameter (draft-ietf-suit-manifest §8.4.8.9) that the
/// shared sequence or an update section sets, in any branch of a try-each. What is wrong,
/// naming the payload.
pub(crate) fn extraneous(
    manifests: &[&VerifiedManifest<'_>],
    offered: &[suitcase_protocol::PayloadOffer],
) -> Result<(), String> {
    use suitcase_manifest::{Command, CommandSequence, Parameter, ParameterMap, SectionState};

    /// Nesting is bounded by the decoder already; a second bound, as in [`decryptable`].
    const MAX_DEPTH: usize = 16;

    fn map<'a>(p: &ParameterMap<'a>, uris: &mut Vec<&'a str>) {
        for param in p.iter() {
            if let Parameter::Uri(u) = param {
                uris.push(u);
            }
        }
    }

    fn walk<'a>(seq: &CommandSequence<'a>, depth: usize, uris: &mut Vec<&'a str>) {
        if depth > MAX_DEPTH {
            return;
        }
        for (_, command) in seq.iter() {
            match command {
                Command::OverrideParameters(p) | Command::SetParameters(p) => map(&p, uris),
                Command::OverrideMultiple(m) => {
                    for (_, p) in m.iter() {
                        map(&p, uris);
                    }
                }
                Command::RunSequence(s) => walk(&s, depth + 1, uris),
                Command::TryEach(t) => {
                    for branch in t.branches() {
                        walk(&branch, depth + 1, uris);
                    }
                }
                _ => {}
            }
        }
    }

    let mut uris = Vec::new();
    for v in manifests {
        if let Some(shared) = &v.manifest().shared_sequence {
            walk(shared, 0, &mut uris);
        }
        for section in UPDATE_SECTIONS {
            if let SectionState::Present(seq) = v.section(section) {
                walk(&seq, 0, &mut uris);
            }
        }
    }
    for (i, p) in offered.iter().enumerate() {
        if offered.iter().take(i).any(|q| q.uri == p.uri) {
            return Err(format!(
                "the offer lists payload {:?} twice (again as payload {i}, from {}): refused before any payload is downloaded",
                p.uri, p.url
            ));
        }
        if !uris.iter().any(|u| *u == p.uri) {
            return Err(format!(
                "the offer adds payload {i} {:?} (from {}, {} bytes), which the signed manifest never fetches: refused before any payload is downloaded (the manifest alone says what a device fetches)",
                p.uri, p.url, p.size
            ));
        }
    }
    Ok(())
}

/// Whether this device holds a key for every encrypted payload of the update: each
/// encryption-info parameter (SUIT_Encryption_Info, draft-ietf-suit-firmware-encryption-26
/// §5, as `suitcase_manifest::encryption` cites it) the shared sequence and the update
/// sections set must give up its content key to one of `trust.decrypt`, so that a release
/// encrypted for other devices is refused at Check, before its payloads are downloaded. In a try-each, one branch whose payloads can all be decrypted is enough (the
/// processor takes the first branch that succeeds). Returns how many encryption infos were
/// unwrapped, or what is missing.
pub(crate) fn decryptable(ctx: &Ctx, manifests: &[&VerifiedManifest<'_>]) -> Result<usize, String> {
    use suitcase_manifest::{Command, CommandSequence, Parameter, ParameterMap, SectionState};

    /// Nesting is bounded by the decoder already (try-each and run-sequence depth); this is
    /// a second bound that never panics or recurses without end whatever the input.
    const MAX_DEPTH: usize = 16;

    fn map(ctx: &Ctx, p: &ParameterMap<'_>, n: &mut usize) -> Result<(), String> {
        for param in p.iter() {
            let Parameter::EncryptionInfo(raw) = param else {
                continue;
            };
            let info = suitcase_manifest::encryption::EncryptionInfo::decode(raw)
                .map_err(|e| format!("the manifest's encryption info is unreadable: {e}"))?;
            let mut cek = [0u8; 32];
            let unwrapped = ctx.cfg.trust.keys.content_key(&info, &mut cek);
            cek.fill(0);
            if unwrapped.is_err() {
                return Err("a payload is encrypted for other devices: no key in trust.decrypt recovers its content key (nothing downloaded)".into());
            }
            *n += 1;
        }
        Ok(())
    }

    fn walk(
        ctx: &Ctx,
        seq: &CommandSequence<'_>,
        depth: usize,
        n: &mut usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("the manifest's command sequences nest too deeply".into());
        }
        for (_, command) in seq.iter() {
            match command {
                Command::OverrideParameters(p) | Command::SetParameters(p) => map(ctx, &p, n)?,
                Command::OverrideMultiple(m) => {
                    for (_, p) in m.iter() {
                        map(ctx, &p, n)?;
                    }
                }
                Command::RunSequence(s) => walk(ctx, &s, depth + 1, n)?,
                Command::TryEach(t) => {
                    let mut first_error = None;
                    let mut ok = t.allow_all_fail;
                    for branch in t.branches() {
                        let mut k = 0;
                        match walk(ctx, &branch, depth + 1, &mut k) {
                            Ok(()) => {
                                ok = true;
                                *n += k;
                                break;
                            }
                            Err(e) => {
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                    if !ok && let Some(e) = first_error {
                        return Err(e);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    let mut n = 0;
    for v in manifests {
        if let Some(shared) = &v.manifest().shared_sequence {
            walk(ctx, shared, 0, &mut n)?;
        }
        for section in UPDATE_SECTIONS {
            if let SectionState::Present(seq) = v.section(section) {
                walk(ctx, &seq, 0, &mut n)?;
            }
        }
    }
    Ok(n)
}

/// Every image-digest parameter (manifest §8.4.8.6) the shared sequence and the sections of
/// `v` set, for any component: how a dependent names its dependencies (trust-domains §5.2.2),
/// for `crate::verified::dependencies_of`.
pub(crate) fn image_digests<'a>(
    v: &VerifiedManifest<'a>,
) -> Vec<suitcase_manifest::SuitDigest<'a>> {
    use suitcase_manifest::{
        Command, CommandSequence, Parameter, ParameterMap, Section, SectionState,
    };

    /// Nesting is bounded by the decoder already; a second bound, as in [`decryptable`].
    const MAX_DEPTH: usize = 16;

    fn map<'a>(p: &ParameterMap<'a>, out: &mut Vec<suitcase_manifest::SuitDigest<'a>>) {
        for param in p.iter() {
            if let Parameter::ImageDigest(d) = param {
                out.push(d);
            }
        }
    }

    fn walk<'a>(
        seq: &CommandSequence<'a>,
        depth: usize,
        out: &mut Vec<suitcase_manifest::SuitDigest<'a>>,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        for (_, command) in seq.iter() {
            match command {
                Command::OverrideParameters(p) | Command::SetParameters(p) => map(&p, out),
                Command::OverrideMultiple(m) => {
                    for (_, p) in m.iter() {
                        map(&p, out);
                    }
                }
                Command::RunSequence(s) => walk(&s, depth + 1, out),
                Command::TryEach(t) => {
                    for branch in t.branches() {
                        walk(&branch, depth + 1, out);
                    }
                }
                _ => {}
            }
        }
    }

    let mut out = Vec::new();
    if let Some(shared) = &v.manifest().shared_sequence {
        walk(shared, 0, &mut out);
    }
    for section in Section::ALL {
        if let SectionState::Present(seq) = v.section(section) {
            walk(&seq, 0, &mut out);
        }
    }
    out
}
