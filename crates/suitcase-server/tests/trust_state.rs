//! The fleet's trust state on the server (docs/trust.md, "The server and trust updates"): an
//! admin registers the state the devices were provisioned with; a trust update uploaded is
//! checked as a device checks it (`TrustState::apply_update`: root threshold, anti-rollback,
//! role separation) and, once stored, advances the state in force, in the transaction that
//! stores it; a release signed only by a key the state revoked is refused. On SQLite and on
//! PostgreSQL (the state is a table of its own, migration 14).

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use std::path::{Path, PathBuf};

use common::{Backend, Harness};
use reqwest::StatusCode;
use serde_json::{Value, json};
use suitcase_author::keys::{self, KeyAlg};
use suitcase_author::signer::{Signer, SoftwareSigner};
use suitcase_trust::{Key, Prefix, ReleaseSigner, TrustState};

both_backends!(
    attack_trust_update_below_threshold_upload_refused,
    attack_trust_update_replay_upload_refused,
    attack_release_signer_trust_update_upload_refused,
    attack_revoked_key_release_upload_refused,
    trust_update_chain_advances_the_state_in_force,
    attack_author_deletes_trust_update_in_force_refused,
);

/// Three Ed25519 root keys (2-of-3) and a second author key, as files in the harness's
/// directory; the harness's own author key (registered on the server) is the first release
/// signer.
struct Fleet {
    h: Harness,
    roots: [PathBuf; 3],
    author2: PathBuf,
}

impl Fleet {
    async fn new(b: Backend) -> Self {
        let h = Harness::new(b).await;
        let key = |name: &str| {
            let path = h.dir.path().join(name);
            let g = keys::generate(KeyAlg::Ed25519, "h5w4").unwrap();
            keys::write_atomic(&path, &g.private, true).unwrap();
            path
        };
        let roots = [key("root1.key"), key("root2.key"), key("root3.key")];
        let author2 = key("author2.key");
        Self { h, roots, author2 }
    }

    /// The genesis state: the three roots, 2-of-3, the harness's author as release signer.
    fn genesis(&self) -> TrustState {
        let roots: Vec<Key> = self.roots.iter().map(|p| trust_key(p)).collect();
        let mut s = TrustState::genesis(&roots, 2).unwrap();
        s.add_signer(signer(trust_key(&self.h.key))).unwrap();
        s
    }

    /// Registers `state` as the fleet's trust state.
    async fn register(&self, state: &TrustState) {
        let doc = suitcase_author::trust::document(state).unwrap();
        let (s, v) = self
            .h
            .post(
                &self.h.admin,
                "/api/v1/trust-state",
                &json!({"document": hex::encode(doc)}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["sequence"], state.sequence(), "{v}");
    }

    async fn in_force(&self) -> Value {
        let (s, v) = self.h.get(&self.h.admin, "/api/v1/trust-state").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    async fn trust_updates(&self) -> usize {
        let (s, list) = self.h.get(&self.h.admin, "/api/v1/releases").await;
        assert_eq!(s, StatusCode::OK, "{list}");
        list.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "trust-update")
            .count()
    }
}

fn trust_key(private: &Path) -> Key {
    let public =
        suitcase_host::keys::public_of(&suitcase_host::keys::load_private(private).unwrap())
            .unwrap();
    suitcase_author::trust::trust_key(&public).unwrap()
}

fn signer(key: Key) -> ReleaseSigner {
    ReleaseSigner {
        key,
        actions: suitcase_manifest::Actions::ALL,
        component: Prefix::ALL,
    }
}

fn soft(path: &Path) -> SoftwareSigner {
    SoftwareSigner::new(suitcase_host::keys::load_private(path).unwrap(), path).unwrap()
}

/// The trust update to `next`, signed by the keys in `by`.
fn update(next: &TrustState, by: &[&Path]) -> Vec<u8> {
    let signers: Vec<SoftwareSigner> = by.iter().map(|p| soft(p)).collect();
    let refs: Vec<&dyn Signer> = signers.iter().map(|s| s as &dyn Signer).collect();
    suitcase_author::trust::build_update(next, &refs).unwrap()
}

/// `state` at the next sequence number, with `author2` added as a release signer.
fn with_author2(f: &Fleet, state: &TrustState) -> TrustState {
    let mut next = *state;
    next.set_sequence(state.sequence() + 1);
    next.add_signer(signer(trust_key(&f.author2))).unwrap();
    next
}

fn kid_hex(private: &Path) -> String {
    hex::encode(trust_key(private).id())
}

/// TUF §5.3.4 (docs/trust.md rule 1): one compromised root key of a 2-of-3 root cannot issue
/// a trust update. The server refuses it at upload as a device would, although today it would
/// have stored it (the root key is not a registered release key, and the check is the
/// state's), and the state in force stays.
async fn attack_trust_update_below_threshold_upload_refused(b: Backend) {
    let f = Fleet::new(b).await;
    let genesis = f.genesis();
    f.register(&genesis).await;
    let next = with_author2(&f, &genesis);
    let (s, v) =
        f.h.upload_envelope(&f.h.admin, &update(&next, &[&f.roots[0]]))
            .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "trust-update-unauthorized", "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("rule 1") && msg.contains("TUF §5.3.4"),
        "{msg}"
    );
    assert!(msg.contains("2 distinct root key(s)"), "{msg}");
    assert_eq!(f.in_force().await["sequence"], 0);
    assert_eq!(f.trust_updates().await, 0);
    // Two of three root keys: accepted.
    let (s, v) =
        f.h.upload_envelope(&f.h.admin, &update(&next, &[&f.roots[0], &f.roots[2]]))
            .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(f.in_force().await["sequence"], 1);
    f.h.stop().await;
}

