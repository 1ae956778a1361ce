//! CoAP over DTLS (feature `dtls`): in memory, how long a PSK handshake takes and how
//! many GET/2.05 pairs per second one established session carries (client and server
//! `DtlsEndpoint`s on one thread, the "network" a vector); the memory a session takes,
//! inline and on the heap (a counting allocator); and over 127.0.0.1, the blocking
//! client and server with and without DTLS in the same run. Medians of 11 runs.
//!
//! `cargo bench --features dtls --bench dtls`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// The std allocator, with a count of live bytes beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

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

    memory();
    loopback();
}

/// Heap bytes a server's sessions hold once established (100 clients, one server).
fn memory() {
    let keys = KeyStore::new().with("bench", b"bench key".to_vec());
    let limits = Limits {
        max_sessions: 128,
        ..Limits::default()
    };
    let mut clients: Vec<DtlsEndpoint> = (0..100)
        .map(|i| {
            let sessions =
                Sessions::client("bench", b"bench key".to_vec(), Limits::default()).unwrap();
            DtlsEndpoint::new(
                sessions,
                Config {
                    seed: i,
                    ..Config::default()
                },
            )
            .unwrap()
        })
        .collect();
    let mut server =
        DtlsEndpoint::new(Sessions::server(keys, limits).unwrap(), Config::default()).unwrap();
    let mut client_heap = 0;
    let mut server_heap = 0;
    for (i, c) in clients.iter_mut().enumerate() {
        let from: SocketAddr = format!("127.0.0.1:{}", 41000 + i).parse().unwrap();
        let start = LIVE.load(Ordering::Relaxed);
        c.sessions.connect(Instant::ZERO, addr(SERVER)).unwrap();
        for _ in 0..10 {
            let to_server = drain(c, Instant::ZERO);
            let before = LIVE.load(Ordering::Relaxed);
            for d in &to_server {
                server.handle_datagram(Instant::ZERO, from, d, |_, _, _| {});
            }
            let to_client = drain(&mut server, Instant::ZERO);
            server_heap += LIVE.load(Ordering::Relaxed) - before;
            let before = LIVE.load(Ordering::Relaxed);
            for d in &to_client {
                c.handle_datagram(Instant::ZERO, addr(SERVER), d, |_, _, _| {});
            }
            client_heap += LIVE.load(Ordering::Relaxed) - before;
            drop((to_server, to_client));
        }
        let _ = start;
    }
    assert_eq!(server.sessions.len(), 100);
    assert_eq!(server.sessions.half_open(), 0);
    println!(
        "memory per established session: {} bytes inline (one place of the table), heap grown by the server per session {} bytes (client side {} bytes)",
        Sessions::session_size(),
        server_heap / 100,
        client_heap / 100
    );
}

/// Requests per second over 127.0.0.1, plain CoAP and coaps in the same run: the
/// blocking servers, a tokio client keeping 64 requests in flight (one at a time, the
/// figure is the scheduler's wake-up latency, not the protocol's cost).
fn loopback() {
    use coap_proto::net::Response;
    use coap_proto::net::blocking::Server;
    use coap_proto::net::tokio::Client;
    use coap_proto::resource::{Methods, Resource};
    let temp = || Resource::new("/temp", Methods::GET);
    let mut plain = Server::bind("127.0.0.1:0").unwrap();
    plain.resource(temp(), |_| Response::content("21.5 C").into());
    let plain_addr = plain.local_addr();
    std::thread::spawn(move || plain.run());
    let keys = KeyStore::new().with("bench", "bench key");
    let mut secure = Server::bind_psk("127.0.0.1:0", keys).unwrap();
    secure.resource(temp(), |_| Response::content("21.5 C").into());
    let secure_addr = secure.local_addr();
    std::thread::spawn(move || secure.run());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = Client::connect(plain_addr).await.unwrap();
        let d = Client::connect_psk(secure_addr, "bench", "bench key").await.unwrap();
        async fn rate(client: &Client) -> f64 {
            let (n, depth) = (20_000, 64);
            let start = Clock::now();
            let mut set = tokio::task::JoinSet::new();
            for i in 0..n {
                if i >= depth {
                    set.join_next().await.unwrap().unwrap();
                }
                let c = client.clone();
                set.spawn(async move { assert!(c.get("/temp").await.unwrap().is_success()) });
            }
            while let Some(r) = set.join_next().await {
                r.unwrap();
            }
            n as f64 / start.elapsed().as_secs_f64()
        }
        let (mut p, mut s) = (Vec::new(), Vec::new());
        for _ in 0..7 {
            p.push(rate(&c).await);
            s.push(rate(&d).await);
        }
        let (p, s) = (median(p), median(s));
        println!(
            "127.0.0.1, blocking servers, tokio client with 64 in flight: plain {p:.0}/s, coaps {s:.0}/s ({:.2} of plain)",
            s / p
        );
    });
}
