//! The HTTP details of the device API: JSON or CBOR bodies, and resumable downloads (RFC 9110
//! §14 ranges, §13.1.5 If-Range, §8.8.3 ETag).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiErr;

/// A body format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Cbor,
}

const CBOR: &str = "application/cbor";

fn header_has(headers: &HeaderMap, name: header::HeaderName, what: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|v| contains_ignore_case(v.as_bytes(), what.as_bytes()))
}

/// Whether `hay` contains `needle` (lower-case ASCII) in any case, without allocating: this
/// runs several times per check-in.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The format a client wants answers in: CBOR if it accepts CBOR (or sent CBOR and states no
/// preference), JSON otherwise.
pub(crate) fn answer_format(headers: &HeaderMap) -> Format {
    if header_has(headers, header::ACCEPT, CBOR) {
        Format::Cbor
    } else if header_has(headers, header::ACCEPT, "json") {
        Format::Json
    } else if header_has(headers, header::CONTENT_TYPE, CBOR) {
        Format::Cbor
    } else {
        Format::Json
    }
}

/// A request body in JSON or CBOR (by Content-Type), with the format to answer in.
#[derive(Debug)]
pub(crate) struct Wire<T>(pub(crate) Format, pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Wire<T> {
    type Rejection = ApiErr;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let cbor = header_has(req.headers(), header::CONTENT_TYPE, CBOR);
        let out = answer_format(req.headers());
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiErr::new(e.status(), "too-large", "the body is larger than 1 MiB")
                    .hint("send fewer items per request (device batches hold up to 10,000)")
            } else {
                ApiErr::new(e.status(), "bad-body", format!("cannot read the body: {e}"))
            }
        })?;
        let value = if cbor {
            // (ciborium does not expose its deserializer, so no field path here.)
            ciborium::from_reader(bytes.as_ref()).map_err(|e| {
                ApiErr::bad_request("bad-body", format!("the CBOR body does not match: {e}"))
            })?
        } else {
            // serde_path_to_error names the field that did not match (`components[0].id`).
            let mut de = serde_json::Deserializer::from_slice(&bytes);
            let v = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                ApiErr::bad_request(
                    "bad-body",
                    format!(
                        "the JSON body does not match at {}: {}",
                        e.path(),
                        e.inner()
                    ),
                )
                .hint(
                    "send JSON with Content-Type: application/json, or CBOR with application/cbor",
                )
            })?;
            de.end().map_err(|e| {
                ApiErr::bad_request(
                    "bad-body",
                    format!("trailing data after the JSON body: {e}"),
                )
            })?;
            v
        };
        Ok(Self(out, value))
    }
}

/// The answer format for requests without a body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accepts(pub(crate) Format);

impl<S: Send + Sync> FromRequestParts<S> for Accepts {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(answer_format(&parts.headers)))
    }
}

/// Serialises an answer in the chosen format.
pub(crate) fn reply<T: Serialize>(format: Format, status: StatusCode, value: &T) -> Response {
    match format {
        Format::Json => (status, axum::Json(value)).into_response(),
        Format::Cbor => {
            let mut buf = Vec::new();
            match ciborium::into_writer(value, &mut buf) {
                Ok(()) => (status, [(header::CONTENT_TYPE, CBOR)], buf).into_response(),
                Err(e) => ApiErr::internal(format!("CBOR encoding: {e}")).into_response(),
            }
        }
    }
}

/// What part of a representation to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// 304: the client's copy (If-None-Match) is current.
    NotModified,
    /// 200: the whole thing.
    Full,
    /// 206: bytes `start..end` (end exclusive).
    Part(u64, u64),
    /// 416: the range starts beyond the end.
    Unsatisfiable,
}

