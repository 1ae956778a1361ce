//! CoAP over DTLS with pre-shared keys against libcoap 4.3 (Debian `libcoap3-bin`), both
//! ways and with both of its TLS libraries: our `DtlsEndpoint` client against
//! `coap-server-openssl` and `coap-server-gnutls`, and `coap-client-openssl` and
//! `coap-client-gnutls` against our `DtlsEndpoint` server, over 127.0.0.1. Skipped, loudly,
//! where libcoap is not installed; under CI=true a missing peer fails.
#![cfg(feature = "dtls")]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant as StdInstant};

use coap_proto::dtls::{DtlsEndpoint, DtlsOutput, KeyStore, Limits, SessionEvent, Sessions};
use coap_proto::wire::Code;
use coap_proto::{Config, Incoming, Instant, RequestHandle, RequestOptions};
use common::libcoap::{available, dtls_server, free_port};

const KEY: &str = "interop-secret";

/// Drives `d` over `socket` until `done` says so or `limit` passes; `on` sees every
/// request or response with the session's identity.
fn drive(
    socket: &UdpSocket,
    d: &mut DtlsEndpoint,
    start: StdInstant,
    limit: Duration,
    mut on: impl FnMut(
        &mut coap_proto::Endpoint<coap_proto::dtls::SessionId>,
        Instant,
        Incoming<'_>,
        Option<&[u8]>,
    ),
    mut done: impl FnMut(&DtlsEndpoint) -> bool,
) {
    let mut buf = [0u8; 2048];
    let now = || Instant::from_micros(start.elapsed().as_micros() as u64);
    while start.elapsed() < limit && !done(d) {
        let t = now();
        let next = loop {
            match d.poll_output(t) {
                DtlsOutput::Transmit(to, bytes) => {
                    socket.send_to(bytes, to).unwrap();
                }
                DtlsOutput::Session(SessionEvent::Failed(s, e)) => panic!("{s}: {e}"),
                DtlsOutput::Session(_) | DtlsOutput::Event(_) => {}
                DtlsOutput::Timeout(next) => break next,
            }
        };
        let wait = next.map_or(Duration::from_millis(50), |n| {
            n.saturating_duration_since(t)
                .clamp(Duration::from_micros(100), Duration::from_millis(50))
        });
        socket.set_read_timeout(Some(wait)).unwrap();
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let t = now();
                d.handle_datagram(t, from, &buf[..n], |ep, incoming, identity| {
                    on(ep, t, incoming, identity)
                });
            }
            Err(_) => d.handle_timeout(now()),
        }
    }
}

/// Our client: GET `path` on a fresh session to `server`; the whole body and its code.
fn our_get(server: SocketAddr, path: &str) -> (Code, Vec<u8>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sessions = Sessions::client("ours", KEY.as_bytes().to_vec(), Limits::default()).unwrap();
    let mut d = DtlsEndpoint::new(
        sessions,
        Config {
            seed: 9,
            ..Config::default()
        },
    )
    .unwrap();
    let start = StdInstant::now();
    let session = d.sessions.connect(Instant::ZERO, server).unwrap();
    let options = RequestOptions::default();
    let handle: RequestHandle = d
        .endpoint
        .request(Instant::ZERO, session, Code::GET, &options, |b| {
            b.uri_path(path).map(drop)
        })
        .unwrap();
    let mut body = Vec::new();
    let code = std::cell::Cell::new(None);
    drive(
        &socket,
        &mut d,
        start,
        Duration::from_secs(20),
        |_, _, incoming, _| {
            if let Incoming::Response {
                handle: h,
                message,
                block,
            } = incoming
            {
                assert_eq!(h, handle);
                body.extend_from_slice(message.payload());
                if block.is_none_or(|b| b.last) {
                    code.set(Some(message.code()));
                }
            }
        },
        |_| code.get().is_some(),
    );
    (code.get().expect("an answer within 20 s"), body)
}

