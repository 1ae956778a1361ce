//! CoAP over DTLS 1.2 with pre-shared keys (RFC 7252 §9.1, `coaps://`), sans-IO: a table
//! of DTLS sessions (the `dimpl` crate's state machine, one per peer) in front of an
//! [`Endpoint`] whose peers are [`SessionId`]s, so that every rule of the endpoint runs
//! unchanged over DTLS.
//!
//! Transition rules, and the sections they implement:
//! - RFC 7252 §9.1.3.1: the suite is TLS_PSK_WITH_AES_128_CCM_8, the one every
//!   PreSharedKey implementation must support. A server learns the client's identity
//!   during the handshake; it stays with the session ([`Sessions::identity`]), so that
//!   the application can authorize each request by it.
//! - RFC 7252 §9.1: the security association is part of the endpoint: a new session
//!   with the same address is another peer ([`SessionId`] differs), so that message IDs,
//!   tokens and stored replies of the old session never mix with the new one's.
//! - RFC 6347 §4.2.8: a ClientHello (epoch 0) from an address whose session is
//!   established starts a new session beside the old one; the old one is closed when
//!   the new one completes, and stays usable if the new one fails.
//! - RFC 6347 §4.2.1: the cookie exchange is dimpl's; a session exists before the
//!   cookie returns, so half-open sessions are capped ([`Limits::max_half_open`], the
//!   oldest half-open one gives way) and live [`Limits::handshake_timeout`] at most. A
//!   client whose handshake has not completed after a quarter of that starts over with
//!   a fresh ClientHello, so that one whose half-open session the server dropped
//!   recovers in seconds. (A ClientHello without a cookie still costs the server a
//!   half-open place: dimpl 0.9 has no way to check a cookie without a session.)
//! - Established sessions are capped too ([`Limits::max_sessions`]), in places of their
//!   own: a handshake that completes past the cap closes the one idle longest (a
//!   ClientHello never does: half-open sessions only displace each other); a session
//!   idle for [`Limits::idle_timeout`] is closed. Its requests in flight then end as any
//!   request to a silent peer does.
//! - Key material for DTLS-SRTP, which dimpl may emit, is ignored.
//!
//! Memory: a session is about 3.4 KB inline plus up to about 7 KB of heap during its
//! handshake, so the table never holds more than (`max_sessions` + `max_half_open`) ×
//! ~10 KB.
//!
//! Certificates and raw public keys (RFC 7252 §9.1.3.2, §9.1.3.3) are not supported:
//! dimpl's certificate suites are ECDHE-ECDSA with GCM or ChaCha20, not the
//! TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 suite RFC 7252 names for them.
//!
//! # The run loop
//!
//! As for an [`Endpoint`]: after every input and command, drain
//! [`DtlsEndpoint::poll_output`] until it yields a timeout. A client and a server
//! over an in-memory "network":
//!
//! ```
//! use std::net::SocketAddr;
//! use coap_proto::dtls::{DtlsEndpoint, DtlsOutput, KeyStore, Limits, Sessions};
//! use coap_proto::wire::Code;
//! use coap_proto::{Config, Incoming, Instant, RequestOptions};
//!
//! let (c_addr, s_addr): (SocketAddr, SocketAddr) =
//!     ("127.0.0.1:40000".parse()?, "127.0.0.1:5684".parse()?);
//! let keys = KeyStore::new().with("sensor-7", b"secret".to_vec());
//! let mut server = DtlsEndpoint::new(Sessions::server(keys, Limits::default())?, Config::default())?;
//! let sessions = Sessions::client("sensor-7", b"secret".to_vec(), Limits::default())?;
//! let mut client = DtlsEndpoint::new(sessions, Config { seed: 1, ..Config::default() })?;
//!
//! let now = Instant::ZERO;
//! let session = client.sessions.connect(now, s_addr)?;
//! // A request may be made at once: it goes out when the handshake completes.
//! client.endpoint.request(now, session, Code::GET, &RequestOptions::default(), |b| {
//!     b.uri_path("/hello").map(drop)
//! })?;
//! // Drains one side: its datagrams (events are ignored here).
//! fn drain(ep: &mut DtlsEndpoint, now: Instant) -> Vec<Vec<u8>> {
//!     let mut out = Vec::new();
//!     loop {
//!         match ep.poll_output(now) {
//!             DtlsOutput::Transmit(_, d) => out.push(d.to_vec()),
//!             DtlsOutput::Timeout(_) => return out,
//!             _ => {}
//!         }
//!     }
//! }
//! let mut answer = None;
//! for _ in 0..10 {
//!     let to_server = drain(&mut client, now);
//!     for d in to_server {
//!         server.handle_datagram(now, c_addr, &d, |ep, incoming, identity| {
//!             if let Incoming::Request { handle, .. } = incoming {
//!                 assert_eq!(identity, Some(&b"sensor-7"[..]), "who asks");
//!                 ep.respond(now, handle, Code::CONTENT, |b| b.payload(b"hi").map(drop)).unwrap();
//!             }
//!         });
//!     }
//!     for d in drain(&mut server, now) {
//!         client.handle_datagram(now, s_addr, &d, |_, incoming, _| {
//!             if let Incoming::Response { message, .. } = incoming {
//!                 answer = Some(message.payload().to_vec());
//!             }
//!         });
//!     }
//! }
//! assert_eq!(answer.as_deref(), Some(&b"hi"[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::boxed::Box;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::vec::Vec;

