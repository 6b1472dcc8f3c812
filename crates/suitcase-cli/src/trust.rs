//! `suitcase trust`: the root of trust (docs/trust.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use suitcase_author::signer::Signer;
use suitcase_host::keys::{holds_private_key, load_private, load_public, public_of};
use suitcase_manifest::{Actions, Reason};
use suitcase_trust::{Key, KeyId, Prefix, ReleaseSigner, ThresholdRule, TrustError, TrustState};

/// The `trust` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create the genesis trust state a device is provisioned with (sequence 0).
    ///
    /// The root keys (k-of-n, --threshold k) only sign trust updates; release signers
    /// (--signer) only sign releases. A key may not be both. The file written is the trust
    /// document, which `manifest check --trust FILE` and devices use as their trust.
    ///
    /// Example: suitcase trust init --root root1.pub --root root2.pub --root root3.pub
    ///   --threshold 2 --signer author.pub --out trust.cbor
    Init(InitArgs),
    /// Build the next trust update: add, remove or revoke release signers, change thresholds.
    ///
    /// Reads the state in force (--state), applies the changes, gives the result the next
    /// sequence number, and writes the trust update envelope (--out) signed by every --sign
    /// key, and the new state (--state-out). A device accepts the update only when at least
    /// the root threshold of distinct root keys signed it.
    ///
    /// Example (rotate the author key): suitcase trust update --state trust.cbor
    ///   --add-signer author2.pub --revoke author.pub --sign root1.key --sign root2.key
    ///   --out update-1.suit --state-out trust-1.cbor
    Update(UpdateArgs),
    /// Replace the root keys. The update must be signed by the threshold of the old root AND
    /// of the new root (TUF §5.3.4), so give --sign for keys of both.
    ///
    /// Example: suitcase trust rotate-root --state trust-1.cbor --new-root root4.pub
    ///   --new-root root5.pub --threshold 2 --sign root1.key --sign root2.key
    ///   --sign root4.key --sign root5.key --out update-2.suit --state-out trust-2.cbor
    RotateRoot(RotateArgs),
    /// Ownership transfer (RFC 8240 §5): install a new owner's root and release signers,
    /// remove the vendor's root and revoke every vendor release signer.
    ///
    /// The vendor signs with its root threshold; the new owner countersigns with its own
    /// root keys (`suitcase trust sign`), as the new root's threshold is needed too.
    /// Afterwards the vendor's keys authorise nothing on the device.
    ///
    /// Example: suitcase trust handover --state trust-2.cbor --new-root owner-root.pub
    ///   --new-signer owner-author.pub --sign root4.key --sign root5.key --out handover.suit;
    ///   then the new owner: suitcase trust sign handover.suit --key owner-root.key
    Handover(HandoverArgs),
    /// Add root signatures to a trust update (a co-signer: another root key holder, or the
    /// new owner in a handover). Earlier signatures stay valid.
    Sign(SignArgs),
    /// Check trust updates in order against a state, as a device would, and write the result.
    ///
    /// Each update must verify under the state in force when it is applied. Exit 1 with the
    /// reason when one is refused.
    Apply(ApplyArgs),
    /// Show a trust state or the state a trust update carries (without verifying it).
    Show(ShowArgs),
}

/// `trust init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// A root key (public or private key file; P-256 or Ed25519). Repeat for n roots.
    #[arg(long = "root", value_name = "KEY", required = true)]
    roots: Vec<PathBuf>,
    /// How many distinct root keys must sign a trust update (k of n).
    #[arg(long, value_name = "K", default_value_t = 1)]
    threshold: u8,
    /// A release signer for every component and action. Repeat for several.
    #[arg(long = "signer", value_name = "KEY")]
    signers: Vec<PathBuf>,
    /// Distinct release signers needed for every release.
    #[arg(long, value_name = "N", default_value_t = 1)]
    release_threshold: u8,
    /// Where to write the trust state.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Print the state as JSON.
    #[arg(long)]
    json: bool,
}

