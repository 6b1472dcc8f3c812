//! `suitcase key`: generate keys and derive public keys.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use serde_json::json;
use suitcase_author::keys::{self, KeyAlg};
use suitcase_author::{pkcs11, signer};

/// The `key` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Generate a key pair (or a symmetric key) and write the private key file.
    ///
    /// Signing: es256, ed25519, hmac256 (symmetric), hss-lms (stateful: back the file up
    /// before every release, never copy it to two signers), ml-dsa-65. Receiving content
    /// keys: a128kw, a256kw (symmetric, per device or group), p256-ecdh, x25519, ml-kem-768.
    /// P-256 and Ed25519 keys are PKCS#8 PEM; the others are COSE_Key (binary CBOR).
    ///
    /// With --pkcs11 the key pair is made on a PKCS#11 token (an HSM, SoftHSM2) and the private
    /// key never leaves it (sensitive, not extractable); only the public key is written:
    ///
    ///   suitcase key generate --alg es256 --public author.pub \
    ///       --pkcs11 "pkcs11:token=release;object=author?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=pin.txt"
    ///
    /// Then sign with `release build --sign "pkcs11:..."` (docs/cli.md, "Keys on a token").
    Generate(GenerateArgs),
    /// Write the public key of a private key file or a token key (the shared secret itself for
    /// symmetric keys, since the device needs it). P-256 and Ed25519 as SPKI PEM, others as
    /// COSE_Key.
    ///
    ///   suitcase key public author.key -o author.pub
    ///   suitcase key public "pkcs11:token=release;object=author?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=pin.txt" -o author.pub
    ///
    /// For a token key it also reports how the token protects the private key.
    Public(PublicArgs),
    /// Move the next N signatures of an HSS-LMS key into a reservation file, so the master key
    /// can stay offline (removable or remote storage) while a signing host signs from the
    /// reservation:
    ///
    ///   suitcase key reserve --key /media/safe/author.hss --count 100 -o author-2026q1.hss
    ///   suitcase release build ... --sign author-2026q1.hss
    ///
    /// The master's state moves past the range on disk before the reservation is written, so a
    /// crash at any point skips one-time keys but never hands one out twice. A reservation holds
    /// the whole private key: protect it like the master, and never restore an old copy of
    /// either.
    Reserve(ReserveArgs),
    /// Issue an X.509 certificate for a P-256 key (Enhanced tier PKI): a self-signed root CA,
    /// an intermediate CA, or a release signer. Every certificate allows code signing, which
    /// devices require on the whole path.
    ///
    ///   suitcase key cert --key root.key --cn "Acme Root" --ca -o root.pem
    ///   suitcase key cert --key ops.key --cn "Acme Ops CA" --ca --issuer-key root.key --issuer-chain root.pem -o ops.pem
    ///   suitcase key cert --key signer.pub --cn "Acme Release 2026" --issuer-key ops.key --issuer-chain ops.pem -o signer-chain.pem
    ///
    /// The output holds the new certificate followed by the issuer's chain, ready for
    /// `release build --x5chain`. Devices trust the root with `manifest check --trust root.pem`.
    Cert(CertArgs),
}

/// Arguments of `key cert`.
#[derive(Debug, clap::Args)]
pub(crate) struct CertArgs {
    /// The subject's key: a P-256 private or public key file, or a `pkcs11:` URI.
    #[arg(long, value_name = "KEY|URI")]
    key: PathBuf,
    /// The subject's common name (make it unique: path building goes by names).
    #[arg(long)]
    cn: String,
    /// Make a CA certificate (may issue further certificates).
    #[arg(long)]
    ca: bool,
    /// The issuer's P-256 private key: a key file or a `pkcs11:` URI (a CA key on a token);
    /// without it the certificate is self-signed by --key.
    #[arg(long, requires = "issuer_chain", value_name = "KEY|URI")]
    issuer_key: Option<PathBuf>,
    /// The issuer's certificate file (its first certificate is the issuer; the file is appended).
    #[arg(long)]
    issuer_chain: Option<PathBuf>,
    /// Validity in days from now.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Where to write the PEM chain (new certificate first).
    #[arg(short, long)]
    output: PathBuf,
}

