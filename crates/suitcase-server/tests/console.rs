//! The operator console (`/ui/`, docs/console.md) over a real socket: sign-in and its cookie,
//! the security headers, CSRF refusals, role hiding (and the server's refusal behind it),
//! keyset pagination, the per-attempt device timeline, and bad input answered with a 4xx.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::std_instead_of_core,
    reason = "test code"
)]

mod common;

use common::{Backend, Harness};
use reqwest::StatusCode;
use serde_json::json;
use suitcase_protocol::{InstalledComponent, Outcome, Step, StepReport};

both_backends!(
    signin_sets_a_strict_httponly_session_cookie,
    attack_forged_cross_site_posts_are_refused,
    viewer_sees_no_actions_and_its_post_is_refused,
    fleet_pages_by_keyset_and_filters,
    attack_bad_parameters_get_a_4xx_never_a_500,
    signout_and_revocation_end_the_session,
    device_timeline_keeps_attempts_apart,
    device_timeline_times_steps_from_their_reported_start,
    attack_device_log_is_shown_escaped_under_the_failed_step,
    dry_run_counts_what_start_would_target,
    releases_in_use_are_neither_archived_nor_deleted,
    an_operator_rolls_a_campaign_back,
    campaigns_warn_of_devices_that_cannot_roll_back,
    device_timeline_marks_offline_installs,
);

