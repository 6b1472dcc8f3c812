//! `suitcase fleet`: a client for the server's management API (keys, releases, devices,
//! groups, campaigns, tokens, audit, quarantine and the fleet's posture).
//!
//! `mod.rs` holds the command line and runs each command; the calls go through the typed
//! client of `suitcase-client` (`conn.rs`), `show.rs` prints the answers, `upload.rs` reads
//! key and release files and resumes uploads, `spec.rs` turns flags into a campaign.

mod conn;
mod show;
mod spec;
mod upload;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use serde_json::Value;
use suitcase_client::CampaignAction;
use suitcase_protocol::mgmt::{QuarantineRequest, RemediationRequest};
use suitcase_protocol::{
    DeviceCreate, DeviceList, DevicePatch, GroupCreate, KeyCreate, Role, TokenCreate,
};

use conn::Fleet;

/// Where the server is and who is asking; shared by every `fleet` command.
#[derive(Debug, Args)]
pub(crate) struct Conn {
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "SUITCASE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// A management token. Default: the first admin token in ./suitcase-data/admin-token, if
    /// this machine runs the server.
    #[arg(long, global = true, env = "SUITCASE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A CA certificate (PEM) to trust for an HTTPS server with a private CA.
    #[arg(long, global = true, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Print the server's JSON answer instead of a summary.
    #[arg(long, global = true)]
    json: bool,
}

/// `suitcase fleet ...`
#[derive(Debug, Args)]
pub(crate) struct FleetArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Release-signing keys the server trusts (admin).
    #[command(subcommand)]
    Key(KeyCmd),
    /// Upload and list releases (author).
    #[command(subcommand)]
    Release(ReleaseCmd),
    /// Register, list and inspect devices (operator).
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Named device groups with their own push topic (operator).
    #[command(subcommand)]
    Group(GroupCmd),
    /// Roll releases out in waves (operator).
    #[command(subcommand)]
    Campaign(CampaignCmd),
    /// Management tokens (admin).
    #[command(subcommand)]
    Token(TokenCmd),
    /// The fleet's trust state on the server (docs/trust.md, "The server and trust updates"):
    /// once registered, a trust update is stored only if the devices would apply it, and
    /// advances it; a release signed only by a key it revoked is refused.
    #[command(subcommand)]
    Trust(TrustCmd),
    /// The fleet's posture (RFC 8240 §9): how many devices are up to date, out of date,
    /// quarantined, unreachable or never seen (docs/server.md §8). Any role.
    ///
    /// Example: suitcase fleet posture --json
    Posture,
    /// The audit log: every management action.
    Audit {
        /// Show at most this many entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCmd {
    /// Register a public key (as `suitcase key public` writes it); uploads must be signed by
    /// registered keys.
    Add { name: String, public_key: PathBuf },
    /// List the registered keys.
    List,
}

#[derive(Debug, Subcommand)]
enum TrustCmd {
    /// Register the trust state the devices were provisioned with (the file `suitcase trust
    /// init` wrote, or `suitcase trust apply --out` for devices already updated). Admin.
    ///
    /// Example: suitcase fleet trust set trust.cbor
    Set { state: PathBuf },
    /// The trust state in force: the one registered, advanced by every trust update uploaded
    /// since. Any role.
    ///
    /// Example: suitcase fleet trust show --json
    Show,
    /// Remove the registered trust state: trust updates are then checked against the
    /// registered keys only. Admin.
    Remove,
}