/// Manifest §8.4.2, TUF §5.3.5 (docs/trust.md rule 4): a trust update already applied, sent
/// again, and an older one, are refused naming the anti-rollback rule; neither is stored nor
/// moves the state in force back.
async fn attack_trust_update_replay_upload_refused(b: Backend) {
    let f = Fleet::new(b).await;
    let genesis = f.genesis();
    f.register(&genesis).await;
    let one = with_author2(&f, &genesis);
    let u1 = update(&one, &[&f.roots[0], &f.roots[1]]);
    let (s, v) = f.h.upload_envelope(&f.h.admin, &u1).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // The same update again.
    let (s, v) = f.h.upload_envelope(&f.h.admin, &u1).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "trust-update-rollback", "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("rule 4") && msg.contains("§8.4.2") && msg.contains("sequence 1"),
        "{msg}"
    );
    // An older update (sequence 1 again, other content) signed by the same root threshold.
    let mut older_doc = genesis;
    older_doc.set_sequence(1);
    older_doc
        .add_rule(suitcase_trust::ThresholdRule {
            component: Prefix::new(&suitcase_manifest::build::encode_component_id(&[
                b"app".to_vec()
            ]))
            .unwrap(),
            threshold: 1,
        })
        .unwrap();
    let (s, v) =
        f.h.upload_envelope(&f.h.admin, &update(&older_doc, &[&f.roots[1], &f.roots[2]]))
            .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "trust-update-rollback", "{v}");
    let now = f.in_force().await;
    assert_eq!(now["sequence"], 1, "{now}");
    assert_eq!(now["rules"].as_array().unwrap().len(), 0, "{now}");
    assert_eq!(f.trust_updates().await, 1);
    f.h.stop().await;
}

/// TUF §2.1.1 role separation (docs/trust.md rule 1): a release signer's key, even one the
/// server has registered for releases (so that today's check alone would store it), cannot
/// issue a trust update; the refusal names the signer.
async fn attack_release_signer_trust_update_upload_refused(b: Backend) {
    let f = Fleet::new(b).await;
    let genesis = f.genesis();
    f.register(&genesis).await;
    let next = with_author2(&f, &genesis);
    let (s, v) =
        f.h.upload_envelope(&f.h.admin, &update(&next, &[&f.h.key]))
            .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "trust-update-release-signer", "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains(&kid_hex(&f.h.key))
            && msg.contains("release signer")
            && msg.contains("TUF §2.1.1"),
        "{msg}"
    );
    assert_eq!(f.in_force().await["sequence"], 0);
    assert_eq!(f.trust_updates().await, 0);
    f.h.stop().await;
}

/// RFC 8240 §3: after a trust update revokes the author's key, a release signed by it is
/// refused at upload (the devices would refuse it), although the key is still registered on
/// the server; a release by the new author's key is stored.
async fn attack_revoked_key_release_upload_refused(b: Backend) {
    let f = Fleet::new(b).await;
    let genesis = f.genesis();
    f.register(&genesis).await;
    // Before the revocation the author's releases are stored.
    let _ = f.h.release(2, &[1u8; 200]).await;
    let mut next = with_author2(&f, &genesis);
    assert!(next.remove_signer(&trust_key(&f.h.key).id()));
    next.revoke(trust_key(&f.h.key).id()).unwrap();
    let (s, v) =
        f.h.upload_envelope(&f.h.admin, &update(&next, &[&f.roots[0], &f.roots[1]]))
            .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let now = f.in_force().await;
    assert_eq!(now["revoked"], json!([kid_hex(&f.h.key)]), "{now}");
    let env = f.h.build(3, &[2u8; 200], "https://fw.example/app-3.bin");
    let (s, v) = f.h.upload_envelope(&f.h.admin, &env).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "revoked-key", "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains(&kid_hex(&f.h.key))
            && msg.contains("sequence 1")
            && msg.contains("RFC 8240 §3"),
        "{msg}"
    );
    // The new author's key, registered: its release is stored.
    suitcase_test_support::register_key(&f.h.client, &f.h.base, &f.h.admin, "author2", &f.author2)
        .await;
    let env =
        f.h.build_signed(&f.author2, 3, &[2u8; 200], "https://fw.example/app-3.bin");
    let (s, v) = f.h.upload_envelope(&f.h.admin, &env).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["signed_by"], json!(["author2"]), "{v}");
    f.h.stop().await;
}

