//! How many slow requests one client carries at once (issue 23): a request waiting
//! for its separate response costs an exchange record, not a message buffer, so the
//! tokio client's defaults carry 200 requests to a resource answered after 2 s at once.
#![cfg(feature = "tokio")]

use std::time::{Duration, Instant};

use coap_proto::Config;
use coap_proto::net::Response;
use coap_proto::net::tokio::{Client, Reply, Server};
use coap_proto::resource::{Methods, Resource};
use coap_proto::wire::Code;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A server large enough for every one of them (records, buffers for the separate
/// CON responses, one peer's share of late answers), whose `/slow` answers after 2 s.
async fn slow_server() -> std::net::SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        peer_share_percent: 100,
        ..coap_proto::net::default_config()
    };
    let mut server =
        Server::<512, 512, 1152, 1024, 65536>::from_socket_sized(socket, config).unwrap();
    server.resource(Resource::new("/slow", Methods::GET), |_| {
        Reply::later(async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Response::content("late")
        })
    });
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run());
    addr
}

#[test]
fn two_hundred_slow_gets_from_one_default_tokio_client_complete_together() {
    // The large server's endpoint is built on the stack before it is boxed.
    let test = std::thread::Builder::new().stack_size(64 << 20);
    test.spawn(two_hundred_slow_gets).unwrap().join().unwrap();
}

fn two_hundred_slow_gets() {
    runtime().block_on(async {
        let addr = slow_server().await;
        let client = Client::connect(addr).await.unwrap();
        let start = Instant::now();
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move { c.get("/slow").await })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap().unwrap();
            assert_eq!((r.code, &r.payload[..]), (Code::CONTENT, &b"late"[..]));
        }
        let took = start.elapsed();
        eprintln!("200 GETs of a resource answered after 2 s: {took:.2?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    });
}

#[test]
fn a_slow_answer_in_blocks_after_the_buffer_was_released_arrives_whole() {
    // The GET gives its buffer back at the empty ACK; the separate response is the
    // first of several blocks, so the client sends the request again, keeping its buffer
    // this time, and the body arrives whole (the handler runs again, for the request and
    // for each block: a GET may).
    runtime().block_on(async {
        let mut server = Server::bind("127.0.0.1:0").await.unwrap();
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r = runs.clone();
        server.resource(Resource::new("/slow-big", Methods::GET), move |_| {
            r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Reply::later(async {
                tokio::time::sleep(Duration::from_millis(40)).await;
                Response::content(vec![b'z'; 2500])
            })
        });
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.run());
        let client = Client::connect(addr).await.unwrap();
        let r = client.get("/slow-big").await.unwrap();
        assert_eq!((r.code, r.payload.len()), (Code::CONTENT, 2500));
        assert!(r.payload.iter().all(|&b| b == b'z'));
        let blocks = runs.load(std::sync::atomic::Ordering::SeqCst) - 1;
        assert!(blocks >= 3, "sent again, then block by block: {blocks}");
    });
}

#[test]
fn a_busy_answer_is_sent_again_after_max_age_when_asked() {
    use coap_proto::net::Request;
    runtime().block_on(async {
        let mut server = Server::bind("127.0.0.1:0").await.unwrap();
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r = runs.clone();
        server.resource(Resource::new("/busy", Methods::GET), move |_| {
            // Busy every other time, for a second.
            if r.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 2 == 0 {
                Response::new(Code::SERVICE_UNAVAILABLE).max_age(1).into()
            } else {
                Response::content("now").into()
            }
        });
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.run());
        let client = Client::connect(addr).await.unwrap();
        // Off by default: the 5.03 as it came.
        let r = client.get("/busy").await.unwrap();
        assert_eq!(r.code, Code::SERVICE_UNAVAILABLE);
        let _ = client.get("/busy").await.unwrap();
        // Asked: after its Max-Age of 1 s, sent again.
        let start = Instant::now();
        let r = client
            .request(Request::get("/busy").retry_busy())
            .await
            .unwrap();
        assert_eq!((r.code, &r.payload[..]), (Code::CONTENT, &b"now"[..]));
        assert!(
            start.elapsed() >= Duration::from_millis(900),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 4);
        // The blocking client does the same.
        let r = tokio::task::spawn_blocking(move || {
            let mut c = coap_proto::net::blocking::Client::connect(addr).unwrap();
            c.request(&Request::get("/busy").retry_busy()).unwrap()
        })
        .await
        .unwrap();
        assert_eq!((r.code, &r.payload[..]), (Code::CONTENT, &b"now"[..]));
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 6);
    });
}
