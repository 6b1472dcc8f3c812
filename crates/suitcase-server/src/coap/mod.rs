//! The CoAP device API (RFC 7252 over UDP; docs/coap.md): a thin transport over the same
//! check-in, offer, report and download functions as the HTTP device API (`api::device`).
//!
//! ```text
//!  coap://ADDR   plain UDP: /.well-known/core only; every device resource answers 4.01
//!  coaps://ADDR  DTLS 1.2 PSK (dimpl, TLS_PSK_WITH_AES_128_CCM_8): the device resources,
//!                the PSK identity an opaque sealed credential (credential.rs, RFC 8240 §3)
//! ```
//!
//! coap-lite is the message codec (packets and options); the Block2 option is parsed here
//! (block.rs) for its 20-bit block number. Everything else — message deduplication,
//! piggybacked answers, Observe — is this module's. It does not: act as a proxy, take
//! Block1 request bodies (bodies are at most [`MAX_BODY`] bytes, one datagram), or send
//! confirmable notifications (RFC 7641 §4.5 asks for one a day; observers here last at most
//! [`OBSERVE_MAX_AGE`]).

mod block;
mod credential;
mod resources;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coap_lite::{MessageClass, MessageType, Packet};
use hashlink::LruCache;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::AppState;

pub use credential::{CoapCredential, KeyLength};
pub(crate) use credential::{Secret, create_noclobber};

/// The largest datagram accepted (RFC 7252 §4.6: 1152 bytes of message fit an IPv6 MTU of
/// 1280); a longer one is answered 4.13 with Size1.
pub(crate) const MAX_MESSAGE: usize = 1280;
/// The largest request body (CBOR check-in or report), in one datagram.
pub(crate) const MAX_BODY: usize = 1024;
/// The PSK identity hint of the ServerKeyExchange (RFC 4279 §2): the same for every device.
const PSK_HINT: &[u8] = b"suitcase";
/// The most connected DTLS sessions at once; at the limit the longest-idle one is dropped.
const MAX_SESSIONS: usize = 10_000;
/// A DTLS session idle this long (no datagram from the device, no notification to it) is
/// dropped (the device handshakes again).
const SESSION_IDLE: Duration = Duration::from_secs(600);
/// The most DTLS handshakes under way at once, kept apart from the connected sessions: a
/// flood of spoofed ClientHellos evicts only other handshakes, never a connected session.
const MAX_HANDSHAKES: usize = 256;
/// A handshake not finished in this long is dropped.
const HANDSHAKE_EXPIRY: Duration = Duration::from_secs(10);
/// RFC 7252 §4.8.2 EXCHANGE_LIFETIME: how long an answer is kept to answer a retransmission
/// of its request the same (a report sent twice is stored once).
const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);
/// The most answers kept for retransmissions.
const DEDUP_CAP: usize = 4096;
/// The most observers of one device's offer, and in total (RFC 7641 §4.1: a server that
/// cannot add one answers without the Observe option).
pub(crate) const OBSERVERS_PER_DEVICE: usize = 2;
/// See [`OBSERVERS_PER_DEVICE`].
pub(crate) const OBSERVERS_MAX: usize = 1000;
/// How often each observed offer is read again.
const OBSERVE_POLL: Duration = Duration::from_secs(1);
/// An observer is forgotten after this long without registering again; its DTLS session
/// ends after [`SESSION_IDLE`] without traffic either way.
const OBSERVE_MAX_AGE: Duration = SESSION_IDLE;
/// The Max-Age (RFC 7252 §5.10.5) of an observed offer's answers and notifications: half
/// the session's idle limit, so that a client that registers again when it expires (RFC 7641
/// §3.3.1) keeps its session and observation.
pub(crate) const OBSERVE_REFRESH_S: u64 = SESSION_IDLE.as_secs() / 2;

/// Who a message came from: the peer's address and its DTLS session (RFC 7252 §9.1: message
/// ids, tokens and observations are scoped to the session; a new session from the same
/// address — the device again, or another one behind the same NAT — shares none of them).
/// `session` is 0 on the plain listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    pub(crate) session: u64,
}