use crate::{Endpoint, Instant, Output};

/// A DTLS session: the peer type of the endpoint inside a [`DtlsEndpoint`]. Small and
/// `Copy`; a handle of a closed session names nothing (its generation moved on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    index: u16,
    generation: u16,
}

impl core::fmt::Display for SessionId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "session {}.{}", self.index, self.generation)
    }
}

/// Bounds of the session table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Established sessions at once (default 64): past it, a handshake that completes
    /// closes the session idle longest.
    pub max_sessions: usize,
    /// Sessions whose handshake has not completed (default 16), in places of their own
    /// (a ClientHello, which anyone can send, never displaces an established session):
    /// a ClientHello past it replaces the oldest of them.
    pub max_half_open: usize,
    /// A handshake not complete after this is given up (default 10 s): the client
    /// gets [`SessionEvent::Failed`], the server forgets the session. A client starts
    /// over with a fresh ClientHello after each quarter of it without completing.
    pub handshake_timeout: Duration,
    /// An established session without a datagram either way for this long is closed
    /// (default 10 minutes).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 64,
            max_half_open: 16,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// What a session did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The handshake completed.
    Connected(SessionId),
    /// The session ended: closed by the peer, idle, replaced by a newer session of the
    /// same peer, or displaced from a full table.
    Closed(SessionId),
    /// The handshake or the session failed (a wrong key, an unknown identity, a
    /// handshake that did not complete in time, a fatal DTLS error).
    Failed(SessionId, DtlsError),
}

/// Why a session failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DtlsError {
    /// The handshake did not complete within [`Limits::handshake_timeout`]: a wrong
    /// key or an unknown identity look like this (the server stays silent), as does an
    /// unreachable server.
    HandshakeTimeout,
    /// dimpl reported a fatal error.
    Protocol,
    /// The table had no room for another session.
    TableFull,
    /// No such session (closed, or never made).
    UnknownSession,
}

impl core::fmt::Display for DtlsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DtlsError::HandshakeTimeout => {
                "DTLS handshake did not complete in time (wrong key, unknown identity, or no server)"
            }
            DtlsError::Protocol => "DTLS session failed",
            DtlsError::TableFull => "no room for another DTLS session",
            DtlsError::UnknownSession => "no such DTLS session",
        })
    }
}

impl core::error::Error for DtlsError {}

