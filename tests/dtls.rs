//! CoAP over DTLS (RFC 7252 §9.1) in process: our client and server sessions over an
//! in-memory network in virtual time — the handshake, requests of every kind, loss and
//! reordering, a wrong key, a flood of spoofed ClientHellos, a client restarting on the
//! same port.
#![cfg(feature = "dtls")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use coap_proto::block::Block1Assembler;
use coap_proto::dtls::{
    DtlsEndpoint, DtlsError, DtlsOutput, KeyStore, Limits, SessionEvent, SessionId, Sessions,
};
use coap_proto::wire::Code;
use coap_proto::{Config, Incoming, IncomingHandle, Instant, RequestHandle, RequestOptions};

const SERVER: &str = "127.0.0.1:5684";
const KEY: &[u8] = b"secretPSK";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn server() -> DtlsEndpoint {
    let keys = KeyStore::new()
        .with("alice", KEY)
        .with("bob", b"bobs key".to_vec());
    let sessions = Sessions::server(keys, Limits::default()).unwrap();
    DtlsEndpoint::new(
        sessions,
        Config {
            seed: 1,
            ..Config::default()
        },
    )
    .unwrap()
}

fn client(identity: &str, key: &[u8], seed: u64) -> DtlsEndpoint {
    let sessions = Sessions::client(identity, key.to_vec(), Limits::default()).unwrap();
    DtlsEndpoint::new(
        sessions,
        Config {
            seed,
            ..Config::default()
        },
    )
    .unwrap()
}

/// A server application: `/hello` greets the session's identity, `/big` is 3,000 bytes
/// in blocks, `/store` takes a Block1 upload, `/late` answers after 300 ms.
#[derive(Default)]
struct ServerApp {
    store: Vec<u8>,
    assembler: Option<Box<Block1Assembler<SessionId, 2, 8192>>>,
    late: Vec<(Instant, IncomingHandle)>,
}

