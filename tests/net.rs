//! The std and tokio adapters against each other over 127.0.0.1.
#![cfg(feature = "std")]

use std::net::UdpSocket;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coap_proto::TransmissionParams;
use coap_proto::net::blocking::{Client, Reply, Server};
use coap_proto::net::{Error, Request, Response};
use coap_proto::resource::{Methods, Resource};
use coap_proto::wire::Code;

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

/// A blocking server on a free loopback port with `/hello`, `/store` (PUT/GET/DELETE),
/// `/later` (separate response after 300 ms) and `/echo` (POST, counts its runs).
fn start_server(echo_runs: Arc<AtomicUsize>) -> std::net::SocketAddr {
    let mut server = Server::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    let store = Arc::new(Mutex::new(None::<Vec<u8>>));
    server.resource(Resource::new("/hello", Methods::GET).rt("greeting"), |_| {
        Response::content("hello").into()
    });
    let s = store.clone();
    let all = Methods::GET.and(Methods::PUT).and(Methods::DELETE);
    server.resource(Resource::new("/store", all), move |req| {
        let mut s = s.lock().unwrap();
        match req.method {
            Code::PUT => {
                *s = Some(req.payload.clone());
                Response::new(Code::CHANGED).into()
            }
            Code::DELETE => Response::new(if s.take().is_some() {
                Code::DELETED
            } else {
                Code::NOT_FOUND
            })
            .into(),
            _ => s
                .clone()
                .map_or(Response::new(Code::NOT_FOUND), Response::content)
                .into(),
        }
    });
    server.resource(Resource::new("/later", Methods::GET), |_| {
        Reply::later(|responder| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                responder.respond(Response::content("finally"));
            });
        })
    });
    server.resource(Resource::new("/echo", Methods::POST), move |req| {
        echo_runs.fetch_add(1, Ordering::SeqCst);
        Response::new(Code::CHANGED)
            .payload(req.payload.clone())
            .into()
    });
    std::thread::spawn(move || server.run());
    addr
}

#[test]
fn blocking_client_and_server_cover_the_methods() {
    let addr = start_server(Arc::default());
    let mut c = Client::connect(addr).unwrap();
    let r = c.get("/hello").unwrap();
    assert_eq!((r.code, r.payload_str()), (Code::CONTENT, Some("hello")));
    assert_eq!(c.get_non("/hello").unwrap().payload, b"hello");
    assert_eq!(c.get("/store").unwrap().code, Code::NOT_FOUND);
    assert_eq!(c.put("/store", b"v1").unwrap().code, Code::CHANGED);
    assert_eq!(c.put_non("/store", b"v2").unwrap().code, Code::CHANGED);
    assert_eq!(c.get("/store").unwrap().payload, b"v2");
    assert_eq!(c.delete("/store").unwrap().code, Code::DELETED);
    assert_eq!(c.delete("/store").unwrap().code, Code::NOT_FOUND);
    assert_eq!(
        c.post("/hello", b"x").unwrap().code,
        Code::METHOD_NOT_ALLOWED
    );
    assert_eq!(c.get("/missing").unwrap().code, Code::NOT_FOUND);
    let wk = c.get("/.well-known/core").unwrap();
    assert_eq!(
        wk.payload_str(),
        Some("</hello>;rt=\"greeting\",</store>,</later>,</echo>")
    );
    let filtered = c
        .request(&Request::get("/.well-known/core").query("rt=greet*"))
        .unwrap();
    assert_eq!(filtered.payload_str(), Some("</hello>;rt=\"greeting\""));
    let url = format!("coap://{addr}/hello");
    assert_eq!(c.get_url(&url).unwrap().payload, b"hello");
    c.ping().unwrap();
}

#[test]
fn blockwise_5000_bytes_both_ways() {
    let addr = start_server(Arc::default());
    let mut c = Client::connect(addr).unwrap();
    let data = body(5000);
    assert_eq!(c.put("/store", &data).unwrap().code, Code::CHANGED);
    assert_eq!(c.get("/store").unwrap().payload, data);
    // Per block, asking for 256-byte blocks. The client's address is not verified
    // (nothing challenged it), so the server keeps each answer within 3 times its
    // request (RFC 9175 §2.4) with smaller blocks: the client follows, in order.
    let mut blocks = Vec::new();
    let head = c
        .get_blockwise("/store", 4, |offset, bytes, last| {
            blocks.push((offset, bytes.len(), last));
            true
        })
        .unwrap();
    assert_eq!(head.code, Code::CONTENT);
    let size = blocks[0].1;
    assert!(
        size.is_power_of_two() && (16..=256).contains(&size),
        "{size}"
    );
    assert_eq!(blocks.len(), 5000usize.div_ceil(size));
    for (i, &(offset, len, last)) in blocks.iter().enumerate() {
        let end = (offset + size).min(5000);
        assert_eq!((offset, len, last), (i * size, end - offset, end == 5000));
    }
    // A slice from an offset fetches only the blocks holding it.
    let mut slice = [0u8; 100];
    assert_eq!(
        c.get_slice("/store", 4, 3000, &mut slice).unwrap(),
        (100, false)
    );
    assert_eq!(&slice[..], &data[3000..3100]);
    let mut tail = [0u8; 100];
    assert_eq!(
        c.get_slice("/store", 4, 4950, &mut tail).unwrap(),
        (50, true)
    );
    assert_eq!(&tail[..50], &data[4950..]);
    let mut small = [0u8; 4000];
    assert!(matches!(
        c.get_into("/store", &mut small),
        Err(Error::BufferTooSmall { .. })
    ));
    let mut big = [0u8; 6000];
    assert_eq!(c.get_into("/store", &mut big).unwrap(), 5000);
    // Upload produced block by block.
    let source = data.clone();
    let r = c
        .upload_with(Code::PUT, "/store", 2, move |offset, block| {
            let n = block.len().min(source.len() - offset);
            block[..n].copy_from_slice(&source[offset..offset + n]);
            (n, offset + n < source.len())
        })
        .unwrap();
    assert_eq!(r.code, Code::CHANGED);
    assert_eq!(c.get("/store").unwrap().payload, data);
}

