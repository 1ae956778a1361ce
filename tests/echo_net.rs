//! Echo (RFC 9175) over 127.0.0.1: the std and tokio servers mitigate amplification by
//! default, the std and tokio clients answer their challenges without the caller
//! noticing, and a resource marked `fresh` takes only unsafe requests with a young Echo.
#![cfg(feature = "tokio")]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coap_proto::net::tokio as adapter;
use coap_proto::net::{Response, blocking};
use coap_proto::resource::{Methods, Resource};
use coap_proto::wire::{Code, Message, MessageBuilder, OptionNumber, Type};
use common::example::exchange;

const BIG: usize = 3000;

/// A blocking server (default configuration) with `/big` (3,000 bytes, GET) and
/// `/log` (POST), counting the runs of each handler.
fn server(runs: Arc<AtomicUsize>) -> (SocketAddr, blocking::ServerHandle) {
    let mut server = blocking::Server::bind("127.0.0.1:0").unwrap();
    let r = runs.clone();
    server.resource(Resource::new("/big", Methods::GET), move |_| {
        r.fetch_add(1, Ordering::SeqCst);
        Response::content(vec![b'b'; BIG]).into()
    });
    server.resource(Resource::new("/log", Methods::POST), move |req| {
        runs.fetch_add(1, Ordering::SeqCst);
        Response::new(Code::CHANGED)
            .payload(req.payload.repeat(40))
            .into()
    });
    let (addr, handle) = (server.local_addr(), server.handle());
    std::thread::spawn(move || server.run());
    (addr, handle)
}

#[test]
fn std_and_tokio_clients_get_what_a_mitigating_server_sends_without_a_challenge() {
    // An unverified client's GET of 3,000 bytes is served in blocks small enough for
    // 3 times each request (RFC 9175 §2.4, RFC 7959 §2.2) and its POST, whose answer
    // is 40 times its payload, in kept blocks: no 4.01, each handler run once.
    let runs = Arc::new(AtomicUsize::new(0));
    let (addr, handle) = server(runs.clone());
    let mut c = blocking::Client::connect(addr).unwrap();
    let r = c.get("/big").unwrap();
    assert_eq!((r.code, r.payload.len()), (Code::CONTENT, BIG));
    let r = c.post("/log", b"abc").unwrap();
    assert_eq!((r.code, r.payload.len()), (Code::CHANGED, 120));
    let before = runs.load(Ordering::SeqCst);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = adapter::Client::connect(addr).await.unwrap();
        let r = c.post("/log", b"xyz").await.unwrap();
        assert_eq!((r.code, r.payload.len()), (Code::CHANGED, 120));
        assert_eq!(runs.load(Ordering::SeqCst), before + 1, "POST ran once");
        let r = c.get("/big").await.unwrap();
        assert_eq!((r.code, r.payload.len()), (Code::CONTENT, BIG));
    });
    assert_eq!(handle.stats().unwrap().echo_challenges, 0);
}

#[test]
fn tokio_server_mitigates_by_default_too() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut server = adapter::Server::bind("127.0.0.1:0").await.unwrap();
        server.resource(Resource::new("/big", Methods::GET), |_| {
            Response::content(vec![b'b'; BIG]).into()
        });
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.run());
        // A raw client: a first block within 3 times its request, counted with the
        // 28 bytes of IPv4 and UDP header around each.
        let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let get = get_big(1, None);
        raw.send_to(&get, addr).await.unwrap();
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(2), raw.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(m.code(), Code::CONTENT);
        let block = m.block2().unwrap().unwrap();
        assert!(block.more() && block.size() < 64, "{block:?}");
        assert!(
            n + 28 <= 3 * (get.len() + 28),
            "{n} bytes for {}",
            get.len()
        );
        // The tokio client reads it all so.
        let c = adapter::Client::connect(addr).await.unwrap();
        assert_eq!(c.get("/big").await.unwrap().payload.len(), BIG);
    });
}

fn get_big(mid: u16, echo: Option<&[u8]>) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::GET, mid).unwrap();
    b.token(&[mid as u8]).unwrap();
    b.uri_path("/big").unwrap();
    if let Some(v) = echo {
        b.echo(v).unwrap();
    }
    b.finish().to_vec()
}