/// The running CoAP listeners.
#[derive(Debug)]
pub(crate) struct CoapListeners {
    /// The plain CoAP address.
    pub(crate) plain: Option<SocketAddr>,
    /// The DTLS (coaps) address.
    pub(crate) dtls: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl CoapListeners {
    /// Waits for the listeners to stop (after the stop signal).
    pub(crate) async fn stopped(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds the configured CoAP listeners and serves until `stop`.
pub(crate) async fn start(
    state: &AppState,
    stop: watch::Receiver<bool>,
) -> Result<CoapListeners, crate::ServerError> {
    let mut out = CoapListeners {
        plain: None,
        dtls: None,
        tasks: Vec::new(),
    };
    let bind = |addr: SocketAddr| async move {
        UdpSocket::bind(addr)
            .await
            .map_err(|error| crate::ServerError::Listen { addr, error })
    };
    if let Some(addr) = state.config.coap_listen {
        let socket = bind(addr).await?;
        out.plain = socket.local_addr().ok();
        let ep = Endpoint::new(state.clone(), socket, None);
        out.tasks.push(tokio::spawn(ep.run(stop.clone())));
    }
    if let Some(addr) = state.config.coaps_listen {
        let secret = Secret::load_or_create(&state.config.data_dir)?;
        let socket = bind(addr).await?;
        out.dtls = socket.local_addr().ok();
        let ep = Endpoint::new(state.clone(), socket, Some(secret));
        out.tasks.push(tokio::spawn(ep.run(stop)));
    }
    Ok(out)
}

/// A new CoAP credential for a device (by name or id), from the data directory's secret.
pub(crate) async fn issue(
    config: &crate::Config,
    device: &str,
    len: KeyLength,
) -> Result<CoapCredential, crate::ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|error| crate::ServerError::DataDir {
        path: config.data_dir.clone(),
        error,
    })?;
    let db = crate::db::Db::open(&config.database_url()).await?;
    let row = db
        .device_get(device)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no device {device:?}"))?;
    if row.revoked {
        return Err(anyhow::anyhow!("device {device:?} was decommissioned").into());
    }
    let secret = Secret::load_or_create(&config.data_dir)?;
    Ok(secret.issue(&row.id, len).map_err(anyhow::Error::msg)?)
}

/// One DTLS session with a peer.
struct Session {
    /// This session's number (never reused): what answers kept and observers belong to.
    id: u64,
    dtls: dimpl::Dtls,
    /// The device id the PSK identity opened to (set by the resolver during the handshake).
    device: Arc<Mutex<Option<String>>>,
    /// The device's name, looked up once the session is up.
    name: Option<String>,
    connected: bool,
    /// The peer sent close_notify: dropped at the next tick.
    closed: bool,
    wake: Option<Instant>,
    last: Instant,
    /// When the handshake began (for [`HANDSHAKE_EXPIRY`]).
    born: Instant,
    /// Records that failed on this connected session (discarded, RFC 6347 §4.1.2.7).
    discarded: u64,
}

/// The DTLS sessions of the coaps listener: connected ones, and handshakes under way in a
/// small map of their own (a handshake moves to `up` when it completes).
struct Sessions {
    up: LruCache<SocketAddr, Session>,
    pending: LruCache<SocketAddr, Session>,
}

impl Session {
    /// The device the handshake authenticated.
    fn device(&self) -> Option<String> {
        self.device.lock().ok().and_then(|d| d.clone())
    }
}

/// The PSK lookup of one session: opens the identity and remembers which device it named.
struct Resolver {
    secret: Secret,
    device: Arc<Mutex<Option<String>>>,
}

impl dimpl::PskResolver for Resolver {
    fn resolve(&self, identity: &[u8]) -> Option<Vec<u8>> {
        // RFC 4279 §5.1: an identity of the wrong form fails the handshake. Any other
        // opens (one AES-256 block, no tag) to some device id, but its key is an HMAC under
        // a server key: a forger does not have it, so the handshake's Finished fails.
        let id = self.secret.open(identity)?;
        if let Ok(mut d) = self.device.lock() {
            *d = Some(id);
        }
        Some(self.secret.key_for(identity).into_bytes())
    }
}

/// An observer of a device's offer (RFC 7641).
struct Observer {
    device_id: String,
    device_name: String,
    /// The representation last sent.
    last: Vec<u8>,
    seq: u32,
    since: Instant,
}

/// An answer kept for retransmissions of its request: when, and the answer (`None` while
/// it is being made: a retransmission then gets nothing, and sends again).
struct Kept {
    at: Instant,
    answer: Option<Vec<u8>>,
}

/// One listener: its socket, its DTLS sessions (if coaps), answers kept for retransmissions,
/// and observers.
pub(crate) struct Endpoint {
    state: AppState,
    socket: UdpSocket,
    secret: Option<Secret>,
    sessions: Mutex<Sessions>,
    /// The next session number.
    next_session: AtomicU64,
    /// (peer, message id) → the answer (None while it is being made).
    dedup: Mutex<LruCache<(Peer, u16), Kept>>,
    /// (peer, token) → observer.
    observers: Mutex<HashMap<(Peer, Vec<u8>), Observer>>,
    /// Message ids of notifications sent, to match a Reset (RFC 7641 §3.6).
    notified: Mutex<LruCache<(Peer, u16), Vec<u8>>>,
    mid: AtomicU16,
    /// An observer poll is running (the next tick is skipped).
    polling: AtomicBool,
}

impl Endpoint {
    fn new(state: AppState, socket: UdpSocket, secret: Option<Secret>) -> Arc<Self> {
        let mut seed = [0u8; 2];
        let _ = getrandom::fill(&mut seed);
        Arc::new(Self {
            state,
            socket,
            secret,
            sessions: Mutex::new(Sessions {
                up: LruCache::new(MAX_SESSIONS),
                pending: LruCache::new(MAX_HANDSHAKES),
            }),
            next_session: AtomicU64::new(1),
            dedup: Mutex::new(LruCache::new(DEDUP_CAP)),
            observers: Mutex::new(HashMap::new()),
            notified: Mutex::new(LruCache::new(DEDUP_CAP)),
            mid: AtomicU16::new(u16::from_be_bytes(seed)),
            polling: AtomicBool::new(false),
        })
    }

