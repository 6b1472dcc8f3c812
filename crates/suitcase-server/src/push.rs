//! Push notifications over MQTT for hybrid (push + poll) devices.
//!
//! A notification carries no information beyond "check in now": the device then checks in
//! over the authenticated API and gets its offer there. Topics name an opaque random push id,
//! never the device's identifier (RFC 8240 §3), so an observer of the broker learns nothing
//! about which device is which.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use rumqttc::{AsyncClient, MqttOptions, QoS};

/// The MQTT publisher.
#[derive(Clone)]
pub(crate) struct Push {
    client: AsyncClient,
    pub(crate) broker: String,
    prefix: String,
}

impl Push {
    /// Connects (in the background, reconnecting for ever) to `mqtt://host:port`.
    pub(crate) fn connect(url: &str, prefix: &str) -> Result<Self> {
        let parsed = url::Url::parse(url).with_context(|| format!("bad MQTT URL {url:?}"))?;
        if parsed.scheme() != "mqtt" {
            bail!("unsupported MQTT URL {url:?}: use mqtt://HOST:PORT");
        }
        let host = parsed
            .host_str()
            .with_context(|| format!("{url:?} names no host"))?
            .to_owned();
        let port = parsed.port().unwrap_or(1883);
        let mut options = MqttOptions::new(crate::auth::new_id("suitcase-server-"), host, port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        tokio::spawn(async move {
            loop {
                if let Err(e) = eventloop.poll().await {
                    tracing::warn!(error = %e, "MQTT connection lost; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        Ok(Self {
            client,
            broker: url.to_owned(),
            prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }

    /// The topic a device listens on.
    pub(crate) fn device_topic(&self, push_id: &str) -> String {
        format!("{}/d/{push_id}", self.prefix)
    }

    /// The topic a group's devices listen on.
    pub(crate) fn group_topic(&self, push_id: &str) -> String {
        format!("{}/g/{push_id}", self.prefix)
    }

    async fn publish(&self, topic: String) {
        let payload = br#"{"check_in":true}"#.to_vec();
        if let Err(e) = self
            .client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
            .await
        {
            tracing::warn!(error = %e, topic, "cannot queue a push notification");
        } else {
            metrics::counter!("suitcase_push_notifications_total").increment(1);
        }
    }

    /// Tells devices to check in.
    pub(crate) async fn notify_devices(&self, push_ids: &[String]) {
        for id in push_ids {
            self.publish(self.device_topic(id)).await;
        }
    }

    /// Tells a group to check in.
    pub(crate) async fn notify_group(&self, push_id: &str) {
        self.publish(self.group_topic(push_id)).await;
    }
}
