//! Two endpoints driven by arbitrary sequences of datagrams (raw and well-formed),
//! deliveries, drops and duplicates of their own traffic, time steps and commands, at a
//! tiny capacity or at the defaults the adapters use (the input picks).
//!
//! Either endpoint may send group requests (to peer `GROUP`, which the other endpoint
//! receives as group traffic, RFC 7252 §8), and any datagram may be marked as having
//! come to a group address.
//!
//! Oracles: nothing panics; every output parses; no deadline lies in the past; the
//! tables never exceed their capacity and the dedup bookkeeping holds; a POST is handed
//! to the application at most once per live request (peer and message ID within
//! EXCHANGE_LIFETIME, NON_LIFETIME for NON); every ACK for a live POST is
//! byte-identical to the first.
#![no_main]

use arbitrary::Arbitrary;
use coap_proto::wire::{Code, Message, MessageBuilder, OptionNumber, Type};
use coap_proto::{
    Config, Endpoint, Event, Incoming, IncomingHandle, Instant, Output, RequestHandle,
    RequestOptions, ResponseMode,
};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Arbitrary, Debug)]
enum Op {
    Raw { to: bool, from: u8, group: bool, bytes: Vec<u8> },
    Message { to: bool, from: u8, group: bool, ty: u8, code: u8, mid: u16, token: Vec<u8>, options: Vec<(u16, Vec<u8>)>, payload: Vec<u8> },
    Deliver(u8),
    Duplicate(u8),
    Drop(u8),
    Advance(u32),
    Request { on: bool, method: u8, non: bool, group: bool, token: Option<Vec<u8>>, path: String, timeout_ms: Option<u16>, observe: bool, block2_szx: Option<u8> },
    /// Mark a datagram on the wire as group traffic (or as unicast again).
    MarkGroup(u8),
    Ping(bool),
    Cancel(u8),
    Respond { which: u8, code: u8, mode: u8, payload: Vec<u8> },
    /// `n` new requests from other peers, to put the tables under pressure.
    Flood { to: bool, n: u8, post: bool, answer: bool },
    /// Answer a request registering it as an observer of `resource` (if it asked).
    RespondObserve { which: u8, resource: u8, code: u8 },
    /// A resource changed: notify its observers (or only those still due).
    Notify { on: bool, resource: u8, con: bool, code: u8, due_only: bool },
    /// End an observation actively (GET with Observe: 1).
    CancelObserve(u8),
    /// Answer a request with 4.01 and an Echo value (RFC 9175 §2.3).
    Challenge(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    seeds: (u64, u64),
    ack_delay_ms: u16,
    default_capacity: bool,
    /// Amplification mitigation (RFC 9175 §2.4) on both endpoints.
    amplification: bool,
    /// Leisure of the group, in ms.
    leisure_ms: u16,
    /// How each endpoint takes its unicast datagrams: `handle_datagram` (0), or one
    /// role's entry point (1: client, 2: server).
    roles: (u8, u8),
    ops: Vec<Op>,
}

/// The peer id under which each endpoint reaches the other as a group.
const GROUP: u8 = 100;

/// A POST handed to the application: when, for how long duplicates are recognized, and
/// the first ACK its endpoint sent for it.
struct Post {
    at: Instant,
    lifetime: Duration,
    ack: Option<Vec<u8>>,
}

struct World<const E: usize, const B: usize, const M: usize, const D: usize, const R: usize> {
    eps: [Endpoint<u8, E, B, M, D, R>; 2],
    now: Instant,
    wire: Vec<(usize, u8, Vec<u8>, bool)>, // (to endpoint, from peer id, bytes, to a group)
    leisure: Duration,
    roles: [u8; 2],
    requests: Vec<(usize, RequestHandle)>,
    incoming: Vec<(usize, IncomingHandle)>,
    /// POSTs delivered, by (endpoint, peer, message ID).
    posts: HashMap<(usize, u8, u16), Post>,
    /// The newest notification delivered per observing request: sequence number and
    /// arrival (RFC 7641 §3.4 oracle).
    newest: HashMap<(usize, RequestHandle), (u32, Instant)>,
}

impl<const E: usize, const B: usize, const M: usize, const D: usize, const R: usize> World<E, B, M, D, R> {
    fn drain(&mut self, i: usize) {
        for _ in 0..256 {
            match self.eps[i].poll_output(self.now) {
                Output::Transmit(t) => {
                    let m = Message::parse(t.data).expect("output parses");
                    assert!(t.data.len() <= M.max(R));
                    if m.ty() == Type::Ack {
                        if let Some(p) = self.posts.get_mut(&(i, t.to, m.message_id())) {
                            if self.now < p.at + p.lifetime {
                                match &p.ack {
                                    Some(first) => assert_eq!(first.as_slice(), t.data, "a replay differs"),
                                    None => p.ack = Some(t.data.to_vec()),
                                }
                            }
                        }
                    }
                    if (t.to as usize) < 2 && self.wire.len() < 64 {
                        self.wire.push((t.to as usize, i as u8, t.data.to_vec(), false));
                    } else if t.to == GROUP && m.code().is_request() {
                        assert_eq!(m.ty(), Type::Non, "a group request is NON");
                        if self.wire.len() < 64 {
                            self.wire.push((1 - i, i as u8, t.data.to_vec(), true));
                        }
                    }
                    // Anything else to GROUP answers a datagram the input sent as peer
                    // GROUP (an RST or ACK, say): that peer is fictitious, so it is lost.
                }
                Output::Event(e) => {
                    let _ = e.to_string();
                    if let Event::TimedOut(h) | Event::Reset(h) | Event::Pong(h) | Event::ObservationEnded(h) | Event::GroupEnded(h) = e {
                        self.requests.retain(|&(n, r)| !(n == i && r == h));
                        self.newest.remove(&(i, h));
                    }
                }
                Output::Timeout(t) => {
                    if let Some(t) = t {
                        assert!(t > self.now, "deadline in the past");
                    }
                    return;
                }
            }
        }
        panic!("poll_output never settles");
    }