/// What [`DtlsEndpoint::poll_output`] yields.
#[derive(Debug)]
pub enum DtlsOutput<'a> {
    /// A datagram to send.
    Transmit(SocketAddr, &'a [u8]),
    /// Something the endpoint inside reports.
    Event(crate::Event),
    /// Something a session did.
    Session(SessionEvent),
    /// Nothing more now: call again after this instant (or a datagram).
    Timeout(Option<Instant>),
}

/// The keys of a server: identity → key, and the hint it sends.
#[derive(Clone, Debug, Default)]
pub struct KeyStore {
    keys: HashMap<Vec<u8>, Vec<u8>>,
    any: Option<Vec<u8>>,
    hint: Option<Vec<u8>>,
}

impl KeyStore {
    /// An empty store.
    pub fn new() -> Self {
        KeyStore::default()
    }

    /// With `identity` using `key`.
    pub fn with(mut self, identity: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.keys.insert(identity.into(), key.into());
        self
    }

    /// With `key` for any identity not listed (as libcoap's `coap-server -k KEY`
    /// accepts every client that knows the key): the identity a client claims is then
    /// only a name, proven by nothing but the key.
    pub fn any_identity(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.any = Some(key.into());
        self
    }

    /// With an identity hint for clients (RFC 4279 §2).
    pub fn hint(mut self, hint: impl Into<Vec<u8>>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// How long a client's handshake may go without completing before it starts over
/// with a fresh ClientHello: a quarter of the handshake timeout (2.5 s by default,
/// past dimpl's second flight retransmission), so that it gets about three tries.
fn restart_after(limits: &Limits) -> Duration {
    limits.handshake_timeout / 4
}

/// The resolver dimpl calls during a handshake: it answers from the key store and
/// notes the identity asked for, which the table then gives to the session whose
/// packet was being handled (one at a time: the table is behind `&mut`).
struct Resolver {
    keys: HashMap<Vec<u8>, Vec<u8>>,
    any: Option<Vec<u8>>,
    asked: Mutex<Option<Vec<u8>>>,
}

impl dimpl::PskResolver for Resolver {
    fn resolve(&self, identity: &[u8]) -> Option<Vec<u8>> {
        let key = self.keys.get(identity).or(self.any.as_ref()).cloned();
        if key.is_some() {
            if let Ok(mut asked) = self.asked.lock() {
                *asked = Some(identity.to_vec());
            }
        }
        key
    }
}

struct Session {
    addr: SocketAddr,
    dtls: dimpl::Dtls,
    connected: bool,
    /// The client's PSK identity (server side), or ours (client side).
    identity: Option<Vec<u8>>,
    started: Instant,
    /// When a client's handshake last (re)started with a fresh ClientHello.
    restarted: Instant,
    last: Instant,
    /// dimpl's next timer, on std's clock.
    timer: Option<std::time::Instant>,
    /// Plaintext the application sent before the handshake completed (client side).
    early: Vec<Vec<u8>>,
}

/// The session table: DTLS records in, plaintext out, and back.
pub struct Sessions {
    config: Arc<dimpl::Config>,
    resolver: Option<Arc<Resolver>>,
    client_identity: Option<Vec<u8>>,
    limits: Limits,
    slots: Vec<Option<Session>>,
    gens: Vec<u16>,
    /// Which session takes an address's records: the established one, and a newer
    /// half-open one for epoch-0 records (a restarted client, RFC 6347 §4.2.8).
    by_addr: HashMap<SocketAddr, (Option<usize>, Option<usize>)>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<SessionEvent>,
    plaintext: VecDeque<(SessionId, Vec<u8>)>,
    current: Vec<u8>,
    /// std's clock at our `Instant::ZERO`: dimpl counts in `std::time::Instant`.
    base: std::time::Instant,
    scratch: Vec<u8>,
}

/// The largest datagram a session produces: a CoAP message of the endpoint's default
/// 1152 bytes plus the DTLS record overhead, with room to spare.
const MTU: usize = 1400;
/// Plaintext a client may queue before its handshake completes.
const EARLY_MAX: usize = 16;

impl Sessions {
    /// A server's table: clients connect with an identity and key of `keys`.
    pub fn server(keys: KeyStore, limits: Limits) -> Result<Self, DtlsError> {
        let resolver = Arc::new(Resolver {
            keys: keys.keys,
            any: keys.any,
            asked: Mutex::new(None),
        });
        let config = dimpl::Config::builder()
            .mtu(MTU)
            .handshake_timeout(limits.handshake_timeout)
            .with_psk_server(keys.hint, resolver.clone())
            .build()
            .map_err(|_| DtlsError::Protocol)?;
        Ok(Self::with(config, Some(resolver), None, limits))
    }

    /// A client's table: it connects with `identity` and `key`.
    pub fn client(
        identity: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
        limits: Limits,
    ) -> Result<Self, DtlsError> {
        let identity = identity.into();
        let resolver = Arc::new(Resolver {
            keys: HashMap::from([(identity.clone(), key.into())]),
            any: None,
            asked: Mutex::new(None),
        });
        // The server's hint does not choose among identities here: one key.
        struct Any(Arc<Resolver>);
        impl dimpl::PskResolver for Any {
            fn resolve(&self, _hint: &[u8]) -> Option<Vec<u8>> {
                self.0.keys.values().next().cloned()
            }
        }
        let config = dimpl::Config::builder()
            .mtu(MTU)
            .handshake_timeout(limits.handshake_timeout)
            .with_psk_client(identity.clone(), Arc::new(Any(resolver)))
            .build()
            .map_err(|_| DtlsError::Protocol)?;
        Ok(Self::with(config, None, Some(identity), limits))
    }

    fn with(
        config: dimpl::Config,
        resolver: Option<Arc<Resolver>>,
        client_identity: Option<Vec<u8>>,
        limits: Limits,
    ) -> Self {
        // Half-open sessions have places of their own: a ClientHello, which anyone can
        // send from any address, never takes an established session's place.
        let n = (limits.max_sessions.max(1) + limits.max_half_open.max(1)).min(u16::MAX as usize);
        Sessions {
            config: Arc::new(config),
            resolver,
            client_identity,
            limits,
            slots: (0..n).map(|_| None).collect(),
            gens: std::vec![0; n],
            by_addr: HashMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            plaintext: VecDeque::new(),
            current: Vec::new(),
            base: std::time::Instant::now(),
            scratch: std::vec![0; MTU + 512],
        }
    }

    fn std_time(&self, now: Instant) -> std::time::Instant {
        self.base + Duration::from_micros(now.as_micros())
    }

    /// Rounded up to the microsecond, so that a timer is never reported due before
    /// dimpl sees it due.
    fn our_time(&self, t: std::time::Instant) -> Instant {
        let d = t.saturating_duration_since(self.base);
        let up = u128::from(d.subsec_nanos() % 1000 != 0);
        Instant::from_micros((d.as_micros() + up) as u64)
    }

    fn id(&self, index: usize) -> SessionId {
        SessionId {
            index: index as u16,
            generation: self.gens[index],
        }
    }

    fn index(&self, id: SessionId) -> Option<usize> {
        let i = id.index as usize;
        (self.gens.get(i) == Some(&id.generation) && self.slots[i].is_some()).then_some(i)
    }

    /// Sessions in the table, half-open ones included.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes one place of the table takes inline (a session with its dimpl state);
    /// heap memory comes on top while a session lives.
    pub const fn session_size() -> usize {
        core::mem::size_of::<Option<Session>>()
    }

    /// Sessions whose handshake has not completed.
    pub fn half_open(&self) -> usize {
        self.slots.iter().flatten().filter(|s| !s.connected).count()
    }

    /// The PSK identity of session `id`: the client's (server side) or ours.
    pub fn identity(&self, id: SessionId) -> Option<&[u8]> {
        let i = self.index(id)?;
        self.slots[i].as_ref()?.identity.as_deref()
    }

    /// The address of session `id`.
    pub fn addr(&self, id: SessionId) -> Option<SocketAddr> {
        Some(self.slots[self.index(id)?].as_ref()?.addr)
    }

    /// Whether session `id` completed its handshake.
    pub fn is_connected(&self, id: SessionId) -> bool {
        self.index(id)
            .and_then(|i| self.slots[i].as_ref())
            .is_some_and(|s| s.connected)
    }

    /// Starts a session to `addr` (client role): the handshake begins at the next
    /// [`DtlsEndpoint::poll_output`]. Requests to the session may be made at once;
    /// they go out when it is connected.
    pub fn connect(&mut self, now: Instant, addr: SocketAddr) -> Result<SessionId, DtlsError> {
        let i = self.place().ok_or(DtlsError::TableFull)?;
        let mut dtls = dimpl::Dtls::new_12_psk(self.config.clone(), self.std_time(now));
        dtls.set_active(true);
        self.open(i, now, addr, dtls, self.client_identity.clone());
        self.by_addr.entry(addr).or_default().1 = Some(i);
        let id = self.id(i);
        self.pump(now, i);
        Ok(id)
    }

    fn open(
        &mut self,
        i: usize,
        now: Instant,
        addr: SocketAddr,
        dtls: dimpl::Dtls,
        identity: Option<Vec<u8>>,
    ) {
        // dimpl draws its random values and, as a client, starts its first flight at
        // the first timer call.
        let mut dtls = dtls;
        let _ = dtls.handle_timeout(self.std_time(now));
        self.gens[i] = self.gens[i].wrapping_add(1);
        self.slots[i] = Some(Session {
            addr,
            dtls,
            connected: false,
            identity,
            started: now,
            restarted: now,
            last: now,
            timer: None,
            early: Vec::new(),
        });
    }

    /// A place for a new handshake, after closing the oldest half-open session if
    /// there are `max_half_open` of them. Established sessions are never closed for it:
    /// the table has `max_half_open` places beyond `max_sessions` (`on_connected` keeps
    /// the established ones within their cap).
    fn place(&mut self) -> Option<usize> {
        if self.half_open() >= self.limits.max_half_open.max(1) {
            let oldest = self.oldest(|s| !s.connected)?;
            self.close(oldest, None);
        }
        self.slots.iter().position(Option::is_none)
    }

    fn oldest(&self, which: impl Fn(&Session) -> bool) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().filter(|s| which(s)).map(|s| (i, s.last)))
            .min_by_key(|&(_, last)| last)
            .map(|(i, _)| i)
    }

