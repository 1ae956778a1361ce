//! The hostile-client scenarios, over loopback against the `coap-server`
//! example (the blocking std server at its default capacities), with raw UDP sockets as
//! the hostile clients. Every loop is bounded in count and time.
#![cfg(feature = "std")]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coap_proto::net::Response;
use coap_proto::resource::{Methods, Resource};
use coap_proto::wire::{Block, Code, Message, MessageBuilder, Type};
use common::example::start_coap_server;

fn start() -> common::example::ExampleServer {
    start_coap_server(&[])
}

/// A raw client socket with a receive timeout.
fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

fn request(
    ty: Type,
    code: Code,
    mid: u16,
    token: &[u8],
    path: &str,
    f: impl FnOnce(&mut MessageBuilder<'_>),
) -> Vec<u8> {
    let mut buf = vec![0u8; 1400];
    let mut b = MessageBuilder::new(&mut buf, ty, code, mid).unwrap();
    b.token(token).unwrap();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        b.option(coap_proto::wire::OptionNumber::URI_PATH, seg.as_bytes())
            .unwrap();
    }
    f(&mut b);
    b.finish().to_vec()
}

/// Sends `bytes` and returns the first datagram answering message ID `mid` (ACK or
/// response), if one comes within the socket's timeout.
fn exchange(s: &UdpSocket, to: SocketAddr, bytes: &[u8], mid: u16) -> Option<Vec<u8>> {
    s.send_to(bytes, to).unwrap();
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let Ok((n, _)) = s.recv_from(&mut buf) else {
            return None;
        };
        if Message::parse(&buf[..n]).is_ok_and(|m| m.message_id() == mid) {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

#[test]
fn post_sent_100_times_among_large_replies_gets_the_same_reply_every_time() {
    let server = start();
    let (hostile, other) = (socket(), socket());
    let post = request(Type::Con, Code::POST, 0x4242, &[1], "/journal", |b| {
        b.payload(b"entry").unwrap();
    });
    let first = exchange(&hostile, server.addr, &post, 0x4242).expect("answered");
    assert_eq!(Message::parse(&first).unwrap().code(), Code::CREATED);
    for i in 0..99u16 {
        // 1 KiB-class replies between the copies: GET /example_data (block 0 of 1500
        // B), its request padded with a query the resource ignores, so that a whole
        // 1,024-byte block is within 3 times it for an unverified address (RFC 9175).
        let get = request(Type::Con, Code::GET, 1000 + i, &[2], "/example_data", |b| {
            for _ in 0..2 {
                b.option(coap_proto::wire::OptionNumber::URI_QUERY, &[b'p'; 200])
                    .unwrap();
            }
        });
        let r = exchange(&other, server.addr, &get, 1000 + i).expect("GET answered");
        assert!(r.len() > 1000, "{}", Message::parse(&r).unwrap());
        let again = exchange(&hostile, server.addr, &post, 0x4242).expect("copy answered");
        assert_eq!(again, first, "copy {i}: the stored 2.01, byte for byte");
    }
}

/// A blocking server with `/echo`: POST answers three copies of the body, counting runs.
fn echo_server(runs: Arc<AtomicUsize>) -> SocketAddr {
    let mut server = coap_proto::net::blocking::Server::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    server.resource(Resource::new("/echo", Methods::POST), move |req| {
        runs.fetch_add(1, Ordering::SeqCst);
        Response::new(Code::CHANGED)
            .payload(req.payload.repeat(3))
            .into()
    });
    std::thread::spawn(move || server.run());
    addr
}

#[test]
fn blockwise_post_answers_never_rerun_the_handler_for_a_follow_up() {
    let runs = Arc::new(AtomicUsize::new(0));
    let addr = echo_server(runs.clone());
    let post = |mid: u16, block2: u32| {
        request(Type::Con, Code::POST, mid, &[1], "/echo", |b| {
            b.block2(Block::new(block2, false, 6).unwrap()).unwrap();
            b.payload(&[mid as u8; 600]).unwrap();
        })
    };
    // A follow-up after 2 other clients' block-wise POSTs: served from the kept copy.
    let s = socket();
    let first = Message::parse(&exchange(&s, addr, &post(1, 0), 1).unwrap())
        .unwrap()
        .etag()
        .unwrap()
        .unwrap()
        .to_vec();
    for k in 0..2u16 {
        exchange(&socket(), addr, &post(100 + k, 0), 100 + k).unwrap();
    }
    let follow = exchange(&s, addr, &post(2, 1), 2).unwrap();
    let m = Message::parse(&follow).unwrap();
    assert_eq!((m.code(), m.payload().len()), (Code::CHANGED, 1800 - 1024));
    assert_eq!(m.etag().unwrap().unwrap(), &first[..], "the same body");
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    // After 16 other clients' block-wise POSTs (4 are kept at once): 4.08, not a
    // second run of the handler with a new ETag.
    let s = socket();
    exchange(&s, addr, &post(10, 0), 10).unwrap();
    for k in 0..16u16 {
        exchange(&socket(), addr, &post(200 + k, 0), 200 + k).unwrap();
    }
    let follow = exchange(&s, addr, &post(11, 1), 11).unwrap();
    assert_eq!(
        Message::parse(&follow).unwrap().code(),
        Code::REQUEST_ENTITY_INCOMPLETE
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3 + 1 + 16,
        "no run for any follow-up"
    );
}

#[test]
fn late_answered_flood_leaves_get_answered_at_once() {
    // 100 requests to /async?30 from 100 sockets, then GET / from another: it is
    // answered at once, and the flood's excess is refused with a truthful Max-Age.
    let server = start();
    let me = socket();
    let crowd: Vec<UdpSocket> = (0..100).map(|_| socket()).collect();
    for (i, c) in crowd.iter().enumerate() {
        let req = request(Type::Con, Code::GET, i as u16, &[9], "/async", |b| {
            b.option(coap_proto::wire::OptionNumber::URI_QUERY, b"30")
                .unwrap();
        });
        c.send_to(&req, server.addr).unwrap();
    }
    let mut refused = 0;
    for c in &crowd {
        let mut buf = [0u8; 256];
        if let Ok((n, _)) = c.recv_from(&mut buf) {
            let m = Message::parse(&buf[..n]).unwrap();
            if m.code() == Code::SERVICE_UNAVAILABLE {
                refused += 1;
                let age = m.max_age().unwrap().unwrap();
                assert!(age > 0 && age <= 247, "Max-Age {age}");
            }
        }
    }
    assert!(refused >= 30, "{refused} of 100 refused: the quota holds");
    let start = Instant::now();
    let get = request(Type::Con, Code::GET, 7777, &[5], "/", |_| {});
    let r = exchange(&me, server.addr, &get, 7777).expect("GET / answered");
    assert_eq!(Message::parse(&r).unwrap().code(), Code::CONTENT);
    assert!(start.elapsed() < Duration::from_millis(500));
}