/// The success path: a chain of two trust updates, each checked against the state the one
/// before left in force (the second signed by another 2 of the 3 roots); the state, who set
/// it and the audit follow. Registering a second state is refused; removing it returns to
/// the registered keys alone.
async fn trust_update_chain_advances_the_state_in_force(b: Backend) {
    let f = Fleet::new(b).await;
    let (s, v) = f.h.get(&f.h.admin, "/api/v1/trust-state").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"], "no-trust-state", "{v}");
    let genesis = f.genesis();
    f.register(&genesis).await;
    let one = with_author2(&f, &genesis);
    let (s, v) =
        f.h.upload_envelope(&f.h.admin, &update(&one, &[&f.roots[0], &f.roots[1]]))
            .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["kind"], "trust-update", "{v}");
    let id1 = v["id"].as_str().unwrap().to_owned();
    let signed: Vec<String> = serde_json::from_value(v["signed_by"].clone()).unwrap();
    assert_eq!(
        signed,
        vec![
            format!("root {}", kid_hex(&f.roots[0])),
            format!("root {}", kid_hex(&f.roots[1]))
        ]
    );
    let now = f.in_force().await;
    assert_eq!(now["sequence"], 1, "{now}");
    assert_eq!(now["release_id"], id1.as_str(), "{now}");
    assert_eq!(now["signers"].as_array().unwrap().len(), 2, "{now}");
    // The second update, built from the state in force, signed by roots 2 and 3.
    let mut two = one;
    two.set_sequence(2);
    two.set_release_threshold(2);
    let (s, v) =
        f.h.upload_envelope(&f.h.admin, &update(&two, &[&f.roots[1], &f.roots[2]]))
            .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id2 = v["id"].as_str().unwrap().to_owned();
    let now = f.in_force().await;
    assert_eq!(now["sequence"], 2, "{now}");
    assert_eq!(now["release_threshold"], 2, "{now}");
    assert_eq!(now["release_id"], id2.as_str(), "{now}");
    let stored = TrustState::decode(&hex::decode(now["document"].as_str().unwrap()).unwrap());
    assert_eq!(stored.unwrap(), two);
    assert_eq!(f.trust_updates().await, 2);
    // One state at a time: a second registration is refused.
    let doc = suitcase_author::trust::document(&genesis).unwrap();
    let (s, v) =
        f.h.post(
            &f.h.admin,
            "/api/v1/trust-state",
            &json!({"document": hex::encode(&doc)}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "trust-state-exists", "{v}");
    // Audited.
    let (_, audit) = f.h.get(&f.h.admin, "/api/v1/audit").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "trust.register"),
        "{audit}"
    );
    // Removed: trust updates are checked against the registered keys again, as before.
    let r =
        f.h.client
            .delete(f.h.url("/api/v1/trust-state"))
            .bearer_auth(&f.h.admin)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let mut three = two;
    three.set_sequence(3);
    let (s, v) =
        f.h.upload_envelope(&f.h.admin, &update(&three, &[&f.h.key]))
            .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    f.h.stop().await;
}

/// Manifest §8.4.2 (docs/trust.md rule 4): an author deleting the trust update that set the
/// state in force, or one the state was advanced through, would strand the devices still
/// below it (they can never receive it; uploading it again is a rollback). Refused with
/// `409 trust-update-in-force`, nothing deleted; once an admin removed the state, it goes.
async fn attack_author_deletes_trust_update_in_force_refused(b: Backend) {
    let f = Fleet::new(b).await;
    let author = f.h.token("author").await;
    let genesis = f.genesis();
    f.register(&genesis).await;
    let one = with_author2(&f, &genesis);
    let (s, v) =
        f.h.upload_envelope(&f.h.admin, &update(&one, &[&f.roots[0], &f.roots[1]]))
            .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id1 = v["id"].as_str().unwrap().to_owned();
    let delete = |id: String| {
        let h = &f.h;
        let author = author.clone();
        async move {
            let r = h
                .client
                .delete(h.url(&format!("/api/v1/releases/{id}")))
                .bearer_auth(&author)
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // The update that set the state in force.
    let (s, v) = delete(id1.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "trust-update-in-force", "{v}");
    assert!(v["message"].as_str().unwrap().contains("rule 4"), "{v}");
    assert_eq!(f.trust_updates().await, 1);
    assert_eq!(f.in_force().await["release_id"], id1.as_str());
    // One the state was advanced through, no longer the one that set it.
    let mut two = one;
    two.set_sequence(2);
    let (s, v) =
        f.h.upload_envelope(&f.h.admin, &update(&two, &[&f.roots[1], &f.roots[2]]))
            .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = delete(id1.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "trust-update-in-force", "{v}");
    assert_eq!(f.trust_updates().await, 2);
    // The way out the hint names: an admin removes the state, then the delete goes through.
    let r =
        f.h.client
            .delete(f.h.url("/api/v1/trust-state"))
            .bearer_auth(&f.h.admin)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (s, v) = delete(id1).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(f.trust_updates().await, 1);
    f.h.stop().await;
}
