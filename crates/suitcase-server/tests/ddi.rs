//! The hawkBit DDI API (docs/ddi.md), resource by resource, with the request shapes SWUpdate
//! 2022.12's suricatta sends (recorded on the wire; ../shared/reference/hawkbit-ddi.md §7):
//! integer action ids in strings, `HH:MM:SS` sleeps, exactly 200 on feedback and configData,
//! 410 on a closed action, lower-case hashes and integer sizes, HEAD then GET with Range.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code"
)]

mod common;

use common::{Backend, Harness};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha1::Digest as _;
use sqlx::Row as _;

both_backends!(
    a_device_polls_installs_and_reports_like_swupdate,
    a_failure_with_swupdate_details_is_counted_and_shown,
    action_ids_past_i32_max_are_never_handed_out,
);

/// The exact feedback body SWUpdate 2022.12 sends (printf template in server_hawkbit.c).
fn swu_feedback(id: i64, execution: &str, finished: &str, details: &[&str]) -> String {
    let details: Vec<String> = details.iter().map(|d| format!("{d:?}")).collect();
    format!(
        "{{\"id\": {id}, \"time\": \"20261206T114413\", \"status\": {{\"result\": {{\"progress\": {{\"cnt\": 0, \"of\": 0}}, \"finished\": \"{finished}\"}}, \"execution\": \"{execution}\", \"details\": [ {} ]}}}}",
        details.join(", ")
    )
}

struct Ddi<'a> {
    h: &'a Harness,
    name: String,
    token: String,
    tenant: &'static str,
}

impl Ddi<'_> {
    fn url(&self, rest: &str) -> String {
        self.h.url(&format!(
            "/{}/controller/v1/{}{rest}",
            self.tenant, self.name
        ))
    }

    fn auth(&self) -> String {
        format!("TargetToken {}", self.token)
    }

    async fn get(&self, url: &str) -> (StatusCode, Value) {
        let r = self
            .h
            .client
            .get(url)
            .header("authorization", self.auth())
            .header("accept", "application/json")
            .header("charsets", "utf-8")
            .send()
            .await
            .unwrap();
        let s = r.status();
        let t = r.text().await.unwrap();
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    async fn send(&self, method: reqwest::Method, url: &str, body: String) -> (StatusCode, String) {
        let r = self
            .h
            .client
            .request(method, url)
            .header("authorization", self.auth())
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.text().await.unwrap())
    }

    async fn poll(&self) -> Value {
        let (s, v) = self.get(&self.url("")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// The deploymentBase href of the poll, and the action id in it.
    async fn action(&self) -> Option<(String, i64)> {
        let v = self.poll().await;
        let href = v["_links"]["deploymentBase"]["href"].as_str()?.to_owned();
        let id = href
            .rsplit('/')
            .next()
            .unwrap()
            .split('?')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Some((href, id))
    }

    async fn feedback(
        &self,
        id: i64,
        execution: &str,
        finished: &str,
        details: &[&str],
    ) -> (StatusCode, String) {
        self.send(
            reqwest::Method::POST,
            &self.url(&format!("/deploymentBase/{id}/feedback")),
            swu_feedback(id, execution, finished, details),
        )
        .await
    }
}

async fn setup<'h>(
    h: &'h Harness,
    n: usize,
    image: &[u8],
    spec: Value,
) -> (String, String, Vec<Ddi<'h>>) {
    let env = h.build(7, image, "https://fw.example/releases/update.swu");
    let (s, v) = h.upload_envelope(&h.admin, &env).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rel = v["id"].as_str().unwrap().to_owned();
    let (s, v) = h.upload_payload(&h.admin, &rel, 0, image).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let devs = h.devices("swu", n, &["ddi"]).await;
    let mut spec = spec;
    spec["release_id"] = json!(rel);
    spec["filter"] = json!({"tags_all": ["ddi"]});
    let cid = h.campaign(spec).await;
    let ddi = devs
        .into_iter()
        .enumerate()
        .map(|(i, (_, token))| Ddi {
            h,
            name: format!("swu-{i}"),
            token,
            tenant: if i % 2 == 0 { "default" } else { "DEFAULT" },
        })
        .collect();
    (rel, cid, ddi)
}

