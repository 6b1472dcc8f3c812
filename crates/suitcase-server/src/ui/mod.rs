//! The operator console (`/ui/`, docs/console.md): server-rendered HTML pages over the same
//! storage, engine and handlers as the management API, with no script of its own but one
//! small file that refreshes a campaign's live progress.
//!
//! Security model (each rule cites where it comes from):
//!
//! * Sign-in takes a management token once; the browser then holds only a random session id
//!   in a cookie that is `HttpOnly` (no script reads it), `SameSite=Strict` (RFC 6265bis
//!   §5.6.7: the browser does not send it on cross-site requests) and `Secure` over TLS.
//!   Sessions live on the server ([`Sessions`]) and name the token by its hash, so every
//!   request goes through the API's own token lookup: a revoked token, a sign-out or a
//!   server restart ends the session at once (OWASP Session Management Cheat Sheet:
//!   server-side invalidation, idle and absolute timeouts).
//! * Every state-changing request is a POST that must carry the session's anti-forgery token
//!   (OWASP CSRF Prevention Cheat Sheet, "Synchronizer Token Pattern"), compared in constant
//!   time, and must not come from another origin (`Origin`/`Sec-Fetch-Site`, same cheat
//!   sheet, "Verifying Origin with Standard Headers" and "Fetch Metadata"). SameSite is the
//!   first layer; the token is the one that does not depend on the browser.
//! * What a role may not do is not shown, and the handlers behind the buttons are the API's
//!   own, which check the role again (`Manager::require`).
//! * Every answer carries a Content-Security-Policy without inline script or style and with
//!   `frame-ancestors 'none'` (CSP Level 3 §6.4.2), `X-Frame-Options: DENY` (RFC 7034) for
//!   older browsers, `nosniff`, `Referrer-Policy: same-origin`, and `Cache-Control: no-store`
//!   on pages (RFC 9111 §5.2.2.5): a shared computer's cache keeps no fleet data.

#![expect(
    clippy::result_large_err,
    reason = "a page's refusal is the page's answer (a Response), built once on the way out"
)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use suitcase_protocol::Role;

use crate::AppState;
use crate::auth::{Manager, ct_eq, hash_secret, manager_by_hash};
use crate::error::ApiErr;

mod pages;
mod quarantine;
mod query;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "suitcase_session";
/// A session ends after this long without a request (OWASP Session Management: idle timeout).
const IDLE_SECONDS: i64 = 30 * 60;
/// And after this long in any case (absolute timeout).
const ABSOLUTE_SECONDS: i64 = 8 * 3600;
/// The most sessions held; at the limit the longest-idle one is dropped.
const MAX_SESSIONS: usize = 10_000;
/// Form bodies are small: sign-in, a campaign, an action.
const FORM_BODY: usize = 16 << 10;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// Signed-in browsers: session id hash → session.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

#[derive(Clone)]
struct Session {
    /// The SHA-256 of the management token it signed in with (as the tokens table has it).
    token_hash: String,
    /// The anti-forgery token of its forms.
    csrf: String,
    created: i64,
    last: i64,
}

impl Sessions {
    fn create(&self, token_hash: String, now: i64) -> (String, String) {
        let (sid, sid_hash) = crate::auth::new_secret("");
        let (csrf, _) = crate::auth::new_secret("");
        if let Ok(mut m) = self.map.lock() {
            m.retain(|_, s| live(s, now));
            if m.len() >= MAX_SESSIONS
                && let Some(oldest) = m.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
            m.insert(
                sid_hash,
                Session {
                    token_hash,
                    csrf: csrf.clone(),
                    created: now,
                    last: now,
                },
            );
        }
        (sid, csrf)
    }

    fn touch(&self, sid: &str, now: i64) -> Option<Session> {
        let key = hash_secret(sid);
        let mut m = self.map.lock().ok()?;
        let s = m.get_mut(&key)?;
        if !live(s, now) {
            m.remove(&key);
            return None;
        }
        s.last = now;
        Some(s.clone())
    }

    fn end(&self, sid: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&hash_secret(sid));
        }
    }
}

