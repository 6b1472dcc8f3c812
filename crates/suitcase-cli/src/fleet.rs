//! `suitcase fleet`: a client for the server's management API (keys, releases, devices,
//! groups, campaigns, tokens, audit).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use suitcase_protocol::{DeviceCreate, DeviceList, DevicePatch, GroupCreate, KeyCreate};

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
    /// Show a device: inventory and every step of its last update.
    Show { id: String },
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

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    rt: tokio::runtime::Runtime,
}

impl Client {
    fn new(c: &Conn) -> Result<Self> {
        let token = match &c.token {
            Some(t) => t.clone(),
            None => std::fs::read_to_string("suitcase-data/admin-token")
                .map(|t| t.trim().to_owned())
                .map_err(|_| {
                    anyhow!("no management token: pass --token or set SUITCASE_TOKEN (the first admin token is in the server's data directory, file admin-token)")
                })?,
        };
        let mut b = reqwest::Client::builder();
        if let Some(ca) = &c.ca {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            b = b.tls_certs_merge([reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", ca.display()))?]);
        }
        Ok(Self {
            http: b.build()?,
            base: c.server.trim_end_matches('/').to_owned(),
            token,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let (status, v, text) = self.send_raw(req)?;
        if !status.is_success() {
            return Err(api_error(status, &v, &text));
        }
        Ok(v)
    }

    /// Sends a request; the status, the JSON answer (or null) and its text, whatever the
    /// status.
    fn send_raw(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Value, String)> {
        self.rt.block_on(async {
            let r = req.bearer_auth(&self.token).send().await.map_err(|e| {
                anyhow!("cannot reach the server at {}: {e}\n  is `suitcase server` running? (--server URL)", self.base)
            })?;
            let status = r.status();
            let text = r.text().await?;
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            Ok((status, v, text))
        })
    }

    fn get(&self, path: &str) -> Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    /// POSTs a typed request body (a `suitcase_protocol` request type).
    fn post<B: serde::Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
    }

    /// POSTs an action that takes no parameters (an empty JSON object).
    fn post_action(&self, path: &str) -> Result<Value> {
        self.post(path, &serde_json::Map::new())
    }
}

/// `POST /api/v1/tokens` with the role as text ([`suitcase_protocol::TokenCreate`] has it as
/// an enum): an unknown role is refused by the server, whose answer lists the roles.
#[derive(serde::Serialize)]
struct TokenRequest {
    name: String,
    role: String,
}

/// An error answer as the user reads it: the status, the server's message (or its text) and
/// its hint.
fn api_error(status: reqwest::StatusCode, v: &Value, text: &str) -> anyhow::Error {
    let msg = v["message"].as_str().unwrap_or(text);
    let hint = v["hint"]
        .as_str()
        .map(|h| format!("\n  hint: {h}"))
        .unwrap_or_default();
    anyhow!("the server answered {status}: {msg}{hint}")
}

pub(crate) fn run(args: FleetArgs) -> Result<ExitCode> {
    let c = Client::new(&args.conn)?;
    let json = args.conn.json;
    let out = |v: &Value, human: &dyn Fn(&Value)| {
        if json {
            outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            human(v);
        }
    };
    match args.command {
        Command::Key(KeyCmd::Add { name, public_key }) => {
            let key = read_key(&public_key)?;
            let v = c.post("/api/v1/keys", &KeyCreate { name, key })?;
            out(&v, &|v| {
                outln!(
                    "registered {} key {:?} (kid {})",
                    v["kind"].as_str().unwrap_or("?"),
                    v["name"].as_str().unwrap_or("?"),
                    v["kid"].as_str().unwrap_or("?")
                )
            });
        }
        Command::Key(KeyCmd::List) => {
            let v = c.get("/api/v1/keys")?;
            out(&v, &|v| {
                for k in v.as_array().into_iter().flatten() {
                    outln!(
                        "{}  {}  {}  kid {}",
                        k["id"].as_str().unwrap_or(""),
                        k["name"].as_str().unwrap_or(""),
                        k["kind"].as_str().unwrap_or(""),
                        k["kid"].as_str().unwrap_or("")
                    );
                }
            });
        }
        Command::Release(ReleaseCmd::Upload {
            envelope,
            payloads,
            name,
        }) => {
            let v = upload(&c, &envelope, &payloads, name.as_deref())?;
            out(&v, &|v| show_release(v));
        }
        Command::Release(ReleaseCmd::List) => {
            let v = c.get("/api/v1/releases")?;
            out(&v, &|v| {
                for r in v.as_array().into_iter().flatten() {
                    outln!(
                        "{}  seq {:>6}  {}  {}{}",
                        r["id"].as_str().unwrap_or(""),
                        r["sequence_number"],
                        if r["complete"] == true {
                            "complete  "
                        } else {
                            "incomplete"
                        },
                        r["name"].as_str().unwrap_or(""),
                        if r["archived"] == true {
                            "  (archived)"
                        } else {
                            ""
                        }
                    );
                }
            });
        }
        Command::Release(ReleaseCmd::Show { id }) => {
            let v = c.get(&format!("/api/v1/releases/{id}"))?;
            out(&v, &|v| show_release(v));
        }
        Command::Device(DeviceCmd::Add {
            name,
            tags,
            certificate_sha256,
        }) => {
            let v = c.post(
                "/api/v1/devices",
                &DeviceCreate {
                    name,
                    tags,
                    certificate_sha256,
                },
            )?;
            out(&v, &|v| {
                outln!(
                    "registered device {} ({})",
                    v["name"].as_str().unwrap_or(""),
                    v["id"].as_str().unwrap_or("")
                );
                outln!(
                    "token (shown once; install it on the device): {}",
                    v["token"].as_str().unwrap_or("")
                );
            });
        }
        Command::Device(DeviceCmd::List { tags, limit }) => {
            let q = if tags.is_empty() {
                String::new()
            } else {
                format!("&tags={}", tags.join(","))
            };
            let v = c.get(&format!("/api/v1/devices?limit={limit}{q}"))?;
            out(&v, &|v| {
                for d in v.as_array().into_iter().flatten() {
                    outln!(
                        "{}  {:<24} seq {:<8} last seen {:<34} tags {}",
                        d["id"].as_str().unwrap_or(""),
                        d["name"].as_str().unwrap_or(""),
                        d["sequence_number"]
                            .as_u64()
                            .map_or("-".into(), |s| s.to_string()),
                        seen(&d["last_seen"]),
                        d["tags"]
                    );
                }
            });
        }
        Command::Device(DeviceCmd::Show { id }) => {
            let v = c.get(&format!("/api/v1/devices/{id}"))?;
            out(&v, &|v| show_device(v));
        }
        Command::Device(DeviceCmd::Tag { id, add, remove }) => {
            let v = c.send(
                c.http
                    .patch(format!("{}/api/v1/devices/{id}", c.base))
                    .json(&DevicePatch {
                        add_tags: add,
                        remove_tags: remove,
                    }),
            )?;
            out(&v, &|v| {
                outln!("{} tags {}", v["name"].as_str().unwrap_or(""), v["tags"])
            });
        }
        Command::Release(ReleaseCmd::Archive { id }) => {
            let v = c.post_action(&format!("/api/v1/releases/{id}/archive"))?;
            out(&v, &|v| {
                outln!("archived {}", v["id"].as_str().unwrap_or(""))
            });
        }
        Command::Release(ReleaseCmd::Delete { id }) => {
            c.send(c.http.delete(format!("{}/api/v1/releases/{id}", c.base)))?;
            outln!("deleted {id}");
        }
        Command::Device(DeviceCmd::Token(DeviceTokenCmd::Rotate { id })) => {
            let v = c.post_action(&format!("/api/v1/devices/{id}/token"))?;
            out(&v, &|v| {
                outln!(
                    "new token for {} ({}); the old one no longer works",
                    v["name"].as_str().unwrap_or(""),
                    v["id"].as_str().unwrap_or("")
                );
                outln!(
                    "token (shown once; install it on the device): {}",
                    v["token"].as_str().unwrap_or("")
                );
            });
        }
        Command::Device(DeviceCmd::Revoke { id }) => {
            c.send(c.http.delete(format!("{}/api/v1/devices/{id}", c.base)))?;
            outln!("revoked {id}");
        }
        Command::Group(GroupCmd::Create { name, devices }) => {
            let v = c.post("/api/v1/groups", &GroupCreate { name, devices })?;
            out(&v, &|v| {
                outln!(
                    "group {} with {} device(s)",
                    v["name"].as_str().unwrap_or(""),
                    v["devices"]
                )
            });
        }
        Command::Group(GroupCmd::Add { name, devices }) => {
            let n = devices.len();
            c.post(
                &format!("/api/v1/groups/{name}/devices"),
                &DeviceList { devices },
            )?;
            outln!("added {n} device(s) to {name}");
        }
        Command::Group(GroupCmd::List) => {
            let v = c.get("/api/v1/groups")?;
            out(&v, &|v| {
                for g in v.as_array().into_iter().flatten() {
                    outln!(
                        "{}  {} device(s)",
                        g["name"].as_str().unwrap_or(""),
                        g["devices"]
                    );
                }
            });
        }
        Command::Campaign(CampaignCmd::Create(spec)) if spec.dry_run => {
            let body = campaign_body(&spec)?;
            let v = c.post("/api/v1/campaigns/dry-run", &body)?;
            out(&v, &|v| show_dry_run(v));
            if v["targeted"].as_u64() == Some(0) {
                errln!(
                    "error: this campaign would target no device; the server refuses to start it"
                );
                return Ok(ExitCode::from(1));
            }
        }
        Command::Campaign(CampaignCmd::Create(spec)) => {
            let body = campaign_body(&spec)?;
            let mut v = c.post("/api/v1/campaigns", &body)?;
            if spec.start {
                let id = v["id"].as_str().unwrap_or_default().to_owned();
                v = c.post_action(&format!("/api/v1/campaigns/{id}/start"))?;
            }
            out(&v, &|v| show_campaign(v));
        }
        Command::Campaign(CampaignCmd::Start { id }) => act(&c, &id, "start", &out)?,
        Command::Campaign(CampaignCmd::Pause { id }) => act(&c, &id, "pause", &out)?,
        Command::Campaign(CampaignCmd::Resume { id }) => act(&c, &id, "resume", &out)?,
        Command::Campaign(CampaignCmd::Cancel { id }) => act(&c, &id, "cancel", &out)?,
        Command::Campaign(CampaignCmd::Rollback { id }) => act(&c, &id, "rollback", &out)?,
        Command::Campaign(CampaignCmd::Show { id }) => {
            let v = c.get(&format!("/api/v1/campaigns/{id}"))?;
            out(&v, &|v| show_campaign(v));
        }
        Command::Campaign(CampaignCmd::List) => {
            let v = c.get("/api/v1/campaigns")?;
            out(&v, &|v| {
                for x in v.as_array().into_iter().flatten() {
                    outln!(
                        "{}  {:<12} {}",
                        x["id"].as_str().unwrap_or(""),
                        x["state"].as_str().unwrap_or(""),
                        x["name"].as_str().unwrap_or("")
                    );
                }
            });
        }
        Command::Token(TokenCmd::Create { name, role }) => {
            // The role goes as the user typed it: the server's answer names the roles there are.
            let v = c.post("/api/v1/tokens", &TokenRequest { name, role })?;
            out(&v, &|v| {
                outln!(
                    "{} token {} (shown once): {}",
                    v["role"].as_str().unwrap_or(""),
                    v["id"].as_str().unwrap_or(""),
                    v["token"].as_str().unwrap_or("")
                )
            });
        }
        Command::Token(TokenCmd::List) => {
            let v = c.get("/api/v1/tokens")?;
            out(&v, &|v| {
                for t in v.as_array().into_iter().flatten() {
                    outln!(
                        "{}  {:<9} {}{}",
                        t["id"].as_str().unwrap_or(""),
                        t["role"].as_str().unwrap_or(""),
                        t["name"].as_str().unwrap_or(""),
                        if t["revoked"] == true {
                            " (revoked)"
                        } else {
                            ""
                        }
                    );
                }
            });
        }
        Command::Token(TokenCmd::Revoke { id }) => {
            c.send(c.http.delete(format!("{}/api/v1/tokens/{id}", c.base)))?;
            outln!("revoked {id}");
        }
        Command::Audit { limit } => {
            let all = c.get("/api/v1/audit?limit=10000")?;
            let list = all.as_array().cloned().unwrap_or_default();
            let skip = list.len().saturating_sub(limit as usize);
            let v = Value::Array(list.into_iter().skip(skip).collect());
            out(&v, &|v| {
                for e in v.as_array().into_iter().flatten() {
                    outln!(
                        "{:>6}  {}  {:<10} {:<8} {:<20} {}",
                        e["id"],
                        when(&e["at"]),
                        e["actor"].as_str().unwrap_or(""),
                        e["role"].as_str().unwrap_or(""),
                        e["action"].as_str().unwrap_or(""),
                        e["target"].as_str().unwrap_or("")
                    );
                }
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a value: as JSON with --json, else with the given human formatter.
type Printer<'a> = &'a dyn Fn(&Value, &dyn Fn(&Value));

fn act(c: &Client, id: &str, action: &str, out: Printer<'_>) -> Result<()> {
    let v = c.post_action(&format!("/api/v1/campaigns/{id}/{action}"))?;
    out(&v, &|v| show_campaign(v));
    Ok(())
}

/// The key file `fleet key add` sends, as text. A private key is refused here, before
/// anything goes over the network (the server refuses it too, but the secret must never
/// leave the signer's machine); the error names the file and never shows its contents.
fn read_key(path: &Path) -> Result<String> {
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

fn upload(c: &Client, envelope: &Path, payloads: &[PathBuf], name: Option<&str>) -> Result<Value> {
    let env = crate::input::read_binary(envelope)?;
    let q = name
        .map(|n| format!("?name={}", url_escape(n)))
        .unwrap_or_default();
    let post = c
        .http
        .post(format!("{}/api/v1/releases{q}", c.base))
        .header("content-type", "application/suit-envelope+cose")
        .body(env);
    let (status, answer, text) = c.send_raw(post)?;
    let rel = if status == reqwest::StatusCode::CONFLICT
        && answer["error"] == "duplicate-release"
        && let Some(existing) = answer["id"].as_str()
    {
        // Uploaded before (perhaps without its payloads): carry on with that release, so
        // the same command finishes what an interrupted or envelope-only upload started.
        let rel = c.get(&format!("/api/v1/releases/{existing}"))?;
        if rel["complete"] == true {
            errln!("note: this envelope is release {existing} already, with every payload");
        } else {
            errln!("note: this envelope is release {existing} already; uploading what it lacks");
        }
        rel
    } else {
        if !status.is_success() {
            return Err(api_error(status, &answer, &text));
        }
        answer
    };
    let id = rel["id"].as_str().unwrap_or_default().to_owned();
    // Payloads already uploaded are skipped; files are matched to the rest.
    let slots: Vec<(u64, String)> = rel["payloads"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["uploaded"] != true)
        .map(|p| {
            (
                p["index"].as_u64().unwrap_or(0),
                p["uri"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    if slots.is_empty() && !payloads.is_empty() {
        errln!("note: release {id} has every payload already; nothing to upload");
        return Ok(rel);
    }
    let mut used = vec![false; slots.len()];
    let mut last = rel;
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
        let (index, _) = &slots[pos];
        last = c.send(
            c.http
                .put(format!("{}/api/v1/releases/{id}/payloads/{index}", c.base))
                .body(bytes),
        )?;
        pb.finish_and_clear();
    }
    if last["complete"] != true {
        errln!(
            "note: release {id} still lacks payloads; run the same `suitcase fleet release upload ENVELOPE --payload FILE` to add them"
        );
    }
    Ok(last)
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `POST /api/v1/campaigns` (and `/dry-run`) body for `campaign create`.
fn campaign_body(s: &CampaignSpec) -> Result<Value> {
    use suitcase_protocol::{CampaignCreate, Filter, OnError, Window};
    let waves = crate::waves::parse(s.waves.iter().map(String::as_str))?;
    let window = match &s.window {
        None => None,
        Some(w) => {
            let (a, b) = w
                .split_once('-')
                .ok_or_else(|| anyhow!("--window is HH:MM-HH:MM (UTC)"))?;
            Some(Window {
                start_minute: minutes(a)?,
                end_minute: minutes(b)?,
                days: Vec::new(),
            })
        }
    };
    let on_error = match s.on_error.as_str() {
        "pause" => OnError::Pause,
        "abort" => OnError::Abort,
        "rollback" => OnError::Rollback,
        other => bail!("--on-error {other}: use pause, abort or rollback"),
    };
    let body = CampaignCreate {
        name: s.name.clone().unwrap_or_else(|| s.release.clone()),
        release_id: s.release.clone(),
        filter: Filter {
            tags_all: s.tags.clone(),
            group: s.group.clone(),
            devices: s.devices.clone(),
            ..Filter::default()
        },
        waves,
        success_threshold: s.success,
        error_threshold: s.error,
        on_error,
        rollback_release_id: s.rollback_release.clone(),
        rate_per_minute: s.rate,
        window,
        requires_consent: s.consent,
    };
    Ok(serde_json::to_value(body)?)
}

fn minutes(hhmm: &str) -> Result<u32> {
    let (h, m) = hhmm
        .trim()
        .split_once(':')
        .ok_or_else(|| anyhow!("{hhmm:?}: use HH:MM"))?;
    let (h, m): (u32, u32) = (h.parse()?, m.parse()?);
    if h > 23 || m > 59 {
        bail!("{hhmm:?} is not a time of day");
    }
    Ok(h * 60 + m)
}

fn show_release(v: &Value) {
    outln!(
        "release {}  {:?}  sequence {}",
        v["id"].as_str().unwrap_or(""),
        v["name"].as_str().unwrap_or(""),
        v["sequence_number"]
    );
    outln!("  signed by {}", v["signed_by"]);
    outln!(
        "  uploaded {} by {}",
        when(&v["created_at"]),
        v["created_by"].as_str().unwrap_or("")
    );
    for p in v["payloads"].as_array().into_iter().flatten() {
        outln!(
            "  payload {} {}: {}",
            p["index"],
            p["uri"].as_str().unwrap_or(""),
            if p["uploaded"] == true {
                format!("{} bytes", p["size"])
            } else {
                "missing".into()
            }
        );
    }
    for d in v["deltas"].as_array().into_iter().flatten() {
        outln!(
            "  delta to payload {} from {}: {} bytes instead of {}",
            d["index"],
            d["source_release_id"].as_str().unwrap_or(""),
            d["size"],
            d["full_size"]
        );
    }
    outln!(
        "  {}",
        if v["complete"] == true {
            "complete: ready to deploy"
        } else {
            "incomplete: payloads missing"
        }
    );
}

fn show_device(v: &Value) {
    outln!(
        "device {}  {}",
        v["name"].as_str().unwrap_or(""),
        v["id"].as_str().unwrap_or("")
    );
    outln!(
        "  tags {}  sequence {}  last seen {}",
        v["tags"],
        v["sequence_number"],
        seen(&v["last_seen"])
    );
    // What it runs, and whether each can be rolled back after a failed health check.
    let components: Vec<suitcase_protocol::InstalledComponent> =
        serde_json::from_value(v["inventory"]["components"].clone()).unwrap_or_default();
    for c in &components {
        outln!(
            "  component {}  sequence {}{}  {}{}",
            suitcase_protocol::component_label(&c.id),
            c.sequence_number,
            c.version
                .as_deref()
                .map(|v| format!("  version {v}"))
                .unwrap_or_default(),
            c.handler
                .as_deref()
                .map_or_else(|| "slot image".to_owned(), |h| format!("{h} handler")),
            match c.rollback {
                Some(true) => ", can roll back",
                Some(false) => ", cannot roll back",
                None => "",
            }
        );
    }
    // Controller attributes a hawkBit DDI device sent (configData, docs/ddi.md).
    if let Some(a) = v["attributes"].as_object().filter(|a| !a.is_empty()) {
        let list: Vec<String> = a
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        outln!("  attributes {}", list.join("  "));
    }
    if let Some(u) = v["update"].as_object() {
        outln!(
            "  update: release {} ({})",
            u["release_id"].as_str().unwrap_or(""),
            u["state"].as_str().unwrap_or("")
        );
        // A step took from the start the device reported to its (latest) report; without a
        // reported start, from the previous step's report.
        let mut previous: Option<i64> = None;
        for s in u["steps"].as_array().into_iter().flatten() {
            let reason = s["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            let at = s["at"].as_i64();
            let took = match (s["started_at"].as_i64().or(previous), at) {
                (Some(start), Some(at)) => format!(
                    ", {} {}",
                    if s["outcome"] == "in-progress" {
                        "running for"
                    } else {
                        "took"
                    },
                    suitcase_protocol::time::duration(at - start)
                ),
                _ => String::new(),
            };
            let progress = s["progress"]
                .as_u64()
                .map(|p| format!(", {p} bytes downloaded"))
                .unwrap_or_default();
            previous = at.or(previous);
            outln!(
                "    {:<10} {:<11} {}{took}{progress}{}",
                s["step"].as_str().unwrap_or(""),
                s["outcome"].as_str().unwrap_or(""),
                when(&s["at"]),
                reason
            );
            // In the device's words (e.g. SWUpdate's error lines): all of a failure's, the
            // first lines of anything else.
            if s["outcome"] == "failure" {
                for line in s["detail"].as_str().unwrap_or_default().lines().take(5) {
                    let line: String = line.chars().filter(|c| !c.is_control()).collect();
                    outln!("               {line}");
                }
                // The end of the device's log it sent with the failure: its last lines.
                if let Some(log) = s["log"].as_str() {
                    let lines: Vec<&str> = log.lines().collect();
                    outln!("               log (last lines; --json has up to 16 KiB):");
                    for line in lines.iter().skip(lines.len().saturating_sub(10)) {
                        let line: String = line.chars().filter(|c| !c.is_control()).collect();
                        outln!("                 {line}");
                    }
                }
            }
        }
    }
}

/// Now, for "3 min ago".
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An API time (seconds since 1970) for people: `2026-12-06 11:52 UTC, 3 min ago`; `--json`
/// prints the API's number instead.
fn when(t: &Value) -> String {
    t.as_i64().map_or_else(
        || "-".to_owned(),
        |t| suitcase_protocol::time::human(now(), t),
    )
}

/// A last-seen time, or `never`.
fn seen(t: &Value) -> String {
    if t.is_null() {
        "never".to_owned()
    } else {
        when(t)
    }
}

fn show_dry_run(v: &Value) {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    outln!("dry run: {} device(s) would be targeted", n("targeted"));
    outln!(
        "  {} match the filter; {} left out for another class; {} busy in another live campaign",
        n("matched"),
        n("other_class"),
        n("busy")
    );
    if n("up_to_date") > 0 {
        outln!(
            "  warning: {} already run this sequence number or a newer one (they would refuse it)",
            n("up_to_date")
        );
    }
    rollback_warnings(v);
    let list: Vec<&str> = v["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["name"].as_str())
        .collect();
    if !list.is_empty() {
        let more = n("targeted").saturating_sub(list.len() as u64);
        outln!(
            "  {}{}",
            list.join(" "),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        );
    }
}

fn show_campaign(v: &Value) {
    outln!(
        "campaign {}  {:?}  {}{}",
        v["id"].as_str().unwrap_or(""),
        v["name"].as_str().unwrap_or(""),
        v["state"].as_str().unwrap_or(""),
        v["state_reason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    let opened = v["opened_waves"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    let waves: Vec<suitcase_protocol::WaveProgress> =
        serde_json::from_value(v["waves_progress"].clone()).unwrap_or_default();
    for w in &waves {
        outln!("  {}", crate::waves::line(w, opened));
    }
    if !waves.is_empty() {
        outln!("  ({})", crate::waves::LEGEND);
    }
    rollback_warnings(v);
}

/// A dry run's or a campaign's `no_rollback`: devices that keep the new content of a
/// component after a failed health check (docs/server.md §4).
fn rollback_warnings(v: &Value) {
    let gaps: Vec<suitcase_protocol::RollbackGap> =
        serde_json::from_value(v["no_rollback"].clone()).unwrap_or_default();
    for g in &gaps {
        outln!(
            "  warning: {}: after a failed health check they keep the new content",
            g.text()
        );
    }
    if v["no_rollback_partial"] == true {
        outln!("  (the check stopped at its bound: at least these many)");
    }
}
