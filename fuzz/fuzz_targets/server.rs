//! The std server core (routing, Block1 assembly, kept responses, the endpoint at the
//! capacities the blocking and tokio servers run with) fed arbitrary requests from a few
//! peers: well-formed and raw, block-wise and not, duplicated, answered at once, late,
//! abandoned or never, with time moving on.
//!
//! Oracles beyond "no panic": every datagram sent parses; a POST handler runs at most
//! once per live request (peer and message ID within EXCHANGE_LIFETIME, NON_LIFETIME
//! for NON); a follow-up for a block past the first of an unsafe request never reaches a
//! handler; every ACK for a live POST is byte-identical to the first; the backlog stays
//! within the endpoint's records; the dedup bookkeeping holds.
#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use arbitrary::Arbitrary;
use coap_proto::net::fuzzing::ServerHarness;
use coap_proto::net::{Request, Response};
use coap_proto::resource::{Methods, Resource};
use coap_proto::wire::{Block, Code, Message, MessageBuilder, Type};
use coap_proto::{IncomingHandle, Instant};
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 7] = ["echo", "big", "store", "later", "lock", "nope", ""];
const RESOURCES: [Resource<'static>; 5] = [
    Resource::new("/echo", Methods::POST),
    Resource::new("/big", Methods::GET).obs(),
    Resource::new("/store", Methods::GET.and(Methods::PUT)),
    Resource::new("/later", Methods::GET.and(Methods::POST)),
    // RFC 9175 §2.3: PUTs must carry a young Echo value.
    Resource::new("/lock", Methods::GET.and(Methods::PUT)).fresh(std::time::Duration::from_secs(5)),
];

#[derive(Arbitrary, Debug)]
enum Op {
    Raw { from: u8, bytes: Vec<u8> },
    Request {
        from: u8,
        non: bool,
        method: u8,
        mid: u16,
        token: u8,
        path: u8,
        block1: Option<(u16, bool, u8)>,
        block2: Option<(u16, u8)>,
        tag: Option<u8>,
        payload: u16,
        observe: Option<bool>,
    },
    Duplicate(u8),
    Answer { which: u8, abandon: bool },
    Advance(u32),
    /// Many new requests at once, to put the tables under pressure.
    Flood { n: u8, post: bool, from: u8 },
    /// The observable `/big` changed (a body of `len` bytes, block-wise when large).
    Notify { confirmable: bool, len: u16, error: bool },
}

#[derive(Arbitrary, Debug)]
struct Input {
    seed: u64,
    ops: Vec<Op>,
}

fn peer(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1000 + (i % 4) as u16))
}

#[allow(clippy::too_many_arguments)]
fn build(non: bool, method: u8, mid: u16, token: u8, path: u8, block1: Option<(u16, bool, u8)>, block2: Option<(u16, u8)>, tag: Option<u8>, payload: u16) -> Option<Vec<u8>> {
    let code = [Code::GET, Code::POST, Code::PUT, Code::DELETE, Code::FETCH][method as usize % 5];
    let ty = if non { Type::Non } else { Type::Con };
    let mut buf = vec![0u8; 1400];
    let mut b = MessageBuilder::new(&mut buf, ty, code, mid).ok()?;
    b.token(&[token]).ok()?;
    let p = PATHS[path as usize % PATHS.len()];
    if !p.is_empty() {
        b.uri_path(p).ok()?;
    }
    let len = if let Some((num, more, szx)) = block1 {
        let blk = Block::new(num as u32 % 64, more, szx % 7)?;
        b.block1(blk).ok()?;
        if more { blk.size() } else { payload as usize % (blk.size() + 1) }
    } else {
        payload as usize % 1100
    };
    if let Some((num, szx)) = block2 {
        b.block2(Block::new(num as u32 % 64, false, szx % 7)?).ok()?;
    }
    if let Some(t) = tag {
        b.request_tag(&[t]).ok()?;
    }
    if len > 0 {
        b.payload(&vec![token; len]).ok()?;
    }
    Some(b.finish().to_vec())
}

/// `request` with an Observe option (0 registers, 1 deregisters) added, if asked.
fn with_observe(request: Vec<u8>, observe: Option<bool>) -> Option<Vec<u8>> {
    let Some(deregister) = observe else {
        return Some(request);
    };
    let m = Message::parse(&request).ok()?;
    let mut buf = vec![0u8; request.len() + 8];
    let mut b = MessageBuilder::from_message(&mut buf, &m).ok()?;
    b.observe(u32::from(deregister)).ok()?;
    if !m.payload().is_empty() {
        b.payload(m.payload()).ok()?;
    }
    Some(b.finish().to_vec())
}