/// Arguments of `key reserve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReserveArgs {
    /// The master HSS-LMS key file (or a reservation, to split it further).
    #[arg(long)]
    key: PathBuf,
    /// How many signatures to reserve.
    #[arg(long)]
    count: u64,
    /// Where to write the reservation (created with mode 0600).
    #[arg(short, long)]
    output: PathBuf,
    /// Overwrite an existing file (its unused signatures are lost, never reused).
    #[arg(long)]
    force: bool,
    /// Print a JSON object: {"reservation", "first", "end", "count", "master_left"}.
    #[arg(long)]
    json: bool,
}

/// Arguments of `key generate`.
#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// The algorithm (es256 or ed25519 with --pkcs11).
    #[arg(long, value_parser = alg_names())]
    alg: String,
    /// Where to write the private key (created with mode 0600).
    #[arg(
        short,
        long,
        required_unless_present = "pkcs11",
        conflicts_with = "pkcs11"
    )]
    output: Option<PathBuf>,
    /// Make the key pair on a PKCS#11 token instead, named by an RFC 7512 URI:
    /// "pkcs11:token=LABEL;object=KEY?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=PINFILE".
    /// The private key stays on the token; give --public to write the public key.
    #[arg(long, value_name = "URI")]
    pkcs11: Option<String>,
    /// Also write the public key here.
    #[arg(long)]
    public: Option<PathBuf>,
    /// HSS-LMS tree levels: `h<height>w<winternitz>` per level. The default, h10w4,h10w4,
    /// allows 1,048,576 signatures.
    #[arg(long, default_value = "h10w4,h10w4")]
    hss_params: String,
    /// File format: `pem` (PKCS#8 / SPKI for es256, p256-ecdh and ed25519; COSE_Key for the
    /// rest) or `cose` (COSE_Key for every algorithm). With --pkcs11, the format of --public.
    #[arg(long, value_parser = ["pem", "cose"], default_value = "pem")]
    format: String,
    /// Overwrite an existing key file (a key on a token is never replaced).
    #[arg(long)]
    force: bool,
    /// Print a JSON object: {"alg", "private", "public", "kid"}; with --pkcs11, "private" is
    /// the URI (any PIN hidden) and "token" reports the private key's protection:
    /// {"sensitive", "extractable", "always_sensitive", "never_extractable", "value_readable"}.
    #[arg(long)]
    json: bool,
}

/// Arguments of `key public`.
#[derive(Debug, clap::Args)]
pub(crate) struct PublicArgs {
    /// The private key file, or a `pkcs11:` URI naming a key on a token.
    private: PathBuf,
    /// Where to write the public key.
    #[arg(short, long)]
    output: PathBuf,
    /// File format: `pem` (SPKI for P-256 and Ed25519, COSE_Key otherwise) or `cose`.
    #[arg(long, value_parser = ["pem", "cose"], default_value = "pem")]
    format: String,
    /// Print a JSON object: {"kind", "public", "kid", "pem"}, and for a token key "token":
    /// {"sensitive", "extractable", "always_sensitive", "never_extractable", "value_readable"}.
    #[arg(long)]
    json: bool,
}

fn alg_names() -> Vec<&'static str> {
    KeyAlg::ALL.iter().map(|a| a.name()).collect()
}

pub(crate) fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Generate(args) => generate(&args),
        Command::Public(args) => public(&args),
        Command::Reserve(args) => reserve(&args),
        Command::Cert(args) => cert(&args),
    }
}