    /// Removes session `i`, reporting `failed` or a close.
    fn close(&mut self, i: usize, failed: Option<DtlsError>) {
        let id = self.id(i);
        let Some(s) = self.slots[i].take() else {
            return;
        };
        if let Some(entry) = self.by_addr.get_mut(&s.addr) {
            if entry.0 == Some(i) {
                entry.0 = None;
            }
            if entry.1 == Some(i) {
                entry.1 = None;
            }
            if *entry == (None, None) {
                self.by_addr.remove(&s.addr);
            }
        }
        self.events.push_back(match failed {
            Some(e) => SessionEvent::Failed(id, e),
            None => SessionEvent::Closed(id),
        });
    }

    /// Takes a datagram from `from`; its plaintext, if any, is then taken with
    /// [`next_plaintext`](Self::next_plaintext).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        // DTLS record header: type, version (2), epoch (2), sequence (6), length (2).
        let (Some(&ty), Some(epoch)) = (datagram.first(), datagram.get(3..5)) else {
            return;
        };
        let epoch0 = epoch == [0, 0];
        let client_hello = ty == 22 && epoch0 && datagram.get(13) == Some(&1);
        let server = self.resolver.is_some();
        let (established, newer) = self.by_addr.get(&from).copied().unwrap_or((None, None));
        // Which sessions see the datagram. While a peer's new handshake runs beside its
        // established session, an encrypted record may be either's (a Finished of the
        // new one, or data of the old): both get it, and the one it is not for
        // discards it, as DTLS discards any record that does not authenticate.
        let targets: [Option<usize>; 2] = match (established, newer) {
            (_, Some(n)) if epoch0 => [Some(n), None],
            (Some(e), Some(n)) => [Some(n), Some(e)],
            (None, Some(n)) => [Some(n), None],
            (Some(_), None) if client_hello && server => [None, None],
            (Some(e), None) => [Some(e), None],
            (None, None) => [None, None],
        };
        if targets == [None, None] {
            if !(client_hello && server) {
                return;
            }
            // A new client, or one that restarted (RFC 6347 §4.2.8).
            let Some(i) = self.place() else {
                return;
            };
            let dtls = dimpl::Dtls::new_12_psk(self.config.clone(), self.std_time(now));
            self.open(i, now, from, dtls, None);
            self.by_addr.entry(from).or_default().1 = Some(i);
            self.feed(now, i, datagram);
            return;
        }
        for i in targets.into_iter().flatten() {
            self.feed(now, i, datagram);
        }
    }

    /// Hands `datagram` to session `i`.
    fn feed(&mut self, now: Instant, i: usize, datagram: &[u8]) {
        let Some(s) = self.slots[i].as_mut() else {
            return;
        };
        s.last = now;
        let result = s.dtls.handle_packet(datagram);
        if let Some(asked) = self
            .resolver
            .as_ref()
            .and_then(|r| r.asked.lock().ok()?.take())
        {
            if let Some(s) = self.slots[i].as_mut() {
                s.identity = Some(asked);
            }
        }
        if result.is_err() {
            self.close(i, Some(DtlsError::Protocol));
            return;
        }
        self.pump(now, i);
    }

    /// Moves to the next plaintext datagram, returning its session; the bytes are then
    /// [`plaintext`](Self::plaintext).
    pub fn next_plaintext(&mut self) -> Option<SessionId> {
        let (id, bytes) = self.plaintext.pop_front()?;
        self.current = bytes;
        Some(id)
    }

    /// The plaintext datagram [`next_plaintext`](Self::next_plaintext) moved to.
    pub fn plaintext(&self) -> &[u8] {
        &self.current
    }

    /// The established session with `addr`, if there is one.
    pub fn established(&self, addr: SocketAddr) -> Option<SessionId> {
        let i = self.by_addr.get(&addr)?.0?;
        Some(self.id(i))
    }

    /// Sends `plaintext` on session `id`. Before its handshake completes, up to 16
    /// datagrams wait for it; more are dropped as a lossy link would drop them (a CON
    /// goes again by its retransmission).
    pub fn send(&mut self, now: Instant, id: SessionId, plaintext: &[u8]) -> Result<(), DtlsError> {
        let i = self.index(id).ok_or(DtlsError::UnknownSession)?;
        let Some(s) = self.slots[i].as_mut() else {
            return Err(DtlsError::UnknownSession);
        };
        if !s.connected {
            if s.early.len() < EARLY_MAX {
                s.early.push(plaintext.to_vec());
            }
            return Ok(());
        }
        s.last = now;
        if s.dtls.send_application_data(plaintext).is_err() {
            self.close(i, Some(DtlsError::Protocol));
            return Err(DtlsError::Protocol);
        }
        self.pump(now, i);
        Ok(())
    }

    /// Closes session `id` (sending close_notify).
    pub fn disconnect(&mut self, now: Instant, id: SessionId) {
        if let Some(i) = self.index(id) {
            if let Some(s) = self.slots[i].as_mut() {
                let _ = s.dtls.close();
            }
            self.pump(now, i);
            self.close(i, None);
        }
    }

    /// Drains dimpl's output for session `i`.
    fn pump(&mut self, now: Instant, i: usize) {
        let id = self.id(i);
        let mut connected_now = false;
        let mut closed = false;
        loop {
            let Some(s) = self.slots[i].as_mut() else {
                return;
            };
            match s.dtls.poll_output(&mut self.scratch) {
                dimpl::Output::Packet(p) => self.out.push_back((s.addr, p.to_vec())),
                dimpl::Output::BufferTooSmall { needed } => {
                    self.scratch.resize(needed, 0);
                }
                dimpl::Output::Timeout(t) => {
                    s.timer = Some(t);
                    break;
                }
                dimpl::Output::Connected => {
                    s.connected = true;
                    connected_now = true;
                }
                dimpl::Output::ApplicationData(d) => {
                    self.plaintext.push_back((id, d.to_vec()));
                }
                dimpl::Output::CloseNotify => closed = true,
                // PSK mode: no certificate; keying material for SRTP is not ours.
                _ => {}
            }
        }
        if connected_now {
            self.on_connected(now, i);
        }
        if closed {
            self.close(i, None);
        }
    }

    fn on_connected(&mut self, now: Instant, i: usize) {
        let id = self.id(i);
        let Some(s) = self.slots[i].as_mut() else {
            return;
        };
        let addr = s.addr;
        let early = core::mem::take(&mut s.early);
        // The newer session of the address is now the established one; an older one
        // gives way (RFC 6347 §4.2.8).
        let entry = self.by_addr.entry(addr).or_default();
        let old = entry.0.filter(|&o| o != i);
        *entry = (Some(i), None);
        if let Some(o) = old {
            self.slots[o] = None;
            let oid = SessionId {
                index: o as u16,
                generation: self.gens[o],
            };
            self.events.push_back(SessionEvent::Closed(oid));
        }
        // A handshake that completed proved its address: past the cap, the session
        // idle longest gives way to it.
        let established = self.slots.iter().flatten().filter(|s| s.connected).count();
        if established > self.limits.max_sessions.max(1) {
            if let Some(idlest) = self.oldest(|s| s.connected && s.addr != addr) {
                self.close(idlest, None);
            }
        }
        self.events.push_back(SessionEvent::Connected(id));
        for p in early {
            let _ = self.send(now, id, &p);
        }
    }

    /// Timers: dimpl's retransmissions, and the handshake and idle limits.
    pub fn handle_timeout(&mut self, now: Instant) {
        let std_now = self.std_time(now);
        for i in 0..self.slots.len() {
            let Some(s) = self.slots[i].as_mut() else {
                continue;
            };
            let restart = self.resolver.is_none()
                && !s.connected
                && now.saturating_duration_since(s.restarted) >= restart_after(&self.limits);
            let verdict = if !s.connected
                && now.saturating_duration_since(s.started) >= self.limits.handshake_timeout
            {
                Some(Some(DtlsError::HandshakeTimeout))
            } else if restart {
                // A client whose handshake made no progress starts over with a fresh
                // ClientHello rather than wait for its deadline: a server that lost
                // its half-open session (displaced by others, or restarted) answers a
                // cookie it no longer knows with a new HelloVerifyRequest, which a
                // client past that step does not take (RFC 6347 §4.2.1).
                let mut dtls = dimpl::Dtls::new_12_psk(self.config.clone(), std_now);
                dtls.set_active(true);
                let _ = dtls.handle_timeout(std_now);
                s.dtls = dtls;
                s.restarted = now;
                s.timer = None;
                None
            } else if s.connected
                && now.saturating_duration_since(s.last) >= self.limits.idle_timeout
            {
                Some(None)
            } else if s.timer.is_some_and(|t| t <= std_now) {
                s.timer = None;
                match s.dtls.handle_timeout(std_now) {
                    Ok(()) => None,
                    Err(_) if s.connected => Some(Some(DtlsError::Protocol)),
                    Err(_) => Some(Some(DtlsError::HandshakeTimeout)),
                }
            } else {
                continue;
            };
            match verdict {
                Some(failed) => self.close(i, failed),
                None => self.pump(now, i),
            }
        }
    }

    /// When the table next needs [`handle_timeout`](Self::handle_timeout).
    pub fn next_timeout(&self) -> Option<Instant> {
        self.slots
            .iter()
            .flatten()
            .flat_map(|s| {
                let limit = if s.connected {
                    s.last + self.limits.idle_timeout
                } else {
                    s.started + self.limits.handshake_timeout
                };
                let restart = (!s.connected && self.resolver.is_none())
                    .then(|| s.restarted + restart_after(&self.limits));
                [Some(limit), restart, s.timer.map(|t| self.our_time(t))]
            })
            .flatten()
            .min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    /// The next session event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }
}

