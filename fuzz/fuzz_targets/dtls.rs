//! The DTLS session table (feature `dtls`) under hostile input: a real client and
//! server whose datagrams the fuzzer delivers, drops, duplicates, corrupts and
//! reorders, plus raw datagrams from made-up addresses (spoofed ClientHellos, records
//! of any epoch). Nothing may panic; the tables stay within their limits; time only
//! goes forward.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use arbitrary::Arbitrary;
use coap_proto::dtls::{DtlsEndpoint, DtlsOutput, KeyStore, Limits, Sessions};
use coap_proto::wire::Code;
use coap_proto::{Config, Incoming, Instant, RequestOptions};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Deliver (or drop) the queued datagram `i`.
    Deliver(u8),
    Drop(u8),
    Duplicate(u8),
    /// Flip `bit` of byte `at` of queued datagram `i`, then deliver it.
    Corrupt { i: u8, at: u16, bit: u8 },
    /// A datagram from a made-up address to the server (or the client).
    Raw { to_server: bool, from: u8, bytes: Vec<u8> },
    /// A copy of queued datagram `i` from a made-up address.
    Spoof { i: u8, from: u8 },
    Advance(u32),
    Connect,
    Get,
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_sessions: u8,
    max_half_open: u8,
    ops: Vec<Op>,
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 1000 + i as u16))
}

const CLIENT: u8 = 1;
const SERVER: u8 = 2;

fuzz_target!(|input: Input| {
    let limits = Limits {
        max_sessions: 1 + input.max_sessions as usize % 8,
        max_half_open: 1 + input.max_half_open as usize % 4,
        handshake_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
    };
    let keys = KeyStore::new().with("fuzz", b"fuzz key".to_vec());
    let mut server = DtlsEndpoint::new(Sessions::server(keys, limits).unwrap(), Config::default()).unwrap();
    let sessions = Sessions::client("fuzz", b"fuzz key".to_vec(), limits).unwrap();
    let mut client = DtlsEndpoint::new(sessions, Config { seed: 1, ..Config::default() }).unwrap();
    let mut session = None;
    let mut now = Instant::ZERO;
    // Datagrams in flight: (to the server?, bytes).
    let mut wire: Vec<(bool, Vec<u8>)> = Vec::new();
    for op in input.ops.iter().take(64) {
        let mut deliver: Option<(bool, u8, Vec<u8>)> = None;
        match op {
            Op::Deliver(i) | Op::Drop(i) | Op::Duplicate(i) => {
                if !wire.is_empty() {
                    let i = *i as usize % wire.len();
                    let (to_server, bytes) = if matches!(op, Op::Duplicate(_)) {
                        wire[i].clone()
                    } else {
                        wire.remove(i)
                    };
                    if !matches!(op, Op::Drop(_)) {
                        deliver = Some((to_server, if to_server { CLIENT } else { SERVER }, bytes));
                    }
                }
            }
            Op::Corrupt { i, at, bit } => {
                if !wire.is_empty() {
                    let i = *i as usize % wire.len();
                    let (to_server, mut bytes) = wire.remove(i);
                    if !bytes.is_empty() {
                        let at = *at as usize % bytes.len();
                        bytes[at] ^= 1 << (bit % 8);
                    }
                    deliver = Some((to_server, if to_server { CLIENT } else { SERVER }, bytes));
                }
            }
            Op::Raw { to_server, from, bytes } => deliver = Some((*to_server, *from, bytes.clone())),
            Op::Spoof { i, from } => {
                if !wire.is_empty() {
                    let (to_server, bytes) = wire[*i as usize % wire.len()].clone();
                    deliver = Some((to_server, *from, bytes));
                }
            }
            Op::Advance(ms) => {
                now = now + Duration::from_millis(*ms as u64 % 60_000);
                server.handle_timeout(now);
                client.handle_timeout(now);
            }
            Op::Connect => session = client.sessions.connect(now, addr(SERVER)).ok(),
            Op::Get => {
                if let Some(s) = session {
                    let _ = client.endpoint.request(now, s, Code::GET, &RequestOptions::default(), |b| {
                        b.uri_path("/x").map(drop)
                    });
                }
            }
        }
        if let Some((to_server, from, bytes)) = deliver {
            if to_server {
                server.handle_datagram(now, addr(from), &bytes, |ep, incoming, _| {
                    if let Incoming::Request { handle, .. } = incoming {
                        let _ = ep.respond(now, handle, Code::CONTENT, |b| b.payload(b"x").map(drop));
                    }
                });
            } else {
                client.handle_datagram(now, addr(from), &bytes, |_, _, _| {});
            }
        }
        for (to_server, ep) in [(false, &mut server), (true, &mut client)] {
            for _ in 0..1000 {
                match ep.poll_output(now) {
                    DtlsOutput::Transmit(_, bytes) => {
                        if wire.len() < 64 {
                            wire.push((to_server, bytes.to_vec()));
                        }
                    }
                    DtlsOutput::Timeout(t) => {
                        assert!(t.is_none_or(|t| t >= now || t.as_micros() + 1 >= now.as_micros()));
                        break;
                    }
                    _ => {}
                }
            }
            assert!(ep.sessions.len() <= limits.max_sessions);
            assert!(ep.sessions.half_open() <= limits.max_half_open);
        }
    }
});
