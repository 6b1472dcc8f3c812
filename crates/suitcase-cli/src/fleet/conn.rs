//! The connection `suitcase fleet` commands share: the typed management client
//! ([`suitcase_client`]) on a current-thread runtime, its errors as the user reads them, and
//! the choice between the server's JSON (`--json`) and a summary.

use anyhow::{Context as _, Result, anyhow};
use suitcase_client::{Client, Error as ClientError, Reply};

use super::Conn;

/// A management client for one command.
pub(super) struct Fleet {
    pub(super) client: Client,
    rt: tokio::runtime::Runtime,
    json: bool,
}

impl Fleet {
    /// Connects as `--server`, `--token` (or the server's first admin token in
    /// ./suitcase-data/admin-token) and `--ca` say.
    pub(super) fn new(c: &Conn) -> Result<Self> {
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
            client: Client::new(&c.server, &token, b.build()?),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            json: c.json,
        })
    }

    /// Runs one client call to its end; a failure as the user reads it.
    pub(super) fn call<T>(&self, call: impl Future<Output = Result<T, ClientError>>) -> Result<T> {
        self.block_on(call).map_err(|e| self.error(e))
    }

    /// Runs one client call to its end; a failure as the client said it, for a caller that
    /// acts on the server's error code.
    pub(super) fn block_on<T>(
        &self,
        call: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        self.rt.block_on(call)
    }

    /// A client error for people: what failed and what to check.
    pub(super) fn error(&self, e: ClientError) -> anyhow::Error {
        match e {
            ClientError::Unreachable { base, source } => anyhow!(
                "cannot reach the server at {base}: {source}\n  is `suitcase server` running? (--server URL)"
            ),
            other => anyhow!("{other}"),
        }
    }

    /// Whether `--json` was given.
    pub(super) fn json(&self) -> bool {
        self.json
    }

    /// Prints an answer: the server's JSON with `--json`, else `human`'s summary of it.
    pub(super) fn print<T>(&self, r: &Reply<T>, human: impl FnOnce(&T)) {
        if self.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&r.raw).unwrap_or_default()
            );
        } else {
            human(&r.value);
        }
    }
}