fn live(s: &Session, now: i64) -> bool {
    now - s.last < IDLE_SECONDS && now - s.created < ABSOLUTE_SECONDS
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A signed-in console user: the API's [`Manager`] and the session's form token.
pub(crate) struct Ui {
    pub(crate) who: Manager,
    pub(crate) csrf: String,
    sid: String,
}

impl Ui {
    pub(crate) fn role(&self) -> Role {
        self.who.0.role
    }

    /// Operators and admins change devices and campaigns (the API's `Cap::Operate`).
    pub(crate) fn operates(&self) -> bool {
        matches!(self.role(), Role::Operator | Role::Admin)
    }
}

impl FromRequestParts<AppState> for Ui {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let back = || Redirect::to("/ui/?signed_out=1").into_response();
        let sid = cookie_value(&parts.headers, COOKIE)
            .filter(|s| !s.is_empty() && s.len() <= 64)
            .ok_or_else(back)?
            .to_owned();
        let session = state.sessions.touch(&sid, state.now()).ok_or_else(back)?;
        match manager_by_hash(state, session.token_hash).await {
            Ok(who) => Ok(Self {
                who,
                csrf: session.csrf,
                sid,
            }),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                // The token was revoked since sign-in: the session goes with it.
                state.sessions.end(&sid);
                Err(back())
            }
            Err(e) => Err(error_page(&e)),
        }
    }
}

/// Refuses a POST from another site (OWASP CSRF Prevention Cheat Sheet, "Verifying Origin
/// with Standard Headers" and "Fetch Metadata headers"): `Sec-Fetch-Site` other than
/// `same-origin`/`none`, or an `Origin` that is not this server's own.
pub(crate) fn same_origin(headers: &HeaderMap) -> Result<(), Response> {
    let refuse = |why: &str| {
        Err(page_error(
            StatusCode::FORBIDDEN,
            "Refused: cross-site request",
            &format!(
                "{why}. State-changing requests must come from the console's own pages (OWASP CSRF Prevention Cheat Sheet)."
            ),
        ))
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return refuse(&format!("the browser marked this request {site}"));
    }
    // RFC 6454 §7.2: the browser's `Origin` is scheme://host[:port]; it must name this
    // server's `Host` (no `Origin` at all: a non-browser client or an old browser's GET-like
    // POST, which the anti-forgery token still guards).
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let origin = origin.to_str().unwrap_or("null");
        let ok = host.is_some_and(|h| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(h)
        });
        if !ok {
            return refuse(&format!(
                "the request came from origin {:?}, not this server",
                clip(origin, 80)
            ));
        }
    }
    Ok(())
}

/// Checks a state-changing form: same origin, and the session's anti-forgery token
/// (OWASP CSRF Prevention Cheat Sheet, "Synchronizer Token Pattern").
pub(crate) fn check_form(ui: &Ui, headers: &HeaderMap, csrf: Option<&str>) -> Result<(), Response> {
    same_origin(headers)?;
    let given = csrf.unwrap_or("");
    if given.is_empty() || !ct_eq(given.as_bytes(), ui.csrf.as_bytes()) {
        return Err(page_error(
            StatusCode::FORBIDDEN,
            "Refused: missing or wrong anti-forgery token",
            "This form did not carry this session's anti-forgery token, so it may have been sent by another site (OWASP CSRF Prevention Cheat Sheet, synchronizer token). Reload the page and try again.",
        ));
    }
    Ok(())
}

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(home))
        .route("/ui/signin", post(signin))
        .route("/ui/signout", post(signout))
        .route("/ui/static/console.css", get(css))
        .route("/ui/static/console.js", get(js))
        .route("/ui/fleet", get(pages::fleet))
        .route("/ui/devices/{id}", get(pages::device))
        .route("/ui/devices/{id}/token", post(pages::device_token))
        .route("/ui/devices/{id}/quarantine", post(quarantine::quarantine))
        .route(
            "/ui/devices/{id}/unquarantine",
            post(quarantine::unquarantine),
        )
        .route("/ui/releases", get(pages::releases))
        .route("/ui/releases/{id}/{action}", post(pages::release_act))
        .route(
            "/ui/campaigns",
            get(pages::campaigns).post(pages::campaign_create),
        )
        .route("/ui/campaigns/new", get(pages::campaign_new))
        .route("/ui/campaigns/{id}", get(pages::campaign))
        .route("/ui/campaigns/{id}/live", get(pages::campaign_live))
        .route("/ui/campaigns/{id}/{action}", post(pages::campaign_act))
        .route("/ui/keys", get(pages::keys))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/{*rest}", get(ui_not_found).post(ui_not_found))
        .layer(DefaultBodyLimit::max(FORM_BODY))
        .layer(middleware::from_fn(headers))
}