/// What a trust update changes.
#[derive(Debug, Args)]
pub(crate) struct Changes {
    /// Add a release signer (public or private key file).
    #[arg(long = "add-signer", value_name = "KEY")]
    add_signers: Vec<PathBuf>,
    /// Limit the signers added here to components under this prefix: hex segments
    /// separated by `/`, as `release build --component` writes them (e.g. `00`, `6170/01`).
    #[arg(long, value_name = "PREFIX")]
    component: Option<String>,
    /// What the signers added here may authorise: install, invoke or all.
    #[arg(long, value_name = "ACTIONS", default_value = "all")]
    actions: String,
    /// Remove a release signer (key file or 16-hex-digit key id) without revoking it.
    #[arg(long = "remove-signer", value_name = "KEY|KID")]
    remove_signers: Vec<String>,
    /// Revoke a key (key file or 16-hex-digit key id): it is removed and any release it
    /// signs is refused naming the revocation. Revocation is permanent (no later update may
    /// drop it) and at most 16 keys are revoked; when full, use --remove-signer.
    #[arg(long = "revoke", value_name = "KEY|KID")]
    revoke: Vec<String>,
    /// Distinct release signers needed for every release.
    #[arg(long, value_name = "N")]
    release_threshold: Option<u8>,
    /// Require N distinct release signers for components under PREFIX: `PREFIX=N`.
    #[arg(long = "rule", value_name = "PREFIX=N")]
    rules: Vec<String>,
    /// Add a freshness signer: an update server's Ed25519 freshness key (the file `suitcase
    /// server freshness-key -o FILE` writes), whose signed statements the devices then accept
    /// as fresh (docs/trust.md, "Freshness"). At most 2, so a key can be replaced without a gap.
    #[arg(long = "add-freshness-signer", value_name = "KEY")]
    add_freshness_signers: Vec<PathBuf>,
    /// Remove a freshness signer (key file or 16-hex-digit key id).
    #[arg(long = "remove-freshness-signer", value_name = "KEY|KID")]
    remove_freshness_signers: Vec<String>,
}

/// Output and signing options shared by every command that builds an update.
#[derive(Debug, Args)]
pub(crate) struct Build {
    /// The trust state in force (from `trust init`, `--state-out` or `trust apply`).
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    /// A root private key (file or pkcs11: URI) to sign with. Repeat: the device needs
    /// its root threshold of distinct keys.
    #[arg(long = "sign", value_name = "KEY")]
    sign: Vec<PathBuf>,
    /// The sequence number of the update (default: the state's + 1).
    #[arg(long, value_name = "N")]
    sequence: Option<u64>,
    /// Where to write the trust update envelope.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Where to write the new trust state.
    #[arg(long, value_name = "FILE")]
    state_out: Option<PathBuf>,
    /// Print the new state as JSON.
    #[arg(long)]
    json: bool,
}

/// `trust update`.
#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    #[command(flatten)]
    build: Build,
    #[command(flatten)]
    changes: Changes,
}

/// `trust rotate-root`.
#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    #[command(flatten)]
    build: Build,
    /// A key of the new root. Repeat for n keys.
    #[arg(long = "new-root", value_name = "KEY", required = true)]
    new_roots: Vec<PathBuf>,
    /// The new root threshold (k of the new n).
    #[arg(long, value_name = "K", default_value_t = 1)]
    threshold: u8,
}

/// `trust handover`.
#[derive(Debug, Args)]
pub(crate) struct HandoverArgs {
    #[command(flatten)]
    build: Build,
    /// A root key of the new owner. Repeat for n keys.
    #[arg(long = "new-root", value_name = "KEY", required = true)]
    new_roots: Vec<PathBuf>,
    /// The new owner's root threshold.
    #[arg(long, value_name = "K", default_value_t = 1)]
    threshold: u8,
    /// A release signer of the new owner. Repeat for several.
    #[arg(long = "new-signer", value_name = "KEY")]
    new_signers: Vec<PathBuf>,
}

/// `trust sign`.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The trust update.
    update: PathBuf,
    /// A root private key to add a signature with. Repeat for several.
    #[arg(long = "key", value_name = "KEY", required = true)]
    keys: Vec<PathBuf>,
    /// Where to write the signed update (default: in place).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// `trust apply`.
#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The trust state in force.
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    /// Trust updates, applied in order.
    #[arg(required = true)]
    updates: Vec<PathBuf>,
    /// Where to write the resulting state.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print {"verdict", "reason", "detail", "state"} as JSON.
    #[arg(long)]
    json: bool,
}

