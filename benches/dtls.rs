//! CoAP over DTLS in memory (feature `dtls`): how long a PSK handshake takes, and how
//! many GET/2.05 pairs per second one established session carries. Client and server
//! are `DtlsEndpoint`s on one thread; the "network" is a vector. Medians of 11 runs.
//!
//! `cargo bench --features dtls --bench dtls`

use std::net::SocketAddr;
use std::time::Instant as Clock;

use coap_proto::dtls::{DtlsEndpoint, DtlsOutput, KeyStore, Limits, SessionId, Sessions};
use coap_proto::wire::Code;
use coap_proto::{Config, Incoming, Instant, RequestOptions};

const CLIENT: &str = "127.0.0.1:40000";
const SERVER: &str = "127.0.0.1:5684";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn drain(ep: &mut DtlsEndpoint, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        match ep.poll_output(now) {
            DtlsOutput::Transmit(_, d) => out.push(d.to_vec()),
            DtlsOutput::Timeout(_) => return out,
            _ => {}
        }
    }
}

/// Carries datagrams both ways until both sides are quiet; returns the responses the
/// client got.
fn exchange(client: &mut DtlsEndpoint, server: &mut DtlsEndpoint, now: Instant) -> usize {
    let mut answers = 0;
    loop {
        let to_server = drain(client, now);
        for d in &to_server {
            server.handle_datagram(now, addr(CLIENT), d, |ep, incoming, _| {
                if let Incoming::Request { handle, .. } = incoming {
                    ep.respond(now, handle, Code::CONTENT, |b| {
                        b.payload(b"21.5 C").map(drop)
                    })
                    .unwrap();
                }
            });
        }
        let to_client = drain(server, now);
        for d in &to_client {
            client.handle_datagram(now, addr(SERVER), d, |_, incoming, _| {
                if let Incoming::Response { .. } = incoming {
                    answers += 1;
                }
            });
        }
        if to_server.is_empty() && to_client.is_empty() {
            return answers;
        }
    }
}

fn pair() -> (DtlsEndpoint, DtlsEndpoint) {
    let keys = KeyStore::new().with("bench", b"bench key".to_vec());
    let server = DtlsEndpoint::new(
        Sessions::server(keys, Limits::default()).unwrap(),
        Config::default(),
    )
    .unwrap();
    let sessions = Sessions::client("bench", b"bench key".to_vec(), Limits::default()).unwrap();
    let client = DtlsEndpoint::new(
        sessions,
        Config {
            seed: 1,
            ..Config::default()
        },
    )
    .unwrap();
    (client, server)
}

fn connect(client: &mut DtlsEndpoint, server: &mut DtlsEndpoint) -> SessionId {
    let session = client
        .sessions
        .connect(Instant::ZERO, addr(SERVER))
        .unwrap();
    exchange(client, server, Instant::ZERO);
    assert!(client.sessions.is_connected(session));
    session
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // Handshakes: the tables (and dimpl's configurations) exist already.
    let handshakes: Vec<f64> = (0..11)
        .map(|_| {
            let (mut c, mut s) = pair();
            let start = Clock::now();
            connect(&mut c, &mut s);
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!(
        "PSK handshake, both sides in one thread: median {:.2} ms",
        median(handshakes)
    );

    let rates: Vec<f64> = (0..11)
        .map(|_| {
            let (mut c, mut s) = pair();
            let session = connect(&mut c, &mut s);
            let n = 20_000;
            let start = Clock::now();
            let mut answered = 0;
            for i in 0..n {
                let now = Instant::from_micros(i as u64);
                c.endpoint
                    .request(now, session, Code::GET, &RequestOptions::default(), |b| {
                        b.uri_path("/temp").map(drop)
                    })
                    .unwrap();
                answered += exchange(&mut c, &mut s, now);
            }
            assert_eq!(answered, n);
            n as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    println!(
        "GET/2.05 pairs per second over one session, one at a time: median {:.0}",
        median(rates)
    );
}
