//! Who may do what. The authorization matrix over the socket, device isolation, revocation,
//! and the plain-HTTP rule, in process with a simulated remote peer.

#![expect(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

mod common;

use axum::body::Body;
use common::{Backend, Harness};
use reqwest::StatusCode;
use serde_json::json;
use suitcase_protocol::{Action, Outcome, Step};
use tower::ServiceExt as _;

both_backends!(
    role_matrix,
    devices_are_isolated_from_each_other,
    revoked_credentials_stop_working
);

/// RFC 9019 §3: the author must not be able to deploy by itself; viewers write nothing;
/// only admins manage keys and tokens.
async fn role_matrix(b: Backend) {
    let h = Harness::new(b).await;
    let roles = ["viewer", "author", "operator", "admin"];
    let mut tokens = Vec::new();
    for r in roles {
        tokens.push((
            r,
            if r == "admin" {
                h.admin.clone()
            } else {
                h.token(r).await
            },
        ));
    }
    let rel = h.release(1, &[1u8; 100]).await;
    let allowed = |role: &str, who: &[&str]| who.contains(&role);
    for (i, (role, token)) in tokens.iter().enumerate() {
        let role = *role;
        // Upload a release: authors (and admins).
        let env = h.build(
            100 + i as u64,
            &[i as u8; 64],
            &format!("https://fw.example/{i}.bin"),
        );
        let (s, v) = h.upload_envelope(token, &env).await;
        let want = if allowed(role, &["author", "admin"]) {
            StatusCode::CREATED
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(s, want, "{role} uploading a release: {v}");
        if s == StatusCode::FORBIDDEN {
            assert!(
                v["message"].as_str().unwrap().contains("author or admin"),
                "{v}"
            );
        }
        // Register a device: operators.
        let (s, v) = h
            .post(
                token,
                "/api/v1/devices",
                &json!({"name": format!("m-{role}")}),
            )
            .await;
        let want = if allowed(role, &["operator", "admin"]) {
            StatusCode::CREATED
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(s, want, "{role} registering a device: {v}");
        // Create and start a campaign: operators, never authors.
        let (s, v) = h
            .post(token, "/api/v1/campaigns", &json!({"name": format!("c-{role}"), "release_id": rel, "filter": {"devices": ["nobody"]}}))
            .await;
        let want = if allowed(role, &["operator", "admin"]) {
            StatusCode::CREATED
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(s, want, "{role} creating a campaign: {v}");
        // Keys and tokens: admins.
        let g = suitcase_author::keys::generate(suitcase_author::keys::KeyAlg::Ed25519, "h5w4")
            .unwrap();
        let p = h.dir.path().join(format!("k{i}.key"));
        suitcase_author::keys::write_atomic(&p, &g.private, true).unwrap();
        let (pem, _) = suitcase_author::keys::load_public(&p)
            .unwrap()
            .encode()
            .unwrap();
        let (s, v) = h
            .post(
                token,
                "/api/v1/keys",
                &json!({"name": format!("k-{role}"), "key": String::from_utf8(pem).unwrap()}),
            )
            .await;
        let want = if role == "admin" {
            StatusCode::CREATED
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(s, want, "{role} registering a key: {v}");
        let (s, _) = h
            .post(
                token,
                "/api/v1/tokens",
                &json!({"name": "x", "role": "admin"}),
            )
            .await;
        let want = if role == "admin" {
            StatusCode::CREATED
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(s, want, "{role} creating a token");
        // Reading: everyone.
        for path in [
            "/api/v1/devices",
            "/api/v1/releases",
            "/api/v1/campaigns",
            "/api/v1/audit",
            "/api/v1/keys",
            "/metrics",
        ] {
            let (s, v) = h.get(token, path).await;
            assert_eq!(s, StatusCode::OK, "{role} reading {path}: {v}");
        }
    }
    // An operator's campaign cannot be started by an author.
    let (_, campaigns) = h.get(&h.admin, "/api/v1/campaigns").await;
    let cid = campaigns[0]["id"].as_str().unwrap();
    let (s, _) = h
        .post(
            &tokens[1].1,
            &format!("/api/v1/campaigns/{cid}/start"),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "an author starting a campaign");
    let (s, _) = h
        .post(
            &tokens[0].1,
            &format!("/api/v1/campaigns/{cid}/start"),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a viewer starting a campaign");
    // Without a token, or with garbage: 401.
    let r = h.client.get(h.url("/api/v1/devices")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, _) = h.get("sct_a_forged", "/api/v1/devices").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The audit log names who did each thing.
    let (_, audit) = h.get(&h.admin, "/api/v1/audit?limit=1000").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "release.upload" && e["role"] == "author")
    );
    h.stop().await;
}

async fn devices_are_isolated_from_each_other(b: Backend) {
    let h = Harness::new(b).await;
    let rel = h.release(7, &[7u8; 500]).await;
    let devs = h.devices("iso", 2, &[]).await;
    let (a, bdev) = (&devs[0], &devs[1]);
    h.campaign(json!({"name": "only-a", "release_id": rel, "filter": {"devices": ["iso-0"]}}))
        .await;
    let offer = h.checkin(&a.1, 1).await.update.unwrap();
    h.report(&a.1, &rel, Step::Receive, Outcome::Success, None)
        .await;
    assert_eq!(h.checkin(&bdev.1, 1).await.action, Action::None);
    // B cannot fetch A's envelope or payload: 404, as if it did not exist.
    for url in [offer.manifest_url.clone(), offer.payloads[0].url.clone()] {
        let r = h
            .client
            .get(h.url(&url))
            .bearer_auth(&bdev.1)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{url}");
    }
    // B cannot report on A's update.
    assert_eq!(
        h.report(&bdev.1, &rel, Step::Apply, Outcome::Failure, None)
            .await,
        StatusCode::CONFLICT
    );
    // B's own state says nothing of A's update; there is no URL naming another device.
    let me: serde_json::Value = h
        .client
        .get(h.url("/api/v1/device/state"))
        .bearer_auth(&bdev.1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["name"], "iso-1");
    assert!(me["update"].is_null(), "{me}");
    // Device tokens do not open the management API, and management tokens do not open the
    // device API.
    let (s, v) = h.get(&bdev.1, &format!("/api/v1/devices/{}", a.0)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["message"].as_str().unwrap().contains("device token"));
    let r = h
        .client
        .post(h.url("/api/v1/device/checkin"))
        .bearer_auth(&h.admin)
        .json(&h.inventory(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Device URLs never carry a device identifier.
    assert!(!offer.manifest_url.contains(&a.0) && !offer.payloads[0].url.contains(&a.0));
    h.stop().await;
}

async fn revoked_credentials_stop_working(b: Backend) {
    let h = Harness::new(b).await;
    let devs = h.devices("rev", 2, &[]).await;
    assert_eq!(h.checkin(&devs[0].1, 1).await.action, Action::None);
    let r = h
        .client
        .delete(h.url(&format!("/api/v1/devices/{}", devs[0].0)))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = h
        .client
        .post(h.url("/api/v1/device/checkin"))
        .bearer_auth(&devs[0].1)
        .json(&h.inventory(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A rotated token replaces the old one at once.
    let (s, v) = h
        .post(
            &h.admin,
            &format!("/api/v1/devices/{}/token", devs[1].0),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let new = v["token"].as_str().unwrap();
    let r = h
        .client
        .post(h.url("/api/v1/device/checkin"))
        .bearer_auth(&devs[1].1)
        .json(&h.inventory(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(h.checkin(new, 1).await.action, Action::None);
    // Management tokens: revoked ones fail; the last admin token cannot be revoked.
    let op = h.token("operator").await;
    let (_, list) = h.get(&h.admin, "/api/v1/tokens").await;
    let op_id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "operator")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin_id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|t| t["token"].is_null()),
        "secrets are never listed"
    );
    let r = h
        .client
        .delete(h.url(&format!("/api/v1/tokens/{op_id}")))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (s, _) = h.get(&op, "/api/v1/devices").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let r = h
        .client
        .delete(h.url(&format!("/api/v1/tokens/{admin_id}")))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    h.stop().await;
}

/// RFC 8240 §3: a device's credentials identify it, so the device API is not served over
/// plain HTTP to other hosts unless the operator opts in. In process, with the connection
/// information a listener would attach.
#[tokio::test]
async fn plaintext_device_requests_from_other_hosts_are_refused() {
    for (allow, peer, tls, want) in [
        (false, "10.1.2.3:5555", false, StatusCode::FORBIDDEN),
        (false, "127.0.0.1:5555", false, StatusCode::UNAUTHORIZED),
        (false, "10.1.2.3:5555", true, StatusCode::UNAUTHORIZED),
        (true, "10.1.2.3:5555", false, StatusCode::UNAUTHORIZED),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = suitcase_server::Config::new(dir.path());
        config.allow_plaintext_devices = allow;
        let (app, _) = suitcase_server::app(config).await.unwrap();
        let mut req = axum::http::Request::post("/api/v1/device/checkin")
            .header("authorization", "Bearer sct_d_unknown")
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        req.extensions_mut().insert(suitcase_server::ConnInfo {
            peer: peer.parse().unwrap(),
            tls,
            client_cert: None,
        });
        let resp = app.oneshot(req).await.unwrap();
        // 401 means the request got past the transport rule to the (unknown) token.
        assert_eq!(resp.status(), want, "allow={allow} peer={peer} tls={tls}");
    }
}

/// The same router without a socket: the operational endpoints and a device check-in.
#[tokio::test]
async fn in_process_router_serves_the_apis() {
    let dir = tempfile::tempdir().unwrap();
    let (app, opened) = suitcase_server::app(suitcase_server::Config::new(dir.path()))
        .await
        .unwrap();
    let admin = opened.admin_token.unwrap();
    let call = |req: axum::http::Request<Body>| {
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
            )
        }
    };
    let (s, doc) = call(
        axum::http::Request::get("/openapi.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["paths"]["/api/v1/device/checkin"]["post"].is_object());
    let (s, dev) = call(
        axum::http::Request::post("/api/v1/devices")
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"name":"inproc-1"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let token = dev["token"].as_str().unwrap();
    assert!(token.starts_with("sct_d_"));
    let (s, answer) = call(
        axum::http::Request::post("/api/v1/device/checkin")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"components":[{"id":["00"],"sequence_number":4}]}"#,
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(answer["action"], "none");
    // A malformed body is a 400 that names the problem, not a 500.
    let (s, err) = call(
        axum::http::Request::post("/api/v1/device/checkin")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"components":"lots"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "bad-body");
    assert!(
        err["message"].as_str().unwrap().contains("components"),
        "{err}"
    );
}