fn big() -> Vec<u8> {
    (0..3000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// What a client saw: per request, the body so far and its final code.
#[derive(Default)]
struct ClientApp {
    bodies: HashMap<RequestHandle, Vec<u8>>,
    done: HashMap<RequestHandle, Code>,
    events: Vec<SessionEvent>,
}

struct Net {
    now: Instant,
    server: DtlsEndpoint,
    app: ServerApp,
    clients: Vec<(SocketAddr, DtlsEndpoint, ClientApp)>,
    /// Datagrams in flight: (arrival, from, to, bytes).
    wire: Vec<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    rng: u64,
    loss: u64,
    server_events: Vec<SessionEvent>,
}

impl Net {
    fn new(clients: Vec<(SocketAddr, DtlsEndpoint)>) -> Net {
        Net {
            now: Instant::ZERO,
            server: server(),
            app: ServerApp::default(),
            clients: clients
                .into_iter()
                .map(|(a, c)| (a, c, ClientApp::default()))
                .collect(),
            wire: Vec::new(),
            rng: 7,
            loss: 0,
            server_events: Vec::new(),
        }
    }

    fn random(&mut self) -> u64 {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.rng >> 33
    }

    /// Drains every endpoint; returns the earliest deadline.
    fn drain(&mut self) -> Option<Instant> {
        let now = self.now;
        let mut next;
        let mut sent = Vec::new();
        loop {
            match self.server.poll_output(now) {
                DtlsOutput::Transmit(to, bytes) => sent.push((addr(SERVER), to, bytes.to_vec())),
                DtlsOutput::Session(e) => self.server_events.push(e),
                DtlsOutput::Event(_) => {}
                DtlsOutput::Timeout(t) => {
                    next = t;
                    break;
                }
            }
        }
        for (a, c, app) in &mut self.clients {
            loop {
                match c.poll_output(now) {
                    DtlsOutput::Transmit(to, bytes) => sent.push((*a, to, bytes.to_vec())),
                    DtlsOutput::Session(e) => app.events.push(e),
                    DtlsOutput::Event(coap_proto::Event::TimedOut(h)) => {
                        app.done.insert(h, Code::EMPTY);
                    }
                    DtlsOutput::Event(_) => {}
                    DtlsOutput::Timeout(t) => {
                        next = earliest(next, t);
                        break;
                    }
                }
            }
        }
        for (from, to, bytes) in sent {
            if self.loss > 0 && self.random() % 1000 < self.loss {
                continue;
            }
            let delay = Duration::from_millis(1 + self.random() % 20);
            self.wire.push((now + delay, from, to, bytes));
        }
        earliest(next, self.app.late.iter().map(|l| l.0).min())
    }

    /// Runs until nothing is left or `until`.
    fn run(&mut self, until: Instant) {
        for _ in 0..200_000 {
            let deadline = self.drain();
            let arrival = self.wire.iter().map(|w| w.0).min();
            let Some(next) = earliest(deadline, arrival) else {
                return;
            };
            if next > until {
                // Time passes up to `until` even when nothing happens in it.
                self.now = self.now.max(until);
                return;
            }
            self.now = self.now.max(next);
            let now = self.now;
            // Late answers due.
            let due: Vec<IncomingHandle> = self
                .app
                .late
                .iter()
                .filter(|l| l.0 <= now)
                .map(|l| l.1)
                .collect();
            self.app.late.retain(|l| l.0 > now);
            for h in due {
                self.server
                    .endpoint
                    .respond(now, h, Code::CONTENT, |b| b.payload(b"late").map(drop))
                    .unwrap();
            }
            self.server.handle_timeout(now);
            for (_, c, _) in &mut self.clients {
                c.handle_timeout(now);
            }
            let mut arrived = Vec::new();
            self.wire.retain(|w| {
                if w.0 <= now {
                    arrived.push(w.clone());
                    false
                } else {
                    true
                }
            });
            arrived.sort_by_key(|w| w.0);
            for (_, from, to, bytes) in arrived {
                if to == addr(SERVER) {
                    let app = &mut self.app;
                    self.server
                        .handle_datagram(now, from, &bytes, |ep, incoming, identity| {
                            serve(app, ep, now, incoming, identity);
                        });
                } else if let Some((_, c, app)) = self.clients.iter_mut().find(|c| c.0 == to) {
                    c.handle_datagram(now, from, &bytes, |_, incoming, _| {
                        if let Incoming::Response {
                            handle,
                            message,
                            block,
                        } = incoming
                        {
                            app.bodies
                                .entry(handle)
                                .or_default()
                                .extend_from_slice(message.payload());
                            if block.is_none_or(|b| b.last) {
                                app.done.insert(handle, message.code());
                            }
                        }
                    });
                }
            }
        }
        panic!("no quiet after 200,000 steps");
    }
}

/// A real client's first ClientHello, to replay from spoofed addresses.
fn client_hello(seed: u64) -> Vec<u8> {
    let mut probe = client("alice", KEY, seed);
    probe.sessions.connect(Instant::ZERO, addr(SERVER)).unwrap();
    match probe.poll_output(Instant::ZERO) {
        DtlsOutput::Transmit(_, bytes) => bytes.to_vec(),
        other => panic!("{other:?}"),
    }
}

/// `hello` from each of `from` at `now`, the server's answers drained and dropped.
fn flood(
    server: &mut DtlsEndpoint,
    now: Instant,
    hello: &[u8],
    from: impl Iterator<Item = SocketAddr>,
) {
    for from in from {
        server.handle_datagram(now, from, hello, |_, _, _| panic!("no plaintext"));
        while let DtlsOutput::Transmit(..) | DtlsOutput::Session(_) = server.poll_output(now) {}
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn serve(
    app: &mut ServerApp,
    ep: &mut coap_proto::Endpoint<SessionId>,
    now: Instant,
    incoming: Incoming<'_>,
    identity: Option<&[u8]>,
) {
    let Incoming::Request { handle, message } = incoming else {
        return;
    };
    let path: Vec<&[u8]> = message.uri_path().collect();
    let path = String::from_utf8_lossy(&path.concat()).to_string();
    match (message.code(), path.as_str()) {
        (Code::GET, "hello") => {
            let who = String::from_utf8_lossy(identity.unwrap_or(b"?")).to_string();
            ep.respond(now, handle, Code::CONTENT, |b| {
                b.payload(format!("hello {who}").as_bytes()).map(drop)
            })
            .unwrap();
        }
        (Code::GET, "big") => {
            ep.respond_block2(now, handle, &message, Code::CONTENT, &big(), |_| Ok(()))
                .unwrap();
        }
        (Code::GET, "store") => {
            let body = app.store.clone();
            ep.respond_block2(now, handle, &message, Code::CONTENT, &body, |_| Ok(()))
                .unwrap();
        }
        (Code::PUT, "store") => {
            let assembler = app
                .assembler
                .get_or_insert_with(|| Box::new(Block1Assembler::new()));
            if let Ok(Some(whole)) = ep.assemble_block1(now, handle, &message, assembler) {
                app.store = whole.body.to_vec();
                let echo = whole.echo;
                ep.respond(now, handle, Code::CHANGED, |b| {
                    if let Some(e) = echo {
                        b.block1(e)?;
                    }
                    Ok(())
                })
                .unwrap();
            }
        }
        (Code::GET, "late") => app.late.push((now + Duration::from_millis(300), handle)),
        _ => ep
            .respond(now, handle, Code::NOT_FOUND, |_| Ok(()))
            .unwrap(),
    }
}

/// Starts `method path` on client `k`'s session, with `body` uploaded in 256-byte
/// blocks when it has one.
fn ask(
    net: &mut Net,
    k: usize,
    session: SessionId,
    method: Code,
    path: &str,
    body: Option<&[u8]>,
) -> RequestHandle {
    let now = net.now;
    let ep = &mut net.clients[k].1.endpoint;
    match body {
        None => ep
            .request(now, session, method, &RequestOptions::default(), |b| {
                b.uri_path(path).map(drop)
            })
            .unwrap(),
        Some(_) => ep
            .request_upload(now, session, method, &RequestOptions::default(), 4, |b| {
                b.uri_path(path).map(drop)
            })
            .unwrap(),
    }
}

#[test]
fn handshake_then_get_put_block1_block2_and_a_separate_response() {
    let mut net = Net::new(vec![(addr("127.0.0.1:40001"), client("alice", KEY, 2))]);
    let session = net.clients[0]
        .1
        .sessions
        .connect(Instant::ZERO, addr(SERVER))
        .unwrap();
    // Requests may be made before the handshake completes: they wait for it.
    let hello = ask(&mut net, 0, session, Code::GET, "/hello", None);
    let big_get = ask(&mut net, 0, session, Code::GET, "/big", None);
    let late = ask(&mut net, 0, session, Code::GET, "/late", None);
    net.run(Instant::from_secs(30));
    let app = &net.clients[0].2;
    assert!(app.events.contains(&SessionEvent::Connected(session)));
    assert_eq!(app.done[&hello], Code::CONTENT);
    assert_eq!(
        app.bodies[&hello], b"hello alice",
        "the server saw the PSK identity"
    );
    assert_eq!(app.bodies[&big_get], big(), "Block2");
    assert_eq!(app.bodies[&late], b"late", "a separate response");
    // A Block1 upload, then the body back.
    let body: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
    let put = ask(&mut net, 0, session, Code::PUT, "/store", Some(&body));
    let now = net.now;
    drive_upload(&mut net, 0, put, &body, now + Duration::from_secs(30));
    assert_eq!(net.clients[0].2.done[&put], Code::CHANGED);
    let get = ask(&mut net, 0, session, Code::GET, "/store", None);
    let until = net.now + Duration::from_secs(30);
    net.run(until);
    assert_eq!(net.clients[0].2.bodies[&get], body);
    assert_eq!(net.server.sessions.len(), 1);
}

/// Runs the network, answering the client's requests for upload blocks from `body`.
fn drive_upload(net: &mut Net, k: usize, handle: RequestHandle, body: &[u8], until: Instant) {
    for _ in 0..1000 {
        net.run(net.now + Duration::from_millis(50));
        let now = net.now;
        let ep = &mut net.clients[k].1.endpoint;
        let _ = ep.send_body_block(now, handle, body);
        if net.clients[k].2.done.contains_key(&handle) || net.now >= until {
            return;
        }
    }
}

#[test]
fn requests_complete_under_loss_and_reordering() {
    let mut net = Net::new(vec![(
        addr("127.0.0.1:40002"),
        client("bob", b"bobs key", 3),
    )]);
    net.loss = 150; // 15 % of datagrams lost, delays of 1-20 ms reorder them
    let session = net.clients[0]
        .1
        .sessions
        .connect(Instant::ZERO, addr(SERVER))
        .unwrap();
    let handles: Vec<RequestHandle> = (0..6)
        .map(|i| {
            ask(
                &mut net,
                0,
                session,
                Code::GET,
                if i % 2 == 0 { "/hello" } else { "/big" },
                None,
            )
        })
        .collect();
    let late = ask(&mut net, 0, session, Code::GET, "/late", None);
    net.run(Instant::from_secs(300));
    let app = &net.clients[0].2;
    for (i, h) in handles.iter().enumerate() {
        assert_eq!(app.done.get(h), Some(&Code::CONTENT), "request {i}");
        let want = if i % 2 == 0 {
            b"hello bob".to_vec()
        } else {
            big()
        };
        assert_eq!(app.bodies[h], want, "request {i}");
    }
    assert_eq!(app.bodies[&late], b"late", "a separate response");
    // A Block1 upload, then the body back, on the same lossy link.
    let body: Vec<u8> = (0..3000u32).map(|i| (i * 3) as u8).collect();
    let put = ask(&mut net, 0, session, Code::PUT, "/store", Some(&body));
    let until = net.now + Duration::from_secs(300);
    drive_upload(&mut net, 0, put, &body, until);
    assert_eq!(
        net.clients[0].2.done.get(&put),
        Some(&Code::CHANGED),
        "Block1 under loss"
    );
    let get = ask(&mut net, 0, session, Code::GET, "/store", None);
    let until = net.now + Duration::from_secs(300);
    net.run(until);
    assert_eq!(net.clients[0].2.bodies[&get], body, "Block2 under loss");
}

#[test]
fn a_wrong_key_or_unknown_identity_fails_within_the_handshake_timeout() {
    for (identity, key) in [
        ("alice", b"not the key".to_vec()),
        ("mallory", KEY.to_vec()),
    ] {
        let mut net = Net::new(vec![(addr("127.0.0.1:40003"), client(identity, &key, 4))]);
        let session = net.clients[0]
            .1
            .sessions
            .connect(Instant::ZERO, addr(SERVER))
            .unwrap();
        let get = ask(&mut net, 0, session, Code::GET, "/hello", None);
        // The handshake timeout is 10 s (`Limits::default`).
        net.run(Instant::from_millis(10_001));
        let app = &net.clients[0].2;
        let failed = app
            .events
            .iter()
            .find(|e| matches!(e, SessionEvent::Failed(..)))
            .unwrap_or_else(|| panic!("{identity}: {:?}", app.events));
        assert_eq!(
            *failed,
            SessionEvent::Failed(session, DtlsError::HandshakeTimeout)
        );
        assert!(!app.done.contains_key(&get), "no response");
        // Nothing stays on the server once its own handshake limit passed.
        net.run(Instant::from_secs(120));
        assert_eq!(net.server.sessions.len(), 0, "{identity}");
        assert_eq!(
            net.clients[0].2.done.get(&get),
            Some(&Code::EMPTY),
            "the request timed out"
        );
    }
}

#[test]
fn spoofed_client_hellos_stay_within_the_half_open_cap_and_a_real_client_connects() {
    // A real ClientHello, replayed from 10,000 spoofed ports.
    let hello = client_hello(5);
    let mut net = Net::new(vec![(addr("127.0.0.1:40004"), client("alice", KEY, 6))]);
    let limits = Limits::default();
    let mut most = 0;
    for port in 0..10_000u32 {
        let from = SocketAddr::from((
            [10, 0, (port >> 8) as u8, port as u8],
            1000 + (port % 50000) as u16,
        ));
        let now = Instant::from_millis(port as u64 / 10);
        net.server
            .handle_datagram(now, from, &hello, |_, _, _| panic!("no plaintext"));
        while let DtlsOutput::Transmit(..) | DtlsOutput::Session(_) = net.server.poll_output(now) {}
        most = most.max(net.server.sessions.len());
    }
    assert!(most <= limits.max_half_open, "{most} sessions at most");
    net.now = Instant::from_secs(1);
    let session = net.clients[0]
        .1
        .sessions
        .connect(net.now, addr(SERVER))
        .unwrap();
    let get = ask(&mut net, 0, session, Code::GET, "/hello", None);
    net.run(Instant::from_secs(30));
    assert_eq!(net.clients[0].2.bodies[&get], b"hello alice");
    // The spoofed half-open sessions time out.
    net.run(Instant::from_secs(40));
    net.server.handle_timeout(Instant::from_secs(40));
    assert_eq!(net.server.sessions.half_open(), 0);
}

#[test]
fn a_client_restarted_on_the_same_port_connects_again() {
    let me = addr("127.0.0.1:40005");
    let mut net = Net::new(vec![(me, client("alice", KEY, 7))]);
    let first = net.clients[0]
        .1
        .sessions
        .connect(Instant::ZERO, addr(SERVER))
        .unwrap();
    let get = ask(&mut net, 0, first, Code::GET, "/hello", None);
    net.run(Instant::from_secs(10));
    assert_eq!(net.clients[0].2.done[&get], Code::CONTENT);
    let old = net.server_events.iter().find_map(|e| match e {
        SessionEvent::Connected(s) => Some(*s),
        _ => None,
    });
    // The process restarts: a new client on the same address, knowing nothing.
    net.clients[0] = (me, client("alice", KEY, 8), ClientApp::default());
    let now = net.now;
    let second = net.clients[0]
        .1
        .sessions
        .connect(now, addr(SERVER))
        .unwrap();
    let get = ask(&mut net, 0, second, Code::GET, "/hello", None);
    net.run(now + Duration::from_secs(10));
    assert_eq!(net.clients[0].2.bodies[&get], b"hello alice");
    // The server replaced the old session (RFC 6347 §4.2.8).
    assert!(
        net.server_events
            .contains(&SessionEvent::Closed(old.unwrap())),
        "{:?}",
        net.server_events
    );
    assert_eq!(net.server.sessions.len(), 1);
}

#[test]
fn a_client_whose_half_open_session_was_displaced_starts_over_within_seconds() {
    // The client's ClientHello reaches the server, which answers with a
    // HelloVerifyRequest; before the client's second ClientHello (with the cookie)
    // arrives, 16 spoofed ClientHellos displace its half-open session. The client
    // starts over with a fresh ClientHello after a quarter of its handshake timeout,
    // rather than fail after the whole of it.
    let hello = client_hello(9);
    let mut net = Net::new(vec![(addr("127.0.0.1:40006"), client("alice", KEY, 10))]);
    let session = net.clients[0]
        .1
        .sessions
        .connect(net.now, addr(SERVER))
        .unwrap();
    let get = ask(&mut net, 0, session, Code::GET, "/hello", None);
    // Until the server has answered the first ClientHello.
    while net.server.sessions.half_open() == 0 {
        let until = net.now + Duration::from_millis(1);
        net.run(until);
    }
    let spoofed = (0..16u16).map(|p| SocketAddr::from(([10, 1, 0, p as u8], 2000 + p)));
    flood(&mut net.server, net.now, &hello, spoofed);
    let start = net.now;
    let mut connected = None;
    while net.now < start + Duration::from_secs(12) && connected.is_none() {
        let until = net.now + Duration::from_millis(100);
        net.run(until);
        if net.clients[0].2.done.contains_key(&get) {
            connected = Some(net.now - start);
        }
    }
    let took = connected.expect("the request was answered");
    assert_eq!(net.clients[0].2.bodies[&get], b"hello alice");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}

#[test]
fn spoofed_client_hellos_never_close_an_established_session() {
    // A server with room for 2 established sessions and 4 half-open ones. Two clients
    // connect; then 1,000 spoofed ClientHellos come. Half-open sessions only displace
    // each other: both established sessions stay, and both clients are served again.
    let keys = KeyStore::new().with("alice", KEY);
    let limits = Limits {
        max_sessions: 2,
        max_half_open: 4,
        ..Limits::default()
    };
    let mut net = Net::new(vec![
        (addr("127.0.0.1:40007"), client("alice", KEY, 11)),
        (addr("127.0.0.1:40008"), client("alice", KEY, 12)),
    ]);
    net.server = DtlsEndpoint::new(
        Sessions::server(keys, limits).unwrap(),
        Config {
            seed: 2,
            ..Config::default()
        },
    )
    .unwrap();
    let mut sessions = Vec::new();
    for k in 0..2 {
        let now = net.now;
        let s = net.clients[k]
            .1
            .sessions
            .connect(now, addr(SERVER))
            .unwrap();
        let get = ask(&mut net, k, s, Code::GET, "/hello", None);
        let until = net.now + Duration::from_secs(5);
        net.run(until);
        assert_eq!(net.clients[k].2.bodies[&get], b"hello alice");
        sessions.push(s);
    }
    let hello = client_hello(13);
    let spoofed = (0..1000u32).map(|p| SocketAddr::from(([10, 2, (p >> 8) as u8, p as u8], 3000)));
    flood(&mut net.server, net.now, &hello, spoofed);
    assert_eq!(net.server.sessions.half_open(), 4);
    assert_eq!(
        net.server.sessions.len(),
        6,
        "2 established beside the 4 half-open"
    );
    for (k, &s) in sessions.iter().enumerate() {
        let get = ask(&mut net, k, s, Code::GET, "/hello", None);
        let until = net.now + Duration::from_secs(5);
        net.run(until);
        assert_eq!(net.clients[k].2.bodies[&get], b"hello alice", "client {k}");
    }
}