#[test]
fn handler_answers_later_from_another_thread() {
    let addr = start_server(Arc::default());
    let mut c = Client::connect(addr).unwrap();
    let start = Instant::now();
    let r = c.get("/later").unwrap();
    assert_eq!(r.payload, b"finally");
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[test]
fn post_with_blockwise_response_runs_handler_once() {
    let runs = Arc::new(AtomicUsize::new(0));
    let addr = start_server(runs.clone());
    let mut c = Client::connect(addr).unwrap();
    let data = body(3000);
    let r = c.post("/echo", &data).unwrap();
    assert_eq!((r.code, r.payload == data), (Code::CHANGED, true));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

fn fast() -> TransmissionParams {
    TransmissionParams {
        ack_timeout: Duration::from_millis(100),
        max_retransmit: 2,
        ..TransmissionParams::RFC7252
    }
}

#[test]
fn silent_server_times_out_after_the_retransmissions() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut c = Client::connect(silent.local_addr().unwrap()).unwrap();
    let start = Instant::now();
    assert_eq!(
        c.request(&Request::get("/x").params(fast())),
        Err(Error::TimedOut)
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    silent
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = 0;
    while silent.recv_from(&mut [0u8; 64]).is_ok() {
        got += 1;
    }
    assert_eq!(got, 3, "the request and its 2 retransmissions");
}

#[cfg(feature = "tokio")]
mod tokio_adapter {
    use super::*;
    use coap_proto::net::tokio as adapter;

    async fn tokio_server() -> std::net::SocketAddr {
        let mut server = adapter::Server::bind("127.0.0.1:0").await.unwrap();
        server
            // Answered inline, in the server's task.
            .resource(Resource::new("/n", Methods::GET), |req| {
                Response::content(req.query.join("&")).into()
            })
            // Answered from a task of its own.
            .resource_async(Resource::new("/slow", Methods::GET), |_| async {
                ::tokio::time::sleep(Duration::from_millis(300)).await;
                Response::content("slow")
            })
            .resource(Resource::new("/big", Methods::GET), |_| {
                Response::content(body(5000)).into()
            });
        let addr = server.local_addr().unwrap();
        ::tokio::spawn(server.run());
        addr
    }

    #[tokio::test]
    async fn tokio_client_runs_requests_concurrently() {
        let addr = tokio_server().await;
        let client = adapter::Client::connect(addr).await.unwrap();
        let start = Instant::now();
        let slow = client.get("/slow");
        let quick: Vec<_> = (0..10)
            .map(|i| {
                let c = client.clone();
                ::tokio::spawn(async move {
                    c.request(Request::get("/n").query(&format!("i={i}"))).await
                })
            })
            .collect();
        let slow = slow.await;
        assert_eq!(slow.unwrap().payload, b"slow");
        for (i, r) in quick.into_iter().enumerate() {
            assert_eq!(
                r.await.unwrap().unwrap().payload,
                format!("i={i}").into_bytes()
            );
        }
        // All eleven took about as long as the slow one alone.
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
        let mut seen = 0;
        let head = client
            .get_blockwise(Request::get("/big").block2(5), |_, b, _| seen += b.len())
            .await
            .unwrap();
        assert_eq!((head.code, seen), (Code::CONTENT, 5000));
        assert_eq!(client.get("/big").await.unwrap().payload, body(5000));
    }

    #[tokio::test]
    async fn dropping_the_future_cancels_the_request() {
        let silent = ::tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = adapter::Client::connect(silent.local_addr().unwrap())
            .await
            .unwrap();
        let req = Request::get("/x").params(fast());
        let r = ::tokio::time::timeout(Duration::from_millis(50), client.request(req)).await;
        assert!(r.is_err(), "no answer within 50 ms");
        // Without cancellation, retransmissions would follow at ~100 and ~300 ms.
        let mut got = 0;
        let mut buf = [0u8; 64];
        while ::tokio::time::timeout(Duration::from_millis(600), silent.recv_from(&mut buf))
            .await
            .is_ok()
        {
            got += 1;
        }
        assert_eq!(got, 1, "only the first transmission");
        // The client still works after the cancellation.
        let r = ::tokio::time::timeout(
            Duration::from_secs(2),
            client.request(Request::get("/x").params(fast())),
        )
        .await;
        assert_eq!(r.unwrap(), Err(Error::TimedOut));
    }
}