async fn ui_not_found() -> Response {
    page_error(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page in the console.",
    )
}

/// The security headers of every console answer (see the module's documentation).
async fn headers(req: axum::extract::Request, next: middleware::Next) -> Response {
    let asset = req.uri().path().starts_with("/ui/static/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    // `same-origin`, not `no-referrer`: with `no-referrer` Chromium sends `Origin: null` on the
    // console's own form posts, which the origin check must then refuse (Fetch Standard, "serializing a request origin").
    set(h, "referrer-policy", "same-origin");
    set(h, "cross-origin-opener-policy", "same-origin");
    if asset {
        set(h, "cache-control", "public, max-age=300");
    } else {
        set(h, "cache-control", "no-store");
    }
    res
}

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct HomeQuery {
    signed_out: Option<String>,
}

/// `GET /ui/`: the fleet when signed in, the sign-in form otherwise.
async fn home(
    State(state): State<AppState>,
    parts: HeaderMap,
    Query(q): Query<HomeQuery>,
) -> Response {
    if let Some(sid) = cookie_value(&parts, COOKIE)
        && state.sessions.touch(sid, state.now()).is_some()
    {
        return Redirect::to("/ui/fleet").into_response();
    }
    let note = if q.signed_out.is_some() {
        "<p class=\"note\" role=\"status\">You are signed out (or your session ended). Sign in again.</p>"
    } else {
        ""
    };
    signin_page(StatusCode::OK, note)
}

fn signin_page(status: StatusCode, note: &str) -> Response {
    let body = format!(
        "<main id=\"main\" class=\"signin\"><h1>suitcase console</h1>{note}\
<form method=\"post\" action=\"/ui/signin\">\
<label for=\"token\">Management token</label>\
<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required maxlength=\"200\" autofocus>\
<p class=\"help\">A token from <code>suitcase fleet token create</code>, or the first admin token in the server's data directory (<code>admin-token</code>).</p>\
<button type=\"submit\">Sign in</button></form></main>"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html_doc("Sign in", "", &body),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct SigninForm {
    token: Option<String>,
}

async fn signin(
    State(state): State<AppState>,
    conn: Option<axum::Extension<crate::serve::ConnInfo>>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<SigninForm>,
) -> Response {
    // Login CSRF (OWASP CSRF Prevention Cheat Sheet, "Login CSRF"): a sign-in posted from
    // another site would sign the victim in as the attacker.
    if let Err(r) = same_origin(&headers) {
        return r;
    }
    let token = f.token.unwrap_or_default();
    let token = token.trim();
    let refuse = |msg: &str| {
        signin_page(
            StatusCode::UNAUTHORIZED,
            &format!("<p class=\"error\" role=\"alert\">{}</p>", e(msg)),
        )
    };
    if token.is_empty() {
        return refuse("Enter a management token.");
    }
    if token.len() > 200 {
        return refuse("That is not a management token (too long).");
    }
    if token.starts_with("sct_d_") {
        return refuse("This is a device token; the console needs a management token (sct_a_…).");
    }
    let hash = hash_secret(token);
    let who = match manager_by_hash(&state, hash.clone()).await {
        Ok(w) => w,
        Err(err) if err.status == StatusCode::UNAUTHORIZED => {
            return refuse(&format!("Not signed in: {}.", err.body.message));
        }
        Err(err) => return error_page(&err),
    };
    let (sid, _) = state.sessions.create(hash, state.now());
    let _ = crate::api::audit(
        &state,
        &who,
        "console.signin",
        &who.0.id,
        serde_json::json!({}),
    )
    .await;
    // RFC 6265 §4.1.2.5: `Secure` only over TLS (a browser on plain HTTP would not keep it); §4.1.2.6 `HttpOnly`; RFC 6265bis §5.6.7
    // `SameSite=Strict`; §4.1.2.4 `Path=/ui` keeps it off the API; §4.1.2.2 `Max-Age` is the
    // absolute timeout (the server ends the session itself too).
    let secure = if conn.is_some_and(|c| c.tls) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={sid}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={ABSOLUTE_SECONDS}{secure}"
    );
    let mut res = Redirect::to("/ui/fleet").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    csrf: Option<String>,
}

async fn signout(
    State(state): State<AppState>,
    ui: Ui,
    headers: HeaderMap,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_form(&ui, &headers, f.csrf.as_deref()) {
        return r;
    }
    state.sessions.end(&ui.sid);
    let mut res = Redirect::to("/ui/?signed_out=1").into_response();
    // RFC 6265 §4.1.2.2: `Max-Age=0` makes the browser drop the cookie at once.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"
    )) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

// ---------------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------------

/// Escapes text for HTML content and attribute values (every dynamic value goes through this).
pub(crate) fn e(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a value for a URL query or path segment.
pub(crate) use suitcase_protocol::ddi::escape_segment as u;

pub(crate) use crate::error::clip;

fn html_doc(title: &str, nav: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · suitcase</title><link rel=\"stylesheet\" href=\"/ui/static/console.css\">\
<script src=\"/ui/static/console.js\" defer></script></head><body>\
<a class=\"skip\" href=\"#main\">Skip to content</a>{nav}{body}</body></html>",
        e(title)
    )
}

/// A whole page for a signed-in user: navigation (with the current page marked), who is
/// signed in, sign-out.
pub(crate) fn page(ui: &Ui, current: &str, title: &str, body: &str) -> Response {
    let mut nav = String::from("<header><nav aria-label=\"Console\"><ul>");
    for (href, name) in [
        ("/ui/fleet", "Fleet"),
        ("/ui/releases", "Releases"),
        ("/ui/campaigns", "Campaigns"),
        ("/ui/keys", "Keys"),
        ("/ui/audit", "Audit log"),
    ] {
        let cur = if name == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<li><a href=\"{href}\"{cur}>{name}</a></li>");
    }
    let _ = write!(
        nav,
        "</ul></nav><div class=\"who\">Signed in as <strong>{}</strong> (role: <span data-role=\"{}\">{}</span>)\
<form method=\"post\" action=\"/ui/signout\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<button type=\"submit\">Sign out</button></form></div></header>",
        e(&ui.who.0.name),
        ui.role().name(),
        ui.role().name(),
        e(&ui.csrf)
    );
    let body = format!("<main id=\"main\"><h1>{}</h1>{body}</main>", e(title));
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html_doc(title, &nav, &body),
    )
        .into_response()
}