/// `trust show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// A trust state or a trust update.
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Init(a) => init(&a),
        Command::Update(a) => {
            let cur = load_state(&a.build.state)?;
            let mut next = cur;
            apply_changes(&mut next, &a.changes)?;
            build(&a.build, &cur, next)
        }
        Command::RotateRoot(a) => {
            let cur = load_state(&a.build.state)?;
            let mut next = cur;
            let roots = load_keys(&a.new_roots)?;
            next.set_roots(&roots, a.threshold)?;
            build(&a.build, &cur, next)
        }
        Command::Handover(a) => {
            let cur = load_state(&a.build.state)?;
            let roots = load_keys(&a.new_roots)?;
            let mut next = TrustState::genesis(&roots, a.threshold)?;
            for id in cur.revoked() {
                next.revoke(*id)?;
            }
            for s in cur.signers() {
                next.revoke(s.key.id())?;
            }
            for k in load_keys(&a.new_signers)? {
                next.add_signer(all_components(k))?;
            }
            build(&a.build, &cur, next)
        }
        Command::Sign(a) => {
            let update = crate::input::read_binary(&a.update)?;
            let signers = open_signers(&a.keys)?;
            let refs: Vec<&dyn Signer> = signers.iter().map(AsRef::as_ref).collect();
            let signed = suitcase_author::trust::cosign(&update, &refs)?;
            let out = a.out.as_ref().unwrap_or(&a.update);
            write(out, &signed)?;
            outln!(
                "signed {} ({} signature(s) added)",
                out.display(),
                refs.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply(a) => apply(&a),
        Command::Show(a) => {
            let bytes = crate::input::read_binary(&a.file)?;
            let state = match TrustState::decode(&bytes) {
                Ok(s) => s,
                Err(_) => suitcase_author::trust::peek(&bytes).with_context(|| {
                    format!(
                        "{}: neither a trust state nor a trust update",
                        a.file.display()
                    )
                })?,
            };
            print_state(&state, a.json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init(a: &InitArgs) -> Result<ExitCode> {
    let roots = load_keys(&a.roots)?;
    let mut state = TrustState::genesis(&roots, a.threshold)?;
    for k in load_keys(&a.signers)? {
        state.add_signer(all_components(k))?;
    }
    state.set_release_threshold(a.release_threshold);
    let doc = suitcase_author::trust::document(&state)?;
    write(&a.out, &doc)?;
    if !a.json {
        outln!("wrote trust state {} (sequence 0)", a.out.display());
    }
    print_state(&state, a.json)?;
    Ok(ExitCode::SUCCESS)
}

fn build(b: &Build, cur: &TrustState, mut next: TrustState) -> Result<ExitCode> {
    next.set_sequence(b.sequence.unwrap_or(cur.sequence().saturating_add(1)));
    if next.sequence() <= cur.sequence() {
        bail!(
            "--sequence {} is not above the state's {}: a device would refuse it as a rollback",
            next.sequence(),
            cur.sequence()
        );
    }
    // RFC 8240 §3: revocation is permanent; a device refuses an update that drops one.
    cur.check_successor(&next)?;
    if b.sign.is_empty() {
        bail!("give --sign with root private keys (the device needs its root threshold of them)");
    }
    let signers = open_signers(&b.sign)?;
    let refs: Vec<&dyn Signer> = signers.iter().map(AsRef::as_ref).collect();
    let update = suitcase_author::trust::build_update(&next, &refs)?;
    write(&b.out, &update)?;
    if let Some(path) = &b.state_out {
        write(path, &suitcase_author::trust::document(&next)?)?;
    }
    // Say now, not on the device, when the signatures are not enough.
    let verdict = cur.apply_update(&update);
    if !b.json {
        outln!(
            "wrote trust update {} (sequence {}, {} signature(s))",
            b.out.display(),
            next.sequence(),
            refs.len()
        );
        if let Err(e) = &verdict {
            outln!("  note: a device in the --state given would refuse it so far: {e}");
            outln!("  (add signatures with `suitcase trust sign`)");
        }
    }
    print_state(&next, b.json)?;
    Ok(ExitCode::SUCCESS)
}

fn apply(a: &ApplyArgs) -> Result<ExitCode> {
    let mut state = load_state(&a.state)?;
    for path in &a.updates {
        let update = crate::input::read_binary(path)?;
        match state.apply_update(&update) {
            Ok(next) => state = next,
            Err(e) => {
                if a.json {
                    let out = json!({"verdict": "reject", "reason": e.reason().code(),
                        "detail": format!("{}: {e}", path.display()), "state": state_json(&state)});
                    outln!("{}", serde_json::to_string_pretty(&out)?);
                } else {
                    outln!("REJECT {} ({}): {e}", path.display(), e.reason());
                }
                return Ok(ExitCode::from(1));
            }
        }
    }
    if let Some(out) = &a.out {
        write(out, &suitcase_author::trust::document(&state)?)?;
    }
    if a.json {
        let out = json!({"verdict": "accept", "reason": null, "detail": null, "state": state_json(&state)});
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!("ACCEPT: trust state now at sequence {}", state.sequence());
    }
    Ok(ExitCode::SUCCESS)
}

fn apply_changes(next: &mut TrustState, c: &Changes) -> Result<()> {
    let actions = match c.actions.as_str() {
        "install" => Actions::INSTALL,
        "invoke" => Actions::INVOKE,
        "all" => Actions::ALL,
        other => bail!("--actions {other}: use install, invoke or all"),
    };
    let component = match &c.component {
        None => Prefix::ALL,
        Some(p) => prefix(p)?,
    };
    for r in &c.remove_signers {
        let kid = key_id(r)?;
        if !next.remove_signer(&kid) {
            bail!(
                "--remove-signer {r}: no release signer has key id {}",
                hex::encode(kid)
            );
        }
    }
    for r in &c.revoke {
        next.revoke(key_id(r)?)?;
    }
    for k in load_keys(&c.add_signers)? {
        next.add_signer(ReleaseSigner {
            key: k,
            actions,
            component,
        })?;
    }
    if let Some(n) = c.release_threshold {
        next.set_release_threshold(n);
    }
    for r in &c.remove_freshness_signers {
        let kid = key_id(r)?;
        if !next.remove_freshness_signer(&kid) {
            bail!(
                "--remove-freshness-signer {r}: no freshness signer has key id {}",
                hex::encode(kid)
            );
        }
    }
    for k in load_keys(&c.add_freshness_signers)? {
        next.add_freshness_signer(k)?;
    }
    for r in &c.rules {
        let (p, n) = r
            .rsplit_once('=')
            .ok_or_else(|| anyhow!("--rule {r}: write PREFIX=N, e.g. app=2"))?;
        next.add_rule(ThresholdRule {
            component: prefix(p)?,
            threshold: n
                .parse()
                .with_context(|| format!("--rule {r}: N is a number"))?,
        })?;
    }
    next.check()?;
    Ok(())
}

fn all_components(key: Key) -> ReleaseSigner {
    ReleaseSigner {
        key,
        actions: Actions::ALL,
        component: Prefix::ALL,
    }
}

fn prefix(text: &str) -> Result<Prefix> {
    let segments = suitcase_author::release::parse_component(text)?;
    let encoded = suitcase_manifest::build::encode_component_id(&segments);
    Ok(Prefix::new(&encoded)?)
}

/// A key id from a key file or 16 hex digits.
fn key_id(text: &str) -> Result<KeyId> {
    if text.len() == 16
        && let Ok(bytes) = hex::decode(text)
        && let Ok(id) = KeyId::try_from(bytes.as_slice())
    {
        return Ok(id);
    }
    Ok(load_key(Path::new(text))?.id())
}

/// Loads a public key, or the public half of a private key file.
fn load_key(path: &Path) -> Result<Key> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let public = if holds_private_key(&bytes) {
        public_of(&load_private(path)?)?
    } else {
        load_public(path)?
    };
    suitcase_author::trust::trust_key(&public).with_context(|| path.display().to_string())
}

fn load_keys(paths: &[PathBuf]) -> Result<Vec<Key>> {
    paths.iter().map(|p| load_key(p)).collect()
}

fn open_signers(paths: &[PathBuf]) -> Result<Vec<Box<dyn Signer>>> {
    paths
        .iter()
        .map(|p| suitcase_author::signer::open(p).map_err(Into::into))
        .collect()
}

/// Reads a trust state file (raw CBOR or hex).
pub(crate) fn load_state(path: &Path) -> Result<TrustState> {
    let bytes = crate::input::read_binary(path)?;
    TrustState::decode(&bytes).map_err(|e| {
        anyhow!(
            "{}: {e}\n  a trust state is the file `suitcase trust init` or --state-out writes",
            path.display()
        )
    })
}

/// Whether a file holds a trust state (rather than a key).
pub(crate) fn is_state_file(path: &Path) -> bool {
    crate::input::read_binary(path).is_ok_and(|b| TrustState::decode(&b).is_ok())
}

/// What `manifest check` checks a release against: `None` for fixed anchors (no trust state
/// given and no --trust-update), else the trust state given with --trust (or a genesis state
/// whose roots are the --trust keys, 1-of-n) with every update applied in order, each
/// verified under the state in force; `Err` with the reason when an update is refused.
pub(crate) type CheckState = Result<TrustState, (Reason, String)>;

pub(crate) fn state_for_check(
    trust: &[PathBuf],
    updates: &[PathBuf],
) -> Result<Option<CheckState>> {
    let mut state = match trust {
        [one] if is_state_file(one) => load_state(one)?,
        _ if updates.is_empty() => return Ok(None),
        keys => TrustState::genesis(&load_keys(keys)?, 1)?,
    };
    for path in updates {
        let update = crate::input::read_binary(path)?;
        match state.apply_update(&update) {
            Ok(next) => state = next,
            Err(e) => {
                return Ok(Some(Err((
                    e.reason(),
                    format!("trust update {} refused: {e}", path.display()),
                ))));
            }
        }
    }
    Ok(Some(Ok(state)))
}

/// Checks a release against a trust state: `TrustState::verify_release` (signers,
/// thresholds, revocations, the trust store off limits), then `check` under the state's
/// release anchors and policy (the device run).
pub(crate) fn check_release(
    state: &CheckState,
    bytes: &[u8],
    time: Option<u64>,
    check: impl FnOnce(
        &[suitcase_manifest::TrustAnchor<'_>],
        &suitcase_manifest::TrustPolicy<'_>,
    ) -> Result<(), suitcase_manifest::Error>,
) -> Result<(), (Reason, String)> {
    let state = state.as_ref().map_err(Clone::clone)?;
    let refuse = |e: TrustError| (e.reason(), e.to_string());
    let envelope =
        suitcase_manifest::Envelope::decode(bytes).map_err(|e| refuse(TrustError::Manifest(e)))?;
    state.verify_release(&envelope, time).map_err(refuse)?;
    state
        .with_release_policy(time, check)
        .map_err(|e| refuse(state.explain_release_failure(&envelope, e)))
}

/// Names of the release signers (by index) for reports: `signer <kid>`.
pub(crate) fn signer_names(state: &TrustState, indices: &[usize]) -> Vec<String> {
    indices
        .iter()
        .filter_map(|&i| state.signers().get(i))
        .map(|s| format!("signer {}", hex::encode(s.key.id())))
        .collect()
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    suitcase_host::keys::write_atomic(path, bytes, false)?;
    Ok(())
}

fn key_json(k: &Key) -> Value {
    json!({"kid": hex::encode(k.id()), "kind": k.kind().name()})
}

fn state_json(s: &TrustState) -> Value {
    let component = |p: &Prefix| match p.component() {
        None => Value::Null,
        Some(_) => Value::String(describe_prefix(p)),
    };
    json!({
        "sequence": s.sequence(),
        "root_threshold": s.root_threshold(),
        "roots": s.roots().iter().map(key_json).collect::<Vec<_>>(),
        "release_threshold": s.release_threshold(),
        "signers": s.signers().iter().map(|r| {
            let mut v = key_json(&r.key);
            v["actions"] = json!(actions(r.actions));
            v["component"] = component(&r.component);
            v
        }).collect::<Vec<_>>(),
        "rules": s.rules().iter().map(|r| json!({"component": describe_prefix(&r.component), "threshold": r.threshold})).collect::<Vec<_>>(),
        "revoked": s.revoked().iter().map(hex::encode).collect::<Vec<_>>(),
        "freshness_signers": s.freshness_signers().iter().map(key_json).collect::<Vec<_>>(),
    })
}

fn actions(a: Actions) -> &'static str {
    if a == Actions::ALL {
        "all"
    } else if a == Actions::INVOKE {
        "invoke"
    } else {
        "install"
    }
}

fn describe_prefix(p: &Prefix) -> String {
    match p.component() {
        None => "*".into(),
        Some(id) => {
            let segs: Vec<Vec<u8>> = id.segments().map(<[u8]>::to_vec).collect();
            suitcase_author::release::show_component(&segs)
        }
    }
}

fn print_state(s: &TrustState, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(&state_json(s))?);
        return Ok(());
    }
    outln!("trust state, sequence {}", s.sequence());
    outln!(
        "  root: {} of {} key(s)",
        s.root_threshold(),
        s.roots().len()
    );
    for k in s.roots() {
        outln!("    {} {}", hex::encode(k.id()), k.kind().name());
    }
    outln!(
        "  release signers ({} needed per release):",
        s.release_threshold()
    );
    for r in s.signers() {
        outln!(
            "    {} {} components {} actions {}",
            hex::encode(r.key.id()),
            r.key.kind().name(),
            describe_prefix(&r.component),
            actions(r.actions)
        );
    }
    for r in s.rules() {
        outln!(
            "  rule: {} signers for {}",
            r.threshold,
            describe_prefix(&r.component)
        );
    }
    for id in s.revoked() {
        outln!("  revoked: {}", hex::encode(id));
    }
    for k in s.freshness_signers() {
        outln!(
            "  freshness signer: {} {}",
            hex::encode(k.id()),
            k.kind().name()
        );
    }
    Ok(())
}