    fn dtls(&self) -> bool {
        self.secret.is_some()
    }

    fn next_mid(&self) -> u16 {
        self.mid.fetch_add(1, Ordering::Relaxed)
    }

    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // Room for a DTLS record around a message over the limit, so that the limit is
        // checked (and answered 4.13) on the message itself.
        let mut buf = vec![0u8; 4 * MAX_MESSAGE];
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut observe = tokio::time::interval(OBSERVE_POLL);
        loop {
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, peer)) => {
                        let datagram = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                        if self.dtls() {
                            self.on_record(peer, &datagram).await;
                        } else {
                            let peer = Peer { addr: peer, session: 0 };
                            self.clone().on_message(peer, None, datagram);
                        }
                    }
                    Err(e) => {
                        // ICMP port unreachable of an earlier send shows up here on Linux.
                        tracing::debug!(error = %e, "CoAP receive failed");
                    }
                },
                _ = tick.tick() => self.on_tick().await,
                _ = observe.tick() => {
                    // One poll at a time: a slow one makes the next ticks skip.
                    if !self.polling.swap(true, Ordering::AcqRel) {
                        let ep = self.clone();
                        tokio::spawn(async move {
                            ep.clone().poll_observers().await;
                            ep.polling.store(false, Ordering::Release);
                        });
                    }
                }
                _ = stop.changed() => break,
            }
        }
    }

    /// A new handshaking session for a peer.
    fn new_session(&self, now: Instant) -> Option<Session> {
        let secret = self.secret.clone()?;
        let device = Arc::new(Mutex::new(None));
        let resolver = Arc::new(Resolver {
            secret,
            device: device.clone(),
        });
        let config = match dimpl::Config::builder()
            // RFC 4279 §5.2: a hint names no device; tinydtls (aiocoap's DTLS) fails the
            // handshake on an empty one.
            .with_psk_server(Some(PSK_HINT.to_vec()), resolver)
            .build()
        {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::warn!(error = %e, "DTLS configuration");
                return None;
            }
        };
        let mut dtls = dimpl::Dtls::new_12_psk(config, now);
        // dimpl needs a first timeout before the first packet.
        dtls.handle_timeout(now).ok()?;
        Some(Session {
            id: self.next_session.fetch_add(1, Ordering::Relaxed),
            dtls,
            device,
            name: None,
            connected: false,
            closed: false,
            wake: None,
            last: now,
            born: now,
            discarded: 0,
        })
    }

    /// Forgets what belonged to ended sessions: answers kept, observers, notifications.
    fn forget(&self, ended: &[Peer]) {
        if ended.is_empty() {
            return;
        }
        if let Ok(mut d) = self.dedup.lock() {
            d.retain(|(p, _), _| !ended.contains(p));
        }
        if let Ok(mut o) = self.observers.lock() {
            o.retain(|(p, _), _| !ended.contains(p));
        }
        if let Ok(mut n) = self.notified.lock() {
            n.retain(|(p, _), _| !ended.contains(p));
        }
    }

    /// A datagram on the coaps listener: into the peer's DTLS session, then whatever it
    /// produced out. A session is created only for a datagram that begins with a DTLS
    /// ClientHello record ([`is_client_hello`]); it handshakes in the small `pending` map and
    /// moves to `up` once connected. A record a connected session cannot process is
    /// discarded and the session kept (RFC 6347 §4.1.2.7): a spoofed datagram cannot end it.
    async fn on_record(self: &Arc<Self>, addr: SocketAddr, datagram: &[u8]) {
        let now = Instant::now();
        let mut ended = Vec::new();
        let out = {
            let Ok(mut guard) = self.sessions.lock() else {
                return;
            };
            let ss = &mut *guard;
            let hello = is_client_hello(datagram);
            let epoch0 = datagram.get(3..5) == Some(&[0, 0][..]);
            // A connected session takes every record but a new handshake's (epoch 0, when a
            // handshake from this address is under way, or a ClientHello).
            let mut out = None;
            let to_up =
                ss.up.contains_key(&addr) && !(hello || (epoch0 && ss.pending.contains_key(&addr)));
            if to_up && let Some(s) = ss.up.get_mut(&addr) {
                match s.dtls.handle_packet(datagram) {
                    Ok(()) => {
                        let (packets, messages) = drain(s);
                        s.last = now;
                        // Nothing came of it: perhaps the Finished of a new handshake from
                        // this address (epoch 1), given to it below.
                        if !(packets.is_empty()
                            && messages.is_empty()
                            && ss.pending.contains_key(&addr))
                        {
                            out = Some((packets, messages, s.id, s.name.clone(), s.device()));
                        }
                    }
                    Err(e) => {
                        s.discarded += 1;
                        tracing::debug!(error = %e, peer = %addr, discarded = s.discarded,
                            "DTLS record discarded on a connected session");
                        if !ss.pending.contains_key(&addr) {
                            return;
                        }
                    }
                }
            }
            match out {
                Some(o) => o,
                None => {
                    if !ss.pending.contains_key(&addr) {
                        if !hello {
                            return;
                        }
                        let Some(fresh) = self.new_session(now) else {
                            return;
                        };
                        // At the limit, the oldest handshake goes; connected sessions stay.
                        if ss.pending.len() >= MAX_HANDSHAKES {
                            ss.pending.remove_lru();
                        }
                        ss.pending.insert(addr, fresh);
                    }
                    let Some(s) = ss.pending.get_mut(&addr) else {
                        return;
                    };
                    s.last = now;
                    if let Err(e) = s.dtls.handle_packet(datagram) {
                        tracing::debug!(error = %e, peer = %addr, "DTLS handshake failed");
                        ss.pending.remove(&addr);
                        return;
                    }
                    let (packets, messages) = drain(s);
                    let o = (packets, messages, s.id, s.name.clone(), s.device());
                    if s.connected
                        && let Some(s) = ss.pending.remove(&addr)
                    {
                        // Connected: into the main map, replacing this address's old
                        // session; at the limit the longest-idle one goes.
                        if let Some(old) = ss.up.remove(&addr) {
                            ended.push(Peer {
                                addr,
                                session: old.id,
                            });
                        }
                        if ss.up.len() >= MAX_SESSIONS
                            && let Some((a, old)) = ss.up.remove_lru()
                        {
                            ended.push(Peer {
                                addr: a,
                                session: old.id,
                            });
                        }
                        ss.up.insert(addr, s);
                    }
                    o
                }
            }
        };
        self.forget(&ended);
        let (packets, messages, session, name, device) = out;
        let peer = Peer { addr, session };
        self.send_packets(addr, packets).await;
        let Some(device) = device else {
            return;
        };
        if messages.is_empty() {
            return;
        }
        let name = match name {
            Some(n) => n,
            None => match self.state.db.device_get(&device).await {
                Ok(Some(row)) if row.id == device => {
                    if let Ok(mut sessions) = self.sessions.lock()
                        && let Some(s) = sessions.up.get_mut(&addr)
                        && s.id == session
                    {
                        s.name = Some(row.name.clone());
                    }
                    row.name
                }
                // A credential of a device since deleted: answered 4.01 per request.
                _ => String::new(),
            },
        };
        for m in messages {
            self.clone()
                .on_message(peer, Some((device.clone(), name.clone())), m);
        }
    }

    /// Retransmission timers of the DTLS sessions, and idle ones dropped.
    async fn on_tick(self: &Arc<Self>) {
        if !self.dtls() {
            return;
        }
        let now = Instant::now();
        let mut out = Vec::new();
        let mut ended = Vec::new();
        if let Ok(mut guard) = self.sessions.lock() {
            let ss = &mut *guard;
            for (map, up) in [(&mut ss.up, true), (&mut ss.pending, false)] {
                let mut dead = Vec::new();
                for (addr, s) in map.iter_mut() {
                    if s.closed
                        || now.duration_since(s.last) > SESSION_IDLE
                        || (!up && now.duration_since(s.born) > HANDSHAKE_EXPIRY)
                    {
                        dead.push(*addr);
                        continue;
                    }
                    if s.wake.is_some_and(|w| w <= now) {
                        s.wake = None;
                        if s.dtls.handle_timeout(now).is_err() {
                            dead.push(*addr);
                            continue;
                        }
                        let (packets, _) = drain(s);
                        out.push((*addr, packets));
                    }
                }
                for a in dead {
                    if let Some(s) = map.remove(&a) {
                        ended.push(Peer {
                            addr: a,
                            session: s.id,
                        });
                    }
                }
            }
        }
        self.forget(&ended);
        for (addr, packets) in out {
            self.send_packets(addr, packets).await;
        }
    }

    async fn send_packets(&self, peer: SocketAddr, packets: Vec<Vec<u8>>) {
        for p in packets {
            if let Err(e) = self.socket.send_to(&p, peer).await {
                tracing::debug!(error = %e, %peer, "CoAP send failed");
            }
        }
    }

    /// Sends a CoAP message to a peer, through its DTLS session on coaps (only the session
    /// the request came in: a later session from the same address gets nothing of it).
    async fn send(&self, peer: Peer, message: &[u8]) {
        if !self.dtls() {
            self.send_packets(peer.addr, vec![message.to_vec()]).await;
            return;
        }
        let packets = {
            let Ok(mut sessions) = self.sessions.lock() else {
                return;
            };
            let Some(s) = sessions.up.get_mut(&peer.addr) else {
                return;
            };
            if s.id != peer.session
                || !s.connected
                || s.dtls.send_application_data(message).is_err()
            {
                return;
            }
            // Traffic to the device keeps its session (and its observations) alive.
            s.last = Instant::now();
            drain(s).0
        };
        self.send_packets(peer.addr, packets).await;
    }

    /// One CoAP message from a peer (`device`: the device id and name its DTLS session
    /// authenticated), answered in the background.
    fn on_message(self: Arc<Self>, peer: Peer, device: Option<(String, String)>, bytes: Vec<u8>) {
        tokio::spawn(async move {
            if let Some(answer) = self.answer(peer, device, &bytes).await {
                self.send(peer, &answer).await;
            }
        });
    }

    async fn answer(
        self: &Arc<Self>,
        peer: Peer,
        device: Option<(String, String)>,
        bytes: &[u8],
    ) -> Option<Vec<u8>> {
        if bytes.len() > MAX_MESSAGE {
            return resources::too_large(bytes);
        }
        let Ok(packet) = Packet::from_bytes(bytes) else {
            // RFC 7252 §4.2/§4.3: a confirmable message that cannot be parsed is rejected
            // with a Reset; anything else is ignored.
            return resources::reset_malformed(bytes);
        };
        let mid = packet.header.message_id;
        match (packet.header.get_type(), packet.header.code) {
            (MessageType::Reset, _) => {
                // RFC 7641 §3.6: a Reset to a notification cancels the observation.
                let token = self.notified.lock().ok()?.remove(&(peer, mid));
                if let Some(token) = token {
                    self.observers.lock().ok()?.remove(&(peer, token));
                }
                return None;
            }
            (MessageType::Acknowledgement, _) => return None,
            // RFC 7252 §4.3: an empty Confirmable message is a ping, answered with a Reset.
            (MessageType::Confirmable, MessageClass::Empty) => {
                return resources::empty(MessageType::Reset, mid);
            }
            (_, MessageClass::Request(_)) => {}
            _ => return None,
        }
        // RFC 7252 §4.5: a retransmitted request gets the same answer, not a second effect.
        let key = (peer, mid);
        let now = Instant::now();
        {
            let mut d = self.dedup.lock().ok()?;
            if let Some(k) = d.get(&key)
                && now.duration_since(k.at) < EXCHANGE_LIFETIME
            {
                return k.answer.clone();
            }
            d.insert(
                key,
                Kept {
                    at: now,
                    answer: None,
                },
            );
        }
        let answer = resources::handle(self, peer, device, &packet).await;
        let bytes = answer.to_bytes_with_limit(MAX_MESSAGE * 2).ok()?;
        if let Ok(mut d) = self.dedup.lock() {
            d.insert(
                key,
                Kept {
                    at: now,
                    answer: Some(bytes.clone()),
                },
            );
        }
        Some(bytes)
    }

    /// Registers (or refreshes) an observer; `false` when a bound is reached.
    fn observe(&self, peer: Peer, token: &[u8], device_id: &str, name: &str, repr: &[u8]) -> bool {
        let Ok(mut o) = self.observers.lock() else {
            return false;
        };
        let key = (peer, token.to_vec());
        if let Some(x) = o.get_mut(&key) {
            x.last = repr.to_vec();
            x.since = Instant::now();
            return true;
        }
        let of_device = o.values().filter(|x| x.device_id == device_id).count();
        if of_device >= OBSERVERS_PER_DEVICE || o.len() >= OBSERVERS_MAX {
            return false;
        }
        o.insert(
            key,
            Observer {
                device_id: device_id.to_owned(),
                device_name: name.to_owned(),
                last: repr.to_vec(),
                seq: 2,
                since: Instant::now(),
            },
        );
        true
    }

    fn unobserve(&self, peer: Peer, token: &[u8]) {
        if let Ok(mut o) = self.observers.lock() {
            o.remove(&(peer, token.to_vec()));
        }
    }

    /// Reads each observed offer again and notifies the observers whose offer changed.
    async fn poll_observers(self: Arc<Self>) {
        let now = Instant::now();
        let devices: Vec<(String, String)> = {
            let Ok(mut o) = self.observers.lock() else {
                return;
            };
            let sessions: Vec<Peer> = match self.sessions.lock() {
                Ok(s) => {
                    s.up.iter()
                        .map(|(addr, s)| Peer {
                            addr: *addr,
                            session: s.id,
                        })
                        .collect()
                }
                Err(_) => return,
            };
            o.retain(|(peer, _), x| {
                now.duration_since(x.since) < OBSERVE_MAX_AGE
                    && (!self.dtls() || sessions.contains(peer))
            });
            let mut d: Vec<(String, String)> = o
                .values()
                .map(|x| (x.device_id.clone(), x.device_name.clone()))
                .collect();
            d.sort();
            d.dedup();
            d
        };
        for (id, name) in devices {
            let repr = match resources::offer_state(&self.state, &id, &name).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = ?e.body, "cannot read an observed offer");
                    continue;
                }
            };
            let due: Vec<(Peer, Vec<u8>, u32)> = {
                let Ok(mut o) = self.observers.lock() else {
                    return;
                };
                o.iter_mut()
                    .filter(|(_, x)| x.device_id == id && x.last != repr)
                    .map(|((peer, token), x)| {
                        x.last = repr.clone();
                        x.seq = (x.seq + 1) & 0xFF_FFFF;
                        (*peer, token.clone(), x.seq)
                    })
                    .collect()
            };
            for (peer, token, seq) in due {
                let mid = self.next_mid();
                let n = resources::notification(mid, &token, seq, &repr);
                if let Ok(bytes) = n.to_bytes() {
                    if let Ok(mut m) = self.notified.lock() {
                        m.insert((peer, mid), token);
                    }
                    self.send(peer, &bytes).await;
                }
            }
        }
    }
}