impl core::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sessions")
            .field("sessions", &self.len())
            .field("half_open", &self.half_open())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A CoAP endpoint over DTLS: the session table and the endpoint whose peers are its
/// sessions. Drive it as the module docs show.
pub struct DtlsEndpoint {
    /// The DTLS sessions.
    pub sessions: Sessions,
    /// The CoAP endpoint; its peers are sessions.
    pub endpoint: Box<Endpoint<SessionId>>,
    /// The datagram `poll_output` hands out.
    transmit: Vec<u8>,
}

impl DtlsEndpoint {
    /// An endpoint over `sessions`, with CoAP configuration `config`. Its peers are
    /// established sessions, whose handshake (the cookie exchange of RFC 6347 §4.2.1
    /// first) proved the address: `config.amplification` is not applied to them (RFC
    /// 9175 §2.4 asks only for addresses not known to be the peer's).
    pub fn new(sessions: Sessions, config: crate::Config) -> Result<Self, crate::Error> {
        let config = crate::Config {
            amplification: None,
            ..config
        };
        Ok(DtlsEndpoint {
            sessions,
            endpoint: Box::new(Endpoint::new(config)?),
            transmit: Vec::new(),
        })
    }

    /// Takes a datagram and feeds its plaintext to the endpoint, handing each request
    /// or response to `on_incoming` with the session's PSK identity.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        mut on_incoming: impl FnMut(&mut Endpoint<SessionId>, crate::Incoming<'_>, Option<&[u8]>),
    ) {
        self.sessions.handle_datagram(now, from, datagram);
        while let Some(id) = self.sessions.next_plaintext() {
            let sessions = &self.sessions;
            if let Some(incoming) = self.endpoint.handle_datagram(now, id, sessions.plaintext()) {
                on_incoming(&mut self.endpoint, incoming, sessions.identity(id));
            }
        }
    }

    /// Timers of the sessions and of the endpoint.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sessions.handle_timeout(now);
        self.endpoint.handle_timeout(now);
    }

    /// The next thing to do: a datagram to send, an event, or when to call again.
    /// Drain it after every input and command, until it yields a timeout.
    pub fn poll_output(&mut self, now: Instant) -> DtlsOutput<'_> {
        loop {
            if let Some((to, bytes)) = self.sessions.poll_transmit() {
                self.transmit = bytes;
                return DtlsOutput::Transmit(to, &self.transmit);
            }
            if let Some(e) = self.sessions.poll_event() {
                return DtlsOutput::Session(e);
            }
            match self.endpoint.poll_output(now) {
                Output::Transmit(t) => {
                    let (to, data) = (t.to, t.data.to_vec());
                    // A datagram for a session that is gone is lost, as on a dead
                    // link: its exchange ends by the usual timeouts.
                    let _ = self.sessions.send(now, to, &data);
                }
                Output::Event(e) => return DtlsOutput::Event(e),
                Output::Timeout(t) => {
                    if self.sessions.out.is_empty() && self.sessions.events.is_empty() {
                        let next = match (t, self.sessions.next_timeout()) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        return DtlsOutput::Timeout(next);
                    }
                }
            }
        }
    }
}

impl core::fmt::Debug for DtlsEndpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DtlsEndpoint")
            .field("sessions", &self.sessions)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}