/// An error page without navigation (the console's answer to an API error).
pub(crate) fn page_error(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<main id=\"main\"><h1>{}</h1><p class=\"error\" role=\"alert\">{}</p><p><a href=\"/ui/fleet\">Back to the fleet</a></p></main>",
        e(title),
        e(message)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html_doc(title, "", &body),
    )
        .into_response()
}

/// An API error as a console page, with its status, message and hint.
pub(crate) fn error_page(err: &ApiErr) -> Response {
    let mut msg = err.body.message.clone();
    if let Some(h) = &err.body.hint {
        msg.push_str(" — ");
        msg.push_str(h);
    }
    let title = match err.status {
        StatusCode::BAD_REQUEST => "Bad request",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Refused",
        StatusCode::UNPROCESSABLE_ENTITY => "Refused",
        s if s.is_server_error() => "Server error",
        _ => "Error",
    };
    page_error(err.status, title, &msg)
}

/// A form that POSTs an action with the anti-forgery token.
pub(crate) fn action_form(ui: &Ui, action: &str, label: &str, class: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" class=\"{class}\">{}</button></form>",
        e(action),
        e(&ui.csrf),
        e(label)
    )
}

// ---------------------------------------------------------------------------------------------
// Times
// ---------------------------------------------------------------------------------------------

pub(crate) use suitcase_protocol::time::duration;
use suitcase_protocol::time::{human, rfc3339};

/// `<time datetime="…">2026-12-06 11:52 UTC, 3 min ago</time>`.
pub(crate) fn when(now: i64, t: i64) -> String {
    format!("<time datetime=\"{}\">{}</time>", rfc3339(t), human(now, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_marked_up_for_machines_and_people() {
        assert_eq!(
            when(1_796_558_103, 1_796_557_923),
            "<time datetime=\"2026-12-06T11:52:03Z\">2026-12-06 11:52 UTC, 3 min ago</time>"
        );
    }

    #[test]
    fn escaping_covers_markup_and_attributes() {
        assert_eq!(
            e("<script>\"x\"&'y'</script>"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(u("a b/c?d"), "a%20b%2Fc%3Fd");
    }
}
