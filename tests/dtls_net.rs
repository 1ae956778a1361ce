//! `coaps://` with the blocking client and server (feature `dtls`) over 127.0.0.1: our
//! client and server together — the handshake, GET with the client's identity, PUT,
//! Block1 and Block2, a separate response, a wrong key — and each against libcoap's
//! openssl and gnutls tools.
#![cfg(feature = "dtls")]

mod common;

use common::libcoap::{available, dtls_server};

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coap_proto::dtls::{DtlsError, KeyStore, Limits, Sessions};
use coap_proto::net::blocking::{Client, Reply, Server};
use coap_proto::net::{Error, Request, Response};
use coap_proto::resource::{Methods, Resource};
use coap_proto::wire::Code;

const KEY: &str = "a coaps test key";

fn big() -> Vec<u8> {
    (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Our coaps server: `/whoami` (the client's identity), `/big` (3,000 bytes), `/store`
/// (GET and PUT), `/late` (a separate response after 200 ms).
fn server() -> SocketAddr {
    let keys = KeyStore::new().with("alice", KEY).with("libcoap", KEY);
    let mut server = Server::bind_psk("127.0.0.1:0", keys).unwrap();
    server.resource(Resource::new("/whoami", Methods::GET), |req| {
        Response::content(req.identity.clone().unwrap_or_default()).into()
    });
    server.resource(Resource::new("/big", Methods::GET), |_| {
        Response::content(big()).into()
    });
    let store = Arc::new(Mutex::new(Vec::new()));
    let s = store.clone();
    server.resource(
        Resource::new("/store", Methods::GET.and(Methods::PUT)),
        move |req| {
            if req.method == Code::PUT {
                *s.lock().unwrap() = req.payload.clone();
                Response::new(Code::CHANGED).into()
            } else {
                Response::content(s.lock().unwrap().clone()).into()
            }
        },
    );
    server.resource(Resource::new("/late", Methods::GET), |_| {
        Reply::later(|responder| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                responder.respond(Response::content("late"));
            });
        })
    });
    let addr = server.local_addr();
    std::thread::spawn(move || server.run());
    addr
}