fn reserve(args: &ReserveArgs) -> Result<ExitCode> {
    if args.output.exists() && !args.force {
        bail!(
            "{} exists; refusing to overwrite it (its unused signatures would be lost; use \
             --force if you mean it)",
            args.output.display()
        );
    }
    if std::fs::canonicalize(&args.key).ok() == std::fs::canonicalize(&args.output).ok()
        && args.output.exists()
    {
        bail!("--output must be another file than --key");
    }
    let r = suitcase_author::hss::reserve_file(&args.key, &args.output, args.count)?;
    if args.json {
        let out = json!({
            "reservation": args.output,
            "first": r.first,
            "end": r.end,
            "count": r.end - r.first,
            "master_left": r.master_left,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "reserved one-time keys {}..{} ({} signatures) of {} in {}; the master has {} left",
            r.first,
            r.end - 1,
            r.end - r.first,
            args.key.display(),
            args.output.display(),
            r.master_left
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cert(args: &CertArgs) -> Result<ExitCode> {
    use suitcase_author::x509::{Issuer, issue, read_certs, to_pem};
    let open_own = || {
        signer::open(&args.key).map_err(|e| {
            anyhow!(
                "{e}\n  a self-signed certificate needs the private key as --key (a key file \
                 or a pkcs11: URI), or give --issuer-key and --issuer-chain"
            )
        })
    };
    let self_signed = args.issuer_key.is_none() || args.issuer_chain.is_none();
    // A token key that signs its own certificate is opened once: one login, and its public
    // key (the subject's) read once.
    let mut own = match signer::pkcs11_uri(&args.key) {
        Some(_) if self_signed => Some(signer::open(&args.key)?),
        _ => None,
    };
    let subject_key = match (&own, signer::pkcs11_uri(&args.key)) {
        (Some(own), _) => own.public_key().clone(),
        (None, Some(uri)) => pkcs11::public_key(uri)?.1,
        (None, None) => keys::load_public(&args.key)?,
    };
    let subject = match subject_key {
        keys::PublicKey::P256(k) => k,
        other => {
            return Err(anyhow!(
                "{}: a {} key cannot be certified; use a P-256 (es256) key",
                signer::display_reference(&args.key),
                other.kind()
            ));
        }
    };
    let (der, mut chain) = match (&args.issuer_key, &args.issuer_chain) {
        (Some(key), Some(chain_path)) => {
            let issuer = signer::open(key)?;
            let chain = read_certs(chain_path)?;
            let issuer_cert = chain
                .first()
                .ok_or_else(|| anyhow!("{}: no certificate", chain_path.display()))?;
            (
                issue(
                    &subject,
                    &args.cn,
                    args.ca,
                    args.days,
                    &Issuer::CaBy {
                        signer: issuer.as_ref(),
                        cert: issuer_cert,
                    },
                )?,
                chain,
            )
        }
        _ => {
            let own = match own.take() {
                Some(own) => own,
                None => open_own()?,
            };
            (
                issue(
                    &subject,
                    &args.cn,
                    args.ca,
                    args.days,
                    &Issuer::SelfSignedBy(own.as_ref()),
                )?,
                Vec::new(),
            )
        }
    };
    chain.insert(0, der);
    keys::write_atomic(&args.output, to_pem(&chain).as_bytes(), false)?;
    outln!(
        "wrote {} ({} certificate(s), {} valid {} days)",
        args.output.display(),
        chain.len(),
        if args.ca { "CA" } else { "signer" },
        args.days
    );
    Ok(ExitCode::SUCCESS)
}

fn generate(args: &GenerateArgs) -> Result<ExitCode> {
    let alg =
        KeyAlg::from_name(&args.alg).ok_or_else(|| anyhow!("unknown algorithm {}", args.alg))?;
    if let Some(uri) = &args.pkcs11 {
        return generate_on_token(args, uri);
    }
    let output = args
        .output
        .as_ref()
        .ok_or_else(|| anyhow!("give -o KEY_FILE (or --pkcs11 URI)"))?;
    if output.exists() && !args.force {
        return Err(anyhow!(
            "{} exists; refusing to overwrite a key (use --force if you mean it)",
            output.display()
        ));
    }
    let generated = keys::generate(alg, &args.hss_params)?;
    keys::write_atomic(output, &generated.private, true)?;
    if args.format == "cose"
        && let Some(cose) = keys::load_private(output)?.encode_cose()?
    {
        keys::write_atomic(output, &cose, true)?;
    }
    if let Some(public) = &args.public {
        let key = keys::load_public(output)?;
        keys::write_atomic(public, &public_bytes(&key, &args.format)?.0, false)?;
    }
    if args.json {
        let out = json!({
            "alg": alg.name(),
            "private": output,
            "public": args.public,
            "kid": hex::encode(&generated.kid),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "wrote {} key {} (kid {})",
            alg.name(),
            output.display(),
            hex::encode(&generated.kid)
        );
        if let Some(p) = &args.public {
            outln!("wrote its public key {}", p.display());
        }
        if alg == KeyAlg::HssLms {
            outln!(
                "note: HSS-LMS keys are stateful; each signature updates the file. Never restore an old copy or sign from two places; `suitcase key reserve` splits off signatures for another signer."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a public key file: SPKI PEM, or COSE_Key with `--format cose`.
fn public_bytes(key: &keys::PublicKey, format: &str) -> Result<(Vec<u8>, bool)> {
    Ok(if format == "cose" {
        (key.encode_cose()?, false)
    } else {
        key.encode()?
    })
}

fn protection_json(p: &pkcs11::Protection) -> serde_json::Value {
    json!({
        "sensitive": p.sensitive,
        "extractable": p.extractable,
        "always_sensitive": p.always_sensitive,
        "never_extractable": p.never_extractable,
        "value_readable": p.value_readable,
    })
}

fn print_protection(p: &pkcs11::Protection) {
    outln!(
        "  private key on the token: sensitive {}, extractable {}, value readable {}",
        p.sensitive,
        p.extractable,
        p.value_readable
    );
    if !p.sensitive || p.extractable || p.value_readable {
        errln!(
            "warning: this private key can leave the token; generate a new one with \
             `suitcase key generate --pkcs11` (sensitive, not extractable)"
        );
    }
}

fn generate_on_token(args: &GenerateArgs, uri: &str) -> Result<ExitCode> {
    let alg = pkcs11::TokenAlg::from_name(&args.alg).ok_or_else(|| {
        anyhow!(
            "--alg {} cannot be made on a PKCS#11 token here: use es256 or ed25519 \
             (keep hss-lms, ml-dsa-65 and the others in key files)",
            args.alg
        )
    })?;
    if args.format == "cose" && args.public.is_none() {
        bail!("--format cose applies to --public; give --public FILE");
    }
    let (key, protection) = pkcs11::generate(uri, alg)?;
    if let Some(public) = &args.public {
        keys::write_atomic(public, &public_bytes(&key, &args.format)?.0, false)?;
    }
    let shown = pkcs11::redact(uri);
    if args.json {
        let out = json!({
            "alg": alg.name(),
            "private": shown,
            "public": args.public,
            "kid": hex::encode(key.kid()),
            "token": protection_json(&protection),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "made {} key {shown} on the token (kid {})",
            alg.name(),
            hex::encode(key.kid())
        );
        print_protection(&protection);
        match &args.public {
            Some(p) => outln!("wrote its public key {}", p.display()),
            None => outln!("read its public key with `suitcase key public URI -o KEY.pub`"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn public(args: &PublicArgs) -> Result<ExitCode> {
    // A token key comes with how the token protects its private half.
    let (key, protection) = match signer::pkcs11_uri(&args.private) {
        Some(uri) => {
            let (_, key, protection) = pkcs11::public_key(uri)?;
            (key, Some(protection))
        }
        None => (keys::load_public(&args.private)?, None),
    };
    let (bytes, pem) = public_bytes(&key, &args.format)?;
    let symmetric = matches!(key, keys::PublicKey::Symmetric { .. });
    keys::write_atomic(&args.output, &bytes, !key.is_authenticator() || symmetric)?;
    if args.json {
        let mut out = json!({"kind": key.kind(), "public": args.output, "kid": hex::encode(key.kid()), "pem": pem});
        if let Some(p) = &protection {
            out["token"] = protection_json(p);
        }
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "wrote {} public key {} (kid {})",
            key.kind(),
            args.output.display(),
            hex::encode(key.kid())
        );
        if let Some(p) = &protection {
            print_protection(p);
        }
        if symmetric {
            outln!(
                "note: a symmetric key has no public half; this file is the secret itself. Provision it to devices over a protected channel."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