/// Whether a datagram begins with a DTLS ClientHello record (RFC 6347 §4.1, §4.2.2): content
/// type 22 (handshake), a DTLS version, epoch 0, a record length within the datagram, and
/// in it a handshake header of type 1 (client_hello) whose fragment fits the record. Only
/// such a datagram creates a session: other junk costs nothing.
fn is_client_hello(d: &[u8]) -> bool {
    let be = |r: core::ops::Range<usize>| {
        d.get(r).map_or(usize::MAX, |b| {
            b.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x))
        })
    };
    let record_len = be(11..13);
    let fragment_len = be(22..25);
    d.first() == Some(&22)
        && d.get(1) == Some(&0xFE)
        && matches!(d.get(2), Some(&0xFD | &0xFF))
        && d.get(3..5) == Some(&[0, 0][..])
        && (12..=MAX_MESSAGE).contains(&record_len)
        && record_len.checked_add(13).is_some_and(|n| n <= d.len())
        && d.get(13) == Some(&1)
        && be(14..17) <= MAX_MESSAGE
        && fragment_len
            .checked_add(12)
            .is_some_and(|n| n <= record_len)
}

/// Everything a DTLS session has to say: records to send, and CoAP messages received.
fn drain(s: &mut Session) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut packets = Vec::new();
    let mut messages = Vec::new();
    let mut buf = vec![0u8; 2048];
    // Bounded: dimpl ends every poll cycle with a Timeout.
    for _ in 0..256 {
        match s.dtls.poll_output(&mut buf) {
            dimpl::Output::Packet(p) => packets.push(p.to_vec()),
            dimpl::Output::BufferTooSmall { needed } => buf.resize(needed.min(1 << 16), 0),
            dimpl::Output::Timeout(t) => {
                s.wake = Some(t);
                break;
            }
            dimpl::Output::Connected => s.connected = true,
            dimpl::Output::ApplicationData(d) => messages.push(d.to_vec()),
            dimpl::Output::CloseNotify => {
                s.connected = false;
                s.closed = true;
            }
            _ => {}
        }
    }
    (packets, messages)
}