#[test]
fn our_coaps_client_and_server_exchange_every_kind_of_request() {
    let addr = server();
    let start = Instant::now();
    let mut c = Client::connect_psk(format!("coaps://{addr}"), "alice", KEY).unwrap();
    let r = c.get("/whoami").unwrap();
    eprintln!("handshake and first GET: {:?}", start.elapsed());
    assert_eq!(
        (r.code, &r.payload[..]),
        (Code::CONTENT, &b"alice"[..]),
        "the identity"
    );
    assert!(
        c.sessions()
            .is_connected(c.sessions().established(addr).unwrap())
    );
    assert_eq!(c.get("/big").unwrap().payload, big(), "Block2");
    // The session's address is proven by its handshake: no amplification limit, so
    // the blocks are the size asked for (RFC 9175 §2.4 applies to unverified ones).
    let mut sizes = Vec::new();
    c.get_blockwise("/big", 6, |_, bytes, _| {
        sizes.push(bytes.len());
        true
    })
    .unwrap();
    assert_eq!(sizes[0], 1024, "{sizes:?}");
    let body: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    assert_eq!(
        c.put("/store", &body).unwrap().code,
        Code::CHANGED,
        "Block1"
    );
    assert_eq!(c.get("/store").unwrap().payload, body);
    assert_eq!(
        c.get("/late").unwrap().payload,
        b"late",
        "separate response"
    );
    // Requests per second over the session, one at a time.
    let n = 500;
    let start = Instant::now();
    for _ in 0..n {
        assert_eq!(c.get("/whoami").unwrap().code, Code::CONTENT);
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    eprintln!("coaps GET over 127.0.0.1, one at a time: {rate:.0} requests/s");
}

#[test]
fn a_wrong_key_or_an_unknown_identity_is_a_typed_error_in_bounded_time() {
    let addr = server();
    for (identity, key) in [("alice", "not the key"), ("mallory", KEY)] {
        let limits = Limits {
            handshake_timeout: Duration::from_secs(2),
            ..Limits::default()
        };
        let sessions = Sessions::client(identity, key, limits).unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut c =
            Client::from_socket_psk(socket, addr, sessions, coap_proto::net::default_config())
                .unwrap();
        let start = Instant::now();
        let e = c.get("/whoami").unwrap_err();
        assert_eq!(e, Error::Dtls(DtlsError::HandshakeTimeout), "{identity}");
        let took = start.elapsed();
        assert!(took < Duration::from_secs(3), "{identity}: {took:?}");
        assert!(e.to_string().contains("wrong key"), "{e}");
    }
}

#[test]
fn libcoap_dtls_clients_against_our_blocking_server() {
    let addr = server();
    let base = format!("coaps://{addr}");
    for tool in ["coap-client-openssl", "coap-client-gnutls"] {
        if !available(tool) {
            continue;
        }
        let run = |args: &[&str]| {
            let out = Command::new(tool)
                .args(["-k", KEY, "-u", "libcoap", "-B", "10"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{tool} {args:?}: {out:?}");
            out.stdout
        };
        assert_eq!(run(&[&format!("{base}/whoami")]), b"libcoap\n", "{tool}");
        assert_eq!(
            run(&[&format!("{base}/big")]).len(),
            3000 + 1,
            "{tool}: Block2"
        );
        run(&["-m", "put", "-e", "from libcoap", &format!("{base}/store")]);
        assert_eq!(
            run(&[&format!("{base}/store")]),
            b"from libcoap\n",
            "{tool}: PUT"
        );
    }
}

#[test]
fn our_blocking_coaps_client_against_libcoap_servers() {
    for tool in ["coap-server-openssl", "coap-server-gnutls"] {
        if !available(tool) {
            continue;
        }
        let (_peer, coaps) = dtls_server(tool, KEY);
        let mut c = Client::connect_psk(format!("coaps://{coaps}"), "ours", KEY).unwrap();
        let r = c.get("/").unwrap();
        assert!(r.payload_str().unwrap().contains("libcoap"), "{tool}");
        // A block-wise PUT and GET of libcoap's /example_data.
        let body: Vec<u8> = (0..3000u32).map(|i| b'A' + (i % 26) as u8).collect();
        let r = c
            .request(&Request::put("/example_data").payload(body.clone()))
            .unwrap();
        assert!(r.is_success(), "{tool}: {}", r.code);
        assert_eq!(c.get("/example_data").unwrap().payload, body, "{tool}");
    }
}

/// Runs our `coap-client` example with `args`; its stdout.
fn our_cli(args: &[&str]) -> Vec<u8> {
    let out = Command::new(common::example::example("coap-client"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "coap-client {args:?}: {out:?}");
    out.stdout
}

#[test]
fn the_cli_tools_speak_coaps_with_libcoaps_flags() {
    // Our coap-server -k KEY serves coaps on PORT + 1, as libcoap's does.
    let server =
        common::example::start_example_server("coap-server", &["-k", KEY, "-h", "our hint"]);
    let coaps = format!("coaps://127.0.0.1:{}", server.addr.port() + 1);
    // Our coap-client -k KEY -u IDENTITY.
    let body = our_cli(&["-k", KEY, "-u", "cli", &format!("{coaps}/example_data")]);
    assert_eq!(body.len(), 1500 + 1, "block-wise over coaps");
    our_cli(&[
        "-k",
        KEY,
        "-m",
        "put",
        "-e",
        "secret note",
        &format!("{coaps}/note"),
    ]);
    assert_eq!(
        our_cli(&["-k", KEY, &format!("{coaps}/note")]),
        b"secret note\n"
    );
    // The plain port still serves plain CoAP, the same resources.
    assert_eq!(
        our_cli(&[&format!("coap://{}/note", server.addr)]),
        b"secret note\n"
    );
    // A coaps URI without a key is refused with a reason.
    let out = Command::new(common::example::example("coap-client"))
        .arg(format!("{coaps}/note"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("-k KEY"),
        "{out:?}"
    );
    // libcoap's clients against our coap-server.
    for tool in ["coap-client-openssl", "coap-client-gnutls"] {
        if !available(tool) {
            continue;
        }
        let out = Command::new(tool)
            .args([
                "-k",
                KEY,
                "-u",
                "libcoap",
                "-B",
                "10",
                &format!("{coaps}/example_data"),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{tool}: {out:?}");
        assert_eq!(out.stdout.len(), 1500 + 1, "{tool}");
    }
    // Our coap-client against libcoap's servers.
    for tool in ["coap-server-openssl", "coap-server-gnutls"] {
        if !available(tool) {
            continue;
        }
        let (_peer, coaps) = dtls_server(tool, KEY);
        let theirs = format!("coaps://{coaps}");
        let out = our_cli(&["-k", KEY, "-u", "cli", &format!("{theirs}/")]);
        assert!(String::from_utf8_lossy(&out).contains("libcoap"), "{tool}");
        let file = std::env::temp_dir().join(format!("coaps-{}.txt", coaps.port()));
        let body: String = (0..3000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        std::fs::write(&file, &body).unwrap();
        our_cli(&[
            "-k",
            KEY,
            "-m",
            "put",
            "-f",
            file.to_str().unwrap(),
            &format!("{theirs}/example_data"),
        ]);
        let got = our_cli(&["-k", KEY, &format!("{theirs}/example_data")]);
        assert_eq!(
            String::from_utf8_lossy(&got).trim_end(),
            body,
            "{tool}: block-wise both ways"
        );
        let _ = std::fs::remove_file(&file);
    }
}

#[test]
fn the_tokio_client_and_server_speak_coaps() {
    use coap_proto::net::tokio as adapter;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The tokio client against our blocking coaps server.
        let blocking = server();
        let c = adapter::Client::connect_psk(format!("coaps://{blocking}"), "alice", KEY)
            .await
            .unwrap();
        assert_eq!(c.get("/whoami").await.unwrap().payload, b"alice");
        assert_eq!(c.get("/big").await.unwrap().payload, big(), "Block2");
        let body: Vec<u8> = (0..4000u32).map(|i| (i * 7) as u8).collect();
        assert_eq!(
            c.put("/store", &body).await.unwrap().code,
            Code::CHANGED,
            "Block1"
        );
        assert_eq!(c.get("/store").await.unwrap().payload, body);
        // The tokio server, with an async handler, against our blocking client.
        let keys = KeyStore::new().with("bob", KEY);
        let mut s = adapter::Server::bind_psk("127.0.0.1:0", keys)
            .await
            .unwrap();
        s.resource_async(Resource::new("/whoami", Methods::GET), |req| async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            Response::content(req.identity.unwrap_or_default())
        });
        let addr = s.local_addr().unwrap();
        tokio::spawn(s.run());
        let got = tokio::task::spawn_blocking(move || {
            let mut c = Client::connect_psk(addr, "bob", KEY).unwrap();
            c.get("/whoami").unwrap()
        })
        .await
        .unwrap();
        assert_eq!(got.payload, b"bob", "a separate response over coaps");
        // And a wrong key: a typed error, no hang.
        let sessions = Sessions::client(
            "bob",
            "wrong",
            Limits {
                handshake_timeout: Duration::from_secs(1),
                ..Limits::default()
            },
        )
        .unwrap();
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let c = adapter::Client::from_socket_psk(
            socket,
            addr,
            sessions,
            coap_proto::net::default_config(),
        )
        .unwrap();
        let start = Instant::now();
        let e = c.get("/whoami").await.unwrap_err();
        assert_eq!(e, Error::Dtls(DtlsError::HandshakeTimeout));
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    });
}

#[test]
fn tokio_server_serves_coaps_with_k_too() {
    let server = common::example::start_example_server("tokio_server", &["-k", KEY]);
    let coaps = format!("coaps://127.0.0.1:{}", server.addr.port() + 1);
    let body = our_cli(&["-k", KEY, "-u", "cli", &format!("{coaps}/example_data")]);
    assert_eq!(body.len(), 1500 + 1, "block-wise over coaps");
    if available("coap-client-openssl") {
        let out = Command::new("coap-client-openssl")
            .args(["-k", KEY, "-u", "libcoap", "-B", "10", &format!("{coaps}/")])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("coap-proto"),
            "{out:?}"
        );
    }
}