#[derive(Debug, Subcommand)]
enum ReleaseCmd {
    /// Upload a signed envelope and its payloads. Each --payload FILE goes to the payload
    /// whose URI ends with the file's name, else to the next one in order.
    Upload {
        envelope: PathBuf,
        #[arg(long = "payload", value_name = "FILE")]
        payloads: Vec<PathBuf>,
        /// A name for the release.
        #[arg(long)]
        name: Option<String>,
        /// Mark it remediation at once: the only kind of release a quarantined device is
        /// offered (docs/server.md §8). Needs an admin token; an author uploads it unmarked
        /// and an admin marks it with `suitcase fleet release remediation ID --on`.
        #[arg(long)]
        remediation: bool,
    },
    /// List releases.
    List,
    /// Show one release.
    Show { id: String },
    /// Archive a release: kept with its history, offered to no new campaign (refused while a
    /// campaign that is not over uses it).
    Archive { id: String },
    /// Delete a release no campaign ever used (refused otherwise: archive it).
    Delete { id: String },
    /// Show whether a release is remediation, or mark it (--on) or unmark it (--off; admin).
    /// Remediation releases are the only ones quarantined devices are offered, so mark the
    /// release that fixes (or rolls back) what got them quarantined (docs/server.md §8).
    ///
    /// Example: suitcase fleet release remediation rel_123 --on
    Remediation {
        id: String,
        /// Mark it remediation: quarantined devices in its campaigns are offered it.
        #[arg(long, conflicts_with = "off")]
        on: bool,
        /// Unmark it: quarantined devices are no longer offered it.
        #[arg(long)]
        off: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCmd {
    /// Register a device and print its token (shown once: put it on the device).
    Add {
        name: String,
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// SHA-256 of the device's TLS client certificate (DER), for mutual TLS.
        #[arg(long)]
        certificate_sha256: Option<String>,
    },
    /// List devices.
    List {
        /// Only devices with all these tags.
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show a device: whether it is quarantined, its inventory and every step of its last
    /// update.
    Show { id: String },
    /// Quarantine a device (admin; RFC 8240 §9): it is then offered only releases marked
    /// remediation, is not woken by push for others, and its reports are stored flagged.
    /// It keeps its place in its campaigns; `unquarantine` lets it carry on.
    ///
    /// Example: suitcase fleet device quarantine sensor-17 --reason "tampering suspected"
    Quarantine {
        /// The device's id or name.
        id: String,
        /// Why, for the audit log and whoever releases it (1 to 200 characters).
        #[arg(long)]
        reason: String,
    },
    /// Release a device from quarantine (admin): it is offered its campaigns' releases again.
    Unquarantine {
        /// The device's id or name.
        id: String,
    },
    /// Add or remove tags.
    Tag {
        id: String,
        #[arg(long = "add")]
        add: Vec<String>,
        #[arg(long = "remove")]
        remove: Vec<String>,
    },
    /// Decommission a device: its credentials stop working.
    Revoke { id: String },
    /// The device's token.
    #[command(subcommand)]
    Token(DeviceTokenCmd),
}

#[derive(Debug, Subcommand)]
enum DeviceTokenCmd {
    /// Issue a new token for the device and print it (shown once); the old one stops working.
    Rotate { id: String },
}

#[derive(Debug, Subcommand)]
enum GroupCmd {
    /// Create a group.
    Create {
        name: String,
        #[arg(long = "device")]
        devices: Vec<String>,
    },
    /// Add devices to a group.
    Add { name: String, devices: Vec<String> },
    /// List groups.
    List,
}

#[derive(Debug, Subcommand)]
enum CampaignCmd {
    /// Create a campaign (and start it with --start).
    Create(Box<CampaignSpec>),
    /// Start a draft campaign.
    Start { id: String },
    /// Stop offering the update (devices mid-update finish).
    Pause { id: String },
    /// Resume a paused campaign.
    Resume { id: String },
    /// Cancel for good.
    Cancel { id: String },
    /// Roll back: offer the campaign's rollback release to every device of the opened waves
    /// that was offered the release (devices not yet offered it are cancelled).
    Rollback { id: String },
    /// Progress per wave.
    Show { id: String },
    /// List campaigns.
    List,
}

#[derive(Debug, Args)]
struct CampaignSpec {
    /// The release to deploy.
    #[arg(long)]
    release: String,
    /// A name (default: the release id).
    #[arg(long)]
    name: Option<String>,
    /// Devices with all these tags.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Devices in this group.
    #[arg(long)]
    group: Option<String>,
    /// These devices (ids or names).
    #[arg(long = "device")]
    devices: Vec<String>,
    /// Waves: percentages or counts, e.g. 1%,10%,100% or 5,50,100%.
    #[arg(long, value_delimiter = ',')]
    waves: Vec<String>,
    /// Fraction of a wave that must succeed before the next opens.
    #[arg(long, default_value_t = 0.95)]
    success: f64,
    /// Fraction of a wave whose failure triggers --on-error.
    #[arg(long, default_value_t = 0.1)]
    error: f64,
    /// pause, abort or rollback.
    #[arg(long, default_value = "pause", value_parser = ["pause", "abort", "rollback"])]
    on_error: String,
    /// For --on-error rollback: the previous software re-signed above the new sequence number.
    #[arg(long)]
    rollback_release: Option<String>,
    /// At most this many devices start per minute.
    #[arg(long)]
    rate: Option<u32>,
    /// Daily maintenance window in UTC, e.g. 01:00-05:00.
    #[arg(long)]
    window: Option<String>,
    /// Devices ask their user before installing.
    #[arg(long)]
    consent: bool,
    /// Start it at once.
    #[arg(long, conflicts_with = "dry_run")]
    start: bool,
    /// Create nothing: print how many and which devices the campaign would target now, and
    /// why the others its filter matches would not be. Exit status 1 when it targets none.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Create a token with a role (viewer, author, operator, admin); prints it once.
    Create {
        name: String,
        #[arg(long, value_parser = ["viewer", "author", "operator", "admin"])]
        role: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token.
    Revoke { id: String },
}

pub(crate) fn run(args: FleetArgs) -> Result<ExitCode> {
    let f = Fleet::new(&args.conn)?;
    let c = &f.client;
    match args.command {
        Command::Key(KeyCmd::Add { name, public_key }) => {
            let key = upload::read_key(&public_key)?;
            let r = f.call(c.add_key(&KeyCreate { name, key }))?;
            f.print(&r, show::key_added);
        }
        Command::Key(KeyCmd::List) => f.print(&f.call(c.keys())?, |l| show::keys(l)),
        Command::Release(ReleaseCmd::Upload {
            envelope,
            payloads,
            name,
            remediation,
        }) => {
            let r = upload::upload(&f, &envelope, &payloads, name.as_deref(), remediation)?;
            f.print(&r, show::release);
        }
        Command::Release(ReleaseCmd::List) => {
            f.print(&f.call(c.releases())?, |l| show::releases(l));
        }
        Command::Release(ReleaseCmd::Show { id }) => {
            f.print(&f.call(c.release(&id))?, show::release);
        }
        Command::Release(ReleaseCmd::Archive { id }) => {
            let r = f.call(c.archive_release(&id))?;
            f.print(&r, |v| outln!("archived {}", v.id));
        }
        Command::Release(ReleaseCmd::Delete { id }) => {
            f.call(c.delete_release(&id))?;
            outln!("deleted {id}");
        }
        Command::Release(ReleaseCmd::Remediation { id, on, off }) => {
            let r = if on || off {
                f.call(c.set_remediation(&id, RemediationRequest { remediation: on }))?
            } else {
                f.call(c.remediation(&id))?
            };
            f.print(&r, show::remediation);
        }
        Command::Device(DeviceCmd::Add {
            name,
            tags,
            certificate_sha256,
        }) => {
            let d = DeviceCreate {
                name,
                tags,
                certificate_sha256,
            };
            let r = f.call(c.add_device(&d))?;
            f.print(&r, |v| show::device_created(v, false));
        }
        Command::Device(DeviceCmd::List { tags, limit }) => {
            f.print(&f.call(c.devices(&tags, limit))?, |l| show::devices(l));
        }
        Command::Device(DeviceCmd::Show { id }) => {
            let d = f.call(c.device(&id))?;
            // --json prints the device's answer alone; the quarantine is its own endpoint.
            let q = if f.json() {
                None
            } else {
                Some(f.call(c.device_quarantine(&d.value.id))?.value)
            };
            f.print(&d, |v| show::device(v, q.as_ref()));
        }
        Command::Device(DeviceCmd::Quarantine { id, reason }) => {
            let r = f.call(c.quarantine_device(&id, &QuarantineRequest { reason }))?;
            f.print(&r, show::quarantine);
        }
        Command::Device(DeviceCmd::Unquarantine { id }) => {
            f.print(&f.call(c.release_quarantine(&id))?, show::quarantine);
        }
        Command::Device(DeviceCmd::Tag { id, add, remove }) => {
            let patch = DevicePatch {
                add_tags: add,
                remove_tags: remove,
            };
            f.print(&f.call(c.tag_device(&id, &patch))?, show::tagged);
        }
        Command::Device(DeviceCmd::Token(DeviceTokenCmd::Rotate { id })) => {
            let r = f.call(c.rotate_device_token(&id))?;
            f.print(&r, |v| show::device_created(v, true));
        }
        Command::Device(DeviceCmd::Revoke { id }) => {
            f.call(c.revoke_device(&id))?;
            outln!("revoked {id}");
        }
        Command::Group(GroupCmd::Create { name, devices }) => {
            let r = f.call(c.create_group(&GroupCreate { name, devices }))?;
            f.print(&r, show::group_created);
        }
        Command::Group(GroupCmd::Add { name, devices }) => {
            let n = devices.len();
            f.call(c.add_to_group(&name, &DeviceList { devices }))?;
            outln!("added {n} device(s) to {name}");
        }
        Command::Group(GroupCmd::List) => f.print(&f.call(c.groups())?, |l| show::groups(l)),
        Command::Campaign(CampaignCmd::Create(s)) if s.dry_run => {
            let r = f.call(c.dry_run(&spec::campaign(&s)?))?;
            f.print(&r, show::dry_run);
            if r.value.targeted == 0 {
                errln!(
                    "error: this campaign would target no device; the server refuses to start it"
                );
                return Ok(ExitCode::from(1));
            }
        }
        Command::Campaign(CampaignCmd::Create(s)) => {
            let mut r = f.call(c.create_campaign(&spec::campaign(&s)?))?;
            if s.start {
                r = f.call(c.campaign_action(&r.value.id, CampaignAction::Start))?;
            }
            f.print(&r, show::campaign);
        }
        Command::Campaign(CampaignCmd::Start { id }) => act(&f, &id, CampaignAction::Start)?,
        Command::Campaign(CampaignCmd::Pause { id }) => act(&f, &id, CampaignAction::Pause)?,
        Command::Campaign(CampaignCmd::Resume { id }) => act(&f, &id, CampaignAction::Resume)?,
        Command::Campaign(CampaignCmd::Cancel { id }) => act(&f, &id, CampaignAction::Cancel)?,
        Command::Campaign(CampaignCmd::Rollback { id }) => {
            act(&f, &id, CampaignAction::Rollback)?;
        }
        Command::Campaign(CampaignCmd::Show { id }) => {
            f.print(&f.call(c.campaign(&id))?, show::campaign);
        }
        Command::Campaign(CampaignCmd::List) => {
            f.print(&f.call(c.campaigns())?, |l| show::campaigns(l));
        }
        Command::Token(TokenCmd::Create { name, role }) => {
            // clap takes only the four role names; the server would name them too.
            let role = Role::from_name(&role)
                .ok_or_else(|| anyhow!("--role {role}: use viewer, author, operator or admin"))?;
            let r = f.call(c.create_token(&TokenCreate { name, role }))?;
            f.print(&r, show::token_created);
        }
        Command::Token(TokenCmd::List) => f.print(&f.call(c.tokens())?, |l| show::tokens(l)),
        Command::Token(TokenCmd::Revoke { id }) => {
            f.call(c.revoke_token(&id))?;
            outln!("revoked {id}");
        }
        Command::Trust(TrustCmd::Set { state }) => {
            let doc = std::fs::read(&state).map_err(|e| {
                anyhow!(
                    "cannot read {}: {e}\n  the trust state is the file `suitcase trust init --out` wrote",
                    state.display()
                )
            })?;
            let r = f.call(c.set_trust_state(&hex::encode(doc)))?;
            f.print(&r, show::trust_state);
        }
        Command::Trust(TrustCmd::Show) => f.print(&f.call(c.trust_state())?, show::trust_state),
        Command::Trust(TrustCmd::Remove) => {
            f.call(c.remove_trust_state())?;
            outln!(
                "trust state removed: trust updates are checked against the registered keys only"
            );
        }
        Command::Posture => f.print(&f.call(c.posture())?, show::posture),
        Command::Audit { limit } => {
            // The newest `limit` entries of the log (oldest first), also in the JSON.
            let mut r = f.call(c.audit(10_000))?;
            let skip = r.value.len().saturating_sub(limit as usize);
            r.value.drain(..skip);
            if let Value::Array(raw) = &mut r.raw {
                let skip = raw.len().saturating_sub(limit as usize);
                raw.drain(..skip);
            }
            f.print(&r, |l| show::audit(l));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A campaign action, and the campaign as it is after it.
fn act(f: &Fleet, id: &str, action: CampaignAction) -> Result<()> {
    f.print(
        &f.call(f.client.campaign_action(id, action))?,
        show::campaign,
    );
    Ok(())
}