async fn a_device_polls_installs_and_reports_like_swupdate(b: Backend) {
    let h = Harness::with(b, |c| c.poll_interval = 2).await;
    let image: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (rel, cid, devs) = setup(&h, 1, &image, json!({"name": "swu"})).await;
    let d = &devs[0];

    // The poll: sleep as HH:MM:SS from the server's interval, a deploymentBase link with an
    // integer id and a `c` cache-buster, and configData (no attributes yet).
    let v = d.poll().await;
    assert_eq!(v["config"]["polling"]["sleep"], "00:00:02", "{v}");
    assert!(
        v["_links"]["configData"]["href"]
            .as_str()
            .unwrap()
            .ends_with("/configData")
    );
    let (href, id) = d.action().await.expect("a deploymentBase link");
    // Polling again names the same action (and uses up no ids: SWUpdate reads them as int).
    for _ in 0..3 {
        assert_eq!(d.action().await.unwrap().1, id);
    }
    assert_eq!(id, 1);
    assert!(href.starts_with("http://127.0.0.1:"), "{href}");
    assert!(href.contains("?c="), "{href}");
    assert!(id > 0 && id <= i64::from(i32::MAX));

    // configData as SWUpdate 2022.12 sends it (no mode; id, time and status ignored).
    let (s, body) = d
        .send(
            reqwest::Method::PUT,
            &d.url("/configData"),
            r#"{"id": "", "time": "20261206T114413", "status": {"result": {"finished": "success"}, "execution": "closed", "details": [""]}, "data": {"board": "sim", "rev": "1.0"}}"#.into(),
        )
        .await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, ""));
    assert!(d.poll().await["_links"].get("configData").is_none());
    let (_, info) = h.get(&h.admin, "/api/v1/devices/swu-0").await;
    assert_eq!(
        info["attributes"],
        json!({"board": "sim", "rev": "1.0"}),
        "{info}"
    );

    // deploymentBase: the id a decimal string, one chunk, the artifact's file name from the
    // payload URI, integer size, lower-case hashes of the payload.
    let (s, dep) = d.get(&href).await;
    assert_eq!(s, StatusCode::OK, "{dep}");
    assert_eq!(dep["id"], json!(id.to_string()));
    assert_eq!(dep["deployment"]["download"], "forced");
    assert_eq!(dep["deployment"]["update"], "forced");
    assert!(dep["deployment"].get("maintenanceWindow").is_none());
    let chunk = &dep["deployment"]["chunks"][0];
    assert_eq!(chunk["part"], "app");
    let art = &chunk["artifacts"][0];
    assert_eq!(art["filename"], "update.swu");
    assert_eq!(art["size"], json!(image.len()));
    assert!(art["size"].is_u64());
    assert_eq!(
        art["hashes"]["sha1"],
        hex::encode(sha1::Sha1::digest(&image))
    );
    assert_eq!(art["hashes"]["md5"], hex::encode(md5::Md5::digest(&image)));
    assert_eq!(
        art["hashes"]["sha256"],
        hex::encode(sha2::Sha256::digest(&image))
    );
    let dl = art["_links"]["download"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(art["_links"]["download-http"]["href"], json!(dl));
    assert!(dl.ends_with("/artifacts/update.swu"), "{dl}");

    // HEAD (SWUpdate learns the size), then GET with a Range to resume a cut download.
    let r = h
        .client
        .head(&dl)
        .header("authorization", d.auth())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-length"],
        image.len().to_string().as_str()
    );
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let r = h
        .client
        .get(&dl)
        .header("authorization", d.auth())
        .header("accept", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &image[..]);
    let r = h
        .client
        .get(&dl)
        .header("authorization", d.auth())
        .header("accept", "application/octet-stream")
        .header("range", "bytes=1000-")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000-{}/{}", image.len() - 1, image.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &image[1000..]);
    let r = h
        .client
        .get(&dl)
        .header("authorization", d.auth())
        .header("range", format!("bytes={}-", image.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", image.len()).as_str()
    );
    // Several ranges: multipart/byteranges (hawkBit's boundary), each part with its range.
    let multi = |range: String| {
        let (c, dl, auth) = (h.client.clone(), dl.clone(), d.auth());
        async move {
            let r = c
                .get(&dl)
                .header("authorization", auth)
                .header("range", range)
                .send()
                .await
                .unwrap();
            let s = r.status();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (s, ct, r.bytes().await.unwrap().to_vec())
        }
    };
    let (s, ct, body) = multi("bytes=0-9,100-109".into()).await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        ct,
        "multipart/byteranges; boundary=THIS_STRING_SEPARATES_MULTIPART"
    );
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(&format!("Content-Range: bytes 0-9/{}", image.len())),
        "{text}"
    );
    assert!(text.contains(&format!("Content-Range: bytes 100-109/{}", image.len())));
    assert!(body.windows(10).any(|w| w == &image[100..110]));
    assert!(text.ends_with("--THIS_STRING_SEPARATES_MULTIPART--\r\n"));
    // Overlapping or very many ranges (an amplification attack): the whole artifact.
    let (s, _, body) = multi("bytes=0-99,50-150".into()).await;
    assert_eq!((s, body.len()), (StatusCode::OK, image.len()));
    let many: Vec<String> = (0..17)
        .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
        .collect();
    let (s, _, body) = multi(format!("bytes={}", many.join(","))).await;
    assert_eq!((s, body.len()), (StatusCode::OK, image.len()));
    let (s, _, _) = multi(format!("bytes={}-,{}-", image.len(), image.len() + 5)).await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    // If-Range naming an older artifact: the whole new one, never a splice.
    let r = h
        .client
        .get(&dl)
        .header("authorization", d.auth())
        .header("range", "bytes=1000-")
        .header("if-range", "\"0000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &image[..]);
    let r = h
        .client
        .get(format!("{dl}.MD5SUM"))
        .header("authorization", d.auth())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.text().await.unwrap(),
        format!("{}  update.swu\n", hex::encode(md5::Md5::digest(&image)))
    );
    let (s, list) = d
        .get(&dl.replace("/artifacts/update.swu", "/artifacts"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list[0]["filename"], "update.swu");

    // SWUpdate's feedback sequence: exactly 200 with an empty body each time.
    for msg in [
        "Installing Update Chunk Artifacts.",
        "Installed Chunk.",
        "All Chunks Installed.",
    ] {
        let (s, body) = d.feedback(id, "proceeding", "none", &[msg]).await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, ""), "{msg}");
    }
    let (s, body) = d
        .feedback(id, "closed", "success", &["Update Installed."])
        .await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, ""));
    let info = h.campaign_info(&cid).await;
    assert_eq!(info["state"], "completed", "{info}");

    // The action is closed: feedback on it is 410, deploymentBase is gone, installedBase
    // shows it, and the device is not offered the release again.
    let (s, _) = d.feedback(id, "closed", "success", &["again"]).await;
    assert_eq!(s, StatusCode::GONE);
    let v = d.poll().await;
    assert!(v["_links"].get("deploymentBase").is_none(), "{v}");
    let inst = v["_links"]["installedBase"]["href"].as_str().unwrap();
    assert!(inst.ends_with(&format!("/installedBase/{id}")));
    let (s, ib) = d.get(inst).await;
    assert_eq!(s, StatusCode::OK, "{ib}");
    assert_eq!(ib["id"], json!(id.to_string()));
    let (s, _) = d.get(&href).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The timeline: receive (the download), apply (proceeding), clean-up success.
    let (_, info) = h.get(&h.admin, "/api/v1/devices/swu-0").await;
    let steps = &info["update"]["steps"];
    let names: Vec<&str> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["receive", "apply", "clean-up"], "{info}");
    assert_eq!(info["update"]["release_id"], json!(rel));
    assert_eq!(info["update"]["state"], "succeeded");
    h.stop().await;
}