    fn deliver(&mut self, to: usize, from: u8, bytes: &[u8], group: bool) {
        let now = self.now;
        let incoming = match (group, self.roles[to] % 3) {
            (true, _) => self.eps[to].handle_group_datagram(now, from, bytes, self.leisure),
            (false, 1) => self.eps[to].handle_client_datagram(now, from, bytes),
            (false, 2) => self.eps[to].handle_server_datagram(now, from, bytes),
            (false, _) => self.eps[to].handle_datagram(now, from, bytes),
        };
        // (A group datagram goes to the server role whatever the unicast entry point.)
        let role = if group { 0 } else { self.roles[to] % 3 };
        match &incoming {
            Some(Incoming::Request { .. }) => assert_ne!(role, 1, "a client-only endpoint took a request"),
            Some(Incoming::Response { .. }) => assert_ne!(role, 2, "a server-only endpoint took a response"),
            None => {}
        }
        match incoming {
            Some(Incoming::Request { handle, message }) => {
                let _ = message.to_string();
                if message.code() == Code::POST {
                    let key = (to, from, message.message_id());
                    if let Some(p) = self.posts.get(&key) {
                        assert!(now >= p.at + p.lifetime, "POST {key:?} delivered twice");
                    }
                    let con = message.ty() == Type::Con;
                    let lifetime = Duration::from_secs(if con { 247 } else { 145 });
                    self.posts.insert(key, Post { at: now, lifetime, ack: None });
                }
                if self.incoming.len() < 16 {
                    self.incoming.push((to, handle));
                }
            }
            Some(Incoming::Response { handle, message, .. }) => {
                let _ = message.to_string();
                // A notification is never older than one delivered before it (§3.4).
                if let (Ok(Some(v2)), true) = (message.observe(), message.code().is_success()) {
                    if let Some(&(v1, t1)) = self.newest.get(&(to, handle)) {
                        let half = 1u32 << 23;
                        let fresh = (v1 < v2 && v2 - v1 < half)
                            || (v1 > v2 && v1 - v2 > half)
                            || now.saturating_duration_since(t1) > Duration::from_secs(128);
                        assert!(fresh, "notification {v2} delivered after {v1}");
                    }
                    self.newest.insert((to, handle), (v2, now));
                }
            }
            None => {}
        }
        assert!(self.eps[to].exchanges_in_flight() <= E);
        assert!((0..=255).map(|r| self.eps[to].observers(r)).sum::<usize>() <= 16);
        self.eps[to].dedup().check();
    }
}

fn build(ty: u8, code: u8, mid: u16, token: &[u8], options: &[(u16, Vec<u8>)], payload: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 512];
    let code = Code::from_u8(code)?;
    let mut b = MessageBuilder::new(&mut buf, Type::from_bits(ty), code, mid).ok()?;
    b.token(token.get(..token.len().min(16))?).ok()?;
    for (n, v) in options.iter().take(8) {
        b.option(OptionNumber(*n), v.get(..v.len().min(64))?).ok()?;
    }
    b.payload(payload.get(..payload.len().min(128))?).ok()?;
    Some(b.finish().to_vec())
}

