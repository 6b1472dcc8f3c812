//! A device with a trust state (docs/trust.md) through the real server: trust keys from PEM
//! files, keys registered with the server, the genesis state written to the device's directory
//! and an `agent.toml` that names it.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "test code"
)]

use std::path::Path;

use serde_json::json;
use suitcase_agent::{Agent, Config, Finished, Hooks};
use suitcase_trust::{Key, TrustState};

use super::{Device, Events, Fleet};

/// The trust key of a public key file.
pub fn key(public: &Path) -> Key {
    suitcase_author::trust::trust_key(&suitcase_author::keys::load_public(public).unwrap()).unwrap()
}

/// Registers the public key `public` with the server as `name` (it then takes uploads signed
/// by it); the device trusts it only through its trust state.
pub async fn register(fleet: &Fleet, name: &str, public: &Path) {
    let (pem, _) = suitcase_author::keys::load_public(public)
        .unwrap()
        .encode()
        .unwrap();
    let (s, v) = fleet
        .post(
            "/api/v1/keys",
            &json!({"name": name, "key": String::from_utf8(pem).unwrap()}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{v}");
}

/// Writes `genesis` as the device's `genesis.cbor`.
pub fn write_genesis(dev: &Device, genesis: &TrustState) {
    std::fs::write(
        dev.path("genesis.cbor"),
        suitcase_author::trust::document(genesis).unwrap(),
    )
    .unwrap();
}

/// The device's configuration with `[trust]` naming `genesis.cbor` in place of its anchors.
pub fn config(fleet: &Fleet, dev: &Device) -> Config {
    let anchors = format!("anchors = [\"{}\"]\n", fleet.key_pub.display());
    let toml = dev
        .toml(fleet)
        .replace(&anchors, "state = \"genesis.cbor\"\n");
    assert!(toml.contains("state = \"genesis.cbor\""));
    let path = dev.path("agent.toml");
    std::fs::write(&path, toml).unwrap();
    Config::load(&path).unwrap()
}

/// One cycle of an agent with that configuration, which must find an update; how it ended.
pub async fn cycle(fleet: &Fleet, dev: &Device) -> (Finished, Events) {
    let events = Events::default();
    let mut agent = Agent::new(config(fleet, dev), Hooks::default(), events.sink()).unwrap();
    let update = agent.cycle().await.unwrap().update.unwrap();
    (update.finished, events)
}