async fn a_failure_with_swupdate_details_is_counted_and_shown(b: Backend) {
    let h = Harness::new(b).await;
    let (_, cid, devs) = setup(
        &h,
        4,
        b"not really a swu",
        json!({"name": "swu", "error_threshold": 0.5}),
    )
    .await;
    let mut ids = Vec::new();
    for d in &devs {
        ids.push(d.action().await.unwrap().1);
    }
    let err = "ERROR : HASH mismatch : 7f..ab <--> 00..11";
    let (s, body) = devs[0]
        .feedback(
            ids[0],
            "closed",
            "failure",
            &[err, "Image invalid or corrupted. Not installing ..."],
        )
        .await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, ""));
    let (_, info) = h.get(&h.admin, "/api/v1/devices/swu-0").await;
    assert_eq!(info["update"]["state"], "failed", "{info}");
    let failure = info["update"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["outcome"] == "failure")
        .unwrap();
    assert!(
        failure["detail"]
            .as_str()
            .unwrap()
            .contains("HASH mismatch"),
        "{info}"
    );
    assert_eq!(h.campaign_info(&cid).await["state"], "running");
    // A second failure reaches the threshold (2 of 4): the campaign pauses, as for agents.
    devs[1]
        .feedback(ids[1], "closed", "failure", &["Update Failed."])
        .await;
    let info = h.campaign_info(&cid).await;
    assert_eq!(info["state"], "paused", "{info}");
    assert!(
        info["state_reason"].as_str().unwrap().contains("2 of 4"),
        "{info}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_or_another_devices_controller_id_is_401() {
    let h = Harness::new(Backend::Sqlite).await;
    let (_, _, devs) = setup(&h, 2, b"image", json!({"name": "swu"})).await;
    let d = &devs[0];
    let status = |auth: Option<String>, url: String| {
        let c = h.client.clone();
        async move {
            let mut r = c.get(url);
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            r.send().await.unwrap().status()
        }
    };
    assert_eq!(status(None, d.url("")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(Some("TargetToken sct_d_wrong".into()), d.url("")).await,
        StatusCode::UNAUTHORIZED
    );
    // The scheme is case-insensitive; the token is not.
    assert_eq!(
        status(Some(format!("targettoken {}", d.token)), d.url("")).await,
        StatusCode::OK
    );
    assert_eq!(
        status(
            Some(format!("TargetToken {}", d.token.to_uppercase())),
            d.url("")
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    // Device 0's token on device 1's controller id: 401, whatever the resource.
    assert_eq!(
        status(Some(d.auth()), devs[1].url("")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(Some(d.auth()), devs[1].url("/deploymentBase/1")).await,
        StatusCode::UNAUTHORIZED
    );
    // A gateway token is refused while the operator has not enabled one.
    assert_eq!(
        status(Some("GatewayToken x".into()), d.url("")).await,
        StatusCode::UNAUTHORIZED
    );
    // A bearer device token is the device API's scheme, not DDI's.
    assert_eq!(
        status(Some(format!("Bearer {}", d.token)), d.url("")).await,
        StatusCode::UNAUTHORIZED
    );
    // Another tenant does not exist.
    let other = h.url(&format!("/acme/controller/v1/{}", d.name));
    assert_eq!(status(Some(d.auth()), other).await, StatusCode::NOT_FOUND);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_devices_action_and_artifact_are_404() {
    let h = Harness::new(Backend::Sqlite).await;
    let (_, _, devs) = setup(&h, 2, b"image bytes", json!({"name": "swu"})).await;
    let (href0, id0) = devs[0].action().await.unwrap();
    let (s, dep) = devs[0].get(&href0).await;
    assert_eq!(s, StatusCode::OK);
    let dl = dep["deployment"]["chunks"][0]["artifacts"][0]["_links"]["download"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    // Device 1, with its own controller id, asking for device 0's action and module.
    let d1 = &devs[1];
    let (s, _) = d1.get(&d1.url(&format!("/deploymentBase/{id0}"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = d1.feedback(id0, "closed", "success", &["forged"]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let stolen = dl.replace("/swu-0/", "/swu-1/");
    let (s, _) = d1.get(&stolen).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Not integers, or not this file name.
    for bad in [
        "/deploymentBase/abc",
        "/deploymentBase/-1",
        "/deploymentBase/99999999999999999999",
    ] {
        let (s, _) = devs[0].get(&devs[0].url(bad)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{bad}");
    }
    let (s, _) = devs[0].get(&dl.replace("update.swu", "other.swu")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_action_then_feedback_is_410() {
    let h = Harness::new(Backend::Sqlite).await;
    let (_, cid, devs) = setup(&h, 1, b"image", json!({"name": "swu"})).await;
    let d = &devs[0];
    let (_, id) = d.action().await.unwrap();
    h.cancel_campaign(&cid).await;
    let v = d.poll().await;
    assert!(v["_links"].get("deploymentBase").is_none(), "{v}");
    let href = v["_links"]["cancelAction"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    // SWUpdate appends /feedback to this href: it must carry no query.
    assert!(href.ends_with(&format!("/cancelAction/{id}")), "{href}");
    let (s, c) = d.get(&href).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        c,
        json!({"id": id.to_string(), "cancelAction": {"stopId": id.to_string()}})
    );
    let (s, _) = d.feedback(id, "proceeding", "none", &["still going"]).await;
    assert_eq!(s, StatusCode::GONE);
    let (s, body) = d
        .send(
            reqwest::Method::POST,
            &format!("{href}/feedback"),
            swu_feedback(id, "closed", "success", &["cancellation acknowledged."]),
        )
        .await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, ""));
    let v = d.poll().await;
    assert!(v["_links"].get("cancelAction").is_none(), "{v}");
    let (s, _) = d.get(&href).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_data_merge_replace_remove_and_oversized_attributes() {
    let h = Harness::new(Backend::Sqlite).await;
    let (_, _, devs) = setup(&h, 1, b"image", json!({"name": "swu"})).await;
    let d = &devs[0];
    let put = |body: Value| async move {
        d.send(
            reqwest::Method::PUT,
            &d.url("/configData"),
            body.to_string(),
        )
        .await
    };
    assert_eq!(
        put(json!({"data": {"a": "1", "b": "2"}})).await.0,
        StatusCode::OK
    );
    assert_eq!(
        put(json!({"mode": "merge", "data": {"b": "3", "c": "4"}}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        put(json!({"mode": "remove", "data": {"a": ""}})).await.0,
        StatusCode::OK
    );
    let (_, info) = h.get(&h.admin, "/api/v1/devices/swu-0").await;
    assert_eq!(info["attributes"], json!({"b": "3", "c": "4"}));
    assert_eq!(
        put(json!({"mode": "replace", "data": {"z": "9"}})).await.0,
        StatusCode::OK
    );
    let (_, info) = h.get(&h.admin, "/api/v1/devices/swu-0").await;
    assert_eq!(info["attributes"], json!({"z": "9"}));
    // Attacks on the database's size: too many, too long, control characters, bad shapes.
    let many: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(put(json!({"data": many})).await.0, StatusCode::BAD_REQUEST);
    let many: serde_json::Map<String, Value> =
        (0..100).map(|i| (format!("k{i}"), json!("v"))).collect();
    // 100 new ones next to "z" would be 101 stored.
    assert_eq!(put(json!({"data": many})).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        put(json!({"data": {"k": "x".repeat(513)}})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        put(json!({"data": {"k".repeat(129): "x"}})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        put(json!({"data": {"k": "a\u{1b}[2J"}})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        put(json!({"data": {"k": {"nested": 1}}})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(put(json!({"data": {}})).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        put(json!({"mode": "wipe", "data": {"a": "b"}})).await.0,
        StatusCode::BAD_REQUEST
    );
    let (s, _) = d
        .send(
            reqwest::Method::PUT,
            &d.url("/configData"),
            "{not json".into(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, info) = h.get(&h.admin, "/api/v1/devices/swu-0").await;
    assert_eq!(info["attributes"], json!({"z": "9"}));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_says_it_runs_the_release_is_not_offered_it() {
    let h = Harness::new(Backend::Sqlite).await;
    let (_, cid, devs) = setup(&h, 1, b"image", json!({"name": "swu"})).await;
    let d = &devs[0];
    let (s, _) = d
        .send(
            reqwest::Method::PUT,
            &d.url("/configData"),
            json!({"data": {"suitcase_sequence": "7"}}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(d.action().await.is_none());
    assert_eq!(h.campaign_info(&cid).await["state"], "completed");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_shapes_that_break_nothing_and_bad_ones_that_are_400() {
    let h = Harness::new(Backend::Sqlite).await;
    let (_, _, devs) = setup(&h, 1, b"image", json!({"name": "swu"})).await;
    let d = &devs[0];
    let (_, id) = d.action().await.unwrap();
    let url = d.url(&format!("/deploymentBase/{id}/feedback"));
    // hawkBit's own shape, with every execution value that keeps the action open.
    for e in [
        "download",
        "downloaded",
        "scheduled",
        "resumed",
        "rejected",
        "proceeding",
    ] {
        let body = json!({"timestamp": 1, "status": {"execution": e, "result": {"finished": "none", "progress": {"cnt": 2, "of": 5}}, "code": 12, "details": ["x"]}, "unknown": true});
        let (s, b) = d.send(reqwest::Method::POST, &url, body.to_string()).await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, ""), "{e}");
    }
    for bad in [
        json!({"status": {"execution": "exploded", "result": {"finished": "none"}}}),
        json!({"status": {"execution": "closed", "result": {"finished": "maybe"}}}),
        json!({"status": {"execution": "closed"}}),
        json!({"status": {"execution": "closed", "result": {"finished": "success"}, "details": "x".repeat(10)}}),
    ] {
        let (s, _) = d.send(reqwest::Method::POST, &url, bad.to_string()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    }
    // Megabytes of details are cut to the report's limit, not refused (SWUpdate would fail
    // the install on anything but 200).
    let long = "e".repeat(300_000);
    let (s, _) = d.feedback(id, "closed", "failure", &[&long]).await;
    assert_eq!(s, StatusCode::OK);
    let (_, info) = h.get(&h.admin, "/api/v1/devices/swu-0").await;
    let failure = info["update"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["outcome"] == "failure")
        .unwrap()
        .clone();
    assert!(
        failure["detail"].as_str().unwrap().chars().count()
            <= suitcase_protocol::limits::REPORT_DETAIL_MAX
    );
    // SWUpdate's log thread may send the error lines just after the closed/failure: 410,
    // and the lines join the failure in the timeline.
    let (s, _) = d
        .feedback(
            id,
            "proceeding",
            "none",
            &["ERROR : HASH mismatch : aa <--> bb"],
        )
        .await;
    assert_eq!(s, StatusCode::GONE);
    let (_, info) = h.get(&h.admin, "/api/v1/devices/swu-0").await;
    let failure = info["update"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["outcome"] == "failure")
        .unwrap()
        .clone();
    assert!(
        failure["detail"]
            .as_str()
            .unwrap()
            .starts_with("ERROR : HASH mismatch : aa <--> bb\neee"),
        "{failure}"
    );
    assert_eq!(info["update"]["state"], "failed");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_update_is_skip_and_a_skip_is_not_an_install() {
    let h = Harness::new(Backend::Sqlite).await;
    // A window open now (the harness clock), so the device is offered the release.
    let now = 1_800_000_000i64;
    let minute = u32::try_from(now.rem_euclid(86_400) / 60).unwrap();
    let (_, cid, devs) = setup(
        &h,
        1,
        b"image",
        json!({"name": "swu", "window": {"start_minute": minute, "end_minute": (minute + 60) % 1440}}),
    )
    .await;
    let d = &devs[0];
    let (href, id) = d.action().await.unwrap();
    let (_, dep) = d.get(&href).await;
    assert_eq!(dep["deployment"]["update"], "forced");
    assert_eq!(dep["deployment"]["maintenanceWindow"], "available");
    // Two hours later the window is shut: download yes, install no.
    h.advance(7200);
    let (href2, _) = d.action().await.unwrap();
    assert_ne!(href, href2, "the cache-buster changes with the mode");
    let (_, dep) = d.get(&href2).await;
    assert_eq!(dep["deployment"]["update"], "skip");
    assert_eq!(dep["deployment"]["maintenanceWindow"], "unavailable");
    // SWUpdate answers skip with closed/success "Skipped Update.": not a success.
    let (s, _) = d
        .feedback(id, "closed", "success", &["Skipped Update."])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h.campaign_info(&cid).await["state"], "running");
    assert!(d.action().await.is_some(), "the action stays open");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_token_registers_unknown_controllers_and_a_wrong_one_is_401() {
    let gw = "gw-secret-0123456789abcdef";
    let h = Harness::with(Backend::Sqlite, |c| c.ddi_gateway_token = Some(gw.into())).await;
    let get = |auth: &str, controller: &str| {
        let (c, url, auth) = (
            h.client.clone(),
            h.url(&format!("/DEFAULT/controller/v1/{controller}")),
            auth.to_owned(),
        );
        async move {
            let r = c
                .get(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, r.text().await.unwrap())
        }
    };
    assert_eq!(
        get("GatewayToken wrong", "gw-1").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, list) = h.get(&h.admin, "/api/v1/devices").await;
    assert_eq!(
        list.as_array().unwrap().len(),
        0,
        "a wrong gateway token registers nothing"
    );
    let (s, body) = get(&format!("GatewayToken {gw}"), "gw-1").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, dev) = h.get(&h.admin, "/api/v1/devices/gw-1").await;
    assert_eq!(s, StatusCode::OK, "{dev}");
    // Names the fleet refuses are refused here too.
    assert_eq!(
        get(&format!("GatewayToken {gw}"), "a%0Ab").await.0,
        StatusCode::BAD_REQUEST
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tripped_campaign_cancels_open_actions_and_offers_the_rollback_release() {
    let h = Harness::new(Backend::Sqlite).await;
    let env = h.build(
        9,
        b"the good image again",
        "https://fw.example/rollback.swu",
    );
    let (s, v) = h.upload_envelope(&h.admin, &env).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let good = v["id"].as_str().unwrap().to_owned();
    h.upload_payload(&h.admin, &good, 0, b"the good image again")
        .await;
    let (_, cid, devs) = setup(
        &h,
        2,
        b"a bad image",
        json!({"name": "swu", "error_threshold": 0.5, "on_error": "rollback", "rollback_release_id": good}),
    )
    .await;
    let (_, id0) = devs[0].action().await.unwrap();
    let (_, id1) = devs[1].action().await.unwrap();
    let (s, _) = devs[0]
        .feedback(id0, "closed", "failure", &["Update Failed."])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h.campaign_info(&cid).await["state"], "rolled_back");
    // Device 1 was installing the bad release: its action is cancelled first.
    let v = devs[1].poll().await;
    let cancel = v["_links"]["cancelAction"]["href"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    assert!(cancel.ends_with(&format!("/cancelAction/{id1}")));
    let (s, _) = devs[1]
        .send(
            reqwest::Method::POST,
            &format!("{cancel}/feedback"),
            swu_feedback(id1, "closed", "success", &["cancellation acknowledged."]),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // Then both are offered the rollback release as a new action.
    for (d, old) in [(&devs[0], id0), (&devs[1], id1)] {
        let (href, id) = d.action().await.expect("the rollback release");
        assert_ne!(id, old);
        let (_, dep) = d.get(&href).await;
        assert_eq!(
            dep["deployment"]["chunks"][0]["artifacts"][0]["filename"],
            "rollback.swu"
        );
        let (s, _) = d
            .feedback(id, "closed", "success", &["Update Installed."])
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (_, members) = h
        .get(&h.admin, &format!("/api/v1/campaigns/{cid}/devices"))
        .await;
    let states: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["rolled_back", "rolled_back"], "{members}");
    h.stop().await;
}

/// RFC 8240 §3 on the DDI API as on the device API: a TargetToken identifies the device, so
/// it is not accepted over plain HTTP from other hosts unless the operator opts in.
#[tokio::test]
async fn plaintext_ddi_requests_from_other_hosts_are_refused() {
    use tower::ServiceExt as _;
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
        let mut req = axum::http::Request::get("/DEFAULT/controller/v1/dev-1")
            .header("authorization", "TargetToken sct_d_unknown")
            .body(axum::body::Body::empty())
            .unwrap();
        req.extensions_mut().insert(suitcase_server::ConnInfo {
            peer: peer.parse().unwrap(),
            tls,
            client_cert: None,
        });
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(
            resp.status().as_u16(),
            want.as_u16(),
            "allow={allow} peer={peer} tls={tls}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_campaign_is_attempt_not_forced() {
    let h = Harness::new(Backend::Sqlite).await;
    let (_, _, devs) = setup(
        &h,
        1,
        b"image",
        json!({"name": "swu", "requires_consent": true}),
    )
    .await;
    let (href, _) = devs[0].action().await.unwrap();
    let (_, dep) = devs[0].get(&href).await;
    assert_eq!(dep["deployment"]["download"], "attempt", "{dep}");
    assert_eq!(dep["deployment"]["update"], "attempt", "{dep}");
    h.stop().await;
}

/// The server's database, opened beside it (the tests' way to seed what an HTTP client
/// cannot reach).
async fn database(h: &Harness) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = h.config.database.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            h.config.data_dir.join("suitcase.db").display()
        )
    });
    sqlx::AnyPool::connect(&url).await.unwrap()
}

/// SWUpdate reads the action id as a 32-bit int (../shared/reference/hawkbit-ddi.md §7):
/// with the sequence seeded so that the next id is 2^31 − 1, one device gets exactly that id
/// and can use it; the next device is offered nothing (a plain 200 poll, no 500, at every
/// poll), and no action with a larger id is stored.
async fn action_ids_past_i32_max_are_never_handed_out(b: Backend) {
    let h = Harness::new(b).await;
    let (_, cid, devs) = setup(&h, 2, b"image", json!({"name": "swu"})).await;
    let max = i64::from(i32::MAX);
    let db = database(&h).await;
    let seed = match b {
        // The next AUTOINCREMENT value is one past the sequence's (the table has had no
        // insert yet, so sqlite_sequence has no row for it).
        Backend::Sqlite => {
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('ddi_actions', 2147483646)"
        }
        Backend::Postgres => {
            "SELECT setval(pg_get_serial_sequence('ddi_actions', 'id'), 2147483646)"
        }
    };
    sqlx::query(seed).execute(&db).await.unwrap();

    let (href, id) = devs[0].action().await.expect("the last usable id");
    assert_eq!(id, max);
    let (s, dep) = devs[0].get(&href).await;
    assert_eq!(s, StatusCode::OK, "{dep}");
    assert_eq!(dep["id"], json!(max.to_string()));
    let (s, _) = devs[0]
        .feedback(id, "closed", "success", &["Update Installed."])
        .await;
    assert_eq!(s, StatusCode::OK);

    for _ in 0..3 {
        let v = devs[1].poll().await;
        assert!(v["_links"].get("deploymentBase").is_none(), "{v}");
        assert!(v["config"]["polling"]["sleep"].is_string(), "{v}");
    }
    let (s, _) = devs[1]
        .get(&devs[1].url(&format!("/deploymentBase/{}", max + 1)))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let over: i64 = sqlx::query("SELECT COUNT(*) FROM ddi_actions WHERE id > 2147483647")
        .fetch_one(&db)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(over, 0);
    let (_, members) = h
        .get(&h.admin, &format!("/api/v1/campaigns/{cid}/devices"))
        .await;
    // The refused device stays notified: neither counted succeeded nor failed.
    let mut states: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    states.sort_unstable();
    assert_eq!(states, ["notified", "succeeded"], "{members}");
    db.close().await;
    h.stop().await;
}

/// mTLS on the DDI API as on the device API: a device registered with its client
/// certificate's SHA-256 authenticates with that certificate and no Authorization header,
/// for its own controller id only; no certificate (and no token) is 401.
#[tokio::test]
async fn a_client_certificate_authenticates_its_own_controller_id_only() {
    use tower::ServiceExt as _;
    let dir = tempfile::tempdir().unwrap();
    let config = suitcase_server::Config::new(dir.path());
    let (app, opened) = suitcase_server::app(config).await.unwrap();
    let admin = opened.admin_token.unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["cert-dev".to_owned()])
        .unwrap()
        .cert
        .der()
        .to_vec();
    let conn = |client_cert: Option<Vec<u8>>| suitcase_server::ConnInfo {
        peer: "10.1.2.3:5555".parse().unwrap(),
        tls: true,
        client_cert,
    };
    for body in [
        json!({"name": "cert-dev", "certificate_sha256": hex::encode(sha2::Sha256::digest(&cert))}),
        json!({"name": "other-dev"}),
    ] {
        let mut req = axum::http::Request::post("/api/v1/devices")
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        req.extensions_mut().insert(conn(None));
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), 201, "{body}");
    }
    for (controller, client_cert, want) in [
        ("cert-dev", Some(cert.clone()), StatusCode::OK),
        ("other-dev", Some(cert.clone()), StatusCode::UNAUTHORIZED),
        ("cert-dev", None, StatusCode::UNAUTHORIZED),
    ] {
        let mut req = axum::http::Request::get(format!("/DEFAULT/controller/v1/{controller}"))
            .header("accept", "application/json")
            .body(axum::body::Body::empty())
            .unwrap();
        req.extensions_mut().insert(conn(client_cert.clone()));
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(
            resp.status().as_u16(),
            want.as_u16(),
            "{controller} with a certificate: {}",
            client_cert.is_some()
        );
        if want == StatusCode::OK {
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap();
            // Links are https: the connection was TLS.
            assert!(v["config"]["polling"]["sleep"].is_string(), "{v}");
            assert!(
                v["_links"]["configData"]["href"]
                    .as_str()
                    .unwrap()
                    .starts_with("https://"),
                "{v}"
            );
        }
    }
}

/// The steps of a device's current update, by name.
async fn step_names(h: &Harness, name: &str) -> (Value, Vec<String>) {
    let (_, info) = h.get(&h.admin, &format!("/api/v1/devices/{name}")).await;
    let names = info["update"]["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["step"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (info, names)
}

/// `canceled` on deploymentBase feedback (the device gave the update up, hawkBit CANCELED):
/// the action closes (later feedback 410, no deploymentBase link) and the device counts
/// failed, reason `canceled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceled_feedback_closes_the_action_and_counts_failed() {
    let h = Harness::new(Backend::Sqlite).await;
    let (_, cid, devs) = setup(&h, 2, b"image", json!({"name": "swu"})).await;
    let d = &devs[0];
    let (href, id) = d.action().await.unwrap();
    let (s, body) = d.feedback(id, "canceled", "none", &["user said no"]).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, ""));
    let (info, _) = step_names(&h, "swu-0").await;
    assert_eq!(info["update"]["state"], "failed", "{info}");
    let last = info["update"]["steps"].as_array().unwrap().last().unwrap();
    assert_eq!(last["outcome"], "failure", "{info}");
    assert_eq!(last["reason"], "canceled", "{info}");
    let c = h.campaign_info(&cid).await;
    assert_eq!(c["waves_progress"][0]["failed"], 1, "{c}");
    let (s, _) = d.feedback(id, "closed", "success", &["late"]).await;
    assert_eq!(s, StatusCode::GONE);
    let (s, _) = d.get(&href).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(d.action().await.is_none());
    h.stop().await;
}

/// Cancel feedback `rejected` (hawkBit CANCEL_REJECTED: the device will not stop): 200, and
/// the action is still the one being cancelled: the cancelAction link stays, deployment
/// feedback stays 410, and a later `closed` still accepts the cancellation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_cancel_feedback_keeps_the_action_cancelling() {
    let h = Harness::new(Backend::Sqlite).await;
    let (_, cid, devs) = setup(&h, 1, b"image", json!({"name": "swu"})).await;
    let d = &devs[0];
    let (_, id) = d.action().await.unwrap();
    h.cancel_campaign(&cid).await;
    let href = d.poll().await["_links"]["cancelAction"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, body) = d
        .send(
            reqwest::Method::POST,
            &format!("{href}/feedback"),
            swu_feedback(id, "rejected", "none", &["too late to stop"]),
        )
        .await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, ""));
    let v = d.poll().await;
    assert_eq!(v["_links"]["cancelAction"]["href"], json!(href), "{v}");
    let (s, _) = d.get(&href).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = d.feedback(id, "proceeding", "none", &["going on"]).await;
    assert_eq!(s, StatusCode::GONE);
    let (s, _) = d
        .send(
            reqwest::Method::POST,
            &format!("{href}/feedback"),
            swu_feedback(id, "closed", "success", &["cancellation acknowledged."]),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(d.poll().await["_links"].get("cancelAction").is_none());
    h.stop().await;
}

/// installedBase is for finished actions (hawkBit: 404 while the action is active).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_base_of_an_open_action_is_404() {
    let h = Harness::new(Backend::Sqlite).await;
    let (_, _, devs) = setup(&h, 1, b"image", json!({"name": "swu"})).await;
    let d = &devs[0];
    let (_, id) = d.action().await.unwrap();
    let (s, _) = d.get(&d.url(&format!("/installedBase/{id}"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(d.poll().await["_links"].get("installedBase").is_none());
    h.stop().await;
}

/// hawkBit's `download` and `downloaded` feedback (SWUpdate sends neither; RAUC's and
/// Zephyr's clients do) show as the receive step of the device's timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_feedback_is_the_receive_step() {
    let h = Harness::new(Backend::Sqlite).await;
    let (_, _, devs) = setup(&h, 1, b"image", json!({"name": "swu"})).await;
    let d = &devs[0];
    let (_, id) = d.action().await.unwrap();
    let (s, _) = d.feedback(id, "download", "none", &["downloading"]).await;
    assert_eq!(s, StatusCode::OK);
    let (info, names) = step_names(&h, "swu-0").await;
    assert_eq!(names, ["receive"], "{info}");
    assert_eq!(
        info["update"]["steps"][0]["outcome"], "in-progress",
        "{info}"
    );
    let (s, _) = d
        .feedback(id, "downloaded", "success", &["downloaded"])
        .await;
    assert_eq!(s, StatusCode::OK);
    let (info, names) = step_names(&h, "swu-0").await;
    assert!(names.iter().all(|n| n == "receive"), "{info}");
    let last = info["update"]["steps"].as_array().unwrap().last().unwrap();
    assert_eq!(last["outcome"], "success", "{info}");
    assert_eq!(last["detail"], "downloaded", "{info}");
    h.stop().await;
}

/// A device that reported closed/success runs the release: a second campaign of the same
/// release does not offer it again (docs/ddi.md §2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_campaign_of_an_installed_release_offers_nothing() {
    let h = Harness::new(Backend::Sqlite).await;
    let (rel, cid, devs) = setup(&h, 1, b"image", json!({"name": "swu"})).await;
    let d = &devs[0];
    let (_, id) = d.action().await.unwrap();
    let (s, _) = d
        .feedback(id, "closed", "success", &["Update Installed."])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h.campaign_info(&cid).await["state"], "completed");
    let cid2 = h
        .campaign(json!({"name": "swu-again", "release_id": rel, "filter": {"tags_all": ["ddi"]}}))
        .await;
    for _ in 0..2 {
        let v = d.poll().await;
        assert!(v["_links"].get("deploymentBase").is_none(), "{v}");
    }
    let info = h.campaign_info(&cid2).await;
    assert_ne!(info["state"], "running", "{info}");
    h.stop().await;
}
