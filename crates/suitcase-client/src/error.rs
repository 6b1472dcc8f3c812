//! Why a call failed: no answer, the server's refusal (status and its `ApiError`), or an
//! answer that is not the endpoint's type.

use core::fmt;

use reqwest::StatusCode;
use suitcase_protocol::ApiError;

use crate::ANSWER_MAX;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No answer: the connection failed or broke.
    #[error("cannot reach the server at {base}: {source}")]
    Unreachable {
        /// The server's base URL.
        base: String,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
    /// The server refused the request.
    #[error("{0}")]
    Api(Box<Refusal>),
    /// A success status whose body is not the type the endpoint answers with.
    #[error("unexpected answer ({source}): {body}")]
    Unexpected {
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
        /// The body, as text.
        body: String,
    },
    /// The answer is larger than [`ANSWER_MAX`].
    #[error("the server's answer is larger than {ANSWER_MAX} bytes")]
    TooLarge,
}

impl Error {
    /// The refusal, when the server answered with an error status.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Api(r) => Some(r),
            _ => None,
        }
    }
}

/// An error answer: its status, and the server's [`ApiError`] when the body is one.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// The server's error (code, message, hint, id), when the body is a JSON error.
    pub error: Option<ApiError>,
    /// The body, as text.
    pub body: String,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, body: String) -> Self {
        Self {
            status,
            error: serde_json::from_str(&body).ok(),
            body,
        }
    }

    /// The server's stable error code, e.g. `duplicate-release`.
    pub fn code(&self) -> Option<&str> {
        self.error.as_ref().map(|e| e.error.as_str())
    }
}

/// `the server answered 409 Conflict: MESSAGE` and, on its own line, the server's hint.
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = self
            .error
            .as_ref()
            .map_or(self.body.as_str(), |e| &e.message);
        write!(f, "the server answered {}: {msg}", self.status)?;
        if let Some(h) = self.error.as_ref().and_then(|e| e.hint.as_deref()) {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_says_status_message_and_hint() {
        let r = Refusal::new(
            StatusCode::CONFLICT,
            r#"{"error":"duplicate-release","message":"already uploaded","hint":"use its id","id":"rel_1"}"#
                .to_owned(),
        );
        assert_eq!(r.code(), Some("duplicate-release"));
        assert_eq!(
            r.to_string(),
            "the server answered 409 Conflict: already uploaded\n  hint: use its id"
        );
        let text = Refusal::new(StatusCode::BAD_GATEWAY, "upstream down".to_owned());
        assert_eq!(text.code(), None);
        assert_eq!(
            text.to_string(),
            "the server answered 502 Bad Gateway: upstream down"
        );
    }
}
