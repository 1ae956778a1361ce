//! The std and tokio clients against hostile or slow servers over 127.0.0.1: a bound on
//! the whole request (CON included), on the wait for a separate response, and on the
//! body collected — a never-ending Block2 body ends with a typed error, not with memory
//! growing toward a gigabyte.
#![cfg(feature = "std")]

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coap_proto::net::blocking::Client;
use coap_proto::net::{DEFAULT_MAX_BODY, Error, Request};
use coap_proto::wire::{Block, Code, Message, MessageBuilder, Type};

/// A raw UDP server on loopback that answers each request with the datagram `answer`
/// returns (or nothing), until dropped or 30 s have passed. Counts the requests.
struct RawServer {
    addr: SocketAddr,
    seen: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl RawServer {
    fn start(answer: impl Fn(&Message<'_>) -> Option<Vec<u8>> + Send + 'static) -> RawServer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(30) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(req) = Message::parse(&buf[..n]) else {
                    continue;
                };
                if !req.code().is_request() {
                    continue;
                }
                s.fetch_add(1, Ordering::SeqCst);
                if let Some(reply) = answer(&req) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        RawServer { addr, seen, stop }
    }

    fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A piggybacked answer to `req` built by `f`.
fn ack(req: &Message<'_>, code: Code, f: impl FnOnce(&mut MessageBuilder<'_>)) -> Vec<u8> {
    let mut out = vec![0u8; 2048];
    let mut b = MessageBuilder::new(&mut out, Type::Ack, code, req.message_id()).unwrap();
    b.token(req.token()).unwrap();
    f(&mut b);
    let len = b.len();
    out.truncate(len);
    out
}

/// Answers every Block2 request with a full 1024-byte block and M=1: a body that never
/// ends. With `size2`, the first block announces that size.
fn endless(size2: Option<u32>) -> RawServer {
    RawServer::start(move |req| {
        let num = req.block2().ok().flatten().map_or(0, |blk| blk.num());
        Some(ack(req, Code::CONTENT, |b| {
            b.block2(Block::new(num, true, 6).unwrap()).unwrap();
            if let (Some(n), 0) = (size2, num) {
                b.size2(n).unwrap();
            }
            b.payload(&[b'z'; 1024]).unwrap();
        }))
    })
}

/// Acknowledges every request with an empty ACK and never sends the response.
fn ack_only() -> RawServer {
    RawServer::start(|req| {
        let [m0, m1] = req.message_id().to_be_bytes();
        Some(vec![0x60, 0x00, m0, m1])
    })
}

#[test]
fn con_request_timeout_bounds_the_whole_request() {
    // A silent port: without a bound the CON would retransmit for 93 s.
    let silent = RawServer::start(|_| None);
    let mut c = Client::connect(silent.addr).unwrap();
    let start = Instant::now();
    let r = c.request(&Request::get("/x").timeout(Duration::from_millis(300)));
    assert_eq!(r, Err(Error::TimedOut));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn wait_for_a_separate_response_is_the_requests_own() {
    let server = ack_only();
    let mut c = Client::connect(server.addr).unwrap();
    let start = Instant::now();
    let r = c.request(&Request::get("/x").separate_timeout(Duration::from_millis(300)));
    assert_eq!(r, Err(Error::TimedOut));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(server.seen(), 1, "acknowledged once, never retransmitted");
    // The overall timeout covers the wait after an empty ACK too.
    let start = Instant::now();
    let r = c.request(&Request::get("/y").timeout(Duration::from_millis(200)));
    assert_eq!(r, Err(Error::TimedOut));
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn never_ending_block2_body_ends_with_body_too_large() {
    let server = endless(None);
    let mut c = Client::connect(server.addr).unwrap();
    let r = c.request(&Request::get("/forever").max_body(64 * 1024));
    assert_eq!(r, Err(Error::BodyTooLarge { limit: 64 * 1024 }));
    // 64 blocks fit the limit; the 65th crosses it and ends the request.
    assert_eq!(server.seen(), 65);
    // The default limit holds as well: 1 MiB, then the error.
    let r = c.request(&Request::get("/forever"));
    assert_eq!(
        r,
        Err(Error::BodyTooLarge {
            limit: DEFAULT_MAX_BODY
        })
    );
    assert_eq!(server.seen(), 65 + 1025);
}

#[test]
fn announced_size_over_the_limit_ends_at_the_first_block() {
    let server = endless(Some(10_000_000));
    let mut c = Client::connect(server.addr).unwrap();
    let r = c.request(&Request::get("/huge"));
    assert_eq!(
        r,
        Err(Error::BodyTooLarge {
            limit: DEFAULT_MAX_BODY
        })
    );
    assert_eq!(server.seen(), 1, "no follow-up after Size2 said 10 MB");
    // Streaming block by block is the caller's business: no limit applies.
    let mut got = 0;
    c.get_blockwise("/huge", 6, |_, data, _| {
        got += data.len();
        got < 3 * 1024
    })
    .unwrap();
    assert_eq!(got, 3 * 1024);
}

#[cfg(feature = "tokio")]
mod tokio_client {
    use super::*;
    use coap_proto::net::tokio::Client;

    #[tokio::test]
    async fn con_request_timeout_and_body_limit_hold_in_the_tokio_client() {
        let silent = RawServer::start(|_| None);
        let c = Client::connect(silent.addr).await.unwrap();
        let start = Instant::now();
        let r = c
            .request(Request::get("/x").timeout(Duration::from_millis(300)))
            .await;
        assert_eq!(r, Err(Error::TimedOut));
        assert!(start.elapsed() < Duration::from_secs(2));

        let acker = ack_only();
        let c = Client::connect(acker.addr).await.unwrap();
        let start = Instant::now();
        let r = c
            .request(Request::get("/x").separate_timeout(Duration::from_millis(300)))
            .await;
        assert_eq!(r, Err(Error::TimedOut));
        assert!(start.elapsed() < Duration::from_secs(2));

        let server = endless(None);
        let c = Client::connect(server.addr).await.unwrap();
        let r = c
            .request(Request::get("/forever").max_body(16 * 1024))
            .await;
        assert_eq!(r, Err(Error::BodyTooLarge { limit: 16 * 1024 }));
        assert_eq!(server.seen(), 17);
    }
}
