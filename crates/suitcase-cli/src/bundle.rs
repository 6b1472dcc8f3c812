//! `suitcase bundle`: offline bundles of signed releases and their payloads, for devices
//! that never reach the server (docs/bundles.md). The format and its reader are
//! `suitcase_agent::bundle`, shared with the agent that installs from them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use suitcase_agent::bundle::{self, Entry, Index, Member, Payload, Release};
use suitcase_manifest::Envelope;

/// The `bundle` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Write one or more signed releases and their payloads into one bundle file (a tar) or,
    /// with --dir, a directory (e.g. on a USB stick).
    ///
    ///   suitcase bundle create -o update.bundle app-7.suit --payload app-7.bin
    ///   suitcase bundle create -o /media/usb/suitcase --dir app-7.suit mcu-3.suit \
    ///       --payload https://fw.example.com/app-7.bin=build/app.bin
    ///
    /// Each payload the manifest fetches (by URI) must be found: a --payload URI=FILE naming
    /// its URI, a --payload FILE whose name ends the URI, the file `release build` wrote next
    /// to the envelope (RELEASE.suit.N.payload), or a file next to the envelope named like the
    /// URI's last segment. With a single release, a --payload FILE that matches no URI goes to
    /// the next payload in order (as `suitcase fleet release upload` does).
    ///
    /// Checked here: every envelope parses, and every plaintext payload has the size and
    /// SHA-256 its manifest declares. Signatures are not checked: the device does, with the
    /// same checks as an update from the server. Install with
    /// `suitcase agent --config agent.toml --bundle PATH`.
    ///
    /// Trust updates (`suitcase trust update|rotate-root|handover --out FILE`, docs/trust.md)
    /// travel in the same bundle with --trust-update FILE: a device with a trust state applies
    /// them, in sequence order and each under the root in force, before it picks a release.
    Create(CreateArgs),
    /// Show what a bundle holds: each release (sequence number, vendor, class, components)
    /// and its payloads by URI, with sizes and SHA-256.
    List {
        /// The bundle file or directory.
        bundle: PathBuf,
        /// Print the index as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `bundle create`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// Signed envelopes (`suitcase release build -o RELEASE.suit`), one per release.
    #[arg(required_unless_present = "trust_updates", value_name = "RELEASE.suit")]
    releases: Vec<PathBuf>,
    /// A trust update to carry (`suitcase trust update ... --out FILE`); repeat for a chain.
    /// The device applies them before the bundle's releases (docs/bundles.md §3).
    #[arg(long = "trust-update", value_name = "FILE")]
    trust_updates: Vec<PathBuf>,
    /// Where to write the bundle (refused if it exists).
    #[arg(short, long)]
    output: PathBuf,
    /// Write a directory (index.json and the files) instead of one tar file.
    #[arg(long)]
    dir: bool,
    /// A payload: URI=FILE for the payload the manifest fetches from URI, or FILE (matched to
    /// the URI that ends with its name). Repeat for each payload.
    #[arg(long = "payload", value_name = "[URI=]FILE")]
    payloads: Vec<String>,
    /// Print what was written as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(c: Command) -> Result<ExitCode> {
    match c {
        Command::Create(a) => create(&a),
        Command::List { bundle, json } => list(&bundle, json),
    }
}

/// A payload the manifests fetch, and the file found for it.
struct Wanted {
    release: usize,
    uri: String,
    /// The image's declared size and SHA-256, when the payload is the plaintext image.
    expect: Option<(Option<u64>, Option<String>)>,
    file: Option<PathBuf>,
}

fn sha256_file(p: &Path) -> Result<(u64, String)> {
    let len = std::fs::metadata(p)
        .with_context(|| format!("cannot read {}", p.display()))?
        .len();
    let digest =
        suitcase_agent::http::sha256_file(p).map_err(|e| anyhow!("{}: {e}", p.display()))?;
    Ok((len, digest))
}