/// A live POST: when its handler ran, how long duplicates are recognized, its first ACK.
struct Post {
    ran_at: Instant,
    lifetime: Duration,
    ack: Option<Vec<u8>>,
}

fuzz_target!(|input: Input| {
    let mut server = ServerHarness::new(input.seed, &RESOURCES);
    let mut now = Instant::ZERO;
    let mut sent: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    let mut late: Vec<IncomingHandle> = Vec::new();
    let mut posts: HashMap<(SocketAddr, u16), Post> = HashMap::new();
    let mut flood_mid = 0x8000u16;
    for op in input.ops.iter().take(200) {
        let datagram = match op {
            Op::Raw { from, bytes } => Some((peer(*from), bytes.clone())),
            Op::Request { from, non, method, mid, token, path, block1, block2, tag, payload, observe } => {
                build(*non, *method, *mid, *token, *path, *block1, *block2, *tag, *payload)
                    .and_then(|b| with_observe(b, *observe))
                    .map(|b| (peer(*from), b))
            }
            Op::Notify { confirmable, len, error } => {
                let response = if *error {
                    Response::new(Code::NOT_FOUND)
                } else {
                    Response::content(vec![9u8; *len as usize % 4000])
                };
                server.notify(1, *confirmable, response);
                None
            }
            Op::Duplicate(k) => (!sent.is_empty()).then(|| sent[*k as usize % sent.len()].clone()),
            Op::Answer { which, abandon } => {
                if !late.is_empty() {
                    let id = late.remove(*which as usize % late.len());
                    let response = (!abandon).then(|| Response::new(Code::CHANGED).payload("late"));
                    server.answer(id, response);
                }
                None
            }
            Op::Flood { n, post, from } => {
                for k in 0..(*n as u16 * 2) {
                    flood_mid = flood_mid.wrapping_add(1);
                    let method = if *post { 1 } else { 0 };
                    let path = if *post { 0 } else { 2 };
                    if let Some(bytes) = build(false, method, flood_mid, k as u8, path, None, None, None, 4) {
                        let from = peer(from.wrapping_add(k as u8));
                        if let Some(work) = server.handle_datagram(from, &bytes) {
                            server.answer(work.id, Some(Response::new(Code::CHANGED)));
                        }
                    }
                }
                None
            }
            Op::Advance(ms) => {
                now = now + Duration::from_millis(*ms as u64 % 300_000);
                server.set_now(now);
                server.handle_timeout();
                None
            }
        };
        if let Some((from, bytes)) = datagram {
            if sent.len() < 64 {
                sent.push((from, bytes.clone()));
            }
            if let Some(work) = server.handle_datagram(from, &bytes) {
                let req: &Request = &work.request;
                let unsafe_method = !matches!(req.method, Code::GET | Code::FETCH);
                assert!(
                    !(unsafe_method && work.block2_num.is_some_and(|n| n > 0)),
                    "a follow-up of an unsafe request reached a handler"
                );
                let con = Message::parse(&bytes).map(|m| m.ty() == Type::Con).unwrap_or(false);
                if req.method == Code::POST {
                    if let Some(p) = posts.get(&(from, work.mid)) {
                        assert!(now >= p.ran_at + p.lifetime, "POST {} from {from} ran twice", work.mid);
                    }
                    let lifetime = Duration::from_secs(if con { 247 } else { 145 });
                    posts.insert((from, work.mid), Post { ran_at: now, lifetime, ack: None });
                }
                match work.resource {
                    Some(0) => server.answer(work.id, Some(Response::new(Code::CHANGED).payload(vec![7u8; 3000]))),
                    Some(1) => server.answer(work.id, Some(Response::content(vec![8u8; 5000]))),
                    Some(2) => server.answer(work.id, Some(Response::content(req.payload.clone()))),
                    Some(3) if late.len() < 128 => late.push(work.id),
                    _ => server.answer(work.id, Some(Response::new(Code::NOT_FOUND))),
                }
            }
        }
        let (out, deadline) = server.drain();
        if let Some(d) = deadline {
            assert!(d > now, "deadline in the past");
        }
        for (to, bytes) in out {
            let m = Message::parse(&bytes).expect("output parses");
            if m.ty() != Type::Ack {
                continue;
            }
            if let Some(p) = posts.get_mut(&(to, m.message_id())) {
                if now < p.ran_at + p.lifetime {
                    match &p.ack {
                        Some(first) => assert_eq!(first, &bytes, "a replay differs from the first ACK"),
                        None => p.ack = Some(bytes.clone()),
                    }
                }
            }
        }
        let (waiting, retry) = server.backlog();
        assert!(waiting <= 64 && retry <= 64, "backlog {waiting}/{retry} beyond the records");
        server.check();
    }
});