fuzz_target!(|input: Input| {
    if input.default_capacity {
        // The capacities of the std and tokio adapters.
        run::<64, 16, 1152, 512, 32768>(&input);
    } else {
        run::<4, 6, 128, 8, 256>(&input);
    }
});

fn run<const E: usize, const B: usize, const M: usize, const D: usize, const R: usize>(input: &Input) {
    let config = |seed| Config {
        seed,
        empty_ack_delay: Duration::from_millis(input.ack_delay_ms as u64 % 5000),
        amplification: input.amplification.then_some(coap_proto::Amplification::RFC9175),
        ..Config::default()
    };
    let mut flood_mid = 0u16;
    let mut w = World::<E, B, M, D, R> {
        eps: [
            Endpoint::new(config(input.seeds.0)).unwrap(),
            Endpoint::new(config(input.seeds.1)).unwrap(),
        ],
        now: Instant::ZERO,
        wire: Vec::new(),
        leisure: Duration::from_millis(input.leisure_ms as u64 % 10_000),
        roles: [input.roles.0, input.roles.1],
        requests: Vec::new(),
        incoming: Vec::new(),
        posts: HashMap::new(),
        newest: HashMap::new(),
    };
    for op in input.ops.iter().take(128) {
        match op {
            Op::Raw { to, from, group, bytes } => w.deliver(*to as usize, *from, bytes, *group),
            Op::Message { to, from, group, ty, code, mid, token, options, payload } => {
                if let Some(bytes) = build(*ty, *code, *mid, token, options, payload) {
                    w.deliver(*to as usize, *from, &bytes, *group);
                }
            }
            Op::MarkGroup(i) => {
                if !w.wire.is_empty() {
                    let at = *i as usize % w.wire.len();
                    w.wire[at].3 = !w.wire[at].3;
                }
            }
            Op::Deliver(i) | Op::Duplicate(i) | Op::Drop(i) => {
                if w.wire.is_empty() {
                    continue;
                }
                let at = *i as usize % w.wire.len();
                let (to, from, bytes, group) = if matches!(op, Op::Duplicate(_)) {
                    w.wire[at].clone()
                } else {
                    w.wire.remove(at)
                };
                if !matches!(op, Op::Drop(_)) {
                    w.deliver(to, from, &bytes, group);
                }
            }
            Op::Advance(ms) => w.now = w.now + Duration::from_millis(*ms as u64 % 400_000),
            Op::Request { on, method, non, group, token, path, timeout_ms, observe, block2_szx } => {
                let i = *on as usize;
                let opts = RequestOptions {
                    non_confirmable: *non || *group,
                    group: *group,
                    block2_szx: block2_szx.map(|s| s % 7),
                    token: token.as_deref(),
                    timeout: timeout_ms.map(|t| Duration::from_millis(t as u64)),
                    observe: *observe,
                    ..Default::default()
                };
                let code = Code::from_u8(*method).unwrap_or(Code::GET);
                let now = w.now;
                let peer = if *group { GROUP } else { 1 - i as u8 };
                if let Ok(h) = w.eps[i].request(now, peer, code, &opts, |b| {
                    b.uri_path(path)?;
                    Ok(())
                }) {
                    w.requests.push((i, h));
                }
            }
            Op::Ping(on) => {
                let i = *on as usize;
                let now = w.now;
                if let Ok(h) = w.eps[i].ping(now, 1 - i as u8) {
                    w.requests.push((i, h));
                }
            }
            Op::Cancel(k) => {
                if !w.requests.is_empty() {
                    let (i, h) = w.requests.remove(*k as usize % w.requests.len());
                    let now = w.now;
                    let _ = w.eps[i].cancel(now, h);
                }
            }
            Op::Flood { to, n, post, answer } => {
                let to = *to as usize;
                for k in 0..*n % 64 {
                    flood_mid = flood_mid.wrapping_add(1);
                    let code = if *post { Code::POST } else { Code::GET };
                    let Some(bytes) = build(0, code.to_u8(), flood_mid, &[k], &[], b"") else {
                        continue;
                    };
                    let from = 2 + k % 8;
                    let now = w.now;
                    if let Some(Incoming::Request { handle, .. }) = w.eps[to].handle_datagram(now, from, &bytes) {
                        if *answer {
                            let _ = w.eps[to].respond(now, handle, Code::CONTENT, |b| {
                                b.payload(&[k; 40])?;
                                Ok(())
                            });
                        }
                    }
                    w.drain(to);
                }
            }
            Op::RespondObserve { which, resource, code } => {
                if !w.incoming.is_empty() {
                    let (i, h) = w.incoming.remove(*which as usize % w.incoming.len());
                    let code = Code::from_u8(*code).unwrap_or(Code::CONTENT);
                    let now = w.now;
                    let _ = w.eps[i].respond_observe(now, h, u16::from(*resource % 4), code, |b| {
                        b.payload(b"state")?;
                        Ok(())
                    });
                }
            }
            Op::Notify { on, resource, con, code, due_only } => {
                let i = *on as usize;
                let code = Code::from_u8(*code).unwrap_or(Code::CONTENT);
                let now = w.now;
                let resource = u16::from(*resource % 4);
                let seq = now.as_millis();
                let build = |b: &mut MessageBuilder<'_>| b.payload(&seq.to_be_bytes()).map(drop);
                let _ = if *due_only {
                    w.eps[i].notify_due(now, resource, *con, code, build)
                } else {
                    w.eps[i].notify(now, resource, *con, code, build)
                };
                w.drain(i);
            }
            Op::CancelObserve(k) => {
                if !w.requests.is_empty() {
                    let (i, h) = w.requests[*k as usize % w.requests.len()];
                    let now = w.now;
                    let _ = w.eps[i].cancel_observe(now, h, |b| b.uri_path("x").map(drop));
                }
            }
            Op::Challenge(which) => {
                if !w.incoming.is_empty() {
                    let (i, h) = w.incoming.remove(*which as usize % w.incoming.len());
                    let now = w.now;
                    let _ = w.eps[i].challenge(now, h);
                }
            }
            Op::Respond { which, code, mode, payload } => {
                if !w.incoming.is_empty() {
                    let (i, h) = w.incoming.remove(*which as usize % w.incoming.len());
                    let code = Code::from_u8(*code).unwrap_or(Code::CONTENT);
                    let mode = match mode % 3 {
                        0 => ResponseMode::Auto,
                        1 => ResponseMode::Confirmable,
                        _ => ResponseMode::NonConfirmable,
                    };
                    let now = w.now;
                    let _ = w.eps[i].respond_with(now, h, mode, code, |b| {
                        b.payload(payload)?;
                        Ok(())
                    });
                }
            }
        }
        w.drain(0);
        w.drain(1);
    }
}