fn create(a: &CreateArgs) -> Result<ExitCode> {
    // Releases, then trust updates: the index lists both (a trust update as a release of the
    // trust store component that fetches nothing, `bundle::is_listed_trust_update`).
    let envelopes: Vec<PathBuf> = a.releases.iter().chain(&a.trust_updates).cloned().collect();
    // What agents read of a bundle (bundle::MAX_*): refused here rather than on the device.
    if envelopes.len() > bundle::MAX_RELEASES {
        bail!(
            "{} releases given; agents read at most {} from one bundle (make several bundles)",
            envelopes.len(),
            bundle::MAX_RELEASES
        );
    }
    let mut releases: Vec<Release> = Vec::new();
    let mut wanted: Vec<Wanted> = Vec::new();
    for (ri, path) in envelopes.iter().enumerate() {
        let bytes = crate::input::read_binary(path)?;
        if bytes.len() as u64 > suitcase_agent::MAX_ENVELOPE {
            bail!(
                "{}: the envelope is {} bytes; agents accept at most {}",
                path.display(),
                bytes.len(),
                suitcase_agent::MAX_ENVELOPE
            );
        }
        let env = Envelope::decode(&bytes)
            .map_err(|e| anyhow!("{} is not a SUIT envelope: {e}", path.display()))?;
        let s = suitcase_host::summary::summarize_unauthenticated(&env)
            .map_err(|e| anyhow!("{}: its manifest does not parse: {e}", path.display()))?;
        let id = bundle::bundle_release_id(&s.manifest_digest.1);
        if releases.iter().any(|r| r.id == id) {
            bail!("{}: the same release is given twice", path.display());
        }
        let trust = ri >= a.releases.len();
        match (trust, bundle::is_trust_update(&bytes)) {
            (true, false) => bail!(
                "{}: --trust-update takes a trust update (`suitcase trust update --out FILE`); this envelope carries no trust document: give it as a release",
                path.display()
            ),
            (false, true) => bail!(
                "{} is a trust update: give it with --trust-update {}",
                path.display(),
                path.display()
            ),
            _ => {}
        }
        if trust {
            releases.push(Release {
                id,
                sequence_number: s.sequence_number,
                manifest_digest: s.manifest_digest.clone(),
                vendor_ids: Vec::new(),
                class_ids: Vec::new(),
                components: vec![bundle::trust_component()],
                name: path.file_name().map(|n| n.to_string_lossy().into_owned()),
                envelope: Member {
                    path: format!("releases/{ri}/envelope.suit"),
                    size: bytes.len() as u64,
                    sha256: String::new(),
                },
                payloads: Vec::new(),
            });
            continue;
        }
        let images: Vec<&suitcase_host::summary::ComponentSummary> = s.images().collect();
        for (uri, comp) in s.fetched() {
            if wanted.iter().any(|w| w.release == ri && w.uri == uri) {
                continue;
            }
            let is_image = images.iter().any(|c| std::ptr::eq(*c, comp));
            let expect = (is_image && !comp.encrypted).then(|| {
                (
                    comp.image_size,
                    comp.image_digest
                        .as_ref()
                        .filter(|(alg, _)| alg == "sha-256")
                        .map(|(_, hex)| hex.clone()),
                )
            });
            wanted.push(Wanted {
                release: ri,
                uri: uri.to_owned(),
                expect,
                file: None,
            });
        }
        let fetches = wanted.iter().filter(|w| w.release == ri).count();
        if fetches > bundle::MAX_PAYLOADS {
            bail!(
                "{}: its manifest fetches {fetches} payloads; agents read at most {} per release from a bundle",
                path.display(),
                bundle::MAX_PAYLOADS
            );
        }
        releases.push(Release {
            id,
            sequence_number: s.sequence_number,
            manifest_digest: s.manifest_digest.clone(),
            vendor_ids: s.vendor_ids(),
            class_ids: s.class_ids(),
            components: s.images().map(|c| c.id.clone()).collect(),
            name: path.file_name().map(|n| n.to_string_lossy().into_owned()),
            envelope: Member {
                path: format!("releases/{ri}/envelope.suit"),
                size: bytes.len() as u64,
                // Set from the file written into the bundle, below.
                sha256: String::new(),
            },
            payloads: Vec::new(),
        });
    }
    // --payload URI=FILE, then --payload FILE by name, then (one release) in order.
    let mut loose: Vec<PathBuf> = Vec::new();
    for p in &a.payloads {
        match p
            .rsplit_once('=')
            .filter(|(uri, _)| uri.contains(':') || uri.contains('/'))
        {
            Some((uri, file)) if wanted.iter().any(|w| w.uri == uri) => {
                for w in wanted.iter_mut().filter(|w| w.uri == uri) {
                    w.file = Some(PathBuf::from(file));
                }
            }
            Some((uri, _)) => bail!(
                "--payload {p}: no release in the bundle fetches {uri:?} (its manifests fetch: {})",
                wanted
                    .iter()
                    .map(|w| w.uri.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => loose.push(PathBuf::from(p)),
        }
    }
    let mut unplaced = Vec::new();
    for f in loose {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        match wanted
            .iter_mut()
            .find(|w| w.file.is_none() && !name.is_empty() && w.uri.ends_with(&name))
        {
            Some(w) => w.file = Some(f),
            None => unplaced.push(f),
        }
    }
    for f in unplaced {
        if a.releases.len() > 1 {
            bail!(
                "--payload {}: no payload URI ends with its name; with several releases, write --payload URI=FILE",
                f.display()
            );
        }
        let w = wanted
            .iter_mut()
            .find(|w| w.file.is_none())
            .ok_or_else(|| {
                anyhow!(
                    "--payload {}: the release has no payload left for it",
                    f.display()
                )
            })?;
        w.file = Some(f);
    }
    // Not given: what `release build` writes next to the envelope, or the URI's file name.
    let mut per_release = vec![0usize; envelopes.len()];
    for w in &mut wanted {
        let i = per_release[w.release];
        per_release[w.release] += 1;
        if w.file.is_some() {
            continue;
        }
        let env = &envelopes[w.release];
        let dir = env.parent().unwrap_or(Path::new("."));
        let last = w.uri.rsplit('/').next().unwrap_or_default();
        let mut candidates = vec![crate::release::default_payload_path(env, i)];
        if !last.is_empty() {
            candidates.push(dir.join(last));
        }
        w.file = candidates.into_iter().find(|c| c.is_file());
        if w.file.is_none() {
            bail!(
                "{} fetches {:?} but no file was given for it: add --payload {}=FILE",
                env.display(),
                w.uri,
                w.uri
            );
        }
    }
    let mut entries: Vec<Entry> = Vec::new();
    for (ri, path) in envelopes.iter().enumerate() {
        entries.push(Entry {
            name: releases[ri].envelope.path.clone(),
            from: path.clone(),
        });
    }
    // A hex-text envelope is written as the bytes it holds.
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    for (ri, path) in envelopes.iter().enumerate() {
        let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        if raw.len() as u64 != releases[ri].envelope.size {
            let decoded = crate::input::read_binary(path)?;
            let p = tmp.path().join(format!("{ri}.suit"));
            std::fs::write(&p, decoded)?;
            entries[ri].from = p;
        }
        releases[ri].envelope.sha256 = sha256_file(&entries[ri].from)?.1;
    }
    for w in &wanted {
        let file = w.file.clone().unwrap_or_default();
        let (size, sha256) = sha256_file(&file)?;
        if let Some((want_size, want_digest)) = &w.expect {
            if let Some(n) = want_size
                && *n != size
            {
                bail!(
                    "{} is {size} bytes but {} declares {n} for {:?} (the wrong file?)",
                    file.display(),
                    envelopes[w.release].display(),
                    w.uri
                );
            }
            if let Some(d) = want_digest
                && !d.eq_ignore_ascii_case(&sha256)
            {
                bail!(
                    "{} has SHA-256 {sha256} but {} declares {d} for {:?} (the wrong file, or changed after signing)",
                    file.display(),
                    envelopes[w.release].display(),
                    w.uri
                );
            }
        }
        let r = &mut releases[w.release];
        let path = format!("releases/{}/payload-{}.bin", w.release, r.payloads.len());
        entries.push(Entry {
            name: path.clone(),
            from: file,
        });
        r.payloads.push(Payload {
            uri: w.uri.clone(),
            member: Member { path, size, sha256 },
        });
    }
    let index = Index {
        format: bundle::FORMAT.into(),
        version: bundle::VERSION,
        created_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        releases,
    };
    // The index as `bundle::write` encodes it must be one an agent reads (size, counts,
    // paths), or the bundle would be refused on the device.
    let json = serde_json::to_vec_pretty(&index).context("cannot encode the index")?;
    if json.len() as u64 > bundle::MAX_INDEX {
        bail!(
            "the bundle's {} would be {} bytes; agents read at most {} (fewer releases or payloads per bundle, or shorter URIs)",
            bundle::INDEX,
            json.len(),
            bundle::MAX_INDEX
        );
    }
    Index::parse(&json).map_err(|e| anyhow!("{e}"))?;
    bundle::write(&a.output, a.dir, &index, &entries).map_err(|e| anyhow!("{e}"))?;
    let unchecked: Vec<&str> = wanted
        .iter()
        .filter(|w| w.expect.as_ref().is_none_or(|(_, d)| d.is_none()))
        .map(|w| w.uri.as_str())
        .collect();
    if a.json {
        let mut v = index_json(&a.output, a.dir, &index);
        v["unchecked_payloads"] = json!(unchecked);
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        outln!(
            "wrote {} {} with {} release(s)",
            if a.dir { "bundle directory" } else { "bundle" },
            a.output.display(),
            index.releases.len()
        );
        print_index(&index);
        if !unchecked.is_empty() {
            outln!(
                "note: not checked against a digest here (encrypted, a delta, or not SHA-256): {}; the device checks them",
                unchecked.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn index_json(path: &Path, dir: bool, index: &Index) -> Value {
    json!({
        "bundle": path,
        "kind": if dir { "directory" } else { "file" },
        "format": index.format,
        "version": index.version,
        "created_at": index.created_at,
        "releases": index.releases,
    })
}

fn print_index(index: &Index) {
    for r in &index.releases {
        outln!(
            "  {} {} sequence {}{}",
            if bundle::is_listed_trust_update(r) {
                "trust update"
            } else {
                "release"
            },
            r.id.get(..16).unwrap_or(&r.id),
            r.sequence_number,
            r.name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
        if !r.vendor_ids.is_empty() || !r.class_ids.is_empty() {
            outln!(
                "    vendor {}  class {}",
                r.vendor_ids.join(","),
                r.class_ids.join(",")
            );
        }
        outln!(
            "    components {}",
            r.components
                .iter()
                .map(|c| c.join("/"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        outln!("    envelope {} bytes", r.envelope.size);
        for p in &r.payloads {
            outln!(
                "    payload {}: {} bytes, sha-256 {}",
                p.uri,
                p.member.size,
                p.member.sha256.get(..16).unwrap_or(&p.member.sha256)
            );
        }
    }
}

fn list(path: &Path, json: bool) -> Result<ExitCode> {
    let source = bundle::Source::open(path).map_err(|e| anyhow!("{e}"))?;
    let dir = path.is_dir();
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&index_json(path, dir, &source.index))?
        );
    } else {
        outln!(
            "{} {}: {} release(s)",
            if dir { "bundle directory" } else { "bundle" },
            path.display(),
            source.index.releases.len()
        );
        print_index(&source.index);
    }
    Ok(ExitCode::SUCCESS)
}