/// `application/x-www-form-urlencoded`, as a browser sends a form.
trait FormOf {
    fn form_of(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormOf for reqwest::RequestBuilder {
    fn form_of(self, pairs: &[(&str, &str)]) -> Self {
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"))
    }
}

/// A browser without redirects followed, so that answers and cookies can be checked.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct Session {
    client: reqwest::Client,
    base: String,
    cookie: String,
    origin: String,
}

impl Session {
    async fn signin(h: &Harness, token: &str) -> Self {
        let client = browser();
        let origin = h.base.clone();
        let r = client
            .post(h.url("/ui/signin"))
            .header("origin", &origin)
            .form_of(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "sign-in answers 303");
        assert_eq!(r.headers()["location"], "/ui/fleet");
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        let cookie = set.split(';').next().unwrap().to_owned();
        Self {
            client,
            base: h.base.clone(),
            cookie,
            origin,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.text().await.unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> StatusCode {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form_of(form);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send().await.unwrap().status()
    }

    /// The anti-forgery token of the session's forms, read off a page.
    async fn csrf(&self) -> String {
        let (_, body) = self.get("/ui/fleet").await;
        let at = body.find("name=\"csrf\" value=\"").expect("a form token") + 19;
        body[at..at + body[at..].find('"').unwrap()].to_owned()
    }
}

async fn running_campaign(h: &Harness, tag: &str) -> String {
    h.devices(tag, 4, &[tag]).await;
    let rel = h.release(2, b"console image").await;
    h.campaign(
        json!({"name": format!("roll {tag}"), "release_id": rel, "filter": {"tags_all": [tag]}}),
    )
    .await
}

async fn signin_sets_a_strict_httponly_session_cookie(b: Backend) {
    let h = Harness::new(b).await;
    let c = browser();
    let r = c.get(h.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("<input id=\"token\" name=\"token\""),
        "{body}"
    );
    assert!(!body.contains("<script>"), "no inline script");

    // A wrong token, a device token, nothing: 401, no cookie.
    let (_, dev) = h.devices("cookie", 1, &[]).await.pop().unwrap();
    for bad in ["sct_a_not-a-token", dev.as_str(), ""] {
        let r = c
            .post(h.url("/ui/signin"))
            .form_of(&[("token", bad)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "token {bad:?}");
        assert!(r.headers().get("set-cookie").is_none());
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let page = r.text().await.unwrap();
        assert!(
            page.contains("role=\"alert\"") && page.contains("name=\"token\""),
            "{page}"
        );
    }

    let r = c
        .post(h.url("/ui/signin"))
        .form_of(&[("token", h.admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    // RFC 6265bis §5.6.7 (SameSite=Strict), §4.1.2.6 (HttpOnly): the cookie script cannot read
    // and that no cross-site request carries.
    assert!(cookie.starts_with("suitcase_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/ui"), "{cookie}");
    assert!(
        !cookie.contains(h.admin.as_str()),
        "the token never goes into the cookie"
    );

    let s = Session::signin(&h, &h.admin).await;
    let (st, body) = s.get("/ui/fleet").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        body.contains("cookie-0"),
        "the fleet lists the device: {body}"
    );
    assert!(body.contains("role: <span data-role=\"admin\">"), "{body}");
    // Without a cookie: back to the sign-in form.
    let r = c.get(h.url("/ui/fleet")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/ui/")
    );
    // Every page answers for a signed-in admin.
    for p in [
        "/ui/releases",
        "/ui/campaigns",
        "/ui/keys",
        "/ui/audit",
        "/ui/campaigns/new",
    ] {
        let (st, body) = s.get(p).await;
        assert_eq!(st, StatusCode::OK, "{p}: {body}");
    }
    let (_, audit) = s.get("/ui/audit").await;
    assert!(audit.contains("console.signin"), "sign-ins are audited");
    h.stop().await;
}

/// OWASP CSRF Prevention Cheat Sheet: a state-changing request without the session's
/// synchronizer token, with a wrong one, or from a foreign origin is refused, even with the
/// session cookie attached (as a browser without SameSite support would send it).
async fn attack_forged_cross_site_posts_are_refused(b: Backend) {
    let h = Harness::new(b).await;
    let id = running_campaign(&h, "csrf").await;
    let s = Session::signin(&h, &h.admin).await;
    let token = s.csrf().await;
    let path = format!("/ui/campaigns/{id}/pause");
    assert_eq!(
        s.post(&path, &[], None).await,
        StatusCode::FORBIDDEN,
        "no token"
    );
    assert_eq!(
        s.post(&path, &[("csrf", "forged")], None).await,
        StatusCode::FORBIDDEN,
        "wrong token"
    );
    assert_eq!(
        s.post(&path, &[("csrf", &token)], Some("http://evil.example"))
            .await,
        StatusCode::FORBIDDEN,
        "foreign Origin"
    );
    let r = s
        .client
        .post(format!("{}{path}", s.base))
        .header("cookie", &s.cookie)
        .header("sec-fetch-site", "cross-site")
        .form_of(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "Sec-Fetch-Site: cross-site"
    );
    // Login CSRF: a sign-in posted from another site.
    let r = browser()
        .post(h.url("/ui/signin"))
        .header("origin", "http://evil.example")
        .form_of(&[("token", h.admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "cross-site sign-in");
    assert_eq!(
        h.campaign_info(&id).await["state"],
        "running",
        "nothing changed"
    );

    // The genuine form works.
    assert_eq!(
        s.post(&path, &[("csrf", &token)], Some(&s.origin)).await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(h.campaign_info(&id).await["state"], "paused");
    assert_eq!(
        s.post(
            &format!("/ui/campaigns/{id}/resume"),
            &[("csrf", &token)],
            None
        )
        .await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(h.campaign_info(&id).await["state"], "running");
    h.stop().await;
}

async fn viewer_sees_no_actions_and_its_post_is_refused(b: Backend) {
    let h = Harness::new(b).await;
    let id = running_campaign(&h, "viewer").await;
    let viewer = h.token("viewer").await;
    let s = Session::signin(&h, &viewer).await;
    let (st, body) = s.get(&format!("/ui/campaigns/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("data-state=\"running\""), "{body}");
    assert!(
        !body.contains("/pause\""),
        "no pause button for a viewer: {body}"
    );
    assert!(!body.contains("/cancel\""), "no abort button for a viewer");
    let (_, list) = s.get("/ui/campaigns").await;
    assert!(
        !list.contains("/ui/campaigns/new"),
        "no New campaign for a viewer"
    );
    let (_, dev) = s.get("/ui/devices/viewer-0").await;
    assert!(!dev.contains("/token\""), "no token rotation for a viewer");
    // The server refuses what the page does not offer.
    let token = s.csrf().await;
    assert_eq!(
        s.post(
            &format!("/ui/campaigns/{id}/pause"),
            &[("csrf", &token)],
            None
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.post("/ui/devices/viewer-0/token", &[("csrf", &token)], None)
            .await,
        StatusCode::FORBIDDEN
    );
    let (st, _) = s.get("/ui/campaigns/new").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(h.campaign_info(&id).await["state"], "running");

    // An operator sees the actions.
    let op = h.token("operator").await;
    let s = Session::signin(&h, &op).await;
    let (_, body) = s.get(&format!("/ui/campaigns/{id}")).await;
    assert!(body.contains("/pause\""), "{body}");
    h.stop().await;
}

async fn fleet_pages_by_keyset_and_filters(b: Backend) {
    let h = Harness::new(b).await;
    h.devices("page", 25, &["paged"]).await;
    h.devices("other", 3, &["else"]).await;
    let s = Session::signin(&h, &h.admin).await;
    let rows = |body: &str| -> Vec<String> {
        body.split("<th scope=\"row\"><a href=\"/ui/devices/")
            .skip(1)
            .map(|r| {
                let t = &r[r.find('>').unwrap() + 1..];
                t[..t.find('<').unwrap()].to_owned()
            })
            .collect()
    };
    let (st, first) = s.get("/ui/fleet?tag=paged&limit=10").await;
    assert_eq!(st, StatusCode::OK, "{first}");
    let one = rows(&first);
    assert_eq!(one.len(), 10, "{one:?}");
    assert!(one.iter().all(|n| n.starts_with("page-")));
    let at = first
        .find("rel=\"next\"")
        .map(|_| ())
        .and(first.find("after="));
    assert!(at.is_some(), "a next page link");
    let (_, second) = s
        .get(&format!("/ui/fleet?limit=10&tag=paged&after={}", one[9]))
        .await;
    let two = rows(&second);
    assert_eq!(two.len(), 10);
    assert!(
        two.iter().all(|n| n > &one[9]),
        "keyset: after the last name"
    );
    let (_, third) = s
        .get(&format!("/ui/fleet?limit=10&tag=paged&after={}", two[9]))
        .await;
    assert_eq!(rows(&third).len(), 5);
    assert!(
        !third.contains("rel=\"next\""),
        "no next page after the last"
    );
    // Search and status filters.
    let (_, found) = s.get("/ui/fleet?q=THER-").await;
    assert_eq!(rows(&found).len(), 3, "name contains, any case");
    let (_, never) = s.get("/ui/fleet?status=never&limit=500").await;
    assert_eq!(rows(&never).len(), 28);
    let (_, online) = s.get("/ui/fleet?status=online").await;
    assert_eq!(rows(&online).len(), 0);
    // Counts.
    assert!(
        first.contains("/ui/fleet?tag=paged\">paged</a></td><td>25</td>"),
        "{first}"
    );
    h.stop().await;
}

async fn attack_bad_parameters_get_a_4xx_never_a_500(b: Backend) {
    let h = Harness::new(b).await;
    let s = Session::signin(&h, &h.admin).await;
    let long = "x".repeat(10_000);
    for (path, want) in [
        ("/ui/fleet?limit=100000".to_owned(), "limit"),
        ("/ui/fleet?limit=0".to_owned(), "limit"),
        ("/ui/fleet?limit=abc".to_owned(), "limit"),
        ("/ui/fleet?status=sideways".to_owned(), "status"),
        ("/ui/fleet?version=-1".to_owned(), "version"),
        ("/ui/fleet?silent=99999999999999999999".to_owned(), "silent"),
        ("/ui/fleet?colour=red".to_owned(), "colour"),
        (format!("/ui/fleet?q={long}"), "q is 10000 characters"),
        ("/ui/fleet?tag=%07bell".to_owned(), "control"),
        ("/ui/audit?limit=1000000".to_owned(), "limit"),
        ("/ui/audit?before=x".to_owned(), "before"),
        (
            "/ui/campaigns/new?name=x&release=nope".to_owned(),
            "release",
        ),
        (
            "/ui/campaigns/new?name=x&release=r&waves=0%25".to_owned(),
            "wave 1",
        ),
        (
            "/ui/campaigns/new?name=x&release=r&success=lots".to_owned(),
            "success",
        ),
    ] {
        let (st, body) = s.get(&path).await;
        assert!(st.is_client_error(), "{path}: {st}");
        assert!(
            body.contains(want),
            "{path}: the answer names {want:?}: {body}"
        );
    }
    for path in [
        "/ui/devices/no-such-device",
        "/ui/campaigns/cmp_nothing",
        "/ui/nowhere",
    ] {
        let (st, _) = s.get(path).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
    }
    // A form over the body limit, and a cookie that is not a session.
    let r = s
        .client
        .post(h.url("/ui/signin"))
        .form_of(&[("token", &"y".repeat(100_000))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The rest of that body was never read: the server closes the connection, and says so,
    // so that the client does not send its next request into it.
    assert_eq!(
        r.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    let r = s
        .client
        .get(h.url("/ui/fleet"))
        .header("cookie", format!("suitcase_session={long}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    h.stop().await;
}

async fn signout_and_revocation_end_the_session(b: Backend) {
    let h = Harness::new(b).await;
    let s = Session::signin(&h, &h.admin).await;
    let token = s.csrf().await;
    assert_eq!(
        s.post("/ui/signout", &[("csrf", &token)], None).await,
        StatusCode::SEE_OTHER
    );
    let (st, _) = s.get("/ui/fleet").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "the old cookie no longer works");

    let op = h.token("operator").await;
    let s = Session::signin(&h, &op).await;
    assert_eq!(s.get("/ui/fleet").await.0, StatusCode::OK);
    let (_, list) = h.get(&h.admin, "/api/v1/tokens").await;
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "operator")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = h
        .client
        .delete(h.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        s.get("/ui/fleet").await.0,
        StatusCode::SEE_OTHER,
        "a revoked token's session ends with it"
    );
    // Idle timeout: 30 minutes without a request.
    let s = Session::signin(&h, &h.admin).await;
    h.advance(31 * 60);
    assert_eq!(s.get("/ui/fleet").await.0, StatusCode::SEE_OTHER);
    h.stop().await;
}

async fn device_timeline_keeps_attempts_apart(b: Backend) {
    let h = Harness::new(b).await;
    let (_, tok) = h.devices("tl", 1, &["tl"]).await.pop().unwrap();
    let rel = h.release(2, b"timeline image").await;
    h.checkin(&tok, 1).await;
    h.campaign(json!({"name": "tl", "release_id": rel, "filter": {"tags_all": ["tl"]}}))
        .await;
    h.checkin(&tok, 1).await;
    let send = |step: Step, outcome: Outcome, detail: Option<&str>| {
        let rep = StepReport {
            release_id: rel.clone(),
            step,
            outcome,
            reason: (outcome == Outcome::Failure).then(|| "no-space".to_owned()),
            detail: detail.map(str::to_owned),
            progress: None,
            started_at: None,
            log: None,
            suit_report: None,
            offline: false,
        };
        let req = h
            .client
            .post(h.url("/api/v1/device/reports"))
            .bearer_auth(&tok)
            .json(&rep);
        async move { req.send().await.unwrap().status() }
    };
    assert!(
        send(Step::Receive, Outcome::Success, None)
            .await
            .is_success()
    );
    h.advance(5);
    assert!(
        send(
            Step::Check,
            Outcome::Failure,
            Some("flash full: 12 bytes <free>")
        )
        .await
        .is_success()
    );
    h.advance(60);
    for step in Step::ALL {
        assert!(
            send(step, Outcome::Success, None).await.is_success(),
            "{step:?}"
        );
    }
    let s = Session::signin(&h, &h.admin).await;
    let (st, body) = s.get("/ui/devices/tl-0").await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("Attempt 1 on release"), "{body}");
    assert!(body.contains("Attempt 2 on release"), "{body}");
    assert!(body.contains("failed at check"), "{body}");
    assert!(body.contains(": succeeded</h3>"), "{body}");
    assert!(
        body.contains("flash full: 12 bytes &lt;free&gt;"),
        "the full detail, escaped: {body}"
    );
    assert!(body.contains("<code>no-space</code>"));
    assert!(body.contains(" UTC, "), "human times");
    h.stop().await;
}

/// A step's duration runs from the `started_at` the device reported, not from the previous
/// report; a running download shows its share of the release.
async fn device_timeline_times_steps_from_their_reported_start(b: Backend) {
    let h = Harness::new(b).await;
    let (_, tok) = h.devices("ts", 1, &["ts"]).await.pop().unwrap();
    let rel = h.release(2, &[7u8; 3000]).await;
    h.campaign(json!({"name": "ts", "release_id": rel, "filter": {"tags_all": ["ts"]}}))
        .await;
    h.checkin(&tok, 1).await;
    let t = h.clock.load(std::sync::atomic::Ordering::SeqCst);
    let send = |outcome: &str, progress: Option<u64>| {
        let req = h
            .client
            .post(h.url("/api/v1/device/reports"))
            .bearer_auth(&tok)
            .json(
                &json!({"release_id": rel, "step": "receive", "outcome": outcome,
                          "progress": progress, "started_at": t - 100}),
            );
        async move { req.send().await.unwrap().status() }
    };
    assert!(send("in-progress", Some(1500)).await.is_success());
    let s = Session::signin(&h, &h.admin).await;
    let (st, body) = s.get("/ui/devices/ts-0").await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("downloading: "), "{body}");
    assert!(body.contains("% of "), "{body}");
    assert!(
        body.contains("1 min 40 s"),
        "running since its start: {body}"
    );
    h.advance(20);
    assert!(send("success", None).await.is_success());
    let (_, body) = s.get("/ui/devices/ts-0").await;
    // From the reported start (t - 100) to the end (t + 20); the previous report would say 20 s.
    assert!(body.contains("<td>2 min 0 s</td>"), "{body}");
    assert!(!body.contains("downloading: "), "{body}");
    h.stop().await;
}

/// A failed step's log tail is shown in a `<details>` under it, escaped.
async fn attack_device_log_is_shown_escaped_under_the_failed_step(b: Backend) {
    let h = Harness::new(b).await;
    let (_, tok) = h.devices("lg", 1, &["lg"]).await.pop().unwrap();
    let rel = h.release(2, b"log image").await;
    h.campaign(json!({"name": "lg", "release_id": rel, "filter": {"tags_all": ["lg"]}}))
        .await;
    h.checkin(&tok, 1).await;
    let r = h
        .client
        .post(h.url("/api/v1/device/reports"))
        .bearer_auth(&tok)
        .json(
            &json!({"release_id": rel, "step": "clean-up", "outcome": "failure",
                      "reason": "health-check",
                      "log": "ERROR <script>alert(1)</script> & more"}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let s = Session::signin(&h, &h.admin).await;
    let (st, body) = s.get("/ui/devices/lg-0").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        body.contains("<details class=\"log\"><summary>Device log"),
        "{body}"
    );
    assert!(
        body.contains("ERROR &lt;script&gt;alert(1)&lt;/script&gt; &amp; more"),
        "{body}"
    );
    assert!(!body.contains("<script>alert(1)"), "{body}");
    h.stop().await;
}

/// `POST /api/v1/campaigns/dry-run` (the console's dry run and `campaign create --dry-run`):
/// the count `start` would target, why others are left out, and nothing created.
async fn dry_run_counts_what_start_would_target(b: Backend) {
    let h = Harness::new(b).await;
    let devs = h.devices("dry", 5, &["dry"]).await;
    let rel = h.release(2, b"dry image").await;
    // One device already runs sequence 2; one is busy in another live campaign.
    h.checkin(&devs[0].1, 2).await;
    h.campaign(json!({"name": "busy", "release_id": rel, "filter": {"devices": ["dry-4"]}}))
        .await;
    let spec = json!({"name": "x", "release_id": rel, "filter": {"tags_all": ["dry"]}});
    let viewer = h.token("viewer").await;
    let (st, _) = h.post(&viewer, "/api/v1/campaigns/dry-run", &spec).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a viewer may not plan campaigns");
    let (st, v) = h.post(&h.admin, "/api/v1/campaigns/dry-run", &spec).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["matched"], 5, "{v}");
    assert_eq!(v["busy"], 1, "{v}");
    assert_eq!(v["targeted"], 4, "{v}");
    assert_eq!(v["up_to_date"], 1, "{v}");
    assert_eq!(v["devices"].as_array().unwrap().len(), 4);
    let (_, nobody) = h
        .post(
            &h.admin,
            "/api/v1/campaigns/dry-run",
            &json!({"name": "x", "release_id": rel, "filter": {"tags_all": ["none"]}}),
        )
        .await;
    assert_eq!(nobody["targeted"], 0);
    let (st, _) = h
        .post(
            &h.admin,
            "/api/v1/campaigns/dry-run",
            &json!({"name": "x", "release_id": "rel_nothing"}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, list) = h.get(&h.admin, "/api/v1/campaigns").await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "a dry run creates nothing"
    );
    h.stop().await;
}

async fn releases_in_use_are_neither_archived_nor_deleted(b: Backend) {
    let h = Harness::new(b).await;
    let used = running_campaign(&h, "arch").await;
    let rel = h.campaign_info(&used).await["release_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let del = |id: String| {
        let req = h
            .client
            .delete(h.url(&format!("/api/v1/releases/{id}")))
            .bearer_auth(&h.admin);
        async move {
            let r = req.send().await.unwrap();
            let s = r.status();
            (s, r.text().await.unwrap())
        }
    };
    let archive = |id: &str| format!("/api/v1/releases/{id}/archive");
    // A running campaign uses it: neither.
    let (st, v) = h.post(&h.admin, &archive(&rel), &json!({})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "release-in-use");
    assert!(v["message"].as_str().unwrap().contains(&used), "{v}");
    let (st, body) = del(rel.clone()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    let viewer = h.token("viewer").await;
    let (st, _) = h.post(&viewer, &archive(&rel), &json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Once the campaign is over: archived, and no new campaign may use it; still not deleted
    // (the campaign's history refers to it).
    let (st, _) = h
        .post(
            &h.admin,
            &format!("/api/v1/campaigns/{used}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = h.post(&h.admin, &archive(&rel), &json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["archived"], true);
    let (st, v) = h
        .post(
            &h.admin,
            "/api/v1/campaigns",
            &json!({"name": "again", "release_id": rel}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "release-archived");
    let (st, body) = del(rel.clone()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");

    // A release no campaign used: deleted, from the console (author or admin), CSRF-checked.
    let unused = h.release(5, b"never deployed").await;
    let s = Session::signin(&h, &h.admin).await;
    let (_, page) = s.get("/ui/releases").await;
    assert!(
        page.contains(&format!("/ui/releases/{unused}/delete")),
        "{page}"
    );
    assert!(page.contains("archived"), "{page}");
    assert!(
        !page.contains(&format!("/ui/releases/{rel}/archive")),
        "no Archive button on an archived release"
    );
    let token = s.csrf().await;
    let path = format!("/ui/releases/{unused}/delete");
    assert_eq!(
        s.post(&path, &[], None).await,
        StatusCode::FORBIDDEN,
        "no token"
    );
    assert_eq!(
        s.post(&path, &[("csrf", &token)], None).await,
        StatusCode::SEE_OTHER
    );
    let (st, _) = h.get(&h.admin, &format!("/api/v1/releases/{unused}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = del(unused).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, audit) = s.get("/ui/audit?action=release.").await;
    assert!(
        audit.contains("release.delete") && audit.contains("release.archive"),
        "{audit}"
    );
    // A release a draft campaign names only as its rollback release is in use too.
    let base = h.release(6, b"deployed next").await;
    let back = h.release(7, b"the previous image, re-signed").await;
    let (st, v) = h
        .post(
            &h.admin,
            "/api/v1/campaigns",
            &json!({"name": "with-rollback", "release_id": base, "rollback_release_id": back}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let draft = v["id"].as_str().unwrap().to_owned();
    let (st, body) = del(back.clone()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert!(
        body.contains("release-in-use") && body.contains(&draft),
        "{body}"
    );
    // A viewer sees no release buttons.
    let vs = Session::signin(&h, &viewer).await;
    let (_, page) = vs.get("/ui/releases").await;
    assert!(!page.contains("/archive\""), "{page}");
    h.stop().await;
}

async fn an_operator_rolls_a_campaign_back(b: Backend) {
    let h = Harness::new(b).await;
    let devs = h.devices("rb", 2, &["rb"]).await;
    let rel = h.release(2, b"new image").await;
    let back = h.release(3, b"old image re-signed").await;
    let id = h
        .campaign(
            json!({"name": "rb", "release_id": rel, "filter": {"tags_all": ["rb"]},
            "rollback_release_id": back}),
        )
        .await;
    for (_, tok) in &devs {
        h.checkin(tok, 1).await;
    }
    // Without a rollback release there is nothing to roll back to.
    let plain = running_campaign(&h, "plainrb").await;
    let (st, v) = h
        .post(
            &h.admin,
            &format!("/api/v1/campaigns/{plain}/rollback"),
            &json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "no-rollback-release");

    let s = Session::signin(&h, &h.admin).await;
    let (_, page) = s.get(&format!("/ui/campaigns/{id}")).await;
    assert!(
        page.contains(&format!("/ui/campaigns/{id}/rollback")),
        "{page}"
    );
    let (_, page) = s.get(&format!("/ui/campaigns/{plain}")).await;
    assert!(
        !page.contains("/rollback\""),
        "no Roll back without a rollback release"
    );
    let viewer = h.token("viewer").await;
    let vs = Session::signin(&h, &viewer).await;
    let vt = vs.csrf().await;
    assert_eq!(
        vs.post(
            &format!("/ui/campaigns/{id}/rollback"),
            &[("csrf", &vt)],
            None
        )
        .await,
        StatusCode::FORBIDDEN
    );
    let token = s.csrf().await;
    assert_eq!(
        s.post(
            &format!("/ui/campaigns/{id}/rollback"),
            &[("csrf", &token)],
            None
        )
        .await,
        StatusCode::SEE_OTHER
    );
    let info = h.campaign_info(&id).await;
    assert_eq!(info["state"], "rolled_back", "{info}");
    assert!(
        info["state_reason"]
            .as_str()
            .unwrap()
            .contains("rolled back by admin")
    );
    let (_, members) = h
        .get(&h.admin, &format!("/api/v1/campaigns/{id}/devices"))
        .await;
    for m in members.as_array().unwrap() {
        assert_eq!(m["state"], "rolling_back", "{members}");
        assert_eq!(m["release_id"], back.as_str());
    }
    h.stop().await;
}

/// A check-in whose one component is `app` (the test release's) as the agent reports it.
async fn checkin_app(h: &Harness, tok: &str, handler: Option<&str>, rollback: Option<bool>) {
    checkin_component(h, tok, b"app", handler, rollback).await;
}

async fn checkin_component(
    h: &Harness,
    tok: &str,
    id: &[u8],
    handler: Option<&str>,
    rollback: Option<bool>,
) {
    let mut inv = h.inventory(1);
    inv.components = vec![InstalledComponent {
        id: vec![hex::encode(id)],
        sequence_number: 1,
        handler: handler.map(str::to_owned),
        rollback,
        ..InstalledComponent::default()
    }];
    let r = h
        .client
        .post(h.url("/api/v1/device/checkin"))
        .bearer_auth(tok)
        .json(&inv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// The inventory's `handler` and `rollback` are stored and shown (API and console), and a
/// campaign says, before it starts, how many of its devices cannot roll back what its release
/// updates: the dry run, the draft, the running campaign, and their console pages. Devices
/// not targeted, components the release does not update and agents that do not say are not
/// counted.
async fn campaigns_warn_of_devices_that_cannot_roll_back(b: Backend) {
    let h = Harness::new(b).await;
    let devs = h.devices("rb", 4, &["rb"]).await;
    let other = h.devices("rbx", 1, &["rbx"]).await;
    let rel = h.release(2, b"rollback image").await;
    checkin_app(&h, &devs[0].1, Some("deb"), Some(false)).await;
    checkin_app(&h, &devs[1].1, Some("file"), Some(true)).await;
    checkin_app(&h, &devs[2].1, None, Some(true)).await;
    // Cannot roll back, but another component than the release's.
    checkin_component(&h, &devs[3].1, b"db", Some("script"), Some(false)).await;
    // Cannot roll back, but not targeted.
    checkin_app(&h, &other[0].1, Some("deb"), Some(false)).await;
    let (_, d) = h
        .get(&h.admin, &format!("/api/v1/devices/{}", devs[0].0))
        .await;
    let c = &d["inventory"]["components"][0];
    assert_eq!(
        (&c["handler"], &c["rollback"]),
        (&json!("deb"), &json!(false)),
        "{d}"
    );
    let (_, d) = h
        .get(&h.admin, &format!("/api/v1/devices/{}", devs[2].0))
        .await;
    let c = &d["inventory"]["components"][0];
    assert!(
        c.get("handler").is_none(),
        "a slot image has no handler: {d}"
    );
    assert_eq!(c["rollback"], true, "{d}");

    let spec = json!({"name": "rb", "release_id": rel, "filter": {"tags_all": ["rb"]}});
    let want = json!([{"component": ["617070"], "handler": "deb", "devices": 1, "of": 4}]);
    let (st, v) = h.post(&h.admin, "/api/v1/campaigns/dry-run", &spec).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["no_rollback"], want, "{v}");
    assert!(v.get("no_rollback_partial").is_none(), "{v}");
    // Nothing to warn of: the field is left out.
    let (_, v) = h
        .post(
            &h.admin,
            "/api/v1/campaigns/dry-run",
            &json!({"name": "ok", "release_id": rel, "filter": {"devices": [devs[1].0]}}),
        )
        .await;
    assert!(v.get("no_rollback").is_none(), "{v}");

    let (st, created) = h.post(&h.admin, "/api/v1/campaigns", &spec).await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let draft = h.campaign_info(&id).await;
    assert_eq!(
        draft["no_rollback"], want,
        "the draft, before it starts: {draft}"
    );
    let s = Session::signin(&h, &h.admin).await;
    let (st, page) = s.get(&format!("/ui/campaigns/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        page.contains("<li>1 of 4 devices cannot roll back app (deb handler)</li>"),
        "{page}"
    );
    let (st, page) = s
        .get(&format!("/ui/campaigns/new?name=rb2&release={rel}&tags=rb"))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        page.contains("1 of 4 devices cannot roll back app (deb handler)"),
        "the console's dry run: {page}"
    );
    let (st, v) = h
        .post(
            &h.admin,
            &format!("/api/v1/campaigns/{id}/start"),
            &json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let running = h.campaign_info(&id).await;
    assert_eq!(running["no_rollback"], want, "its members: {running}");
    let (_, list) = h.get(&h.admin, "/api/v1/campaigns").await;
    assert!(
        list[0].get("no_rollback").is_none(),
        "the list does not compute it: {list}"
    );

    let (_, page) = s.get("/ui/devices/rb-0").await;
    assert!(page.contains("<th scope=\"col\">Rollback</th>"), "{page}");
    assert!(page.contains("deb module"), "{page}");
    assert!(page.contains("⚠ cannot roll back"), "{page}");
    let (_, page) = s.get("/ui/devices/rb-2").await;
    assert!(page.contains("slot image"), "{page}");
    assert!(page.contains("✓ can roll back"), "{page}");
    h.stop().await;
}

/// An install from an offline bundle is marked offline in the console's timeline, its steps
/// too; an online attempt is not.
async fn device_timeline_marks_offline_installs(b: Backend) {
    let h = Harness::new(b).await;
    let (_, tok) = h.devices("off", 1, &["off"]).await.pop().unwrap();
    let rel = h.release(2, b"offline image").await;
    h.checkin(&tok, 1).await;
    for step in [Step::Receive, Step::Check] {
        let r = h
            .client
            .post(h.url("/api/v1/device/reports"))
            .bearer_auth(&tok)
            .json(&json!({"release_id": rel, "step": step, "outcome": "success", "offline": true}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let s = Session::signin(&h, &h.admin).await;
    let (st, body) = s.get("/ui/devices/off-0").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        body.contains("<article class=\"attempt offline\""),
        "{body}"
    );
    assert!(
        body.contains("<span class=\"badge s-offline\">offline bundle</span>"),
        "{body}"
    );
    assert_eq!(
        body.matches("<p class=\"offline\">offline: installed from a bundle")
            .count(),
        2,
        "each step: {body}"
    );
    // An online attempt, later, is not marked.
    let rel3 = h.release(3, b"online image").await;
    h.campaign(json!({"name": "on", "release_id": rel3, "filter": {"tags_all": ["off"]}}))
        .await;
    h.checkin(&tok, 1).await;
    h.report(&tok, &rel3, Step::Receive, Outcome::Success, None)
        .await;
    let (_, body) = s.get("/ui/devices/off-0").await;
    assert_eq!(
        body.matches("<article class=\"attempt offline\"").count(),
        1,
        "{body}"
    );
    assert_eq!(
        body.matches("<article class=\"attempt\"").count(),
        1,
        "{body}"
    );
    h.stop().await;
}