#[test]
fn fresh_resource_takes_unsafe_requests_only_with_a_young_echo() {
    // RFC 9175 §2.3: a lock that must not act on a delayed request.
    let runs = Arc::new(AtomicUsize::new(0));
    let mut server = blocking::Server::bind("127.0.0.1:0").unwrap();
    let r = runs.clone();
    let lock = Resource::new("/lock", Methods::GET.and(Methods::PUT)).fresh(Duration::from_secs(1));
    server.resource(lock, move |req| {
        if req.method == Code::PUT {
            r.fetch_add(1, Ordering::SeqCst);
            Response::new(Code::CHANGED).into()
        } else {
            Response::content("locked").into()
        }
    });
    let addr = server.local_addr();
    std::thread::spawn(move || server.run());

    // Our client: challenged, repeats, the PUT runs once.
    let mut c = blocking::Client::connect(addr).unwrap();
    assert_eq!(c.put("/lock", b"0").unwrap().code, Code::CHANGED);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // A GET changes nothing: no freshness asked.
    assert_eq!(c.get("/lock").unwrap().payload, b"locked");

    // By hand: without Echo, 4.01 and nothing runs, however verified the address is.
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let put = |mid: u16, echo: Option<&[u8]>| {
        let mut buf = [0u8; 64];
        let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::PUT, mid).unwrap();
        b.token(&[mid as u8]).unwrap();
        b.uri_path("/lock").unwrap();
        if let Some(v) = echo {
            b.option(OptionNumber::ECHO, v).unwrap();
        }
        b.payload(b"1").unwrap();
        b.finish().to_vec()
    };
    let first = exchange(&s, addr, &put(1, None), 1);
    let m = Message::parse(&first).unwrap();
    assert_eq!(m.code(), Code::UNAUTHORIZED);
    let echo = m.echo().unwrap().unwrap().to_vec();
    // At once with the value: runs.
    let r = exchange(&s, addr, &put(2, Some(&echo)), 2);
    assert_eq!(Message::parse(&r).unwrap().code(), Code::CHANGED);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // The same value 2.5 s later, past the resource's 1 s: refused, nothing runs.
    std::thread::sleep(Duration::from_millis(2500));
    let r = exchange(&s, addr, &put(3, Some(&echo)), 3);
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.code(), Code::UNAUTHORIZED);
    assert_ne!(m.echo().unwrap().unwrap(), &echo[..], "a new value");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn mitigation_is_off_when_the_configuration_says_so() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = coap_proto::Config {
        amplification: None,
        ..coap_proto::net::default_config()
    };
    let mut server = blocking::Server::from_socket(socket, config).unwrap();
    server.resource(Resource::new("/big", Methods::GET), |_| {
        Response::content(vec![b'b'; BIG]).into()
    });
    let addr = server.local_addr();
    std::thread::spawn(move || server.run());
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let answer = exchange(&s, addr, &get_big(1, None), 1);
    let m = Message::parse(&answer).unwrap();
    assert_eq!(
        m.code(),
        Code::CONTENT,
        "the first block at once, no challenge"
    );
    assert!(answer.len() > 1000);
}

#[test]
fn an_echo_capable_client_proves_its_address_during_its_first_download() {
    // The first download of an unverified client comes in small blocks, each offering
    // an Echo value (RFC 9175 §2.3); our client echoes it in its next block request,
    // which proves its address: its next download gets the 1,024-byte blocks it asks
    // for. Nothing is challenged.
    let (addr, handle) = server(Arc::new(AtomicUsize::new(0)));
    let mut c = blocking::Client::connect(addr).unwrap();
    let sizes = |c: &mut blocking::Client| {
        let mut sizes = Vec::new();
        let mut body = 0;
        c.get_blockwise("/big", 6, |_, bytes, _| {
            sizes.push(bytes.len());
            body += bytes.len();
            true
        })
        .unwrap();
        assert_eq!(body, BIG);
        sizes
    };
    let first = sizes(&mut c);
    assert!(first[0] < 1024, "{first:?}");
    let second = sizes(&mut c);
    assert_eq!(second[0], 1024, "{second:?}");
    assert_eq!(handle.stats().unwrap().echo_challenges, 0);
}