#[test]
fn our_dtls_client_against_libcoap_servers() {
    for server in ["coap-server-openssl", "coap-server-gnutls"] {
        if !available(server) {
            continue;
        }
        let (_peer, addr) = dtls_server(server, KEY);
        let start = StdInstant::now();
        let (code, body) = our_get(addr, "/");
        let took = start.elapsed();
        assert_eq!(code, Code::CONTENT, "{server}");
        assert!(
            String::from_utf8_lossy(&body).contains("libcoap"),
            "{server}: {body:?}"
        );
        eprintln!("{server}: handshake and GET / in {took:?}");
        let (code, body) = our_get(addr, "/time");
        assert_eq!(code, Code::CONTENT, "{server} /time");
        assert!(!body.is_empty());
    }
}

/// Our server on `port`: `/hello` greets the identity, `/big` is 3,000 bytes (Block2),
/// `/store` takes a PUT; runs until `stop` is set.
fn our_server(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        let keys = KeyStore::new().with("libcoap", KEY.as_bytes().to_vec());
        let sessions = Sessions::server(keys, Limits::default()).unwrap();
        let mut d = DtlsEndpoint::new(
            sessions,
            Config {
                seed: 3,
                ..Config::default()
            },
        )
        .unwrap();
        let big: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut store = Vec::new();
        drive(
            &socket,
            &mut d,
            StdInstant::now(),
            Duration::from_secs(120),
            |ep, now, incoming, identity| {
                let Incoming::Request { handle, message } = incoming else {
                    return;
                };
                let path: Vec<&[u8]> = message.uri_path().collect();
                let path = path.concat();
                let _ = match (message.code(), &path[..]) {
                    (Code::GET, b"hello") => {
                        let who = String::from_utf8_lossy(identity.unwrap_or(b"?")).to_string();
                        ep.respond(now, handle, Code::CONTENT, |b| {
                            b.payload(format!("hello {who}").as_bytes()).map(drop)
                        })
                    }
                    (Code::GET, b"big") => {
                        ep.respond_block2(now, handle, &message, Code::CONTENT, &big, |_| Ok(()))
                    }
                    (Code::PUT, b"store") => {
                        store = message.payload().to_vec();
                        ep.respond(now, handle, Code::CHANGED, |_| Ok(()))
                    }
                    (Code::GET, b"store") => {
                        let body = store.clone();
                        ep.respond(now, handle, Code::CONTENT, |b| b.payload(&body).map(drop))
                    }
                    _ => ep.respond(now, handle, Code::NOT_FOUND, |_| Ok(())),
                };
            },
            |_| stop.load(std::sync::atomic::Ordering::SeqCst),
        );
    })
}

fn libcoap_client(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(["-k", KEY, "-u", "libcoap", "-B", "10"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{tool} {args:?}: {out:?}");
    out.stdout
}

#[test]
fn libcoap_dtls_clients_against_our_server() {
    for tool in ["coap-client-openssl", "coap-client-gnutls"] {
        if !available(tool) {
            continue;
        }
        let port = free_port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let server = our_server(port, stop.clone());
        std::thread::sleep(Duration::from_millis(300));
        let base = format!("coaps://127.0.0.1:{port}");
        let out = libcoap_client(tool, &[&format!("{base}/hello")]);
        assert_eq!(
            String::from_utf8_lossy(&out).trim(),
            "hello libcoap",
            "{tool}: identity"
        );
        let out = libcoap_client(tool, &[&format!("{base}/big")]);
        assert_eq!(out.len(), 3000 + 1, "{tool}: block-wise GET and a newline");
        libcoap_client(
            tool,
            &["-m", "put", "-e", "stored", &format!("{base}/store")],
        );
        let out = libcoap_client(tool, &[&format!("{base}/store")]);
        assert_eq!(
            String::from_utf8_lossy(&out).trim(),
            "stored",
            "{tool}: PUT"
        );
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        server.join().unwrap();
    }
}