/// Decides what to send for a GET of a representation of `size` bytes with strong entity tag
/// `etag` (quoted). A Range is honoured only if If-Range (when present) names the current
/// entity tag, so a resumed download never splices two different payloads (RFC 9110 §13.1.5).
/// Malformed and multi-range requests get the whole representation (RFC 9110 §14.2 allows a
/// server to ignore Range).
pub(crate) fn want(headers: &HeaderMap, size: u64, etag: &str) -> Want {
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && inm.split(',').any(|t| t.trim() == etag || t.trim() == "*")
    {
        return Want::NotModified;
    }
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Want::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        && if_range.trim() != etag
    {
        // A weak tag, a date or another tag: the client's partial copy is of something else.
        return Want::Full;
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Want::Full;
    };
    if spec.contains(',') {
        return Want::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Want::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // A suffix: the last N bytes.
        return match last.parse::<u64>() {
            Ok(0) => Want::Unsatisfiable,
            Ok(_) if size == 0 => Want::Unsatisfiable,
            Ok(n) => Want::Part(size.saturating_sub(n), size),
            Err(_) => Want::Full,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return Want::Full;
    };
    let end = if last.is_empty() {
        size
    } else {
        match last.parse::<u64>() {
            Ok(l) if l >= start => l.saturating_add(1).min(size),
            _ => return Want::Full,
        }
    };
    if start >= size {
        return Want::Unsatisfiable;
    }
    Want::Part(start, end)
}

/// Builds the download answer's status and headers; `body` supplies the bytes of the range.
pub(crate) fn ranged_response(
    want: Want,
    size: u64,
    etag: &str,
    content_type: &str,
    body: Option<Body>,
) -> Response {
    let mut builder = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, "private, no-transform");
    let status = match want {
        Want::NotModified => StatusCode::NOT_MODIFIED,
        Want::Full => {
            builder = builder
                .header(header::CONTENT_LENGTH, size)
                .header(header::CONTENT_TYPE, content_type);
            StatusCode::OK
        }
        Want::Part(start, end) => {
            builder = builder
                .header(header::CONTENT_LENGTH, end - start)
                .header(header::CONTENT_TYPE, content_type)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{}/{size}", end - 1),
                );
            StatusCode::PARTIAL_CONTENT
        }
        Want::Unsatisfiable => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes */{size}"));
            StatusCode::RANGE_NOT_SATISFIABLE
        }
    };
    let body = match want {
        Want::Full | Want::Part(..) => body.unwrap_or_else(Body::empty),
        _ => Body::empty(),
    };
    builder
        .status(status)
        .body(body)
        .unwrap_or_else(|e| ApiErr::internal(e).into_response())
}

/// A strong entity tag from a SHA-256 hex digest.
pub(crate) fn etag_of(sha256_hex: &str) -> String {
    format!("\"{sha256_hex}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn formats_are_matched_in_any_case() {
        let cbor = h(&[("content-type", "Application/CBOR; charset=x")]);
        assert_eq!(answer_format(&cbor), Format::Cbor);
        let both = h(&[("accept", "APPLICATION/JSON"), ("content-type", CBOR)]);
        assert_eq!(answer_format(&both), Format::Json);
        assert_eq!(answer_format(&h(&[("accept", "*/*")])), Format::Json);
        assert!(!contains_ignore_case(b"cb", b"cbor"));
    }

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn ranges() {
        let e = "\"abc\"";
        assert_eq!(want(&h(&[]), 100, e), Want::Full);
        assert_eq!(
            want(&h(&[("range", "bytes=10-")]), 100, e),
            Want::Part(10, 100)
        );
        assert_eq!(
            want(&h(&[("range", "bytes=10-19")]), 100, e),
            Want::Part(10, 20)
        );
        assert_eq!(
            want(&h(&[("range", "bytes=90-500")]), 100, e),
            Want::Part(90, 100)
        );
        assert_eq!(
            want(&h(&[("range", "bytes=-5")]), 100, e),
            Want::Part(95, 100)
        );
        assert_eq!(
            want(&h(&[("range", "bytes=-500")]), 100, e),
            Want::Part(0, 100)
        );
        assert_eq!(
            want(&h(&[("range", "bytes=100-")]), 100, e),
            Want::Unsatisfiable
        );
        assert_eq!(
            want(&h(&[("range", "bytes=-0")]), 100, e),
            Want::Unsatisfiable
        );
        assert_eq!(want(&h(&[("range", "bytes=20-10")]), 100, e), Want::Full);
        assert_eq!(want(&h(&[("range", "bytes=1-2,5-6")]), 100, e), Want::Full);
        assert_eq!(want(&h(&[("range", "items=1-2")]), 100, e), Want::Full);
        assert_eq!(want(&h(&[("range", "bytes=x-")]), 100, e), Want::Full);
    }

    #[test]
    fn if_range_with_another_tag_sends_everything() {
        let e = "\"abc\"";
        let hs = h(&[("range", "bytes=10-"), ("if-range", "\"old\"")]);
        assert_eq!(want(&hs, 100, e), Want::Full);
        let hs = h(&[("range", "bytes=10-"), ("if-range", "\"abc\"")]);
        assert_eq!(want(&hs, 100, e), Want::Part(10, 100));
        let hs = h(&[("if-none-match", "\"abc\"")]);
        assert_eq!(want(&hs, 100, e), Want::NotModified);
    }
}
