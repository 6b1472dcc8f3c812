//! API errors: every failure answers with a stable code, a message naming what is wrong and,
//! where there is one, what to do next.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use suitcase_protocol::ApiError;

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiErr {
    pub(crate) status: StatusCode,
    pub(crate) body: ApiError,
    /// Seconds for a `Retry-After` header (a `503` the client should send again).
    pub(crate) retry_after: Option<u32>,
}

pub(crate) type ApiResult<T> = Result<T, ApiErr>;

impl ApiErr {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ApiError {
                error: code.to_owned(),
                message: message.into(),
                hint: None,
                id: None,
            },
            retry_after: None,
        }
    }

    /// `503` with `Retry-After`: the request met a transient condition (other requests
    /// changing the same row); sent again, it goes through.
    pub(crate) fn busy(retry_after: u32, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message);
        e.retry_after = Some(retry_after);
        e.hint("send it again after the Retry-After seconds")
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.body.hint = Some(hint.into());
        self
    }

    /// The id of the existing thing a `409` conflicts with.
    pub(crate) fn id(mut self, id: impl Into<String>) -> Self {
        self.body.id = Some(id.into());
        self
    }

    pub(crate) fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no {what} {id:?}"),
        )
    }

    pub(crate) fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub(crate) fn unprocessable(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn internal(e: impl core::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed; its log has the details",
        )
    }
}

/// Whether a database error is a unique-constraint violation: two requests created the same
/// thing at once and the database let one win. That is a conflict for the loser, never a 500.
pub(crate) fn is_unique_violation(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<sqlx::Error>()
            .and_then(sqlx::Error::as_database_error)
            .is_some_and(|d| d.is_unique_violation())
    })
}

impl From<sqlx::Error> for ApiErr {
    fn from(e: sqlx::Error) -> Self {
        Self::from(anyhow::Error::from(e))
    }
}

impl From<anyhow::Error> for ApiErr {
    fn from(e: anyhow::Error) -> Self {
        // A race the handler did not foresee: still a 409, not a 500. Handlers that know what
        // was created answer with its id instead.
        if is_unique_violation(&e) {
            return Self::conflict(
                "already-exists",
                "another request created the same thing at the same moment",
            )
            .hint("look it up and use the existing one, or pick another name");
        }
        Self::internal(format!("{e:#}"))
    }
}

impl From<object_store::Error> for ApiErr {
    fn from(e: object_store::Error) -> Self {
        Self::internal(format!("payload store: {e}"))
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        r
    }
}

/// At most `n` characters of a client's string, marked `…` when clipped: for an error
/// message or a page (a 1 MiB value is not echoed back).
pub(crate) fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

/// Why the server (or an offline command on its data) could not start: what the library's
/// entry points ([`crate::start`], [`crate::app`], [`crate::reset_admin_token`],
/// [`crate::admin_token_count`]) return. The variants a caller may act on are their own
/// (a port in use, a bad TLS file); storage failures carry the store's own message.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        error: std::io::Error,
    },
    /// The admin token file could not be written.
    #[error("cannot write {}", path.display())]
    TokenFile {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        error: suitcase_host::KeyError,
    },
    /// The listening socket could not be opened (the address is in use, or not ours).
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address asked for.
        addr: core::net::SocketAddr,
        /// The cause.
        #[source]
        error: std::io::Error,
    },
    /// The TLS certificate, key or client CA could not be loaded; the message names the file.
    #[error("{0:#}")]
    Tls(anyhow::Error),
    /// The database, the payload store or the MQTT broker could not be opened or read.
    #[error(transparent)]
    Storage(#[from] anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report whose transition lost every race is answered so that the device sends it
    /// again: 503 and a Retry-After header (the agent keeps any 5xx report in its outbox).
    #[test]
    fn busy_answers_503_with_retry_after() {
        let r = ApiErr::busy(1, "changed").into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers()
                .get(axum::http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }
}
