//! MQTT push (hybrid push + poll, RFC 9019 §3): subscribe to the topics the check-in answer
//! names; any message means "check in now". The message carries nothing else, and the
//! device learns what to do over the authenticated HTTP API.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use suitcase_protocol::PushInfo;
use tokio::sync::Notify;

use crate::events::{Event, EventSink};

/// The subscription, kept in step with the latest check-in answer.
pub(crate) struct Push {
    current: Option<PushInfo>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub(crate) notify: Arc<Notify>,
    client_id: String,
    events: EventSink,
}

impl core::fmt::Debug for Push {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Push")
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl Drop for Push {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// `mqtt://host:port` → (host, port).
pub(crate) fn broker(url: &str) -> Option<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))?;
    let rest = rest.split('/').next().unwrap_or(rest);
    match rest.rsplit_once(':') {
        Some((h, p)) => Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?)),
        None => Some((rest.to_owned(), 1883)),
    }
}

impl Push {
    pub(crate) fn new(client_id: String, events: EventSink) -> Self {
        Self {
            current: None,
            task: None,
            notify: Arc::new(Notify::new()),
            client_id,
            events,
        }
    }

    /// Subscribes to `info`'s topics (once; again only when they change).
    pub(crate) fn ensure(&mut self, info: &PushInfo) {
        if self.current.as_ref() == Some(info) {
            return;
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.current = Some(info.clone());
        let Some((host, port)) = broker(&info.broker) else {
            tracing::warn!(
                "push broker {:?} is not an mqtt://host:port URL; polling only",
                info.broker
            );
            return;
        };
        let mut opts = MqttOptions::new(self.client_id.clone(), host, port);
        opts.set_keep_alive(Duration::from_secs(30));
        let topics = info.topics.clone();
        let notify = self.notify.clone();
        let events = self.events.clone();
        self.task = Some(tokio::spawn(async move {
            let (client, mut eventloop) = AsyncClient::new(opts, 16);
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        // Subscriptions do not outlive a session: (re)subscribe on every connect.
                        for t in &topics {
                            let _ = client.try_subscribe(t.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                        events(&Event::Subscribed {
                            topics: topics.clone(),
                        });
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        events(&Event::Push { topic: p.topic });
                        notify.notify_one();
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::info!("push: {e}; reconnecting in 5 s");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            broker("mqtt://127.0.0.1:1884"),
            Some(("127.0.0.1".into(), 1884))
        );
        assert_eq!(
            broker("mqtt://broker.example"),
            Some(("broker.example".into(), 1883))
        );
        assert_eq!(broker("https://x"), None);
    }
}
